"""Reading images and masks into numpy arrays, and reading image headers cheaply.

Pillow decodes PNG, JPEG, BMP and 8-bit TIFF. TIFFs with more than 8 bits per sample
(16/32-bit integer, float) go through ``tifffile`` (a dependency of scikit-image), which
keeps the exact values that Pillow truncates or cannot open.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from workbench.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "image_shape", "read_image", "read_mask"]

#: File name extensions read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_TIFF_EXTENSIONS = (".tif", ".tiff")

_GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_COLOUR_MODES = {"RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"}

# What Pillow raises for unreadable, corrupt or truncated files.
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _supported(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _check_readable_path(path: Path, what: str = "image") -> None:
    if not path.exists():
        raise DataError(f"{what} file {path} does not exist; check the path.")
    if path.is_dir():
        raise DataError(f"{what} path {path} is a folder, expected an image file.")
    if not _supported(path):
        raise DataError(
            f"{what} file {path} has the extension {path.suffix!r}; expected one of "
            f"{', '.join(IMAGE_EXTENSIONS)} (case-insensitive). Convert it to PNG."
        )
    if path.stat().st_size == 0:
        raise DataError(f"{what} file {path} is empty (0 bytes); re-export or remove it.")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format (the file is damaged, or not an image)"
    return text


# --------------------------------------------------------------------------- TIFF > 8 bit


def _tiff_bits(im: Image.Image) -> int:
    """Largest BitsPerSample of a Pillow-opened TIFF (8 when unknown)."""
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return 8
    bits = tags.get(258, (8,))
    if isinstance(bits, int):
        bits = (bits,)
    return max(bits) if bits else 8


def _tiff_first_page(path: Path, decode: bool):
    """(array or None, shape, axes, photometric) of a TIFF's first page via tifffile."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        arr = page.asarray() if decode else None
        return arr, tuple(page.shape), str(page.axes), int(page.photometric)


def _tiff_shape(path: Path) -> tuple[int, ...]:
    """(H, W) or (H, W, 3) of the first page of a TIFF read through tifffile (header only)."""
    _arr, shape, axes, _photometric = _tiff_first_page(path, decode=False)
    dims = dict(zip(axes, shape))
    h, w = dims.get("Y"), dims.get("X")
    if h is None or w is None:
        raise ValueError(f"unsupported TIFF layout: axes {axes}, shape {shape}")
    return (h, w) if dims.get("S", 1) < 3 else (h, w, 3)


def _read_tiff_array(path: Path) -> np.ndarray:
    """First page of a TIFF as (H, W) or (H, W, 3) in its own dtype (alpha dropped)."""
    arr, _shape, axes, photometric = _tiff_first_page(path, decode=True)
    if arr.ndim != len(axes) or "Y" not in axes or "X" not in axes:
        raise ValueError(f"unsupported TIFF layout: axes {axes}, shape {arr.shape}")
    # Keep Y, X and S (samples); take the first entry of any other axis.
    index = tuple(slice(None) if a in "YXS" else 0 for a in axes)
    arr = arr[index]
    kept = [a for a in axes if a in "YXS"]
    order = [kept.index(a) for a in "YXS" if a in kept]
    arr = np.transpose(arr, order)
    if arr.ndim == 3:
        arr = arr[..., 0] if arr.shape[2] < 3 else arr[..., :3]  # drop alpha / extra samples
    if photometric == 0:  # MINISWHITE: 0 is white
        if np.issubdtype(arr.dtype, np.integer):
            info = np.iinfo(arr.dtype)
            arr = (info.max - arr.astype(np.int64) + info.min).astype(arr.dtype)
        elif np.issubdtype(arr.dtype, np.floating):
            arr = 1.0 - arr
    return arr


# --------------------------------------------------------------------------- scaling


def _to_uint8(arr: np.ndarray, path: Path) -> np.ndarray:
    """Scale an array to uint8 by its dtype's range (floats: [0, 1])."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        scaled = (arr.astype(np.float64) - info.min) * (255.0 / (float(info.max) - info.min))
        return np.rint(scaled).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int((~finite).sum())
            raise DataError(
                f"image file {path} has {bad} NaN or infinite pixels; expected finite values "
                f"in [0, 1]. Fix or re-export the image."
            )
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            warnings.warn(
                f"image file {path} is a float image with values in [{lo:g}, {hi:g}]; float images "
                f"are read as [0, 1] and values outside are clipped. Save it as 8- or 16-bit to "
                f"keep its contrast.",
                stacklevel=3,
            )
        return np.rint(np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise DataError(f"image file {path} has pixel type {arr.dtype}, which cannot be read as an image.")


def _palette_array(im: Image.Image) -> np.ndarray:
    """A palette ('P'/'PA') image as gray (H, W) when every used entry is gray, else RGB."""
    idx = np.asarray(im)
    if idx.ndim == 3:  # PA: index + alpha
        idx = idx[..., 0]
    palette = np.asarray(im.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
    if palette.size == 0:  # no palette: indices are gray levels
        return idx.astype(np.uint8)
    if palette.shape[0] < 256:
        palette = np.vstack([palette, np.zeros((256 - palette.shape[0], 3), np.uint8)])
    used = np.unique(idx)
    rgb_used = palette[used]
    if np.all(rgb_used[:, 0] == rgb_used[:, 1]) and np.all(rgb_used[:, 1] == rgb_used[:, 2]):
        return palette[idx, 0]
    return palette[idx]


def _pil_to_uint8(im: Image.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode == "L":
        return np.asarray(im)
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0))
    if mode in ("P", "PA"):
        return _palette_array(im)
    if mode == "RGB":
        return np.asarray(im)
    if mode in ("RGBA", "RGBX", "RGBa"):
        return np.asarray(im)[..., :3]
    if mode.startswith("I;16"):
        return _to_uint8(np.asarray(im).astype(np.uint16), path)
    if mode == "I":
        arr = np.asarray(im)
        if im.format == "PNG":  # 16-bit PNG opened as 32-bit by older Pillow
            return _to_uint8(arr.astype(np.uint16), path)
        return _to_uint8(arr.astype(np.int32), path)
    if mode == "F":
        return _to_uint8(np.asarray(im, dtype=np.float32), path)
    # CMYK, YCbCr, LAB, HSV and anything else Pillow can convert.
    return np.asarray(im.convert("RGB"))


def _needs_tifffile(path: Path, im: Image.Image | None) -> bool:
    if path.suffix.lower() not in _TIFF_EXTENSIONS:
        return False
    return im is None or _tiff_bits(im) > 8


def _decode(path: Path, from_pil, from_raw, what: str) -> np.ndarray:
    """Decode with Pillow, or with tifffile for TIFFs beyond 8 bits per sample.

    ``from_pil(im, path)`` converts a loaded Pillow image; ``from_raw(arr)`` converts the
    array tifffile returns. When tifffile fails (e.g. a codec it lacks) but Pillow could
    open the file, Pillow's reading is used instead.
    """
    pil_opened = False
    try:
        with Image.open(path) as im:
            pil_opened = True
            if not _needs_tifffile(path, im):
                im.load()
                return from_pil(im, path)
    except UnidentifiedImageError as exc:
        if path.suffix.lower() not in _TIFF_EXTENSIONS:
            raise DataError(f"cannot read {what} file {path}: {_reason(exc)}.") from exc
    except DataError:
        raise
    except _PIL_ERRORS as exc:
        raise DataError(
            f"cannot read {what} file {path}: {_reason(exc)} (the file is damaged or incomplete); "
            f"re-export or remove it."
        ) from exc
    try:
        raw = _read_tiff_array(path)
    except Exception as exc:  # tifffile raises many types for damaged or exotic files
        if pil_opened:
            try:
                with Image.open(path) as im:
                    im.load()
                    return from_pil(im, path)
            except DataError:
                raise
            except Exception:
                pass
        raise DataError(f"cannot read {what} file {path} (TIFF): {_reason(exc)}.") from exc
    return from_raw(raw)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into a uint8 array.

    Parameters
    ----------
    path : str or path-like
        A ``.png``, ``.jpg``/``.jpeg``, ``.bmp`` or ``.tif``/``.tiff`` file (extension
        compared case-insensitively). Multi-page TIFFs give their first page.

    Returns
    -------
    numpy.ndarray
        ``uint8`` of shape ``(H, W)`` for gray images or ``(H, W, 3)`` for colour images,
        pixels as stored (EXIF orientation is not applied, so masks stay aligned).

    Notes
    -----
    Conversions, all deterministic:

    * alpha is dropped, not composited (RGBA -> RGB, LA -> L);
    * palette images become gray when every palette entry they use is gray, else RGB;
    * CMYK, YCbCr and other colour modes are converted to RGB by Pillow;
    * 1-bit images become {0, 255};
    * integer images with more than 8 bits are scaled by their type's full range:
      ``uint16`` maps 0..65535 to 0..255 (``v / 257``, rounded), signed types map
      their minimum to 0 and their maximum to 255, ``uint32`` maps 0..2**32-1;
    * float images are taken to be in [0, 1] (scikit-image's convention) and mapped to
      0..255; values outside are clipped with a warning, NaN/inf raise :class:`DataError`.

    Raises
    ------
    DataError
        The file is missing, has an unsupported extension, or is unreadable, corrupt or
        truncated; the message names the file and the reason.
    """
    path = Path(path)
    _check_readable_path(path)
    return np.ascontiguousarray(_decode(path, _pil_to_uint8, lambda raw: _to_uint8(raw, path), "image"))


def image_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """Shape ``read_image(path)`` will return, from the file header (pixels not decoded).

    Raises
    ------
    DataError
        The header cannot be parsed; the message names the file.
    """
    path = Path(path)
    _check_readable_path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            mode = im.mode
            if _needs_tifffile(path, im):
                return _tiff_shape(path)
            if mode in _GRAY_MODES:
                return (h, w)
            if mode in _COLOUR_MODES:
                return (h, w, 3)
            if mode in ("P", "PA"):  # gray or colour depends on the palette: decode
                im.load()
                return _palette_array(im).shape
            return (h, w, 3)
    except UnidentifiedImageError as exc:
        if path.suffix.lower() in _TIFF_EXTENSIONS:
            try:
                return _tiff_shape(path)
            except Exception as exc2:
                raise DataError(f"cannot read the header of TIFF file {path}: {_reason(exc2)}.") from exc2
        raise DataError(f"cannot read the header of image file {path}: {_reason(exc)}.") from exc
    except DataError:
        raise
    except _PIL_ERRORS as exc:
        raise DataError(
            f"cannot read the header of image file {path}: {_reason(exc)}; re-export or remove it."
        ) from exc
    except Exception as exc:  # tifffile on a damaged TIFF
        raise DataError(f"cannot read the header of image file {path}: {_reason(exc)}.") from exc


# --------------------------------------------------------------------------- masks


def _pil_mask_raw(im: Image.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=bool)
    if mode in ("P", "PA", "LA", "La"):  # palette indices or gray, without alpha
        return np.asarray(im.getchannel(0))
    if mode in _GRAY_MODES:
        arr = np.asarray(im)
        return arr.astype(arr.dtype.newbyteorder("=")) if arr.dtype.byteorder == ">" else arr
    return np.asarray(im.convert("RGB")).max(axis=2)


def _read_mask_raw(path: Path) -> np.ndarray:
    """Mask values as stored: (H, W), any dtype. Colour masks: max over R, G, B."""
    return _decode(path, _pil_mask_raw, lambda raw: raw.max(axis=2) if raw.ndim == 3 else raw, "mask")


def _full_value(arr: np.ndarray) -> float:
    if arr.dtype == np.uint8:
        return 255.0
    if arr.dtype == np.uint16:
        return 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        return 1.0
    return 255.0 if arr.max(initial=0) <= 255 else 65535.0


def read_mask(
    path: str | os.PathLike,
    expected_shape: tuple[int, ...] | None = None,
    *,
    image_path: str | os.PathLike | None = None,
) -> np.ndarray:
    """Read a ground-truth mask as a boolean array (True = anomalous pixel).

    Parameters
    ----------
    path : str or path-like
        Mask image, normally a PNG with values {0, 255} (MVTec AD) or {0, 1}.
    expected_shape : tuple of int, optional
        Shape of the image the mask belongs to; only ``(H, W)`` (the first two entries)
        is compared, so an image's ``(H, W, 3)`` shape can be passed as is.
    image_path : str or path-like, optional
        The image the mask belongs to, named in the size-mismatch error.

    Returns
    -------
    numpy.ndarray
        ``bool`` of shape ``(H, W)``.

    Warns
    -----
    UserWarning
        The mask is not binary (values other than {0, 255} or {0, 1}), naming the file.
        It is binarised: when it uses the upper half of its type's range (e.g. an
        anti-aliased or JPEG-compressed mask) as ``value > half range`` (127.5 for
        8-bit), otherwise (a label map such as {0, 1, 2}) as ``value > 0``. Colour
        masks use the largest of R, G, B; palette masks use the palette index.

    Raises
    ------
    DataError
        The file is unreadable, or its size differs from ``expected_shape``; the message
        names the mask, the image (when given) and both sizes.
    """
    path = Path(path)
    _check_readable_path(path, "mask")
    raw = _read_mask_raw(path)
    if raw.dtype == np.bool_:
        mask = raw
    else:
        full = _full_value(raw)
        if raw.dtype == np.uint8:
            present = np.flatnonzero(np.bincount(raw.ravel(), minlength=256))
        else:
            present = np.unique(raw)
        values = set(present.tolist())
        if values <= {0, 1} or values <= {0, full}:
            mask = raw > 0
        else:
            half = full / 2.0
            shown = ", ".join(f"{v:g}" for v in present[:8]) + (", ..." if len(present) > 8 else "")
            if raw.max() > half:
                mask = raw > half
                rule = f"value > {half:g} (half of {full:g})"
            else:
                mask = raw > 0
                rule = "value > 0 (it looks like a label map)"
            warnings.warn(
                f"mask file {path} is not binary (values found: {shown}); it was binarised as "
                f"{rule}. Save masks with values {{0, 255}} to avoid this.",
                stacklevel=2,
            )
    if expected_shape is not None:
        exp_h, exp_w = int(expected_shape[0]), int(expected_shape[1])
        if mask.shape != (exp_h, exp_w):
            whose = f"its image {image_path}" if image_path is not None else "the image"
            raise DataError(
                f"mask file {path} is {mask.shape[0]}x{mask.shape[1]} (HxW) but {whose} is "
                f"{exp_h}x{exp_w}; a mask must have its image's size. Re-export the mask at "
                f"the image's size."
            )
    return np.ascontiguousarray(mask, dtype=bool)
