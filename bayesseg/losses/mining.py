"""Online hard negative mining over per-element losses.

``hard_negative_mining`` keeps the loss of every positive and of the k
hardest negatives; ``HardNegativeMining`` applies it to the per-element
values of a bayesseg element-wise loss.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bayesseg._validation import check_float, check_int
from bayesseg.losses._base import PACKAGE, ElementwiseLoss, LossFunctionWrapper, check_base_loss
from bayesseg.losses._inputs import to_float

__all__ = ["HardNegativeMining", "hard_negative_mining"]


def _check_mining_args(neg_pos_ratio: Any, min_negatives: Any) -> tuple[float, int]:
    return (
        check_float("neg_pos_ratio", neg_pos_ratio, minimum=0),
        check_int("min_negatives", min_negatives, minimum=0),
    )


def _mining_selection(
    losses: tf.Tensor,
    positive: Any,
    valid: Any,
    neg_pos_ratio: float,
    min_negatives: int,
    per_example: bool,
) -> tf.Tensor:
    """Bool mask of the positives and the k hardest negatives (see below)."""
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
    losses = to_float(losses)
    selected = _mining_selection(losses, positive, valid, neg_pos_ratio, min_negatives, per_example)
    return tf.where(selected, losses, tf.zeros_like(losses))


def _select(
    y_true: Any,
    y_pred: Any,
    *,
    base_loss: ElementwiseLoss,
    neg_pos_ratio: float,
    min_negatives: int,
    per_example: bool,
    background_class: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns (per-element base losses, bool mask of selected valid elements)."""
    losses = base_loss.call(y_true, y_pred)
    positive = base_loss.positive_mask(y_true, y_pred, background_class)
    valid = base_loss.element_mask(y_true, y_pred) > 0
    selected = _mining_selection(losses, positive, valid, neg_pos_ratio, min_negatives, per_example)
    return losses, tf.logical_and(selected, valid)


def _mined_loss(y_true: Any, y_pred: Any, **arguments: Any) -> tf.Tensor:
    """The base loss on the selected elements, exactly 0 elsewhere."""
    losses, selected = _select(y_true, y_pred, **arguments)
    return tf.where(selected, losses, tf.zeros_like(losses))


@keras.saving.register_keras_serializable(package=PACKAGE)
class HardNegativeMining(LossFunctionWrapper):
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
        background_class: int >= 0, default 0 (multi-class base losses only).
        reduction: Keras reduction, default ``"sum_over_batch_size"``.
        name: str, default ``"hard_negative_mining"``.
        dtype: Keras dtype policy or None.

    Example:
        >>> import numpy as np
        >>> from bayesseg.losses import WeightedBinaryCrossentropy
        >>> loss = HardNegativeMining(WeightedBinaryCrossentropy(),
        ...                           neg_pos_ratio=1.0, min_negatives=0,
        ...                           reduction=None)
        >>> out = loss(np.array([1.0, 0.0, 0.0]), np.array([[0.0], [3.0], [-3.0]]))
        >>> (out.numpy() > 0).tolist()
        [True, True, False]
    """

    def __init__(
        self,
        base_loss: ElementwiseLoss,
        neg_pos_ratio: float = 3.0,
        min_negatives: int = 16,
        per_example: bool = False,
        background_class: int = 0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "hard_negative_mining",
        dtype: Any = None,
    ) -> None:
        neg_pos_ratio, min_negatives = _check_mining_args(neg_pos_ratio, min_negatives)
        super().__init__(
            _mined_loss,
            reduction=reduction,
            name=name,
            dtype=dtype,
            base_loss=check_base_loss("base_loss", base_loss),
            neg_pos_ratio=neg_pos_ratio,
            min_negatives=min_negatives,
            per_example=bool(per_example),
            background_class=check_int("background_class", background_class, minimum=0),
        )

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
            >>> from bayesseg.losses import WeightedBinaryCrossentropy
            >>> loss = HardNegativeMining(WeightedBinaryCrossentropy(),
            ...                           neg_pos_ratio=1.0, min_negatives=0)
            >>> loss.element_mask(np.array([1.0, 0.0, 0.0]),
            ...                   np.array([0.0, 3.0, -3.0])).numpy().tolist()
            [1.0, 1.0, 0.0]
        """
        if y_pred is None:
            return self.base_loss.element_mask(y_true)
        return tf.cast(_select(y_true, y_pred, **self.arguments)[1], tf.float32)
