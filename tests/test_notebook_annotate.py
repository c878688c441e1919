"""notebooks/annotate.ipynb runs under papermill, counts the store's masks into metrics.json and
exports them as COCO JSON and PNGs; running it writes nothing into the dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "annotate.ipynb"

pytestmark = [pytest.mark.notebook, pytest.mark.timeout(600),
              # pycocotools 2.0 decoding under numpy 2 (not ours)
              pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    from workbench.datasets import make_sample

    return make_sample(tmp_path_factory.mktemp("sample") / "sample")


def _files(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


def _run(tmp_path: Path, **parameters) -> tuple[dict, Path]:
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "out"
    parameters.setdefault("output_dir", str(out))
    parameters.setdefault("image_size", [60, 80])
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "executed.ipynb"), parameters=parameters,
                               cwd=str(REPO), kernel_name="python3", progress_bar=False, log_output=False)
    return json.loads((out / "metrics.json").read_text()), out


def test_parameters_cell_is_tagged_and_typed():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    lines = [ln for ln in code[0].source.splitlines() if ln.strip()]
    assert all(": " in ln.split("=")[0] and "  # " in ln for ln in lines), "each: `name: type = value  # meaning`"
    defaults = {ln.split(":")[0].strip(): ln.split("=", 1)[1].split("  #")[0].strip() for ln in lines}
    assert defaults["data_dir"] == '"data/sample"' and defaults["output_dir"] == '"reports/annotate"'
    assert defaults["store_dir"] == '""' and defaults["kind"] == '""'
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert all(not c.outputs for c in code), "commit the notebook without outputs"


def test_a_separate_store_one_kind(sample, tmp_path):
    from pycocotools.coco import COCO

    from workbench.annotations import AnnotationStore
    from workbench.datasets import read_mask

    data = tmp_path / "data"
    shutil.copytree(sample, data)
    store = AnnotationStore(tmp_path / "store")
    drawn = np.zeros((240, 320), bool)
    drawn[100:140, 50:90] = True
    store.save("scratch", "003", drawn, author="ana")  # what a person painted earlier
    before = _files(data)
    m, out = _run(tmp_path, data_dir=str(data), store_dir=str(store.root), kind="scratch")
    assert m["kind"] == "scratch" and m["n_images"] == 10 and m["store"] == str(store.root)
    assert m["n_masks"] == 1 and m["n_edited"] == 1 and m["n_versions"] == 1
    assert m["annotated_pixels"] == 1600 and m["per_kind"] == {"scratch": {"images": 10, "masks": 1,
                                                                           "annotated_pixels": 1600}}
    assert m["annotated_fraction_mean"] == pytest.approx(1600 / (240 * 320))
    assert m["detector"] == "padim" and m["image_auroc"] > 0.7
    assert sum(m["counts"][k] for k in ("hits", "misses", "false_alarms", "correct_rejections")) == 10
    coco = COCO(str(out / "annotations_coco.json"))
    (image,) = coco.loadImgs(coco.getImgIds())
    assert (image["kind"], image["stem"], image["file_name"]) == ("scratch", "003", "test/scratch/003.png")
    (ann,) = coco.loadAnns(coco.getAnnIds())
    assert np.array_equal(coco.annToMask(ann).astype(bool), drawn)
    assert np.array_equal(read_mask(out / "masks" / "ground_truth" / "scratch" / "003_mask.png"), drawn)
    assert _files(data) == before  # running the report does not touch the dataset
    assert len(store.history("scratch", "003")) == 1  # nor the store (nobody painted)


def test_default_store_is_the_dataset_itself(sample, tmp_path):
    from workbench.datasets import FolderDataset

    data = tmp_path / "data"
    shutil.copytree(sample, data)
    before = _files(data)
    m, out = _run(tmp_path, data_dir=str(data), detector="")
    assert m["store"] == str(data) and m["kind"] is None and m["detector"] is None and m["image_auroc"] is None
    ds = FolderDataset(data)
    assert m["n_images"] == len(ds.test) == 42
    assert m["n_masks"] == 30 and m["n_edited"] == 0 and m["n_versions"] == 0  # the sample's own masks
    assert set(m["per_kind"]) == {"scratch", "stain", "patch"}
    want = sum(int(s.mask().sum()) for s in ds.test if s.label == 1)
    assert m["annotated_pixels"] == want
    doc = json.loads((out / "annotations_coco.json").read_text())
    assert len(doc["images"]) == 30 and len(doc["annotations"]) == 30
    assert sorted(c["name"] for c in doc["categories"]) == ["patch", "scratch", "stain"]
    assert len(list((out / "masks" / "ground_truth").rglob("*_mask.png"))) == 30
    assert _files(data) == before
