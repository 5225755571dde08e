"""``recon-jax train --config FILE[:ARG] --workdir DIR [--config.SECTION.FIELD=VALUE ...]``."""

from __future__ import annotations

import argparse

import jax
from absl import flags as absl_flags

from recon_jax import train
from recon_jax.cli._config import add_config_arguments, config_from_args
from recon_jax.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "experiments/configs/default.py")
    parser.add_argument("--workdir", required=True,
                        help="work directory (resumed if it holds checkpoints)")
    parser.add_argument("--multihost", action="store_true",
                        help="call jax.distributed.initialize() first (one process per host); "
                        "Slurm, Open MPI, Kubernetes and Cloud TPU set it up from their "
                        "environment, elsewhere give the three flags below")
    parser.add_argument("--coordinator-address", default=None,
                        help="with --multihost: host:port of process 0's coordinator service")
    parser.add_argument("--num-processes", type=int, default=None,
                        help="with --multihost: number of processes")
    parser.add_argument("--process-id", type=int, default=None,
                        help="with --multihost: this process's index, 0 .. num_processes - 1")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # every field checked before anything starts
    train.validate_config(config)
    if not absl_flags.FLAGS.is_parsed():
        # grain 0.2.18 starts data worker processes (data.workers > 0) only once absl flags are
        # parsed (it reads --grain_enable_multiprocess_worker_profiling); recon-jax defines none.
        absl_flags.FLAGS(["recon-jax"])
    given = (args.coordinator_address, args.num_processes, args.process_id)
    if args.multihost:
        jax.distributed.initialize(coordinator_address=args.coordinator_address,
                                   num_processes=args.num_processes, process_id=args.process_id)
    elif any(v is not None for v in given):
        raise UserError("--coordinator-address, --num-processes and --process-id need "
                        "--multihost")
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} "
          f"({jax.process_count()} process(es)); workdir {args.workdir}")
    train.train_and_evaluate(config, args.workdir)
    return 0
