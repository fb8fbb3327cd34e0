"""Tests of bayesseg.convert: deterministic Keras models to Bayesian models."""

import pathlib
import warnings

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp

import bayesseg as bs
from bayesseg import convert

tfd = tfp.distributions


def _rng_input(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _posterior_mean(model, x):
    with bs.layers.sampling_mode(model, "mean"):
        return model(x).numpy()


def _cnn():
    return keras.Sequential(
        [
            keras.Input((12, 12, 2)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dropout(0.5, name="dropout"),
            keras.layers.Dense(3, name="logits"),
        ],
        name="cnn",
    )


@pytest.mark.parametrize("estimator", ["flipout", "reparameterization"])
def test_sequential_cnn_reproduces_outputs(estimator):
    model = _cnn()
    x = _rng_input((4, 12, 12, 2))
    bayesian = convert.to_bayesian(model, estimator=estimator, posterior_scale_init=1e-9)
    assert isinstance(bayesian, bs.BayesianModel)
    suffix = "Flipout" if estimator == "flipout" else "Reparameterization"
    assert [type(layer).__name__ for layer in bayesian.layers[1:]] == [
        f"Conv2D{suffix}",
        "MaxPooling2D",
        "Flatten",
        f"Dense{suffix}",
        "Dropout",
        f"Dense{suffix}",
    ]
    np.testing.assert_allclose(bayesian(x).numpy(), model(x).numpy(), atol=1e-5)
    # The input model is untouched and shares no variable with the result.
    model_ids = {id(v) for v in model.weights}
    assert not model_ids & {id(v) for v in bayesian.weights}


@pytest.mark.slow
def test_unet_with_batchnorm_after_training_reproduces_outputs():
    model = bs.models.unet((16, 16, 1), 1, base_filters=4, depth=3, normalization="batch")
    images, masks = bs.data.synthetic_lesions(4, shape=(16, 16), seed=3)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=bs.losses.WeightedBinaryCrossentropy()
    )
    model.fit(images, masks, batch_size=4, epochs=1, verbose=0)
    bn = model.get_layer("enc0_bn0")
    assert not np.allclose(bn.moving_mean.numpy(), 0.0)
    bayesian = convert.to_bayesian(model, posterior_scale_init=1e-9)
    assert len(bs.layers.bayesian_layers(bayesian)) == 13
    np.testing.assert_allclose(
        bayesian.get_layer("enc0_bn0").moving_variance.numpy(), bn.moving_variance.numpy()
    )
    np.testing.assert_allclose(bayesian(images).numpy(), model(images).numpy(), atol=1e-5)


@pytest.mark.parametrize("estimator", ["flipout", "reparameterization"])
def test_stacked_lstm_tagger_reproduces_outputs(estimator):
    inputs = keras.Input((None, 3))
    x = keras.layers.LSTM(6, return_sequences=True, name="lstm0")(inputs)
    x = keras.layers.LSTM(5, return_sequences=True, go_backwards=True, name="lstm1")(x)
    outputs = keras.layers.TimeDistributed(keras.layers.Dense(1), name="head")(x)
    model = keras.Model(inputs, outputs)
    bayesian = convert.to_bayesian(model, estimator=estimator, posterior_scale_init=1e-9)
    suffix = "Flipout" if estimator == "flipout" else "Reparameterization"
    assert [type(layer).__name__ for layer in bayesian.layers[1:]] == [
        f"LSTM{suffix}",
        f"LSTM{suffix}",
        f"Dense{suffix}",
    ]
    assert bayesian.get_layer("lstm1").go_backwards
    x = _rng_input((2, 7, 3))
    np.testing.assert_allclose(bayesian(x).numpy(), model(x).numpy(), atol=1e-5)


def test_nested_sequential_inside_functional():
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(4)],
        name="inner",
    )
    inputs = keras.Input((6,))
    x = inner(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Dense(2, name="out")(x)
    model = keras.Model(inputs, outputs, name="outer")
    bayesian = convert.to_bayesian(model, posterior_scale_init=1e-9)
    assert isinstance(bayesian.get_layer("inner"), keras.Sequential)
    assert len(bs.layers.bayesian_layers(bayesian)) == 3
    x = _rng_input((3, 6))
    np.testing.assert_allclose(bayesian(x).numpy(), model(x).numpy(), atol=1e-5)
    # A nested model's name selects every layer inside it.
    partial = convert.to_bayesian(model, layers=["inner"])
    assert isinstance(partial.get_layer("out"), keras.layers.Dense)
    assert len(bs.layers.bayesian_layers(partial)) == 2


def test_layers_by_name_and_by_callable():
    model = _cnn()
    by_name = convert.to_bayesian(model, layers=["logits"])
    assert [layer.name for layer in bs.layers.bayesian_layers(by_name)] == ["logits"]
    assert type(by_name.get_layer("conv")) is keras.layers.Conv2D
    by_callable = convert.to_bayesian(
        model, layers=lambda layer: isinstance(layer, keras.layers.Conv2D)
    )
    assert [layer.name for layer in bs.layers.bayesian_layers(by_callable)] == ["conv"]
    x = _rng_input((2, 12, 12, 2))
    np.testing.assert_allclose(_posterior_mean(by_name, x), model(x).numpy(), atol=1e-5)


def test_moped_posterior_scales_follow_the_weights():
    model = _cnn()
    model.get_layer("hidden").kernel.assign(np.zeros((100, 8), "float32"))
    bayesian = convert.to_bayesian(model, moped_delta=0.1, moped_scale_floor=1e-5)
    for layer in bs.layers.bayesian_layers(bayesian):
        w = model.get_layer(layer.name).kernel.numpy()
        np.testing.assert_allclose(
            layer.posterior_scale("kernel").numpy(),
            np.maximum(0.1 * np.abs(w), 1e-5),
            rtol=1e-4,
        )
        np.testing.assert_array_equal(layer.kernel_loc.numpy(), w)
    assert np.isfinite(float(bs.kl_divergence(bayesian)))


def test_moped_prior_is_centred_on_the_weights_and_survives_saving(tmp_path):
    model = _cnn()
    bayesian = convert.to_bayesian(
        model, moped_delta=0.1, moped_prior=True, moped_prior_scale=0.2, moped_prior_floor=1e-2
    )
    expected = 0.0
    for layer in bs.layers.bayesian_layers(bayesian):
        w = model.get_layer(layer.name).kernel.numpy()
        np.testing.assert_array_equal(layer.kernel_prior_loc.numpy(), w)
        q = tfd.Normal(w, np.maximum(0.1 * np.abs(w), 1e-5))
        p = tfd.Normal(w, np.maximum(0.2 * np.abs(w), 1e-2))
        expected += float(np.sum(tfd.kl_divergence(q, p)))
    kl = float(bs.kl_divergence(bayesian))
    np.testing.assert_allclose(kl, expected, rtol=1e-4)

    path = tmp_path / "converted.keras"
    bayesian.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("hidden").prior, bs.priors.WeightCentered)
    np.testing.assert_allclose(float(bs.kl_divergence(loaded)), kl, rtol=1e-6)
    x = _rng_input((2, 12, 12, 2))
    np.testing.assert_allclose(_posterior_mean(loaded, x), model(x).numpy(), atol=1e-5)


def test_one_warning_lists_the_layers_kept_deterministic():
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(10, 4, name="embed")(inputs)
    x = keras.layers.Conv1D(4, 2, padding="causal", name="causal")(x)
    x = keras.layers.Conv1D(4, 2, groups=2, name="grouped")(x)
    x = keras.layers.Conv1D(4, 1, kernel_regularizer="l2", name="regularised")(x)
    x = keras.layers.LayerNormalization(name="norm")(x)
    outputs = keras.layers.Dense(1, name="out")(x)
    model = keras.Model(inputs, outputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bayesian = convert.to_bayesian(model)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    messages = [m for m in messages if "to_bayesian" in m]
    assert len(messages) == 1
    for name in ("embed", "causal", "grouped", "regularised"):
        assert repr(name) in messages[0]
    assert "norm" not in messages[0]
    assert [layer.name for layer in bs.layers.bayesian_layers(bayesian)] == ["out"]
    x = np.arange(10, dtype="int32").reshape(2, 5)
    np.testing.assert_allclose(_posterior_mean(bayesian, x), model(x).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"estimator": "mc_dropout"}, "estimator"),
        ({"moped_delta": 0.0}, "moped_delta"),
        ({"moped_delta": -0.1}, "moped_delta"),
        ({"layers": ["missing"]}, "missing"),
        ({"layers": ["pool"]}, "pool"),
        ({"layers": [3]}, "layers"),
        ({"posterior_scale_init": 0.0}, "posterior_scale_init"),
        ({"moped_prior": True}, "moped_prior"),
        ({"moped_prior": True, "prior": 0.5, "moped_delta": 0.1}, "prior"),
        ({"layers": lambda layer: False}, "layers"),
    ],
)
def test_bad_arguments_raise(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        convert.to_bayesian(_cnn(), **kwargs)


@pytest.mark.parametrize("model", [None, "model", keras.layers.Dense(2)])
def test_non_model_raises(model):
    with pytest.raises(ValueError, match="model"):
        convert.to_bayesian(model)


@pytest.mark.slow
def test_finetuning_example_keeps_dice_and_adds_uncertainty():
    import importlib.util as util

    path = pathlib.Path(__file__).parents[1] / "examples" / "convert_pretrained.py"
    spec = util.spec_from_file_location("convert_pretrained", path)
    example = util.module_from_spec(spec)
    spec.loader.exec_module(example)
    metrics = example.main(
        [
            "--images",
            "32",
            "--size",
            "32",
            "--base-filters",
            "4",
            "--depth",
            "2",
            "--pretrain-epochs",
            "8",
            "--mc-samples",
            "4",
        ]
    )
    assert metrics["dice_deterministic"] > 0.05
    assert abs(metrics["dice_posterior_mean"] - metrics["dice_deterministic"]) <= 0.05
    assert metrics["epistemic_mean"] > 0
    assert np.isfinite(metrics["kl"])


def test_default_conversion_keeps_accuracy_at_step_zero_under_sampling():
    # The converted layers learn fast scales (scale_multiplier), but start at
    # the converter's small explicit scale: sampled predictions of a fresh
    # conversion agree with the original model's decisions.
    model = _cnn()
    x = _rng_input((512, 12, 12, 2), seed=5)
    labels = model(x).numpy().argmax(-1)  # the original is right by construction
    bayesian = convert.to_bayesian(model)
    scales = bs.diagnostics.posterior_scales(bayesian)
    for row in scales:
        assert row.median_scale == pytest.approx(1e-3, rel=1e-4)
        assert row.scale_multiplier == bs.layers.DenseFlipout(1).scale_multiplier
    for _ in range(3):
        accuracy = float(np.mean(bayesian(x).numpy().argmax(-1) == labels))
        assert accuracy >= 0.99
