"""Pictures of results: anomaly-map overlays with thresholds and mask contours (numpy + Pillow).

No pyplot: overlays are rendered straight to uint8 RGB arrays, so writing hundreds of them
in a CLI run is fast and works without a display.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from workbench._io import atomic_write

__all__ = ["colorize", "overlay", "contour", "save_png", "thumbnail"]


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def colorize(values: np.ndarray, vmin: float, vmax: float, cmap: str = "inferno") -> np.ndarray:
    """Map a float array to uint8 RGB ``(H, W, 3)`` with a fixed range (values clipped)."""
    span = max(float(vmax) - float(vmin), 1e-12)
    t = np.clip((np.asarray(values, dtype=np.float32) - vmin) / span, 0, 1)
    lut = (_cmap(cmap)(np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return lut[(t * 255).astype(np.uint8)]


def contour(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean mask (inner 4-neighbourhood edge), bool ``(H, W)``."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return m
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    edge = m & ~inner
    # thicken to 2 px so it stays visible after downscaling
    thick = edge.copy()
    thick[1:, :] |= edge[:-1, :]
    thick[:, 1:] |= edge[:, :-1]
    return thick


def _as_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.dtype != np.uint8:
        img = np.clip(img * (255 if img.max() <= 1 else 1), 0, 255).astype(np.uint8)
    return img[..., :3]


def overlay(image: np.ndarray, amap: np.ndarray | None = None, *, vmin: float | None = None,
            vmax: float | None = None, threshold: float | None = None, gt_mask: np.ndarray | None = None,
            opacity: float = 0.6, cmap: str = "inferno", caption: str | None = None) -> np.ndarray:
    """The image with its anomaly map blended on top, as uint8 RGB ``(H, W, 3)``.

    Parameters
    ----------
    image : (H, W) or (H, W, 3)
    amap : (H, W) float or None
        Anomaly map; shown with colour where it is above ``vmin``, more opaque the higher
        it is (so normal regions stay readable).
    vmin, vmax : float
        Fixed colour range; use the same for every image of a report so colours compare.
        Defaults: the map's 50th and 99.9th percentiles.
    threshold : float or None
        Pixels with ``map >= threshold`` get a cyan contour (the predicted defect).
    gt_mask : (H, W) bool or None
        Ground truth, drawn as a green contour.
    caption : str or None
        Text drawn in the top-left corner.
    """
    rgb = _as_rgb(image).astype(np.float32)
    if amap is not None:
        amap = np.asarray(amap, dtype=np.float32)
        if amap.shape != rgb.shape[:2]:
            raise ValueError(f"map shape {amap.shape} differs from image shape {rgb.shape[:2]}")
        lo = float(np.percentile(amap, 50)) if vmin is None else float(vmin)
        hi = float(np.percentile(amap, 99.9)) if vmax is None else float(vmax)
        heat = colorize(amap, lo, hi, cmap).astype(np.float32)
        alpha = opacity * np.clip((amap - lo) / max(hi - lo, 1e-12), 0, 1)[..., None]
        rgb = rgb * (1 - alpha) + heat * alpha
        if threshold is not None:
            rgb[contour(amap >= threshold)] = (0, 255, 255)
    if gt_mask is not None:
        rgb[contour(gt_mask)] = (0, 255, 0)
    out = np.clip(rgb, 0, 255).astype(np.uint8)
    if caption:
        im = Image.fromarray(out)
        draw = ImageDraw.Draw(im)
        box = draw.textbbox((4, 4), caption)
        draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0))
        draw.text((4, 4), caption, fill=(255, 255, 255))
        out = np.asarray(im)
    return out


def thumbnail(image: np.ndarray, max_side: int = 256) -> np.ndarray:
    """Downscale (keeping aspect) so the longer side is at most ``max_side``."""
    im = Image.fromarray(_as_rgb(image))
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(im)


def save_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 array as PNG atomically."""
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        Image.fromarray(np.asarray(array)).save(fh, format="PNG")
    return path
