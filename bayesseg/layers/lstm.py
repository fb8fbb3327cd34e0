"""Bayesian LSTM layers (Flipout, reparameterization) with per-sequence noise.

The cells live in ``lstm_cell.py`` and are re-exported here.

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

# Keras' fused LSTM (cuDNN) and its RNN loop have no public API; the layer
# calls them with its own weight set per call.
from keras.src.backend.tensorflow.rnn import lstm as fused_lstm
from keras.src.backend.tensorflow.rnn import rnn as backend_rnn

from bayesseg._defaults import (
    DEFAULT_POSTERIOR_SCALE_INIT,
    DEFAULT_RECURRENT_SCALE_MULTIPLIER,
)
from bayesseg._validation import check_choice
from bayesseg.layers import base
from bayesseg.layers.lstm_cell import BaseLSTMCell, LSTMCellFlipout, LSTMCellReparameterization

__all__ = [
    "LSTMCellFlipout",
    "LSTMCellReparameterization",
    "LSTMFlipout",
    "LSTMReparameterization",
]

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

    Not itself a :class:`~bayesseg.layers.base.BayesianLayer`: its cell
    holds the posteriors, so ``bs.kl_divergence`` finds each LSTM exactly
    once.

    The positional parameters are ``keras.layers.LSTM``'s, in its order;
    regularizers and constraints of the weights and dropout must keep their
    default and raise ``ValueError`` otherwise (``activity_regularizer`` goes
    to ``keras.layers.Layer``); ``seed`` is the noise seed of the cell
    (Keras': the dropout seed). The other Bayesian arguments (``prior``,
    ``posterior_scale_init``, ``bayesian_bias``, ``sampling``,
    ``kl_samples``, ``scale_multiplier``) are keyword-only.
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
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        use_cudnn="auto",
        *,
        prior=None,
        posterior_scale_init: float = DEFAULT_POSTERIOR_SCALE_INIT,
        bayesian_bias: bool = False,
        sampling: str = "sample",
        kl_samples: int = 1,
        scale_multiplier: float = DEFAULT_RECURRENT_SCALE_MULTIPLIER,
        **kwargs,
    ):
        use_cudnn = check_choice("use_cudnn", use_cudnn, ("auto", True, False))
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
        cell = self.cell_class(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            seed=seed,
            prior=prior,
            posterior_scale_init=posterior_scale_init,
            bayesian_bias=bayesian_bias,
            sampling=sampling,
            kl_samples=kl_samples,
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
            activity_regularizer=activity_regularizer,
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
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
            kernel_constraint, recurrent_constraint, bias_constraint: None
            only (``ValueError`` otherwise).
        activity_regularizer: as ``keras.layers.Layer``.
        dropout, recurrent_dropout: 0 only (the weight noise replaces them).
        seed: int, the noise seed (random when None, stored in the config).
        return_sequences: bool, return the whole output sequence. Default False.
        return_state: bool, also return the final ``h`` and ``c``. Default False.
        go_backwards: bool, read the sequence backwards (and return it
            reversed). Default False.
        stateful: bool, as ``keras.layers.LSTM``. Default False.
        unroll: bool, unroll the loop (short, fixed-length sequences only).
        use_cudnn: "auto" (default), True or False: whether a single weight
            set may go to Keras' fused cuDNN kernel on a GPU.
        prior: keyword-only, prior of the weights (see ``BayesianLayer``). Default
            ``FanInNormal()``, ``sqrt(2 / fan_in)`` per weight tensor: 0.18
            for the recurrent kernel of 64 units, 1.41 for the input kernel
            over one feature (the dense and conv layers default to
            ``Normal(0.1)``; docs/uncertainty.md says why).
        posterior_scale_init: keyword-only, float > 0, initial posterior scale. Default 0.01.
        scale_multiplier: keyword-only, float > 0, ``scale = softplus(c * rho)`` (see
            ``BayesianLayer``). Default 5, not the dense layers' 20: faster
            scales widen the recurrent noise before the means have learned,
            and it compounds over the sequence (docs/uncertainty.md).
        bayesian_bias: keyword-only, bool, Normal posterior on the bias too. Default False.
        sampling: keyword-only, "sample" (default), "shared" or "mean".
        kl_samples: keyword-only, int, Monte Carlo samples for priors without closed form.
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
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
            kernel_constraint, recurrent_constraint, bias_constraint: None
            only (``ValueError`` otherwise).
        activity_regularizer: as ``keras.layers.Layer``.
        dropout, recurrent_dropout: 0 only (the weight noise replaces them).
        seed: int, the noise seed (random when None, stored in the config).
        return_sequences: bool, return the whole output sequence. Default False.
        return_state: bool, also return the final ``h`` and ``c``. Default False.
        go_backwards: bool, read the sequence backwards (and return it
            reversed). Default False.
        stateful: bool, as ``keras.layers.LSTM``. Default False.
        unroll: bool, unroll the loop (short, fixed-length sequences only).
        use_cudnn: "auto" (default), True or False: whether a single weight
            set may go to Keras' fused cuDNN kernel on a GPU.
        prior: keyword-only, prior of the weights (see ``BayesianLayer``). Default
            ``FanInNormal()``, ``sqrt(2 / fan_in)`` per weight tensor: 0.18
            for the recurrent kernel of 64 units, 1.41 for the input kernel
            over one feature (the dense and conv layers default to
            ``Normal(0.1)``; docs/uncertainty.md says why).
        posterior_scale_init: keyword-only, float > 0, initial posterior scale. Default 0.01.
        scale_multiplier: keyword-only, float > 0, ``scale = softplus(c * rho)`` (see
            ``BayesianLayer``). Default 5, not the dense layers' 20: faster
            scales widen the recurrent noise before the means have learned,
            and it compounds over the sequence (docs/uncertainty.md).
        bayesian_bias: keyword-only, bool, Normal posterior on the bias too. Default False.
        sampling: keyword-only, "sample" (default), "shared" or "mean".
        kl_samples: keyword-only, int, Monte Carlo samples for priors without closed form.
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
