"""ClickPrompter: positive and negative clicks on an image, a mask predicted by a click segmenter.

The page shows the image, a marker per click (green "+" positive, red "-" negative) and the
predicted mask over it. Segmentation runs in the kernel, in a background thread: the widget
stays responsive while ``segmenter.predict(image, clicks)`` runs, a prediction made for clicks
that have changed since is discarded, and the latest clicks are predicted next.

Sync format (nothing but the clicks travels as JSON)
----------------------------------------------------
* ``_image_png`` (kernel -> page, once): the image as PNG bytes.
* ``_edit`` (page -> kernel, one message per gesture): ``{"client", "seq", "op", ...}`` with
  ``op`` one of ``"add"`` (``row``, ``col``: image pixel; ``label``: +1 or -1), ``"undo"``
  (remove the last click), ``"clear"`` (remove every click) or ``"accept"`` (save the mask).
* ``_clicks`` and ``_acks`` (kernel -> page): the clicks as ``[row, col, label]`` lists and, per
  page client, the last edit applied (the page draws its own unacknowledged clicks on top).
* ``_mask_bits`` (kernel -> page, after each prediction): the whole mask as *packed bits*
  (:func:`numpy.packbits` of the row-major boolean mask, ``bitorder="big"``, 1 = inside), with
  ``_mask_clicks``, the clicks it was predicted from.
* ``status``, ``_busy`` and ``save_status`` (kernel -> page): what the kernel is doing.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from pathlib import Path

import anywidget
import numpy as np
import traitlets

from widgets._mask_painter import _as_image, _bytes_from_json, _edit_from_json, _is_sample, _png, pack_bits, unpack_bits
from workbench.errors import DataError

__all__ = ["ClickPrompter", "pack_bits", "unpack_bits"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SEGMENTING = "segmenting…"


def _check_click(click, shape: tuple[int, int]) -> tuple[int, int, int]:
    """A click as ``(row, col, label)`` of Python ints, checked against the image ``shape``."""
    try:
        row, col, label = click
    except (TypeError, ValueError):
        raise ValueError(f"ClickPrompter: a click is (row, col, label); got {click!r}") from None
    out = []
    for name, v in (("row", row), ("col", col), ("label", label)):
        if isinstance(v, (bool, np.bool_)) or not float(v).is_integer():
            raise ValueError(f"ClickPrompter: click {name} must be an integer; got {v!r} in {click!r}")
        out.append(int(v))
    row, col, label = out
    h, w = shape
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"ClickPrompter: click at row={row}, col={col} is outside the image "
                         f"({h} rows x {w} columns; rows 0..{h - 1}, columns 0..{w - 1})")
    if label not in (1, -1):
        raise ValueError(f"ClickPrompter: click label must be +1 (positive) or -1 (negative); got {label}")
    return row, col, label


class ClickPrompter(anywidget.AnyWidget):
    """Prompt a click segmenter with positive and negative clicks; accept its mask into a store.

    Left click: positive (+1). Shift-click or right click: negative (-1). Ctrl+wheel zooms at
    the pointer, the middle button (or Alt+drag) pans, "Fit" shows the whole image. Undo the last
    click with the button or Ctrl-Z; "Clear" removes every click; "Accept" saves the mask.

    Parameters
    ----------
    image : ndarray, path or Sample
        uint8 ``(H, W)`` gray or ``(H, W, 3)`` RGB array, an image file, or a
        :class:`~workbench.datasets.Sample` (which also gives the key). Sent to the browser once,
        as PNG; passed to the segmenter as that uint8 array. Any aspect ratio and size.
    segmenter : object
        Anything with ``predict(image, clicks) -> bool (H, W) mask`` where ``clicks`` is a list
        of ``(row, col, label)`` tuples (image pixels, label +1 or -1), e.g.
        :class:`workbench.interactive.ClickSegmenter`. Called from a background thread, one call
        at a time; never called without clicks (no clicks = empty mask).
    store : AnnotationStore, optional
        Where :meth:`accept` saves the mask. The store keeps every earlier version of the key
        (including a mask that was on disk before), so accepting never loses a mask.
    key : (kind, stem) or Sample, optional
        The image's key in the store; default the key of ``image`` when it is a Sample.
    clicks : sequence of (row, col, label), optional
        Initial clicks (predicted at once).
    author : str, optional
        Recorded with the saved version (default: the login name).
    background : bool, default True
        Predict in a background thread. With False every change of the clicks predicts before
        it returns (for scripts; the page then waits for the kernel).
    view_size : int, default 640
        Longest side of the canvas on the page, in CSS pixels.

    Attributes
    ----------
    clicks : list of (int, int, int)
        The current clicks ``(row, col, label)``, oldest first (assign to replace them).
    mask : ndarray of bool, shape (H, W)
        The latest published prediction (a copy); empty before the first click.
    mask_clicks : list of (int, int, int)
        The clicks :attr:`mask` was predicted from (equal to :attr:`clicks` once idle).
    busy : bool
        True while a prediction runs or is due.
    error : Exception or None
        What the segmenter raised on the latest clicks (None after a successful prediction).
    status : str
        ``"segmenting…"``, a summary of the mask, or ``"segmentation failed: ..."``.
    save_status : str
        What happened to the last :meth:`accept`.

    Examples
    --------
    >>> from workbench.interactive import ClickSegmenter                 # doctest: +SKIP
    >>> prompter = ClickPrompter(ds.test[3], ClickSegmenter(), store=AnnotationStore(ds.root))  # doctest: +SKIP
    >>> prompter                                                         # doctest: +SKIP
    >>> prompter.clicks, prompter.mask.sum()                             # doctest: +SKIP
    >>> prompter.accept()                                                # doctest: +SKIP
    """

    _esm = STATIC / "click_prompter.js"
    _css = STATIC / "click_prompter.css"

    view_size = traitlets.Int(640, min=64, max=4096).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    save_status = traitlets.Unicode("").tag(sync=True)

    _height = traitlets.Int(1).tag(sync=True)
    _width = traitlets.Int(1).tag(sync=True)
    _title = traitlets.Unicode("").tag(sync=True)
    _has_store = traitlets.Bool(False).tag(sync=True)
    _image_png = traitlets.Bytes(b"").tag(sync=True, from_json=_bytes_from_json)
    _clicks = traitlets.List().tag(sync=True)
    _acks = traitlets.Dict().tag(sync=True)
    _mask_bits = traitlets.Bytes(b"").tag(sync=True, from_json=_bytes_from_json)
    _mask_clicks = traitlets.List().tag(sync=True)
    _busy = traitlets.Bool(False).tag(sync=True)
    _edit = traitlets.Dict().tag(sync=True, from_json=_edit_from_json, echo_update=False)

    def __init__(self, image, segmenter, store=None, key=None, *, clicks=(), author: str | None = None,
                 background: bool = True, **kwargs):
        from workbench.annotations import annotation_key

        predict = getattr(segmenter, "predict", None)
        if not callable(predict):
            raise TypeError(f"ClickPrompter: the segmenter must have a predict(image, clicks) -> bool mask method; "
                            f"got {type(segmenter).__name__} without one (e.g. workbench.interactive.ClickSegmenter())")
        arr, name = _as_image(image, "ClickPrompter")
        h, w = arr.shape[:2]
        if key is None and _is_sample(image):
            key = image
        self.key: tuple[str, str] | None = annotation_key(key) if key is not None else None
        if store is not None and self.key is None:
            raise ValueError("ClickPrompter: a store needs a key: pass key=(kind, stem) or a dataset Sample as image")
        if store is not None and not callable(getattr(store, "save", None)):
            raise TypeError(f"ClickPrompter: store must be an AnnotationStore (with save(kind, stem, mask)); "
                            f"got {type(store).__name__}")
        self._image = arr
        self.segmenter = segmenter
        self.store = store
        self.author = author
        self.background = bool(background)
        self.error: BaseException | None = None
        self.n_predictions = 0  # calls of segmenter.predict that returned
        self.n_discarded = 0  # predictions thrown away because the clicks changed meanwhile
        self._lock = threading.RLock()  # clicks, generations and publishing
        self._idle = threading.Condition(self._lock)
        self._click_list: list[tuple[int, int, int]] = [_check_click(c, (h, w)) for c in clicks]
        self._gen = 0  # bumped on every change of the clicks
        self._done_gen = 0  # the generation whose mask (or error) is published
        self._worker: threading.Thread | None = None
        self._accept_due: int | None = None  # a page "accept" waiting for the prediction of this generation
        self._mask = np.zeros((h, w), bool)
        self._published_clicks: list[tuple[int, int, int]] = []
        title = name if self.key is None else f"{self.key[0]}/{self.key[1]}"
        super().__init__(_height=h, _width=w, _title=title, _image_png=_png(arr), _has_store=store is not None,
                         _mask_bits=pack_bits(self._mask), **kwargs)
        self.save_status = ("no store: accepting needs ClickPrompter(..., store=AnnotationStore(root), "
                            "key=(kind, stem))" if store is None else "not accepted yet")
        self.status = "click on the image: left = positive, shift or right = negative"
        self.observe(self._on_edit, names="_edit")
        if self._click_list:
            self._changed()

    def __repr__(self) -> str:
        h, w = self.shape
        where = f"{self.key[0]}/{self.key[1]}" if self.key else "no key"
        return (f"ClickPrompter({where}, {h}x{w}, {len(self._click_list)} clicks, "
                f"{int(self._mask.sum())} px in the mask{', segmenting' if self.busy else ''})")

    # ------------------------------------------------------------------ accessors
    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the image and the mask."""
        return tuple(self._mask.shape)

    @property
    def image(self) -> np.ndarray:
        """The image as shown and given to the segmenter (uint8, a copy)."""
        return self._image.copy()

    @property
    def clicks(self) -> list[tuple[int, int, int]]:
        """The current clicks ``(row, col, label)`` in image pixels, oldest first."""
        with self._lock:
            return list(self._click_list)

    @clicks.setter
    def clicks(self, value) -> None:
        new = [_check_click(c, self.shape) for c in value]
        with self._lock:  # the change and its generation together: never "new clicks, not busy"
            self._click_list = new
            self._changed()

    @property
    def mask(self) -> np.ndarray:
        """The latest prediction, bool ``(H, W)`` (a copy); True = inside the object."""
        with self._lock:
            return self._mask.copy()

    @property
    def mask_clicks(self) -> list[tuple[int, int, int]]:
        """The clicks :attr:`mask` was predicted from."""
        with self._lock:
            return list(self._published_clicks)

    @property
    def busy(self) -> bool:
        """True while the mask of the current clicks is not published yet."""
        with self._lock:
            return self._done_gen != self._gen

    # ------------------------------------------------------------------ editing (Python side)
    def add_click(self, row: int, col: int, label: int = 1) -> None:
        """Add a click at image pixel ``(row, col)``; ``label`` +1 (positive) or -1 (negative)."""
        click = _check_click((row, col, label), self.shape)
        with self._lock:
            self._click_list.append(click)
            self._changed()

    def undo(self) -> bool:
        """Remove the last click; False when there is none."""
        with self._lock:
            if not self._click_list:
                return False
            self._click_list.pop()
            self._changed()
        return True

    def clear(self) -> None:
        """Remove every click (the mask becomes empty)."""
        with self._lock:
            had = bool(self._click_list)
            self._click_list = []
            if had:
                self._changed()

    # ------------------------------------------------------------------ edits from the page
    def _on_edit(self, change) -> None:
        edit = change["new"]
        if not edit:
            return
        op = edit.get("op")
        with self._lock:
            changed = False
            if op == "add":
                try:
                    click = _check_click((edit.get("row"), edit.get("col"), edit.get("label")), self.shape)
                except (TypeError, ValueError) as exc:  # a page on a stale layout: report, never crash the comm
                    log.warning("%s", exc)
                else:
                    self._click_list.append(click)
                    changed = True
            elif op == "undo":
                if self._click_list:
                    self._click_list.pop()
                    changed = True
            elif op == "clear":
                changed = bool(self._click_list)
                self._click_list = []
            elif op != "accept":
                raise ValueError(f"ClickPrompter: unknown edit op {op!r}; expected add, undo, clear or accept")
            acks = dict(self._acks)
            client = edit.get("client")
            if client:
                acks.pop(str(client), None)  # most recent client last, so the oldest are dropped first
                acks[str(client)] = int(edit.get("seq", 0))
                while len(acks) > 32:
                    acks.pop(next(iter(acks)))
            if changed:
                self._changed(acks)
            else:
                self._acks = acks
        if op == "accept":
            self._accept_from_page()

    def _accept_from_page(self) -> None:
        if self.store is None:
            self.save_status = ("cannot accept: no store. Create the widget with "
                                "ClickPrompter(image, segmenter, store=AnnotationStore(root), key=(kind, stem))")
            return
        with self._lock:
            if self.busy:  # save once the prediction of these clicks is published (the worker does it)
                self._accept_due = self._gen
                due = True
            else:
                due = False
        if due:
            self.save_status = "accepting after segmentation…"
        else:
            self._save_quietly()

    # ------------------------------------------------------------------ prediction
    def _changed(self, acks: dict | None = None) -> None:
        """The clicks changed: tell the page, predict them (in the background).

        Called with the lock held, right after the change, so no reader sees the new clicks
        with the old generation (``busy`` False before their mask exists)."""
        with self._lock:
            self._gen += 1
            self._accept_due = None
            clicks = [list(c) for c in self._click_list]
            with self.hold_sync():
                self._clicks = clicks
                if acks is not None:
                    self._acks = acks
                self._busy = True
                self.status = SEGMENTING
            start = self.background and (self._worker is None or not self._worker.is_alive())
            if start:
                self._worker = threading.Thread(target=self._work, name="ClickPrompter-predict", daemon=True)
                self._worker.start()
        if not self.background:
            self._work()

    def _work(self) -> None:
        """Predict the latest clicks until the published mask is the one of the current clicks."""
        while True:
            with self._lock:
                gen, clicks = self._gen, list(self._click_list)
                if gen == self._done_gen:
                    if threading.current_thread() is self._worker:
                        self._worker = None
                    return
            mask, error = None, None
            if clicks:
                try:
                    mask = self._predict(clicks)
                except Exception as exc:  # noqa: BLE001 - reported on the page and in .error
                    error = exc
            else:
                mask = np.zeros(self.shape, bool)
            with self._lock:
                if gen != self._gen:  # the clicks changed meanwhile: stale, predict the latest
                    self.n_discarded += 1
                    continue
                accept = self._accept_due == gen
                self._accept_due = None
                self._publish(gen, clicks, mask, error)
            if accept:
                self._save_quietly()

    def _predict(self, clicks: list[tuple[int, int, int]]) -> np.ndarray:
        out = self.segmenter.predict(self._image, list(clicks))
        self.n_predictions += 1
        m = np.asarray(out)
        if m.shape != self.shape:
            raise DataError(f"ClickPrompter: {type(self.segmenter).__name__}.predict returned shape {m.shape}; "
                            f"expected a bool mask of the image's size {self.shape} (H, W)")
        if m.dtype != np.bool_:
            values = np.unique(m)
            if not set(values.tolist()) <= {0, 1}:
                raise DataError(f"ClickPrompter: {type(self.segmenter).__name__}.predict returned values "
                                f"{values[:6].tolist()}; expected a bool mask (or 0/1)")
        return np.ascontiguousarray(m != 0)

    def _publish(self, gen: int, clicks, mask, error) -> None:
        """Make ``mask`` (or ``error``) the published result of generation ``gen`` (lock held)."""
        self._done_gen = gen
        self.error = error
        if error is not None:
            log.warning("ClickPrompter: segmentation failed: %s", error)
            status = f"segmentation failed: {type(error).__name__}: {error}"
        else:
            self._mask = mask
            self._published_clicks = list(clicks)
            n = len(clicks)
            status = (f"{n} click{'s' if n != 1 else ''} · {int(mask.sum())} px in the mask" if n
                      else "no clicks · empty mask")
        try:
            with self.hold_sync():
                if error is None:
                    self._mask_clicks = [list(c) for c in clicks]
                    self._mask_bits = pack_bits(mask)  # last: observers of it see the matching clicks
                self._busy = False
                self.status = status
        except Exception:  # noqa: BLE001 - the comm may be gone while a kernel shuts down
            pass
        self._idle.notify_all()

    def wait(self, timeout: float | None = 30.0) -> bool:
        """Block until the mask of the current clicks is published.

        Returns
        -------
        bool
            True when idle; False when ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._done_gen != self._gen:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # ------------------------------------------------------------------ accepting
    def accept(self, timeout: float | None = 60.0) -> dict:
        """Save the mask of the current clicks to the store under :attr:`key`.

        Waits for a running prediction first. The store keeps every earlier version of the key
        (a different mask already there, e.g. the dataset's ground truth, is archived in its
        history, never lost); accepting the same mask twice records nothing new.

        Parameters
        ----------
        timeout : float or None, default 60
            Seconds to wait for the prediction of the current clicks.

        Returns
        -------
        dict
            The store's history entry of the saved mask (``version``, ``path``, ...).

        Raises
        ------
        ValueError
            The widget has no store.
        TimeoutError
            The prediction did not finish within ``timeout``.
        RuntimeError
            The segmenter failed on the current clicks (see :attr:`error`).
        """
        if self.store is None:
            raise ValueError("ClickPrompter.accept: no store to save to. Create the widget with "
                             "ClickPrompter(image, segmenter, store=AnnotationStore(root), key=(kind, stem)), "
                             "or read prompter.mask yourself.")
        if not self.wait(timeout):
            raise TimeoutError(f"ClickPrompter.accept: the segmenter did not finish within {timeout} s")
        with self._lock:
            if self.error is not None:
                raise RuntimeError(f"ClickPrompter.accept: the segmenter failed on the current clicks, there is no "
                                   f"mask to accept: {self.error}") from self.error
            mask = self._mask.copy()
        previous = self.store.history(*self.key)
        entry = self.store.save(*self.key, mask, author=self.author)
        self._set_save_status(entry, previous)
        return entry

    def _save_quietly(self) -> None:
        """Accept from the page: errors go to ``save_status`` (nothing can raise into the page)."""
        try:
            with self._lock:
                if self.error is not None:
                    raise RuntimeError(f"the segmenter failed: {self.error}")
                mask = self._mask.copy()
            previous = self.store.history(*self.key)
            entry = self.store.save(*self.key, mask, author=self.author)
        except Exception as exc:  # noqa: BLE001 - reported on the page
            log.warning("ClickPrompter %s: accepting failed: %s", self.key, exc)
            self._set(save_status=f"accept failed: {exc}")
            return
        self._set_save_status(entry, previous)

    def _set_save_status(self, entry: dict, previous: list[dict]) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        where = self.store.mask_path(*self.key)
        try:
            where = where.relative_to(self.store.root)
        except ValueError:
            pass
        replaced = ""
        if previous and previous[-1].get("sha256") != entry.get("sha256"):
            # the mask replaced: now recorded (a mask found on disk is archived by this save)
            older = [h for h in self.store.history(*self.key)
                     if h.get("version") is not None and h["version"] < entry["version"]]
            replaced = (f"; the previous mask is kept as version {older[-1]['version']}" if older
                        else "; the previous mask is kept in the store's history")
        self._set(save_status=f"accepted {stamp}: {where} (version {entry['version']}{replaced})")

    def _set(self, **traits) -> None:
        try:
            with self.hold_sync():
                for k, v in traits.items():
                    setattr(self, k, v)
        except Exception:  # noqa: BLE001 - the comm may be gone while a kernel shuts down
            pass
