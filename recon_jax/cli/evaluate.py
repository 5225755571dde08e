"""``recon-jax eval --workdir RUN [--protocol NAME] [--no-icp] [--scoring host|device] ...``."""

from __future__ import annotations

import argparse

from recon_jax import evaluate, protocol
from recon_jax.data import layout


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="work directory of a `train` run")
    parser.add_argument("--split", default="test", choices=layout.SPLITS)
    parser.add_argument("--protocol", default=protocol.DEFAULT_PROTOCOL,
                        choices=tuple(protocol.PROTOCOLS),
                        help="evaluation protocol (default: 3D-LMNet's, with ICP)")
    parser.add_argument("--no-icp", dest="icp", action="store_false", default=None,
                        help="skip the ICP alignment (the unaligned figures)")
    parser.add_argument("--icp", dest="icp", action="store_true",
                        help="align with ICP even where the protocol does not")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest", "init"),
                        help="best: lowest test CD during training; init: the untrained model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--views", type=int, default=None,
                        help="score only the first N views of each model (default: all 24)")
    parser.add_argument("--scoring", default="auto", choices=evaluate.SCORING,
                        help="where ICP, CD and EMD run: host (process pool, float64), device "
                             "(JAX, float32) or auto (the device on an accelerator; default)")
    parser.add_argument("--workers", type=int, default=None,
                        help="host scoring: processes scoring views (default: every CPU core)")


def run(args: argparse.Namespace) -> int:
    results, stem = evaluate.evaluate_workdir(
        args.workdir, split=args.split, protocol_name=args.protocol, icp=args.icp,
        which=args.checkpoint, batch_size=args.batch_size, views=args.views,
        scoring=args.scoring, workers=args.workers)
    with open(stem + ".md") as f:
        print(f.read())
    print(f"wrote {stem}.json and {stem}.md ({results['views']} views scored, "
          f"{results['failed_views']} failed, {results['seconds']:.0f} s, scored on the "
          f"{results['scoring']})")
    return 0
