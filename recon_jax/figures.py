"""Pictures of reconstructions: input image | ground truth | prediction, and an interactive view.

* :func:`test_examples` picks test objects of several categories (one view each) from a run's
  dataset (:func:`figure_categories`: which categories by default); :func:`predict_examples`
  adds the run's predictions and their scores.
* :func:`plot_reconstructions` draws them as a static matplotlib grid (one row per object);
  :func:`figure_of_run` does all three (``recon-jax figure --workdir RUN --out FIG.png``).
* :func:`interactive_view` is a plotly figure (rotate and zoom in a browser or notebook);
  plotly is an optional dependency (``pip install 'recon-jax[notebook]'``).

Clouds are drawn in the object frame (y up), each normalised like the evaluation protocol
(bounding box centred, longest side 1), so ground truth and prediction share axes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from recon_jax import checkpoints, evaluate, protocol, rundir, viz
from recon_jax.data import layout, sources
from recon_jax.data.pipeline import eval_dataset
from recon_jax.errors import UserError

__all__ = [
    "DEFAULT_CATEGORIES",
    "figure_categories",
    "split_categories",
    "test_examples",
    "predict_examples",
    "plot_reconstructions",
    "interactive_view",
    "figure_of_run",
]

#: Categories of the default figure: a spread of shapes (thin parts, boxes, vehicles).
DEFAULT_CATEGORIES = ("airplane", "chair", "car", "lamp", "table", "vessel")


def split_categories(root: str, split: str = "test") -> list[str]:
    """Names of the categories with at least one model in ``root``'s ``split`` (its split file)."""
    path = layout.split_path(root, split)
    try:
        with open(path) as f:
            synsets = {s for s, models in json.load(f).items() if models}
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read the split file ({e})") from None
    return [name for synset, name in layout.CATEGORIES if synset in synsets]


def figure_categories(root: str, count: int = len(DEFAULT_CATEGORIES)) -> list[str]:
    """Up to ``count`` test categories of ``root``: those of :data:`DEFAULT_CATEGORIES` it has,
    then others in the 3D-R2N2 order."""
    present = split_categories(root)
    chosen = [c for c in DEFAULT_CATEGORIES if c in present]
    chosen += [c for c in present if c not in chosen]
    return chosen[:count]


def test_examples(
    source: Any, categories: Sequence[str], *, per_category: int = 1, view: int = 0,
    num_points: int = 1024,
) -> dict[str, np.ndarray]:
    """The first ``per_category`` models of each category in ``source``, seen from ``view``.

    Returns numpy arrays in the order of ``categories``: ``image`` ``[K, 128, 128, 3]``,
    ``points`` ``[K, num_points, 3]`` ground truth, ``category`` ``[K]`` names, ``model_id``.
    Raises ``ValueError`` naming a category with fewer than ``per_category`` models.
    """
    names = {name: [] for name in categories}
    for name in names:
        if name not in {n for _, n in layout.CATEGORIES}:
            raise UserError(f"unknown category {name!r}; expected one of "
                             f"{[n for _, n in layout.CATEGORIES]}")
    ds = eval_dataset(source, batch_size=16, num_points=num_points, views=(view,),
                      process_index=0, process_count=1)
    for batch in ds:
        for i in np.flatnonzero(batch["mask"]):
            name = layout.CATEGORIES[int(batch["category"][i])][1]
            if name in names and len(names[name]) < per_category:
                names[name].append({k: np.asarray(batch[k][i]) for k in
                                    ("image", "points", "model_id")})
        if all(len(v) == per_category for v in names.values()):
            break
    short = {k: len(v) for k, v in names.items() if len(v) < per_category}
    if short:
        raise UserError(f"the test split has fewer than {per_category} model(s) of: {short}")
    items = [(name, item) for name, found in names.items() for item in found]
    return {
        "image": np.stack([it["image"] for _, it in items]),
        "points": np.stack([it["points"] for _, it in items]),
        "category": np.array([name for name, _ in items]),
        "model_id": np.array([str(it["model_id"]) for _, it in items]),
    }


def predict_examples(workdir: str, examples: dict[str, np.ndarray], *, which: str = "best",
                     ) -> dict[str, np.ndarray]:
    """``examples`` plus ``prediction`` ``[K, P, 3]`` and per-object ``cd``/``emd`` (x100, the
    default evaluation protocol of :mod:`recon_jax.protocol`) from the run in ``workdir``."""
    _, model, variables, _ = checkpoints.load_variables(workdir, which=which)
    pred = np.asarray(evaluate.make_predict_fn(model)(variables, examples["image"]))
    cd, em = protocol.score_views(pred, examples["points"])
    return {**examples, "prediction": pred, "cd": np.asarray(cd), "emd": np.asarray(em)}


def plot_reconstructions(
    examples: dict[str, np.ndarray], *, elev: float = 20.0, azim: float = 30.0,
    point_size: float = 2.0, title: str | None = None,
) -> Any:
    """A matplotlib figure, one row per object: input image | ground truth | prediction.

    ``examples``: the output of :func:`predict_examples` (``image``, ``points``,
    ``prediction``, ``category``; ``cd``/``emd`` label the prediction when present).
    """
    k = len(examples["image"])
    fig = plt.figure(figsize=(7.5, 2.5 * k))
    for row in range(k):
        ax = fig.add_subplot(k, 3, 3 * row + 1)
        ax.imshow(np.clip(examples["image"][row], 0, 1))
        ax.set_title(f"{examples['category'][row]}: input", fontsize=9)
        ax.axis("off")
        label = "prediction"
        if "cd" in examples:
            label += f" (CD {examples['cd'][row]:.2f}, EMD {examples['emd'][row]:.2f})"
        for col, (key, name) in enumerate((("points", "ground truth"), ("prediction", label))):
            viz.scatter_cloud(fig.add_subplot(k, 3, 3 * row + 2 + col, projection="3d"),
                              viz.normalized(examples[key][row]), elev=elev, azim=azim,
                              point_size=point_size, title=name)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def interactive_view(examples: dict[str, np.ndarray], index: int = 0) -> Any:
    """A plotly figure of object ``index``: ground truth and prediction side by side (3D)."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError as e:
        raise ImportError("interactive_view needs plotly: pip install 'recon-jax[notebook]'"
                          ) from e
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}, {"type": "scene"}]],
                        subplot_titles=("ground truth", "prediction"))
    for col, key in enumerate(("points", "prediction"), 1):
        pts = viz.normalized(examples[key][index])
        fig.add_trace(go.Scatter3d(
            x=pts[:, 0], y=pts[:, 2], z=pts[:, 1], mode="markers",
            marker={"size": 1.5, "color": pts[:, 1], "colorscale": "Viridis"},
            showlegend=False), row=1, col=col)
    axis = {"range": [-0.5, 0.5], "visible": False}
    scene = {"xaxis": axis, "yaxis": axis, "zaxis": axis, "aspectmode": "cube"}
    fig.update_layout(scene=scene, scene2=scene, height=420, margin={"l": 0, "r": 0, "t": 30,
                                                                      "b": 0},
                      title=str(examples["category"][index]))
    return fig


def figure_of_run(
    workdir: str, out: str, *, categories: Sequence[str] | None = None, per_category: int = 1,
    view: int = 0, which: str = "best",
) -> str:
    """Write ``out`` (PNG): input | ground truth | prediction for test objects of the run.

    ``categories``: one row each (default: :func:`figure_categories` of the run's dataset).
    The output path is checked writable before any work.
    """
    rundir.ensure_writable_file(out, "figure file")
    config = checkpoints.load_config(workdir)
    source = sources.open_source(config.data, "test")
    categories = categories or figure_categories(sources.data_root(config.data))
    examples = test_examples(source, categories, per_category=per_category, view=view)
    examples = predict_examples(workdir, examples, which=which)
    fig = plot_reconstructions(examples, title=os.path.basename(os.path.normpath(workdir)))
    FigureCanvasAgg(fig)  # whatever pyplot's backend, write the PNG with Agg
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
