"""Class-weighted cross-entropies: the binary and categorical likelihoods.

Pure functions (``weighted_binary_crossentropy``,
``weighted_categorical_crossentropy``) and their ``keras.losses.Loss``
classes, which add reduction and serialisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from bayesseg._validation import check_float
from bayesseg.losses._base import PACKAGE, BinaryElementwiseLoss, CategoricalElementwiseLoss
from bayesseg.losses._inputs import (
    binary_inputs,
    categorical_inputs,
    check_class_count,
    check_ignore_index,
    optional_bool,
    weight_vector,
)

__all__ = [
    "WeightedBinaryCrossentropy",
    "WeightedCategoricalCrossentropy",
    "weighted_binary_crossentropy",
    "weighted_categorical_crossentropy",
]


def _binary_weights(
    pos_weight: Any, class_weights: Any
) -> tuple[float | None, tuple[float, ...] | None]:
    """Checked ``(pos_weight, class_weights)``: at most one of them, weights >= 0."""
    if pos_weight is not None and class_weights is not None:
        raise ValueError(
            "Arguments `pos_weight` and `class_weights` must not both be set. Received: "
            f"pos_weight={pos_weight!r}, class_weights={class_weights!r}"
        )
    pos_weight = check_float("pos_weight", pos_weight, minimum=0, allow_none=True)
    weights = weight_vector("class_weights", class_weights)
    check_class_count("class_weights", weights, 2)
    return pos_weight, weights


def weighted_binary_crossentropy(
    y_true: Any,
    y_pred: Any,
    pos_weight: float | None = None,
    class_weights: Sequence[float] | None = None,
    from_logits: bool = True,
    ignore_index: int | None = None,
    mask: Any = None,
) -> tf.Tensor:
    """Per-element binary cross-entropy with class weights read from the labels.

    ``loss = -(w1 * y * log(p) + w0 * (1 - y) * log(1 - p))``. For hard labels
    this is ``bce * (w0 + (w1 - w0) * y)``; with ``pos_weight=60`` it is
    ``bce * (y * 59 + 1)``. Weights depend on ``y_true`` only, never on
    predictions. Log-probabilities come from ``log_sigmoid``, so any finite logit
    gives a finite loss and gradient.

    Args:
        y_true: binary labels (soft labels in [0, 1] allowed), shape ``(B, ...)``
            or ``(B, ..., 1)``.
        y_pred: logits (or probabilities if ``from_logits=False``), shape
            ``(B, ..., 1)`` or ``(B, ...)``.
        pos_weight: float or None, default None. Weight of positives, negatives
            weigh 1. Exclusive with ``class_weights``.
        class_weights: sequence ``(w0, w1)`` or None, default None.
        from_logits: bool, default True.
        ignore_index: int or None, default None. Label value to ignore.
        mask: optional tensor broadcastable to the output; 0 marks ignored
            elements.

    Returns:
        Tensor of shape ``(B, ...)`` (labels without the channel axis); ignored
        elements are exactly 0.

    Example:
        >>> import numpy as np
        >>> y = np.array([[0.0, 1.0, 0.0]])
        >>> logits = np.array([[-1.0, 0.5, 2.0]])
        >>> loss = weighted_binary_crossentropy(y, logits, pos_weight=60.0)
        >>> loss.shape
        TensorShape([1, 3])
    """
    pos_weight, weights = _binary_weights(pos_weight, class_weights)
    if pos_weight is not None:
        w0, w1 = 1.0, pos_weight
    else:
        w0, w1 = (1.0, 1.0) if weights is None else weights
    labels, logits, valid = binary_inputs(
        y_true, y_pred, from_logits, check_ignore_index(ignore_index), mask
    )
    loss = -(
        w1 * labels * tf.math.log_sigmoid(logits)
        + w0 * (1.0 - labels) * tf.math.log_sigmoid(-logits)
    )
    return tf.where(valid > 0, loss, tf.zeros_like(loss))


def weighted_categorical_crossentropy(
    y_true: Any,
    y_pred: Any,
    class_weights: Sequence[float] | None = None,
    from_logits: bool = True,
    sparse: bool | None = True,
    ignore_index: int | None = None,
    mask: Any = None,
) -> tf.Tensor:
    """Per-element categorical cross-entropy with per-class weights from the labels.

    ``loss = -sum_c w_c * y_c * log_softmax(logits)_c``.

    Args:
        y_true: sparse class indices ``(B, ...)`` / ``(B, ..., 1)`` or one-hot
            ``(B, ..., C)``.
        y_pred: logits (or probabilities) of shape ``(B, ..., C)``, ``C >= 2``.
        class_weights: sequence of ``C`` non-negative floats or None (all 1).
        from_logits: bool, default True.
        sparse: bool or None, default True. True: sparse labels; False:
            one-hot labels (an all-zero row marks an ignored element); None:
            detect from the shapes.
        ignore_index: int or None, default None. Sparse label value to ignore.
        mask: optional tensor broadcastable to ``(B, ...)``; 0 marks ignored.

    Returns:
        Tensor of shape ``(B, ...)``; ignored elements are exactly 0.

    Example:
        >>> import numpy as np
        >>> y = np.array([[0, 2, 255]])
        >>> logits = np.zeros((1, 3, 3))
        >>> loss = weighted_categorical_crossentropy(
        ...     y, logits, class_weights=[1.0, 2.0, 5.0], ignore_index=255)
        >>> np.round(loss.numpy(), 4).tolist()
        [[1.0986, 5.4931, 0.0]]
    """
    weights = weight_vector("class_weights", class_weights)
    one_hot, log_probs, _, valid = categorical_inputs(
        y_true,
        y_pred,
        from_logits,
        optional_bool("sparse", sparse),
        check_ignore_index(ignore_index),
        mask,
    )
    check_class_count("class_weights", weights, one_hot.shape[-1])
    if weights is not None:
        one_hot = one_hot * tf.constant(weights, one_hot.dtype)
    loss = -tf.reduce_sum(one_hot * log_probs, -1)
    return tf.where(valid > 0, loss, tf.zeros_like(loss))


@keras.saving.register_keras_serializable(package=PACKAGE)
class WeightedBinaryCrossentropy(BinaryElementwiseLoss):
    """Binary cross-entropy weighted per element by the class of its label.

    ``loss = -(w1 * y * log(p) + w0 * (1 - y) * log(1 - p))``: with
    ``pos_weight=60`` this equals the hand-written ``mean(bce * (y * 59 + 1))``.
    Weights come from the labels, never from predictions.

    Per-element contract: ``call(y_true, y_pred)`` returns the label shape
    without the channel axis: logits ``(B, H, W, 1)`` with labels ``(B, H, W)``
    or ``(B, H, W, 1)`` -> ``(B, H, W)``; logits ``(B, 1)`` with labels ``(B,)``
    -> ``(B,)``. Ignored elements are exactly 0 (see ``element_mask``).

    Args:
        pos_weight: float or None, default None. Weight of positives (negatives
            weigh 1). Exclusive with ``class_weights``.
        class_weights: ``(w0, w1)`` or None, default None.
        from_logits: bool, default True.
        ignore_index: int or None, default None. Label value to ignore.
        reduction: Keras reduction, default ``"sum_over_batch_size"``.
        name: str, default ``"weighted_binary_crossentropy"``.
        dtype: Keras dtype policy or None.

    Example:
        >>> import numpy as np
        >>> y = np.array([[0.0, 1.0], [0.0, 0.0]])
        >>> logits = np.array([[-2.0, 0.0], [0.5, -3.0]])
        >>> loss = WeightedBinaryCrossentropy(pos_weight=60.0)
        >>> round(float(loss(y, logits)), 4)
        10.6846
    """

    def __init__(
        self,
        pos_weight: float | None = None,
        class_weights: Sequence[float] | None = None,
        from_logits: bool = True,
        ignore_index: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "weighted_binary_crossentropy",
        dtype: Any = None,
    ) -> None:
        pos_weight, class_weights = _binary_weights(pos_weight, class_weights)
        super().__init__(
            weighted_binary_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=bool(from_logits),
            ignore_index=check_ignore_index(ignore_index),
            pos_weight=pos_weight,
            class_weights=class_weights,
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class WeightedCategoricalCrossentropy(CategoricalElementwiseLoss):
    """Categorical cross-entropy weighted per element by the class of its label.

    For multi-class segmentation with rank >= 3 targets, which Keras'
    ``class_weight`` refuses (e.g. one-hot ``(B, 256, 256, 32)`` masks that are
    99% background; see docs/imbalance.md), with
    ``class_weights=imbalance.class_weights(counts, "balanced")``.

    Per-element contract: logits ``(B, H, W, C)`` with sparse labels
    ``(B, H, W)`` / ``(B, H, W, 1)`` or one-hot labels ``(B, H, W, C)`` ->
    ``(B, H, W)`` (any rank: ``(B, C)`` -> ``(B,)``, ``(B, T, C)`` -> ``(B, T)``).
    Ignored elements (``ignore_index`` for sparse labels, all-zero rows for
    one-hot labels) are exactly 0 (see ``element_mask``).

    Args:
        class_weights: sequence of C non-negative floats or None (all 1).
        sparse: bool or None, default True. False for one-hot labels; None
            detects the format from the shapes.
        from_logits: bool, default True.
        ignore_index: int or None, default None.
        reduction: Keras reduction, default ``"sum_over_batch_size"``.
        name: str, default ``"weighted_categorical_crossentropy"``.
        dtype: Keras dtype policy or None.

    Example:
        >>> import numpy as np
        >>> loss = WeightedCategoricalCrossentropy([0.5, 2.0, 4.0], reduction=None)
        >>> loss(np.array([[0, 2]]), np.zeros((1, 2, 3))).shape
        TensorShape([1, 2])
    """

    def __init__(
        self,
        class_weights: Sequence[float] | None = None,
        sparse: bool | None = True,
        from_logits: bool = True,
        ignore_index: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "weighted_categorical_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            weighted_categorical_crossentropy,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=bool(from_logits),
            ignore_index=check_ignore_index(ignore_index),
            sparse=optional_bool("sparse", sparse),
            class_weights=weight_vector("class_weights", class_weights),
        )
