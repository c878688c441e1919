"""``workbench evaluate-table``: run a vector detector on a table and write metrics and scores.

Contract (DESIGN.md)::

    workbench evaluate-table FILE --detector NAME [--protocol unsupervised|novelty]
                             [--label-column y] [--seed 0] [--param NAME=VALUE]... --out DIR
      -> DIR/metrics.json  {"detector", "dataset", "protocol", "n_rows", "auroc",
                            "average_precision", "fit_seconds", "score_seconds",
                            "n_fit_rows", "settings"}
      -> DIR/scores.csv    row,label,score   (row = 0-based row of FILE; score higher = more anomalous)
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

from workbench.errors import WorkbenchError

__all__ = ["register", "evaluate_table", "TableEvaluation", "PROTOCOLS", "NOVELTY_FIT_SHARE"]

PROTOCOLS = ("unsupervised", "novelty")
#: Share of the normal rows the novelty protocol fits on.
NOVELTY_FIT_SHARE = 0.6


class TableEvaluation(NamedTuple):
    """Result of :func:`evaluate_table`."""

    metrics: dict
    """The content of ``metrics.json``."""
    scores: "object"
    """pandas DataFrame ``row, label, score`` (the content of ``scores.csv``)."""
    note: str | None
    """Why the metrics are null, when they are."""


def register(subparsers) -> None:
    """Add ``evaluate-table`` to the ``workbench`` parser."""
    p = subparsers.add_parser(
        "evaluate-table",
        help="evaluate a vector detector on a table (.npz/.csv/.parquet)",
        description=(
            "Fit a vector detector on a table and score its rows. Protocols: 'unsupervised' fits on "
            "all rows and scores all rows; 'novelty' fits on a random 60% of the normal rows (label 0) "
            "and scores the other normal rows and all anomalies. Writes DIR/metrics.json (AUROC and "
            "average precision against the labels; null without labels) and DIR/scores.csv "
            "(row, label, score; higher score = more anomalous). '--detector help' lists the detectors."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("file", nargs="?", metavar="FILE", help="table: .npz (X, optional y), .csv or .parquet")
    p.add_argument("--detector", required=True, metavar="NAME",
                   help="vector detector name (iforest, knn, lof, gmm, mahalanobis, npca, pca, ecod, "
                        "pyod:<ClassName>); 'help' lists them")
    p.add_argument("--protocol", choices=PROTOCOLS, default="unsupervised", help="evaluation protocol")
    p.add_argument("--label-column", default="y", metavar="NAME",
                   help="label column or .npz array (1 = anomaly, 0 = normal)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the novelty split and of the detector's random_state")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="detector parameter, repeatable; VALUE is parsed as YAML (5, 0.1, true, null, text)")
    p.add_argument("--out", metavar="DIR", help="output folder for metrics.json and scores.csv")
    p.set_defaults(func=_run)


def _parse_params(items: list[str]) -> dict:
    import yaml

    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise WorkbenchError(f"--param {item!r}: expected NAME=VALUE, e.g. --param n_neighbors=10")
        try:
            params[name] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise WorkbenchError(f"--param {item!r}: cannot parse the value ({exc})") from None
    return params


def _json_safe(value):
    import numpy as np

    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return repr(value)


def _make_detector(name: str, params: dict, seed: int):
    from workbench.detectors import REGISTRY, describe_detectors, get_detector

    if not name.startswith("pyod:"):
        info = REGISTRY.get(name)
        if info is not None and info.kind != "vector":
            raise WorkbenchError(
                f"{name!r} is an image detector; evaluate-table takes a vector detector:\n"
                f"{describe_detectors('vector')}"
            )
    factory = get_detector(name)
    try:
        detector = factory(**params)
    except TypeError:
        valid = list(factory().get_params())
        unknown = [k for k in params if k not in valid]
        raise WorkbenchError(
            f"detector {name!r} has no parameter(s) {', '.join(unknown)}; its parameters are: {', '.join(valid)}"
        ) from None
    if "random_state" in detector.get_params() and "random_state" not in params:
        detector.set_params(random_state=seed)
    return detector


def evaluate_table(
    path,
    detector: str,
    *,
    protocol: str = "unsupervised",
    label_column: str | None = "y",
    seed: int = 0,
    params: dict | None = None,
) -> TableEvaluation:
    """Run the evaluate-table protocol in memory.

    Parameters
    ----------
    path : str or path-like
        Table file, read with :func:`workbench.datasets.load_table`.
    detector : str
        Registry name of a vector detector (or ``pyod:<ClassName>``).
    protocol : {'unsupervised', 'novelty'}
    label_column : str or None
    seed : int
        Seed of the novelty split and the detector's ``random_state``.
    params : dict, optional
        Detector parameters.

    Returns
    -------
    TableEvaluation
        ``metrics`` (the content of ``metrics.json``), ``scores`` (DataFrame with columns
        ``row`` = 0-based row of the file, ``label`` = nullable int, ``score`` = anomaly score,
        higher = more anomalous; one line per scored row in row order) and ``note`` (why
        the metrics are null, or None).

    Raises
    ------
    WorkbenchError
        Unreadable table (:class:`~workbench.errors.DataError`), unknown detector or
        parameter, novelty protocol without labels or with fewer than 4 normal rows.
    """
    import numpy as np
    import pandas as pd

    from workbench.datasets import load_table

    if protocol not in PROTOCOLS:
        raise WorkbenchError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    params = dict(params or {})
    table = load_table(path, label_column=label_column)
    X, y = table.X, table.y
    n = X.shape[0]
    if protocol == "unsupervised":
        fit_rows = score_rows = np.arange(n)
    else:
        if y is None:
            raise WorkbenchError(
                f"{table.path}: the novelty protocol fits on the normal rows, but the table has no labels "
                f"under {label_column!r}; pass --label-column NAME or use --protocol unsupervised."
            )
        normal = np.flatnonzero(y == 0)
        n_fit = int(round(NOVELTY_FIT_SHARE * normal.size))
        if n_fit < 2:
            raise WorkbenchError(
                f"{table.path}: the novelty protocol needs at least 4 normal rows (label 0) to fit on 60% "
                f"of them; found {normal.size}."
            )
        rng = np.random.default_rng(seed)
        fit_rows = np.sort(rng.permutation(normal)[:n_fit])
        mask = np.ones(n, dtype=bool)
        mask[fit_rows] = False
        score_rows = np.flatnonzero(mask)

    est = _make_detector(detector, params, seed)
    t0 = time.perf_counter()
    est.fit(X[fit_rows])
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = np.asarray(est.anomaly_score(X[score_rows]), dtype=np.float64)
    score_seconds = time.perf_counter() - t0

    auroc = ap = None
    note = None
    if y is not None:
        from workbench.metrics import average_precision, image_auroc

        labels = y[score_rows]
        if labels.min() == labels.max():
            note = f"metrics are null: every scored row has label {int(labels[0])}"
        else:
            auroc = image_auroc(labels, scores)
            ap = average_precision(labels, scores)
    else:
        note = f"metrics are null: {table.path} has no label column {label_column!r}"

    settings = {
        "detector_params": _json_safe(est.get_params()),
        "seed": seed,
        "label_column": label_column,
        "fit_rows_used": int(getattr(est, "n_fit_samples_", len(fit_rows))),
        "n_scored_rows": int(len(score_rows)),
    }
    if protocol == "novelty":
        settings["novelty_fit_share"] = NOVELTY_FIT_SHARE
    metrics = {
        "detector": detector,
        "dataset": str(table.path),
        "protocol": protocol,
        "n_rows": int(n),
        "auroc": auroc,
        "average_precision": ap,
        "fit_seconds": fit_seconds,
        "score_seconds": score_seconds,
        "n_fit_rows": int(len(fit_rows)),
        "settings": settings,
    }
    frame = pd.DataFrame({
        "row": score_rows,
        "label": pd.array(y[score_rows] if y is not None else [None] * len(score_rows), dtype="Int64"),
        "score": scores,
    })
    return TableEvaluation(metrics, frame, note)


def _run(args: argparse.Namespace) -> int:
    from workbench._io import atomic_write, atomic_write_json

    if args.detector == "help":
        from workbench.detectors import describe_detectors

        print("vector detectors for evaluate-table (--detector NAME):")
        print(describe_detectors("vector"))
        return 0
    missing = [what for what, value in (("FILE", args.file), ("--out DIR", args.out)) if not value]
    if missing:
        raise WorkbenchError(f"missing {' and '.join(missing)}; usage: workbench evaluate-table FILE "
                             f"--detector NAME --out DIR")
    params = _parse_params(args.param)
    metrics, frame, note = evaluate_table(
        args.file, args.detector, protocol=args.protocol, label_column=args.label_column,
        seed=args.seed, params=params,
    )
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise WorkbenchError(f"--out {out} exists and is not a folder")
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.17g")
    with atomic_write(out / "scores.csv", "w") as fh:
        fh.write(buf.getvalue())
    atomic_write_json(out / "metrics.json", metrics)
    if note:
        print(f"note: {note}", file=sys.stderr)
    fmt = lambda v: "null" if v is None else f"{v:.4f}"  # noqa: E731
    print(
        f"{args.detector} on {metrics['dataset']} ({args.protocol}, {metrics['n_rows']} rows, fit on "
        f"{metrics['n_fit_rows']}): AUROC {fmt(metrics['auroc'])}, AP {fmt(metrics['average_precision'])}, "
        f"fit {metrics['fit_seconds']:.2f} s, score {metrics['score_seconds']:.2f} s -> {out / 'metrics.json'}"
    )
    return 0

