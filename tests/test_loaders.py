"""Folder loaders: round trips per format, patch extraction, pairing errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bayesseg.data import (
    folder_dataset,
    grid_patch_origins,
    list_images,
    load_folder,
    read_image,
    read_mask,
    scan_folder,
    write_image,
)

nib = pytest.importorskip("nibabel")


def _pair(rng, shape, num_classes=3):
    image = rng.normal(size=shape).astype(np.float32)
    mask = rng.integers(0, num_classes, size=shape).astype(np.uint8)
    return image, mask


def _folders(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    return images, masks


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".tif", ".nii.gz", ".nii"])
def test_float_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    shape = (6, 10, 12) if suffix.startswith(".nii") else (10, 12)
    image = rng.normal(size=shape).astype(np.float32)
    path = write_image(tmp_path / f"x{suffix}", image)
    got = read_image(path)
    assert got.shape == (*shape, 1)
    np.testing.assert_array_equal(got[..., 0], image)


def test_png_round_trip_8_and_16_bit(tmp_path):
    labels = np.arange(64, dtype=np.uint8).reshape(8, 8) % 5
    write_image(tmp_path / "m.png", labels)
    assert Image.open(tmp_path / "m.png").mode == "L"
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), labels)
    wide = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    write_image(tmp_path / "w.png", wide)
    np.testing.assert_array_equal(read_image(tmp_path / "w.png")[..., 0], wide)
    probs = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    write_image(tmp_path / "p.png", probs)
    np.testing.assert_allclose(read_image(tmp_path / "p.png")[..., 0] / 65535, probs, atol=1e-5)
    rgb = np.random.default_rng(1).integers(0, 255, (8, 8, 3)).astype(np.uint8)
    write_image(tmp_path / "rgb.png", rgb)
    assert read_image(tmp_path / "rgb.png").shape == (8, 8, 3)
    with pytest.raises(ValueError, match="value_range"):
        write_image(tmp_path / "bad.png", probs * 3)


def test_tiff_stack_and_16_bit(tmp_path):
    volume = np.random.default_rng(2).normal(size=(3, 8, 8)).astype(np.float32)
    write_image(tmp_path / "v.tif", volume)
    got = read_image(tmp_path / "v.tif")
    assert got.shape == (3, 8, 8, 1)
    np.testing.assert_array_equal(got[..., 0], volume)
    counts = (np.arange(64).reshape(8, 8) * 900).astype(np.uint16)
    write_image(tmp_path / "c.tiff", counts)
    np.testing.assert_array_equal(read_image(tmp_path / "c.tiff")[..., 0], counts)


def test_nifti_keeps_affine_and_header(tmp_path):
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    affine[:3, 3] = [10, -4, 3]
    source = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), affine)
    source.header.set_zooms((0.5, 0.7, 2.0))
    nib.save(source, tmp_path / "in.nii.gz")
    probs = np.random.default_rng(3).random((4, 5, 6)).astype(np.float32)
    write_image(tmp_path / "out.nii.gz", probs, like=tmp_path / "in.nii.gz")
    out = nib.load(tmp_path / "out.nii.gz")
    np.testing.assert_allclose(out.affine, affine)
    assert out.header.get_zooms() == pytest.approx((0.5, 0.7, 2.0))
    assert out.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asarray(out.dataobj), probs)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".png", ".tif", ".nii.gz"])
def test_load_folder_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(4)
    images_dir, masks_dir = _folders(tmp_path)
    shape = (4, 8, 8) if suffix == ".nii.gz" else (8, 8)
    expected = {}
    for name in ("b", "a", "c"):
        image, mask = _pair(rng, shape)
        if suffix == ".png":
            image = (np.abs(image) * 50).astype(np.uint8)
        write_image(images_dir / f"{name}{suffix}", image)
        write_image(masks_dir / f"{name}{suffix}", mask)
        expected[name] = (image, mask)
    images, masks, names = load_folder(images_dir, masks_dir, num_classes=3)
    assert names == ["a", "b", "c"]
    assert images.shape == (3, *shape, 1) and images.dtype == np.float32
    assert masks.shape == (3, *shape) and masks.dtype == np.int32
    for i, name in enumerate(names):
        np.testing.assert_array_equal(images[i, ..., 0], expected[name][0])
        np.testing.assert_array_equal(masks[i], expected[name][1])


def test_mixed_formats_pair_by_stem(tmp_path):
    images_dir, masks_dir = _folders(tmp_path)
    np.save(images_dir / "case1.npy", np.ones((8, 8, 2), np.float32))
    write_image(masks_dir / "case1.png", np.eye(8, dtype=np.uint8))
    images, masks, _ = load_folder(images_dir, masks_dir)
    assert images.shape == (1, 8, 8, 2) and masks.shape == (1, 8, 8)


def test_image_without_mask_names_the_file(tmp_path):
    images_dir, masks_dir = _folders(tmp_path)
    np.save(images_dir / "a.npy", np.zeros((8, 8)))
    np.save(images_dir / "lonely.npy", np.zeros((8, 8)))
    np.save(masks_dir / "a.npy", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="'lonely.npy' has no mask"):
        scan_folder(images_dir, masks_dir)


def test_mask_of_other_shape_names_the_file(tmp_path):
    images_dir, masks_dir = _folders(tmp_path)
    np.save(images_dir / "a.npy", np.zeros((8, 8)))
    np.save(masks_dir / "a.npy", np.zeros((8, 9), np.uint8))
    with pytest.raises(ValueError, match="'a.npy' has shape"):
        load_folder(images_dir, masks_dir)


def test_labels_outside_classes_name_the_file(tmp_path):
    images_dir, masks_dir = _folders(tmp_path)
    np.save(images_dir / "a.npy", np.zeros((8, 8)))
    mask = np.zeros((8, 8), np.uint8)
    mask[0, 0] = 7
    write_image(masks_dir / "a.png", mask)
    with pytest.raises(ValueError, match=r"'a.png' holds labels \[7\] outside"):
        scan_folder(images_dir, masks_dir, num_classes=3)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="images_dir"):
        scan_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="must be a folder holding image files"):
        list_images(tmp_path / "empty")
    np.save(tmp_path / "x.npy", np.zeros((4, 4)))
    np.savez(tmp_path / "x.npz", np.zeros((4, 4)))
    with pytest.raises(ValueError, match="share one stem"):
        list_images(tmp_path)
    np.save(tmp_path / "f.npy", np.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="'f.npy' holds non-integer"):
        read_mask(tmp_path / "f.npy")


def test_scan_counts_and_statistics(tmp_path):
    images_dir, masks_dir = _folders(tmp_path)
    rng = np.random.default_rng(5)
    all_masks = []
    for name in ("a", "b"):
        image, mask = _pair(rng, (5, 6, 7), num_classes=4)
        nib.save(nib.Nifti1Image(image, np.eye(4)), images_dir / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(mask, np.eye(4)), masks_dir / f"{name}.nii.gz")
        all_masks.append(mask)
        if name == "a":
            first = image
    scan = scan_folder(images_dir, masks_dir, num_classes=4)
    assert scan.spatial_rank == 3 and scan.channels == 1
    np.testing.assert_array_equal(
        scan.class_counts, np.bincount(np.concatenate(all_masks).ravel(), minlength=4)
    )
    assert scan.means[0] == pytest.approx(first.mean(), rel=1e-5)
    assert scan.stds[0] == pytest.approx(first.std(), rel=1e-5)


def test_grid_origins_cover_every_voxel():
    shape, patch = (10, 7, 5), (4, 4, 5)
    covered = np.zeros(shape, int)
    origins = grid_patch_origins(shape, patch)
    for o in origins:
        covered[tuple(slice(a, a + p) for a, p in zip(o, patch, strict=True))] += 1
    assert covered.min() >= 1
    assert len(origins) == 3 * 2 * 1


def test_grid_patches_reassemble_the_volume(tmp_path):
    images_dir, masks_dir = _folders(tmp_path)
    volume = np.arange(10 * 9 * 8, dtype=np.float32).reshape(10, 9, 8)
    mask = (volume % 3).astype(np.uint8)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), images_dir / "v.nii.gz")
    nib.save(nib.Nifti1Image(mask, np.eye(4)), masks_dir / "v.nii.gz")
    patch = (4, 4, 4)
    ds = folder_dataset(images_dir, masks_dir, patch_size=patch, patches="grid", normalize=False)
    origins = grid_patch_origins(volume.shape, patch)
    assert int(ds.cardinality()) == len(origins)
    rebuilt = np.full(volume.shape, -1.0)
    rebuilt_mask = np.full(volume.shape, -1)
    for origin, (x, y) in zip(origins, ds.as_numpy_iterator(), strict=True):
        assert x.shape == (*patch, 1) and y.shape == patch
        index = tuple(slice(o, o + p) for o, p in zip(origin, patch, strict=True))
        rebuilt[index] = x[..., 0]
        rebuilt_mask[index] = y
    np.testing.assert_array_equal(rebuilt, volume)
    np.testing.assert_array_equal(rebuilt_mask, mask)


def test_random_patches_shapes_padding_and_seed(tmp_path):
    images_dir, masks_dir = _folders(tmp_path)
    rng = np.random.default_rng(6)
    for name, shape in (("small", (6, 20)), ("large", (30, 40))):
        image, mask = _pair(rng, shape)
        np.save(images_dir / f"{name}.npy", image)
        np.save(masks_dir / f"{name}.npy", mask)
    kwargs = dict(patch_size=(8, 16), patches_per_image=3, shuffle=True, seed=3, batch_size=2)
    ds = folder_dataset(images_dir, masks_dir, **kwargs)
    batches = list(ds.as_numpy_iterator())
    assert [b[0].shape for b in batches] == [(2, 8, 16, 1), (2, 8, 16, 1), (2, 8, 16, 1)]
    assert all(b[1].shape[1:] == (8, 16) for b in batches)
    again = list(folder_dataset(images_dir, masks_dir, **kwargs).as_numpy_iterator())
    for a, b in zip(batches, again, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
    second_epoch = list(ds.as_numpy_iterator())
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(batches, second_epoch, strict=True))


def test_whole_images_need_one_shape(tmp_path):
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    np.save(images_dir / "a.npy", np.zeros((8, 8)))
    np.save(images_dir / "b.npy", np.zeros((8, 16)))
    with pytest.raises(ValueError, match="'b'.*patch_size"):
        folder_dataset(images_dir)
    ds = folder_dataset(images_dir, patch_size=8, patches="grid", normalize=False)
    assert [x.shape for x in ds.as_numpy_iterator()] == [(8, 8, 1)] * 3


def test_bad_arguments(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((8, 8)))
    with pytest.raises(ValueError, match="patch_size"):
        folder_dataset(tmp_path, patch_size=(4, 4, 4))
    with pytest.raises(ValueError, match="patches"):
        folder_dataset(tmp_path, patches="tiles")
    with pytest.raises(ValueError, match="num_classes"):
        scan_folder(tmp_path, num_classes=1)
    with pytest.raises(ValueError, match="path"):
        write_image(tmp_path / "x.jpg", np.zeros((4, 4)))


# --------------------------------------------------------------------------
# The per-image z-score: one owner for training and prediction
# --------------------------------------------------------------------------
def test_standardize_image_matches_numpy_reference():
    from bayesseg.data import standardize_image

    rng = np.random.default_rng(0)
    image = (100.0 + 7.0 * rng.normal(size=(12, 9, 2))).astype(np.float32)
    reference = (image.astype(np.float64) - image.mean(dtype=np.float64)) / image.std(
        dtype=np.float64
    )
    z = standardize_image(image)
    assert z.dtype == np.float32 and z.shape == image.shape
    np.testing.assert_allclose(z, reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(standardize_image(np.full((3, 3), 4.0)), np.zeros((3, 3)))
    np.testing.assert_array_equal(standardize_image(image, 100.0, 0.0), image - 100.0)
    with pytest.raises(ValueError, match="Argument `std` must"):
        standardize_image(image, mean=1.0)
    with pytest.raises(ValueError, match="Argument `std` must be a finite number >= 0"):
        standardize_image(image, 1.0, -1.0)


def test_folder_z_score_equals_standardize_image_of_the_file(tmp_path):
    from bayesseg.data import standardize_image

    images, masks = _folders(tmp_path)
    rng = np.random.default_rng(1)
    image, mask = _pair(rng, (10, 10))
    np.save(images / "a.npy", 3.0 + 2.0 * image)
    np.save(masks / "a.npy", mask)
    expected = standardize_image(read_image(images / "a.npy"))
    loaded, _, _ = load_folder(images, masks, normalize=True)
    np.testing.assert_array_equal(loaded[0], expected)
    streamed = next(iter(folder_dataset(images, masks)))[0].numpy()
    np.testing.assert_array_equal(streamed, expected)


def test_pooled_statistics_equal_numpy_over_every_voxel_of_every_image(tmp_path):
    # Images of different shapes, scales and offsets (the count of values
    # weighs each image): the pooled mean and std are those of all values
    # concatenated, and the scan's readers z-score each image by them.
    images, masks = _folders(tmp_path)
    rng = np.random.default_rng(2)
    arrays = []
    for name, shape, scale, offset in (("a", (8, 6), 1.0, 0.0), ("b", (4, 5), 3.0, 100.0),
                                       ("c", (12, 9), 0.5, -20.0)):  # fmt: skip
        image, mask = _pair(rng, shape)
        arrays.append(offset + scale * image)
        np.save(images / f"{name}.npy", arrays[-1])
        np.save(masks / f"{name}.npy", mask)
    scan = scan_folder(images, masks)
    values = np.concatenate([a.ravel() for a in arrays]).astype(np.float64)
    mean, std = scan.pooled_statistics()
    assert mean == pytest.approx(values.mean(), rel=1e-12)
    assert std == pytest.approx(values.std(), rel=1e-12)
    shared = scan.with_statistics(mean, std)
    assert shared.means == [mean] * 3 and shared.stds == [std] * 3
    for i, array in enumerate(arrays):  # one image per dataset: the shapes differ
        one = shared.subset([i], None)
        got = next(iter(folder_dataset(images, masks, batch_size=1, scan=one)))[0].numpy()[0]
        expected = (array - values.mean()) / values.std()
        np.testing.assert_allclose(got[..., 0], expected, rtol=1e-5, atol=1e-6)
    # One held-out image keeps the statistics it was given (those of the others).
    assert shared.subset([1], None).means == [mean]
    with pytest.raises(ValueError, match="std"):
        scan.with_statistics(0.0, -1.0)
    with pytest.raises(ValueError, match="at least one image"):
        scan.subset([], None).pooled_statistics()
    with pytest.raises(ValueError, match=r"statistics=True.*0 statistics for 3 images"):
        scan_folder(images, masks, statistics=False).pooled_statistics()


# --------------------------------------------------------------------------
# NaN and infinite values: nan_policy
# --------------------------------------------------------------------------
def _nan_volume(rng, shape=(6, 7, 8), nan=5, inf=2):
    """A float32 volume with ``nan`` NaN and ``inf`` infinite voxels at random places."""
    image = rng.normal(3.0, 2.0, size=shape).astype(np.float32)
    flat = image.reshape(-1)
    where = rng.choice(flat.size, nan + inf, replace=False)
    flat[where[:nan]] = np.nan
    flat[where[nan:]] = np.inf * np.where(np.arange(inf) % 2, -1, 1)
    return image


def _nan_folder(tmp_path, rng, suffix=".nii.gz"):
    images_dir, masks_dir = _folders(tmp_path)
    clean = rng.normal(size=(6, 7, 8)).astype(np.float32)
    bad = _nan_volume(rng)
    mask = rng.integers(0, 2, size=(6, 7, 8)).astype(np.uint8)
    for name, image in (("case01", clean), ("case07", bad)):
        if suffix == ".nii.gz":
            nib.save(nib.Nifti1Image(image, np.eye(4)), images_dir / f"{name}{suffix}")
        else:
            np.save(images_dir / f"{name}.npy", image)
        np.save(masks_dir / f"{name}.npy", mask)
    return images_dir, masks_dir, clean, bad


NAN_ERROR = (
    "Image 'case07.nii.gz' holds 5 NaN values and 2 infinite values; pass "
    "nan_policy='zero' (--nan-policy zero to bayesseg train or predict) to replace them "
    "by 0 before the z-score, or fix the file."
)


def test_nan_in_an_image_is_one_line_naming_the_file(tmp_path):
    images_dir, masks_dir, _, _ = _nan_folder(tmp_path, np.random.default_rng(0))
    for call in (
        lambda: scan_folder(images_dir, masks_dir),
        lambda: scan_folder(images_dir, masks_dir, statistics=False),
        lambda: load_folder(images_dir, masks_dir),
        lambda: load_folder(images_dir, masks_dir, normalize=True),
        lambda: folder_dataset(images_dir, masks_dir, patch_size=4),
        lambda: folder_dataset(images_dir, masks_dir, normalize=False),
        lambda: read_image(images_dir / "case07.nii.gz"),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == NAN_ERROR


def test_nan_error_counts_every_slab(tmp_path, monkeypatch):
    # The scan reads volumes slab by slab; the count is over the whole file.
    import bayesseg.data.io as io

    monkeypatch.setattr(io, "_SLAB_VOXELS", 7 * 8)  # one slice per slab
    images_dir, masks_dir, _, bad = _nan_folder(tmp_path, np.random.default_rng(1), ".npy")
    with pytest.raises(ValueError, match=r"^Image 'case07.npy' holds 5 NaN values and 2 inf"):
        scan_folder(images_dir, masks_dir)


def test_nan_policy_zero_fills_before_the_z_score(tmp_path):
    images_dir, masks_dir, clean, bad = _nan_folder(tmp_path, np.random.default_rng(2))
    filled = np.where(np.isfinite(bad), bad, 0.0).astype(np.float64)
    reference = (filled - filled.mean()) / filled.std()  # NumPy, independent of the scan
    scan = scan_folder(images_dir, masks_dir, nan_policy="zero")
    assert scan.nan_policy == "zero" and scan.nonfinite == [(0, 0), (5, 2)]
    assert scan.means[1] == pytest.approx(filled.mean(), rel=1e-6)
    assert scan.stds[1] == pytest.approx(filled.std(), rel=1e-6)
    images, _, names = load_folder(images_dir, masks_dir, normalize=True, nan_policy="zero")
    assert names == ["case01", "case07"]
    np.testing.assert_allclose(images[1, ..., 0], reference, rtol=1e-5, atol=1e-5)
    raw, _, _ = load_folder(images_dir, masks_dir, nan_policy="zero")
    np.testing.assert_array_equal(raw[1, ..., 0], filled.astype(np.float32))
    np.testing.assert_array_equal(raw[0, ..., 0], clean)  # a clean file is untouched
    ds = folder_dataset(images_dir, masks_dir, patch_size=5, patches="grid", nan_policy="zero")
    assert all(np.isfinite(image.numpy()).all() for image, _ in ds)
    ds = folder_dataset(images_dir, masks_dir, nan_policy="zero")
    streamed = [image.numpy() for image, _ in ds]
    assert all(np.isfinite(image).all() for image in streamed)
    np.testing.assert_allclose(streamed[1][..., 0], reference, rtol=1e-5, atol=1e-5)
    zeroed = read_image(images_dir / "case07.nii.gz", nan_policy="zero")
    np.testing.assert_array_equal(zeroed[..., 0], filled.astype(np.float32))


def test_folder_dataset_takes_the_policy_of_its_scan(tmp_path):
    images_dir, masks_dir, _, _ = _nan_folder(tmp_path, np.random.default_rng(3))
    scan = scan_folder(images_dir, masks_dir, nan_policy="zero")
    with pytest.raises(ValueError) as info:
        folder_dataset(images_dir, masks_dir, patch_size=4, scan=scan)
    assert str(info.value) == (
        "Argument `nan_policy` must be the policy of the `scan` it comes with, 'zero' (the "
        "scan's statistics were computed under it). Received: nan_policy='error'"
    )
    ds = folder_dataset(images_dir, masks_dir, patch_size=4, scan=scan, nan_policy="zero")
    assert all(np.isfinite(image.numpy()).all() for image, _ in ds)


def test_a_file_changed_after_the_scan_is_not_streamed_as_nan(tmp_path):
    images_dir, masks_dir = _folders(tmp_path)
    np.save(images_dir / "a.npy", np.ones((8, 8), np.float32))
    np.save(masks_dir / "a.npy", np.zeros((8, 8), np.uint8))
    ds = folder_dataset(images_dir, masks_dir, normalize=False)
    broken = np.ones((8, 8), np.float32)
    broken[2, 3] = np.nan
    np.save(images_dir / "a.npy", broken)
    with pytest.raises(Exception, match="Image 'a.npy' holds 1 NaN value; pass nan_policy"):
        list(ds)


def test_nan_in_a_mask_is_always_an_error(tmp_path):
    images_dir, masks_dir = _folders(tmp_path)
    np.save(images_dir / "m.npy", np.ones((6, 6), np.float32))
    mask = np.zeros((6, 6), np.float32)
    mask[0, :3] = np.nan
    mask[1, 0] = np.inf
    np.save(masks_dir / "m.npy", mask)
    expected = (
        "Mask 'm.npy' holds 3 NaN values and 1 infinite value; masks must hold integer "
        "class labels (nan_policy applies to images only)."
    )
    for call in (
        lambda: scan_folder(images_dir, masks_dir),
        lambda: scan_folder(images_dir, masks_dir, nan_policy="zero"),
        lambda: load_folder(images_dir, masks_dir, nan_policy="zero"),
        lambda: read_mask(masks_dir / "m.npy"),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == expected


def test_integer_images_and_bad_policy(tmp_path):
    images_dir, _ = _folders(tmp_path)
    np.save(images_dir / "i.npy", np.arange(16, dtype=np.int16).reshape(4, 4))
    scan = scan_folder(images_dir, statistics=False)
    assert scan.nonfinite == [(0, 0)]
    with pytest.raises(ValueError) as info:
        scan_folder(images_dir, nan_policy="omit")
    assert str(info.value).startswith("Argument `nan_policy` must be one of")
    assert str(info.value).endswith("Received: nan_policy='omit'")


# --------------------------------------------------------------------------
# Damaged files: one ValueError naming the file, whatever the reader
# --------------------------------------------------------------------------
def _damaged_files(folder):
    """A truncated file of each format (and one that is not what its suffix says)."""
    import gzip
    import io

    nib = pytest.importorskip("nibabel")
    image = np.random.default_rng(0).normal(size=(24, 24)).astype(np.float32)
    files = {}
    np.save(folder / "whole.npy", image)
    files["cut.npy"] = (folder / "whole.npy").read_bytes()[:90]  # inside the header
    files["short.npy"] = (folder / "whole.npy").read_bytes()[:-100]  # data cut short
    np.savez(folder / "whole.npz", image=image)
    files["cut.npz"] = (folder / "whole.npz").read_bytes()[:-200]
    buffer = io.BytesIO()
    Image.fromarray((image * 10 + 100).clip(0, 255).astype(np.uint8)).save(buffer, "PNG")
    files["cut.png"] = buffer.getvalue()[:-60]
    files["text.png"] = b"this is not a PNG"
    nib.save(nib.Nifti1Image(np.stack([image] * 4, axis=-1), np.eye(4)), folder / "v.nii.gz")
    files["cut.nii.gz"] = (folder / "v.nii.gz").read_bytes()[:-400]
    files["plain.nii.gz"] = gzip.compress(b"not a NIfTI header at all")
    for name in ("whole.npy", "whole.npz", "v.nii.gz"):
        (folder / name).unlink()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return sorted(files)


def test_every_reader_names_a_damaged_file(tmp_path):
    for name in _damaged_files(tmp_path):
        with pytest.raises(ValueError, match=f"Cannot read '.*{name}': the file is damaged"):
            read_image(tmp_path / name).sum()  # lazy readers fail on the voxels
        with pytest.raises(ValueError, match=f"Cannot read '.*{name}'"):
            read_mask(tmp_path / name)


def test_cli_says_one_line_and_exits_2_for_each_damaged_file(tmp_path, capsys):
    from bayesseg.cli import main

    folder = tmp_path / "images"
    folder.mkdir()
    for name in _damaged_files(folder):
        single = tmp_path / f"only_{name}"
        single.mkdir()
        (folder / name).rename(single / name)
        args = ["train", "--images", str(single), "--masks", str(single)]
        assert main([*args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"Cannot read '{single / name}'" in err, err


@pytest.mark.parametrize(
    ("content", "what"),
    [(b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "damaged"), (b"garbage,1,2\n", "header")],
)
def test_train_names_a_damaged_training_log_before_training(tmp_path, capsys, content, what):
    from bayesseg.cli import main

    images, masks = _folders(tmp_path)
    rng = np.random.default_rng(0)
    for i in range(3):
        image, mask = _pair(rng, (16, 16), num_classes=2)
        np.save(images / f"c{i}.npy", image)
        np.save(masks / f"c{i}.npy", mask)
    out = tmp_path / "out"
    out.mkdir()
    (out / "training.csv").write_bytes(content)
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    assert main([*args, "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"Cannot read '{out / 'training.csv'}'" in err, err
    assert what in err
    assert not (out / "model.keras").exists()
