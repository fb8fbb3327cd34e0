"""Class counting, class weights and prior-bias initialisation for imbalanced data.

The pieces fit together as::

    counts = count_classes(train_masks, num_classes=2)        # [neg, pos]
    weights = class_weights(counts, method="balanced")        # sklearn's formula
    bias = initial_bias(counts, "sigmoid", class_weights=weights)
    # ... train with WeightedBinaryCrossentropy(class_weights=weights) ...
    p = unweight_probabilities(model_probabilities, weights)  # calibrated again
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bayesseg._validation import argument_error, check_choice, check_float, check_int
from bayesseg.losses._inputs import check_ignore_index, class_vector, optional_bool

__all__ = [
    "PriorBias",
    "class_weights",
    "count_classes",
    "initial_bias",
    "unweight_probabilities",
]

_METHODS = ("balanced", "inverse_sqrt", "effective_number")
_ACTIVATIONS = ("sigmoid", "softmax")


# --------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------
def _label_part(element: Any) -> Any:
    """The labels of one data set element: ``y`` of ``(x, y[, w])`` or the element."""
    if isinstance(element, tuple | list):
        if len(element) < 2:
            raise ValueError(
                "Argument `labels` must be a data set whose elements are `y` or tuples "
                "`(x, y[, sample_weight])`. Received: labels with elements of length "
                f"{len(element)}"
            )
        return element[1]
    if isinstance(element, dict):
        raise ValueError(
            "Argument `labels` must be a data set whose elements are `y` or tuples "
            "`(x, y[, sample_weight])`, not dicts; map the data set to its labels "
            "first, e.g. `ds.map(lambda d: d['mask'])`. Received: labels with dict "
            f"elements of keys {sorted(element)}"
        )
    return element


def _labels_error(expectation: str, bad: np.ndarray) -> ValueError:
    return ValueError(
        f"Argument `labels` must {expectation}. "
        f"Received: labels with values such as {np.unique(bad)[:5].tolist()}"
    )


def _is_one_hot(array: np.ndarray, num_classes: int) -> bool:
    if num_classes < 2 or array.ndim < 1 or array.shape[-1] != num_classes:
        return False
    if not np.all((array == 0) | (array == 1)):
        return False
    return bool(np.all(array.sum(-1) <= 1))


def _count_batch(
    array: np.ndarray, num_classes: int, ignore_index: int | None, one_hot: bool
) -> np.ndarray:
    bins = max(num_classes, 2)
    if one_hot:
        if array.shape[-1] != num_classes:
            raise ValueError(
                "Argument `labels` must have a last axis of size "
                f"num_classes={num_classes} with one_hot=True. "
                f"Received: labels.shape={array.shape}"
            )
        bad = array[~((array == 0) | (array == 1))]
        if bad.size:
            raise _labels_error("hold one-hot labels of 0 or 1", bad)
        return array.reshape(-1, num_classes).sum(0).astype(np.float64)
    values = array.reshape(-1)
    if ignore_index is not None:
        values = values[values != ignore_index]
    if values.dtype.kind == "f":
        bad = values[~np.isfinite(values) | (values != np.round(values))]
        if bad.size:
            raise _labels_error("hold sparse labels that are integers", bad)
    if values.dtype.kind not in "biuf":
        raise ValueError(
            f"Argument `labels` must be numeric. Received: labels.dtype={values.dtype}"
        )
    values = values.astype(np.int64)
    bad = values[(values < 0) | (values >= bins)]
    if bad.size:
        raise _labels_error(
            f"hold values in [0, {bins}) for num_classes={num_classes} "
            f"(or equal ignore_index={ignore_index})",
            bad,
        )
    return np.bincount(values, minlength=bins).astype(np.float64)


def count_classes(
    labels: Any,
    num_classes: int,
    ignore_index: int | None = None,
    one_hot: bool | None = None,
) -> np.ndarray:
    """Counts the elements of each class in labels, streaming over data sets.

    Binary masks: ``num_classes=2`` counts ``[negatives, positives]``;
    ``num_classes=1`` means "binary with one logit" and also returns the two
    counts ``[negatives, positives]``, so the result always fits
    ``class_weights`` and ``initial_bias``.

    One-hot detection (``one_hot=None``): labels are one-hot when their last
    axis has size ``num_classes >= 2``, all values are 0 or 1 and each row
    sums to at most 1 (all-zero rows are ignored elements). For a
    ``tf.data.Dataset`` the first batch decides and later batches must agree.
    Pass ``one_hot=True/False`` to skip the guess (e.g. for sparse binary
    labels whose last axis happens to be 2).

    Args:
        labels: NumPy array, tensor, or ``tf.data.Dataset`` whose elements are
            ``y`` or ``(x, y[, sample_weight])``. The data set is iterated once,
            batch by batch, never materialised.
        num_classes: int >= 1.
        ignore_index: int or None, default None. Sparse label value to skip.
        one_hot: bool or None, default None (detect).

    Returns:
        float64 array of length ``num_classes`` (length 2 when
        ``num_classes=1``).

    Example:
        >>> import numpy as np
        >>> count_classes(np.array([[0, 1, 1], [2, 255, 0]]), num_classes=3,
        ...               ignore_index=255).tolist()
        [2.0, 2.0, 1.0]
    """
    num_classes = check_int("num_classes", num_classes, minimum=1)
    one_hot = optional_bool("one_hot", one_hot)
    ignore_index = check_ignore_index(ignore_index)
    if num_classes == 1:
        one_hot = False
    if isinstance(labels, tf.data.Dataset):
        batches = (_label_part(element) for element in labels.as_numpy_iterator())
    else:
        batches = iter([labels])
    total = np.zeros(max(num_classes, 2), np.float64)
    decided = one_hot
    seen = False
    for batch in batches:
        array = np.asarray(batch)
        if decided is None:
            decided = _is_one_hot(array, num_classes)
        total += _count_batch(array, num_classes, ignore_index, decided)
        seen = True
    if not seen:
        raise argument_error("labels", "not be an empty data set", labels)
    return total


# --------------------------------------------------------------------------
# Class weights
# --------------------------------------------------------------------------
def _check_counts(counts: Any, name: str) -> np.ndarray:
    arr = class_vector(
        name, counts, min_size=2, hint="class counts; pass num_classes= to count labels"
    )
    if arr.sum() <= 0:
        raise argument_error(name, "hold at least one nonzero class count", arr.tolist())
    return arr


def class_weights(
    counts_or_labels: Any,
    method: str = "balanced",
    normalize: bool = False,
    beta: float = 0.999,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    zero_count: str = "warn",
) -> np.ndarray:
    """Per-class loss weights from class counts (or from labels).

    Methods, with ``N`` elements, ``C`` classes and ``n_c`` elements of class c:

    - ``"balanced"``: ``w_c = N / (C * n_c)``, scikit-learn's
      ``compute_class_weight("balanced")``.
    - ``"inverse_sqrt"``: ``w_c = sqrt(N / (C * n_c))``.
    - ``"effective_number"`` (Cui et al. 2019): ``w_c ∝ (1 - beta) /
      (1 - beta ** n_c)``, scaled so the weights sum to ``C``.

    ``normalize=True`` rescales the weights so the expected weight per element
    is 1, ``sum_c f_c * w_c = 1`` with ``f_c = n_c / N``: the weighted loss then
    stays on the unweighted loss' scale ("balanced" already satisfies it when
    every class occurs).

    Zero-count classes get weight 0 and a ``UserWarning`` (``zero_count="warn"``,
    default): a class absent from the data cannot be learned from it, and a
    finite weight keeps the other weights well defined. ``zero_count="raise"``
    raises ``ValueError`` instead.

    Args:
        counts_or_labels: 1-D class counts when ``num_classes`` is None;
            otherwise labels accepted by ``count_classes`` (array, tensor,
            ``tf.data.Dataset``).
        method: str, default ``"balanced"``.
        normalize: bool, default False.
        beta: float in [0, 1), default 0.999. Only for ``"effective_number"``.
        num_classes: int or None, default None. Set it to pass labels.
        ignore_index: int or None, default None. Passed to ``count_classes``.
        zero_count: ``"warn"`` (default) or ``"raise"``.

    Returns:
        float64 array of length C.

    Example:
        >>> import numpy as np
        >>> np.round(class_weights([370, 977, 795]), 4).tolist()
        [1.9297, 0.7308, 0.8981]
    """
    method = check_choice("method", method, _METHODS)
    zero_count = check_choice("zero_count", zero_count, ("warn", "raise"))
    if num_classes is None:
        counts = _check_counts(counts_or_labels, "counts_or_labels")
    else:
        counts = _check_counts(
            count_classes(counts_or_labels, num_classes, ignore_index),
            "counts_or_labels",
        )
    present = counts > 0
    if not np.all(present):
        missing = np.flatnonzero(~present).tolist()
        if zero_count == "raise":
            raise argument_error(
                "counts_or_labels",
                f"count every class with zero_count='raise': classes {missing} have zero "
                "count, so their weight is undefined",
                counts.tolist(),
            )
        warnings.warn(
            f"Classes {missing} have zero count; their weight is set to 0.",
            UserWarning,
            stacklevel=2,
        )
    total, num = counts.sum(), counts.size
    safe = np.where(present, counts, 1.0)
    if method == "balanced":
        weights = total / (num * safe)
    elif method == "inverse_sqrt":
        weights = np.sqrt(total / (num * safe))
    else:
        beta = check_float("beta", beta, minimum=0, maximum=1, strict_maximum=True)
        # -expm1(n log beta) = 1 - beta**n without cancellation for beta near 1.
        weights = (
            (1.0 - beta) / -np.expm1(safe * np.log(beta)) if beta > 0 else (np.ones_like(safe))
        )
        weights = weights * np.sum(present) / np.sum(weights[present])
    weights = np.where(present, weights, 0.0)
    if normalize:
        weights = weights / np.sum(counts / total * weights)
    return weights.astype(np.float64)


# --------------------------------------------------------------------------
# Prior bias
# --------------------------------------------------------------------------
def _binary_frequency(frequencies: Any) -> float:
    arr = np.asarray(frequencies, dtype=np.float64)
    if arr.size == 1:
        p = float(arr.reshape(()))
    elif arr.shape == (2,):
        class_vector("frequencies", arr, size=2, hint="[neg, pos] counts or frequencies")
        if arr.sum() <= 0:
            raise argument_error("frequencies", "have a positive sum", arr.tolist())
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
            "all-negative or all-positive prior needs an infinite bias. "
            f"Received: frequencies={arr.tolist()} (p={p})"
        )
    return p


def _checked_weights(weights: Any, num: int) -> np.ndarray | None:
    if weights is None:
        return None
    return class_vector(
        "class_weights", weights, size=num, positive=True, hint="one per class, for a finite bias"
    )


def initial_bias(
    frequencies: Any,
    activation: str = "sigmoid",
    class_weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Output bias whose constant prediction minimises the loss actually used.

    A constant predictor ``q`` minimises the (weighted) cross-entropy
    ``-sum_c w_c f_c log q_c`` at ``q_c ∝ w_c f_c``. Hence:

    - softmax: ``b_c = log(w_c f_c)``, centred to mean zero (``w_c = 1`` when
      unweighted, so ``softmax(b) = f``);
    - sigmoid: ``b = log(w_1 p / (w_0 (1 - p)))`` (unweighted:
      ``log(p / (1 - p))``). With weights ``(1, 59)`` at a 1:59 split the
      optimum is ``p = 0.5``, bias 0.

    Args:
        frequencies: sigmoid: the positive fraction ``p`` (scalar) or the pair
            ``[neg, pos]`` of counts or frequencies; softmax: per-class counts
            or frequencies (normalised here), all > 0.
        activation: ``"sigmoid"`` (default) or ``"softmax"``.
        class_weights: per-class weights (``(w0, w1)`` for sigmoid) or None.

    Returns:
        float64 array: shape ``(1,)`` for sigmoid, ``(C,)`` for softmax.

    Example:
        >>> import numpy as np
        >>> b = initial_bias([0.4, 0.3, 0.2, 0.08, 0.02], activation="softmax")
        >>> np.round(np.exp(b) / np.exp(b).sum(), 6).tolist()
        [0.4, 0.3, 0.2, 0.08, 0.02]
        >>> initial_bias([59, 1], class_weights=[1.0, 59.0]).tolist()
        [0.0]
    """
    activation = check_choice("activation", activation, _ACTIVATIONS)
    if activation == "sigmoid":
        p = _binary_frequency(frequencies)
        weights = _checked_weights(class_weights, 2)
        w0, w1 = (1.0, 1.0) if weights is None else weights
        return np.array([math.log(w1 * p) - math.log(w0 * (1.0 - p))], np.float64)
    arr = class_vector(
        "frequencies",
        frequencies,
        min_size=2,
        positive=True,
        hint="one frequency or count per class for activation='softmax'; "
        "a zero frequency needs an infinite negative bias",
    )
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
    ) -> None:
        self._bias = initial_bias(frequencies, activation, class_weights)
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
        }


# --------------------------------------------------------------------------
# Undoing the weight shift
# --------------------------------------------------------------------------
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
