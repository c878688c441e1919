"""Detectors: image detectors return :class:`Scores`; vector detectors are scikit-learn
outlier estimators. Every detector has ``anomaly_score`` (higher = more anomalous).

Names used on the command line live in one registry (:func:`get_detector`,
:func:`describe_detectors`). Classes are imported on first use.
"""

from __future__ import annotations

import importlib

from workbench.detectors._registry import (
    REGISTRY,
    describe_detectors,
    get_detector,
    list_detectors,
    make_detector,
)

# public name -> module that defines it (imported lazily on attribute access)
_LAZY = {
    "Scores": "workbench.detectors._base",
    "ImageDetector": "workbench.detectors._base",
    "load_detector": "workbench.detectors._base",
    "PaDiM": "workbench.detectors._padim",
    "SharedGaussian": "workbench.detectors._padim",
    "PatchCore": "workbench.detectors._patchcore",
    "MutualScoring": "workbench.detectors._musc",
    "PromptDetector": "workbench.detectors._prompt",
    "IsolationForestDetector": "workbench.detectors._vector",
    "KNNDetector": "workbench.detectors._vector",
    "LOFDetector": "workbench.detectors._vector",
    "GMMDetector": "workbench.detectors._vector",
    "MahalanobisDetector": "workbench.detectors._vector",
    "NegatedPCADetector": "workbench.detectors._vector",
    "PCADetector": "workbench.detectors._vector",
    "ECODDetector": "workbench.detectors._vector",
    "PyODDetector": "workbench.detectors._pyod",
}

__all__ = ["REGISTRY", "describe_detectors", "get_detector", "list_detectors", "make_detector", *_LAZY]


def __getattr__(name: str):
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'workbench.detectors' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
