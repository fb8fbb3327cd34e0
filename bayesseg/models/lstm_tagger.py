"""Bayesian LSTM tagger: a per-timestep classifier for long imbalanced series."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from bayesseg import layers as bl
from bayesseg import priors
from bayesseg._defaults import (
    DEFAULT_POSTERIOR_SCALE_INIT,
    DEFAULT_RECURRENT_SCALE_MULTIPLIER,
    DEFAULT_TAGGER_HEAD_PRIOR_SCALE,
    ESTIMATORS,
)
from bayesseg._validation import (
    argument_error,
    check_choice,
    check_float,
    check_int,
    is_integer,
)
from bayesseg.training import BayesianModel

__all__ = ["bayesian_lstm_tagger", "lstm_tagger"]


def _layer_sizes(name: str, value, allow_empty: bool) -> tuple[int, ...]:
    """A sequence of layer sizes (or one size) as a tuple of ints >= 1."""
    try:
        sizes = tuple(value)
    except TypeError:
        sizes = (value,)
    if (not sizes and not allow_empty) or not all(is_integer(v) and v >= 1 for v in sizes):
        expected = "a sequence" if allow_empty else "a non-empty sequence"
        raise argument_error(name, f"be {expected} of integers >= 1", value)
    return sizes


def bayesian_lstm_tagger(
    num_features: int,
    units: Sequence[int] = (64, 64),
    estimator: str = "flipout",
    output_bias=None,
    timesteps: int | None = None,
    prior=None,
    posterior_scale_init: float = DEFAULT_POSTERIOR_SCALE_INIT,
    mask_value: float | None = None,
    scale_multiplier: float = DEFAULT_RECURRENT_SCALE_MULTIPLIER,
    bidirectional: bool = False,
    conv_filters: Sequence[int] = (),
    conv_kernel_size: int = 5,
    input_normalization=None,
) -> BayesianModel:
    """Stacked Bayesian LSTMs with a Bayesian per-timestep logit head.

    The usual per-step anomaly tagger (two stacked 64-unit LSTMs, a sigmoid
    per step; see docs/lstm.md), made Bayesian: every LSTM draws its weights
    once per sequence and step of training (never per timestep) and the head
    is a ``DenseFlipout``/``DenseReparameterization`` applied at every timestep.

    Args:
        num_features: int > 0, features per timestep.
        units: sequence of positive ints, the units of each stacked LSTM.
        estimator: "flipout" (default) or "reparameterization".
        output_bias: initial logit bias, e.g. ``bs.imbalance.initial_bias(p)``
            for the anomaly rate p (a float or a 1-element array).
        timesteps: int or None (variable-length sequences).
        prior: prior of every Bayesian layer. Default (None): the LSTMs'
            own default ``FanInNormal()`` (bounded recurrent noise) and
            ``Normal(1.0)`` on the dense head (with the dense default
            ``Normal(0.1)`` on the head the anomaly demo's F1 fell to 0.13).
        posterior_scale_init: float, initial posterior scale. Default 0.01.
        scale_multiplier: float, ``scale = softplus(c * rho)`` for every layer
            (see ``bs.layers.BayesianLayer``). Default 5, as for the LSTM
            layers: on the anomaly demo (640 series), 20 let the KL widen the
            recurrent noise before the means learned (held-out F1 0.55), 1
            left the scales at the optimizer's cap (epistemic share 0.003).
        mask_value: optional float; timesteps whose features all equal it are
            masked (``keras.layers.Masking``), for padded variable-length
            batches.
        bidirectional: bool, wrap every LSTM in ``keras.layers.Bidirectional``
            (outputs concatenated), so each step sees the series on both
            sides: a missing beat is only visible once the next one fails to
            come. Each direction draws its own noise. Default False.
        conv_filters: sequence of ints, the filters of Bayesian ``Conv1D``
            layers (ReLU, "same" padding) applied before the LSTMs, a small
            front-end that turns a pulse or a jump into a few features the
            LSTMs read. Default ``()``: none.
        conv_kernel_size: int, their kernel size. Default 5.
        input_normalization: None (default: raw inputs) or ``(mean, std)``,
            one value per feature: a ``keras.layers.Normalization`` first
            layer maps each feature to ``(x - mean) / std``, so the saved
            model carries the training series' scaling with it.

    Returns:
        A :class:`bayesseg.BayesianModel` mapping ``(batch, timesteps,
        num_features)`` to per-step logits ``(batch, timesteps, 1)``.

    Example:

    >>> import bayesseg as bs
    >>> model = bs.models.bayesian_lstm_tagger(num_features=1, units=(8, 8))
    >>> model.output_shape
    (None, None, 1)
    """
    estimator = check_choice("estimator", estimator, ESTIMATORS)
    bayes = {
        "posterior_scale_init": posterior_scale_init,
        "scale_multiplier": scale_multiplier,
    }
    head_prior = priors.Normal(DEFAULT_TAGGER_HEAD_PRIOR_SCALE) if prior is None else prior

    def layer(family: str, *args, **kwargs):
        head = family == "Dense"
        options = {**bayes, "prior": head_prior if head else prior, **kwargs}
        return bl.bayesian_twin(family, estimator)(*args, **options)

    inputs, outputs = _tagger_graph(
        layer,
        num_features,
        units,
        output_bias,
        timesteps,
        mask_value,
        bidirectional,
        conv_filters,
        conv_kernel_size,
        input_normalization,
    )
    return BayesianModel(inputs, outputs, name="bayesian_lstm_tagger")


def _tagger_graph(
    layer,
    num_features: int,
    units,
    output_bias,
    timesteps,
    mask_value,
    bidirectional,
    conv_filters,
    conv_kernel_size: int,
    input_normalization=None,
):
    """The tagger's inputs and logits, its layers made by ``layer(family, *args, **kwargs)``
    (family: "Conv1D", "LSTM" or "Dense"), so the Bayesian tagger and its deterministic
    twin share one architecture, layer names and weight shapes."""
    check_int("num_features", num_features)
    units = _layer_sizes("units", units, allow_empty=False)
    check_int("timesteps", timesteps, allow_none=True)
    conv_filters = _layer_sizes("conv_filters", conv_filters, allow_empty=True)
    check_int("conv_kernel_size", conv_kernel_size)
    if not isinstance(bidirectional, bool):
        raise argument_error("bidirectional", "be True or False", bidirectional)
    if conv_filters and mask_value is not None:
        raise ValueError(
            "Arguments `conv_filters` and `mask_value` cannot be combined: a convolution "
            "would mix padded steps into real ones. Received: "
            f"conv_filters={conv_filters}, mask_value={mask_value}"
        )
    bias_initializer = "zeros"
    if output_bias is not None:
        bias = np.asarray(output_bias, dtype="float32").reshape(-1)
        if bias.size != 1 or not np.isfinite(bias[0]):
            raise ValueError(
                "Argument `output_bias` must be one finite value. "
                f"Received: output_bias={output_bias!r}"
            )
        bias_initializer = keras.initializers.Constant(float(bias[0]))
    inputs = keras.Input((timesteps, num_features), name="series")
    x = inputs
    if input_normalization is not None:
        mean, std = (np.asarray(v, dtype="float32").reshape(-1) for v in input_normalization)
        if mean.shape != (num_features,) or std.shape != (num_features,):
            raise argument_error(
                "input_normalization",
                f"be (mean, std), each of {num_features} values (one per feature)",
                input_normalization,
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise argument_error(
                "input_normalization",
                "hold finite means and standard deviations > 0",
                input_normalization,
            )
        x = keras.layers.Normalization(
            mean=mean.tolist(), variance=(std**2).tolist(), name="normalize"
        )(x)
    if mask_value is not None:
        x = keras.layers.Masking(mask_value=float(mask_value), name="masking")(x)
    for i, f in enumerate(conv_filters):
        x = layer(
            "Conv1D", f, conv_kernel_size, padding="same", activation="relu", name=f"conv{i}"
        )(x)
    for i, n in enumerate(units):
        lstm = layer("LSTM", n, return_sequences=True, name=f"lstm{i}")
        if bidirectional:
            lstm = keras.layers.Bidirectional(lstm, name=f"bilstm{i}")
        x = lstm(x)
    outputs = layer("Dense", 1, bias_initializer=bias_initializer, name="logits", dtype="float32")(
        x
    )
    return inputs, outputs


def lstm_tagger(
    num_features: int,
    units: Sequence[int] = (64, 64),
    output_bias=None,
    timesteps: int | None = None,
    mask_value: float | None = None,
    bidirectional: bool = False,
    conv_filters: Sequence[int] = (),
    conv_kernel_size: int = 5,
    input_normalization=None,
    dropout: float = 0.0,
) -> keras.Model:
    """A deterministic LSTM tagger with plain Keras layers (the Bayesian tagger's twin).

    Same architecture, layer names and weight shapes as
    :func:`bayesian_lstm_tagger` (``Conv1D`` front-end, stacked, optionally
    bidirectional ``LSTM`` layers, a per-step ``Dense`` logit head), as
    :func:`bayesseg.models.unet` is the Bayesian U-Net's. It is what a
    Bayesian tagger must beat to earn its cost; with ``dropout > 0`` (applied
    to every LSTM's inputs, Keras' ``dropout=``) it is the MC-dropout baseline
    through ``bs.uncertainty.predict_mc``.

    Args:
        num_features: int > 0, features per timestep.
        units: sequence of positive ints, the units of each stacked LSTM.
        output_bias: initial logit bias (one value), e.g. from
            ``bs.imbalance.initial_bias``.
        timesteps: int or None (variable-length sequences).
        mask_value: optional float; timesteps whose features all equal it are masked.
        bidirectional: bool, wrap every LSTM in ``keras.layers.Bidirectional``.
        conv_filters: sequence of ints, ``Conv1D`` (ReLU, "same") filters before the LSTMs.
        conv_kernel_size: int, their kernel size. Default 5.
        input_normalization: None or ``(mean, std)`` per feature, as for
            :func:`bayesian_lstm_tagger`.
        dropout: float in [0, 1), each LSTM's input dropout. Default 0.

    Returns:
        A ``keras.Model`` mapping ``(batch, timesteps, num_features)`` to
        per-step logits ``(batch, timesteps, 1)``.

    Example:

    >>> import bayesseg as bs
    >>> twin = bs.models.lstm_tagger(2, units=(8,), bidirectional=True, conv_filters=(4,))
    >>> bayes = bs.models.bayesian_lstm_tagger(2, units=(8,), bidirectional=True,
    ...                                       conv_filters=(4,))
    >>> bayes_kernel = bayes.get_layer("conv0").posterior_variables()["kernel"].loc
    >>> tuple(twin.get_layer("conv0").kernel.shape) == tuple(bayes_kernel.shape)
    True
    """
    dropout = check_float("dropout", dropout, 0.0, 1.0, strict_maximum=True)

    def layer(family: str, *args, **kwargs):
        if family == "LSTM":
            kwargs["dropout"] = dropout
        return getattr(keras.layers, family)(*args, **kwargs)

    inputs, outputs = _tagger_graph(
        layer,
        num_features,
        units,
        output_bias,
        timesteps,
        mask_value,
        bidirectional,
        conv_filters,
        conv_kernel_size,
        input_normalization,
    )
    return keras.Model(inputs, outputs, name="lstm_tagger")
