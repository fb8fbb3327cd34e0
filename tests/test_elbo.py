"""The ELBO against hand computations (TF ops and tfd.kl_divergence)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

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
            scale = np.log1p(np.exp(getattr(layer, f"{name}_rho").numpy()))
            prior = layer.prior
            total += float(
                tf.reduce_sum(
                    tfd.kl_divergence(tfd.Normal(loc, scale), tfd.Normal(prior.loc, prior.scale))
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
    with pytest.raises(ValueError, match="no Bayesian layers"):
        elbo.bind(plain)
    with pytest.raises(ValueError, match="not bound"):
        elbo(np.ones((2, 1)), np.ones((2, 1)))
