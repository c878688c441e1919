"""Vector detectors (workbench.detectors._vector) and the PyOD adapter (workbench.detectors._pyod).

Contract under test (DESIGN.md): scikit-learn outlier estimators; score_samples higher =
more normal; anomaly_score higher = more anomalous; scoring is pure (a row's score never
depends on its batch-mates); contamination sets offset_; big tables fit on a subsample.
"""

from __future__ import annotations

import pickle
import time
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

from workbench.detectors import get_detector, make_detector
from workbench.detectors._pyod import TRANSDUCTIVE_PYOD, PyODDetector, pyod_detector_class
from workbench.detectors._vector import (
    ECODDetector,
    GMMDetector,
    IsolationForestDetector,
    KNNDetector,
    LOFDetector,
    MahalanobisDetector,
    NegatedPCADetector,
    ParameterError,
    PCADetector,
)
from workbench.errors import WorkbenchError
from workbench.metrics import image_auroc

OURS = [
    MahalanobisDetector(),
    NegatedPCADetector(),
    GMMDetector(),
    KNNDetector(),
    LOFDetector(),
    IsolationForestDetector(),
    PCADetector(),
    ECODDetector(),
]
OURS_IDS = [type(e).__name__ for e in OURS]

# Every detector of ours plus the non-default code paths that change how scores are computed.
PURITY_CASES = OURS + [
    KNNDetector(algorithm="faiss", method="mean"),
    KNNDetector(skip_self=False),
    LOFDetector(algorithm="faiss"),
    ECODDetector(aggregation="paper"),
    MahalanobisDetector(shrinkage="oas"),
    NegatedPCADetector(standardize=True),
    GMMDetector(covariance_type="diag"),
]

# PyOD detectors checked for batch purity through the adapter (fast, inductive ones).
PYOD_PURE = ["IForest", "KNN", "LOF", "HBOS", "PCA", "MCD", "GMM", "OCSVM", "KDE", "LODA", "Sampling"]
# Transductive ones whose impurity is demonstrated (fast enough for a unit test).
PYOD_TRANSDUCTIVE = ["ECOD", "COPOD", "CD", "SOS"]


@parametrize_with_checks(OURS + [PyODDetector("HBOS")])
def test_sklearn_estimator_checks(estimator, check):
    # no expected failures: every shared check passes for every detector
    check(estimator)


def _toy():
    """Fit rows on a plane (z = x + y); test rows: 8 central plane points, then 2 outliers.

    The outliers (the last two test rows) leave the plane, lie beyond the training range in
    x and y and are far from every training row, so every kind of detector (density,
    distance, isolation, subspace, marginal tails) has to rank them last.
    """
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(40, 2))
    train = np.column_stack([xy, xy.sum(1) + rng.normal(scale=0.05, size=40)])
    xy = rng.normal(scale=0.4, size=(8, 2))
    central = np.column_stack([xy, xy.sum(1)])
    test = np.vstack([central, [[3.0, -3.0, 3.0], [-3.0, 3.0, -3.0]]])
    return train, test


def _batch_data(seed=0):
    rng = np.random.default_rng(seed)
    X_train = np.vstack([rng.normal(size=(300, 4)), rng.uniform(-5, 5, size=(10, 4))])
    X_test = np.vstack([rng.normal(size=(50, 4)), rng.uniform(-6, 6, size=(12, 4)), X_train[:8]])
    return X_train, X_test


def _scores_in_batches(det, X, rng):
    """Scores of X computed one row at a time, in random order, and in random batches."""
    n = len(X)
    single = np.array([det.anomaly_score(X[i:i + 1])[0] for i in range(n)])
    batched = []
    for _ in range(3):
        perm = rng.permutation(n)
        cuts = np.sort(rng.choice(np.arange(1, n), size=4, replace=False))
        out = np.empty(n)
        for part in np.split(perm, cuts):
            out[part] = det.anomaly_score(X[part])
        batched.append(out)
    return single, batched


@pytest.mark.parametrize("det", PURITY_CASES, ids=lambda d: repr(d))
def test_ours_scores_do_not_depend_on_the_batch(det):
    X_train, X_test = _batch_data()
    det = clone(det).fit(X_train)
    full = det.anomaly_score(X_test)
    single, batched = _scores_in_batches(det, X_test, np.random.default_rng(1))
    # bitwise: fixed-shape BLAS blocks and exact neighbour distances make this exact
    np.testing.assert_array_equal(single, full)
    for b in batched:
        np.testing.assert_array_equal(b, full)


@pytest.mark.parametrize("name", PYOD_PURE)
def test_pyod_inductive_scores_do_not_depend_on_the_batch(name):
    X_train, X_test = _batch_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # inductive detectors must not warn
        det = PyODDetector(name).fit(X_train)
    full = det.anomaly_score(X_test)
    single, batched = _scores_in_batches(det, X_test, np.random.default_rng(1))
    scale = np.abs(full).max()
    for b in [single, *batched]:
        np.testing.assert_allclose(b, full, rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("name", PYOD_TRANSDUCTIVE)
def test_pyod_transductive_detectors_warn_and_depend_on_the_batch(name):
    X_train, X_test = _batch_data()
    assert name in TRANSDUCTIVE_PYOD
    with pytest.warns(UserWarning, match="transductive"):
        det = PyODDetector(name).fit(X_train)
    full = det.anomaly_score(X_test)
    halves = np.concatenate([det.anomaly_score(X_test[:31]), det.anomaly_score(X_test[31:])])
    assert np.abs(halves - full).max() > 1e-6 * np.abs(full).max()


def test_ecod_is_pure_where_pyod_ecod_is_not():
    X_train, X_test = _batch_data()
    ours = ECODDetector(aggregation="feature_max").fit(X_train)
    with pytest.warns(UserWarning, match="ECOD"):
        theirs = PyODDetector("ECOD").fit(X_train)
    probe = X_test[:1]
    crowd = np.vstack([probe, X_test[-20:] + 3.0])  # the same row scored beside shifted rows
    assert ours.anomaly_score(probe)[0] == ours.anomaly_score(crowd)[0]
    assert theirs.anomaly_score(probe)[0] != pytest.approx(theirs.anomaly_score(crowd)[0], rel=1e-3)
    # same method otherwise: on the training rows our 'feature_max' ECOD ranks like PyOD's
    from scipy.stats import spearmanr

    rho = spearmanr(ours.anomaly_score(X_train), theirs.estimator_.decision_scores_).statistic
    assert rho > 0.99


@pytest.mark.parametrize("det", OURS, ids=OURS_IDS)
def test_last_two_points_are_the_outliers(det):
    train, test = _toy()
    n = len(test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # LOF caps n_neighbors=20 at 39
        det = clone(det).set_params(contamination=0.1).fit(train)
    scores = det.anomaly_score(test)
    assert set(np.argsort(scores)[-2:]) == {n - 2, n - 1}
    np.testing.assert_array_equal(det.predict(test), [1] * (n - 2) + [-1, -1])
    np.testing.assert_allclose(det.score_samples(test), -scores)
    np.testing.assert_allclose(det.decision_function(test), det.score_samples(test) - det.offset_)


# AUROC floors measured on these seeds (lowest of 3 seeds minus ~0.03); fresh test rows.
AUROC_FLOORS = {
    "MahalanobisDetector": 0.95,
    "NegatedPCADetector": 0.80,
    "GMMDetector": 0.95,
    "KNNDetector": 0.95,
    "LOFDetector": 0.95,
    "IsolationForestDetector": 0.95,
    "PCADetector": 0.93,
    "ECODDetector": 0.88,
}


@pytest.mark.parametrize("det", OURS, ids=OURS_IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_floor_on_blobs_with_uniform_outliers(det, seed):
    X, _ = make_blobs(n_samples=900, centers=3, n_features=5, cluster_std=1.0, random_state=seed)
    rng = np.random.default_rng(seed)
    X_train, X_normal = X[:600], X[600:]
    X_out = rng.uniform(X.min(0) - 2, X.max(0) + 2, size=(60, 5))
    X_test = np.vstack([X_normal, X_out])
    y_test = np.r_[np.zeros(len(X_normal)), np.ones(len(X_out))]
    scores = clone(det).fit(X_train).anomaly_score(X_test)
    assert image_auroc(y_test, scores) >= AUROC_FLOORS[type(det).__name__]


@pytest.mark.parametrize("det", OURS, ids=OURS_IDS)
def test_constant_and_duplicated_columns_and_few_rows_give_finite_scores(det):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(30, 3))
    X = np.hstack([base, np.full((30, 1), 7.0), base[:, :2]])  # constant + 2 duplicated columns
    wide = rng.normal(size=(12, 40))  # n < d
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for data, probe in [(X, X + rng.normal(size=X.shape)), (wide, rng.normal(size=(5, 40)) * 3)]:
            d = clone(det).fit(data)
            for s in (d.anomaly_score(data), d.anomaly_score(probe), d.decision_function(probe)):
                assert np.isfinite(s).all()


def test_pca_rank_guard():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 3))
    X = np.hstack([base, np.full((50, 1), 2.0), base[:, :1], base[:, :1] * 2.0])
    det = PCADetector(n_components=0.999).fit(X)
    assert det.rank_ == 3  # constant column and two copies of column 0 add no rank
    assert det.n_components_ <= det.rank_ - 1  # never every spanned direction
    train = det.anomaly_score(X)
    assert np.isfinite(train).all() and train.max() > 0  # training rows do not all get 0
    off = X[:5].copy()
    off[:, 3] = 12.0  # leaves the constant column's value (2.0): off the training subspace
    assert det.anomaly_score(off).min() > train.max()
    # n < d: rank at most n - 1 after centring
    wide = rng.normal(size=(8, 20))
    det = PCADetector(n_components=5).fit(wide)
    assert det.rank_ == 7 and det.n_components_ == 5
    det = PCADetector(n_components=0.9999).fit(wide)
    assert det.n_components_ == 6
    assert np.isfinite(det.anomaly_score(rng.normal(size=(3, 20)))).all()
    # all rows identical: no component, the error is the squared distance to the mean
    same = np.ones((5, 3))
    det = PCADetector().fit(same)
    assert det.rank_ == 0 and det.n_components_ == 0
    np.testing.assert_allclose(det.anomaly_score([[1.0, 1.0, 3.0]]), [4.0])


def test_mahalanobis_matches_ledoit_wolf_on_standardised_features():
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) * [1, 10, 100, 1, 1, 0.1]
    det = MahalanobisDetector().fit(X)
    Z = (X - X.mean(0)) / X.std(0)
    lw = LedoitWolf(assume_centered=True).fit(Z)
    np.testing.assert_allclose(det.anomaly_score(X), lw.mahalanobis(Z), rtol=1e-9)
    assert det.shrinkage_ == pytest.approx(lw.shrinkage_)
    # singular empirical covariance (duplicated column) still works without shrinkage
    Xd = np.hstack([X, X[:, :1]])
    assert np.isfinite(MahalanobisDetector(shrinkage="none").fit(Xd).anomaly_score(Xd)).all()


def test_negated_pca_keeps_the_low_variance_components():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 5)) * [10.0, 5.0, 2.0, 0.5, 0.1]
    det = NegatedPCADetector(n_components_dropped=2, shrinkage="none").fit(X)
    assert det.n_components_dropped_ == 2 and det.n_components_kept_ == 3
    det = NegatedPCADetector(n_components_dropped=0.999999, shrinkage="none").fit(X)
    assert det.n_components_kept_ == 1  # always at least one component
    # a float drops the leading components up to that share of the variance; compare with eigh
    det = NegatedPCADetector(n_components_dropped=0.9, shrinkage="none").fit(X)
    assert det.n_components_kept_ == 3  # 10^2 and 5^2 of the total variance 129.26 pass 0.9
    Z = X - X.mean(0)
    evals, evecs = np.linalg.eigh(np.cov(Z.T, bias=True))
    keep = det.n_components_kept_
    expected = ((Z @ evecs[:, :keep]) ** 2 / evals[:keep]).sum(1)
    np.testing.assert_allclose(det.anomaly_score(X), expected, rtol=1e-8)


def test_gmm_selects_components_by_bic():
    X, _ = make_blobs(n_samples=600, centers=[[0, 0], [8, 8], [-8, 8]], cluster_std=1.0, random_state=0)
    det = GMMDetector(max_components=6).fit(X)
    assert det.n_components_ == 3
    np.testing.assert_array_equal(det.n_components_tried_, np.arange(1, 7))
    assert det.bic_.shape == (6,) and det.bic_.argmin() == 2
    # score_samples is the log-density of the original features
    Z = (X - det.location_) / det.scale_
    expected = det.gmm_.score_samples(Z) - np.log(det.scale_).sum()
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-10)
    fixed = GMMDetector(n_components=2).fit(X)
    assert fixed.n_components_ == 2 and fixed.bic_.shape == (1,)


def test_lof_matches_scikit_learn_novelty_lof():
    from sklearn.neighbors import LocalOutlierFactor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    new = rng.normal(size=(100, 3)) * 1.5
    ref = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(X)
    for algorithm in ("sklearn", "faiss"):
        ours = LOFDetector(n_neighbors=20, algorithm=algorithm).fit(X)
        np.testing.assert_allclose(ours.score_samples(new), ref.score_samples(new), rtol=1e-10)
        # skip_self: the fit rows get scikit-learn's leave-one-out training LOF
        np.testing.assert_allclose(ours.score_samples(X), ref.negative_outlier_factor_, rtol=1e-10)


def test_knn_skip_self_semantics_and_faiss_equals_sklearn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    X[1] = X[0]  # one duplicated row
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    k = 3
    loo = np.sort(D + np.diag(np.full(len(X), np.inf)), axis=1)[:, k - 1]
    with_self = np.sort(D, axis=1)[:, k - 1]
    det = KNNDetector(n_neighbors=k).fit(X)
    np.testing.assert_allclose(det.anomaly_score(X), loo, rtol=1e-12)
    assert det.anomaly_score(X[:1])[0] == pytest.approx(np.sort(D[0])[k])  # the duplicate counts, itself not
    np.testing.assert_allclose(KNNDetector(n_neighbors=k, skip_self=False).fit(X).anomaly_score(X), with_self,
                               rtol=1e-12)
    new = rng.normal(size=(50, 4)) * 2
    a = KNNDetector(n_neighbors=k, algorithm="sklearn", method="mean").fit(X).anomaly_score(new)
    b = KNNDetector(n_neighbors=k, algorithm="faiss", method="mean").fit(X).anomaly_score(new)
    np.testing.assert_array_equal(a, b)  # faiss proposes candidates; distances are exact float64


def test_contamination_sets_offset():
    X = _batch_data()[0]
    for det in OURS:
        fitted = clone(det).set_params(contamination=0.1).fit(X)
        share = np.mean(fitted.predict(X) == -1)
        assert share == pytest.approx(0.1, abs=0.01), type(det).__name__
        auto = clone(det).fit(X)
        assert 0 < np.mean(auto.predict(X) == -1) < 0.2, type(det).__name__
    assert IsolationForestDetector().fit(X).offset_ == -0.5
    assert LOFDetector().fit(X).offset_ == -1.5


@pytest.mark.parametrize(
    "det, message",
    [
        (KNNDetector(contamination=0.7), "contamination must be 'auto' or a float in \\(0, 0.5\\]"),
        (KNNDetector(method="median"), "method must be one of 'largest', 'mean'"),
        (KNNDetector(n_neighbors=0), "n_neighbors must be an int >= 1"),
        (NegatedPCADetector(n_components_dropped=1.5), "n_components_dropped must be a float in \\(0, 1\\)"),
        (MahalanobisDetector(shrinkage="big"), "shrinkage must be 'ledoit_wolf', 'oas', 'none'"),
        (GMMDetector(n_components="aic"), "n_components must be 'bic' or an int >= 1; got 'aic'"),
        (ECODDetector(aggregation="sum"), "aggregation must be one of 'paper', 'feature_max'"),
        (PyODDetector("IForest", contamination=0.0), "contamination must be"),
    ],
)
def test_invalid_parameters_raise_clear_errors_at_fit(det, message):
    with pytest.raises(ParameterError, match=message) as info:
        det.fit(np.zeros((10, 2)) + np.arange(10)[:, None])
    assert isinstance(info.value, ValueError) and isinstance(info.value, WorkbenchError)


def test_subsampled_fit_is_reproducible_and_scores_every_row():
    X = np.random.default_rng(0).normal(size=(3000, 3))
    for cls in (KNNDetector, LOFDetector, GMMDetector):
        a = cls(max_fit_samples=500, random_state=1).fit(X)
        b = cls(max_fit_samples=500, random_state=1).fit(X)
        c = cls(max_fit_samples=500, random_state=2).fit(X)
        assert a.n_fit_samples_ == 500
        sa = a.anomaly_score(X)
        assert sa.shape == (3000,)
        np.testing.assert_array_equal(sa, b.anomaly_score(X))
        assert not np.array_equal(sa, c.anomaly_score(X)), cls.__name__


def test_pickle_round_trip_rebuilds_the_faiss_index():
    X, Xt = _batch_data()
    det = KNNDetector(algorithm="faiss").fit(X)
    expected = det.anomaly_score(Xt)
    restored = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(restored.anomaly_score(Xt), expected)


def test_registry_names_build_our_classes_and_pyod_adapters():
    expected = {
        "iforest": IsolationForestDetector, "knn": KNNDetector, "lof": LOFDetector, "gmm": GMMDetector,
        "mahalanobis": MahalanobisDetector, "npca": NegatedPCADetector, "pca": PCADetector,
        "ecod": ECODDetector,
    }
    for name, cls in expected.items():
        assert type(make_detector(name)) is cls
    knn = make_detector("pyod:KNN", n_neighbors=3)
    assert isinstance(knn, PyODDetector) and knn.get_params()["n_neighbors"] == 3
    assert get_detector("pyod:COPOD").pyod_class.__name__ == "COPOD"
    with pytest.raises(WorkbenchError, match="unknown PyOD detector 'Iforest'.*IForest, KNN, LOF"):
        pyod_detector_class("Iforest")


def test_pyod_adapter_keeps_wrapped_params_through_clone_and_rejects_unknown_ones():
    X, Xt = _batch_data()
    det = PyODDetector("KNN", n_neighbors=7, method="mean")
    twin = clone(det)
    assert twin.get_params() == det.get_params()
    assert twin.fit(X).estimator_.n_neighbors == 7
    twin.set_params(n_neighbors=4)
    assert twin.fit(X).estimator_.n_neighbors == 4
    with pytest.raises(ParameterError, match="PyOD KNN has no parameter\\(s\\) 'k'; its parameters are: .*n_neighbors"):
        PyODDetector("KNN", k=3).fit(X)
    # sign: anomaly_score is PyOD's decision_function, score_samples its negative
    fitted = PyODDetector("KNN").fit(X)
    np.testing.assert_allclose(fitted.anomaly_score(Xt), fitted.estimator_.decision_function(Xt))
    np.testing.assert_allclose(fitted.score_samples(Xt), -fitted.anomaly_score(Xt))


@pytest.mark.slow
def test_600k_rows_fit_on_a_subsample_and_score_every_row():
    rng = np.random.default_rng(0)
    n = 600_000
    X = rng.normal(size=(n, 8))
    X[-50:] += 6.0  # 50 far rows at the end
    for det in (KNNDetector(), LOFDetector(), GMMDetector()):
        t0 = time.perf_counter()
        det.fit(X)
        scores = det.anomaly_score(X)
        elapsed = time.perf_counter() - t0
        assert det.n_fit_samples_ == det.max_fit_samples < n
        assert scores.shape == (n,) and np.isfinite(scores).all()
        assert set(np.argsort(scores)[-50:]) == set(range(n - 50, n)), type(det).__name__
        print(f"{type(det).__name__}: {elapsed:.1f} s for {n} rows")
