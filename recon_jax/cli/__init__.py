"""``recon-jax`` command line: ``recon-jax [--debug] <command> [options]``.

Every parser lives in this package; each command is a module here with ``configure(parser)``
and ``run(args) -> int`` that call plain library functions. Command modules are imported only
when their command runs, so ``recon-jax --help`` and light commands start fast. Commands that
take a config accept ``--config FILE.py[:ARG]`` and ``--config.SECTION.FIELD=VALUE`` overrides.
A :class:`recon_jax.errors.UserError` (bad input, field or work directory) is printed as at
most two lines on stderr with exit status 2; ``--debug`` shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from recon_jax.errors import UserError

__all__ = ["main", "COMMANDS"]

# command name -> (module under recon_jax.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "make-data": ("make_data", "generate the synthetic ShapeNet-like dataset"),
    "prepare-tfds": ("prepare_tfds", "prepare the shapenet_r2n2 TFDS dataset"),
    "flops": ("flops", "parameters, GFLOPs and training memory per extractor"),
    "train": ("train", "train a model (resumes an existing work directory)"),
    "eval": ("evaluate", "score a trained run with the 3D-LMNet protocol"),
    "predict": ("predict", "point clouds (PLY) and figures (PNG) for images"),
    "figure": ("figure", "input | ground truth | prediction for test objects (PNG)"),
    "summarize": ("summarize", "one CD/EMD/FLOPs/memory/time table of several runs"),
}


def _user_errors() -> tuple[type[BaseException], ...]:
    return (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError, FileExistsError)


#: Packages of the [train] extra: a command that misses one names the extra to install.
TRAIN_EXTRA = ("flax", "optax", "orbax", "tensorflow_datasets", "array_record", "grain",
               "ml_collections", "PIL", "tqdm", "matplotlib", "tensorboardX")


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` without its ``--config.FIELD=VALUE`` (or ``--config.FIELD VALUE``) items, and
    those items as ``FIELD=VALUE`` strings."""
    rest, overrides, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[len("--config."):]
            if "=" not in body:
                if i + 1 >= len(argv):
                    raise UserError(f"{arg}: expected --config.FIELD=VALUE")
                body, i = f"{body}={argv[i + 1]}", i + 1
            overrides.append(body)
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="recon-jax", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # help, or a clear "invalid choice" error (exit 2)
        return 2
    name = argv[0]
    try:
        module = importlib.import_module(f"recon_jax.cli.{COMMANDS[name][0]}")
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in TRAIN_EXTRA:
            raise
        print(f"recon-jax {name}: needs the training stack ({e.name} is missing): "
              "pip install 'recon-jax[train]'", file=sys.stderr)
        return 2
    cmd_parser = sub.add_parser(name, help=COMMANDS[name][1], description=COMMANDS[name][1])
    module.configure(cmd_parser)
    try:
        argv, overrides = split_overrides(argv)  # for the commands that take a config
        args = parser.parse_args(argv)
        args.overrides = overrides
        if overrides and not hasattr(args, "config"):
            parser.error(f"{name} takes no --config overrides")
        return int(module.run(args) or 0)
    except _user_errors() as e:
        if debug:
            traceback.print_exc()
        message = str(e).strip() or type(e).__name__
        if isinstance(e, OSError) and e.filename and str(e.filename) not in message:
            message = f"{e.filename}: {message}"
        lines = message.splitlines()
        print(f"recon-jax {name}: error: {lines[0]}", file=sys.stderr)
        if len(lines) > 1:
            print("  " + " ".join(line.strip() for line in lines[1:]), file=sys.stderr)
        return 2
    except FloatingPointError as e:  # a diverged run: the message names the step and term
        if debug:
            traceback.print_exc()
        print(f"recon-jax {name}: stopped: {e}", file=sys.stderr)
        return 1


