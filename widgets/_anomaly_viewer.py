"""AnomalyViewer: from a detector's results to annotation, in one notebook widget.

A grid of thumbnails sorted by image score (filter by kind and by true/predicted label), the
selected image large with its anomaly map overlaid (opacity, colour scale), the predicted mask
(anomaly map at or above the *pixel threshold*) and the ground-truth contour, an *image
threshold* slider with the counts it gives, and a button that opens the selected image in a
:class:`~widgets.MaskPainter` bound to an :class:`~workbench.annotations.AnnotationStore` to
fix or draw its mask.

Counts (image level)
--------------------
An image is *called anomalous* when its score is at or above the image threshold (the same
rule as ``Scores.labels()``). Over the images of the selected kind (every image for "all"):

* **hits**: anomalous images called anomalous (true positives);
* **misses**: anomalous images called normal (false negatives);
* **false alarms**: normal images called anomalous (false positives);
* **correct rejections**: normal images called normal (true negatives).

The pixel threshold only draws the predicted mask of the selected image (and its IoU with the
ground truth); it does not change the counts.

Structure: an :class:`ipywidgets.VBox` holding the anywidget :class:`AnomalyViewerCore` (grid,
view and controls; JavaScript in ``widgets/static/anomaly_viewer.js``), an "Annotate" button
and the painter's place. The core's synced traits are the state; the viewer's traits of the
same names are linked to them, so ``viewer.core.set_state({...})`` (what the page does) and
``viewer.threshold = ...`` (Python) are the same thing.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import anywidget
import ipywidgets
import numpy as np
import traitlets

from workbench.errors import DataError

__all__ = ["AnomalyViewer", "AnomalyViewerCore", "LABEL_FILTERS"]

STATIC = Path(__file__).parent / "static"

#: What the grid can show, besides filtering by kind.
LABEL_FILTERS = ("all", "true anomalous", "true normal", "called anomalous", "called normal", "hits", "misses",
                 "false alarms")


def _bytes_from_json(js, obj):
    return None if js is None else bytes(js)


class AnomalyViewerCore(anywidget.AnyWidget):
    """The browser half of :class:`AnomalyViewer` (grid, large view, controls); state only."""

    _esm = STATIC / "anomaly_viewer.js"
    _css = STATIC / "anomaly_viewer.css"

    selected = traitlets.Int(0).tag(sync=True)
    threshold = traitlets.Float(0.0).tag(sync=True)
    pixel_threshold = traitlets.Float(0.0).tag(sync=True)
    opacity = traitlets.Float(0.6, min=0.0, max=1.0).tag(sync=True)
    kind = traitlets.Unicode("all").tag(sync=True)
    label_filter = traitlets.Enum(LABEL_FILTERS, default_value="all").tag(sync=True)
    counts = traitlets.Dict().tag(sync=True)
    view_size = traitlets.Int(480, min=64, max=4096).tag(sync=True)

    _items = traitlets.List().tag(sync=True)
    _kinds = traitlets.List().tag(sync=True)
    _thumbs = traitlets.Bytes(b"").tag(sync=True, from_json=_bytes_from_json)
    _thumb_size = traitlets.Int(72).tag(sync=True)
    _thumb_cols = traitlets.Int(1).tag(sync=True)
    _visible = traitlets.Bytes(b"").tag(sync=True, from_json=_bytes_from_json)
    _ranges = traitlets.Dict().tag(sync=True)
    _view = traitlets.Dict().tag(sync=True)
    _gt = traitlets.Dict().tag(sync=True)
    _info = traitlets.Dict().tag(sync=True)
    _lut = traitlets.Bytes(b"").tag(sync=True, from_json=_bytes_from_json)
    _color_range = traitlets.List([0.0, 1.0]).tag(sync=True)
    _notes = traitlets.Dict().tag(sync=True)

    @traitlets.validate("kind")
    def _valid_kind(self, proposal):
        kind = proposal["value"]
        if kind != "all" and self._kinds and kind not in self._kinds:
            raise traitlets.TraitError(f"AnomalyViewer: unknown kind {kind!r}; expected 'all' or one of {self._kinds}")
        return kind

    @traitlets.validate("selected")
    def _valid_selected(self, proposal):
        i = proposal["value"]
        if self._items and not 0 <= i < len(self._items):
            raise traitlets.TraitError(f"AnomalyViewer: selected={i} is not an image index (0..{len(self._items) - 1})")
        return i


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _rgb(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


def _sprite(images, size: int) -> tuple[bytes, int]:
    """One PNG holding every thumbnail in ``size`` x ``size`` cells (aspect kept, centred)."""
    from PIL import Image

    n = len(images)
    cols = max(1, int(np.ceil(np.sqrt(n))))
    rows = max(1, int(np.ceil(n / cols)))
    sheet = Image.new("RGB", (cols * size, rows * size), (32, 32, 32))
    for i, get in enumerate(images):
        im = Image.fromarray(_rgb(get()))
        im.thumbnail((size, size), Image.Resampling.BILINEAR)
        r, c = divmod(i, cols)
        sheet.paste(im, (c * size + (size - im.width) // 2, r * size + (size - im.height) // 2))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue(), cols


def _lut(cmap: str) -> bytes:
    import matplotlib

    return (matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8).tobytes()


class AnomalyViewer(ipywidgets.VBox):
    """Look through a detector's results and fix masks where it matters.

    Parameters
    ----------
    dataset : FolderDataset, path, sequence of Sample, or Evaluation
        The scored images: ``dataset.test`` of a :class:`~workbench.datasets.FolderDataset` (or
        a folder path), a list of samples, or the :class:`~workbench.evaluation.Evaluation` that
        :func:`~workbench.evaluation.evaluate` returns (then ``scores`` is taken from it).
    scores : Scores, optional
        The detector's ``predict`` result on those images: ``image_scores`` ``(n,)`` and
        ``anomaly_maps`` (one float ``(H_i, W_i)`` per image), higher = more anomalous, and its
        thresholds. Required unless ``dataset`` is an Evaluation.
    store : AnnotationStore, optional
        Where the painter saves masks (and from where the viewer shows the current ground
        truth). Without it the painter keeps its mask in memory only.
    kind : str, default 'all'
        Show only this test kind.
    label_filter : str, default 'all'
        One of :data:`LABEL_FILTERS`.
    threshold, pixel_threshold : float, optional
        Start values; default the detector's thresholds (when it set none: the F1-optimal image
        threshold on these labels, and the 99th percentile of the map values).
    color_range : (float, float), optional
        Colour scale of the anomaly maps, shared by every image; default from 0.7 x the pixel
        threshold to the 90th percentile of the maps' maxima (as in the quickstart report).
    cmap : str, default 'inferno'
    opacity : float, default 0.6
    thumb_size : int, default 72
        Thumbnail cell size in pixels.
    view_size : int, default 480
        Longest side of the large view on the page.
    author : str, optional
        Recorded with masks the painter saves.

    Attributes
    ----------
    selected : int
        Index of the selected image in ``dataset.test`` (and in ``scores``).
    threshold, pixel_threshold, opacity, kind, label_filter
        The controls' values (linked to the page).
    counts : dict
        ``hits``, ``misses``, ``false_alarms``, ``correct_rejections`` and ``n`` at ``threshold``
        (image level, over the selected kind; see the module docstring).
    visible : ndarray of int
        Indices shown in the grid, in grid order (score, highest first).
    painter : MaskPainter or None
        The open painter.
    core : AnomalyViewerCore
        The anywidget holding the synced state (drive it with ``core.set_state`` in tests).
    """

    selected = traitlets.Int(0)
    threshold = traitlets.Float(0.0)
    pixel_threshold = traitlets.Float(0.0)
    opacity = traitlets.Float(0.6, min=0.0, max=1.0)
    kind = traitlets.Unicode("all")
    label_filter = traitlets.Enum(LABEL_FILTERS, default_value="all")

    def __init__(self, dataset, scores=None, *, store=None, kind: str = "all", label_filter: str = "all",
                 threshold: float | None = None, pixel_threshold: float | None = None,
                 color_range: tuple[float, float] | None = None, cmap: str = "inferno", opacity: float = 0.6,
                 thumb_size: int = 72, view_size: int = 480, author: str | None = None, **kwargs):
        samples, scores, labels, masks = self._resolve(dataset, scores)
        self.samples = samples
        self.scores = scores
        self.store = store
        self.author = author
        self.cmap = cmap
        self._labels = labels
        self._masks = masks  # ground truth given by an Evaluation (None: read from the samples)
        self._image_scores = np.asarray(scores.image_scores, dtype=np.float64)
        self._maps = scores.anomaly_maps
        self._kinds = np.array([s.kind for s in samples])
        n = len(samples)
        kinds = sorted(set(self._kinds.tolist()), key=lambda k: (k != "good", k))
        if kind != "all" and kind not in kinds:
            raise ValueError(f"AnomalyViewer: kind {kind!r} is not among the images' kinds {kinds}; use 'all' or one of them")

        t_img, note_img = self._image_threshold(threshold)
        t_pix, note_pix = self._pixel_threshold(pixel_threshold)
        lo, hi = (float(v) for v in color_range) if color_range is not None else self._default_color_range(t_pix)
        self.color_range = (lo, max(hi, lo + 1e-6))
        s_lo, s_hi = float(self._image_scores.min()), float(self._image_scores.max())
        pad = max(s_hi - s_lo, 1e-9) * 0.02
        maxima = np.array([float(np.max(m)) for m in self._maps])
        minima = np.array([float(np.min(m)) for m in self._maps])
        ranges = {"image": [min(s_lo - pad, t_img), max(s_hi + pad, t_img)],
                  "pixel": [min(float(minima.min()), t_pix), max(float(maxima.max()), t_pix)]}

        items = [{"i": i, "name": Path(s.path).name, "kind": s.kind, "label": int(labels[i]),
                  "score": float(self._image_scores[i])} for i, s in enumerate(samples)]
        sprite, cols = _sprite([s.image for s in samples], int(thumb_size))
        self.core = AnomalyViewerCore(
            _items=items, _kinds=kinds, _thumbs=sprite, _thumb_size=int(thumb_size), _thumb_cols=cols,
            _ranges=ranges, _lut=_lut(cmap), _color_range=list(self.color_range),
            _notes={"image": note_img, "pixel": note_pix}, view_size=int(view_size),
            threshold=t_img, pixel_threshold=t_pix, opacity=float(opacity), kind=kind, label_filter=label_filter,
            selected=int(np.argmax(self._image_scores)) if n else 0,
        )
        self.painter = None
        self._painter_index: int | None = None
        self._annotate = ipywidgets.Button(description="Annotate this image", icon="pencil",
                                           tooltip="open the selected image in a MaskPainter to fix or draw its mask",
                                           layout=ipywidgets.Layout(width="auto"))
        self._annotate.add_class("wb-av-annotate")
        self._annotate.on_click(lambda _b: self.open_painter())
        self._close = ipywidgets.Button(description="Close painter", disabled=True,
                                        layout=ipywidgets.Layout(width="auto"))
        self._close.add_class("wb-av-close-painter")
        self._close.on_click(lambda _b: self.close_painter())
        where = (f"masks are saved to {store.root}" if store is not None
                 else "no store: masks are not saved (pass store=AnnotationStore(...))")
        self._where = ipywidgets.HTML(f"<span style='color:#666'>{where}</span>")
        self._painter_box = ipywidgets.VBox([])
        super().__init__(children=[self.core, ipywidgets.HBox([self._annotate, self._close, self._where]),
                                   self._painter_box], **kwargs)
        self.add_class("wb-anomaly-viewer")
        for name in ("selected", "threshold", "pixel_threshold", "opacity", "kind", "label_filter"):
            setattr(self, name, getattr(self.core, name))
            traitlets.link((self.core, name), (self, name))
        self.core.observe(self._on_threshold, names="threshold")
        self.core.observe(self._on_filter, names=["kind", "label_filter"])
        self.core.observe(self._on_selected, names="selected")
        self.core.observe(self._on_pixel_threshold, names="pixel_threshold")
        self._update_counts()
        self._update_visible()
        self._send_view(self.core.selected)

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _resolve(dataset, scores):
        masks = None
        labels = None
        if hasattr(dataset, "scores") and hasattr(dataset, "dataset") and hasattr(dataset, "labels"):
            ev = dataset
            scores = ev.scores if scores is None else scores
            dataset, labels, masks = ev.dataset, np.asarray(ev.labels), list(ev.masks)
        if scores is None:
            raise TypeError("AnomalyViewer needs scores: AnomalyViewer(dataset, detector.predict(dataset)) or "
                            "AnomalyViewer(evaluate(...))")
        if isinstance(dataset, (str, os.PathLike)):
            from workbench.datasets import FolderDataset

            dataset = FolderDataset(dataset)
        samples = list(dataset.test) if hasattr(dataset, "test") else list(dataset)
        if not samples:
            raise DataError("AnomalyViewer: the dataset has no test images to show")
        if not all(hasattr(s, "image") and hasattr(s, "kind") and hasattr(s, "path") for s in samples):
            raise DataError("AnomalyViewer: expected a FolderDataset or dataset samples (workbench.datasets.Sample)")
        if not (hasattr(scores, "image_scores") and hasattr(scores, "anomaly_maps")):
            raise DataError(f"AnomalyViewer: scores must be a detector's Scores (image_scores, anomaly_maps); "
                            f"got {type(scores).__name__}")
        n = len(samples)
        if len(scores.image_scores) != n or len(scores.anomaly_maps) != n:
            raise DataError(f"AnomalyViewer: {n} images but {len(scores.image_scores)} image scores and "
                            f"{len(scores.anomaly_maps)} anomaly maps; score the same images (dataset.test) you show")
        for s, m in zip(samples, scores.anomaly_maps):
            shape = getattr(s, "shape", None)
            if shape is not None and tuple(np.shape(m)) != tuple(shape[:2]):
                raise DataError(f"AnomalyViewer: the anomaly map of {s.path} is {np.shape(m)} but the image is "
                                f"{tuple(shape[:2])} (H, W); maps must be at each image's own size")
        if labels is None:
            labels = np.array([int(s.label) for s in samples])
        if masks is not None and len(masks) != n:
            raise DataError(f"AnomalyViewer: {len(masks)} ground-truth masks for {n} images")
        return samples, scores, labels, masks

    def _image_threshold(self, given):
        if given is not None:
            return float(given), "image threshold set by hand"
        t = getattr(self.scores, "image_threshold", None)
        if t is not None:
            return float(t), "image threshold from the detector (held-out normal images)"
        if len(set(self._labels.tolist())) == 2:
            from workbench.metrics import f1_max

            return float(f1_max(self._labels, self._image_scores)[1]), \
                "image threshold: F1-optimal on these labels (the detector set none)"
        return float(np.median(self._image_scores)), "image threshold: median score (the detector set none)"

    def _pixel_threshold(self, given):
        if given is not None:
            return float(given), "pixel threshold set by hand"
        t = getattr(self.scores, "pixel_threshold", None)
        if t is not None:
            return float(t), "pixel threshold from the detector (held-out normal images)"
        sample = np.concatenate([np.ravel(m)[:: max(1, np.size(m) // 20000)] for m in self._maps])
        return float(np.percentile(sample, 99)), "pixel threshold: 99th percentile of the maps (the detector set none)"

    def _default_color_range(self, t_pix: float) -> tuple[float, float]:
        maxima = np.array([float(np.max(m)) for m in self._maps])
        hi = float(np.percentile(maxima, 90))
        if getattr(self.scores, "pixel_threshold", None) is not None:
            lo = 0.7 * float(self.scores.pixel_threshold)
        else:
            lo = float(np.median([np.median(m) for m in self._maps]))
        return lo, max(hi, lo + 1e-6)

    # ------------------------------------------------------------------ accessors
    @property
    def selected_index(self) -> int:
        """:attr:`selected` under the name the other workbench views use."""
        return int(self.core.selected)

    @property
    def counts(self) -> dict:
        """Image-level counts at :attr:`threshold` over the selected kind (see the module docstring)."""
        return dict(self.core.counts)

    @property
    def visible(self) -> np.ndarray:
        """Indices in the grid, in grid order."""
        return np.frombuffer(self.core._visible, dtype="<i4").astype(np.int64)

    @property
    def labels(self) -> np.ndarray:
        """True image labels, 1 = anomalous."""
        return self._labels.copy()

    @property
    def predicted(self) -> np.ndarray:
        """Predicted image labels at :attr:`threshold` (1 = called anomalous)."""
        return (self._image_scores >= self.core.threshold).astype(int)

    def predicted_mask(self, index: int | None = None) -> np.ndarray:
        """The anomaly map of image ``index`` (default: the selected one) at the pixel threshold."""
        i = self.core.selected if index is None else int(index)
        return np.asarray(self._maps[i]) >= self.core.pixel_threshold

    def ground_truth(self, index: int | None = None) -> np.ndarray | None:
        """The current mask of image ``index``: the store's if it has one, else the dataset's (None if none)."""
        i = self.core.selected if index is None else int(index)
        if self.painter is not None and self._painter_index == i:
            return self.painter.mask
        sample = self.samples[i]
        if self.store is not None and getattr(sample, "split", "test") == "test":
            mask = self.store.load(sample.kind, Path(sample.path).stem)
            if mask is not None:
                return mask
        if self._masks is not None:
            return None if self._masks[i] is None else np.asarray(self._masks[i], bool)
        try:
            return sample.mask()
        except DataError:
            return None

    def __repr__(self) -> str:
        c = self.core.counts
        # ipywidgets shows at most 110 characters of this in static outputs (reports)
        return (f"AnomalyViewer: {len(self.samples)} images, threshold {self.core.threshold:.4g} -> "
                f"{c.get('hits')} hits, {c.get('misses')} misses, {c.get('false_alarms')} false alarms, "
                f"{c.get('correct_rejections')} correct rejections")

    # ------------------------------------------------------------------ derived state
    def _kind_mask(self) -> np.ndarray:
        k = self.core.kind
        return np.ones(len(self.samples), bool) if k == "all" else self._kinds == k

    def _update_counts(self) -> None:
        keep = self._kind_mask()
        called = self._image_scores >= self.core.threshold
        bad = self._labels == 1
        self.core.counts = {
            "hits": int((keep & bad & called).sum()),
            "misses": int((keep & bad & ~called).sum()),
            "false_alarms": int((keep & ~bad & called).sum()),
            "correct_rejections": int((keep & ~bad & ~called).sum()),
            "n": int(keep.sum()),
        }

    def _update_visible(self) -> None:
        called = self._image_scores >= self.core.threshold
        bad = self._labels == 1
        f = self.core.label_filter
        by_label = {"all": np.ones_like(bad), "true anomalous": bad, "true normal": ~bad, "called anomalous": called,
                    "called normal": ~called, "hits": bad & called, "misses": bad & ~called,
                    "false alarms": ~bad & called}[f]
        order = np.argsort(-self._image_scores, kind="stable")
        keep = (self._kind_mask() & by_label)[order]
        self.core._visible = order[keep].astype("<i4").tobytes()

    def _on_threshold(self, change) -> None:
        self._update_counts()
        if self.core.label_filter not in ("all", "true anomalous", "true normal"):
            self._update_visible()

    def _on_filter(self, change) -> None:
        if change["name"] == "kind":
            self._update_counts()
        self._update_visible()

    def _on_selected(self, change) -> None:
        i = int(change["new"])
        self._send_view(i)
        if self.painter is not None:  # the painter follows the selection
            self.open_painter(i)

    def _on_pixel_threshold(self, change) -> None:
        self._update_info()

    def _display_grid(self, shape) -> tuple[np.ndarray, np.ndarray]:
        h, w = shape
        s = self.core.view_size / max(h, w)
        dh, dw = max(1, round(h * s)), max(1, round(w * s))
        rows = np.minimum((np.arange(dh) + 0.5) * h / dh, h - 1).astype(np.int64)
        cols = np.minimum((np.arange(dw) + 0.5) * w / dw, w - 1).astype(np.int64)
        return rows, cols

    def _send_view(self, i: int) -> None:
        from PIL import Image

        sample = self.samples[i]
        image = sample.image()
        amap = np.asarray(self._maps[i], dtype=np.float32)
        rows, cols = self._display_grid(image.shape[:2])
        shown = Image.fromarray(_rgb(image)).resize((len(cols), len(rows)), Image.Resampling.BILINEAR)
        small = np.nan_to_num(amap[np.ix_(rows, cols)])
        lo, hi = float(small.min()), float(small.max())
        # the map at display resolution, quantised to 16 bits over its own range (display only:
        # counts, IoU and predicted_mask() use the float map)
        q = np.round((small - lo) / (hi - lo) * 65535) if hi > lo else np.zeros_like(small)
        self.core._view = {
            "index": int(i), "name": Path(sample.path).name, "kind": sample.kind, "label": int(self._labels[i]),
            "score": float(self._image_scores[i]), "h": len(rows), "w": len(cols),
            "height": int(image.shape[0]), "width": int(image.shape[1]),
            "png": _png(np.asarray(shown)), "map": q.astype("<u2").tobytes(), "map_lo": lo, "map_hi": hi,
        }
        self._send_gt(i)

    def _send_gt(self, i: int) -> None:
        gt = self.ground_truth(i)
        shape = np.shape(self._maps[i])
        rows, cols = self._display_grid(shape)
        if gt is None:
            self.core._gt = {"index": int(i), "h": len(rows), "w": len(cols), "bits": b""}
        else:
            small = np.asarray(gt, bool)[np.ix_(rows, cols)]
            self.core._gt = {"index": int(i), "h": len(rows), "w": len(cols),
                             "bits": np.packbits(small.ravel(), bitorder="big").tobytes()}
        self._update_info()

    def _update_info(self) -> None:
        i = self.core.selected
        pred = self.predicted_mask(i)
        gt = self.ground_truth(i)
        info = {"index": int(i), "predicted_px": int(pred.sum()), "gt_px": None if gt is None else int(gt.sum()),
                "iou": None}
        if gt is not None:
            union = int((pred | gt).sum())
            info["iou"] = None if union == 0 else float((pred & gt).sum() / union)
        self.core._info = info

    # ------------------------------------------------------------------ the painter
    def open_painter(self, index: int | None = None):
        """Open image ``index`` (default: the selected one) in a :class:`~widgets.MaskPainter`.

        The painter starts from the store's mask, else the dataset's ground truth, else an
        empty mask; it shows the anomaly map as its overlay and saves to the viewer's store.
        A painter already open is saved and replaced. Returns the painter.
        """
        from widgets._mask_painter import MaskPainter

        i = self.core.selected if index is None else int(index)
        if self.painter is not None and self._painter_index == i:
            return self.painter
        self.close_painter()
        sample = self.samples[i]
        mask = None
        if self.store is None or self.store.load(sample.kind, Path(sample.path).stem) is None:
            mask = self.ground_truth(i)  # a GT given by an Evaluation, or the sample's
        painter = MaskPainter(sample, mask=mask, store=self.store, overlay=np.asarray(self._maps[i]),
                              overlay_range=self.color_range, cmap=self.cmap, author=self.author)
        painter.observe(self._on_painted, names="revision")
        self.painter, self._painter_index = painter, i
        self._painter_box.children = [painter]
        self._close.disabled = False
        return painter

    def close_painter(self) -> None:
        """Save and close the open painter (if any)."""
        painter, self.painter, self._painter_index = self.painter, None, None
        self._painter_box.children = []
        self._close.disabled = True
        if painter is not None:
            painter.unobserve(self._on_painted, names="revision")
            painter.close()

    def _on_painted(self, change) -> None:
        if self._painter_index == self.core.selected:
            self._send_gt(self._painter_index)
