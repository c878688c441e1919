"""Embeddings: UMAP/PCA projections (cached on disk), image-level backbone features and
Gaussian-mixture helpers for inspecting a latent space.

>>> from workbench.embedding import project, image_features, find_images
>>> X = image_features(find_images("photos/"))         # (n, 432) float32, Lite0 stages 16 + 32
>>> xy = project(X, "umap", random_state=0)               # (n, 2) float32, cached by content hash
>>> v = load_vectors("digits")                            # or an image folder, or a .npz/.csv/.parquet table

The views that show these (``widgets.EmbeddingExplorer``, ``widgets.GMMInspector``) live in
the ``widgets`` package; nothing here needs Jupyter.
"""

from workbench.embedding._data import Vectors, load_vectors, novelty_split
from workbench.embedding._gmm import GMMSweep, component_covariances, component_ellipses, ellipse, fit_gmms
from workbench.embedding._images import find_images, image_features
from workbench.embedding._project import PROJECTION_METHODS, embedding_cache_dir, project, projection_cache_key

__all__ = [
    "PROJECTION_METHODS",
    "GMMSweep",
    "Vectors",
    "component_covariances",
    "component_ellipses",
    "ellipse",
    "embedding_cache_dir",
    "find_images",
    "fit_gmms",
    "image_features",
    "load_vectors",
    "novelty_split",
    "project",
    "projection_cache_key",
]
