"""Bayesian LSTM layers (Flipout, reparameterization) with per-sequence noise.

The split follows Keras: a cell (:class:`LSTMCellFlipout`,
:class:`LSTMCellReparameterization`) is the :class:`BayesianLayer` that holds
the posteriors of ``kernel``, ``recurrent_kernel`` (and optionally ``bias``),
in ``keras.layers.LSTM``'s layout and gate order (i, f, c, o); the layer
(:class:`LSTMFlipout`, :class:`LSTMReparameterization`) is a
``keras.layers.RNN`` that owns the loop and holds no posterior of its own, so
``bs.kl_divergence`` counts each LSTM once.

Weight noise is drawn once per call for the whole sequence, never per
timestep: the cell draws it from the hook Keras' ``RNN`` calls once before its
loop (the hook Keras uses for per-sequence dropout masks) and forgets it after
the loop. Under Flipout the layer computes the input projection of every
timestep in one matmul outside the recurrence and keeps only the recurrent
projection in the loop; a single weight set (reparameterization,
``sampling="shared"`` or ``"mean"``) goes to Keras' fused LSTM (cuDNN on a
GPU) when the arguments allow, else to a loop shaped like Keras' own.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras.src.backend.tensorflow.rnn import lstm as fused_lstm
from keras.src.backend.tensorflow.rnn import rnn as backend_rnn
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

from bayesseg import priors as priors_lib
from bayesseg._defaults import (
    DEFAULT_POSTERIOR_SCALE_INIT,
    DEFAULT_RECURRENT_SCALE_MULTIPLIER,
)
from bayesseg.layers import base
from bayesseg.layers.base import BayesianLayer

__all__ = [
    "LSTMCellFlipout",
    "LSTMCellReparameterization",
    "LSTMFlipout",
    "LSTMReparameterization",
]

# Noise streams of the recurrent kernel (the base uses 0-4), and the stream
# folded into the seed of a layer that reads its sequence backwards, so the
# two directions of a ``Bidirectional`` wrapper (same config, same seed) draw
# different noise.
_STREAM_RECURRENT_KERNEL = 5
_STREAM_RECURRENT_SIGN_IN = 6
_STREAM_RECURRENT_SIGN_OUT = 7
_STREAM_BACKWARD = 8


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
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = base.check_positive_int("units", units)
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
            seed = base.fold_in(seed, _STREAM_BACKWARD)
        bias = self.bias_value(dtype, seed) if self.use_bias else None
        kernel_delta = self.sample_weight_noise("kernel", seed, base._STREAM_KERNEL, dtype)
        recurrent_delta = self.sample_weight_noise(
            "recurrent_kernel", seed, _STREAM_RECURRENT_KERNEL, dtype
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
            sign_in=signs(tf.shape(x)[1:], base._STREAM_SIGN_IN),
            sign_out=signs(four, base._STREAM_SIGN_OUT),
            recurrent_delta=recurrent_delta,
            recurrent_sign_in=signs([self.units], _STREAM_RECURRENT_SIGN_IN),
            recurrent_sign_out=signs(four, _STREAM_RECURRENT_SIGN_OUT),
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
        **kwargs: :class:`~bayesseg.layers.base.BayesianLayer` arguments
            (``prior``, ``posterior_scale_init``, ``bayesian_bias``,
            ``sampling``, ``kl_samples``, ``seed``) and Keras layer arguments.

    Call arguments: ``inputs`` ``(batch, features)`` and ``states``
    ``[h, c]``, each ``(batch, units)``. Returns ``h`` and ``[h, c]``.

    Example:

    >>> import keras, numpy as np
    >>> from bayesseg.layers.lstm import LSTMCellFlipout
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
        **kwargs: :class:`~bayesseg.layers.base.BayesianLayer` arguments
            (``prior``, ``posterior_scale_init``, ``bayesian_bias``,
            ``sampling``, ``kl_samples``, ``seed``) and Keras layer arguments.

    Call arguments: ``inputs`` ``(batch, features)`` and ``states``
    ``[h, c]``, each ``(batch, units)``. Returns ``h`` and ``[h, c]``.

    Example:

    >>> import keras, numpy as np
    >>> from bayesseg.layers.lstm import LSTMCellReparameterization
    >>> rnn = keras.layers.RNN(LSTMCellReparameterization(4), return_sequences=True)
    >>> rnn(np.ones((2, 5, 3), "float32")).shape
    TensorShape([2, 5, 4])
    """

    estimator = "reparameterization"


_CELL_ARGS = (
    "units",
    "activation",
    "recurrent_activation",
    "use_bias",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "unit_forget_bias",
    "prior",
    "posterior_scale_init",
    "bayesian_bias",
    "sampling",
    "kl_samples",
    "seed",
    "scale_multiplier",
)


class BaseLSTM(keras.layers.RNN):
    """Bayesian LSTM layer; subclasses set ``cell_class``.

    Not itself a :class:`BayesianLayer`: its cell holds the posteriors, so
    ``bs.kl_divergence`` finds each LSTM exactly once.
    """

    cell_class: type[BaseLSTMCell] = BaseLSTMCell

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
        prior=None,
        posterior_scale_init: float = DEFAULT_POSTERIOR_SCALE_INIT,
        bayesian_bias: bool = False,
        sampling: str = "sample",
        kl_samples: int = 1,
        seed: int | None = None,
        scale_multiplier: float = DEFAULT_RECURRENT_SCALE_MULTIPLIER,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        use_cudnn="auto",
        **kwargs,
    ):
        if use_cudnn not in ("auto", True, False):
            raise ValueError(
                "Argument `use_cudnn` must be one of 'auto', True, False. "
                f"Received: use_cudnn={use_cudnn!r}"
            )
        cell = self.cell_class(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            prior=prior,
            posterior_scale_init=posterior_scale_init,
            bayesian_bias=bayesian_bias,
            sampling=sampling,
            kl_samples=kl_samples,
            seed=seed,
            scale_multiplier=scale_multiplier,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="lstm_cell",
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )
        cell.reads_backwards = bool(go_backwards)
        self.use_cudnn = use_cudnn

    def build(self, sequences_shape, initial_state_shape=None):
        _check_sequences_shape(self, sequences_shape)
        super().build(sequences_shape, initial_state_shape)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        _check_sequences_shape(self, sequences.shape)
        return super().call(sequences, initial_state=initial_state, mask=mask, training=training)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        cell = self.cell
        noise = cell.sequence_noise(sequences[:, 0, :])
        if not noise.flipout and self.use_cudnn in ("auto", True):
            try:
                # Raises NotImplementedError off GPU or for unsupported
                # arguments; then the loop below runs.
                return fused_lstm(
                    sequences,
                    initial_state[0],
                    initial_state[1],
                    mask,
                    kernel=noise.kernel,
                    recurrent_kernel=noise.recurrent_kernel,
                    bias=noise.bias,
                    activation=cell.activation,
                    recurrent_activation=cell.recurrent_activation,
                    return_sequences=self.return_sequences,
                    go_backwards=self.go_backwards,
                    unroll=self.unroll,
                )
            except NotImplementedError:
                pass
        if self.use_cudnn is True:
            raise ValueError(
                "use_cudnn=True was specified, but cuDNN is not available for "
                "this layer configuration (it needs a GPU, a single weight set "
                "per call, tanh/sigmoid activations, a bias and no unrolling). "
                "Pass use_cudnn='auto' to fall back to the loop."
            )
        timesteps = sequences.shape[1]
        sequences = tf.transpose(sequences, [1, 0, 2])
        if mask is not None:
            mask = tf.transpose(mask, [1, 0] + list(range(2, mask.shape.rank)))
        if noise.flipout:
            # Flipout: the input projection of all timesteps (mean and
            # sign-flipped perturbation) is one matmul each, before the loop;
            # time-major from the start, so the (time, batch, 4 * units)
            # projection is never transposed.
            loop_inputs = cell.project_inputs(sequences, noise, time_major=True)

            def step(projected_t, states):
                return cell.recurrent_step(projected_t, states, noise)

        else:
            # One weight set off GPU: project inside the loop, as Keras' own
            # fallback does. Measured on CPU (2 cores, batch 32, 64 units,
            # length 4096), precomputing the (time, batch, 4 * units)
            # projection made the train step of one layer 2x slower than
            # Keras (memory traffic); projecting in the loop matched Keras.
            loop_inputs = sequences

            def step(x_t, states):
                return cell.recurrent_step(cell.project_inputs(x_t, noise), states, noise)

        last_output, outputs, states = backend_rnn(
            step,
            loop_inputs,
            list(initial_state),
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=timesteps,
            time_major=True,
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )
        return last_output, tf.transpose(outputs, [1, 0, 2]), states

    # ----------------------------------------------------- cell's attributes
    def kl_divergence(self, num_samples: int | None = None) -> tf.Tensor:
        """The unscaled KL divergence of the layer (its cell's posteriors)."""
        return self.cell.kl_divergence(num_samples)

    def kl_terms(self, num_samples: int | None = None):
        """``(cross_entropy, entropy)`` of the cell's posteriors (see the base)."""
        return self.cell.kl_terms(num_samples)

    @property
    def sampling(self) -> str:
        """The cell's sampling mode ("sample", "shared" or "mean")."""
        return self.cell.sampling

    @sampling.setter
    def sampling(self, mode: str) -> None:
        self.cell.sampling = base.check_sampling(mode)

    @property
    def kernel_loc(self):
        return self.cell.kernel_loc

    @property
    def kernel_rho(self):
        return self.cell.kernel_rho

    @property
    def recurrent_kernel_loc(self):
        return self.cell.recurrent_kernel_loc

    @property
    def recurrent_kernel_rho(self):
        return self.cell.recurrent_kernel_rho

    @property
    def bias(self):
        return self.cell.bias

    @property
    def units(self) -> int:
        return self.cell.units

    def get_config(self):
        cell_config = self.cell.get_config()
        config = super().get_config()
        del config["cell"]
        config.update({name: cell_config[name] for name in _CELL_ARGS})
        config["use_cudnn"] = self.use_cudnn
        return config

    @classmethod
    def from_config(cls, config):
        # Files saved before ``scale_multiplier`` existed hold rho itself.
        return cls(**{"scale_multiplier": 1.0, **config})


def _check_sequences_shape(layer, shape) -> None:
    if len(shape) != 3:
        raise ValueError(
            f"Argument `sequences` of layer {layer.name!r} must have rank 3 "
            f"(batch, timesteps, features). Received: sequences.shape={tuple(shape)}"
        )


@keras.saving.register_keras_serializable(package="bayesseg")
class LSTMFlipout(BaseLSTM):
    """Bayesian LSTM, Flipout estimator, with weights drawn once per sequence.

    Each call draws one perturbation ``dW`` of ``kernel`` and one ``dR`` of
    ``recurrent_kernel``, plus sign vectors per sequence; every timestep of a
    sequence sees the same weights, while sequences of the batch are
    decorrelated. The input projection of all timesteps,
    ``x W_loc + ((x * s_in) dW) * s_out + b``, is one matmul outside the loop;
    the loop computes ``h R_loc + ((h * r_in) dR) * r_out``. Under
    ``sampling="shared"`` or ``"mean"`` it runs like
    :class:`LSTMReparameterization`. At posterior scale 0 it equals
    ``keras.layers.LSTM`` with ``kernel_loc``, ``recurrent_kernel_loc`` and
    ``bias``.

    Args:
        units: int > 0, dimensionality of the output and of the state.
        activation: activation of the cell input and the output. Default "tanh".
        recurrent_activation: activation of the gates. Default "sigmoid".
        use_bias: bool. Default True.
        kernel_initializer: initializer of the posterior mean of ``kernel``
            ``(features, 4 * units)``. Default "glorot_uniform".
        recurrent_initializer: initializer of the posterior mean of
            ``recurrent_kernel`` ``(units, 4 * units)``. Default "orthogonal".
        bias_initializer: initializer of the bias ``(4 * units,)``.
        unit_forget_bias: bool, add 1 to the forget-gate bias at
            initialisation. Default True.
        prior: prior of the weights (see ``BayesianLayer``). Default
            ``FanInNormal()``, ``sqrt(2 / fan_in)`` per weight tensor: 0.18
            for the recurrent kernel of 64 units, 1.41 for the input kernel
            over one feature (the dense and conv layers default to
            ``Normal(0.1)``; docs/uncertainty.md says why).
        posterior_scale_init: float > 0, initial posterior scale. Default 0.01.
        scale_multiplier: float > 0, ``scale = softplus(c * rho)`` (see
            ``BayesianLayer``). Default 5, not the dense layers' 20: faster
            scales widen the recurrent noise before the means have learned,
            and it compounds over the sequence (docs/uncertainty.md).
        bayesian_bias: bool, Normal posterior on the bias too. Default False.
        sampling: "sample" (default), "shared" or "mean".
        kl_samples: int, Monte Carlo samples for priors without closed form.
        seed: int, the noise seed (random when None, stored in the config).
        return_sequences: bool, return the whole output sequence. Default False.
        return_state: bool, also return the final ``h`` and ``c``. Default False.
        go_backwards: bool, read the sequence backwards (and return it
            reversed). Default False.
        stateful: bool, as ``keras.layers.LSTM``. Default False.
        unroll: bool, unroll the loop (short, fixed-length sequences only).
        use_cudnn: "auto" (default), True or False: whether a single weight
            set may go to Keras' fused cuDNN kernel on a GPU.
        **kwargs: Keras layer arguments (``name``, ``dtype``, ...).

    The Bayesian arguments are held by the cell (``layer.cell``), the
    :class:`~bayesseg.layers.base.BayesianLayer` of this layer.

    Call arguments: ``sequences`` ``(batch, timesteps, features)``,
    ``mask`` (optional, ``(batch, timesteps)`` booleans, e.g. from
    ``keras.layers.Masking``), ``initial_state`` (optional ``[h, c]``).

    Output shape: ``(batch, timesteps, units)`` with ``return_sequences``,
    else ``(batch, units)``; with ``return_state`` followed by ``h`` and ``c``,
    each ``(batch, units)``.

    Example:

    >>> import numpy as np
    >>> from bayesseg.layers.lstm import LSTMFlipout
    >>> layer = LSTMFlipout(8, return_sequences=True)
    >>> layer(np.ones((4, 10, 3), "float32")).shape
    TensorShape([4, 10, 8])
    >>> float(layer.kl_divergence()) > 0
    True
    """

    cell_class = LSTMCellFlipout


@keras.saving.register_keras_serializable(package="bayesseg")
class LSTMReparameterization(BaseLSTM):
    """Bayesian LSTM, reparameterization estimator, one weight set per call.

    Each call draws ``W = loc + scale * eps`` for ``kernel`` and
    ``recurrent_kernel`` once, shared by the batch and every timestep, and
    runs a plain LSTM with it: Keras' fused cuDNN kernel on a GPU, otherwise
    Keras' loop shape (input projection per step, which measured faster on
    CPU than precomputing it for long sequences). At posterior scale 0 it
    equals ``keras.layers.LSTM``.

    Args:
        units: int > 0, dimensionality of the output and of the state.
        activation: activation of the cell input and the output. Default "tanh".
        recurrent_activation: activation of the gates. Default "sigmoid".
        use_bias: bool. Default True.
        kernel_initializer: initializer of the posterior mean of ``kernel``
            ``(features, 4 * units)``. Default "glorot_uniform".
        recurrent_initializer: initializer of the posterior mean of
            ``recurrent_kernel`` ``(units, 4 * units)``. Default "orthogonal".
        bias_initializer: initializer of the bias ``(4 * units,)``.
        unit_forget_bias: bool, add 1 to the forget-gate bias at
            initialisation. Default True.
        prior: prior of the weights (see ``BayesianLayer``). Default
            ``FanInNormal()``, ``sqrt(2 / fan_in)`` per weight tensor: 0.18
            for the recurrent kernel of 64 units, 1.41 for the input kernel
            over one feature (the dense and conv layers default to
            ``Normal(0.1)``; docs/uncertainty.md says why).
        posterior_scale_init: float > 0, initial posterior scale. Default 0.01.
        scale_multiplier: float > 0, ``scale = softplus(c * rho)`` (see
            ``BayesianLayer``). Default 5, not the dense layers' 20: faster
            scales widen the recurrent noise before the means have learned,
            and it compounds over the sequence (docs/uncertainty.md).
        bayesian_bias: bool, Normal posterior on the bias too. Default False.
        sampling: "sample" (default), "shared" or "mean".
        kl_samples: int, Monte Carlo samples for priors without closed form.
        seed: int, the noise seed (random when None, stored in the config).
        return_sequences: bool, return the whole output sequence. Default False.
        return_state: bool, also return the final ``h`` and ``c``. Default False.
        go_backwards: bool, read the sequence backwards (and return it
            reversed). Default False.
        stateful: bool, as ``keras.layers.LSTM``. Default False.
        unroll: bool, unroll the loop (short, fixed-length sequences only).
        use_cudnn: "auto" (default), True or False: whether a single weight
            set may go to Keras' fused cuDNN kernel on a GPU.
        **kwargs: Keras layer arguments (``name``, ``dtype``, ...).

    The Bayesian arguments are held by the cell (``layer.cell``), the
    :class:`~bayesseg.layers.base.BayesianLayer` of this layer.

    Call arguments: ``sequences`` ``(batch, timesteps, features)``,
    ``mask`` (optional, ``(batch, timesteps)`` booleans, e.g. from
    ``keras.layers.Masking``), ``initial_state`` (optional ``[h, c]``).

    Output shape: ``(batch, timesteps, units)`` with ``return_sequences``,
    else ``(batch, units)``; with ``return_state`` followed by ``h`` and ``c``,
    each ``(batch, units)``.

    Example:

    >>> import numpy as np
    >>> from bayesseg.layers.lstm import LSTMReparameterization
    >>> layer = LSTMReparameterization(8)
    >>> layer(np.ones((4, 10, 3), "float32")).shape
    TensorShape([4, 8])
    """

    cell_class = LSTMCellReparameterization
