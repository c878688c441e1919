"""Open-set recognition: classify into known classes, or say "unknown".

* :class:`OpenSetClassifier` -- a classifier trained on the known classes, one Gaussian
  mixture per class on its latent space (wafer open-set recognition; hierarchical per-class
  GMMs with Mahalanobis aggregation), and an unknown threshold set on held-out known data
  at a chosen false positive rate.
* :func:`evaluate_open_set`, :func:`leave_one_class_out` -- known-class accuracy and
  unknown-detection AUROC beside the max-softmax-probability baseline.
* :func:`load_wafer_maps`, :func:`wafer_features`, :func:`read_wafer_maps` -- WM-811K wafer
  maps of any size as fixed-size rows.
"""

from workbench.openset._classifier import NOVELTY_SCORES, OpenSetClassifier
from workbench.openset._evaluate import evaluate_open_set, leave_one_class_out
from workbench.openset._wafer import WAFER_FEATURES, load_wafer_maps, read_wafer_maps, wafer_features

__all__ = [
    "NOVELTY_SCORES",
    "OpenSetClassifier",
    "WAFER_FEATURES",
    "evaluate_open_set",
    "leave_one_class_out",
    "load_wafer_maps",
    "read_wafer_maps",
    "wafer_features",
]
