"""Synthetic imbalanced data sets: the embedded default data of bayesseg.

Three generators reproduce the imbalance of the problems told in
``docs/imbalance.md``:

* :func:`synthetic_lesions`: MR-like 2D images or 3D volumes with small,
  sometimes faint, blob lesions (about 1 lesion voxel per 60 by default);
* :func:`synthetic_multiclass_masks`: 32-class segmentation with 99%
  background, each class identified by its intensity and texture;
* :func:`synthetic_anomaly_series`: long multichannel series with exactly two
  anomalous steps in 20% of the series;
* :func:`synthetic_event_series`: series of different lengths whose faults
  last 29 to 1500 steps, about 10% of the steps, as in public benchmarks.

Every generator is deterministic given ``seed``. Example ``i`` is drawn from
its own generator seeded by ``(seed, i)``, so it does not depend on ``n`` and
the streamed data set yields exactly the arrays the eager call returns.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from scipy import ndimage

from bayesseg._validation import (
    argument_error,
    check_choice,
    check_float,
    check_int,
    check_int_tuple,
    is_integer,
)

__all__ = [
    "EVENT_KINDS",
    "SENSOR_ANOMALY_KINDS",
    "synthetic_anomaly_series",
    "synthetic_event_series",
    "synthetic_sensor_series",
    "synthetic_lesions",
    "synthetic_multiclass_masks",
]


# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------
def _check_fraction(name: str, value: Any) -> float:
    return check_float(name, value, 0.0, 1.0, strict_minimum=True, strict_maximum=True)


def _check_shape(shape: Any, min_size: int = 8) -> tuple[int, ...]:
    """A 2D or 3D shape: ``check_int_tuple`` needs a fixed length, so this one stays local."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = ()
    if len(dims) not in (2, 3) or not all(is_integer(d) and d >= min_size for d in dims):
        raise argument_error(
            "shape",
            f"be a tuple of 2 or 3 integers >= {min_size} (a 2D image or a 3D volume)",
            shape,
        )
    return tuple(int(d) for d in dims)


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index)])


# --------------------------------------------------------------------------
# Shared image pieces
# --------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float):
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def _bias_field(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A smooth multiplicative intensity inhomogeneity, like an MR bias field."""
    grids = np.meshgrid(*[np.linspace(-1.0, 1.0, d) for d in shape], indexing="ij", sparse=True)
    field = np.zeros(shape)
    for grid in grids:
        a, b = rng.uniform(-0.25, 0.25, size=2)
        field = field + a * grid + b * grid**2
    return np.exp(field)


def _mr_background(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Tissue-like texture: smooth structures, fine texture, bias field, noise."""
    scale = min(shape)
    tissue = 1.0 + 0.35 * _smooth_noise(rng, shape, scale / 10)
    texture = 0.12 * _smooth_noise(rng, shape, 1.0)
    image = (tissue + texture) * _bias_field(rng, shape)
    return image + 0.05 * rng.standard_normal(shape)


def _ellipsoid(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    radius: float,
) -> tuple[tuple[slice, ...], np.ndarray]:
    """A random axis-aligned ellipsoid: its bounding box and boolean mask there."""
    radii = radius * rng.uniform(0.75, 1.3, size=len(shape))
    radii = np.maximum(radii, 0.6)
    center = [rng.uniform(r, d - 1 - r) for r, d in zip(radii, shape, strict=True)]
    box = tuple(
        slice(max(0, int(math.floor(c - r))), min(d, int(math.ceil(c + r)) + 1))
        for c, r, d in zip(center, radii, shape, strict=True)
    )
    coords = np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij", sparse=True)
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(coords, center, radii, strict=True))
    return box, dist <= 1.0


def _blob_radius_for(volume: float, ndim: int) -> float:
    """Radius of the ball (disc in 2D) with the given number of voxels."""
    if ndim == 2:
        return math.sqrt(volume / math.pi)
    return (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0)


def _place_blobs(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    target: float,
    max_radius: float,
    min_radius: float = 1.0,
) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """Yield ellipsoids until about ``target`` voxels are covered.

    The last blobs shrink to the remaining volume, so the covered count lands
    close to the target instead of overshooting by half a blob on average.
    """
    covered = np.zeros(shape, dtype=bool)
    for _ in range(1000):
        remaining = target - covered.sum()
        if remaining < 0.5 * _ball_volume(min_radius, len(shape)):
            break
        radius = rng.uniform(min_radius, max_radius)
        radius = min(radius, max(min_radius, _blob_radius_for(remaining, len(shape))))
        box, blob = _ellipsoid(rng, shape, radius)
        covered[box] |= blob
        yield box, blob


def _ball_volume(radius: float, ndim: int) -> float:
    if ndim == 2:
        return math.pi * radius**2
    return 4.0 / 3.0 * math.pi * radius**3


def _batched(dataset: tf.data.Dataset, batch_size: int | None) -> tf.data.Dataset:
    return dataset if batch_size is None else dataset.batch(batch_size)


# --------------------------------------------------------------------------
# Lesions
# --------------------------------------------------------------------------
def _lesion_example(
    seed: int, index: int, shape: tuple[int, ...], lesion_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(seed, index)
    image = _mr_background(rng, shape)
    mask = np.zeros(shape, dtype=bool)
    size = float(np.prod(shape))
    # Per-image lesion load varies (x0.5 to x1.5) around the requested mean.
    target = lesion_fraction * size * rng.uniform(0.5, 1.5)
    max_radius = max(2.0, 0.07 * min(shape))
    lesions = np.zeros(shape)
    for box, blob in _place_blobs(rng, shape, target, max_radius):
        # Contrast in units of the background's spread: half the lesions are
        # faint (0.8 to 1.5), half bright (1.5 to 3). Fainter lesions (the
        # 0.3 of earlier versions) sit below the local texture and cannot be
        # told from it: no model found them, capping the pooled Dice at ~0.6.
        contrast = rng.choice([rng.uniform(0.8, 1.5), rng.uniform(1.5, 3.0)])
        lesions[box] = np.maximum(lesions[box], contrast * blob)
        mask[box] |= blob
    # Soft edges, as partial-volume effects blur lesion borders.
    lesions = ndimage.gaussian_filter(lesions, 0.6)
    image = image + lesions * image.std()
    # Not ``standardize_image``: the embedded data set is frozen bit for bit
    # (the benchmarks and the documented demo figures are measured on it),
    # and this float64 formula with its 1e-12 guard is the one it was made with.
    normalised = (image - image.mean()) / (image.std() + 1e-12)
    return normalised.astype(np.float32)[..., None], mask.astype(np.float32)[..., None]


def synthetic_lesions(
    n: int,
    shape: Sequence[int] = (64, 64),
    lesion_fraction: float = 1 / 60,
    seed: int = 0,
    as_dataset: bool = False,
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray] | tf.data.Dataset:
    """MR-like images (2D) or volumes (3D) with small blob lesions.

    The background is a smooth tissue-like texture times a smooth bias field
    plus noise; lesions are ellipsoids of varied size, brighter than their
    surroundings by varied amounts (some faint). The number of lesion voxels
    of each image varies between 0.5 and 1.5 times ``lesion_fraction`` of its
    voxels, so over a set the lesion fraction is close to ``lesion_fraction``
    (the imbalance of typical lesion segmentation: 1 lesion voxel per ~60).

    Args:
        n: int > 0, number of examples.
        shape: tuple of 2 or 3 ints >= 8, the spatial shape. Default (64, 64).
        lesion_fraction: float in (0, 1), the mean fraction of lesion voxels.
            Default 1/60.
        seed: int, the seed; example ``i`` depends only on ``(seed, i)``.
            Default 0.
        as_dataset: bool, return a ``tf.data.Dataset`` of ``(image, mask)``
            streamed from a generator instead of arrays. Default False.
        batch_size: int or None, batch the data set (only with
            ``as_dataset=True``). Default None (unbatched).

    Returns:
        ``(images, masks)``: images float32 ``(n, *shape, 1)``, each
        normalised to zero mean and unit variance; masks float32
        ``(n, *shape, 1)`` with values in {0, 1} (ready for a binary
        cross-entropy on one logit channel). Or the data set of those pairs.

    Raises:
        ValueError: for ``n <= 0``, a fraction outside (0, 1), a bad ``shape``
            or ``batch_size``.

    Example:

    >>> from bayesseg.data import synthetic_lesions
    >>> images, masks = synthetic_lesions(4, shape=(32, 32), seed=1)
    >>> images.shape, masks.shape
    ((4, 32, 32, 1), (4, 32, 32, 1))
    """
    n = check_int("n", n)
    shape = _check_shape(shape)
    lesion_fraction = _check_fraction("lesion_fraction", lesion_fraction)
    batch_size = check_int("batch_size", batch_size, allow_none=True)
    if as_dataset:

        def generate():
            for i in range(n):
                yield _lesion_example(seed, i, shape, lesion_fraction)

        spec = tf.TensorSpec((*shape, 1), tf.float32)
        dataset = tf.data.Dataset.from_generator(generate, output_signature=(spec, spec))
        return _batched(dataset.apply(tf.data.experimental.assert_cardinality(n)), batch_size)
    pairs = [_lesion_example(seed, i, shape, lesion_fraction) for i in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# --------------------------------------------------------------------------
# Multi-class masks
# --------------------------------------------------------------------------
def _class_appearance(label: int, num_classes: int, shape, box) -> np.ndarray:
    """Intensity and stripe texture of class ``label`` inside ``box``.

    Classes differ by mean intensity (evenly spaced) and by the period and
    orientation of a sinusoidal texture, so each class is identifiable from a
    small neighbourhood.
    """
    level = 1.0 + 3.0 * label / max(num_classes - 1, 1)
    period = 2.0 + (label % 4)
    axis = (label // 4) % len(shape)
    coord = np.arange(box[axis].start, box[axis].stop, dtype=float)
    stripes = 0.4 * np.sin(2.0 * math.pi * coord / period)
    view = [1] * len(shape)
    view[axis] = -1
    return level + stripes.reshape(view)


def _multiclass_example(
    seed: int,
    index: int,
    shape: tuple[int, ...],
    num_classes: int,
    background_fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(seed, index)
    image = 0.25 * _smooth_noise(rng, shape, min(shape) / 8)
    mask = np.zeros(shape, dtype=np.int32)
    target = (1.0 - background_fraction) * float(np.prod(shape))
    max_radius = max(2.0, 0.06 * min(shape))
    for box, blob in _place_blobs(rng, shape, target, max_radius, min_radius=1.5):
        label = int(rng.integers(1, num_classes))
        appearance = np.broadcast_to(_class_appearance(label, num_classes, shape, box), blob.shape)
        image[box] = np.where(blob, appearance, image[box])
        mask[box] = np.where(blob, label, mask[box])
    image = image + 0.05 * rng.standard_normal(shape)
    return image.astype(np.float32)[..., None], mask


def synthetic_multiclass_masks(
    n: int,
    shape: Sequence[int] = (64, 64),
    num_classes: int = 32,
    background_fraction: float = 0.99,
    seed: int = 0,
    as_dataset: bool = False,
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray] | tf.data.Dataset:
    """Images with sparse integer masks: many classes, mostly background.

    Classes ``1 .. num_classes - 1`` are small blobs whose mean intensity and
    stripe texture (period and orientation) identify the class; class 0 is a
    smooth low-contrast background covering about ``background_fraction`` of
    the pixels (e.g. 32 classes, 99% background, as in ``docs/imbalance.md``).

    Args:
        n: int > 0, number of examples.
        shape: tuple of 2 or 3 ints >= 8, the spatial shape. Default (64, 64).
        num_classes: int >= 2, number of classes including background.
            Default 32.
        background_fraction: float in (0, 1), the fraction of background
            pixels. Default 0.99.
        seed: int, the seed; example ``i`` depends only on ``(seed, i)``.
            Default 0.
        as_dataset: bool, return a ``tf.data.Dataset`` of ``(image, mask)``
            streamed from a generator. Default False.
        batch_size: int or None, batch the data set. Default None.

    Returns:
        ``(images, masks)``: images float32 ``(n, *shape, 1)``, masks int32
        ``(n, *shape)`` of labels in ``[0, num_classes)`` (sparse labels for
        a softmax over ``num_classes`` logits). Or the data set of those pairs.

    Raises:
        ValueError: for ``n <= 0``, ``num_classes < 2``, a fraction outside
            (0, 1), a bad ``shape`` or ``batch_size``.

    Example:

    >>> from bayesseg.data import synthetic_multiclass_masks
    >>> images, masks = synthetic_multiclass_masks(2, shape=(32, 32), num_classes=5)
    >>> images.shape, masks.shape, int(masks.max()) < 5
    ((2, 32, 32, 1), (2, 32, 32), True)
    """
    n = check_int("n", n)
    shape = _check_shape(shape)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    background_fraction = _check_fraction("background_fraction", background_fraction)
    batch_size = check_int("batch_size", batch_size, allow_none=True)
    args = (shape, num_classes, background_fraction)
    if as_dataset:

        def generate():
            for i in range(n):
                yield _multiclass_example(seed, i, *args)

        dataset = tf.data.Dataset.from_generator(
            generate,
            output_signature=(
                tf.TensorSpec((*shape, 1), tf.float32),
                tf.TensorSpec(shape, tf.int32),
            ),
        )
        return _batched(dataset.apply(tf.data.experimental.assert_cardinality(n)), batch_size)
    pairs = [_multiclass_example(seed, i, *args) for i in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# --------------------------------------------------------------------------
# Anomaly series
# --------------------------------------------------------------------------
ANOMALY_KINDS = ("point", "contextual", "mixed")


def _series_background(rng: np.random.Generator, length: int, num_features: int) -> np.ndarray:
    """1 to 3 sinusoids (periods 40 to 600 steps), a slow drift and noise, per feature."""
    t = np.arange(length, dtype=float)[:, None]
    x = np.zeros((length, num_features))
    for _ in range(int(rng.integers(1, 4))):
        period = rng.uniform(40.0, 600.0, size=num_features)
        phase = rng.uniform(0.0, 2.0 * math.pi, size=num_features)
        amplitude = rng.uniform(0.3, 1.0, size=num_features)
        x += amplitude * np.sin(2.0 * math.pi * t / period + phase)
    drift = ndimage.gaussian_filter1d(
        rng.standard_normal((length, num_features)), sigma=length / 40, axis=0
    )
    x += drift / (drift.std() + 1e-12) * 0.3
    x += 0.1 * rng.standard_normal((length, num_features))
    return x


def _beat_train(rng: np.random.Generator, length: int) -> tuple[np.ndarray, float, float]:
    """A periodic pulse train (one narrow pulse per beat): beat times, period, jitter."""
    period = rng.uniform(16.0, 40.0)
    start = rng.uniform(0.0, period)
    beats = start + period * np.arange(math.ceil(length / period) + 1)
    beats += rng.normal(0.0, 0.02 * period, size=beats.shape)  # a little jitter
    return beats[beats < length - 0.5], period, float(rng.uniform(1.0, 1.5))


def _pulses(times: np.ndarray, length: int, amplitude: float) -> np.ndarray:
    t = np.arange(length, dtype=float)[:, None]
    return amplitude * np.exp(-0.5 * ((t - times[None, :]) / 1.2) ** 2).sum(axis=1)


def _point_anomaly(rng, x: np.ndarray, step: int) -> None:
    """A spike (one step) or a level jump (labelled at its onset) at ``step``."""
    num_features = x.shape[1]
    amount = rng.uniform(1.5, 4.0) * rng.choice([-1.0, 1.0])
    features = rng.random(num_features) < 0.7
    features[rng.integers(num_features)] = True
    if rng.random() < 0.5:
        x[step, features] += amount  # spike
    else:
        x[step:, features] += amount  # level jump, labelled at its onset


def _series_example(
    seed: int,
    index: int,
    length: int,
    num_features: int,
    anomalous: bool,
    anomalies_per_series: int,
    kind: str = "point",
) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(seed, index)
    x = _series_background(rng, length, num_features)
    y = np.zeros(length, dtype=np.float32)
    if kind == "point":
        if anomalous:
            # Step 0 is excluded: a level jump there would be invisible.
            steps = rng.choice(np.arange(1, length), anomalies_per_series, replace=False)
            for step in steps:
                _point_anomaly(rng, x, int(step))
                y[step] = 1.0
        return x.astype(np.float32), y
    # Contextual and mixed: a heartbeat-like pulse train on the first feature.
    beats, period, amplitude = _beat_train(rng, length)
    points: list[int] = []
    if anomalous:
        # At beats away from both ends (a sequence model needs context on each
        # side), at least three beats apart.
        inner = np.flatnonzero((beats > 2 * period) & (beats < length - 2 * period))
        spaced = inner[::3] if len(inner) >= 3 * anomalies_per_series else inner
        count = min(anomalies_per_series, len(spaced))
        keep = np.ones(len(beats), dtype=bool)
        for b in rng.choice(spaced, count, replace=False):
            if kind == "mixed" and rng.random() < 0.5:
                points.append(int(round(beats[b] + period / 2)))  # between two beats
            elif rng.random() < 0.5:
                keep[b] = False  # a missing beat, labelled where it was due
                y[int(round(beats[b]))] = 1.0
            else:
                beats[b] += rng.uniform(0.35, 0.5) * period  # a late beat, at its peak
                y[int(round(beats[b]))] = 1.0
        beats = beats[keep]
    x[:, 0] += _pulses(beats, length, amplitude)
    for step in points:
        _point_anomaly(rng, x, step)
        y[step] = 1.0
    return x.astype(np.float32), y


def synthetic_anomaly_series(
    n: int,
    length: int = 4096,
    num_features: int = 1,
    anomalous_series_fraction: float = 0.2,
    anomalies_per_series: int = 2,
    seed: int = 0,
    as_dataset: bool = False,
    batch_size: int | None = None,
    kind: str = "point",
) -> tuple[np.ndarray, np.ndarray] | tf.data.Dataset:
    """Long series with rare anomalous steps, for per-timestep tagging.

    Each series is a sum of 1 to 3 sinusoids (periods 40 to 600 steps) plus a
    slow drift and noise, per feature. Exactly ``round(anomalous_series_fraction
    * n)`` series are anomalous (which ones is drawn from ``seed``); each holds
    exactly ``anomalies_per_series`` anomalous steps. ``kind`` says which:

    * ``"point"`` (default): each a spike (one step) or a level jump (a
      persistent shift, labelled at its onset step only). A rolling z-score of
      the first difference finds nearly all of them: no sequence model needed.
    * ``"contextual"``: the first feature also carries a heartbeat-like pulse
      train (one narrow pulse every 16 to 40 steps, amplitude 1 to 1.5); each
      anomaly is a missing beat (labelled where it was due) or a late beat
      (shifted by 35-50% of the period, labelled at its peak). Every step
      looks normal on its own: only the rhythm around it tells.
    * ``"mixed"``: the pulse train, and each anomaly is a point anomaly
      between two beats or a contextual one, with even odds. ``bayesseg demo
      --task anomaly`` uses it.

    Contextual anomalies sit at beats at least two periods from either end
    and three beats apart, so those kinds need ``length >= 40 * (4 + 3 *
    anomalies_per_series)`` (400 for the default 2).
    The defaults give the imbalance of the anomaly problem in
    ``docs/imbalance.md``: 20% anomalous series, 2 anomalous steps each in 4096.

    Args:
        n: int > 0, number of series.
        length: int > 0, steps per series. Default 4096.
        num_features: int > 0, features per step. Default 1.
        anomalous_series_fraction: float in (0, 1), fraction of anomalous
            series. Default 0.2.
        anomalies_per_series: int in [1, length - 1], anomalous steps in each
            anomalous series. Default 2.
        seed: int, the seed. Default 0.
        as_dataset: bool, return a ``tf.data.Dataset`` of ``(x, y)`` streamed
            from a generator, one series at a time, so large ``n`` is never
            materialised. Default False.
        batch_size: int or None, batch the data set. Default None.
        kind: "point" (default), "contextual" or "mixed", see above.

    Returns:
        ``(x, y)``: x float32 ``(n, length, num_features)``; y float32
        ``(n, length)`` per-step labels in {0, 1} (no trailing channel axis,
        as Keras' per-step binary cross-entropy accepts it against
        ``(n, length, 1)`` outputs). Or the data set of those pairs.

    Raises:
        ValueError: for ``n``, ``length`` or ``num_features`` <= 0, a
            fraction outside (0, 1), ``anomalies_per_series`` outside
            ``[1, length - 1]``, a bad ``batch_size``, an unknown ``kind``
            or a contextual ``kind`` on too short a ``length``.

    Example:

    >>> from bayesseg.data import synthetic_anomaly_series
    >>> x, y = synthetic_anomaly_series(10, length=128, seed=0)
    >>> x.shape, y.shape, int(y.sum())
    ((10, 128, 1), (10, 128), 4)
    """
    n = check_int("n", n)
    length = check_int("length", length)
    num_features = check_int("num_features", num_features)
    fraction = _check_fraction("anomalous_series_fraction", anomalous_series_fraction)
    anomalies_per_series = check_int("anomalies_per_series", anomalies_per_series)
    if anomalies_per_series > length - 1:
        raise argument_error(
            "anomalies_per_series", f"be at most length - 1 = {length - 1}", anomalies_per_series
        )
    batch_size = check_int("batch_size", batch_size, allow_none=True)
    kind = check_choice("kind", kind, ANOMALY_KINDS)
    if kind != "point" and length < 40 * (4 + 3 * anomalies_per_series):
        raise argument_error(
            "length",
            f"be >= 40 * (4 + 3 * anomalies_per_series) = {40 * (4 + 3 * anomalies_per_series)} "
            f"for kind={kind!r}",
            length,
        )
    num_anomalous = int(round(fraction * n))
    anomalous = np.zeros(n, dtype=bool)
    # A stream apart from the per-series ones, which are seeded by (seed, i).
    chosen = np.random.default_rng(int(seed)).permutation(n)[:num_anomalous]
    anomalous[chosen] = True

    def example(i: int) -> tuple[np.ndarray, np.ndarray]:
        return _series_example(
            seed, i, length, num_features, bool(anomalous[i]), anomalies_per_series, kind
        )

    if as_dataset:

        def generate():
            for i in range(n):
                yield example(i)

        dataset = tf.data.Dataset.from_generator(
            generate,
            output_signature=(
                tf.TensorSpec((length, num_features), tf.float32),
                tf.TensorSpec((length,), tf.float32),
            ),
        )
        return _batched(dataset.apply(tf.data.experimental.assert_cardinality(n)), batch_size)
    pairs = [example(i) for i in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# --------------------------------------------------------------------------
# Long events in series of different lengths
# --------------------------------------------------------------------------
#: The faults :func:`synthetic_event_series` plants.
EVENT_KINDS = ("level", "noise", "oscillation", "flat")

# Steps kept free between two events and at both ends of a series.
_EVENT_GAP = 32


def _event_lengths(rng, target: int, low: int, high: int, room: int) -> list[int]:
    """Log-uniform event lengths in [low, high] adding up to about ``target`` steps."""
    lengths: list[int] = []
    while sum(lengths) < target:
        length = int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
        length = max(min(length, target - sum(lengths)), low)
        if sum(lengths) + length + (len(lengths) + 2) * _EVENT_GAP > room:
            break
        lengths.append(length)
    return lengths


def _plant_event(rng, x: np.ndarray, start: int, stop: int, kind: str) -> None:
    """One fault over ``x[start:stop]``, on a random subset of the features."""
    features = rng.random(x.shape[1]) < 0.7
    features[rng.integers(x.shape[1])] = True
    segment = x[start:stop, features]
    steps = stop - start
    if kind == "level":  # the mean moves by 0.8 to 1.5 and stays there while it lasts
        segment += rng.uniform(0.8, 1.5) * rng.choice([-1.0, 1.0])
    elif kind == "noise":  # a burst of noise 4 to 8 times the normal level
        segment += rng.uniform(0.4, 0.8) * rng.standard_normal(segment.shape)
    elif kind == "oscillation":  # a fast vibration (period 4 to 12 steps)
        t = np.arange(steps)[:, None]
        segment += rng.uniform(0.4, 0.8) * np.sin(2.0 * math.pi * t / rng.uniform(4.0, 12.0))
    else:  # "flat": a stuck sensor repeats its last reading
        segment[:] = x[start - 1, features]
    x[start:stop, features] = segment


def synthetic_event_series(
    n: int,
    length: int | tuple[int, int] = (4096, 16384),
    anomaly_fraction: float = 0.1,
    event_length: tuple[int, int] = (29, 1500),
    num_features: int = 1,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Series of different lengths with long anomalous events, about 10% of the steps.

    What public anomaly benchmarks of server metrics and industrial sensors
    look like, rather than our users' two-step spikes: each series is the
    background of :func:`synthetic_anomaly_series` (sinusoids, drift, noise)
    with faults lasting up to ``event_length`` steps (log-uniform) planted
    until ``anomaly_fraction`` of its steps are anomalous, at least 32 steps
    apart and from either end. Each fault is one of ``EVENT_KINDS``: a level
    shift (0.8 to 1.5), a burst of noise, a fast oscillation (period 4 to 12
    steps), or a flat line (a stuck sensor). Every step of a fault is
    labelled 1. No single step is anomalous on its own: flatness, noise and
    oscillation show only over a neighbourhood, so a detector must look
    around, and one flag per event is not the whole event (``event_f1``
    reports ``step_recall`` for that).

    Lists, not arrays: the series differ in length, as real recordings do,
    and every metric of :mod:`bayesseg.metrics.events` takes such lists.

    Args:
        n: int > 0, number of series.
        length: int, or ``(low, high)`` ints for lengths drawn uniformly in
            ``[low, high]``. Each must leave room for one event: at least
            ``event_length[0] + 96``. Default (4096, 16384): long enough
            for a 1500-step event to stay near 10% of its series.
        anomaly_fraction: float in (0, 0.5], the share of anomalous steps
            per series: event lengths are drawn until they reach it, the last
            one cut to fit (but never below ``event_length[0]``). Default 0.1.
        event_length: ``(low, high)`` ints >= 1, the range of event lengths.
            Default (29, 1500).
        num_features: int > 0, features per step. Default 1.
        seed: int. Series ``i`` depends on ``(seed, i)`` only. Default 0.

    Returns:
        ``(x, y)``: lists of ``n`` float32 arrays, ``x[i]`` of shape
        ``(length_i, num_features)`` and ``y[i]`` of shape ``(length_i,)``
        holding 0/1 step labels.

    Raises:
        ValueError: for ``n`` or ``num_features`` <= 0, lengths that leave no
            room for an event, a fraction outside (0, 0.5] or a bad
            ``event_length`` range.

    Example:

    >>> from bayesseg.data import synthetic_event_series
    >>> x, y = synthetic_event_series(3, length=(3000, 5000), seed=0)
    >>> [len(s) for s in x], [s.shape[-1] for s in x]
    ([4702, 4044, 4959], [1, 1, 1])
    >>> [round(float(t.mean()), 2) for t in y]
    [0.1, 0.1, 0.1]
    """
    n = check_int("n", n)
    num_features = check_int("num_features", num_features)
    fraction = check_float("anomaly_fraction", anomaly_fraction, 0.0, 0.5, strict_minimum=True)
    bounds = check_int_tuple("event_length", event_length, 2)
    if bounds[0] < 1 or bounds[1] < bounds[0]:
        raise argument_error("event_length", "be (low, high) with 1 <= low <= high", event_length)
    lengths = check_int_tuple("length", length, 2)
    if lengths[0] < bounds[0] + 3 * _EVENT_GAP or lengths[1] < lengths[0]:
        raise argument_error(
            "length",
            f"be an int or (low, high) with low <= high, each >= event_length[0] + "
            f"{3 * _EVENT_GAP} = {bounds[0] + 3 * _EVENT_GAP}",
            length,
        )
    xs, ys = [], []
    for i in range(n):
        rng = _rng(seed, i)
        steps = int(rng.integers(lengths[0], lengths[1] + 1))
        x = _series_background(rng, steps, num_features)
        y = np.zeros(steps, dtype=np.float32)
        events = _event_lengths(rng, max(round(fraction * steps), 1), *bounds, room=steps)
        free = steps - sum(events) - (len(events) + 1) * _EVENT_GAP
        # Split the free steps at random among the gaps around the events.
        cuts = np.sort(rng.integers(0, free + 1, size=len(events)))
        start = _EVENT_GAP
        for k, (size, cut) in enumerate(zip(events, cuts, strict=True)):
            start += int(cut - (cuts[k - 1] if k else 0))
            _plant_event(rng, x, start, start + size, EVENT_KINDS[rng.integers(4)])
            y[start : start + size] = 1.0
            start += size + _EVENT_GAP
        xs.append(x.astype(np.float32))
        ys.append(y)
    return xs, ys


# --------------------------------------------------------------------------
# Rare anomalies of mixed kinds in sensor series of different lengths
# --------------------------------------------------------------------------
#: The anomalies :func:`synthetic_sensor_series` plants, and the steps each labels.
SENSOR_ANOMALY_KINDS = ("point", "level", "missing_beat")
#: Steps a level shift labels: its onset and the steps after it.
LEVEL_LABEL_STEPS = 5
#: Steps a missing beat labels: centred on the step where the beat was due.
MISSING_BEAT_LABEL_STEPS = 5


def _sensor_anomaly(rng, x: np.ndarray, y: np.ndarray, step: int, kind: str, keep) -> None:
    """Plant one anomaly of ``kind`` at ``step`` (a beat's index for missing_beat)."""
    feature = int(rng.integers(x.shape[1]))
    sign = rng.choice([-1.0, 1.0])
    if kind == "point":
        x[step, feature] += sign * rng.uniform(0.8, 2.0)
        y[step] = 1.0
    elif kind == "level":
        x[step:, feature] += sign * rng.uniform(0.5, 1.0)
        y[step : step + LEVEL_LABEL_STEPS] = 1.0
    else:
        keep[step] = False  # ``step`` is the index of the beat left out


def synthetic_sensor_series(
    n: int,
    length: int | tuple[int, int] = (3000, 5000),
    num_features: int = 2,
    events_per_series: tuple[int, int] = (0, 6),
    kinds: Sequence[str] = SENSOR_ANOMALY_KINDS,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Sensor series of different lengths with rare, short anomalies of mixed kinds.

    A machine's heartbeat under slow trends: each series is the background of
    :func:`synthetic_anomaly_series` on every feature (1 to 3 sinusoids of
    amplitude 0.3 to 1 and period 40 to 600 steps, a slow drift of standard
    deviation 0.3, white noise of standard deviation 0.1), and on the first
    feature a pulse train (one Gaussian pulse of width 1.2 steps and height
    1 to 1.5 every 16 to 40 steps, with 2% jitter). Each series holds a
    number of anomalies drawn uniformly from ``events_per_series``, each of a
    kind drawn uniformly from ``kinds``, at beats at least two periods from
    either end and three beats apart:

    ========================  ===================================  ========================
    kind                      what changes                         steps labelled 1
    ========================  ===================================  ========================
    ``"point"``               one step of one feature moves by     that step
                              0.8 to 2.0 (either sign), half a
                              period after a beat
    ``"level"``               one feature shifts by 0.5 to 1.0     the onset and the next
                              (either sign) from half a period     4 steps
                              after a beat to the series' end      (``LEVEL_LABEL_STEPS``)
    ``"missing_beat"``        a beat of the pulse train is left    the 5 steps centred on
                              out                                  where it was due
                                                                   (``MISSING_BEAT_LABEL_STEPS``)
    ========================  ===================================  ========================

    At the defaults about 0.1% of the steps are anomalous. A rolling
    z-score of the first difference (``bs.baselines.rolling_zscore``) sees the
    spikes and the first step of a level shift, but neither the steps after
    an onset nor a missing beat, which only the rhythm around it reveals: its
    average precision stays near 0.2 (``tests/test_data.py`` holds it under
    0.35), while a sequence model can learn all three.

    Args:
        n: int > 0, number of series.
        length: int, or ``(low, high)`` for lengths drawn uniformly in
            ``[low, high]``; at least 400. Default (3000, 5000).
        num_features: int > 0, features per step (the pulse train is on the
            first). Default 2.
        events_per_series: ``(low, high)`` ints >= 0, the range of the number
            of anomalies per series (fewer where a short series has no room).
            Default (0, 6).
        kinds: a non-empty sequence of names from ``SENSOR_ANOMALY_KINDS``.
            Default all three.
        seed: int. Series ``i`` depends on ``(seed, i)`` only. Default 0.

    Returns:
        ``(x, y)``: lists of ``n`` float32 arrays, ``x[i]`` of shape
        ``(length_i, num_features)`` and ``y[i]`` of shape ``(length_i,)``
        holding 0/1 step labels.

    Raises:
        ValueError: for ``n`` or ``num_features`` <= 0, a length under 400 or
            a bad range, a bad ``events_per_series`` or an unknown kind.

    Example:

    >>> from bayesseg.data import synthetic_sensor_series
    >>> x, y = synthetic_sensor_series(3, seed=0)
    >>> [s.shape for s in x]
    [(4702, 2), (4044, 2), (4959, 2)]
    >>> all(set(t.tolist()) <= {0.0, 1.0} for t in y)
    True
    """
    n = check_int("n", n)
    num_features = check_int("num_features", num_features)
    lengths = check_int_tuple("length", length, 2)
    if lengths[0] < 400 or lengths[1] < lengths[0]:
        raise argument_error(
            "length", "be an int >= 400 or (low, high) with 400 <= low <= high", length
        )
    counts = check_int_tuple("events_per_series", events_per_series, 2, minimum=0)
    if counts[0] < 0 or counts[1] < counts[0]:
        raise argument_error(
            "events_per_series", "be (low, high) with 0 <= low <= high", events_per_series
        )
    if isinstance(kinds, str) or len(kinds) == 0:
        raise argument_error("kinds", f"be a non-empty sequence of {SENSOR_ANOMALY_KINDS}", kinds)
    kinds = tuple(check_choice("kinds", k, SENSOR_ANOMALY_KINDS) for k in kinds)
    xs, ys = [], []
    for i in range(n):
        rng = _rng(seed, i)
        steps = int(rng.integers(lengths[0], lengths[1] + 1))
        x = _series_background(rng, steps, num_features)
        y = np.zeros(steps, dtype=np.float32)
        beats, period, amplitude = _beat_train(rng, steps)
        keep = np.ones(len(beats), dtype=bool)
        inner = np.flatnonzero((beats > 2 * period) & (beats < steps - 2 * period))[::3]
        count = min(int(rng.integers(counts[0], counts[1] + 1)), len(inner))
        chosen = np.sort(rng.choice(inner, count, replace=False)) if count else []
        missing = []
        for b in chosen:
            kind = kinds[int(rng.integers(len(kinds)))]
            if kind == "missing_beat":
                _sensor_anomaly(rng, x, y, int(b), kind, keep)
                missing.append(int(round(beats[b])))
            else:
                _sensor_anomaly(rng, x, y, int(round(beats[b] + period / 2)), kind, keep)
        x[:, 0] += _pulses(beats[keep], steps, amplitude)
        half = MISSING_BEAT_LABEL_STEPS // 2
        for due in missing:
            y[max(due - half, 0) : due + half + 1] = 1.0
        xs.append(x.astype(np.float32))
        ys.append(y)
    return xs, ys
