"""The error a user can fix: bad input, a bad config field, a work directory in the wrong state.

``recon-jax`` prints a :class:`UserError` as at most two lines on stderr (exit status 2) and
shows the traceback only with ``--debug``; anything else is a bug and keeps its traceback. The
message names the file or field and says what was expected.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """Bad input or a bad request; the message names the file or field and what was expected."""
