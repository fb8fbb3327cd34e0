"""The base of every Bayesian convolution: one class for every rank, estimator and direction.

:class:`BaseConv` holds everything rank-independent (argument checks,
posterior of the kernel, Flipout and reparameterization paths, output
shapes); the public layers (``conv1d.py``, ``conv2d.py``, ``conv3d.py``,
``conv2d_transpose.py``, ``conv3d_transpose.py``) are thin subclasses that
fix the rank, the estimator and whether the convolution is transposed, as
Keras' ``base_conv.py`` does for ``Conv1D/2D/3D``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from bayesseg._defaults import ESTIMATORS
from bayesseg._validation import argument_error, check_choice, check_int, check_int_tuple
from bayesseg.layers import base
from bayesseg.layers.base import BayesianLayer

__all__ = ["BaseConv"]


def _conv_length(length, kernel, stride, padding, dilation):
    if length is None:
        return None
    if padding == "same":
        return -(-length // stride)
    effective = (kernel - 1) * dilation + 1
    return max(-(-(length - effective + 1) // stride), 0)


def _deconv_length(length, kernel, stride, padding, output_padding, dilation):
    if length is None:
        return None
    kernel = kernel + (kernel - 1) * (dilation - 1)
    if output_padding is None:
        if padding == "valid":
            return length * stride + max(kernel - stride, 0)
        return length * stride
    pad = kernel // 2 if padding == "same" else 0
    return (length - 1) * stride + kernel - 2 * pad + output_padding


class BaseConv(BayesianLayer):
    """Bayesian N-D convolution (or transposed convolution) base class.

    The positional parameters follow Keras' ``BaseConv`` (``rank`` first);
    the Keras arguments a Bayesian layer does not support (``groups`` > 1,
    regularizers and constraints of the weights) must keep their default and
    raise ``ValueError`` otherwise; ``activity_regularizer`` goes to
    ``keras.layers.Layer``.

    Args:
        rank: int, 1, 2 or 3.
        filters: int > 0, number of output channels.
        kernel_size: int or tuple of ``rank`` ints.
        strides: int or tuple of ``rank`` ints. Default 1.
        padding: "valid" or "same" (case-insensitive). Default "valid".
        data_format: "channels_last" or "channels_first". Default: Keras'
            ``image_data_format()``.
        dilation_rate: int or tuple of ``rank`` ints. Default 1.
        groups: 1 only (grouped convolutions are not supported).
        activation: activation name or callable. Default None (logits).
        use_bias: bool. Default True.
        kernel_initializer: initializer of the kernel's posterior mean
            (Keras' default, "glorot_uniform").
        bias_initializer: initializer of the bias (or its posterior mean).
        kernel_regularizer, bias_regularizer, kernel_constraint,
            bias_constraint: None only.
        activity_regularizer: as ``keras.layers.Layer``.
        estimator: keyword-only, "flipout" or "reparameterization".
        transpose: keyword-only bool, a transposed convolution (kernel
            shape ``(*kernel_size, filters, in_channels)`` as Keras').
        output_padding: keyword-only, transposed only: int, tuple or None.
        **kwargs: :class:`~bayesseg.layers.base.BayesianLayer` arguments
            (keyword-only) and Keras layer arguments.

    Example:

    >>> from bayesseg.layers.base_conv import BaseConv
    >>> BaseConv(2, 4, 3, estimator="reparameterization").kernel_size
    (3, 3)
    """

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate=1,
        groups: int = 1,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        *,
        estimator: str = "flipout",
        transpose: bool = False,
        output_padding=None,
        **kwargs,
    ):
        base.check_unsupported(
            type(self).__name__,
            groups=(groups, 1),
            kernel_regularizer=(kernel_regularizer, None),
            bias_regularizer=(bias_regularizer, None),
            kernel_constraint=(kernel_constraint, None),
            bias_constraint=(bias_constraint, None),
        )
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.rank = rank
        self.filters = check_int("filters", filters)
        self.kernel_size = check_int_tuple("kernel_size", kernel_size, rank)
        self.strides = check_int_tuple("strides", strides, rank)
        self.dilation_rate = check_int_tuple("dilation_rate", dilation_rate, rank)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise argument_error(
                "dilation_rate",
                f"be 1 when `strides` exceed 1 (strides={self.strides})",
                dilation_rate,
            )
        self.padding = check_choice("padding", padding, ("valid", "same"), lower=True)
        self.data_format = check_choice(
            "data_format",
            data_format or keras.config.image_data_format(),
            ("channels_last", "channels_first"),
        )
        self.estimator = check_choice("estimator", estimator, ESTIMATORS)
        self.transpose = bool(transpose)
        if output_padding is not None:
            if not self.transpose:
                raise argument_error(
                    "output_padding",
                    "be None for a convolution that is not transposed",
                    output_padding,
                )
            output_padding = check_int_tuple("output_padding", output_padding, rank, minimum=0)
            if any(op >= s for op, s in zip(output_padding, self.strides, strict=True)):
                raise argument_error(
                    "output_padding",
                    f"be smaller than `strides` on every axis (strides={self.strides})",
                    output_padding,
                )
        self.output_padding = output_padding
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self._channel_axis = -1 if self.data_format == "channels_last" else 1

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != self.rank + 2:
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) expects inputs of "
                f"rank {self.rank + 2} (batch, {self.rank} spatial axes, channels). "
                f"Received: inputs shape={input_shape}"
            )
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"Layer {self.name!r} needs a known channel dimension. "
                f"Received: inputs shape={input_shape}"
            )
        if self.transpose:
            kernel_shape = self.kernel_size + (self.filters, channels)
        else:
            kernel_shape = self.kernel_size + (channels, self.filters)
        self.add_posterior("kernel", kernel_shape, self.kernel_initializer)
        if self.use_bias:
            if self.bayesian_bias:
                self.add_posterior("bias", (self.filters,), self.bias_initializer)
            else:
                self.bias = self.add_weight(
                    name="bias",
                    shape=(self.filters,),
                    initializer=self.bias_initializer,
                )
        self.build_noise_state()
        self.input_spec = keras.InputSpec(ndim=self.rank + 2, axes={self._channel_axis: channels})

    # ------------------------------------------------------------------- call
    def convolve(self, x, kernel):
        """The (transposed) convolution of channels_last ``x`` with ``kernel``."""
        if self.transpose:
            return keras.ops.conv_transpose(
                x,
                kernel,
                strides=self.strides,
                padding=self.padding,
                output_padding=self.output_padding,
                data_format="channels_last",
                dilation_rate=self.dilation_rate,
            )
        return keras.ops.conv(
            x,
            kernel,
            strides=self.strides,
            padding=self.padding,
            data_format="channels_last",
            dilation_rate=self.dilation_rate,
        )

    def _signs(self, x, channels, seed, stream):
        # One sign per example and channel, shared over the spatial axes (as
        # TFP's Flipout convolutions): per-pixel signs would not be a
        # perturbation of a shared kernel. ``x`` is channels_last here.
        ones = tf.ones([self.rank], tf.int32)
        shape = tf.concat([tf.shape(x)[:1], ones, [channels]], 0)
        return base.random_signs(shape, base.fold_in(seed, stream), x.dtype)

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        channels_first = self.data_format == "channels_first"
        if channels_first:
            # TensorFlow's CPU kernels only take channels_last; computing in
            # that layout everywhere keeps one code path for both formats.
            x = tf.transpose(x, [0, *range(2, self.rank + 2), 1])
        dtype = x.dtype
        loc = tf.cast(self.kernel_loc, dtype)
        seed = self.next_seed() if self.sampling_active else None
        if seed is None:
            outputs = self.convolve(x, loc)
        elif self.estimator == "reparameterization" or self.shared_sample:
            delta = self.sample_weight_noise("kernel", seed, base.STREAM_KERNEL, dtype)
            outputs = self.convolve(x, loc + delta)
        else:
            delta = self.sample_weight_noise("kernel", seed, base.STREAM_KERNEL, dtype)
            sign_in = self._signs(x, x.shape[-1], seed, base.STREAM_SIGN_IN)
            sign_out = self._signs(x, self.filters, seed, base.STREAM_SIGN_OUT)
            outputs = self.convolve(x, loc) + self.convolve(x * sign_in, delta) * sign_out
        if self.use_bias:
            outputs = outputs + self.bias_value(dtype, seed)
        if self.activation is not None:
            outputs = self.activation(outputs)
        if channels_first:
            outputs = tf.transpose(outputs, [0, self.rank + 1, *range(1, self.rank + 1)])
        return outputs

    # ----------------------------------------------------------------- shapes
    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if self.data_format == "channels_last":
            spatial = input_shape[1:-1]
        else:
            spatial = input_shape[2:]
        if self.transpose:
            pads = self.output_padding or (None,) * self.rank
            out = tuple(
                _deconv_length(n, k, s, self.padding, p, d)
                for n, k, s, p, d in zip(
                    spatial,
                    self.kernel_size,
                    self.strides,
                    pads,
                    self.dilation_rate,
                    strict=True,
                )
            )
        else:
            out = tuple(
                _conv_length(n, k, s, self.padding, d)
                for n, k, s, d in zip(
                    spatial,
                    self.kernel_size,
                    self.strides,
                    self.dilation_rate,
                    strict=True,
                )
            )
        if self.data_format == "channels_last":
            return (input_shape[0],) + out + (self.filters,)
        return (input_shape[0], self.filters) + out

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        if self.transpose:
            config["output_padding"] = self.output_padding
        return config


class _KerasConv(BaseConv):
    """The signature of ``keras.layers.Conv1D``/``Conv2D``/``Conv3D`` over :class:`BaseConv`.

    The public classes (``conv1d.py``, ``conv2d.py``, ``conv3d.py``) set
    ``rank`` and ``estimator``; an int stands for the same value on every
    axis, as in Keras.
    """

    rank: int = 0
    estimator: str = ""

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
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
            self.rank,
            filters,
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            groups,
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            activity_regularizer,
            kernel_constraint,
            bias_constraint,
            estimator=self.estimator,
            **kwargs,
        )
