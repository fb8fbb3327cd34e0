"""KL scaling schedules against closed forms."""

import math
from fractions import Fraction

import keras
import numpy as np
import pytest
import tensorflow as tf

import bayesseg as bs


def test_per_example_and_per_batch_weights():
    assert float(bs.kl.PerExample(400)(0, 8)) == pytest.approx(1 / 400)
    assert float(bs.kl.PerBatch(50)(7, 8)) == pytest.approx(1 / 400)
    # A short last batch gets a larger per-example weight under PerBatch.
    assert float(bs.kl.PerBatch(50)(7, 4)) == pytest.approx(1 / 200)


@pytest.mark.parametrize("num_batches", [1, 3, 20, 10_000])
def test_blundell_pi_sums_to_one_per_epoch_and_stays_finite(num_batches):
    schedule = bs.kl.Blundell(num_batches)
    steps = tf.range(2 * num_batches)  # two epochs
    pi = schedule.pi(steps).numpy().astype("float64")
    assert np.all(np.isfinite(pi)) and np.all(pi >= 0)
    np.testing.assert_allclose(pi[:num_batches].sum(), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(pi[:num_batches], pi[num_batches:])  # restarts
    # Exact reference with Python integers (2.0**M overflows a float at M = 10,000).
    m = min(num_batches, 30)
    closed = [float(Fraction(2 ** (num_batches - i), 2**num_batches - 1)) for i in range(1, m + 1)]
    np.testing.assert_allclose(pi[:m], closed, rtol=1e-6)
    # On the per-example scale the weight is pi_i / B.
    np.testing.assert_allclose(float(schedule(0, 4)), pi[0] / 4, rtol=1e-6)


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_warmup_reaches_target_at_given_step(shape):
    schedule = bs.kl.Warmup(bs.kl.PerExample(100), steps=10, shape=shape, start=0.1)
    values = [float(schedule(k, 4)) for k in range(15)]
    assert values[0] == pytest.approx(0.1 * 0.01)
    assert values[9] < 0.01
    assert values[10] == pytest.approx(0.01) and values[14] == pytest.approx(0.01)
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    if shape == "cosine":
        assert values[5] == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))


def test_cyclical_ramps_repeat():
    schedule = bs.kl.Cyclical(bs.kl.Constant(2.0), cycle_steps=4, ramp_fraction=0.5)
    assert [float(schedule(k, 1)) for k in range(8)] == [0, 1, 2, 2, 0, 1, 2, 2]


def test_schedules_serialise_round_trip():
    schedule = bs.kl.Warmup(bs.kl.Blundell(12), steps=5, shape="cosine")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert restored.get_config() == schedule.get_config()
    assert float(restored(3, 2)) == pytest.approx(float(schedule(3, 2)))


@pytest.mark.parametrize(
    "make,argument",
    [
        (lambda: bs.kl.PerExample(0), "num_examples"),
        (lambda: bs.kl.PerExample(-5), "num_examples"),
        (lambda: bs.kl.PerBatch(0), "num_batches"),
        (lambda: bs.kl.Blundell(-1), "num_batches"),
        (lambda: bs.kl.Constant(-1.0), "weight"),
        (lambda: bs.kl.Constant(math.nan), "weight"),
        (lambda: bs.kl.Warmup(bs.kl.Constant(1.0), steps=0), "steps"),
        (lambda: bs.kl.Warmup(bs.kl.Constant(1.0), steps=3, shape="exp"), "shape"),
        (
            lambda: bs.kl.Cyclical(bs.kl.Constant(1.0), 4, ramp_fraction=0.0),
            "ramp_fraction",
        ),
        (lambda: bs.kl.Warmup(0.1, steps=3), "kl_scaling"),
    ],
)
def test_bad_arguments(make, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make()
