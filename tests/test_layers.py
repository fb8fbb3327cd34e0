"""Bayesian layers against independent references (Keras layers, TFP, NumPy)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import stats

import bayesseg as bs
from bayesseg import layers as L

tfd = tfp.distributions
TINY = 1e-9  # posterior scale "about 0"

# (class, keras twin, rank of spatial axes, transposed?)
CONV_CASES = [
    (L.Conv1DFlipout, keras.layers.Conv1D, 1),
    (L.Conv2DFlipout, keras.layers.Conv2D, 2),
    (L.Conv3DFlipout, keras.layers.Conv3D, 3),
    (L.Conv1DReparameterization, keras.layers.Conv1D, 1),
    (L.Conv2DReparameterization, keras.layers.Conv2D, 2),
    (L.Conv3DReparameterization, keras.layers.Conv3D, 3),
    (L.Conv2DTransposeFlipout, keras.layers.Conv2DTranspose, 2),
    (L.Conv3DTransposeFlipout, keras.layers.Conv3DTranspose, 3),
    (L.Conv2DTransposeReparameterization, keras.layers.Conv2DTranspose, 2),
    (L.Conv3DTransposeReparameterization, keras.layers.Conv3DTranspose, 3),
]
DENSE_CLASSES = [
    L.DenseFlipout,
    L.DenseReparameterization,
    L.DenseLocalReparameterization,
]
ALL_CLASSES = [c for c, _, _ in CONV_CASES] + DENSE_CLASSES


def _rng(seed=0):
    return np.random.default_rng(seed)


def _softplus(x):
    """NumPy softplus in float64: the scale of a posterior, independent of TensorFlow."""
    return np.logaddexp(0.0, np.asarray(x, np.float64))


def _conv_input(rank, batch=3, size=7, channels=2, seed=0):
    return _rng(seed).normal(size=(batch,) + (size,) * rank + (channels,)).astype("float32")


def _make(cls, **kwargs):
    if cls in DENSE_CLASSES:
        return cls(4, **kwargs)
    return cls(4, 3, **kwargs)


def _input_for(cls, batch=3, seed=0):
    if cls in DENSE_CLASSES:
        return _rng(seed).normal(size=(batch, 5)).astype("float32")
    rank = next(r for c, _, r in CONV_CASES if c is cls)
    return _conv_input(rank, batch=batch, seed=seed)


# --------------------------------------------------------------------------
# Equality with the deterministic Keras layer at posterior scale ~0.
# --------------------------------------------------------------------------
CONV_KWARGS = [
    {"padding": "valid"},
    {"padding": "same", "strides": 2, "activation": "relu"},
    {"padding": "same", "dilation_rate": 2, "use_bias": False},
]
# Keras' transposed convolutions do not support dilation on CPU.
EQUALITY_CASES = [
    (cls, twin, rank, kwargs)
    for cls, twin, rank in CONV_CASES
    for kwargs in CONV_KWARGS
    if not ("Transpose" in cls.__name__ and "dilation_rate" in kwargs)
]


@pytest.mark.parametrize(
    "cls,twin,rank,kwargs", EQUALITY_CASES, ids=lambda v: getattr(v, "__name__", None)
)
def test_conv_equals_keras_at_zero_scale(cls, twin, rank, kwargs):
    x = _conv_input(rank)
    layer = cls(4, 3, posterior_scale_init=TINY, **kwargs)
    y = layer(x)
    ref = twin(4, 3, **kwargs)
    ref.build(x.shape)
    weights = [layer.kernel_loc.numpy()]
    if kwargs.get("use_bias", True):
        bias = _rng(1).normal(size=(4,)).astype("float32")
        layer.bias.assign(bias)
        weights.append(bias)
        y = layer(x)
    ref.set_weights(weights)
    expected = ref(x).numpy()
    assert y.shape == expected.shape
    assert tuple(layer.compute_output_shape(x.shape)) == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-5)
    with L.sampling_mode(layer, "mean"):
        np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("cls", DENSE_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5)])
def test_dense_equals_keras_at_zero_scale(cls, shape):
    x = _rng().normal(size=shape).astype("float32")
    layer = cls(4, activation="tanh", posterior_scale_init=TINY)
    layer.build(x.shape)
    layer.bias.assign(_rng(2).normal(size=(4,)).astype("float32"))
    ref = keras.layers.Dense(4, activation="tanh")
    ref.build(x.shape)
    ref.set_weights([layer.kernel_loc.numpy(), layer.bias.numpy()])
    np.testing.assert_allclose(layer(x).numpy(), ref(x).numpy(), atol=1e-5)


def test_bayesian_bias_at_zero_scale_equals_keras():
    x = _conv_input(2)
    layer = L.Conv2DFlipout(4, 3, bayesian_bias=True, posterior_scale_init=TINY)
    layer.build(x.shape)
    layer.bias_loc.assign(np.arange(4, dtype="float32"))
    ref = keras.layers.Conv2D(4, 3)
    ref.build(x.shape)
    ref.set_weights([layer.kernel_loc.numpy(), layer.bias_loc.numpy()])
    np.testing.assert_allclose(layer(x).numpy(), ref(x).numpy(), atol=1e-5)
    assert set(layer.posterior_names) == {"kernel", "bias"}


def test_channels_first_matches_channels_last():
    x = _conv_input(2)
    last = L.Conv2DFlipout(4, 3, padding="same", seed=3)
    first = L.Conv2DFlipout(4, 3, padding="same", seed=3, data_format="channels_first")
    last.build(x.shape)
    first.build((3, 2, 7, 7))
    first.set_weights(last.get_weights())
    y_last = last(x)
    y_first = first(np.transpose(x, (0, 3, 1, 2)))
    np.testing.assert_allclose(np.transpose(y_first.numpy(), (0, 2, 3, 1)), y_last, atol=1e-5)


# --------------------------------------------------------------------------
# KL divergence.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_kl_equals_tfp_for_normal_prior(cls):
    layer = _make(
        cls,
        prior=bs.priors.Normal(scale=0.5, loc=0.1),
        bayesian_bias=True,
        posterior_scale_init=0.05,
    )
    layer(_input_for(cls))
    scales = np.exp(_rng(3).normal(-3, 0.5, size=layer.kernel_rho.shape))  # varied scales
    layer.kernel_rho.assign(layer.rho_for_scale(scales))
    expected = 0.0
    for name in ("kernel", "bias"):
        loc = layer.posterior_loc(name).numpy()
        rho = getattr(layer, f"{name}_rho").numpy()
        scale = _softplus(layer.scale_multiplier * rho).astype(np.float32)
        expected += float(
            tf.reduce_sum(tfd.kl_divergence(tfd.Normal(loc, scale), tfd.Normal(0.1, 0.5)))
        )
    np.testing.assert_allclose(float(layer.kl_divergence()), expected, rtol=1e-5)
    ce, ent = layer.kl_terms()
    np.testing.assert_allclose(float(ce - ent), expected, rtol=1e-4)


def test_kl_terms_closed_form_against_numpy():
    layer = L.DenseReparameterization(3, prior=2.0, posterior_scale_init=0.3)
    layer(np.ones((1, 2), "float32"))
    loc = layer.kernel_loc.numpy()
    scale = _softplus(layer.scale_multiplier * layer.kernel_rho.numpy())
    entropy = np.sum(0.5 * np.log(2 * np.pi * np.e * scale**2))
    cross_entropy = np.sum(0.5 * np.log(2 * np.pi * 4.0) + (scale**2 + loc**2) / (2 * 4.0))
    ce, ent = layer.kl_terms()
    np.testing.assert_allclose([float(ce), float(ent)], [cross_entropy, entropy], rtol=1e-5)


def test_scale_mixture_kl_converges_to_high_sample_estimate():
    prior = bs.priors.ScaleMixture(pi=0.3, scale1=1.0, scale2=0.05)
    layer = L.DenseFlipout(3, prior=prior, posterior_scale_init=0.1, seed=5)
    layer(np.ones((1, 4), "float32"))
    loc = layer.kernel_loc.numpy().ravel()
    scale = _softplus(layer.scale_multiplier * layer.kernel_rho.numpy().ravel())
    # Reference: 200k-sample NumPy/SciPy estimate of E_q[log q - log p].
    w = _rng(7).normal(loc, scale, size=(200_000, loc.size))
    log_q = stats.norm.logpdf(w, loc, scale)
    log_p = np.logaddexp(
        np.log(0.3) + stats.norm.logpdf(w, 0, 1.0),
        np.log(0.7) + stats.norm.logpdf(w, 0, 0.05),
    )
    reference = float(np.mean(np.sum(log_q - log_p, axis=1)))
    kl_1 = float(layer.kl_divergence(num_samples=1))
    kl_many = float(layer.kl_divergence(num_samples=20_000))
    assert np.isfinite(kl_1)
    assert abs(kl_many - reference) < 0.02 * abs(reference) + 0.05
    # The estimate is seeded by (layer seed, noise step), not by the last draw.
    assert float(layer.kl_divergence(num_samples=16)) == float(layer.kl_divergence(num_samples=16))


def test_model_kl_is_sum_of_layers_and_requires_bayesian_layers():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            L.Conv2DFlipout(2, 3),
            keras.layers.Flatten(),
            L.DenseReparameterization(1),
        ]
    )
    expected = sum(float(layer.kl_divergence()) for layer in L.bayesian_layers(model))
    np.testing.assert_allclose(float(bs.kl_divergence(model)), expected, rtol=1e-6)
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="no Bayesian layers"):
        bs.kl_divergence(plain)


# --------------------------------------------------------------------------
# Estimators.
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls",
    [L.DenseFlipout, L.Conv2DFlipout, L.Conv2DTransposeFlipout],
    ids=lambda c: c.__name__,
)
def test_flipout_mean_over_passes_equals_posterior_mean(cls):
    layer = _make(cls, posterior_scale_init=0.2, seed=11)
    x = _input_for(cls, batch=2)
    mean_output = None
    with L.sampling_mode(layer, "mean"):
        mean_output = layer(x).numpy()

    @tf.function
    def sample(num_draws):
        # One traced loop instead of 2000 eager calls: each iteration is a
        # separate sampled call (the noise counter advances every time).
        out = tf.TensorArray(tf.float32, size=num_draws)
        for i in tf.range(num_draws):
            out = out.write(i, layer(x))
        return out.stack()

    draws = sample(tf.constant(2000)).numpy()
    assert len(np.unique(draws[:, 0].reshape(2000, -1)[:, 0])) > 1990  # distinct calls
    sem = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - mean_output) <= 5 * sem + 1e-6)
    assert draws.std(axis=0).max() > 0.05  # the noise is real


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_identical_examples_get_independent_perturbations(cls):
    layer = _make(cls, posterior_scale_init=0.3, seed=2)
    x = np.repeat(_input_for(cls, batch=1), 2, axis=0)
    y = layer(x).numpy()
    differ = not np.allclose(y[0], y[1], atol=1e-6)
    shared = cls.__name__.startswith(("Conv", "DenseRep")) and "Flipout" not in cls.__name__
    assert differ is (not shared)


def _grad_variance(cls, batch, draws=400):
    # Inputs with non-zero mean and a target shared by all examples, so the
    # per-example gradients do not cancel by themselves; a small posterior
    # scale keeps the gradient first order in the noise.
    x = (1.0 + _rng(4).normal(size=(batch, 8))).astype("float32")
    target = 1.0
    layer = cls(6, posterior_scale_init=0.05, seed=9, kernel_initializer="ones")
    layer(x)
    layer.kernel_loc.assign(_rng(5).normal(0, 0.3, size=(8, 6)).astype("float32"))

    @tf.function
    def grad():
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_mean(tf.reduce_sum(tf.square(tf.tanh(y) - target), -1))
        return tape.gradient(loss, layer.kernel_rho)

    grads = np.stack([grad().numpy() for _ in range(draws)])
    return float(np.sum(grads.var(axis=0)))


def test_flipout_variance_reduction_grows_with_batch():
    """Wen et al. 2018: Flipout's variance falls ~1/batch, reparameterization's not."""
    ratios = {}
    for batch in (1, 8, 64):
        ratios[batch] = _grad_variance(L.DenseReparameterization, batch) / _grad_variance(
            L.DenseFlipout, batch
        )
    assert 0.5 < ratios[1] < 2.0  # one example: the estimators coincide in law
    assert ratios[64] >= 8.0
    assert ratios[64] > ratios[8] > ratios[1]


# --------------------------------------------------------------------------
# Randomness: stateless, seeded, counted, per replica.
# --------------------------------------------------------------------------
def test_noise_is_reproducible_from_seed_and_step():
    x = _conv_input(2)
    a, b = L.Conv2DFlipout(3, 3, seed=42), L.Conv2DFlipout(3, 3, seed=42)
    a.build(x.shape)
    b.build(x.shape)
    b.set_weights(a.get_weights())
    ya1, ya2 = a(x).numpy(), a(x).numpy()
    yb1 = b(x).numpy()
    np.testing.assert_array_equal(ya1, yb1)
    assert not np.allclose(ya1, ya2)
    assert int(a.noise_step.numpy()) == 2
    b.noise_step.assign(1)  # resume at step 1: the same noise as a's second call
    np.testing.assert_array_equal(b(x).numpy(), ya2)


def test_replicas_draw_different_noise():
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest configures two logical CPUs"
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    with strategy.scope():
        layer = L.DenseFlipout(3, posterior_scale_init=0.5, seed=1)
        layer.build((None, 4))
    x = np.ones((2, 4), "float32")

    @tf.function
    def step(inputs):
        return layer(inputs)

    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(x).repeat(1))
    out = strategy.run(step, args=(next(iter(dataset)),))
    per_replica = [t.numpy() for t in strategy.experimental_local_results(out)]
    # Same input row on both replicas, same counter: the replica id alone differs.
    assert not np.allclose(per_replica[0], per_replica[1])


# --------------------------------------------------------------------------
# Sampling switch, serialisation, mixed precision.
# --------------------------------------------------------------------------
def test_sampling_switch_resets_compiled_predict():
    model = keras.Sequential([keras.Input((5,)), L.DenseFlipout(3, posterior_scale_init=0.5)])
    x = _rng().normal(size=(4, 5)).astype("float32")
    sampled = [model.predict(x, verbose=0) for _ in range(2)]
    assert not np.allclose(sampled[0], sampled[1])  # predict samples by default
    L.set_sampling(model, "mean")
    mean = [model.predict(x, verbose=0) for _ in range(2)]
    np.testing.assert_array_equal(mean[0], mean[1])
    np.testing.assert_allclose(
        mean[0],
        x @ model.layers[0].kernel_loc.numpy() + model.layers[0].bias.numpy(),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="sampling"):
        L.set_sampling(model, "median")


def test_sampling_mode_inside_fit_keeps_the_train_function():
    # Monte Carlo prediction from a callback switches the sampling mode in the
    # middle of ``fit``; the train function traced before it is valid again
    # afterwards and must still be there for the next step.
    inputs = keras.Input((5,))
    model = bs.BayesianModel(inputs, L.DenseFlipout(1, posterior_scale_init=0.1)(inputs))
    model.compile(
        optimizer="adam",
        loss=bs.ELBO(bs.losses.WeightedBinaryCrossentropy(), bs.kl.PerExample(8)),
    )
    x = _rng().normal(size=(8, 5)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            before = self.model.train_function
            with L.sampling_mode(self.model, "mean"):
                self.model.predict(x, verbose=0)
            seen.append(self.model.train_function is before and before is not None)

    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[Probe()])
    assert seen == [True] * 4
    assert len(history.history["loss"]) == 2
    assert [layer.sampling for layer in bs.layers.bayesian_layers(model)] == ["sample"]


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_config_round_trip(cls):
    layer = _make(
        cls,
        prior=bs.priors.ScaleMixture(0.25, 1.0, 0.01),
        posterior_scale_init=0.02,
        bayesian_bias=True,
        kl_samples=3,
        seed=17,
        activation="relu",
    )
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    assert clone.prior == layer.prior and clone.seed == 17


def test_saved_model_loads_in_safe_mode(tmp_path):
    inputs = keras.Input((8, 8, 1))
    h = L.Conv2DFlipout(4, 3, padding="same", activation="relu", prior=bs.priors.ScaleMixture())(
        inputs
    )
    h = L.Conv2DTransposeReparameterization(2, 3, strides=2, padding="same")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = L.DenseLocalReparameterization(1, bayesian_bias=True)(h)
    model = keras.Model(inputs, outputs)
    x = _conv_input(2, batch=2, size=8, channels=1)
    model(x)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with L.sampling_mode(model, "mean"), L.sampling_mode(loaded, "mean"):
        np.testing.assert_allclose(model(x).numpy(), loaded(x).numpy(), atol=1e-6)
    # The saved noise counter resumes the noise stream exactly.
    np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_kl_in_float32(policy):
    keras.config.set_dtype_policy(policy)
    try:
        layer = L.Conv2DFlipout(4, 3, padding="same")
        y = layer(_conv_input(2))
        assert y.dtype == tf.as_dtype(policy.split("_")[1])
        assert layer.kernel_loc.dtype == "float32"
        kl = layer.kl_divergence()
        assert kl.dtype == tf.float32 and np.isfinite(float(kl))
        assert np.all(np.isfinite(y.numpy().astype("float32")))
    finally:
        keras.config.set_dtype_policy("float32")


# --------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,argument",
    [
        (lambda: L.DenseFlipout(3, prior=bs.priors.Normal(scale=0.0)), "scale"),
        (lambda: bs.priors.Normal(scale=-1.0), "scale"),
        (lambda: bs.priors.ScaleMixture(scale2=0.0), "scale2"),
        (lambda: bs.priors.ScaleMixture(pi=1.0), "pi"),
        (lambda: L.DenseFlipout(3, posterior_scale_init=0.0), "posterior_scale_init"),
        (
            lambda: L.Conv2DFlipout(3, 3, posterior_scale_init=-1e-3),
            "posterior_scale_init",
        ),
        (lambda: L.Conv2DFlipout(0, 3), "filters"),
        (lambda: L.Conv2DFlipout(2.5, 3), "filters"),
        (lambda: L.Conv2DFlipout(4, 0), "kernel_size"),
        (lambda: L.Conv2DFlipout(4, (3, 3, 3)), "kernel_size"),
        (lambda: L.Conv3DReparameterization(4, 3, strides=0), "strides"),
        (lambda: L.Conv2DFlipout(4, 3, padding="full"), "padding"),
        (lambda: L.Conv2DFlipout(4, 3, strides=2, dilation_rate=2), "dilation_rate"),
        (
            lambda: L.Conv2DTransposeFlipout(4, 3, strides=2, output_padding=2),
            "output_padding",
        ),
        (lambda: L.DenseFlipout(0), "units"),
        (lambda: L.DenseFlipout(3, sampling="always"), "sampling"),
        (lambda: L.DenseFlipout(3, prior="wide"), "prior"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(make, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make()


@pytest.mark.parametrize(
    "cls,shape",
    [
        (L.Conv2DFlipout, (4, 8, 8)),
        (L.Conv3DFlipout, (2, 4, 4, 1)),
        (L.Conv1DReparameterization, (2, 4, 4, 4, 1)),
        (L.DenseFlipout, (3,)),
    ],
)
def test_wrong_input_rank_raises(cls, shape):
    layer = _make(cls)
    with pytest.raises(ValueError, match="rank"):
        layer(np.ones(shape, "float32"))


def test_kl_before_build_raises():
    with pytest.raises(ValueError, match="no weights yet"):
        L.DenseFlipout(3).kl_divergence()


@pytest.mark.parametrize("cls", [L.Conv2DFlipout, L.DenseReparameterization, L.LSTMFlipout])
def test_configs_saved_before_the_scale_multiplier_keep_rho_meaning(cls):
    # Older files hold rho itself (scale = softplus(rho)); they must load with c = 1.
    layer = cls(4, 3) if cls is L.Conv2DFlipout else cls(4)
    config = layer.get_config()
    assert config["scale_multiplier"] == getattr(layer, "cell", layer).scale_multiplier
    del config["scale_multiplier"]
    old = cls.from_config(config)
    owner = getattr(old, "cell", old)
    assert owner.scale_multiplier == 1.0
    assert owner.rho_for_scale(0.01) == pytest.approx(np.log(np.expm1(0.01)))
