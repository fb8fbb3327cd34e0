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


@pytest.mark.slow
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


def _compiled(strategy, sampling="mean"):
    with strategy.scope():
        model = _build()
        bs.layers.set_sampling(model, sampling)
        model.compile(
            optimizer=keras.optimizers.Adam(0.05),
            loss=bs.ELBO(bs.losses.WeightedBinaryCrossentropy(pos_weight=9.0), bs.kl.PerExample(8)),
        )
    return model


@pytest.mark.slow
def test_fit_distributed_on_two_replicas_equals_fit_on_one():
    x, y = _data()
    y = np.maximum(y, 0)
    reference = _compiled(tf.distribute.get_strategy())
    ref_history = reference.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    strategy = _strategy()
    model = _compiled(strategy)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    history = bs.training.fit_distributed(model, dataset, epochs=2, strategy=strategy)
    for key in ("loss", "nll", "kl", "kl_weight"):
        np.testing.assert_allclose(history.history[key], ref_history.history[key], rtol=1e-5)
    for a, b in zip(reference.trainable_variables, model.trainable_variables, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["fit", "fit_distributed"])
def test_backup_and_restore_resumes_to_the_same_weights(loop, tmp_path):
    """Sampled (noisy) training interrupted after epoch 2 and resumed = uninterrupted."""
    x, y = _data()
    y = np.maximum(y, 0)
    strategy = tf.distribute.get_strategy()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)

    def run(model, callbacks):
        if loop == "fit":
            return model.fit(
                x, y, batch_size=4, epochs=4, shuffle=False, verbose=0, callbacks=callbacks
            )
        return bs.training.fit_distributed(model, dataset, epochs=4, callbacks=callbacks)

    uninterrupted = _compiled(strategy, sampling="sample")
    run(uninterrupted, [])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    first = _compiled(strategy, sampling="sample")
    with pytest.raises(RuntimeError, match="interrupted"):
        run(first, [backup, _Interrupt()])
    resumed = _compiled(strategy, sampling="sample")  # a fresh process would rebuild it
    history = run(resumed, [keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert len(history.history["loss"]) == 2  # epochs 3 and 4 only
    for a, b in zip(uninterrupted.weights, resumed.weights, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6, err_msg=a.path)


@pytest.mark.slow
def test_two_worker_processes_agree_with_each_other_and_a_single_process(tmp_path):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "examples" / "multi_worker.py"
    spec = importlib.util.spec_from_file_location("multi_worker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--out", str(tmp_path), "--epochs", "1", "--num-images", "16"])
    assert result["max_diff_between_workers"] < 1e-6
    assert result["max_diff_to_single_process"] < 1e-5
    assert result["max_weight_update"] > 1e-3


@pytest.mark.slow
def test_fit_distributed_trains_a_plain_keras_model_as_fit_does():
    """A deterministic U-Net (``bayesseg train --bayesian-blocks none``): Keras' own
    train step scales its loss for the replicas, so 2 replicas equal one device."""
    x, y = _data()
    y = np.maximum(y, 0)

    def compiled(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = bs.models.unet((8, 8, 1), 1, base_filters=2, depth=2)
            model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
        return model

    reference = compiled(tf.distribute.get_strategy())
    reference.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    # resolve_strategy, not a bare MirroredStrategy: a new one over the devices of
    # the earlier tests' would reuse their collective keys (resolve_strategy's notes).
    strategy = bs.training.resolve_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    model = compiled(strategy)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    bs.training.fit_distributed(model, dataset, epochs=2, strategy=strategy)
    for a, b in zip(reference.trainable_variables, model.trainable_variables, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5)
    uncompiled = bs.models.unet((8, 8, 1), 1, base_filters=2, depth=2)
    with pytest.raises(ValueError, match="must be a compiled Keras model"):
        bs.training.fit_distributed(uncompiled, dataset, epochs=1)


@pytest.mark.slow
def test_strategies_resolved_one_after_another_keep_their_all_reduces_apart():
    """Two MirroredStrategy over the same devices, models of other shapes: a bare
    second MirroredStrategy fails ("Shape mismatch in the collective instance")."""
    x, y = _data()
    y = np.maximum(y, 0)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    # Resolved, resolved, then a bare MirroredStrategy made after them.
    for filters, make in ((2, "resolve"), (3, "resolve"), (4, "bare")):
        strategy = bs.training.resolve_strategy("mirrored") if make == "resolve" else _strategy()
        with strategy.scope():
            model = bs.models.unet((8, 8, 1), 1, base_filters=filters, depth=2)
            model.compile(optimizer="adam", loss="binary_crossentropy")
        history = bs.training.fit_distributed(model, dataset, epochs=1, strategy=strategy)
        assert np.isfinite(history.history["loss"][0])
