"""``python -m recon_jax.cli``: the same as ``recon-jax``."""

import sys

from recon_jax.cli import main

sys.exit(main())
