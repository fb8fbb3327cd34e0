"""The ELBO against hand computations (TF ops and tfd.kl_divergence)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from keras.src.initializers.random_initializers import compute_fans

import bayesseg as bs

tfd = tfp.distributions


def _dense_model(features=3):
    inputs = keras.Input((features,))
    outputs = bs.layers.DenseFlipout(1, posterior_scale_init=0.05, seed=1)(inputs)
    return bs.BayesianModel(inputs, outputs)


def _seg_model(size=6):
    inputs = keras.Input((size, size, 1))
    h = bs.layers.Conv2DReparameterization(3, 3, padding="same", activation="relu", seed=2)(inputs)
    outputs = bs.layers.Conv2DFlipout(1, 1, seed=3, prior=bs.priors.Normal(0.5))(h)
    return bs.BayesianModel(inputs, outputs)


def _hand_kl(model):
    total = 0.0
    for layer in bs.layers.bayesian_layers(model):
        for name in layer.posterior_names:
            loc = layer.posterior_loc(name).numpy()
            rho = getattr(layer, f"{name}_rho").numpy().astype(np.float64)
            scale = np.logaddexp(0.0, layer.scale_multiplier * rho).astype(np.float32)
            prior = layer.prior
            if isinstance(prior, bs.priors.FanInNormal):
                # The default prior: gain / sqrt(fan-in), fan-in as Keras' initializers count it.
                fan_in = compute_fans(loc.shape)[0] if loc.ndim >= 2 else None
                prior_loc = 0.0
                prior_scale = prior.bias_scale if fan_in is None else prior.gain / np.sqrt(fan_in)
            else:
                prior_loc, prior_scale = prior.loc, prior.scale
            total += float(
                tf.reduce_sum(
                    tfd.kl_divergence(
                        tfd.Normal(loc, scale),
                        tfd.Normal(np.float32(prior_loc), np.float32(prior_scale)),
                    )
                )
            )
    return total


@pytest.mark.parametrize("target", ["vector", "mask"])
def test_elbo_equals_hand_computation(target):
    rng = np.random.default_rng(0)
    if target == "vector":
        model, x = _dense_model(), rng.normal(size=(5, 3)).astype("float32")
        y = (rng.random((5,)) < 0.3).astype("float32")
        elements = 1
    else:
        model, x = _seg_model(), rng.normal(size=(4, 6, 6, 1)).astype("float32")
        y = (rng.random((4, 6, 6, 1)) < 0.2).astype("float32")
        elements = 36
    likelihood = bs.losses.WeightedBinaryCrossentropy(pos_weight=7.0)
    elbo = bs.ELBO(likelihood, bs.kl.PerExample(num_examples=50)).bind(model)
    logits = model(x)
    terms = elbo.compute(model, y, logits, step=0)
    # Hand: weighted BCE from TF ops, summed per example, averaged, / E.
    z = tf.reshape(logits, (len(x), -1))
    labels = tf.reshape(tf.constant(y), (len(x), -1))
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=z)
    per_example = tf.reduce_sum(bce * (1.0 + 6.0 * labels), axis=1).numpy()
    nll = per_example.mean() / elements
    kl = _hand_kl(model)
    np.testing.assert_allclose(float(terms.nll), nll, rtol=1e-5)
    np.testing.assert_allclose(float(terms.kl), kl, rtol=1e-5)
    np.testing.assert_allclose(float(terms.kl_weight), 1 / 50 / elements, rtol=1e-6)
    np.testing.assert_allclose(float(terms.loss), nll + kl / 50 / elements, rtol=1e-5)
    np.testing.assert_allclose(terms.per_example_nll.numpy(), per_example / elements, rtol=1e-5)
    assert float(terms.elements_per_example) == elements


def test_posterior_tempering_scales_only_the_entropy():
    model, x = _dense_model(), np.ones((4, 3), "float32")
    y = np.array([0, 1, 0, 0], "float32")
    likelihood = bs.losses.WeightedBinaryCrossentropy()
    logits = model(x)
    cold_kl = bs.ELBO(likelihood, bs.kl.Constant(0.1), temperature=0.5).bind(model)
    cold_post = bs.ELBO(
        likelihood, bs.kl.Constant(0.1), temperature=0.5, tempering="posterior"
    ).bind(model)
    t_kl = cold_kl.compute(model, y, logits, step=0)
    t_post = cold_post.compute(model, y, logits, step=0)
    layer = bs.layers.bayesian_layers(model)[0]
    ce, ent = (float(v) for v in layer.kl_terms())
    np.testing.assert_allclose(float(t_kl.loss - t_kl.nll), 0.1 * 0.5 * (ce - ent), rtol=1e-4)
    np.testing.assert_allclose(float(t_post.loss - t_post.nll), 0.1 * (ce - 0.5 * ent), rtol=1e-4)


def _gradients(model, elbo, x, y, step=0):
    for layer in bs.layers.bayesian_layers(model):
        layer.noise_step.assign(0)  # the same noise for every evaluation
    with tf.GradientTape() as tape:
        terms = elbo.compute(model, y, model(x), step=step)
    grads = tape.gradient(terms.loss, model.trainable_variables)
    return np.concatenate([g.numpy().ravel() for g in grads])


def test_per_example_and_per_batch_scalings_give_equal_gradients():
    model, rng = _seg_model(), np.random.default_rng(1)
    x = rng.normal(size=(4, 6, 6, 1)).astype("float32")
    y = (rng.random((4, 6, 6, 1)) < 0.2).astype("float32")
    likelihood = bs.losses.WeightedBinaryCrossentropy(pos_weight=3.0)
    num_batches, batch = 25, 4
    g_example = _gradients(
        model,
        bs.ELBO(likelihood, bs.kl.PerExample(num_batches * batch)).bind(model),
        x,
        y,
    )
    g_batch = _gradients(model, bs.ELBO(likelihood, bs.kl.PerBatch(num_batches)).bind(model), x, y)
    np.testing.assert_allclose(g_example, g_batch, rtol=1e-5, atol=1e-8)


def test_per_element_and_per_example_scales_are_proportional():
    model, rng = _seg_model(), np.random.default_rng(2)
    x = rng.normal(size=(3, 6, 6, 1)).astype("float32")
    y = (rng.random((3, 6, 6, 1)) < 0.2).astype("float32")
    likelihood = bs.losses.WeightedBinaryCrossentropy(pos_weight=3.0)
    scaling = bs.kl.PerExample(30)
    g_mean = _gradients(model, bs.ELBO(likelihood, scaling).bind(model), x, y)
    g_sum = _gradients(model, bs.ELBO(likelihood, scaling, scale="per_example").bind(model), x, y)
    np.testing.assert_allclose(g_sum, 36 * g_mean, rtol=1e-4, atol=1e-7)


def test_elbo_with_plain_keras_model_after_bind():
    model = _dense_model()
    plain = keras.Model(model.inputs, model.outputs)
    elbo = bs.ELBO(bs.losses.WeightedBinaryCrossentropy(), bs.kl.PerExample(8)).bind(plain)
    plain.compile(optimizer="sgd", loss=elbo)
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    for layer in bs.layers.bayesian_layers(plain):
        layer.sampling = "mean"
    logits = plain(x)
    expected = elbo.compute(plain, y, logits, step=0).loss
    plain.train_function = None
    np.testing.assert_allclose(plain.evaluate(x, y, verbose=0), float(expected), rtol=1e-5)


def test_elbo_serialises():
    elbo = bs.ELBO(
        bs.losses.WeightedBinaryCrossentropy(pos_weight=60.0),
        bs.kl.Warmup(bs.kl.PerExample(100), steps=10),
        temperature=0.3,
        tempering="posterior",
        scale="per_example",
    )
    restored = bs.ELBO.from_config(elbo.get_config())
    assert restored.get_config() == elbo.get_config()


@pytest.mark.parametrize(
    "make,argument",
    [
        (lambda: bs.ELBO(lambda y, p: p, bs.kl.PerExample(1)), "likelihood"),
        (lambda: bs.ELBO(keras.losses.MeanSquaredError(), 0.01), "kl_scaling"),
        (
            lambda: bs.ELBO(keras.losses.MeanSquaredError(), bs.kl.PerExample(1), temperature=0),
            "temperature",
        ),
        (
            lambda: bs.ELBO(keras.losses.MeanSquaredError(), bs.kl.PerExample(1), tempering="x"),
            "tempering",
        ),
        (
            lambda: bs.ELBO(keras.losses.MeanSquaredError(), bs.kl.PerExample(1), scale="x"),
            "scale",
        ),
    ],
)
def test_bad_arguments(make, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make()


def test_model_without_bayesian_layers_is_rejected():
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    elbo = bs.ELBO(keras.losses.MeanSquaredError(), bs.kl.PerExample(10))
    with pytest.raises(ValueError, match="`model` must have Bayesian layers"):
        elbo.bind(plain)
    with pytest.raises(ValueError, match="not bound"):
        elbo(np.ones((2, 1)), np.ones((2, 1)))


# ------------------------------------------------------------ per-image losses
def _hand_dice(logits, y):
    """Soft Dice loss per image (smooth=1, foreground channel) from NumPy."""
    p = 1 / (1 + np.exp(-logits.astype(np.float64)[..., 0]))
    p, y = p.reshape(len(p), -1), y.reshape(len(y), -1).astype(np.float64)
    tp = (p * y).sum(1)
    return 1 - (2 * tp + 1) / (p.sum(1) + y.sum(1) + 1)


def test_per_image_likelihood_needs_elements_per_example():
    model, rng = _seg_model(8), np.random.default_rng(3)
    x = rng.normal(size=(4, 8, 8, 1)).astype("float32")
    y = (rng.random((4, 8, 8)) < 0.2).astype("float32")
    logits = model(x)
    dice = bs.ELBO(bs.losses.DiceLoss(), bs.kl.PerExample(50)).bind(model)
    with pytest.raises(ValueError, match=r"per-image loss.*elements_per_example=64"):
        dice.compute(model, y, logits, step=0)
    elbo = bs.ELBO(bs.losses.DiceLoss(), bs.kl.PerExample(50), elements_per_example=64).bind(model)
    terms = elbo.compute(model, y, logits, step=0)
    # Each Dice value is read as a per-pixel mean over 64 pixels: the logged
    # NLL is the mean Dice, and the KL weighs exactly as against a per-pixel
    # cross-entropy on the same 8x8 masks (1 / (N * 64)), not 64x more.
    dice_b = _hand_dice(logits.numpy(), y)
    np.testing.assert_allclose(float(terms.nll), dice_b.mean(), rtol=1e-5)
    np.testing.assert_allclose(terms.per_example_nll.numpy(), dice_b, rtol=1e-5)
    bce = bs.ELBO(bs.losses.WeightedBinaryCrossentropy(), bs.kl.PerExample(50)).bind(model)
    bce_terms = bce.compute(model, y, logits, step=0)
    np.testing.assert_allclose(float(terms.kl_weight), 1 / 50 / 64, rtol=1e-6)
    np.testing.assert_allclose(float(terms.kl_weight), float(bce_terms.kl_weight), rtol=1e-6)
    assert float(terms.elements_per_example) == 64.0
    # Per-example sample weights still apply; per-element ones cannot.
    w = np.array([0.0, 1.0, 2.0, 1.0], "float32")
    weighted = elbo.compute(model, y, logits, sample_weight=w, step=0)
    np.testing.assert_allclose(float(weighted.nll), (w * dice_b).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="Per-element sample weights"):
        elbo.compute(model, y, logits, sample_weight=np.ones((4, 8, 8)), step=0)


def test_explicit_elements_per_example_for_per_element_losses():
    model, rng = _seg_model(), np.random.default_rng(4)
    x = rng.normal(size=(3, 6, 6, 1)).astype("float32")
    y = (rng.random((3, 6, 6, 1)) < 0.2).astype("float32")
    logits = model(x)
    likelihood = bs.losses.WeightedBinaryCrossentropy(pos_weight=3.0)
    default = bs.ELBO(likelihood, bs.kl.PerExample(30)).compute(model, y, logits, step=0)
    same = bs.ELBO(likelihood, bs.kl.PerExample(30), elements_per_example=36)
    explicit = same.compute(model, y, logits, step=0)
    for a, b in zip(default, explicit, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    # Another E only changes the divisor: loss * E is the same.
    other = bs.ELBO(likelihood, bs.kl.PerExample(30), elements_per_example=9)
    np.testing.assert_allclose(
        float(other.compute(model, y, logits, step=0).loss) * 9,
        float(default.loss) * 36,
        rtol=1e-5,
    )
    restored = bs.ELBO.from_config(same.get_config())
    assert restored.elements_per_example == 36.0
    for bad in (0, -1.0, float("nan"), True, "64"):
        with pytest.raises(ValueError, match=r"`elements_per_example`.*Received"):
            bs.ELBO(likelihood, bs.kl.PerExample(30), elements_per_example=bad)


# --------------------------------------------------------------- sample weights
def test_numpy_sample_weights_equal_tensor_weights():
    model, rng = _seg_model(), np.random.default_rng(5)
    x = rng.normal(size=(4, 6, 6, 1)).astype("float32")
    y = (rng.random((4, 6, 6, 1)) < 0.2).astype("float32")
    bs.layers.set_sampling(model, "mean")
    logits = model(x)
    elbo = bs.ELBO(bs.losses.WeightedBinaryCrossentropy(pos_weight=3.0), bs.kl.PerExample(30))
    for w in (rng.random(4), rng.random((4, 6, 6))):
        from_numpy = elbo.compute(model, y, logits, sample_weight=w, step=0)
        from_tensor = elbo.compute(model, y, logits, sample_weight=tf.constant(w), step=0)
        np.testing.assert_allclose(float(from_numpy.loss), float(from_tensor.loss), rtol=1e-6)
    # Hand reference for per-example weights: weighted mean of the NLLs + KL term.
    w = rng.random(4)
    terms = elbo.compute(model, y, logits, sample_weight=w, step=0)
    plain = elbo.compute(model, y, logits, step=0)
    expected = (w * plain.per_example_nll.numpy()).mean() + float(plain.loss - plain.nll)
    np.testing.assert_allclose(float(terms.loss), expected, rtol=1e-5)
    # gradient_contributions accepts NumPy weights and agrees with tensors.
    a = bs.diagnostics.gradient_contributions(model, elbo, x, y, sample_weight=w)
    b = bs.diagnostics.gradient_contributions(model, elbo, x, y, sample_weight=tf.constant(w))
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-6)
    np.testing.assert_allclose(a.total.nll_norm, b.total.nll_norm, rtol=1e-5)
    np.testing.assert_allclose(a.loss, expected, rtol=1e-5)


@pytest.mark.parametrize("weights", ["last_only", "random"])
def test_plain_keras_model_weights_the_nll_only_like_bayesian_model(weights):
    model = _dense_model()
    plain = keras.Model(model.inputs[0], model.outputs[0])
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 3)).astype("float32")
    y = (rng.random((4, 1)) < 0.5).astype("float32")
    w = np.array([0, 0, 0, 1], "float32") if weights == "last_only" else rng.random(4)
    bs.layers.set_sampling(model, "mean")  # deterministic: the same logits in every call
    likelihood = bs.losses.WeightedBinaryCrossentropy(pos_weight=3.0)
    model.compile(optimizer="sgd", loss=bs.ELBO(likelihood, bs.kl.PerExample(8)))
    elbo = bs.ELBO(likelihood, bs.kl.PerExample(8)).bind(plain)
    plain.compile(optimizer="sgd", loss=elbo)
    kwargs = {"sample_weight": w, "batch_size": 4, "verbose": 0}
    bayes = model.evaluate(x, y, return_dict=True, **kwargs)
    loss = plain.evaluate(x, y, **kwargs)
    np.testing.assert_allclose(loss, bayes["loss"], rtol=1e-6, atol=1e-7)
    # Independent reference: weighted BCE mean + KL / N, the KL unweighted.
    z = model(x).numpy().astype(np.float64)
    bce = np.logaddexp(0, -z) * y + np.logaddexp(0, z) * (1 - y)
    nll = (w * (bce * (1 + 2 * y))[:, 0]).mean()
    expected = nll + float(bs.kl_divergence(model)) / 8
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(float(elbo(y, plain(x), sample_weight=w)), expected, rtol=1e-5)
    # Keras' generic Loss.__call__ would have scaled the KL by mean(w).
    generic = float(keras.losses.Loss.__call__(elbo, y, plain(x), sample_weight=w))
    kl_term = float(bs.kl_divergence(model)) / 8
    np.testing.assert_allclose(generic, nll + w.mean() * kl_term, rtol=1e-5)
