"""Image-level (one score per image) threshold-free metrics.

Every function takes ``labels`` (1 = anomalous, 0 = normal) and raw ``scores``
(higher = more anomalous) and works on the exact, tie-aware threshold sweep computed
by :func:`_threshold_sweep`: one operating point per distinct score value, where an
image is called anomalous when ``score >= threshold``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "image_auroc",
    "average_precision",
    "f1_max",
    "fpr_at_tpr",
    "image_metrics",
    "roc_curve_points",
    "pr_curve_points",
]


class _Sweep(NamedTuple):
    """Counts at every distinct threshold, highest threshold first.

    ``tps[i]`` / ``fps[i]`` are the numbers of anomalous / normal samples with
    ``score >= thresholds[i]``; the last entry therefore has ``tps == n_pos`` and
    ``fps == n_neg``.
    """

    thresholds: np.ndarray  # (k,) float64, strictly decreasing
    tps: np.ndarray  # (k,) int64
    fps: np.ndarray  # (k,) int64
    n_pos: int
    n_neg: int


def _check_labels_scores(labels, scores, *, need: tuple[str, ...], metric: str):
    """Validate and convert ``labels`` and ``scores`` to ``(bool (n,), float64 (n,))``.

    ``need`` lists the classes the metric cannot do without: ``"anomalous"``,
    ``"normal"`` or both.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError(
            f"{metric}: labels and scores must be 1-D (one value per image); "
            f"got labels of shape {labels.shape} and scores of shape {scores.shape}"
        )
    if len(labels) != len(scores):
        raise ValueError(
            f"{metric}: labels and scores must have the same length; "
            f"got {len(labels)} labels and {len(scores)} scores"
        )
    if labels.dtype != bool:
        if labels.dtype.kind not in "iuf":
            raise ValueError(f"{metric}: labels must be 0/1 or bool; got dtype {labels.dtype}")
        bad = np.setdiff1d(np.unique(labels), [0, 1])
        if bad.size:
            raise ValueError(
                f"{metric}: labels must be 0 (normal) or 1 (anomalous); found {bad[:5].tolist()}. "
                "(A scikit-learn style prediction of +1/-1 converts with `labels = pred == -1`.)"
            )
        labels = labels == 1
    if scores.dtype.kind not in "iuf":
        raise ValueError(f"{metric}: scores must be real numbers; got dtype {scores.dtype}")
    scores = scores.astype(np.float64, copy=False)
    n_nan = int(np.isnan(scores).sum())
    if n_nan:
        first = int(np.flatnonzero(np.isnan(scores))[0])
        raise ValueError(
            f"{metric}: scores contain {n_nan} NaN value(s) (first at index {first}); "
            "fix the detector output or drop those images before computing metrics"
        )
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if "anomalous" in need and n_pos == 0:
        raise ValueError(
            f"{metric} is undefined: only normal images (label 0) are present, "
            f"{n_neg} of them; it needs at least one anomalous image (label 1)"
        )
    if "normal" in need and n_neg == 0:
        raise ValueError(
            f"{metric} is undefined: only anomalous images (label 1) are present, "
            f"{n_pos} of them; it needs at least one normal image (label 0)"
        )
    return labels, scores


def _threshold_sweep(labels: np.ndarray, scores: np.ndarray) -> _Sweep:
    """Exact counts at every distinct score value (ties move together)."""
    order = np.argsort(scores, kind="stable")[::-1]
    scores = scores[order]
    # index of the last sample of each run of equal scores (``!=`` keeps +-inf runs together)
    last = np.append(np.flatnonzero(scores[1:] != scores[:-1]), len(scores) - 1)
    tps = np.cumsum(labels[order], dtype=np.int64)[last]
    fps = (last + 1) - tps
    n_pos = int(tps[-1])
    return _Sweep(scores[last], tps, fps, n_pos, len(scores) - n_pos)


def image_auroc(labels, scores) -> float:
    """Area under the ROC curve of image scores.

    Parameters
    ----------
    labels : array-like of shape (n,)
        1 (or True) for anomalous images, 0 (or False) for normal ones.
    scores : array-like of shape (n,)
        Raw anomaly scores, higher = more anomalous. Not normalised in any way
        (the metric only depends on their order).

    Returns
    -------
    float
        Probability that a random anomalous image scores higher than a random normal one,
        ties counting 1/2 (the Mann-Whitney statistic). 1.0 = perfect, 0.5 = chance.

    Raises
    ------
    ValueError
        If only one class is present (the message says which), the lengths differ,
        labels are not 0/1 or scores contain NaN.

    Examples
    --------
    >>> image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    labels, scores = _check_labels_scores(
        labels, scores, need=("anomalous", "normal"), metric="image AUROC")
    sweep = _threshold_sweep(labels, scores)
    return _auroc_from_sweep(sweep)


def _auroc_from_sweep(sweep: _Sweep) -> float:
    # trapezoids between consecutive ROC vertices, in integer units of 1/(2 * P * N)
    tps = np.concatenate([[0], sweep.tps])
    fps = np.concatenate([[0], sweep.fps])
    twice_area = int(np.sum(np.diff(fps) * (tps[1:] + tps[:-1])))
    return twice_area / (2 * sweep.n_pos * sweep.n_neg)


def average_precision(labels, scores) -> float:
    """Average precision (area under the precision-recall curve, step-wise).

    ``AP = sum_k (R_k - R_{k-1}) * P_k`` over the distinct thresholds, from the highest
    down, where ``P_k`` and ``R_k`` are precision and recall at threshold ``k``; the
    same definition as :func:`sklearn.metrics.average_precision_score` (no interpolation).

    Parameters
    ----------
    labels : array-like of shape (n,)
        1 (or True) for anomalous images, 0 (or False) for normal ones.
    scores : array-like of shape (n,)
        Raw anomaly scores, higher = more anomalous.

    Returns
    -------
    float
        In ``(0, 1]``; 1.0 when every anomalous image outscores every normal one.
        Chance level is the fraction of anomalous images.

    Raises
    ------
    ValueError
        If no anomalous image is present, the lengths differ, labels are not 0/1
        or scores contain NaN. (Only anomalous images is fine: AP is 1.0.)
    """
    labels, scores = _check_labels_scores(
        labels, scores, need=("anomalous",), metric="average precision")
    sweep = _threshold_sweep(labels, scores)
    return _ap_from_sweep(sweep)


def _ap_from_sweep(sweep: _Sweep) -> float:
    precision = sweep.tps / (sweep.tps + sweep.fps)
    recall_steps = np.diff(np.concatenate([[0], sweep.tps])) / sweep.n_pos
    return float(np.sum(recall_steps * precision))


def f1_max(labels, scores) -> tuple[float, float]:
    """Best F1 score over all thresholds, and the threshold that achieves it.

    Parameters
    ----------
    labels : array-like of shape (n,)
        1 (or True) for anomalous images, 0 (or False) for normal ones.
    scores : array-like of shape (n,)
        Raw anomaly scores, higher = more anomalous.

    Returns
    -------
    f1 : float
        ``max_t 2 TP / (2 TP + FP + FN)`` where an image is anomalous when ``score >= t``
        and ``t`` runs over every distinct score.
    threshold : float
        The score value ``t`` achieving it (the highest such ``t`` if several do),
        directly usable as ``scores >= threshold``.

    Raises
    ------
    ValueError
        If no anomalous image is present, the lengths differ, labels are not 0/1
        or scores contain NaN.
    """
    labels, scores = _check_labels_scores(
        labels, scores, need=("anomalous",), metric="F1-max")
    return _f1_from_sweep(_threshold_sweep(labels, scores))


def _f1_from_sweep(sweep: _Sweep) -> tuple[float, float]:
    f1 = 2 * sweep.tps / (sweep.tps + sweep.fps + sweep.n_pos)
    best = int(np.argmax(f1))  # first maximum = highest threshold
    return float(f1[best]), float(sweep.thresholds[best])


def fpr_at_tpr(labels, scores, tpr: float = 0.95) -> float:
    """False-positive rate at the first threshold whose true-positive rate reaches ``tpr``.

    Thresholds are walked from the highest score down (``score >= t`` is anomalous);
    the result is the FPR at the first one with ``TPR >= tpr``. With ``tpr=0.95`` this
    is the usual FPR95 of out-of-distribution detection (lower is better).

    Parameters
    ----------
    labels : array-like of shape (n,)
        1 (or True) for anomalous images, 0 (or False) for normal ones.
    scores : array-like of shape (n,)
        Raw anomaly scores, higher = more anomalous.
    tpr : float, default 0.95
        Target true-positive rate, in ``(0, 1]``.

    Returns
    -------
    float
        Fraction of normal images with ``score >= t`` at that threshold, in ``[0, 1]``.

    Raises
    ------
    ValueError
        If only one class is present, ``tpr`` is outside ``(0, 1]``, the lengths differ,
        labels are not 0/1 or scores contain NaN.
    """
    tpr = _check_rate(tpr, "tpr")
    labels, scores = _check_labels_scores(
        labels, scores, need=("anomalous", "normal"), metric=f"FPR at TPR {tpr:g}")
    return _fpr_from_sweep(_threshold_sweep(labels, scores), tpr)


def _check_rate(value, name: str) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1]; got {value}")
    return value


def _fpr_from_sweep(sweep: _Sweep, tpr: float) -> float:
    # the last threshold always has TPR = 1, so argmax finds a True
    first = int(np.argmax(sweep.tps / sweep.n_pos >= tpr))
    return float(sweep.fps[first] / sweep.n_neg)


def image_metrics(labels, scores) -> dict[str, float]:
    """All image-level metrics at once, with the key names used in ``metrics.json``.

    Parameters
    ----------
    labels : array-like of shape (n,)
        1 (or True) for anomalous images, 0 (or False) for normal ones.
    scores : array-like of shape (n,)
        Raw anomaly scores, higher = more anomalous.

    Returns
    -------
    dict
        ``image_auroc`` (:func:`image_auroc`), ``image_ap`` (:func:`average_precision`),
        ``image_f1_max`` and ``image_f1_threshold`` (:func:`f1_max`), ``image_fpr95``
        (:func:`fpr_at_tpr` at 0.95); plain Python floats.

    Raises
    ------
    ValueError
        As :func:`image_auroc`: both classes are needed.
    """
    labels, scores = _check_labels_scores(
        labels, scores, need=("anomalous", "normal"), metric="image metrics")
    sweep = _threshold_sweep(labels, scores)
    f1, threshold = _f1_from_sweep(sweep)
    return {
        "image_auroc": _auroc_from_sweep(sweep),
        "image_ap": _ap_from_sweep(sweep),
        "image_f1_max": f1,
        "image_f1_threshold": threshold,
        "image_fpr95": _fpr_from_sweep(sweep, 0.95),
    }


def roc_curve_points(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve vertices for plotting (thin wrapper of :func:`sklearn.metrics.roc_curve`).

    Parameters
    ----------
    labels : array-like of shape (n,)
        1 (or True) for anomalous images, 0 (or False) for normal ones.
    scores : array-like of shape (n,)
        Raw anomaly scores, higher = more anomalous.

    Returns
    -------
    fpr, tpr : ndarray of shape (k,)
        Increasing; the first point is (0, 0), the last (1, 1).
    thresholds : ndarray of shape (k,)
        Decreasing; point ``i`` calls ``score >= thresholds[i]`` anomalous
        (``thresholds[0]`` is ``inf``). Collinear points are dropped.
    """
    from sklearn.metrics import roc_curve

    labels, scores = _check_labels_scores(
        labels, scores, need=("anomalous", "normal"), metric="ROC curve")
    return roc_curve(labels, scores)


def pr_curve_points(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve for plotting (wrapper of :func:`sklearn.metrics.precision_recall_curve`).

    Parameters
    ----------
    labels : array-like of shape (n,)
        1 (or True) for anomalous images, 0 (or False) for normal ones.
    scores : array-like of shape (n,)
        Raw anomaly scores, higher = more anomalous.

    Returns
    -------
    precision, recall : ndarray of shape (k + 1,)
        Recall decreasing to 0; the last point is (precision 1, recall 0) by convention.
    thresholds : ndarray of shape (k,)
        Increasing; point ``i`` calls ``score >= thresholds[i]`` anomalous.
    """
    from sklearn.metrics import precision_recall_curve

    labels, scores = _check_labels_scores(
        labels, scores, need=("anomalous",), metric="precision-recall curve")
    return precision_recall_curve(labels, scores)
