"""The prior shift of class weights (and of resampled data): the initial output bias,
and undoing it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bayesseg._validation import argument_error, check_choice
from bayesseg.imbalance.weights import _pseudo_counts
from bayesseg.losses._inputs import class_vector

__all__ = ["PriorBias", "initial_bias", "prior_shift_weights", "unweight_probabilities"]

_ACTIVATIONS = ("sigmoid", "softmax")


def _binary_frequency(frequencies: Any, zero_count: str) -> float:
    arr = np.asarray(frequencies, dtype=np.float64)
    if arr.size == 1:
        p = float(arr.reshape(()))
    elif arr.shape == (2,):
        class_vector("frequencies", arr, size=2, hint="[neg, pos] counts or frequencies")
        if arr.sum() <= 0:
            raise argument_error("frequencies", "have a positive sum", arr.tolist())
        if zero_count == "pseudo":
            arr = _pseudo_counts("frequencies", arr)
        p = float(arr[1] / arr.sum())
    else:
        raise argument_error(
            "frequencies",
            "be the positive fraction p or the pair [neg, pos] (counts or frequencies) "
            "for activation='sigmoid'",
            frequencies,
        )
    if not 0.0 < p < 1.0:
        raise ValueError(
            "Argument `frequencies` must give a positive fraction strictly in (0, 1); an "
            "all-negative or all-positive prior needs an infinite bias (pass the counts "
            "[neg, pos] with zero_count='pseudo' to count an absent class as 1 element). "
            f"Received: frequencies={arr.tolist()} (p={p})"
        )
    return p


def _checked_weights(weights: Any, num: int) -> np.ndarray | None:
    if weights is None:
        return None
    return class_vector(
        "class_weights",
        weights,
        size=num,
        positive=True,
        hint="one per class, for a finite bias; class_weights(..., zero_count='pseudo') "
        "gives an absent class a finite weight",
    )


def initial_bias(
    frequencies: Any,
    activation: str = "sigmoid",
    class_weights: Sequence[float] | None = None,
    zero_count: str = "pseudo",
) -> np.ndarray:
    """Output bias whose constant prediction minimises the loss actually used.

    A constant predictor ``q`` minimises the (weighted) cross-entropy
    ``-sum_c w_c f_c log q_c`` at ``q_c ∝ w_c f_c``. Hence:

    - softmax: ``b_c = log(w_c f_c)``, centred to mean zero (``w_c = 1`` when
      unweighted, so ``softmax(b) = f``);
    - sigmoid: ``b = log(w_1 p / (w_0 (1 - p)))`` (unweighted:
      ``log(p / (1 - p))``). With weights ``(1, 59)`` at a 1:59 split the
      optimum is ``p = 0.5``, bias 0.

    A zero count (a class absent from the data) would need an infinite bias.
    ``zero_count="pseudo"`` (default) applies ``class_weights``' rule: counts
    (whole numbers) have every zero raised to 1, so the bias is finite and
    matches weights from ``class_weights(counts)``; a zero among frequencies
    still raises, since they do not say how much one element is: pass counts.
    ``zero_count="raise"`` refuses every zero.

    Args:
        frequencies: sigmoid: the positive fraction ``p`` (scalar) or the pair
            ``[neg, pos]`` of counts or frequencies; softmax: per-class counts
            or frequencies (normalised here), > 0 unless counts with
            ``zero_count="pseudo"``.
        activation: ``"sigmoid"`` (default) or ``"softmax"``.
        class_weights: per-class weights (``(w0, w1)`` for sigmoid) or None.
        zero_count: ``"pseudo"`` (default) or ``"raise"``.

    Returns:
        float64 array: shape ``(1,)`` for sigmoid, ``(C,)`` for softmax.

    Example:
        >>> import numpy as np
        >>> b = initial_bias([0.4, 0.3, 0.2, 0.08, 0.02], activation="softmax")
        >>> np.round(np.exp(b) / np.exp(b).sum(), 6).tolist()
        [0.4, 0.3, 0.2, 0.08, 0.02]
        >>> initial_bias([59, 1], class_weights=[1.0, 59.0]).tolist()
        [0.0]
        >>> round(float(initial_bias([1000, 0])[0]), 4)  # as [1000, 1]
        -6.9078
    """
    activation = check_choice("activation", activation, _ACTIVATIONS)
    zero_count = check_choice("zero_count", zero_count, ("pseudo", "raise"))
    if activation == "sigmoid":
        p = _binary_frequency(frequencies, zero_count)
        weights = _checked_weights(class_weights, 2)
        w0, w1 = (1.0, 1.0) if weights is None else weights
        return np.array([math.log(w1 * p) - math.log(w0 * (1.0 - p))], np.float64)
    arr = class_vector(
        "frequencies",
        frequencies,
        min_size=2,
        positive=zero_count == "raise",
        hint="one frequency or count per class for activation='softmax'; "
        "a zero frequency needs an infinite negative bias",
    )
    if arr.sum() <= 0:
        raise argument_error("frequencies", "have a positive sum", arr.tolist())
    arr = _pseudo_counts("frequencies", arr) if zero_count == "pseudo" else arr
    weights = _checked_weights(class_weights, arr.size)
    logits = np.log(arr / arr.sum())
    if weights is not None:
        logits = logits + np.log(weights)
    return logits - logits.mean()


@keras.saving.register_keras_serializable(package="bayesseg")
class PriorBias(keras.initializers.Initializer):
    """Keras bias initializer set to ``initial_bias(frequencies, ...)``.

    Use it as ``bias_initializer`` of the output layer: a sigmoid output needs
    ``units=1`` (bias shape ``(1,)``), a softmax output ``units=C``.

    Args:
        frequencies: as for ``initial_bias``.
        activation: ``"sigmoid"`` (default) or ``"softmax"``.
        class_weights: per-class weights or None, default None.
        zero_count: ``"pseudo"`` (default) or ``"raise"``, as for ``initial_bias``.

    Example:
        >>> import keras
        >>> init = PriorBias([0.98, 0.02])
        >>> layer = keras.layers.Dense(1, bias_initializer=init)
        >>> layer.build((None, 4))
        >>> round(float(layer.bias.numpy()[0]), 4)
        -3.8918
    """

    def __init__(
        self,
        frequencies: Any,
        activation: str = "sigmoid",
        class_weights: Sequence[float] | None = None,
        zero_count: str = "pseudo",
    ) -> None:
        self._bias = initial_bias(frequencies, activation, class_weights, zero_count)
        self.zero_count = zero_count
        self.frequencies = np.asarray(frequencies, dtype=np.float64).tolist()
        self.activation = activation
        self.class_weights = (
            None if class_weights is None else np.asarray(class_weights, dtype=np.float64).tolist()
        )

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        shape = tuple(shape)
        if shape != self._bias.shape:
            raise argument_error(
                "shape",
                f"be {self._bias.shape}, the shape of this PriorBias ({self.activation}); "
                "use units=1 for sigmoid outputs and units=C for softmax outputs",
                shape,
            )
        return keras.ops.convert_to_tensor(self._bias, dtype=dtype or keras.backend.floatx())

    def get_config(self) -> dict[str, Any]:
        return {
            "frequencies": self.frequencies,
            "activation": self.activation,
            "class_weights": self.class_weights,
            "zero_count": self.zero_count,
        }


def unweight_probabilities(
    p: Any,
    class_weights: Sequence[float],
    activation: str | None = None,
) -> Any:
    """Undoes the prior shift that class weights put into predicted probabilities.

    A model trained with class weights ``w`` predicts ``q_c ∝ w_c p_c``;
    this returns ``p_c ∝ q_c / w_c`` renormalised over the class axis. Binary
    sigmoid outputs of shape ``(...,)`` or ``(..., 1)`` are read as
    ``[1 - q, q]`` with weights ``(w0, w1)`` and returned in the same shape.

    Args:
        p: probabilities, NumPy array or tensor: ``(..., C)`` softmax outputs,
            or sigmoid outputs ``(...,)`` / ``(..., 1)``.
        class_weights: the per-class weights used in training (length C, or 2
            for sigmoid outputs), all > 0.
        activation: None (default), ``"sigmoid"`` or ``"softmax"``. None: with
            two weights, a last axis of size 2 means softmax outputs and
            anything else sigmoid outputs; with C > 2 weights, softmax.

    Returns:
        Same type (NumPy array or tensor) and shape as ``p``.

    Example:
        >>> import numpy as np
        >>> unweight_probabilities(np.array([0.5]), [1.0, 59.0]).round(4).tolist()
        [0.0167]
    """
    activation = check_choice("activation", activation, _ACTIVATIONS, allow_none=True)
    weights = class_vector(
        "class_weights", class_weights, min_size=2, positive=True, hint="one per class"
    )
    is_tensor = tf.is_tensor(p)
    if is_tensor:
        p = tf.convert_to_tensor(p)
        if not p.dtype.is_floating:
            p = tf.cast(p, tf.float32)
        last = p.shape[-1] if p.shape.rank else None
    else:
        p = np.asarray(p, dtype=np.float64)
        last = p.shape[-1] if p.ndim else None
    if activation is None:
        activation = "softmax" if weights.size > 2 or last == 2 else "sigmoid"
    if activation == "sigmoid":
        if weights.size != 2:
            raise argument_error(
                "class_weights",
                "hold the two weights (w0, w1) for sigmoid outputs",
                weights.tolist(),
            )
        w0, w1 = float(weights[0]), float(weights[1])
        pos = p / w1
        return pos / (pos + (1.0 - p) / w0)
    if last != weights.size:
        raise argument_error(
            "class_weights",
            f"hold one weight per class on the last axis of p (size {last})",
            weights.tolist(),
        )
    if is_tensor:
        scaled = p / tf.constant(weights, p.dtype)
        return scaled / tf.reduce_sum(scaled, -1, keepdims=True)
    scaled = p / weights
    return scaled / scaled.sum(-1, keepdims=True)


def prior_shift_weights(
    train_prior: Sequence[float],
    target_prior: Sequence[float],
    class_weights: Sequence[float] | None = None,
) -> np.ndarray:
    """The weights whose undoing moves probabilities from the training prior to the target one.

    A model trained with class weights ``w`` on data whose class frequencies
    are ``pi_train`` predicts ``q_c ∝ w_c pi_train_c L_c(x)``; on data with
    frequencies ``pi_target`` the posterior is ``p_c ∝ pi_target_c L_c(x)``
    (Bayes' rule, the likelihoods ``L_c`` unchanged). So ``p`` is ``q``
    with the weights ``w_c pi_train_c / pi_target_c`` undone: pass the
    result to :func:`unweight_probabilities`, or as
    ``correct_for_class_weights`` to ``bs.uncertainty.predict_mc``. Use it
    when the training data were sampled to hold more positives than the
    data the model will see, e.g. windows cut around events
    (``bs.data.event_windows``): the correction is exact if the windows
    change only the class frequencies, not what each class looks like.

    Args:
        train_prior: class frequencies (or counts) of the training data, one
            per class (2 for a sigmoid output: ``[neg, pos]``), all > 0.
        target_prior: class frequencies (or counts) where the model is used.
        class_weights: the class weights of the loss, or None (all 1).

    Returns:
        float64 array, one weight per class, normalised to a mean of 1 (a
        common factor does not change the corrected probabilities).

    Example:

    >>> import numpy as np
    >>> from bayesseg.imbalance import prior_shift_weights, unweight_probabilities
    >>> w = prior_shift_weights([0.99, 0.01], [0.9999, 0.0001])  # windows 100x richer
    >>> float(unweight_probabilities(np.array([0.5]), w)[0].round(4))  # odds 99 * 1e-4
    0.0098
    """
    train = class_vector(
        "train_prior", train_prior, min_size=2, positive=True, hint="one per class"
    )
    target = class_vector(
        "target_prior", target_prior, size=train.size, positive=True, hint="one per class"
    )
    weights = (
        np.ones(train.size)
        if class_weights is None
        else _checked_weights(class_weights, train.size)
    )
    shift = np.asarray(weights, np.float64) * (train / train.sum()) / (target / target.sum())
    return shift / shift.mean()
