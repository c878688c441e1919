"""Pixel-level metrics: exact pixel AUROC and AUPRO, without materialising all pixels.

Inputs are a set of ground-truth masks (bool, ``(H_i, W_i)``) and anomaly maps (float,
same shapes, higher = more anomalous); sizes may differ between images. A typical
evaluation has tens of millions of pixels, so nothing here concatenates every pixel into
one array or sorts it. Both metrics sort only a part of the data and stream the rest
image by image:

* pixel AUROC sorts the smaller class (usually the anomalous pixels) and, for every
  pixel of the other class, counts the pixels above / equal to it with ``searchsorted``;
* AUPRO only needs the normal pixels above the score where the false-positive rate
  reaches ``fpr_limit``; that score is found by an exact radix selection
  (:func:`_kth_largest`, a few histogram passes), and only the anomalous pixels above it
  are sorted.

Both are exact, ties included (all pixels with one score value cross a threshold
together); ``tests/test_metrics.py`` checks them against brute-force threshold sweeps.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from scipy import ndimage

from workbench.metrics._image import _check_rate

__all__ = ["pixel_auroc", "aupro", "pixel_metrics"]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# --------------------------------------------------------------------------- inputs


class _PixelSet:
    """Validated masks and maps: ``pairs`` of (bool mask, map), the common score dtype
    (float32 or float64) and the numbers of anomalous and normal pixels."""

    def __init__(self, masks, maps, metric: str):
        masks = _as_image_list(masks, "masks", metric)
        maps = _as_image_list(maps, "maps", metric)
        if len(masks) != len(maps):
            raise ValueError(f"{metric}: got {len(masks)} masks but {len(maps)} anomaly maps; "
                             "pass one mask per map, in the same order")
        if not maps:
            raise ValueError(f"{metric}: no images (empty masks and maps)")
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self.n_pos = 0
        dtypes = []
        for i, (mask, amap) in enumerate(zip(masks, maps)):
            mask, amap = np.asarray(mask), np.asarray(amap)
            if amap.ndim != 2:
                raise ValueError(f"{metric}: maps[{i}] must be 2-D (H, W); got shape {amap.shape}")
            if mask.shape != amap.shape:
                raise ValueError(
                    f"{metric}: maps[{i}] has shape {amap.shape} but masks[{i}] has shape "
                    f"{mask.shape}; each anomaly map must be at its image's mask size "
                    "(resize the map, not the mask)")
            if amap.dtype.kind not in "iuf":
                raise ValueError(f"{metric}: maps[{i}] must hold real numbers; got dtype {amap.dtype}")
            if amap.dtype.kind == "f" and np.isnan(amap).any():
                raise ValueError(
                    f"{metric}: maps[{i}] contains {int(np.isnan(amap).sum())} NaN value(s); "
                    "fix the detector output before computing metrics")
            mask = _as_bool_mask(mask, i, metric)
            self.pairs.append((mask, amap))
            self.n_pos += int(np.count_nonzero(mask))
            dtypes.append(amap.dtype)
        self.n_neg = sum(m.size for m, _ in self.pairs) - self.n_pos
        # a dtype that holds every map exactly (ints become float64, float16 float32)
        dtype = np.result_type(np.float32, *dtypes)
        self.dtype = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)

    def require_both_classes(self, metric: str) -> None:
        if self.n_pos == 0:
            raise ValueError(
                f"{metric} is undefined: no mask has an anomalous pixel ({len(self.pairs)} "
                "images, all masks empty); it needs ground-truth defects "
                "(pixel_metrics returns None in this case)")
        if self.n_neg == 0:
            raise ValueError(f"{metric} is undefined: every pixel of every mask is anomalous; "
                             "it needs normal pixels too")

    def scores(self, anomalous: bool) -> Iterator[np.ndarray]:
        """Yield, image by image, the 1-D scores of the anomalous (or normal) pixels."""
        for mask, amap in self.pairs:
            values = amap[mask] if anomalous else amap[~mask]
            yield values.astype(self.dtype, copy=False)


def _as_image_list(images, name: str, metric: str) -> list:
    if isinstance(images, np.ndarray):
        if images.ndim == 2:
            raise ValueError(f"{metric}: {name} is a single 2-D array of shape {images.shape}; "
                             "pass a list of (H, W) arrays or a stacked (n, H, W) array")
        if images.ndim != 3:
            raise ValueError(f"{metric}: {name} must be a list of (H, W) arrays or an (n, H, W) "
                             f"array; got an array of shape {images.shape}")
    return list(images)


def _as_bool_mask(mask: np.ndarray, i: int, metric: str) -> np.ndarray:
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind not in "iuf" or not np.isin(mask, (0, 1)).all():
        found = np.setdiff1d(np.unique(mask), (0, 1))[:5].tolist() if mask.dtype.kind in "iuf" else mask.dtype
        raise ValueError(f"{metric}: masks[{i}] must be boolean or 0/1 (1 = anomalous); found {found}. "
                         "Convert e.g. an 8-bit mask image with `mask > 127`")
    return mask == 1


# ---------------------------------------------------------------- exact counting core


def _rank_against(reference: np.ndarray, values: np.ndarray):
    """Where ``values`` fall in the sorted ``reference``, per distinct value.

    Returns ``(counts, lo, hi)`` over the distinct entries ``u`` of ``values``:
    ``counts`` how often ``u`` occurs in ``values``, ``lo = #(reference < u)`` and
    ``hi = #(reference <= u)`` (all integer arrays).
    """
    if len(values) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    values = np.sort(values)  # sorted queries make searchsorted cache-friendly
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    unique = values[starts]
    counts = np.diff(np.append(starts, len(values)))
    lo = np.searchsorted(reference, unique, side="left")
    hi = lo.copy()
    # most values have no equal in the reference: search the right side only for those that do
    inside = lo < len(reference)
    tied = np.zeros(len(unique), dtype=bool)
    tied[inside] = reference[lo[inside]] == unique[inside]
    hi[tied] = np.searchsorted(reference, unique[tied], side="right")
    return counts, lo, hi


def _sortable_keys(values: np.ndarray) -> np.ndarray:
    """Unsigned integers with the same order as the floats ``values`` (no NaN).

    The only equal floats with different keys are -0.0 and +0.0 (-0.0 just below); that
    refines the order without breaking it, so a k-th largest key is a k-th largest float.
    """
    utype = np.dtype(f"u{values.dtype.itemsize}")
    bits = values.view(utype)
    sign = utype.type(1 << (8 * utype.itemsize - 1))
    negative = (bits & sign).astype(bool)
    return bits ^ np.where(negative, utype.type(np.iinfo(utype).max), sign)


def _from_sortable_key(key: int, dtype: np.dtype):
    utype = np.dtype(f"u{dtype.itemsize}")
    sign = 1 << (8 * utype.itemsize - 1)
    bits = key ^ sign if key & sign else ~key & np.iinfo(utype).max
    return np.array(bits, dtype=utype).view(dtype)[()]


def _kth_largest(chunks: Callable[[], Iterable[np.ndarray]], k: int, dtype: np.dtype):
    """The ``k``-th largest value (1-based) of all the 1-D arrays ``chunks()`` yields.

    An exact radix selection on the floats' order-preserving integer keys, 16 bits per
    pass (2 passes for float32, 4 for float64), each pass streaming the chunks into a
    65536-bin histogram. Memory is one chunk plus the histogram, whatever the total size.
    """
    width = 8 * dtype.itemsize
    prefix, shift = 0, width  # the key's bits above ``shift`` are fixed to ``prefix``
    while shift > 0:
        shift -= 16
        hist = np.zeros(1 << 16, dtype=np.int64)
        for chunk in chunks():
            keys = _sortable_keys(chunk)
            if shift + 16 < width:
                keys = keys[(keys >> (shift + 16)) == prefix]
            hist += np.bincount(((keys >> shift) & 0xFFFF).astype(np.intp), minlength=1 << 16)
        at_or_above = np.cumsum(hist[::-1])  # [j]: count with digit >= 0xFFFF - j
        j = int(np.searchsorted(at_or_above, k))
        digit = 0xFFFF - j
        k -= int(at_or_above[j] - hist[digit])  # rank within the chosen digit
        prefix = (prefix << 16) | digit
    return _from_sortable_key(prefix, dtype)


# ------------------------------------------------------------------------- metrics


def pixel_auroc(masks: Sequence[np.ndarray] | np.ndarray,
                maps: Sequence[np.ndarray] | np.ndarray) -> float:
    """Exact ROC AUC over all pixels of a set of images.

    Parameters
    ----------
    masks : sequence of ndarray of shape (H_i, W_i), or ndarray of shape (n, H, W)
        Ground truth, True (or 1) = anomalous pixel. Images without a defect have an
        all-False mask.
    maps : sequence of ndarray of shape (H_i, W_i), or ndarray of shape (n, H, W)
        Anomaly maps at each mask's size, raw scores, higher = more anomalous
        (float32 stays float32; nothing is normalised).

    Returns
    -------
    float
        Probability that a random anomalous pixel scores higher than a random normal
        pixel of the whole set, ties counting 1/2.

    Raises
    ------
    ValueError
        If no pixel (or every pixel) is anomalous, the numbers of masks and maps differ,
        a map's shape differs from its mask's (the message gives the index), or a map
        contains NaN.

    Notes
    -----
    Exact and memory-light: the smaller class is copied and sorted (e.g. 4 M float32
    anomalous pixels = 16 MB); the other is streamed image by image and located in it
    with ``searchsorted``. Extra memory is the sorted smaller class plus temporaries
    for one image (under 100 bytes per pixel of that image), not the whole set.
    """
    return _pixel_auroc(_PixelSet(masks, maps, "pixel AUROC"))


def _pixel_auroc(data: _PixelSet) -> float:
    data.require_both_classes("pixel AUROC")
    sort_anomalous = data.n_pos <= data.n_neg
    reference = np.empty(min(data.n_pos, data.n_neg), dtype=data.dtype)
    start = 0
    for values in data.scores(anomalous=sort_anomalous):
        reference[start:start + len(values)] = values
        start += len(values)
    reference.sort()
    n_ref = len(reference)
    twice_wins = 0  # 2 * #(anomalous > normal pairs) + #(tied pairs)
    for values in data.scores(anomalous=not sort_anomalous):
        counts, lo, hi = _rank_against(reference, values)
        ties = int(counts @ (hi - lo))
        if sort_anomalous:  # each normal value is beaten by the anomalous ones above it
            twice_wins += 2 * int(counts @ (n_ref - hi)) + ties
        else:  # each anomalous value beats the normal ones below it
            twice_wins += 2 * int(counts @ lo) + ties
    return twice_wins / (2 * data.n_pos * data.n_neg)


def aupro(masks: Sequence[np.ndarray] | np.ndarray,
          maps: Sequence[np.ndarray] | np.ndarray,
          fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap (PRO) curve up to ``fpr_limit``.

    Regions are the 8-connected components of each image's ground-truth mask. At a
    threshold ``t`` (a pixel is anomalous when ``score >= t``):

    * ``FPR(t)`` = fraction of all normal pixels of the whole set with ``score >= t``;
    * ``PRO(t)`` = mean over all regions of all images (each region weighs the same,
      whatever its size) of the fraction of the region's pixels with ``score >= t``.

    The curve starts at (0, 0) and has a vertex at every distinct score value, walking
    thresholds from high to low; pixels with equal scores cross together, so ties give
    straight (diagonal) segments. It is integrated with the trapezoid rule from FPR 0
    to ``fpr_limit`` (the last point linearly interpolated at exactly ``fpr_limit``) and
    divided by ``fpr_limit``, so a perfect detector gets 1.0.

    Parameters
    ----------
    masks : sequence of ndarray of shape (H_i, W_i), or ndarray of shape (n, H, W)
        Ground truth, True (or 1) = anomalous pixel; images without a defect have an
        all-False mask.
    maps : sequence of ndarray of shape (H_i, W_i), or ndarray of shape (n, H, W)
        Anomaly maps at each mask's size, raw scores, higher = more anomalous.
    fpr_limit : float, default 0.3
        Upper integration limit on the FPR axis, in ``(0, 1]``.

    Returns
    -------
    float
        In ``[0, 1]``; 1.0 when every anomalous pixel outscores every normal one.

    Raises
    ------
    ValueError
        If no pixel (or every pixel) is anomalous, ``fpr_limit`` is outside ``(0, 1]``,
        the numbers of masks and maps differ, a map's shape differs from its mask's
        (the message gives the index), or a map contains NaN.

    Notes
    -----
    ``PRO(t)`` is a weighted count of the anomalous pixels above ``t`` (pixel weight
    ``1 / (n_regions * region_size)``), so the curve is a ROC curve with weighted
    positives. The area only involves normal pixels scoring at least ``u``, the
    ``ceil(fpr_limit * n_normal)``-th highest normal score (where the FPR reaches
    ``fpr_limit``); ``u`` is found by an exact streaming radix selection and only the
    anomalous pixels scoring at least ``u`` are sorted. Each normal pixel ``v > u``
    adds the trapezoid ``(W(> v) + W(>= v)) / 2 / n_normal``; the normal pixels equal to
    ``u`` form the segment that crosses ``fpr_limit``, which is cut there.
    """
    fpr_limit = _check_rate(fpr_limit, "fpr_limit")
    return _aupro(_PixelSet(masks, maps, "AUPRO"), fpr_limit)


def _aupro(data: _PixelSet, fpr_limit: float) -> float:
    data.require_both_classes("AUPRO")
    n_neg = data.n_neg

    # 1. u: the highest score at which the FPR reaches fpr_limit
    k = min(n_neg, max(1, math.ceil(fpr_limit * n_neg)))
    u = _kth_largest(lambda: data.scores(anomalous=False), k, data.dtype)

    # 2. anomalous pixels scoring >= u, sorted, with suffix sums of their PRO weights
    scores, region_of, region_sizes, n_regions = [], [], [], 0
    for mask, amap in data.pairs:
        if not mask.any():
            continue
        regions, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        region_sizes.append(np.bincount(regions.ravel())[1:])
        above = mask & (amap >= u)
        scores.append(amap[above].astype(data.dtype, copy=False))
        region_of.append(regions[above] - 1 + n_regions)
        n_regions += n
    scores = np.concatenate(scores)
    order = np.argsort(scores)
    scores = scores[order]
    weights = 1.0 / (n_regions * np.concatenate(region_sizes)[np.concatenate(region_of)[order]])
    # weight_from[i] = PRO at a threshold just at or below scores[i] = sum of weights[i:]
    weight_from = np.zeros(len(scores) + 1)
    weight_from[:-1] = np.cumsum(weights[::-1])[::-1]

    # 3. stream the normal pixels above u: one trapezoid per pixel (ties share a segment)
    twice_area = 0.0  # in units of 1 / n_neg
    n_above = n_at = 0
    for values in data.scores(anomalous=False):
        n_at += int(np.count_nonzero(values == u))
        values = values[values > u]
        n_above += len(values)
        counts, lo, hi = _rank_against(scores, values)
        twice_area += float(counts @ (weight_from[hi] + weight_from[lo]))
    area = twice_area / (2 * n_neg)

    # 4. the segment of the normal pixels at u runs from FPR n_above / n_neg to
    # (n_above + n_at) / n_neg and crosses fpr_limit: keep its part up to fpr_limit
    pro_before = weight_from[np.searchsorted(scores, u, side="right")]
    pro_after = weight_from[np.searchsorted(scores, u, side="left")]
    fraction = min(1.0, (fpr_limit * n_neg - n_above) / n_at)
    pro_at_limit = pro_before + fraction * (pro_after - pro_before)
    area += (fpr_limit - n_above / n_neg) * (pro_before + pro_at_limit) / 2
    return float(min(1.0, area / fpr_limit))


def pixel_metrics(masks: Sequence[np.ndarray] | np.ndarray,
                  maps: Sequence[np.ndarray] | np.ndarray,
                  fpr_limit: float = 0.3) -> dict[str, float | None]:
    """Pixel AUROC and AUPRO at once, with the key names used in ``metrics.json``.

    Parameters
    ----------
    masks : sequence of ndarray of shape (H_i, W_i), or ndarray of shape (n, H, W)
        Ground truth, True (or 1) = anomalous pixel.
    maps : sequence of ndarray of shape (H_i, W_i), or ndarray of shape (n, H, W)
        Anomaly maps at each mask's size, raw scores, higher = more anomalous.
    fpr_limit : float, default 0.3
        Integration limit of :func:`aupro`.

    Returns
    -------
    dict
        ``pixel_auroc`` (:func:`pixel_auroc`) and ``aupro`` (:func:`aupro`) as Python
        floats, or both None when no mask has an anomalous pixel (a data set without
        ground-truth defects).

    Raises
    ------
    ValueError
        For invalid input, as :func:`pixel_auroc` and :func:`aupro`, and when every
        pixel is anomalous.
    """
    fpr_limit = _check_rate(fpr_limit, "fpr_limit")
    data = _PixelSet(masks, maps, "pixel metrics")
    if data.n_pos == 0:
        return {"pixel_auroc": None, "aupro": None}
    return {"pixel_auroc": _pixel_auroc(data), "aupro": _aupro(data, fpr_limit)}
