"""Folders of images and masks: listing, pairing by stem, checking and loading.

Images and masks are paired by file stem (``case07.nii.gz`` with
``case07.png`` is fine, formats may differ). :func:`scan_folder` checks a
folder without keeping voxels (masks are read slab by slab);
:func:`load_folder` stacks a small folder in memory. File formats are those
of :mod:`bayesseg.data.io`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from bayesseg._validation import argument_error, check_float, check_int
from bayesseg.data._finite import (
    apply_policy,
    check_nan_policy,
    checked_slabs,
    count_nonfinite,
    mask_error,
)
from bayesseg.data.io import (
    SUFFIXES,
    _as_image,
    _as_mask,
    _channel_layout,
    _mask_channels,
    _mask_shape,
    _Source,
    _stem,
    _suffix,
    read_mask,
)
from bayesseg.data.zscore import _statistics, standardize_image

__all__ = ["FolderScan", "list_images", "load_folder", "scan_folder"]


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
    return list_files(folder, SUFFIXES, "image files", argument, suffix=_suffix, stem=_stem)


def list_files(
    folder: str | os.PathLike,
    suffixes: tuple[str, ...],
    kind: str,
    argument: str = "folder",
    suffix=lambda p: p.suffix.lower(),
    stem=lambda p: p.stem,
) -> list[Path]:
    """The files of ``folder`` whose ``suffix(path)`` is in ``suffixes``, sorted by name.

    The one listing rule of images and series: hidden files and other
    suffixes are skipped; an empty listing and two files of one stem are
    errors (pairing by stem would be ambiguous). ``kind`` names the files in
    the error.

    Example:

    >>> import tempfile, pathlib
    >>> from bayesseg.data.folders import list_files
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "b.csv").write_text("x"); _ = (d / ".hidden.csv").write_text("x")
    >>> [p.name for p in list_files(d, (".csv",), "series")]
    ['b.csv']
    """
    path = Path(folder)
    if not path.is_dir():
        raise argument_error(argument, "be an existing directory", os.fspath(folder))
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and suffix(p) in suffixes
    )
    if not files:
        raise argument_error(
            argument, f"be a folder holding {kind} ({', '.join(suffixes)})", os.fspath(folder)
        )
    seen: dict[str, Path] = {}
    for p in files:
        if stem(p) in seen:
            raise ValueError(
                f"Files {seen[stem(p)].name!r} and {p.name!r} in {os.fspath(folder)!r} "
                "share one stem; keep one of them."
            )
        seen[stem(p)] = p
    return files


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
            all voxels and channels), for z-score normalisation; under
            ``nan_policy="zero"`` those of the zero-filled image.
        nan_policy: "error" or "zero", the policy the scan applied; readers
            of the scanned files (:func:`folder_dataset`) apply the same.
        nonfinite: per image, ``(NaN count, infinite count)`` found by the
            scan (all zero under "error", which raises otherwise; empty when
            the scan did not read the images).
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
    nan_policy: str = "error"
    nonfinite: list[tuple[int, int]] = dataclasses.field(default_factory=list)

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
            nonfinite=pick(self.nonfinite),
            class_counts=class_counts,
            _has_channels=pick(self._has_channels),
        )

    def pooled_statistics(self) -> tuple[float, float]:
        """The mean and standard deviation over every voxel and channel of every image.

        Combined exactly (in float64) from the per-image ``means`` and ``stds``
        and each image's number of values, so nothing is read again: the
        statistics of one z-score shared by all the images, for data whose
        absolute intensity carries meaning (CT in Hounsfield units, classes
        coded by brightness), which a per-image z-score would erase.

        Returns:
            ``(mean, std)``, floats (population standard deviation).

        Raises:
            ValueError: for a scan without images, or without per-image
                statistics (``scan_folder(statistics=False)``).

        Example:
            >>> import numpy as np
            >>> scan = FolderScan(["a", "b"], ["a.npy", "b.npy"], [None, None],
            ...                   [(2, 2), (2, 1)], 2, 1, None, [1.0, 4.0], [0.0, 1.0])
            >>> values = np.array([1.0, 1.0, 1.0, 1.0, 3.0, 5.0])  # a: 4 ones; b: 3, 5
            >>> np.allclose(scan.pooled_statistics(), (values.mean(), values.std()))
            True
        """
        if not self.names:
            raise argument_error("scan", "hold at least one image", "an empty scan")
        if len(self.means) != len(self.names):
            raise argument_error(
                "scan",
                "hold each image's mean and std (scan_folder(..., statistics=True))",
                f"{len(self.means)} statistics for {len(self.names)} images",
            )
        counts = np.array([np.prod(s) * self.channels for s in self.shapes], dtype=np.float64)
        means = np.asarray(self.means, dtype=np.float64)
        stds = np.asarray(self.stds, dtype=np.float64)
        weights = counts / counts.sum()
        mean = float(np.dot(weights, means))
        variance = float(np.dot(weights, np.square(stds) + np.square(means - mean)))
        return mean, math.sqrt(max(variance, 0.0))

    def with_statistics(self, mean: float, std: float) -> FolderScan:
        """This scan with every image z-scored by the same ``mean`` and ``std``.

        The readers of the scan (:func:`folder_dataset`) then apply
        ``(image - mean) / std`` to each image instead of its own statistics,
        e.g. with :meth:`pooled_statistics` of the training images, on the
        training, held-out and validation scans alike.

        Args:
            mean: finite float.
            std: finite float >= 0 (0: the images are only centred).

        Example:
            >>> scan = FolderScan(["a", "b"], ["a.npy", "b.npy"], [None, None], [(4, 4)] * 2,
            ...                   2, 1, None, [0.0, 1.0], [1.0, 2.0])
            >>> scan.with_statistics(0.5, 1.5).means, scan.with_statistics(0.5, 1.5).stds
            ([0.5, 0.5], [1.5, 1.5])
        """
        mean = check_float("mean", mean)
        std = check_float("std", std, minimum=0)
        count = len(self.names)
        return dataclasses.replace(self, means=[mean] * count, stds=[std] * count)


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


def scan_folder(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike | None = None,
    num_classes: int | None = None,
    spatial_rank: int | None = None,
    statistics: bool = True,
    nan_policy: str = "error",
) -> FolderScan:
    """Pair images with masks and check them, reading files slab by slab.

    Every image must have a mask with the same stem and the image's spatial
    shape; with ``num_classes``, every label must lie in
    ``[0, num_classes)``. The class counts are returned either way (one per
    label up to the largest without ``num_classes``). Every floating-point
    image is read once (with the statistics when they are asked for) and
    checked for NaN and infinite values; a mask holding one is always an
    error. Errors are one line naming the offending file.

    Args:
        images_dir: folder of images.
        masks_dir: folder of masks, or None.
        num_classes: int >= 2 or None: check labels and count classes.
        spatial_rank: None, 2 or 3 (see :func:`read_image`); with masks the
            mask's shape decides.
        statistics: compute per-image mean and std (reads every image once,
            slab by slab). Default True.
        nan_policy: "error" (default: a NaN or infinite value in an image
            raises a ValueError naming the file and the count) or "zero"
            (they are replaced by 0 before the statistics, so the z-score is
            that of the zero-filled image).

    Returns:
        A :class:`FolderScan`.

    Raises:
        ValueError: missing folders, an image without a mask, shape or
            channel mismatches, labels outside the declared classes,
            non-finite values (see ``nan_policy``).

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
    return _scan(images_dir, masks_dir, num_classes, spatial_rank, statistics, nan_policy, True)


def _scan(
    images_dir, masks_dir, num_classes, spatial_rank, statistics, nan_policy, check_values
) -> FolderScan:
    """:func:`scan_folder`; without ``check_values`` images are read only for statistics.

    (:func:`load_folder` checks values as it loads, so its scan need not read
    the images a second time.)
    """
    num_classes = check_int("num_classes", num_classes, minimum=2, allow_none=True)
    spatial_rank = check_int("spatial_rank", spatial_rank, 2, 3, allow_none=True)
    nan_policy = check_nan_policy(nan_policy)
    images, masks = _pair(images_dir, masks_dir)
    shapes, has_channels, channels, means, stds, nonfinite = [], [], set(), [], [], []
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
        image_bad: list[int] = []
        slabs = checked_slabs(source.slabs(), image_path.name, nan_policy, image_bad)
        if statistics:
            mean, std = _statistics(slabs)
            means.append(mean)
            stds.append(std)
        elif check_values and source.dtype.kind in "fc":
            for _ in slabs:
                pass
        if check_values or statistics:
            nonfinite.append(tuple(image_bad) if image_bad else (0, 0))
        if mask_path is not None:
            bad = [0, 0]
            for slab in mask_source.slabs():
                slab_bad = count_nonfinite(slab)
                bad = [bad[0] + slab_bad[0], bad[1] + slab_bad[1]]
                if bad[0] or bad[1]:
                    continue  # counted over the whole mask, then raised below
                labels = _as_mask(_mask_channels(mask_source, slab), mask_path.name)
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
            if bad[0] or bad[1]:
                raise mask_error(mask_path.name, *bad)
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
        nan_policy=nan_policy,
        nonfinite=nonfinite,
    )


def _check_one_shape(scan: FolderScan, advice: str) -> tuple[int, ...]:
    """The spatial shape all images of ``scan`` share; else a ValueError ending in ``advice``."""
    for name, shape in zip(scan.names, scan.shapes, strict=True):
        if shape != scan.shapes[0]:
            raise ValueError(
                f"Image {name!r} has spatial shape {shape}, unlike {scan.shapes[0]} of "
                f"{scan.names[0]!r}; {advice}."
            )
    return scan.shapes[0]


def load_folder(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike | None = None,
    num_classes: int | None = None,
    spatial_rank: int | None = None,
    normalize: bool = False,
    nan_policy: str = "error",
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
        nan_policy: "error" (default) or "zero": NaN and infinite image
            values raise a ValueError naming the file, or are replaced by 0
            before the z-score. Each file is read once either way.

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
    scan = _scan(images_dir, masks_dir, num_classes, spatial_rank, normalize, nan_policy, False)
    _check_one_shape(
        scan,
        "stack-able folders need one shape (use folder_dataset(..., patch_size=...) "
        "for mixed sizes)",
    )
    images, masks = [], []
    for i, path in enumerate(scan.image_paths):
        image = _as_image(_Source(path).read(), scan._has_channels[i])
        image = apply_policy(image, path.name, scan.nan_policy)
        if normalize:
            image = standardize_image(image, scan.means[i], scan.stds[i])
        images.append(image)
        if scan.mask_paths[i] is not None:
            masks.append(read_mask(scan.mask_paths[i]))
    stacked_masks = np.stack(masks) if masks else None
    return np.stack(images), stacked_masks, scan.names
