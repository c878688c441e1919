"""MVTec AD folder layout: ``train/good``, ``test/<kind>``, ``ground_truth/<kind>``."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.datasets._image import IMAGE_EXTENSIONS, image_shape, read_image, read_mask
from workbench.errors import DataError

__all__ = ["Sample", "FolderDataset", "LAYOUT"]

#: The folder layout :class:`FolderDataset` reads, as shown in its error messages.
LAYOUT = (
    "  <root>/train/good/<name>.png|jpg|bmp|tif        normal training images (required)\n"
    "  <root>/test/<kind>/<name>.png|jpg|bmp|tif       test images; kind 'good' is normal, any other kind a defect\n"
    "  <root>/ground_truth/<kind>/<name>_mask.png      optional masks for defect kinds ({0, 255}, image size)"
)

GOOD = "good"
_MASK_SUFFIX = "_mask"
# Files that commonly sit in dataset folders; skipped without a warning.
_QUIET_SUFFIXES = {".txt", ".md", ".json", ".yaml", ".yml", ".csv", ".xml", ".ini", ".db", ".log", ".license"}
_QUIET_NAMES = {"thumbs.db", "desktop.ini", "license", "readme"}
_EXAMPLES = 3


def _examples(names: list[str], k: int = _EXAMPLES) -> str:
    shown = ", ".join(names[:k])
    return shown + (", ..." if len(names) > k else "")


def _is_quiet(entry: os.DirEntry) -> bool:
    name = entry.name
    return (
        name.startswith(".")
        or name.lower() in _QUIET_NAMES
        or Path(name).suffix.lower() in _QUIET_SUFFIXES
    )


def _list_images(folder: Path) -> list[Path]:
    """Supported image files in ``folder`` sorted by name; warns about unsupported entries."""
    images: list[Path] = []
    skipped: list[str] = []
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if _is_quiet(entry):
            continue
        if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
            images.append(Path(entry.path))
        else:
            skipped.append(entry.name + ("/" if entry.is_dir() else ""))
    if skipped:
        warnings.warn(
            f"{folder}: ignored {len(skipped)} entries that are not supported image files "
            f"({_examples(skipped)}); supported extensions: {', '.join(IMAGE_EXTENSIONS)}.",
            stacklevel=3,
        )
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise DataError(
                f"{folder} holds two images with the stem {path.stem!r}: {stems[path.stem].name} and "
                f"{path.name}; stems identify images (and their masks), so each must be unique. "
                f"Rename or remove one."
            )
        stems[path.stem] = path
    return images


def _subfolders(folder: Path) -> list[Path]:
    with os.scandir(folder) as it:
        return sorted((Path(e.path) for e in it if e.is_dir() and not e.name.startswith(".")), key=lambda p: p.name)


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    Parameters
    ----------
    path : pathlib.Path
        The image file.
    split : {'train', 'test'}
        Which part of the dataset it belongs to.
    kind : str
        ``'good'`` for normal images, otherwise the defect kind (the ``test/<kind>`` folder).
    label : int
        0 = normal, 1 = anomalous.
    mask_path : pathlib.Path or None
        The ground-truth mask, when the kind has masks and this image's mask exists.
    shape : tuple of int or None
        Shape :meth:`image` returns, ``(H, W)`` or ``(H, W, 3)``, read from the file header
        (None when unknown; then :meth:`mask` reads the header itself).
    """

    path: Path
    split: str
    kind: str
    label: int
    mask_path: Path | None = None
    shape: tuple[int, ...] | None = field(default=None, compare=False)

    @property
    def stem(self) -> str:
        """File name without extension; with :attr:`kind` it keys annotations and masks."""
        return self.path.stem

    def image(self) -> np.ndarray:
        """The image as uint8 ``(H, W)`` (gray) or ``(H, W, 3)`` (colour); see :func:`read_image`."""
        return read_image(self.path)

    def mask(self) -> np.ndarray | None:
        """Ground truth as bool ``(H, W)``, True = anomalous pixel.

        Normal images (``label == 0``) give an all-False mask of the image's size. Defect
        images give their mask, or None when their kind has no masks or their mask is
        missing.
        """
        if self.label == 0:
            shape = self.shape if self.shape is not None else image_shape(self.path)
            return np.zeros(shape[:2], dtype=bool)
        if self.mask_path is None:
            return None
        shape = self.shape if self.shape is not None else image_shape(self.path)
        return read_mask(self.mask_path, expected_shape=shape, image_path=self.path)


class FolderDataset:
    """An image dataset in the MVTec AD folder layout.

    ::

        <root>/train/good/*.png|jpg|bmp|tif      normal training images (required)
        <root>/test/<kind>/*                      test images; 'good' = normal, other kinds = defects
        <root>/ground_truth/<kind>/<stem>_mask.png   masks for defect kinds (optional per kind)

    ``root`` is the category folder itself (e.g. ``mvtec/bottle`` or
    ``../shared/datasets/images/bsdata_pitting``). Construction checks the layout by reading
    every image and mask *header* (pixels are decoded only by :meth:`Sample.image`), so a
    damaged pixel stream is reported when the image is read.

    Parameters
    ----------
    root : str or path-like
        The dataset folder.

    Attributes
    ----------
    root : pathlib.Path
        Absolute dataset folder.
    train : list of Sample
        ``train/good`` images, sorted by file name.
    test : list of Sample
        Test images, by kind (``'good'`` first, then other kinds sorted) and file name.
    kinds : list of str
        Test kinds, ``'good'`` first, then sorted.
    has_masks : bool
        True when any defective test image has a mask.

    Raises
    ------
    DataError
        The folder or ``train/good`` is missing or empty; an image or mask header cannot be
        read; a mask has no image or another size than its image; two images share a stem.

    Warns
    -----
    UserWarning
        Unsupported files were ignored (hidden files and ``.txt``/``.json``/... are ignored
        silently); a kind with a ``ground_truth`` folder lacks masks for some images (once per
        kind, with the count and examples; those images count as "mask missing").
    """

    def __init__(self, root: str | os.PathLike):
        root = Path(root).expanduser()
        if not root.exists():
            raise DataError(f"dataset folder {root} does not exist. Expected the MVTec AD layout:\n{LAYOUT}")
        if not root.is_dir():
            raise DataError(f"dataset path {root} is a file; expected a folder in the MVTec AD layout:\n{LAYOUT}")
        self.root = root.resolve()
        train_dir = self.root / "train" / GOOD
        if not train_dir.is_dir():
            raise DataError(self._no_train_message(train_dir))
        self.train = [
            Sample(p, "train", GOOD, 0, None, shape) for p, shape in self._probe_all(_list_images(train_dir))
        ]
        if not self.train:
            raise DataError(
                f"{train_dir} holds no images; expected normal training images with one of the "
                f"extensions {', '.join(IMAGE_EXTENSIONS)}. Add images, or check the dataset folder."
            )
        self.test: list[Sample] = []
        self.kinds: list[str] = []
        self._mask_counts: dict[str, int | None] = {}
        self._missing: dict[str, list[str]] = {}
        test_dir = self.root / "test"
        gt_dir = self.root / "ground_truth"
        kind_dirs = _subfolders(test_dir) if test_dir.is_dir() else []
        kind_dirs.sort(key=lambda p: (p.name != GOOD, p.name))
        if test_dir.is_dir():
            self._warn_loose_files(test_dir, "test images belong in test/<kind>/")
        for kind_dir in kind_dirs:
            kind = kind_dir.name
            images = self._probe_all(_list_images(kind_dir))
            if not images:
                warnings.warn(f"{kind_dir} holds no images; kind {kind!r} is left out.", stacklevel=2)
                continue
            self.kinds.append(kind)
            masks = self._match_masks(kind, images, gt_dir / kind) if kind != GOOD else {}
            label = 0 if kind == GOOD else 1
            for path, shape in images:
                self.test.append(Sample(path, "test", kind, label, masks.get(path.stem), shape))
        self._check_ground_truth_folders(gt_dir, {d.name for d in kind_dirs})
        self.has_masks = any(s.mask_path is not None for s in self.test if s.label == 1)

    # ------------------------------------------------------------------ validation

    def _no_train_message(self, train_dir: Path) -> str:
        msg = f"dataset folder {self.root} has no {train_dir.relative_to(self.root)} folder. Expected the MVTec AD layout:\n{LAYOUT}"
        categories = [d.name for d in _subfolders(self.root) if (d / "train" / GOOD).is_dir()]
        if categories:
            msg += (
                f"\nIt looks like a folder of categories ({_examples(categories, 5)}); pass one "
                f"category folder, e.g. {self.root / categories[0]}."
            )
        return msg

    @staticmethod
    def _probe_all(paths: list[Path]) -> list[tuple[Path, tuple[int, ...]]]:
        return [(p, image_shape(p)) for p in paths]

    @staticmethod
    def _warn_loose_files(folder: Path, hint: str) -> None:
        with os.scandir(folder) as it:
            loose = sorted(e.name for e in it if e.is_file() and not _is_quiet(e))
        if loose:
            warnings.warn(f"{folder}: ignored {len(loose)} files ({_examples(loose)}); {hint}.", stacklevel=3)

    def _match_masks(
        self, kind: str, images: list[tuple[Path, tuple[int, ...]]], kind_gt: Path
    ) -> dict[str, Path]:
        """Map image stem -> mask path for one defect kind, validating names and sizes."""
        if not kind_gt.is_dir():
            self._mask_counts[kind] = None  # this kind has no masks
            return {}
        by_stem = {p.stem: (p, shape) for p, shape in images}
        masks: dict[str, Path] = {}
        ignored: list[str] = []
        with os.scandir(kind_gt) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if _is_quiet(entry):
                continue
            mask_path = Path(entry.path)
            stem = mask_path.stem
            if not (entry.is_file() and mask_path.suffix.lower() in IMAGE_EXTENSIONS and stem.endswith(_MASK_SUFFIX)):
                ignored.append(entry.name)
                continue
            image_stem = stem[: -len(_MASK_SUFFIX)]
            if image_stem not in by_stem:
                expected = self.root / "test" / kind / f"{image_stem}.png"
                raise DataError(
                    f"mask {mask_path} has no image: expected {expected} (or .jpg/.jpeg/.bmp/.tif/.tiff). "
                    f"Masks are named <image stem>_mask.png; remove the mask or add its image."
                )
            if image_stem in masks:
                raise DataError(
                    f"{kind_gt} holds two masks for image {image_stem!r}: {masks[image_stem].name} and "
                    f"{mask_path.name}; keep one."
                )
            image_path, shape = by_stem[image_stem]
            mask_shape = image_shape(mask_path)
            if mask_shape[:2] != shape[:2]:
                raise DataError(
                    f"mask {mask_path} is {mask_shape[0]}x{mask_shape[1]} (HxW) but its image {image_path} "
                    f"is {shape[0]}x{shape[1]}; a mask must have its image's size. Re-export the mask at "
                    f"the image's size."
                )
            masks[image_stem] = mask_path
        if ignored:
            warnings.warn(
                f"{kind_gt}: ignored {len(ignored)} files that are not masks ({_examples(ignored)}); masks are "
                f"named <image stem>_mask.png.",
                stacklevel=3,
            )
        missing = [p.name for p, _ in images if p.stem not in masks]
        self._mask_counts[kind] = len(masks)
        self._missing[kind] = missing
        if missing:
            warnings.warn(
                f"{kind_gt} has no mask for {len(missing)} of {len(images)} images in test/{kind} "
                f"(e.g. {_examples(missing)}); these images count as 'mask missing' and are left out "
                f"of pixel-level metrics.",
                stacklevel=3,
            )
        return masks

    def _check_ground_truth_folders(self, gt_dir: Path, test_kinds: set[str]) -> None:
        if not gt_dir.is_dir():
            return
        for kind_gt in _subfolders(gt_dir):
            kind = kind_gt.name
            if kind == GOOD:
                warnings.warn(
                    f"{kind_gt} was ignored: 'good' images are normal, so their masks are empty by definition.",
                    stacklevel=3,
                )
            elif kind not in test_kinds:
                # Any mask here has no image; report the first one.
                masks = [p for p in sorted(kind_gt.iterdir()) if not p.name.startswith(".") and p.is_file()]
                if masks:
                    stem = masks[0].stem
                    stem = stem[: -len(_MASK_SUFFIX)] if stem.endswith(_MASK_SUFFIX) else stem
                    raise DataError(
                        f"mask {masks[0]} has no image: expected {self.root / 'test' / kind / (stem + '.png')} "
                        f"(there is no test/{kind} folder). Remove {kind_gt} or add the test images."
                    )

    # ------------------------------------------------------------------ reporting

    def summary(self) -> dict:
        """Counts and image properties, as a JSON-ready dict.

        Returns
        -------
        dict
            ``root``; ``train`` and ``test`` (image counts per kind); ``masks`` (per defect
            kind: number of masks, or None when the kind has no ``ground_truth`` folder);
            ``masks_missing`` (per defect kind with masks: images without one);
            ``image_sizes`` (list of ``{"height", "width", "count"}``, most common first);
            ``channels`` (``{"gray": n, "colour": n}``).
        """
        every = self.train + self.test
        sizes = Counter(s.shape[:2] for s in every)
        return {
            "root": str(self.root),
            "train": dict(Counter(s.kind for s in self.train)),
            "test": {k: sum(1 for s in self.test if s.kind == k) for k in self.kinds},
            "masks": {k: self._mask_counts.get(k) for k in self.kinds if k != GOOD},
            "masks_missing": {k: len(v) for k, v in self._missing.items()},
            "image_sizes": [
                {"height": h, "width": w, "count": n}
                for (h, w), n in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "channels": {
                "gray": sum(1 for s in every if len(s.shape) == 2),
                "colour": sum(1 for s in every if len(s.shape) == 3),
            },
        }

    def __repr__(self) -> str:
        test = ", ".join(f"{k}={sum(1 for s in self.test if s.kind == k)}" for k in self.kinds)
        n_masks = sum(1 for s in self.test if s.mask_path is not None)
        return f"FolderDataset({str(self.root)!r}, train={len(self.train)}, test=[{test}], masks={n_masks})"
