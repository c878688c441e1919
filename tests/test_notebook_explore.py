"""notebooks/explore_embeddings.ipynb runs under papermill and writes metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "explore_embeddings.ipynb"

pytestmark = [pytest.mark.notebook, pytest.mark.timeout(600)]


def _run(tmp_path: Path, **parameters) -> dict:
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "out"
    parameters.setdefault("output_dir", str(out))
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "executed.ipynb"), parameters=parameters,
                               cwd=str(REPO), kernel_name="python3", progress_bar=False, log_output=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "projection.png").stat().st_size > 1000
    frame = (out / "embedding.csv").read_text().splitlines()
    assert len(frame) == metrics["n_rows"] + 1
    return metrics


def test_parameters_cell_is_tagged_and_typed():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    lines = [ln for ln in code[0].source.splitlines() if ln.strip()]
    typed = [": " in ln.split("=")[0] and "  # " in ln for ln in lines]
    assert all(typed), "each parameter: `name: type = value  # meaning`"
    names = {ln.split(":")[0].strip() for ln in lines}
    assert {"data", "method", "output_dir"} <= names
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
def test_digits_with_umap(tmp_path):
    m = _run(tmp_path, data="digits", method="umap", max_rows=500, max_components=4,
             detectors=["knn", "gmm"])
    assert m["data"] == "digits" and m["method"] == "umap" and m["n_rows"] == 500 and m["n_features"] == 64
    assert m["protocol"] == "novelty" and m["n_anomalies"] > 20
    assert m["trustworthiness"] > 0.85
    assert 1 <= m["gmm"]["n_components"] <= 4 and m["gmm"]["n_components_tried"] == [1, 2, 3, 4]
    assert m["gmm"]["n_components"] == m["gmm"]["n_components_tried"][int(np.argmin(m["gmm"]["bic"]))]
    assert m["detectors"]["knn"]["auroc"] > 0.8, m["detectors"]  # the unseen digit stands out
    assert 0 <= m["detectors"]["gmm"]["auroc"] <= 1
    # open set: a classifier on digits 0-8 recognises them and flags the unseen 9s
    assert m["openset"]["closed_set_accuracy"] > 0.85 and m["openset"]["auroc"] > 0.7, m["openset"]
    assert m["openset"]["n_unknown"] == m["n_anomalies"]
    assert m["settings"]["max_rows"] == 500 and m["settings"]["random_state"] == 0


@pytest.mark.slow
def test_table_with_pca(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (280, 5)), rng.normal(5, 1, (20, 5))])
    X[:, 0] *= 100  # different units: the notebook standardises tables
    y = np.r_[np.zeros(280, int), np.ones(20, int)]
    np.savez(tmp_path / "table.npz", X=X, y=y)
    m = _run(tmp_path, data=str(tmp_path / "table.npz"), method="pca", max_components=3,
             detectors=["mahalanobis"])
    assert m["kind"] == "table" and m["n_rows"] == 300 and m["n_anomalies"] == 20
    assert m["settings"]["standardize"] is True and m["openset"] is None
    assert m["detectors"]["mahalanobis"]["auroc"] > 0.95


@pytest.mark.slow
def test_image_folder_through_the_backbone(tmp_path):
    from workbench.datasets import make_sample

    root = make_sample(tmp_path / "sample")
    m = _run(tmp_path, data=str(root), method="pca", image_size=[96, 128], max_components=3,
             detectors=["knn"], gmm_dims=4)
    assert m["kind"] == "mvtec" and m["n_features"] == 112 + 320
    assert m["n_rows"] == 50 + 12 + 30 and m["n_anomalies"] == 30
    assert m["detectors"]["knn"]["auroc"] is not None
