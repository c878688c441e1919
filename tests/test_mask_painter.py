"""MaskPainter driven in Python through ``set_state`` -- the path every browser edit takes (the real
browser is tests/test_browser_annotation.py): strokes, fill, undo/redo, debounced saving, store
round trips, two painters on one image."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import traitlets
from PIL import Image

from widgets import MaskPainter
from widgets._mask_painter import pack_bits, unpack_bits
from workbench.annotations import AnnotationStore
from workbench.datasets import FolderDataset, read_mask
from workbench.errors import DataError

H, W = 48, 64


def _img(h=H, w=W) -> np.ndarray:
    return ((np.arange(h * w).reshape(h, w) * 7) % 251).astype(np.uint8)


class Page:
    """What the browser sends: one ``_edit`` per gesture, with the footprint as a memoryview."""

    def __init__(self, painter: MaskPainter, client: str = "page-1"):
        self.p, self.client, self.seq = painter, client, 0

    def send(self, **edit) -> dict:
        self.seq += 1
        self.p.set_state({"_edit": {"client": self.client, "seq": self.seq, **edit}})
        return self.p._patch

    def stroke(self, footprint: np.ndarray, value: int = 1) -> dict:
        rows, cols = np.flatnonzero(footprint.any(1)), np.flatnonzero(footprint.any(0))
        y, x = int(rows[0]), int(cols[0])
        box = footprint[y:rows[-1] + 1, x:cols[-1] + 1]
        return self.send(op="stroke", value=value, x=x, y=y, w=box.shape[1], h=box.shape[0],
                         bits=memoryview(pack_bits(box)))

    def fill(self, row: int, col: int, value: int = 1) -> dict:
        return self.send(op="fill", row=row, col=col, value=value)

    def undo(self) -> dict:
        return self.send(op="undo")

    def redo(self) -> dict:
        return self.send(op="redo")


def _rect(y0, y1, x0, x1, shape=(H, W)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def _apply_patch(page_mask: np.ndarray, patch: dict) -> None:
    if patch["w"]:
        y, x, h, w = patch["y"], patch["x"], patch["h"], patch["w"]
        page_mask[y:y + h, x:x + w] = unpack_bits(patch["bits"], (h, w))


# -- construction -----------------------------------------------------------------------------
def test_images_travel_once_as_png_and_the_mask_as_packed_bits(tmp_path):
    gray = _img()
    rgb = np.stack([gray, 255 - gray, gray // 2], axis=2)
    for image in (gray, rgb):
        p = MaskPainter(image)
        with Image.open(io.BytesIO(p._image_png)) as im:
            assert np.array_equal(np.asarray(im), image)
        assert (p._height, p._width) == (H, W) and p.mask.shape == (H, W) and not p.mask.any()
    path = tmp_path / "img.png"
    Image.fromarray(gray).save(path)
    p = MaskPainter(path, mask=_rect(2, 5, 3, 9))
    assert p.shape == (H, W) and np.array_equal(p.image, gray)
    state = p.get_state()
    assert state["_mask_bits"] == pack_bits(_rect(2, 5, 3, 9))
    assert p.mask is not p.mask and p.mask.dtype == bool  # a copy each time
    assert p.save_status == "not saved: no store"


def test_clear_errors_for_inputs():
    with pytest.raises(DataError, match=r"image has dtype float64; expected uint8"):
        MaskPainter(np.zeros((4, 4)))
    with pytest.raises(DataError, match=r"image has shape \(4, 4, 2\)"):
        MaskPainter(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(DataError, match=r"mask has shape \(3, 3\) but the image is \(48, 64\)"):
        MaskPainter(_img(), mask=np.zeros((3, 3), bool))
    with pytest.raises(DataError, match=r"overlay has shape \(5, 5\) but the image is \(48, 64\)"):
        MaskPainter(_img(), overlay=np.zeros((5, 5)))
    with pytest.raises(ValueError, match="a store needs a key"):
        MaskPainter(_img(), store=AnnotationStore("/nonexistent"))
    p = MaskPainter(_img())
    with pytest.raises(traitlets.TraitError):
        p.mode = "lasso"
    with pytest.raises(traitlets.TraitError):
        p.brush_size = 0
    with pytest.raises(ValueError, match="unknown edit op 'smudge'"):
        Page(p).send(op="smudge")
    with pytest.raises(ValueError, match=r"stroke box x=60, y=0, w=10, h=1 is outside the 64x48 image"):
        Page(p).send(op="stroke", value=1, x=60, y=0, w=10, h=1, bits=b"\xff\xc0")
    with pytest.raises(ValueError, match=r"packed mask region 1x10 needs 2 bytes; got 1"):
        Page(p).send(op="stroke", value=1, x=0, y=0, w=10, h=1, bits=b"\xff")


def test_overlay_is_an_rgba_png_transparent_where_the_map_is_low():
    amap = np.tile(np.linspace(0, 1, W, dtype=np.float32), (H, 1))
    p = MaskPainter(_img(), overlay=amap, overlay_range=(0.2, 0.8))
    with Image.open(io.BytesIO(p._overlay_png)) as im:
        rgba = np.asarray(im)
    assert rgba.shape == (H, W, 4)
    alpha = rgba[0, :, 3]
    assert alpha[0] == 0 and alpha[-1] == 255 and np.all(np.diff(alpha.astype(int)) >= 0)
    assert p._overlay_legend["vmin"] == 0.2 and p._overlay_legend["vmax"] == 0.8
    assert len(p._overlay_legend["colors"]) == 16
    p.set_state({"overlay_opacity": 0.25})
    assert p.overlay_opacity == 0.25


# -- strokes, fill, undo/redo -----------------------------------------------------------------
def test_paint_and_erase_strokes_from_the_page():
    p = MaskPainter(_img())
    page = Page(p)
    first = _rect(10, 20, 5, 40)
    patch = page.stroke(first, 1)
    assert np.array_equal(p.mask, first) and p.revision == 1
    assert patch["acks"] == {"page-1": 1}
    assert (patch["x"], patch["y"], patch["w"], patch["h"]) == (5, 10, 35, 10)  # only the changed box
    assert unpack_bits(patch["bits"], (10, 35)).all()
    # erasing a part; bytes work as well as the memoryview the browser sends
    page.seq += 1
    cut = _rect(12, 30, 20, 25)
    rows, cols = slice(12, 30), slice(20, 25)
    p.set_state({"_edit": {"client": "page-1", "seq": page.seq, "op": "stroke", "value": 0, "x": 20, "y": 12,
                           "w": 5, "h": 18, "bits": pack_bits(cut[rows, cols])}})
    assert np.array_equal(p.mask, first & ~cut) and p.revision == 2
    # painting where it is painted changes nothing: no revision, an acknowledgement only
    patch = page.stroke(_rect(11, 12, 6, 9), 1)
    assert p.revision == 2 and patch["w"] == 0 and patch["acks"] == {"page-1": 3}


def test_fill_fills_the_connected_region_of_equal_value():
    p = MaskPainter(_img())
    page = Page(p)
    ring = np.zeros((H, W), bool)
    rr, cc = np.mgrid[0:H, 0:W]
    # a closed outline drawn with diagonal (8-connected) steps: a 4-connected fill stays inside
    ring |= (np.abs(rr - 24) + np.abs(cc - 30)) == 12
    page.stroke(ring)
    page.fill(24, 30)  # inside the diamond
    inside = (np.abs(rr - 24) + np.abs(cc - 30)) <= 12
    assert np.array_equal(p.mask, inside)
    assert p.revision == 2
    page.fill(24, 30, 1)  # already masked: nothing happens
    assert p.revision == 2
    page.fill(2, 2, 1)  # the outside: everything becomes masked
    assert p.mask.all()
    page.undo()
    page.fill(24, 30, 0)  # fill with "unmasked" removes the whole connected diamond
    assert not p.mask.any()
    page.stroke(_rect(0, 5, 0, 5))
    page.stroke(_rect(40, 45, 50, 60))
    page.fill(2, 2, 0)  # removes one component only
    assert np.array_equal(p.mask, _rect(40, 45, 50, 60))


def test_undo_and_redo_are_exact_and_a_new_edit_clears_redo():
    p = MaskPainter(_img(), mask=_rect(0, 3, 0, 3))
    page = Page(p)
    states = [p.mask]
    for edit in [(_rect(5, 15, 5, 15), 1), (_rect(8, 30, 10, 12), 0), (_rect(20, 40, 30, 60), 1)]:
        page.stroke(*edit)
        states.append(p.mask)
    page.fill(47, 0)
    states.append(p.mask)
    assert (p._undo_depth, p._redo_depth) == (4, 0)
    for want in reversed(states[:-1]):
        patch = page.undo()
        assert np.array_equal(p.mask, want)
    assert not p.can_undo and (p._undo_depth, p._redo_depth) == (0, 4)
    before = p.revision
    assert page.undo()["w"] == 0 and p.revision == before  # nothing left to undo
    for want in states[1:3]:
        page.redo()
        assert np.array_equal(p.mask, want)
    page.stroke(_rect(44, 48, 0, 4))  # a new edit: the rest of the redo stack is gone
    assert not p.can_redo and p._redo_depth == 0
    # Python-side API: set_mask and clear are undoable too
    p.clear()
    assert not p.mask.any()
    assert p.undo() and p.mask[44:48, 0:4].all()
    assert p.redo() and not p.mask.any()
    assert not p.redo()
    p.mask = _rect(1, 2, 1, 2)
    assert np.array_equal(p.mask, _rect(1, 2, 1, 2))


def test_patches_let_the_page_converge_with_the_kernel():
    """A page that applies every patch and re-applies its unacknowledged strokes ends with the
    kernel's mask (the JS does exactly this)."""
    p = MaskPainter(_img())
    page = Page(p)
    shown = np.zeros((H, W), bool)
    page.stroke(_rect(5, 10, 5, 10))
    _apply_patch(shown, p._patch)
    page.stroke(_rect(8, 20, 8, 20))
    _apply_patch(shown, p._patch)
    page.undo()
    _apply_patch(shown, p._patch)
    assert np.array_equal(shown, p.mask)
    p.set_mask(_rect(30, 40, 30, 40))  # a change made in Python reaches the page as a patch too
    _apply_patch(shown, p._patch)
    assert np.array_equal(shown, p.mask)
    page.send(op="sync")  # a newly rendered view asks for everything
    full = p._patch
    assert (full["x"], full["y"], full["w"], full["h"]) == (0, 0, W, H)
    assert np.array_equal(unpack_bits(full["bits"], (H, W)), p.mask)
    assert p.get_state("_mask_bits")["_mask_bits"] == pack_bits(p.mask)  # fresh state for a reloaded page


def test_large_image_edits_stay_compact():
    big = np.zeros((2048, 2048), np.uint8)
    p = MaskPainter(big)
    page = Page(p)
    foot = np.zeros((2048, 2048), bool)
    rr, cc = np.mgrid[0:2048, 0:2048]
    foot |= np.abs(rr - cc) < 20  # a diagonal stroke across the image
    page.stroke(foot)
    assert np.array_equal(p.mask, foot)
    assert len(p._patch["bits"]) == 2048 * 2048 // 8  # packed bits, not bytes per pixel
    page.fill(2000, 10)
    assert p.mask[2000, 10] and not p.mask[10, 2000]
    page.undo()
    assert np.array_equal(p.mask, foot)


# -- the store --------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path) -> AnnotationStore:
    return AnnotationStore(tmp_path / "store")


def test_changes_are_saved_within_the_debounce_delay(store):
    p = MaskPainter(_img(), store=store, key=("scratch", "007"), save_delay=0.3, author="ana")
    assert p.save_status == "no mask saved yet" and not p.dirty
    page = Page(p)
    t0 = time.monotonic()
    for i in range(4):  # a burst of strokes is saved together
        page.stroke(_rect(2 + 5 * i, 5 + 5 * i, 2, 30))
    assert p.dirty and p.save_status == "unsaved changes" and store.load("scratch", "007") is None
    assert p.wait_saved(timeout=3)
    elapsed = time.monotonic() - t0
    assert 0.25 < elapsed < 1.0, elapsed
    assert np.array_equal(store.load("scratch", "007"), p.mask)
    hist = store.history("scratch", "007")
    assert len(hist) == 1 and hist[0]["author"] == "ana"
    assert p.save_status.startswith("saved ") and "ground_truth/scratch/007_mask.png (version 1)" in p.save_status
    page.undo()
    page.redo()  # back to the saved mask: saving again records no new version
    assert p.wait_saved(timeout=3)
    assert len(store.history("scratch", "007")) == 1
    page.undo()
    assert p.wait_saved(timeout=3) and len(store.history("scratch", "007")) == 2


def test_the_stored_mask_is_loaded_on_open_and_close_saves_pending_changes(store):
    store.save("stain", "001", _rect(3, 9, 3, 9))
    p = MaskPainter(_img(), store=store, key=("stain", "001"), save_delay=30)
    assert np.array_equal(p.mask, _rect(3, 9, 3, 9))
    assert p.save_status == "loaded from ground_truth/stain/001_mask.png"
    Page(p).stroke(_rect(20, 30, 20, 30))
    assert store.load("stain", "001").sum() == 36  # the 30 s debounce has not fired
    p.close()
    assert np.array_equal(store.load("stain", "001"), _rect(3, 9, 3, 9) | _rect(20, 30, 20, 30))
    # an explicit mask wins over the stored one
    q = MaskPainter(_img(), mask=np.zeros((H, W), bool), store=store, key=("stain", "001"))
    assert not q.mask.any()
    q.close()


def test_pending_changes_are_saved_when_the_interpreter_exits(store):
    from widgets._mask_painter import _flush_all

    p = MaskPainter(_img(), store=store, key=("scratch", "002"), save_delay=60)
    Page(p).stroke(_rect(1, 4, 1, 4))
    _flush_all()  # what atexit runs when the kernel shuts down
    assert np.array_equal(store.load("scratch", "002"), _rect(1, 4, 1, 4))
    p.close()


def test_a_failed_save_is_reported_and_retried(store, monkeypatch):
    p = MaskPainter(_img(), store=store, key=("scratch", "003"), save_delay=0.05)
    calls = []
    real = store.save

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "save", flaky)
    Page(p).stroke(_rect(1, 4, 1, 4))
    deadline = time.monotonic() + 3
    while not p.save_status.startswith("save failed") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert p.save_status == "save failed: [Errno 28] No space left on device" and p.dirty
    Page(p, "page-2").stroke(_rect(10, 12, 10, 12))
    assert p.wait_saved(timeout=3)
    assert np.array_equal(store.load("scratch", "003"), _rect(1, 4, 1, 4) | _rect(10, 12, 10, 12))
    p.close()


def test_two_painters_on_one_image_last_writer_wins_and_both_are_kept(store):
    a = MaskPainter(_img(), store=store, key=("scratch", "004"), author="a")
    b = MaskPainter(_img(), store=store, key=("scratch", "004"), author="b")
    Page(a).stroke(_rect(0, 10, 0, 10))
    Page(b).stroke(_rect(30, 40, 30, 40))
    a.save()
    b.save()
    hist = store.history("scratch", "004")
    assert [h["author"] for h in hist] == ["a", "b"]
    assert np.array_equal(store.load("scratch", "004"), _rect(30, 40, 30, 40))
    assert np.array_equal(store.load_version("scratch", "004", 1), _rect(0, 10, 0, 10))
    a.close()
    b.close()


def test_a_dataset_sample_gives_image_key_and_ground_truth(tmp_path):
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    for rel in ["train/good/000.png", "test/good/000.png", "test/scratch/005.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (H, W), dtype=np.uint8)).save(root / rel)
    gt = _rect(10, 20, 10, 20)
    (root / "ground_truth/scratch").mkdir(parents=True)
    Image.fromarray(gt.astype(np.uint8) * 255).save(root / "ground_truth/scratch/005_mask.png")
    ds = FolderDataset(root)
    sample = next(s for s in ds.test if s.kind == "scratch")
    elsewhere = AnnotationStore(tmp_path / "annotations")  # a store apart from the dataset
    p = MaskPainter(sample, store=elsewhere)
    assert p.key == ("scratch", "005") and p._title == "scratch/005"
    assert np.array_equal(p.mask, gt)  # nothing stored yet: starts from the ground truth
    Page(p).stroke(_rect(30, 35, 30, 35))
    p.close()
    assert np.array_equal(elsewhere.load("scratch", "005"), gt | _rect(30, 35, 30, 35))
    assert np.array_equal(read_mask(root / "ground_truth/scratch/005_mask.png"), gt)  # dataset untouched
    with pytest.raises(ValueError, match="is a 'train' image"):
        MaskPainter(ds.train[0], store=elsewhere)
