"""Drawing point clouds with matplotlib: one 3-D scatter used by every figure of the package.

Clouds are in the object frame of ShapeNet (y up). :func:`scatter_cloud` maps it to
matplotlib's z-up axes by the rotation ``(x, y, z) -> (x, -z, y)`` (a rotation, so nothing is
mirrored), colours points by height and fixes a cube of side ``2 * lim`` around the origin.
matplotlib is imported by the caller (it is part of the ``[train]`` extra); this module only
draws on the axes it is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["scatter_cloud", "normalized"]


def normalized(points: np.ndarray) -> np.ndarray:
    """``[N, 3]`` centred on its bounding box, longest side 1 (as the evaluation protocol)."""
    points = np.asarray(points, np.float64)
    lo, hi = points.min(0), points.max(0)
    return (points - (lo + hi) / 2) / max(float((hi - lo).max()), 1e-12)


def scatter_cloud(ax: Any, points: np.ndarray, *, elev: float = 20.0, azim: float = 30.0,
                  point_size: float = 1.0, lim: float = 0.5, zoom: float = 1.0,
                  title: str | None = None, title_size: float = 9) -> None:
    """Draw ``points`` ``[N, 3]`` (object frame, y up) on the 3-D axes ``ax``."""
    points = np.asarray(points)
    ax.scatter(points[:, 0], -points[:, 2], points[:, 1], s=point_size, c=points[:, 1],
               cmap="viridis", linewidths=0, depthshade=False)
    for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        setter(-lim, lim)
    ax.set_box_aspect((1, 1, 1), zoom=zoom)
    ax.view_init(elev=elev, azim=azim)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=title_size)
