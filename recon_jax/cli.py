"""``recon-jax`` command line: ``recon-jax <command> [options]``.

Each command lives in the module that does its work and exposes two functions:
``configure_parser(parser: argparse.ArgumentParser) -> None`` and ``run(args) -> int``, or one,
``main_argv(argv: list[str]) -> int``, when it parses its own arguments (``train`` does, for
ml_collections' ``--config.field=value`` overrides). Modules are imported lazily, so
``recon-jax flops`` does not pay for the data stack and vice versa.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "make-data": ("recon_jax.data.synthetic", "generate the synthetic ShapeNet-like dataset"),
    "prepare-tfds": ("recon_jax.data.tfds_builder", "prepare the shapenet_r2n2 TFDS dataset"),
    "flops": ("recon_jax.models.flops", "parameters, GFLOPs and training memory per extractor"),
    "train": ("recon_jax.train", "train a model (resumes an existing work directory)"),
    "eval": ("recon_jax.evaluate", "the 3D-LMNet evaluation protocol on a trained run"),
    "predict": ("recon_jax.predict", "point clouds (PLY) and figures (PNG) for images"),
    "figure": ("recon_jax.figures", "input | ground truth | prediction for test objects (PNG)"),
    "summarize": ("recon_jax.summarize", "one CD/EMD/FLOPs/memory/time table of several runs"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="recon-jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or a clear "invalid choice" error and exits
        return 2
    module_name, help_text = COMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    if hasattr(module, "main_argv"):
        return int(module.main_argv(argv[1:]) or 0)
    cmd_parser = argparse.ArgumentParser(prog=f"recon-jax {argv[0]}", description=help_text)
    module.configure_parser(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
