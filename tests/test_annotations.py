"""AnnotationStore: MVTec layout, history that never loses a version, atomic and concurrent saves,
PNG and COCO exports."""

from __future__ import annotations

import json
import multiprocessing
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.annotations import HISTORY_DIR, AnnotationLockError, AnnotationStore, annotation_key
from workbench.datasets import FolderDataset, read_mask
from workbench.errors import DataError

H, W = 24, 32

# pycocotools 2.0 decoding under numpy 2 (not ours)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _mask(seed: int, shape=(H, W)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < 0.3


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A tiny MVTec-layout folder: train/good, test/good, test/scratch (two images with masks)."""
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    for rel in ["train/good/000.png", "train/good/001.png", "test/good/000.png", "test/scratch/000.png",
                "test/scratch/001.png"]:
        _png(root / rel, rng.integers(0, 255, (H, W), dtype=np.uint8))
    for stem, seed in [("000", 10), ("001", 11)]:
        _png(root / "ground_truth" / "scratch" / f"{stem}_mask.png", np.where(_mask(seed), 255, 0).astype(np.uint8))
    return root


# -- layout and round trips -----------------------------------------------------------------
def test_save_load_round_trip_in_mvtec_layout(tmp_path):
    store = AnnotationStore(tmp_path / "store")
    assert store.load("stain", "007") is None and store.keys() == [] and store.history("stain", "007") == []
    assert not (tmp_path / "store").exists()  # nothing is written before the first save
    mask = _mask(1)
    entry = store.save("stain", "007", mask, author="ana")
    path = tmp_path / "store" / "ground_truth" / "stain" / "007_mask.png"
    assert store.mask_path("stain", "007") == path and path.is_file()
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (W, H)
        assert set(np.unique(np.asarray(im)).tolist()) == {0, 255}
    got = store.load("stain", "007")
    assert got.dtype == bool and np.array_equal(got, mask)
    assert entry["version"] == 1 and entry["author"] == "ana" and entry["action"] == "save"
    assert entry["area"] == int(mask.sum()) and entry["shape"] == [H, W]
    assert Path(entry["path"]).parent == path.parent / HISTORY_DIR / "007"
    assert np.array_equal(read_mask(entry["path"]), mask)
    assert store.keys() == [("stain", "007")] and ("stain", "007") in store and len(store) == 1
    # numbers are accepted when they are clearly binary
    store.save("stain", "008", mask.astype(np.uint8) * 255)
    assert np.array_equal(store.load("stain", "008"), mask)


def test_every_version_is_kept_and_identical_saves_record_nothing(tmp_path):
    store = AnnotationStore(tmp_path)
    masks = [_mask(s) for s in range(3)]
    for i, m in enumerate(masks):
        store.save("scratch", "001", m, author=f"user{i}")
    again = store.save("scratch", "001", masks[-1], author="someone else")
    hist = store.history("scratch", "001")
    assert [h["version"] for h in hist] == [1, 2, 3] and again["version"] == 3
    assert [h["author"] for h in hist] == ["user0", "user1", "user2"]
    times = [h["time"] for h in hist]
    assert times == sorted(times) and all(t.endswith("Z") for t in times)
    for v, m in enumerate(masks, start=1):
        assert np.array_equal(store.load_version("scratch", "001", v), m)
    with pytest.raises(KeyError, match="no version 9; versions: \\[1, 2, 3\\]"):
        store.load_version("scratch", "001", 9)
    sidecar = json.loads((tmp_path / "ground_truth/scratch/.history/001/history.json").read_text())
    assert sidecar["kind"] == "scratch" and sidecar["stem"] == "001" and len(sidecar["versions"]) == 3


def test_saving_over_original_ground_truth_keeps_it(dataset):
    original = read_mask(dataset / "ground_truth/scratch/000_mask.png")
    store = AnnotationStore(dataset)
    assert np.array_equal(store.load("scratch", "000"), original)
    assert [h["action"] for h in store.history("scratch", "000")] == ["unrecorded"]
    new = _mask(99)
    store.save("scratch", "000", new, author="ana")
    hist = store.history("scratch", "000")
    assert [(h["version"], h["action"], h["author"]) for h in hist] == [(1, "found", None), (2, "save", "ana")]
    assert np.array_equal(store.load_version("scratch", "000", 1), original)
    assert np.array_equal(store.load("scratch", "000"), new)
    # the dataset still reads as a plain MVTec folder: the .history folders are invisible to it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = FolderDataset(dataset)
    sample = next(s for s in ds.test if s.kind == "scratch" and s.stem == "000")
    assert np.array_equal(sample.mask(), new)


def test_a_mask_in_another_format_is_archived_and_replaced_by_a_png(dataset):
    gt = dataset / "ground_truth" / "scratch"
    bmp_mask = np.where(_mask(5), 255, 0).astype(np.uint8)
    (gt / "001_mask.png").unlink()
    _png(gt / "001_mask.bmp", bmp_mask)
    store = AnnotationStore(dataset)
    assert np.array_equal(store.load("scratch", "001"), bmp_mask > 0)
    store.save("scratch", "001", _mask(6))
    assert sorted(p.name for p in gt.glob("001_mask.*")) == ["001_mask.png"]
    first = store.history("scratch", "001")[0]
    assert first["action"] == "found" and first["source"] == "001_mask.bmp" and first["file"].endswith(".bmp")
    assert np.array_equal(store.load_version("scratch", "001", 1), bmp_mask > 0)
    FolderDataset(dataset)  # one mask per image again: the dataset loads


def test_a_file_changed_outside_the_store_is_reported_and_then_archived(tmp_path):
    store = AnnotationStore(tmp_path)
    store.save("patch", "003", _mask(1))
    outside = np.where(_mask(2), 255, 0).astype(np.uint8)
    _png(store.mask_path("patch", "003"), outside)  # e.g. `workbench data sample` regenerating a file
    with pytest.warns(UserWarning, match="changed outside the annotation store after version 1"):
        got = store.load("patch", "003")
    assert np.array_equal(got, outside > 0)
    assert store.history("patch", "003")[-1]["action"] == "unrecorded"
    store.save("patch", "003", _mask(3))
    assert [h["action"] for h in store.history("patch", "003")] == ["save", "found", "save"]
    assert np.array_equal(store.load_version("patch", "003", 2), outside > 0)


# -- errors ---------------------------------------------------------------------------------
def test_clear_errors_for_bad_masks_and_keys(dataset):
    store = AnnotationStore(dataset)
    with pytest.raises(DataError, match=r"mask for scratch/000 is 10x10 \(HxW\) but its image .*000.png is 24x32"):
        store.save("scratch", "000", np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match=r"mask for scratch/000 has values \[0, 1, 2\]"):
        store.save("scratch", "000", np.arange(H * W).reshape(H, W) % 3)
    with pytest.raises(ValueError, match=r"must be a 2-D \(H, W\) array; got shape \(24, 32, 3\)"):
        store.save("scratch", "000", np.zeros((H, W, 3), bool))
    for kind, stem in [("../x", "000"), ("scratch", ".hidden"), ("", "000"), ("scratch", "a/b")]:
        with pytest.raises(ValueError, match="annotation (kind|stem)"):
            store.save(kind, stem, np.zeros((H, W), bool))
    ds = FolderDataset(dataset)
    assert annotation_key(ds.test[-1]) == ("scratch", "001")
    with pytest.raises(ValueError, match=r"is a 'train' image; annotation keys name test images"):
        annotation_key(ds.train[0])
    assert read_mask(dataset / "ground_truth/scratch/000_mask.png").shape == (H, W)  # untouched
    bad = dataset / "ground_truth/scratch/.history/000"
    bad.mkdir(parents=True)
    (bad / "history.json").write_text("{not json")
    with pytest.raises(DataError, match=r"history.json is not valid JSON"):
        store.history("scratch", "000")
    with pytest.warns(UserWarning, match=r"history.json is not valid JSON"):
        assert store.load("scratch", "000").shape == (H, W)  # the mask itself still loads


def test_a_failed_write_leaves_the_previous_mask_and_no_temporary_files(tmp_path, monkeypatch):
    import workbench.annotations._store as store_module

    store = AnnotationStore(tmp_path)
    first = _mask(1)
    store.save("scratch", "000", first)
    real = store_module.atomic_write_bytes

    def failing(path, data):  # the disk fills up while the current mask is being replaced
        if Path(path).name == "000_mask.png":
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(store_module, "atomic_write_bytes", failing)
    with pytest.raises(OSError, match="No space left"):
        store.save("scratch", "000", _mask(2))
    monkeypatch.setattr(store_module, "atomic_write_bytes", real)
    assert np.array_equal(store.load("scratch", "000"), first)
    assert not [p for p in tmp_path.rglob("*.tmp")]
    store.save("scratch", "000", _mask(3))
    hist = store.history("scratch", "000")
    assert np.array_equal(store.load("scratch", "000"), _mask(3))
    assert hist[-1]["action"] == "save" and np.array_equal(store.load_version("scratch", "000", hist[-1]["version"]),
                                                            _mask(3))


def test_lock_timeout_names_the_lock_file(tmp_path):
    from workbench.annotations._store import _file_lock

    store = AnnotationStore(tmp_path, lock_timeout=0.2)
    lock = store.history_dir("scratch", "000") / ".lock"
    with _file_lock(lock, 1.0):  # another writer (own open file description: flock excludes it)
        t0 = time.monotonic()
        with pytest.raises(AnnotationLockError, match=r"could not lock .*scratch/.history/000/.lock within 0 s"):
            store.save("scratch", "000", _mask(1))
        assert 0.15 < time.monotonic() - t0 < 5
    assert store.load("scratch", "000") is None
    store.save("scratch", "000", _mask(1))  # released: works


# -- concurrency ----------------------------------------------------------------------------
def _pattern(writer: int, i: int) -> np.ndarray:
    """A mask that identifies who saved it and when: distinct for every (writer, i)."""
    m = np.zeros((H, W), bool)
    m[writer, :] = True
    m[10 + (i // W), i % W] = True
    return m


def _writer(root: str, writer: int, n: int, barrier) -> None:
    store = AnnotationStore(root)
    barrier.wait()
    for i in range(n):
        store.save("scratch", "000", _pattern(writer, i), author=f"w{writer}")


def _check_history(store: AnnotationStore, writers: int, n: int) -> None:
    hist = store.history("scratch", "000")
    assert len(hist) == writers * n, [(h["version"], h["author"]) for h in hist]
    assert [h["version"] for h in hist] == list(range(1, writers * n + 1))
    expected = {(w, i): _pattern(w, i) for w in range(writers) for i in range(n)}
    seen = set()
    for h in hist:
        mask = read_mask(h["path"])
        w = int(np.flatnonzero(mask[:10].all(axis=1))[0])
        hit = [i for i in range(n) if np.array_equal(mask, expected[(w, i)])]
        assert len(hit) == 1 and h["author"] == f"w{w}"
        seen.add((w, hit[0]))
    assert seen == set(expected)  # every version of every writer is there, none lost or mangled
    # each writer's versions are in its own order, and the current mask is the last version
    for w in range(writers):
        mine = [h["version"] for h in hist if h["author"] == f"w{w}"]
        assert mine == sorted(mine)
    assert np.array_equal(store.load("scratch", "000"), read_mask(hist[-1]["path"]))
    json.loads((store.history_dir("scratch", "000") / "history.json").read_text())


def test_concurrent_saves_from_processes_lose_no_version(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    writers, n = 4, 6
    barrier = ctx.Barrier(writers)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, n, barrier)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    _check_history(AnnotationStore(tmp_path), writers, n)
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_concurrent_saves_from_threads_lose_no_version(tmp_path):
    import threading

    writers, n = 3, 8
    barrier = threading.Barrier(writers)
    threads = [threading.Thread(target=_writer, args=(str(tmp_path), w, n, barrier)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    _check_history(AnnotationStore(tmp_path), writers, n)


# -- exports --------------------------------------------------------------------------------
def test_export_coco_round_trips_through_pycocotools(dataset, tmp_path):
    from pycocotools.coco import COCO

    store = AnnotationStore(dataset)
    edited = np.zeros((H, W), bool)
    edited[2:9, 5:21] = True
    edited[15:20, 1:4] = True  # two parts: one annotation with both
    store.save("scratch", "001", edited)
    store.save("stain", "004", np.zeros((H, W), bool))  # annotated as defect-free; no image under root
    path = store.export_coco(tmp_path / "out" / "coco.json")
    doc = json.loads(path.read_text())
    assert [c["name"] for c in doc["categories"]] == ["scratch", "stain"]
    files = {(im["kind"], im["stem"]): im["file_name"] for im in doc["images"]}
    assert files == {("scratch", "000"): "test/scratch/000.png", ("scratch", "001"): "test/scratch/001.png",
                     ("stain", "004"): "test/stain/004.png"}
    assert len(doc["annotations"]) == 2  # the empty mask has an image entry but no annotation
    coco = COCO(str(path))
    for im in doc["images"]:
        want = store.load(im["kind"], im["stem"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[im["id"]]))
        got = np.zeros((im["height"], im["width"]), bool)
        for a in anns:
            got |= coco.annToMask(a).astype(bool)
            assert a["area"] == int(want.sum()) and a["iscrowd"] == 0
            assert coco.loadCats(a["category_id"])[0]["name"] == im["kind"]
            assert isinstance(a["segmentation"]["counts"], str)
        assert np.array_equal(got, want), im
    bbox = next(a for a in doc["annotations"] if a["image_id"] == next(
        im["id"] for im in doc["images"] if im["stem"] == "001"))["bbox"]
    assert bbox == [1.0, 2.0, 20.0, 18.0]  # x, y, width, height over both parts


def test_export_png_writes_an_mvtec_ground_truth_folder(dataset, tmp_path):
    store = AnnotationStore(dataset)
    store.save("scratch", "001", _mask(42))
    out = store.export_png(tmp_path / "export")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["ground_truth/scratch/000_mask.png", "ground_truth/scratch/001_mask.png"]
    for kind, stem in store.keys():
        exported = out / "ground_truth" / kind / f"{stem}_mask.png"
        with Image.open(exported) as im:
            assert im.mode == "L" and set(np.unique(np.asarray(im)).tolist()) <= {0, 255}
        assert np.array_equal(read_mask(exported), store.load(kind, stem))


def test_keys_ignore_hidden_folders_and_other_files(tmp_path):
    store = AnnotationStore(tmp_path)
    store.save("scratch", "000", _mask(1))
    (tmp_path / "ground_truth" / "scratch" / "notes.txt").write_text("x")
    _png(tmp_path / "ground_truth" / "scratch" / "picture.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "ground_truth" / ".trash" / "001_mask.png", np.zeros((4, 4), np.uint8))
    assert store.keys() == [("scratch", "000")]
