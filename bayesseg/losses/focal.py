"""Focal losses (Lin et al. 2017), exact for any finite logit.

Pure functions (``binary_focal_loss``, ``categorical_focal_loss``) and their
``keras.losses.Loss`` classes. Powers of probabilities are computed as
``exp(gamma * log(...))`` from log-sigmoids and an exact ``log(1 - softmax)``,
so saturated logits give finite values and gradients for every ``gamma >= 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bayesseg._validation import check_float, is_number
from bayesseg.losses._base import PACKAGE, BinaryElementwiseLoss, CategoricalElementwiseLoss
from bayesseg.losses._inputs import (
    binary_inputs,
    categorical_inputs,
    check_class_count,
    check_ignore_index,
    optional_bool,
    weight_vector,
)

__all__ = ["BinaryFocalLoss", "CategoricalFocalLoss", "binary_focal_loss", "categorical_focal_loss"]


def _check_gamma(gamma: Any) -> float:
    return check_float("gamma", gamma, minimum=0)


def _binary_alpha(alpha: Any) -> float | None:
    """``alpha`` of the binary focal loss: None or the weight of positives in [0, 1]."""
    return check_float("alpha", alpha, minimum=0, maximum=1, allow_none=True)


def _categorical_alpha(alpha: Any) -> float | tuple[float, ...] | None:
    """``alpha`` of the categorical focal loss: None, a number >= 0 or one per class."""
    if alpha is None or is_number(alpha):
        return check_float("alpha", alpha, minimum=0, allow_none=True)
    return weight_vector("alpha", alpha)


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
    alpha = _binary_alpha(alpha)
    a0, a1 = (1.0, 1.0) if alpha is None else (1.0 - alpha, alpha)
    labels, logits, valid = binary_inputs(
        y_true, y_pred, from_logits, check_ignore_index(ignore_index), mask
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
    alpha = _categorical_alpha(alpha)
    one_hot, log_probs, logits, valid = categorical_inputs(
        y_true,
        y_pred,
        from_logits,
        optional_bool("sparse", sparse),
        check_ignore_index(ignore_index),
        mask,
    )
    if isinstance(alpha, tuple):
        check_class_count("alpha", alpha, one_hot.shape[-1])
    factor = _focal_factor(_log_one_minus_softmax(logits), gamma)
    per_class = one_hot * factor * log_probs
    if alpha is not None:
        per_class = per_class * tf.constant(alpha, per_class.dtype)
    loss = -tf.reduce_sum(per_class, -1)
    return tf.where(valid > 0, loss, tf.zeros_like(loss))


@keras.saving.register_keras_serializable(package=PACKAGE)
class BinaryFocalLoss(BinaryElementwiseLoss):
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
            binary_focal_loss,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=bool(from_logits),
            ignore_index=check_ignore_index(ignore_index),
            gamma=_check_gamma(gamma),
            alpha=_binary_alpha(alpha),
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class CategoricalFocalLoss(CategoricalElementwiseLoss):
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
        alpha = _categorical_alpha(alpha)
        super().__init__(
            categorical_focal_loss,
            reduction=reduction,
            name=name,
            dtype=dtype,
            from_logits=bool(from_logits),
            ignore_index=check_ignore_index(ignore_index),
            sparse=optional_bool("sparse", sparse),
            gamma=_check_gamma(gamma),
            alpha=list(alpha) if isinstance(alpha, tuple) else alpha,
        )
