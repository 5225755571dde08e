"""``recon-jax predict --workdir RUN --out DIR IMAGE...``."""

from __future__ import annotations

import argparse

from recon_jax import predict


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="work directory of a `train` run")
    parser.add_argument("images", nargs="+", help="image files (any size; PNG with alpha ok)")
    parser.add_argument("--out", required=True, help="output directory for .ply and .png")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest", "init"))


def run(args: argparse.Namespace) -> int:
    for ply, png in predict.predict_files(args.workdir, args.images, args.out,
                                          which=args.checkpoint):
        print(f"wrote {ply} and {png}")
    return 0
