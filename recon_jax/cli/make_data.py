"""``recon-jax make-data --out DIR [--models-per-category N] [--categories NAME ...] ...``."""

from __future__ import annotations

import argparse

from recon_jax.data import layout
from recon_jax.data.synthetic import generate_dataset
from recon_jax.errors import UserError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output root directory")
    parser.add_argument("--models-per-category", type=int, default=40, metavar="N",
                        help="models per category, at least 2: 80%% train, 20%% test, at least "
                        "one of each (default 40)")
    parser.add_argument("--views", type=int, default=layout.NUM_VIEWS,
                        help=f"renders per model: {layout.NUM_VIEWS}, as training and evaluation "
                        "read them (the layout of 3D-R2N2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--categories", nargs="+", default=None, metavar="CATEGORY",
                        help="names or synsets (default: all 13)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: number of CPUs)")
    parser.add_argument("--no-contact-sheet", action="store_true",
                        help="skip DIR/contact_sheet.png")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset in DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.models_per_category < 2:
        raise UserError(f"--models-per-category {args.models_per_category}: at least 2, so that "
                        "every category has a test model (training evaluates on the test split)")
    if args.views != layout.NUM_VIEWS:
        raise UserError(f"--views {args.views}: training and evaluation read the "
                        f"{layout.NUM_VIEWS} views of the 3D-R2N2 layout, so make-data writes "
                        f"{layout.NUM_VIEWS} (a smaller test set: generate_dataset(views=N))")
    summary = generate_dataset(
        args.out,
        models_per_category=args.models_per_category,
        views=args.views,
        seed=args.seed,
        workers=args.workers,
        categories=args.categories,
        contact_sheet=not args.no_contact_sheet,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    n_train = sum(map(len, summary.train.values()))
    n_test = sum(map(len, summary.test.values()))
    print(
        f"wrote {summary.num_models} models ({len(summary.train)} categories, {summary.views} "
        f"views each: {summary.num_images} PNGs; {summary.num_parts:.1f} parts per object on "
        f"average) and splits {n_train} train / {n_test} test to {summary.root} in "
        f"{summary.seconds:.1f} s ({summary.num_images / summary.seconds:.0f} images/s)"
    )
    if summary.contact_sheet:
        print(f"contact sheet: {summary.contact_sheet}")
    return 0
