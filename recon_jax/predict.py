"""``recon-jax predict``: point clouds (PLY) and figures (PNG) for arbitrary images.

Images are brought to the training input the same way for every source: a 137x137 render
(the 3D-R2N2 size) is cropped ``[4:-5, 4:-5]`` as in training; any other size is centre-cropped
to a square and resized to 128x128 (antialiased). Transparency is composited over the
pipeline's background (white), and values scaled to ``[0, 1]``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from recon_jax.data import layout

__all__ = [
    "load_image", "write_ply", "save_figure", "output_names", "predict_files", "configure_parser",
    "run",
]


def load_image(path: str) -> np.ndarray:
    """Read ``path`` as the network's input: ``float32 [128, 128, 3]`` in ``[0, 1]``.

    Raises:
      ValueError: the file is missing or not an image Pillow can read (names the file).
    """
    from recon_jax.data.pipeline import BACKGROUND

    try:
        with Image.open(path) as im:
            im.load()
            rgba = im.convert("RGBA")
    except (FileNotFoundError, IsADirectoryError) as e:
        raise ValueError(f"{path}: cannot open image ({e.strerror})") from e
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: not a readable image file ({e})") from e
    w, h = rgba.size
    if (w, h) == (layout.RENDER_SIZE, layout.RENDER_SIZE):
        a, b = layout.CROP
        arr = np.asarray(rgba)[a:b, a:b]
    else:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        square = rgba.crop((left, top, left + side, top + side))
        arr = np.asarray(square.resize((layout.IMAGE_SIZE,) * 2, Image.Resampling.LANCZOS))
    arr = arr.astype(np.float32) / 255.0
    rgb, alpha = arr[..., :3], arr[..., 3:]
    return rgb * alpha + BACKGROUND * (1.0 - alpha)


def write_ply(path: str, points: np.ndarray) -> None:
    """Write ``points`` ``[N, 3]`` as an ASCII PLY file (vertex x, y, z as float)."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape [N, 3], got {points.shape}")
    header = (
        "ply\nformat ascii 1.0\ncomment recon_jax prediction (object frame, y up)\n"
        f"element vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\n"
        "end_header\n"
    )
    with open(path, "w") as f:
        f.write(header)
        np.savetxt(f, points, fmt="%.6f")


def save_figure(path: str, image: np.ndarray, points: np.ndarray, title: str = "") -> None:
    """Input image beside the predicted cloud seen from three viewpoints (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 3.2))
    ax = fig.add_subplot(1, 4, 1)
    ax.imshow(np.clip(image, 0, 1))
    ax.set_title(title or "input")
    ax.axis("off")
    lim = float(np.abs(points).max()) or 1.0
    for k, (elev, azim) in enumerate(((20, 30), (20, 120), (80, 0))):
        ax = fig.add_subplot(1, 4, k + 2, projection="3d")
        # Object frame is y up: plot (x, z, y) so that y is the vertical axis.
        ax.scatter(points[:, 0], points[:, 2], points[:, 1], s=1, c=points[:, 1], cmap="viridis")
        ax.view_init(elev=elev, azim=azim)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_zlim(-lim, lim)
        ax.set_box_aspect((1, 1, 1))
        ax.set_axis_off()
        ax.set_title(f"elev {elev}, azim {azim}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    """Predict a cloud for each image file; returns the (PLY, PNG) paths written."""
    from recon_jax import inference

    arrays = [load_image(p) for p in images]  # fail on a bad file before loading the model
    config, model, variables, _ = inference.load_variables(workdir, which=which)
    predict = inference.make_predict_fn(model, config.image_size)
    points = np.asarray(predict(variables, np.stack(arrays)))
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for path, name, image, cloud in zip(images, output_names(images), arrays, points,
                                        strict=True):
        stem = os.path.join(out_dir, name)
        write_ply(stem + ".ply", cloud)
        save_figure(stem + ".png", image, cloud, title=os.path.basename(path))
        written.append((stem + ".ply", stem + ".png"))
    return written


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="work directory of a `train` run")
    parser.add_argument("images", nargs="+", help="image files (any size; PNG with alpha ok)")
    parser.add_argument("--out", required=True, help="output directory for .ply and .png")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest"))


def run(args: argparse.Namespace) -> int:
    for ply, png in predict_files(args.workdir, args.images, args.out, which=args.checkpoint):
        print(f"wrote {ply} and {png}")
    return 0
