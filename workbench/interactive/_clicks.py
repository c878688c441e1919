"""Clicks ``(row, col, label)``: validation, the natural click of a region, IoU."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage as ndi

from workbench.errors import DataError

__all__ = ["Click", "check_clicks", "check_mask", "natural_click", "mask_iou"]

#: A click: ``(row, col, label)`` in image pixel coordinates, label +1 (positive) or -1 (negative).
Click = tuple[int, int, int]


def check_clicks(clicks: Iterable, shape: Sequence[int], name: str = "clicks") -> list[Click]:
    """Validated clicks as a list of ``(row, col, label)`` int tuples.

    Parameters
    ----------
    clicks : iterable of (row, col, label)
        Pixel coordinates (integers, or floats that are whole numbers) and label +1 / -1.
    shape : (H, W, ...)
        The image shape the clicks refer to.

    Raises
    ------
    ValueError
        A click is not a triple, a coordinate is not a whole number or lies outside the
        image, or a label is not +1 / -1. The message names the click and what was expected.
    """
    h, w = int(shape[0]), int(shape[1])
    out: list[Click] = []
    for i, click in enumerate(clicks if clicks is not None else ()):
        try:
            row, col, label = click
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{i}]: expected (row, col, label); found {click!r}") from None
        coords = []
        for what, v in (("row", row), ("col", col)):
            fv = float(v)
            if not np.isfinite(fv) or fv != round(fv):
                raise ValueError(f"{name}[{i}]: {what} must be a whole pixel index; found {v!r}")
            coords.append(int(round(fv)))
        r, c = coords
        if not (0 <= r < h and 0 <= c < w):
            raise ValueError(
                f"{name}[{i}] = {tuple(click)!r} lies outside the image: expected 0 <= row < {h} "
                f"and 0 <= col < {w} (pixel coordinates, row first)"
            )
        if label not in (1, -1) or isinstance(label, bool):
            raise ValueError(f"{name}[{i}]: label must be +1 (positive) or -1 (negative); found {label!r}")
        out.append((r, c, int(label)))
    return out


def check_mask(mask, shape: Sequence[int], name: str = "gt_mask", *, allow_empty: bool = False) -> np.ndarray:
    """``mask`` as a bool ``(H, W)`` array matching ``shape[:2]``.

    Raises
    ------
    DataError
        Wrong number of dimensions, another size than the image, or (unless ``allow_empty``)
        no foreground pixel.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise DataError(f"{name}: expected a 2-D mask of shape {tuple(shape[:2])}; found shape {m.shape}")
    if m.shape != tuple(int(s) for s in shape[:2]):
        raise DataError(
            f"{name}: the mask has shape {m.shape} but the image has {tuple(shape[:2])}; "
            "pass the mask of this image (same height and width)"
        )
    m = m.astype(bool) if m.dtype != bool else m
    if not allow_empty and not m.any():
        raise DataError(f"{name}: the mask is empty (no True pixel); a click needs an object to segment")
    return m


def natural_click(region: np.ndarray) -> tuple[int, int]:
    """The pixel of ``region`` farthest from its boundary, ``(row, col)``.

    It is the click of the usual interactive-segmentation protocol: the centre of the
    largest connected component (the argmax of its Euclidean distance transform; the image
    border counts as boundary). Ties go to the first pixel in row-major order.

    Raises
    ------
    DataError
        ``region`` is empty.
    """
    region = np.asarray(region, bool)
    if not region.any():
        raise DataError("natural_click: the region is empty; there is no pixel to click")
    lab, n = ndi.label(region)
    if n > 1:
        sizes = ndi.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1))
        region = lab == (1 + int(np.argmax(sizes)))
    dist = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(r), int(c)


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else float(np.count_nonzero(pred & gt) / union)
