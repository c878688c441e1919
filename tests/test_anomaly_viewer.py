"""AnomalyViewer driven in Python through its core's ``set_state`` (what the page sends) and its
buttons: counts and grid at a threshold, filters, the selected image's payload, the painter
(the real browser is tests/test_browser_annotation.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import traitlets
from PIL import Image

from widgets import AnomalyViewer, MaskPainter
from widgets._mask_painter import pack_bits
from workbench.annotations import AnnotationStore
from workbench.datasets import FolderDataset
from workbench.detectors import Scores
from workbench.errors import DataError

H, W = 30, 40
KINDS = [("good", 5), ("scratch", 4), ("stain", 3)]


@pytest.fixture
def data(tmp_path):
    """A tiny MVTec folder (5 good, 4 scratch, 3 stain test images, masks for the defects) and
    seeded scores whose maps are ramps reaching the image score."""
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)

    def write(rel, arr):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / rel)

    write("train/good/000.png", rng.integers(0, 255, (H, W), dtype=np.uint8))
    for kind, n in KINDS:
        for i in range(n):
            write(f"test/{kind}/{i:03d}.png", rng.integers(0, 255, (H, W), dtype=np.uint8))
            if kind != "good":
                m = np.zeros((H, W), np.uint8)
                m[5 + i:15 + i, 10:30] = 255
                write(f"ground_truth/{kind}/{i:03d}_mask.png", m)
    ds = FolderDataset(root)
    labels = np.array([s.label for s in ds.test])
    image_scores = np.round(np.where(labels == 1, rng.uniform(0.4, 1, len(labels)), rng.uniform(0, 0.6, len(labels))), 3)
    maps = [np.tile(np.linspace(0, s, W, dtype=np.float32), (H, 1)) for s in image_scores]
    return ds, Scores(image_scores, maps, 0.5, 0.3), labels


def _brute_counts(labels, scores, t, keep=None):
    keep = np.ones(len(labels), bool) if keep is None else keep
    called, bad = scores >= t, labels == 1
    return {"hits": int((keep & bad & called).sum()), "misses": int((keep & bad & ~called).sum()),
            "false_alarms": int((keep & ~bad & called).sum()),
            "correct_rejections": int((keep & ~bad & ~called).sum()), "n": int(keep.sum())}


def test_counts_and_grid_follow_the_threshold_from_the_page(data):
    ds, scores, labels = data
    v = AnomalyViewer(ds, scores)
    s = scores.image_scores
    assert v.threshold == 0.5 and v.pixel_threshold == 0.3
    assert v.counts == _brute_counts(labels, s, 0.5)
    assert v.visible.tolist() == np.argsort(-s, kind="stable").tolist()
    assert v.selected == v.selected_index == int(np.argmax(s))
    for t in [0.0, 0.21, 0.45, 0.6, 0.95, 2.0]:
        v.core.set_state({"threshold": t})  # the slider on the page
        assert v.threshold == t and v.counts == _brute_counts(labels, s, t)
        assert v.predicted.tolist() == (s >= t).astype(int).tolist()
    v.threshold = 0.4  # Python drives the page the same way
    assert v.core.threshold == 0.4 and v.core.counts == _brute_counts(labels, s, 0.4)
    assert repr(v).startswith("AnomalyViewer: 12 images, threshold 0.4 -> ")
    assert len(repr(v)) <= 110  # what a static report shows of a widget


def test_filters_by_kind_and_by_true_or_predicted_label(data):
    ds, scores, labels = data
    s = scores.image_scores
    v = AnomalyViewer(ds, scores, threshold=0.5)
    kinds = np.array([x.kind for x in ds.test])
    called, bad = s >= 0.5, labels == 1
    order = np.argsort(-s, kind="stable")
    expect = {"all": np.ones_like(bad), "true anomalous": bad, "true normal": ~bad, "called anomalous": called,
              "called normal": ~called, "hits": bad & called, "misses": bad & ~called, "false alarms": ~bad & called}
    for name, keep in expect.items():
        v.core.set_state({"label_filter": name})
        assert v.visible.tolist() == order[keep[order]].tolist(), name
    v.core.set_state({"label_filter": "all", "kind": "scratch"})
    assert v.visible.tolist() == order[(kinds == "scratch")[order]].tolist()
    assert v.counts == _brute_counts(labels, s, 0.5, kinds == "scratch")  # counts over the kind shown
    v.core.set_state({"label_filter": "called normal"})
    v.core.set_state({"threshold": 0.0})  # everything called anomalous: the grid empties
    assert v.visible.size == 0
    with pytest.raises(traitlets.TraitError, match="unknown kind 'dent'"):
        v.core.set_state({"kind": "dent"})
    with pytest.raises(traitlets.TraitError, match=r"selected=12 is not an image index \(0..11\)"):
        v.core.set_state({"selected": 12})
    with pytest.raises(ValueError, match="kind 'dent' is not among"):
        AnomalyViewer(ds, scores, kind="dent")


def test_the_selected_image_travels_at_display_size_with_map_and_ground_truth(data):
    ds, scores, labels = data
    v = AnomalyViewer(ds, scores, view_size=80)
    i = int(np.flatnonzero(labels == 1)[2])
    v.core.set_state({"selected": i})
    view = v.core._view
    assert view["index"] == i and (view["h"], view["w"]) == (60, 80) and (view["height"], view["width"]) == (H, W)
    with Image.open(io.BytesIO(view["png"])) as im:
        assert im.size == (80, 60)
    q = np.frombuffer(view["map"], "<u2").reshape(60, 80)
    shown = view["map_lo"] + q * (view["map_hi"] - view["map_lo"]) / 65535
    want = np.repeat(np.repeat(scores.anomaly_maps[i], 2, axis=0), 2, axis=1)  # nearest, 2x
    assert np.abs(shown - want).max() < 1e-4
    gt = ds.test[i].mask()
    bits = np.unpackbits(np.frombuffer(v.core._gt["bits"], np.uint8), count=60 * 80).reshape(60, 80)
    assert np.array_equal(bits.astype(bool), np.repeat(np.repeat(gt, 2, axis=0), 2, axis=1))
    pred = scores.anomaly_maps[i] >= 0.3
    assert np.array_equal(v.predicted_mask(), pred)
    info = v.core._info
    assert info["predicted_px"] == int(pred.sum()) and info["gt_px"] == int(gt.sum())
    assert info["iou"] == pytest.approx((pred & gt).sum() / (pred | gt).sum())
    v.core.set_state({"pixel_threshold": 10.0})  # nothing predicted
    assert v.core._info["predicted_px"] == 0 and v.core._info["iou"] == 0.0
    good = int(np.flatnonzero(labels == 0)[0])
    v.core.set_state({"selected": good})
    assert v.core._info["gt_px"] == 0 and v.core._info["iou"] is None  # both empty: undefined


def test_an_evaluation_and_detectors_without_thresholds(data):
    from workbench.evaluation import Evaluation

    ds, scores, labels = data
    masks = [s.mask() for s in ds.test]
    masks[-1] = None  # a kind without masks
    ev = Evaluation(metrics={}, detector=None, dataset=ds, scores=Scores(scores.image_scores, scores.anomaly_maps),
                    labels=labels, kinds=[s.kind for s in ds.test], masks=masks)
    v = AnomalyViewer(ev)
    from workbench.metrics import f1_max

    assert v.threshold == pytest.approx(f1_max(labels, scores.image_scores)[1])
    assert "F1-optimal" in v.core._notes["image"] and "99th percentile" in v.core._notes["pixel"]
    every = np.concatenate([m.ravel() for m in scores.anomaly_maps])
    assert v.pixel_threshold == pytest.approx(np.percentile(every[::1], 99), rel=0.05)
    assert v.ground_truth(len(labels) - 1) is None and v.ground_truth(len(labels) - 2).sum() > 0


def test_bad_inputs_are_named(data):
    ds, scores, _ = data
    with pytest.raises(TypeError, match="AnomalyViewer needs scores"):
        AnomalyViewer(ds)
    with pytest.raises(DataError, match="12 images but 11 image scores and 11 anomaly maps"):
        AnomalyViewer(ds, Scores(scores.image_scores[:-1], scores.anomaly_maps[:-1]))
    bad = list(scores.anomaly_maps)
    bad[3] = np.zeros((5, 5), np.float32)
    with pytest.raises(DataError, match=r"the anomaly map of .*003.png is \(5, 5\) but the image is \(30, 40\)"):
        AnomalyViewer(ds, Scores(scores.image_scores, bad))
    with pytest.raises(DataError, match="scores must be a detector's Scores"):
        AnomalyViewer(ds, scores.image_scores)


def test_annotate_opens_a_painter_that_follows_the_selection_and_saves(data):
    ds, scores, labels = data
    store = AnnotationStore(ds.root)
    v = AnomalyViewer(ds, scores, store=store, author="ana")
    first = int(np.flatnonzero(labels == 1)[0])
    original = ds.test[first].mask()
    v.core.set_state({"selected": first})
    v._annotate.click()  # the button on the page
    p = v.painter
    assert isinstance(p, MaskPainter) and p.key == (ds.test[first].kind, ds.test[first].stem)
    assert p.store is store and p.author == "ana" and p._overlay_png and v._painter_box.children == (p,)
    assert np.array_equal(p.mask, original)  # starts from the ground truth
    foot = np.zeros((4, 4), bool)
    foot[:] = True
    p.set_state({"_edit": {"client": "c", "seq": 1, "op": "stroke", "value": 1, "x": 0, "y": 0, "w": 4, "h": 4,
                           "bits": memoryview(pack_bits(foot))}})
    # the viewer shows the painter's mask at once as the ground truth of that image
    assert v.ground_truth().sum() == original.sum() + 16 == v.core._info["gt_px"]
    second = int(np.flatnonzero(labels == 1)[1])
    v.core.set_state({"selected": second})  # the painter follows, and the first image is saved
    assert v.painter is not p and v.painter.key == (ds.test[second].kind, ds.test[second].stem)
    kind, stem = ds.test[first].kind, ds.test[first].stem
    saved = store.load(kind, stem)
    assert saved[:4, :4].all() and saved.sum() == original.sum() + 16
    assert np.array_equal(store.load_version(kind, stem, 1), original)
    assert [h["action"] for h in store.history(kind, stem)] == ["found", "save"]
    assert v.open_painter() is v.painter  # the same image: the same painter
    v._close.click()
    assert v.painter is None and v._painter_box.children == ()
    # opened and closed without an edit: nothing was written for the second image
    assert [h["action"] for h in store.history(ds.test[second].kind, ds.test[second].stem)] == ["unrecorded"]


def test_without_a_store_the_painter_keeps_masks_in_memory(data):
    ds, scores, _ = data
    v = AnomalyViewer(ds, scores)
    p = v.open_painter(0)
    assert p.store is None and p.save_status == "not saved: no store"
    assert "no store" in v._where.value
    before = {str(x) for x in Path(ds.root).rglob("*")}
    v.close_painter()
    assert {str(x) for x in Path(ds.root).rglob("*")} == before
