"""2-D (or k-D) projections of feature matrices: UMAP and PCA, cached on disk."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from workbench._io import atomic_write
from workbench.errors import DataError

__all__ = ["PROJECTION_METHODS", "embedding_cache_dir", "project", "projection_cache_key"]

log = logging.getLogger(__name__)

#: Methods :func:`project` knows.
PROJECTION_METHODS = ("umap", "pca")

# Bump when the computation or the stored format changes: old cache entries are then ignored.
_CACHE_FORMAT = 1


def embedding_cache_dir() -> Path:
    """Where projections are cached: ``default_cache_dir() / "embedding"``
    (``$WORKBENCH_CACHE_DIR/embedding`` or ``~/.cache/outlier-workbench/embedding``)."""
    from workbench.features import default_cache_dir  # imports torch: only when caching

    return default_cache_dir() / "embedding"


def _check_matrix(X) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
        raise DataError(f"project: X must be a numeric (n_samples, n_features) array; found dtype {X.dtype}")
    if X.ndim != 2:
        raise DataError(f"project: X must be 2-D (n_samples, n_features); found shape {X.shape}. "
                        "Flatten images or pool feature maps first (see image_features).")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"project: X is empty (shape {X.shape})")
    if np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.complexfloating):
        bad = ~np.isfinite(X)
        if bad.any():
            row = int(np.flatnonzero(bad.any(axis=1))[0])
            raise DataError(f"project: X has {int(bad.sum())} NaN or infinite values (first in row {row}); "
                            "impute or drop those rows first")
    return X


def _versions(method: str) -> str:
    import sklearn

    parts = [f"numpy={np.__version__}", f"sklearn={sklearn.__version__}"]
    if method == "umap":
        import umap

        parts.append(f"umap={umap.__version__}")
    return ",".join(parts)


def projection_cache_key(X, method: str, n_components: int, random_state, standardize: bool, params: dict) -> str:
    """SHA-256 of the input's content (dtype, shape, bytes) and every setting of the projection."""
    X = np.ascontiguousarray(X)
    h = hashlib.sha256()
    spec = {
        "format": _CACHE_FORMAT, "method": method, "n_components": int(n_components),
        "random_state": random_state, "standardize": bool(standardize), "params": params,
        "dtype": X.dtype.str, "shape": list(X.shape), "versions": _versions(method),
    }
    h.update(json.dumps(spec, sort_keys=True, default=repr).encode())
    h.update(X.reshape(-1).view(np.uint8))
    return h.hexdigest()


def _cache_path(key: str, cache_dir) -> Path:
    root = Path(cache_dir) if cache_dir is not None else embedding_cache_dir()
    return root / key[:2] / f"{key}.npz"


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _cache_load(path: Path, key: str, shape: tuple[int, int]) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            emb, stored_key, digest = z["embedding"], str(z["key"]), str(z["sha256"])
        if stored_key != key:
            raise ValueError("key mismatch")
        if emb.shape != shape or emb.dtype != np.float32:
            raise ValueError(f"shape {emb.shape} dtype {emb.dtype}, expected {shape} float32")
        if _digest(emb) != digest or not np.isfinite(emb).all():
            raise ValueError("checksum mismatch")
        return emb
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("embedding cache entry %s is damaged (%s); recomputing it", path, exc)
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def _cache_store(path: Path, key: str, emb: np.ndarray) -> None:
    try:
        with atomic_write(path, "wb") as fh:
            np.savez(fh, embedding=emb, key=np.array(key), sha256=np.array(_digest(emb)))
    except OSError as exc:  # a full or read-only disk must not stop the analysis
        log.warning("could not write embedding cache entry %s: %s", path, exc)


def _standardized(X: np.ndarray) -> np.ndarray:
    Xf = X.astype(np.float64)
    mean = Xf.mean(axis=0)
    std = Xf.std(axis=0)
    std[std == 0] = 1.0
    return (Xf - mean) / std


def _compute(X: np.ndarray, method: str, n_components: int, random_state, params: dict) -> np.ndarray:
    n, d = X.shape
    if method == "pca":
        from sklearn.decomposition import PCA

        if n_components > min(n, d):
            raise DataError(f"project: PCA to {n_components} components needs at least {n_components} samples "
                            f"and features; X has shape {X.shape}")
        Xf = X.astype(np.float64, copy=False)
        out = PCA(n_components=n_components, random_state=random_state, **params).fit_transform(Xf)
    else:
        if n < n_components + 2:
            raise DataError(f"project: UMAP to {n_components} dimensions needs at least {n_components + 2} "
                            f"samples; X has {n}. Use method='pca' for tiny sets.")
        import warnings

        import umap

        p = dict(params)
        p.setdefault("n_neighbors", 15)
        p["n_neighbors"] = int(min(p["n_neighbors"], n - 1))
        with warnings.catch_warnings():
            # with random_state set, UMAP runs single-threaded on purpose and says so
            warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
            warnings.filterwarnings("ignore", message=".*random_state.*parallelism.*")
            reducer = umap.UMAP(n_components=n_components, random_state=random_state, **p)
            out = reducer.fit_transform(X.astype(np.float32, copy=False))
    return np.ascontiguousarray(out, dtype=np.float32)


def project(X, method: str = "umap", n_components: int = 2, *, random_state: int | None = 0,
            standardize: bool = False, cache: bool = True, cache_dir: str | os.PathLike | None = None,
            **params) -> np.ndarray:
    """Project the rows of a feature matrix to ``n_components`` dimensions.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numeric, finite feature vectors (image features, table rows, latents).
    method : {"umap", "pca"}, default "umap"
        ``"umap"``: umap-learn's UMAP (non-linear; neighbourhoods preserved, distances between
        clusters are not meaningful). ``"pca"``: scikit-learn's PCA (linear, fast, exact).
    n_components : int, default 2
        Output dimensions.
    random_state : int or None, default 0
        Seed. With an int, the same input and settings give a bitwise identical result on one
        machine (UMAP then runs single-threaded, as umap-learn requires for reproducibility).
        ``None`` gives a different UMAP layout per call and disables the cache.
    standardize : bool, default False
        Scale every feature to zero mean and unit variance first (tables whose columns have
        different units); constant features are left at zero.
    cache : bool, default True
        Keep the result on disk under :func:`embedding_cache_dir`, keyed by the SHA-256 of the
        input's content (dtype, shape, bytes), the method, every parameter and the library
        versions. Entries are written atomically and checksummed; a damaged entry is logged,
        removed and recomputed.
    cache_dir : path or None
        Overrides :func:`embedding_cache_dir`.
    **params
        Passed to ``umap.UMAP`` (e.g. ``n_neighbors=15``, ``min_dist=0.1``, ``metric="cosine"``)
        or ``sklearn.decomposition.PCA`` (e.g. ``whiten=True``). ``n_neighbors`` is capped at
        ``n_samples - 1``.

    Returns
    -------
    numpy.ndarray
        float32 of shape ``(n_samples, n_components)``, row ``i`` the image of ``X[i]``.

    Notes
    -----
    The first UMAP call of a process compiles umap-learn's numba code (~20 s); later calls
    and cache hits are fast. UMAP costs about O(n log n); 50k rows of 64 features take
    on the order of a minute on two cores.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X = load_digits().data
    >>> xy = project(X, "pca")          # (1797, 2) float32
    """
    method = str(method).lower()
    if method not in PROJECTION_METHODS:
        raise ValueError(f"project: method must be one of {PROJECTION_METHODS}; got {method!r}")
    n_components = int(n_components)
    if n_components < 1:
        raise ValueError(f"project: n_components must be >= 1; got {n_components}")
    if random_state is not None and not isinstance(random_state, (int, np.integer)):
        raise TypeError(f"project: random_state must be an int or None (a seed, so results can be cached); "
                        f"got {type(random_state).__name__}")
    X = _check_matrix(X)
    random_state = None if random_state is None else int(random_state)
    use_cache = cache and random_state is not None
    path = key = None
    if use_cache:
        key = projection_cache_key(X, method, n_components, random_state, standardize, params)
        path = _cache_path(key, cache_dir)
        hit = _cache_load(path, key, (X.shape[0], n_components))
        if hit is not None:
            return hit
    Xin = _standardized(X) if standardize else X
    out = _compute(Xin, method, n_components, random_state, params)
    if use_cache:
        _cache_store(path, key, out)
    return out
