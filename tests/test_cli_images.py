"""`workbench evaluate | fit | predict` on the generated sample dataset."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from workbench.cli import main
from workbench.datasets import FolderDataset, make_sample

METRIC_KEYS = {"detector", "dataset", "n_train", "n_test", "image_auroc", "image_ap", "image_f1_max",
               "pixel_auroc", "aupro", "fit_seconds", "predict_seconds", "images_per_second",
               "peak_rss_mb", "settings"}


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("cli") / "sample")


@pytest.fixture(scope="module")
def evaluated(sample_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    model = out.parent / "model.pt"
    code = main(["evaluate", str(sample_dir), "--detector", "patchcore", "--out", str(out),
                 "--save-model", str(model), "--no-progress", "--overlays", "3"])
    assert code == 0
    return out, model


def test_evaluate_writes_the_metrics_contract(evaluated, sample_dir):
    out, _ = evaluated
    m = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(m)
    assert m["detector"] == "patchcore" and m["n_train"] == 50 and m["n_test"] == 42
    for key in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "aupro"):
        assert 0.5 < m[key] <= 1.0, key
    assert m["pixel_auroc"] > 0.9 and m["image_auroc"] > 0.75
    s = m["settings"]
    # every effective option is recorded
    for key in ("backbone", "image_size", "input_size", "tile", "sigma", "bank_size", "holdout",
                "image_threshold", "pixel_threshold", "threshold_info", "random_state", "stages"):
        assert key in s, key
    assert s["input_size"] == [240, 320] and m["peak_rss_mb"] > 50 and m["images_per_second"] > 0


def test_evaluate_writes_scores_and_overlays(evaluated, sample_dir):
    out, _ = evaluated
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert list(rows[0]) == ["path", "kind", "label", "score"] and len(rows) == 42
    ds = FolderDataset(sample_dir)
    assert [r["path"] for r in rows] == [str(s.path) for s in ds.test]
    assert {r["kind"] for r in rows} == {"good", "patch", "scratch", "stain"}
    maps = sorted(p.name for p in (out / "maps").iterdir())
    assert sum(n.startswith("top_") for n in maps) == 3
    assert all(n.startswith(("top_", "false_alarm_", "miss_")) for n in maps)
    img = np.asarray(Image.open(out / "maps" / maps[-1]))
    assert img.shape == (240, 320, 3)


def test_evaluate_keeps_an_earlier_run(evaluated, sample_dir):
    out, _ = evaluated
    first = (out / "metrics.json").read_text()
    assert main(["evaluate", str(sample_dir), "--detector", "padim-shared", "--out", str(out),
                 "--no-progress", "--overlays", "1"]) == 0
    kept = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert len(kept) == 1 and (kept[0] / "metrics.json").read_text() == first
    assert json.loads((out / "metrics.json").read_text())["detector"] == "padim-shared"


def test_fit_and_predict_with_a_saved_model(evaluated, sample_dir, tmp_path):
    _, model = evaluated
    model2 = tmp_path / "m.pt"
    assert main(["fit", str(sample_dir), "--detector", "padim", "--out", str(model2), "--no-progress",
                 "--param", "n_features=50"]) == 0
    ds = FolderDataset(sample_dir)
    images = [str(s.path) for s in ds.test[:2]]
    out = tmp_path / "pred"
    assert main(["predict", str(model), *images, str(sample_dir / "test" / "stain"), "--out", str(out),
                 "--no-progress"]) == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == 2 + 10 and list(rows[0]) == ["path", "score", "anomalous", "image_threshold"]
    names = {p.name for p in (out / "maps").iterdir()}
    assert f"{ds.test[0].path.stem}_overlay.png" in names and f"{ds.test[0].path.stem}_mask.png" in names
    # fitting again to the same path keeps the old model file
    assert main(["fit", str(sample_dir), "--detector", "padim", "--out", str(model2), "--no-progress",
                 "--param", "n_features=20"]) == 0
    assert len(list(tmp_path.glob("m.pt.*.bak"))) == 1


def test_detector_help_and_errors(capsys, sample_dir, tmp_path):
    assert main(["evaluate", str(sample_dir), "--detector", "help"]) == 0
    listing = capsys.readouterr().out
    for name in ("padim", "padim-shared", "patchcore", "musc", "prompt"):
        assert f"  {name} " in listing
    assert main(["evaluate", str(sample_dir), "--detector", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown detector" in capsys.readouterr().err
    assert main(["evaluate", str(sample_dir), "--detector", "knn", "--out", str(tmp_path)]) == 2
    assert "evaluate-table" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing"), "--detector", "padim", "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "none.pt"), str(sample_dir), "--out", str(tmp_path / "p")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(sample_dir), "--detector", "padim", "--param", "bogus=1",
                 "--out", str(tmp_path / "o")]) == 2
    assert "bogus" in capsys.readouterr().err


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "workbench", "evaluate", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--detector" in res.stdout and "--image-size" in res.stdout
