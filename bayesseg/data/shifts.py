"""Distribution-shift transforms: images unlike the training data, reproducibly.

Does a model's uncertainty notice inputs unlike those it was trained on?
These transforms make such inputs from held-out images ``x`` of shape
``(N, *spatial, C)`` (2D images ``(N, H, W, C)``, 3D volumes
``(N, D, H, W, C)``): the model's input, as float arrays.

* :func:`add_noise`: additive Gaussian noise (a noisier scanner or protocol);
* :func:`blur`: Gaussian blur over the spatial axes (lower resolution, motion);
* :func:`scale_intensity`: a global gain (another scanner calibration);
* :func:`invert_contrast`: each image reflected about its own mean (another
  contrast, e.g. T1 vs T2: lesions brighter than tissue become darker);
* :func:`shift_images`: one of them at a calibrated severity (1 mild,
  2 middle, 3 severe; :data:`SHIFT_SEVERITIES`), then the per-image z-score
  that ``bayesseg predict`` applies to every image it reads.

Every transform refuses non-finite input (a NaN would spread through a blur
or a z-score and hide where it came from) and raises when its result
overflows, so a NaN or an infinity is never produced silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from bayesseg._validation import check_bool, check_choice, check_float, check_int
from bayesseg.data._finite import count_nonfinite
from bayesseg.data.zscore import standardize_image

__all__ = [
    "SHIFT_KINDS",
    "SHIFT_SEVERITIES",
    "add_noise",
    "blur",
    "invert_contrast",
    "scale_intensity",
    "shift_images",
]

#: The kinds of :func:`shift_images`, in the order of :data:`SHIFT_SEVERITIES`.
SHIFT_KINDS = ("noise", "blur", "intensity", "inversion")

#: The parameter of each kind at severity 1, 2 and 3 (mild, middle, severe):
#: the noise's standard deviation (in units of the z-scored input), the
#: blur's sigma in pixels, the intensity gain (below 1: a dimmer
#: calibration), and None for the inversion, which has no parameter (the
#: same far shift at every level). Calibrated by
#: ``benchmarks/calibrate_shifts.py`` (2 seeds; table in docs/shifts.md): the
#: deterministic U-Net of ``benchmarks/bench_quality.py`` (held-out Dice
#: 0.83 on ``synthetic_lesions``) loses 0.06/0.10/0.23 of its Dice to the
#: noise, 0.06/0.10/0.19 to the blur (both with ``standardize=True``) and
#: 0.05/0.10/0.21 to the gain (with ``standardize=False``: the z-score
#: removes a gain exactly); the inversion costs it the whole Dice (0.83).
SHIFT_SEVERITIES: dict[str, tuple[float | None, float | None, float | None]] = {
    "noise": (0.15, 0.2, 0.35),
    "blur": (0.6, 0.7, 0.9),
    "intensity": (0.8, 0.7, 0.55),
    "inversion": (None, None, None),
}


def _check_images(x: Any) -> np.ndarray:
    """``x`` as a finite floating-point array of shape ``(N, *spatial, C)``."""
    array = np.asarray(x)
    if array.dtype.kind != "f":
        raise ValueError(
            "Argument `x` must be a floating-point array. "
            f"Received: x.dtype={array.dtype}, x.shape={array.shape}"
        )
    if array.ndim < 3 or array.shape[0] == 0:
        raise ValueError(
            "Argument `x` must be a batch of shape (N, *spatial, C) with N >= 1 and at "
            f"least one spatial axis. Received: x.shape={array.shape}"
        )
    nan, inf = count_nonfinite(array)
    if nan or inf:
        raise ValueError(
            "Argument `x` must hold only finite values. "
            f"Received: x.shape={array.shape} with {nan} NaN and {inf} infinite values"
        )
    return array


def _finite_result(result: np.ndarray, what: str) -> np.ndarray:
    """``result``, or a ``ValueError`` when the transform overflowed."""
    nan, inf = count_nonfinite(result)
    if nan or inf:
        raise ValueError(
            f"{what} overflowed {result.dtype}: the result holds {nan} NaN and {inf} "
            "infinite values; use a smaller parameter or a wider dtype (e.g. float64)."
        )
    return result


def add_noise(x: Any, std: float, seed: int = 0) -> np.ndarray:
    """Add Gaussian noise of standard deviation ``std`` to every value of ``x``.

    The noise of image ``i`` is drawn from ``numpy.random.default_rng([seed,
    i])``: images get independent noise, the same seed gives the same noise,
    and a subset of a batch gets the noise it gets in the whole batch.

    Args:
        x: float array ``(N, *spatial, C)``, finite.
        std: float >= 0, in the units of ``x`` (0 returns a copy).
        seed: int >= 0. Default 0.

    Returns:
        ``x + std * noise``, an array of ``x``'s shape and dtype.

    Raises:
        ValueError: for a non-float, non-finite or non-batch ``x``, a negative
            ``std`` or a bad ``seed``.

    Example:
        >>> import numpy as np
        >>> from bayesseg.data import add_noise
        >>> x = np.zeros((2, 64, 64, 1), dtype="float32")
        >>> noisy = add_noise(x, std=0.5, seed=1)
        >>> noisy.shape, noisy.dtype, round(float(noisy.std()), 1)
        ((2, 64, 64, 1), dtype('float32'), 0.5)
        >>> bool(np.array_equal(noisy, add_noise(x, 0.5, seed=1)))
        True
    """
    array = _check_images(x)
    std = check_float("std", std, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    result = np.empty_like(array)
    for i, image in enumerate(array):
        noise = np.random.default_rng([seed, i]).standard_normal(image.shape)
        result[i] = image + std * noise
    return _finite_result(result, "add_noise")


def blur(x: Any, sigma: float) -> np.ndarray:
    """Gaussian blur over the spatial axes of each image (not across images or channels).

    ``scipy.ndimage.gaussian_filter`` with ``sigma`` pixels on every spatial
    axis and 0 on the batch and channel axes, borders mirrored (scipy's
    ``mode="reflect"``), computed in float64.

    Args:
        x: float array ``(N, *spatial, C)``, finite.
        sigma: float >= 0, the kernel's standard deviation in pixels
            (0 returns a copy).

    Returns:
        The blurred array, of ``x``'s shape and dtype.

    Raises:
        ValueError: for a non-float, non-finite or non-batch ``x`` or a
            negative ``sigma``.

    Example:
        >>> import numpy as np
        >>> from bayesseg.data import blur
        >>> x = np.zeros((1, 9, 9, 1), dtype="float32")
        >>> x[0, 4, 4, 0] = 1.0
        >>> blurred = blur(x, sigma=1.0)
        >>> blurred.shape, round(float(blurred.sum()), 4), bool(blurred[0, 4, 4, 0] < 1)
        ((1, 9, 9, 1), 1.0, True)
    """
    array = _check_images(x)
    sigma = check_float("sigma", sigma, minimum=0)
    sigmas = (0.0, *([sigma] * (array.ndim - 2)), 0.0)
    blurred = ndimage.gaussian_filter(array.astype(np.float64), sigmas)
    return blurred.astype(array.dtype)


def scale_intensity(x: Any, factor: float) -> np.ndarray:
    """Multiply every value by ``factor``: a global gain (another scanner calibration).

    A per-image z-score (:func:`bayesseg.data.standardize_image`, what
    ``bayesseg predict`` applies to every image) removes a gain exactly, so
    this shift reaches a model only through a pipeline that does not
    standardise each image (``shift_images(..., standardize=False)``).

    Args:
        x: float array ``(N, *spatial, C)``, finite.
        factor: float > 0 (1 returns a copy).

    Returns:
        ``x * factor``, of ``x``'s shape and dtype.

    Raises:
        ValueError: for a non-float, non-finite or non-batch ``x``, a factor
            <= 0, or a result that overflows ``x``'s dtype.

    Example:
        >>> import numpy as np
        >>> from bayesseg.data import scale_intensity, standardize_image
        >>> x = np.random.default_rng(0).normal(size=(1, 8, 8, 1)).astype("float32")
        >>> scale_intensity(x, 2.0)[0, 0, 0, 0] == 2 * x[0, 0, 0, 0]
        np.True_
        >>> bool(np.allclose(standardize_image(scale_intensity(x, 2.0)[0]),
        ...                  standardize_image(x[0]), atol=1e-5))
        True
    """
    array = _check_images(x)
    factor = check_float("factor", factor, minimum=0, strict_minimum=True)
    with np.errstate(over="ignore"):
        result = (array * factor).astype(array.dtype)
    return _finite_result(result, "scale_intensity")


def invert_contrast(x: Any) -> np.ndarray:
    """Reflect each image about its own mean, channel by channel: ``2 * mean - x``.

    The mean runs over the spatial axes of one image and one channel (in
    float64). The result keeps each image's per-channel mean and standard
    deviation (up to rounding) but reverses its contrast: lesions brighter
    than their surroundings become darker. Applying it twice gives ``x``
    back.

    Args:
        x: float array ``(N, *spatial, C)``, finite.

    Returns:
        The inverted array, of ``x``'s shape and dtype.

    Raises:
        ValueError: for a non-float, non-finite or non-batch ``x``.

    Example:
        >>> import numpy as np
        >>> from bayesseg.data import invert_contrast
        >>> x = np.array([[[1.0], [2.0], [6.0]]])  # one image, 3 pixels, 1 channel
        >>> invert_contrast(x)[0, :, 0].tolist()
        [5.0, 4.0, 0.0]
    """
    array = _check_images(x)
    spatial = tuple(range(1, array.ndim - 1))
    mean = array.astype(np.float64).mean(axis=spatial, keepdims=True)
    return (2.0 * mean - array).astype(array.dtype)


def shift_images(
    x: Any, kind: str, severity: int, seed: int = 0, standardize: bool = True
) -> np.ndarray:
    """Apply the shift ``kind`` at ``severity`` 1, 2 or 3 (:data:`SHIFT_SEVERITIES`).

    With ``standardize=True`` (default) each shifted image is then z-scored
    by its own mean and standard deviation over all voxels and channels
    (:func:`bayesseg.data.standardize_image`), as ``bayesseg predict`` does to
    every image it reads: the shift as a deployed model sees it. A global
    gain vanishes there, so ``"intensity"`` only changes the model's input
    with ``standardize=False``, which returns the raw shifted images.

    Args:
        x: float array ``(N, *spatial, C)``, finite: the model's input.
        kind: one of ``"noise"``, ``"blur"``, ``"intensity"``, ``"inversion"``.
        severity: 1 (mild), 2 (middle) or 3 (severe). The inversion has no
            parameter: every level is the same far shift.
        seed: int >= 0, the noise's seed (used by ``"noise"`` only). Default 0.
        standardize: bool, z-score each image after the shift. Default True.

    Returns:
        float32 array of ``x``'s shape with ``standardize=True``; with
        ``standardize=False``, an array of ``x``'s shape and dtype.

    Raises:
        ValueError: for a bad ``x``, ``kind``, ``severity``, ``seed`` or
            ``standardize``, checked before any work.

    Example:
        >>> import numpy as np
        >>> from bayesseg.data import shift_images
        >>> x = np.random.default_rng(0).normal(size=(3, 32, 32, 1)).astype("float32")
        >>> shifted = shift_images(x, "blur", severity=2)
        >>> shifted.shape, shifted.dtype
        ((3, 32, 32, 1), dtype('float32'))
        >>> bool(np.allclose(shifted.mean(axis=(1, 2, 3)), 0, atol=1e-5)), round(float(shifted.std()), 4)
        (True, 1.0)
        >>> shift_images(x, "fog", severity=2)
        Traceback (most recent call last):
        ...
        ValueError: Argument `kind` must be one of 'noise', 'blur', 'intensity', 'inversion'. Received: kind='fog'
    """  # noqa: E501
    kind = check_choice("kind", kind, SHIFT_KINDS)
    severity = check_int("severity", severity, minimum=1, maximum=3)
    seed = check_int("seed", seed, minimum=0)
    standardize = check_bool("standardize", standardize)
    array = _check_images(x)
    level = SHIFT_SEVERITIES[kind][severity - 1]
    if kind == "noise":
        shifted = add_noise(array, level, seed=seed)
    elif kind == "blur":
        shifted = blur(array, level)
    elif kind == "intensity":
        shifted = scale_intensity(array, level)
    else:
        shifted = invert_contrast(array)
    if not standardize:
        return shifted
    return np.stack([standardize_image(image) for image in shifted])
