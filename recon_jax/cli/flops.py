"""``recon-jax flops``: parameters, multiply-adds, FLOPs and training-step memory per extractor.

    recon-jax flops [--config FILE[:ARG]] [--config.SECTION.FIELD=VALUE ...]
        [--encoders efficient,resnet34] [--image-size 128,224] [--batch-size N]
        [--dtype float32,bfloat16] [--out FILE]

Forward counts (:mod:`recon_jax.measure`) of each extractor at each ``--image-size``; the peak
memory of the real training step of :mod:`recon_jax.train` (the config's loss, optimizer and
model with the extractor and dtype swapped in, batch ``--batch-size`` or ``data.batch_size``,
from XLA's memory analysis: nothing runs); ratio rows efficient / ResNet. Prints Markdown;
``--out`` also writes it to that file. Step times: ``experiments/bench_train.py``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import platform
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from recon_jax import measure, rundir, state, train
from recon_jax.cli._config import add_config_arguments, config_from_args
from recon_jax.data import layout
from recon_jax.errors import UserError
from recon_jax.models import DTYPES, EXTRACTORS, Reconstructor, build_model, make_extractor

__all__ = ["compile_train_step", "configure", "format_report", "run"]

MIB = 2**20
#: How the paper's FLOPs figures read against ours.
PAPER_NOTE = (
    "Paper (Kim & Lee 2023, Table 2): 2.9 G for its network against 4 G for the ResNet "
    "extractors of 3D-LMNet and 3D-ReconstNet (ratio 0.725). The 4 G matches ResNet-34 at "
    "224x224 counted in multiply-adds (3.66 G in the usual tables and here), so the paper's "
    "figures read as multiply-adds at 224x224: its 2.9 G compares with the `efficient` "
    "multiply-adds at 224x224 (XLA FLOPs count each multiply-add twice)."
)


def compile_train_step(config: ml_collections.ConfigDict, mesh: Any = None
                       ) -> tuple[Any, Reconstructor]:
    """The real training step of :mod:`recon_jax.train` for ``config``, compiled from shapes.

    Returns ``(compiled, model)``: ``compiled`` takes ``(state, batch)`` with the batch
    ``{"image": float32 [B, 128, 128, 3], "points": float32 [B, data.target_points, 3]}``
    sharded by :func:`recon_jax.train.shard_batch` (``B = data.batch_size``); the state is
    donated. Nothing is initialised or run.
    """
    mesh = train.make_mesh() if mesh is None else mesh
    model = state.create_model(config)
    tx = state.create_optimizer(config)
    state_shapes = jax.eval_shape(lambda: state.create_train_state(config, model, tx))
    b, side = config.data.batch_size, layout.IMAGE_SIZE
    batch = train.shard_batch({
        "image": np.zeros((b, side, side, 3), np.float32),
        "points": np.zeros((b, config.data.target_points, 3), np.float32),
    }, mesh)
    step = train.make_train_step(model, tx, config, mesh)
    return step.lower(state_shapes, batch).compile(), model


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "experiments/configs/default.py")
    parser.add_argument("--encoders", default=",".join(EXTRACTORS),
                        help=f"comma-separated extractors (default all: {','.join(EXTRACTORS)})")
    parser.add_argument("--image-size", default="128,224",
                        help="comma-separated input sides of the forward counts (default 128,224)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="global batch of the training step (default: data.batch_size)")
    parser.add_argument("--dtype", default="float32,bfloat16",
                        help="comma-separated compute dtypes of the training step "
                        "(default float32,bfloat16)")
    parser.add_argument("--out", default=None, help="also write the Markdown report to this file")


def _csv(text: str, option: str, choices: Sequence[str] | None = None) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if choices is not None and s not in choices]
    if not items or bad:
        raise UserError(f"{option}: expected a comma-separated list of {tuple(choices or ())}, "
                        f"got {text!r}")
    return items


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f} ({(a / b - 1) * 100:+.0f}%)"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _ratio_rows(values: dict[str, list[float]]) -> list[list[str]]:
    """Rows ``efficient / <resnet>`` of the figures in ``values`` (extractor -> figures)."""
    if "efficient" not in values:
        return []
    return [[f"efficient / {b}"] + [_ratio(e, r)
                                    for e, r in zip(values["efficient"], values[b], strict=True)]
            for b in ("resnet18", "resnet34") if b in values]


def format_report(counts: dict[str, dict[int, dict[str, float]]],
                  memory: dict[str, dict[str, tuple[int, int]]], *, step_line: str,
                  command: str) -> str:
    """The Markdown report.

    Args:
      counts: extractor -> image size -> :func:`recon_jax.measure.forward_counts`.
      memory: extractor -> dtype -> ``(peak_bytes, temp_bytes)`` of the training step.
      step_line: what the training step was (sizes, loss, optimizer).
      command: the command that reproduces the report.
    """
    names = list(counts)
    sizes = list(next(iter(counts.values())))
    some = counts[names[0]][sizes[0]]
    head_gmacs = some["model_gmacs"] - some["extractor_gmacs"]
    header = ["extractor", "params (extractor)", "params (model)"]
    for s in sizes:
        header += [f"G multiply-adds {s}x{s}", f"GFLOPs (XLA) {s}x{s}"]
    rows, figures = [], {}
    for name in names:
        c = counts[name]
        first = c[sizes[0]]
        row: list[Any] = [name, f"{first['extractor_params']:,}", f"{first['model_params']:,}"]
        figures[name] = [first["extractor_params"], first["model_params"]]
        for s in sizes:
            row += [f"{c[s]['extractor_gmacs']:.3f}", f"{c[s]['extractor_gflops']:.3f}"]
            figures[name] += [c[s]["extractor_gmacs"], c[s]["extractor_gflops"]]
        rows.append(row)
    ratios = _ratio_rows(figures)
    lines = [
        "## Extractors: parameters, multiply-adds, FLOPs, training-step memory",
        "",
        f"Regenerate: `{command}`",
        "",
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; JAX "
        f"{jax.__version__}, backend {jax.default_backend()} ({jax.device_count()} x "
        f"{jax.devices()[0].device_kind}); Python {platform.python_version()}.",
        "",
        "Forward pass of the extractor on one image; the config's latent head and decoder add "
        f"{head_gmacs:.4f} G multiply-adds (params (model) includes them). Multiply-adds: every "
        "multiply-add of the convolutions and matrix products, taps on padding included (the "
        "usual tables' convention). GFLOPs: XLA's cost analysis (a multiply-add = 2 FLOPs, "
        "element-wise work included, taps on padding not counted). Parameters: trainable "
        "(BatchNorm statistics excluded).",
        "",
        _table(header, rows + ratios),
        "",
        PAPER_NOTE,
    ]
    if 224 in sizes and {"efficient", "resnet34"} <= set(names):
        e, r = (counts[n][224]["extractor_gmacs"] for n in ("efficient", "resnet34"))
        lines[-1] += (f" Here at 224x224: `efficient` {e:.2f} G multiply-adds against ResNet-34's "
                      f"{r:.2f} G (ratio {e / r:.3f}).")
    if memory:
        dtypes = list(next(iter(memory.values())))
        mem_header = ["extractor"] + [f"{h} MiB ({d})" for d in dtypes
                                      for h in ("peak", "of which temp")]
        mem_rows, mem_figures = [], {}
        for name, by_dtype in memory.items():
            mem_rows.append([name] + [f"{v / MIB:.1f}" for d in dtypes for v in by_dtype[d]])
            mem_figures[name] = [v for d in dtypes for v in by_dtype[d]]
        mem_rows += _ratio_rows(mem_figures)
        lines += [
            "",
            f"Training step ({step_line}): XLA's memory analysis of the compiled step of "
            "`recon_jax.train`, per device: peak = arguments + outputs - donated + temporaries.",
            "",
            _table(mem_header, mem_rows),
        ]
    return "\n".join(lines) + "\n"


def _command(args: argparse.Namespace) -> str:
    parts = ["recon-jax flops"]
    if args.config != "experiments/configs/default.py":
        parts.append(f"--config {args.config}")
    parts += [f"--config.{o}" for o in getattr(args, "overrides", [])]
    for option, value, default in (("--encoders", args.encoders, ",".join(EXTRACTORS)),
                                   ("--image-size", args.image_size, "128,224"),
                                   ("--batch-size", args.batch_size, None),
                                   ("--dtype", args.dtype, "float32,bfloat16")):
        if value != default:
            parts.append(f"{option} {value}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    encoders = _csv(args.encoders, "--encoders", tuple(EXTRACTORS))
    dtypes = _csv(args.dtype, "--dtype", tuple(DTYPES))
    try:
        sizes = [int(s) for s in _csv(args.image_size, "--image-size")]
    except ValueError:
        raise UserError(f"--image-size: expected comma-separated integers, got "
                        f"{args.image_size!r}") from None
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise UserError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
        config.data.batch_size = args.batch_size
    if args.out:
        rundir.ensure_writable_file(args.out, "report file")
    counts: dict[str, dict[int, dict[str, float]]] = {}
    memory: dict[str, dict[str, tuple[int, int]]] = {}
    for name in encoders:
        smallest = make_extractor(name).min_size
        if min(sizes) < smallest:
            raise UserError(f"--image-size: {name} needs inputs of at least {smallest}x{smallest}, "
                            f"got {min(sizes)}")
    mesh = train.make_mesh()
    for name in encoders:
        cfg = copy.deepcopy(config)
        if name != config.model.encoder:  # the config's extractor fields belong to its encoder
            cfg.model.extractor = ml_collections.ConfigDict()
        cfg.model.encoder = name
        for s in sizes:
            model_cfg = cfg.model.to_dict() | {"image_size": s}
            counts.setdefault(name, {})[s] = measure.forward_counts(build_model(model_cfg))
        for dtype in dtypes:
            cfg.model.dtype = dtype
            compiled, _ = compile_train_step(cfg, mesh)
            memory.setdefault(name, {})[dtype] = measure.step_memory(compiled)
    m = config.model
    step_line = (f"batch {config.data.batch_size}, {m.image_size}x{m.image_size} network input "
                 f"(from {layout.IMAGE_SIZE}x{layout.IMAGE_SIZE} images), {m.num_points} "
                 f"points against {config.data.target_points}, loss and optimizer of the config")
    markdown = format_report(counts, memory, step_line=step_line, command=_command(args))
    print(markdown, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(markdown)
    return 0
