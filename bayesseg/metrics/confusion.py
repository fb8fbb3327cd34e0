"""Overlap scores of one class as Keras metrics: Dice, F1, IoU, recall, precision.

True positives, false positives and false negatives are summed over every
batch since the last ``reset_state()`` and the score is computed once from the
totals (a micro average over elements, not a mean of per-batch or per-image
scores). Predictions become labels by :mod:`bayesseg._probability`'s rule: a
one-channel output is a sigmoid (foreground where ``p >= threshold``), C
channels a softmax (the argmax).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from bayesseg import _probability
from bayesseg._validation import check_bool, check_float, check_int

__all__ = ["F1", "Dice", "IoU", "Precision", "Recall"]


class _ClassConfusion(keras.metrics.Metric):
    """Pooled TP / FP / FN counts of one class; subclasses define ``_score``.

    A subclass names its default (``_default_name``) and its score of the
    pooled counts; the constructor, the counting and the config are shared.
    """

    _default_name = "confusion"

    def __init__(
        self,
        class_id: int = 1,
        from_logits: bool = True,
        threshold: float = 0.5,
        num_classes: int | None = None,
        name: str | None = None,
        dtype: Any = None,
    ):
        super().__init__(name=self._default_name if name is None else name, dtype=dtype)
        class_id = check_int("class_id", class_id, minimum=0)
        num_classes = check_int("num_classes", num_classes, minimum=2, allow_none=True)
        if num_classes is not None and class_id >= num_classes:
            raise ValueError(
                f"Argument `class_id` must be < num_classes={num_classes}. "
                f"Received: class_id={class_id}"
            )
        self.class_id = class_id
        self.from_logits = check_bool("from_logits", from_logits)
        self.threshold = check_float(
            "threshold", threshold, 0.0, 1.0, strict_minimum=True, strict_maximum=True
        )
        self.num_classes = num_classes
        # float64 counts stay exact far beyond float32's 2**24 elements.
        self.true_positives = self.add_variable(
            shape=(), initializer="zeros", dtype="float64", name="true_positives"
        )
        self.false_positives = self.add_variable(
            shape=(), initializer="zeros", dtype="float64", name="false_positives"
        )
        self.false_negatives = self.add_variable(
            shape=(), initializer="zeros", dtype="float64", name="false_negatives"
        )

    def _check_channels(self, y_pred) -> None:
        channels = y_pred.shape[-1]
        if channels is None:
            return
        if self.num_classes is not None:
            expected = (1, 2) if self.num_classes == 2 else (self.num_classes,)
            if channels not in expected:
                raise ValueError(
                    f"{type(self).__name__}(num_classes={self.num_classes}) expects "
                    f"y_pred with {' or '.join(map(str, expected))} channels on its "
                    f"last axis. Received: y_pred with shape {y_pred.shape}"
                )
        if self.class_id >= _probability.num_classes(channels):
            if channels == 1:
                raise ValueError(
                    f"A one-channel (binary) y_pred has classes 0 and 1. Received: "
                    f"class_id={self.class_id}"
                )
            raise ValueError(
                f"Argument `class_id` must be < the number of classes in y_pred "
                f"({channels}). Received: class_id={self.class_id}"
            )

    @staticmethod
    def _true_labels(y_true, y_pred):
        """int32 labels ``(B, ...)``: 0/1 masks for one channel, sparse or one-hot for C."""
        binary = y_pred.shape[-1] == 1
        if y_true.shape.rank == y_pred.shape.rank:
            if binary or y_true.shape[-1] == 1:
                y_true = y_true[..., 0]
            else:  # one-hot
                return tf.argmax(y_true, axis=-1, output_type=tf.int32)
        if binary:
            return tf.cast(tf.cast(y_true, tf.float32) >= 0.5, tf.int32)
        return tf.cast(y_true, tf.int32)

    def _positives(self, y_true, y_pred):
        """Boolean (truth, prediction) of "is class ``class_id``", shape ``(B, ...)``."""
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.convert_to_tensor(y_true)
        self._check_channels(y_pred)
        pred = _probability.hard_labels_tf(y_pred, self.from_logits, self.threshold)
        return self._true_labels(y_true, y_pred) == self.class_id, pred == self.class_id

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add the batch's TP, FP and FN (optionally weighted) to the totals."""
        truth, pred = self._positives(y_true, y_pred)
        truth = tf.cast(truth, tf.float64)
        pred = tf.cast(pred, tf.float64)
        if sample_weight is not None:
            weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float64)
            if weight.shape.rank == truth.shape.rank + 1 and weight.shape[-1] == 1:
                weight = weight[..., 0]  # a channel axis of size 1
            while weight.shape.rank is not None and weight.shape.rank < truth.shape.rank:
                weight = weight[..., None]
            weight = tf.broadcast_to(weight, tf.shape(truth))
        else:
            weight = tf.ones_like(truth)
        self.true_positives.assign_add(tf.reduce_sum(truth * pred * weight))
        self.false_positives.assign_add(tf.reduce_sum((1.0 - truth) * pred * weight))
        self.false_negatives.assign_add(tf.reduce_sum(truth * (1.0 - pred) * weight))

    def reset_state(self):
        for variable in (self.true_positives, self.false_positives, self.false_negatives):
            variable.assign(0.0)

    def _score(self, tp, fp, fn):
        """(numerator, denominator) of the score from the pooled counts."""
        raise NotImplementedError

    def result(self):
        numerator, denominator = self._score(
            self.true_positives, self.false_positives, self.false_negatives
        )
        return tf.cast(tf.math.divide_no_nan(numerator, denominator), self.dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "class_id": self.class_id,
                "from_logits": self.from_logits,
                "threshold": self.threshold,
                "num_classes": self.num_classes,
            }
        )
        return config


_METRIC_ARGS = """
    Args:
        class_id: int >= 0, the class scored (default 1). For a one-channel
            (sigmoid) output, 1 is the foreground and 0 the background.
        from_logits: bool, whether ``y_pred`` holds logits (default True, the
            bayesseg convention) or probabilities. Only the one-channel case
            reads it: a multi-class prediction is the argmax either way.
        threshold: float in (0, 1), the foreground probability at or above
            which a one-channel output predicts the foreground. Default 0.5.
        num_classes: int >= 2 or None (default: read from ``y_pred``'s last
            axis: 1 channel is binary, C > 1 channels a C-class softmax). When
            given, ``class_id`` and ``y_pred`` are checked against it.
        name: str, the metric's name (default: the lower-case class name).
        dtype: the result's dtype.

    Inputs (``update_state(y_true, y_pred, sample_weight=None)``):
        y_pred: logits ``(B, ..., 1)`` (binary) or ``(B, ..., C)``.
        y_true: binary masks ``(B, ..., 1)`` or ``(B, ...)``; for C classes
            sparse labels ``(B, ...)`` / ``(B, ..., 1)`` or one-hot
            ``(B, ..., C)``.
        sample_weight: optional weights broadcastable to ``(B, ...)``.

    TP, FP and FN are pooled over every element of every batch since the
    last ``reset_state()``; an empty denominator gives 0.
"""


@keras.saving.register_keras_serializable(package="bayesseg")
class Dice(_ClassConfusion):
    __doc__ = (
        """Dice coefficient ``2 TP / (2 TP + FP + FN)`` of one class, pooled.
"""
        + _METRIC_ARGS
        + """
    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import Dice
    >>> m = Dice(class_id=1)
    >>> y, logits = np.array([[1.0], [1.0], [0.0]]), np.array([[3.0], [-3.0], [3.0]])
    >>> m.update_state(y, logits)
    >>> round(float(m.result()), 4)
    0.5
"""
    )

    _default_name = "dice"

    def _score(self, tp, fp, fn):
        return 2.0 * tp, 2.0 * tp + fp + fn


@keras.saving.register_keras_serializable(package="bayesseg")
class F1(Dice):
    __doc__ = (
        """F1 score of one class, pooled: the harmonic mean of precision and recall.

    On sets of elements F1 and Dice are the same number; this name exists for
    readers who think in detection terms.
"""
        + _METRIC_ARGS
        + """
    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import F1
    >>> m = F1(class_id=2)
    >>> m.update_state(np.array([2, 0, 2]), np.eye(3)[[2, 2, 0]] * 5.0)
    >>> round(float(m.result()), 4)
    0.5
"""
    )

    _default_name = "f1"


@keras.saving.register_keras_serializable(package="bayesseg")
class IoU(_ClassConfusion):
    __doc__ = (
        """Intersection over union ``TP / (TP + FP + FN)`` of one class, pooled.
"""
        + _METRIC_ARGS
        + """
    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import IoU
    >>> m = IoU()
    >>> y, logits = np.array([[1.0], [1.0], [0.0]]), np.array([[3.0], [-3.0], [3.0]])
    >>> m.update_state(y, logits)
    >>> round(float(m.result()), 4)
    0.3333
"""
    )

    _default_name = "iou"

    def _score(self, tp, fp, fn):
        return tp, tp + fp + fn


@keras.saving.register_keras_serializable(package="bayesseg")
class Recall(_ClassConfusion):
    __doc__ = (
        """Recall (sensitivity) ``TP / (TP + FN)`` of one class, pooled.
"""
        + _METRIC_ARGS
        + """
    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import Recall
    >>> m = Recall()
    >>> y, logits = np.array([[1.0], [1.0], [0.0]]), np.array([[3.0], [-3.0], [3.0]])
    >>> m.update_state(y, logits)
    >>> round(float(m.result()), 4)
    0.5
"""
    )

    _default_name = "recall"

    def _score(self, tp, fp, fn):
        return tp, tp + fn


@keras.saving.register_keras_serializable(package="bayesseg")
class Precision(_ClassConfusion):
    __doc__ = (
        """Precision ``TP / (TP + FP)`` of one class, pooled.
"""
        + _METRIC_ARGS
        + """
    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import Precision
    >>> m = Precision()
    >>> y, logits = np.array([[1.0], [1.0], [0.0]]), np.array([[3.0], [-3.0], [3.0]])
    >>> m.update_state(y, logits)
    >>> round(float(m.result()), 4)
    0.5
"""
    )

    _default_name = "precision"

    def _score(self, tp, fp, fn):
        return tp, tp + fp
