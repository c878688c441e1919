"""Tables of feature vectors: ``.npz`` (``X``, optional ``y``), ``.csv`` and ``.parquet``."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import DataError

__all__ = ["Table", "load_table", "TABLE_EXTENSIONS"]

#: File name extensions :func:`load_table` reads (case-insensitive).
TABLE_EXTENSIONS = (".npz", ".csv", ".parquet")

# Column names that usually hold a label; warned about when they would become features.
_LABEL_LIKE = {"y", "label", "labels", "target", "class", "outlier", "anomaly", "is_anomaly", "is_outlier", "ground_truth"}


@dataclass(frozen=True, eq=False)
class Table:
    """A loaded table of feature vectors.

    Attributes
    ----------
    X : numpy.ndarray
        float64 of shape ``(n, d)``, all finite.
    y : numpy.ndarray or None
        int64 of shape ``(n,)`` with 1 = anomaly, 0 = normal; None when the file has no labels.
    feature_names : list of str
        ``d`` column names (``x0``, ``x1``, ... for ``.npz`` files without names).
    path : pathlib.Path
        The file it was read from.
    """

    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str]
    path: Path

    @property
    def n_rows(self) -> int:
        """Number of rows ``n``."""
        return int(self.X.shape[0])

    def __repr__(self) -> str:
        labels = "no labels" if self.y is None else f"{int(self.y.sum())} anomalies"
        return f"Table({str(self.path)!r}, n={self.X.shape[0]}, d={self.X.shape[1]}, {labels})"


def _check_labels(y, path: Path, where: str, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{path}: labels {where} have shape {y.shape}; expected ({n},), one per row of X.")
    if y.dtype == np.bool_:
        return y.astype(np.int64)
    if y.dtype.kind in "OUS":
        values = sorted({str(v) for v in y.tolist()})
        raise DataError(
            f"{path}: labels {where} are text ({', '.join(values[:6])}{', ...' if len(values) > 6 else ''}); "
            f"expected 0 (normal) and 1 (anomaly). Map them to 0/1 first."
        )
    if y.dtype.kind == "f":
        nan = ~np.isfinite(y)
        if nan.any():
            row = int(np.flatnonzero(nan)[0])
            raise DataError(
                f"{path}: labels {where} have {int(nan.sum())} missing or non-finite values (first at row {row}); "
                f"expected 0 (normal) or 1 (anomaly) on every row."
            )
    values = np.unique(y)
    bad = [v for v in values.tolist() if v not in (0, 1)]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:6]) + (", ..." if len(bad) > 6 else "")
        raise DataError(
            f"{path}: labels {where} must be 0 (normal) or 1 (anomaly); found also {shown}. "
            f"Map the labels to 0/1 first."
        )
    return y.astype(np.int64)


def _check_finite(X: np.ndarray, path: Path, names: list[str], line_offset: int | None) -> None:
    bad = ~np.isfinite(X)
    if bad.any():
        rows, cols = np.nonzero(bad)
        row, col = int(rows[0]), int(cols[0])
        where = f"row {row}"
        if line_offset is not None:
            where += f" (line {row + line_offset} of the file)"
        raise DataError(
            f"{path}: X has {int(bad.sum())} missing, NaN or infinite values in {int(bad.any(axis=1).sum())} rows; "
            f"the first is at {where}, column {names[col]!r}. Expected finite numbers; drop or impute "
            f"those rows first."
        )


def _load_npz(path: Path, label_column: str | None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
            if "X" not in keys:
                raise DataError(
                    f"{path} has the arrays {keys or '(none)'}; expected 'X' (n, d) and optionally "
                    f"'y' (n,). Save it with np.savez(path, X=X, y=y)."
                )
            X = data["X"]
            label_key = label_column if label_column and label_column in keys else None
            y = data[label_key] if label_key else None
            names = [str(v) for v in data["feature_names"]] if "feature_names" in keys else None
    except DataError:
        raise
    except ValueError as exc:  # object arrays need pickle
        raise DataError(
            f"cannot read {path}: {exc}. Arrays must be numeric (object arrays are not loaded)."
        ) from exc
    except Exception as exc:
        raise DataError(f"cannot read {path} as a .npz archive: {exc}.") from exc
    if X.ndim != 2:
        raise DataError(f"{path}: X has shape {X.shape}; expected (n, d). Reshape a single feature with X[:, None].")
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: X has dtype {X.dtype}; expected numbers (int, float or bool).")
    if names is None or len(names) != X.shape[1]:
        names = [f"x{i}" for i in range(X.shape[1])]
    if y is not None:
        y = _check_labels(y, path, f"(array {label_key!r})", X.shape[0])
    return X.astype(np.float64), y, names


def _load_frame(path: Path, suffix: str):
    import pandas as pd

    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path} is empty; expected a header row and data rows.") from exc
    except ImportError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    except Exception as exc:  # parser errors, corrupt parquet, ...
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}".rstrip()) from exc


def load_table(path: str | os.PathLike, label_column: str | None = "y") -> Table:
    """Read a table of feature vectors.

    Parameters
    ----------
    path : str or path-like
        ``.npz`` with an array ``X`` of shape ``(n, d)`` and optionally labels under
        ``label_column`` (and ``feature_names``); or ``.csv`` / ``.parquet`` whose columns
        are features, plus the label column when present.
    label_column : str or None, default 'y'
        Name of the label column (1 = anomaly, 0 = normal). When the file has it, it is
        removed from ``X`` and returned as ``y``; when it does not, ``y`` is None.
        None means "no labels": every column is a feature.

    Returns
    -------
    Table
        ``X`` float64 ``(n, d)``, ``y`` int64 ``(n,)`` or None, ``feature_names``, ``path``.

    Raises
    ------
    DataError
        Missing or unreadable file; unsupported extension; ``.npz`` without ``X`` (the
        message lists the arrays found); non-numeric columns (named; drop or encode them);
        NaN/inf in ``X`` (count and the first row and column); labels other than 0/1.

    Warns
    -----
    UserWarning
        A feature column has a label-like name (``label``, ``target``, ``class``, ...) while
        ``label_column`` is not in the file, so a label may be used as a feature.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if not path.exists():
        raise DataError(f"table file {path} does not exist; check the path.")
    if path.is_dir():
        raise DataError(f"table path {path} is a folder; expected a {', '.join(TABLE_EXTENSIONS)} file.")
    if suffix not in TABLE_EXTENSIONS:
        raise DataError(
            f"table file {path} has the extension {path.suffix!r}; expected one of {', '.join(TABLE_EXTENSIONS)}."
        )
    if suffix == ".npz":
        X, y, names = _load_npz(path, label_column)
        line_offset = None
    else:
        df = _load_frame(path, suffix)
        columns = [str(c) for c in df.columns]
        df.columns = columns
        if len(set(columns)) != len(columns):
            dup = sorted({c for c in columns if columns.count(c) > 1})
            raise DataError(f"{path} has duplicate column names {dup}; make column names unique.")
        y = None
        if label_column is not None and label_column in df.columns:
            col = df[label_column]
            raw = col.to_numpy(dtype=np.float64, na_value=np.nan) if col.dtype.kind in "biuf" else col.to_numpy()
            y = _check_labels(raw, path, f"(column {label_column!r})", len(df))
            df = df.drop(columns=[label_column])
        elif label_column is not None:
            suspicious = [c for c in df.columns if c.strip().lower() in _LABEL_LIKE]
            if suspicious:
                warnings.warn(
                    f"{path} has no label column {label_column!r}, but the column(s) {suspicious} look like "
                    f"labels and are used as features; pass label_column={suspicious[0]!r} (CLI: "
                    f"--label-column {suspicious[0]}) if they are labels.",
                    stacklevel=2,
                )
        non_numeric = [c for c in df.columns if df[c].dtype.kind not in "biuf"]
        if non_numeric:
            kinds = ", ".join(f"{c!r} ({df[c].dtype})" for c in non_numeric[:8])
            raise DataError(
                f"{path} has {len(non_numeric)} non-numeric columns: {kinds}{', ...' if len(non_numeric) > 8 else ''}; "
                f"expected numeric features only. Drop these columns or encode them as numbers "
                f"(e.g. one-hot) before loading."
            )
        names = list(df.columns)
        X = df.to_numpy(dtype=np.float64, na_value=np.nan) if len(names) else np.empty((len(df), 0))
        line_offset = 2 if suffix == ".csv" else None  # header line + 1-based lines
    if X.shape[0] == 0:
        raise DataError(f"{path} has no rows; expected at least one row of features.")
    if X.shape[1] == 0:
        raise DataError(f"{path} has no feature columns (only the label); expected at least one numeric feature.")
    _check_finite(X, path, names, line_offset)
    return Table(X=np.ascontiguousarray(X, dtype=np.float64), y=y, feature_names=names, path=path)
