"""notebooks/click_robustness.ipynb runs under papermill on a tiny sample subset and writes consistent
metrics.json and per_image.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "click_robustness.ipynb"

pytestmark = [pytest.mark.notebook, pytest.mark.timeout(300)]


def test_parameters_cell_is_tagged_and_typed():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    lines = [ln for ln in code[0].source.splitlines() if ln.strip()]
    assert all(": " in ln.split("=")[0] and "  # " in ln for ln in lines), "each: `name: type = value  # meaning`"
    names = {ln.split(":")[0].strip() for ln in lines}
    assert {"data_dir", "output_dir", "stride", "max_images", "threads"} <= names
    assert all(not c.outputs for c in code), "commit the notebook without outputs"


def test_runs_on_a_tiny_subset_and_writes_consistent_metrics(tmp_path):
    papermill = pytest.importorskip("papermill")
    from workbench.datasets import make_sample

    data = make_sample(tmp_path / "sample")
    out = tmp_path / "out"
    papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "executed.ipynb"), cwd=str(REPO), kernel_name="python3",
        progress_bar=False, log_output=False,
        parameters={"data_dir": str(data), "output_dir": str(out), "max_images": 3, "stride": 24,
                    "steps": 4, "threads": 1, "n_worst": 2})
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_images"] == 3 and m["stride"] == 24 and m["threads"] == 1 and m["whitebox"] is True
    assert 0.0 <= m["iou_min"] <= m["iou_natural"] <= m["iou_max"] <= 1.0
    assert m["delta"] == pytest.approx(m["iou_max"] - m["iou_min"])
    assert m["iou_min"] <= m["grid_iou_min"] and m["iou_max"] >= m["grid_iou_max"]
    with open(out / "per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and {r["kind"] for r in rows} == {"patch", "scratch", "stain"}  # spread over kinds
    for key in ("iou_min", "iou_natural", "iou_max", "delta"):
        assert m[key] == pytest.approx(sum(float(r[key]) for r in rows) / 3)
    assert sum(k["n_images"] for k in m["per_kind"].values()) == 3
