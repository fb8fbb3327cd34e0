"""Bayesian convolutions: one base for every rank, estimator and direction.

:class:`BaseConv` holds everything rank-independent (argument checks,
posterior of the kernel, Flipout and reparameterization paths, output
shapes); the public layers are thin subclasses that fix ``rank``, the
estimator and whether the convolution is transposed, as Keras'
``base_conv.py`` does for ``Conv1D/2D/3D``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from bayesseg.layers import base
from bayesseg.layers.base import BayesianLayer

__all__ = [
    "Conv1DFlipout",
    "Conv2DFlipout",
    "Conv3DFlipout",
    "Conv1DReparameterization",
    "Conv2DReparameterization",
    "Conv3DReparameterization",
    "Conv2DTransposeFlipout",
    "Conv3DTransposeFlipout",
    "Conv2DTransposeReparameterization",
    "Conv3DTransposeReparameterization",
]

_ESTIMATORS = ("flipout", "reparameterization")


def _int_tuple(name: str, value, rank: int, allow_zero: bool = False) -> tuple[int, ...]:
    """Expand an int or a tuple of ``rank`` ints, with a clear error otherwise."""
    values = (value,) * rank if isinstance(value, int) else value
    try:
        values = tuple(values)
    except TypeError:
        values = None
    low = 0 if allow_zero else 1
    if (
        values is None
        or len(values) != rank
        or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in values)
    ):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(
            f"Argument `{name}` must be a {kind} integer or a tuple of {rank} "
            f"{kind} integers. Received: {name}={value!r}"
        )
    return values


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

    Args:
        rank: int, 1, 2 or 3.
        filters: int > 0, number of output channels.
        kernel_size: int or tuple of ``rank`` ints.
        strides: int or tuple of ``rank`` ints. Default 1.
        padding: "valid" or "same" (case-insensitive). Default "valid".
        data_format: "channels_last" or "channels_first". Default: Keras'
            ``image_data_format()``.
        dilation_rate: int or tuple of ``rank`` ints. Default 1.
        activation: activation name or callable. Default None (logits).
        use_bias: bool. Default True.
        kernel_initializer: initializer of the kernel's posterior mean
            (Keras' default, "glorot_uniform").
        bias_initializer: initializer of the bias (or its posterior mean).
        estimator: "flipout" or "reparameterization".
        transpose: bool, a transposed convolution (kernel shape
            ``(*kernel_size, filters, in_channels)`` as Keras').
        output_padding: transposed only: int, tuple or None.
        **kwargs: :class:`~bayesseg.layers.base.BayesianLayer` arguments.
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
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        estimator: str = "flipout",
        transpose: bool = False,
        output_padding=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rank = rank
        self.filters = base.check_positive_int("filters", filters)
        self.kernel_size = _int_tuple("kernel_size", kernel_size, rank)
        self.strides = _int_tuple("strides", strides, rank)
        self.dilation_rate = _int_tuple("dilation_rate", dilation_rate, rank)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "Arguments `strides` and `dilation_rate` cannot both exceed 1. "
                f"Received: strides={self.strides}, dilation_rate={self.dilation_rate}"
            )
        padding = padding.lower() if isinstance(padding, str) else padding
        if padding not in ("valid", "same"):
            raise ValueError(
                f"Argument `padding` must be 'valid' or 'same'. Received: padding={padding!r}"
            )
        self.padding = padding
        data_format = data_format or keras.config.image_data_format()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                "Argument `data_format` must be 'channels_last' or 'channels_first'. "
                f"Received: data_format={data_format!r}"
            )
        self.data_format = data_format
        if estimator not in _ESTIMATORS:
            raise ValueError(
                f"Argument `estimator` must be one of {_ESTIMATORS}. "
                f"Received: estimator={estimator!r}"
            )
        self.estimator = estimator
        self.transpose = bool(transpose)
        if output_padding is not None:
            if not self.transpose:
                raise ValueError(
                    "Argument `output_padding` applies to transposed convolutions "
                    f"only. Received: output_padding={output_padding!r}"
                )
            output_padding = _int_tuple("output_padding", output_padding, rank, True)
            for op, stride in zip(output_padding, self.strides, strict=True):
                if op >= stride:
                    raise ValueError(
                        "Argument `output_padding` must be smaller than `strides` "
                        f"on every axis. Received: output_padding={output_padding}, "
                        f"strides={self.strides}"
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
            delta = self.sample_weight_noise("kernel", seed, base._STREAM_KERNEL, dtype)
            outputs = self.convolve(x, loc + delta)
        else:
            delta = self.sample_weight_noise("kernel", seed, base._STREAM_KERNEL, dtype)
            sign_in = self._signs(x, x.shape[-1], seed, base._STREAM_SIGN_IN)
            sign_out = self._signs(x, self.filters, seed, base._STREAM_SIGN_OUT)
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


def _conv_class(name: str, rank: int, estimator: str, transpose: bool, doc: str):
    """Define a thin public subclass of :class:`BaseConv` with fixed rank/estimator."""

    def __init__(self, filters, kernel_size, **kwargs):
        BaseConv.__init__(
            self,
            rank=rank,
            filters=filters,
            kernel_size=kernel_size,
            estimator=estimator,
            transpose=transpose,
            **kwargs,
        )

    cls = type(name, (BaseConv,), {"__init__": __init__, "__doc__": doc})
    cls.__module__ = __name__
    return keras.saving.register_keras_serializable(package="bayesseg")(cls)


_ESTIMATOR_DOC = {
    "flipout": (
        "Flipout estimator (Wen et al. 2018): one kernel perturbation per call,\n"
        "    decorrelated per example by random signs (one per example and channel):\n"
        "    ``y = conv(x, loc) + conv(x * s_in, dW) * s_out``. Two convolutions per\n"
        "    call; gradient variance falls roughly as 1/batch."
    ),
    "reparameterization": (
        "Reparameterization estimator: one kernel sample ``loc + scale * eps``\n"
        "    per call, shared by the whole batch. One convolution per call."
    ),
}


def _doc(name: str, rank: int, estimator: str, transpose: bool) -> str:
    what = "transposed convolution" if transpose else "convolution"
    keras_twin = f"keras.layers.Conv{rank}D{'Transpose' if transpose else ''}"
    spatial = ", ".join(f"d{i + 1}" for i in range(rank))
    example_shape = (1, *(8,) * rank, 2)
    out_len = 16 if transpose else 6
    out_shape = (1, *(out_len,) * rank, 4)
    kwargs = ", strides=2, padding='same'" if transpose else ""
    extra = "        output_padding: int, tuple or None, as Keras.\n" if transpose else ""
    return f"""Bayesian {rank}D {what}, {estimator} estimator.

    {_ESTIMATOR_DOC[estimator]}

    Takes the arguments of ``{keras_twin}``; the posterior mean
    ``kernel_loc`` has that layer's kernel shape, so with a posterior scale
    near 0 (or ``sampling="mean"``) the output equals ``{keras_twin}``'s.

    Args:
        filters: int, number of output channels.
        kernel_size: int or tuple of {rank} ints.
        strides: int or tuple of {rank} ints. Default 1.
        padding: "valid" or "same". Default "valid".
        data_format: "channels_last" (default) or "channels_first".
        dilation_rate: int or tuple of {rank} ints. Default 1.
{extra}        activation: activation name or callable. Default None.
        use_bias: bool. Default True.
        kernel_initializer: initializer of the kernel's posterior mean.
        bias_initializer: initializer of the bias.
        **kwargs: ``prior``, ``posterior_scale_init``, ``bayesian_bias``,
            ``sampling``, ``kl_samples``, ``seed`` (see
            :class:`~bayesseg.layers.base.BayesianLayer`) and Keras layer
            arguments.

    Input shape: ``(batch, {spatial}, channels)`` (channels_last).
    Output shape: ``(batch, {spatial} (new), filters)``.

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> layer = bs.layers.{name}(4, 3{kwargs})
    >>> layer(np.ones({example_shape}, "float32")).shape
    TensorShape({list(out_shape)})
    """


_CLASSES = {}
for _rank in (1, 2, 3):
    for _estimator, _suffix in (
        ("flipout", "Flipout"),
        ("reparameterization", "Reparameterization"),
    ):
        for _transpose in (False, True):
            if _transpose and _rank == 1:
                continue
            _name = f"Conv{_rank}D{'Transpose' if _transpose else ''}{_suffix}"
            _CLASSES[_name] = _conv_class(
                _name,
                _rank,
                _estimator,
                _transpose,
                _doc(_name, _rank, _estimator, _transpose),
            )

Conv1DFlipout = _CLASSES["Conv1DFlipout"]
Conv2DFlipout = _CLASSES["Conv2DFlipout"]
Conv3DFlipout = _CLASSES["Conv3DFlipout"]
Conv1DReparameterization = _CLASSES["Conv1DReparameterization"]
Conv2DReparameterization = _CLASSES["Conv2DReparameterization"]
Conv3DReparameterization = _CLASSES["Conv3DReparameterization"]
Conv2DTransposeFlipout = _CLASSES["Conv2DTransposeFlipout"]
Conv3DTransposeFlipout = _CLASSES["Conv3DTransposeFlipout"]
Conv2DTransposeReparameterization = _CLASSES["Conv2DTransposeReparameterization"]
Conv3DTransposeReparameterization = _CLASSES["Conv3DTransposeReparameterization"]
