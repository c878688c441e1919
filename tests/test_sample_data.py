"""Tests for the generated sample dataset (workbench.datasets.make_sample, `workbench data sample`)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench._io import file_sha256
from workbench.cli import main
from workbench.datasets import SAMPLE_MANIFEST, SAMPLE_SPEC, FolderDataset, make_sample, sample_is_complete
from workbench.datasets._sample import _render
from workbench.errors import WorkbenchError

SPEC = SAMPLE_SPEC


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return make_sample(tmp_path_factory.mktemp("gen") / "sample", seed=0)


def test_deterministic_bytes_across_runs(sample, tmp_path):
    again = make_sample(tmp_path / "again", seed=0)
    first, second = _hashes(sample), _hashes(again)
    n_images = SPEC.n_train + SPEC.n_test_good + SPEC.n_per_defect * len(SPEC.defect_kinds)
    n_masks = SPEC.n_per_defect * len(SPEC.defect_kinds)
    assert len(first) == n_images + n_masks + 2  # + README.txt + manifest
    assert first == second
    manifest = json.loads((sample / SAMPLE_MANIFEST).read_text())
    assert manifest["complete"] is True and manifest["seed"] == 0
    assert manifest["files"] == {k: v for k, v in first.items() if k != SAMPLE_MANIFEST}


def test_other_seed_differs():
    a, _, _ = _render(0, "train", "good", 0)
    b, _, _ = _render(1, "train", "good", 0)
    assert not np.array_equal(a, b)


def test_layout_loads_with_folder_dataset(sample):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean layout: no ignored files, no missing masks
        ds = FolderDataset(sample)
    summary = ds.summary()
    assert summary["train"] == {"good": SPEC.n_train}
    assert summary["test"] == {"good": SPEC.n_test_good, **{k: SPEC.n_per_defect for k in sorted(SPEC.defect_kinds)}}
    assert ds.kinds == ["good", "patch", "scratch", "stain"]
    assert summary["masks"] == {k: SPEC.n_per_defect for k in sorted(SPEC.defect_kinds)}
    assert summary["image_sizes"] == [{"height": 240, "width": 320, "count": len(ds.train) + len(ds.test)}]
    assert summary["channels"]["gray"] == len(ds.train) + len(ds.test)
    assert ds.has_masks


def test_masks_exact_and_sized(sample):
    ds = FolderDataset(sample)
    lo, hi = SPEC.area_range
    for s in ds.test:
        img, mask = s.image(), s.mask()
        assert img.shape == (240, 320) and mask.shape == (240, 320)
        if s.label == 0:
            assert not mask.any()
            continue
        raw = np.asarray(Image.open(s.mask_path))
        assert set(np.unique(raw)) == {0, 255}
        assert lo <= mask.mean() <= hi, (s.kind, s.stem, mask.mean())


def test_images_vary_and_are_not_copies(sample):
    ds = FolderDataset(sample)
    imgs = np.stack([s.image().astype(np.float64) for s in ds.train[:10]])
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert np.abs(imgs[i] - imgs[j]).mean() > 10  # different views, not shifted noise copies


@pytest.mark.parametrize("kind", SPEC.defect_kinds)
def test_defect_changes_exactly_its_mask(kind):
    for index in range(4):
        image, mask, clean = _render(0, "test", kind, index)
        diff = np.abs(image.astype(int) - clean)
        assert not diff[~mask].any()  # nothing outside the mask changed
        assert (diff[mask] > 0).mean() > 0.9  # (almost) every mask pixel changed
        assert diff[mask].mean() >= 15  # and visibly


def test_if_missing_keeps_complete_dataset(sample, capsys):
    before = {p: p.stat().st_mtime_ns for p in sample.rglob("*") if p.is_file()}
    assert sample_is_complete(sample)
    assert main(["data", "sample", "--out", str(sample), "--if-missing"]) == 0
    assert "already complete" in capsys.readouterr().out
    after = {p: p.stat().st_mtime_ns for p in sample.rglob("*") if p.is_file()}
    assert before == after


def test_regenerates_own_folder_in_place_and_keeps_user_files(tmp_path):
    out = make_sample(tmp_path / "s", seed=0)
    reference = _hashes(out)
    edited = out / "ground_truth" / "scratch" / "003_mask.png"
    edited.write_bytes(b"a mask the user fixed")
    (out / "test" / "good" / "005.png").unlink()
    user_file = out / "my_notes.md"
    user_file.write_text("mine")
    assert not sample_is_complete(out)
    assert main(["data", "sample", "--out", str(out), "--if-missing"]) == 0
    assert sample_is_complete(out)
    assert user_file.read_text() == "mine"
    assert edited.read_bytes() == b"a mask the user fixed"  # never overwritten
    rel = str(edited.relative_to(out))
    assert {k: v for k, v in _hashes(out).items() if k not in ("my_notes.md", rel)} == \
        {k: v for k, v in reference.items() if k != rel}
    # an edited file counts as present: --if-missing leaves the folder alone
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(["data", "sample", "--out", str(out), "--if-missing"]) == 0
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    # regenerating without --if-missing still keeps it, with a warning naming it
    with pytest.warns(UserWarning, match="003_mask.png"):
        make_sample(out, seed=0)
    assert edited.read_bytes() == b"a mask the user fixed"


def test_refuses_foreign_folder(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.png").write_bytes(b"user data")
    with pytest.raises(WorkbenchError, match=r"refusing.*mine.*precious.png.*sample_manifest.json"):
        make_sample(foreign)
    assert main(["data", "sample", "--out", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert "refusing" in err and "Traceback" not in err
    assert main(["data", "sample", "--out", str(foreign), "--if-missing"]) == 2
    assert sorted(p.name for p in foreign.iterdir()) == ["precious.png"]
    assert (foreign / "precious.png").read_bytes() == b"user data"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(WorkbenchError, match="is a file"):
        make_sample(a_file)


def test_writes_into_empty_folder_and_default_out(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".gitkeep").write_text("")
    assert make_sample(empty) == empty.absolute()
    assert sample_is_complete(empty) and (empty / ".gitkeep").exists()
    monkeypatch.chdir(tmp_path)
    assert main(["data", "sample", "--if-missing"]) == 0
    assert sample_is_complete(tmp_path / "data" / "sample")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
