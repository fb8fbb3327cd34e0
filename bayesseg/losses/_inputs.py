"""Shared input handling of the losses: argument checks and label/prediction normalisation.

One owner for what every likelihood (and ``bayesseg.imbalance``) checks:
per-class vectors (class weights, focal ``alpha``, class counts), the
tri-state ``sparse``/``one_hot`` flags, ``ignore_index``, and the conversion of
``(y_true, y_pred)`` into labels, logits and a mask of counted elements.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from bayesseg._validation import argument_error, check_int

# Same clipping as Keras when probabilities (not logits) are given.
EPSILON = 1e-7


# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------
def class_vector(
    name: str,
    value: Any,
    *,
    size: int | None = None,
    min_size: int = 1,
    positive: bool = False,
    hint: str = "",
) -> np.ndarray:
    """A 1-D float64 array of per-class numbers, all finite and >= 0 (> 0 if ``positive``).

    ``size`` fixes the length (one entry per class); otherwise at least
    ``min_size`` entries. ``hint`` completes the expectation in the message.
    """
    shown = value.tolist() if isinstance(value, np.ndarray) else value
    if size is not None:
        what = f"a 1-D sequence of {size} finite numbers"
    elif min_size > 1:
        what = f"a 1-D sequence of at least {min_size} finite numbers"
    else:
        what = "a non-empty 1-D sequence of finite numbers"
    expectation = f"be {what} {'> 0' if positive else '>= 0'}" + (f" ({hint})" if hint else "")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise argument_error(name, expectation, shown) from err
    bad_size = arr.size != size if size is not None else arr.size < min_size
    if arr.ndim != 1 or bad_size:
        raise argument_error(name, expectation, shown)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0 if positive else arr < 0):
        raise argument_error(name, expectation, shown)
    return arr


def weight_vector(name: str, value: Any) -> tuple[float, ...] | None:
    """A per-class weight vector given at construction time (None passes through)."""
    if value is None:
        return None
    return tuple(float(v) for v in class_vector(name, value))


def check_class_count(name: str, weights: tuple[float, ...] | None, num_classes: int) -> None:
    """One entry per class of ``y_pred``'s last axis (None passes)."""
    if weights is not None and len(weights) != num_classes:
        class_vector(
            name,
            list(weights),
            size=num_classes,
            hint=f"one per class: {num_classes} classes, read from the last axis of y_pred",
        )


def optional_bool(name: str, value: Any) -> bool | None:
    """True, False or None (a tri-state flag such as ``sparse`` or ``one_hot``)."""
    # _validation.check_bool has no None; this is its tri-state form.
    if value is None or isinstance(value, bool):
        return value
    raise argument_error(name, "be True, False or None", value)


def check_ignore_index(ignore_index: Any) -> int | None:
    return check_int("ignore_index", ignore_index, minimum=None, allow_none=True)


# --------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------
def is_concrete(x: tf.Tensor) -> bool:
    """True for eager tensors, whose values can be checked in Python."""
    return tf.executing_eagerly() and hasattr(x, "numpy")


def to_float(x: Any) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    if x.dtype not in (tf.float32, tf.float64):
        # Likelihoods are computed in float32 even under mixed precision.
        x = tf.cast(x, tf.float32)
    return x


def _shape_error(y_true: tf.Tensor, y_pred: tf.Tensor, expected: str) -> ValueError:
    return ValueError(
        f"Argument `y_true` must be {expected}. "
        f"Received: y_true.shape={tuple(y_true.shape)}, "
        f"y_pred.shape={tuple(y_pred.shape)}"
    )


def _value_error(name: str, expectation: str, bad: np.ndarray) -> ValueError:
    return ValueError(
        f"Argument `{name}` must {expectation}. "
        f"Received: {name} with values such as {np.unique(bad)[:5].tolist()}"
    )


def _apply_mask(valid: tf.Tensor, mask: Any) -> tf.Tensor:
    if mask is None:
        return valid
    mask = tf.cast(tf.not_equal(tf.convert_to_tensor(mask), 0), valid.dtype)
    return valid * mask


def _valid_labels(labels: tf.Tensor, ignore_index: int | None, mask: Any) -> tf.Tensor:
    valid = tf.ones_like(labels)
    if ignore_index is not None:
        valid = tf.cast(tf.not_equal(labels, float(ignore_index)), labels.dtype)
    return _apply_mask(valid, mask)


# --------------------------------------------------------------------------
# Binary labels and logits
# --------------------------------------------------------------------------
def _squeeze_binary(y_true: tf.Tensor, y_pred: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    rank = y_pred.shape.rank
    if rank is None or rank == 0:
        raise ValueError(
            "Argument `y_pred` must be a tensor of known rank >= 1. "
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


def binary_inputs(
    y_true: Any,
    y_pred: Any,
    from_logits: bool,
    ignore_index: int | None,
    mask: Any = None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Returns (labels in [0, 1] with ignored set to 0, logits, valid mask)."""
    y_pred = to_float(y_pred)
    y_true, y_pred = _squeeze_binary(tf.convert_to_tensor(y_true), y_pred)
    labels = tf.cast(y_true, y_pred.dtype)
    valid = _valid_labels(labels, ignore_index, mask)
    if is_concrete(labels) and is_concrete(valid):
        values = labels.numpy()[valid.numpy() > 0]
        bad = values[~((values >= 0) & (values <= 1))]
        if bad.size:
            raise _value_error(
                "y_true",
                f"hold binary labels in [0, 1] (or equal ignore_index={ignore_index})",
                bad,
            )
    labels = tf.where(valid > 0, labels, tf.zeros_like(labels))
    if from_logits:
        logits = y_pred
    else:
        p = tf.clip_by_value(y_pred, EPSILON, 1.0 - EPSILON)
        logits = tf.math.log(p) - tf.math.log1p(-p)
    return labels, logits, valid


# --------------------------------------------------------------------------
# Categorical labels and logits
# --------------------------------------------------------------------------
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
        raise _shape_error(
            y_true,
            y_pred,
            "class indices of shape y_pred.shape[:-1] (optionally with a trailing axis "
            "of size 1) with sparse=True; pass sparse=False for one-hot labels",
        )
    if not sparse and not one_hot_shape:
        raise _shape_error(y_true, y_pred, "one-hot labels of y_pred's shape with sparse=False")
    return sparse


def _check_categorical_pred(y_pred: tf.Tensor) -> int:
    rank = y_pred.shape.rank
    if rank is None or rank < 2 or y_pred.shape[-1] is None or y_pred.shape[-1] < 2:
        raise ValueError(
            "Argument `y_pred` must hold channels-last scores of shape "
            "(batch, ..., num_classes) with a static num_classes >= 2. "
            f"Received: y_pred.shape={y_pred.shape}"
        )
    return int(y_pred.shape[-1])


def _sparse_one_hot(
    y_true: tf.Tensor,
    y_pred: tf.Tensor,
    num_classes: int,
    ignore_index: int | None,
    mask: Any,
) -> tuple[tf.Tensor, tf.Tensor]:
    if y_true.shape.rank == y_pred.shape.rank:
        y_true = tf.squeeze(y_true, -1)
    if not y_true.shape.is_compatible_with(y_pred.shape[:-1]):
        raise _shape_error(y_true, y_pred, "sparse labels of shape y_pred.shape[:-1]")
    labels = tf.cast(y_true, y_pred.dtype)
    valid = _valid_labels(labels, ignore_index, mask)
    if is_concrete(labels) and is_concrete(valid):
        values = labels.numpy()[valid.numpy() > 0]
        bad = values[~((values >= 0) & (values < num_classes) & (values == np.round(values)))]
        if bad.size:
            raise _value_error(
                "y_true",
                f"hold sparse labels that are integers in [0, {num_classes}) (num_classes "
                f"from y_pred's last axis) or equal ignore_index={ignore_index}",
                bad,
            )
    index = tf.cast(tf.where(valid > 0, labels, tf.zeros_like(labels)), tf.int32)
    return tf.one_hot(index, num_classes, dtype=y_pred.dtype) * valid[..., None], valid


def _dense_one_hot(y_true: tf.Tensor, y_pred: tf.Tensor, mask: Any) -> tuple[tf.Tensor, tf.Tensor]:
    if not y_true.shape.is_compatible_with(y_pred.shape):
        raise _shape_error(y_true, y_pred, "one-hot labels of y_pred's shape")
    one_hot = tf.cast(y_true, y_pred.dtype)
    if is_concrete(one_hot):
        values = one_hot.numpy()
        bad = values[~((values >= 0) & (values <= 1))]
        if bad.size:
            raise _value_error("y_true", "hold one-hot labels in [0, 1]", bad)
    # An all-zero label row marks an ignored element.
    valid = tf.cast(tf.reduce_sum(one_hot, -1) > 0, y_pred.dtype)
    valid = _apply_mask(valid, mask)
    return one_hot * valid[..., None], valid


def categorical_inputs(
    y_true: Any,
    y_pred: Any,
    from_logits: bool,
    sparse: bool | None,
    ignore_index: int | None,
    mask: Any = None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Returns (one-hot labels zeroed where ignored, log-probs, logits, valid)."""
    y_pred = to_float(y_pred)
    y_true = tf.convert_to_tensor(y_true)
    num_classes = _check_categorical_pred(y_pred)
    if _resolve_sparse(sparse, y_true, y_pred):
        one_hot, valid = _sparse_one_hot(y_true, y_pred, num_classes, ignore_index, mask)
    else:
        one_hot, valid = _dense_one_hot(y_true, y_pred, mask)
    if from_logits:
        logits = y_pred
        log_probs = tf.nn.log_softmax(y_pred, -1)
    else:
        probs = y_pred / tf.reduce_sum(y_pred, -1, keepdims=True)
        log_probs = tf.math.log(tf.clip_by_value(probs, EPSILON, 1.0))
        logits = log_probs
    return one_hot, log_probs, logits, valid
