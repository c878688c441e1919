"""ClickSegmenter: masks of the image's size, feature caching, click semantics, one-click quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from workbench.errors import DataError
from workbench.interactive import ClickSegmenter, check_clicks, mask_iou, natural_click

torch.set_num_threads(1)

# two defects of each kind (sample file order: patch, scratch, stain; 10 each)
FLOOR_SUBSET = (0, 5, 10, 15, 20, 25)
# mean one-click IoU measured on FLOOR_SUBSET with the default segmenter (0.567 before the
# background-model change, 0.582 after, 0.605 with colour_expand); the floor leaves 0.03 for
# float/threading noise
MEASURED_SUBSET_MEAN = 0.605
FLOOR = MEASURED_SUBSET_MEAN - 0.03


@pytest.fixture(scope="module")
def defects(tmp_path_factory):
    from workbench.datasets import FolderDataset, make_sample

    root = make_sample(tmp_path_factory.mktemp("sample") / "sample")
    return [(s.image(), s.mask(), s.kind) for s in FolderDataset(root).test if s.label == 1]


@pytest.fixture(scope="module")
def seg():
    return ClickSegmenter(threads=1)


def test_one_click_quality_floor_on_sample_subset(defects, seg):
    ious = []
    for i in FLOOR_SUBSET:
        image, mask, _ = defects[i]
        r, c = natural_click(mask)
        ious.append(mask_iou(seg.predict(image, [(r, c, 1)]), mask))
    assert {defects[i][2] for i in FLOOR_SUBSET} == {"patch", "scratch", "stain"}
    assert np.mean(ious) >= FLOOR, ious
    assert min(ious) > 0.1, ious  # no defect is missed entirely


def test_mask_is_bool_of_image_size_and_connected_to_positive_clicks(defects, seg):
    image, mask, _ = defects[20]
    r, c = natural_click(mask)
    out = seg.predict(image, [(r, c, 1)])
    assert out.dtype == bool and out.shape == image.shape[:2] and out[r, c]
    lab, n = ndi.label(out, structure=np.ones((3, 3)))
    assert n == 1  # one positive click: one component, the one under the click


def test_gray_colour_float_and_odd_sizes(seg):
    rng = np.random.default_rng(0)
    img = (rng.random((97, 131)) * 60 + 60).astype(np.uint8)
    img[30:60, 40:80] = 220  # a bright square on noise
    for variant in (img, np.stack([img] * 3, -1), img.astype(np.float32) / 255.0, np.stack([img] * 4, -1)):
        out = seg.predict(variant, [(45, 60, 1)])
        assert out.shape == (97, 131) and out.dtype == bool
        assert mask_iou(out, np.pad(np.ones((30, 40), bool), ((30, 37), (40, 51)))) > 0.7


def test_features_are_cached_by_image_content(defects):
    seg = ClickSegmenter(threads=1, cache_size=2)
    a, mask_a, _ = defects[0]
    b, _, _ = defects[1]
    r, c = natural_click(mask_a)
    first = seg.predict(a, [(r, c, 1)])
    assert seg.n_extractions == 1
    again = seg.predict(a.copy(), [(r, c, 1)])  # same pixels, another array: a cache hit
    assert seg.n_extractions == 1 and np.array_equal(first, again)
    seg.predict(a, [(r, c, 1), (5, 5, -1)])
    assert seg.n_extractions == 1
    seg.predict(b, [(10, 10, 1)])
    assert seg.n_extractions == 2
    changed = a.copy()
    changed[0, 0] ^= 1
    seg.predict(changed, [(r, c, 1)])
    assert seg.n_extractions == 3
    seg.predict(a, [(r, c, 1)])  # cache_size 2: `a` was dropped when `changed` came in
    assert seg.n_extractions == 4


def test_negative_click_shrinks_the_mask_and_is_excluded(defects, seg):
    image, mask, _ = defects[0]
    r, c = natural_click(mask)
    one = seg.predict(image, [(r, c, 1)])
    wrong = one & ~mask
    if not wrong.any():  # pragma: no cover - depends on the segmenter's errors
        pytest.skip("no false positive to remove")
    nr, nc = natural_click(wrong)
    two = seg.predict(image, [(r, c, 1), (nr, nc, -1)])
    assert not two[nr, nc]
    assert two.sum() < one.sum()


def test_two_positive_clicks_on_two_objects_give_both(seg):
    rng = np.random.default_rng(1)
    img = (rng.random((128, 160)) * 40 + 90).astype(np.uint8)
    img[20:45, 20:50] = 10
    img[80:105, 100:140] = 10
    one = seg.predict(img, [(32, 35, 1)])
    both = seg.predict(img, [(32, 35, 1), (92, 120, 1)])
    assert one[32, 35] and not one[92, 120]
    assert both[32, 35] and both[92, 120]


def test_no_positive_click_gives_an_empty_mask(defects, seg):
    image, _, _ = defects[0]
    assert not seg.predict(image, []).any()
    assert not seg.predict(image, [(10, 10, -1)]).any()


@pytest.mark.parametrize("clicks, message", [
    ([(240, 5, 1)], "outside the image"),
    ([(5, -1, 1)], "outside the image"),
    ([(5, 5, 0)], "label must be +1"),
    ([(5, 5, 2)], "label must be +1"),
    ([(5.5, 5, 1)], "whole pixel index"),
    ([(5, 5)], "expected (row, col, label)"),
])
def test_bad_clicks_are_rejected_with_what_was_expected(defects, seg, clicks, message):
    image, _, _ = defects[0]
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        seg.predict(image, clicks)


def test_bad_image_is_rejected(seg):
    with pytest.raises(DataError, match=r"expected an array of shape \(H, W\)"):
        seg.predict(np.zeros((4, 4, 4, 3), np.uint8), [(1, 1, 1)])


def test_check_clicks_accepts_numpy_and_whole_floats():
    clicks = check_clicks([(np.int64(3), 4.0, 1), [0, 0, -1]], (10, 10))
    assert clicks == [(3, 4, 1), (0, 0, -1)]


def test_natural_click_is_the_centre_of_the_largest_component():
    m = np.zeros((40, 40), bool)
    m[35:38, 35:38] = True  # small
    m[10:31, 10:31] = True  # large, centre (20, 20)
    assert natural_click(m) == (20, 20)
    with pytest.raises(DataError, match="empty"):
        natural_click(np.zeros((3, 3), bool))


def test_min_cluster_drops_small_background_clusters(defects):
    image = defects[0][0]
    keep_all = ClickSegmenter(threads=1, n_background=24, min_cluster=0.0).prepare(image)
    pruned = ClickSegmenter(threads=1, n_background=24, min_cluster=0.03).prepare(image)
    assert keep_all.background.shape[0] == 24
    assert 1 <= pruned.background.shape[0] <= 24
    # dropping centres can only lower each cell's best background similarity
    assert torch.all(pruned.background_sim <= keep_all.background_sim + 1e-6)


def test_colour_expansion_grows_masks_from_the_first_one(defects):
    """The second thresholding adds the first mask's mean colour to the object colours: the
    mask can only grow (same feature score, object colour distances only shrink)."""
    image, mask, _ = defects[10]
    click = [(*natural_click(mask), 1)]
    plain = ClickSegmenter(threads=1, colour_expand=False).predict(image, click)
    grown = ClickSegmenter(threads=1, colour_expand=True).predict(image, click)
    assert plain.any() and np.all(grown[plain]) and grown.sum() >= plain.sum()
