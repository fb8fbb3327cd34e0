"""Patches and tiles: one owner for patch-size parsing and window origins.

Training on patches (:func:`bayesseg.data.folder_dataset`), sliding-window
prediction (:func:`bayesseg.uncertainty.predict_mc`) and the CLI all speak
of a *patch size* (an int, or one int per spatial axis) and of *window
origins* along a spatial shape. Both are defined here, once:

* :func:`check_patch_size` parses a patch size for a given spatial rank;
* :func:`window_starts` gives the window origins along one axis for a
  stride (the last window is flush with the end);
* :func:`window_origins` combines them over every axis; non-overlapping
  tiles (:func:`bayesseg.data.grid_patch_origins`) are windows whose stride
  is the patch;
* :func:`unet_divisor` and :func:`check_unet_shape` hold the U-Net's size
  rule (every spatial size divisible by ``2**(depth-1)``), for the model
  builder and for the CLI's patches and windows.

Example:
    >>> from bayesseg._tiling import check_patch_size, window_origins
    >>> patch = check_patch_size(4, spatial_rank=2)
    >>> patch
    (4, 4)
    >>> window_origins((10, 4), patch)
    [(0, 0), (4, 0), (6, 0)]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from bayesseg._validation import check_int_tuple

__all__ = [
    "check_patch_size",
    "check_unet_shape",
    "unet_divisor",
    "window_origins",
    "window_starts",
]


def check_patch_size(
    patch_size: Any, spatial_rank: int, name: str = "patch_size"
) -> tuple[int, ...] | None:
    """A patch size: None, an int >= 1, or one int >= 1 per spatial axis.

    Args:
        patch_size: the value to check.
        spatial_rank: number of spatial axes (1, 2 or 3).
        name: the argument's name in the error message. Default
            ``"patch_size"``.

    Returns:
        None for None, else a tuple of ``spatial_rank`` Python ints.

    Raises:
        ValueError: in the package's message style (see
            :func:`bayesseg._validation.check_int_tuple`).

    Example:
        >>> check_patch_size((8, 16), 2)
        (8, 16)
        >>> check_patch_size(None, 3) is None
        True
        >>> check_patch_size((8,), 2)
        Traceback (most recent call last):
        ...
        ValueError: Argument `patch_size` must be an integer >= 1 or a tuple of 2 integers >= 1. Received: patch_size=(8,)
    """  # noqa: E501
    if patch_size is None:
        return None
    return check_int_tuple(name, patch_size, spatial_rank)


def window_starts(size: int, patch: int, stride: int | None = None) -> list[int]:
    """Window origins along one axis covering ``[0, size)``; the last is flush with the end.

    Origins are ``0, stride, 2 * stride, ...`` up to ``size - patch``, plus
    ``size - patch`` itself when the stride does not land on it. An axis no
    longer than the patch gets the single origin 0 (the caller pads).

    Args:
        size: length of the axis.
        patch: window length.
        stride: step between origins; None (default) means ``patch``
            (non-overlapping tiles).

    Returns:
        Sorted list of int origins.

    Example:
        >>> window_starts(10, 4)
        [0, 4, 6]
        >>> window_starts(10, 4, stride=2)
        [0, 2, 4, 6]
        >>> window_starts(3, 4)
        [0]
    """
    stride = patch if stride is None else stride
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def window_origins(
    shape: Sequence[int], patch: Sequence[int], strides: Sequence[int] | None = None
) -> list[tuple[int, ...]]:
    """Origins of the windows that cover ``shape``, in C order (last axis fastest).

    Args:
        shape: spatial shape.
        patch: window shape, same length.
        strides: step per axis, same length; None (default) means ``patch``:
            non-overlapping tiles, the last one per axis flush with the end.

    Returns:
        List of origin tuples covering every voxel.

    Example:
        >>> window_origins((6, 6), (4, 4), strides=(2, 2))
        [(0, 0), (0, 2), (2, 0), (2, 2)]
    """
    strides = patch if strides is None else strides
    axes = [
        window_starts(int(n), int(p), int(s)) for n, p, s in zip(shape, patch, strides, strict=True)
    ]
    return list(itertools.product(*axes))


def unet_divisor(depth: int | None) -> int:
    """``2**(depth-1)``: what a U-Net of ``depth`` levels needs every spatial size divisible by.

    Each of the ``depth - 1`` poolings halves the sizes, and the decoder's
    transposed convolutions must land back on the skip connections' sizes.
    An unknown depth (None) asks nothing (1).

    Example:
        >>> unet_divisor(4), unet_divisor(None)
        (8, 1)
    """
    return 2 ** (depth - 1) if depth else 1


def check_unet_shape(shape: Sequence[int | None], depth: int | None, message) -> int:
    """Raise ``ValueError(message(divisor))`` unless every known size in ``shape`` is divisible.

    Args:
        shape: spatial sizes (None entries, unknown sizes, pass).
        depth: U-Net depth, or None when unknown.
        message: callable mapping the divisor to the error message, so each
            caller names its own argument (``input_shape``, ``--size``...).

    Returns:
        The divisor, ``unet_divisor(depth)``.

    Example:
        >>> check_unet_shape((64, 48), 4, lambda d: f"not divisible by {d}")
        8
        >>> check_unet_shape((60,), 4, lambda d: f"not divisible by {d}")
        Traceback (most recent call last):
        ...
        ValueError: not divisible by 8
    """
    divisor = unet_divisor(depth)
    if any(size is not None and int(size) % divisor for size in shape):
        raise ValueError(message(divisor))
    return divisor
