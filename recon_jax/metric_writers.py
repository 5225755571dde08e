"""Where training metrics go: a JSON-lines file and TensorBoard event files (no TensorFlow).

``MetricWriter(workdir)`` appends one JSON object per call to ``workdir/metrics.jsonl``
(``{"step": int, "split": str, "time": float, <name>: float, ...}``) and writes the same scalars
to TensorBoard event files under ``workdir/tensorboard/<split>`` through tensorboardX, which
needs no TensorFlow. Values must be finite: :func:`check_finite` raises :class:`NonFiniteError`
naming the step and the term, which is how a NaN/Inf loss stops a run.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping

from tensorboardX import SummaryWriter

from recon_jax import rundir

__all__ = ["NonFiniteError", "check_finite", "MetricWriter", "read_metrics"]


class NonFiniteError(FloatingPointError):
    """A loss term was NaN or Inf; the message names the step and the term."""


def check_finite(step: int, metrics: Mapping[str, float]) -> None:
    """Raise :class:`NonFiniteError` if any value in ``metrics`` is NaN or Inf."""
    bad = {k: v for k, v in metrics.items() if not math.isfinite(float(v))}
    if bad:
        terms = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
        raise NonFiniteError(f"non-finite loss at step {step}: {terms}")


class MetricWriter:
    """Append scalars to ``metrics.jsonl`` and TensorBoard event files, one call per log step."""

    def __init__(self, workdir: str, *, tensorboard: bool = True, enabled: bool = True):
        """``enabled=False`` makes every call a no-op (processes other than 0 of a multi-host
        run: the metrics are global values, written once)."""
        self.enabled = enabled
        os.makedirs(workdir, exist_ok=True)
        self.path = rundir.path(workdir, rundir.METRICS)
        self._tb_root = rundir.path(workdir, rundir.TENSORBOARD) if tensorboard else None
        self._tb: dict[str, object] = {}

    def write(self, step: int, metrics: Mapping[str, float], *, split: str = "train") -> None:
        """Record ``metrics`` (name -> scalar) at ``step`` for ``split`` ("train", "test", ...)."""
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, "time": time.time()}
        record.update({k: float(v) for k, v in metrics.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb_root is not None:
            writer = self._tb.get(split)
            if writer is None:
                writer = SummaryWriter(os.path.join(self._tb_root, split))
                self._tb[split] = writer
            for k, v in metrics.items():
                writer.add_scalar(k, float(v), int(step))
            writer.flush()

    def close(self) -> None:
        for writer in self._tb.values():
            writer.close()
        self._tb.clear()

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(path: str, split: str | None = None) -> list[dict]:
    """Read back ``metrics.jsonl`` (optionally one split) as a list of dicts."""
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if split is None or r["split"] == split]
