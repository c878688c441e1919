"""One entry point from "what the user points at" to feature vectors ready to embed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.errors import DataError

__all__ = ["Vectors", "load_vectors", "novelty_split"]


@dataclass(frozen=True, eq=False)
class Vectors:
    """Feature vectors and what is known about each row.

    Attributes
    ----------
    X : numpy.ndarray
        float ``(n, d)``.
    labels : numpy.ndarray or None
        ``(n,)`` category of each row for colouring (digit class, defect kind, folder name,
        0/1 label); None when unknown.
    anomaly : numpy.ndarray or None
        int64 ``(n,)``, 1 = anomaly, 0 = normal; None when the data has no such labels.
    images : list or numpy.ndarray or None
        One image per row (array or file path) for galleries; None for tables.
    names : list of str
        A caption per row (file name relative to the source, or the row number).
    fit_mask : numpy.ndarray or None
        bool ``(n,)``: rows a detector may be fitted on under the novelty protocol (the
        training split of an image dataset); None = choose with :func:`novelty_split`.
    kind : str
        ``"digits"``, ``"images"``, ``"mvtec"`` or ``"table"``.
    source : str
        What was loaded.
    standardize : bool
        Whether the columns have different units (tables) and should be standardised before
        distances are taken.
    """

    X: np.ndarray
    labels: np.ndarray | None
    anomaly: np.ndarray | None
    images: object
    names: list[str]
    fit_mask: np.ndarray | None
    kind: str
    source: str
    standardize: bool = False
    info: dict = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    def subset(self, index) -> "Vectors":
        """The rows ``index`` (in that order)."""
        index = np.asarray(index, dtype=np.int64)

        def take(a):
            if a is None:
                return None
            if isinstance(a, np.ndarray):
                return a[index]
            return [a[i] for i in index]

        return Vectors(self.X[index], take(self.labels), take(self.anomaly), take(self.images),
                       [self.names[i] for i in index], take(self.fit_mask), self.kind, self.source,
                       self.standardize, dict(self.info))


def novelty_split(anomaly: np.ndarray, fraction: float = 0.6, random_state: int = 0) -> np.ndarray:
    """bool mask of a random ``fraction`` of the normal rows (``anomaly == 0``): the rows a
    detector is fitted on under the novelty protocol (the others are scored)."""
    anomaly = np.asarray(anomaly)
    normal = np.flatnonzero(anomaly == 0)
    rng = np.random.default_rng(random_state)
    chosen = rng.choice(normal, int(round(fraction * len(normal))), replace=False)
    mask = np.zeros(len(anomaly), bool)
    mask[chosen] = True
    return mask


def _digits(novel_class: int | None) -> Vectors:
    from sklearn.datasets import load_digits

    d = load_digits()
    y = d.target.astype(np.int64)
    anomaly = None if novel_class is None else (y == int(novel_class)).astype(np.int64)
    images = (d.images / 16.0).astype(np.float32)  # (n, 8, 8) in [0, 1]
    return Vectors(d.data.astype(np.float64), y, anomaly, images, [f"digit #{i}" for i in range(len(y))], None,
                   "digits", "digits", info={"novel_class": novel_class})


def _image_folder(root: Path, image_size, backbone: str, progress: bool) -> Vectors:
    from workbench.embedding._images import find_images, image_features

    if (root / "train" / "good").is_dir():
        from workbench.datasets import FolderDataset

        ds = FolderDataset(root)
        samples = list(ds.train) + list(ds.test)
        paths = [s.path for s in samples]
        X = image_features(paths, image_size=image_size, backbone=backbone, progress=progress)
        labels = np.array([f"{s.split}/{s.kind}" for s in samples])
        anomaly = np.array([s.label for s in samples], np.int64)
        fit_mask = np.array([s.split == "train" for s in samples])
        names = [p.relative_to(root).as_posix() for p in paths]
        return Vectors(X, labels, anomaly, paths, names, fit_mask, "mvtec", str(root))
    paths = find_images(root)
    X = image_features(paths, image_size=image_size, backbone=backbone, progress=progress)
    labels = np.array([p.parent.relative_to(root).as_posix() if p.parent != root else "." for p in paths])
    names = [p.relative_to(root).as_posix() for p in paths]
    return Vectors(X, labels, None, paths, names, None, "images", str(root))


def load_vectors(data: str | os.PathLike, *, root: str | os.PathLike | None = None, label_column: str | None = "y",
                 novel_class: int | None = 9, image_size=(224, 224), backbone: str = "efficientnet_lite0",
                 progress: bool = False) -> Vectors:
    """Feature vectors from scikit-learn's digits, an image folder or a table file.

    Parameters
    ----------
    data : str or path-like
        ``"digits"``: the 1797 8x8 digits of scikit-learn (64 pixel features; the images
        are kept for galleries; ``novel_class`` is the anomaly). A folder: every image is
        embedded with :func:`workbench.embedding.image_features`; an MVTec-layout folder
        (``train/good``, ``test/<kind>``) gives labels ``split/kind``, anomaly labels and the
        training split; any other folder labels images by their subfolder. A ``.npz``,
        ``.csv`` or ``.parquet`` file: :func:`workbench.datasets.load_table`.
    root : path, optional
        Relative paths are resolved against it (notebooks pass the repository root).
    label_column : str or None, default "y"
        Label column of ``.csv``/``.parquet`` tables (1 = anomaly).
    novel_class : int or None, default 9
        Digits only: the class treated as anomalous (unknown) by detectors.
    image_size, backbone, progress
        Feature extraction settings for image folders.

    Returns
    -------
    Vectors
    """
    if str(data) == "digits":
        return _digits(novel_class)
    path = Path(data)
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    if path.is_dir():
        return _image_folder(path, tuple(image_size), backbone, progress)
    from workbench.datasets import TABLE_EXTENSIONS, load_table

    if path.suffix.lower() in TABLE_EXTENSIONS:
        table = load_table(path, label_column=label_column)
        labels = None if table.y is None else table.y.copy()
        return Vectors(table.X, labels, table.y, None, [f"row {i}" for i in range(table.n_rows)], None, "table",
                       str(path), standardize=True, info={"feature_names": table.feature_names})
    if not path.exists():
        raise DataError(f"{path}: does not exist; data must be 'digits', an image folder or a table file "
                        f"({', '.join(TABLE_EXTENSIONS)})")
    raise DataError(f"{path}: not a folder and not a table file; expected 'digits', an image folder or a "
                    f"{', '.join(TABLE_EXTENSIONS)} file")
