"""Bayesian 2D convolutions, Flipout and reparameterization estimators.

Thin subclasses of :class:`~bayesseg.layers.base_conv.BaseConv` with the
signature of ``keras.layers.Conv2D``.
"""

from __future__ import annotations

import keras

from bayesseg.layers.base_conv import _KerasConv

__all__ = ["Conv2DFlipout", "Conv2DReparameterization"]


@keras.saving.register_keras_serializable(package="bayesseg")
class Conv2DFlipout(_KerasConv):
    """Bayesian 2D convolution, Flipout estimator.

    Flipout estimator (Wen et al. 2018): one kernel perturbation per call,
    decorrelated per example by random signs (one per example and channel):
    ``y = conv(x, loc) + conv(x * s_in, dW) * s_out``. Two convolutions per
    call; gradient variance falls roughly as 1/batch.

    Takes the positional arguments of ``keras.layers.Conv2D``, in its order; the
    posterior mean ``kernel_loc`` has that layer's kernel shape, so under
    ``sampling="mean"`` the output equals the Keras layer's with the same
    weights. The Bayesian arguments are keyword-only.

    Args:
        filters: int > 0, number of output channels.
        kernel_size: int or tuple of 2 ints.
        strides: int or tuple of 2 ints. Default 1.
        padding: "valid" or "same" (case-insensitive). Default "valid".
        data_format: "channels_last" or "channels_first". Default: Keras'
            ``image_data_format()``.
        dilation_rate: int or tuple of 2 ints. Default 1.
        groups: 1 only (grouped convolutions are not supported).
        activation: activation name or callable. Default None (logits).
        use_bias: bool. Default True.
        kernel_initializer: initializer of the kernel's posterior mean.
            Default "glorot_uniform".
        bias_initializer: initializer of the bias (or its posterior mean).
        kernel_regularizer, bias_regularizer, kernel_constraint,
            bias_constraint: None only (``ValueError`` otherwise).
        activity_regularizer: as ``keras.layers.Layer``.
        **kwargs: keyword-only :class:`~bayesseg.layers.base.BayesianLayer`
            arguments (``prior``, ``posterior_scale_init``,
            ``scale_multiplier``, ``bayesian_bias``, ``sampling``,
            ``kl_samples``, ``seed``) and Keras layer arguments (``name``,
            ``dtype``...).

    Input shape: ``(batch, d1, d2, channels)`` (channels_last).
    Output shape: ``(batch, d1, d2 (new), filters)``.

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> layer = bs.layers.Conv2DFlipout(4, 3)
    >>> layer(np.ones((1, 8, 8, 2), "float32")).shape
    TensorShape([1, 6, 6, 4])
    """

    rank = 2
    estimator = "flipout"


@keras.saving.register_keras_serializable(package="bayesseg")
class Conv2DReparameterization(_KerasConv):
    """Bayesian 2D convolution, reparameterization estimator.

    Reparameterization estimator: one kernel sample ``loc + scale * eps``
    per call, shared by the whole batch. One convolution per call.

    Takes the positional arguments of ``keras.layers.Conv2D``, in its order; the
    posterior mean ``kernel_loc`` has that layer's kernel shape, so under
    ``sampling="mean"`` the output equals the Keras layer's with the same
    weights. The Bayesian arguments are keyword-only.

    Args:
        filters: int > 0, number of output channels.
        kernel_size: int or tuple of 2 ints.
        strides: int or tuple of 2 ints. Default 1.
        padding: "valid" or "same" (case-insensitive). Default "valid".
        data_format: "channels_last" or "channels_first". Default: Keras'
            ``image_data_format()``.
        dilation_rate: int or tuple of 2 ints. Default 1.
        groups: 1 only (grouped convolutions are not supported).
        activation: activation name or callable. Default None (logits).
        use_bias: bool. Default True.
        kernel_initializer: initializer of the kernel's posterior mean.
            Default "glorot_uniform".
        bias_initializer: initializer of the bias (or its posterior mean).
        kernel_regularizer, bias_regularizer, kernel_constraint,
            bias_constraint: None only (``ValueError`` otherwise).
        activity_regularizer: as ``keras.layers.Layer``.
        **kwargs: keyword-only :class:`~bayesseg.layers.base.BayesianLayer`
            arguments (``prior``, ``posterior_scale_init``,
            ``scale_multiplier``, ``bayesian_bias``, ``sampling``,
            ``kl_samples``, ``seed``) and Keras layer arguments (``name``,
            ``dtype``...).

    Input shape: ``(batch, d1, d2, channels)`` (channels_last).
    Output shape: ``(batch, d1, d2 (new), filters)``.

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> layer = bs.layers.Conv2DReparameterization(4, 3)
    >>> layer(np.ones((1, 8, 8, 2), "float32")).shape
    TensorShape([1, 6, 6, 4])
    """

    rank = 2
    estimator = "reparameterization"
