"""Threshold-free anomaly-detection metrics, image level and pixel level.

Conventions shared by every function:

* labels and masks: 1 / True = anomalous, 0 / False = normal;
* scores and anomaly maps: raw detector output, **higher = more anomalous**. They are
  never squashed or normalised here, and callers should not do it either: a sigmoid
  turns distinct large scores into tied 1.0s, and per-image min-max scaling reorders
  pixels across images, both of which change the metrics;
* a threshold ``t`` calls a sample or pixel anomalous when ``score >= t``; tied scores
  always cross a threshold together, so every metric is exact with ties;
* results are plain Python floats; invalid input raises ``ValueError`` saying what is
  wrong (only one class present, lengths or shapes differing, NaN scores).

Image level (one score per image, arrays of shape ``(n,)``): :func:`image_auroc`,
:func:`average_precision`, :func:`f1_max`, :func:`fpr_at_tpr`, all at once with
:func:`image_metrics`; :func:`roc_curve_points` and :func:`pr_curve_points` for plots.

Pixel level (masks and maps of shape ``(H_i, W_i)``, sizes may differ between images,
or stacked ``(n, H, W)`` arrays): :func:`pixel_auroc`, :func:`aupro` (per-region overlap
up to an FPR of 0.3, MVTec AD style), both at once with :func:`pixel_metrics`. Both are
exact and stream over the images instead of concatenating every pixel.
"""

from workbench.metrics._image import (
    average_precision,
    f1_max,
    fpr_at_tpr,
    image_auroc,
    image_metrics,
    pr_curve_points,
    roc_curve_points,
)
from workbench.metrics._pixel import aupro, pixel_auroc, pixel_metrics

__all__ = [
    "image_auroc",
    "average_precision",
    "f1_max",
    "fpr_at_tpr",
    "image_metrics",
    "roc_curve_points",
    "pr_curve_points",
    "pixel_auroc",
    "aupro",
    "pixel_metrics",
]
