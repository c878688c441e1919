"""Gaussian mixtures for inspecting an embedding: model selection by BIC/AIC and ellipses."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from workbench.errors import DataError

__all__ = ["GMMSweep", "component_covariances", "component_ellipses", "ellipse", "fit_gmms"]


@dataclass(frozen=True, eq=False)
class GMMSweep:
    """Gaussian mixtures fitted with 1, 2, ... components and their information criteria.

    Attributes
    ----------
    n_components : numpy.ndarray
        int, the component counts tried, ascending.
    bic, aic : numpy.ndarray
        float, Bayesian and Akaike information criteria per count (lower = better).
    models : list of sklearn.mixture.GaussianMixture
        The fitted mixtures, one per count.
    """

    n_components: np.ndarray
    bic: np.ndarray
    aic: np.ndarray
    models: list

    @property
    def best_index(self) -> int:
        """Position of the lowest BIC (ties: the fewest components)."""
        return int(np.argmin(self.bic))

    @property
    def best(self):
        """The mixture with the lowest BIC."""
        return self.models[self.best_index]

    @property
    def best_n_components(self) -> int:
        return int(self.n_components[self.best_index])

    def to_dataframe(self):
        """``n_components``, ``bic``, ``aic`` as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame({"n_components": self.n_components, "bic": self.bic, "aic": self.aic})


def fit_gmms(X, n_components: Sequence[int] | int = range(1, 9), *, covariance_type: str = "full",
             random_state: int | None = 0, n_init: int = 1, max_iter: int = 200, reg_covar: float = 1e-6,
             progress: bool = False) -> GMMSweep:
    """Fit a ``GaussianMixture`` per component count and score each by BIC and AIC.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int or sequence of int, default range(1, 9)
        Component counts to try (an int ``k`` means ``1 .. k``). Counts larger than
        ``n_samples`` are dropped.
    covariance_type : {"full", "tied", "diag", "spherical"}, default "full"
    random_state : int or None, default 0
        Seed of every fit (k-means initialisation): the sweep is reproducible.
    n_init, max_iter, reg_covar
        Passed to ``sklearn.mixture.GaussianMixture``.
    progress : bool, default False
        tqdm progress bar over the counts.

    Returns
    -------
    GMMSweep
    """
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise DataError(f"fit_gmms: X must be (n_samples >= 2, n_features); found shape {X.shape}")
    if not np.isfinite(X).all():
        raise DataError("fit_gmms: X has NaN or infinite values; impute or drop those rows first")
    counts = list(range(1, int(n_components) + 1)) if np.isscalar(n_components) else [int(k) for k in n_components]
    counts = sorted({k for k in counts if 1 <= k <= X.shape[0]})
    if not counts:
        raise ValueError(f"fit_gmms: no usable component count in {n_components!r} for {X.shape[0]} samples")
    it = counts
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(counts, desc="GMM sweep", unit="fit")
    models, bic, aic = [], [], []
    for k in it:
        gmm = GaussianMixture(n_components=k, covariance_type=covariance_type, random_state=random_state,
                              n_init=n_init, max_iter=max_iter, reg_covar=reg_covar)
        # one BLAS/OpenMP thread: EM on small matrices is several times slower when numpy's,
        # scipy's and scikit-learn's thread pools compete for two cores
        with threadpool_limits(limits=1), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*did not converge.*")
            gmm.fit(X)
        models.append(gmm)
        bic.append(gmm.bic(X))
        aic.append(gmm.aic(X))
    return GMMSweep(np.array(counts), np.array(bic), np.array(aic), models)


def component_covariances(gmm) -> np.ndarray:
    """Full covariance matrices ``(k, d, d)`` of a fitted ``GaussianMixture`` of any covariance type."""
    k, d = gmm.means_.shape
    cov = np.asarray(gmm.covariances_)
    kind = gmm.covariance_type
    if kind == "full":
        return cov.copy()
    if kind == "tied":
        return np.broadcast_to(cov, (k, d, d)).copy()
    if kind == "diag":
        return np.stack([np.diag(c) for c in cov])
    if kind == "spherical":
        return cov[:, None, None] * np.eye(d)[None]
    raise ValueError(f"unknown covariance_type {kind!r}")


def ellipse(mean, cov, n_std: float = 2.0, n_points: int = 73) -> np.ndarray:
    """Closed polygon ``(n_points, 2)`` of the ``n_std``-sigma contour of a 2-D Gaussian."""
    mean = np.asarray(mean, dtype=np.float64).reshape(2)
    cov = np.asarray(cov, dtype=np.float64).reshape(2, 2)
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    vals = np.clip(vals, 0.0, None)
    t = np.linspace(0.0, 2.0 * np.pi, n_points)
    circle = np.stack([np.cos(t), np.sin(t)])  # (2, n)
    return mean + (vecs @ (n_std * np.sqrt(vals)[:, None] * circle)).T


def component_ellipses(gmm, points_2d=None, X=None, *, n_std: float = 2.0, n_points: int = 73) -> list[np.ndarray]:
    """The ``n_std``-sigma ellipse of every component, in the plane of ``points_2d``.

    * A mixture fitted in 2-D with ``points_2d`` None (or the fit data itself): the exact
      contours of its components.
    * Otherwise (a mixture fitted on high-dimensional ``X``, shown on a projection such as
      UMAP, which no linear map relates to ``X``): each component is drawn as the Gaussian
      moment-matched to the projected points weighted by the component's responsibilities
      ``gmm.predict_proba(X)``: where the component's mass lies in the picture.

    Returns
    -------
    list of numpy.ndarray
        One closed polygon ``(n_points, 2)`` per component.
    """
    k, d = gmm.means_.shape
    if points_2d is None or (d == 2 and (X is None or X is points_2d)):
        if d != 2:
            raise ValueError(f"component_ellipses: the mixture has {d} features; pass points_2d and X "
                             "to draw it on a 2-D projection")
        covs = component_covariances(gmm)
        return [ellipse(gmm.means_[j], covs[j], n_std, n_points) for j in range(k)]
    P = np.asarray(points_2d, dtype=np.float64)
    if X is None:
        raise ValueError("component_ellipses: X (the mixture's input rows) is needed with points_2d")
    R = gmm.predict_proba(np.asarray(X, dtype=np.float64))  # (n, k)
    if P.shape != (R.shape[0], 2):
        raise DataError(f"component_ellipses: points_2d must be ({R.shape[0]}, 2), one row per row of X; "
                        f"found {P.shape}")
    out = []
    for j in range(k):
        w = R[:, j]
        total = w.sum()
        if total <= 1e-12:
            out.append(np.full((n_points, 2), np.nan))
            continue
        mu = (w[:, None] * P).sum(0) / total
        D = P - mu
        cov = (w[:, None] * D).T @ D / total
        out.append(ellipse(mu, cov, n_std, n_points))
    return out
