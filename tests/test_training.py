"""BayesianModel: logged terms, Keras features, hooks, errors, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import bayesseg as bs


def _model(seed=0, scale=0.05):
    inputs = keras.Input((6, 6, 1))
    h = bs.layers.Conv2DFlipout(
        4, 3, padding="same", activation="relu", seed=seed, posterior_scale_init=scale
    )(inputs)
    outputs = bs.layers.Conv2DFlipout(1, 1, seed=seed + 1, posterior_scale_init=scale)(h)
    return bs.BayesianModel(inputs, outputs)


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6, 6, 1)).astype("float32")
    y = (x > 1.2).astype("float32")
    return x, y


def _elbo(num_examples=16, **kwargs):
    return bs.ELBO(
        bs.losses.WeightedBinaryCrossentropy(pos_weight=8.0),
        bs.kl.PerExample(num_examples),
        **kwargs,
    )


def test_fit_logs_terms_and_loss_identity():
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=_elbo(temperature=0.5))
    x, y = _data()
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    logs = history.history
    assert set(logs) == {"loss", "nll", "kl", "kl_weight"}
    for epoch in range(3):
        expected = logs["nll"][epoch] + logs["kl_weight"][epoch] * 0.5 * logs["kl"][epoch]
        np.testing.assert_allclose(logs["loss"][epoch], expected, rtol=1e-5)
    np.testing.assert_allclose(logs["kl_weight"][0], 1 / 16 / 36, rtol=1e-6)
    assert logs["loss"][-1] < logs["loss"][0]
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(result) == {"loss", "nll", "kl", "kl_weight"}


def test_train_step_applies_the_elbo_gradient():
    """One SGD step equals a hand-made step on the ELBO terms."""
    model, (x, y) = _model(), _data(8)
    elbo = _elbo(8)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=elbo)
    before = [v.numpy() for v in model.trainable_variables]
    layers = bs.layers.bayesian_layers(model)
    with tf.GradientTape() as tape:
        terms = elbo.compute(model, y, model(x), step=0)
    grads = tape.gradient(terms.loss, model.trainable_variables)
    for layer in layers:
        layer.noise_step.assign(0)  # replay the same noise in fit
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for b, g, v in zip(before, grads, model.trainable_variables, strict=True):
        np.testing.assert_allclose(v.numpy(), b - 0.1 * g.numpy(), atol=1e-6)


def test_sample_weight_dataset_and_clipping():
    model, (x, y) = _model(), _data()
    model.compile(optimizer=keras.optimizers.Adam(1e-2, global_clipnorm=0.5), loss=_elbo())
    weights = np.linspace(0.5, 2.0, len(x)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(8)
    history = model.fit(dataset, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # Zero sample weights leave only the KL term.
    model.compile(optimizer="sgd", loss=_elbo())
    bs.layers.set_sampling(model, "mean")
    result = model.evaluate(x, y, sample_weight=np.zeros(len(x)), verbose=0, return_dict=True)
    assert result["nll"] == 0.0
    np.testing.assert_allclose(result["loss"], result["kl_weight"] * result["kl"], rtol=1e-5)


def test_schedule_counts_optimizer_updates_under_gradient_accumulation():
    model, (x, y) = _model(), _data(16)
    elbo = bs.ELBO(
        bs.losses.WeightedBinaryCrossentropy(),
        bs.kl.Warmup(bs.kl.Constant(1.0), steps=4),
    )
    optimizer = keras.optimizers.SGD(1e-3, gradient_accumulation_steps=2)
    model.compile(optimizer=optimizer, loss=elbo)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(int(self.model.optimizer.iterations.numpy()))

    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[Record()])
    assert seen == [0, 1, 1, 2, 2, 3, 3, 4]  # updates, not micro-batches


class _SkipAll(bs.training.TrainStepHook):
    def __init__(self):
        self.calls = 0

    def before_update(self, context):
        self.calls += 1  # counted at trace time
        assert context.per_example_nll.shape[0] is None or context.per_example_nll.shape[0] > 0
        return tf.constant(False)


def test_hook_can_skip_the_update():
    model, (x, y) = _model(), _data(8)
    model.compile(optimizer="adam", loss=_elbo(8))
    model.fit(x, y, epochs=1, verbose=0)  # builds the optimizer
    before = [v.numpy() for v in model.trainable_variables]
    iterations = int(model.optimizer.iterations.numpy())
    hook = _SkipAll()
    model.add_train_step_hook(hook)
    model.fit(x, y, epochs=2, verbose=0)
    assert hook.calls >= 1
    for b, v in zip(before, model.trainable_variables, strict=True):
        np.testing.assert_array_equal(b, v.numpy())
    assert int(model.optimizer.iterations.numpy()) == iterations
    model.remove_train_step_hook(hook)
    model.fit(x, y, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == iterations + 1


def test_non_finite_nll_names_the_term():
    model, (x, y) = _model(), _data(8)
    model.compile(optimizer="sgd", loss=_elbo(8))
    x = x.copy()
    x[0, 0, 0, 0] = np.nan
    model.build(x.shape)
    before = [v.numpy() for v in model.trainable_variables]
    with pytest.raises(tf.errors.InvalidArgumentError, match="NLL term is not finite"):
        model.fit(x, y, epochs=1, verbose=0)
    for b, v in zip(before, model.trainable_variables, strict=True):
        np.testing.assert_array_equal(b, v.numpy())  # the failing step wrote nothing


def test_non_finite_kl_names_the_term():
    model, (x, y) = _model(), _data(8)
    model.compile(optimizer="sgd", loss=_elbo(8))
    layer = bs.layers.bayesian_layers(model)[1]
    layer.kernel_rho.assign(np.full(layer.kernel_rho.shape, -200.0, "float32"))  # scale = 0
    with pytest.raises(tf.errors.InvalidArgumentError, match="KL term is not finite"):
        model.fit(x, y, epochs=1, verbose=0)


def _assert_step_refused(transform, optimizer, match):
    """A head whose output passes through ``transform``: fit must stop, weights untouched."""
    inputs = keras.Input((3,))
    z = bs.layers.DenseFlipout(1, name="head")(inputs)
    model = bs.BayesianModel(inputs, keras.layers.Lambda(transform)(z))
    model.compile(
        optimizer=optimizer,
        loss=bs.ELBO(bs.losses.WeightedBinaryCrossentropy(pos_weight=1.0), bs.kl.PerExample(8)),
    )
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    before = [v.numpy() for v in model.trainable_variables]
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for b, v in zip(before, model.trainable_variables, strict=True):
        np.testing.assert_array_equal(b, v.numpy())  # nothing was written


def test_non_finite_gradient_stops_before_the_update():
    # sqrt(0 * |z|) is 0 forward, but its gradient is inf * 0 = NaN: the loss
    # stays finite, so only a gradient check can name the step that broke.
    _assert_step_refused(
        lambda v: v + keras.ops.sqrt(keras.ops.abs(v) * 0.0), "adam", "gradient is not finite"
    )


def test_gradient_whose_norm_overflows_stops_before_the_update():
    # Every gradient element is finite (1e20 * x), but their squared sum is
    # not: Keras' clipping by the global norm would turn all of them into NaN.
    _assert_step_refused(
        lambda v: v * 1e20 - keras.ops.stop_gradient(v * 1e20 - v),
        keras.optimizers.Adam(global_clipnorm=1.0),
        "global norm that overflows",
    )


def test_compile_requires_an_elbo():
    with pytest.raises(ValueError, match="bayesseg.ELBO"):
        _model().compile(optimizer="adam", loss="binary_crossentropy")


def test_save_load_keeps_elbo_configuration(tmp_path):
    model, (x, y) = _model(), _data(8)
    elbo = _elbo(8, temperature=0.7, tempering="posterior")
    model.compile(optimizer="adam", loss=elbo)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded, bs.BayesianModel)
    assert loaded.elbo.get_config() == elbo.get_config()
    bs.layers.set_sampling(model, "mean")
    bs.layers.set_sampling(loaded, "mean")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)
    a = model.evaluate(x, y, verbose=0, return_dict=True)
    b = loaded.evaluate(x, y, verbose=0, return_dict=True)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    loaded.fit(x, y, epochs=1, verbose=0)


def test_scaled_learning_rate_rules():
    assert bs.training.scaled_learning_rate(1e-3, 256, 32) == pytest.approx(8e-3)
    assert bs.training.scaled_learning_rate(1e-3, 256, 32, rule="sqrt") == pytest.approx(
        1e-3 * np.sqrt(8)
    )
    for kwargs, argument in [
        ({"base_lr": 0.0, "global_batch_size": 8, "base_batch_size": 8}, "base_lr"),
        ({"base_lr": 1e-3, "global_batch_size": 0, "base_batch_size": 8}, "global_batch_size"),
        ({"base_lr": 1e-3, "global_batch_size": 8, "base_batch_size": 8, "rule": "x"}, "rule"),
    ]:
        with pytest.raises(ValueError, match=f"`{argument}`"):
            bs.training.scaled_learning_rate(**kwargs)


def test_warmup_schedule_reaches_target_and_hands_over():
    after = keras.optimizers.schedules.ExponentialDecay(0.4, decay_steps=10, decay_rate=0.5)
    schedule = bs.training.WarmupSchedule(0.4, warmup_steps=4, start_lr=0.0, after=after)
    values = [float(schedule(k)) for k in (0, 2, 4, 14)]
    np.testing.assert_allclose(values, [0.0, 0.2, 0.4, 0.2], rtol=1e-6)
    restored = bs.training.WarmupSchedule.from_config(
        keras.saving.serialize_keras_object(schedule)["config"]
    )
    assert float(restored(14)) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="`warmup_steps`"):
        bs.training.WarmupSchedule(0.1, warmup_steps=0)


def test_warmup_cosine_decay_is_the_closed_form_and_survives_a_save():
    peak, total = 1e-2, 400
    schedule = bs.training.warmup_cosine_decay(peak, total, warmup_fraction=0.05)
    warmup = 20
    steps = np.arange(0, total + 50)
    expected = np.where(
        steps < warmup,
        peak * steps / warmup,
        peak * 0.5 * (1 + np.cos(np.pi * np.minimum(steps - warmup, total - warmup) / 380)),
    )
    np.testing.assert_allclose([float(schedule(s)) for s in steps], expected, atol=1e-9)
    # In an optimizer saved with a model, so `bayesseg train` resumes mid-schedule.
    config = keras.saving.serialize_keras_object(keras.optimizers.Adam(schedule))
    restored = keras.saving.deserialize_keras_object(config)
    assert float(restored.learning_rate) == pytest.approx(0.0)  # step 0
    assert float(restored._learning_rate(210)) == pytest.approx(expected[210], rel=1e-6)
    for kwargs, name in (
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"total_steps": 1}, "total_steps"),
        ({"warmup_fraction": 1.0}, "warmup_fraction"),
    ):
        with pytest.raises(ValueError, match=f"`{name}`"):
            bs.training.warmup_cosine_decay(**({"learning_rate": 1e-2, "total_steps": 10} | kwargs))


@pytest.mark.slow
def test_fit_rejects_inputs_of_the_wrong_shape_before_tracing():
    model = _model()
    model.compile(optimizer="adam", loss=_elbo())
    x, y = _data()
    wrong = np.ones((16, 6, 6, 3), "float32")
    prefix = "Argument `{}` must have the model's input shape (None, 6, 6, 1) (None: any size)"
    cases = [
        (dict(x=wrong, y=y), "x", ". Received: x.shape=(16, 6, 6, 3)"),
        (dict(x=tf.constant(wrong), y=y), "x", ". Received: x.shape=(16, 6, 6, 3)"),
        (
            dict(x=tf.data.Dataset.from_tensor_slices((wrong, y)).batch(4)),
            "x",
            ". Received: x.element_spec[0].shape=(None, 6, 6, 3)",
        ),
        (
            dict(x=tf.data.Dataset.from_tensor_slices((x, y))),
            "x",
            " (batch the dataset: dataset.batch(n)). Received: x.element_spec[0].shape=(6, 6, 1)",
        ),
        (
            dict(x=x, y=y, validation_data=(wrong, y)),
            "validation_data[0]",
            ". Received: validation_data[0].shape=(16, 6, 6, 3)",
        ),
    ]
    for kwargs, argument, received in cases:
        with pytest.raises(ValueError) as info:
            model.fit(epochs=1, verbose=0, **kwargs)
        assert str(info.value) == prefix.format(argument) + received
    assert model.train_function is None and model.optimizer.iterations.numpy() == 0

    # What Keras accepts still trains (fresh models: a traced step relaxed to
    # several input signatures is another matter): a dataset of the right
    # shape, a generator (unchecked), a trailing channel axis of 1 left out.
    def generator():
        for start in (0, 8):
            yield x[start : start + 8], y[start : start + 8]

    for data in (
        dict(x=tf.data.Dataset.from_tensor_slices((x, y)).batch(8)),
        dict(x=generator()),
        dict(x=x[..., 0], y=y, batch_size=8),
    ):
        model = _model()
        model.compile(optimizer="adam", loss=_elbo())
        model.fit(epochs=1, verbose=0, **data)
        assert model.optimizer.iterations.numpy() == 2


def _fit_once(model, x, y):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=_elbo())
    return model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history


@pytest.mark.slow
def test_refit_after_a_fit_that_failed_in_its_first_trace():
    """The second fit works and equals a fresh model's fit from the same weights."""
    x, y = _data()
    model, fresh = _model(seed=3), _model(seed=3)
    fresh.set_weights(model.get_weights())
    start = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=_elbo())
    # Labels of the wrong shape fail inside the first traced step, before the
    # optimizer's variables exist (Keras creates them in that trace).
    with pytest.raises(ValueError, match="Argument `y_true` must be binary labels"):
        model.fit(x, np.ones((16, 6, 6, 3), "float32"), batch_size=16, verbose=0)
    for before, after in zip(start, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history
    reference = _fit_once(fresh, x, y)
    np.testing.assert_allclose(history["loss"], reference["loss"], rtol=1e-6)
    for ours, theirs in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_refit_after_a_non_finite_loss_and_after_an_interrupt():
    x, y = _data()
    model = _model()
    model.compile(optimizer="adam", loss=_elbo())
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="NLL term is not finite"):
        model.fit(bad, y, batch_size=16, verbose=0)

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=16, verbose=0, callbacks=[Interrupt()])
    assert model.optimizer.iterations.numpy() == 0
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0).history
    assert model.optimizer.iterations.numpy() == 2
    assert np.all(np.isfinite(history["loss"]))
