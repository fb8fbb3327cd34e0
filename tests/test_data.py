"""Tests of the synthetic data sets (bayesseg/data/synthetic.py)."""

import numpy as np
import pytest
from scipy import ndimage

from bayesseg.data import (
    synthetic_anomaly_series,
    synthetic_lesions,
    synthetic_multiclass_masks,
)


@pytest.mark.parametrize(
    ("shape", "n", "fraction"),
    [((64, 64), 40, 1 / 60), ((32, 40, 24), 6, 1 / 60), ((48, 48), 30, 0.05)],
)
def test_lesions_shapes_and_fraction(shape, n, fraction):
    images, masks = synthetic_lesions(n, shape=shape, lesion_fraction=fraction, seed=3)
    assert images.shape == (n, *shape, 1) and images.dtype == np.float32
    assert masks.shape == (n, *shape, 1) and masks.dtype == np.float32
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert abs(masks.mean() / fraction - 1) < 0.3
    # Normalised per image.
    np.testing.assert_allclose(images.mean(axis=tuple(range(1, images.ndim))), 0, atol=1e-5)
    np.testing.assert_allclose(images.std(axis=tuple(range(1, images.ndim))), 1, atol=1e-3)


def test_lesions_are_brighter_blobs_of_varied_contrast():
    images, masks = synthetic_lesions(20, seed=0)
    contrasts = []
    for image, mask in zip(images[..., 0], masks[..., 0] > 0, strict=True):
        labels, count = ndimage.label(mask)
        ring = ndimage.binary_dilation(mask, iterations=3) & ~mask
        for k in range(1, count + 1):
            contrasts.append(image[labels == k].mean() - image[ring].mean())
    contrasts = np.array(contrasts)
    assert len(contrasts) > 40
    assert np.median(contrasts) > 0.3
    assert contrasts.min() < 0.5 < contrasts.max()  # some faint, some bright


def test_lesions_stand_out_from_their_local_texture():
    # Per lesion: contrast to a 4-pixel ring around it over the ring's spread
    # (a local contrast-to-noise ratio). A lesion below ~1 cannot be told
    # from the texture; those must be rare, but the faint band (1 to 2) must
    # stay populated, or the data set would not need uncertainty.
    images, masks = synthetic_lesions(60, seed=1000)
    cnr, size = [], []
    for image, mask in zip(images[..., 0], masks[..., 0] > 0, strict=True):
        labels, count = ndimage.label(mask)
        near = ndimage.binary_dilation(mask, iterations=1)
        for k in range(1, count + 1):
            lesion = labels == k
            ring = ndimage.binary_dilation(lesion, iterations=4) & ~near
            cnr.append((image[lesion].mean() - image[ring].mean()) / image[ring].std())
            size.append(lesion.sum())
    cnr, size = np.array(cnr), np.array(size)
    share = {
        band: size[(cnr >= lo) & (cnr < hi)].sum() / size.sum()
        for band, (lo, hi) in {"hidden": (-np.inf, 1), "faint": (1, 2)}.items()
    }
    assert share["hidden"] < 0.08
    assert 0.15 < share["faint"] < 0.5


def test_lesions_deterministic_and_independent_of_n():
    a_img, a_mask = synthetic_lesions(3, shape=(32, 32), seed=7)
    b_img, b_mask = synthetic_lesions(5, shape=(32, 32), seed=7)
    np.testing.assert_array_equal(a_img, b_img[:3])
    np.testing.assert_array_equal(a_mask, b_mask[:3])
    c_img, _ = synthetic_lesions(3, shape=(32, 32), seed=8)
    assert not np.allclose(a_img, c_img)


def test_lesions_dataset_matches_arrays():
    images, masks = synthetic_lesions(5, shape=(16, 16), seed=2)
    ds = synthetic_lesions(5, shape=(16, 16), seed=2, as_dataset=True, batch_size=2)
    got = list(ds.as_numpy_iterator())
    assert [x.shape[0] for x, _ in got] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), images)
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), masks)


def test_multiclass_masks():
    images, masks = synthetic_multiclass_masks(
        12, shape=(64, 64), num_classes=32, background_fraction=0.99, seed=1
    )
    assert images.shape == (12, 64, 64, 1) and images.dtype == np.float32
    assert masks.shape == (12, 64, 64) and np.issubdtype(masks.dtype, np.integer)
    assert masks.min() == 0 and masks.max() <= 31
    assert abs((masks == 0).mean() - 0.99) < 0.003
    # The class is identifiable: its mean intensity grows with the label.
    labels = np.unique(masks[masks > 0])
    means = np.array([images[..., 0][masks == c].mean() for c in labels])
    assert np.all(np.diff(means) > 0) or np.corrcoef(labels, means)[0, 1] > 0.95


def test_multiclass_3d_and_dataset():
    images, masks = synthetic_multiclass_masks(
        2, shape=(16, 16, 16), num_classes=4, background_fraction=0.9, seed=0
    )
    assert images.shape == (2, 16, 16, 16, 1) and masks.shape == (2, 16, 16, 16)
    assert abs((masks == 0).mean() - 0.9) < 0.03
    ds = synthetic_multiclass_masks(
        2, shape=(16, 16, 16), num_classes=4, background_fraction=0.9, as_dataset=True
    )
    x, y = next(iter(ds))
    np.testing.assert_array_equal(y.numpy(), masks[0])


def test_anomaly_series_exact_counts():
    x, y = synthetic_anomaly_series(
        50,
        length=512,
        num_features=3,
        anomalous_series_fraction=0.2,
        anomalies_per_series=2,
        seed=4,
    )
    assert x.shape == (50, 512, 3) and x.dtype == np.float32
    assert y.shape == (50, 512) and y.dtype == np.float32
    per_series = y.sum(axis=1)
    assert sorted(set(per_series.tolist())) == [0.0, 2.0]
    assert int((per_series == 2).sum()) == 10
    assert set(np.unique(y)) == {0.0, 1.0}
    assert np.all(np.isfinite(x))


def test_anomaly_steps_stand_out():
    x, y = synthetic_anomaly_series(40, length=1024, seed=0)
    jumps = np.abs(np.diff(x[..., 0], axis=1, prepend=x[:, :1, 0]))
    assert np.median(jumps[y > 0]) > 5 * np.median(jumps[y == 0])


def test_anomaly_dataset_streams_same_series():
    x, y = synthetic_anomaly_series(7, length=64, seed=5)
    ds = synthetic_anomaly_series(7, length=64, seed=5, as_dataset=True, batch_size=3)
    assert int(ds.cardinality()) == 3
    got = list(ds.as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([a for a, _ in got]), x)
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), y)
    # A large n is not materialised: building the data set is immediate.
    big = synthetic_anomaly_series(10**7, length=4096, as_dataset=True)
    xb, yb = next(iter(big))
    assert xb.shape == (4096, 1) and yb.shape == (4096,)


@pytest.mark.parametrize(
    ("fn", "kwargs", "name"),
    [
        (synthetic_lesions, {"n": 0}, "n"),
        (synthetic_lesions, {"n": 2, "lesion_fraction": 1.5}, "lesion_fraction"),
        (synthetic_lesions, {"n": 2, "lesion_fraction": 0.0}, "lesion_fraction"),
        (synthetic_lesions, {"n": 2, "shape": (64,)}, "shape"),
        (synthetic_lesions, {"n": 2, "shape": (64, 64, 64, 64)}, "shape"),
        (synthetic_lesions, {"n": 2, "shape": (64, 2.5)}, "shape"),
        (synthetic_lesions, {"n": 2, "batch_size": 0}, "batch_size"),
        (synthetic_multiclass_masks, {"n": -1}, "n"),
        (synthetic_multiclass_masks, {"n": 2, "num_classes": 1}, "num_classes"),
        (
            synthetic_multiclass_masks,
            {"n": 2, "background_fraction": 1.0},
            "background_fraction",
        ),
        (synthetic_anomaly_series, {"n": 0}, "n"),
        (synthetic_anomaly_series, {"n": 2, "length": 0}, "length"),
        (
            synthetic_anomaly_series,
            {"n": 2, "anomalous_series_fraction": -0.1},
            "anomalous_series_fraction",
        ),
        (
            synthetic_anomaly_series,
            {"n": 2, "length": 8, "anomalies_per_series": 8},
            "anomalies_per_series",
        ),
    ],
)
def test_bad_arguments_name_the_argument(fn, kwargs, name):
    with pytest.raises(ValueError, match=f"^Argument `{name}` must .*Received: {name}="):
        fn(**kwargs)


# --------------------------------------------------------------------------
# Tiling (bayesseg._tiling): one owner of patch sizes and window origins
# --------------------------------------------------------------------------
def test_check_patch_size_int_tuple_and_errors():
    from bayesseg._tiling import check_patch_size

    assert check_patch_size(None, 2) is None
    assert check_patch_size(np.int64(8), 3) == (8, 8, 8)
    assert check_patch_size([4, 6], 2) == (4, 6)
    for bad in (0, True, (4,), (4, 0), (4.0, 4), "8"):
        with pytest.raises(ValueError, match="Argument `patch_size` must be an integer >= 1"):
            check_patch_size(bad, 2)
    with pytest.raises(ValueError, match="Argument `--patch-size`"):
        check_patch_size((1, 2, 3), 2, name="--patch-size")


@pytest.mark.parametrize("size,patch,stride", [(10, 4, 4), (10, 4, 3), (8, 4, 4), (3, 4, 2)])
def test_window_starts_cover_the_axis_and_end_flush(size, patch, stride):
    from bayesseg._tiling import window_starts

    starts = window_starts(size, patch, stride)
    covered = np.zeros(max(size, patch), bool)
    for s in starts:
        covered[s : s + patch] = True
    assert covered[:size].all()
    assert starts[0] == 0 and starts[-1] == max(size - patch, 0)
    assert all(b - a <= stride for a, b in zip(starts, starts[1:], strict=False))


def test_grid_patch_origins_are_windows_with_stride_patch():
    from bayesseg._tiling import window_origins
    from bayesseg.data import grid_patch_origins

    assert grid_patch_origins((10, 7, 3), (4, 4, 4)) == window_origins((10, 7, 3), (4, 4, 4))
    assert window_origins((10, 7), (4, 4)) == window_origins((10, 7), (4, 4), strides=(4, 4))
