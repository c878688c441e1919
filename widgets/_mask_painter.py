"""MaskPainter: paint, erase and fill a binary mask over an image, saved as you paint (anywidget).

Sync format (all binary, never JSON lists of pixels)
----------------------------------------------------
Masks travel as *packed bits*: ``numpy.packbits`` of a row-major boolean region, most
significant bit first (``bitorder="big"``), 1 = masked pixel.

* ``_image_png`` (kernel -> page, once): the image as PNG bytes.
* ``_overlay_png`` (kernel -> page, once): the optional overlay as an RGBA PNG (an anomaly map
  coloured on a fixed range, transparent where it is low).
* ``_mask_bits`` (kernel -> page, in every full state): the whole mask, packed bits.
* ``_edit`` (page -> kernel, one message per gesture): ``{"client", "seq", "op", ...}`` with
  ``op`` one of

  - ``"stroke"``: ``value`` (1 paint, 0 erase), bounding box ``x, y, w, h`` and ``bits``, the packed
    *footprint* of the brush in that box (the pixels the stroke covered);
  - ``"fill"``: ``row, col, value``: fill the 4-connected region of equal mask value under the
    click with ``value`` (like napari's Labels fill);
  - ``"undo"``, ``"redo"``; ``"sync"`` (a newly rendered view asks for the whole mask).

* ``_patch`` (kernel -> page, after every edit): ``{"rev", "acks", "x", "y", "w", "h", "bits"}``,
  the kernel's mask in a box after the edit (``w = h = 0`` when nothing changed) and, per page
  client, the last edit applied. The page shows strokes at once, sends them, and when a patch
  arrives re-applies its own edits the kernel has not applied yet, so both sides converge.

Undo and redo live in the kernel: every change is stored as the XOR of the pixels it flipped
inside its bounding box (packed), so undo and redo are exact and cheap for any image size.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import threading
import time
import weakref
from datetime import datetime
from pathlib import Path

import anywidget
import numpy as np
import traitlets

from workbench.errors import DataError

__all__ = ["MaskPainter", "MODES"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: Editing modes, as in napari's Labels layer.
MODES = ("paint", "erase", "fill", "pan_zoom")
MAX_BRUSH = 512
_UNDO_LIMIT = 200  # entries
_UNDO_BYTES = 64 << 20  # packed bytes kept for undo


def _bytes_from_json(js, obj):
    """Bytes from the page: ipywidgets hands binary values over as ``memoryview``."""
    return None if js is None else bytes(js)


def _edit_from_json(js, obj):
    """An edit dict from the page with its binary ``bits`` (a ``memoryview``) copied to bytes.

    A plain ``traitlets.Bytes`` would silently reject the memoryview the browser sends (see
    BROWSER_TESTING.md); the copy also detaches the value from the message buffer."""
    if not js:
        return {}
    return {k: (bytes(v) if isinstance(v, (memoryview, bytearray)) else v) for k, v in dict(js).items()}


def pack_bits(region: np.ndarray) -> bytes:
    """Packed bits (row-major, most significant bit first) of a boolean array."""
    return np.packbits(np.asarray(region, dtype=bool).ravel(), bitorder="big").tobytes()


def unpack_bits(bits: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`pack_bits` for a region of ``shape``; checks the length."""
    h, w = int(shape[0]), int(shape[1])
    need = (h * w + 7) // 8
    if len(bits) != need:
        raise ValueError(f"packed mask region {h}x{w} needs {need} bytes; got {len(bits)}")
    return np.unpackbits(np.frombuffer(bits, np.uint8), count=h * w, bitorder="big").astype(bool).reshape(h, w)


def _png(array: np.ndarray, compress_level: int = 1) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def _is_sample(obj) -> bool:
    return hasattr(obj, "image") and callable(obj.image) and hasattr(obj, "path") and hasattr(obj, "kind")


def _as_image(image, who: str = "MaskPainter") -> tuple[np.ndarray, str]:
    """uint8 ``(H, W)`` or ``(H, W, 3)`` and a display name from an array, a path or a Sample;
    errors start with ``who`` (the widget's name)."""
    from workbench.datasets import read_image

    if _is_sample(image):
        return image.image(), f"{image.kind}/{Path(image.path).name}"
    if isinstance(image, (str, os.PathLike)):
        return read_image(image), Path(image).name
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise DataError(f"{who}: image has shape {arr.shape}; expected (H, W) gray or (H, W, 3) RGB")
    if min(arr.shape[:2]) < 1:
        raise DataError(f"{who}: image has shape {arr.shape}; it is empty")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise DataError(
            f"{who}: image has dtype {arr.dtype}; expected uint8. Convert it (e.g. "
            f"(img * 255).round().astype(np.uint8) for floats in [0, 1]) or pass the image file path."
        )
    return np.ascontiguousarray(arr), f"{arr.shape[1]}x{arr.shape[0]} image"


def _overlay_rgba(overlay, shape: tuple[int, int], overlay_range, cmap: str) -> tuple[np.ndarray, dict]:
    """RGBA uint8 overlay and its legend from a float map or an RGB(A) uint8 picture."""
    ov = np.asarray(overlay)
    if ov.shape[:2] != tuple(shape):
        raise DataError(f"MaskPainter: overlay has shape {ov.shape[:2]} but the image is {tuple(shape)} (H, W); "
                        f"pass an anomaly map at the image's size")
    if ov.ndim == 3 and ov.dtype == np.uint8 and ov.shape[2] in (3, 4):
        if ov.shape[2] == 3:
            ov = np.concatenate([ov, np.full(shape + (1,), 255, np.uint8)], axis=2)
        return np.ascontiguousarray(ov), {}
    if ov.ndim != 2:
        raise DataError(f"MaskPainter: overlay has shape {ov.shape}; expected a float (H, W) map or uint8 RGB(A)")
    from workbench.visualize import colorize

    m = np.nan_to_num(ov.astype(np.float32))
    if overlay_range is None:
        lo, hi = float(np.percentile(m, 50)), float(np.percentile(m, 99.9))
    else:
        lo, hi = (float(v) for v in overlay_range)
    if hi <= lo:
        hi = lo + 1e-6
    rgb = colorize(m, lo, hi, cmap)
    alpha = (np.clip((m - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    stops = colorize(np.linspace(lo, hi, 16), lo, hi, cmap)
    legend = {"colors": ["#%02x%02x%02x" % tuple(int(c) for c in s) for s in stops], "vmin": lo, "vmax": hi}
    return np.concatenate([rgb, alpha[..., None]], axis=2), legend


class _Change:
    """One undoable change: the pixels it flipped inside a box, packed."""

    __slots__ = ("y", "x", "h", "w", "bits")

    def __init__(self, y: int, x: int, flipped: np.ndarray):
        self.y, self.x = y, x
        self.h, self.w = flipped.shape
        self.bits = pack_bits(flipped)

    def flipped(self) -> np.ndarray:
        return unpack_bits(self.bits, (self.h, self.w))


_LIVE: "weakref.WeakSet[MaskPainter]" = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:  # a kernel that shuts down keeps the last strokes
    for painter in list(_LIVE):
        try:
            painter.save()
        except Exception:  # noqa: BLE001 - nothing can be reported at exit
            pass


class MaskPainter(anywidget.AnyWidget):
    """Paint a binary mask over an image in the notebook; saved to an annotation store as you paint.

    Modes (``mode``; keys P, E, F, Z): ``"paint"`` and ``"erase"`` draw round strokes of
    ``brush_size`` image pixels (keys ``[`` and ``]`` resize), ``"fill"`` fills the 4-connected
    region of equal mask value under the click (Shift-click fills with "unmasked"), ``"pan_zoom"``
    drags the view and zooms with the wheel (Ctrl+wheel zooms in any mode; "Fit" resets).
    Undo/redo: the buttons, Ctrl-Z and Ctrl-Shift-Z (or Ctrl-Y).

    Parameters
    ----------
    image : ndarray, path or Sample
        uint8 ``(H, W)`` gray or ``(H, W, 3)`` RGB array, an image file, or a
        :class:`~workbench.datasets.Sample` (which also gives the key). Sent to the browser
        once, as PNG. Any size from a few pixels to 2048x2048 and beyond.
    mask : array-like of bool, shape (H, W), optional
        The starting mask. Default: the store's mask for ``key``, else the sample's ground
        truth, else empty.
    store : AnnotationStore, optional
        Where every change is saved (debounced, atomically, at most ``save_delay`` seconds after
        it was made). Without a store nothing is written; read :attr:`mask` yourself.
    key : (kind, stem) or Sample, optional
        The image's key in the store; default the key of ``image`` when it is a Sample.
    overlay : ndarray, optional
        Shown semi-transparently over the image with an opacity slider: a float ``(H, W)``
        anomaly map (coloured with ``cmap`` on ``overlay_range``, transparent where low; higher
        = more anomalous) or a uint8 RGB(A) picture.
    overlay_range : (float, float), optional
        Colour range of a float overlay; default its 50th and 99.9th percentiles.
    cmap : str, default 'inferno'
        Matplotlib colour map of a float overlay.
    author : str, optional
        Recorded with every saved version (default: the login name).
    save_delay : float, default 0.5
        Seconds between a change and its save (changes in between are saved together).
    brush_size : int, default 12
        Brush diameter in image pixels.
    mode : str, default 'paint'
    view_size : int, default 640
        Longest side of the canvas on the page, in CSS pixels.

    Attributes
    ----------
    mask : ndarray of bool, shape (H, W)
        A copy of the current mask (assign to replace it, undoably).
    revision : int
        Number of changes so far (observe it to react to edits).
    save_status : str
        What happened to the last change ("saved ...", "unsaved changes", "save failed: ...").

    Examples
    --------
    >>> store = AnnotationStore(ds.root)                                # doctest: +SKIP
    >>> painter = MaskPainter(ds.test[3], store=store, overlay=scores.anomaly_maps[3])  # doctest: +SKIP
    >>> painter                                                         # doctest: +SKIP
    """

    _esm = STATIC / "mask_painter.js"
    _css = STATIC / "mask_painter.css"

    mode = traitlets.Enum(MODES, default_value="paint").tag(sync=True)
    brush_size = traitlets.Int(12, min=1, max=MAX_BRUSH).tag(sync=True)
    overlay_opacity = traitlets.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    view_size = traitlets.Int(640, min=64, max=4096).tag(sync=True)
    save_status = traitlets.Unicode("").tag(sync=True)
    revision = traitlets.Int(0, read_only=True)

    _height = traitlets.Int(1).tag(sync=True)
    _width = traitlets.Int(1).tag(sync=True)
    _title = traitlets.Unicode("").tag(sync=True)
    _image_png = traitlets.Bytes(b"").tag(sync=True, from_json=_bytes_from_json)
    _overlay_png = traitlets.Bytes(b"").tag(sync=True, from_json=_bytes_from_json)
    _overlay_legend = traitlets.Dict().tag(sync=True)
    _mask_bits = traitlets.Bytes(b"").tag(sync=True, from_json=_bytes_from_json)
    _edit = traitlets.Dict().tag(sync=True, from_json=_edit_from_json, echo_update=False)
    _patch = traitlets.Dict().tag(sync=True)
    _undo_depth = traitlets.Int(0).tag(sync=True)
    _redo_depth = traitlets.Int(0).tag(sync=True)

    def __init__(self, image, mask=None, store=None, key=None, overlay=None, *, overlay_range=None,
                 cmap: str = "inferno", author: str | None = None, save_delay: float = 0.5, **kwargs):
        from workbench.annotations import annotation_key

        arr, name = _as_image(image)
        self._image = arr
        h, w = arr.shape[:2]
        if key is None and _is_sample(image):
            key = image
        self.key: tuple[str, str] | None = annotation_key(key) if key is not None else None
        if store is not None and self.key is None:
            raise ValueError("MaskPainter: a store needs a key: pass key=(kind, stem) or a dataset Sample as image")
        self.store = store
        self.author = author
        self.save_delay = float(save_delay)
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._saved_revision = 0
        self._undo: list[_Change] = []
        self._redo: list[_Change] = []
        self._acks: dict[str, int] = {}
        self._patch_rev = 0
        self._mask = self._initial_mask(mask, image, (h, w))
        title = name if self.key is None else f"{self.key[0]}/{self.key[1]}"
        ov_png, legend = b"", {}
        if overlay is not None:
            rgba, legend = _overlay_rgba(overlay, (h, w), overlay_range, cmap)
            ov_png = _png(rgba)
        super().__init__(_height=h, _width=w, _title=title, _image_png=_png(arr), _overlay_png=ov_png,
                         _overlay_legend=legend, _mask_bits=pack_bits(self._mask), **kwargs)
        self.save_status = "not saved: no store" if store is None else (
            f"loaded from {self._rel(store.mask_path(*self.key))}" if self._loaded_from_store else "no mask saved yet")
        self.observe(self._on_edit, names="_edit")
        _LIVE.add(self)

    # ------------------------------------------------------------------ set-up
    def _initial_mask(self, mask, image, shape) -> np.ndarray:
        self._loaded_from_store = False
        if mask is None and self.store is not None:
            mask = self.store.load(*self.key)
            self._loaded_from_store = mask is not None
        if mask is None and _is_sample(image):
            try:
                mask = image.mask()
            except DataError:
                mask = None
        if mask is None:
            return np.zeros(shape, bool)
        m = np.asarray(mask)
        if m.shape != shape:
            source = f"the stored mask {self.store.mask_path(*self.key)}" if self._loaded_from_store else "mask"
            raise DataError(f"MaskPainter: {source} has shape {m.shape} but the image is {shape} (H, W)")
        if m.dtype != np.bool_:
            values = set(np.unique(m).tolist())
            if not (values <= {0, 1} or values <= {0, 255}):
                raise DataError(f"MaskPainter: mask has values {sorted(values)[:6]}; expected bool (or 0/1, 0/255)")
        return np.ascontiguousarray(m != 0)

    def _rel(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.store.root))
        except ValueError:
            return str(path)

    def __repr__(self) -> str:
        h, w = self.shape
        where = f"{self.key[0]}/{self.key[1]}" if self.key else "no key"
        return f"MaskPainter({where}, {h}x{w}, {int(self._mask.sum())} px masked, mode={self.mode!r})"

    def get_state(self, key=None, drop_defaults=False):
        """Widget state for the page; the packed mask is always the current one."""
        state = super().get_state(key, drop_defaults)
        if "_mask_bits" in state:
            with self._lock:
                state["_mask_bits"] = pack_bits(self._mask)
        return state

    # ------------------------------------------------------------------ accessors
    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the image and the mask."""
        return tuple(self._mask.shape)

    @property
    def image(self) -> np.ndarray:
        """The image as shown (uint8, a copy)."""
        return self._image.copy()

    @property
    def mask(self) -> np.ndarray:
        """A copy of the current mask, bool ``(H, W)``; True = masked (annotated) pixel."""
        with self._lock:
            return self._mask.copy()

    @mask.setter
    def mask(self, value) -> None:
        self.set_mask(value)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def dirty(self) -> bool:
        """True while a change has not been saved to the store yet."""
        return self.store is not None and self._saved_revision != self.revision

    # ------------------------------------------------------------------ editing (Python side)
    def set_mask(self, value) -> None:
        """Replace the whole mask (one undoable change)."""
        new = np.asarray(value)
        if new.shape != self.shape:
            raise DataError(f"MaskPainter: new mask has shape {new.shape}; expected {self.shape} (H, W)")
        new = new.astype(bool)
        with self._lock:
            box = self._commit(0, 0, self._mask ^ new)
        self._after_change(box)

    def clear(self) -> None:
        """Erase the whole mask (one undoable change)."""
        self.set_mask(np.zeros(self.shape, bool))

    def undo(self) -> bool:
        """Undo the last change; False when there is nothing to undo."""
        with self._lock:
            box = self._step(self._undo, self._redo)
        self._after_change(box)
        return box is not None

    def redo(self) -> bool:
        """Redo the last undone change; False when there is nothing to redo."""
        with self._lock:
            box = self._step(self._redo, self._undo)
        self._after_change(box)
        return box is not None

    # ------------------------------------------------------------------ edits from the page
    def _on_edit(self, change) -> None:
        edit = change["new"]
        if not edit:
            return
        op = edit.get("op")
        with self._lock:
            if op == "stroke":
                box = self._stroke(edit)
            elif op == "fill":
                box = self._fill(edit)
            elif op == "undo":
                box = self._step(self._undo, self._redo)
            elif op == "redo":
                box = self._step(self._redo, self._undo)
            elif op == "sync":
                box = None
            else:
                raise ValueError(f"MaskPainter: unknown edit op {op!r}; expected stroke, fill, undo, redo or sync")
            client = edit.get("client")
            if client:
                self._acks.pop(str(client), None)
                self._acks[str(client)] = int(edit.get("seq", 0))
                while len(self._acks) > 32:
                    self._acks.pop(next(iter(self._acks)))
        if op == "sync":
            self._send_patch((0, 0, *self.shape))
        else:
            self._after_change(box)

    def _stroke(self, edit: dict):
        H, W = self.shape
        try:
            x, y, w, h = (int(edit[k]) for k in ("x", "y", "w", "h"))
            value = int(edit["value"])
            bits = edit["bits"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"MaskPainter: a stroke needs integer x, y, w, h, value and bits; got keys "
                             f"{sorted(edit)} ({exc})") from exc
        if value not in (0, 1):
            raise ValueError(f"MaskPainter: stroke value must be 0 (erase) or 1 (paint); got {value}")
        if w == 0 or h == 0:
            return None
        if x < 0 or y < 0 or w < 0 or h < 0 or x + w > W or y + h > H:
            raise ValueError(f"MaskPainter: stroke box x={x}, y={y}, w={w}, h={h} is outside the {W}x{H} image")
        foot = unpack_bits(bytes(bits), (h, w))
        region = self._mask[y:y + h, x:x + w]
        return self._commit(y, x, foot & (region != bool(value)))

    def _fill(self, edit: dict):
        from scipy import ndimage

        H, W = self.shape
        row, col, value = int(edit["row"]), int(edit["col"]), bool(int(edit.get("value", 1)))
        if not (0 <= row < H and 0 <= col < W):
            raise ValueError(f"MaskPainter: fill at row={row}, col={col} is outside the {W}x{H} image")
        if self._mask[row, col] == value:
            return None
        labels, _ = ndimage.label(self._mask == self._mask[row, col])  # 4-connected
        lab = int(labels[row, col])
        sl = ndimage.find_objects(labels, max_label=lab)[lab - 1]
        region = labels[sl] == lab
        return self._commit(sl[0].start, sl[1].start, region)

    # ------------------------------------------------------------------ bookkeeping (under the lock)
    def _commit(self, y: int, x: int, flipped: np.ndarray):
        """Flip ``flipped`` pixels at (y, x); record for undo; return the changed box or None."""
        if not flipped.any():
            return None
        rows = np.flatnonzero(flipped.any(axis=1))
        cols = np.flatnonzero(flipped.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        flipped = flipped[r0:r1, c0:c1]
        y, x = y + int(r0), x + int(c0)
        self._mask[y:y + flipped.shape[0], x:x + flipped.shape[1]] ^= flipped
        self._undo.append(_Change(y, x, flipped))
        self._redo.clear()
        self._trim_undo()
        return (y, x, y + flipped.shape[0], x + flipped.shape[1])

    def _step(self, source: list, target: list):
        if not source:
            return None
        ch = source.pop()
        self._mask[ch.y:ch.y + ch.h, ch.x:ch.x + ch.w] ^= ch.flipped()
        target.append(ch)
        return (ch.y, ch.x, ch.y + ch.h, ch.x + ch.w)

    def _trim_undo(self) -> None:
        total = sum(len(c.bits) for c in self._undo)
        while len(self._undo) > _UNDO_LIMIT or (total > _UNDO_BYTES and len(self._undo) > 1):
            total -= len(self._undo.pop(0).bits)

    # ------------------------------------------------------------------ after a change (no lock held)
    def _after_change(self, box) -> None:
        self._send_patch(box)
        self._undo_depth, self._redo_depth = len(self._undo), len(self._redo)
        if box is None:
            return
        self.set_trait("revision", self.revision + 1)
        if self.store is not None:
            self._schedule_save()
        elif not self.save_status.startswith("not saved"):
            self.save_status = "not saved: no store"

    def _send_patch(self, box) -> None:
        with self._lock:
            self._patch_rev += 1
            patch = {"rev": self._patch_rev, "acks": dict(self._acks), "x": 0, "y": 0, "w": 0, "h": 0, "bits": b""}
            if box is not None:
                y0, x0, y1, x1 = box
                patch.update(x=int(x0), y=int(y0), w=int(x1 - x0), h=int(y1 - y0),
                             bits=pack_bits(self._mask[y0:y1, x0:x1]))
        self._patch = patch

    # ------------------------------------------------------------------ saving
    def _schedule_save(self) -> None:
        with self._save_lock:
            if self._timer is None:
                self._timer = threading.Timer(self.save_delay, self._timer_fired)
                self._timer.name = f"MaskPainter-save-{self.key}"
                self._timer.daemon = True  # never delays an exit: the atexit hook saves what is pending
                self._timer.start()
        self._set_status("unsaved changes")

    def _timer_fired(self) -> None:
        with self._save_lock:
            self._timer = None
        self.save()

    def save(self) -> dict | None:
        """Save the current mask now if it changed since the last save.

        Returns
        -------
        dict or None
            The store's history entry, or None when there was nothing to save (or no store).
        """
        if getattr(self, "store", None) is None:  # also when __init__ failed before setting it
            return None
        with self._save_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        with self._flush_lock:
            with self._lock:
                rev = self.revision
                if rev == self._saved_revision:
                    return None
                snapshot = self._mask.copy()
            try:
                entry = self.store.save(*self.key, snapshot, author=self.author)
            except Exception as exc:  # noqa: BLE001 - reported on the page, retried on the next change
                log.warning("MaskPainter %s: saving failed: %s", self.key, exc)
                self._set_status(f"save failed: {exc}")
                return None
            self._saved_revision = rev
        stamp = datetime.now().strftime("%H:%M:%S")
        self._set_status(f"saved {stamp}: {self._rel(self.store.mask_path(*self.key))} (version {entry['version']})")
        if self.revision != rev:
            self._schedule_save()
        return entry

    def _set_status(self, text: str) -> None:
        try:
            self.save_status = text
        except Exception:  # noqa: BLE001 - the comm may be gone while a kernel shuts down
            pass

    def wait_saved(self, timeout: float = 5.0) -> bool:
        """Block until the last change is saved (or ``timeout`` s pass); True when nothing is pending."""
        deadline = time.monotonic() + timeout
        while self.dirty and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.dirty

    def close(self) -> None:
        """Save pending changes, then close the widget."""
        try:
            self.save()
        finally:
            _LIVE.discard(self)
            super().close()

