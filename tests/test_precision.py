"""XLA and mixed precision: a few training steps match float32 eager-graph training.

These run on the CPU in CI; the ``gpu``-marked twin runs the same check on a
GPU when one is present (Keras compiles with XLA by default there).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import bayesseg as bs


def _train(policy="float32", jit_compile=False, steps=3, sampling="mean"):
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(7)
        images, masks = bs.data.synthetic_lesions(8, shape=(16, 16), seed=3)
        model = bs.models.bayesian_unet((16, 16, 1), 1, base_filters=4, depth=2)
        bs.layers.set_sampling(model, sampling)
        optimizer = keras.optimizers.Adam(1e-3)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(
            optimizer=optimizer,
            loss=bs.ELBO(
                bs.losses.WeightedBinaryCrossentropy(pos_weight=20.0), bs.kl.PerExample(8)
            ),
            jit_compile=jit_compile,
        )
        history = model.fit(images, masks, batch_size=8, epochs=steps, shuffle=False, verbose=0)
        logits = model.predict(images, verbose=0)
        return history.history, logits, model
    finally:
        keras.config.set_dtype_policy("float32")


def _compare(policy, jit_compile, loss_rtol, logit_atol):
    reference, ref_logits, _ = _train()
    logs, logits, model = _train(policy, jit_compile)
    assert logits.dtype == np.float32  # the head computes in float32
    for key in ("loss", "nll", "kl", "kl_weight"):
        assert np.all(np.isfinite(logs[key]))
        np.testing.assert_allclose(logs[key], reference[key], rtol=loss_rtol)
    np.testing.assert_allclose(logits, ref_logits, atol=logit_atol)
    kl = bs.kl_divergence(model)
    assert kl.dtype == tf.float32


@pytest.mark.slow
@pytest.mark.parametrize(
    "policy,jit_compile,loss_rtol,logit_atol",
    [
        ("float32", True, 1e-5, 1e-4),
        ("mixed_bfloat16", False, 2e-2, 0.15),
        ("mixed_float16", False, 2e-3, 2e-2),
    ],
)
def test_xla_and_mixed_precision_match_float32(policy, jit_compile, loss_rtol, logit_atol):
    _compare(policy, jit_compile, loss_rtol, logit_atol)


@pytest.mark.slow
def test_sampled_training_under_xla_is_finite():
    logs, logits, _ = _train("float32", True, sampling="sample")
    assert all(np.all(np.isfinite(v)) for v in logs.values())
    assert np.all(np.isfinite(logits))


@pytest.mark.gpu
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_gpu_mixed_precision_with_xla_matches_float32(policy):
    _compare(policy, True, 2e-2, 0.15)
