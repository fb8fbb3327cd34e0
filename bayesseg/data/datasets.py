"""Folders streamed into ``tf.data``: whole images or their patches.

:func:`folder_dataset` opens one file at a time in a Python generator; with
``patch_size`` only the patch is read (``.npy`` memory maps, NIfTI
``dataobj`` slicing, see :mod:`bayesseg.data.io`), so volumes larger than
memory train fine. Patch sizes and tile origins come from
:mod:`bayesseg._tiling`, the per-image z-score from :mod:`bayesseg.data.zscore`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from bayesseg._tiling import check_patch_size, window_origins
from bayesseg._validation import argument_error, check_choice, check_int
from bayesseg.data._finite import apply_policy, check_nan_policy
from bayesseg.data.folders import FolderScan, _check_one_shape, scan_folder
from bayesseg.data.io import _as_image, _as_mask, _mask_read, _Source
from bayesseg.data.zscore import standardize_image

__all__ = ["folder_dataset", "grid_patch_origins"]


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
    nan_policy: str = "error",
) -> tf.data.Dataset:
    """Stream images (and masks) or their patches from a folder into ``tf.data``.

    Files are opened one at a time by a Python generator; with
    ``patch_size`` only the patch is read (``.npy`` memory maps, NIfTI
    ``dataobj`` slicing), so volumes larger than memory train fine. Images
    and masks are checked first (see :func:`scan_folder`), NaN and infinite
    values included, so a bad file fails here, before any training.

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
        nan_policy: "error" (default) or "zero": NaN and infinite image
            values raise a ValueError naming the file (at the scan), or are
            replaced by 0 before the z-score. With ``scan`` it must be the
            scan's own policy (its statistics were computed under it).

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
    patches = check_choice("patches", patches, ("random", "grid"))
    patches_per_image = check_int("patches_per_image", patches_per_image)
    batch_size = check_int("batch_size", batch_size, allow_none=True)
    nan_policy = check_nan_policy(nan_policy)
    if scan is None:
        scan = scan_folder(images_dir, masks_dir, num_classes, spatial_rank, normalize, nan_policy)
    elif scan.nan_policy != nan_policy:
        raise argument_error(
            "nan_policy",
            f"be the policy of the `scan` it comes with, {scan.nan_policy!r} (the scan's "
            "statistics were computed under it)",
            nan_policy,
        )
    rank = scan.spatial_rank
    patch = check_patch_size(patch_size, rank)
    if patch is None:
        item_shape = _check_one_shape(scan, "pass patch_size to train on mixed sizes")
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
                # Already checked by the scan; this pass (on one patch) also
                # catches a file changed since, rather than training on NaN.
                image = apply_policy(image, source.path.name, nan_policy)
                if normalize:
                    image = standardize_image(image, scan.means[i], scan.stds[i])
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
