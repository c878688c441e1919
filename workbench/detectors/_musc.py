"""Zero-shot mutual scoring of unlabeled images (after MuSc, Li et al., ICLR 2024).

Pure compute (:func:`mutual_similarity`, :func:`mutual_scores`, :func:`rescore_images`)
is kept apart from the detector (:class:`MutualScoring`), which handles images, grids,
groups and maps.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from workbench.detectors._base import (
    ImageDetector,
    Scores,
    _jsonable,
    _read_item,
    _threads,
    as_image_items,
    resolve_image_size,
    smooth_and_resize,
)
from workbench.errors import DataError, WorkbenchError
from workbench.features import FeatureExtractor, canonical_backbone

__all__ = ["MutualScoring", "MutualScoringResult", "mutual_similarity", "mutual_scores", "rescore_images"]

log = logging.getLogger(__name__)

#: Work allowed per image under ``max_references="auto"``, in multiply-adds of patch
#: comparisons: 63 reference images x 960^2 patch pairs x 152 channels x 3 degrees, i.e.
#: a 768x312 input (the "auto" size of BSData) on the stride-16 grid. At ~40 GFLOP/s
#: (2 cores) that is ~0.7 s per image, so 300 such images take ~4 minutes of scoring.
AUTO_WORK_PER_IMAGE = 63 * 960 ** 2 * 152 * 3

#: Reference images per image never drop below this under ``"auto"`` (MuSc needs a crowd).
MIN_REFERENCES = 16

#: ``grid="auto"`` scores each stage on its own grid while the finest grid has at most
#: this many patches (inputs up to ~360x360), and everything on the stride-16 grid above.
AUTO_NATIVE_PATCHES = 2048

_THRESHOLD_NOTE = (
    "not set: MuSc is zero-shot and never sees an image known to be normal, so there is no "
    "normal score distribution to take a false-positive rate from (quantiles of the test "
    "batch's own scores would assume its share of defects). Rank by score, or threshold "
    "with a rate you choose on scores of a batch you trust.")


# ----------------------------------------------------------------------------- core
def _blocks(n: int, p: int, chunk_patches: int | None) -> list[tuple[int, int, int, int]]:
    """Cut ``n`` images of ``p`` patches into blocks ``(i0, i1, p0, p1)`` of at most
    ``chunk_patches`` patches: whole images when one fits, else pieces of one image."""
    if chunk_patches is None or chunk_patches >= n * p:
        return [(0, n, 0, p)]
    if p <= chunk_patches:
        q = max(1, chunk_patches // p)
        return [(i, min(i + q, n), 0, p) for i in range(0, n, q)]
    pieces = math.ceil(p / chunk_patches)
    bounds = np.linspace(0, p, pieces + 1).round().astype(int)
    return [(i, i + 1, int(a), int(b)) for i in range(n) for a, b in zip(bounds[:-1], bounds[1:])]


def mutual_similarity(z: torch.Tensor, chunk_patches: int | None = 1024) -> torch.Tensor:
    """Each patch's highest cosine similarity to every other image of the batch.

    Parameters
    ----------
    z : Tensor, shape (n, P, C)
        L2-normalised patch features of ``n`` images with ``P`` patches each.
    chunk_patches : int or None
        Patches per block of the pairwise computation. At most two blocks' similarities
        exist at once, ``2 * chunk_patches**2 * 4`` bytes (8 MB for 1024; blocks that fit
        the CPU cache are also the fastest). None: one block of ``(n P)^2`` similarities.

    Returns
    -------
    Tensor, shape (n, P, n), float32
        ``out[i, p, j]`` = max over the patches ``q`` of image ``j`` of ``<z[i, p], z[j, q]>``;
        ``-inf`` where ``j == i``. Each block ``G = Z_a Z_b^T`` is computed once and reduced
        along both axes (``a`` against ``b`` and ``b`` against ``a``), halving the work.
    """
    n, p, c = z.shape
    out = torch.full((n, p, n), float("-inf"), dtype=torch.float32)
    blocks = _blocks(n, p, chunk_patches)
    for bi, (a0, a1, ap0, ap1) in enumerate(blocks):
        za = z[a0:a1, ap0:ap1].reshape(-1, c)
        na, la = a1 - a0, ap1 - ap0
        for b0, b1, bp0, bp1 in blocks[bi:]:
            zb = z[b0:b1, bp0:bp1].reshape(-1, c)
            nb, lb = b1 - b0, bp1 - bp0
            g = za @ zb.T  # (na*la, nb*lb)
            rows = g.view(na * la, nb, lb).amax(-1).view(na, la, nb)
            view = out[a0:a1, ap0:ap1, b0:b1]
            torch.maximum(view, rows, out=view)
            if (b0, bp0) != (a0, ap0):
                cols = g.view(na, la, nb * lb).amax(1).T.reshape(nb, lb, na)
                view = out[b0:b1, bp0:bp1, a0:a1]
                torch.maximum(view, cols, out=view)
    idx = torch.arange(n)
    out[idx, :, idx] = float("-inf")
    return out


def mutual_scores(z: torch.Tensor, top_fraction: float = 0.3, chunk_patches: int | None = 1024) -> torch.Tensor:
    """MuSc's mutual scoring mechanism: patch scores ``(n, P)``, higher = more anomalous.

    A patch's distance to another image is its distance to that image's nearest patch
    (``sqrt(2 - 2 cos)`` for unit vectors); its score is the mean of the smallest
    ``top_fraction`` of its distances to the ``n - 1`` other images (at least one).
    Normal patches find close matches in most images, anomalous ones in few.

    Parameters
    ----------
    z : Tensor, shape (n, P, C)
        L2-normalised patch features, ``n >= 2``.
    top_fraction : float in (0, 1]
    chunk_patches : int or None
        See :func:`mutual_similarity`.

    Returns
    -------
    Tensor, shape (n, P), float32
    """
    n = z.shape[0]
    if n < 2:
        raise ValueError("mutual scoring needs at least 2 images")
    sim = mutual_similarity(z, chunk_patches)
    k = max(1, int(top_fraction * (n - 1)))
    top = sim.topk(k, dim=-1, largest=True, sorted=False).values  # (n, P, k)
    return (2.0 - 2.0 * top).clamp_min_(0.0).sqrt_().mean(-1)


def rescore_images(scores: np.ndarray, global_features: np.ndarray, k: Sequence[int] | int = (1, 2, 3)) -> np.ndarray:
    """RsCIN: smooth image scores over their nearest neighbours in a global feature space.

    For each window ``k_j``, an image's new score is the similarity-weighted mean of the
    scores of its ``k_j`` most similar images (itself first, cosine similarity of the
    global features as weights); the result is the mean over the windows. A weighted mean
    commutes with any increasing affine map of the scores, so none is applied first.

    Parameters
    ----------
    scores : ndarray, shape (n,)
        Higher = more anomalous.
    global_features : ndarray, shape (n, D)
    k : sequence of int, or int
        Neighbourhood sizes (MuSc uses 1, 2, 3 on MVTec AD); an int ``k`` means ``1..k``.
        0, empty or only 1: no change.

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    scores = np.asarray(scores, dtype=np.float64)
    if isinstance(k, (int, np.integer)):
        k = range(1, int(k) + 1)
    ks = [int(v) for v in k if int(v) > 0]
    n = len(scores)
    if not ks or set(ks) == {1} or n < 2:
        return scores.copy()
    g = np.asarray(global_features, dtype=np.float64)
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    sim = g @ g.T
    np.fill_diagonal(sim, np.inf)  # an image is always its own first neighbour
    order = np.argsort(-sim, axis=1, kind="stable")
    np.fill_diagonal(sim, 1.0)
    out = np.zeros(n)
    for kk in ks:
        nb = order[:, :min(kk, n)]
        w = np.clip(np.take_along_axis(sim, nb, axis=1), 1e-6, None)
        out += (w * scores[nb]).sum(1) / w.sum(1)
    return out / len(ks)


# ----------------------------------------------------------------------------- detector
@dataclass
class MutualScoringResult:
    """What :meth:`MutualScoring.score_batch` returns.

    Attributes
    ----------
    scores : Scores
        Image scores after RsCIN and maps (what ``predict`` returns).
    raw_image_scores : ndarray, shape (n,)
        Image scores before RsCIN (the score of each map), higher = more anomalous.
    global_features : ndarray, shape (n, D)
        Image-level features RsCIN used (mean of the stride-32 stage).
    groups : list of ndarray of int
        Indices of the images scored together; each image's references are the others
        of its group.
    info : dict
        Effective settings of this batch (grid, references, groups, timings).
    """

    scores: Scores
    raw_image_scores: np.ndarray
    global_features: np.ndarray
    groups: list[np.ndarray]
    info: dict = field(default_factory=dict)


class MutualScoring(ImageDetector):
    """Zero-shot anomaly detection by mutual scoring of unlabeled images (after MuSc).

    Training-free and transductive: there is nothing to fit (``fit`` ignores its images),
    and the test images score each other. The idea: a normal patch finds close matches in
    most other images of the batch, an anomalous one only in a few.

    1. Features of the stride-8 and stride-16 stages (and the stride-32 stage, averaged
       over the image, as the global feature for step 5).
    2. Local neighbourhood aggregation at several degrees: for each ``r`` in ``degrees``,
       an ``r x r`` average (borders average what exists), then L2 normalisation.
    3. Mutual scoring, for every stage and degree: each patch's distance to every other
       image of its group is its distance to that image's nearest patch; its score is the
       mean of the smallest ``top_fraction`` of those distances.
    4. The scores are averaged over stages and degrees on the finest grid, each grid
       position's median over the group is subtracted (``position_baseline``), then the
       grid is upsampled and smoothed to each image's size. Image score: map maximum
       (``score``).
    5. RsCIN: image scores are smoothed over their ``rescore_k`` nearest neighbours in the
       global feature space (:func:`rescore_images`).

    Scores depend on the batch by design: predict a batch of at least ~20 images of one
    product, with defects a minority; a single image cannot be scored.

    Parameters
    ----------
    degrees : sequence of int, default (1, 3, 5)
        Neighbourhood sizes of the aggregation, in cells of each stage's grid.
    top_fraction : float, default 0.3
        Share of the other images whose nearest-patch distances are averaged.
    rescore_k : sequence of int or int, default (1, 2, 3)
        RsCIN windows (an int ``k`` means ``1..k``); ``0`` turns RsCIN off.
    max_references : "auto", int or None
        Reference images per image. When the batch is larger, it is cut into groups of at
        most ``max_references + 1`` images (near-equal sizes, by a seeded hash of the
        pixels, so the grouping does not depend on the order of the images) and every
        image is scored against the others of its group. ``"auto"`` allows what keeps the
        work per image at :data:`AUTO_WORK_PER_IMAGE` (63 references at a 768x312 input,
        more for smaller inputs, at least 16); None compares every image with every other
        (cost grows with the square of the batch). ``settings()`` reports the effective
        number and the groups.
    grid : "auto", "native" or int
        Where patches are compared. ``"native"``: each stage on its own grid (stride 8 and
        16), scores fused on the stride-8 grid; an int: every stage resampled to that
        stride's grid. ``"auto"``: native while the stride-8 grid has at most 2048 patches
        (inputs up to ~360x360), else 16: comparing stride-8 patches of a 768x312 input
        costs 15x more than stride-16 ones.
    position_baseline : bool, default True
        Subtract each grid position's median score over the group. Border and corner
        patches (padding) and naturally varied places of aligned objects find fewer close
        matches in every image; this removes that shared offset and keeps what is unusual
        for this image at this place. It needs groups of at least 3 images.
    chunk_patches : int, default 1024
        Block size of the pairwise computation (see :func:`mutual_similarity`).
    **kwargs
        Shared image-detector parameters (:class:`~workbench.detectors.ImageDetector`):
        ``backbone``, ``image_size`` (``"auto"``: from the test batch's most common size),
        ``tile``, ``sigma``, ``score``, ``threads``, ``batch_size``, ``progress``,
        ``random_state`` (seeds the grouping). ``holdout``, ``image_fpr``, ``pixel_fpr`` and
        ``cache`` have no effect: there are no normal images to calibrate on and test
        features are not cached.

    Notes
    -----
    Memory: besides the returned maps (``n x H x W`` float32: 660 MB for the 317 BSData
    test images at their 1130x460 size), the working set is bounded by the group, not the
    batch: one group's features (1.3 MB per image at 768x312, 85 MB for 64 images) and, per
    torch thread, one ``(g, P, g)`` float32 similarity table (16 MB for 64 images of 960
    patches; at most ~150 MB under the "auto" settings), the aggregated features (30 MB)
    and two ``chunk_patches**2`` blocks (8 MB). About 200 MB at 2 threads for BSData-sized
    inputs, whatever the number of images.

    Cost: ``n * (g - 1) * sum_s P_s^2 C_s * len(degrees)`` multiply-adds, halved by
    symmetry, for ``n`` images in groups of ``g`` with ``P_s`` patches of ``C_s`` channels
    per stage; quadratic in ``n`` until the group cap, linear after it. 317 BSData test
    images: see ``benchmarks/zero_shot.py``.

    Thresholds are left None (see ``threshold_info``): nothing here is known to be normal.
    """

    name: ClassVar[str] = "musc"
    default_stages: ClassVar[tuple[int, ...]] = (8, 16)
    #: stage whose image-averaged features are RsCIN's global image features
    global_stage: ClassVar[int] = 32
    _state_version: ClassVar[int] = 1

    def __init__(self, *, degrees: Sequence[int] = (1, 3, 5), top_fraction: float = 0.3,
                 rescore_k: Sequence[int] | int = (1, 2, 3), max_references="auto", grid="auto",
                 position_baseline: bool = True, chunk_patches: int = 1024, **kwargs):
        super().__init__(**kwargs)
        self.degrees = degrees
        self.top_fraction = top_fraction
        self.rescore_k = rescore_k
        self.max_references = max_references
        self.grid = grid
        self.position_baseline = position_baseline
        self.chunk_patches = chunk_patches

    # -- nothing to fit -----------------------------------------------------------------
    @property
    def _fitted(self) -> bool:
        return True

    def fit(self, images=None, validation=None):
        """Nothing to learn: MuSc scores test images against each other.

        ``images`` and ``validation`` (a dataset's normal ``train`` split, say) are accepted
        for a uniform interface and not read. Returns self.
        """
        self._validate()
        self.input_size_ = None  # chosen per batch
        self.train_size_ = None
        self.gray_ = None
        self.n_fit_images_ = 0
        self.image_threshold_ = None
        self.pixel_threshold_ = None
        self.threshold_info_ = {"source": None, "n_images": 0, "note": _THRESHOLD_NOTE}
        return self

    def save(self, path):
        """Write the detector (its parameters: there is no fitted state) to ``path``."""
        if "n_fit_images_" not in vars(self):
            self.fit()
        return super().save(path)

    def _state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        pass

    def _validate(self) -> None:
        degrees = [int(r) for r in self.degrees]
        if not degrees or any(r < 1 or r % 2 == 0 for r in degrees):
            raise WorkbenchError(f"degrees must be odd positive integers; got {self.degrees!r}")
        if not 0 < float(self.top_fraction) <= 1:
            raise WorkbenchError(f"top_fraction must be in (0, 1]; got {self.top_fraction!r}")
        if not (self.max_references in ("auto", None) or int(self.max_references) >= 1):
            raise WorkbenchError(f"max_references must be 'auto', None or a positive int; got {self.max_references!r}")
        if not (self.grid in ("auto", "native") or int(self.grid) in self.default_stages):
            raise WorkbenchError(f"grid must be 'auto', 'native' or one of {self.default_stages}; got {self.grid!r}")
        if any(int(k) < 0 for k in self._rescore_k()):
            raise WorkbenchError(f"rescore_k must be non-negative; got {self.rescore_k!r}")

    def _rescore_k(self) -> list[int]:
        if isinstance(self.rescore_k, (int, np.integer)):
            return list(range(1, int(self.rescore_k) + 1))
        return [int(v) for v in self.rescore_k]

    # -- planning -------------------------------------------------------------------------
    def _grids(self, size: tuple[int, int]) -> tuple[dict[int, tuple[int, int]], tuple[int, int]]:
        """``({stage: grid it is compared on}, fusion grid)`` for an input ``size``."""
        def grid_of(s):
            return math.ceil(size[0] / s), math.ceil(size[1] / s)

        finest = min(self.default_stages)
        mode = self.grid
        if mode == "auto":
            fh, fw = grid_of(finest)
            mode = "native" if fh * fw <= AUTO_NATIVE_PATCHES else max(self.default_stages)
        if mode == "native":
            return {s: grid_of(s) for s in self.default_stages}, grid_of(finest)
        g = grid_of(int(mode))
        return {s: g for s in self.default_stages}, g

    def _work_per_reference(self, grids: dict[int, tuple[int, int]], channels: dict[int, int]) -> int:
        return len(self.degrees) * sum((h * w) ** 2 * channels[s] for s, (h, w) in grids.items())

    def _references(self, n: int, work_per_ref: int) -> int:
        if self.max_references is None:
            return n - 1
        if self.max_references == "auto":
            return max(MIN_REFERENCES, AUTO_WORK_PER_IMAGE // max(1, work_per_ref))
        return int(self.max_references)

    def _groups(self, items, max_size: int) -> list[np.ndarray]:
        n = len(items)
        if n <= max_size:
            return [np.arange(n)]
        seed = str(int(self.random_state)).encode()
        keys = []
        for it in items:
            arr = np.ascontiguousarray(_read_item(it))
            h = hashlib.blake2b(seed, digest_size=16)
            h.update(str(arr.shape).encode())
            h.update(arr.tobytes())
            keys.append(h.hexdigest())
        order = sorted(range(n), key=lambda i: keys[i])  # identical images tie, harmlessly
        k = math.ceil(n / max_size)
        return [np.array(sorted(part), dtype=int) for part in np.array_split(np.array(order), k)]

    # -- prediction -----------------------------------------------------------------------
    def predict(self, images) -> Scores:
        """Score a batch of unlabeled images against each other.

        Parameters
        ----------
        images : FolderDataset (its ``test`` split), folder, or sequence of paths / samples / arrays
            At least 2 images (better 20 or more), of one product, any sizes of about one
            aspect ratio.

        Returns
        -------
        Scores
            Image scores ``(n,)`` after RsCIN and maps ``(H_i, W_i)`` float32, higher = more
            anomalous; thresholds None.
        """
        return self.score_batch(images).scores

    def score_batch(self, images) -> MutualScoringResult:
        """:meth:`predict` with its intermediate results (raw image scores, groups, ...)."""
        self._validate()
        items = as_image_items(images, "test")
        n = len(items)
        if n < 2:
            raise DataError(f"MuSc scores images against each other: it needs at least 2 images, got {n} "
                            "(predict a batch of 20 or more images of one product)")
        if n < 10:
            log.warning("MuSc on %d images: with so few references its scores are noisy", n)
        size = resolve_image_size([it.size for it in items], self.image_size, self._tile())
        self._check_batch(items, size)
        grids, fused = self._grids(size)
        stages = tuple(sorted(set(self.default_stages) | {self.global_stage}))
        fx = FeatureExtractor(self.backbone, stages=stages, image_size=size, batch_size=self.batch_size,
                              threads=self.threads, tile=self._tile(), cache=False, progress=False)
        channels = fx.channels
        refs = min(n - 1, self._references(n, self._work_per_reference(grids, channels)))
        groups = self._groups(items, refs + 1)
        if self.position_baseline and min(len(g) for g in groups) < 3:
            log.warning("position_baseline needs at least 3 images per group; skipped")
        timings = {"features": 0.0, "scoring": 0.0, "maps": 0.0}
        maps: list[np.ndarray | None] = [None] * n
        raw = np.zeros(n)
        glob = np.zeros((n, channels[self.global_stage]), dtype=np.float32)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="MuSc", unit="img")
        try:
            with torch.inference_mode(), _threads(self.threads):
                for group in groups:
                    t0 = time.perf_counter()
                    feats = _stack_features(fx, [items[i] for i in group], stages)
                    glob[group] = feats[self.global_stage].mean((2, 3)).numpy()
                    t1 = time.perf_counter()
                    grid_scores = self._group_scores(feats, grids, fused)  # (g, h, w)
                    t2 = time.perf_counter()
                    for j, i in enumerate(group):
                        maps[i] = smooth_and_resize(grid_scores[j], size, items[i].size, self.sigma)
                        raw[i] = self._image_score(maps[i])
                    timings["features"] += t1 - t0
                    timings["scoring"] += t2 - t1
                    timings["maps"] += time.perf_counter() - t2
                    if bar is not None:
                        bar.update(len(group))
        finally:
            if bar is not None:
                bar.close()
        image_scores = rescore_images(raw, glob, self._rescore_k())
        info = {
            "n_images": n,
            "input_size": list(size),
            "grid": {str(s): list(g) for s, g in grids.items()},
            "fusion_grid": list(fused),
            "references_per_image": int(min(len(g) for g in groups) - 1),
            "n_groups": len(groups),
            "group_sizes": [len(g) for g in groups],
            "reference_subsampling": (
                "none: every image is scored against all others" if len(groups) == 1 else
                f"the batch is cut into {len(groups)} groups of {min(map(len, groups))}-{max(map(len, groups))} "
                "images (seeded hash of the pixels); each image is scored against the others of its group"),
            "seconds": {k: round(v, 3) for k, v in timings.items()},
        }
        self.last_batch_ = info  # bookkeeping for settings(); scores never read it
        scores = Scores(image_scores=image_scores, anomaly_maps=maps,  # type: ignore[arg-type]
                        image_threshold=None, pixel_threshold=None,
                        threshold_info={"source": None, "n_images": 0, "note": _THRESHOLD_NOTE},
                        names=[it.name for it in items])
        return MutualScoringResult(scores=scores, raw_image_scores=raw, global_features=glob,
                                   groups=groups, info=info)

    def _check_batch(self, items, size: tuple[int, int]) -> None:
        if self._tile() is not None:
            return
        h, w = size
        for it in items:
            ih, iw = it.size
            if abs(math.log((ih / iw) / (h / w))) > math.log(1.1):
                raise DataError(
                    f"{it.name}: size {ih}x{iw} has another aspect ratio than most images of the batch "
                    f"({h}x{w} input; more than 10% off); resizing would distort it. Score it in a batch "
                    "of images like it, or crop it")
        if len({it.gray for it in items}) > 1:
            log.warning("the batch mixes gray and colour images; gray ones are compared as gray RGB")

    def _aggregate(self, f: torch.Tensor, r: int, grid: tuple[int, int]) -> torch.Tensor:
        """LNAMD: ``r x r`` average of ``(g, C, h, w)``, resampled to ``grid``, as unit
        vectors ``(g, P, C)``."""
        if r > 1:
            f = F.avg_pool2d(f, r, stride=1, padding=r // 2, count_include_pad=False)
        if tuple(f.shape[-2:]) != tuple(grid):
            if f.shape[-2] >= grid[0] and f.shape[-1] >= grid[1]:
                f = F.adaptive_avg_pool2d(f, grid)
            else:
                f = F.interpolate(f, size=grid, mode="bilinear", align_corners=False)
        return F.normalize(f.flatten(2).transpose(1, 2), dim=-1).contiguous()

    def _group_scores(self, feats: dict[int, torch.Tensor], grids, fused) -> torch.Tensor:
        """Fused patch scores ``(g, h, w)`` on the fusion grid for one group's features.

        The (stage, degree) components are independent: with several torch threads they run
        side by side, each on one thread. Splitting every small block operation over
        threads instead makes them wait on each other at every step, which on a shared
        machine was 20x slower than one thread; and one thread per component makes the
        result independent of the thread count.
        """
        from concurrent.futures import ThreadPoolExecutor

        g = next(iter(feats.values())).shape[0]
        jobs = [(s, int(r)) for s in self.default_stages for r in self.degrees]

        def component(job):
            s, r = job
            with torch.inference_mode():
                z = self._aggregate(feats[s].float(), r, grids[s])
                sc = mutual_scores(z, float(self.top_fraction), self.chunk_patches).view(g, 1, *grids[s])
                if tuple(grids[s]) != tuple(fused):
                    sc = F.interpolate(sc, size=fused, mode="bilinear", align_corners=False)
                return sc

        workers = max(1, min(len(jobs), torch.get_num_threads()))
        with _threads(1):
            if workers > 1:
                with ThreadPoolExecutor(workers) as pool:
                    parts = list(pool.map(component, jobs))
            else:
                parts = [component(j) for j in jobs]
        total = torch.zeros(g, 1, *fused)
        for part in parts:  # fixed order: the sum does not depend on which thread finished first
            total += part
        total = total[:, 0] / len(jobs)
        if self.position_baseline and g >= 3:
            total = total - total.median(dim=0, keepdim=True).values
        return total

    # -- reporting ------------------------------------------------------------------------
    def settings(self) -> dict:
        """Parameters and effective settings; after a batch, how it was scored."""
        out = {k: _jsonable(v) for k, v in self.get_params().items()}
        out["backbone"] = canonical_backbone(self.backbone)
        out["stages"] = list(self.default_stages)
        out["global_stage"] = self.global_stage
        out["rescore_k"] = self._rescore_k()
        out["uses_training_images"] = False
        out["training_images"] = "ignored: zero-shot, the test images score each other (MuSc)"
        out["n_fit_images"] = 0
        out["transductive"] = True
        out["image_threshold"] = None
        out["pixel_threshold"] = None
        out["threshold_info"] = {"source": None, "n_images": 0, "note": _THRESHOLD_NOTE}
        last = getattr(self, "last_batch_", None)
        if last is not None:
            out["input_size"] = list(last["input_size"])
            out["last_batch"] = _jsonable(last)
        return out


def _stack_features(fx: FeatureExtractor, items, stages) -> dict[int, torch.Tensor]:
    """``{stride: (g, C, h, w)}`` float32 for the items (one input size), filled in place."""
    out: dict[int, torch.Tensor] = {}
    for idx, feats in fx.iter_batches([it.source for it in items]):
        for i, f in zip(idx, feats):
            for s in stages:
                if s not in out:
                    out[s] = torch.empty((len(items), *f[s].shape), dtype=torch.float32)
                out[s][i] = torch.from_numpy(f[s])
    return out
