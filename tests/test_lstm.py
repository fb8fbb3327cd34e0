"""Bayesian LSTMs against keras.layers.LSTM, TFP and a replay of their noise."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import bayesseg as bs
from bayesseg.layers import base
from bayesseg.layers import lstm as L

tfd = tfp.distributions
TINY = 1e-9  # posterior scale "about 0"
UNITS = 3
LAYERS = [L.LSTMFlipout, L.LSTMReparameterization]


def _x(batch=3, time=5, features=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, time, features)).astype("float32")


def _keras_twin(layer, **kwargs):
    """A keras.layers.LSTM carrying the posterior means of ``layer``."""
    ref = keras.layers.LSTM(layer.units, **kwargs)
    ref.build((None, None, layer.kernel_loc.shape[0]))
    ref.set_weights(
        [layer.kernel_loc.numpy(), layer.recurrent_kernel_loc.numpy(), layer.bias.numpy()]
    )
    return ref


def _randomise_bias(layer, seed=1):
    bias = np.random.default_rng(seed).normal(size=(4 * layer.units,))
    layer.bias.assign(bias.astype("float32"))


def _as_list(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


# --------------------------------------------------------------------------
# Equality with keras.layers.LSTM at posterior scale ~0.
# --------------------------------------------------------------------------
CALL_KWARGS = [
    {"return_sequences": True},
    {"return_sequences": False},
    {"return_state": True},
    {"go_backwards": True, "return_sequences": True},
    {"unroll": True, "return_sequences": True},
]


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("kwargs", CALL_KWARGS, ids=str)
def test_equals_keras_lstm_at_zero_scale(cls, kwargs):
    x = _x()
    layer = cls(UNITS, posterior_scale_init=TINY, **kwargs)
    layer.build(x.shape)
    _randomise_bias(layer)
    ref = _keras_twin(layer, **kwargs)
    got, expected = _as_list(layer(x)), _as_list(ref(x))
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g.numpy(), e.numpy(), atol=1e-5)
    layer.sampling = "mean"
    np.testing.assert_allclose(_as_list(layer(x))[0], expected[0], atol=1e-5)


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_masking_equals_keras_lstm(cls, return_sequences):
    x = _x(batch=4, time=6)
    x[0, 4:] = 0.0  # right padding
    x[1, :2] = 0.0  # left padding
    x[2, 2] = 0.0  # a hole in the middle
    layer = cls(UNITS, posterior_scale_init=TINY, return_sequences=return_sequences)
    model = keras.Sequential([keras.Input((6, 2)), keras.layers.Masking(0.0), layer])
    _randomise_bias(layer)
    ref = _keras_twin(layer, return_sequences=return_sequences)
    ref_model = keras.Sequential([keras.Input((6, 2)), keras.layers.Masking(0.0), ref])
    np.testing.assert_allclose(model(x), ref_model(x), atol=1e-5)
    # The explicit mask argument behaves the same way.
    mask = np.any(x != 0.0, axis=-1)
    np.testing.assert_allclose(layer(x, mask=mask), ref(x, mask=mask), atol=1e-5)


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_bidirectional_equals_keras(cls):
    x = _x(batch=3, time=5)
    x[0, 3:] = 0.0
    wrapper = keras.layers.Bidirectional(
        cls(UNITS, posterior_scale_init=TINY, return_sequences=True)
    )
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.Masking(0.0), wrapper])
    ref = keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True))
    ref_model = keras.Sequential([keras.Input((5, 2)), keras.layers.Masking(0.0), ref])
    weights = []
    for direction in (wrapper.forward_layer, wrapper.backward_layer):
        _randomise_bias(direction, seed=len(weights))
        weights += [
            direction.kernel_loc.numpy(),
            direction.recurrent_kernel_loc.numpy(),
            direction.bias.numpy(),
        ]
    ref.set_weights(weights)
    np.testing.assert_allclose(model(x), ref_model(x), atol=1e-5)
    assert len(bs.layers.bayesian_layers(model)) == 2


def test_bidirectional_directions_draw_different_noise():
    wrapper = keras.layers.Bidirectional(L.LSTMReparameterization(UNITS, seed=4))
    wrapper.build((2, 5, 2))
    forward, backward = wrapper.forward_layer.cell, wrapper.backward_layer.cell
    assert forward.seed == backward.seed and backward.reads_backwards
    backward.set_weights(forward.get_weights())
    step_input = tf.ones((2, 2))
    k_forward = forward.draw_sequence_noise(step_input).kernel
    k_backward = backward.draw_sequence_noise(step_input).kernel
    assert not np.allclose(k_forward, k_backward)


# --------------------------------------------------------------------------
# Per-sequence sampling: replay the single draw with keras.layers.LSTM.
# --------------------------------------------------------------------------
def _replayed_draw(cell, step):
    """Rebuild one call's noise from the cell seed and noise step."""
    seed = tf.constant([cell.seed, step], tf.int64)

    def delta(name, stream):
        scale = tf.nn.softplus(cell.scale_multiplier * getattr(cell, f"{name}_rho"))
        eps = tf.random.stateless_normal(scale.shape, base.fold_in(seed, stream))
        return (scale * eps).numpy()

    def signs(shape, stream):
        return base.random_signs(shape, base.fold_in(seed, stream), tf.float32).numpy()

    return seed, delta, signs


def _large_noise(layer, scale=0.3):
    for name in ("kernel", "recurrent_kernel"):
        rho = getattr(layer, f"{name}_rho")
        rho.assign(np.full(rho.shape, layer.cell.rho_for_scale(scale), "float32"))


def test_reparameterization_is_one_weight_draw_per_sequence():
    x = _x(batch=3, time=7)
    layer = L.LSTMReparameterization(UNITS, return_sequences=True, seed=11)
    layer.build(x.shape)
    _large_noise(layer)
    layer(x)  # step 0; the replay below is of step 1
    y = layer(x).numpy()
    assert int(layer.cell.noise_step.numpy()) == 2  # once per call, not per step
    _, delta, _ = _replayed_draw(layer.cell, 1)
    ref = _keras_twin(layer, return_sequences=True)
    ref.set_weights(
        [
            layer.kernel_loc.numpy() + delta("kernel", base.STREAM_KERNEL),
            layer.recurrent_kernel_loc.numpy()
            + delta("recurrent_kernel", base.STREAM_RECURRENT_KERNEL),
            layer.bias.numpy(),
        ]
    )
    np.testing.assert_allclose(y, ref(x), atol=1e-5)
    assert np.abs(y - _keras_twin(layer, return_sequences=True)(x)).max() > 1e-2


def test_flipout_is_one_perturbation_per_sequence():
    """Example b runs a plain LSTM with W + dW * outer(s_in[b], s_out[b])."""
    batch, features = 3, 2
    x = _x(batch=batch, time=6, features=features)
    layer = L.LSTMFlipout(UNITS, return_sequences=True, seed=12)
    layer.build(x.shape)
    _large_noise(layer)
    _randomise_bias(layer)
    y = layer(x).numpy()
    _, delta, signs = _replayed_draw(layer.cell, 0)
    d_kernel = delta("kernel", base.STREAM_KERNEL)
    d_recurrent = delta("recurrent_kernel", base.STREAM_RECURRENT_KERNEL)
    four = 4 * UNITS
    s_in = signs((batch, features), base.STREAM_SIGN_IN)
    s_out = signs((batch, four), base.STREAM_SIGN_OUT)
    r_in = signs((batch, UNITS), base.STREAM_RECURRENT_SIGN_IN)
    r_out = signs((batch, four), base.STREAM_RECURRENT_SIGN_OUT)
    ref = _keras_twin(layer, return_sequences=True)
    for b in range(batch):
        ref.set_weights(
            [
                layer.kernel_loc.numpy() + d_kernel * np.outer(s_in[b], s_out[b]),
                layer.recurrent_kernel_loc.numpy() + d_recurrent * np.outer(r_in[b], r_out[b]),
                layer.bias.numpy(),
            ]
        )
        np.testing.assert_allclose(y[b], ref(x[b : b + 1])[0], atol=1e-5)


@pytest.mark.parametrize(
    "cell_cls,layer_cls",
    [
        (L.LSTMCellFlipout, L.LSTMFlipout),
        (L.LSTMCellReparameterization, L.LSTMReparameterization),
    ],
)
def test_cell_in_keras_rnn_matches_layer(cell_cls, layer_cls):
    """The plain per-step cell draws once per sequence too (Keras' RNN hook)."""
    x = _x(batch=3, time=5)
    layer = layer_cls(UNITS, return_sequences=True, seed=21, posterior_scale_init=0.2)
    rnn = keras.layers.RNN(
        cell_cls(UNITS, seed=21, posterior_scale_init=0.2), return_sequences=True
    )
    layer.build(x.shape)
    rnn.build(x.shape)
    rnn.cell.set_weights(layer.cell.get_weights())
    np.testing.assert_allclose(rnn(x), layer(x), atol=1e-5)
    assert int(rnn.cell.noise_step.numpy()) == 1
    assert len(bs.layers.bayesian_layers(rnn)) == 1


# --------------------------------------------------------------------------
# Flipout decorrelates the batch; one shared draw does not.
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls,sampling,differ",
    [
        (L.LSTMFlipout, "sample", True),
        (L.LSTMFlipout, "shared", False),
        (L.LSTMReparameterization, "sample", False),
    ],
)
def test_identical_sequences_in_a_batch(cls, sampling, differ):
    x = np.repeat(_x(batch=1, time=6), 4, axis=0)
    layer = cls(UNITS, sampling=sampling, posterior_scale_init=0.3, seed=5)
    y = layer(x).numpy()
    spread = np.abs(y - y[:1]).max()
    if differ:
        assert spread > 1e-3
    else:
        assert spread < 1e-6
    assert np.abs(y - layer(x).numpy()).max() > 1e-3  # a fresh draw per call


# --------------------------------------------------------------------------
# KL: counted once per layer, equal to TFP's.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_kl_counts_each_layer_once(cls):
    prior = bs.priors.Normal(scale=0.5)
    model = keras.Sequential(
        [
            keras.Input((4, 2)),
            cls(UNITS, return_sequences=True, prior=prior, posterior_scale_init=0.05),
            cls(UNITS, prior=prior, bayesian_bias=True, posterior_scale_init=0.05),
        ]
    )
    cells = bs.layers.bayesian_layers(model)
    assert [type(c) for c in cells] == [cls.cell_class] * 2
    expected = 0.0
    for cell in cells:
        for name in cell.posterior_names:
            q = tfd.Normal(cell.posterior_loc(name), cell.posterior_scale(name))
            expected += float(tf.reduce_sum(tfd.kl_divergence(q, tfd.Normal(0.0, 0.5))))
    assert cells[1].posterior_names == ("kernel", "recurrent_kernel", "bias")
    np.testing.assert_allclose(float(bs.kl_divergence(model)), expected, rtol=1e-5)
    first = model.layers[0]
    np.testing.assert_allclose(
        float(first.kl_divergence()), float(cells[0].kl_divergence()), rtol=1e-6
    )


# --------------------------------------------------------------------------
# Training: gradients and one draw per step inside fit.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_gradients_reach_loc_and_rho(cls):
    x = _x()
    layer = cls(UNITS, return_sequences=True, posterior_scale_init=0.1, seed=2)
    layer.build(x.shape)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x))) + layer.kl_divergence() * 1e-3
    names = ["kernel_loc", "kernel_rho", "recurrent_kernel_loc", "recurrent_kernel_rho"]
    grads = tape.gradient(loss, [getattr(layer, n) for n in names])
    for name, grad in zip(names, grads, strict=True):
        assert grad is not None, name
        assert float(tf.reduce_max(tf.abs(grad))) > 0, name


def test_fit_with_masking_draws_once_per_step():
    x = _x(batch=8, time=6)
    x[:3, 4:] = 0.0
    y = (x[..., :1] > 0).astype("float32")
    lstm = L.LSTMFlipout(UNITS, return_sequences=True, seed=3)
    model = keras.Sequential(
        [
            keras.Input((None, 2)),
            keras.layers.Masking(0.0),
            lstm,
            keras.layers.Dense(1),
        ]
    )
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True))
    before = lstm.kernel_rho.numpy().copy()
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert int(lstm.cell.noise_step.numpy()) == 4  # 2 epochs x 2 steps
    assert not np.allclose(before, lstm.kernel_rho.numpy())


# --------------------------------------------------------------------------
# Serialisation.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_config_round_trip(cls):
    layer = cls(
        5,
        activation="relu",
        recurrent_activation="hard_sigmoid",
        unit_forget_bias=False,
        prior=bs.priors.ScaleMixture(pi=0.3),
        posterior_scale_init=0.02,
        bayesian_bias=True,
        sampling="shared",
        kl_samples=3,
        seed=9,
        return_sequences=True,
        return_state=True,
        go_backwards=True,
        use_cudnn=False,
    )
    clone = cls.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.cell.prior == layer.cell.prior and clone.sampling == "shared"
    assert clone.cell.reads_backwards


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_save_and_load_safe_mode(cls, tmp_path):
    x = _x()
    x[0, 3:] = 0.0
    model = keras.Sequential(
        [
            keras.Input((5, 2)),
            keras.layers.Masking(0.0),
            keras.layers.Bidirectional(cls(UNITS, return_sequences=True, seed=7)),
            cls(UNITS, seed=8, posterior_scale_init=0.1),
        ]
    )
    model(x)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    # Same posterior and same saved noise counter: the same next draw.
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    with bs.layers.sampling_mode(model, "mean"), bs.layers.sampling_mode(loaded, "mean"):
        np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    assert len(bs.layers.bayesian_layers(loaded)) == 3


# --------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("units", [0, -2, 2.5, True])
def test_bad_units(units):
    for cls in LAYERS + [L.LSTMCellFlipout]:
        with pytest.raises(ValueError, match="units"):
            cls(units)


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_bad_input_rank(cls):
    with pytest.raises(ValueError, match="`sequences`.*rank 3"):
        cls(2)(np.ones((4, 3), "float32"))
    layer = cls(2)
    layer(np.ones((1, 2, 3), "float32"))
    with pytest.raises(ValueError, match="`sequences`"):
        layer(np.ones((1, 2, 3, 1), "float32"))


def test_bad_use_cudnn_and_sampling():
    with pytest.raises(ValueError, match="use_cudnn"):
        L.LSTMFlipout(2, use_cudnn="yes")
    with pytest.raises(ValueError, match="sampling"):
        L.LSTMFlipout(2, sampling="per_step")
    with pytest.raises(ValueError, match="use_cudnn=True"):
        L.LSTMFlipout(2, use_cudnn=True)(_x())


# --------------------------------------------------------------------------
# GPU: the fused cuDNN path equals the loop for one weight draw.
# --------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("sampling", ["sample", "mean"])
def test_cudnn_path_equals_loop(sampling):
    x = _x(batch=4, time=9)
    x[0, 6:] = 0.0
    kwargs = dict(return_sequences=True, seed=13, sampling=sampling)
    fused = L.LSTMReparameterization(UNITS, posterior_scale_init=0.1, **kwargs)
    loop = L.LSTMReparameterization(UNITS, use_cudnn=False, **kwargs)
    fused.build(x.shape)
    loop.build(x.shape)
    loop.set_weights(fused.get_weights())
    mask = np.any(x != 0.0, axis=-1)
    np.testing.assert_allclose(fused(x, mask=mask), loop(x, mask=mask), atol=1e-4)


@pytest.mark.parametrize("cls", LAYERS)
def test_default_prior_is_fan_in_per_weight_tensor(cls):
    # The recurrent kernel's prior is as wide as He initialisation of its
    # fan-in (the units), the input kernel's of the features: the closed-form
    # KL per tensor against TFP's, with those two scales.
    layer = cls(4, scale_multiplier=5.0)
    layer(np.zeros((2, 5, 3), "float32"))
    cell = layer.cell
    assert isinstance(cell.prior, bs.priors.FanInNormal)
    assert cell.scale_multiplier == 5.0
    expected = 0.0
    for name, fan_in in (("kernel", 3), ("recurrent_kernel", 4)):
        q = tfp.distributions.Normal(
            getattr(cell, f"{name}_loc"), tf.nn.softplus(5.0 * getattr(cell, f"{name}_rho"))
        )
        p = tfp.distributions.Normal(0.0, np.float32(np.sqrt(2.0 / fan_in)))
        expected += float(tf.reduce_sum(tfp.distributions.kl_divergence(q, p)))
    assert float(cell.kl_divergence()) == pytest.approx(expected, rel=1e-5)


def test_tagger_head_keeps_the_unit_prior():
    model = bs.models.bayesian_lstm_tagger(1, units=(4,))
    assert isinstance(model.get_layer("lstm0").cell.prior, bs.priors.FanInNormal)
    assert model.get_layer("logits").prior.scale == 1.0
    assert model.get_layer("logits").scale_multiplier == 5.0
    given = bs.models.bayesian_lstm_tagger(1, units=(4,), prior=bs.priors.Normal(0.5))
    assert given.get_layer("lstm0").cell.prior.scale == 0.5
    assert given.get_layer("logits").prior.scale == 0.5
