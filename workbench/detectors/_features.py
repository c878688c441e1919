"""Patch embeddings built from backbone stages (shared by the image detectors)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["patch_embedding"]


def patch_embedding(features: dict[int, torch.Tensor], stages: tuple[int, ...], pool: int = 1) -> torch.Tensor:
    """Concatenate stages on the grid of the finest one.

    Parameters
    ----------
    features : dict stride -> (b, C_s, h_s, w_s)
    stages : strides to use, finest first (e.g. (8, 16))
    pool : int
        ``pool x pool`` average of each stage's neighbourhood first (PatchCore's local
        aggregation; borders average over the pixels that exist).

    Returns
    -------
    Tensor (b, sum C_s, h, w) on the grid of ``stages[0]``.
    """
    finest = features[stages[0]]
    size = tuple(finest.shape[-2:])
    parts = []
    for s in stages:
        # channels-last: 3x3 pooling is ~10x faster on it, and the (patches, channels)
        # matrix the detectors take next is then a view
        f = features[s].float().contiguous(memory_format=torch.channels_last)
        if pool > 1:
            f = F.avg_pool2d(f, pool, stride=1, padding=pool // 2, count_include_pad=False)
        if tuple(f.shape[-2:]) != size:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        parts.append(f)
    return torch.cat(parts, dim=1)
