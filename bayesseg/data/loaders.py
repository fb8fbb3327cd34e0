"""Folders of images and masks on disk, streamed into ``tf.data``.

Supported formats, chosen by file suffix:

* ``.npy`` / ``.npz`` (NumPy; a ``.npz`` must hold one array, or pass ``key``);
* ``.png``, ``.tif`` / ``.tiff`` (read and written with Pillow; a multi-page
  TIFF is a 3D stack);
* ``.nii`` / ``.nii.gz`` (NIfTI volumes through nibabel, the optional extra
  ``pip install "bayesseg[nifti]"``).

Images get a channel axis, ``(*spatial, C)`` float32; masks are integer
labels of shape ``spatial``. Images and masks are paired by file stem
(``case07.nii.gz`` with ``case07.png`` is fine, formats may differ). Large
volumes are never loaded whole for training: ``.npy`` files are memory-mapped
and NIfTI files are sliced through nibabel's ``dataobj`` proxy, so
:func:`folder_dataset` with ``patch_size`` reads one patch at a time.

Spatial rank and channels: PNG and single-page TIFF files are 2D; a
multi-page TIFF is 3D; a 2-axis array is 2D with one channel. Otherwise the
paired mask decides (an image with the mask's shape gets one channel; one
extra trailing axis holds the channels), or ``spatial_rank`` when given, or
the default rule: NIfTI files are 3D volumes (a 4th axis holds channels) and
a 3-axis NumPy array is ``(H, W, C)`` when its last axis has at most 4
entries, else a ``(D, H, W)`` volume.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from bayesseg._tiling import check_patch_size, window_origins

__all__ = [
    "FolderScan",
    "SUFFIXES",
    "folder_dataset",
    "grid_patch_origins",
    "list_images",
    "load_folder",
    "read_image",
    "read_mask",
    "scan_folder",
    "write_image",
]

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
        raise ValueError(
            f"Argument `{argument}` must name a file ending in one of {', '.join(SUFFIXES)}. "
            f"Received: {argument}={os.fspath(path)!r}"
        )
    return suffix


def _nibabel():
    try:
        import nibabel
    except ImportError as err:
        raise ImportError(_NIFTI_HINT) from err
    return nibabel


def list_images(folder: str | os.PathLike, argument: str = "folder") -> list[Path]:
    """The supported image files of a folder, sorted by name.

    Hidden files and files of other types are skipped. Two files with the
    same stem (``a.png`` and ``a.npy``) are an error: pairing would be
    ambiguous.

    Args:
        folder: a directory.
        argument: the argument name used in error messages. Default "folder".

    Returns:
        Sorted list of paths.

    Raises:
        ValueError: if ``folder`` is not a directory, holds no supported file,
            or holds two files with one stem.

    Example:

    >>> import tempfile, numpy as np, pathlib
    >>> from bayesseg.data import list_images
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(d / "b.npy", np.zeros((4, 4))); np.save(d / "a.npy", np.zeros((4, 4)))
    >>> [p.name for p in list_images(d)]
    ['a.npy', 'b.npy']
    """
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(
            f"Argument `{argument}` must be an existing directory. Received: "
            f"{argument}={os.fspath(folder)!r}"
        )
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and _suffix(p) in SUFFIXES
    )
    if not files:
        raise ValueError(
            f"Argument `{argument}` holds no image files ({', '.join(SUFFIXES)}). "
            f"Received: {argument}={os.fspath(folder)!r}"
        )
    seen: dict[str, Path] = {}
    for p in files:
        if _stem(p) in seen:
            raise ValueError(
                f"Files {seen[_stem(p)].name!r} and {p.name!r} in {os.fspath(folder)!r} "
                "share one stem; keep one of them."
            )
        seen[_stem(p)] = p
    return files


# --------------------------------------------------------------------------
# Lazy sources: shape first, voxels on demand
# --------------------------------------------------------------------------
class _Source:
    """One file: its raw shape without reading it, and slices on demand."""

    def __init__(self, path: Path, key: str | None = None):
        self.path = path
        self.suffix = _check_suffix(path)
        self._array = None
        self._proxy = None
        self.pages = 1
        if self.suffix == ".npy":
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        elif self.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if key is None and len(names) != 1:
                    raise ValueError(
                        f"File {path.name!r} holds arrays {names}; pass `key` to choose one."
                    )
                chosen = key if key is not None else names[0]
                if chosen not in names:
                    raise ValueError(
                        f"Argument `key` names no array of {path.name!r} ({names}). "
                        f"Received: key={key!r}"
                    )
                self._array = archive[chosen]
        elif self.suffix in (".nii", ".nii.gz"):
            self._proxy = _nibabel().load(os.fspath(path))
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
        if self._proxy is not None:
            data = self._proxy.dataobj
            return np.asarray(data if index is None else data[index])
        return np.asarray(self._array if index is None else self._array[index])

    def slabs(self) -> Iterator[np.ndarray]:
        """The whole array in slabs along the first axis (bounded memory)."""
        per_slice = max(1, math.prod(self.shape[1:]))
        step = max(1, _SLAB_VOXELS // per_slice)
        for start in range(0, self.shape[0], step):
            yield self.read((slice(start, start + step),))


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
        if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
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
    raw = source.read(index)
    shape = source.shape
    if len(shape) >= 3 and _mask_shape(source) != shape:
        if shape[-1] == 1:
            raw = raw[..., 0]
        else:
            first = raw[..., 0]
            if np.any(raw[..., :3] != first[..., None]):
                raise ValueError(
                    f"Mask {source.path.name!r} is a colour image; masks must hold "
                    "one integer label per pixel (grayscale or palette)."
                )
            raw = first
    return raw


# --------------------------------------------------------------------------
# Reading and writing single files
# --------------------------------------------------------------------------
def read_image(
    path: str | os.PathLike, spatial_rank: int | None = None, key: str | None = None
) -> np.ndarray:
    """Read one image or volume as float32 with a trailing channel axis.

    Args:
        path: a ``.npy``, ``.npz``, ``.png``, ``.tif``/``.tiff``, ``.nii`` or
            ``.nii.gz`` file.
        spatial_rank: None (default: the module's rule, see
            :mod:`bayesseg.data.loaders`), 2 or 3: the number of spatial axes;
            a file with one more axis holds channels last.
        key: the array of a ``.npz`` file holding several. Default None.

    Returns:
        float32 array ``(*spatial, C)``.

    Raises:
        ValueError: for an unsupported suffix or a shape that does not fit.
        OSError: for a missing or unreadable file.
        ImportError: for NIfTI files without nibabel installed.

    Example:

    >>> import tempfile, os, numpy as np
    >>> from bayesseg.data import read_image
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.zeros((8, 8)))
    >>> read_image(path).shape
    (8, 8, 1)
    """
    if spatial_rank not in (None, 2, 3):
        raise ValueError(
            f"Argument `spatial_rank` must be None, 2 or 3. Received: spatial_rank={spatial_rank!r}"
        )
    source = _Source(_existing(path), key)
    _, has_channels = _channel_layout(source, spatial_rank, None)
    return _as_image(source.read(), has_channels)


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
        ValueError: for non-integer, negative or colour labels.

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
        raise ValueError(f"Argument `value_range` must have high > low. Received: {value_range!r}")
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


# --------------------------------------------------------------------------
# Scanning a folder
# --------------------------------------------------------------------------
@dataclasses.dataclass
class FolderScan:
    """What :func:`scan_folder` learned about a folder, without keeping voxels.

    Attributes:
        names: file stems, sorted.
        image_paths: image files, aligned with ``names``.
        mask_paths: mask files (None entries without a masks folder).
        shapes: spatial shape of each image.
        spatial_rank: 2 or 3.
        channels: channels per image (the same for all).
        class_counts: int64 counts per class over all masks: ``num_classes``
            entries, or ``max label + 1`` when it is None (None without masks).
        means, stds: per-image intensity mean and standard deviation (over
            all voxels and channels), for z-score normalisation.
    """

    names: list[str]
    image_paths: list[Path]
    mask_paths: list[Path | None]
    shapes: list[tuple[int, ...]]
    spatial_rank: int
    channels: int
    class_counts: np.ndarray | None
    means: list[float]
    stds: list[float]
    _has_channels: list[bool] = dataclasses.field(default_factory=list, repr=False)

    def subset(self, indices, class_counts: np.ndarray | None) -> FolderScan:
        """The scan of the images at ``indices`` only (e.g. a held-out split).

        Args:
            indices: sequence of int, positions in ``names``.
            class_counts: the subset's class counts (the scan keeps no
                per-image counts, so the caller supplies them).

        Example:
            >>> import numpy as np
            >>> scan = FolderScan(["a", "b"], ["a.npy", "b.npy"], [None, None], [(4, 4)] * 2,
            ...                   2, 1, None, [0.0, 1.0], [1.0, 1.0], [False, False])
            >>> scan.subset([1], None).names, scan.subset([1], None).means
            (['b'], [1.0])
        """

        def pick(values):
            return [values[i] for i in indices] if values else values

        return dataclasses.replace(
            self,
            names=pick(self.names),
            image_paths=pick(self.image_paths),
            mask_paths=pick(self.mask_paths),
            shapes=pick(self.shapes),
            means=pick(self.means),
            stds=pick(self.stds),
            class_counts=class_counts,
            _has_channels=pick(self._has_channels),
        )


def _pair(images_dir, masks_dir) -> tuple[list[Path], list[Path | None]]:
    images = list_images(images_dir, "images_dir")
    if masks_dir is None:
        return images, [None] * len(images)
    masks = {_stem(p): p for p in list_images(masks_dir, "masks_dir")}
    paired = []
    for image in images:
        mask = masks.get(_stem(image))
        if mask is None:
            raise ValueError(
                f"Image {image.name!r} has no mask in {os.fspath(masks_dir)!r} "
                f"(expected a file named {_stem(image)}.<ext>)."
            )
        paired.append(mask)
    return images, paired


def _check_num_classes(num_classes: Any) -> int | None:
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise ValueError(
            f"Argument `num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}"
        )
    if num_classes < 2:
        raise ValueError(
            "Argument `num_classes` must be an integer >= 2 (background included). "
            f"Received: num_classes={num_classes!r}"
        )
    return int(num_classes)


def _image_stats(source: _Source) -> tuple[float, float]:
    total = total_sq = 0.0
    count = 0
    for slab in source.slabs():
        slab = slab.astype(np.float64)
        total += float(slab.sum())
        total_sq += float(np.square(slab).sum())
        count += slab.size
    mean = total / max(count, 1)
    var = max(total_sq / max(count, 1) - mean * mean, 0.0)
    return mean, math.sqrt(var)


def scan_folder(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike | None = None,
    num_classes: int | None = None,
    spatial_rank: int | None = None,
    statistics: bool = True,
) -> FolderScan:
    """Pair images with masks and check them, reading masks slab by slab.

    Every image must have a mask with the same stem and the image's spatial
    shape; with ``num_classes``, every label must lie in
    ``[0, num_classes)``. The class counts are returned either way (one per
    label up to the largest without ``num_classes``). Errors name the
    offending file.

    Args:
        images_dir: folder of images.
        masks_dir: folder of masks, or None.
        num_classes: int >= 2 or None: check labels and count classes.
        spatial_rank: None, 2 or 3 (see :func:`read_image`); with masks the
            mask's shape decides.
        statistics: compute per-image mean and std (reads every image once,
            slab by slab). Default True.

    Returns:
        A :class:`FolderScan`.

    Raises:
        ValueError: missing folders, an image without a mask, shape or
            channel mismatches, labels outside the declared classes.

    Example:

    >>> import tempfile, pathlib, numpy as np
    >>> from bayesseg.data import scan_folder
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "img").mkdir(); (root / "msk").mkdir()
    >>> np.save(root / "img" / "a.npy", np.ones((8, 8)))
    >>> np.save(root / "msk" / "a.npy", np.eye(8, dtype="uint8"))
    >>> scan_folder(root / "img", root / "msk", num_classes=2).class_counts.tolist()
    [56, 8]
    """
    num_classes = _check_num_classes(num_classes)
    if spatial_rank not in (None, 2, 3):
        raise ValueError(
            f"Argument `spatial_rank` must be None, 2 or 3. Received: spatial_rank={spatial_rank!r}"
        )
    images, masks = _pair(images_dir, masks_dir)
    shapes, has_channels, channels, means, stds = [], [], set(), [], []
    counts = np.zeros(num_classes or 1, np.int64) if masks_dir is not None else None
    rank = None
    for image_path, mask_path in zip(images, masks, strict=True):
        source = _Source(image_path)
        mask_shape = None
        if mask_path is not None:
            mask_source = _Source(mask_path)
            mask_shape = _mask_shape(mask_source)
        r, has_c = _channel_layout(source, spatial_rank, mask_shape)
        if rank is not None and r != rank:
            raise ValueError(f"Image {image_path.name!r} is {r}D while earlier images are {rank}D.")
        rank = r
        shape = source.shape[:r]
        channels.add(source.shape[-1] if has_c else 1)
        if len(channels) > 1:
            raise ValueError(
                f"Image {image_path.name!r} has {source.shape[-1] if has_c else 1} channel(s) "
                f"while earlier images have {sorted(channels - {source.shape[-1]})}."
            )
        shapes.append(shape)
        has_channels.append(has_c)
        if statistics:
            mean, std = _image_stats(source)
            means.append(mean)
            stds.append(std)
        if mask_path is not None:
            for slab in mask_source.slabs():
                labels = _as_mask(_mask_read_slab(mask_source, slab), mask_path.name)
                if num_classes is not None and labels.size and labels.max() >= num_classes:
                    bad = np.unique(labels[labels >= num_classes])[:5].tolist()
                    raise ValueError(
                        f"Mask {mask_path.name!r} holds labels {bad} outside the declared "
                        f"classes [0, {num_classes}) (num_classes={num_classes})."
                    )
                found = np.bincount(labels.ravel(), minlength=num_classes or 1)
                if found.size > counts.size:
                    counts = np.pad(counts, (0, found.size - counts.size))
                counts[: found.size] += found
    return FolderScan(
        names=[_stem(p) for p in images],
        image_paths=images,
        mask_paths=masks,
        shapes=shapes,
        spatial_rank=int(rank),
        channels=int(channels.pop()),
        class_counts=counts,
        means=means,
        stds=stds,
        _has_channels=has_channels,
    )


def _mask_read_slab(source: _Source, slab: np.ndarray) -> np.ndarray:
    if len(source.shape) >= 3 and _mask_shape(source) != source.shape:
        first = slab[..., 0]
        if source.shape[-1] > 1 and np.any(slab[..., :3] != first[..., None]):
            raise ValueError(
                f"Mask {source.path.name!r} is a colour image; masks must hold one "
                "integer label per pixel (grayscale or palette)."
            )
        return first
    return slab


def _normalise(image: np.ndarray, mean: float, std: float) -> np.ndarray:
    return ((image - mean) / (std if std > 0 else 1.0)).astype(np.float32)


def load_folder(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike | None = None,
    num_classes: int | None = None,
    spatial_rank: int | None = None,
    normalize: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Load a small folder (and its masks) into memory as stacked arrays.

    Args:
        images_dir: folder of images.
        masks_dir: folder of masks paired by stem, or None.
        num_classes: int >= 2 or None: check that labels lie in
            ``[0, num_classes)``.
        spatial_rank: None, 2 or 3 (see :func:`read_image`).
        normalize: bool, z-score each image (its mean and std over all
            voxels). Default False.

    Returns:
        ``(images, masks, names)``: float32 ``(N, *spatial, C)``, int32
        ``(N, *spatial)`` (None without ``masks_dir``) and the file stems.

    Raises:
        ValueError: see :func:`scan_folder`; also when images differ in
            shape (use :func:`folder_dataset` with ``patch_size``).

    Example:

    >>> import tempfile, pathlib, numpy as np
    >>> from bayesseg.data import load_folder
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a", "b"):
    ...     np.save(d / f"{name}.npy", np.zeros((8, 8)))
    >>> images, masks, names = load_folder(d)
    >>> images.shape, masks, names
    ((2, 8, 8, 1), None, ['a', 'b'])
    """
    scan = scan_folder(images_dir, masks_dir, num_classes, spatial_rank, statistics=normalize)
    for name, shape in zip(scan.names, scan.shapes, strict=True):
        if shape != scan.shapes[0]:
            raise ValueError(
                f"Image {name!r} has spatial shape {shape}, unlike {scan.shapes[0]} of "
                f"{scan.names[0]!r}; stack-able folders need one shape (use "
                "folder_dataset(..., patch_size=...) for mixed sizes)."
            )
    images, masks = [], []
    for i, path in enumerate(scan.image_paths):
        image = _as_image(_Source(path).read(), scan._has_channels[i])
        if normalize:
            image = _normalise(image, scan.means[i], scan.stds[i])
        images.append(image)
        if scan.mask_paths[i] is not None:
            masks.append(read_mask(scan.mask_paths[i]))
    stacked_masks = np.stack(masks) if masks else None
    return np.stack(images), stacked_masks, scan.names


# --------------------------------------------------------------------------
# Patches and the streamed data set
# --------------------------------------------------------------------------
def grid_patch_origins(shape: Sequence[int], patch_size: Sequence[int]) -> list[tuple[int, ...]]:
    """Origins of non-overlapping patches that tile ``shape``; the last is flush with the end.

    Along an axis of size ``n`` with patches of ``p``, origins are ``0, p,
    2p, ...`` and a final ``n - p`` when ``p`` does not divide ``n`` (that
    patch overlaps its neighbour). An axis shorter than the patch gets one
    origin, 0 (the patch is zero-padded).

    Args:
        shape: spatial shape.
        patch_size: patch shape, same length.

    Returns:
        List of origin tuples covering every voxel.

    Example:

    >>> from bayesseg.data import grid_patch_origins
    >>> grid_patch_origins((10, 4), (4, 4))
    [(0, 0), (4, 0), (6, 0)]
    """
    return window_origins(shape, patch_size)


def _padded(array: np.ndarray, target: tuple[int, ...]) -> np.ndarray:
    pad = [(0, max(0, t - s)) for s, t in zip(array.shape[: len(target)], target, strict=True)]
    if not any(after for _, after in pad):
        return array
    pad += [(0, 0)] * (array.ndim - len(target))
    return np.pad(array, pad)


def folder_dataset(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike | None = None,
    patch_size: int | Sequence[int] | None = None,
    batch_size: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    patches: str = "random",
    patches_per_image: int = 4,
    num_classes: int | None = None,
    normalize: bool = True,
    spatial_rank: int | None = None,
    scan: FolderScan | None = None,
) -> tf.data.Dataset:
    """Stream images (and masks) or their patches from a folder into ``tf.data``.

    Files are opened one at a time by a Python generator; with
    ``patch_size`` only the patch is read (``.npy`` memory maps, NIfTI
    ``dataobj`` slicing), so volumes larger than memory train fine. Images
    and masks are checked first (see :func:`scan_folder`).

    Args:
        images_dir: folder of images.
        masks_dir: folder of masks paired by stem, or None (images only).
        patch_size: None (whole images; all must share one shape), an int
            or one int per spatial axis.
        batch_size: int or None (unbatched). Default None.
        shuffle: bool, shuffle the file order (and patch origins) each
            epoch. Default False.
        seed: int, seed of the shuffling and of random patches; epoch ``e``
            uses ``(seed, e)``, so a run is reproducible. Default 0.
        patches: "random" (``patches_per_image`` random origins per image
            and epoch) or "grid" (non-overlapping tiles covering every voxel,
            see :func:`grid_patch_origins`). Default "random".
        patches_per_image: int >= 1, for random patches. Default 4.
        num_classes: int >= 2 or None: check mask labels.
        normalize: bool, z-score each image by its whole-image mean and std.
            Default True.
        spatial_rank: None, 2 or 3 (see :func:`read_image`).
        scan: a :class:`FolderScan` of the same folders, to skip rescanning.

    Returns:
        ``tf.data.Dataset`` of ``(image, mask)`` pairs, image float32
        ``(*spatial, C)``, mask int32 ``spatial``; of images only without
        ``masks_dir``. Its cardinality is known.

    Raises:
        ValueError: bad arguments, or the checks of :func:`scan_folder`.

    Example:

    >>> import tempfile, pathlib, numpy as np
    >>> from bayesseg.data import folder_dataset
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "img").mkdir(); (root / "msk").mkdir()
    >>> np.save(root / "img" / "a.npy", np.ones((20, 20, 20)))
    >>> np.save(root / "msk" / "a.npy", np.zeros((20, 20, 20), "uint8"))
    >>> ds = folder_dataset(root / "img", root / "msk", patch_size=8, patches="grid")
    >>> [tuple(t.shape) for t in next(iter(ds))], int(ds.cardinality())
    ([(8, 8, 8, 1), (8, 8, 8)], 27)
    """
    if patches not in ("random", "grid"):
        raise ValueError(f"Argument `patches` must be 'random' or 'grid'. Received: {patches!r}")
    for name, value in (("patches_per_image", patches_per_image), ("batch_size", batch_size)):
        if value is None and name == "batch_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"Argument `{name}` must be a positive integer. Received: {value!r}")
    if scan is None:
        scan = scan_folder(images_dir, masks_dir, num_classes, spatial_rank, statistics=normalize)
    rank = scan.spatial_rank
    patch = check_patch_size(patch_size, rank)
    if patch is None:
        for name, shape in zip(scan.names, scan.shapes, strict=True):
            if shape != scan.shapes[0]:
                raise ValueError(
                    f"Image {name!r} has spatial shape {shape}, unlike {scan.shapes[0]} of "
                    f"{scan.names[0]!r}; pass patch_size to train on mixed sizes."
                )
        item_shape = scan.shapes[0]
    else:
        item_shape = patch
    with_masks = scan.mask_paths[0] is not None
    if patch is None:
        per_image = [1] * len(scan.names)
    elif patches == "grid":
        per_image = [len(grid_patch_origins(s, patch)) for s in scan.shapes]
    else:
        per_image = [patches_per_image] * len(scan.names)
    total = int(sum(per_image))
    epoch = [0]

    def generate():
        rng = np.random.default_rng([int(seed), epoch[0]])
        epoch[0] += 1
        order = rng.permutation(len(scan.names)) if shuffle else range(len(scan.names))
        for i in order:
            source = _Source(scan.image_paths[i])
            mask_source = _Source(scan.mask_paths[i]) if with_masks else None
            shape = scan.shapes[i]
            if patch is None:
                origins = [(0,) * rank]
                window = shape
            elif patches == "grid":
                origins = grid_patch_origins(shape, patch)
                window = patch
            else:
                origins = [
                    tuple(
                        int(rng.integers(0, max(n - p, 0) + 1))
                        for n, p in zip(shape, patch, strict=True)
                    )
                    for _ in range(patches_per_image)
                ]
                window = patch
            for origin in origins:
                index = tuple(
                    slice(o, min(o + w, n)) for o, w, n in zip(origin, window, shape, strict=True)
                )
                image = _as_image(source.read(index), scan._has_channels[i])
                if normalize:
                    image = _normalise(image, scan.means[i], scan.stds[i])
                image = _padded(image, item_shape)
                if not with_masks:
                    yield image
                    continue
                mask = _as_mask(_mask_read(mask_source, index), mask_source.path.name)
                yield image, _padded(mask, item_shape)

    image_spec = tf.TensorSpec((*item_shape, scan.channels), tf.float32)
    signature = (image_spec, tf.TensorSpec(item_shape, tf.int32)) if with_masks else image_spec
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(total))
    if batch_size is not None:
        dataset = dataset.batch(batch_size)
    return dataset.prefetch(2)
