"""Bayesian densely-connected layers (Flipout, reparameterization, local)."""

from __future__ import annotations

import keras
import tensorflow as tf

from bayesseg._validation import check_int
from bayesseg.layers import base
from bayesseg.layers.base import BayesianLayer

__all__ = ["DenseFlipout", "DenseReparameterization", "DenseLocalReparameterization"]

_FLOAT32_TINY = 1.1754944e-38


class BaseDense(BayesianLayer):
    """Rank-independent Bayesian dense layer; subclasses set ``estimator``.

    Inputs of shape ``(batch, ..., input_dim)`` give outputs of shape
    ``(batch, ..., units)``, as ``keras.layers.Dense``. The posterior mean
    ``kernel_loc`` has Keras' kernel shape ``(input_dim, units)``.

    The positional parameters are ``keras.layers.Dense``'s, in its order;
    those a Bayesian layer does not support (regularizers and constraints of
    the weights, LoRA, quantization) must keep their default and raise
    ``ValueError`` otherwise. ``activity_regularizer`` goes to
    ``keras.layers.Layer``. The Bayesian arguments are keyword-only.
    """

    estimator: str = ""

    def __init__(
        self,
        units: int,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        lora_rank=None,
        lora_alpha=None,
        quantization_config=None,
        **kwargs,
    ):
        base.check_unsupported(
            type(self).__name__,
            kernel_regularizer=(kernel_regularizer, None),
            bias_regularizer=(bias_regularizer, None),
            kernel_constraint=(kernel_constraint, None),
            bias_constraint=(bias_constraint, None),
            lora_rank=(lora_rank, None),
            lora_alpha=(lora_alpha, None),
            quantization_config=(quantization_config, None),
        )
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = check_int("units", units)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                f"Layer {self.name!r} expects inputs of rank >= 2 (batch, ..., "
                f"features). Received: inputs shape={tuple(input_shape)}"
            )
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"Layer {self.name!r} needs a known last input dimension. "
                f"Received: inputs shape={tuple(input_shape)}"
            )
        self.add_posterior("kernel", (input_dim, self.units), self.kernel_initializer)
        if self.use_bias:
            if self.bayesian_bias:
                self.add_posterior("bias", (self.units,), self.bias_initializer)
            else:
                self.bias = self.add_weight(
                    name="bias", shape=(self.units,), initializer=self.bias_initializer
                )
        self.build_noise_state()
        self.input_spec = keras.InputSpec(min_ndim=2, axes={-1: input_dim})

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        dtype = x.dtype
        loc = tf.cast(self.kernel_loc, dtype)
        seed = self.next_seed() if self.sampling_active else None
        if seed is None:
            outputs = tf.matmul(x, loc) if x.shape.rank == 2 else _dense(x, loc)
        elif self.shared_sample:
            outputs = DenseReparameterization._sampled_outputs(self, x, loc, seed)
        else:
            outputs = self._sampled_outputs(x, loc, seed)
        if self.use_bias:
            outputs = outputs + self.bias_value(dtype, seed)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _sampled_outputs(self, x, loc, seed):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


def _dense(x, kernel):
    return tf.tensordot(x, kernel, axes=[[x.shape.rank - 1], [0]])


def _signs_shape(x, channels):
    """Shape of Flipout signs: one per example and channel, shared elsewhere."""
    return tf.concat([tf.shape(x)[:1], tf.ones([x.shape.rank - 2], tf.int32), [channels]], 0)


@keras.saving.register_keras_serializable(package="bayesseg")
class DenseReparameterization(BaseDense):
    """Bayesian dense layer, reparameterization estimator.

    One weight sample ``W = loc + scale * eps`` per call, shared by every
    example of the batch (Blundell et al. 2015). Cheapest per step; gradient
    variance does not fall with the batch size (use Flipout for that).

    Args:
        units: int, output dimension.
        activation: activation name or callable. Default None (logits).
        use_bias: bool. Default True.
        kernel_initializer: initializer of the posterior mean of the kernel.
        bias_initializer: initializer of the bias (or its posterior mean).
        **kwargs: :class:`~bayesseg.layers.base.BayesianLayer` arguments
            (``prior``, ``posterior_scale_init``, ``bayesian_bias``,
            ``sampling``, ``kl_samples``, ``seed``) and Keras layer arguments.

    Input shape: ``(batch, ..., input_dim)``. Output shape: ``(batch, ..., units)``.

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> layer = bs.layers.DenseReparameterization(4, activation="relu")
    >>> layer(np.ones((8, 16), "float32")).shape
    TensorShape([8, 4])
    """

    estimator = "reparameterization"

    def _sampled_outputs(self, x, loc, seed):
        kernel = loc + self.sample_weight_noise("kernel", seed, base.STREAM_KERNEL, x.dtype)
        return tf.matmul(x, kernel) if x.shape.rank == 2 else _dense(x, kernel)


@keras.saving.register_keras_serializable(package="bayesseg")
class DenseFlipout(BaseDense):
    """Bayesian dense layer, Flipout estimator (Wen et al. 2018).

    One weight perturbation ``dW = scale * eps`` per call, decorrelated per
    example by random sign vectors: ``y = x loc + ((x * s_in) dW) * s_out``.
    The gradient variance falls roughly as 1/batch; costs two matmuls.
    For inputs of rank > 2 (e.g. a per-timestep head) each example draws one
    sign per channel, shared over the other axes.

    Args:
        units: int, output dimension.
        activation: activation name or callable. Default None (logits).
        use_bias: bool. Default True.
        kernel_initializer: initializer of the posterior mean of the kernel.
        bias_initializer: initializer of the bias (or its posterior mean).
        **kwargs: :class:`~bayesseg.layers.base.BayesianLayer` arguments and
            Keras layer arguments.

    Input shape: ``(batch, ..., input_dim)``. Output shape: ``(batch, ..., units)``.

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> layer = bs.layers.DenseFlipout(4)
    >>> layer(np.ones((8, 16), "float32")).shape
    TensorShape([8, 4])
    """

    estimator = "flipout"

    def _sampled_outputs(self, x, loc, seed):
        delta = self.sample_weight_noise("kernel", seed, base.STREAM_KERNEL, x.dtype)
        sign_in = base.random_signs(
            _signs_shape(x, x.shape[-1]),
            base.fold_in(seed, base.STREAM_SIGN_IN),
            x.dtype,
        )
        sign_out = base.random_signs(
            _signs_shape(x, self.units),
            base.fold_in(seed, base.STREAM_SIGN_OUT),
            x.dtype,
        )
        if x.shape.rank == 2:
            return tf.matmul(x, loc) + tf.matmul(x * sign_in, delta) * sign_out
        return _dense(x, loc) + _dense(x * sign_in, delta) * sign_out


@keras.saving.register_keras_serializable(package="bayesseg")
class DenseLocalReparameterization(BaseDense):
    """Bayesian dense layer, local reparameterization (Kingma et al. 2015).

    Samples the pre-activations instead of the weights: with a mean-field
    Normal posterior, ``x W`` is Normal with mean ``x loc`` and variance
    ``x^2 scale^2``, so each output element draws its own noise. Independent
    per example (and per position for inputs of rank > 2, which treats a
    shared weight as if redrawn at every position: an approximation there).

    Args:
        units: int, output dimension.
        activation: activation name or callable. Default None (logits).
        use_bias: bool. Default True.
        kernel_initializer: initializer of the posterior mean of the kernel.
        bias_initializer: initializer of the bias (or its posterior mean).
        **kwargs: :class:`~bayesseg.layers.base.BayesianLayer` arguments and
            Keras layer arguments.

    Input shape: ``(batch, ..., input_dim)``. Output shape: ``(batch, ..., units)``.

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> layer = bs.layers.DenseLocalReparameterization(4)
    >>> layer(np.ones((8, 16), "float32")).shape
    TensorShape([8, 4])
    """

    estimator = "local_reparameterization"

    def _sampled_outputs(self, x, loc, seed):
        scale = tf.cast(self.posterior_scale("kernel"), x.dtype)
        if x.shape.rank == 2:
            mean, var = tf.matmul(x, loc), tf.matmul(tf.square(x), tf.square(scale))
        else:
            mean, var = _dense(x, loc), _dense(tf.square(x), tf.square(scale))
        eps = tf.random.stateless_normal(
            tf.shape(mean), base.fold_in(seed, base.STREAM_KERNEL), dtype=x.dtype
        )
        # The square root runs in float32 with a floor at the smallest normal
        # number, so an all-zero input row has a finite gradient (not 0 * inf).
        var32 = tf.cast(var, tf.float32)
        std = tf.cast(tf.sqrt(var32 + _FLOAT32_TINY), x.dtype)
        return mean + std * eps
