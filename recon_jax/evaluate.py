"""Scoring a trained run: every view of every test model under a named protocol.

The per-view protocol (bounding-box scaling, subsampling, ICP, unsquared CD, exact EMD, x100) is
:mod:`recon_jax.protocol`; the default is 3D-LMNet's with ICP. Here: predict on the devices in
batches, score the views in a process pool over the CPU cores (each view seeded by its model and
view index, so the result does not depend on batching, workers or interruptions), average per
category, then take the mean of the categories. A prediction with NaN/Inf is a failed view:
counted per category, never scored. Scores are appended to ``<stem>.partial.jsonl`` as they come,
so a killed evaluation resumes where it stopped; the finished table goes to ``<stem>.{json,md}``
(:func:`recon_jax.rundir.eval_stem`). Design notes: docs/design.md, "recon_jax.evaluate".
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import multiprocessing
import os
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from recon_jax import checkpoints, protocol, rundir
from recon_jax.data import layout, sources
from recon_jax.data.pipeline import eval_dataset
from recon_jax.errors import UserError
from recon_jax.models import Reconstructor

__all__ = [
    "REFERENCES", "make_predict_fn", "evaluate_model", "quick_test_cd", "markdown_report",
    "evaluate_workdir",
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


def make_predict_fn(model: Reconstructor) -> Callable[[Any, Any], jax.Array]:
    """Jitted ``(variables, images [B, H, W, 3]) -> points [B, num_points, 3]`` float32, with
    ``z = mu`` and BatchNorm running statistics (the model resizes the images itself)."""

    @jax.jit
    def predict(variables: Any, images: jax.Array) -> jax.Array:
        out = model.apply(variables, jnp.asarray(images, jnp.float32), train=False)
        return out.points.astype(jnp.float32)

    return predict


def _score_chunk(args: tuple) -> list[tuple[float, float | None]]:
    """Pool task: score views ``(pred, gt, seed)`` with one protocol (module-level: picklable)."""
    items, protocol_name, icp, with_emd = args
    return [protocol.score_view(p, g, protocol=protocol_name, icp=icp, seed=s, with_emd=with_emd)
            for p, g, s in items]


class _Scorer:
    """Scores chunks of views in the calling process (``workers <= 1``) or in a process pool;
    results come back in submission order."""

    def __init__(self, workers: int, protocol_name: str, icp: bool, with_emd: bool):
        self.settings = (protocol_name, icp, with_emd)
        self.pool = None
        if workers > 1:
            # spawn: forking a process that runs JAX's threads can deadlock
            self.pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, items: list) -> Any:
        task = (items, *self.settings)
        if self.pool is None:
            done: concurrent.futures.Future = concurrent.futures.Future()
            done.set_result(_score_chunk(task))
            return done
        return self.pool.submit(_score_chunk, task)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


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
    workers: int = 1,
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
      workers: processes scoring views (1: in this process).
      done: view records already scored (``(model, view) -> record``), e.g. from an interrupted
        run; their batches are not predicted again.
      on_scored: called with each batch's new view records (to save partial results).
    Returns:
      ``{"per_category": {name: {"cd", "emd", "views", "failed"}}, "mean": {"cd", "emd"},
      "views", "failed_views", "icp", "protocol"}``; CD/EMD x100 means over the finite views
      (EMD ``None`` without ``with_emd``).
    """
    proto = protocol.get_protocol(protocol_name)
    use_icp = proto.icp if icp is None else icp
    records = dict(done or {})
    views = list(range(layout.NUM_VIEWS)) if views is None else list(views)
    ds = eval_dataset(source, batch_size=batch_size, num_points=1024, views=views,
                      process_index=0, process_count=1)
    n_batches = math.ceil(len(source) * len(views) / batch_size)
    scorer = _Scorer(workers, proto.name, use_icp, with_emd)
    pending: list[tuple[Any, list[dict[str, Any]]]] = []

    def collect(block: bool) -> None:
        while pending and (block or pending[0][0].done()):
            future, metas = pending.pop(0)
            new = []
            for meta, (cd, em) in zip(metas, future.result(), strict=True):
                meta.update(cd=cd, emd=em)
                records[(meta["model"], meta["view"])] = meta
                new.append(meta)
            if on_scored is not None:
                on_scored(new)

    try:
        for batch in tqdm(ds, total=n_batches, disable=not progress, desc="eval",
                          dynamic_ncols=True):
            keep = [i for i in np.flatnonzero(batch["mask"])
                    if (str(batch["model_id"][i]), int(batch["view"][i])) not in records]
            if not keep:
                continue
            pred = np.asarray(jax.device_get(predict_fn(variables, batch["image"])))
            items, metas = [], []
            for i in keep:
                model_id, view = str(batch["model_id"][i]), int(batch["view"][i])
                items.append((pred[i], batch["points"][i], _view_seed(seed, model_id, view)))
                metas.append({"model": model_id, "view": view,
                              "category": layout.CATEGORIES[int(batch["category"][i])][1]})
            pending.append((scorer.submit(items), metas))
            collect(block=len(pending) > 2 * max(workers, 1))
        collect(block=True)
    finally:
        scorer.close()
    return _aggregate(records.values(), with_emd=with_emd, proto=proto, icp=use_icp)


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
    training. NaN when a category has only failed views (a diverged model)."""
    results = evaluate_model(predict_fn, variables, source, batch_size=batch_size,
                             views=range(views), icp=False, with_emd=False)
    return results["mean"]["cd"]


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else ("failed" if not math.isfinite(x) else f"{x:.2f}")


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
    workers: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], str]:
    """Evaluate a run's checkpoint; write ``<stem>.json`` and ``<stem>.md``; return the
    results and the stem (:func:`recon_jax.rundir.eval_stem`).

    ``views``: score the first ``views`` renderings of every model (default all 24, the
    protocol). ``workers``: scoring processes (default: every CPU core). An interrupted
    evaluation of the same checkpoint and settings resumes from ``<stem>.partial.jsonl``.
    """
    if views is not None and not 1 <= views <= layout.NUM_VIEWS:
        raise UserError(f"views must be in [1, {layout.NUM_VIEWS}], got {views}")
    if split not in layout.SPLITS:
        raise UserError(f"split must be one of {layout.SPLITS}, got {split!r}")
    proto = protocol.get_protocol(protocol_name)
    use_icp = proto.icp if icp is None else icp
    stem = rundir.eval_stem(workdir, split, protocol=proto.name, icp=use_icp, checkpoint=which,
                            views=views)
    for ext in (".json", ".md", ".partial.jsonl"):
        rundir.ensure_writable_file(stem + ext, "evaluation output")
    config, model, variables, step = checkpoints.load_variables(workdir, which=which)
    source = sources.open_source(config.data, split)
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

    start = time.time()
    results = evaluate_model(
        make_predict_fn(model), variables, source, batch_size=batch_size,
        views=None if views is None else range(views), protocol_name=proto.name, icp=use_icp,
        seed=0, workers=(os.cpu_count() or 1) if workers is None else workers, done=done,
        on_scored=save, progress=progress)
    results.update(step=step, split=split, checkpoint=which, seconds=time.time() - start,
                   encoder=config.model.encoder, views_per_model=views or layout.NUM_VIEWS)
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=2)
    title = (f"{config.model.encoder}, step {step} ({which} checkpoint), split {split}, "
             f"{proto.name}{' with ICP' if use_icp else ', no ICP'}"
             f"{f', first {views} views of each model' if views else ''}")
    with open(stem + ".md", "w") as f:
        f.write(markdown_report(results, title))
    os.remove(partial)
    return results, stem
