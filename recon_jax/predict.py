"""Point clouds (PLY) and pictures (PNG) of a trained run's predictions for arbitrary images.

Images are read and brought to the network input exactly as the pipeline prepares ShapeNet
views (:func:`recon_jax.data.pipeline.load_image_file`: a 137x137 render is cropped as in
training, any other size centre-cropped and resized to 128x128, transparency composited over
the pipeline's background). Clouds are written in the object frame (y up), float32.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recon_jax import checkpoints, evaluate, rundir, viz
from recon_jax.data.pipeline import load_image_file
from recon_jax.errors import UserError

__all__ = ["write_ply", "save_figure", "output_names", "predict_files"]


def write_ply(path: str, points: np.ndarray) -> None:
    """Write ``points`` ``[N, 3]`` as an ASCII PLY file (vertex x, y, z as float)."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape [N, 3], got {points.shape}")
    header = ("ply\nformat ascii 1.0\ncomment recon_jax prediction (object frame, y up)\n"
              f"element vertex {len(points)}\nproperty float x\nproperty float y\n"
              "property float z\nend_header\n")
    with open(path, "w") as f:
        f.write(header)
        np.savetxt(f, points, fmt="%.6f")


def save_figure(path: str, image: np.ndarray, points: np.ndarray, title: str = "") -> None:
    """Input image beside the predicted cloud seen from three viewpoints (PNG)."""
    fig = Figure(figsize=(12, 3.2))
    FigureCanvasAgg(fig)  # no pyplot state: safe in a notebook with another backend
    ax = fig.add_subplot(1, 4, 1)
    ax.imshow(np.clip(image, 0, 1))
    ax.set_title(title or "input")
    ax.axis("off")
    lim = float(np.abs(points).max()) or 1.0
    for k, (elev, azim) in enumerate(((20, 30), (20, 120), (80, 0))):
        viz.scatter_cloud(fig.add_subplot(1, 4, k + 2, projection="3d"), points, elev=elev,
                          azim=azim, lim=lim, title=f"elev {elev}, azim {azim}",
                          title_size=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def output_names(paths: list[str]) -> list[str]:
    """Output file stems for ``paths``: the file names without extension, or, when two share a
    name (``*/rendering/00.png``), the paths below their common folder joined by ``_``."""
    names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(names)) == len(names):
        return names
    absolute = [os.path.abspath(p) for p in paths]
    common = os.path.commonpath([os.path.dirname(p) for p in absolute])
    return [os.path.splitext(os.path.relpath(p, common))[0].replace(os.sep, "_")
            for p in absolute]


def predict_files(workdir: str, images: list[str], out_dir: str, *, which: str = "best"
                  ) -> list[tuple[str, str]]:
    """Predict a cloud for each image file; returns the (PLY, PNG) paths written.

    Every image is read and the output directory checked before the model is loaded.
    """
    if not images:
        raise UserError("no image files given")
    arrays = [load_image_file(p) for p in images]
    rundir.ensure_writable_dir(out_dir)
    _, model, variables, _ = checkpoints.load_variables(workdir, which=which)
    points = np.asarray(evaluate.make_predict_fn(model)(variables, np.stack(arrays)))
    written = []
    for path, name, image, cloud in zip(images, output_names(images), arrays, points,
                                        strict=True):
        stem = os.path.join(out_dir, name)
        write_ply(stem + ".ply", cloud)
        save_figure(stem + ".png", image, cloud, title=os.path.basename(path))
        written.append((stem + ".ply", stem + ".png"))
    return written
