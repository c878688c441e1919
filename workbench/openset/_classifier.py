"""Open-set classifier: a closed-set classifier plus per-class Gaussian mixtures on its latent space.

Ideas from two papers (titles and abstracts in ``papers.md``):

* *Deep Open-Set Recognition for Silicon Wafer Production Monitoring*: train a classifier on
  the known classes and detect novel classes with a Gaussian mixture fitted on the
  classifier's latent representation;
* *Hierarchical Visual Categories Modeling*: one Gaussian mixture per known class and an
  in-distribution score aggregated from Mahalanobis distances to the mixture components.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit
from sklearn.neural_network import MLPClassifier
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from workbench.detectors._vector import ParameterError, _pure_matmul, _row_sq_norms, _standardizer

__all__ = ["OpenSetClassifier", "NOVELTY_SCORES"]

#: Novelty scores :meth:`OpenSetClassifier.novelty_score` can compute (higher = more likely unknown).
NOVELTY_SCORES = ("mahalanobis", "loglik", "msp")


class _ClassMixture:
    """A Gaussian mixture of one class on the standardised latent features (full covariances)."""

    def __init__(self, gmm: GaussianMixture, bic: np.ndarray, counts: np.ndarray):
        self.n_components = int(gmm.n_components)
        self.weights = gmm.weights_.copy()
        self.means = gmm.means_.copy()
        self.prec_chol = np.ascontiguousarray(gmm.precisions_cholesky_)  # (k, d, d)
        self.log_det = np.array([np.log(np.diag(c)).sum() for c in self.prec_chol])
        self.bic = bic
        self.n_components_tried = counts

    def sq_mahalanobis(self, Z: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance to each component, shape ``(n, k)``."""
        return np.column_stack([_row_sq_norms(_pure_matmul(Z - m, c)) for m, c in zip(self.means, self.prec_chol)])

    def log_likelihood(self, Z: np.ndarray) -> np.ndarray:
        """Log-density of the mixture, shape ``(n,)``."""
        d = Z.shape[1]
        logp = np.log(self.weights) + self.log_det - 0.5 * d * np.log(2 * np.pi) - 0.5 * self.sq_mahalanobis(Z)
        top = logp.max(axis=1)
        return top + np.log(np.exp(logp - top[:, None]).sum(axis=1))


def _fit_class_mixture(Z, n_components, max_components, reg_covar, seed) -> _ClassMixture:
    """Per-class GMM: BIC over 1..max_components among admissible mixtures (each component
    carries at least d + 1 rows, the fewest that determine a full covariance)."""
    n, d = Z.shape
    if n_components == "bic":
        counts = np.arange(1, max(1, min(max_components, n // (d + 1))) + 1)
    else:
        counts = np.array([min(int(n_components), n)])
    best, bics = None, []
    for k in counts:
        gmm = GaussianMixture(n_components=int(k), covariance_type="full", reg_covar=reg_covar, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gmm.fit(Z)
        bic = float(gmm.bic(Z))
        bics.append(bic)
        ok = k == 1 or len(counts) == 1 or float(gmm.weights_.min()) * n >= d + 1
        if ok and (best is None or bic < best[0]):
            best = (bic, gmm)
    return _ClassMixture(best[1], np.asarray(bics), counts)


class OpenSetClassifier(ClassifierMixin, BaseEstimator):
    """Classify into the known classes or reject as unknown (label ``unknown_label``).

    ``fit`` holds out a stratified ``calibration_fraction`` of the known rows, trains a
    multi-layer perceptron on the rest, fits one Gaussian mixture per known class on the
    standardised latent features (the last hidden layer) of that class's training rows, and
    sets ``threshold_`` so that a share ``unknown_threshold_fpr`` of the held-out known rows
    is rejected. ``predict`` returns the most probable known class, or ``unknown_label`` when
    ``novelty_score`` exceeds ``threshold_``.

    Parameters
    ----------
    classifier : 'mlp' or sklearn.neural_network.MLPClassifier, default='mlp'
        ``'mlp'`` builds ``MLPClassifier(hidden_layer_sizes, alpha, max_iter, activation='relu')``;
        an (unfitted) instance is cloned and used as given (its ``activation`` must be 'relu').
    hidden_layer_sizes : tuple of int, default=(256, 32)
        Hidden layers for ``classifier='mlp'``; the last one is the latent space.
    alpha : float, default=1e-3
        L2 penalty for ``classifier='mlp'``.
    max_iter : int, default=300
        Training epochs for ``classifier='mlp'`` (Adam).
    latent : {'penultimate', 'input'}, default='penultimate'
        Features the class mixtures are fitted on: the last hidden layer (after ReLU) or the
        standardised input itself (a classifier-free baseline).
    n_components : 'bic' or int, default='bic'
        Components per class: chosen by BIC from 1 to ``max_components`` (only mixtures whose
        smallest component has at least ``latent_dim + 1`` rows count), or fixed.
    max_components : int, default=4
    reg_covar : float, default=1e-2
        Ridge added to each covariance, in standardised latent units (classes are small).
    novelty : {'mahalanobis', 'loglik', 'msp'}, default='mahalanobis'
        Default score of :meth:`novelty_score` and of the threshold: smallest squared
        Mahalanobis distance to any component of any class, divided by the latent dimension
        (the hierarchical-GMM aggregation); negative largest per-class log-likelihood; or the
        max-softmax-probability baseline ``1 - max_c p(c | x)``.
    unknown_threshold_fpr : float in (0, 1), default=0.05
        Share of held-out known rows the threshold rejects (false positive rate on known data).
    calibration_fraction : float in (0, 0.5], default=0.2
        Share of the known rows held out (stratified by class, and by ``groups`` when given)
        to set the threshold; they are not used to train the classifier or the mixtures.
    unknown_label : int or str, default=-1
        Label ``predict`` gives to rejected rows.
    random_state : int, RandomState or None, default=0
        Seeds the calibration split, the MLP and the mixtures.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Known classes (sorted).
    classifier_ : sklearn.neural_network.MLPClassifier
        Fitted classifier (on standardised inputs).
    input_mean_, input_scale_ : ndarray of shape (n_features,)
        Input standardisation.
    latent_mean_, latent_scale_ : ndarray of shape (latent_dim_,)
        Latent standardisation.
    latent_dim_ : int
    class_mixtures_ : list of length n_classes
        Per-class mixtures; ``n_components_`` gives their sizes.
    n_components_ : ndarray of shape (n_classes,)
    threshold_ : float
        Novelty score above which ``predict`` returns ``unknown_label``.
    calibration_fpr_ : float
        Share of the held-out known rows above ``threshold_`` (close to ``unknown_threshold_fpr``).
    n_calibration_ : int
        Held-out known rows.
    n_features_in_ : int

    Notes
    -----
    Scores are per row: a row's ``novelty_score`` does not depend on its batch-mates.
    Training runs single-threaded (small matrices; many threads only add overhead here).
    """

    def __init__(
        self,
        *,
        classifier="mlp",
        hidden_layer_sizes=(256, 32),
        alpha=1e-3,
        max_iter=300,
        latent="penultimate",
        n_components="bic",
        max_components=4,
        reg_covar=1e-2,
        novelty="mahalanobis",
        unknown_threshold_fpr=0.05,
        calibration_fraction=0.2,
        unknown_label=-1,
        random_state=0,
    ):
        self.classifier = classifier
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.max_iter = max_iter
        self.latent = latent
        self.n_components = n_components
        self.max_components = max_components
        self.reg_covar = reg_covar
        self.novelty = novelty
        self.unknown_threshold_fpr = unknown_threshold_fpr
        self.calibration_fraction = calibration_fraction
        self.unknown_label = unknown_label
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _validate_params(self):
        if self.latent not in ("penultimate", "input"):
            raise ParameterError(f"latent must be 'penultimate' or 'input'; got {self.latent!r}.")
        if self.novelty not in NOVELTY_SCORES:
            raise ParameterError(f"novelty must be one of {', '.join(map(repr, NOVELTY_SCORES))}; got {self.novelty!r}.")
        fpr = self.unknown_threshold_fpr
        if not (isinstance(fpr, numbers.Real) and 0.0 < fpr < 1.0):
            raise ParameterError(f"unknown_threshold_fpr must be a float in (0, 1); got {fpr!r}.")
        frac = self.calibration_fraction
        if not (isinstance(frac, numbers.Real) and 0.0 < frac <= 0.5):
            raise ParameterError(f"calibration_fraction must be a float in (0, 0.5]; got {frac!r}.")
        if not (self.n_components == "bic" or (isinstance(self.n_components, numbers.Integral)
                                               and self.n_components >= 1)):
            raise ParameterError(f"n_components must be 'bic' or an int >= 1; got {self.n_components!r}.")
        if not (isinstance(self.max_components, numbers.Integral) and self.max_components >= 1):
            raise ParameterError(f"max_components must be an int >= 1; got {self.max_components!r}.")
        if not (isinstance(self.reg_covar, numbers.Real) and self.reg_covar >= 0):
            raise ParameterError(f"reg_covar must be a float >= 0; got {self.reg_covar!r}.")
        if isinstance(self.classifier, str):
            if self.classifier != "mlp":
                raise ParameterError(
                    f"classifier must be 'mlp' or an MLPClassifier instance; got {self.classifier!r}."
                )
        elif not isinstance(self.classifier, MLPClassifier):
            raise ParameterError(
                f"classifier must be 'mlp' or an MLPClassifier instance; got {type(self.classifier).__name__}."
            )
        elif self.classifier.activation != "relu":
            raise ParameterError(f"the MLPClassifier must use activation='relu'; got {self.classifier.activation!r}.")

    def _make_classifier(self, seed: int) -> MLPClassifier:
        if isinstance(self.classifier, MLPClassifier):
            clf = clone(self.classifier)
            if clf.random_state is None:
                clf.set_params(random_state=seed)
            return clf
        return MLPClassifier(
            hidden_layer_sizes=tuple(self.hidden_layer_sizes),
            activation="relu",
            alpha=self.alpha,
            max_iter=self.max_iter,
            random_state=seed,
        )

    def _split(self, y_idx, groups, rng):
        """Indices (train, calibration) of the known rows."""
        counts = np.bincount(y_idx, minlength=len(self.classes_))
        small = [str(self.classes_[i]) for i in np.flatnonzero(counts < 2)]
        if small:
            raise ValueError(
                f"class(es) {', '.join(small)} have fewer than 2 rows; every known class needs rows for "
                f"training and for calibrating the threshold. Drop such classes or treat them as unknown."
            )
        seed = rng.randint(np.iinfo(np.int32).max)
        idx = np.arange(len(y_idx))
        if groups is not None:
            n_splits = max(2, int(round(1.0 / self.calibration_fraction)))
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "least populated class" notes
                train, cal = next(splitter.split(idx, y_idx, groups))
            missing = set(range(len(self.classes_))) - set(y_idx[train].tolist())
            if not missing:
                return train, cal
            # a class lives in too few groups: fall back to a split that ignores the groups
        test_size = max(len(self.classes_), int(round(self.calibration_fraction * len(idx))))
        if test_size > len(idx) - len(self.classes_):
            raise ValueError(f"{len(idx)} known rows are too few to hold out a calibration set for "
                             f"{len(self.classes_)} classes.")
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        return next(splitter.split(idx, y_idx))

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, groups=None):
        """Fit classifier, class mixtures and unknown threshold on known-class rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows of the known classes only.
        y : array-like of shape (n_samples,)
            Their classes (at least 2 distinct, each with at least 2 rows).
        groups : array-like of shape (n_samples,), optional
            Group of each row (e.g. the wafer lot); the calibration rows then come from
            groups not used for training, when every class allows it.

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self._validate_params()
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y has {len(self.classes_)} class ({self.classes_.tolist()}); an open-set classifier needs at "
                f"least 2 known classes. For one class use a vector detector (workbench.detectors)."
            )
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (X.shape[0],):
                raise ValueError(f"groups has shape {groups.shape}; expected ({X.shape[0]},), one per row of X.")
        rng = check_random_state(self.random_state)
        train, cal = self._split(y_idx, groups, rng)
        seed = rng.randint(np.iinfo(np.int32).max)

        self.input_mean_, self.input_scale_ = _standardizer(X[train])
        Xs = (X - self.input_mean_) / self.input_scale_
        clf = self._make_classifier(seed)
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(Xs[train], y_idx[train])
        self.classifier_ = clf

        H = self._latent_raw(Xs[train])
        self.latent_mean_, self.latent_scale_ = _standardizer(H)
        Z = (H - self.latent_mean_) / self.latent_scale_
        self.latent_dim_ = int(Z.shape[1])
        mixtures = []
        with threadpool_limits(limits=1):
            for c in range(len(self.classes_)):
                Zc = Z[y_idx[train] == c]
                mixtures.append(_fit_class_mixture(Zc, self.n_components, self.max_components, self.reg_covar, seed))
        self.class_mixtures_ = mixtures
        self.n_components_ = np.array([m.n_components for m in mixtures])

        cal_scores = self._novelty(Xs[cal], self.novelty)
        self.threshold_ = float(np.quantile(cal_scores, 1.0 - self.unknown_threshold_fpr, method="higher"))
        self.calibration_fpr_ = float(np.mean(cal_scores > self.threshold_))
        self.n_calibration_ = int(len(cal))
        return self

    # ------------------------------------------------------------------ internals
    def _hidden(self, Xs):
        """Activations ``(last hidden layer, [every hidden layer in order])`` of standardised rows."""
        clf = self.classifier_
        h = Xs
        out = []
        for W, b in zip(clf.coefs_[:-1], clf.intercepts_[:-1]):
            h = np.maximum(_pure_matmul(h, W) + b, 0.0)
            out.append(h)
        return h, out

    def _latent_raw(self, Xs):
        if self.latent == "input":
            return Xs
        return self._hidden(Xs)[0]

    def _proba(self, Xs):
        clf = self.classifier_
        h = self._hidden(Xs)[0]
        logits = _pure_matmul(h, clf.coefs_[-1]) + clf.intercepts_[-1]
        if logits.shape[1] == 1:  # binary MLPClassifier: one logistic unit for class 1
            p1 = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.column_stack([1.0 - p1, p1])
        logits = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def _novelty(self, Xs, method):
        if method == "msp":
            return 1.0 - self._proba(Xs).max(axis=1)
        Z = (self._latent_raw(Xs) - self.latent_mean_) / self.latent_scale_
        if method == "mahalanobis":
            d2 = np.column_stack([m.sq_mahalanobis(Z).min(axis=1) for m in self.class_mixtures_])
            return d2.min(axis=1) / self.latent_dim_
        ll = np.column_stack([m.log_likelihood(Z) for m in self.class_mixtures_])
        return -ll.max(axis=1)

    def _input(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return (X - self.input_mean_) / self.input_scale_

    # ------------------------------------------------------------------ public
    def predict_proba(self, X):
        """Probabilities of the known classes (the classifier's softmax).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; rows sum to 1. They say nothing about
            "unknown": use :meth:`novelty_score` for that.
        """
        return self._proba(self._input(X))

    def novelty_score(self, X, method=None):
        """How likely each row belongs to no known class: higher = more likely unknown.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        method : {'mahalanobis', 'loglik', 'msp'} or None
            None uses the ``novelty`` parameter (the one ``threshold_`` was set for).

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        method = self.novelty if method is None else method
        if method not in NOVELTY_SCORES:
            raise ValueError(f"method must be one of {', '.join(map(repr, NOVELTY_SCORES))} or None; got {method!r}.")
        return self._novelty(self._input(X), method)

    def latent_features(self, X):
        """Standardised latent features the class mixtures model, shape ``(n_samples, latent_dim_)``."""
        return (self._latent_raw(self._input(X)) - self.latent_mean_) / self.latent_scale_

    def predict(self, X):
        """Known class of each row, or ``unknown_label`` when ``novelty_score > threshold_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
            Values from ``classes_`` plus ``unknown_label`` (object dtype when they do not
            share a numpy type, e.g. string classes with the default -1).
        """
        Xs = self._input(X)
        known = self.classes_[self._proba(Xs).argmax(axis=1)]
        unknown = self._novelty(Xs, self.novelty) > self.threshold_
        label = np.asarray(self.unknown_label)
        text_classes, text_label = self.classes_.dtype.kind in "US", label.dtype.kind in "US"
        if text_classes == text_label and self.classes_.dtype.kind != "O":
            dtype = np.result_type(self.classes_.dtype, label.dtype)
        else:  # e.g. string classes with the default -1: keep both types as they are
            dtype = object
        out = known.astype(dtype)
        out[unknown] = self.unknown_label
        return out
