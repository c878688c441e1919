"""Any PyOD detector behind the workbench's scikit-learn outlier contract.

``PyODDetector(estimator="KNN", n_neighbors=10)`` wraps ``pyod.models.knn.KNN(n_neighbors=10)``;
the registry name ``pyod:<ClassName>`` maps to :func:`pyod_detector_class`. The adapter
flips PyOD's sign (PyOD's ``decision_function`` is higher = more anomalous, ours is higher
= more normal), sets ``offset_`` from ``contamination`` like every workbench detector, adds
``anomaly_score`` and fits on a random subsample of big tables.

Some PyOD detectors are *transductive*: their ``decision_function`` re-fits on the scored
batch (ECOD and COPOD concatenate the training data with the batch; CD, COF, LMDD, LOCI, ROD,
SOD and SOS compute statistics of the batch itself), so a row's score depends on the other
rows scored with it (checked by splitting a batch: the scores change). The adapter warns about these when fitted; use the workbench's own
pure detectors instead (``ecod`` for ECOD/COPOD).
"""

from __future__ import annotations

import importlib
import inspect
import warnings

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from workbench.detectors._vector import ParameterError, _check_contamination, _check_int, _subsample, _tukey_offset

__all__ = ["PyODDetector", "pyod_detector_class", "PYOD_MODELS", "TRANSDUCTIVE_PYOD"]

#: PyOD class name -> module under ``pyod.models`` (tabular detectors of PyOD 2.x/3.x).
PYOD_MODELS: dict[str, str] = {
    "ABOD": "abod", "AE1SVM": "ae1svm", "ALAD": "alad", "AnoGAN": "anogan",
    "AutoEncoder": "auto_encoder", "CBLOF": "cblof", "CD": "cd", "COF": "cof", "COPOD": "copod",
    "DeepSVDD": "deep_svdd", "DIF": "dif", "ECOD": "ecod", "FeatureBagging": "feature_bagging",
    "GMM": "gmm", "HBOS": "hbos", "HDBSCAN": "hdbscan", "IForest": "iforest", "INNE": "inne",
    "KDE": "kde", "KNN": "knn", "KPCA": "kpca", "LMDD": "lmdd", "LOCI": "loci", "LODA": "loda",
    "LOF": "lof", "LSCP": "lscp", "LUNAR": "lunar", "MAD": "mad", "MCD": "mcd", "MO_GAAL": "mo_gaal",
    "OCSVM": "ocsvm", "PCA": "pca", "QMCD": "qmcd", "RGraph": "rgraph", "ROD": "rod",
    "Sampling": "sampling", "SO_GAAL": "so_gaal", "SOD": "sod", "SOS": "sos", "SUOD": "suod",
    "VAE": "vae",
}

#: PyOD detectors whose scores depend on the scored batch, with what to use instead.
TRANSDUCTIVE_PYOD: dict[str, str] = {
    "ECOD": "re-computes its empirical CDFs on training data + the scored batch; use 'ecod' (ECODDetector)",
    "COPOD": "re-computes its empirical copula on training data + the scored batch; use 'ecod' (ECODDetector)",
    "CD": "computes leverage and residual variance (Cook's distance) on the scored batch",
    "COF": "scores the batch against itself (connectivity among the scored rows); use 'lof' (LOFDetector)",
    "LMDD": "scores the batch against itself (deviation within the scored rows)",
    "LOCI": "scores the batch against itself (neighbourhoods among the scored rows); use 'lof' (LOFDetector)",
    "ROD": "re-fits its rotation-based statistics on the scored batch",
    "SOD": "scores the batch against itself (shared neighbours among the scored rows); use 'knn' (KNNDetector)",
    "SOS": "scores the batch against itself (affinities among the scored rows); use 'knn' (KNNDetector)",
}

_FIXED = ("estimator", "contamination", "max_fit_samples", "random_state")


def _unknown_name_error(name) -> ParameterError:
    shown = ", ".join(["IForest", "KNN", "LOF", "HBOS", "PCA", "MCD", "OCSVM", "GMM", "ECOD", "COPOD"])
    return ParameterError(
        f"unknown PyOD detector {name!r}; expected a class name from pyod.models such as {shown} "
        f"(all {len(PYOD_MODELS)}: {', '.join(sorted(PYOD_MODELS, key=str.lower))}). Names are case-sensitive."
    )


def _resolve_pyod_class(name: str):
    """The PyOD class called ``name`` (e.g. ``'IForest'`` -> ``pyod.models.iforest.IForest``)."""
    if not isinstance(name, str):
        raise _unknown_name_error(name)
    module_name = PYOD_MODELS.get(name)
    if module_name is None:
        raise _unknown_name_error(name)
    try:
        module = importlib.import_module(f"pyod.models.{module_name}")
    except ImportError as exc:
        raise ParameterError(
            f"PyOD detector {name!r} cannot be imported ({exc}); it may need an optional dependency "
            f"of PyOD that is not installed."
        ) from exc
    return getattr(module, name)


def _class_name(estimator) -> str:
    return estimator if isinstance(estimator, str) else type(estimator).__name__


class PyODDetector(OutlierMixin, BaseEstimator):
    """Adapter giving a PyOD detector the workbench's scikit-learn outlier contract.

    Parameters
    ----------
    estimator : str or PyOD detector instance, default='IForest'
        A class name from ``pyod.models`` (see :data:`PYOD_MODELS`), or an (unfitted)
        instance, which is cloned at fit time.
    contamination : 'auto' or float in (0, 0.5], default='auto'
        ``'auto'``: ``offset_`` at Tukey's fence (``Q3 + 1.5 IQR``) of the anomaly scores of
        the fit rows, as for the workbench's own detectors. A float is also passed on to the
        PyOD detector and ``offset_`` flags that share of the fit rows.
    max_fit_samples : int or None, default=20_000
        Fit on at most this many random rows (several PyOD detectors fit in ``O(n^2)``);
        every row passed to ``score_samples`` is scored.
    random_state : int or None, default=0
        Seeds the subsample, and is passed to the PyOD detector when it takes
        ``random_state`` and ``params`` do not set it.
    **params
        Parameters of the PyOD detector (``n_neighbors=10`` for ``KNN``, ...). They are
        parameters of the adapter too (``get_params``/``set_params``/``clone`` keep them).

    Attributes
    ----------
    estimator_ : pyod.models.base.BaseDetector
        The fitted PyOD detector.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_fit_samples_ : int
        Rows used by ``fit``.
    n_features_in_ : int

    Warns
    -----
    UserWarning
        At fit time, when the PyOD detector is transductive (see :data:`TRANSDUCTIVE_PYOD`):
        its scores depend on which rows are scored together.

    Notes
    -----
    ``score_samples`` = ``-estimator_.decision_function`` (higher = more normal);
    ``anomaly_score`` = PyOD's ``decision_function`` (higher = more anomalous).
    """

    def __init__(self, estimator="IForest", *, contamination="auto", max_fit_samples=20_000,
                 random_state=0, **params):
        self.estimator = estimator
        self.contamination = contamination
        self.max_fit_samples = max_fit_samples
        self.random_state = random_state
        for key, value in params.items():
            setattr(self, key, value)

    # -- parameters: the fixed four plus the wrapped detector's keyword arguments
    def _extra_param_names(self) -> list[str]:
        return sorted(
            k for k in vars(self) if k not in _FIXED and not k.startswith("_") and not k.endswith("_")
        )

    def get_params(self, deep=True):
        """Parameters of the adapter, including the PyOD detector's ``**params``.

        Returns
        -------
        dict
        """
        params = {k: getattr(self, k) for k in _FIXED}
        params.update({k: getattr(self, k) for k in self._extra_param_names()})
        return params

    def set_params(self, **params):
        """Set adapter parameters or PyOD detector parameters (checked at fit time).

        Returns
        -------
        self
        """
        for key, value in params.items():
            if "__" in key:
                raise ParameterError(f"nested parameter {key!r} is not supported by PyODDetector; "
                                     f"set {key.split('__', 1)[1]!r} directly.")
            if key.startswith("_") or key.endswith("_"):
                raise ParameterError(f"{key!r} is not a parameter name (it starts or ends with '_').")
            setattr(self, key, value)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags

    # -- fitting
    def _build(self):
        params = {k: getattr(self, k) for k in self._extra_param_names()}
        if isinstance(self.estimator, str):
            cls = _resolve_pyod_class(self.estimator)
            accepted = inspect.signature(cls.__init__).parameters
            unknown = [k for k in params if k not in accepted]
            if unknown and not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
                valid = [k for k in accepted if k != "self"]
                raise ParameterError(
                    f"PyOD {self.estimator} has no parameter(s) {', '.join(map(repr, unknown))}; "
                    f"its parameters are: {', '.join(valid)}."
                )
            if "random_state" in accepted and "random_state" not in params:
                params["random_state"] = self.random_state
            if "contamination" in accepted and self.contamination != "auto":
                params["contamination"] = float(self.contamination)
            return cls(**params)
        est = self.estimator
        if not (hasattr(est, "fit") and hasattr(est, "decision_function")):
            raise ParameterError(
                f"estimator must be a PyOD class name or a PyOD detector instance with fit and "
                f"decision_function; got {type(est).__name__}."
            )
        est = clone(est)
        own = est.get_params(deep=False)
        if "random_state" in own and own["random_state"] is None and "random_state" not in params:
            params["random_state"] = self.random_state
        if "contamination" in own and self.contamination != "auto":
            params["contamination"] = float(self.contamination)
        if params:
            est.set_params(**params)
        return est

    def fit(self, X, y=None):
        """Fit the PyOD detector on (a subsample of) ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored (unsupervised).

        Returns
        -------
        self
        """
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        _check_contamination(self.contamination)
        _check_int("max_fit_samples", self.max_fit_samples, 2, allow_none=True)
        name = _class_name(self.estimator)
        if name in TRANSDUCTIVE_PYOD:
            warnings.warn(
                f"PyOD's {name} is transductive: it {TRANSDUCTIVE_PYOD[name]}. A row's score therefore "
                f"depends on the other rows scored in the same call; score all rows in one call, or use "
                f"a workbench detector, whose scores are batch-independent.",
                UserWarning,
                stacklevel=2,
            )
        estimator = self._build()
        X_fit = _subsample(X, self.max_fit_samples, self.random_state)
        estimator.fit(X_fit)
        self.estimator_ = estimator
        self.n_fit_samples_ = int(X_fit.shape[0])
        train = -self._raw(X_fit)
        if self.contamination == "auto":
            self.offset_ = _tukey_offset(train)
        else:
            self.offset_ = float(np.percentile(train, 100.0 * self.contamination))
        return self

    def _raw(self, X):
        scores = np.asarray(self.estimator_.decision_function(X), dtype=np.float64).ravel()
        if scores.shape[0] != X.shape[0]:
            raise RuntimeError(
                f"PyOD {_class_name(self.estimator)}.decision_function returned {scores.shape[0]} scores "
                f"for {X.shape[0]} rows"
            )
        return scores

    def _validated(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=np.float64, reset=False)

    def score_samples(self, X):
        """Normality score, higher = more normal: ``-estimator_.decision_function(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        return -self._raw(self._validated(X))

    def anomaly_score(self, X):
        """Anomaly score, higher = more anomalous: PyOD's ``decision_function(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        return self._raw(self._validated(X))

    def decision_function(self, X):
        """``score_samples(X) - offset_`` (negative = outlier), shape ``(n_samples,)``."""
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """+1 for inliers, -1 for outliers, shape ``(n_samples,)``."""
        return np.where(self.decision_function(X) >= 0, 1, -1)


def pyod_detector_class(name: str):
    """Factory for ``pyod:<name>`` detectors, used by the registry.

    Parameters
    ----------
    name : str
        A PyOD class name, e.g. ``'IForest'``, ``'KNN'``, ``'COPOD'`` (case-sensitive).

    Returns
    -------
    callable
        ``factory(**params) -> PyODDetector(estimator=name, **params)``; its ``pyod_class``
        attribute is the PyOD class and its docstring says whether it is transductive.

    Raises
    ------
    ParameterError
        (a :class:`~workbench.errors.WorkbenchError` and ``ValueError``) for an unknown name;
        the message lists valid ones.
    """
    cls = _resolve_pyod_class(name)

    def factory(**params) -> PyODDetector:
        return PyODDetector(estimator=name, **params)

    note = f" Transductive: it {TRANSDUCTIVE_PYOD[name]}." if name in TRANSDUCTIVE_PYOD else ""
    factory.__name__ = factory.__qualname__ = f"pyod_{name}"
    factory.__doc__ = f"PyODDetector wrapping pyod.models.{PYOD_MODELS[name]}.{name}.{note}"
    factory.pyod_class = cls
    return factory
