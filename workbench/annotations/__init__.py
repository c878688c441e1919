"""Annotations: masks people paint or correct, kept in the MVTec AD layout with their history.

* :class:`AnnotationStore` -- ``root/ground_truth/<kind>/<stem>_mask.png`` ({0, 255} PNGs, so a
  dataset folder *is* a store) plus a JSON sidecar per image recording who saved which version
  when; every earlier version is kept as a file, nothing is overwritten in place.
* :func:`annotation_key` -- the ``(kind, stem)`` key of a dataset sample (or a key checked).

Widgets that edit masks (``widgets.MaskPainter``) take ``store=`` and ``key=(kind, stem)``.
"""

from workbench.annotations._store import (
    HISTORY_DIR,
    AnnotationLockError,
    AnnotationStore,
    annotation_key,
)

__all__ = ["AnnotationStore", "AnnotationLockError", "annotation_key", "HISTORY_DIR"]
