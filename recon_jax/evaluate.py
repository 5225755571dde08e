"""Scoring a trained run: every view of every test model under a named protocol.

The per-view protocol (bounding-box scaling, subsampling, ICP, unsquared CD, exact EMD, x100) is
:mod:`recon_jax.protocol`; the default is 3D-LMNet's with ICP. Predictions run on the devices in
batches; each batch is scored on one of two paths (``scoring``): ``"host"``,
:func:`recon_jax.protocol.score_views` (NumPy/SciPy, float64) in a :class:`HostPool` of processes
over the CPU cores, or ``"device"``, :func:`score_views_device` (ICP, CD and the auction's exact
EMD batched in JAX, float32, on the default device); ``"auto"``: the device on an accelerator.
Both share the host's scaling, seeded subsample (each view seeded by its model and view index:
the table does not depend on the path, batching, workers or interruptions) and failed-view test
(a prediction with NaN/Inf is counted per category, never scored). Means per category, then the
mean of the categories. Scores are appended to ``<stem>.partial.jsonl`` as they come, so a killed
evaluation resumes where it stopped (with either path); the table goes to ``<stem>.{json,md}``
(:func:`recon_jax.rundir.eval_stem`). Design notes: docs/design.md, "recon_jax.evaluate".
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import importlib
import json
import math
import multiprocessing
import os
import time
import warnings
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from recon_jax import checkpoints, protocol, rundir
from recon_jax.data import layout, sources
from recon_jax.data.pipeline import eval_dataset
from recon_jax.errors import UserError
from recon_jax.losses import chamfer_distance, exact_emd
from recon_jax.models import Reconstructor

__all__ = [
    "REFERENCES", "SCORING", "resolve_scoring", "HostPool", "icp_batch_jax", "score_views_device",
    "make_predict_fn", "evaluate_model", "quick_test_cd", "markdown_report", "evaluate_workdir",
]

#: Reference figures (x100, CD / EMD). Protocols differ between papers.
REFERENCES: tuple[tuple[str, float, float], ...] = (
    ("PSGN (Kim & Lee Table 2)", 9.11, 12.29),
    ("3D-LMNet (Kim & Lee Table 2)", 8.91, 9.70),
    ("3D-ReconstNet (Kim & Lee Table 2)", 6.26, 6.20),
    ("Kim & Lee, proposed (Table 2)", 5.87, 5.81),
    ("PSGN (3D-LMNet paper)", 5.62, 7.76),
    ("3D-LMNet (3D-LMNet paper)", 5.40, 7.00),
)

#: Where views are scored: ``"host"`` (process pool, float64), ``"device"`` (JAX, float32) or
#: ``"auto"`` (``"device"`` unless JAX's default backend is the CPU).
SCORING = ("auto", "host", "device")

# The environment of a scoring process: one BLAS/OpenMP thread (the pool spreads the views over
# the cores) and JAX's CPU backend only (it never starts one; if it did, not on the accelerator).
_WORKER_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                       "MKL_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu"}

_Scores = tuple[list[float], list[float | None]]
_HIGHEST = jax.lax.Precision.HIGHEST


def resolve_scoring(scoring: str) -> str:
    """``"host"`` or ``"device"`` for a :data:`SCORING` choice (``"auto"``: by JAX's backend)."""
    if scoring not in SCORING:
        raise UserError(f"scoring must be one of {', '.join(SCORING)}, got {scoring!r}")
    if scoring == "auto":
        return "host" if jax.default_backend() == "cpu" else "device"
    return scoring


def make_predict_fn(model: Reconstructor) -> Callable[[Any, Any], jax.Array]:
    """Jitted ``(variables, images [B, H, W, 3]) -> points [B, num_points, 3]`` float32, with
    ``z = mu`` and BatchNorm running statistics (the model resizes the images itself)."""

    @jax.jit
    def predict(variables: Any, images: jax.Array) -> jax.Array:
        out = model.apply(variables, jnp.asarray(images, jnp.float32), train=False)
        return out.points.astype(jnp.float32)

    return predict


# ---- The host path: a pool of scoring processes ------------------------------------------------


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the processes started inside (restored on exit)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class HostPool:
    """``workers`` processes that score views with :func:`recon_jax.protocol.score_views`.

    All are spawned at construction (spawned, not forked: forking a process that runs JAX's
    threads can deadlock) and import :mod:`recon_jax.protocol` (not this module) as they start, so
    their start-up overlaps whatever the caller does next (restoring a checkpoint, compiling).
    Each runs with one BLAS/OpenMP thread and ``JAX_PLATFORMS=cpu``. As with any spawned pool,
    each also imports the caller's ``__main__`` script (which needs the ``if __name__ ==
    "__main__":`` guard; ``recon-jax``'s is light). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, workers: int):
        if workers < 1:
            raise UserError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        with _environment(_WORKER_ENVIRONMENT):
            self._executor = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=importlib.import_module, initargs=(protocol.__name__,))
            # A submission that finds no idle process spawns one: all of them start now.
            for _ in range(workers):
                self._executor.submit(os.getpid)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any
               ) -> concurrent.futures.Future:
        """``fn(*args, **kwargs)`` in a worker (``fn`` picklable: module-level)."""
        return self._executor.submit(fn, *args, **kwargs)

    def close(self) -> None:
        """Cancel what has not started and end the processes."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> HostPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Pending(NamedTuple):
    """A submitted batch: ``ready()`` without blocking; ``result()`` (blocks) its scores."""

    ready: Callable[[], bool]
    result: Callable[[], _Scores]


def _as_lists(cd: np.ndarray, emd: np.ndarray | None) -> _Scores:
    return [float(c) for c in cd], [None] * len(cd) if emd is None else [float(e) for e in emd]


class _HostScorer:
    """:func:`recon_jax.protocol.score_views` in this process (no pool) or split over a pool."""

    fallbacks = 0

    def __init__(self, proto: protocol.Protocol, icp: bool, with_emd: bool,
                 pool: HostPool | None):
        self.settings = {"protocol": proto.name, "icp": icp, "with_emd": with_emd}
        self.pool = pool

    def submit(self, preds: np.ndarray, gts: np.ndarray, seeds: list) -> _Pending:
        if self.pool is None:
            scores = _as_lists(*protocol.score_views(preds, gts, seeds=seeds, **self.settings))
            return _Pending(lambda: True, lambda: scores)
        # One chunk per worker, so that the last batch keeps every worker busy too.
        size = math.ceil(len(seeds) / self.pool.workers)
        futures = [self.pool.submit(protocol.score_views, preds[i:i + size], gts[i:i + size],
                                    seeds=seeds[i:i + size], **self.settings)
                   for i in range(0, len(seeds), size)]

        def result() -> _Scores:
            parts = [_as_lists(*f.result()) for f in futures]
            return ([c for cd, _ in parts for c in cd], [e for _, emd in parts for e in emd])

        return _Pending(lambda: all(f.done() for f in futures), result)


# ---- The device path ----------------------------------------------------------------------------


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` in full float32 (GPUs would otherwise use TF32 for float32 products)."""
    return jnp.matmul(a, b, precision=_HIGHEST)


def _kabsch_jax(source: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = jnp.linalg.svd(_dot((source - mu_s).T, target - mu_t))
    flip = jnp.where(jnp.linalg.det(_dot(vt.T, u.T)) < 0, -1.0, 1.0).astype(vt.dtype)
    vt = vt.at[2].multiply(flip)
    rotation = _dot(vt.T, u.T)
    return rotation, mu_t - _dot(rotation, mu_s)


def _icp_one_jax(source: jax.Array, target: jax.Array, tolerance: float, max_iterations: int):
    resolves_tolerance = float(jnp.finfo(source.dtype).eps) < tolerance

    def nearest(points):
        # Squared distances by differences, coordinate by coordinate: no cancellation (as in
        # |p|^2 - 2 p.t + |t|^2) and no matrix product (TF32 on GPUs by default), so the
        # neighbours are the host's up to float32 rounding of the distances themselves.
        squared = sum((points[:, None, k] - target[None, :, k]) ** 2 for k in range(3))
        idx = jnp.argmin(squared, axis=-1).astype(jnp.int32)
        return jnp.linalg.norm(points - target[idx], axis=-1), idx

    def cond(carry):
        _, _, it, _, done = carry
        return (it < max_iterations) & ~done

    def body(carry):
        moved, previous, it, prev_idx, _ = carry
        dist, idx = nearest(moved)
        rotation, translation = _kabsch_jax(moved, target[idx])
        error = dist.mean()
        # The matches did not change: this move is the identity up to rounding and the next
        # 3D-LMNet test would pass. That test itself only where the dtype resolves the tolerance:
        # float32 errors (~0.01, ulp ~1e-9) pass it only when two of them round to the same
        # value, which stops ICP early at an iteration that depends on the summation order.
        done = jnp.all(idx == prev_idx)
        if resolves_tolerance:
            done = done | (jnp.abs(previous - error) < tolerance)
        return _dot(moved, rotation.T) + translation, error, it + 1, idx, done

    init = (source, jnp.zeros((), source.dtype), jnp.int32(0),
            jnp.full((source.shape[0],), -1, jnp.int32), jnp.bool_(False))
    moved, _, iterations, _, _ = jax.lax.while_loop(cond, body, init)
    rotation, translation = _kabsch_jax(source, moved)
    return rotation, translation, iterations


@functools.partial(jax.jit, static_argnames=("tolerance", "max_iterations"))
def icp_batch_jax(
    source: jax.Array, target: jax.Array, *, tolerance: float = 1e-10, max_iterations: int = 1000,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`recon_jax.protocol.icp` for a batch, on the device: ``source`` ``[B, N, 3]``,
    ``target`` ``[B, M, 3]`` -> ``(rotation [B, 3, 3], translation [B, 3], iterations [B])``.

    Nearest neighbours by brute force (``[N, M]`` squared distances per view, by differences),
    products in full precision. Also stops when the matches repeat the previous iteration's (the
    next move would be the identity: the float64 result equals the host's, one no-op move
    earlier); in float32 only then, as float32 does not resolve the 1e-10 tolerance. Finite
    inputs only.
    """
    return jax.vmap(lambda s, t: _icp_one_jax(s, t, tolerance, max_iterations))(source, target)


@functools.partial(jax.jit, static_argnames=("icp", "tolerance", "max_iterations", "with_emd"))
def _device_scores(pred: jax.Array, gt: jax.Array, *, icp: bool, tolerance: float,
                   max_iterations: int, with_emd: bool) -> tuple[jax.Array, jax.Array | None]:
    """CD and EMD x100 ``[B]`` of prepared views ``[B, n, 3]``: ICP moves ``gt`` onto ``pred``,
    ``pred @ R - t`` (3D-LMNet's formula), unsquared Chamfer, the auction's exact EMD (NaN where
    it hit its iteration bound)."""
    if icp:
        rotation, translation, _ = icp_batch_jax(
            gt, pred, tolerance=tolerance, max_iterations=max_iterations)
        pred = _dot(pred, rotation) - translation[:, None, :]
    cd = protocol.SCALE * chamfer_distance(pred, gt, squared=False, batch_reduction=None)
    return cd, (protocol.SCALE * exact_emd(pred, gt, solver="jax") if with_emd else None)


class _DeviceScorer:
    """Views scored by :func:`_device_scores` in chunks of ``batch_size`` (the last one padded
    with zeros, so one compilation serves a whole evaluation)."""

    def __init__(self, proto: protocol.Protocol, icp: bool, with_emd: bool, batch_size: int):
        self.proto, self.icp, self.with_emd, self.batch_size = proto, icp, with_emd, batch_size
        self.fallbacks = 0  # views the device could not score, scored on the host instead

    def submit(self, preds: Sequence[np.ndarray], gts: Sequence[np.ndarray],
               seeds: Sequence[protocol.SeedLike]) -> _Pending:
        count = len(seeds)
        scored = [i for i in range(count)
                  if not (protocol.is_failed(preds[i]) or protocol.is_failed(gts[i]))]
        views = [protocol.prepare_view(preds[i], gts[i], protocol=self.proto, seed=seeds[i])
                 for i in scored]
        if len({p.shape for p, _ in views}) > 1:
            raise ValueError("device scoring needs views of one size (min(num_points, P, G) "
                             f"points each), got {sorted({p.shape[0] for p, _ in views})}")
        outputs = []
        for start in range(0, len(views), self.batch_size):
            chunk = views[start:start + self.batch_size]
            shape = (self.batch_size, *chunk[0][0].shape)
            pred, gt = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
            pred[:len(chunk)] = [p for p, _ in chunk]
            gt[:len(chunk)] = [g for _, g in chunk]
            outputs.append(_device_scores(
                pred, gt, icp=self.icp, tolerance=self.proto.icp_tolerance,
                max_iterations=self.proto.icp_max_iterations, with_emd=self.with_emd))

        def ready() -> bool:
            return all(a.is_ready() for out in outputs for a in out if a is not None)

        def result() -> _Scores:
            cd: list[float] = [math.nan] * count
            emd: list[float | None] = [math.nan if self.with_emd else None] * count
            host = jax.device_get(outputs)
            device_cd = np.concatenate([c for c, _ in host]) if host else np.zeros(0)
            device_emd = (np.concatenate([e for _, e in host]) if host and self.with_emd
                          else None)
            for k, i in enumerate(scored):
                c = float(device_cd[k])
                e = None if device_emd is None else float(device_emd[k])
                if not (math.isfinite(c) and (e is None or math.isfinite(e))):
                    # The auction hit its bound (or a non-finite result from finite clouds):
                    # this view is scored by the host's protocol instead.
                    self.fallbacks += 1
                    c, e = protocol.score_view(preds[i], gts[i], protocol=self.proto,
                                               icp=self.icp, seed=seeds[i],
                                               with_emd=self.with_emd)
                cd[i], emd[i] = c, e
            return cd, emd

        return _Pending(ready, result)


def score_views_device(
    preds: np.ndarray | Sequence[np.ndarray],
    gts: np.ndarray | Sequence[np.ndarray],
    *,
    protocol_name: str | protocol.Protocol = protocol.DEFAULT_PROTOCOL,
    icp: bool | None = None,
    seeds: Sequence[protocol.SeedLike] | None = None,
    with_emd: bool = True,
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`recon_jax.protocol.score_views` with ICP, CD and EMD on JAX's default device.

    The host scales and subsamples each view as :func:`recon_jax.protocol.prepare_view` and
    detects failed views (NaN, not sent to the device); the device runs
    :func:`icp_batch_jax`, the unsquared Chamfer
    (:func:`recon_jax.losses.chamfer_distance`) and ``exact_emd(solver="jax")`` (certified
    within 1e-6 of the optimum) in float32, ``batch_size`` views at a time (default: all). A view
    whose device EMD is NaN (the auction's iteration bound) is scored by
    :func:`recon_jax.protocol.score_view` instead, with a warning.

    Returns:
      ``(cd [V], emd [V] or None)`` float64, x100, NaN for failed views.
    """
    proto = protocol.get_protocol(protocol_name)
    seeds = list(range(len(preds)) if seeds is None else seeds)
    scorer = _DeviceScorer(proto, proto.icp if icp is None else icp, with_emd,
                           batch_size or max(len(seeds), 1))
    cd, emd = scorer.submit(preds, gts, seeds).result()
    _warn_fallbacks(scorer.fallbacks)
    return (np.asarray(cd, np.float64),
            np.asarray(emd, np.float64) if with_emd else None)


def _warn_fallbacks(count: int) -> None:
    if count:
        warnings.warn(f"device scoring: {count} view(s) hit the exact EMD's iteration bound on "
                      "the device and were scored on the host", stacklevel=3)


# ---- Scoring a test split -----------------------------------------------------------------------


def _view_seed(seed: int, model_id: str, view: int) -> tuple[int, int, int]:
    return (seed, zlib.crc32(model_id.encode()), view)


def evaluate_model(
    predict_fn: Callable[[Any, Any], Any],
    variables: Any,
    source: Any,
    *,
    batch_size: int = 32,
    views: Sequence[int] | None = None,
    protocol_name: str = protocol.DEFAULT_PROTOCOL,
    icp: bool | None = None,
    with_emd: bool = True,
    seed: int = 0,
    scoring: str = "auto",
    workers: int = 1,
    pool: HostPool | None = None,
    done: dict[tuple[str, int], dict[str, Any]] | None = None,
    on_scored: Callable[[list[dict[str, Any]]], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score ``source`` (a test split) view by view.

    Args:
      predict_fn: ``(variables, images [B, 128, 128, 3]) -> points [B, P, 3]``.
      source: record source of :mod:`recon_jax.data.pipeline` (TFDS data source or reader).
      views: views per model to evaluate (default all 24).
      protocol_name, icp: the protocol (:data:`recon_jax.protocol.PROTOCOLS`) and whether to
        align with ICP (``None``: the protocol's default).
      with_emd: also compute the exact EMD (the slow part).
      seed: with each view's model and view index, seeds its random subsample.
      scoring: :data:`SCORING`; the device path scores each prediction batch as one batch.
      workers: host path: processes scoring views (1: in this process); ignored with ``pool``.
      pool: host path: an already started :class:`HostPool` to use (not closed here).
      done: view records already scored (``(model, view) -> record``), e.g. from an interrupted
        run; their batches are not predicted again.
      on_scored: called with each batch's new view records (to save partial results).
    Returns:
      ``{"per_category": {name: {"cd", "emd", "views", "failed"}}, "mean": {"cd", "emd"},
      "views", "failed_views", "icp", "protocol_name", "protocol", "scoring",
      "device_fallbacks"}``; CD/EMD x100 means over the finite views (EMD ``None`` without
      ``with_emd``); ``device_fallbacks``: views of this call scored on the host because the
      device's EMD hit its bound.
    """
    proto = protocol.get_protocol(protocol_name)
    use_icp = proto.icp if icp is None else icp
    path = resolve_scoring(scoring)
    records = dict(done or {})
    views = list(range(layout.NUM_VIEWS)) if views is None else list(views)
    ds = eval_dataset(source, batch_size=batch_size, num_points=1024, views=views,
                      process_index=0, process_count=1)
    n_batches = math.ceil(len(source) * len(views) / batch_size)
    own_pool = None
    if path == "host" and pool is None and workers > 1:
        pool = own_pool = HostPool(workers)
    scorer: _HostScorer | _DeviceScorer = (
        _DeviceScorer(proto, use_icp, with_emd, batch_size) if path == "device"
        else _HostScorer(proto, use_icp, with_emd, pool))
    pending: list[tuple[_Pending, list[dict[str, Any]]]] = []

    def collect(limit: int) -> None:
        """Take the finished batches in order, waiting while more than ``limit`` are pending."""
        while pending and (len(pending) > limit or pending[0][0].ready()):
            handle, metas = pending.pop(0)
            for meta, cd, em in zip(metas, *handle.result(), strict=True):
                meta.update(cd=cd, emd=em)
                records[(meta["model"], meta["view"])] = meta
            if on_scored is not None:
                on_scored(metas)

    try:
        for batch in tqdm(ds, total=n_batches, disable=not progress, desc="eval",
                          dynamic_ncols=True):
            keep = [i for i in np.flatnonzero(batch["mask"])
                    if (str(batch["model_id"][i]), int(batch["view"][i])) not in records]
            if not keep:
                continue
            pred = np.asarray(jax.device_get(predict_fn(variables, batch["image"])))
            metas = [{"model": str(batch["model_id"][i]), "view": int(batch["view"][i]),
                      "category": layout.CATEGORIES[int(batch["category"][i])][1]} for i in keep]
            seeds = [_view_seed(seed, m["model"], m["view"]) for m in metas]
            pending.append((scorer.submit(pred[keep], np.asarray(batch["points"])[keep], seeds),
                            metas))
            collect(limit=2)  # the next batch is predicted while these are scored
        collect(limit=0)
    finally:
        if own_pool is not None:
            own_pool.close()
    _warn_fallbacks(scorer.fallbacks)
    results = _aggregate(records.values(), with_emd=with_emd, proto=proto, icp=use_icp)
    results.update(scoring=path, device_fallbacks=scorer.fallbacks)
    return results


def _aggregate(records: Iterable[dict[str, Any]], *, with_emd: bool, proto: protocol.Protocol,
               icp: bool) -> dict[str, Any]:
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_category[r["category"]].append(r)
    order = [name for _, name in layout.CATEGORIES]
    per_category = {}
    for name in sorted(by_category, key=order.index):
        rs = by_category[name]
        ok = [r for r in rs if math.isfinite(r["cd"]) and (not with_emd or math.isfinite(r["emd"]))]
        per_category[name] = {
            "cd": float(np.mean([r["cd"] for r in ok])) if ok else math.nan,
            "emd": (float(np.mean([r["emd"] for r in ok])) if ok else math.nan)
            if with_emd else None,
            "views": len(ok), "failed": len(rs) - len(ok)}
    cats = list(per_category.values())
    return {
        "per_category": per_category,
        "mean": {"cd": float(np.mean([v["cd"] for v in cats])) if cats else math.nan,
                 "emd": (float(np.mean([v["emd"] for v in cats])) if cats else math.nan)
                 if with_emd else None},
        "views": int(sum(v["views"] for v in cats)),
        "failed_views": int(sum(v["failed"] for v in cats)),
        "icp": icp, "protocol_name": proto.name, "protocol": proto.describe(icp),
    }


def quick_test_cd(predict_fn: Callable[..., Any], variables: Any, source: Any, *, views: int,
                  batch_size: int) -> float:
    """CD x100 (default protocol without ICP, no EMD, mean of categories) on the first ``views``
    views of every test model: the cheap signal that selects the best checkpoint during
    training (scored on the device on an accelerator, ``scoring="auto"``). NaN when a category
    has only failed views (a diverged model)."""
    results = evaluate_model(predict_fn, variables, source, batch_size=batch_size,
                             views=range(views), icp=False, with_emd=False)
    return results["mean"]["cd"]


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else ("failed" if not math.isfinite(x) else f"{x:.2f}")


def _scored_on(results: dict[str, Any]) -> str:
    if results["scoring"] == "host":
        return "Scored on the host (NumPy/SciPy, float64)."
    fallbacks = results.get("device_fallbacks", 0)
    return ("Scored on the device (JAX, float32)"
            + (f"; {fallbacks} view(s) on the host after the device's EMD hit its iteration "
               "bound." if fallbacks else "."))


def markdown_report(results: dict[str, Any], title: str) -> str:
    """Per-category table, the mean, failed views, the protocol in full and the references."""
    rows = [f"| {name} | {_fmt(v['cd'])} | {_fmt(v['emd'])} | {v['views']} | {v['failed']} |"
            for name, v in results["per_category"].items()]
    mean = results["mean"]
    lines = [
        f"## {title}", "",
        "| category | CD x100 | EMD x100 | views | failed views |", "|---|---|---|---|---|",
        *rows,
        f"| **mean of categories** | **{_fmt(mean['cd'])}** | **{_fmt(mean['emd'])}** | "
        f"{results['views']} | {results['failed_views']} |", "",
        results["protocol"], "",
        *([_scored_on(results), ""] if "scoring" in results else []),
        "Reference figures (x100, other protocols and real ShapeNet; not comparable to a "
        "synthetic-data run):", "",
        "| method | CD | EMD |", "|---|---|---|",
        *[f"| {name} | {cd:.2f} | {em:.2f} |" for name, cd, em in REFERENCES],
    ]
    return "\n".join(lines) + "\n"


def _read_partial(path: str, header: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """View records of an interrupted evaluation with the same ``header`` (else none)."""
    if not os.path.exists(path):
        return {}
    done = {}
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines or json.loads(lines[0]) != header:
        return {}
    for line in lines[1:]:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the interruption
            continue
        done[(r["model"], r["view"])] = r
    return done


def evaluate_workdir(
    workdir: str,
    *,
    split: str = "test",
    protocol_name: str = protocol.DEFAULT_PROTOCOL,
    icp: bool | None = None,
    which: str = "best",
    batch_size: int = 32,
    views: int | None = None,
    scoring: str = "auto",
    workers: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], str]:
    """Evaluate a run's checkpoint; write ``<stem>.json`` and ``<stem>.md``; return the
    results and the stem (:func:`recon_jax.rundir.eval_stem`).

    ``views``: score the first ``views`` renderings of every model (default all 24, the
    protocol). ``scoring``: :data:`SCORING`. ``workers``: host scoring processes (default: every
    CPU core), started before the checkpoint is restored. An interrupted evaluation of the same
    checkpoint and settings resumes from ``<stem>.partial.jsonl`` (on either scoring path).
    ``results["seconds"]``: the wall time of this call, start-up included.
    """
    start = time.perf_counter()
    if views is not None and not 1 <= views <= layout.NUM_VIEWS:
        raise UserError(f"views must be in [1, {layout.NUM_VIEWS}], got {views}")
    if split not in layout.SPLITS:
        raise UserError(f"split must be one of {layout.SPLITS}, got {split!r}")
    proto = protocol.get_protocol(protocol_name)
    use_icp = proto.icp if icp is None else icp
    path = resolve_scoring(scoring)
    workers = (os.cpu_count() or 1) if workers is None else workers
    stem = rundir.eval_stem(workdir, split, protocol=proto.name, icp=use_icp, checkpoint=which,
                            views=views)
    for ext in (".json", ".md", ".partial.jsonl"):
        rundir.ensure_writable_file(stem + ext, "evaluation output")
    source = sources.open_source(checkpoints.load_config(workdir).data, split)
    with contextlib.ExitStack() as stack:
        pool = (stack.enter_context(HostPool(workers)) if path == "host" and workers > 1
                else None)
        config, model, variables, step = checkpoints.load_variables(workdir, which=which)
        header = {"step": step, "checkpoint": which, "split": split, "protocol": proto.name,
                  "icp": use_icp, "views": views}
        partial = stem + ".partial.jsonl"
        done = _read_partial(partial, header)
        if not done:
            with open(partial, "w") as f:
                f.write(json.dumps(header) + "\n")
        elif progress:
            print(f"resuming the evaluation: {len(done)} views already scored ({partial})")

        def save(new: list[dict[str, Any]]) -> None:
            with open(partial, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in new)

        results = evaluate_model(
            make_predict_fn(model), variables, source, batch_size=batch_size,
            views=None if views is None else range(views), protocol_name=proto.name,
            icp=use_icp, seed=0, scoring=path, workers=workers, pool=pool, done=done,
            on_scored=save, progress=progress)
    results.update(step=step, split=split, checkpoint=which,
                   workers=workers if path == "host" else None,
                   seconds=time.perf_counter() - start, encoder=config.model.encoder,
                   views_per_model=views or layout.NUM_VIEWS)
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=2)
    title = (f"{config.model.encoder}, step {step} ({which} checkpoint), split {split}, "
             f"{proto.name}{' with ICP' if use_icp else ', no ICP'}"
             f"{f', first {views} views of each model' if views else ''}")
    with open(stem + ".md", "w") as f:
        f.write(markdown_report(results, title))
    os.remove(partial)
    return results, stem
