"""ClickPrompter driven in Python through ``set_state`` -- the path every browser click takes (the
real browser is tests/test_browser_clicks.py): clicks and their validation, prediction in a
background thread with stale results discarded, undo/clear, accepting into an AnnotationStore."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from widgets import ClickPrompter
from widgets._click_prompter import SEGMENTING, unpack_bits
from workbench.annotations import AnnotationStore
from workbench.datasets import read_mask
from workbench.errors import DataError

H, W = 48, 80  # not square on purpose


def _img(h=H, w=W) -> np.ndarray:
    return ((np.arange(h * w).reshape(h, w) * 7) % 251).astype(np.uint8)


def disks(shape, clicks, radius=6) -> np.ndarray:
    """Union of disks around positive clicks minus disks around negative clicks."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    out = np.zeros(shape, bool)
    for label in (1, -1):
        for r, c, lab in clicks:
            if lab == label:
                d = (yy - r) ** 2 + (xx - c) ** 2 <= radius ** 2
                out = out | d if label == 1 else out & ~d
    return out


class DiskSegmenter:
    """A click segmenter for tests: disks around positive clicks, minus disks around negative ones.
    Records every call; with ``gate`` set, each call waits until the test releases it."""

    def __init__(self, radius=6, gate: bool = False):
        self.radius = radius
        self.calls: list[list[tuple[int, int, int]]] = []
        self.started = threading.Semaphore(0)
        self.release = threading.Semaphore(0) if gate else None

    def predict(self, image, clicks):
        self.calls.append(list(clicks))
        self.started.release()
        if self.release is not None:
            assert self.release.acquire(timeout=10), "the test never released the segmenter"
        return disks(image.shape[:2], clicks, self.radius)


class Page:
    """What the browser sends: one ``_edit`` per gesture."""

    def __init__(self, widget: ClickPrompter, client: str = "page-1"):
        self.w, self.client, self.seq = widget, client, 0

    def send(self, **edit) -> None:
        self.seq += 1
        self.w.set_state({"_edit": {"client": self.client, "seq": self.seq, **edit}})

    def click(self, row, col, label=1) -> None:
        self.send(op="add", row=row, col=col, label=label)


def _page_mask(w: ClickPrompter) -> np.ndarray:
    """The mask as the page receives it (packed bits)."""
    return unpack_bits(w._mask_bits, (w._height, w._width))


# -- construction -----------------------------------------------------------------------------
def test_image_travels_once_as_png_and_the_empty_mask_as_packed_bits(tmp_path):
    gray = _img()
    rgb = np.stack([gray, 255 - gray, gray // 2], axis=2)
    for image in (gray, rgb):
        w = ClickPrompter(image, DiskSegmenter())
        with Image.open(io.BytesIO(w._image_png)) as im:
            assert np.array_equal(np.asarray(im), image)
        assert (w._height, w._width) == (H, W) and w.shape == (H, W)
        assert w.mask.shape == (H, W) and w.mask.dtype == bool and not w.mask.any()
        assert len(w._mask_bits) == (H * W + 7) // 8 and w.clicks == [] and not w.busy
    path = tmp_path / "img.png"
    Image.fromarray(gray).save(path)
    w = ClickPrompter(path, DiskSegmenter())
    assert np.array_equal(w.image, gray)
    assert "clicks" not in w.get_state() and isinstance(w.get_state()["_mask_bits"], (bytes, memoryview))


def test_bad_input_is_refused_with_clear_errors():
    seg = DiskSegmenter()
    with pytest.raises(DataError, match=r"shape \(4, 5, 2\)"):
        ClickPrompter(np.zeros((4, 5, 2), np.uint8), seg)
    with pytest.raises(DataError, match="dtype float64.*uint8"):
        ClickPrompter(np.zeros((4, 5)), seg)
    with pytest.raises(TypeError, match="predict"):
        ClickPrompter(_img(), object())
    with pytest.raises(ValueError, match="needs a key"):
        ClickPrompter(_img(), seg, store=AnnotationStore("/nonexistent-store"))
    with pytest.raises(ValueError, match="outside the image"):
        ClickPrompter(_img(), seg, clicks=[(H, 0, 1)])
    w = ClickPrompter(_img(), seg)
    with pytest.raises(ValueError, match=r"row=3, col=80 is outside the image \(48 rows x 80 columns"):
        w.add_click(3, W, 1)
    with pytest.raises(ValueError, match="label must be"):
        w.add_click(3, 4, 0)
    with pytest.raises(ValueError, match="integer"):
        w.add_click(3.5, 4, 1)
    with pytest.raises(ValueError, match="unknown edit op"):
        w.set_state({"_edit": {"op": "paint"}})
    assert w.clicks == [] and seg.calls == []


# -- clicks from the page ---------------------------------------------------------------------
def test_positive_and_negative_clicks_predict_and_publish_the_mask():
    seg = DiskSegmenter(radius=8)
    w = ClickPrompter(_img(), seg)
    page = Page(w)
    page.click(20, 30, 1)
    assert w.wait(10)
    assert w.clicks == [(20, 30, 1)] and w._clicks == [[20, 30, 1]] and w._acks == {"page-1": 1}
    first = w.mask
    assert np.array_equal(first, disks((H, W), [(20, 30, 1)], 8)) and first.sum() > 150
    assert np.array_equal(_page_mask(w), first) and w._mask_clicks == [[20, 30, 1]]
    assert w.status == f"1 click · {int(first.sum())} px in the mask" and not w._busy

    page.click(20, 36, -1)  # shift-click / right click on the page
    assert w.wait(10)
    second = w.mask
    assert w.clicks == [(20, 30, 1), (20, 36, -1)] and seg.calls[-1] == w.clicks
    assert np.array_equal(second, disks((H, W), w.clicks, 8))
    assert second.sum() < first.sum() and not second[20, 36] and second[20, 26]
    assert np.array_equal(_page_mask(w), second) and w.mask_clicks == w.clicks

    page.send(op="undo")
    assert w.wait(10) and w.clicks == [(20, 30, 1)] and np.array_equal(w.mask, first)
    page.send(op="clear")
    assert w.wait(10) and w.clicks == [] and not w.mask.any() and not _page_mask(w).any()
    assert w.status == "no clicks · empty mask"
    n = len(seg.calls)
    page.send(op="undo")  # nothing to undo: no error, no prediction
    assert w.wait(10) and w.clicks == [] and len(seg.calls) == n and w._acks == {"page-1": page.seq}


def test_a_click_outside_the_image_from_the_page_is_ignored_but_acknowledged(caplog):
    seg = DiskSegmenter()
    w = ClickPrompter(_img(), seg)
    page = Page(w)
    page.click(5, W + 3, 1)
    page.click(-1, 3, 1)
    assert w.wait(10)
    assert w.clicks == [] and seg.calls == [] and w._acks == {"page-1": 2}
    assert "outside the image" in caplog.text
    page.click(5, 5, 1)
    assert w.wait(10) and len(seg.calls) == 1
    page.click(H, 5, 1)  # nothing changed: no new prediction
    assert w.wait(10) and len(seg.calls) == 1 and w.clicks == [(5, 5, 1)] and w._acks == {"page-1": 4}


def test_python_side_editing_and_initial_clicks():
    seg = DiskSegmenter()
    w = ClickPrompter(_img(), seg, clicks=[(10, 10, 1)])
    assert w.wait(10) and w.mask[10, 10] and w._clicks == [[10, 10, 1]]
    w.add_click(30, 60)  # label +1 by default
    w.add_click(np.int64(31), np.int32(60), -1)
    assert w.wait(10) and w.clicks == [(10, 10, 1), (30, 60, 1), (31, 60, -1)]
    assert all(type(v) is int for c in w.clicks for v in c)
    assert w.undo() and w.wait(10) and w.clicks == [(10, 10, 1), (30, 60, 1)] and w.mask[30, 60]
    w.clicks = [(40, 5, 1)]
    assert w.wait(10) and np.array_equal(w.mask, disks((H, W), [(40, 5, 1)]))
    w.clear()
    assert w.wait(10) and not w.mask.any() and not w.undo()
    assert "0 clicks" in repr(w)


# -- responsiveness -----------------------------------------------------------------------------
def test_prediction_runs_in_the_background_and_stale_results_are_discarded():
    seg = DiskSegmenter(gate=True)
    w = ClickPrompter(_img(), seg)
    published = []
    w.observe(lambda ch: published.append(list(w._mask_clicks)), names="_mask_bits")
    page = Page(w)
    t0 = time.monotonic()
    page.click(10, 10, 1)
    assert seg.started.acquire(timeout=5)  # predict([c1]) is running and blocked ...
    page.click(30, 60, 1)  # ... and the widget still takes clicks
    assert time.monotonic() - t0 < 2
    assert w.busy and w._busy and w.status == SEGMENTING and w.clicks == [(10, 10, 1), (30, 60, 1)]
    assert not w.wait(0.2)
    seg.release.release()  # finish predict([c1]): stale, must not be shown
    assert seg.started.acquire(timeout=5)  # the latest clicks are predicted next
    assert seg.calls == [[(10, 10, 1)], [(10, 10, 1), (30, 60, 1)]]
    assert published == [] and not w.mask.any()
    seg.release.release()
    assert w.wait(10)
    assert published == [[[10, 10, 1], [30, 60, 1]]]
    assert w.n_discarded == 1 and w.n_predictions == 2 and not w._busy
    assert np.array_equal(w.mask, disks((H, W), w.clicks)) and w.mask_clicks == w.clicks


def test_many_quick_clicks_predict_only_the_latest_after_the_running_one():
    seg = DiskSegmenter(gate=True)
    w = ClickPrompter(_img(), seg)
    page = Page(w)
    page.click(5, 5)
    assert seg.started.acquire(timeout=5)
    for c in range(10, 60, 10):
        page.click(20, c)
    seg.release.release()
    assert seg.started.acquire(timeout=5)
    seg.release.release()
    assert w.wait(10)
    assert len(seg.calls) == 2 and len(seg.calls[1]) == 6  # the five intermediate states were never predicted
    assert np.array_equal(w.mask, disks((H, W), w.clicks))


def test_synchronous_mode_predicts_before_returning():
    seg = DiskSegmenter()
    w = ClickPrompter(_img(), seg, background=False)
    Page(w).click(12, 14)
    assert not w.busy and w.mask[12, 14] and seg.calls == [[(12, 14, 1)]]


class Failing:
    def __init__(self):
        self.fail = True

    def predict(self, image, clicks):
        if self.fail:
            raise RuntimeError("model exploded")
        return disks(image.shape[:2], clicks)


def test_segmenter_errors_are_reported_and_recoverable(tmp_path):
    seg = Failing()
    w = ClickPrompter(_img(), seg, store=AnnotationStore(tmp_path), key=("blob", "000"))
    Page(w).click(10, 10)
    assert w.wait(10)
    assert w.status == "segmentation failed: RuntimeError: model exploded" and isinstance(w.error, RuntimeError)
    assert not w.mask.any() and not w._busy
    with pytest.raises(RuntimeError, match="model exploded"):
        w.accept()
    w.set_state({"_edit": {"op": "accept"}})  # from the page: reported, nothing written
    assert w.save_status.startswith("accept failed") and not (tmp_path / "ground_truth").exists()
    seg.fail = False
    w.add_click(30, 30)
    assert w.wait(10) and w.error is None and w.mask[30, 30] and w.status.startswith("2 clicks")


def test_a_mask_of_the_wrong_shape_or_values_is_an_error():
    class Wrong:
        def __init__(self, out):
            self.out = out

        def predict(self, image, clicks):
            return self.out

    w = ClickPrompter(_img(), Wrong(np.zeros((W, H), bool)), clicks=[(1, 1, 1)])
    assert w.wait(10) and "returned shape (80, 48)" in w.status and "(48, 80)" in w.status
    w = ClickPrompter(_img(), Wrong(np.full((H, W), 0.5)), clicks=[(1, 1, 1)])
    assert w.wait(10) and "expected a bool mask" in w.status
    w = ClickPrompter(_img(), Wrong(np.eye(H, W, dtype=np.uint8)), clicks=[(1, 1, 1)])
    assert w.wait(10) and w.error is None and w.mask.dtype == bool and w.mask.sum() == H


# -- accepting ------------------------------------------------------------------------------------
def test_accept_without_a_store_is_a_clear_error():
    w = ClickPrompter(_img(), DiskSegmenter(), clicks=[(5, 5, 1)])
    with pytest.raises(ValueError, match="no store.*store=AnnotationStore"):
        w.accept()
    w.set_state({"_edit": {"op": "accept"}})
    assert w.save_status.startswith("cannot accept: no store") and not w._has_store


def test_accept_writes_the_mask_and_keeps_the_previous_one_in_the_history(tmp_path):
    root = tmp_path / "ds"
    (root / "test" / "blob").mkdir(parents=True)
    Image.fromarray(_img()).save(root / "test" / "blob" / "000.png")
    gt = np.zeros((H, W), bool)
    gt[2:6, 2:6] = True
    (root / "ground_truth" / "blob").mkdir(parents=True)
    Image.fromarray(np.where(gt, 255, 0).astype(np.uint8)).save(root / "ground_truth" / "blob" / "000_mask.png")
    store = AnnotationStore(root)
    w = ClickPrompter(_img(), DiskSegmenter(), store=store, key=("blob", "000"), author="ana")
    assert w._has_store and w.save_status == "not accepted yet"
    w.add_click(24, 40)
    entry = w.accept()
    on_disk = read_mask(root / "ground_truth" / "blob" / "000_mask.png")
    assert np.array_equal(on_disk, w.mask) and on_disk.sum() > 50
    hist = store.history("blob", "000")
    assert [h["action"] for h in hist] == ["found", "save"] and hist[-1]["author"] == "ana"
    assert np.array_equal(store.load_version("blob", "000", 1), gt)  # the dataset's mask is not lost
    assert entry["version"] == 2 and "previous mask is kept as version 1" in w.save_status
    assert w.accept()["version"] == 2 and len(store.history("blob", "000")) == 2  # same mask: nothing new

    # accept from the page while the segmenter is still busy: saved once the new mask is in
    seg = DiskSegmenter(gate=True)
    w2 = ClickPrompter(_img(), seg, store=store, key=("blob", "000"))
    page = Page(w2)
    page.click(10, 10)
    assert seg.started.acquire(timeout=5)
    page.send(op="accept")
    assert w2.save_status == "accepting after segmentation…" and len(store.history("blob", "000")) == 2
    seg.release.release()
    assert w2.wait(10)
    deadline = time.monotonic() + 5
    while not w2.save_status.startswith("accepted") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert np.array_equal(store.load("blob", "000"), disks((H, W), [(10, 10, 1)]))
    assert [h["version"] for h in store.history("blob", "000")] == [1, 2, 3]
    assert "(version 3; the previous mask is kept as version 2)" in w2.save_status


def test_a_click_after_accept_from_the_page_cancels_the_pending_accept(tmp_path):
    seg = DiskSegmenter(gate=True)
    store = AnnotationStore(tmp_path)
    w = ClickPrompter(_img(), seg, store=store, key=("blob", "001"))
    page = Page(w)
    page.click(10, 10)
    assert seg.started.acquire(timeout=5)
    page.send(op="accept")
    page.click(30, 30)  # the user kept clicking: the old accept does not save a mask they moved on from
    seg.release.release()
    assert seg.started.acquire(timeout=5)
    seg.release.release()
    assert w.wait(10)
    time.sleep(0.1)
    assert store.load("blob", "001") is None


@pytest.mark.parametrize("shape", [(64, 64), (2048, 1024), (100, 2048)])
def test_sizes_from_64_to_2048_and_non_square(shape):
    img = np.zeros(shape, np.uint8)
    w = ClickPrompter(img, DiskSegmenter(radius=20))
    Page(w).click(shape[0] - 1, shape[1] - 1)
    assert w.wait(20)
    assert w.mask.shape == shape and w.mask[shape[0] - 1, shape[1] - 1] and not w.mask[0, 0]
    assert len(w._mask_bits) == (shape[0] * shape[1] + 7) // 8
    assert np.array_equal(_page_mask(w), w.mask)
