"""``recon-jax summarize RUN_DIR... [--out STEM]``."""

from __future__ import annotations

import argparse
import json

from recon_jax import rundir, summarize


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workdirs", nargs="+", metavar="RUN_DIR",
                        help="work directories of evaluated `recon-jax train` runs")
    parser.add_argument("--eval-name", default="eval_test.json",
                        help="which evaluation result of each run (default eval_test.json: "
                        "the 3D-LMNet protocol with ICP, best checkpoint)")
    parser.add_argument("--out", default=None,
                        help="also write OUT.md (the table) and OUT.json (the rows)")


def run(args: argparse.Namespace) -> int:
    if args.out:
        rundir.ensure_writable_file(args.out + ".md", "summary file")
    rows = [summarize.load_run(workdir, eval_name=args.eval_name) for workdir in args.workdirs]
    table = summarize.summary_markdown(rows)
    print(table, end="")
    if args.out:
        with open(args.out + ".md", "w") as f:
            f.write(table)
        with open(args.out + ".json", "w") as f:
            json.dump(rows, f, indent=2)
    return 0
