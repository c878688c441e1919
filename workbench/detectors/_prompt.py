"""Few-shot detection with normal images as the prompt (after OneNIP and MetaUAS, 2025).

No training: ``fit`` keeps ``shots`` normal images as the prompt; a test patch is scored by
how well the prompt's patches explain it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from workbench.detectors._base import ImageDetector, _read_item, _threads, as_image_items
from workbench.errors import WorkbenchError

__all__ = ["PromptDetector", "PromptMatch", "prompt_embedding", "match_prompts"]

log = logging.getLogger(__name__)

_REFINE = (None, "median", "polish")


def prompt_embedding(features: dict[int, torch.Tensor], stages: tuple[int, ...], pool: int = 3) -> torch.Tensor:
    """Unit-length patch embeddings ``(b, d, h, w)`` on the grid of the finest stage.

    Each stage is averaged over its ``pool x pool`` neighbourhood (borders average what
    exists), resampled to the finest grid and L2-normalised; the stages are concatenated
    and scaled by ``1 / sqrt(len(stages))``. The squared distance of two embeddings is
    then the mean over stages of their squared cosine distances: stages count equally,
    whatever their channel counts and activation scales.

    Parameters
    ----------
    features : dict stride -> Tensor (b, C_s, h_s, w_s)
    stages : strides, finest first
    pool : int
    """
    size = tuple(features[stages[0]].shape[-2:])
    parts = []
    for s in stages:
        f = features[s].float()
        if pool > 1:
            f = F.avg_pool2d(f, pool, stride=1, padding=pool // 2, count_include_pad=False)
        if tuple(f.shape[-2:]) != size:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        parts.append(F.normalize(f, dim=1))
    return torch.cat(parts, dim=1) / math.sqrt(len(stages))


def match_prompts(query: torch.Tensor, prompts: torch.Tensor, window: int | None = None,
                  chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best prompt patch for every query patch.

    Parameters
    ----------
    query : Tensor, shape (d, h, w)
        Unit-length embeddings of one test image.
    prompts : Tensor, shape (K, d, h, w)
        Unit-length embeddings of the K prompt images (same grid).
    window : int or None
        None: global match (any position of any prompt; for objects that are not aligned
        and for textures). ``r``: only prompt positions within ``r`` cells (Chebyshev) of the
        query's own position: a soft alignment that tolerates shifts up to ``r`` cells and
        stops a patch from being explained by similar texture elsewhere.
    chunk : int
        Prompt patches per block of the global search (memory ``h * w * chunk * 4`` bytes).

    Returns
    -------
    distance : Tensor (h, w) float32
        Euclidean distance to the best match (``sqrt(2 - 2 sim)``), higher = more anomalous.
    prompt : Tensor (h, w) int64
        Index of the prompt image holding the match.
    position : Tensor (h, w) int64
        Flat position ``row * w + col`` of the match in that prompt's grid.
    """
    d, h, w = query.shape
    k = prompts.shape[0]
    q = query.reshape(d, h * w).T  # (P, d)
    if window is None:
        bank = prompts.permute(0, 2, 3, 1).reshape(k * h * w, d)
        best = torch.full((h * w,), float("-inf"))
        arg = torch.zeros(h * w, dtype=torch.int64)
        for start in range(0, bank.shape[0], chunk):
            sim = q @ bank[start:start + chunk].T
            val, idx = sim.max(1)
            better = val > best
            best = torch.where(better, val, best)
            arg = torch.where(better, idx + start, arg)
        prompt, position = arg // (h * w), arg % (h * w)
    else:
        r = int(window)
        best = torch.full((h, w), float("-inf"))
        prompt = torch.zeros((h, w), dtype=torch.int64)
        position = torch.zeros((h, w), dtype=torch.int64)
        rows = torch.arange(h)[:, None].expand(h, w)
        cols = torch.arange(w)[None, :].expand(h, w)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                # query (y, x) against prompt (y + dy, x + dx), where that exists
                y0, y1 = max(0, -dy), min(h, h - dy)
                x0, x1 = max(0, -dx), min(w, w - dx)
                if y0 >= y1 or x0 >= x1:
                    continue
                qs = query[:, y0:y1, x0:x1]
                ps = prompts[:, :, y0 + dy:y1 + dy, x0 + dx:x1 + dx]
                sim = (ps * qs[None]).sum(1)  # (K, hh, ww)
                val, kk = sim.max(0)
                cur = best[y0:y1, x0:x1]
                better = val > cur
                best[y0:y1, x0:x1] = torch.where(better, val, cur)
                prompt[y0:y1, x0:x1] = torch.where(better, kk, prompt[y0:y1, x0:x1])
                pos = (rows[y0:y1, x0:x1] + dy) * w + (cols[y0:y1, x0:x1] + dx)
                position[y0:y1, x0:x1] = torch.where(better, pos, position[y0:y1, x0:x1])
        best, prompt, position = best.reshape(-1), prompt.reshape(-1), position.reshape(-1)
    distance = (2.0 - 2.0 * best).clamp_min(0.0).sqrt()
    return distance.reshape(h, w), prompt.reshape(h, w), position.reshape(h, w)


@dataclass
class PromptMatch:
    """Which prompt patch explained each test patch (see :meth:`PromptDetector.explain`).

    Attributes
    ----------
    distance : ndarray (h, w) float32
        Distance to the best prompt patch, higher = more anomalous (before ``refine``).
    prompt : ndarray (h, w) int
        Index of the prompt image (into ``prompt_names``) holding the match.
    row, col : ndarray (h, w) int
        Grid position of the match in that prompt.
    grid_stride : int
        Input pixels per grid cell (grid cell ``(i, j)`` covers input rows
        ``i*stride:(i+1)*stride``; the input is the image resized to ``input_size``).
    input_size : (H, W)
    prompt_names : list of str
    """

    distance: np.ndarray
    prompt: np.ndarray
    row: np.ndarray
    col: np.ndarray
    grid_stride: int
    input_size: tuple[int, int]
    prompt_names: list[str]

    def prompt_pixel(self, row: int, col: int) -> tuple[int, int, int]:
        """``(prompt index, y, x)``: the prompt and the input-pixel centre of the patch that
        explained grid cell ``(row, col)`` of the test image."""
        s = self.grid_stride
        return (int(self.prompt[row, col]), int(self.row[row, col]) * s + s // 2,
                int(self.col[row, col]) * s + s // 2)


class PromptDetector(ImageDetector):
    """One (or K) normal images as the prompt, no training (after OneNIP and MetaUAS).

    ``fit`` keeps ``shots`` normal images (a seeded random choice among those not held
    out) as the prompt and calibrates thresholds on held-out normal images like every
    detector (``holdout``). A test patch's score is its distance to the best-matching
    prompt patch: patches are unit-length embeddings of the stride-8 and stride-16 stages
    (each averaged over 3x3 and L2-normalised, so the distance fuses the stages' cosine
    distances), the search covers a window of ``window`` cells around the patch's own
    position in every prompt (soft spatial alignment) or, by default, every position
    (global match, for unaligned objects and textures). With K prompts the best match over
    all of them counts. :meth:`explain` says which prompt patch explained each test patch.

    Parameters
    ----------
    shots : int, default 1
        Number of normal images in the prompt (``--shots K``). Capped at the number of
        normal images available for it (with a warning).
    window : int or None, default None
        Search radius in stride-8 cells (None: global). Use a few cells (e.g. 3 = 24 px)
        for aligned objects where a patch must not be explained by a similar patch
        elsewhere (a missing part, a swapped component).
    refine : {"polish", "median", None}, default "polish"
        Refinement with the test image's own statistics, on its patch scores. ``"polish"``:
        subtract the median of each row, then of each column (one pass of Tukey's median
        polish). That removes what a whole row or column of the image shares: a global
        offset (lighting, focus or soiling that raise every distance to the prompt) and the
        higher scores along the borders, whose patches (padding, mirrored context) have few
        counterparts in one prompt image; what stands out locally stays. A defect spanning
        a whole row or column would be removed with it. ``"median"``: subtract the image's
        median patch score only. None: raw distances (global appearance changes then count
        as anomalies, and borders score high with few prompts).
    pool : int, default 3
        Neighbourhood averaged into each patch embedding.
    pad : int, default 32
        Pixels of reflection added on every side of the resized image before the backbone
        (a multiple of 32; 0: only the backbone's own zero padding), so that border patches
        see image-like context. On the sample (K = 1) it raised the share of defects whose
        top pixel lies in the mask from 0.8 to 0.9; it costs ~1.4x feature time on small
        images.
    **kwargs
        Shared image-detector parameters (:class:`~workbench.detectors.ImageDetector`).

    Notes
    -----
    Cost per test image: global ``K * P^2 * d`` multiply-adds (P patches on the stride-8
    grid, d = 152 for Lite0): 0.1 s per prompt at 768x312 on one core; windowed
    ``K * (2 window + 1)^2 * P * d``. Memory: the prompt embeddings, ``K * P * d * 4``
    bytes (2.3 MB per prompt at 768x312).
    """

    name: ClassVar[str] = "prompt"
    default_stages: ClassVar[tuple[int, ...]] = (8, 16)
    _score_group: ClassVar[int] = 1
    _state_version: ClassVar[int] = 1

    def __init__(self, *, shots: int = 1, window: int | None = None, refine: str | None = "polish",
                 pool: int = 3, pad: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.shots = shots
        self.window = window
        self.refine = refine
        self.pool = pool
        self.pad = pad

    # -- fitting ------------------------------------------------------------------------
    def _validate(self) -> None:
        if int(self.shots) < 1:
            raise WorkbenchError(f"shots must be at least 1; got {self.shots!r}")
        if self.window is not None and int(self.window) < 0:
            raise WorkbenchError(f"window must be None (global) or a non-negative int; got {self.window!r}")
        if int(self.pad) < 0 or int(self.pad) % 32:
            raise WorkbenchError(f"pad must be a non-negative multiple of 32; got {self.pad!r}")
        if self.refine not in _REFINE:
            raise WorkbenchError(f"refine must be one of {_REFINE}; got {self.refine!r}")

    def _select_fit_items(self, items):
        self._validate()
        k = int(self.shots)
        if k > len(items):
            log.warning("%d shots asked for but only %d normal images are available for the prompt "
                        "(after the holdout); using %d", k, len(items), len(items))
            k = len(items)
        # seeded, independent of the holdout's draw, and nested: the 4-shot prompt holds the 1-shot one
        order = np.random.default_rng([int(self.random_state), 7]).permutation(len(items))
        chosen = [items[i] for i in order[:k]]
        self.prompt_names_ = [it.name for it in chosen]
        return chosen

    def _fit_features(self, features, n: int) -> None:
        embs = []
        for _, feats in features:
            embs.append(prompt_embedding(feats, self.default_stages, self.pool))
        self.prompts_ = torch.cat(embs).contiguous()  # (K, d, h, w)
        self.grid_ = tuple(self.prompts_.shape[-2:])
        self.n_prompts_ = int(self.prompts_.shape[0])

    def fit(self, images, validation=None):
        """Keep ``shots`` normal images as the prompt and calibrate thresholds.

        Parameters
        ----------
        images : FolderDataset, folder, or sequence of paths / samples / arrays
            Normal images (a dataset's ``train`` split); ``shots`` of them become the prompt,
            a share ``holdout`` calibrates the thresholds.
        validation : same kinds, optional
            Normal images to calibrate on instead of a holdout.

        Returns
        -------
        self
        """
        return super().fit(images, validation)

    # -- features -------------------------------------------------------------------------
    def _iter_features(self, items, cache, timings=None, group=1):
        """Like the base class, but each resized image is reflect-padded by ``pad`` pixels on
        every side before the backbone and the features are cropped back."""
        import time

        from workbench.features import to_tensor

        pad = int(self.pad)
        if not pad:
            yield from super()._iter_features(items, cache, timings, group)
            return
        fx = self._extractor(False)
        h, w = self.input_size_
        per = max(1, min(16, 160_000 // ((h + 2 * pad) * (w + 2 * pad)), int(group)))
        for start in range(0, len(items), per):
            t = time.perf_counter()
            chunk = items[start:start + per]
            batch = torch.stack([to_tensor(_read_item(it), (h, w), it.name) for it in chunk])
            batch = F.pad(batch, (pad,) * 4, mode="reflect" if pad < min(h, w) else "replicate")
            out = fx.forward(batch)
            feats = {s: o[:, :, pad // s: pad // s + math.ceil(h / s), pad // s: pad // s + math.ceil(w / s)]
                     for s, o in out.items()}
            if timings is not None:
                timings["features"] = timings.get("features", 0.0) + time.perf_counter() - t
            yield list(range(start, start + len(chunk))), feats

    # -- scoring --------------------------------------------------------------------------
    def _match(self, emb: torch.Tensor):
        return match_prompts(emb, self.prompts_, None if self.window is None else int(self.window))

    def _refine(self, dist: torch.Tensor) -> torch.Tensor:
        if self.refine == "median":
            return dist - dist.median()
        if self.refine == "polish":
            dist = dist - dist.median(dim=1, keepdim=True).values
            return dist - dist.median(dim=0, keepdim=True).values
        return dist

    def _patch_scores(self, feats: dict[int, torch.Tensor]) -> torch.Tensor:
        embs = prompt_embedding(feats, self.default_stages, self.pool)
        if tuple(embs.shape[-2:]) != tuple(self.grid_):
            raise ValueError(f"feature grid {tuple(embs.shape[-2:])} differs from the prompt's {self.grid_}")
        out = []
        for e in embs:
            dist, _, _ = self._match(e)
            out.append(self._refine(dist))
        return torch.stack(out)

    def explain(self, images) -> list[PromptMatch]:
        """Which prompt patch explained each test patch.

        Parameters
        ----------
        images : FolderDataset (its ``test`` split), folder, or sequence of paths / samples / arrays

        Returns
        -------
        list of PromptMatch
            One per image, on the stride-8 grid of the input size (``(h, w)`` arrays).
        """
        self._check_fitted()
        items = as_image_items(images, "test")
        self._check_items(items)
        out: list[PromptMatch | None] = [None] * len(items)
        w = self.grid_[1]
        with torch.inference_mode(), _threads(self.threads):
            for idx, feats in self._iter_features(items, cache=False, group=1):
                for j, e in zip(idx, prompt_embedding(feats, self.default_stages, self.pool)):
                    dist, prompt, pos = self._match(e)
                    out[j] = PromptMatch(distance=dist.numpy().astype(np.float32), prompt=prompt.numpy(),
                                         row=(pos // w).numpy(), col=(pos % w).numpy(),
                                         grid_stride=min(self.default_stages),
                                         input_size=tuple(self.input_size_),
                                         prompt_names=list(self.prompt_names_))
        return out  # type: ignore[return-value]

    # -- reporting and files ----------------------------------------------------------------
    def settings(self) -> dict:
        out = super().settings()
        if hasattr(self, "prompts_"):
            out["n_prompts"] = self.n_prompts_
            out["prompt_names"] = list(self.prompt_names_)
            out["grid"] = list(self.grid_)
            out["embedding_dim"] = int(self.prompts_.shape[1])
            out["alignment"] = "global" if self.window is None else f"window of +-{int(self.window)} cells"
        return out

    def _state(self) -> dict[str, Any]:
        return {"prompts": self.prompts_, "prompt_names": list(self.prompt_names_)}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.prompts_ = state["prompts"]
        self.prompt_names_ = list(state["prompt_names"])
        self.grid_ = tuple(self.prompts_.shape[-2:])
        self.n_prompts_ = int(self.prompts_.shape[0])
