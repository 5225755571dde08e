"""``recon-jax eval``: the 3D-LMNet protocol (SPEC section 6) on every view of every test model.

The per-view steps (bounding-box scaling, subsampling, optional ICP, unsquared CD, exact EMD,
x100) are in :mod:`recon_jax.protocol`. Here: run the model over the evaluation stream, score
each view, average per category, then take the mean of the categories (as the field's tables
do), and write ``eval_<split>[_icp].json`` and ``.md`` (with the reference figures) into the
work directory.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from typing import Any

import numpy as np
from tqdm import tqdm

from recon_jax import protocol
from recon_jax.data import layout

__all__ = ["evaluate_model", "markdown_report", "evaluate_workdir", "configure_parser", "run"]

#: Reference figures (x100, CD / EMD), SPEC section 6. Protocols differ between papers.
REFERENCES: tuple[tuple[str, float, float], ...] = (
    ("PSGN (Kim & Lee Table 2)", 9.11, 12.29),
    ("3D-LMNet (Kim & Lee Table 2)", 8.91, 9.70),
    ("3D-ReconstNet (Kim & Lee Table 2)", 6.26, 6.20),
    ("Kim & Lee, proposed (Table 2)", 5.87, 5.81),
    ("PSGN (3D-LMNet paper)", 5.62, 7.76),
    ("3D-LMNet (3D-LMNet paper)", 5.40, 7.00),
)

PROTOCOL_TEXT = (
    "Protocol (3D-LMNet metrics.py): per test view, predict the cloud (z = mu); scale the "
    "prediction and the 1024-point ground truth each on its own so the axis-aligned bounding "
    "box is centred at the origin with longest side 1; take 1024 random predicted points (a "
    "model with P < 1024 outputs keeps its P points against P random ground-truth points); "
    "{icp}; CD = mean_g min_p ||g-p|| + mean_p min_g ||p-g|| (unsquared); EMD = mean_i "
    "||p_i - g_phi(i)|| over the exact optimal bijection (Hungarian; 3D-LMNet used an "
    "approximate auction); both x100; averaged per category, then the mean of the categories."
)


def evaluate_model(
    predict_fn: Any,
    variables: Any,
    source: Any,
    *,
    batch_size: int = 32,
    views: list[int] | None = None,
    use_icp: bool = False,
    with_emd: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Score ``source`` (a test split) view by view.

    Args:
      predict_fn: ``(variables, images [B, 128, 128, 3]) -> points [B, P, 3]``.
      source: record source of :mod:`recon_jax.data.pipeline` (TFDS data source or reader).
      views: views per model to evaluate (default all).
      use_icp: align each prediction to its ground truth with rigid ICP before scoring.
      with_emd: also compute the exact EMD (the slow part).
      seed: seeds the random 1024-point subsample of each prediction.
    Returns:
      ``{"per_category": {name: {"cd", "emd", "views"}}, "mean": {"cd", "emd"}, "views": int}``
      with CD/EMD x100 (EMD ``None`` without ``with_emd``).
    """
    from recon_jax.data.pipeline import eval_dataset

    rng = np.random.default_rng(seed)
    ds = eval_dataset(source, batch_size=batch_size, num_points=1024, views=views,
                      process_index=0, process_count=1)
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    n_batches = int(np.ceil(len(source) * (len(views) if views else layout.NUM_VIEWS)
                            / batch_size))
    for batch in tqdm(ds, total=n_batches, disable=not progress, desc="eval", leave=False):
        pred = np.asarray(predict_fn(variables, batch["image"]))
        keep = np.flatnonzero(batch["mask"])
        pairs = [protocol.prepare_pair(pred[i], batch["points"][i], rng, use_icp=use_icp)
                 for i in keep]
        if not pairs:
            continue
        p = np.stack([a for a, _ in pairs])
        g = np.stack([b for _, b in pairs])
        cd, em = protocol.cd_emd(p, g, with_emd=with_emd)
        for j, i in enumerate(keep):
            s = sums[layout.CATEGORIES[int(batch["category"][i])][1]]
            s[0] += cd[j]
            s[1] += em[j] if with_emd else 0.0
            s[2] += 1
    per_category = {
        name: {"cd": s[0] / s[2], "emd": (s[1] / s[2]) if with_emd else None, "views": s[2]}
        for name, s in sorted(sums.items(), key=lambda kv: _category_order(kv[0]))
    }
    mean_cd = float(np.mean([v["cd"] for v in per_category.values()]))
    mean_emd = (float(np.mean([v["emd"] for v in per_category.values()]))
                if with_emd else None)
    return {
        "per_category": per_category,
        "mean": {"cd": mean_cd, "emd": mean_emd},
        "views": int(sum(s[2] for s in sums.values())),
        "icp": use_icp,
    }


def _category_order(name: str) -> int:
    return [n for _, n in layout.CATEGORIES].index(name)


def markdown_report(results: dict[str, Any], title: str) -> str:
    """Per-category table, the mean, the protocol in full and the reference figures."""
    rows = [f"| {name} | {v['cd']:.2f} | {v['emd']:.2f} | {v['views']} |"
            for name, v in results["per_category"].items()]
    mean = results["mean"]
    icp = "then align it with rigid ICP" if results["icp"] else "no ICP alignment"
    lines = [
        f"## {title}",
        "",
        "| category | CD x100 | EMD x100 | views |",
        "|---|---|---|---|",
        *rows,
        f"| **mean of categories** | **{mean['cd']:.2f}** | **{mean['emd']:.2f}** | "
        f"{results['views']} |",
        "",
        PROTOCOL_TEXT.format(icp=icp),
        "",
        "Reference figures (x100, other protocols and real ShapeNet; not comparable to a "
        "synthetic-data run):",
        "",
        "| method | CD | EMD |",
        "|---|---|---|",
        *[f"| {name} | {cd:.2f} | {em:.2f} |" for name, cd, em in REFERENCES],
    ]
    return "\n".join(lines) + "\n"


def evaluate_workdir(
    workdir: str,
    *,
    split: str = "test",
    use_icp: bool = False,
    which: str = "best",
    batch_size: int = 32,
    views: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint and write ``eval_<split>[_icp][_init].{json,md}``.

    ``views``: score the first ``views`` renderings of every model (default: all 24, the
    protocol; fewer for a quick look at a large test set). The JSON records it as
    ``views_per_model``.
    """
    from recon_jax import inference

    config, model, variables, step = inference.load_variables(workdir, which=which)
    source = inference.open_source(config, split)
    predict = inference.make_predict_fn(model, config.image_size)
    start = time.time()
    if views is not None and not 1 <= views <= layout.NUM_VIEWS:
        raise ValueError(f"views must be in [1, {layout.NUM_VIEWS}], got {views}")
    results = evaluate_model(predict, variables, source, batch_size=batch_size,
                             views=None if views is None else list(range(views)),
                             use_icp=use_icp, progress=progress)
    results.update(step=step, split=split, checkpoint=which, seconds=time.time() - start,
                   encoder=config.encoder, views_per_model=views or layout.NUM_VIEWS)
    stem = _stem(workdir, split, use_icp, which)
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=2)
    title = (f"{config.encoder}, step {step} ({which} checkpoint), split {split}"
             f"{', ICP' if use_icp else ''}"
             f"{f', first {views} views of each model' if views else ''}")
    with open(stem + ".md", "w") as f:
        f.write(markdown_report(results, title))
    return results


def _stem(workdir: str, split: str, use_icp: bool, which: str) -> str:
    """``workdir/eval_<split>[_icp][_init]`` (the best and latest checkpoints share a name)."""
    suffix = ("_icp" if use_icp else "") + ("_init" if which == "init" else "")
    return os.path.join(workdir, f"eval_{split}{suffix}")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="work directory of a `train` run")
    parser.add_argument("--split", default="test", choices=layout.SPLITS)
    parser.add_argument("--icp", action="store_true",
                        help="also report the scores after rigid ICP alignment (3D-LMNet does)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest", "init"),
                        help="init: the untrained model (the baseline a run must beat)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--views", type=int, default=None,
                        help="score only the first N views of each model (default: all 24, "
                        "the protocol)")


def run(args: argparse.Namespace) -> int:
    for use_icp in (False, True) if args.icp else (False,):
        results = evaluate_workdir(args.workdir, split=args.split, use_icp=use_icp,
                                   which=args.checkpoint, batch_size=args.batch_size,
                                   views=args.views)
        stem = _stem(args.workdir, args.split, use_icp, args.checkpoint)
        with open(stem + ".md") as f:
            print(f.read())
        print(f"wrote {stem}.json and {stem}.md ({results['views']} views, "
              f"{results['seconds']:.0f} s)")
    return 0
