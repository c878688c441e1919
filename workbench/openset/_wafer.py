"""WM-811K wafer maps: loading and a fixed-size representation of maps of any size.

A wafer map is a small integer image with die states 0 = no die, 1 = pass, 2 = fail; map
sizes vary (35x37 to 212x160 in the shared subset). Two fixed-size representations:

``'polar'`` (default, 153 values, rotation-normalised)
    Die positions are mapped to a unit disc (centre and half-extents of the wafer's bounding
    box, so elliptic maps of non-square dies become circles). Features: the overall share of
    failing dies (1); failing share in 8 equal-width rings (8: centre / donut / edge
    patterns); failing share in 16 angular sectors, sorted in decreasing order (16:
    localisation without orientation); and the 8 x 16 ring-by-sector grid rolled so that the
    sector with the most failures comes first (128: where the pattern sits, up to rotation).
``'image'`` (2 x size x size values)
    The fail-die indicator and the wafer mask (die present), each resized to
    ``size x size`` by exact area averaging: a cell holds the share of its area covered by
    failing dies / by dies. Row-major, fail channel first.
``'both'``
    ``'polar'`` then ``'image'``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from workbench.errors import DataError

__all__ = ["load_wafer_maps", "read_wafer_maps", "wafer_features", "WAFER_FEATURES"]

WAFER_FEATURES = ("polar", "image", "both")
N_RINGS = 8
N_SECTORS = 16
_KEYS = ("maps_flat", "shapes", "offsets", "failure_type", "lot_name")


def read_wafer_maps(path: str | os.PathLike) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Raw maps of a ``wafer_maps.npz`` bundle.

    Parameters
    ----------
    path : str or path-like
        ``wafer_maps.npz`` with ``maps_flat`` (uint8), ``shapes`` (n, 2), ``offsets`` (n + 1),
        ``failure_type`` (n,) and ``lot_name`` (n,); map ``i`` is
        ``maps_flat[offsets[i]:offsets[i + 1]].reshape(shapes[i])``.

    Returns
    -------
    maps : list of ndarray
        ``n`` uint8 arrays ``(H_i, W_i)`` with die states 0/1/2.
    failure_type : ndarray of str, shape (n,)
    lot_name : ndarray of str, shape (n,)

    Raises
    ------
    DataError
        Missing file, missing arrays (the message lists those found), inconsistent offsets
        or shapes, die states other than 0/1/2.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"wafer map file {path} does not exist; expected a wafer_maps.npz bundle.")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _KEYS if k not in data.files]
            if missing:
                raise DataError(
                    f"{path} lacks the arrays {missing}; found {list(data.files)}. Expected {list(_KEYS)}."
                )
            flat, shapes, offsets = data["maps_flat"], data["shapes"].astype(np.int64), data["offsets"].astype(np.int64)
            failure, lots = data["failure_type"].astype(str), data["lot_name"].astype(str)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read {path} as a .npz archive: {exc}") from exc
    n = len(shapes)
    if shapes.ndim != 2 or shapes.shape[1] != 2 or offsets.shape != (n + 1,) or failure.shape != (n,) or lots.shape != (n,):
        raise DataError(
            f"{path}: inconsistent arrays: shapes {shapes.shape}, offsets {offsets.shape}, failure_type "
            f"{failure.shape}, lot_name {lots.shape}; expected (n, 2), (n + 1,), (n,), (n,)."
        )
    sizes = np.diff(offsets)
    bad = np.flatnonzero(sizes != shapes.prod(axis=1))
    if bad.size or offsets[-1] != flat.size:
        i = int(bad[0]) if bad.size else n - 1
        raise DataError(
            f"{path}: map {i} has {sizes[i]} values between its offsets but shape {tuple(shapes[i])}; the "
            f"bundle is damaged."
        )
    if flat.size and flat.max() > 2:
        raise DataError(f"{path}: die states must be 0, 1 or 2; found {int(flat.max())}.")
    maps = [flat[offsets[i]:offsets[i + 1]].reshape(shapes[i]) for i in range(n)]
    return maps, failure, lots


def _area_matrix(n_src: int, n_dst: int) -> np.ndarray:
    """``(n_dst, n_src)`` matrix averaging source cells over each destination cell's area."""
    edges = np.linspace(0.0, n_src, n_dst + 1)
    lo = np.arange(n_src)[None, :]
    overlap = np.clip(np.minimum(edges[1:, None], lo + 1) - np.maximum(edges[:-1, None], lo), 0.0, None)
    return overlap / (edges[1:] - edges[:-1])[:, None]


def _image_features(m: np.ndarray, size: int) -> np.ndarray:
    rows, cols = _area_matrix(m.shape[0], size), _area_matrix(m.shape[1], size)
    fail = rows @ (m == 2).astype(np.float64) @ cols.T
    wafer = rows @ (m > 0).astype(np.float64) @ cols.T
    return np.concatenate([fail.ravel(), wafer.ravel()])


def _polar_features(m: np.ndarray) -> np.ndarray:
    rr, cc = np.nonzero(m > 0)
    if rr.size == 0:
        return np.zeros(1 + N_RINGS + N_SECTORS + N_RINGS * N_SECTORS)
    cy, cx = (rr.min() + rr.max()) / 2.0, (cc.min() + cc.max()) / 2.0
    hy, hx = (rr.max() - rr.min() + 1) / 2.0, (cc.max() - cc.min() + 1) / 2.0
    dy, dx = (rr - cy) / hy, (cc - cx) / hx
    radius = np.sqrt(dy**2 + dx**2)
    radius = radius / max(radius.max(), 1e-12)
    ring = np.minimum((radius * N_RINGS).astype(np.int64), N_RINGS - 1)
    sector = (((np.arctan2(dy, dx) + np.pi) / (2 * np.pi)) * N_SECTORS).astype(np.int64) % N_SECTORS
    fail = (m[rr, cc] == 2).astype(np.float64)
    dies = np.zeros((N_RINGS, N_SECTORS))
    fails = np.zeros((N_RINGS, N_SECTORS))
    np.add.at(dies, (ring, sector), 1.0)
    np.add.at(fails, (ring, sector), fail)
    share = fails / np.maximum(dies, 1.0)
    ring_share = fails.sum(1) / np.maximum(dies.sum(1), 1.0)
    sector_share = fails.sum(0) / np.maximum(dies.sum(0), 1.0)
    first = int(np.argmax(sector_share))
    return np.concatenate([[fail.mean()], ring_share, np.sort(sector_share)[::-1], np.roll(share, -first, axis=1).ravel()])


def wafer_features(maps, *, features: str = "polar", size: int = 32) -> np.ndarray:
    """Fixed-size representation of wafer maps of any size (see the module docstring).

    Parameters
    ----------
    maps : sequence of ndarray
        Maps ``(H_i, W_i)`` with die states 0 (no die), 1 (pass), 2 (fail).
    features : {'polar', 'image', 'both'}, default='polar'
    size : int, default=32
        Side of the resized images (``'image'``/``'both'``).

    Returns
    -------
    ndarray of shape (n, n_features), float32
        ``n_features`` is 153 (polar), ``2 * size**2`` (image) or their sum (both).
    """
    if features not in WAFER_FEATURES:
        raise ValueError(f"features must be one of {', '.join(map(repr, WAFER_FEATURES))}; got {features!r}.")
    if not (isinstance(size, (int, np.integer)) and size >= 2):
        raise ValueError(f"size must be an int >= 2; got {size!r}.")
    rows = []
    for i, m in enumerate(maps):
        m = np.asarray(m)
        if m.ndim != 2:
            raise ValueError(f"map {i} has shape {m.shape}; expected a 2-D array of die states.")
        parts = []
        if features in ("polar", "both"):
            parts.append(_polar_features(m))
        if features in ("image", "both"):
            parts.append(_image_features(m, size))
        rows.append(np.concatenate(parts))
    return np.asarray(rows, dtype=np.float32)


def load_wafer_maps(path: str | os.PathLike, *, features: str = "polar", size: int = 32):
    """Load a WM-811K ``wafer_maps.npz`` bundle as fixed-size feature rows.

    Parameters
    ----------
    path : str or path-like
        The bundle (e.g. ``../shared/datasets/wafer/wm811k_subset/wafer_maps.npz``).
    features : {'polar', 'image', 'both'}, default='polar'
        Representation, see :func:`wafer_features`.
    size : int, default=32
        Image side for ``'image'``/``'both'``.

    Returns
    -------
    X : ndarray of shape (n, n_features), float32
    y : ndarray of shape (n,), int64
        Index of each map's failure type in ``class_names``.
    class_names : list of str
        Failure types, sorted (``['Center', 'Donut', 'Edge-Loc', 'Near-full', 'Scratch']``
        for the shared subset).
    lots : ndarray of str, shape (n,)
        Lot of each map (maps of one lot are correlated: split by lot).

    Raises
    ------
    DataError
        The file is missing or not a wafer-map bundle (see :func:`read_wafer_maps`).
    """
    maps, failure, lots = read_wafer_maps(path)
    names, y = np.unique(failure, return_inverse=True)
    X = wafer_features(maps, features=features, size=size)
    return X, y.astype(np.int64), [str(n) for n in names], lots
