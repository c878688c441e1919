"""click_robustness: IoU over allowed clicks, white-box extremes, k-th click, input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.errors import DataError
from workbench.interactive import ClickSegmenter, mask_iou
from workbench.robustness import allowed_region, click_robustness

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A fixed stain of the sample dataset (test/stain/005)."""
    from workbench.datasets import FolderDataset, make_sample

    root = make_sample(tmp_path_factory.mktemp("sample") / "sample")
    s = next(s for s in FolderDataset(root).test if s.kind == "stain" and s.stem == "005")
    return s.image(), s.mask()


@pytest.fixture(scope="module")
def seg():
    return ClickSegmenter(threads=1)


@pytest.fixture(scope="module")
def coarse(case, seg):
    image, gt = case
    return click_robustness(seg, image, gt, stride=16, steps=15)


def test_fields_are_consistent_and_reproducible_with_predict(case, seg, coarse):
    image, gt = case
    r = coarse
    assert 0.0 <= r.iou_min <= r.iou_natural <= r.iou_max <= 1.0
    assert r.delta == pytest.approx(r.iou_max - r.iou_min)
    assert r.label == 1 and np.array_equal(r.allowed, gt)
    assert r.iou_map.shape == gt.shape and r.iou_map.dtype == np.float32
    assert np.isnan(r.iou_map[~gt]).all() and np.isfinite(r.iou_map[gt]).all()
    assert set(np.unique(r.iou_map[gt])) <= set(r.grid_ious.astype(np.float32))
    assert r.grid_clicks.shape == (len(r.grid_ious), 3) and (r.grid_clicks[:, 2] == 1).all()
    assert tuple(r.grid_clicks[-1]) == r.natural_click
    assert all(gt[row, col] for row, col, _ in r.grid_clicks)
    # every grid click off the natural one lies on the stride-16 lattice
    assert ((r.grid_clicks[:-1, :2] - 8) % 16 == 0).all()
    for click, value in ((r.worst_click, r.iou_min), (r.best_click, r.iou_max), (r.natural_click, r.iou_natural)):
        assert gt[click[0], click[1]]
        assert mask_iou(seg.predict(image, [click]), gt) == pytest.approx(value)


def test_whitebox_worst_is_at_least_as_bad_as_the_coarse_grid(coarse):
    s = coarse.search
    assert s["hard_evaluations"] > 0 and s["whitebox_min"] is not None
    assert coarse.iou_min <= s["grid_min"] and coarse.iou_min <= s["whitebox_min"] + 1e-12
    assert coarse.iou_max >= s["grid_max"]
    assert coarse.iou_min == pytest.approx(min(s["grid_min"], s["whitebox_min"]))


def test_whitebox_search_beats_the_coarse_grid_on_the_fixed_case(coarse):
    # the search starts at the grid's worst click and must find a strictly worse one here
    assert coarse.search["whitebox_min"] < coarse.search["grid_min"]


def test_without_whitebox_the_extremes_are_the_grid_extremes(case, seg):
    image, gt = case
    r = click_robustness(seg, image, gt, stride=16, whitebox=False)
    assert r.iou_min == pytest.approx(r.grid_ious.min()) and r.iou_max == pytest.approx(r.grid_ious.max())
    assert r.search["hard_evaluations"] == 0


def test_kth_click_lands_in_the_error_region_of_the_previous_prediction(case, seg, coarse):
    image, gt = case
    first = coarse.natural_click
    prev = seg.predict(image, [first])
    region, label = allowed_region(gt, prev)
    r = click_robustness(seg, image, gt, stride=8, previous_clicks=[first], steps=5)
    assert r.label == label and np.array_equal(r.allowed, region)
    assert r.iou_previous == pytest.approx(mask_iou(prev, gt))
    error = (gt & ~prev) if label == 1 else (prev & ~gt)
    assert np.array_equal(region, error)
    assert np.isnan(r.iou_map[~region]).all() and np.isfinite(r.iou_map[region]).all()
    assert (r.grid_clicks[:, 2] == label).all()
    assert 0.0 <= r.iou_min <= r.iou_natural <= r.iou_max <= 1.0
    assert mask_iou(seg.predict(image, [first, r.worst_click]), gt) == pytest.approx(r.iou_min)
    assert r.previous_clicks == (first,)


def test_allowed_region_picks_the_larger_error():
    gt = np.zeros((20, 20), bool)
    gt[5:15, 5:15] = True
    prev = gt.copy()
    prev[5:7, 5:15] = False  # 20 missed pixels
    prev[0:2, 0:5] = True  # 10 false-positive pixels
    region, label = allowed_region(gt, prev)
    assert label == 1 and region.sum() == 20
    prev[0:5, 0:5] = True  # now 25 false-positive pixels in one component
    region, label = allowed_region(gt, prev)
    assert label == -1 and region.sum() == 25
    with pytest.raises(DataError, match="no error left"):
        allowed_region(gt, gt.copy())


def test_bad_inputs_name_what_was_expected(case, seg):
    image, gt = case
    with pytest.raises(DataError, match=r"shape \(10, 10\) but the image has \(240, 320\)"):
        click_robustness(seg, image, np.ones((10, 10), bool))
    with pytest.raises(DataError, match="empty"):
        click_robustness(seg, image, np.zeros_like(gt))
    with pytest.raises(ValueError, match="outside the image"):
        click_robustness(seg, image, gt, previous_clicks=[(500, 5, 1)])
    with pytest.raises(ValueError, match="label must be"):
        click_robustness(seg, image, gt, previous_clicks=[(5, 5, 3)])
    with pytest.raises(ValueError, match="stride"):
        click_robustness(seg, image, gt, stride=0)


def test_any_predict_only_segmenter_works_without_whitebox(case):
    image, gt = case

    class Disk:
        """A toy segmenter: a disk of radius 6 around the last positive click."""

        def predict(self, image, clicks):
            rr, cc = np.mgrid[: image.shape[0], : image.shape[1]]
            out = np.zeros(image.shape[:2], bool)
            for r, c, lab in clicks:
                out[(rr - r) ** 2 + (cc - c) ** 2 <= 36] = lab > 0
            return out

    r = click_robustness(Disk(), image, gt, stride=8)
    assert r.search["whitebox_min"] is None
    # a disk fully inside the object scores area(disk)/area(object): the maximum
    assert r.iou_max == pytest.approx(np.pi * 36 / gt.sum(), rel=0.1)
    assert r.iou_min < r.iou_max  # near the boundary part of the disk falls outside
