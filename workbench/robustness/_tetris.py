"""Click robustness after TETRIS (Moskalenko et al., 2024): the IoU over every allowed click.

A benchmark usually clicks the centre of the object (or of the largest error region). Real
users click elsewhere. :func:`click_robustness` evaluates a segmenter at every allowed click
position on a grid and then searches for the worst and the best click directly (white box):
the click position is a continuous variable, the segmenter's feature score is made
differentiable in it (bilinear sampling of the feature map at the click, sigmoid soft mask,
soft IoU against the ground truth) and optimised with torch autograd, projected back into the
allowed region after every step. Every position the search visits is evaluated with the real
(hard) :meth:`~workbench.interactive.ClickSegmenter.predict`; a visited click replaces the
grid's extreme only if its real IoU is more extreme.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage as ndi

from workbench.errors import DataError
from workbench.interactive import Click, check_clicks, check_mask, mask_iou, natural_click

__all__ = ["ClickRobustness", "click_robustness", "allowed_region"]


@dataclass(frozen=True)
class ClickRobustness:
    """How much one click's result depends on where it lands.

    Attributes
    ----------
    iou_map : float32 ndarray ``(H, W)``
        IoU of the click at each allowed pixel (nearest evaluated grid click), NaN outside
        the allowed region.
    iou_min, iou_natural, iou_max : float
        Worst, natural (the allowed region's farthest-from-boundary point) and best IoU over
        every evaluated click (grid, natural click and white-box search);
        ``iou_min <= iou_natural <= iou_max``.
    delta : float
        ``iou_max - iou_min``: 0 = the click position does not matter.
    worst_click, best_click, natural_click : (row, col, label)
        Where the extremes and the natural IoU were reached.
    label : int
        +1 when the click adds the object (first click, or a missed region), -1 when it
        removes a false-positive region.
    allowed : bool ndarray ``(H, W)``
        Where the click may land: the object for the first click, the false-negative (or
        false-positive) region of the previous prediction for a later one.
    grid_clicks : int ndarray ``(n, 3)``
        The evaluated grid clicks (row, col, label), the natural click last.
    grid_ious : float ndarray ``(n,)``
        Their IoU.
    previous_clicks : tuple of clicks
        The clicks made before this one.
    iou_previous : float or None
        IoU of the prediction from the previous clicks alone (None for the first click).
    search : dict
        The white-box search: grid extremes, the extremes it found, hard evaluations made.
    """

    iou_map: np.ndarray
    iou_min: float
    iou_natural: float
    iou_max: float
    delta: float
    worst_click: Click
    best_click: Click
    natural_click: Click
    label: int
    allowed: np.ndarray
    grid_clicks: np.ndarray
    grid_ious: np.ndarray
    previous_clicks: tuple = ()
    iou_previous: float | None = None
    search: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """The scalar results as a JSON-ready dict."""
        return {"iou_min": self.iou_min, "iou_natural": self.iou_natural, "iou_max": self.iou_max,
                "delta": self.delta, "worst_click": list(self.worst_click), "best_click": list(self.best_click),
                "natural_click": list(self.natural_click), "label": self.label,
                "n_grid": int(len(self.grid_ious)), "iou_previous": self.iou_previous}


def allowed_region(gt: np.ndarray, previous_mask: np.ndarray | None) -> tuple[np.ndarray, int]:
    """Where the next click may land, and its label.

    The first click (``previous_mask`` None) lands on the object, label +1. A later click
    corrects the previous prediction: in its false-negative region (label +1) or its
    false-positive region (label -1), whichever has the larger connected component (the
    error a user would fix first; ties go to the false negatives).

    Raises
    ------
    DataError
        The previous prediction equals the ground truth: there is nothing left to correct.
    """
    if previous_mask is None:
        return gt.copy(), 1
    fn = gt & ~previous_mask
    fp = previous_mask & ~gt

    def largest(region: np.ndarray) -> int:
        lab, n = ndi.label(region)
        return 0 if n == 0 else int(np.bincount(lab.ravel())[1:].max())

    if not fn.any() and not fp.any():
        raise DataError("previous_clicks already give a mask equal to gt_mask; there is no error left to click on")
    return (fn, 1) if largest(fn) >= largest(fp) else (fp, -1)


def _grid(allowed: np.ndarray, stride: int) -> list[tuple[int, int]]:
    h, w = allowed.shape
    off = stride // 2
    rr, cc = np.meshgrid(np.arange(off, h, stride), np.arange(off, w, stride), indexing="ij")
    keep = allowed[rr, cc]
    return list(zip(rr[keep].tolist(), cc[keep].tolist()))


def _soft_iou_fn(segmenter, state, previous: list[Click], label: int, gt: torch.Tensor, temperature: float):
    """``f(position (2,) tensor) -> soft IoU``: the differentiable surrogate of predict.

    It keeps the segmenter's feature score (positive minus background similarity, with the
    previous clicks' prototypes) and replaces the threshold at 0 by ``sigmoid(score / T)``;
    the expansion step, colour refinement and connectivity are left out (not differentiable).
    """
    f = state.features
    with torch.no_grad():
        pos = [state.prototype(r, c) for r, c, lab in previous if lab > 0]
        neg = [state.prototype(r, c) for r, c, lab in previous if lab < 0]
        bg = state.background_sim
        if neg:
            bg = torch.maximum(bg, torch.einsum("dhw,kd->khw", f, torch.stack(neg)).amax(0))
        sp = torch.einsum("dhw,kd->khw", f, torch.stack(pos)).amax(0) if pos else None

    def soft_iou(pos_rc: torch.Tensor) -> torch.Tensor:
        sim = torch.einsum("dhw,d->hw", f, state.prototype(pos_rc[0], pos_rc[1]))
        if label > 0:
            score = (sim if sp is None else torch.maximum(sp, sim)) - bg
        else:
            score = (sp if sp is not None else -torch.ones_like(bg)) - torch.maximum(bg, sim)
        m = torch.sigmoid(state.upsample(score) / temperature)
        inter = (m * gt).sum()
        return inter / (m.sum() + gt.sum() - inter + 1e-6)

    return soft_iou


def click_robustness(segmenter, image: np.ndarray, gt_mask: np.ndarray, *, stride: int = 8,
                     previous_clicks: Sequence = (), whitebox: bool = True, steps: int = 25,
                     step_size: float | None = None, temperature: float = 0.05) -> ClickRobustness:
    """IoU of a segmenter over every allowed click position, plus a white-box worst/best search.

    Parameters
    ----------
    segmenter : ClickSegmenter
        Anything with ``predict(image, clicks) -> bool mask``; the white-box search also
        needs ``prepare(image)`` returning an :class:`~workbench.interactive.ImageState`
        (skipped otherwise).
    image : ndarray ``(H, W)`` or ``(H, W, 3)``
    gt_mask : bool ndarray ``(H, W)``
        The object, non-empty.
    stride : int, default 8
        Grid spacing in pixels; grid clicks sit at ``stride // 2 + k * stride``. The natural
        click is always evaluated too, so tiny objects still get one click.
    previous_clicks : sequence of (row, col, label)
        Clicks already made: the evaluated click is the next one, in the error region of
        their prediction (see :func:`allowed_region`).
    whitebox : bool, default True
        Run the gradient search for a worse and a better click than the grid's.
    steps : int, default 25
        Optimiser steps per search (one from the grid's worst, one from its best click).
    step_size : float or None
        Adam learning rate in pixels (None: ``max(1, stride / 4)``).
    temperature : float, default 0.05
        Sigmoid temperature of the soft mask (feature-score units).

    Returns
    -------
    ClickRobustness

    Raises
    ------
    DataError
        ``gt_mask`` is empty or not of the image's size; the previous clicks already give
        the ground truth.
    ValueError
        A previous click is outside the image or its label is not +1 / -1; ``stride < 1``.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise DataError(f"image: expected an array of shape (H, W) or (H, W, 3); found shape {image.shape}")
    gt = check_mask(gt_mask, image.shape, "gt_mask")
    if int(stride) < 1:
        raise ValueError(f"stride must be a positive number of pixels; got {stride!r}")
    stride = int(stride)
    previous = check_clicks(previous_clicks, image.shape, "previous_clicks")
    prev_mask = segmenter.predict(image, previous) if previous else None
    iou_previous = None if prev_mask is None else mask_iou(prev_mask, gt)
    allowed, label = allowed_region(gt, prev_mask)

    cache: dict[tuple[int, int], float] = {}

    def hard(r: int, c: int) -> float:
        if (r, c) not in cache:
            cache[(r, c)] = mask_iou(segmenter.predict(image, previous + [(r, c, label)]), gt)
        return cache[(r, c)]

    nat = natural_click(allowed)
    points = [p for p in _grid(allowed, stride) if p != nat] + [nat]
    ious = np.array([hard(r, c) for r, c in points])
    grid_clicks = np.array([(r, c, label) for r, c in points], dtype=np.int64)

    i_min, i_max = int(np.argmin(ious)), int(np.argmax(ious))
    worst, best = points[i_min], points[i_max]
    iou_min, iou_max = float(ious[i_min]), float(ious[i_max])
    search = {"grid_min": iou_min, "grid_max": iou_max, "whitebox_min": None, "whitebox_max": None,
              "hard_evaluations": 0}
    if whitebox and hasattr(segmenter, "prepare"):
        n_before = len(cache)
        state = segmenter.prepare(image)
        soft = _soft_iou_fn(segmenter, state, previous, label, torch.from_numpy(gt.astype(np.float32)),
                            float(temperature))
        lr = float(step_size) if step_size is not None else max(1.0, stride / 4)
        _, nearest = ndi.distance_transform_edt(~allowed, return_indices=True)
        for sign, start in ((1.0, worst), (-1.0, best)):  # minimise IoU, then maximise it
            visited = _search(soft, hard, start, sign, allowed, nearest, steps, lr)
            if sign > 0:
                r, c = min(visited, key=lambda p: cache[p])
                search["whitebox_min"] = cache[(r, c)]
                if cache[(r, c)] < iou_min:
                    worst, iou_min = (r, c), cache[(r, c)]
            else:
                r, c = max(visited, key=lambda p: cache[p])
                search["whitebox_max"] = cache[(r, c)]
                if cache[(r, c)] > iou_max:
                    best, iou_max = (r, c), cache[(r, c)]
        search["hard_evaluations"] = len(cache) - n_before

    iou_map = np.full(gt.shape, np.nan, np.float32)
    marker = np.zeros(gt.shape, bool)
    value = np.zeros(gt.shape, np.float32)
    for (r, c), v in zip(points, ious):
        marker[r, c] = True
        value[r, c] = v
    _, (ir, ic) = ndi.distance_transform_edt(~marker, return_indices=True)
    iou_map[allowed] = value[ir[allowed], ic[allowed]]
    iou_natural = float(ious[-1])
    return ClickRobustness(
        iou_map=iou_map, iou_min=float(iou_min), iou_natural=iou_natural, iou_max=float(iou_max),
        delta=float(iou_max - iou_min), worst_click=(int(worst[0]), int(worst[1]), label),
        best_click=(int(best[0]), int(best[1]), label), natural_click=(nat[0], nat[1], label), label=label,
        allowed=allowed, grid_clicks=grid_clicks, grid_ious=ious, previous_clicks=tuple(previous),
        iou_previous=iou_previous, search=search)


def _search(soft, hard, start: tuple[int, int], sign: float, allowed: np.ndarray, nearest: np.ndarray,
            steps: int, lr: float) -> list[tuple[int, int]]:
    """Projected Adam on the click position; returns every (rounded) position visited.

    ``sign`` +1 minimises the soft IoU, -1 maximises it. After each step the position is
    rounded to a pixel; outside the image or the allowed region it is moved to the nearest
    allowed pixel. Each visited pixel is evaluated with ``hard`` (cached by the caller).
    """
    h, w = allowed.shape
    pos = torch.tensor([float(start[0]), float(start[1])], requires_grad=True)
    opt = torch.optim.Adam([pos], lr=lr)
    visited = [start]
    hard(*start)
    for _ in range(int(steps)):
        opt.zero_grad()
        loss = sign * soft(pos)
        loss.backward()
        opt.step()
        with torch.no_grad():
            r = int(np.clip(round(float(pos[0])), 0, h - 1))
            c = int(np.clip(round(float(pos[1])), 0, w - 1))
            if not allowed[r, c]:
                r, c = int(nearest[0][r, c]), int(nearest[1][r, c])
                pos[0], pos[1] = float(r), float(c)
        if (r, c) not in visited:
            visited.append((r, c))
            hard(r, c)
    return visited
