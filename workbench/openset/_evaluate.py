"""Open-set evaluation: known-class accuracy and unknown-detection AUROC, leave-one-class-out."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from workbench.metrics import image_auroc

__all__ = ["evaluate_open_set", "leave_one_class_out"]


def evaluate_open_set(estimator, X_known, y_known, X_unknown) -> dict:
    """Score a fitted :class:`OpenSetClassifier` on known-class test rows and unknown rows.

    Parameters
    ----------
    estimator : OpenSetClassifier
        Fitted on the known classes.
    X_known : array-like of shape (n_known, n_features)
        Test rows of the known classes (not used in ``fit``).
    y_known : array-like of shape (n_known,)
        Their classes.
    X_unknown : array-like of shape (n_unknown, n_features)
        Rows of classes the estimator never saw.

    Returns
    -------
    dict
        ``n_known_test``, ``n_unknown``;
        ``closed_set_accuracy``: share of known rows whose most probable class is right;
        ``auroc``: AUROC of ``novelty_score`` (estimator's default) for unknown (positive)
        vs known rows; ``auroc_msp``: the same for the max-softmax-probability baseline
        ``1 - max p(c | x)`` of the same classifier;
        ``unknown_recall``: share of unknown rows ``predict`` rejects;
        ``known_rejected``: share of known rows it rejects (compare with
        ``unknown_threshold_fpr``); ``accuracy_with_rejection``: share of known rows
        ``predict`` labels correctly (rejections count as errors).
    """
    X_known = np.asarray(X_known)
    X_unknown = np.asarray(X_unknown)
    y_known = np.asarray(y_known)
    proba = estimator.predict_proba(X_known)
    closed = estimator.classes_[proba.argmax(axis=1)]
    labels = np.r_[np.zeros(len(X_known), dtype=int), np.ones(len(X_unknown), dtype=int)]
    X_all = np.vstack([X_known, X_unknown])
    ours = estimator.novelty_score(X_all)
    msp = estimator.novelty_score(X_all, method="msp")
    pred_known = estimator.predict(X_known)
    pred_unknown = estimator.predict(X_unknown)
    unknown = estimator.unknown_label

    def _is_unknown(pred):
        return np.array([p == unknown for p in pred.tolist()], dtype=bool)

    return {
        "n_known_test": int(len(X_known)),
        "n_unknown": int(len(X_unknown)),
        "closed_set_accuracy": float(np.mean(closed == y_known)),
        "auroc": image_auroc(labels, ours),
        "auroc_msp": image_auroc(labels, msp),
        "unknown_recall": float(np.mean(_is_unknown(pred_unknown))),
        "known_rejected": float(np.mean(_is_unknown(pred_known))),
        "accuracy_with_rejection": float(np.mean(pred_known.astype(object) == y_known.astype(object))),
    }


def leave_one_class_out(
    estimator,
    X,
    y,
    *,
    groups=None,
    class_names=None,
    min_class_size: int = 10,
    test_fraction: float = 0.25,
    random_state=0,
    held_out=None,
) -> list[dict]:
    """Leave-one-class-out open-set evaluation.

    For each held-out class ``u``: the known classes are the other classes with at least
    ``min_class_size`` rows; their rows are split into train and test (stratified, and by
    ``groups`` when given, so no group is on both sides); a clone of ``estimator`` is fitted
    on the train rows (``groups`` passed on); the known test rows and all rows of ``u`` are
    scored with :func:`evaluate_open_set`. Classes smaller than ``min_class_size`` are never
    known: they only play the unknown, in their own fold.

    Parameters
    ----------
    estimator : OpenSetClassifier
        Unfitted template.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    groups : array-like of shape (n_samples,), optional
        E.g. wafer lots.
    class_names : sequence of str, optional
        Names for the values of ``y`` (``class_names[y]``) in the result.
    min_class_size : int, default=10
    test_fraction : float, default=0.25
        Share of the known rows used as known test rows (one fold of ``round(1 / test_fraction)``).
    random_state : int, default=0
        Seeds the split.
    held_out : sequence, optional
        Evaluate only these classes (values of ``y``); default all.

    Returns
    -------
    list of dict
        One per held-out class: ``held_out`` (name), ``known`` (names), ``n_train`` plus the
        keys of :func:`evaluate_open_set`.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    modelable = classes[counts >= min_class_size]
    name = (lambda c: str(class_names[c])) if class_names is not None else str
    n_splits = max(2, int(round(1.0 / test_fraction)))
    rows = []
    for u in classes if held_out is None else held_out:
        known = [c for c in modelable if c != u]
        if len(known) < 2:
            raise ValueError(f"holding out {name(u)} leaves {len(known)} class(es) with >= {min_class_size} rows; "
                             f"need at least 2 known classes.")
        idx = np.flatnonzero(np.isin(y, known))
        if groups is not None:
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                train, test = next(splitter.split(idx, y[idx], np.asarray(groups)[idx]))
        else:
            splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
            train, test = next(splitter.split(idx, y[idx]))
        train, test = idx[train], idx[test]
        est = clone(estimator)
        est.fit(X[train], y[train], groups=None if groups is None else np.asarray(groups)[train])
        result = evaluate_open_set(est, X[test], y[test], X[y == u])
        rows.append({"held_out": name(u), "known": [name(c) for c in known], "n_train": int(len(train)), **result})
    return rows
