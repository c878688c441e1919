"""Tests for workbench.metrics.

Every fast implementation is checked against an independent reference written here:
scikit-learn where it computes the same quantity, otherwise a brute-force sweep over
every distinct threshold with plain loops. Random cases round scores so ties are common.
"""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from workbench.metrics import (
    aupro,
    average_precision,
    f1_max,
    fpr_at_tpr,
    image_auroc,
    image_metrics,
    pixel_auroc,
    pixel_metrics,
    pr_curve_points,
    roc_curve_points,
)
from workbench.metrics._pixel import _kth_largest

# ------------------------------------------------------------------ brute-force references


def brute_thresholds(scores):
    """Every distinct score, highest first (a threshold t calls score >= t anomalous)."""
    return sorted(set(np.concatenate([np.ravel(s) for s in scores]).tolist()), reverse=True)


def brute_trapezoid(xs, ys, x_max):
    """Trapezoid area under the polyline (xs, ys) from xs[0] to x_max, cut at x_max."""
    area = 0.0
    for x0, x1, y0, y1 in zip(xs[:-1], xs[1:], ys[:-1], ys[1:]):
        if x0 >= x_max:
            break
        if x1 > x_max:
            y1 = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
            x1 = x_max
        area += (x1 - x0) * (y0 + y1) / 2
    return area


def brute_pixel_auroc(masks, maps):
    pos = np.concatenate([s[m] for m, s in zip(masks, maps)])
    neg = np.concatenate([s[~m] for m, s in zip(masks, maps)])
    xs, ys = [0.0], [0.0]
    for t in brute_thresholds(maps):
        xs.append(np.mean(neg >= t))
        ys.append(np.mean(pos >= t))
    return brute_trapezoid(xs, ys, 1.0)


def brute_aupro(masks, maps, fpr_limit):
    regions, negatives = [], []
    for m, s in zip(masks, maps):
        labels, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [s[labels == r] for r in range(1, n + 1)]
        negatives.append(s[~m])
    neg = np.concatenate(negatives)
    xs, ys = [0.0], [0.0]
    for t in brute_thresholds(maps):
        xs.append(np.mean(neg >= t))
        ys.append(np.mean([np.mean(r >= t) for r in regions]))
    return brute_trapezoid(xs, ys, fpr_limit) / fpr_limit


def brute_f1_max(labels, scores):
    best = (-1.0, None)
    for t in brute_thresholds([scores]):  # highest first: ties keep the highest threshold
        pred = scores >= t
        tp = np.sum(pred & (labels == 1))
        fp = np.sum(pred & (labels == 0))
        fn = np.sum(~pred & (labels == 1))
        f1 = 2 * tp / (2 * tp + fp + fn)
        if f1 > best[0]:
            best = (f1, t)
    return best


def brute_fpr_at_tpr(labels, scores, tpr):
    for t in brute_thresholds([scores]):
        if np.mean(scores[labels == 1] >= t) >= tpr:
            return np.mean(scores[labels == 0] >= t)
    raise AssertionError("unreachable: the lowest threshold has TPR 1")


# --------------------------------------------------------------------------- data


def random_image_set(seed, decimals=1, sizes=((9, 11), (16, 12), (6, 6), (13, 17), (10, 10))):
    """Masks with 1-3 rectangles per image (plus, in the first image, two squares touching
    at a corner: one 8-connected region), the third image without a defect, and maps =
    noise + a per-rectangle shift (some barely detectable), rounded to ``decimals`` so
    scores tie (rounding also mixes -0.0 and 0.0)."""
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for i, (h, w) in enumerate(sizes):
        mask = np.zeros((h, w), dtype=bool)
        amap = rng.normal(size=(h, w))
        if i != 2:
            for _ in range(rng.integers(1, 4)):
                r, c = rng.integers(0, h - 2), rng.integers(0, w - 2)
                dh, dw = rng.integers(1, 4, size=2)
                region = np.zeros_like(mask)
                region[r:r + dh, c:c + dw] = True
                mask |= region
                amap[region] += rng.uniform(-0.5, 3.0)
        if i == 0:
            mask[h - 4:h - 2, w - 4:w - 2] = mask[h - 2:, w - 2:] = True
            amap[h - 2:, w - 2:] += 2.0
        masks.append(mask)
        maps.append(np.round(amap, decimals))
    return masks, maps


# ----------------------------------------------------------------------- image level


@pytest.mark.parametrize("seed", range(5))
def test_image_metrics_agree_with_sklearn_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(60) < 0.3).astype(int)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(size=60) + labels, 1)  # many ties
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12)
    f1, threshold = f1_max(labels, scores)
    best_f1, best_t = brute_f1_max(labels, scores)
    assert f1 == pytest.approx(best_f1, abs=1e-12)
    assert threshold == best_t
    for tpr in (0.5, 0.9, 0.95, 1.0):
        assert fpr_at_tpr(labels, scores, tpr) == pytest.approx(
            brute_fpr_at_tpr(labels, scores, tpr), abs=1e-12)


def test_image_auroc_counts_ties_as_half():
    assert image_auroc([0, 1], [0.5, 0.5]) == 0.5
    assert image_auroc([0, 0, 1], [0.2, 0.5, 0.5]) == 0.75
    assert image_auroc([True, False], [1e9, -np.inf]) == 1.0
    assert image_auroc([1, 0, 0], [np.inf, np.inf, 0.0]) == 0.75  # infinite scores tie too


def test_fpr_at_tpr_hand_cases():
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.2, 0.6, 0.5, 0.3, 0.1]
    assert fpr_at_tpr(labels, scores, 0.75) == 0.0  # reached at t = 0.7, above every normal
    assert fpr_at_tpr(labels, scores, 0.95) == 0.75  # needs t = 0.2: normals 0.6, 0.5, 0.3 pass
    assert fpr_at_tpr(labels, scores, 0.5) == 0.0
    # a normal tied with the positive that completes the TPR counts as a false positive
    assert fpr_at_tpr([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1], 1.0) == 0.5
    assert fpr_at_tpr([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1], 0.5) == 0.0


def test_f1_max_hand_case():
    # F1 = 2 TP / (2 TP + FP + FN): t = 0.9 -> 2/5, t = 0.8 -> 4/5, t = 0.6 -> 4/6,
    # t = 0.3 -> 6/8, t = 0.1 -> 6/9
    f1, threshold = f1_max([1, 1, 0, 1, 0, 0], [0.9, 0.8, 0.6, 0.3, 0.3, 0.1])
    assert f1 == pytest.approx(0.8, abs=1e-12)
    assert threshold == 0.8
    # equal best F1 = 2/3 at t = 0.9 (TP 1, FP 0, FN 1) and t = 0.2 (TP 2, FP 2): the higher wins
    assert f1_max([1, 0, 0, 1], [0.9, 0.5, 0.4, 0.2]) == (pytest.approx(2 / 3, abs=1e-12), 0.9)


def test_image_metrics_dict_matches_functions_and_serialises():
    labels = [0, 0, 1, 0, 1, 1, 0]
    scores = [0.1, 0.7, 0.8, 0.3, 0.65, 2.0, 0.2]
    result = image_metrics(labels, scores)
    f1, threshold = f1_max(labels, scores)
    assert result == {
        "image_auroc": image_auroc(labels, scores),
        "image_ap": average_precision(labels, scores),
        "image_f1_max": f1,
        "image_f1_threshold": threshold,
        "image_fpr95": fpr_at_tpr(labels, scores, 0.95),
    }
    assert all(type(v) is float for v in result.values())
    json.dumps(result)


def test_metrics_use_raw_scores_only_through_their_order():
    # squashing huge scores through a sigmoid ties them at 1.0; the metrics must see the order
    labels = np.array([0, 0, 1, 1, 0])
    scores = np.array([50.0, 10.0, 60.0, 70.0, 1.0])
    assert image_auroc(labels, scores) == 1.0
    assert image_auroc(labels, np.exp(scores)) == 1.0
    assert image_auroc(labels, -scores) == 0.0


def test_curve_points_integrate_to_auroc_and_ap():
    rng = np.random.default_rng(3)
    labels = rng.random(40) < 0.4
    scores = np.round(rng.normal(size=40) + labels, 1)
    fpr, tpr, thresholds = roc_curve_points(labels, scores)
    assert np.trapezoid(tpr, fpr) == pytest.approx(image_auroc(labels, scores), abs=1e-12)
    assert np.all(np.diff(thresholds) < 0)
    precision, recall, _ = pr_curve_points(labels, scores)
    assert -np.sum(np.diff(recall) * precision[:-1]) == pytest.approx(
        average_precision(labels, scores), abs=1e-12)


@pytest.mark.parametrize("labels, match", [
    ([0, 0, 0], "only normal images"),
    ([1, 1, 1], "only anomalous images"),
])
def test_image_auroc_names_the_missing_class(labels, match):
    with pytest.raises(ValueError, match=match):
        image_auroc(labels, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=match):
        image_metrics(labels, [0.1, 0.2, 0.3])


def test_image_metric_errors():
    with pytest.raises(ValueError, match="3 labels and 2 scores"):
        image_auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN.*index 1"):
        image_auroc([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="pred == -1"):
        image_auroc([-1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only normal"):
        average_precision([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="tpr must be in"):
        fpr_at_tpr([0, 1], [0.1, 0.2], tpr=0.0)
    assert average_precision([1, 1], [0.1, 0.2]) == 1.0  # defined with one class


# ----------------------------------------------------------------------- pixel level


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [1, 2])
def test_pixel_auroc_matches_brute_force_and_sklearn(seed, decimals):
    masks, maps = random_image_set(seed, decimals)
    result = pixel_auroc(masks, maps)
    assert result == pytest.approx(brute_pixel_auroc(masks, maps), abs=1e-6)
    flat_labels = np.concatenate([m.ravel() for m in masks])
    flat_scores = np.concatenate([s.ravel() for s in maps])
    assert result == pytest.approx(roc_auc_score(flat_labels, flat_scores), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [1, 2])
@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_aupro_matches_brute_force(seed, decimals, fpr_limit):
    masks, maps = random_image_set(seed, decimals)
    assert aupro(masks, maps, fpr_limit) == pytest.approx(
        brute_aupro(masks, maps, fpr_limit), abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_aupro_when_the_limit_falls_exactly_on_a_vertex(seed):
    masks, maps = random_image_set(seed, decimals=1)
    neg = np.concatenate([s[~m] for m, s in zip(masks, maps)])
    limit = float(np.mean(neg >= np.quantile(neg, 0.8)))  # an FPR the curve has a vertex at
    assert aupro(masks, maps, limit) == pytest.approx(brute_aupro(masks, maps, limit), abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_pixel_metrics_when_most_pixels_are_anomalous(seed):
    # inverting the masks makes the anomalous class the larger one (the other sorting path)
    masks, maps = random_image_set(seed, decimals=1)
    masks = [~m for m in masks]
    assert sum(m.sum() for m in masks) > sum((~m).sum() for m in masks)
    assert pixel_auroc(masks, maps) == pytest.approx(brute_pixel_auroc(masks, maps), abs=1e-6)
    assert aupro(masks, maps) == pytest.approx(brute_aupro(masks, maps, 0.3), abs=1e-6)


def test_pixel_metrics_on_continuous_float32_maps_and_stacked_input():
    rng = np.random.default_rng(7)
    masks = np.zeros((4, 20, 20), dtype=bool)
    masks[0, 3:7, 3:9] = masks[1, 10:12, 0:3] = masks[3, 15:, 15:] = True
    maps = (rng.normal(size=masks.shape) + 1.5 * masks).astype(np.float32)
    stacked = (pixel_auroc(masks, maps), aupro(masks, maps))
    listed = (pixel_auroc(list(masks), list(maps)), aupro(list(masks), list(maps)))
    assert stacked == listed
    assert stacked[0] == pytest.approx(brute_pixel_auroc(masks, maps), abs=1e-6)
    assert stacked[1] == pytest.approx(brute_aupro(masks, maps, 0.3), abs=1e-6)


def test_integer_maps_and_01_masks_give_the_same_result_as_float_and_bool():
    masks, maps = random_image_set(11, decimals=1)
    int_maps = [np.round(10 * s).astype(np.int16) for s in maps]
    float_maps = [s.astype(np.float64) for s in int_maps]
    u8_masks = [m.astype(np.uint8) for m in masks]
    assert pixel_auroc(u8_masks, int_maps) == pixel_auroc(masks, float_maps)
    assert aupro(u8_masks, int_maps) == pytest.approx(aupro(masks, float_maps), abs=1e-12)
    assert aupro(u8_masks, int_maps) == pytest.approx(brute_aupro(masks, float_maps, 0.3), abs=1e-6)


def test_aupro_hand_case_diagonal_pixels_form_one_region():
    # (0,0) and (1,1) touch diagonally: one 8-connected region, half detected at t = 0.9;
    # (3,3) is a second region, fully detected. PRO = (1/2 + 1) / 2 = 0.75 from FPR 0 on
    # (4-connectivity would give three regions and PRO = 2/3).
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = mask[1, 1] = mask[3, 3] = True
    amap = np.full((4, 4), 0.5)
    amap[0, 0] = amap[3, 3] = 0.9
    amap[1, 1] = 0.1
    assert aupro([mask], [amap], fpr_limit=0.3) == pytest.approx(0.75, abs=1e-12)
    assert aupro([mask], [amap], fpr_limit=1.0) == pytest.approx(0.75, abs=1e-12)


def test_aupro_hand_cases_with_interpolation():
    mask = np.array([[True, False, False, False, False]])
    # one region of one pixel at 0.5; normal pixels 0.9, 0.4, 0.3, 0.2 (FPR steps of 1/4):
    # curve (0,0) -> (0.25,0) [t=0.9] -> (0.25,1) [t=0.5] -> (0.5,1) -> ...
    amap = np.array([[0.5, 0.9, 0.4, 0.3, 0.2]])
    assert aupro([mask], [amap], 0.3) == pytest.approx(0.05 / 0.3, abs=1e-12)
    assert aupro([mask], [amap], 0.25) == pytest.approx(0.0, abs=1e-12)
    assert aupro([mask], [amap], 1.0) == pytest.approx(0.75, abs=1e-12)
    # a normal pixel tied with the region: one diagonal segment (0,0) -> (0.25,1)
    amap = np.array([[0.5, 0.5, 0.1, 0.1, 0.1]])
    assert aupro([mask], [amap], 0.5) == pytest.approx((0.25 * 0.5 + 0.25 * 1.0) / 0.5, abs=1e-12)
    assert aupro([mask], [amap], 0.1) == pytest.approx(0.1 * 0.4 / 2 / 0.1, abs=1e-12)
    assert pixel_auroc([mask], [amap]) == pytest.approx((0.5 * 1 + 3 * 1) / 4, abs=1e-12)


def test_aupro_weighs_regions_equally_not_pixels():
    mask = np.zeros((10, 10), dtype=bool)
    mask[0:6, 0:6] = True  # a large region, missed
    mask[9, 9] = True  # a one-pixel region, found
    amap = np.full((10, 10), 0.5)
    amap[0:6, 0:6] = 0.0
    amap[9, 9] = 1.0
    # PRO = 1/2 from FPR 0 (weighting pixels instead of regions would give 1/37)
    assert aupro([mask], [amap], 0.3) == pytest.approx(0.5, abs=1e-12)


def test_perfect_and_inverted_detectors():
    masks, maps = random_image_set(5, decimals=2)
    perfect = [np.where(m, 2.0 + 0.1 * s, 0.1 * s) for m, s in zip(masks, maps)]  # noise < 2
    assert pixel_auroc(masks, perfect) == 1.0
    assert aupro(masks, perfect) == pytest.approx(1.0, abs=1e-12)
    inverted = [-s for s in perfect]
    assert pixel_auroc(masks, inverted) == 0.0
    assert aupro(masks, inverted) == pytest.approx(0.0, abs=1e-12)
    assert aupro(masks, inverted, fpr_limit=1.0) < 0.01  # PRO only rises at FPR 1


def test_negative_zero_and_infinities_tie_with_themselves():
    mask = np.array([[True, False]])
    assert pixel_auroc([mask], [np.array([[0.0, -0.0]])]) == 0.5
    assert aupro([mask], [np.array([[-0.0, 0.0]])], 1.0) == pytest.approx(0.5, abs=1e-12)
    mask = np.array([[True, False, False]])
    amap = np.array([[np.inf, np.inf, 0.0]])
    assert pixel_auroc([mask], [amap]) == 0.75
    assert aupro([mask], [amap], 1.0) == pytest.approx(brute_aupro([mask], [amap], 1.0), abs=1e-12)


def test_pixel_metrics_dict_and_none_without_defects():
    masks, maps = random_image_set(2)
    assert pixel_metrics(masks, maps, fpr_limit=0.2) == {
        "pixel_auroc": pixel_auroc(masks, maps), "aupro": aupro(masks, maps, 0.2)}
    empty = [np.zeros_like(m) for m in masks]
    assert pixel_metrics(empty, maps) == {"pixel_auroc": None, "aupro": None}


def test_pixel_metric_errors():
    masks, maps = random_image_set(0)
    bad = list(maps)
    bad[3] = bad[3][:, :-1]
    for metric in (pixel_auroc, aupro, pixel_metrics):
        with pytest.raises(ValueError, match=r"maps\[3\] has shape \(13, 16\) but masks\[3\] has shape \(13, 17\)"):
            metric(masks, bad)
    nan_maps = list(maps)
    nan_maps[1] = nan_maps[1].copy()
    nan_maps[1][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"maps\[1\] contains 1 NaN"):
        aupro(masks, nan_maps)
    with pytest.raises(ValueError, match=r"maps\[1\] contains 1 NaN"):
        pixel_auroc(masks, nan_maps)
    empty = [np.zeros_like(m) for m in masks]
    for metric in (pixel_auroc, aupro):
        with pytest.raises(ValueError, match="no mask has an anomalous pixel"):
            metric(empty, maps)
        with pytest.raises(ValueError, match="every pixel"):
            metric([np.ones_like(m) for m in masks], maps)
    with pytest.raises(ValueError, match="5 masks but 4 anomaly maps"):
        pixel_auroc(masks, maps[:4])
    with pytest.raises(ValueError, match="fpr_limit must be in"):
        aupro(masks, maps, fpr_limit=0.0)
    with pytest.raises(ValueError, match="mask > 127"):
        pixel_auroc([m.astype(np.uint8) * 255 for m in masks], maps)
    with pytest.raises(ValueError, match="single 2-D array"):
        pixel_auroc(masks[0], maps[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_radix_selection_is_exact_across_chunks(dtype):
    rng = np.random.default_rng(0)
    values = np.concatenate([
        np.round(rng.normal(size=3000), 2),  # ties, negative numbers, -0.0
        [np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30],
        rng.normal(scale=1e6, size=1000),
    ]).astype(dtype)
    rng.shuffle(values)
    chunks = np.array_split(values, 7)
    descending = np.sort(values)[::-1]
    for k in (1, 2, 100, 1234, len(values) // 2, len(values) - 1, len(values)):
        assert _kth_largest(lambda: iter(chunks), k, np.dtype(dtype)) == descending[k - 1]


def test_pixel_metrics_do_not_copy_every_pixel():
    # 400 maps of 64 x 64 float32 (6.5 MB) with ~4 % anomalous pixels. Concatenating the
    # maps alone would allocate their size again (twice that as float64, more to argsort);
    # the streaming implementation needs the sorted anomalous pixels, one image's
    # temporaries and (AUPRO) fixed 65536-bin histograms of ~1.5 MB.
    rng = np.random.default_rng(0)
    masks = np.zeros((400, 64, 64), dtype=bool)
    masks[:, 20:33, 25:38] = True
    maps = (rng.normal(size=masks.shape) + masks).astype(np.float32)
    for metric in (pixel_auroc, aupro):
        tracemalloc.start()
        metric(masks, maps)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        allowed = 0.25 * maps.nbytes + 2**21
        assert peak < allowed, f"{metric.__name__} peaked at {peak / maps.nbytes:.2f}x the maps"


def test_brute_force_reference_catches_a_wrong_area():
    # guard that the references can fail: a shifted curve changes the brute-force value
    masks, maps = random_image_set(1)
    shifted = [s + 0.3 * m for m, s in zip(masks, maps)]
    assert not math.isclose(brute_aupro(masks, maps, 0.3), brute_aupro(masks, shifted, 0.3))
    assert aupro(masks, shifted) == pytest.approx(brute_aupro(masks, shifted, 0.3), abs=1e-6)
