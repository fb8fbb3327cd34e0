"""Per-image z-score: the one normalisation of training and prediction inputs.

Every image bayesseg reads from disk for training (:func:`bayesseg.data.folder_dataset`,
:func:`bayesseg.data.load_folder` with ``normalize=True``) or prediction (``bayesseg
predict``), and every synthetic image, is standardised by its own mean and standard
deviation over all voxels and channels. The statistics are accumulated in float64,
slab by slab along the first axis, so a volume read lazily from disk and the same
volume in memory get the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from bayesseg._validation import argument_error, check_float
from bayesseg.data.io import _slabs

__all__ = ["standardize_image"]


def _statistics(slabs: Iterable[np.ndarray]) -> tuple[float, float]:
    """Mean and (population) standard deviation over every value of ``slabs``."""
    total = total_sq = 0.0
    count = 0
    for slab in slabs:
        slab = np.asarray(slab, dtype=np.float64)
        total += float(slab.sum())
        total_sq += float(np.square(slab).sum())
        count += slab.size
    mean = total / max(count, 1)
    var = max(total_sq / max(count, 1) - mean * mean, 0.0)
    return mean, math.sqrt(var)


def _image_statistics(image: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of an in-memory array, as :func:`_statistics` of its slabs."""
    if image.ndim == 0:
        return _statistics([image])
    return _statistics(_slabs(image.shape, image.__getitem__))


def standardize_image(
    image: Any, mean: float | None = None, std: float | None = None
) -> np.ndarray:
    """Z-score one image by its own mean and standard deviation: ``(image - mean) / std``.

    The statistics run over all voxels and channels (population standard
    deviation, accumulated in float64); an image of constant value (std 0)
    is only centred. Pass ``mean`` and ``std`` to reuse statistics computed
    earlier (e.g. :attr:`bayesseg.data.FolderScan.means` and ``stds``).

    Args:
        image: array-like of any shape, e.g. ``(*spatial, C)``.
        mean: float or None (default): the image's mean when None.
        std: float >= 0 or None (default): the image's standard deviation
            when None.

    Returns:
        float32 array of the image's shape.

    Raises:
        ValueError: for a non-finite ``mean`` or a negative or non-finite ``std``.

    Example:
        >>> import numpy as np
        >>> from bayesseg.data import standardize_image
        >>> image = np.array([[1.0, 2.0], [3.0, 4.0]])
        >>> z = standardize_image(image)
        >>> z.dtype, np.allclose(z, (image - image.mean()) / image.std())
        (dtype('float32'), True)
        >>> standardize_image(np.full((2, 2), 5.0)).tolist()
        [[0.0, 0.0], [0.0, 0.0]]
    """
    array = np.asarray(image)
    if (mean is None) != (std is None):
        raise argument_error("std", "be given together with `mean` (or both None)", std)
    if mean is None:
        mean, std = _image_statistics(array)
    else:
        mean = check_float("mean", mean)
        std = check_float("std", std, minimum=0)
    return ((array - mean) / (std if std > 0 else 1.0)).astype(np.float32)
