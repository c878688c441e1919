"""Image-level feature vectors from the pretrained backbone, for embedding a folder of images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from workbench.errors import DataError

__all__ = ["find_images", "image_features"]


def find_images(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Image files (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``, ``.tiff``; any case) under
    ``folder``, sorted by relative path; hidden files and folders are skipped.

    Raises
    ------
    DataError
        ``folder`` is not a directory or holds no image.
    """
    from workbench.datasets import IMAGE_EXTENSIONS

    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder of images (it does not exist or is a file)")
    pattern = "**/*" if recursive else "*"
    found = sorted(
        p for p in root.glob(pattern)
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not found:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found"
                        + (" in it or its subfolders" if recursive else ""))
    return found


def image_features(images: Iterable, *, backbone: str = "efficientnet_lite0", stages: Sequence[int] = (16, 32),
                   image_size: tuple[int, int] = (224, 224), normalize: bool = True, cache: bool = True,
                   threads: int | None = None, progress: bool = False) -> np.ndarray:
    """One feature vector per image: globally average-pooled backbone stages, concatenated.

    Parameters
    ----------
    images : iterable of paths, arrays or dataset samples
        What :class:`workbench.features.FeatureExtractor` accepts (``uint8`` / float in [0, 1]
        arrays of shape ``(H, W)`` or ``(H, W, 3)``, image file paths, ``Sample`` objects).
    backbone : str, default "efficientnet_lite0"
    stages : sequence of int, default (16, 32)
        Backbone strides to pool; the deep stages describe what an image shows, the stride-16
        stage also keeps some texture.
    image_size : (H, W), default (224, 224)
        Every image is resized to this size first (the backbone's native scale for Lite0), so
        images of any size give vectors of one length.
    normalize : bool, default True
        Scale each stage's pooled vector to unit L2 norm before concatenating, so that every
        stage weighs the same in Euclidean distances (UMAP, kNN) whatever its channel count.
    cache : bool, default True
        The extractor's per-image disk cache (for images given as file paths).
    threads : int or None
        torch intra-op threads while extracting.
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    numpy.ndarray
        float32 of shape ``(n_images, sum of the stages' channels)`` (Lite0, stages 16 and 32:
        112 + 320 = 432 columns), row ``i`` for the ``i``-th image.
    """
    from workbench.features import FeatureExtractor

    items = list(images)
    if not items:
        raise DataError("image_features: no images given")
    stages = tuple(int(s) for s in stages)
    fx = FeatureExtractor(backbone, stages=stages, image_size=tuple(image_size), threads=threads,
                          cache=cache, progress=progress)
    width = sum(fx.channels[s] for s in stages)
    out = np.empty((len(items), width), np.float32)
    for idx, feats in fx.iter_batches(items):  # memory stays bounded by one batch
        for i, f in zip(idx, feats):
            parts = []
            for s in stages:
                v = f[s].reshape(f[s].shape[0], -1).mean(axis=1, dtype=np.float64)
                if normalize:
                    v = v / max(float(np.linalg.norm(v)), 1e-12)
                parts.append(v)
            out[i] = np.concatenate(parts)
    return out
