"""``recon-jax prepare-tfds --root ROOT --data-dir DIR [--config synthetic|real]
[--on-error raise|skip]``."""

from __future__ import annotations

import argparse
import sys
import warnings

from recon_jax.data import tfds_builder
from recon_jax.data.reader import SkippedModelsWarning

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="ShapeNet root (the manual directory)")
    parser.add_argument("--data-dir", required=True, help="TFDS data directory to write into")
    parser.add_argument("--config", default="synthetic", choices=("synthetic", "real"))
    parser.add_argument("--on-error", default="raise", choices=("raise", "skip"),
                        help="a bad model: stop with its error (raise), or leave it out with a "
                        "warning and list it in the dataset's metadata.json (skip)")


def run(args: argparse.Namespace) -> int:
    """Build, then print the split sizes, the models skipped, and prepared vs source size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedModelsWarning)  # listed below, one line a split
        builder = tfds_builder.build(args.root, args.data_dir, config=args.config,
                                     on_error=args.on_error)
    for split, info in builder.info.splits.items():
        print(f"{split}: {info.num_examples} models")
    for split, skipped in tfds_builder.skipped_models(builder).items():
        if skipped:
            names = ", ".join(f"{s.synset}/{s.model_id}" for s in skipped)
            print(f"recon-jax prepare-tfds: warning: split {split!r}: skipped {len(skipped)} bad "
                  f"model(s) ({names}); why: {builder.data_dir}/metadata.json", file=sys.stderr)
    _, prepared = tfds_builder.directory_usage(builder.data_dir)
    source = tfds_builder.source_size(args.root, num_views=builder.builder_config.num_views)
    print(f"prepared {prepared / 2**20:.1f} MiB in {builder.data_dir}")
    print(f"source   {source / 2**20:.1f} MiB in {args.root} (ratio {prepared / source:.3f})")
    return 0
