"""Bayesian 2D transposed convolutions, Flipout and reparameterization estimators.

Thin subclasses of :class:`~bayesseg.layers.base_conv.BaseConv` with the
signature of ``keras.layers.Conv2DTranspose``.
"""

from __future__ import annotations

import keras

from bayesseg.layers.base_conv import BaseConv

__all__ = ["Conv2DTransposeFlipout", "Conv2DTransposeReparameterization"]


class _Conv2DTranspose(BaseConv):
    """The signature of ``keras.layers.Conv2DTranspose`` over :class:`BaseConv`.

    The public subclasses fix the estimator.
    """

    estimator: str = ""

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            rank=2,
            filters=filters,
            kernel_size=kernel_size,
            strides=strides,
            padding=padding,
            output_padding=output_padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            estimator=self.estimator,
            transpose=True,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="bayesseg")
class Conv2DTransposeFlipout(_Conv2DTranspose):
    """Bayesian 2D transposed convolution, Flipout estimator.

    Flipout estimator (Wen et al. 2018): one kernel perturbation per call,
    decorrelated per example by random signs (one per example and channel):
    ``y = conv(x, loc) + conv(x * s_in, dW) * s_out``. Two convolutions per
    call; gradient variance falls roughly as 1/batch.

    Takes the positional arguments of ``keras.layers.Conv2DTranspose``, in its order; the
    posterior mean ``kernel_loc`` has that layer's kernel shape, so under
    ``sampling="mean"`` the output equals the Keras layer's with the same
    weights. The Bayesian arguments are keyword-only.

    Args:
        filters: int > 0, number of output channels.
        kernel_size: int or tuple of 2 ints.
        strides: int or tuple of 2 ints. Default 1.
        padding: "valid" or "same" (case-insensitive). Default "valid".
        output_padding: int, tuple of 2 ints or None. Default None.
        data_format: "channels_last" or "channels_first". Default: Keras'
            ``image_data_format()``.
        dilation_rate: int or tuple of 2 ints. Default 1.
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
    >>> layer = bs.layers.Conv2DTransposeFlipout(4, 3, 2, padding='same')
    >>> layer(np.ones((1, 8, 8, 2), "float32")).shape
    TensorShape([1, 16, 16, 4])
    """

    estimator = "flipout"


@keras.saving.register_keras_serializable(package="bayesseg")
class Conv2DTransposeReparameterization(_Conv2DTranspose):
    """Bayesian 2D transposed convolution, reparameterization estimator.

    Reparameterization estimator: one kernel sample ``loc + scale * eps``
    per call, shared by the whole batch. One convolution per call.

    Takes the positional arguments of ``keras.layers.Conv2DTranspose``, in its order; the
    posterior mean ``kernel_loc`` has that layer's kernel shape, so under
    ``sampling="mean"`` the output equals the Keras layer's with the same
    weights. The Bayesian arguments are keyword-only.

    Args:
        filters: int > 0, number of output channels.
        kernel_size: int or tuple of 2 ints.
        strides: int or tuple of 2 ints. Default 1.
        padding: "valid" or "same" (case-insensitive). Default "valid".
        output_padding: int, tuple of 2 ints or None. Default None.
        data_format: "channels_last" or "channels_first". Default: Keras'
            ``image_data_format()``.
        dilation_rate: int or tuple of 2 ints. Default 1.
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
    >>> layer = bs.layers.Conv2DTransposeReparameterization(4, 3, 2, padding='same')
    >>> layer(np.ones((1, 8, 8, 2), "float32")).shape
    TensorShape([1, 16, 16, 4])
    """

    estimator = "reparameterization"
