"""Turning images into backbone features: preprocessing, batching, threads and the disk cache."""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import logging
import os
import zipfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from workbench._io import atomic_write
from workbench.errors import DataError
from workbench.features._efficientnet import (
    STAGE_STRIDES,
    EfficientNetLite,
    canonical_backbone,
    fuse_batchnorm,
    load_backbone,
)

__all__ = [
    "FeatureExtractor",
    "to_tensor",
    "imagenet_preprocess",
    "default_cache_dir",
    "num_threads",
]

log = logging.getLogger(__name__)

# Bump when preprocessing or the stored format changes: old cache entries are then ignored.
_CACHE_FORMAT = 2  # 2: uint8 images are resized as uint8

ImageLike = "str | os.PathLike | np.ndarray"


def default_cache_dir() -> Path:
    """``$WORKBENCH_CACHE_DIR`` or ``~/.cache/outlier-workbench``."""
    env = os.environ.get("WORKBENCH_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "outlier-workbench"


@contextlib.contextmanager
def num_threads(n: int | None):
    """Run torch with ``n`` intra-op threads inside the block, restoring the old count after."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _as_hw3_float(image: np.ndarray, name: str = "image") -> torch.Tensor:
    """``(3, H, W)`` float32 in [0, 1] from a gray/RGB/RGBA uint8 or float array."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        arr = arr[..., :3] if arr.shape[2] != 1 else arr[..., 0]
    if arr.ndim not in (2, 3):
        raise DataError(f"{name}: expected an image of shape (H, W), (H, W, 3) or (H, W, 4); found {arr.shape}")
    if arr.dtype == np.uint8:
        if not arr.flags.writeable:  # torch warns on read-only buffers; .float() copies anyway
            arr = arr.copy()
        t = torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)
    elif arr.dtype == np.uint16:
        t = torch.from_numpy(arr.astype(np.float32) / 65535.0)
    elif arr.dtype == np.bool_:
        t = torch.from_numpy(arr.astype(np.float32))
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.size and (np.nanmin(arr) < -1e-3 or np.nanmax(arr) > 1 + 1e-3):
            raise DataError(
                f"{name}: float images must be scaled to [0, 1]; found values in "
                f"[{np.nanmin(arr):.3g}, {np.nanmax(arr):.3g}] (pass uint8 or divide by the maximum)"
            )
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    else:
        raise DataError(f"{name}: unsupported image dtype {arr.dtype}; expected uint8, uint16 or float in [0, 1]")
    if t.ndim == 2:
        t = t.unsqueeze(0).expand(3, -1, -1)
    else:
        t = t.permute(2, 0, 1)
    return t


def to_tensor(image: np.ndarray, size: tuple[int, int] | None = None, name: str = "image") -> torch.Tensor:
    """Backbone input ``(3, H, W)`` scaled to mean = std = 0.5, resized to ``size`` if given.

    Gray images are repeated over three channels; uint8 is divided by 255, float must be in
    [0, 1]. Resizing is bilinear with antialiasing (so downscaling does not alias).
    """
    arr = np.asarray(image)
    if (size is not None and arr.dtype == np.uint8 and arr.ndim in (2, 3)
            and (arr.ndim == 2 or arr.shape[2] in (1, 3, 4)) and tuple(arr.shape[:2]) != tuple(size)):
        return _resize_uint8(arr, tuple(int(s) for s in size))
    t = _as_hw3_float(image, name)
    if size is not None and tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t.unsqueeze(0), size=tuple(int(s) for s in size), mode="bilinear",
                          antialias=True, align_corners=False)[0]
    return (t - 0.5) / 0.5


def _resize_uint8(arr: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """:func:`to_tensor` of a uint8 image that needs resizing: antialiased bilinear resize of
    the uint8 pixels (torch's vectorised uint8 kernel, about 4x faster than resizing floats;
    results differ by at most one grey level), then scaling."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        arr = arr[..., :3]
    if not arr.flags.writeable:  # torch warns on read-only buffers
        arr = arr.copy()
    t = torch.from_numpy(np.ascontiguousarray(arr))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]  # (1, C, H, W), channels-last for RGB
    t = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    t = t.float().div_(127.5).sub_(1.0)
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t.contiguous()


def imagenet_preprocess(image: np.ndarray, crop: int = 224, resize: int | None = None) -> torch.Tensor:
    """The classic ImageNet evaluation input ``(1, 3, crop, crop)``: shorter side to ``resize``
    (default ``crop / 0.875``), centre crop, mean = std = 0.5. Used to check the classifier,
    not for anomaly features. Native crops: Lite0 224, Lite1 240, Lite2 260."""
    resize = round(crop / 0.875) if resize is None else resize
    t = _as_hw3_float(image)
    h, w = t.shape[-2:]
    s = resize / min(h, w)
    t = F.interpolate(t.unsqueeze(0), size=(round(h * s), round(w * s)), mode="bilinear",
                      antialias=True, align_corners=False)
    h, w = t.shape[-2:]
    top, left = (h - crop) // 2, (w - crop) // 2
    t = t[..., top:top + crop, left:left + crop]
    return (t - 0.5) / 0.5


def _read(item, index: int) -> tuple[np.ndarray, str]:
    if isinstance(item, np.ndarray):
        return item, f"image #{index}"
    if hasattr(item, "image") and callable(item.image):  # a datasets.Sample
        return item.image(), str(getattr(item, "path", f"image #{index}"))
    from workbench.datasets import read_image

    return read_image(item), str(item)


_BATCH_PIXELS = 160_000


@functools.lru_cache(maxsize=None)
def _fused_backbone(name: str) -> EfficientNetLite:
    # shared by all extractors of a process; inference only, never trained
    return fuse_batchnorm(load_backbone(name))


def _header_size(item) -> tuple[int, int]:
    """``(H, W)`` of an image file from its header, without decoding the pixels."""
    from workbench.datasets import image_shape

    return tuple(image_shape(item)[:2])


def _tile_spans(n: int, tile: int, core: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the tiles along one axis of length ``n`` (a multiple of 32).

    Starts are multiples of ``core``; the last tile ends at ``n`` and is longer than the two
    margins (``tile - core``), so every tile has a non-empty core.
    """
    spans, start = [], 0
    while True:
        stop = min(start + tile, n)
        spans.append((start, stop))
        if stop == n:
            return spans
        start += core


def _pad_to_multiple(batch: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    """Reflect-pad ``(n, 3, H, W)`` at the bottom/right to multiples of ``multiple``.

    Every level of the backbone then has an even size, so TF "SAME" padding is the same
    for the whole image and for any tile whose corners lie on the 32-pixel grid: this is
    what makes tiled and untiled features agree.
    """
    h, w = batch.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        batch = F.pad(batch, (0, pw, 0, ph), mode=mode)
    return batch


class FeatureExtractor:
    """Pretrained EfficientNet-Lite patch features for a sequence of images, as numpy.

    Parameters
    ----------
    backbone : str, default "efficientnet_lite0"
        ``efficientnet_lite0``, ``efficientnet_lite1`` or ``efficientnet_lite2`` (``lite0`` ... accepted).
    stages : tuple of int, default (8, 16)
        Strides of the stage outputs to return (subset of 4, 8, 16, 32).
    image_size : (H, W) or None
        Resize every image to this size first. ``None`` keeps each image's own size (then
        :meth:`transform` needs images of equal size; :meth:`transform_each` does not).
    batch_size : int or "auto", default "auto"
        Images per forward pass. ``"auto"`` packs about 160k input pixels per batch
        (2 images at 256x256, 1 at 768x312): on CPU, large batches of large images are
        slower per image than small ones (cache misses in the depthwise convolutions).
    threads : int or None
        torch intra-op threads while extracting (``None`` leaves torch's setting alone).
    tile : (th, tw) or None
        Extract features tile by tile: the (resized) image is cut into overlapping tiles of
        this size (multiples of 32), each tile's feature map is cropped to its core (without
        the ``tile_overlap`` margin, which absorbs the tile border's padding effects) and the
        cores are stitched into one feature map of the whole image. Use it to run the
        backbone at native resolution on large images (memory stays bounded by one tile) so
        that small defects survive; features agree with the untiled ones up to the
        receptive-field effects at tile borders. Images are reflect-padded at the bottom and
        right to a whole number of tile steps; the padding is cropped from the result.
    tile_overlap : int, default 64
        Margin (pixels, a multiple of 32) discarded on each inner side of a tile. 64 makes
        stride-16 features agree with untiled ones to about 1% (stride 8: exactly).
    cache : bool, default True
        Keep features of images given as file paths on disk, keyed by the file's content
        hash, backbone, input size and stages. Entries are written atomically; a damaged
        entry is detected, logged and recomputed.
    cache_dir : path or None
        Defaults to ``$WORKBENCH_CACHE_DIR`` or ``~/.cache/outlier-workbench``.
    progress : bool, default False
        Show a tqdm progress bar.

    Notes
    -----
    Features are float32 ``(C, ceil(H / stride), ceil(W / stride))`` per stage.
    Extraction runs under ``torch.inference_mode`` with the model in eval mode.
    """

    def __init__(self, backbone: str = "efficientnet_lite0", *, stages: Sequence[int] = (8, 16),
                 image_size: tuple[int, int] | None = None, batch_size: int | str = "auto",
                 threads: int | None = None, tile: tuple[int, int] | None = None, tile_overlap: int = 64,
                 cache: bool = True, cache_dir: str | os.PathLike | None = None,
                 progress: bool = False):
        self.backbone = canonical_backbone(backbone)
        self.stages = tuple(int(s) for s in stages)
        bad = [s for s in self.stages if s not in STAGE_STRIDES]
        if bad or not self.stages:
            raise ValueError(f"stages must be a non-empty subset of {STAGE_STRIDES}; got {tuple(stages)}")
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        if batch_size != "auto" and int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive int or 'auto'; got {batch_size!r}")
        self.batch_size = batch_size if batch_size == "auto" else int(batch_size)
        self.threads = threads
        self.tile = None if tile is None else (int(tile[0]), int(tile[1]))
        self.tile_overlap = int(tile_overlap)
        if self.tile is not None:
            if any(t % 32 or t < 64 for t in self.tile):
                raise ValueError(f"tile sides must be multiples of 32 and at least 64; got {tile}")
            if self.tile_overlap % 32 or self.tile_overlap < 0 or 2 * self.tile_overlap >= min(self.tile):
                raise ValueError(f"tile_overlap must be a multiple of 32 smaller than half the tile; got {tile_overlap}")
        self.cache = bool(cache)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.progress = progress
        self._model: EfficientNetLite | None = None
        self.cache_hits = 0
        self.cache_misses = 0

    # -- model ---------------------------------------------------------------------------
    @property
    def model(self) -> EfficientNetLite:
        """The backbone used for extraction: pretrained weights with BatchNorm folded in."""
        if self._model is None:
            self._model = _fused_backbone(self.backbone)
        return self._model

    def _batch_for(self, size: tuple[int, int]) -> int:
        if self.tile is not None:
            size = (min(self.tile[0], size[0]), min(self.tile[1], size[1]))
        if self.batch_size == "auto":
            return max(1, min(16, _BATCH_PIXELS // max(1, size[0] * size[1])))
        return self.batch_size

    @property
    def channels(self) -> dict[int, int]:
        """Channels per stage, e.g. ``{8: 40, 16: 112}`` for Lite0."""
        return {s: self.model.stage_channels[s] for s in self.stages}

    def forward(self, batch: torch.Tensor) -> dict[int, torch.Tensor]:
        """Stage outputs ``{stride: (n, C, ceil(H/stride), ceil(W/stride))}`` for an already
        normalised batch ``(n, 3, H, W)`` (no cache).

        The batch is reflect-padded to multiples of 32 first (then cropped back); with
        :attr:`tile` set, each image is processed tile by tile and stitched.
        """
        h, w = batch.shape[-2:]
        with num_threads(self.threads), torch.inference_mode():
            padded = _pad_to_multiple(batch)
            if self.tile is None:
                out = self.model(padded, stages=self.stages)
            else:
                out = self._forward_tiled(padded)
        return {s: o[:, :, : -(-h // s), : -(-w // s)] for s, o in out.items()}

    def _forward_tiled(self, batch: torch.Tensor) -> dict[int, torch.Tensor]:
        n, _, h, w = batch.shape
        m = self.tile_overlap
        rows = _tile_spans(h, self.tile[0], self.tile[0] - 2 * m)
        cols = _tile_spans(w, self.tile[1], self.tile[1] - 2 * m)
        out = {s: torch.empty((n, self.model.stage_channels[s], h // s, w // s)) for s in self.stages}
        for iy, (y0, y1) in enumerate(rows):
            top = y0 if iy == 0 else y0 + m
            bottom = y1 if iy == len(rows) - 1 else y1 - m
            for ix, (x0, x1) in enumerate(cols):
                left = x0 if ix == 0 else x0 + m
                right = x1 if ix == len(cols) - 1 else x1 - m
                feats = self.model(batch[:, :, y0:y1, x0:x1], stages=self.stages)
                for s, f in feats.items():
                    out[s][:, :, top // s:bottom // s, left // s:right // s] = \
                        f[:, :, (top - y0) // s:(bottom - y0) // s, (left - x0) // s:(right - x0) // s]
        return out

    # -- cache ---------------------------------------------------------------------------
    def _cache_root(self) -> Path:
        return (self.cache_dir or default_cache_dir()) / "features"

    def _cache_key(self, content_hash: str, size: tuple[int, int]) -> str:
        spec = f"v{_CACHE_FORMAT}|{self.backbone}|{size[0]}x{size[1]}|{','.join(map(str, self.stages))}"
        if self.tile is not None:
            spec += f"|tile{self.tile[0]}x{self.tile[1]}+{self.tile_overlap}"
        return hashlib.sha256(f"{content_hash}|{spec}".encode()).hexdigest()

    def _cache_path(self, key: str) -> Path:
        return self._cache_root() / key[:2] / f"{key}.npz"

    def _cache_load(self, path: Path, size: tuple[int, int]) -> dict[int, np.ndarray] | None:
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                out = {s: z[f"s{s}"] for s in self.stages}
            for s, a in out.items():
                expect = (self.model.stage_channels[s], -(-size[0] // s), -(-size[1] // s))
                if a.shape != expect or a.dtype != np.float32 or not np.isfinite(a).all():
                    raise ValueError(f"stage {s}: shape {a.shape} dtype {a.dtype}, expected {expect} float32")
            return out
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("feature cache entry %s is damaged (%s); recomputing it", path, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def _cache_store(self, path: Path, feats: dict[int, np.ndarray]) -> None:
        try:
            with atomic_write(path, "wb") as fh:
                np.savez(fh, **{f"s{s}": a for s, a in feats.items()})
        except OSError as exc:  # a full or read-only disk must not stop the run
            log.warning("could not write feature cache entry %s: %s", path, exc)

    @staticmethod
    def _content_hash(item) -> str | None:
        if isinstance(item, (str, os.PathLike)):
            from workbench._io import file_sha256

            try:
                return file_sha256(item)
            except OSError as exc:
                raise DataError(f"{item}: cannot read the file ({exc})") from exc
        return None

    # -- extraction ----------------------------------------------------------------------
    def _lookup(self, item) -> tuple[dict[int, np.ndarray] | None, Path | None]:
        """Cached features of ``item`` (or None) and where to store them (None: no caching)."""
        content_hash = self._content_hash(item) if self.cache else None
        if content_hash is None:
            return None, None
        size = self.image_size or _header_size(item)
        cpath = self._cache_path(self._cache_key(content_hash, size))
        hit = self._cache_load(cpath, size)
        if hit is not None:
            self.cache_hits += 1
        else:
            self.cache_misses += 1
        return hit, cpath

    def _run(self, pending: list) -> list[tuple[int, dict[int, np.ndarray]]]:
        """Forward a list of ``(index, tensor, cache_path)`` of one input size."""
        if not pending:
            return []
        out = self.forward(torch.stack([p[1] for p in pending]))
        done = []
        for j, (idx, _, cpath) in enumerate(pending):
            feats = {s: out[s][j].numpy().copy() for s in self.stages}
            if cpath is not None:
                self._cache_store(cpath, feats)
            done.append((idx, feats))
        pending.clear()
        return done

    def iter_batches(self, images: Iterable) -> Iterator[tuple[list[int], list[dict[int, np.ndarray]]]]:
        """Yield ``(indices, features)`` in input order, features one ``{stride: (C, h, w)}`` per image.

        Consecutive images of equal input size share a forward pass; the cache is consulted
        per image, so memory stays bounded by one batch whatever the number of images.
        """
        items = list(images)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc=f"features ({self.backbone})", unit="img")
        pending: list = []
        ready: list[tuple[int, dict[int, np.ndarray]]] = []
        try:
            for i, hit, cpath, image, name in self._read_ahead(items):
                if hit is not None:
                    ready.append((i, hit))
                else:
                    tensor = to_tensor(image, self.image_size, name)
                    if pending and pending[0][1].shape != tensor.shape:
                        ready.extend(self._run(pending))
                    pending.append((i, tensor, cpath))
                    if len(pending) >= self._batch_for(tuple(tensor.shape[-2:])):
                        ready.extend(self._run(pending))
                # keep input order: release only what precedes the first pending image
                limit = pending[0][0] if pending else len(items)
                out = [r for r in ready if r[0] < limit]
                if out:
                    ready = [r for r in ready if r[0] >= limit]
                    out.sort(key=lambda r: r[0])
                    if bar is not None:
                        bar.update(len(out))
                    yield [r[0] for r in out], [r[1] for r in out]
            ready.extend(self._run(pending))
            if ready:
                ready.sort(key=lambda r: r[0])
                if bar is not None:
                    bar.update(len(ready))
                yield [r[0] for r in ready], [r[1] for r in ready]
        finally:
            if bar is not None:
                bar.close()

    def _read_ahead(self, items: list, depth: int = 2):
        """``(index, cached features or None, cache path, image, name)`` per item, in order.

        A helper thread looks up the cache and decodes the next ``depth`` images while the
        backbone runs (file reading, hashing and decoding release the GIL). Resizing stays
        on the calling thread: a second thread of torch ops would compete with the
        backbone's threads for the cores.
        """
        from concurrent.futures import ThreadPoolExecutor

        def load(i: int, item):
            hit, cpath = self._lookup(item)
            if hit is not None:
                return i, hit, cpath, None, None
            image, name = _read(item, i)
            return i, None, cpath, image, name

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-read") as pool:
            queue = collections.deque(pool.submit(load, i, items[i]) for i in range(min(depth, len(items))))
            nxt = len(queue)
            while queue:
                result = queue.popleft().result()  # re-raises the helper's error here, in order
                if nxt < len(items):
                    queue.append(pool.submit(load, nxt, items[nxt]))
                    nxt += 1
                yield result

    def transform_each(self, images: Iterable) -> list[dict[int, np.ndarray]]:
        """Features of every image, one ``{stride: (C, h, w)}`` dict per image (any sizes)."""
        items = list(images)
        result: list[dict[int, np.ndarray] | None] = [None] * len(items)
        for idx, feats in self.iter_batches(items):
            for i, f in zip(idx, feats):
                result[i] = f
        return result  # type: ignore[return-value]

    def transform(self, images: Iterable) -> dict[int, np.ndarray]:
        """Stacked features ``{stride: (n, C, h, w)}``; all images must share one input size.

        Set ``image_size`` to resize images of different sizes to one size, or use
        :meth:`transform_each`.
        """
        each = self.transform_each(images)
        if not each:
            return {s: np.zeros((0, self.model.stage_channels[s], 0, 0), np.float32) for s in self.stages}
        shapes = {f[self.stages[0]].shape for f in each}
        if len(shapes) > 1:
            raise DataError(
                f"images have different sizes (feature shapes {sorted(shapes)}); set image_size=(H, W) "
                "to resize them to one size, or call transform_each()"
            )
        return {s: np.stack([f[s] for f in each]) for s in self.stages}

    def __repr__(self) -> str:
        return (f"FeatureExtractor(backbone={self.backbone!r}, stages={self.stages}, "
                f"image_size={self.image_size}, batch_size={self.batch_size}, cache={self.cache})")
