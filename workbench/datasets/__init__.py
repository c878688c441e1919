"""Datasets: images and masks, MVTec AD-layout folders, tables, and the generated sample.

* :func:`read_image`, :func:`read_mask` -- one file into a uint8 image or a bool mask.
* :class:`FolderDataset`, :class:`Sample` -- an MVTec AD-layout folder
  (``train/good``, ``test/<kind>``, ``ground_truth/<kind>/<stem>_mask.png``).
* :func:`load_table`, :class:`Table` -- ``.npz`` / ``.csv`` / ``.parquet`` feature tables.
* :func:`make_sample` -- the generated sample dataset (``workbench data sample``).

Errors in the data raise :class:`workbench.errors.DataError` with a message that names
the file, what was expected, what was found and what to do.
"""

from workbench.datasets._folder import LAYOUT, FolderDataset, Sample
from workbench.datasets._image import IMAGE_EXTENSIONS, image_shape, read_image, read_mask
from workbench.datasets._sample import SAMPLE_MANIFEST, SAMPLE_SPEC, make_sample, sample_is_complete
from workbench.datasets._table import TABLE_EXTENSIONS, Table, load_table

__all__ = [
    "IMAGE_EXTENSIONS",
    "LAYOUT",
    "SAMPLE_MANIFEST",
    "SAMPLE_SPEC",
    "TABLE_EXTENSIONS",
    "FolderDataset",
    "Sample",
    "Table",
    "image_shape",
    "load_table",
    "make_sample",
    "read_image",
    "read_mask",
    "sample_is_complete",
]
