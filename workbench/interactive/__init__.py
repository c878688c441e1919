"""Click-based interactive segmentation.

>>> from workbench.interactive import ClickSegmenter
>>> seg = ClickSegmenter()
>>> mask = seg.predict(image, [(120, 64, +1)])          # bool (H, W)
>>> mask = seg.predict(image, [(120, 64, +1), (80, 200, -1)])  # features reused

Clicks are ``(row, col, label)`` in image pixel coordinates, label +1 (positive, on the
object) or -1 (negative, on the background). :func:`natural_click` gives the usual
benchmark click (the point farthest from the object's boundary); :mod:`workbench.robustness`
measures how much the result depends on where one clicks.
"""

from workbench.interactive._clicks import Click, check_clicks, check_mask, mask_iou, natural_click
from workbench.interactive._segmenter import ClickSegmenter, ImageState

__all__ = ["Click", "ClickSegmenter", "ImageState", "check_clicks", "check_mask", "mask_iou", "natural_click"]
