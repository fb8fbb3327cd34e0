"""Soft Dice / Tversky loss per class, optionally plus a cross-entropy term.

Not element-wise: ``dice_loss`` and ``DiceLoss.call`` return one value per
example (``aggregation="per_image"``) or one for the batch (``"batch"``).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from bayesseg._validation import argument_error, check_choice, check_float, check_int
from bayesseg.losses._base import PACKAGE, ElementwiseLoss, LossFunctionWrapper, check_base_loss
from bayesseg.losses._inputs import (
    binary_inputs,
    categorical_inputs,
    check_ignore_index,
    optional_bool,
    to_float,
)

__all__ = ["DiceLoss", "dice_loss"]

_AGGREGATIONS = ("per_image", "batch")


def _check_dice_args(
    smooth: Any, alpha: Any, beta: Any, aggregation: Any
) -> tuple[float, float, float, str]:
    return (
        check_float("smooth", smooth, minimum=0),
        check_float("alpha", alpha, minimum=0),
        check_float("beta", beta, minimum=0),
        check_choice("aggregation", aggregation, _AGGREGATIONS),
    )


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
    smooth, alpha, beta, aggregation = _check_dice_args(smooth, alpha, beta, aggregation)
    ignore_index = check_ignore_index(ignore_index)
    y_pred = to_float(y_pred)
    if y_pred.shape.rank is not None and y_pred.shape.rank >= 2 and y_pred.shape[-1] == 1:
        labels, logits, valid = binary_inputs(y_true, y_pred, from_logits, ignore_index, mask)
        target = labels[..., None]
        probs = (tf.sigmoid(logits) if from_logits else tf.squeeze(y_pred, -1))[..., None]
        keep = [0]
    else:
        target, log_probs, _, valid = categorical_inputs(
            y_true, y_pred, from_logits, optional_bool("sparse", sparse), ignore_index, mask
        )
        probs = tf.exp(log_probs) if from_logits else y_pred
        num_classes = target.shape[-1]
        keep = list(range(num_classes))
        if not include_background:
            if not 0 <= background_class < num_classes:
                raise argument_error(
                    "background_class",
                    f"be a class index in [0, {num_classes}) (classes from y_pred's last axis)",
                    background_class,
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


def _dice_plus_ce(
    y_true: Any,
    y_pred: Any,
    *,
    ce_loss: ElementwiseLoss | None,
    ce_weight: float,
    **arguments: Any,
) -> tf.Tensor:
    """``dice_loss`` plus ``ce_weight`` x the mean of ``ce_loss`` over valid elements."""
    loss = dice_loss(y_true, y_pred, **arguments)
    if ce_loss is None:
        return loss
    ce = ce_loss.call(y_true, y_pred)
    valid = ce_loss.element_mask(y_true, y_pred)
    if arguments["aggregation"] == "per_image":
        batch = tf.shape(ce)[0]
        ce = tf.reshape(ce, [batch, -1])
        valid = tf.reshape(valid, [batch, -1])
        axis = -1
    else:
        axis = None
    total = tf.reduce_sum(tf.cast(valid, ce.dtype), axis)
    mean_ce = tf.reduce_sum(ce, axis) / tf.maximum(total, 1.0)
    return loss + ce_weight * tf.cast(mean_ce, loss.dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DiceLoss(LossFunctionWrapper):
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
        background_class: int >= 0, default 0.
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
        >>> from bayesseg.losses import WeightedBinaryCrossentropy
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
        ce_loss: ElementwiseLoss | None = None,
        ce_weight: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "dice_loss",
        dtype: Any = None,
    ) -> None:
        smooth, alpha, beta, aggregation = _check_dice_args(smooth, alpha, beta, aggregation)
        super().__init__(
            _dice_plus_ce,
            reduction=reduction,
            name=name,
            dtype=dtype,
            smooth=smooth,
            alpha=alpha,
            beta=beta,
            include_background=bool(include_background),
            background_class=check_int("background_class", background_class, minimum=0),
            aggregation=aggregation,
            from_logits=bool(from_logits),
            sparse=optional_bool("sparse", sparse),
            ignore_index=check_ignore_index(ignore_index),
            ce_loss=None if ce_loss is None else check_base_loss("ce_loss", ce_loss),
            ce_weight=check_float("ce_weight", ce_weight),
        )
