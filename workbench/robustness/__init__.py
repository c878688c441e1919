"""Robustness of click-based segmentation to where the user clicks (after TETRIS, 2024).

>>> from workbench.interactive import ClickSegmenter
>>> from workbench.robustness import click_robustness
>>> r = click_robustness(ClickSegmenter(), image, gt_mask, stride=8)
>>> r.iou_min, r.iou_natural, r.iou_max, r.delta, r.worst_click
>>> r2 = click_robustness(seg, image, gt_mask, previous_clicks=[r.natural_click])  # the 2nd click

:func:`click_robustness` evaluates every allowed click on a grid (features are computed
once per image, so each click costs only the prototype similarity and the refinement) and
then searches for a worse and a better click by gradient descent on the click position
through a differentiable surrogate of the segmenter (white box).
"""

from workbench.robustness._tetris import ClickRobustness, allowed_region, click_robustness

__all__ = ["ClickRobustness", "allowed_region", "click_robustness"]
