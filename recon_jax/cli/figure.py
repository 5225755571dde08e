"""``recon-jax figure --workdir RUN --out FIG.png [--categories NAME ...]``."""

from __future__ import annotations

import argparse

from recon_jax import figures


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="work directory of a `train` run")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--categories", nargs="+", default=None,
                        help="category names, one row each (default: those of "
                        f"{', '.join(figures.DEFAULT_CATEGORIES)} in the test split)")
    parser.add_argument("--per-category", type=int, default=1)
    parser.add_argument("--view", type=int, default=0, help="rendering view of every object")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest", "init"))


def run(args: argparse.Namespace) -> int:
    out = figures.figure_of_run(args.workdir, args.out, categories=args.categories,
                                per_category=args.per_category, view=args.view,
                                which=args.checkpoint)
    print(f"wrote {out}")
    return 0
