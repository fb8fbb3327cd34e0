"""MirroredStrategy on two logical CPUs equals one replica on the same global batch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import bayesseg as bs


def _strategy():
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "tests/conftest.py configures two logical CPUs"
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


def _build(seed=0):
    keras.utils.set_random_seed(seed)
    model = bs.models.bayesian_unet(
        (8, 8, 1), 1, base_filters=2, depth=2, posterior_scale_init=0.02
    )
    bs.layers.set_sampling(model, "mean")  # same function on every replica count
    return model


def _data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 8, 8, 1)).astype("float32")
    y = (rng.random((8, 8, 8, 1)) < 0.1).astype("float32")
    y[0] = 0  # an all-negative example
    y[1, :2] = -1  # ignored pixels (ignore_index=-1) for the masked likelihood
    return x, y


@pytest.mark.parametrize("masked", [False, True])
def test_two_replica_step_equals_one_replica_step(masked):
    x, y = _data()
    if masked:
        likelihood = bs.losses.WeightedBinaryCrossentropy(pos_weight=9.0, ignore_index=-1)
    else:
        likelihood = bs.losses.WeightedBinaryCrossentropy(pos_weight=9.0)
        y = np.maximum(y, 0)

    def run(strategy):
        with strategy.scope():
            model = _build()
            model.compile(
                optimizer=keras.optimizers.SGD(0.5),
                loss=bs.ELBO(likelihood, bs.kl.PerBatch(num_batches=3)),
            )
        history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        return history.history, [v.numpy() for v in model.trainable_variables]

    logs_1, weights_1 = run(tf.distribute.get_strategy())
    logs_2, weights_2 = run(_strategy())
    for key in ("loss", "nll", "kl", "kl_weight"):
        np.testing.assert_allclose(logs_2[key], logs_1[key], rtol=1e-5)
    for a, b in zip(weights_1, weights_2, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)
    # PerBatch uses the global batch size (8), not the replica's (4).
    np.testing.assert_allclose(logs_2["kl_weight"][0], 1 / (3 * 8) / 64, rtol=1e-6)


def test_replicas_draw_different_noise_in_a_model():
    x, _ = _data()
    x[4:] = x[:4]  # replica 1 sees the same images as replica 0
    strategy = _strategy()
    with strategy.scope():
        model = bs.models.bayesian_unet((8, 8, 1), 1, base_filters=2, depth=2)
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(x).batch(8)
    )

    @tf.function
    def forward(images):
        return model(images)

    outputs = strategy.run(forward, args=(next(iter(dataset)),))
    per_replica = [t.numpy() for t in strategy.experimental_local_results(outputs)]
    assert not np.allclose(per_replica[0], per_replica[1])
