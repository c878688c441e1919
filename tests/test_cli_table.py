"""``workbench evaluate-table`` (contract in DESIGN.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _shared import shared_dataset

from workbench.cli import main
from workbench.metrics import average_precision, image_auroc

DESIGN_KEYS = {"detector", "dataset", "protocol", "n_rows", "auroc", "average_precision", "fit_seconds",
               "score_seconds"}
ALLOWED_EXTRA = {"settings", "n_fit_rows"}


@pytest.fixture()
def table(tmp_path):
    """200 normal rows around the origin, 20 anomalies far away; anomalies interleaved."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(200, 3)), rng.normal(size=(20, 3)) + 6.0])
    y = np.r_[np.zeros(200, int), np.ones(20, int)]
    order = rng.permutation(len(y))
    path = tmp_path / "table.npz"
    np.savez(path, X=X[order], y=y[order])
    return path, X[order], y[order]


def _read(out: Path):
    metrics = json.loads((out / "metrics.json").read_text())
    scores = pd.read_csv(out / "scores.csv")
    return metrics, scores


def test_unsupervised_writes_metrics_and_scores(table, tmp_path, capsys):
    path, X, y = table
    out = tmp_path / "out"
    assert main(["evaluate-table", str(path), "--detector", "knn", "--out", str(out)]) == 0
    metrics, scores = _read(out)
    assert DESIGN_KEYS <= set(metrics) <= DESIGN_KEYS | ALLOWED_EXTRA
    assert metrics["detector"] == "knn" and metrics["protocol"] == "unsupervised"
    assert metrics["n_rows"] == metrics["n_fit_rows"] == 220
    assert list(scores.columns) == ["row", "label", "score"]
    np.testing.assert_array_equal(scores["row"], np.arange(220))
    np.testing.assert_array_equal(scores["label"], y)
    # the metrics are those of the written scores, and the anomalies are easy here
    assert metrics["auroc"] == pytest.approx(image_auroc(scores["label"], scores["score"]))
    assert metrics["average_precision"] == pytest.approx(average_precision(scores["label"], scores["score"]))
    assert metrics["auroc"] > 0.95
    assert metrics["fit_seconds"] >= 0 and metrics["score_seconds"] >= 0
    assert metrics["settings"]["detector_params"]["n_neighbors"] == 5
    assert metrics["settings"]["seed"] == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert "AUROC" in capsys.readouterr().out


def test_novelty_protocol_fits_on_60_percent_of_the_normal_rows(table, tmp_path):
    path, X, y = table
    out = tmp_path / "nov"
    assert main(["evaluate-table", str(path), "--detector", "mahalanobis", "--protocol", "novelty",
                 "--out", str(out)]) == 0
    metrics, scores = _read(out)
    assert metrics["n_fit_rows"] == 120  # 60 % of 200 normal rows
    assert len(scores) == 220 - 120
    assert scores["label"].sum() == 20  # every anomaly is scored
    assert (scores["label"] == 0).sum() == 80
    fit_rows = sorted(set(range(220)) - set(scores["row"]))
    assert (y[fit_rows] == 0).all()
    # same seed, same split; another seed, another split
    again = tmp_path / "again"
    main(["evaluate-table", str(path), "--detector", "mahalanobis", "--protocol", "novelty", "--out", str(again)])
    np.testing.assert_array_equal(_read(again)[1]["row"], scores["row"])
    other = tmp_path / "other"
    main(["evaluate-table", str(path), "--detector", "mahalanobis", "--protocol", "novelty", "--seed", "1",
          "--out", str(other)])
    assert not np.array_equal(_read(other)[1]["row"], scores["row"])


def test_csv_without_labels_writes_scores_and_null_metrics(table, tmp_path, capsys):
    _, X, _ = table
    csv = tmp_path / "plain.csv"
    pd.DataFrame(X, columns=["a", "b", "c"]).to_csv(csv, index=False)
    out = tmp_path / "out"
    assert main(["evaluate-table", str(csv), "--detector", "ecod", "--out", str(out)]) == 0
    metrics, scores = _read(out)
    assert metrics["auroc"] is None and metrics["average_precision"] is None
    assert len(scores) == 220 and scores["label"].isna().all() and scores["score"].notna().all()
    assert "metrics are null" in capsys.readouterr().err


def test_csv_label_column_and_detector_params(table, tmp_path):
    _, X, y = table
    csv = tmp_path / "labelled.csv"
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["is_bad"] = y
    frame.to_csv(csv, index=False)
    out = tmp_path / "out"
    assert main(["evaluate-table", str(csv), "--detector", "lof", "--label-column", "is_bad",
                 "--param", "n_neighbors=30", "--param", "contamination=0.1", "--out", str(out)]) == 0
    metrics, scores = _read(out)
    params = metrics["settings"]["detector_params"]
    assert params["n_neighbors"] == 30 and params["contamination"] == 0.1
    assert metrics["settings"]["label_column"] == "is_bad"
    np.testing.assert_array_equal(scores["label"], y)
    assert metrics["auroc"] > 0.95  # k = 30 exceeds the 20-row anomaly cluster, so LOF sees it


def test_seed_sets_the_detector_random_state(table, tmp_path):
    path, *_ = table
    out = tmp_path / "out"
    main(["evaluate-table", str(path), "--detector", "iforest", "--seed", "3", "--out", str(out)])
    assert _read(out)[0]["settings"]["detector_params"]["random_state"] == 3


def test_pyod_detector_runs(table, tmp_path):
    path, *_ = table
    out = tmp_path / "out"
    assert main(["evaluate-table", str(path), "--detector", "pyod:HBOS", "--out", str(out)]) == 0
    metrics, _ = _read(out)
    assert metrics["detector"] == "pyod:HBOS"
    assert metrics["settings"]["detector_params"]["estimator"] == "HBOS"


def test_detector_help_lists_every_vector_detector(capsys):
    assert main(["evaluate-table", "--detector", "help"]) == 0
    text = capsys.readouterr().out
    for name in ["iforest", "knn", "lof", "gmm", "mahalanobis", "npca", "pca", "ecod", "pyod:<ClassName>"]:
        assert f"  {name} " in text
    assert "padim" not in text  # image detectors cannot evaluate tables


@pytest.mark.parametrize(
    "args, message",
    [
        (["--detector", "nope"], "unknown detector 'nope'"),
        (["--detector", "padim"], "'padim' is an image detector"),
        (["--detector", "pyod:Iforest"], "unknown PyOD detector 'Iforest'"),
        (["--detector", "knn", "--param", "k=3"], "detector 'knn' has no parameter\\(s\\) k; its parameters are: "),
        (["--detector", "knn", "--param", "n_neighbors"], "expected NAME=VALUE"),
        (["--detector", "knn", "--param", "n_neighbors=-1"], "n_neighbors must be an int >= 1"),
    ],
)
def test_user_errors_exit_2_with_a_message(table, tmp_path, capsys, args, message):
    path, *_ = table
    assert main(["evaluate-table", str(path), *args, "--out", str(tmp_path / "out")]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_novelty_without_labels_and_missing_arguments(table, tmp_path, capsys):
    _, X, _ = table
    csv = tmp_path / "plain.csv"
    pd.DataFrame(X).to_csv(csv, index=False)
    assert main(["evaluate-table", str(csv), "--detector", "knn", "--protocol", "novelty",
                 "--out", str(tmp_path / "o")]) == 2
    assert "novelty protocol fits on the normal rows" in capsys.readouterr().err
    assert main(["evaluate-table", "--detector", "knn"]) == 2
    assert "missing FILE and --out DIR" in capsys.readouterr().err
    assert main(["evaluate-table", str(tmp_path / "nothere.npz"), "--detector", "knn", "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_real_adbench_table_matches_the_dataset_readme(tmp_path):
    # ../shared/datasets/README.md: IsolationForest, seed 0, fit on all rows: AUROC 0.933 on 6_cardio
    path = shared_dataset("tabular", "adbench_classical") / "6_cardio.npz"
    out = tmp_path / "out"
    assert main(["evaluate-table", str(path), "--detector", "iforest", "--out", str(out)]) == 0
    metrics, scores = _read(out)
    assert metrics["n_rows"] == 1831 and len(scores) == 1831
    assert metrics["auroc"] == pytest.approx(0.933, abs=0.0005)


def test_console_script_in_a_subprocess(table, tmp_path):
    path, *_ = table
    script = Path(sys.executable).with_name("workbench")
    out = tmp_path / "out"
    proc = subprocess.run([str(script), "evaluate-table", str(path), "--detector", "pca", "--protocol", "novelty",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pca on" in proc.stdout and "AUROC" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "novelty" and metrics["auroc"] > 0.9
