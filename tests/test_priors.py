"""Priors against independent references (Keras' fan computation, TFP, closed forms)."""

import math

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp
from keras.src.initializers.random_initializers import compute_fans

import bayesseg as bs
from bayesseg import layers as L

tfd = tfp.distributions


@pytest.mark.parametrize(
    "shape", [(5, 7), (3, 16, 32), (3, 3, 16, 32), (3, 3, 3, 8, 4), (1, 256), (64, 256)]
)
def test_fan_in_matches_keras_initializers(shape):
    assert bs.priors.fan_in(shape) == int(compute_fans(shape)[0])


def test_fan_in_normal_scale_and_kl_against_tfp():
    prior = bs.priors.FanInNormal()
    assert prior.scale((3, 3, 16, 32)) == pytest.approx(math.sqrt(2 / 144))
    assert prior.scale((1, 256)) == pytest.approx(math.sqrt(2))  # an LSTM over one feature
    assert prior.scale((32,)) == 1.0
    layer = L.Conv2DFlipout(
        8, 3, prior=bs.priors.FanInNormal(), bayesian_bias=True, posterior_scale_init=0.05, seed=3
    )
    layer(np.zeros((1, 6, 6, 4), "float32"))
    expected = 0.0
    for name, scale in (("kernel", math.sqrt(2 / 36)), ("bias", 1.0)):
        loc = layer.posterior_loc(name).numpy()
        q = tfd.Normal(loc, np.float32(0.05))
        expected += float(np.sum(tfd.kl_divergence(q, tfd.Normal(0.0, np.float32(scale)))))
    np.testing.assert_allclose(float(layer.kl_divergence()), expected, rtol=1e-5)


def test_fan_in_normal_serialises_and_validates():
    prior = bs.priors.FanInNormal(gain=1.0, bias_scale=0.5)
    config = keras.saving.serialize_keras_object(prior)
    again = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert isinstance(again, bs.priors.FanInNormal) and again.get_config() == prior.get_config()
    for kwargs, name in (({"gain": 0}, "gain"), ({"bias_scale": -1.0}, "bias_scale")):
        with pytest.raises(ValueError, match=f"`{name}`"):
            bs.priors.FanInNormal(**kwargs)
    with pytest.raises(ValueError, match="rank >= 2"):
        bs.priors.fan_in((4,))


def test_layers_saved_with_a_unit_prior_keep_it():
    # A layer config from before the default changed names its prior explicitly.
    layer = L.DenseFlipout(2, prior=1.0)
    config = layer.get_config()
    again = L.DenseFlipout.from_config(config)
    assert again.prior == bs.priors.Normal(1.0)


def test_default_priors():
    assert bs.priors.get(None) == bs.priors.Normal(0.1)
    assert L.Conv2DFlipout(2, 3).prior == bs.priors.Normal(0.1)
    assert L.DenseReparameterization(2).prior == bs.priors.Normal(0.1)
    # Recurrent cells bound each tensor's noise by its fan-in (docs/uncertainty.md).
    assert L.LSTMFlipout(2).cell.prior == bs.priors.FanInNormal()
    assert L.LSTMReparameterization(2, prior=0.3).cell.prior == bs.priors.Normal(0.3)
