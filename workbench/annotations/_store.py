"""AnnotationStore: masks in the MVTec AD layout, every version kept, safe under concurrent writers.

Layout under ``root`` (a dataset folder can be its own store)::

    ground_truth/<kind>/<stem>_mask.png                  the current mask, {0, 255} 8-bit PNG
    ground_truth/<kind>/.history/<stem>/history.json     sidecar: every version, who, when
    ground_truth/<kind>/.history/<stem>/v000003-<sha>.png   each version ever saved (current included)
    ground_truth/<kind>/.history/<stem>/.lock             lock file of this key

The ``.history`` folders are hidden, so :class:`~workbench.datasets.FolderDataset` and other
MVTec readers see a plain dataset.

Keys
----
A key is ``(kind, stem)``: the MVTec ``test/<kind>`` folder and the image's file name without
extension, so the mask of ``test/scratch/003.png`` is ``ground_truth/scratch/003_mask.png``. In
MVTec layouts ``train/good/000.png`` and ``test/good/000.png`` share the stem ``000``; ground truth
exists only for *test* images, so a key always means a test image and :func:`annotation_key`
refuses training samples. A mask under kind ``good`` is allowed (it says a "good" image has a
defect, i.e. it is mislabelled) but :class:`~workbench.datasets.FolderDataset` ignores
``ground_truth/good`` with a warning: move such an image into a defect kind.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import json
import os
import socket
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from workbench._io import atomic_write_bytes, atomic_write_json
from workbench.errors import DataError, WorkbenchError

__all__ = ["AnnotationStore", "AnnotationLockError", "annotation_key", "HISTORY_DIR"]

#: Hidden folder (inside ``ground_truth/<kind>/``) holding sidecars and earlier versions.
HISTORY_DIR = ".history"
_SIDECAR = "history.json"
_LOCK = ".lock"
_MASK_SUFFIX = "_mask"
_FORMAT = 1
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class AnnotationLockError(WorkbenchError, TimeoutError):
    """Another writer held an annotation's lock file for longer than the store's ``lock_timeout``."""


# ----------------------------------------------------------------------------- keys
def _check_part(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"annotation {what} must be a non-empty string; got {value!r}")
    bad = [c for c in ("/", "\\", "\0") if c in value]
    if bad or value in (".", "..") or value.startswith("."):
        raise ValueError(
            f"annotation {what} {value!r} cannot be used as a file name (no '/', '\\', leading '.'); "
            f"keys are (kind, stem): the test/<kind> folder and the image file name without extension"
        )
    return value


def annotation_key(obj: Any) -> tuple[str, str]:
    """The ``(kind, stem)`` key of a dataset sample, or ``obj`` checked when it is a key.

    Parameters
    ----------
    obj : Sample or tuple of (str, str)
        A :class:`~workbench.datasets.Sample` of the *test* split, or a ``(kind, stem)`` pair.

    Returns
    -------
    tuple of (str, str)

    Raises
    ------
    ValueError
        ``obj`` is a training sample (ground truth is for test images; ``train/good`` and
        ``test/good`` stems collide), or not a valid key.
    """
    if hasattr(obj, "kind") and hasattr(obj, "path"):
        split = getattr(obj, "split", "test")
        if split != "test":
            raise ValueError(
                f"{obj.path} is a {split!r} image; annotation keys name test images (kind, stem) and "
                f"train/good stems collide with test/good ones. If a training image has a defect, move it "
                f"into test/<kind>/ and annotate it there."
            )
        return _check_part(obj.kind, "kind"), _check_part(Path(obj.path).stem, "stem")
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return _check_part(obj[0], "kind"), _check_part(obj[1], "stem")
    raise ValueError(f"expected a (kind, stem) pair or a dataset Sample as annotation key; got {obj!r}")


# ----------------------------------------------------------------------------- helpers
def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _mtime_iso(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _default_author() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A boolean mask as an 8-bit gray PNG with values {0, 255} (the MVTec AD convention)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _as_mask(mask: Any, key: tuple[str, str]) -> np.ndarray:
    """Validate and convert ``mask`` to a 2-D bool array; errors name the key."""
    arr = np.asarray(mask)
    name = f"{key[0]}/{key[1]}"
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"mask for {name} must be a 2-D (H, W) array; got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"mask for {name} has dtype {arr.dtype}; expected bool (or 0/1, 0/255 numbers)")
    values = set(np.unique(arr).tolist())
    if not (values <= {0, 1} or values <= {0, 255}):
        shown = sorted(values)[:6]
        raise ValueError(
            f"mask for {name} has values {shown}{' ...' if len(values) > 6 else ''}; expected a boolean mask "
            f"(or numbers in {{0, 1}} or {{0, 255}}). Threshold it first, e.g. mask = amap >= t."
        )
    return np.ascontiguousarray(arr != 0)


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    """Exclusive lock on ``path`` (created if needed) across processes *and* threads.

    POSIX ``flock`` locks belong to an open file description, so two threads of one process
    that each open the file exclude each other just like two processes do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    locked = False
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                _lock_fd(fd)
                locked = True
                break
            except (BlockingIOError, PermissionError, OSError) as exc:
                if not _is_contention(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise AnnotationLockError(
                        f"could not lock {path} within {timeout:.0f} s: another process is saving this "
                        f"annotation (or crashed holding the lock on a network file system). Retry; if no "
                        f"other writer runs, delete {path}."
                    ) from exc
                time.sleep(0.005)
        yield
    finally:
        if locked:
            with contextlib.suppress(OSError):
                _unlock_fd(fd)
        os.close(fd)


try:  # POSIX
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _is_contention(exc: OSError) -> bool:
        import errno

        return isinstance(exc, BlockingIOError) or exc.errno in (errno.EAGAIN, errno.EACCES)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _lock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    def _is_contention(exc: OSError) -> bool:
        return True


# ----------------------------------------------------------------------------- the store
class AnnotationStore:
    """Masks of a dataset's test images in the MVTec AD layout, with every version kept.

    ``load``/``save`` read and write ``root/ground_truth/<kind>/<stem>_mask.png`` ({0, 255}
    PNG). Each save also writes the new mask as a numbered version file and appends an entry
    (author, host, time, area, file) to a JSON sidecar, both under the hidden folder
    ``root/ground_truth/<kind>/.history/<stem>/``. A mask that is already on disk but not yet
    recorded -- a dataset's original ground truth, or a file another tool changed -- is
    archived as a version (``action: "found"``) before it is replaced. So nothing a person or a
    dataset made is ever lost, and :meth:`load_version` gives any earlier version back.

    Every file is written atomically (temporary file + rename). Saves of one key are serialised
    by a lock file (``flock``), so two widgets or two processes saving the same image at the same
    time cannot corrupt it or lose a version: the last writer's mask becomes the current one and
    both versions are in the history, in the order the writers took the lock.

    Parameters
    ----------
    root : str or path-like
        The store folder, usually the dataset folder itself (annotations then land in its
        ``ground_truth``). Created on the first save.
    lock_timeout : float, default 30
        Seconds a save waits for another writer of the same key before raising
        :class:`AnnotationLockError`.

    Notes
    -----
    Keys are ``(kind, stem)`` of *test* images (see the module docstring): ``test/<kind>/<stem>.png``
    has its mask at ``ground_truth/<kind>/<stem>_mask.png``.
    The lock relies on ``flock``; on network file systems without it, use one writer per key.

    Examples
    --------
    >>> store = AnnotationStore("data/sample")                      # doctest: +SKIP
    >>> store.save("scratch", "003", mask, author="ana")            # doctest: +SKIP
    >>> [v["author"] for v in store.history("scratch", "003")]     # doctest: +SKIP
    [None, 'ana']
    """

    def __init__(self, root: str | os.PathLike, *, lock_timeout: float = 30.0):
        self.root = Path(root).expanduser().absolute()
        if self.root.exists() and not self.root.is_dir():
            raise DataError(f"annotation store root {self.root} is a file; expected a folder (e.g. a dataset folder)")
        self.lock_timeout = float(lock_timeout)

    def __repr__(self) -> str:
        return f"AnnotationStore({str(self.root)!r})"

    # ------------------------------------------------------------------ paths
    @property
    def ground_truth(self) -> Path:
        """``root/ground_truth``."""
        return self.root / "ground_truth"

    def mask_path(self, kind: str, stem: str) -> Path:
        """Where the current mask of ``(kind, stem)`` is (or will be) written."""
        kind, stem = annotation_key((kind, stem))
        return self.ground_truth / kind / f"{stem}{_MASK_SUFFIX}.png"

    def history_dir(self, kind: str, stem: str) -> Path:
        """Folder with the sidecar and the version files of ``(kind, stem)``."""
        kind, stem = annotation_key((kind, stem))
        return self.ground_truth / kind / HISTORY_DIR / stem

    def _mask_files(self, kind: str, stem: str) -> list[Path]:
        """Existing mask files of the key (``.png`` first; other extensions a dataset may use)."""
        folder = self.ground_truth / kind
        if not folder.is_dir():
            return []
        prefix = f"{stem}{_MASK_SUFFIX}"
        found = [p for p in folder.iterdir()
                 if p.is_file() and p.stem == prefix and p.suffix.lower() in _IMAGE_EXTENSIONS]
        return sorted(found, key=lambda p: (p.suffix.lower() != ".png", p.name))

    def _image_path(self, kind: str, stem: str) -> Path | None:
        folder = self.root / "test" / kind
        for ext in _IMAGE_EXTENSIONS:
            for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
        return None

    def _read_sidecar(self, kind: str, stem: str) -> dict | None:
        path = self.history_dir(kind, stem) / _SIDECAR
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DataError(
                f"annotation history {path} is not valid JSON ({exc}); it was not written by this store or was "
                f"edited by hand. The version files beside it are intact: fix or move the file, then retry."
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
            raise DataError(f"annotation history {path} has no 'versions' list; expected a file written by "
                            f"AnnotationStore (format {_FORMAT}). Move it away and retry.")
        return data

    # ------------------------------------------------------------------ reading
    def keys(self) -> list[tuple[str, str]]:
        """Every ``(kind, stem)`` with a current mask, sorted."""
        out: set[tuple[str, str]] = set()
        if not self.ground_truth.is_dir():
            return []
        for kind_dir in self.ground_truth.iterdir():
            if not kind_dir.is_dir() or kind_dir.name.startswith("."):
                continue
            for p in kind_dir.iterdir():
                if (p.is_file() and p.suffix.lower() in _IMAGE_EXTENSIONS and p.stem.endswith(_MASK_SUFFIX)
                        and not p.name.startswith(".")):
                    out.add((kind_dir.name, p.stem[: -len(_MASK_SUFFIX)]))
        return sorted(out)

    def __contains__(self, key) -> bool:
        kind, stem = annotation_key(key)
        return bool(self._mask_files(kind, stem))

    def __len__(self) -> int:
        return len(self.keys())

    def load(self, kind: str, stem: str) -> np.ndarray | None:
        """The current mask of ``(kind, stem)``.

        Returns
        -------
        numpy.ndarray of bool, shape (H, W), or None
            True = annotated (anomalous) pixel; None when the key has no mask.

        Warns
        -----
        UserWarning
            The mask file differs from the last version this store saved (another tool, or
            ``workbench data sample`` regenerating a sample, replaced it); the saved versions
            are still in :meth:`history`.
        """
        from workbench.datasets import read_mask

        kind, stem = annotation_key((kind, stem))
        files = self._mask_files(kind, stem)
        if not files:
            return None
        path = files[0]
        mask = read_mask(path)
        try:
            sidecar = self._read_sidecar(kind, stem)
        except DataError as exc:  # a damaged sidecar must not hide the mask itself
            warnings.warn(str(exc), stacklevel=2)
            sidecar = None
        if sidecar and sidecar["versions"]:
            last = sidecar["versions"][-1]
            if _sha256(path.read_bytes()) != last.get("sha256"):
                warnings.warn(
                    f"{path} was changed outside the annotation store after version {last.get('version')} "
                    f"(saved by {last.get('author')} at {last.get('time')}); loading the file as it is now. "
                    f"Every saved version is kept in {self.history_dir(kind, stem)} "
                    f"(store.history / store.load_version).",
                    stacklevel=2,
                )
        return mask

    def history(self, kind: str, stem: str) -> list[dict]:
        """Every recorded version of ``(kind, stem)``, oldest first.

        Returns
        -------
        list of dict
            One dict per version: ``version`` (1, 2, ...), ``action`` (``"save"``, or ``"found"``
            for a mask that was on disk before the store recorded it, e.g. a dataset's original
            ground truth), ``author``, ``host``, ``pid``, ``time`` (UTC, ISO 8601), ``sha256`` of the
            file, ``shape`` ``[H, W]``, ``area`` (annotated pixels), ``file`` (name in
            :meth:`history_dir`) and ``path`` (absolute). The last entry is the current mask. When
            the current mask file is not recorded (never saved through the store, or changed by
            another tool) a final entry with ``version`` None and ``action`` ``"unrecorded"``
            describes it. Empty when the key has neither history nor mask.
        """
        kind, stem = annotation_key((kind, stem))
        sidecar = self._read_sidecar(kind, stem) or {"versions": []}
        folder = self.history_dir(kind, stem)
        out = []
        for entry in sidecar["versions"]:
            entry = dict(entry)
            entry["path"] = str(folder / entry["file"])
            out.append(entry)
        files = self._mask_files(kind, stem)
        if files:
            data = files[0].read_bytes()
            digest = _sha256(data)
            if not out or out[-1].get("sha256") != digest:
                out.append({"version": None, "action": "unrecorded", "author": None, "host": None, "pid": None,
                            "time": _mtime_iso(files[0]), "sha256": digest, "shape": None, "area": None,
                            "file": files[0].name, "path": str(files[0])})
        return out

    def load_version(self, kind: str, stem: str, version: int) -> np.ndarray:
        """The mask of ``(kind, stem)`` as saved in ``version`` (see :meth:`history`).

        Raises
        ------
        KeyError
            No such version; the message lists the versions there are.
        """
        from workbench.datasets import read_mask

        kind, stem = annotation_key((kind, stem))
        sidecar = self._read_sidecar(kind, stem) or {"versions": []}
        for entry in sidecar["versions"]:
            if entry["version"] == version:
                return read_mask(self.history_dir(kind, stem) / entry["file"])
        have = [e["version"] for e in sidecar["versions"]]
        raise KeyError(f"{kind}/{stem} has no version {version!r}; versions: {have or 'none'}")

    # ------------------------------------------------------------------ writing
    def save(self, kind: str, stem: str, mask: np.ndarray, author: str | None = None) -> dict:
        """Make ``mask`` the current mask of ``(kind, stem)``, keeping every earlier version.

        Parameters
        ----------
        kind, stem : str
            The key: the test image ``test/<kind>/<stem>.<ext>``.
        mask : array-like, shape (H, W)
            bool, or numbers in {0, 1} or {0, 255}. When the image exists under ``root`` its
            size is checked.
        author : str, optional
            Who made it; default the login name of this process's user.

        Returns
        -------
        dict
            The history entry of the saved version (see :meth:`history`). Saving a mask equal
            to the current one records nothing and returns the current entry.

        Raises
        ------
        ValueError
            ``mask`` is not 2-D or not binary; the key is not a valid file name.
        DataError
            ``mask`` has another size than the image ``root/test/<kind>/<stem>.*``.
        AnnotationLockError
            Another writer held this key's lock for longer than ``lock_timeout``.
        """
        kind, stem = annotation_key((kind, stem))
        mask = _as_mask(mask, (kind, stem))
        image = self._image_path(kind, stem)
        if image is not None:
            from workbench.datasets import image_shape

            shape = image_shape(image)[:2]
            if tuple(shape) != mask.shape:
                raise DataError(
                    f"mask for {kind}/{stem} is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image {image} is "
                    f"{shape[0]}x{shape[1]}; a mask must have its image's size."
                )
        data = encode_mask_png(mask)
        digest = _sha256(data)
        author = author if author is not None else _default_author()
        folder = self.history_dir(kind, stem)
        with _file_lock(folder / _LOCK, self.lock_timeout):
            sidecar = self._read_sidecar(kind, stem) or {"format": _FORMAT, "kind": kind, "stem": stem,
                                                          "versions": []}
            versions = sidecar["versions"]
            recorded = {v.get("sha256") for v in versions}
            files = self._mask_files(kind, stem)
            archived = False
            # 1. anything on disk the store has not recorded is archived first (originals, other tools)
            for path in files:
                old = path.read_bytes()
                old_digest = _sha256(old)
                if old_digest in recorded:
                    continue
                entry = self._new_entry(versions, old_digest, path.suffix.lower(), action="found", author=None,
                                        time_=_mtime_iso(path), mask=_decode_for_entry(path))
                entry["source"] = path.name
                atomic_write_bytes(folder / entry["file"], old)
                versions.append(entry)
                recorded.add(old_digest)
                archived = True
            current = files[0] if files else None
            if (current is not None and current.suffix.lower() == ".png" and len(files) == 1 and versions
                    and versions[-1]["sha256"] == digest and _sha256(current.read_bytes()) == digest):
                # the same mask again: nothing new to record (but keep what was just archived)
                if archived:
                    atomic_write_json(folder / _SIDECAR, sidecar)
                result = dict(versions[-1])
                result["path"] = str(folder / result["file"])
                return result
            # 2. the new version, then the current mask, then the sidecar (each atomic)
            entry = self._new_entry(versions, digest, ".png", action="save", author=author, time_=_now(), mask=mask)
            atomic_write_bytes(folder / entry["file"], data)
            target = self.mask_path(kind, stem)
            atomic_write_bytes(target, data)
            for path in files:  # other-extension masks of this key are archived above
                if path != target:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            versions.append(entry)
            sidecar["mask"] = target.name
            atomic_write_json(folder / _SIDECAR, sidecar)
        result = dict(entry)
        result["path"] = str(folder / entry["file"])
        return result

    @staticmethod
    def _new_entry(versions: list, digest: str, ext: str, *, action: str, author, time_: str,
                   mask: np.ndarray | None) -> dict:
        number = max((v["version"] for v in versions), default=0) + 1
        return {
            "version": number,
            "file": f"v{number:06d}-{digest[:12]}{ext}",
            "sha256": digest,
            "action": action,
            "author": author,
            "host": socket.gethostname() if action == "save" else None,
            "pid": os.getpid() if action == "save" else None,
            "time": time_,
            "shape": list(mask.shape) if mask is not None else None,
            "area": int(mask.sum()) if mask is not None else None,
        }

    # ------------------------------------------------------------------ exports
    def export_png(self, dir: str | os.PathLike) -> Path:
        """Write every current mask into ``dir`` in the MVTec layout.

        ``dir/ground_truth/<kind>/<stem>_mask.png``, {0, 255} 8-bit PNGs, written atomically
        (history is not exported).

        Returns
        -------
        pathlib.Path
            ``dir``.
        """
        out = Path(dir).expanduser().absolute()
        for kind, stem in self.keys():
            mask = self._load_quiet(kind, stem)
            if mask is not None:
                atomic_write_bytes(out / "ground_truth" / kind / f"{stem}{_MASK_SUFFIX}.png", encode_mask_png(mask))
        out.mkdir(parents=True, exist_ok=True)
        return out

    def export_coco(self, path: str | os.PathLike) -> Path:
        """Write every current mask as a COCO instance-segmentation JSON file (RLE masks).

        * ``categories``: one per kind in the store (ids 1, 2, ... in sorted order of kind).
        * ``images``: one per mask, with ``id``, ``file_name`` (the image's path relative to
          ``root`` when it is there, else ``test/<kind>/<stem>.png``), ``height``, ``width``, and the
          store key as ``kind`` and ``stem``.
        * ``annotations``: one per non-empty mask (all its pixels, every connected part), with
          ``segmentation`` as compressed RLE (``{"size": [H, W], "counts": str}``, pycocotools),
          ``area``, ``bbox`` ``[x, y, width, height]``, ``category_id`` (its kind) and ``iscrowd`` 0.
          An empty mask gives an image without annotations (annotated: no defect).

        Returns
        -------
        pathlib.Path
            The JSON file (written atomically).
        """
        from pycocotools import mask as mask_utils

        from workbench import __version__

        keys = self.keys()
        kinds = sorted({k for k, _ in keys})
        category = {k: i + 1 for i, k in enumerate(kinds)}
        images, annotations = [], []
        for kind, stem in keys:
            mask = self._load_quiet(kind, stem)
            if mask is None:
                continue
            image_id = len(images) + 1
            image = self._image_path(kind, stem)
            file_name = image.relative_to(self.root).as_posix() if image is not None else f"test/{kind}/{stem}.png"
            images.append({"id": image_id, "file_name": file_name, "height": int(mask.shape[0]),
                           "width": int(mask.shape[1]), "kind": kind, "stem": stem})
            if not mask.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category[kind],
                "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                "area": int(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            })
        doc = {
            "info": {"description": f"annotations of {self.root}", "version": __version__,
                     "date_created": _now(), "contributor": "outlier-workbench AnnotationStore"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i, "name": k, "supercategory": "defect"} for k, i in category.items()],
        }
        path = Path(path).expanduser().absolute()
        atomic_write_json(path, doc)
        return path

    def _load_quiet(self, kind: str, stem: str) -> np.ndarray | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.load(kind, stem)


def _decode_for_entry(path: Path) -> np.ndarray | None:
    """The mask in ``path`` for a history entry's shape and area (None if it cannot be read)."""
    from workbench.datasets import read_mask

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read_mask(path)
    except DataError:
        return None
