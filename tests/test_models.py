"""Model builders against their deterministic Keras twins."""

import keras
import numpy as np
import pytest

import bayesseg as bs


def copy_weights_to_twin(bayesian, twin):
    """Copy posterior means (and plain weights) into the same-named Keras layers."""
    for layer in twin.layers:
        source = bayesian.get_layer(layer.name)
        if isinstance(source, bs.layers.BayesianLayer):
            weights = [source.kernel_loc.numpy()]
            if source.use_bias:
                weights.append(source.bias.numpy())
            layer.set_weights(weights)
        else:
            layer.set_weights(source.get_weights())


@pytest.mark.parametrize(
    "input_shape,num_classes,depth",
    [((32, 32, 1), 1, 3), ((32, 32, 2), 32, 2), ((8, 16, 16, 1), 1, 2), ((8, 8, 8, 1), 4, 2)],
)
def test_unet_shapes(input_shape, num_classes, depth):
    model = bs.models.bayesian_unet(input_shape, num_classes, base_filters=4, depth=depth)
    assert isinstance(model, bs.BayesianModel)
    x = np.zeros((2,) + input_shape, "float32")
    assert model(x).shape == (2,) + input_shape[:-1] + (num_classes,)
    assert model.output_shape == (None,) + input_shape[:-1] + (num_classes,)


@pytest.mark.parametrize("estimator", ["flipout", "reparameterization"])
@pytest.mark.parametrize("normalization", [None, "batch", "group"])
@pytest.mark.parametrize("input_shape", [(16, 16, 1), (8, 8, 8, 2)])
def test_unet_equals_keras_twin_at_zero_scale(estimator, normalization, input_shape):
    kwargs = {"base_filters": 4, "depth": 2, "normalization": normalization}
    bayesian = bs.models.bayesian_unet(
        input_shape, 3, estimator=estimator, posterior_scale_init=1e-9, **kwargs
    )
    twin = bs.models.unet(input_shape, 3, **kwargs)
    copy_weights_to_twin(bayesian, twin)
    x = np.random.default_rng(0).normal(size=(2,) + input_shape).astype("float32")
    np.testing.assert_allclose(bayesian(x).numpy(), twin(x).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "blocks,expected", [("all", 13), ("decoder", 7), ("bottleneck", 3), ("last", 1)]
)
def test_partial_bayesian_unet(blocks, expected):
    model = bs.models.bayesian_unet((16, 16, 1), 1, base_filters=4, depth=3, bayesian_blocks=blocks)
    assert len(bs.layers.bayesian_layers(model)) == expected
    assert model.get_layer("logits") in bs.layers.bayesian_layers(model)


@pytest.mark.parametrize("blocks", ["bottleneck", "all"])
def test_bayesian_unet_starts_at_its_twins_weights(blocks):
    # Built after the same set_random_seed, every posterior mean (and every
    # deterministic layer) holds the twin's initial weights: the layers' noise
    # seeds come from NumPy's generator, not from the Python stream that
    # Keras's initializers draw from. The twin at zero scale is the reference.
    kwargs = {"base_filters": 4, "depth": 3}
    keras.utils.set_random_seed(7)
    twin = bs.models.unet((16, 16, 1), 1, **kwargs)
    keras.utils.set_random_seed(7)
    bayesian = bs.models.bayesian_unet(
        (16, 16, 1), 1, bayesian_blocks=blocks, posterior_scale_init=1e-9, **kwargs
    )
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(bayesian(x).numpy(), twin(x).numpy(), atol=1e-5)
    keras.utils.set_random_seed(7)
    again = bs.models.bayesian_unet((16, 16, 1), 1, bayesian_blocks=blocks, **kwargs)
    seeds = [layer.seed for layer in bs.layers.bayesian_layers(bayesian)]
    assert seeds == [layer.seed for layer in bs.layers.bayesian_layers(again)]
    assert len(set(seeds)) == len(seeds)


def test_bayesian_unet_scales_start_at_the_unet_default():
    # 0.001 for a U-Net (its binary recipe too; 0.01 for the many-class
    # recipe), 0.01 for a layer built alone; the softplus parameterisation
    # starts each scale there (a closed form).
    from bayesseg.recipes import SegmentationConfig

    model = bs.models.bayesian_unet((16, 16, 1), 1, base_filters=4, depth=3)
    assert SegmentationConfig().resolve(2).posterior_scale_init == 1e-3
    assert SegmentationConfig().resolve(32).posterior_scale_init == 1e-2
    assert bs.layers.Conv2DFlipout(4, 3).posterior_scale_init == 1e-2
    for row in bs.diagnostics.posterior_scales(model):
        assert row.initial_scale == pytest.approx(1e-3, rel=1e-4)
        assert row.median_scale == pytest.approx(1e-3, rel=1e-4)


def test_bayesian_unet_scales_move_at_the_unet_multiplier():
    # bayesian_unet moves its scales at a multiplier of 10 (layers alone: 20;
    # the binary recipe builds its U-Net with 20 at its rate of 1e-3, the
    # many-class one with 2 at 1e-2). Adam's first step moves every rho by
    # its learning rate, so log(scale) moves by multiplier * lr: 0.02 under
    # the tour's Adam 2e-3, as in both recipes (for small scales
    # softplus(x) ~ exp(x)).
    import tensorflow as tf

    from bayesseg._defaults import DEFAULT_UNET_SCALE_MULTIPLIER
    from bayesseg.recipes import SegmentationConfig, build_segmentation_model

    assert DEFAULT_UNET_SCALE_MULTIPLIER == 10.0
    assert bs.layers.Conv2DFlipout(4, 3).scale_multiplier == 20.0
    binary, many = SegmentationConfig().resolve(2), SegmentationConfig().resolve(32)
    assert binary.learning_rate * binary.scale_multiplier == pytest.approx(2e-3 * 10.0)
    assert many.learning_rate * many.scale_multiplier == pytest.approx(2e-3 * 10.0)
    config = SegmentationConfig(base_filters=2, depth=2)
    for num_classes, multiplier in ((2, 20.0), (32, 2.0)):
        counts = [990] + [10] * (num_classes - 1)
        built, _, _ = build_segmentation_model(config, (8, 8, 1), num_classes, counts, 40, 10)
        assert {layer.scale_multiplier for layer in bs.layers.bayesian_layers(built)} == {
            multiplier
        }
    model = bs.models.bayesian_unet((16, 16, 1), 1, base_filters=4, depth=3)
    layers = bs.layers.bayesian_layers(model)
    assert {layer.scale_multiplier for layer in layers} == {10.0}
    head = model.get_layer("logits")
    before = np.log(head.posterior_scale("kernel").numpy())
    optimizer = keras.optimizers.Adam(2e-3)
    with tf.GradientTape() as tape:
        widen = -tf.reduce_sum(head.posterior_scale("kernel"))
    optimizer.apply_gradients([(tape.gradient(widen, head.kernel_rho), head.kernel_rho)])
    after = np.log(head.posterior_scale("kernel").numpy())
    np.testing.assert_allclose(after - before, 10 * 2e-3, rtol=0.01)


def test_output_bias_initialises_the_head():
    freqs = np.array([0.4, 0.3, 0.2, 0.08, 0.02])
    model = bs.models.bayesian_unet(
        (8, 8, 1), 5, base_filters=2, depth=1, output_bias=np.log(freqs), posterior_scale_init=1e-9
    )
    model.get_layer("logits").kernel_loc.assign(np.zeros((1, 1, 2, 5), "float32"))
    probs = keras.ops.softmax(model(np.ones((1, 8, 8, 1), "float32")), axis=-1).numpy()
    np.testing.assert_allclose(probs[0, 0, 0], freqs, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"input_shape": (30, 30, 1), "num_classes": 1, "depth": 3}, "input_shape"),
        ({"input_shape": (32, 32), "num_classes": 1}, "input_shape"),
        ({"input_shape": (32, 32, 1), "num_classes": 0}, "num_classes"),
        ({"input_shape": (32, 32, 1), "num_classes": 1, "estimator": "mc"}, "estimator"),
        (
            {"input_shape": (32, 32, 1), "num_classes": 1, "bayesian_blocks": "enc"},
            "bayesian_blocks",
        ),
        ({"input_shape": (32, 32, 1), "num_classes": 1, "normalization": "layer"}, "normalization"),
        ({"input_shape": (32, 32, 1), "num_classes": 2, "output_bias": [0.0]}, "output_bias"),
    ],
)
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        bs.models.bayesian_unet(**kwargs)


def _keras_tagger(units, num_features):
    inputs = keras.Input((None, num_features))
    x = inputs
    for i, n in enumerate(units):
        x = keras.layers.LSTM(n, return_sequences=True, name=f"lstm{i}")(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="logits")(x))


@pytest.mark.parametrize("estimator", ["flipout", "reparameterization"])
def test_lstm_tagger_equals_keras_stack_at_zero_scale(estimator):
    units = (6, 5)
    model = bs.models.bayesian_lstm_tagger(
        2, units=units, estimator=estimator, posterior_scale_init=1e-9, output_bias=-3.0
    )
    assert isinstance(model, bs.BayesianModel)
    twin = _keras_tagger(units, 2)
    for layer in twin.layers[1:]:
        source = model.get_layer(layer.name)
        if isinstance(layer, keras.layers.LSTM):
            weights = [source.cell.kernel_loc, source.cell.recurrent_kernel_loc, source.cell.bias]
        else:
            weights = [source.kernel_loc, source.bias]
        layer.set_weights([w.numpy() for w in weights])
    np.testing.assert_allclose(model.get_layer("logits").bias.numpy(), [-3.0])
    for length in (7, 13):  # variable-length sequences
        x = np.random.default_rng(length).normal(size=(3, length, 2)).astype("float32")
        out = model(x).numpy()
        assert out.shape == (3, length, 1)
        np.testing.assert_allclose(out, twin(x).numpy(), atol=1e-5)
    assert len(bs.layers.bayesian_layers(model)) == 3


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"num_features": 0}, "num_features"),
        ({"num_features": 1, "units": ()}, "units"),
        ({"num_features": 1, "units": (4, 0)}, "units"),
        ({"num_features": 1, "estimator": "mc"}, "estimator"),
        ({"num_features": 1, "timesteps": 0}, "timesteps"),
        ({"num_features": 1, "output_bias": [0.0, 1.0]}, "output_bias"),
    ],
)
def test_lstm_tagger_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        bs.models.bayesian_lstm_tagger(**kwargs)
