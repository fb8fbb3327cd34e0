"""Likelihood terms for imbalanced segmentation and per-timestep classification.

Every loss here is a pure function over tensors (``weighted_binary_crossentropy``,
``categorical_focal_loss``, ...) plus a thin ``keras.losses.Loss`` subclass that
adds reduction and serialisation, in the style of Keras' ``LossFunctionWrapper``.

Per-element contract (used by the ELBO): ``loss.call(y_true, y_pred)`` of every
element-wise loss returns one loss per element, shaped like the labels without
the class/channel axis:

- logits ``(B, H, W, 1)`` with labels ``(B, H, W)`` or ``(B, H, W, 1)`` ->
  ``(B, H, W)``;
- logits ``(B, 1)`` with labels ``(B,)`` -> ``(B,)``; logits ``(B, T)`` with
  labels ``(B, T)`` -> ``(B, T)``;
- logits ``(B, H, W, C)`` with sparse labels ``(B, H, W)`` (or ``(B, H, W, 1)``)
  or one-hot labels ``(B, H, W, C)`` -> ``(B, H, W)``.

Ignored or masked elements are exactly 0 there, with zero gradient, and
``loss.element_mask(y_true)`` returns 1 for counted elements and 0 for ignored
ones. Keras reductions (``"sum_over_batch_size"``, ``"sum"``, ``None``, ...)
apply to these per-element values exactly as for Keras' own losses.
``DiceLoss`` is not element-wise: its ``call`` returns one value per example.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "BinaryFocalLoss",
    "CategoricalFocalLoss",
    "DiceLoss",
    "HardNegativeMining",
    "WeightedBinaryCrossentropy",
    "WeightedCategoricalCrossentropy",
    "binary_focal_loss",
    "categorical_focal_loss",
    "dice_loss",
    "hard_negative_mining",
    "weighted_binary_crossentropy",
    "weighted_categorical_crossentropy",
]

_PACKAGE = "bayesseg"
# Same clipping as Keras when probabilities (not logits) are given.
_EPSILON = 1e-7


# --------------------------------------------------------------------------
# Argument validation
# --------------------------------------------------------------------------
def _weight_vector(value: Any, name: str) -> tuple[float, ...] | None:
    """Validates a per-class weight vector given at construction time."""
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"Invalid `{name}`: expected a 1-D sequence of per-class numbers. "
            f"Received: {name}={value!r}"
        ) from err
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"Invalid `{name}`: expected a non-empty 1-D sequence of per-class "
            f"numbers. Received: {name}={value!r} (shape {arr.shape})"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(
            f"Invalid `{name}`: every entry must be finite and non-negative. "
            f"Received: {name}={value!r}"
        )
    return tuple(float(v) for v in arr)


def _check_gamma(gamma: Any) -> float:
    if not isinstance(gamma, int | float) or not math.isfinite(gamma) or gamma < 0:
        raise ValueError(
            f"Invalid `gamma`: expected a finite number >= 0. Received: gamma={gamma!r}"
        )
    return float(gamma)


def _check_sparse(sparse: Any) -> bool | None:
    if sparse not in (None, True, False):
        raise ValueError(
            f"Invalid `sparse`: expected True, False or None. Received: sparse={sparse!r}"
        )
    return sparse


def _check_ignore_index(ignore_index: Any) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int | np.integer):
        raise ValueError(
            "Invalid `ignore_index`: expected an integer label value or None. "
            f"Received: ignore_index={ignore_index!r}"
        )
    return int(ignore_index)


def _check_class_count(weights: tuple[float, ...] | None, name: str, num: int) -> None:
    if weights is not None and len(weights) != num:
        raise ValueError(
            f"Invalid `{name}`: expected one entry per class ({num} classes, read "
            f"from the last axis of y_pred). Received: {name}={list(weights)} "
            f"of length {len(weights)}"
        )


def _is_concrete(x: tf.Tensor) -> bool:
    """True for eager tensors, whose values can be checked in Python."""
    return tf.executing_eagerly() and hasattr(x, "numpy")


def _to_float(x: Any) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    if x.dtype not in (tf.float32, tf.float64):
        # Likelihoods are computed in float32 even under mixed precision.
        x = tf.cast(x, tf.float32)
    return x


def _shape_error(y_true: tf.Tensor, y_pred: tf.Tensor, expected: str) -> ValueError:
    return ValueError(
        f"Shape mismatch between `y_true` and `y_pred`: expected {expected}. "
        f"Received: y_true.shape={tuple(y_true.shape)}, "
        f"y_pred.shape={tuple(y_pred.shape)}"
    )


def _apply_mask(valid: tf.Tensor, mask: Any) -> tf.Tensor:
    if mask is None:
        return valid
    mask = tf.cast(tf.not_equal(tf.convert_to_tensor(mask), 0), valid.dtype)
    return valid * mask


# --------------------------------------------------------------------------
# Label / prediction standardisation
# --------------------------------------------------------------------------
def _squeeze_binary(y_true: tf.Tensor, y_pred: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    rank = y_pred.shape.rank
    if rank is None or rank == 0:
        raise ValueError(
            "Invalid `y_pred`: expected a tensor of rank >= 1 with a known rank. "
            f"Received: y_pred.shape={y_pred.shape}"
        )
    if rank >= 2 and y_pred.shape[-1] == 1:
        y_pred = tf.squeeze(y_pred, -1)
    true_rank = y_true.shape.rank
    if true_rank == y_pred.shape.rank + 1 and y_true.shape[-1] == 1:
        y_true = tf.squeeze(y_true, -1)
    if not y_true.shape.is_compatible_with(y_pred.shape):
        raise _shape_error(
            y_true,
            y_pred,
            "binary labels shaped like the logits, optionally without their "
            "trailing channel axis of size 1",
        )
    return y_true, y_pred


def _binary_inputs(
    y_true: Any,
    y_pred: Any,
    from_logits: bool,
    ignore_index: int | None,
    mask: Any = None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Returns (labels in [0, 1] with ignored set to 0, logits, valid mask)."""
    y_pred = _to_float(y_pred)
    y_true, y_pred = _squeeze_binary(tf.convert_to_tensor(y_true), y_pred)
    labels = tf.cast(y_true, y_pred.dtype)
    valid = tf.ones_like(labels)
    if ignore_index is not None:
        valid = tf.cast(tf.not_equal(labels, float(ignore_index)), labels.dtype)
    valid = _apply_mask(valid, mask)
    if _is_concrete(labels) and _is_concrete(valid):
        values = labels.numpy()[valid.numpy() > 0]
        bad = values[~((values >= 0) & (values <= 1))]
        if bad.size:
            raise ValueError(
                "Invalid `y_true`: binary labels must lie in [0, 1] (or equal "
                f"ignore_index={ignore_index}). Received values such as "
                f"{np.unique(bad)[:5].tolist()}"
            )
    labels = tf.where(valid > 0, labels, tf.zeros_like(labels))
    if from_logits:
        logits = y_pred
    else:
        p = tf.clip_by_value(y_pred, _EPSILON, 1.0 - _EPSILON)
        logits = tf.math.log(p) - tf.math.log1p(-p)
    return labels, logits, valid


def _resolve_sparse(sparse: bool | None, y_true: tf.Tensor, y_pred: tf.Tensor) -> bool:
    rank, true_rank = y_pred.shape.rank, y_true.shape.rank
    num_classes = y_pred.shape[-1]
    sparse_shape = true_rank == rank - 1 or (true_rank == rank and y_true.shape[-1] == 1)
    one_hot_shape = true_rank == rank and y_true.shape[-1] == num_classes
    if sparse is None:
        if sparse_shape:
            return True
        if one_hot_shape:
            return False
        raise _shape_error(
            y_true,
            y_pred,
            "sparse labels of shape y_pred.shape[:-1] or one-hot labels of y_pred's shape",
        )
    if sparse and not sparse_shape:
        raise ValueError(
            "With `sparse=True`, `y_true` must hold class indices of shape "
            "y_pred.shape[:-1] (optionally with a trailing axis of size 1); pass "
            "sparse=False for one-hot labels. Received: "
            f"sparse=True, y_true.shape={tuple(y_true.shape)}, "
            f"y_pred.shape={tuple(y_pred.shape)}"
        )
    if not sparse and not one_hot_shape:
        raise ValueError(
            "With `sparse=False`, `y_true` must be one-hot with y_pred's shape. "
            f"Received: sparse=False, y_true.shape={tuple(y_true.shape)}, "
            f"y_pred.shape={tuple(y_pred.shape)}"
        )
    return sparse


def _check_categorical_pred(y_pred: tf.Tensor) -> int:
    rank = y_pred.shape.rank
    if rank is None or rank < 2 or y_pred.shape[-1] is None or y_pred.shape[-1] < 2:
        raise ValueError(
            "Invalid `y_pred`: expected channels-last scores of shape "
            "(batch, ..., num_classes) with a static num_classes >= 2. "
            f"Received: y_pred.shape={y_pred.shape}"
        )
    return int(y_pred.shape[-1])


def _categorical_inputs(
    y_true: Any,
    y_pred: Any,
    from_logits: bool,
    sparse: bool | None,
    ignore_index: int | None,
    mask: Any = None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Returns (one-hot labels zeroed where ignored, log-probs, logits, valid)."""
    y_pred = _to_float(y_pred)
    y_true = tf.convert_to_tensor(y_true)
    num_classes = _check_categorical_pred(y_pred)
    is_sparse = _resolve_sparse(sparse, y_true, y_pred)
    dtype = y_pred.dtype
    if is_sparse:
        if y_true.shape.rank == y_pred.shape.rank:
            y_true = tf.squeeze(y_true, -1)
        if not y_true.shape.is_compatible_with(y_pred.shape[:-1]):
            raise _shape_error(y_true, y_pred, "sparse labels of shape y_pred.shape[:-1]")
        labels = tf.cast(y_true, dtype)
        valid = tf.ones_like(labels)
        if ignore_index is not None:
            valid = tf.cast(tf.not_equal(labels, float(ignore_index)), dtype)
        valid = _apply_mask(valid, mask)
        if _is_concrete(labels) and _is_concrete(valid):
            values = labels.numpy()[valid.numpy() > 0]
            bad = values[~((values >= 0) & (values < num_classes) & (values == np.round(values)))]
            if bad.size:
                raise ValueError(
                    "Invalid `y_true`: sparse labels must be integers in "
                    f"[0, {num_classes}) (num_classes from y_pred's last axis) or "
                    f"equal ignore_index={ignore_index}. Received values such as "
                    f"{np.unique(bad)[:5].tolist()}"
                )
        index = tf.cast(tf.where(valid > 0, labels, tf.zeros_like(labels)), tf.int32)
        one_hot = tf.one_hot(index, num_classes, dtype=dtype) * valid[..., None]
    else:
        if not y_true.shape.is_compatible_with(y_pred.shape):
            raise _shape_error(y_true, y_pred, "one-hot labels of y_pred's shape")
        one_hot = tf.cast(y_true, dtype)
        if _is_concrete(one_hot):
            values = one_hot.numpy()
            bad = values[~((values >= 0) & (values <= 1))]
            if bad.size:
                raise ValueError(
                    "Invalid `y_true`: one-hot labels must lie in [0, 1]. Received "
                    f"values such as {np.unique(bad)[:5].tolist()}"
                )
        # An all-zero label row marks an ignored element.
        valid = tf.cast(tf.reduce_sum(one_hot, -1) > 0, dtype)
        valid = _apply_mask(valid, mask)
        one_hot = one_hot * valid[..., None]
    if from_logits:
        logits = y_pred
        log_probs = tf.nn.log_softmax(y_pred, -1)
    else:
        probs = y_pred / tf.reduce_sum(y_pred, -1, keepdims=True)
        log_probs = tf.math.log(tf.clip_by_value(probs, _EPSILON, 1.0))
        logits = log_probs
    return one_hot, log_probs, logits, valid


def _log_one_minus_softmax(logits: tf.Tensor) -> tf.Tensor:
    """Exact ``log(1 - softmax(logits))`` per class, finite for finite logits.

    ``log1p(-p)`` loses everything once ``p`` rounds to 1 (logit gaps above ~17
    in float32). Instead, ``1 - p_c`` is the softmax mass of the other classes:
    for the arg-max class it is a log-sum-exp over the others; for every other
    class ``sum_j e_j - e_c >= 1`` (shifted by the max), so the subtraction is
    well conditioned.
    """
    num_classes = logits.shape[-1]
    shifted = logits - tf.stop_gradient(tf.reduce_max(logits, -1, keepdims=True))
    is_max = tf.one_hot(tf.argmax(shifted, -1), num_classes, dtype=tf.int32) > 0
    exp = tf.exp(shifted)
    total = tf.reduce_sum(exp, -1, keepdims=True)
    neg_inf = tf.fill(tf.shape(shifted), tf.constant(-np.inf, shifted.dtype))
    others_of_max = tf.reduce_logsumexp(tf.where(is_max, neg_inf, shifted), -1, keepdims=True)
    others = tf.math.log(tf.where(is_max, tf.ones_like(exp), total - exp))
    return tf.where(is_max, others_of_max, others) - tf.math.log(total)


def _focal_factor(log_one_minus_p: tf.Tensor, gamma: float) -> tf.Tensor:
    # exp(gamma * log(1 - p)) instead of (1 - p) ** gamma: the gradient of
    # x ** gamma at x = 0 is the classic NaN source; this form is finite.
    if gamma == 0:
        return tf.ones_like(log_one_minus_p)
    return tf.exp(gamma * log_one_minus_p)


# --------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------
def _binary_class_weights(
    pos_weight: float | None, class_weights: Sequence[float] | None
) -> tuple[float, float]:
    if pos_weight is not None and class_weights is not None:
        raise ValueError(
            "Pass either `pos_weight` or `class_weights`, not both. Received: "
            f"pos_weight={pos_weight!r}, class_weights={class_weights!r}"
        )
    if pos_weight is not None:
        if (
            not isinstance(pos_weight, int | float)
            or not math.isfinite(pos_weight)
            or (pos_weight < 0)
        ):
            raise ValueError(
                "Invalid `pos_weight`: expected a finite number >= 0. "
                f"Received: pos_weight={pos_weight!r}"
            )
        return 1.0, float(pos_weight)
    weights = _weight_vector(class_weights, "class_weights")
    if weights is None:
        return 1.0, 1.0
    _check_class_count(weights, "class_weights", 2)
    return weights


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
    w0, w1 = _binary_class_weights(pos_weight, class_weights)
    labels, logits, valid = _binary_inputs(
        y_true, y_pred, from_logits, _check_ignore_index(ignore_index), mask
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
    weights = _weight_vector(class_weights, "class_weights")
    one_hot, log_probs, _, valid = _categorical_inputs(
        y_true,
        y_pred,
        from_logits,
        _check_sparse(sparse),
        _check_ignore_index(ignore_index),
        mask,
    )
    _check_class_count(weights, "class_weights", one_hot.shape[-1])
    if weights is not None:
        one_hot = one_hot * tf.constant(weights, one_hot.dtype)
    loss = -tf.reduce_sum(one_hot * log_probs, -1)
    return tf.where(valid > 0, loss, tf.zeros_like(loss))


def _binary_alpha(alpha: Any) -> tuple[float, float]:
    if alpha is None:
        return 1.0, 1.0
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not (0.0 <= alpha <= 1.0):
        raise ValueError(
            "Invalid `alpha`: expected None or a float in [0, 1] (weight of "
            f"positives; negatives get 1 - alpha). Received: alpha={alpha!r}"
        )
    return 1.0 - float(alpha), float(alpha)


def binary_focal_loss(
    y_true: Any,
    y_pred: Any,
    gamma: float = 2.0,
    alpha: float | None = None,
    from_logits: bool = True,
    ignore_index: int | None = None,
    mask: Any = None,
) -> tf.Tensor:
    """Per-element binary focal loss (Lin et al. 2017), exact for any finite logit.

    ``loss = -(a1 * y * (1 - p)**gamma * log(p)
    + a0 * (1 - y) * p**gamma * log(1 - p))`` with ``a1 = alpha``,
    ``a0 = 1 - alpha`` (both 1 when ``alpha=None``). Powers are computed as
    ``exp(gamma * log_sigmoid(...))``, so ``gamma=0`` and ``gamma=0.5`` at
    saturated logits give finite values and gradients.

    Args:
        y_true: binary labels, shape ``(B, ...)`` or ``(B, ..., 1)``.
        y_pred: logits (or probabilities), shape ``(B, ..., 1)`` or ``(B, ...)``.
        gamma: float >= 0, default 2.0.
        alpha: float in [0, 1] or None, default None.
        from_logits: bool, default True.
        ignore_index: int or None, default None.
        mask: optional tensor broadcastable to the output; 0 marks ignored.

    Returns:
        Tensor of shape ``(B, ...)``; ignored elements are exactly 0.

    Example:
        >>> import numpy as np
        >>> loss = binary_focal_loss(np.array([1.0, 0.0]), np.array([1e4, 1e4]))
        >>> np.round(loss.numpy(), 1).tolist()
        [0.0, 10000.0]
    """
    gamma = _check_gamma(gamma)
    a0, a1 = _binary_alpha(alpha)
    labels, logits, valid = _binary_inputs(
        y_true, y_pred, from_logits, _check_ignore_index(ignore_index), mask
    )
    log_p = tf.math.log_sigmoid(logits)
    log_1mp = tf.math.log_sigmoid(-logits)
    loss = -(
        a1 * labels * _focal_factor(log_1mp, gamma) * log_p
        + a0 * (1.0 - labels) * _focal_factor(log_p, gamma) * log_1mp
    )
    return tf.where(valid > 0, loss, tf.zeros_like(loss))


def categorical_focal_loss(
    y_true: Any,
    y_pred: Any,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | None = None,
    from_logits: bool = True,
    sparse: bool | None = True,
    ignore_index: int | None = None,
    mask: Any = None,
) -> tf.Tensor:
    """Per-element categorical focal loss, exact for any finite logits.

    ``loss = -sum_c alpha_c * y_c * (1 - p_c)**gamma * log(p_c)``, with
    ``log(1 - p_c)`` computed from the logits without cancellation.

    Args:
        y_true: sparse ``(B, ...)`` / ``(B, ..., 1)`` or one-hot ``(B, ..., C)``.
        y_pred: logits (or probabilities) of shape ``(B, ..., C)``.
        gamma: float >= 0, default 2.0.
        alpha: None (all 1), a float, or one non-negative float per class.
        from_logits: bool, default True.
        sparse: bool or None, default True (see
            ``weighted_categorical_crossentropy``).
        ignore_index: int or None, default None.
        mask: optional tensor broadcastable to ``(B, ...)``; 0 marks ignored.

    Returns:
        Tensor of shape ``(B, ...)``; ignored elements are exactly 0.

    Example:
        >>> import numpy as np
        >>> loss = categorical_focal_loss(np.array([0]), np.array([[0.0, 1e4, -1e4]]))
        >>> np.round(loss.numpy(), 1).tolist()
        [10000.0]
    """
    gamma = _check_gamma(gamma)
    alpha_vec = _focal_alpha(alpha)
    one_hot, log_probs, logits, valid = _categorical_inputs(
        y_true,
        y_pred,
        from_logits,
        _check_sparse(sparse),
        _check_ignore_index(ignore_index),
        mask,
    )
    num_classes = one_hot.shape[-1]
    if alpha_vec is not None and len(alpha_vec) > 1:
        _check_class_count(alpha_vec, "alpha", num_classes)
    factor = _focal_factor(_log_one_minus_softmax(logits), gamma)
    per_class = one_hot * factor * log_probs
    if alpha_vec is not None:
        per_class = per_class * tf.constant(alpha_vec, per_class.dtype)
    loss = -tf.reduce_sum(per_class, -1)
    return tf.where(valid > 0, loss, tf.zeros_like(loss))


def _focal_alpha(alpha: Any) -> tuple[float, ...] | None:
    if alpha is None:
        return None
    if isinstance(alpha, int | float) and not isinstance(alpha, bool):
        if not math.isfinite(alpha) or alpha < 0:
            raise ValueError(
                "Invalid `alpha`: expected a finite number >= 0, one per class, "
                f"or None. Received: alpha={alpha!r}"
            )
        return (float(alpha),)
    return _weight_vector(alpha, "alpha")


def hard_negative_mining(
    losses: Any,
    positive: Any,
    valid: Any = None,
    neg_pos_ratio: float = 3.0,
    min_negatives: int = 16,
    per_example: bool = False,
) -> tf.Tensor:
    """Keeps the loss of all positives and of the k hardest negatives, zero elsewhere.

    ``k = min(max(ceil(neg_pos_ratio * num_positives), min_negatives),
    num_negatives)``, counted over the whole batch (``per_example=False``) or
    per example. Negatives are ranked by their loss; ties at the k-th value are
    broken in favour of the lower flat (row-major) index, so exactly k negatives
    are kept. Selection uses a full sort and static shapes, so it compiles
    under XLA; it carries no gradient, and unselected elements get exactly zero
    loss and zero gradient.

    Args:
        losses: per-element losses, shape ``(B, ...)``.
        positive: bool-like tensor, same shape: positive elements.
        valid: bool-like tensor or None (all valid), same shape. Invalid elements
            are neither positive nor negative and stay 0.
        neg_pos_ratio: float >= 0, default 3.0.
        min_negatives: int >= 0, default 16.
        per_example: bool, default False.

    Returns:
        Tensor shaped like ``losses``.

    Example:
        >>> import numpy as np
        >>> losses = np.array([[0.1, 0.9, 0.5, 2.0, 0.3]], dtype="float32")
        >>> positive = np.array([[False, False, False, True, False]])
        >>> out = hard_negative_mining(losses, positive, neg_pos_ratio=2.0,
        ...                            min_negatives=0)
        >>> (out.numpy() > 0).tolist()
        [[False, True, True, True, False]]
    """
    neg_pos_ratio, min_negatives = _check_mining_args(neg_pos_ratio, min_negatives)
    losses = _to_float(losses)
    selected = _mining_selection(losses, positive, valid, neg_pos_ratio, min_negatives, per_example)
    return tf.where(selected, losses, tf.zeros_like(losses))


def _mining_selection(
    losses: tf.Tensor,
    positive: Any,
    valid: Any,
    neg_pos_ratio: float,
    min_negatives: int,
    per_example: bool,
) -> tf.Tensor:
    """Bool mask of the positives and the k hardest negatives (see above)."""
    shape = tf.shape(losses)
    positive = tf.cast(positive, tf.bool)
    valid = tf.ones_like(positive) if valid is None else tf.cast(valid, tf.bool)
    positive = tf.logical_and(positive, valid)
    negative = tf.logical_and(valid, tf.logical_not(positive))
    rows = [shape[0], -1] if per_example else [1, -1]
    flat_loss = tf.stop_gradient(tf.reshape(losses, rows))
    flat_pos = tf.reshape(positive, rows)
    flat_neg = tf.reshape(negative, rows)

    num_pos = tf.reduce_sum(tf.cast(flat_pos, losses.dtype), -1)
    num_neg = tf.reduce_sum(tf.cast(flat_neg, tf.int32), -1)
    wanted = tf.cast(tf.math.ceil(neg_pos_ratio * num_pos), tf.int32)
    k = tf.minimum(tf.maximum(wanted, min_negatives), num_neg)

    # Sort-and-threshold keeps every shape static, so XLA can compile it.
    neg_inf = tf.constant(-np.inf, losses.dtype)
    score = tf.where(flat_neg, flat_loss, neg_inf)
    ranked = tf.sort(score, axis=-1, direction="DESCENDING")
    threshold = tf.gather(ranked, tf.maximum(k - 1, 0), axis=1, batch_dims=1)[:, None]
    above = tf.logical_and(flat_neg, score > threshold)
    tied = tf.logical_and(flat_neg, tf.equal(score, threshold))
    num_above = tf.reduce_sum(tf.cast(above, tf.int32), -1, keepdims=True)
    tie_rank = tf.cumsum(tf.cast(tied, tf.int32), axis=-1, exclusive=True)
    keep = tf.logical_or(above, tf.logical_and(tied, tie_rank < k[:, None] - num_above))
    keep = tf.logical_and(keep, (k > 0)[:, None])
    return tf.reshape(tf.logical_or(flat_pos, keep), shape)


def _check_mining_args(neg_pos_ratio: Any, min_negatives: Any) -> tuple[float, int]:
    if (
        isinstance(neg_pos_ratio, bool)
        or not isinstance(neg_pos_ratio, int | float)
        or not math.isfinite(neg_pos_ratio)
        or neg_pos_ratio < 0
    ):
        raise ValueError(
            "Invalid `neg_pos_ratio`: expected a finite number >= 0. "
            f"Received: neg_pos_ratio={neg_pos_ratio!r}"
        )
    if (
        isinstance(min_negatives, bool)
        or not isinstance(min_negatives, int | np.integer)
        or min_negatives < 0
    ):
        raise ValueError(
            "Invalid `min_negatives`: expected an integer >= 0. "
            f"Received: min_negatives={min_negatives!r}"
        )
    return float(neg_pos_ratio), int(min_negatives)


_AGGREGATIONS = ("per_image", "batch")


def dice_loss(
    y_true: Any,
    y_pred: Any,
    from_logits: bool = True,
    smooth: float = 1.0,
    alpha: float = 0.5,
    beta: float = 0.5,
    include_background: bool = True,
    background_class: int = 0,
    aggregation: str = "per_image",
    sparse: bool | None = True,
    ignore_index: int | None = None,
    mask: Any = None,
) -> tf.Tensor:
    """Soft Dice / Tversky loss per class, averaged over classes.

    Per class: ``score = (2*TP + smooth) / (2*TP + 2*alpha*FP + 2*beta*FN +
    smooth)`` with soft counts ``TP = sum(p*y)``, ``FP = sum(p*(1-y))``,
    ``FN = sum((1-p)*y)`` over valid elements; ``alpha = beta = 0.5`` is Dice
    ``(2*TP + smooth) / (sum(p) + sum(y) + smooth)``. ``loss = 1 - mean_c score``.
    A class absent from both labels and prediction scores 1 (loss 0), also for
    ``smooth=0``. A single output channel means sigmoid outputs and one class
    (the foreground); ``C >= 2`` channels mean softmax outputs.

    Args:
        y_true: binary mask ``(B, ...)`` / ``(B, ..., 1)`` for one channel;
            sparse or one-hot labels for ``C >= 2`` channels.
        y_pred: logits (or probabilities) of shape ``(B, ..., C)``.
        from_logits: bool, default True.
        smooth: float >= 0, default 1.0.
        alpha: float >= 0, default 0.5. Weight of false positives (Salehi et al.
            2017). Keras' ``Tversky(alpha, beta)`` swaps the two roles.
        beta: float >= 0, default 0.5. Weight of false negatives.
        include_background: bool, default True. If False, the class
            ``background_class`` is left out of the mean (``C >= 2`` only).
        background_class: int, default 0.
        aggregation: ``"per_image"`` (default): counts per example, returns
            ``(B,)``; ``"batch"``: counts pooled over the batch, returns ``()``.
        sparse: bool or None, default True (``C >= 2`` only).
        ignore_index: int or None, default None.
        mask: optional tensor broadcastable to the label shape; 0 marks ignored.

    Returns:
        Tensor of shape ``(B,)`` or ``()``.

    Example:
        >>> import numpy as np
        >>> empty = np.zeros((2, 4, 4))
        >>> loss = dice_loss(empty, np.full((2, 4, 4, 1), -1e4))
        >>> loss.numpy().tolist()
        [0.0, 0.0]
    """
    smooth, alpha, beta = _check_dice_args(smooth, alpha, beta, aggregation)
    ignore_index = _check_ignore_index(ignore_index)
    y_pred = _to_float(y_pred)
    if y_pred.shape.rank is not None and y_pred.shape.rank >= 2 and y_pred.shape[-1] == 1:
        labels, logits, valid = _binary_inputs(y_true, y_pred, from_logits, ignore_index, mask)
        target = labels[..., None]
        probs = (tf.sigmoid(logits) if from_logits else tf.squeeze(y_pred, -1))[..., None]
        keep = [0]
    else:
        target, log_probs, _, valid = _categorical_inputs(
            y_true, y_pred, from_logits, _check_sparse(sparse), ignore_index, mask
        )
        probs = tf.exp(log_probs) if from_logits else y_pred
        num_classes = target.shape[-1]
        keep = list(range(num_classes))
        if not include_background:
            if not 0 <= background_class < num_classes:
                raise ValueError(
                    "Invalid `background_class`: expected an index in "
                    f"[0, {num_classes}). Received: background_class={background_class}"
                )
            keep.remove(background_class)
    probs = probs * valid[..., None]
    target = target * valid[..., None]
    rank = probs.shape.rank
    axes = list(range(1, rank - 1)) if aggregation == "per_image" else list(range(rank - 1))
    tp = tf.reduce_sum(probs * target, axes)
    sum_p = tf.reduce_sum(probs, axes)
    sum_y = tf.reduce_sum(target, axes)
    fp = sum_p - tp
    fn = sum_y - tp
    numerator = 2.0 * tp + smooth
    denominator = 2.0 * tp + 2.0 * alpha * fp + 2.0 * beta * fn + smooth
    positive = denominator > 0
    safe = tf.where(positive, denominator, tf.ones_like(denominator))
    score = tf.where(positive, numerator / safe, tf.ones_like(numerator))
    score = tf.gather(score, keep, axis=-1)
    return 1.0 - tf.reduce_mean(score, -1)


def _check_dice_args(
    smooth: Any, alpha: Any, beta: Any, aggregation: Any
) -> tuple[float, float, float]:
    for name, value in (("smooth", smooth), ("alpha", alpha), ("beta", beta)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(
                f"Invalid `{name}`: expected a finite number >= 0. Received: {name}={value!r}"
            )
    if aggregation not in _AGGREGATIONS:
        raise ValueError(
            f"Invalid `aggregation`: expected one of {_AGGREGATIONS}. "
            f"Received: aggregation={aggregation!r}"
        )
    return float(smooth), float(alpha), float(beta)


# --------------------------------------------------------------------------
# Loss classes
# --------------------------------------------------------------------------
class _ElementwiseLoss(keras.losses.Loss):
    """Base of the element-wise losses: per-element ``call`` and ``element_mask``."""

    binary = True

    def __init__(
        self,
        from_logits: bool = True,
        ignore_index: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.ignore_index = _check_ignore_index(ignore_index)

    def _labels_and_valid(self, y_true: Any, y_pred: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns (positive-class indicator or one-hot labels, valid mask)."""
        raise NotImplementedError

    def positive_mask(self, y_true: Any, y_pred: Any, background_class: int = 0) -> tf.Tensor:
        """Boolean mask of counted elements whose label is not the background.

        Args:
            y_true: labels, as for ``call``.
            y_pred: predictions, as for ``call``.
            background_class: int, default 0. Only used by multi-class losses;
                for binary losses positives are labels > 0.5.

        Returns:
            Bool tensor with the per-element output shape of ``call``.

        Example:
            >>> import numpy as np
            >>> WeightedBinaryCrossentropy().positive_mask(
            ...     np.array([0.0, 1.0]), np.zeros((2, 1))).numpy().tolist()
            [False, True]
        """
        labels, valid = self._labels_and_valid(y_true, y_pred)
        if self.binary:
            positive = labels > 0.5
        else:
            positive = tf.not_equal(tf.argmax(labels, -1), background_class)
        return tf.logical_and(positive, valid > 0)

    def element_mask(self, y_true: Any, y_pred: Any = None) -> tf.Tensor:
        """Returns 1.0 for counted elements and 0.0 for ignored ones.

        The mask has the per-element output shape of ``call``, so the mean over
        valid elements is ``sum(loss) / sum(mask)``.

        Args:
            y_true: labels, as for ``call``.
            y_pred: optional predictions. Needed only for multi-class losses
                built with ``sparse=None`` (format detected from the shapes).

        Returns:
            Float tensor of shape ``y_true`` without the class axis.

        Example:
            >>> import numpy as np
            >>> loss = WeightedBinaryCrossentropy(ignore_index=255)
            >>> loss.element_mask(np.array([[0, 1, 255]])).numpy().tolist()
            [[1.0, 1.0, 0.0]]
        """
        if y_pred is None:
            y_pred = self._dummy_prediction(tf.convert_to_tensor(y_true))
        return self._labels_and_valid(y_true, y_pred)[1]

    def _dummy_prediction(self, y_true: tf.Tensor) -> tf.Tensor:
        if self.binary:
            return tf.zeros(tf.shape(y_true), tf.float32)
        raise ValueError(
            "`element_mask` needs `y_pred` to tell sparse from one-hot labels "
            "when the loss was built with sparse=None. Received: y_pred=None"
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"from_logits": self.from_logits, "ignore_index": self.ignore_index})
        return config


class _BinaryElementwiseLoss(_ElementwiseLoss):
    binary = True

    def _labels_and_valid(self, y_true, y_pred):
        labels, _, valid = _binary_inputs(y_true, y_pred, self.from_logits, self.ignore_index)
        return labels, valid


class _CategoricalElementwiseLoss(_ElementwiseLoss):
    binary = False

    def __init__(self, sparse: bool | None = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sparse = _check_sparse(sparse)

    def _labels_and_valid(self, y_true, y_pred):
        one_hot, _, _, valid = _categorical_inputs(
            y_true, y_pred, self.from_logits, self.sparse, self.ignore_index
        )
        return one_hot, valid

    def _dummy_prediction(self, y_true):
        if self.sparse is None:
            return super()._dummy_prediction(y_true)
        if self.sparse:
            # Any class count >= 2 works: only the label shape matters here.
            shape = tf.shape(y_true)
            if y_true.shape.rank is not None and y_true.shape[-1] == 1 and (y_true.shape.rank >= 2):
                shape = shape[:-1]
            return tf.zeros(tf.concat([shape, [2]], 0), tf.float32)
        return tf.zeros(tf.shape(y_true), tf.float32)

    def element_mask(self, y_true: Any, y_pred: Any = None) -> tf.Tensor:
        if y_pred is None and self.sparse:
            # Without y_pred the class count is unknown; validity only depends on
            # ignore_index for sparse labels.
            y_true = tf.convert_to_tensor(y_true)
            if y_true.shape.rank is not None and y_true.shape.rank >= 2 and (y_true.shape[-1] == 1):
                y_true = tf.squeeze(y_true, -1)
            valid = tf.ones(tf.shape(y_true), tf.float32)
            if self.ignore_index is not None:
                valid = tf.cast(
                    tf.not_equal(tf.cast(y_true, tf.float32), float(self.ignore_index)),
                    tf.float32,
                )
            return valid
        return super().element_mask(y_true, y_pred)

    element_mask.__doc__ = _ElementwiseLoss.element_mask.__doc__

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["sparse"] = self.sparse
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedBinaryCrossentropy(_BinaryElementwiseLoss):
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
        super().__init__(
            from_logits=from_logits,
            ignore_index=ignore_index,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        _binary_class_weights(pos_weight, class_weights)
        self.pos_weight = None if pos_weight is None else float(pos_weight)
        self.class_weights = _weight_vector(class_weights, "class_weights")

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        return weighted_binary_crossentropy(
            y_true,
            y_pred,
            self.pos_weight,
            self.class_weights,
            self.from_logits,
            self.ignore_index,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "pos_weight": self.pos_weight,
                "class_weights": None if self.class_weights is None else list(self.class_weights),
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedCategoricalCrossentropy(_CategoricalElementwiseLoss):
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
            sparse=sparse,
            from_logits=from_logits,
            ignore_index=ignore_index,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        self.class_weights = _weight_vector(class_weights, "class_weights")

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        return weighted_categorical_crossentropy(
            y_true,
            y_pred,
            self.class_weights,
            self.from_logits,
            self.sparse,
            self.ignore_index,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["class_weights"] = None if self.class_weights is None else list(self.class_weights)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BinaryFocalLoss(_BinaryElementwiseLoss):
    """Binary focal loss, exact (no clipping) for any finite logit.

    Mapping to Keras: ``BinaryFocalLoss(gamma=g)`` equals
    ``keras.losses.BinaryFocalCrossentropy(gamma=g, from_logits=True)``;
    ``BinaryFocalLoss(gamma=g, alpha=a)`` equals Keras with
    ``apply_class_balancing=True, alpha=a`` (Keras ignores ``alpha`` otherwise).
    Keras clips probabilities to ``[1e-7, 1 - 1e-7]``, so the two agree for
    ``|logit| <= 10`` and ours stays exact beyond.

    Per-element contract: as ``WeightedBinaryCrossentropy`` (logits
    ``(B, H, W, 1)`` with labels ``(B, H, W)`` -> ``(B, H, W)``; ignored
    elements exactly 0).

    Args:
        gamma: float >= 0, default 2.0.
        alpha: float in [0, 1] or None, default None (no class balancing).
        from_logits: bool, default True.
        ignore_index: int or None, default None.
        reduction: Keras reduction, default ``"sum_over_batch_size"``.
        name: str, default ``"binary_focal_loss"``.
        dtype: Keras dtype policy or None.

    Example:
        >>> import numpy as np
        >>> loss = BinaryFocalLoss(gamma=2.0, reduction=None)
        >>> values = loss(np.array([1.0, 0.0]), np.array([[0.0], [0.0]]))
        >>> [round(float(v), 4) for v in values]
        [0.1733, 0.1733]
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | None = None,
        from_logits: bool = True,
        ignore_index: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_focal_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            from_logits=from_logits,
            ignore_index=ignore_index,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        self.gamma = _check_gamma(gamma)
        _binary_alpha(alpha)
        self.alpha = None if alpha is None else float(alpha)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        return binary_focal_loss(
            y_true, y_pred, self.gamma, self.alpha, self.from_logits, self.ignore_index
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"gamma": self.gamma, "alpha": self.alpha})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CategoricalFocalLoss(_CategoricalElementwiseLoss):
    """Categorical focal loss, exact (no clipping) for any finite logits.

    Mapping to Keras: ``CategoricalFocalLoss(gamma=g, alpha=a, sparse=False)``
    equals ``keras.losses.CategoricalFocalCrossentropy(gamma=g, alpha=a,
    from_logits=True)``; Keras' ``alpha`` defaults to 0.25, ours to None (1),
    so ``alpha=None`` matches Keras with ``alpha=1.0``. Keras clips
    probabilities to ``[1e-7, 1 - 1e-7]``, so the two agree while every class
    probability stays above 1e-7 (logit gaps below ~16, e.g. ``|logit| <= 8``);
    ours stays exact beyond.

    Per-element contract: as ``WeightedCategoricalCrossentropy`` (logits
    ``(B, H, W, C)`` -> ``(B, H, W)``; ignored elements exactly 0).

    Args:
        gamma: float >= 0, default 2.0.
        alpha: None, a float, or one float per class. Default None.
        sparse: bool or None, default True.
        from_logits: bool, default True.
        ignore_index: int or None, default None.
        reduction: Keras reduction, default ``"sum_over_batch_size"``.
        name: str, default ``"categorical_focal_loss"``.
        dtype: Keras dtype policy or None.

    Example:
        >>> import numpy as np
        >>> loss = CategoricalFocalLoss(gamma=0.5, reduction=None)
        >>> float(loss(np.array([1]), np.array([[0.0, 1e4]]))[0]) == 0.0
        True
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        sparse: bool | None = True,
        from_logits: bool = True,
        ignore_index: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_focal_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            sparse=sparse,
            from_logits=from_logits,
            ignore_index=ignore_index,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        self.gamma = _check_gamma(gamma)
        _focal_alpha(alpha)
        if alpha is None or isinstance(alpha, int | float):
            self.alpha = None if alpha is None else float(alpha)
        else:
            self.alpha = list(_weight_vector(alpha, "alpha"))

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        return categorical_focal_loss(
            y_true,
            y_pred,
            self.gamma,
            self.alpha,
            self.from_logits,
            self.sparse,
            self.ignore_index,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"gamma": self.gamma, "alpha": self.alpha})
        return config


def _check_base_loss(base_loss: Any, name: str) -> _ElementwiseLoss:
    if isinstance(base_loss, dict):
        base_loss = keras.saving.deserialize_keras_object(base_loss)
    if not isinstance(base_loss, _ElementwiseLoss):
        raise ValueError(
            f"Invalid `{name}`: expected one of bayesseg's element-wise losses "
            "(WeightedBinaryCrossentropy, WeightedCategoricalCrossentropy, "
            f"BinaryFocalLoss, CategoricalFocalLoss). Received: {name}={base_loss!r}"
        )
    return base_loss


@keras.saving.register_keras_serializable(package=_PACKAGE)
class HardNegativeMining(keras.losses.Loss):
    """Online hard negative mining over the per-element values of a base loss.

    Keeps the loss of every positive element and of the k hardest negatives,
    ``k = min(max(ceil(neg_pos_ratio * positives), min_negatives), negatives)``
    per batch (or per example with ``per_example=True``); every other element
    gets zero loss and zero gradient. Binary base losses: positives are labels
    > 0.5. Multi-class: negatives are the ``background_class``. Ties at the
    k-th loss go to the lower row-major index. Compiles under XLA.

    Per-element contract: same shape as the base loss (e.g. ``(B, H, W)``);
    unselected and ignored elements are exactly 0. ``element_mask(y_true,
    y_pred)`` marks the selected elements (without ``y_pred``: the base loss'
    valid elements).

    Args:
        base_loss: a bayesseg element-wise loss instance (or its config).
        neg_pos_ratio: float >= 0, default 3.0.
        min_negatives: int >= 0, default 16. Keeps batches without positives
            training.
        per_example: bool, default False.
        background_class: int, default 0 (multi-class base losses only).
        reduction: Keras reduction, default ``"sum_over_batch_size"``.
        name: str, default ``"hard_negative_mining"``.
        dtype: Keras dtype policy or None.

    Example:
        >>> import numpy as np
        >>> loss = HardNegativeMining(WeightedBinaryCrossentropy(),
        ...                           neg_pos_ratio=1.0, min_negatives=0,
        ...                           reduction=None)
        >>> out = loss(np.array([1.0, 0.0, 0.0]), np.array([[0.0], [3.0], [-3.0]]))
        >>> (out.numpy() > 0).tolist()
        [True, True, False]
    """

    def __init__(
        self,
        base_loss: _ElementwiseLoss,
        neg_pos_ratio: float = 3.0,
        min_negatives: int = 16,
        per_example: bool = False,
        background_class: int = 0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "hard_negative_mining",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.base_loss = _check_base_loss(base_loss, "base_loss")
        self.neg_pos_ratio, self.min_negatives = _check_mining_args(neg_pos_ratio, min_negatives)
        self.per_example = bool(per_example)
        self.background_class = int(background_class)

    def _select(self, y_true: Any, y_pred: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns (per-element base losses, bool mask of selected elements)."""
        losses = self.base_loss.call(y_true, y_pred)
        positive = self.base_loss.positive_mask(y_true, y_pred, self.background_class)
        valid = self.base_loss.element_mask(y_true, y_pred) > 0
        selected = _mining_selection(
            losses,
            positive,
            valid,
            self.neg_pos_ratio,
            self.min_negatives,
            self.per_example,
        )
        return losses, tf.logical_and(selected, valid)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        losses, selected = self._select(y_true, y_pred)
        return tf.where(selected, losses, tf.zeros_like(losses))

    def element_mask(self, y_true: Any, y_pred: Any = None) -> tf.Tensor:
        """Returns 1.0 for selected elements (positives and mined negatives).

        Args:
            y_true: labels, as for ``call``.
            y_pred: predictions or None. Without them the selection is unknown
                and the base loss' valid-element mask is returned.

        Returns:
            Float tensor with the per-element output shape.

        Example:
            >>> import numpy as np
            >>> loss = HardNegativeMining(WeightedBinaryCrossentropy(),
            ...                           neg_pos_ratio=1.0, min_negatives=0)
            >>> loss.element_mask(np.array([1.0, 0.0, 0.0]),
            ...                   np.array([0.0, 3.0, -3.0])).numpy().tolist()
            [1.0, 1.0, 0.0]
        """
        if y_pred is None:
            return self.base_loss.element_mask(y_true)
        return tf.cast(self._select(y_true, y_pred)[1], tf.float32)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "base_loss": keras.saving.serialize_keras_object(self.base_loss),
                "neg_pos_ratio": self.neg_pos_ratio,
                "min_negatives": self.min_negatives,
                "per_example": self.per_example,
                "background_class": self.background_class,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiceLoss(keras.losses.Loss):
    """Soft Dice (or Tversky) loss per class, optionally plus a cross-entropy term.

    ``loss = 1 - mean_c (2*TP_c + smooth) / (2*TP_c + 2*alpha*FP_c +
    2*beta*FN_c + smooth)`` (+ ``ce_weight`` x the mean of ``ce_loss`` over
    valid elements). ``alpha = beta = 0.5`` is Dice. An empty mask with an empty
    prediction scores loss 0 (Keras' ``Dice`` gives 1). With ``smooth=0``,
    ``aggregation="batch"``, ``from_logits=False`` and all classes this equals
    ``keras.losses.Dice(axis=...)`` / ``keras.losses.Tversky`` (whose ``alpha``
    and ``beta`` are our ``beta`` and ``alpha``).

    Output contract (not element-wise): ``call`` returns ``(B,)`` with
    ``aggregation="per_image"`` and a scalar ``()`` with ``"batch"``.

    Args:
        smooth: float >= 0, default 1.0.
        alpha: float >= 0, default 0.5 (false positives).
        beta: float >= 0, default 0.5 (false negatives).
        include_background: bool, default True.
        background_class: int, default 0.
        aggregation: ``"per_image"`` (default) or ``"batch"``.
        from_logits: bool, default True.
        sparse: bool or None, default True (multi-class labels).
        ignore_index: int or None, default None.
        ce_loss: optional bayesseg element-wise loss added to the Dice term.
        ce_weight: float, default 1.0. Weight of ``ce_loss``.
        reduction: Keras reduction, default ``"sum_over_batch_size"``.
        name: str, default ``"dice_loss"``.
        dtype: Keras dtype policy or None.

    Example:
        >>> import numpy as np
        >>> y = np.zeros((2, 4, 4)); y[0, :2, :2] = 1
        >>> loss = DiceLoss(ce_loss=WeightedBinaryCrossentropy(pos_weight=5.0),
        ...                 reduction=None)
        >>> loss(y, np.zeros((2, 4, 4, 1))).shape
        TensorShape([2])
    """

    def __init__(
        self,
        smooth: float = 1.0,
        alpha: float = 0.5,
        beta: float = 0.5,
        include_background: bool = True,
        background_class: int = 0,
        aggregation: str = "per_image",
        from_logits: bool = True,
        sparse: bool | None = True,
        ignore_index: int | None = None,
        ce_loss: _ElementwiseLoss | None = None,
        ce_weight: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "dice_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.smooth, self.alpha, self.beta = _check_dice_args(smooth, alpha, beta, aggregation)
        self.aggregation = aggregation
        self.include_background = bool(include_background)
        self.background_class = int(background_class)
        self.from_logits = bool(from_logits)
        self.sparse = _check_sparse(sparse)
        self.ignore_index = _check_ignore_index(ignore_index)
        self.ce_loss = None if ce_loss is None else _check_base_loss(ce_loss, "ce_loss")
        if not isinstance(ce_weight, int | float) or not math.isfinite(ce_weight):
            raise ValueError(
                f"Invalid `ce_weight`: expected a finite number. Received: ce_weight={ce_weight!r}"
            )
        self.ce_weight = float(ce_weight)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        loss = dice_loss(
            y_true,
            y_pred,
            self.from_logits,
            self.smooth,
            self.alpha,
            self.beta,
            self.include_background,
            self.background_class,
            self.aggregation,
            self.sparse,
            self.ignore_index,
        )
        if self.ce_loss is None:
            return loss
        ce = self.ce_loss.call(y_true, y_pred)
        valid = self.ce_loss.element_mask(y_true, y_pred)
        if self.aggregation == "per_image":
            batch = tf.shape(ce)[0]
            ce = tf.reshape(ce, [batch, -1])
            valid = tf.reshape(valid, [batch, -1])
            axis = -1
        else:
            axis = None
        total = tf.reduce_sum(tf.cast(valid, ce.dtype), axis)
        mean_ce = tf.reduce_sum(ce, axis) / tf.maximum(total, 1.0)
        return loss + self.ce_weight * tf.cast(mean_ce, loss.dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "smooth": self.smooth,
                "alpha": self.alpha,
                "beta": self.beta,
                "include_background": self.include_background,
                "background_class": self.background_class,
                "aggregation": self.aggregation,
                "from_logits": self.from_logits,
                "sparse": self.sparse,
                "ignore_index": self.ignore_index,
                "ce_loss": None
                if self.ce_loss is None
                else keras.saving.serialize_keras_object(self.ce_loss),
                "ce_weight": self.ce_weight,
            }
        )
        return config
