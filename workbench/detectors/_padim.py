"""Gaussian detectors on pretrained patch features: PaDiM and one shared Gaussian (Rippel et al.)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from workbench.detectors._base import ImageDetector
from workbench.detectors._features import patch_embedding

__all__ = ["PaDiM", "SharedGaussian"]


def _shrunk_precision_factor(cov: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """Lower-triangular ``W`` with ``W.T @ W = inv(S)`` for ``S = (1-a) cov + a (tr(cov)/d) I``.

    ``cov`` is float64 ``(..., d, d)``. Uses a Cholesky factorisation and a triangular
    solve (batched ``torch.linalg.inv`` is unreliable with several threads in torch 2.13).
    The Mahalanobis distance squared of ``x`` is then ``|W (x - mean)|^2``. Returns float32.
    """
    d = cov.shape[-1]
    eye = torch.eye(d, dtype=torch.float64)
    trace = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1)[..., None, None] / d
    reg = (1 - shrinkage) * cov + shrinkage * trace * eye + 1e-10 * eye
    chol, info = torch.linalg.cholesky_ex(reg)
    if int(info.max()) > 0:  # not positive definite (degenerate features): add more ridge
        reg = reg + 1e-6 * trace.clamp_min(1e-12) * eye
        chol = torch.linalg.cholesky(reg)
    return torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False).float().contiguous()


class _GaussianBase(ImageDetector):
    default_stages: ClassVar[tuple[int, ...]] = (8, 16)

    def __init__(self, *, n_features: int | None = 100, shrinkage: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.n_features = n_features
        self.shrinkage = shrinkage

    def _embed(self, feats: dict[int, torch.Tensor]) -> torch.Tensor:
        """(b, d, h, w) embedding restricted to the kept channels (channels-last memory)."""
        channels = getattr(self, "channels_", None)
        if channels is None:
            return patch_embedding(feats, self.default_stages)
        # keep each stage's channels before upsampling: the same embedding, less work
        kept, offset = {}, 0
        for s in self.default_stages:
            c = feats[s].shape[1]
            mine = channels[(channels >= offset) & (channels < offset + c)] - offset
            kept[s] = feats[s].index_select(1, mine)
            offset += c
        return patch_embedding(kept, self.default_stages)

    def _choose_channels(self, total: int) -> None:
        if self.n_features is None or self.n_features >= total:
            self.channels_ = None
        else:
            rng = np.random.default_rng(self.random_state)
            self.channels_ = torch.from_numpy(np.sort(rng.choice(total, int(self.n_features), replace=False)))


class PaDiM(_GaussianBase):
    """A Gaussian per feature-map position (after PaDiM, Defard et al. 2021).

    Patch embeddings are the stride-8 and stride-16 stages concatenated on the stride-8
    grid (Lite0: 40 + 112 = 152 channels), optionally a random subset of ``n_features``
    channels (kept as state). At each grid position a mean and a covariance are estimated
    from the normal images; the covariance is shrunk towards a scaled identity,
    ``(1 - shrinkage) S + shrinkage tr(S)/d I``. The patch score is the Mahalanobis distance.
    Use it for aligned objects and regular textures, where position matters; for objects
    that move around use :class:`SharedGaussian` or :class:`~workbench.detectors.PatchCore`.

    Memory: ``h * w * d * d`` floats of state, e.g. 3744 positions x 100^2 x 4 bytes = 150 MB
    at a 768x312 input.

    Parameters
    ----------
    n_features : int or None, default 100
        Random channel subset size (None: all channels).
    shrinkage : float, default 0.01
    **kwargs
        Shared image-detector parameters (see :class:`~workbench.detectors.ImageDetector`).
    """

    name: ClassVar[str] = "padim"

    @property
    def _score_group(self) -> int:
        # Scoring reads all h*w precision factors once per group of images (150 MB at
        # 768x312): on BSData the Mahalanobis step took 19 ms per image in groups of 4,
        # 1.5 ms in groups of 32. Groups hold ~64 MB of centred features at most.
        h, w = getattr(self, "grid_", (1, 1))
        d = self.mean_.shape[1] if hasattr(self, "mean_") else 152
        return int(max(1, min(32, (64 << 20) // max(1, h * w * d * 4))))

    def _fit_features(self, features, n: int) -> None:
        total = None
        count = 0
        for _, feats in features:
            if total is None:
                self._choose_channels(patch_embedding(feats, self.default_stages).shape[1])
            emb = self._embed(feats).double()  # (b, d, h, w)
            b, d, h, w = emb.shape
            x = emb.permute(2, 3, 0, 1).reshape(h * w, b, d)  # (L, b, d)
            if total is None:
                shift = x[:, 0, :].clone()  # reference point: better conditioned sums
                total = torch.zeros(h * w, d, dtype=torch.float64)
                outer = torch.zeros(h * w, d, d, dtype=torch.float64)
                self.grid_ = (h, w)
            xc = x - shift[:, None, :]
            total += xc.sum(1)
            outer.baddbmm_(xc.transpose(1, 2), xc)
            count += b
        mean_c = total / count
        cov = (outer - count * mean_c[:, :, None] * mean_c[:, None, :]) / max(count - 1, 1)
        self.mean_ = (mean_c + shift).float()
        self.precision_factor_ = _shrunk_precision_factor(cov, self.shrinkage)

    def _patch_scores(self, feats: dict[int, torch.Tensor]) -> torch.Tensor:
        emb = self._embed(feats)
        b, d, h, w = emb.shape
        if (h, w) != tuple(self.grid_):
            raise ValueError(f"feature grid {h}x{w} differs from the fitted {self.grid_}")
        # (L, d, b), contiguous: bmm on a strided view of the channels-last embedding was
        # several times slower than the copy
        x = emb.permute(2, 3, 1, 0).reshape(h * w, d, b).contiguous()
        x -= self.mean_[:, :, None]
        z = torch.bmm(self.precision_factor_, x)  # (L, d, b)
        dist = z.pow(2).sum(1).clamp_min(0).sqrt()  # (L, b)
        return dist.T.reshape(b, h, w)

    def _state(self) -> dict[str, Any]:
        return {"mean": self.mean_, "precision_factor": self.precision_factor_, "grid": list(self.grid_),
                "channels": self.channels_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.mean_ = state["mean"]
        self.precision_factor_ = state["precision_factor"]
        self.grid_ = tuple(state["grid"])
        self.channels_ = state["channels"]


class SharedGaussian(_GaussianBase):
    """One Gaussian over the patch embeddings of all positions (after Rippel et al. 2020).

    Same embeddings as :class:`PaDiM`, but one mean and one shrunk covariance for every
    patch of every normal image, so the score does not depend on where a patch is: suited
    to objects that are not aligned and to textures. Tiny state (``d x d``).
    """

    name: ClassVar[str] = "padim-shared"

    def _fit_features(self, features, n: int) -> None:
        total = outer = None
        count = 0
        for _, feats in features:
            if total is None:
                self._choose_channels(patch_embedding(feats, self.default_stages).shape[1])
            emb = self._embed(feats).double()
            x = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
            if total is None:
                shift = x.mean(0)
                total = torch.zeros(x.shape[1], dtype=torch.float64)
                outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
            xc = x - shift
            total += xc.sum(0)
            outer += xc.T @ xc
            count += x.shape[0]
        mean_c = total / count
        cov = (outer - count * torch.outer(mean_c, mean_c)) / max(count - 1, 1)
        self.mean_ = (mean_c + shift).float()
        self.precision_factor_ = _shrunk_precision_factor(cov, self.shrinkage)

    def _patch_scores(self, feats: dict[int, torch.Tensor]) -> torch.Tensor:
        emb = self._embed(feats)
        b, d, h, w = emb.shape
        x = emb.permute(0, 2, 3, 1).reshape(-1, d) - self.mean_
        z = x @ self.precision_factor_.T
        return z.pow(2).sum(1).clamp_min(0).sqrt().reshape(b, h, w)

    def _state(self) -> dict[str, Any]:
        return {"mean": self.mean_, "precision_factor": self.precision_factor_, "channels": self.channels_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.mean_ = state["mean"]
        self.precision_factor_ = state["precision_factor"]
        self.channels_ = state["channels"]
