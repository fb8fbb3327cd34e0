"""Bayesian LSTM cells (Flipout, reparameterization) with per-sequence noise.

A cell (:class:`LSTMCellFlipout`, :class:`LSTMCellReparameterization`) is
the :class:`~bayesseg.layers.base.BayesianLayer` of a Bayesian LSTM: it holds
the posteriors of ``kernel``, ``recurrent_kernel`` (and optionally ``bias``)
in ``keras.layers.LSTMCell``'s layout and gate order (i, f, c, o), and draws
the weight noise once per call for the whole sequence, from the hook Keras'
``RNN`` calls once before its loop (the one Keras uses for per-sequence
dropout masks). The layers that run these cells fast are in ``lstm.py``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Keras' RNN calls the per-sequence hooks (get_dropout_mask, ...) only on
# instances of this mixin, and Keras exports no public name for it.
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

from bayesseg import priors as priors_lib
from bayesseg._defaults import DEFAULT_RECURRENT_SCALE_MULTIPLIER
from bayesseg._validation import check_int
from bayesseg.layers import base
from bayesseg.layers.base import BayesianLayer

__all__ = ["LSTMCellFlipout", "LSTMCellReparameterization"]


class _SequenceNoise:
    """The weights of one call, shared by every timestep.

    ``kernel``, ``recurrent_kernel`` and ``bias`` are the weight set used for
    the whole batch (a draw, or the posterior mean under Flipout). Under
    Flipout the ``*_delta`` perturbations and the per-sequence sign vectors
    are set too: example ``b`` then sees ``delta * outer(sign_in[b],
    sign_out[b])`` added to the mean.
    """

    __slots__ = (
        "kernel",
        "recurrent_kernel",
        "bias",
        "kernel_delta",
        "sign_in",
        "sign_out",
        "recurrent_delta",
        "recurrent_sign_in",
        "recurrent_sign_out",
    )

    def __init__(self, kernel, recurrent_kernel, bias, **flipout):
        self.kernel = kernel
        self.recurrent_kernel = recurrent_kernel
        self.bias = bias
        for name in self.__slots__[3:]:
            setattr(self, name, flipout.get(name))

    @property
    def flipout(self) -> bool:
        return self.kernel_delta is not None


def _project(x, kernel):
    """``x @ kernel`` over the last axis, one 2D matmul for any leading axes."""
    if x.shape.rank == 2:
        return tf.matmul(x, kernel)
    lead = tf.shape(x)[:-1]
    flat = tf.reshape(x, [-1, tf.shape(x)[-1]])
    out = tf.matmul(flat, kernel)
    return tf.reshape(out, tf.concat([lead, tf.shape(kernel)[-1:]], 0))


def _per_time(signs, x, time_major=False):
    """Broadcast per-sequence signs ``(batch, n)`` over the time axis of ``x``."""
    if x.shape.rank == 2:
        return signs
    return signs[None] if time_major else signs[:, None, :]


class BaseLSTMCell(BayesianLayer, DropoutRNNCell):
    """One LSTM timestep with Bayesian weights; subclasses set ``estimator``.

    Holds the posteriors (``kernel_loc``/``kernel_rho`` of shape
    ``(input_dim, 4 * units)``, ``recurrent_kernel_loc``/``_rho`` of shape
    ``(units, 4 * units)``) and the bias ``(4 * units,)``, in the layout and
    gate order (i, f, c, o) of ``keras.layers.LSTMCell``.

    The positional parameters are ``keras.layers.LSTMCell``'s, in its order;
    regularizers, constraints and dropout must keep their default (the
    weight noise is the regularizer) and raise ``ValueError`` otherwise.
    ``seed`` is the noise seed of the layer (Keras': the dropout seed). The
    other Bayesian arguments are keyword-only.
    """

    estimator: str = ""
    # Recurrent noise compounds over the sequence: scales that move 5x (not
    # 20x) the learning rate, and a prior as wide as He initialisation per
    # weight tensor, so the recurrent kernel's noise stays bounded while the
    # input kernel over few features may stay large (docs/uncertainty.md).
    default_scale_multiplier = DEFAULT_RECURRENT_SCALE_MULTIPLIER

    def default_prior(self):
        """``FanInNormal()``: ``sqrt(2 / fan_in)`` per weight tensor."""
        return priors_lib.FanInNormal()

    def __init__(
        self,
        units: int,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        base.check_unsupported(
            type(self).__name__,
            kernel_regularizer=(kernel_regularizer, None),
            recurrent_regularizer=(recurrent_regularizer, None),
            bias_regularizer=(bias_regularizer, None),
            kernel_constraint=(kernel_constraint, None),
            recurrent_constraint=(recurrent_constraint, None),
            bias_constraint=(bias_constraint, None),
            dropout=(dropout, 0.0),
            recurrent_dropout=(recurrent_dropout, 0.0),
        )
        super().__init__(seed=seed, **kwargs)
        self.units = check_int("units", units)
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.state_size = [self.units, self.units]
        self.output_size = self.units
        # Set by the LSTM layer that owns the cell (not part of the config).
        self.reads_backwards = False
        self._sequence_noise = None

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"Layer {self.name!r} needs a known feature dimension. "
                f"Received: inputs shape={tuple(input_shape)}"
            )
        four = 4 * self.units
        self.add_posterior("kernel", (input_dim, four), self.kernel_initializer)
        self.add_posterior("recurrent_kernel", (self.units, four), self.recurrent_initializer)
        if self.use_bias:
            initializer = self.bias_initializer
            if self.unit_forget_bias:
                initializer = self._forget_bias_initializer
            if self.bayesian_bias:
                self.add_posterior("bias", (four,), initializer)
            else:
                self.bias = self.add_weight(name="bias", shape=(four,), initializer=initializer)
        self.build_noise_state()

    def _forget_bias_initializer(self, shape, dtype=None):
        units = self.units
        return tf.concat(
            [
                self.bias_initializer((units,), dtype=dtype),
                tf.ones((units,), dtype=dtype),
                self.bias_initializer((2 * units,), dtype=dtype),
            ],
            0,
        )

    # ------------------------------------------------------------------ noise
    def draw_sequence_noise(self, step_input) -> _SequenceNoise:
        """Draw the weights of one call from a ``(batch, features)`` input.

        Advances the noise counter once (when sampling). The result is used
        for every timestep of the batch's sequences.
        """
        x = tf.convert_to_tensor(step_input)
        dtype = x.dtype
        kernel = tf.cast(self.kernel_loc, dtype)
        recurrent = tf.cast(self.recurrent_kernel_loc, dtype)
        if not self.sampling_active:
            bias = self.bias_value(dtype, None) if self.use_bias else None
            return _SequenceNoise(kernel, recurrent, bias)
        seed = self.next_seed()
        if self.reads_backwards:
            seed = base.fold_in(seed, base.STREAM_BACKWARD)
        bias = self.bias_value(dtype, seed) if self.use_bias else None
        kernel_delta = self.sample_weight_noise("kernel", seed, base.STREAM_KERNEL, dtype)
        recurrent_delta = self.sample_weight_noise(
            "recurrent_kernel", seed, base.STREAM_RECURRENT_KERNEL, dtype
        )
        if self.estimator == "reparameterization" or self.shared_sample:
            return _SequenceNoise(kernel + kernel_delta, recurrent + recurrent_delta, bias)
        batch = tf.shape(x)[:1]
        four = [4 * self.units]

        def signs(width, stream):
            return base.random_signs(
                tf.concat([batch, width], 0), base.fold_in(seed, stream), dtype
            )

        return _SequenceNoise(
            kernel,
            recurrent,
            bias,
            kernel_delta=kernel_delta,
            sign_in=signs(tf.shape(x)[1:], base.STREAM_SIGN_IN),
            sign_out=signs(four, base.STREAM_SIGN_OUT),
            recurrent_delta=recurrent_delta,
            recurrent_sign_in=signs([self.units], base.STREAM_RECURRENT_SIGN_IN),
            recurrent_sign_out=signs(four, base.STREAM_RECURRENT_SIGN_OUT),
        )

    # Keras' RNN calls these hooks once per call, before and after its loop
    # (they exist for per-sequence dropout masks): the weight noise is drawn
    # there, so a cell inside a plain ``keras.layers.RNN`` also draws once per
    # sequence.
    def get_dropout_mask(self, step_input):
        self._sequence_noise = self.draw_sequence_noise(step_input)

    def get_recurrent_dropout_mask(self, step_input):
        return None

    def reset_dropout_mask(self):
        self._sequence_noise = None

    def reset_recurrent_dropout_mask(self):
        return None

    def sequence_noise(self, step_input) -> _SequenceNoise:
        """The noise of the current call, drawn now if no loop prepared it."""
        if self._sequence_noise is None:
            return self.draw_sequence_noise(step_input)
        return self._sequence_noise

    # ------------------------------------------------------------------- math
    def project_inputs(self, inputs, noise: _SequenceNoise, time_major: bool = False):
        """Input part of the gates, ``x W + b``, for ``(batch, [time,] features)``.

        With a sequence (``(time, batch, features)`` if ``time_major``) this
        is one matmul for all timesteps (two under Flipout, for the mean and
        the sign-flipped perturbation).
        """
        z = _project(inputs, noise.kernel)
        if noise.flipout:
            flipped = inputs * _per_time(noise.sign_in, inputs, time_major)
            delta = _project(flipped, noise.kernel_delta)
            z += delta * _per_time(noise.sign_out, inputs, time_major)
        if noise.bias is not None:
            z += noise.bias
        return z

    def recurrent_step(self, projected, states, noise: _SequenceNoise):
        """One timestep from the projected input ``(batch, 4 * units)``."""
        h, c = states[0], states[1]
        z = projected + tf.matmul(h, noise.recurrent_kernel)
        if noise.flipout:
            z += (
                tf.matmul(h * noise.recurrent_sign_in, noise.recurrent_delta)
                * noise.recurrent_sign_out
            )
        z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        c = f * c + i * self.activation(z_c)
        o = self.recurrent_activation(z_o)
        h = o * self.activation(c)
        return h, [h, c]

    def call(self, inputs, states):
        noise = self.sequence_noise(inputs)
        return self.recurrent_step(self.project_inputs(inputs, noise), states, noise)

    def get_initial_state(self, batch_size=None):
        return [keras.ops.zeros((batch_size, d), dtype=self.compute_dtype) for d in self.state_size]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "unit_forget_bias": self.unit_forget_bias,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="bayesseg")
class LSTMCellFlipout(BaseLSTMCell):
    """Bayesian LSTM cell, Flipout estimator (Wen et al. 2018).

    One perturbation of ``kernel`` and ``recurrent_kernel`` per call,
    decorrelated per sequence by sign vectors drawn once per sequence. Inside
    ``keras.layers.RNN`` the draw happens once before the loop, so every
    timestep of a sequence sees the same weights. :class:`LSTMFlipout` is the
    faster way to run it (input projection outside the loop).

    Args:
        units: int > 0, dimensionality of the output and of the state.
        activation: activation of the cell input and the output. Default "tanh".
        recurrent_activation: activation of the gates. Default "sigmoid".
        use_bias: bool. Default True.
        kernel_initializer: initializer of the posterior mean of ``kernel``.
        recurrent_initializer: initializer of the posterior mean of
            ``recurrent_kernel``. Default "orthogonal".
        bias_initializer: initializer of the bias (or its posterior mean).
        unit_forget_bias: bool, add 1 to the forget-gate bias at
            initialisation (as Keras). Default True.
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
            kernel_constraint, recurrent_constraint, bias_constraint: None
            only (``ValueError`` otherwise).
        dropout, recurrent_dropout: 0 only (the weight noise replaces them).
        seed: int, the noise seed (random when None, stored in the config).
        **kwargs: keyword-only :class:`~bayesseg.layers.base.BayesianLayer`
            arguments (``prior``, ``posterior_scale_init``,
            ``scale_multiplier``, ``bayesian_bias``, ``sampling``,
            ``kl_samples``) and Keras layer arguments.

    Call arguments: ``inputs`` ``(batch, features)`` and ``states``
    ``[h, c]``, each ``(batch, units)``. Returns ``h`` and ``[h, c]``.

    Example:

    >>> import keras, numpy as np
    >>> from bayesseg.layers.lstm_cell import LSTMCellFlipout
    >>> rnn = keras.layers.RNN(LSTMCellFlipout(4))
    >>> rnn(np.ones((2, 5, 3), "float32")).shape
    TensorShape([2, 4])
    """

    estimator = "flipout"


@keras.saving.register_keras_serializable(package="bayesseg")
class LSTMCellReparameterization(BaseLSTMCell):
    """Bayesian LSTM cell, reparameterization estimator.

    One weight set ``W = loc + scale * eps`` per call, shared by the batch and
    by every timestep (inside ``keras.layers.RNN`` it is drawn once before the
    loop). :class:`LSTMReparameterization` is the faster way to run it.

    Args:
        units: int > 0, dimensionality of the output and of the state.
        activation: activation of the cell input and the output. Default "tanh".
        recurrent_activation: activation of the gates. Default "sigmoid".
        use_bias: bool. Default True.
        kernel_initializer: initializer of the posterior mean of ``kernel``.
        recurrent_initializer: initializer of the posterior mean of
            ``recurrent_kernel``. Default "orthogonal".
        bias_initializer: initializer of the bias (or its posterior mean).
        unit_forget_bias: bool, add 1 to the forget-gate bias at
            initialisation (as Keras). Default True.
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
            kernel_constraint, recurrent_constraint, bias_constraint: None
            only (``ValueError`` otherwise).
        dropout, recurrent_dropout: 0 only (the weight noise replaces them).
        seed: int, the noise seed (random when None, stored in the config).
        **kwargs: keyword-only :class:`~bayesseg.layers.base.BayesianLayer`
            arguments (``prior``, ``posterior_scale_init``,
            ``scale_multiplier``, ``bayesian_bias``, ``sampling``,
            ``kl_samples``) and Keras layer arguments.

    Call arguments: ``inputs`` ``(batch, features)`` and ``states``
    ``[h, c]``, each ``(batch, units)``. Returns ``h`` and ``[h, c]``.

    Example:

    >>> import keras, numpy as np
    >>> from bayesseg.layers.lstm_cell import LSTMCellReparameterization
    >>> rnn = keras.layers.RNN(LSTMCellReparameterization(4), return_sequences=True)
    >>> rnn(np.ones((2, 5, 3), "float32")).shape
    TensorShape([2, 5, 4])
    """

    estimator = "reparameterization"
