"""Jupyter views of the workbench: anywidget widgets and HoloViews/Panel views.

Every view keeps its state in synced traitlets or a ``param`` object, exposes plain accessors
(``.selected_index``, ``.flagged_index``, ``.mask``, ...) and is testable in pytest without a
browser. Classes are imported on first use, so ``import widgets`` stays cheap.

* :class:`EmbeddingExplorer` -- scatter of a 2-D embedding (glyphs, or datashader above 20k
  points) with box/lasso selection linked to a thumbnail gallery; named subsets.
* :class:`GMMInspector` -- BIC/AIC over component counts, 2-sigma ellipses, per-component
  weights and mean thumbnails, log-likelihood histogram with a movable threshold.
* :class:`MaskPainter` -- paint, erase, fill and pan/zoom a binary mask over an image (anywidget),
  saved to an :class:`~workbench.annotations.AnnotationStore` as you paint.
* :class:`AnomalyViewer` -- a detector's results: thumbnails sorted by score, the selected image
  with its anomaly map, ground truth and a threshold slider; opens a MaskPainter to fix masks.
* :class:`ClickPrompter` -- positive/negative clicks, mask predicted by a click segmenter.
* :class:`ClickRobustnessView` -- IoU of every first-click position, worst and best clicks marked.
* :func:`extension` -- load Panel's JavaScript inline (works offline); Panel views call it
  on first display.
"""

from __future__ import annotations

import importlib

# public name -> module that defines it (imported lazily on attribute access).
# Add new widgets here: "MaskPainter": "widgets._mask", ...
_LAZY = {
    "EmbeddingExplorer": "widgets._embedding",
    "extension": "widgets._embedding",
    "GMMInspector": "widgets._gmm",
    "MaskPainter": "widgets._mask_painter",
    "AnomalyViewer": "widgets._anomaly_viewer",
    "ClickPrompter": "widgets._click_prompter",
    "ClickRobustnessView": "widgets._robustness_view",
}

__all__ = [*_LAZY]


def __getattr__(name: str):
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'widgets' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
