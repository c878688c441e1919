"""One registry mapping detector names (CLI ``--detector``) to classes.

Names are fixed by DESIGN.md. Classes are imported lazily, so listing detectors does not
import torch or faiss. ``pyod:<ClassName>`` wraps any PyOD detector.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from workbench.errors import WorkbenchError

__all__ = ["DetectorInfo", "REGISTRY", "get_detector", "make_detector", "list_detectors", "describe_detectors"]


@dataclass(frozen=True)
class DetectorInfo:
    name: str
    kind: str  # "image" or "vector"
    target: str  # "module:ClassName"
    summary: str


REGISTRY: dict[str, DetectorInfo] = {
    info.name: info
    for info in (
        # image detectors: fit on normal images, return Scores(image_scores, anomaly_maps)
        DetectorInfo("padim", "image", "workbench.detectors._padim:PaDiM",
                     "Gaussian per feature-map position (PaDiM); for aligned objects and textures"),
        DetectorInfo("padim-shared", "image", "workbench.detectors._padim:SharedGaussian",
                     "one Gaussian over all patch positions (Rippel et al.); for unaligned objects"),
        DetectorInfo("patchcore", "image", "workbench.detectors._patchcore:PatchCore",
                     "nearest neighbour in a coreset memory bank of patch features (PatchCore); best default"),
        DetectorInfo("musc", "image", "workbench.detectors._musc:MutualScoring",
                     "zero-shot: unlabeled test images score each other's patches (MuSc); ignores train"),
        DetectorInfo("prompt", "image", "workbench.detectors._prompt:PromptDetector",
                     "few-shot: K normal images as prompt, aligned patch matching (--shots K)"),
        # vector detectors: scikit-learn outlier estimators with anomaly_score(X)
        DetectorInfo("iforest", "vector", "workbench.detectors._vector:IsolationForestDetector",
                     "isolation forest (scikit-learn) adapter"),
        DetectorInfo("knn", "vector", "workbench.detectors._vector:KNNDetector",
                     "distance to the k-th nearest training point (faiss for large sets)"),
        DetectorInfo("lof", "vector", "workbench.detectors._vector:LOFDetector",
                     "local outlier factor, novelty mode"),
        DetectorInfo("gmm", "vector", "workbench.detectors._vector:GMMDetector",
                     "Gaussian mixture density, number of components chosen by BIC"),
        DetectorInfo("mahalanobis", "vector", "workbench.detectors._vector:MahalanobisDetector",
                     "Mahalanobis distance with shrinkage covariance"),
        DetectorInfo("npca", "vector", "workbench.detectors._vector:NegatedPCADetector",
                     "Mahalanobis on the low-variance principal components only (Rippel et al.)"),
        DetectorInfo("pca", "vector", "workbench.detectors._vector:PCADetector",
                     "PCA reconstruction error with a rank guard"),
        DetectorInfo("ecod", "vector", "workbench.detectors._vector:ECODDetector",
                     "empirical-CDF outlier scores from the training data only (pure, unlike PyOD's)"),
    )
}

_PYOD_PREFIX = "pyod:"


def _import(target: str):
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise WorkbenchError(f"detector module {module_name} is not available in this version") from exc
        raise
    return getattr(module, attr)


def get_detector(name: str):
    """The class registered as ``name`` (or a PyOD adapter factory for ``pyod:<ClassName>``)."""
    if name.startswith(_PYOD_PREFIX):
        from workbench.detectors._pyod import pyod_detector_class

        return pyod_detector_class(name[len(_PYOD_PREFIX):])
    try:
        info = REGISTRY[name]
    except KeyError:
        raise WorkbenchError(
            f"unknown detector {name!r}; known: {', '.join(REGISTRY)}, pyod:<ClassName> "
            "(run with --detector help for one line on each)"
        ) from None
    return _import(info.target)


def make_detector(name: str, **params):
    """Instantiate the detector ``name`` with keyword parameters."""
    return get_detector(name)(**params)


def list_detectors(kind: str | None = None) -> list[DetectorInfo]:
    """Registered detectors, optionally only ``"image"`` or ``"vector"`` ones."""
    return [info for info in REGISTRY.values() if kind is None or info.kind == kind]


def describe_detectors(kind: str | None = None) -> str:
    """One line per detector, for ``--detector help``."""
    rows = list_detectors(kind)
    if kind in (None, "vector"):
        rows = rows + [DetectorInfo("pyod:<ClassName>", "vector", "", "any PyOD detector, e.g. pyod:COPOD (warns when transductive)")]
    width = max(len(r.name) for r in rows)
    return "\n".join(f"  {r.name:<{width}}  [{r.kind}] {r.summary}" for r in rows)
