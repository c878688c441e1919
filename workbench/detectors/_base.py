"""What every image detector shares: inputs, input size, features, maps, thresholds, files.

A detector subclass implements three things on feature maps (``{stride: (C, h, w)}``):
``_fit_features(iterator)`` to build its state, ``_patch_scores(features) -> (h, w)`` to
score one image's patches (higher = more anomalous), and ``_state()/_set_state()`` for
saving. Everything else (reading and checking images, choosing the input size, tiling,
upsampling and smoothing maps, calibrating thresholds on held-out normal images,
save/load) lives here.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from workbench._io import atomic_write
from workbench._version import __version__
from workbench.errors import DataError, ModelFileError, WorkbenchError
from workbench.features import FeatureExtractor, canonical_backbone, to_tensor

__all__ = ["Scores", "ImageDetector", "load_detector", "as_image_items", "resolve_image_size"]

log = logging.getLogger(__name__)

_FILE_FORMAT = "outlier-workbench-image-detector"
_FILE_VERSION = 1

#: Default pixel budget of the model input when ``image_size="auto"``: 768x312 for the
#: 1130x460 BSData images. Larger inputs keep small defects; cost grows at least linearly
#: with it.
AUTO_PIXELS = 240_000


# ----------------------------------------------------------------------------- results
@dataclass
class Scores:
    """What an image detector's ``predict`` returns.

    Attributes
    ----------
    image_scores : ndarray of float, shape (n,)
        Higher = more anomalous.
    anomaly_maps : list of ndarray of float32, shape (H_i, W_i)
        One map per image at that image's own size; higher = more anomalous.
    image_threshold, pixel_threshold : float or None
        Scores at or above these are called anomalous. None when the detector could not
        calibrate them (see ``threshold_info``).
    threshold_info : dict
        How the thresholds were set (source, false-positive rate, number of normal images
        and pixels used).
    names : list of str
        File path or ``"image #i"`` for each image, for reports.
    """

    image_scores: np.ndarray
    anomaly_maps: list[np.ndarray]
    image_threshold: float | None = None
    pixel_threshold: float | None = None
    threshold_info: dict = field(default_factory=dict)
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_scores)

    def labels(self) -> np.ndarray:
        """Predicted image labels (1 = anomalous) at ``image_threshold``."""
        if self.image_threshold is None:
            raise WorkbenchError("no image threshold: fit the detector with held-out normal images first")
        return (np.asarray(self.image_scores) >= self.image_threshold).astype(int)

    def masks(self, threshold: float | None = None) -> list[np.ndarray]:
        """Boolean anomaly masks, ``map >= threshold`` (default ``pixel_threshold``)."""
        t = self.pixel_threshold if threshold is None else threshold
        if t is None:
            raise WorkbenchError("no pixel threshold: fit the detector with held-out normal images first")
        return [m >= t for m in self.anomaly_maps]


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class _Item:
    source: Any  # path or ndarray
    name: str
    shape: tuple[int, ...]  # (H, W) gray or (H, W, 3) colour

    @property
    def size(self) -> tuple[int, int]:
        return int(self.shape[0]), int(self.shape[1])

    @property
    def gray(self) -> bool:
        return len(self.shape) == 2


def as_image_items(images, split: str = "train") -> list[_Item]:
    """Normalise the accepted image inputs to a list of items with header-level shapes.

    Accepts a :class:`~workbench.datasets.FolderDataset` (its ``split``), a folder path
    (its images), or a sequence of file paths, dataset samples or arrays.
    """
    from workbench.datasets import FolderDataset, Sample, image_shape

    if isinstance(images, FolderDataset):
        images = images.train if split == "train" else images.test
    elif isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
        from workbench.datasets._folder import _list_images

        images = _list_images(Path(images))
    elif isinstance(images, (str, os.PathLike, np.ndarray)) and not (
            isinstance(images, np.ndarray) and images.ndim == 4):
        images = [images]
    items = []
    for i, im in enumerate(images):
        if isinstance(im, _Item):
            items.append(im)
        elif isinstance(im, Sample):
            shape = im.shape if im.shape is not None else image_shape(im.path)
            items.append(_Item(str(im.path), str(im.path), tuple(shape)))
        elif isinstance(im, (str, os.PathLike)):
            items.append(_Item(str(im), str(im), tuple(image_shape(im))))
        else:
            arr = np.asarray(im)
            if arr.ndim == 3 and arr.shape[2] == 1:
                arr = arr[..., 0]
            if arr.ndim == 3 and arr.shape[2] == 4:
                arr = arr[..., :3]
            if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
                raise DataError(f"image #{i}: expected shape (H, W) or (H, W, 3); found {arr.shape}")
            items.append(_Item(arr, f"image #{i}", tuple(arr.shape)))
    return items


def resolve_image_size(sizes: Sequence[tuple[int, int]], image_size, tile) -> tuple[int, int]:
    """The model input size ``(H, W)`` for training images of the given sizes.

    ``"auto"``: the most common training size, kept at native resolution when tiling or
    when it has at most :data:`AUTO_PIXELS` pixels, otherwise scaled down (aspect kept) to
    that many pixels, sides rounded to multiples of 8.
    """
    if image_size is None or (image_size == "auto" and tile is not None):
        image_size = "auto" if tile is None else "native"
    if isinstance(image_size, str):
        if image_size not in ("auto", "native"):
            raise WorkbenchError(f"image_size must be 'auto', 'native' or (H, W); got {image_size!r}")
        values, counts = np.unique(np.array(sizes), axis=0, return_counts=True)
        h, w = (int(v) for v in values[np.argmax(counts)])
        if image_size == "native" or tile is not None or h * w <= AUTO_PIXELS:
            return h, w
        scale = math.sqrt(AUTO_PIXELS / (h * w))
        return max(32, round(h * scale / 8) * 8), max(32, round(w * scale / 8) * 8)
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    h, w = (int(v) for v in image_size)
    if h < 32 or w < 32:
        raise WorkbenchError(f"image_size must be at least 32x32; got {h}x{w}")
    return h, w


def _read_item(item: _Item) -> np.ndarray:
    if isinstance(item.source, np.ndarray):
        return item.source
    from workbench.datasets import read_image

    return read_image(item.source)


# ----------------------------------------------------------------------------- maps
def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(4 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def smooth_and_resize(grid: torch.Tensor, input_size: tuple[int, int], out_size: tuple[int, int],
                      sigma: float) -> np.ndarray:
    """Patch scores ``(h, w)`` -> float32 map ``out_size``.

    Bilinear upsampling to the model input size, Gaussian smoothing with ``sigma`` pixels
    of the model input (reflect borders, truncated at 4 sigma), bilinear resize to the
    image's size. Every step is linear and separable, so the whole chain is applied as
    ``A_y @ grid @ A_x.T`` with two small operator matrices (built once per geometry by
    running the steps on unit impulses): the same map as running the steps on the image,
    at a fraction of the cost (no full-size intermediate images).
    """
    g = grid.float()
    h, w = g.shape
    ay = _axis_operator(h, int(input_size[0]), int(out_size[0]), float(sigma or 0.0))
    ax = _axis_operator(w, int(input_size[1]), int(out_size[1]), float(sigma or 0.0))
    if ay.shape[0] * h * w + ay.shape[0] * w * ax.shape[0] <= h * w * ax.shape[0] + ay.shape[0] * h * ax.shape[0]:
        out = (ay @ g) @ ax.T
    else:
        out = ay @ (g @ ax.T)
    return out.numpy().astype(np.float32, copy=False)


@functools.lru_cache(maxsize=32)
def _axis_operator(n_grid: int, n_input: int, n_out: int, sigma: float) -> torch.Tensor:
    """``(n_out, n_grid)`` matrix of the 1-D chain upsample -> Gaussian -> resize (float32).

    Column ``j`` is the chain applied to the unit impulse at grid position ``j``, computed
    in float64 with the same operations :func:`smooth_and_resize` describes.
    """
    x = torch.eye(n_grid, dtype=torch.float64)[:, None, :]  # n_grid signals of length n_grid
    x = F.interpolate(x, size=n_input, mode="linear", align_corners=False)
    if sigma > 0:
        k = _gaussian_kernel(sigma).double()
        r = (len(k) - 1) // 2
        rr = min(r, n_input - 1)
        if rr > 0:
            x = F.pad(x, (rr, rr), mode="reflect")
        x = F.conv1d(x, k[r - rr:r + rr + 1].view(1, 1, -1))
    if n_out != n_input:
        x = F.interpolate(x, size=n_out, mode="linear", align_corners=False)
    return x[:, 0, :].T.contiguous().float()


# ----------------------------------------------------------------------------- detector
class ImageDetector:
    """Base class of the image detectors (PaDiM, PatchCore, ...).

    Parameters shared by all image detectors (keyword-only):

    backbone : str, default "efficientnet_lite0"
        ``efficientnet_lite0``, ``lite1`` or ``lite2`` (ImageNet weights, nothing downloaded).
    image_size : "auto", "native" or (H, W)
        Model input size. ``"auto"`` keeps the training images' size when it has at most
        240k pixels and otherwise scales it down to that (aspect kept): a 1130x460 image
        becomes 768x312. Non-square sizes are fine. Images of another size at prediction
        are resized to it; an aspect ratio more than 10% off is an error.
    tile : (th, tw) or None
        Run the backbone tile by tile (sides multiples of 32) on the input, with
        ``image_size`` then defaulting to the native size. Use it when defects are only a
        few pixels wide in large images (say, smaller than 16 px after the "auto" resize),
        or for images over ~1500 px a side; it costs about (native pixels / 240k) times
        more per image. Without tiling, small images are processed whole.
    sigma : float, default 4
        Gaussian smoothing of the anomaly map, in pixels of the model input.
    image_sigma : float or None, default None
        Smoothing of the map the image score is taken from (at the model input size);
        None: the anomaly map itself. A wider kernel than ``sigma`` keeps the maps sharp
        for localisation while the image score, a maximum, is not set by a single noisy
        patch.
    score : "max" or int
        Image score: maximum of the map, or the mean of its ``k`` highest pixels.
    holdout : float, default 0.15
        Share of the normal training images kept out of fitting to calibrate the
        thresholds (at least 3 and at most 50 images; no holdout with fewer than 8 images).
        Ignored when ``fit`` is given a ``validation`` set.
    image_fpr, pixel_fpr : float
        False-positive rates on held-out normal images and pixels at which the image and
        pixel thresholds are set (defaults 0.01 and 0.001).
    threads : int or None
        torch threads during feature extraction and scoring.
    batch_size : int or "auto"
    cache : bool, default True
        Cache training-image features on disk (see :class:`~workbench.features.FeatureExtractor`).
    progress : bool, default False
        tqdm progress bars.
    random_state : int, default 0
    """

    name: ClassVar[str] = "image-detector"
    #: Strides of the backbone stages the detector uses.
    default_stages: ClassVar[tuple[int, ...]] = (8, 16)
    _state_version: ClassVar[int] = 1

    def __init__(self, *, backbone: str = "efficientnet_lite0", image_size="auto", tile=None,
                 sigma: float = 4.0, image_sigma: float | None = None, score="max",
                 holdout: float = 0.15, image_fpr: float = 0.01, pixel_fpr: float = 0.001,
                 threads: int | None = None, batch_size="auto",
                 cache: bool = True, progress: bool = False, random_state: int = 0):
        self.backbone = backbone
        self.image_size = image_size
        self.tile = tile
        self.sigma = sigma
        self.image_sigma = image_sigma
        self.score = score
        self.holdout = holdout
        self.image_fpr = image_fpr
        self.pixel_fpr = pixel_fpr
        self.threads = threads
        self.batch_size = batch_size
        self.cache = cache
        self.progress = progress
        self.random_state = random_state

    # -- parameters -------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        import inspect

        names = []
        for klass in reversed(cls.__mro__):
            if "__init__" in vars(klass):
                for p in inspect.signature(klass.__init__).parameters.values():
                    if p.kind == p.KEYWORD_ONLY and p.name not in names:
                        names.append(p.name)
        return names

    def get_params(self) -> dict:
        """Constructor parameters, as given."""
        return {k: getattr(self, k) for k in self._param_names()}

    # runtime-only parameters that do not change results and are not saved
    _RUNTIME = ("threads", "batch_size", "cache", "progress")

    def settings(self) -> dict:
        """Every effective setting (after fit: the resolved input size, sizes, thresholds)."""
        out = {k: _jsonable(v) for k, v in self.get_params().items()}
        out["backbone"] = canonical_backbone(self.backbone)
        out["stages"] = list(self.default_stages)
        if self._fitted:
            out["input_size"] = list(self.input_size_)
            out["train_image_size"] = list(self.train_size_)
            out["color"] = "gray" if self.gray_ else "rgb"
            out["n_fit_images"] = self.n_fit_images_
            out["n_holdout_images"] = self.threshold_info_.get("n_images", 0)
            out["image_threshold"] = self.image_threshold_
            out["pixel_threshold"] = self.pixel_threshold_
            out["threshold_info"] = self.threshold_info_
        return out

    @property
    def _fitted(self) -> bool:
        return hasattr(self, "input_size_")

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise WorkbenchError(f"this {type(self).__name__} is not fitted yet: call fit(train_images) first")

    def _tile(self):
        if self.tile is None or self.tile is False:
            return None
        if self.tile is True or self.tile == "auto":
            return (512, 512)
        if isinstance(self.tile, (int, np.integer)):
            return (int(self.tile), int(self.tile))
        return tuple(int(t) for t in self.tile)

    def _extractor(self, cache: bool) -> FeatureExtractor:
        return FeatureExtractor(self.backbone, stages=self.default_stages, image_size=self.input_size_,
                                batch_size=self.batch_size, threads=self.threads, tile=self._tile(),
                                cache=cache and self.cache, progress=self.progress)

    # -- fitting ----------------------------------------------------------------------
    def fit(self, images, validation=None):
        """Fit on normal images and calibrate thresholds.

        Parameters
        ----------
        images : FolderDataset, folder, or sequence of paths / samples / arrays
            Normal images (a dataset's ``train`` split).
        validation : same kinds, optional
            Normal images to calibrate the thresholds on. Without it a share ``holdout``
            of ``images`` is kept out of fitting for that.

        Returns
        -------
        self
        """
        items = as_image_items(images, "train")
        if not items:
            raise DataError("no training images: fit needs at least one normal image")
        grays = {it.gray for it in items}
        if len(grays) > 1:
            n_gray = sum(it.gray for it in items)
            example = next(it.name for it in items if it.gray)
            raise DataError(f"training images mix gray ({n_gray}, e.g. {example}) and colour "
                            f"({len(items) - n_gray}) images; convert them to one kind")
        self.gray_ = grays.pop()
        self.input_size_ = resolve_image_size([it.size for it in items], self.image_size, self._tile())
        self.train_size_ = resolve_image_size([it.size for it in items], "native", None)
        val_items = None if validation is None else as_image_items(validation, "train")
        fit_items, cal_items = items, []
        if val_items is not None:
            cal_items = val_items
        elif self.holdout and len(items) >= 8:
            n_cal = int(np.clip(round(self.holdout * len(items)), 3, 50))
            order = np.random.default_rng(self.random_state).permutation(len(items))
            cal_set = set(order[:n_cal].tolist())
            cal_items = [it for i, it in enumerate(items) if i in cal_set]
            fit_items = [it for i, it in enumerate(items) if i not in cal_set]
        fit_items = self._select_fit_items(fit_items)
        self._check_items(fit_items)
        self.n_fit_images_ = len(fit_items)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        self._fit_features(self._iter_features(fit_items, cache=True, timings=timings, group=32), len(fit_items))
        self.fit_timings_ = {"features_seconds": timings.get("features", 0.0),
                             "total_seconds": time.perf_counter() - t0}
        self.fit_timings_["model_seconds"] = self.fit_timings_["total_seconds"] - self.fit_timings_["features_seconds"]
        self.fit_timings_.update(calibration_seconds=0.0, calibration_features_seconds=0.0)
        self._calibrate(cal_items, "validation" if val_items is not None else "holdout")
        self.fit_timings_["total_seconds"] = time.perf_counter() - t0
        return self

    def _calibrate(self, cal_items: list[_Item], source: str) -> None:
        self.image_threshold_ = None
        self.pixel_threshold_ = None
        if not cal_items:
            self.threshold_info_ = {"source": None, "n_images": 0,
                                    "note": "too few normal images to hold some out; thresholds not set "
                                            "(give fit() a validation set or at least 8 images)"}
            return
        self._check_items(cal_items)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        scores = self._predict(cal_items, timings)
        self.fit_timings_["calibration_seconds"] = time.perf_counter() - t0
        self.fit_timings_["calibration_features_seconds"] = timings.get("features", 0.0)
        pixels = np.concatenate([m.ravel() for m in scores.anomaly_maps])
        self.image_threshold_ = float(np.quantile(scores.image_scores, 1 - self.image_fpr))
        self.pixel_threshold_ = float(np.quantile(pixels, 1 - self.pixel_fpr))
        self.threshold_info_ = {
            "source": source,
            "method": "quantile of scores on normal images not used for fitting",
            "image_fpr": self.image_fpr,
            "pixel_fpr": self.pixel_fpr,
            "n_images": len(cal_items),
            "n_pixels": int(pixels.size),
        }

    # -- features ---------------------------------------------------------------------
    def _check_items(self, items: list[_Item]) -> None:
        h, w = getattr(self, "train_size_", self.input_size_)
        for it in items:
            if it.gray != self.gray_:
                raise DataError(
                    f"{it.name}: the detector was fitted on {'gray' if self.gray_ else 'colour'} images, "
                    f"this one is {'gray' if it.gray else 'colour'} ({'x'.join(map(str, it.shape))}); "
                    "convert it, or fit a detector on images like it")
            ih, iw = it.size
            if abs(math.log((ih / iw) / (h / w))) > math.log(1.1) and self._tile() is None:
                raise DataError(
                    f"{it.name}: size {ih}x{iw} has another aspect ratio than the training images ({h}x{w}; "
                    "more than 10% off); resizing would distort it. Crop it, or fit on images like it")

    def _iter_features(self, items: list[_Item], cache: bool, timings: dict | None = None,
                       group: int = 1) -> Iterator[tuple[list[int], dict[int, torch.Tensor]]]:
        """``(indices, {stride: (b, C, h, w) tensor})`` for groups of up to ``group`` items, in order."""
        fx = self._extractor(cache)
        t = time.perf_counter()
        buf_idx: list[int] = []
        buf: list[dict[int, np.ndarray]] = []
        for idx, feats in fx.iter_batches([it.source for it in items]):
            if timings is not None:
                timings["features"] = timings.get("features", 0.0) + time.perf_counter() - t
            buf_idx.extend(idx)
            buf.extend(feats)
            while len(buf) >= group:
                yield buf_idx[:group], {s: torch.from_numpy(np.stack([f[s] for f in buf[:group]]))
                                        for s in self.default_stages}
                buf_idx, buf = buf_idx[group:], buf[group:]
            t = time.perf_counter()
        if buf:
            yield buf_idx, {s: torch.from_numpy(np.stack([f[s] for f in buf])) for s in self.default_stages}

    # -- prediction -------------------------------------------------------------------
    def predict(self, images) -> Scores:
        """Score images: image scores, anomaly maps at each image's size, thresholds.

        Parameters
        ----------
        images : FolderDataset (its ``test`` split), folder, or sequence of paths / samples / arrays

        Returns
        -------
        Scores
        """
        self._check_fitted()
        items = as_image_items(images, "test")
        self._check_items(items)
        return self._predict(items)

    def _predict(self, items: list[_Item], timings: dict | None = None) -> Scores:
        n = len(items)
        image_scores = np.zeros(n, dtype=np.float64)
        maps: list[np.ndarray | None] = [None] * n
        self._begin_predict()
        with torch.inference_mode(), _threads(self.threads):
            for idx, feats in self._iter_features(items, cache=False, timings=timings, group=self._score_group):
                grids = self._patch_scores(feats)
                for j, i in enumerate(idx):
                    maps[i] = smooth_and_resize(grids[j], self.input_size_, items[i].size, self.sigma)
                    if self.image_sigma is None or float(self.image_sigma) == float(self.sigma):
                        image_scores[i] = self._image_score(maps[i])
                    else:
                        image_scores[i] = self._image_score(smooth_and_resize(
                            grids[j], self.input_size_, self.input_size_, float(self.image_sigma)))
        image_scores = self._end_predict(image_scores)
        return Scores(image_scores=image_scores, anomaly_maps=maps,  # type: ignore[arg-type]
                      image_threshold=getattr(self, "image_threshold_", None),
                      pixel_threshold=getattr(self, "pixel_threshold_", None),
                      threshold_info=dict(getattr(self, "threshold_info_", {})),
                      names=[it.name for it in items])

    def anomaly_score(self, images) -> np.ndarray:
        """Image scores ``(n,)``, higher = more anomalous."""
        return self.predict(images).image_scores

    def _image_score(self, amap: np.ndarray) -> float:
        if self.score == "max":
            return float(amap.max())
        k = int(self.score)
        flat = amap.ravel()
        k = min(max(k, 1), flat.size)
        return float(np.partition(flat, flat.size - k)[flat.size - k:].mean())

    # -- subclass hooks -----------------------------------------------------------------
    #: images scored together by ``_patch_scores`` (amortises reading large fitted state)
    _score_group: ClassVar[int] = 4

    def _fit_features(self, features: Iterator[tuple[list[int], dict[int, torch.Tensor]]], n: int) -> None:
        """Build the fitted state from ``(indices, {stride: (b, C, h, w)})`` batches of ``n`` images."""
        raise NotImplementedError

    def _patch_scores(self, features: dict[int, torch.Tensor]) -> torch.Tensor:
        """Patch scores ``(b, h, w)`` (higher = more anomalous) for ``{stride: (b, C, h, w)}``."""
        raise NotImplementedError

    def _select_fit_items(self, items: list[_Item]) -> list[_Item]:
        """The normal images to fit on, from those not held out (default: all of them;
        the prompt detector keeps ``shots`` of them)."""
        return items

    def _begin_predict(self) -> None:
        """Called before scoring a set of images (e.g. to reset per-call bookkeeping)."""

    def _end_predict(self, image_scores: np.ndarray) -> np.ndarray:
        """Final image scores ``(n,)`` from the ones computed from the maps (default: as is)."""
        return image_scores

    def _state(self) -> dict[str, Any]:
        """Fitted state: tensors, numbers, strings, lists (saved with weights_only=True)."""
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- files ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted detector to ``path`` (a torch file loadable with weights_only=True)."""
        self._check_fitted()
        params = {k: _jsonable(v) for k, v in self.get_params().items() if k not in self._RUNTIME}
        payload = {
            "format": _FILE_FORMAT,
            "format_version": _FILE_VERSION,
            "detector": self.name,
            "state_version": self._state_version,
            "workbench_version": __version__,
            "params": params,
            "fitted": {
                # None for detectors that choose the size per batch (zero-shot MuSc)
                "input_size": None if self.input_size_ is None else list(self.input_size_),
                "train_size": None if self.train_size_ is None else list(self.train_size_),
                "gray": None if self.gray_ is None else bool(self.gray_),
                "n_fit_images": int(self.n_fit_images_),
                "image_threshold": self.image_threshold_,
                "pixel_threshold": self.pixel_threshold_,
                "threshold_info": _jsonable(self.threshold_info_),
            },
            "state": self._state(),
        }
        path = Path(path)
        with atomic_write(path, "wb") as fh:
            torch.save(payload, fh)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, **runtime) -> "ImageDetector":
        """Load a detector saved with :meth:`save`; ``runtime`` sets threads/progress/... ."""
        det = load_detector(path, **runtime)
        if cls is not ImageDetector and not isinstance(det, cls):
            raise ModelFileError(f"{path} holds a {det.name!r} detector, not a {cls.name!r} one")
        return det

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def load_detector(path: str | os.PathLike, **runtime) -> ImageDetector:
    """Load any image detector written by :meth:`ImageDetector.save`."""
    from workbench.detectors._registry import REGISTRY, get_detector

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{path} is not a workbench model file (or it is damaged): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != _FILE_FORMAT:
        raise ModelFileError(f"{path} is not a workbench image-detector file")
    if payload.get("format_version") != _FILE_VERSION:
        raise ModelFileError(f"{path} has file format version {payload.get('format_version')}; this "
                             f"workbench {__version__} reads version {_FILE_VERSION}. Re-fit the detector.")
    name = payload.get("detector")
    if name not in REGISTRY or REGISTRY[name].kind != "image":
        raise ModelFileError(f"{path} holds an unknown detector {name!r}")
    klass = get_detector(name)
    if payload.get("state_version") != klass._state_version:
        raise ModelFileError(
            f"{path} holds a {name} detector with state version {payload.get('state_version')} "
            f"(written by workbench {payload.get('workbench_version')}); this version reads "
            f"{klass._state_version}. Re-fit it with this version.")
    params = dict(payload["params"])
    for k in ("image_size", "tile"):
        if isinstance(params.get(k), list):
            params[k] = tuple(params[k])
    params.update(runtime)
    det = klass(**params)
    fitted = payload["fitted"]
    det.input_size_ = None if fitted["input_size"] is None else tuple(fitted["input_size"])
    det.train_size_ = None if fitted["train_size"] is None else tuple(fitted["train_size"])
    det.gray_ = None if fitted["gray"] is None else bool(fitted["gray"])
    det.n_fit_images_ = fitted["n_fit_images"]
    det.image_threshold_ = fitted["image_threshold"]
    det.pixel_threshold_ = fitted["pixel_threshold"]
    det.threshold_info_ = fitted["threshold_info"]
    det._set_state(payload["state"])
    return det


class _threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(int(self.n))

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    return v
