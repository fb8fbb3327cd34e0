"""Image and mask files: reading and writing npy/npz, PNG/TIFF and NIfTI.

Supported formats, chosen by file suffix (:data:`SUFFIXES`):

* ``.npy`` / ``.npz`` (NumPy; a ``.npz`` must hold one array, or pass ``key``);
* ``.png``, ``.tif`` / ``.tiff`` (read and written with Pillow; a multi-page
  TIFF is a 3D stack);
* ``.nii`` / ``.nii.gz`` (NIfTI volumes through nibabel, the optional extra
  ``pip install "bayesseg[nifti]"``).

Images get a channel axis, ``(*spatial, C)`` float32; masks are integer
labels of shape ``spatial``. Large volumes are never loaded whole for
training: ``.npy`` files are memory-mapped and NIfTI files are sliced through
nibabel's ``dataobj`` proxy (the private ``_Source`` reads one patch or one
slab at a time).

Spatial rank and channels: PNG and single-page TIFF files are 2D; a
multi-page TIFF is 3D; a 2-axis array is 2D with one channel. Otherwise the
paired mask decides (an image with the mask's shape gets one channel; one
extra trailing axis holds the channels), or ``spatial_rank`` when given, or
the default rule: NIfTI files are 3D volumes (a 4th axis holds channels) and
a 3-axis NumPy array is ``(H, W, C)`` when its last axis has at most 4
entries, else a ``(D, H, W)`` volume.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bayesseg._validation import argument_error, check_int
from bayesseg.data._finite import apply_policy, check_nan_policy, count_nonfinite, mask_error

__all__ = ["SUFFIXES", "read_image", "read_mask", "write_image"]

SUFFIXES = (".npy", ".npz", ".png", ".tif", ".tiff", ".nii", ".nii.gz")
_NIFTI_HINT = 'Reading NIfTI files needs nibabel: pip install "bayesseg[nifti]"'
# Slabs of this many voxels bound the memory of full-volume statistics.
_SLAB_VOXELS = 1 << 24


# --------------------------------------------------------------------------
# File names
# --------------------------------------------------------------------------
def _suffix(path: str | os.PathLike) -> str:
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def _stem(path: str | os.PathLike) -> str:
    name = Path(path).name
    return name[: len(name) - len(_suffix(path))]


def _check_suffix(path: str | os.PathLike, argument: str = "path") -> str:
    suffix = _suffix(path)
    if suffix not in SUFFIXES:
        raise argument_error(
            argument, f"name a file ending in one of {', '.join(SUFFIXES)}", os.fspath(path)
        )
    return suffix


def _nibabel():
    try:
        import nibabel
    except ImportError as err:
        raise ImportError(_NIFTI_HINT) from err
    return nibabel


class _KeyError(ValueError):
    """A wrong ``key`` for an ``.npz`` file: the user's argument, not a damaged file."""


# --------------------------------------------------------------------------
# Lazy sources: shape first, voxels on demand
# --------------------------------------------------------------------------
# What a damaged file raises, by reader: NumPy (ValueError "mmap length is
# greater than file size", EOFError), zip archives (BadZipFile), gzip (EOFError,
# BadGzipFile is an OSError), nibabel (ImageFileError is a ValueError), Pillow
# (UnidentifiedImageError is an OSError; truncated data raises OSError);
# nibabel's ImageFileError, which derives from Exception alone, is caught
# where NIfTI files are opened.
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, struct.error, zlib.error)


class _DamagedFile(ValueError):
    """A file that exists but cannot be read."""


def _damaged(path: Path, err: BaseException) -> ValueError:
    """The one-line error of a file that exists but cannot be read."""
    reason = " ".join(str(err).split()) or type(err).__name__
    return _DamagedFile(
        f"Cannot read {os.fspath(path)!r}: the file is damaged, truncated or not a "
        f"{_suffix(path)} file ({type(err).__name__}: {reason})."
    )


class _Source:
    """One file: its raw shape without reading it, and slices on demand.

    Any failure to read it (at opening or later, when a lazy reader meets a
    truncated file) is a ``ValueError`` naming the file.
    """

    def __init__(self, path: Path, key: str | None = None):
        self.path = path
        self.suffix = _check_suffix(path)
        self._array = None
        self._proxy = None
        self.pages = 1
        try:
            self._open(key)
        except (_KeyError, _DamagedFile):
            raise
        except _READ_ERRORS as err:
            raise _damaged(path, err) from err

    def _open(self, key: str | None) -> None:
        path = self.path
        if self.suffix == ".npy":
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        elif self.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if key is None and len(names) != 1:
                    raise _KeyError(
                        f"File {path.name!r} holds arrays {names}; pass `key` to choose one."
                    )
                chosen = key if key is not None else names[0]
                if chosen not in names:
                    raise _KeyError(
                        f"Argument `key` names no array of {path.name!r} ({names}). "
                        f"Received: key={key!r}"
                    )
                self._array = archive[chosen]
        elif self.suffix in (".nii", ".nii.gz"):
            nib = _nibabel()
            try:
                self._proxy = nib.load(os.fspath(path))
            except nib.filebasedimages.ImageFileError as err:  # not a ValueError
                raise _damaged(path, err) from err
        else:
            self._array, self.pages = _read_pillow(path)
        self.shape = tuple(
            int(d) for d in (self._proxy.shape if self._proxy is not None else self._array.shape)
        )
        self.dtype = (
            np.dtype(self._proxy.get_data_dtype()) if self._proxy is not None else self._array.dtype
        )

    @property
    def is_nifti(self) -> bool:
        return self._proxy is not None

    def read(self, index: tuple[slice, ...] | None = None) -> np.ndarray:
        """The voxels in ``index`` (all of them by default)."""
        try:
            if self._proxy is not None:
                data = self._proxy.dataobj
                return np.asarray(data if index is None else data[index])
            return np.asarray(self._array if index is None else self._array[index])
        except _READ_ERRORS as err:
            raise _damaged(self.path, err) from err

    def slabs(self) -> Iterator[np.ndarray]:
        """The whole array in slabs along the first axis (bounded memory)."""
        return _slabs(self.shape, self.read)


def _slabs(
    shape: tuple[int, ...], read: Callable[[tuple[slice, ...]], np.ndarray]
) -> Iterator[np.ndarray]:
    """``read`` slab after slab along the first axis, each of at most ~16M voxels."""
    per_slice = max(1, math.prod(shape[1:]))
    step = max(1, _SLAB_VOXELS // per_slice)
    for start in range(0, shape[0], step):
        yield read((slice(start, start + step),))


def _read_pillow(path: Path) -> tuple[np.ndarray, int]:
    from PIL import Image

    with Image.open(path) as image:
        frames = getattr(image, "n_frames", 1)
        pages = []
        for i in range(frames):
            image.seek(i)
            pages.append(_pillow_array(image))
    return (pages[0] if len(pages) == 1 else np.stack(pages)), len(pages)


def _pillow_array(image) -> np.ndarray:
    if image.mode == "P":
        # Palette images (a common mask format) hold labels as indices.
        return np.asarray(image)
    if image.mode in ("1", "LA", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB" if image.mode in ("CMYK", "YCbCr", "LAB", "HSV") else "L")
    array = np.asarray(image)
    if image.mode.startswith("I;16"):
        array = array.astype(np.uint16)
    return array


def _channel_layout(
    source: _Source, spatial_rank: int | None, mask_shape: tuple[int, ...] | None
) -> tuple[int, bool]:
    """(spatial rank, whether the raw array already has a channel axis)."""
    shape = source.shape
    name = source.path.name
    if mask_shape is not None:
        if shape == mask_shape:
            return len(shape), False
        if shape[:-1] == mask_shape:
            return len(shape) - 1, True
        raise ValueError(
            f"Image {name!r} has shape {shape} but its mask has shape {mask_shape}: "
            "the mask must match the image's spatial shape."
        )
    if spatial_rank is not None:
        if len(shape) == spatial_rank:
            return spatial_rank, False
        if len(shape) == spatial_rank + 1:
            return spatial_rank, True
        raise ValueError(
            f"Image {name!r} has shape {shape}: expected {spatial_rank} spatial axes "
            "(and optionally one channel axis)."
        )
    if source.suffix in (".png", ".tif", ".tiff"):
        rank = 2 if source.pages == 1 else 3
        return rank, len(shape) == rank + 1
    if len(shape) == 2:
        return 2, False
    if source.is_nifti:
        if len(shape) in (3, 4):
            return 3, len(shape) == 4
    elif len(shape) == 3:
        return (2, True) if shape[-1] <= 4 else (3, False)
    elif len(shape) == 4:
        return 3, True
    raise ValueError(
        f"Image {name!r} has shape {shape}: cannot tell its spatial axes; expected "
        "2D (H, W[, C]) or 3D (D, H, W[, C]) data."
    )


def _as_image(raw: np.ndarray, has_channels: bool) -> np.ndarray:
    raw = np.asarray(raw)
    image = raw if has_channels else raw[..., None]
    return image.astype(np.float32)


def _as_mask(raw: np.ndarray, name: str) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.dtype.kind == "b":
        return raw.astype(np.int32)
    if raw.dtype.kind == "f":
        nan, inf = count_nonfinite(raw)
        if nan or inf:
            raise mask_error(name, nan, inf)
        if np.any(raw != np.round(raw)):
            raise ValueError(
                f"Mask {name!r} holds non-integer values; masks must hold integer class labels."
            )
    if raw.size and raw.min() < 0:
        raise ValueError(f"Mask {name!r} holds negative labels (min {raw.min()}).")
    return raw.astype(np.int32)


def _mask_shape(source: _Source) -> tuple[int, ...]:
    shape = source.shape
    if source.suffix in (".png", ".tif", ".tiff") and len(shape) == 3 + (source.pages > 1):
        return shape[:-1]
    if len(shape) >= 3 and shape[-1] == 1:
        return shape[:-1]
    return shape


def _mask_read(source: _Source, index: tuple[slice, ...] | None = None) -> np.ndarray:
    """The labels in ``index`` (all by default), without a channel axis."""
    return _mask_channels(source, source.read(index))


def _mask_channels(source: _Source, raw: np.ndarray) -> np.ndarray:
    """Drop a mask's channel axis: size 1, or equal colour channels (grayscale as RGB)."""
    if len(source.shape) >= 3 and _mask_shape(source) != source.shape:
        first = raw[..., 0]
        if source.shape[-1] > 1 and np.any(raw[..., :3] != first[..., None]):
            raise ValueError(
                f"Mask {source.path.name!r} is a colour image; masks must hold one "
                "integer label per pixel (grayscale or palette)."
            )
        return first
    return raw


# --------------------------------------------------------------------------
# Reading and writing single files
# --------------------------------------------------------------------------
def read_image(
    path: str | os.PathLike,
    spatial_rank: int | None = None,
    key: str | None = None,
    nan_policy: str = "error",
) -> np.ndarray:
    """Read one image or volume as float32 with a trailing channel axis.

    NaN and infinite values (NIfTI volumes often hold NaN outside the
    body) raise a ``ValueError`` naming the file and their count, or with
    ``nan_policy="zero"`` are replaced by 0 (before any z-score the caller
    applies).

    Args:
        path: a ``.npy``, ``.npz``, ``.png``, ``.tif``/``.tiff``, ``.nii`` or
            ``.nii.gz`` file.
        spatial_rank: None (default: the module's rule, see
            :mod:`bayesseg.data.io`), 2 or 3: the number of spatial axes;
            a file with one more axis holds channels last.
        key: the array of a ``.npz`` file holding several. Default None.
        nan_policy: "error" (default) or "zero": what to do with NaN and
            infinite values.

    Returns:
        float32 array ``(*spatial, C)``, every value finite.

    Raises:
        ValueError: for an unsupported suffix, a shape that does not fit, or
            (``nan_policy="error"``) non-finite values.
        OSError: for a missing or unreadable file.
        ImportError: for NIfTI files without nibabel installed.

    Example:

    >>> import tempfile, os, numpy as np
    >>> from bayesseg.data import read_image
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.zeros((8, 8)))
    >>> read_image(path).shape
    (8, 8, 1)
    >>> np.save(path, np.array([[1.0, np.nan], [np.inf, 2.0]]))
    >>> read_image(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Image 'x.npy' holds 1 NaN value and 1 infinite value; pass nan_policy='zero' ...
    >>> read_image(path, nan_policy="zero")[..., 0].tolist()
    [[1.0, 0.0], [0.0, 2.0]]
    """
    spatial_rank = check_int("spatial_rank", spatial_rank, 2, 3, allow_none=True)
    nan_policy = check_nan_policy(nan_policy)
    source = _Source(_existing(path), key)
    _, has_channels = _channel_layout(source, spatial_rank, None)
    return apply_policy(_as_image(source.read(), has_channels), source.path.name, nan_policy)


def read_mask(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Read one mask as int32 labels (no channel axis).

    A trailing axis of size 1 is dropped; an RGB(A) PNG/TIFF whose colour
    channels are equal is read as grayscale, and palette images give their
    palette indices.

    Args:
        path: a supported file (see :data:`SUFFIXES`).
        key: the array of a ``.npz`` file holding several. Default None.

    Returns:
        int32 array of the mask's spatial shape.

    Raises:
        ValueError: for non-integer, non-finite (NaN is always an error in a
            mask), negative or colour labels.

    Example:

    >>> import tempfile, os, numpy as np
    >>> from bayesseg.data import read_mask
    >>> path = os.path.join(tempfile.mkdtemp(), "m.npy")
    >>> np.save(path, np.eye(4, dtype="uint8")[..., None])
    >>> read_mask(path).shape
    (4, 4)
    """
    source = _Source(_existing(path), key)
    return _as_mask(_mask_read(source), source.path.name)


def _existing(path: str | os.PathLike) -> Path:
    p = Path(path)
    _check_suffix(p)
    if not p.is_file():
        raise FileNotFoundError(f"No such file: {os.fspath(path)!r}")
    return p


def _to_uint(array: np.ndarray, value_range: tuple[float, float] | None, name: str) -> np.ndarray:
    if array.dtype.kind in "iub":
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError(
                f"Cannot write {name!r}: integer values must lie in [0, 65535] for PNG/TIFF. "
                f"Received values in [{array.min()}, {array.max()}]"
            )
        if array.dtype.kind == "b" or (array.size == 0 or array.max() <= 255):
            return array.astype(np.uint8)
        return array.astype(np.uint16)
    lo, hi = value_range if value_range is not None else (0.0, 1.0)
    if not hi > lo:
        raise argument_error("value_range", "be (low, high) with high > low", value_range)
    if not np.all(np.isfinite(array)) or array.min() < lo - 1e-6 or array.max() > hi + 1e-6:
        raise ValueError(
            f"Cannot write {name!r} as PNG: float values must lie in value_range=({lo}, {hi}). "
            f"Received values in [{np.nanmin(array)}, {np.nanmax(array)}]; write TIFF, "
            "NIfTI or .npy for arbitrary floats."
        )
    scaled = np.clip((array - lo) / (hi - lo), 0.0, 1.0)
    return np.round(scaled * 65535.0).astype(np.uint16)


def _pillow_image(array: np.ndarray):
    from PIL import Image

    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint16:
        if array.ndim != 2:
            raise ValueError("16-bit PNG/TIFF images must have a single channel.")
        return Image.fromarray(array.astype(np.uint16))
    return Image.fromarray(array)


def write_image(
    path: str | os.PathLike,
    array: Any,
    like: str | os.PathLike | None = None,
    value_range: tuple[float, float] | None = None,
) -> str:
    """Write an array in the format named by ``path``'s suffix.

    * ``.npy``: as is; ``.npz``: compressed, under the key ``"arr_0"``.
    * ``.png``: integers as 8-bit (max <= 255) or 16-bit grayscale; floats
      are mapped from ``value_range`` (default ``(0, 1)``, probabilities)
      onto 16-bit ``0..65535``. 2D only (with 1, 3 or 4 channels for 8-bit).
    * ``.tif``/``.tiff``: integers as 8/16-bit, floats as 32-bit float
      TIFF (exact); a 3D array without channels becomes a multi-page TIFF.
    * ``.nii``/``.nii.gz``: with the affine and header of the NIfTI file
      ``like`` when given (data type updated to the array's), else an
      identity affine. A trailing class axis becomes the 4th NIfTI axis.

    A trailing channel axis of size 1 is dropped for PNG, TIFF and NIfTI.

    Args:
        path: output file; its suffix picks the format.
        array: the data.
        like: optional input file whose NIfTI affine/header to keep.
        value_range: ``(low, high)`` of float data written as PNG.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: for a suffix or data the format cannot hold.

    Example:

    >>> import tempfile, os, numpy as np
    >>> from bayesseg.data import read_image, write_image
    >>> path = write_image(os.path.join(tempfile.mkdtemp(), "p.tif"),
    ...                    np.full((4, 4), 0.25, "float32"))
    >>> float(read_image(path)[0, 0, 0])
    0.25
    """
    out = Path(path)
    suffix = _check_suffix(out)
    data = np.asarray(array)
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    if suffix == ".npy":
        np.save(out, data)
        return os.fspath(out)
    if suffix == ".npz":
        np.savez_compressed(out, arr_0=data)
        return os.fspath(out)
    if data.ndim >= 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if suffix in (".nii", ".nii.gz"):
        nib = _nibabel()
        if data.dtype.kind == "b":
            data = data.astype(np.uint8)
        affine, header = np.eye(4), None
        if like is not None and _suffix(like) in (".nii", ".nii.gz"):
            reference = nib.load(os.fspath(like))
            affine, header = reference.affine, reference.header.copy()
        image = nib.Nifti1Image(data, affine, header)
        image.set_data_dtype(data.dtype)
        nib.save(image, os.fspath(out))
        return os.fspath(out)
    if suffix == ".png":
        if data.ndim not in (2, 3):
            raise ValueError(
                f"Cannot write {out.name!r}: PNG holds 2D images; received shape {data.shape}."
            )
        _pillow_image(_to_uint(data, value_range, out.name)).save(out)
        return os.fspath(out)
    if data.dtype.kind == "f":
        pages = data.astype(np.float32)
    else:
        pages = _to_uint(data, None, out.name)
    colour = pages.ndim == 3 and pages.dtype == np.uint8 and pages.shape[-1] in (3, 4)
    if pages.ndim == 3 and not colour:
        images = [_pillow_image(page) for page in pages]
        images[0].save(out, save_all=True, append_images=images[1:])
    elif pages.ndim in (2, 3):
        _pillow_image(pages).save(out)
    else:
        raise ValueError(
            f"Cannot write {out.name!r}: TIFF holds 2D images or 3D stacks; received "
            f"shape {data.shape}."
        )
    return os.fspath(out)
