"""predict_mc runs the layers before the first Bayesian one once per batch.

The reference is the whole model run in every draw (the sharing switched
off): with the same noise counters the two must predict the same numbers.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import bayesseg as bs
from bayesseg.uncertainty import _prefix
from bayesseg.uncertainty._prefix import split_deterministic


@pytest.fixture(scope="module")
def default_unet():
    keras.utils.set_random_seed(4)
    model = bs.models.bayesian_unet((None, None, 1), 1, base_filters=4, depth=3)
    for layer in bs.layers.bayesian_layers(model):  # visible noise in a few draws
        for variables in layer.posterior_variables().values():
            variables.rho.assign(np.full(variables.rho.shape, layer.rho_for_scale(0.5)))
    return model


def _predict(model, x, share, monkeypatch, **options):
    monkeypatch.setattr(_prefix, "SHARE", share)
    for layer in bs.layers.bayesian_layers(model):
        layer.noise_step.assign(0)
    for layer in model._flatten_layers():
        if getattr(layer, "stateful", False):
            layer.reset_state()  # both runs start from the same state
    batch = model.inputs[0].shape[0] or 2  # a stateful RNN fixes its batch
    return bs.uncertainty.predict_mc(
        model, x, num_samples=5, batch_size=batch, verbose=0, **options
    )


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"patch_size": 16, "overlap": 0.5},
        {"sampling": "sample"},
        {"correct_for_class_weights": (1.0, 4.0)},
    ],
    ids=["whole", "windows", "per-example", "class-weights"],
)
def test_shared_prefix_predicts_what_the_whole_model_predicts(default_unet, monkeypatch, options):
    x = np.random.default_rng(0).normal(size=(3, 24, 24, 1)).astype("float32")
    shared = _predict(default_unet, x, True, monkeypatch, **options)
    whole = _predict(default_unet, x, False, monkeypatch, **options)
    assert shared.epistemic.mean() > 1e-4  # the draws differ
    for name in ("mean", "total", "aleatoric", "epistemic"):
        np.testing.assert_allclose(getattr(shared, name), getattr(whole, name), atol=1e-6)


def test_fit_calibration_shares_the_prefix_and_fits_the_same_map(default_unet, monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 16, 16, 1)).astype("float32")
    y = (rng.random((4, 16, 16, 1)) < 0.3).astype("float32")
    fits = []
    for share in (True, False):
        monkeypatch.setattr(_prefix, "SHARE", share)
        for layer in bs.layers.bayesian_layers(default_unet):
            layer.noise_step.assign(0)
        calibration = bs.calibration.fit_calibration(default_unet, x, y, num_samples=4)
        fits.append([float(w) for w in calibration.get_weights()])
    np.testing.assert_allclose(fits[0], fits[1], rtol=1e-5, atol=1e-6)


def test_the_prefix_is_the_encoder_and_the_suffix_holds_every_bayesian_layer(default_unet):
    split = split_deterministic(default_unet)
    assert split is split_deterministic(default_unet)  # cached per model
    assert bs.layers.bayesian_layers(split.prefix) == []
    names = {layer.name for layer in bs.layers.bayesian_layers(split.suffix)}
    assert names == {layer.name for layer in bs.layers.bayesian_layers(default_unet)}
    # Depth 3: two skip connections and the bottleneck's input, at 1, 1/2, 1/4.
    x = tf.zeros((1, 32, 32, 1))
    shapes = sorted(tuple(t.shape[1:3]) for t in split.features(x))
    assert shapes == [(8, 8), (16, 16), (32, 32)]
    with bs.layers.sampling_mode(default_unet, "mean"):
        np.testing.assert_allclose(split(x), default_unet(x), atol=1e-6)


class _NoisyLayer(keras.layers.Layer):
    """A user's layer that draws noise at inference: it cannot be shared."""

    def call(self, x):
        return x + tf.random.normal(tf.shape(x))


def _functional(first, model_class=keras.Model):
    inputs = keras.Input((6,))
    h = first(inputs)
    h = keras.layers.Dense(4, activation="relu")(h)
    return model_class(inputs, bs.layers.DenseFlipout(1)(h))


def _noisy_lambda(x):
    return x + tf.random.normal(tf.shape(x))


class OwnCallModel(keras.Model):
    """A functional model whose own ``call`` is not its graph."""

    def call(self, inputs, training=None):
        return super().call(inputs, training=training) * 0.0 + 7.0


def _stateful():
    inputs = keras.Input(batch_shape=(4, 5, 2))
    h = keras.layers.LSTM(3, stateful=True)(inputs)
    return keras.Model(inputs, bs.layers.DenseFlipout(1)(h))


def _masked():
    inputs = keras.Input((5, 2))
    h = keras.layers.Masking(0.0)(inputs)
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(3)(h))
    return keras.Model(inputs, bs.layers.DenseFlipout(1)(h))


@pytest.mark.parametrize(
    ("build", "shared"),
    [
        (lambda: _functional(keras.layers.Dense(5)), True),
        (lambda: _functional(_NoisyLayer()), False),  # not Keras's or bayesseg's
        (lambda: _functional(bs.layers.DenseFlipout(5)), False),  # noise from the start
        (lambda: keras.Sequential([keras.Input((6,)), bs.layers.DenseFlipout(1)]), False),
        (lambda: keras.Sequential([keras.Input((6,)), keras.layers.Dense(1)]), False),
        (lambda: bs.models.bayesian_unet((16, 16, 1), 1, 2, depth=2, bayesian_blocks="all"), False),
        (lambda: _functional(keras.layers.Lambda(_noisy_lambda)), False),  # the user's code
        (lambda: _functional(keras.Sequential([keras.Input((6,)), _NoisyLayer()])), False),
        (lambda: _functional(keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])), True),
        (lambda: _functional(keras.layers.Dense(5), OwnCallModel), False),
        (_masked, False),
        (_stateful, False),
    ],
    ids=["keras-dense-first", "custom-layer", "bayesian-first", "sequential", "deterministic",
         "all-bayesian-unet", "lambda", "nested-custom-layer", "nested-keras-layers",
         "own-call", "masking", "stateful-rnn"],
)  # fmt: skip
def test_only_what_no_draw_can_change_is_shared(build, shared, monkeypatch):
    model = build()
    assert (split_deterministic(model) is not None) == shared
    x = np.random.default_rng(1).normal(size=(4, *model.input_shape[1:])).astype("float32")
    a = _predict(model, x, True, monkeypatch)
    b = _predict(model, x, False, monkeypatch)
    noisy = (_NoisyLayer, keras.layers.Lambda)  # unseeded noise: no two runs agree
    if not any(isinstance(layer, noisy) for layer in model._flatten_layers()):
        np.testing.assert_allclose(a.mean, b.mean, atol=1e-6)
    if isinstance(model, OwnCallModel):
        np.testing.assert_allclose(a.mean[..., 0], 1 / (1 + np.exp(-7.0)), rtol=1e-6)
