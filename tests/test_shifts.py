"""Tests of the distribution-shift transforms (bayesseg/data/shifts.py).

References: NumPy hand computations, scipy.ndimage.gaussian_filter image by
image and channel by channel, and the closed-form properties of each shift
(noise standard deviation, the z-score's invariance to a gain, the
inversion's kept moments and involution).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from bayesseg.data import (
    SHIFT_KINDS,
    SHIFT_SEVERITIES,
    add_noise,
    blur,
    invert_contrast,
    scale_intensity,
    shift_images,
    standardize_image,
    synthetic_lesions,
)


def _images(shape=(3, 16, 20, 2), seed=0, dtype="float32"):
    return np.random.default_rng(seed).normal(1.5, 2.0, size=shape).astype(dtype)


def _zscored(x):
    """Hand-computed per-image z-score over all voxels and channels (float64)."""
    x = x.astype(np.float64)
    axes = tuple(range(1, x.ndim))
    return (x - x.mean(axis=axes, keepdims=True)) / x.std(axis=axes, keepdims=True)


# --- add_noise ---------------------------------------------------------------


def test_noise_has_the_requested_std_and_is_independent_per_image():
    x = np.zeros((3, 256, 256, 1), dtype="float32")
    noise = add_noise(x, std=0.7, seed=5)
    axes = (1, 2, 3)
    # The std of a std estimate from 65536 values is 0.7 / sqrt(2 * 65536) ~ 0.002.
    np.testing.assert_allclose(noise.std(axis=axes), 0.7, atol=0.01)
    np.testing.assert_allclose(noise.mean(axis=axes), 0.0, atol=0.01)
    # Independent images: correlations ~ N(0, 1/65536), i.e. |r| well under 0.02.
    flat = noise.reshape(3, -1)
    correlations = np.corrcoef(flat)[np.triu_indices(3, 1)]
    assert np.all(np.abs(correlations) < 0.02)


def test_noise_is_the_documented_generator_draw():
    x = _images()
    noisy = add_noise(x, std=0.3, seed=7)
    for i in range(len(x)):
        reference = x[i] + 0.3 * np.random.default_rng([7, i]).standard_normal(x[i].shape)
        np.testing.assert_allclose(noisy[i], reference.astype(np.float32), rtol=1e-6)
    assert noisy.dtype == np.float32 and noisy.shape == x.shape


def test_noise_seeds_are_reproducible_and_a_subset_gets_its_own_noise():
    x = _images()
    np.testing.assert_array_equal(add_noise(x, 0.5, seed=1), add_noise(x, 0.5, seed=1))
    assert not np.allclose(add_noise(x, 0.5, seed=1), add_noise(x, 0.5, seed=2))
    np.testing.assert_array_equal(add_noise(x[:2], 0.5, seed=1), add_noise(x, 0.5, seed=1)[:2])


def test_zero_noise_returns_a_copy():
    x = _images()
    out = add_noise(x, 0.0)
    np.testing.assert_array_equal(out, x)
    assert out is not x


# --- blur --------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 16, 20, 2), (2, 8, 10, 12, 1)])
def test_blur_matches_scipy_image_by_image_and_channel_by_channel(shape):
    x = _images(shape)
    blurred = blur(x, sigma=1.3)
    assert blurred.shape == x.shape and blurred.dtype == np.float32
    for i in range(shape[0]):
        for c in range(shape[-1]):
            reference = ndimage.gaussian_filter(x[i, ..., c].astype(np.float64), 1.3)
            np.testing.assert_allclose(blurred[i, ..., c], reference, rtol=1e-5, atol=1e-5)


def test_blur_keeps_images_and_channels_apart_and_constants_constant():
    x = np.zeros((2, 12, 12, 2), dtype="float64")
    x[0, 6, 6, 0] = 1.0
    blurred = blur(x, sigma=2.0)
    assert blurred.dtype == np.float64
    assert np.count_nonzero(blurred[1]) == 0 and np.count_nonzero(blurred[0, ..., 1]) == 0
    assert 0 < blurred[0, 6, 6, 0] < 1
    constant = np.full((1, 9, 9, 1), 3.0, dtype="float32")
    np.testing.assert_allclose(blur(constant, 1.5), constant, rtol=1e-6)
    np.testing.assert_array_equal(blur(x, 0.0), x)


# --- scale_intensity ---------------------------------------------------------


def test_scale_intensity_is_a_product():
    x = _images()
    out = scale_intensity(x, 1.75)
    np.testing.assert_array_equal(out, x * np.float32(1.75))
    assert out.dtype == np.float32


@settings(max_examples=30, deadline=None)
@given(
    factor=st.floats(0.01, 100.0),
    seed=st.integers(0, 1000),
    offset=st.floats(-5.0, 5.0),
)
def test_standardizing_removes_any_gain(factor, seed, offset):
    x = _images((2, 8, 8, 1), seed=seed) + np.float32(offset)
    scaled = scale_intensity(x, factor)
    for image, reference in zip(scaled, x, strict=True):
        np.testing.assert_allclose(
            standardize_image(image), standardize_image(reference), atol=1e-4
        )
    np.testing.assert_allclose(
        shift_images(x, "intensity", 3),
        shift_images(scale_intensity(x, factor), "intensity", 3),
        atol=1e-4,
    )


def test_scale_intensity_refuses_to_overflow():
    x = np.full((1, 4, 4, 1), 1e30, dtype="float32")
    with pytest.raises(ValueError, match="scale_intensity overflowed float32.*16 infinite"):
        scale_intensity(x, 1e10)


# --- invert_contrast ---------------------------------------------------------


def test_inversion_by_hand():
    x = np.array([[[[1.0, 10.0], [2.0, 20.0]], [[3.0, 30.0], [6.0, 0.0]]]])  # (1, 2, 2, 2)
    # channel 0: mean 3 -> 2*3 - x; channel 1: mean 15 -> 30 - x
    expected = np.array([[[[5.0, 20.0], [4.0, 10.0]], [[3.0, 0.0], [0.0, 30.0]]]])
    np.testing.assert_array_equal(invert_contrast(x), expected)


@pytest.mark.parametrize("shape", [(3, 16, 20, 2), (2, 8, 10, 12, 1)])
def test_inversion_keeps_moments_and_is_an_involution(shape):
    x = _images(shape, dtype="float64")
    inverted = invert_contrast(x)
    axes = tuple(range(1, x.ndim - 1))
    np.testing.assert_allclose(inverted.mean(axis=axes), x.mean(axis=axes), rtol=1e-12)
    np.testing.assert_allclose(inverted.std(axis=axes), x.std(axis=axes), rtol=1e-12)
    np.testing.assert_allclose(invert_contrast(inverted), x, rtol=1e-12, atol=1e-12)
    assert not np.allclose(inverted, x)


def test_inversion_makes_the_synthetic_lesions_darker_than_their_surroundings():
    images, masks = synthetic_lesions(10, shape=(48, 48), seed=4)
    inverted = invert_contrast(images)
    mask = masks[..., 0] > 0
    ring = np.stack([ndimage.binary_dilation(m, iterations=3) & ~m for m in mask])
    before = images[..., 0][mask].mean() - images[..., 0][ring].mean()
    after = inverted[..., 0][mask].mean() - inverted[..., 0][ring].mean()
    assert before > 0.3
    np.testing.assert_allclose(after, -before, rtol=1e-5)


# --- shift_images ------------------------------------------------------------


def test_severity_table():
    assert tuple(SHIFT_SEVERITIES) == SHIFT_KINDS
    for kind in ("noise", "blur"):
        levels = SHIFT_SEVERITIES[kind]
        assert len(levels) == 3 and 0 < levels[0] < levels[1] < levels[2]
    # The gain is a dimmer calibration: further below 1 at each level.
    assert 1 > SHIFT_SEVERITIES["intensity"][0] > SHIFT_SEVERITIES["intensity"][1]
    assert SHIFT_SEVERITIES["intensity"][1] > SHIFT_SEVERITIES["intensity"][2] > 0
    assert SHIFT_SEVERITIES["inversion"] == (None, None, None)


@pytest.mark.parametrize("shape", [(3, 16, 20, 1), (2, 8, 10, 12, 2)])
@pytest.mark.parametrize("severity", [1, 2, 3])
def test_shift_images_is_the_transform_then_the_per_image_zscore(shape, severity):
    x = _images(shape)
    references = {
        "noise": add_noise(x, SHIFT_SEVERITIES["noise"][severity - 1], seed=3),
        "blur": blur(x, SHIFT_SEVERITIES["blur"][severity - 1]),
        "intensity": scale_intensity(x, SHIFT_SEVERITIES["intensity"][severity - 1]),
        "inversion": invert_contrast(x),
    }
    for kind, raw in references.items():
        out = shift_images(x, kind, severity, seed=3)
        assert out.shape == x.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, _zscored(raw), atol=1e-5)
        np.testing.assert_array_equal(
            shift_images(x, kind, severity, seed=3, standardize=False), raw
        )


def test_shift_images_raw_keeps_the_dtype_and_intensity_vanishes_when_standardized():
    x = _images(dtype="float64")
    raw = shift_images(x, "intensity", 2, standardize=False)
    assert raw.dtype == np.float64
    np.testing.assert_allclose(raw, x * SHIFT_SEVERITIES["intensity"][1])
    np.testing.assert_allclose(shift_images(x, "intensity", 2), _zscored(x), atol=1e-5)
    # The inversion has one level; the noise's seed matters, the blur has none.
    np.testing.assert_array_equal(shift_images(x, "inversion", 1), shift_images(x, "inversion", 3))
    assert not np.allclose(shift_images(x, "noise", 2, seed=0), shift_images(x, "noise", 2, seed=1))
    np.testing.assert_array_equal(
        shift_images(x, "blur", 2, seed=0), shift_images(x, "blur", 2, seed=1)
    )


def test_severities_grow():
    x, _ = synthetic_lesions(4, shape=(32, 32), seed=2)
    for kind in ("noise", "blur", "intensity"):
        distances = [
            np.abs(shift_images(x, kind, s, standardize=kind != "intensity") - x).mean()
            for s in (1, 2, 3)
        ]
        assert 0 < distances[0] < distances[1] < distances[2]


# --- argument errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: shift_images(x, "fog", 2), "Argument `kind` must be one of 'noise', "),
        (lambda x: shift_images(x, "noise", 0), r"`severity` must be an integer >= 1 and <= 3\. "),
        (lambda x: shift_images(x, "noise", 4), "Received: severity=4"),
        (lambda x: shift_images(x, "noise", True), "Received: severity=True"),
        (lambda x: shift_images(x, "noise", 2.0), "Received: severity=2.0"),
        (lambda x: shift_images(x, "noise", 2, seed=-1), "Argument `seed` must be an integer >= 0"),
        (
            lambda x: shift_images(x, "noise", 2, standardize="yes"),
            "Argument `standardize` must be True or False",
        ),
        (lambda x: add_noise(x, -0.1), r"Argument `std` must be a finite number >= 0\. "),
        (lambda x: add_noise(x, 0.1, seed=1.5), "Argument `seed` must be an integer"),
        (lambda x: blur(x, float("nan")), "Argument `sigma` must be a finite number >= 0"),
        (lambda x: scale_intensity(x, 0.0), r"Argument `factor` must be a finite number > 0\. "),
        (lambda x: scale_intensity(x, True), "Received: factor=True"),
        (lambda x: invert_contrast(x.astype("int32")), r"floating-point array\. .*x.dtype=int32"),
        (lambda x: invert_contrast(x[0, ..., 0]), r"Received: x.shape=\(16, 20\)"),
        (lambda x: blur(x[:0], 1.0), r"N >= 1 .*Received: x.shape=\(0, 16, 20, 2\)"),
    ],
)
def test_bad_arguments_raise_in_the_library_style(call, message):
    with pytest.raises(ValueError, match=message):
        call(_images())


@pytest.mark.parametrize("kind", SHIFT_KINDS)
def test_nan_and_inf_inputs_are_refused_not_spread(kind):
    x = _images()
    x[1, 3, 4, 0] = np.nan
    x[2, 0, 0, 1] = np.inf
    with pytest.raises(ValueError, match="finite values.*1 NaN and 1 infinite"):
        shift_images(x, kind, 2)


def test_arguments_are_checked_before_the_images():
    # A bad kind is reported even when x is bad too: nothing is computed first.
    with pytest.raises(ValueError, match="Argument `kind`"):
        shift_images(np.full((1, 4, 4, 1), np.nan), "fog", 2)
