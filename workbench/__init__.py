"""Outlier Workbench: find what does not fit in images, tables and embeddings.

Subpackages: :mod:`workbench.features` (pretrained EfficientNet-Lite patch features),
:mod:`workbench.datasets` (MVTec-layout folders, tables, the generated sample),
:mod:`workbench.metrics` (image and pixel metrics, AUPRO), :mod:`workbench.detectors`.
"""

from workbench._version import __version__

__all__ = ["__version__"]
