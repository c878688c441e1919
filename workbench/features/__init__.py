"""Pretrained patch features: EfficientNet-Lite0/1/2 (plain torch) and a caching extractor.

>>> from workbench.features import FeatureExtractor
>>> fx = FeatureExtractor("efficientnet_lite0", stages=(8, 16), image_size=(256, 256))
>>> feats = fx.transform(["a.png", "b.png"])      # {8: (2, 40, 32, 32), 16: (2, 112, 16, 16)}
"""

from workbench.features._efficientnet import (
    BACKBONES,
    STAGE_STRIDES,
    EfficientNetLite,
    canonical_backbone,
    load_backbone,
)
from workbench.features._extractor import (
    FeatureExtractor,
    default_cache_dir,
    imagenet_preprocess,
    num_threads,
    to_tensor,
)

__all__ = [
    "BACKBONES",
    "STAGE_STRIDES",
    "EfficientNetLite",
    "FeatureExtractor",
    "canonical_backbone",
    "default_cache_dir",
    "imagenet_preprocess",
    "load_backbone",
    "num_threads",
    "to_tensor",
]
