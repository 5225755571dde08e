"""PyTorch twin of :class:`recon_jax.models.Reconstructor`, for ``experiments/bench_train.py``.

What a user would write in PyTorch instead of recon_jax: the same network layer for layer (the
module names match the Flax parameter tree, so :func:`load_flax_variables` copies weights by
name) and the same squared Chamfer loss in the two forms a PyTorch user writes (:data:`CHAMFER`:
``torch.cdist`` squared then ``min``, or ``|x|^2 + |y|^2 - 2 x.y`` with ``baddbmm``; both hold
the ``[B, N, M]`` distances). Tensors are NCHW, images ``[B, 3, H, W]`` already at the model's
``image_size`` (the twin does not resize). PyTorch is not a dependency of recon_jax: this module
imports ``torch`` at the top. Layer correspondence and the one known difference (PyTorch's
running variance is unbiased): docs/design.md, "recon_jax.models".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recon_jax.models import EFFICIENT_SMALL

__all__ = [
    "ConvBN",
    "BasicBlock",
    "EfficientExtractor",
    "ResNetExtractor",
    "LatentHead",
    "PointDecoder",
    "Reconstructor",
    "make_twin",
    "CHAMFER",
    "chamfer_distance",
    "chamfer_distance_mm",
    "flax_tensors",
    "load_flax_variables",
    "param_count",
]

RESNET_STAGES = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}


class ConvBN(nn.Module):
    """``k x k`` conv (no bias) + BatchNorm2d + optional ReLU: ``[B, C, H, W]`` ->
    ``[B, features, ceil(H / s), ceil(W / s)]``."""

    def __init__(self, in_features: int, features: int, kernel_size: int = 3, strides: int = 1,
                 relu: bool = True) -> None:
        super().__init__()
        self.kernel_size, self.strides, self.relu = kernel_size, strides, relu
        self.lo = (kernel_size - 1) // 2
        self.hi = kernel_size - 1 - self.lo
        # Odd k: symmetric padding inside the convolution. Even k: lo padding inside, the extra
        # trailing row/column added in forward() only where it is read.
        self.conv = nn.Conv2d(in_features, features, kernel_size, stride=strides,
                              padding=self.lo, bias=False)
        self.bn = nn.BatchNorm2d(features, eps=1e-5, momentum=0.1)

    def _extra_pad(self, n: int) -> int:
        """Trailing zeros needed on a side of ``n`` so that the output has ``ceil(n / s)``."""
        with_lo = (n + 2 * self.lo - self.kernel_size) // self.strides + 1
        return 0 if with_lo == math.ceil(n / self.strides) else self.hi - self.lo

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hi != self.lo:
            ph, pw = self._extra_pad(x.shape[2]), self._extra_pad(x.shape[3])
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph))
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


def _same_avg_pool(x: torch.Tensor, s: int) -> torch.Tensor:
    """Flax ``avg_pool(window=stride=s, padding='SAME', count_include_pad=False)``, NCHW."""
    h, w = x.shape[2:]
    ph, pw = math.ceil(h / s) * s - h, math.ceil(w / s) * s - w
    if ph == 0 and pw == 0:
        return F.avg_pool2d(x, s, s)
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    total = F.avg_pool2d(F.pad(x, pad), s, s)
    count = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), pad), s, s)
    return total / count


class EfficientExtractor(nn.Module):
    """Twin of :class:`recon_jax.models.efficient.EfficientExtractor` (the same fields and
    defaults: the paper's network)."""

    def __init__(self, stem_features: int = 32, full_res_layers: int = 3,
                 stage_features: Sequence[int] = (64, 128, 256), stage_depth: int = 1,
                 down_kernel: int = 3, fuse_kernel: int = 3, feature_dim: int = 1000) -> None:
        super().__init__()
        self.total_stride = 2 ** len(stage_features)
        self.stem = ConvBN(3, stem_features, 3, 1)
        self.full_res_names = [f"full_res{i}" for i in range(full_res_layers)]
        for name in self.full_res_names:
            setattr(self, name, ConvBN(stem_features, stem_features, 3, 1))
        self.stage_names = []
        c = stem_features
        for i, features in enumerate(stage_features):
            for j in range(stage_depth):
                k, s = (down_kernel, 2) if j == 0 else (3, 1)
                name = f"stage{i + 1}_conv{j}"
                setattr(self, name, ConvBN(c, features, k, s))
                self.stage_names.append(name)
                c = features
        self.fuse = ConvBN(c + stem_features, stage_features[-1], fuse_kernel, 1)
        self.fc = nn.Linear(stage_features[-1], feature_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, feature_dim]``."""
        stem = self.stem(images)
        x = stem
        for name in self.full_res_names + self.stage_names:
            x = getattr(self, name)(x)
        x = torch.cat([x, _same_avg_pool(stem, self.total_stride)], dim=1)
        x = self.fuse(x)
        return self.fc(x.mean(dim=(2, 3)))


class BasicBlock(nn.Module):
    """Twin of :class:`recon_jax.models.resnet.BasicBlock`."""

    def __init__(self, in_features: int, features: int, strides: int = 1) -> None:
        super().__init__()
        self.conv_bn1 = ConvBN(in_features, features, 3, strides)
        self.conv_bn2 = ConvBN(features, features, 3, 1, relu=False)
        self.shortcut = (ConvBN(in_features, features, 1, strides, relu=False)
                         if strides != 1 or in_features != features else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_bn2(self.conv_bn1(x))
        if self.shortcut is not None:
            x = self.shortcut(x)
        return F.relu(x + y)


class ResNetExtractor(nn.Module):
    """Twin of :class:`recon_jax.models.resnet.ResNetExtractor` (torchvision's layout)."""

    def __init__(self, stage_sizes: Sequence[int] = (2, 2, 2, 2), num_filters: int = 64,
                 feature_dim: int = 1000) -> None:
        super().__init__()
        self.stem = ConvBN(3, num_filters, 7, 2)
        self.block_names = []
        c = num_filters
        for i, num_blocks in enumerate(stage_sizes):
            for j in range(num_blocks):
                strides = 2 if i > 0 and j == 0 else 1
                name = f"layer{i + 1}_block{j}"
                setattr(self, name, BasicBlock(c, num_filters * 2**i, strides))
                self.block_names.append(name)
                c = num_filters * 2**i
        self.fc = nn.Linear(c, feature_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, feature_dim]``."""
        x = F.max_pool2d(self.stem(images), 3, 2, padding=1)
        for name in self.block_names:
            x = getattr(self, name)(x)
        return self.fc(x.mean(dim=(2, 3)))


class LatentHead(nn.Module):
    """Twin of :class:`recon_jax.models.latent.LatentHead`."""

    def __init__(self, feature_dim: int = 1000, latent_dim: int = 100) -> None:
        super().__init__()
        self.mu = nn.Linear(feature_dim, latent_dim)
        self.logvar = nn.Linear(feature_dim, latent_dim)

    def forward(self, features: torch.Tensor, deterministic: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, F]`` -> ``(mu, logvar, z)``, each ``[B, latent_dim]``."""
        mu, logvar = self.mu(features), self.logvar(features)
        if deterministic:
            return mu, logvar, mu
        return mu, logvar, mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class PointDecoder(nn.Module):
    """Twin of :class:`recon_jax.models.decoder.PointDecoder`."""

    def __init__(self, latent_dim: int = 100, num_points: int = 2048,
                 hidden: Sequence[int] = (512, 1024), negative_slope: float = 0.01) -> None:
        super().__init__()
        self.num_points, self.negative_slope = num_points, negative_slope
        self.hidden_names = []
        c = latent_dim
        for i, width in enumerate(hidden):
            setattr(self, f"hidden{i}", nn.Linear(c, width))
            self.hidden_names.append(f"hidden{i}")
            c = width
        self.out = nn.Linear(c, 3 * num_points)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, latent_dim]`` -> ``[B, num_points, 3]``."""
        x = z
        for name in self.hidden_names:
            x = F.leaky_relu(getattr(self, name)(x), self.negative_slope)
        return self.out(x).reshape(x.shape[0], self.num_points, 3)


class Reconstructor(nn.Module):
    """Twin of :class:`recon_jax.models.reconstructor.Reconstructor`: image -> point cloud."""

    def __init__(self, extractor: nn.Module, feature_dim: int = 1000, latent_dim: int = 100,
                 num_points: int = 2048) -> None:
        super().__init__()
        self.extractor = extractor
        self.latent = LatentHead(feature_dim, latent_dim)
        self.decoder = PointDecoder(latent_dim, num_points)

    def forward(self, images: torch.Tensor, deterministic: bool | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, 3, H, W]`` -> ``(points [B, N, 3], mu, logvar)``; ``z`` is sampled when
        ``deterministic`` is false (default: ``not self.training``)."""
        if deterministic is None:
            deterministic = not self.training
        mu, logvar, z = self.latent(self.extractor(images), deterministic)
        return self.decoder(z), mu, logvar


def make_twin(encoder: str = "efficient", *, num_points: int = 2048) -> Reconstructor:
    """The twin of ``recon_jax.models.build_model({"encoder": encoder, "num_points":
    num_points})`` (extractor fields at their defaults)."""
    if encoder == "efficient":
        extractor: nn.Module = EfficientExtractor()
    elif encoder == "efficient_small":
        extractor = EfficientExtractor(**EFFICIENT_SMALL)
    elif encoder in RESNET_STAGES:
        extractor = ResNetExtractor(RESNET_STAGES[encoder])
    else:
        names = ("efficient", "efficient_small", *RESNET_STAGES)
        raise ValueError(f"encoder must be one of {names}, got {encoder!r}")
    return Reconstructor(extractor, num_points=num_points)


def _reduce(d: torch.Tensor) -> torch.Tensor:
    """``[B, N, M]`` squared distances -> mean over ``B`` of (mean row min + mean column min)."""
    return (d.min(dim=2).values.mean(dim=1) + d.min(dim=1).values.mean(dim=1)).mean()


def chamfer_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Chamfer distance ``[B, N, 3], [B, M, 3] -> []`` as recon_jax's default (per pair
    the mean over ``x`` of the squared distance to the nearest ``y`` point, plus the same from
    ``y`` to ``x``; mean over the batch), the usual way: ``torch.cdist`` squared, then ``min``.
    Materialises the ``[B, N, M]`` distances."""
    return _reduce(torch.cdist(x, y).square())


def chamfer_distance_mm(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same value as :func:`chamfer_distance`, with the squared distances written as
    ``|x|^2 + |y|^2 - 2 x.y`` (one ``baddbmm``): no square root, and a cheaper backward than
    ``cdist``'s. Also materialises ``[B, N, M]``."""
    sq = x.square().sum(-1)[:, :, None] + y.square().sum(-1)[:, None, :]
    return _reduce(torch.baddbmm(sq, x, y.transpose(1, 2), alpha=-2.0))


#: Chamfer formulations a PyTorch user would write, by name.
CHAMFER = {"cdist": chamfer_distance, "mm": chamfer_distance_mm}


def param_count(module: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _flax_key(name: str, kind: str) -> tuple[str, ...]:
    """Flax variable path of torch parameter/buffer ``name`` of a module of type ``kind``."""
    *path, leaf = name.split(".")
    names = {
        "Conv2d": {"weight": "kernel"},
        "Linear": {"weight": "kernel", "bias": "bias"},
        "BatchNorm2d": {"weight": "scale", "bias": "bias", "running_mean": "mean",
                        "running_var": "var"},
    }.get(kind, {})
    if leaf not in names:
        raise ValueError(f"no Flax counterpart for torch {kind} tensor {name!r}")
    collection = "batch_stats" if leaf.startswith("running_") else "params"
    return (collection, *path, names[leaf])


def flax_tensors(module: nn.Module, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Torch name -> the matching Flax value of ``variables``, in PyTorch's layout.

    ``variables`` holds ``"params"`` (required) and optionally ``"batch_stats"`` of the Flax
    Reconstructor that ``module`` mirrors (or any pytree of that structure, e.g. gradients).
    Every parameter of ``module`` is mapped, and every running statistic when
    ``"batch_stats"`` is given. Conv kernels ``[kh, kw, in, out]`` become ``[out, in, kh, kw]``
    and Dense kernels ``[in, out]`` become ``[out, in]``.

    Raises:
      ValueError: a torch tensor without a Flax counterpart, a shape mismatch, or a Flax leaf
        that no torch tensor uses (the two networks are not the same).
    """
    import jax

    kinds = {name: type(m).__name__ for name, m in module.named_modules()}
    tensors = list(module.named_parameters())
    if "batch_stats" in variables:
        tensors += [(n, b) for n, b in module.named_buffers()
                    if not n.endswith("num_batches_tracked")]
    out, used = {}, set()
    for name, tensor in tensors:
        key = _flax_key(name, kinds[name.rsplit(".", 1)[0]])
        node: Any = variables
        for part in key:
            if part not in node:
                raise ValueError(f"Flax variables have no {'/'.join(key)} (for torch {name!r})")
            node = node[part]
        value = np.array(node, copy=True)
        value = value.astype(np.result_type(value.dtype, np.float32))  # keeps float64
        if key[-1] == "kernel":
            value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
        if tuple(value.shape) != tuple(tensor.shape):
            raise ValueError(f"torch {name!r} has shape {tuple(tensor.shape)}, Flax "
                             f"{'/'.join(key)} gives {value.shape}")
        out[name] = np.ascontiguousarray(value)
        used.add(key)
    flax_keys = {
        tuple(getattr(k, "key", k) for k in path)
        for col in ("params", "batch_stats") if col in variables
        for path, _ in jax.tree_util.tree_flatten_with_path({col: variables[col]})[0]
    }
    if flax_keys != used:
        missing = sorted("/".join(k) for k in flax_keys - used)
        raise ValueError(f"Flax variables without a torch counterpart: {missing}")
    return out


def load_flax_variables(module: nn.Module, variables: Mapping[str, Any]) -> None:
    """Copy the Flax ``{"params", "batch_stats"}`` of the mirrored Reconstructor into ``module``
    (see :func:`flax_tensors` for the mapping and its checks)."""
    values = flax_tensors(module, variables)
    state = dict(module.named_parameters()) | dict(module.named_buffers())
    with torch.no_grad():
        for name, value in values.items():
            state[name].copy_(torch.from_numpy(value))
