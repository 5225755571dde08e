"""Every file name of a work directory (what ``recon-jax train`` writes and the others read).

A work directory ``WORKDIR`` holds ``config.json`` (the nested config of the run),
``metrics.jsonl`` (one JSON record per logged step), ``train_step.json`` (what one compiled
training step costs), ``tensorboard/``, ``checkpoints/`` (orbax), ``eval_<split>[...].{json,md}``
(``recon-jax eval``) and ``.lock`` (held by a running ``train``). Functions here only name paths
and check that a directory can be written; they create nothing but a missing directory.
"""

from __future__ import annotations

import fcntl
import os

from recon_jax.errors import UserError

__all__ = [
    "CONFIG", "METRICS", "STEP_REPORT", "TENSORBOARD", "CHECKPOINTS", "LOCK",
    "path", "eval_stem", "ensure_writable_dir", "ensure_writable_file", "RunLock",
]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
STEP_REPORT = "train_step.json"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
LOCK = ".lock"


def path(workdir: str, name: str) -> str:
    """``workdir/name`` for one of the names above."""
    return os.path.join(workdir, name)


def eval_stem(workdir: str, split: str, *, protocol: str = "3d-lmnet", icp: bool = True,
              checkpoint: str = "best", views: int | None = None) -> str:
    """``workdir/eval_<split>[_<protocol>][_noicp][_<checkpoint>][_views<N>]`` (no extension).

    The default (3D-LMNet protocol with ICP, best checkpoint, all views) is ``eval_<split>``.
    """
    parts = [f"eval_{split}"]
    if protocol != "3d-lmnet":
        parts.append(protocol.replace("-", ""))
    if not icp:
        parts.append("noicp")
    if checkpoint != "best":
        parts.append(checkpoint)
    if views is not None:
        parts.append(f"views{views}")
    return os.path.join(workdir, "_".join(parts))


def ensure_writable_dir(directory: str, what: str = "output directory") -> None:
    """Create ``directory`` if needed; a :class:`UserError` if it is a file or not writable."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UserError(f"{directory}: the {what} is a file, expected a directory")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise UserError(f"{directory}: cannot create the {what} ({e.strerror})") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"{directory}: the {what} is not writable")


def ensure_writable_file(file: str, what: str = "output file") -> None:
    """Check that ``file`` can be written (its directory is created if needed) before work."""
    if os.path.isdir(file):
        raise UserError(f"{file}: the {what} is a directory, expected a file path")
    ensure_writable_dir(os.path.dirname(os.path.abspath(file)), f"directory of the {what}")
    if os.path.exists(file) and not os.access(file, os.W_OK):
        raise UserError(f"{file}: the {what} is not writable")


class RunLock:
    """An exclusive lock on a work directory (``WORKDIR/.lock``) for the length of a ``with``.

    ``fcntl.flock`` on an open file: the kernel releases it when the holder dies, even by
    ``kill -9``, so a stale lock (the file left by a dead process) is taken over, with a
    message naming that process. A live holder makes a second ``train`` fail at once with a
    :class:`UserError`. ``enabled=False`` (processes other than 0 of a multi-host run) does nothing.
    """

    def __init__(self, workdir: str, *, enabled: bool = True, log=print):
        self.file = path(workdir, LOCK)
        self.enabled, self.log, self._fd = enabled, log, None

    def __enter__(self) -> RunLock:
        if not self.enabled:
            return self
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(f"{os.path.dirname(self.file) or '.'}: another `recon-jax train` "
                            f"(process {holder}) is using this work directory") from None
        previous = os.pread(fd, 64, 0).decode(errors="replace").strip()
        if previous and previous != str(os.getpid()):
            self.log(f"taking over the stale lock of process {previous} (no longer running) "
                     f"in {self.file}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # released cleanly: nothing stale left behind
            os.close(self._fd)  # closing releases the flock
            self._fd = None
