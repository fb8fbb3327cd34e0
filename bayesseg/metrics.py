"""Segmentation metrics for imbalanced data: overlap, detection, calibration.

* Keras metrics (:class:`Dice`, :class:`F1`, :class:`IoU`, :class:`Recall`,
  :class:`Precision`) for one class, pooled over the whole evaluation set:
  true positives, false positives and false negatives are summed over every
  batch and the score is computed once from the totals (a micro average over
  elements, not a mean of per-batch or per-image scores).
* :func:`lesion_f1`: lesion-wise detection scores from connected components.
* NumPy functions for calibration and uncertainty quality:
  :func:`foreground_calibration` (:class:`ForegroundCalibration`),
  :func:`foreground_ece`, :func:`adaptive_ece`, :func:`classwise_ece`,
  :func:`top_label_ece`, :func:`ece_noise_floor`, :func:`brier_score`,
  :func:`predictive_nll`, :func:`reliability_curve`,
  :func:`uncertainty_auroc`. Foreground ECEs select elements by the
  prediction only (``p_fg >= threshold``), never by the true label, so a
  calibrated predictor scores near its noise floor.

Probability arrays follow one convention: ``probs`` of shape ``(..., C)``
(C >= 2, softmax probabilities) with integer labels ``y_true`` of shape
``(...)`` or ``(..., 1)``; or binary foreground probabilities of shape
``(..., 1)`` or ``(...)``, the same shape as ``y_true`` holding 0/1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage, stats

__all__ = [
    "Dice",
    "F1",
    "FOREGROUND_THRESHOLD",
    "ForegroundCalibration",
    "IoU",
    "Precision",
    "Recall",
    "adaptive_ece",
    "brier_score",
    "classwise_ece",
    "ece_noise_floor",
    "foreground_calibration",
    "foreground_ece",
    "lesion_f1",
    "predictive_nll",
    "reliability_curve",
    "top_label_ece",
    "uncertainty_auroc",
]


# --------------------------------------------------------------------------
# Keras metrics
# --------------------------------------------------------------------------
class _ClassConfusion(keras.metrics.Metric):
    """Pooled TP / FP / FN counts of one class; subclasses define ``result``."""

    def __init__(
        self,
        class_id: int = 1,
        from_logits: bool = True,
        threshold: float = 0.5,
        num_classes: int | None = None,
        name: str | None = None,
        dtype: Any = None,
    ):
        super().__init__(name=name, dtype=dtype)
        if isinstance(class_id, bool) or not isinstance(class_id, int | np.integer):
            raise ValueError(
                f"Argument `class_id` must be a non-negative integer. "
                f"Received: class_id={class_id!r}"
            )
        if class_id < 0:
            raise ValueError(
                f"Argument `class_id` must be a non-negative integer. "
                f"Received: class_id={class_id!r}"
            )
        if num_classes is not None:
            if (
                isinstance(num_classes, bool)
                or not isinstance(num_classes, int | np.integer)
                or num_classes < 2
            ):
                raise ValueError(
                    "Argument `num_classes` must be None or an integer >= 2. "
                    f"Received: num_classes={num_classes!r}"
                )
            if class_id >= num_classes:
                raise ValueError(
                    f"Argument `class_id` must be < num_classes={num_classes}. "
                    f"Received: class_id={class_id}"
                )
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(
                "Argument `threshold` must be a probability in (0, 1). "
                f"Received: threshold={threshold!r}"
            )
        self.class_id = int(class_id)
        self.from_logits = bool(from_logits)
        self.threshold = float(threshold)
        self.num_classes = None if num_classes is None else int(num_classes)
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

    def _positives(self, y_true, y_pred):
        """Boolean (truth, prediction) of "is class ``class_id``", same shape."""
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.convert_to_tensor(y_true)
        channels = y_pred.shape[-1]
        if self.num_classes is not None and channels is not None:
            expected = (1, 2) if self.num_classes == 2 else (self.num_classes,)
            if channels not in expected:
                raise ValueError(
                    f"{type(self).__name__}(num_classes={self.num_classes}) expects "
                    f"y_pred with {' or '.join(map(str, expected))} channels on its "
                    f"last axis. Received: y_pred with shape {y_pred.shape}"
                )
        if channels == 1:
            if self.class_id > 1:
                raise ValueError(
                    f"A one-channel (binary) y_pred has classes 0 and 1. Received: "
                    f"class_id={self.class_id}"
                )
            if self.from_logits:
                cut = float(np.log(self.threshold / (1.0 - self.threshold)))
            else:
                cut = self.threshold
            pred = tf.cast(y_pred, tf.float32) >= cut
            if y_true.shape.rank == y_pred.shape.rank - 1:
                y_true = y_true[..., None]
            truth = tf.cast(y_true, tf.float32) >= 0.5
            if self.class_id == 0:
                pred, truth = tf.logical_not(pred), tf.logical_not(truth)
            return truth, pred
        if channels is not None and self.class_id >= channels:
            raise ValueError(
                f"Argument `class_id` must be < the number of classes in y_pred "
                f"({channels}). Received: class_id={self.class_id}"
            )
        pred = tf.argmax(y_pred, axis=-1, output_type=tf.int32) == self.class_id
        if y_true.shape.rank == y_pred.shape.rank:
            if y_true.shape[-1] == 1:
                labels = tf.cast(y_true[..., 0], tf.int32)
            else:  # one-hot
                labels = tf.argmax(y_true, axis=-1, output_type=tf.int32)
        else:
            labels = tf.cast(y_true, tf.int32)
        return labels == self.class_id, pred

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add the batch's TP, FP and FN (optionally weighted) to the totals."""
        truth, pred = self._positives(y_true, y_pred)
        truth = tf.cast(truth, tf.float64)
        pred = tf.cast(pred, tf.float64)
        if sample_weight is not None:
            weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float64)
            while weight.shape.rank is not None and weight.shape.rank < truth.shape.rank:
                weight = weight[..., None]
            weight = tf.broadcast_to(weight, tf.shape(truth))
        else:
            weight = tf.ones_like(truth)
        self.true_positives.assign_add(tf.reduce_sum(truth * pred * weight))
        self.false_positives.assign_add(tf.reduce_sum((1.0 - truth) * pred * weight))
        self.false_negatives.assign_add(tf.reduce_sum(truth * (1.0 - pred) * weight))

    def reset_state(self):
        for variable in (
            self.true_positives,
            self.false_positives,
            self.false_negatives,
        ):
            variable.assign(0.0)

    def _ratio(self, numerator, denominator):
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
        name: str, the metric's name.
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

    def __init__(
        self,
        class_id: int = 1,
        from_logits: bool = True,
        threshold: float = 0.5,
        num_classes: int | None = None,
        name: str = "dice",
        dtype: Any = None,
    ):
        super().__init__(class_id, from_logits, threshold, num_classes, name, dtype)

    def result(self):
        tp = self.true_positives
        return self._ratio(2.0 * tp, 2.0 * tp + self.false_positives + self.false_negatives)


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

    def __init__(
        self,
        class_id: int = 1,
        from_logits: bool = True,
        threshold: float = 0.5,
        num_classes: int | None = None,
        name: str = "f1",
        dtype: Any = None,
    ):
        super().__init__(class_id, from_logits, threshold, num_classes, name, dtype)


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

    def __init__(
        self,
        class_id: int = 1,
        from_logits: bool = True,
        threshold: float = 0.5,
        num_classes: int | None = None,
        name: str = "iou",
        dtype: Any = None,
    ):
        super().__init__(class_id, from_logits, threshold, num_classes, name, dtype)

    def result(self):
        tp = self.true_positives
        return self._ratio(tp, tp + self.false_positives + self.false_negatives)


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

    def __init__(
        self,
        class_id: int = 1,
        from_logits: bool = True,
        threshold: float = 0.5,
        num_classes: int | None = None,
        name: str = "recall",
        dtype: Any = None,
    ):
        super().__init__(class_id, from_logits, threshold, num_classes, name, dtype)

    def result(self):
        tp = self.true_positives
        return self._ratio(tp, tp + self.false_negatives)


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

    def __init__(
        self,
        class_id: int = 1,
        from_logits: bool = True,
        threshold: float = 0.5,
        num_classes: int | None = None,
        name: str = "precision",
        dtype: Any = None,
    ):
        super().__init__(class_id, from_logits, threshold, num_classes, name, dtype)

    def result(self):
        tp = self.true_positives
        return self._ratio(tp, tp + self.false_positives)


# --------------------------------------------------------------------------
# Lesion-wise detection
# --------------------------------------------------------------------------
def _spatial_batch(name: str, array: Any) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim in (4, 5) and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (3, 4):
        raise ValueError(
            f"Argument `{name}` must be a batch of 2D images (N, H, W) or 3D "
            f"volumes (N, D, H, W), optionally with a trailing channel axis of "
            f"size 1. Received: {name} with shape {np.shape(array)}"
        )
    return a


def lesion_f1(
    y_true: Any,
    y_pred: Any,
    threshold: float = 0.5,
    min_size: int = 0,
    connectivity: int | None = None,
) -> dict[str, float]:
    """Lesion-wise detection precision, recall and F1 from connected components.

    Each image's true mask and thresholded prediction are split into
    connected components (``scipy.ndimage.label``). A predicted component is
    a true positive if it overlaps any true lesion (by at least one voxel);
    a true lesion is detected if any predicted component overlaps it. Then
    ``precision = TP_pred / predicted lesions``, ``recall = detected true
    lesions / true lesions`` and F1 their harmonic mean, pooled over all
    images. Undefined ratios are 0, except that with no true and no
    predicted lesion anywhere all three scores are 1.

    Args:
        y_true: binary masks ``(N, H, W)`` or ``(N, D, H, W)``, optionally
            with a trailing channel axis of size 1.
        y_pred: probabilities (or binary masks) of the same shape.
        threshold: float, foreground where ``y_pred >= threshold``. Default 0.5.
        min_size: int >= 0, predicted components smaller than this many
            voxels are discarded (specks); true lesions are kept as
            annotated. Default 0.
        connectivity: int in ``[1, ndim]`` or None (default: ``ndim``, i.e.
            8-connectivity in 2D, 26 in 3D), as in
            ``scipy.ndimage.generate_binary_structure``.

    Returns:
        A dict with float ``precision``, ``recall``, ``f1`` and the counts
        ``true_lesions``, ``pred_lesions``, ``tp_pred`` (predicted lesions
        that hit a true one), ``fp`` (predicted lesions that hit none),
        ``detected`` (true lesions hit) and ``fn`` (true lesions missed).

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import lesion_f1
    >>> t = np.zeros((1, 8, 8)); t[0, 1, 1] = t[0, 5, 5] = 1
    >>> p = np.zeros((1, 8, 8)); p[0, 1, 1] = p[0, 3, 7] = 1
    >>> lesion_f1(t, p)["f1"]
    0.5
    """
    truth = _spatial_batch("y_true", y_true) >= 0.5
    pred = _spatial_batch("y_pred", y_pred) >= threshold
    if truth.shape != pred.shape:
        raise ValueError(
            "Arguments `y_true` and `y_pred` must have the same shape. Received: "
            f"{np.shape(y_true)} and {np.shape(y_pred)}"
        )
    if isinstance(min_size, bool) or not isinstance(min_size, int | np.integer) or (min_size < 0):
        raise ValueError(
            f"Argument `min_size` must be an integer >= 0. Received: min_size={min_size!r}"
        )
    ndim = truth.ndim - 1
    if connectivity is None:
        connectivity = ndim
    if (
        isinstance(connectivity, bool)
        or not isinstance(connectivity, int | np.integer)
        or not 1 <= connectivity <= ndim
    ):
        raise ValueError(
            f"Argument `connectivity` must be an integer in [1, {ndim}] for "
            f"{ndim}D images. Received: connectivity={connectivity!r}"
        )
    structure = ndimage.generate_binary_structure(ndim, connectivity)
    counts = dict.fromkeys(("true_lesions", "pred_lesions", "tp_pred", "detected"), 0)
    for t_img, p_img in zip(truth, pred, strict=True):
        t_lab, n_true = ndimage.label(t_img, structure)
        p_lab, n_pred = ndimage.label(p_img, structure)
        if min_size > 0 and n_pred:
            sizes = np.bincount(p_lab.ravel(), minlength=n_pred + 1)
            keep = sizes >= min_size
            keep[0] = False
            relabel = np.zeros(n_pred + 1, dtype=np.int64)
            relabel[keep] = np.arange(1, keep.sum() + 1)
            p_lab, n_pred = relabel[p_lab], int(keep.sum())
        overlap = (t_lab > 0) & (p_lab > 0)
        counts["true_lesions"] += n_true
        counts["pred_lesions"] += n_pred
        counts["tp_pred"] += len(np.unique(p_lab[overlap]))
        counts["detected"] += len(np.unique(t_lab[overlap]))
    n_true, n_pred = counts["true_lesions"], counts["pred_lesions"]
    if n_true == 0 and n_pred == 0:
        precision = recall = f1 = 1.0
    else:
        precision = counts["tp_pred"] / n_pred if n_pred else 0.0
        recall = counts["detected"] / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        **counts,
        "fp": n_pred - counts["tp_pred"],
        "fn": n_true - counts["detected"],
    }


# --------------------------------------------------------------------------
# Calibration helpers
# --------------------------------------------------------------------------
def _labels_and_probs(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """Flatten to integer labels ``(M,)`` and class probabilities ``(M, C)``.

    Binary inputs (one foreground probability per element) become the two
    columns ``[1 - p, p]``. Returns ``(labels, probs, was_binary)``.
    """
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 0 or y.ndim == 0:
        raise ValueError(
            "Arguments `y_true` and `probs` must be arrays. Received shapes "
            f"{y.shape} and {p.shape}"
        )
    binary = False
    if p.shape == y.shape:
        if p.shape[-1] == 1 or p.ndim == y.ndim:
            binary = True
    elif p.ndim == y.ndim + 1 and p.shape[:-1] == y.shape:
        binary = p.shape[-1] == 1
    elif p.ndim == y.ndim and y.shape[-1] == 1 and p.shape[:-1] == y.shape[:-1]:
        y = y[..., 0]
    else:
        raise ValueError(
            "Arguments `y_true` and `probs` do not match: expected probs (..., C) "
            "with labels (...) or (..., 1), or binary probabilities with the "
            f"shape of y_true. Received: y_true {np.shape(y_true)}, probs "
            f"{np.shape(probs)}"
        )
    if not np.all(np.isfinite(p)) or p.min(initial=0.0) < 0 or p.max(initial=0.0) > 1:
        raise ValueError(
            "Argument `probs` must hold probabilities in [0, 1] (not logits). "
            f"Received values in [{p.min()}, {p.max()}]"
        )
    if binary:
        q = p.reshape(-1)
        labels = (y.reshape(-1) >= 0.5).astype(np.int64)
        return labels, np.stack([1.0 - q, q], axis=1), True
    labels = y.reshape(-1).astype(np.int64)
    p = p.reshape(-1, p.shape[-1])
    if labels.size and (labels.min() < 0 or labels.max() >= p.shape[1]):
        raise ValueError(
            f"Argument `y_true` must hold labels in [0, {p.shape[1]}). Received "
            f"labels in [{labels.min()}, {labels.max()}]"
        )
    return labels, p, False


def _check_bins(num_bins: Any) -> int:
    if isinstance(num_bins, bool) or not isinstance(num_bins, int | np.integer) or (num_bins < 1):
        raise ValueError(
            f"Argument `num_bins` must be a positive integer. Received: num_bins={num_bins!r}"
        )
    return int(num_bins)


def _bin_index(confidence: np.ndarray, num_bins: int, adaptive: bool = False) -> np.ndarray:
    """Bin of each element: equal-width on [0, 1], or equal-mass by rank.

    Equal-width: bin ``b`` holds ``b / B <= c < (b + 1) / B`` (the last bin
    also holds ``c = 1``). Equal-mass: the elements sorted by confidence
    (stable sort) are cut into ``B`` consecutive runs whose sizes differ by at
    most one; tied confidences may straddle a cut.
    """
    if not adaptive:
        return np.minimum((confidence * num_bins).astype(np.int64), num_bins - 1)
    n = confidence.size
    index = np.empty(n, dtype=np.int64)
    index[np.argsort(confidence, kind="stable")] = np.arange(n, dtype=np.int64) * num_bins // n
    return index


def _bin_stats(
    confidence: np.ndarray, outcome: np.ndarray, num_bins: int, adaptive: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: sum of confidence, sum of outcome, count (see :func:`_bin_index`)."""
    index = _bin_index(confidence, num_bins, adaptive)
    counts = np.bincount(index, minlength=num_bins).astype(np.float64)
    conf_sum = np.bincount(index, weights=confidence, minlength=num_bins)
    out_sum = np.bincount(index, weights=outcome, minlength=num_bins)
    return conf_sum, out_sum, counts


def _ece(
    confidence: np.ndarray, outcome: np.ndarray, num_bins: int, adaptive: bool = False
) -> float:
    """``sum_b (n_b / n) |mean confidence_b - mean outcome_b|``; NaN when n = 0."""
    if confidence.size == 0:
        return float("nan")
    conf_sum, out_sum, _ = _bin_stats(confidence, outcome, num_bins, adaptive)
    return float(np.sum(np.abs(conf_sum - out_sum)) / confidence.size)


#: Default foreground probability threshold of :func:`foreground_calibration`.
FOREGROUND_THRESHOLD = 0.02


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number):
        ok = False
    else:
        ok = 0.0 <= float(threshold) < 1.0
    if not ok:
        raise ValueError(
            "Argument `threshold` must be a foreground probability in [0, 1). "
            f"Received: threshold={threshold!r}"
        )
    return float(threshold)


def _foreground(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Flat foreground probability ``p_fg`` and truth indicator (float 0/1)."""
    labels, p, binary = _labels_and_probs(y_true, probs)
    p_fg = p[:, 1] if binary else 1.0 - p[:, 0]
    return p_fg, (labels != 0).astype(np.float64)


# --------------------------------------------------------------------------
# Calibration and uncertainty metrics
# --------------------------------------------------------------------------
def classwise_ece(y_true: Any, probs: Any, num_bins: int = 15) -> np.ndarray:
    """Expected calibration error of each class, one-vs-rest.

    For class c: bin the elements by ``p_c`` into ``num_bins`` equal-width
    bins on [0, 1] and sum ``(n_b / n) |mean p_c - frequency of c|`` over
    bins. Average the result for the usual scalar "classwise ECE". Every
    element counts, so with 1 foreground pixel in 60 the easy background
    dominates the foreground class's number; see :func:`foreground_ece`.

    Args:
        y_true: labels ``(...)`` / ``(..., 1)``, or 0/1 masks for binary probs.
        probs: probabilities ``(..., C)``, or foreground probabilities of the
            shape of ``y_true`` / ``(..., 1)`` (then C = 2: background,
            foreground).
        num_bins: int >= 1, default 15.

    Returns:
        float64 array ``(C,)``; NaN entries for an empty input.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import classwise_ece
    >>> classwise_ece(np.array([0, 1]), np.array([[0.8, 0.2], [0.2, 0.8]])).round(3)
    array([0.2, 0.2])
    """
    num_bins = _check_bins(num_bins)
    labels, p, _ = _labels_and_probs(y_true, probs)
    return np.array(
        [_ece(p[:, c], (labels == c).astype(np.float64), num_bins) for c in range(p.shape[1])]
    )


@dataclasses.dataclass(frozen=True)
class ForegroundCalibration:
    """Result of :func:`foreground_calibration`.

    Attributes:
        ece: float, ECE of ``p_fg`` on the region ``p_fg >= threshold``
            (NaN when the region is empty).
        region_size: int, number of elements in the region.
        region_fraction: float, ``region_size`` / all elements (NaN for an
            empty input).
        excluded_size: int, number of elements left out (``p_fg < threshold``).
        excluded_mean_probability: float, mean ``p_fg`` of the excluded
            elements: the foreground the model expects there (NaN if none).
        excluded_foreground_rate: float, observed foreground frequency among
            the excluded elements (NaN if none). Far above
            ``excluded_mean_probability`` means foreground the model misses
            with confident background probabilities.
        missed_foreground: int, number of true foreground elements excluded.
        threshold: float, the threshold used.
        num_bins: int, the number of bins used.
        adaptive: bool, whether the bins were equal-mass (True) or
            equal-width (False).
        region_mean_probability: float, mean ``p_fg`` over the region (NaN
            when it is empty).
        region_foreground_rate: float, observed foreground frequency over
            the region (NaN when it is empty). Its difference from
            ``region_mean_probability`` is the signed shift behind the ECE:
            above it, the model under-predicts foreground where it sees
            some; below it, it over-predicts. An ECE equal to the absolute
            shift means every bin errs in the same direction.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import foreground_calibration
    >>> r = foreground_calibration(np.array([1, 0, 1]), np.array([0.01, 0.4, 0.8]), num_bins=2)
    >>> r.region_size, r.excluded_foreground_rate, round(r.as_dict()["ece"], 3)
    (2, 1.0, 0.3)
    """

    ece: float
    region_size: int
    region_fraction: float
    excluded_size: int
    excluded_mean_probability: float
    excluded_foreground_rate: float
    missed_foreground: int
    threshold: float
    num_bins: int
    adaptive: bool
    region_mean_probability: float = float("nan")
    region_foreground_rate: float = float("nan")

    def as_dict(self) -> dict:
        """The fields as a plain dict (JSON-serialisable apart from NaN).

        Returns:
            dict of field name to value.

        Example:

        >>> import numpy as np
        >>> from bayesseg.metrics import foreground_calibration
        >>> sorted(foreground_calibration(np.array([1]), np.array([0.9])).as_dict())[:2]
        ['adaptive', 'ece']
        """
        return dataclasses.asdict(self)


def foreground_calibration(
    y_true: Any,
    probs: Any,
    threshold: float = FOREGROUND_THRESHOLD,
    num_bins: int = 15,
    adaptive: bool = False,
) -> ForegroundCalibration:
    """Calibration of the foreground probability where the model sees foreground.

    ``p_fg`` is the foreground probability of a binary output, or ``1 - p_0``
    (one minus the probability of background class 0) for a softmax; the
    truth's foreground is ``label != 0``. The *region* is every element with
    ``p_fg >= threshold``, chosen from the prediction alone. On the region
    the elements are binned by ``p_fg`` (``num_bins`` equal-width bins on
    [0, 1], or equal-mass bins with ``adaptive=True``) and
    ``ECE = sum_b (n_b / n) |mean p_fg_b - foreground frequency_b|``.

    Why the region depends on the prediction only: calibration means
    ``E[y | p] = p``. Selecting elements by their *true* label (the old
    region "truth OR p_fg >= 0.5") conditions on ``y`` and breaks that
    identity: a perfectly calibrated predictor scored 0.2-0.6 there, a
    number set by the selection more than by the model. A prediction-only
    region keeps ``E[y | p] = p`` inside every bin.

    Why a region at all: with 1 foreground pixel in 60, the pixel-wise ECE
    is an average dominated by millions of easy background pixels with
    ``p_fg`` near 0. Dropping ``p_fg < threshold`` (default 0.02) keeps the
    elements where foreground is plausible and measures their calibration
    at full weight. The excluded elements are summarised separately, never
    mixed into the ECE: their mean ``p_fg`` against their observed
    foreground frequency (for a calibrated model the two agree, both below
    ``threshold``; a frequency well above the mean is foreground the model
    misses with confident background probabilities).

    An empty region gives ``ece = nan`` (no warning); ``threshold=0`` makes
    the region every element (the pixel-wise ECE of ``p_fg``). Sampling
    noise alone gives a calibrated model an ECE of about 0.01 on ~12k region
    elements; compare with :func:`ece_noise_floor`.

    Args:
        y_true: masks / labels as in :func:`classwise_ece`.
        probs: probabilities as in :func:`classwise_ece`.
        threshold: float in [0, 1), the foreground probability at or above
            which an element belongs to the region. Default 0.02.
        num_bins: int >= 1, default 15.
        adaptive: bool, equal-mass bins (sorted ``p_fg`` cut into
            ``num_bins`` runs of equal size) instead of equal-width bins.
            Default False.

    Returns:
        :class:`ForegroundCalibration`.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import foreground_calibration
    >>> y = np.array([1, 0, 0, 1, 0, 1, 1, 0])
    >>> p = np.array([0.001, 0.01, 0.05, 0.3, 0.35, 0.9, 0.95, 0.6])
    >>> r = foreground_calibration(y, p, num_bins=2)
    >>> round(r.ece, 4), r.region_size, r.region_fraction
    (0.125, 6, 0.75)
    >>> round(r.excluded_mean_probability, 4), r.excluded_foreground_rate, r.missed_foreground
    (0.0055, 0.5, 1)
    >>> round(r.region_mean_probability, 4), r.region_foreground_rate
    (0.525, 0.5)
    """
    num_bins = _check_bins(num_bins)
    threshold = _check_threshold(threshold)
    p_fg, truth = _foreground(y_true, probs)
    region = p_fg >= threshold
    region_size = int(region.sum())
    excluded_size = p_fg.size - region_size
    if excluded_size:
        outside = ~region
        excluded_mean = float(p_fg[outside].mean())
        missed = float(truth[outside].sum())
        excluded_rate = missed / excluded_size
    else:
        excluded_mean = excluded_rate = float("nan")
        missed = 0.0
    return ForegroundCalibration(
        ece=_ece(p_fg[region], truth[region], num_bins, bool(adaptive)),
        region_size=region_size,
        region_fraction=region_size / p_fg.size if p_fg.size else float("nan"),
        excluded_size=excluded_size,
        excluded_mean_probability=excluded_mean,
        excluded_foreground_rate=excluded_rate,
        missed_foreground=int(missed),
        threshold=threshold,
        num_bins=num_bins,
        adaptive=bool(adaptive),
        region_mean_probability=float(p_fg[region].mean()) if region_size else float("nan"),
        region_foreground_rate=float(truth[region].mean()) if region_size else float("nan"),
    )


def foreground_ece(
    y_true: Any,
    probs: Any,
    threshold: float = FOREGROUND_THRESHOLD,
    num_bins: int = 15,
    adaptive: bool = False,
) -> float:
    """ECE of the foreground probability on the region ``p_fg >= threshold``.

    The ``ece`` field of :func:`foreground_calibration` (see there for the
    definition, the region and the missed-foreground report): elements are
    selected by the prediction only (``p_fg >= threshold``, default 0.02;
    ``p_fg = 1 - p_0`` for a softmax), binned by ``p_fg`` in equal-width
    (or, ``adaptive=True``, equal-mass) bins. A perfectly calibrated
    predictor scores near 0, up to sampling noise (:func:`ece_noise_floor`).

    Earlier versions used the region "truth OR p_fg >= threshold" with
    ``threshold=0.5``: selecting by the true label biased the number (a
    calibrated predictor scored 0.2-0.6). ``threshold`` is now the region's
    lower bound on ``p_fg`` and defaults to 0.02.

    Args:
        y_true: masks / labels as in :func:`classwise_ece`.
        probs: probabilities as in :func:`classwise_ece`.
        threshold: float in [0, 1), default 0.02.
        num_bins: int >= 1, default 15.
        adaptive: bool, equal-mass bins. Default False.

    Returns:
        float; NaN when the region is empty (no element has
        ``p_fg >= threshold``).

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import foreground_ece
    >>> y = np.array([1, 0, 0, 1, 0, 1, 1, 0])
    >>> p = np.array([0.001, 0.01, 0.05, 0.3, 0.35, 0.9, 0.95, 0.6])
    >>> round(foreground_ece(y, p, num_bins=4), 4)
    0.1917
    >>> foreground_ece(y, np.full(8, 0.01))
    nan
    """
    return foreground_calibration(y_true, probs, threshold, num_bins, adaptive).ece


def adaptive_ece(
    y_true: Any, probs: Any, num_bins: int = 15, threshold: float = FOREGROUND_THRESHOLD
) -> float:
    """Adaptive (equal-mass bin) ECE of the foreground probability.

    Confidence is the foreground probability ``p_fg`` (binary output, or
    ``1 - p_0`` for a softmax) on the same region as :func:`foreground_ece`,
    ``p_fg >= threshold``; the truth is "foreground" (``label != 0``). The
    region's elements sorted by ``p_fg`` are cut into ``num_bins`` runs of
    equal size (sizes differ by at most one; tied values may straddle a cut)
    and ``ECE = sum_b (n_b / n) |mean p_fg_b - foreground frequency_b|``.
    Equal-mass bins put as many elements in the sparse high-``p`` bins as
    in the crowded low-``p`` ones, so no bin is a handful of pixels.
    ``threshold=0`` gives the adaptive ECE of ``p_fg`` over all elements.

    Args:
        y_true: masks / labels as in :func:`classwise_ece`.
        probs: probabilities as in :func:`classwise_ece`.
        num_bins: int >= 1, default 15.
        threshold: float in [0, 1), default 0.02.

    Returns:
        float; NaN for an empty region.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import adaptive_ece
    >>> y = np.array([1, 0, 0, 1, 0, 1, 1, 0])
    >>> p = np.array([0.001, 0.01, 0.05, 0.3, 0.35, 0.9, 0.95, 0.6])
    >>> round(adaptive_ece(y, p, num_bins=3), 4)
    0.2917
    """
    return foreground_calibration(y_true, probs, threshold, num_bins, adaptive=True).ece


def top_label_ece(y_true: Any, probs: Any, num_bins: int = 15) -> float:
    """Top-label expected calibration error (confidence = max probability).

    Bins the flattened elements by the predicted class's probability
    (``num_bins`` equal-width bins on [0, 1]); accuracy is "argmax equals the
    label" (ties go to the lower class). Binary inputs count as the two
    classes (background, foreground), confidence ``max(p, 1 - p)``. The
    definition of ``tfp.stats.expected_calibration_error`` (Guo et al. 2017,
    eq. 3), computed in float64 NumPy; the tests check the two agree.

    Args:
        y_true: labels / masks as in :func:`classwise_ece`.
        probs: probabilities as in :func:`classwise_ece`.
        num_bins: int >= 1, default 15.

    Returns:
        float; NaN for an empty input.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import top_label_ece
    >>> round(top_label_ece(np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]])), 3)
    0.25
    """
    num_bins = _check_bins(num_bins)
    labels, p, _ = _labels_and_probs(y_true, probs)
    predicted = np.argmax(p, axis=1)
    confidence = p[np.arange(labels.size), predicted]
    return _ece(confidence, (predicted == labels).astype(np.float64), num_bins)


def ece_noise_floor(
    probs: Any,
    ece_fn: Callable[..., Any] | None = None,
    num_draws: int = 20,
    seed: int | None = 0,
    multiclass: bool | None = None,
    **ece_kwargs: Any,
) -> float | np.ndarray:
    """ECE that a perfectly calibrated model with these probabilities gets by chance.

    Draws ``num_draws`` label sets from the model's own probabilities
    (``Bernoulli(p)`` per element for binary inputs, ``Categorical(p)`` for a
    softmax), scores each with ``ece_fn(labels, probs, **ece_kwargs)`` and
    returns the median. Those labels are calibrated by construction, so the
    floor is the ECE of sampling noise alone under the same definition (same
    region, bins and element count). It shrinks like ``1 / sqrt(n)``: a
    calibrated predictor on ~12k foreground-region pixels scores ~0.01 by
    chance alone, so report an ECE next to its floor; an ECE within a
    factor ~1.5 of the floor is indistinguishable from calibrated.

    Args:
        probs: probabilities as in :func:`classwise_ece` (binary foreground
            probabilities, or ``(..., C)`` softmax rows).
        ece_fn: callable ``(y_true, probs, **ece_kwargs)`` returning a float
            or an array (e.g. :func:`classwise_ece`; then the median is per
            entry). Default :func:`foreground_ece`.
        num_draws: int >= 1, number of label sets drawn. Default 20.
        seed: int or None, seed of ``numpy.random.default_rng``. Default 0.
        multiclass: bool or None. None (default) infers it: a last axis of
            size >= 2 whose rows sum to 1 (within 1e-4) is a softmax;
            anything else (including a last axis of size 1) is binary.
        **ece_kwargs: passed to ``ece_fn`` (e.g. ``num_bins``, ``threshold``).

    Returns:
        float (or array, when ``ece_fn`` returns one): the median ECE.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import ece_noise_floor, foreground_ece
    >>> p = np.random.default_rng(0).random(12_000)
    >>> floor = ece_noise_floor(p, foreground_ece, num_draws=10)
    >>> 0.005 < floor < 0.02
    True
    """
    if ece_fn is None:
        ece_fn = foreground_ece
    if not callable(ece_fn):
        raise ValueError(
            f"Argument `ece_fn` must be a callable (y_true, probs, **kwargs). "
            f"Received: ece_fn={ece_fn!r}"
        )
    if isinstance(num_draws, bool) or not isinstance(num_draws, int | np.integer) or num_draws < 1:
        raise ValueError(
            f"Argument `num_draws` must be a positive integer. Received: num_draws={num_draws!r}"
        )
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 0 or not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError(
            "Argument `probs` must be an array of probabilities in [0, 1]. Received: "
            f"shape {p.shape}, values in [{np.nanmin(p) if p.size else None}, "
            f"{np.nanmax(p) if p.size else None}]"
        )
    if multiclass is None:
        multiclass = bool(
            p.ndim >= 2 and p.shape[-1] >= 2 and np.allclose(p.sum(axis=-1), 1.0, atol=1e-4)
        )
    elif multiclass and (p.ndim < 2 or p.shape[-1] < 2):
        raise ValueError(
            "Argument `multiclass` is True but `probs` has no class axis of size >= 2. "
            f"Received: probs with shape {p.shape}"
        )
    rng = np.random.default_rng(seed)
    if multiclass:
        cdf = np.cumsum(p.reshape(-1, p.shape[-1]), axis=1)[:, :-1]
    scores = []
    for _ in range(int(num_draws)):
        if multiclass:
            u = rng.random(cdf.shape[0])
            labels = (u[:, None] >= cdf).sum(axis=1).reshape(p.shape[:-1])
        else:
            labels = (rng.random(p.shape) < p).astype(np.float64)
        scores.append(np.asarray(ece_fn(labels, p, **ece_kwargs), dtype=np.float64))
    floor = np.median(np.stack(scores), axis=0)
    return float(floor) if floor.ndim == 0 else floor


def brier_score(y_true: Any, probs: Any) -> float:
    """Brier score: sum over classes of ``(p_c - y_c)^2``, mean over elements.

    For binary inputs (one foreground probability per element) the sum has
    one term, ``(p - y)^2``: scikit-learn's ``brier_score_loss``.

    Args:
        y_true: labels / masks as in :func:`classwise_ece`.
        probs: probabilities as in :func:`classwise_ece`.

    Returns:
        float.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import brier_score
    >>> brier_score(np.array([1.0, 0.0]), np.array([0.9, 0.2]))
    0.025
    """
    labels, p, binary = _labels_and_probs(y_true, probs)
    if binary:
        return float(np.mean((p[:, 1] - labels) ** 2))
    one_hot = np.eye(p.shape[1])[labels]
    return float(np.mean(np.sum((p - one_hot) ** 2, axis=1)))


def predictive_nll(y_true: Any, probs: Any, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood ``-log p(y)`` per element, in nats.

    Args:
        y_true: labels / masks as in :func:`classwise_ece`.
        probs: probabilities as in :func:`classwise_ece`.
        eps: float > 0, probabilities are clipped to ``[eps, 1]`` so a
            confident mistake costs ``-log(eps)``, not infinity. Default 1e-12.

    Returns:
        float.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import predictive_nll
    >>> round(predictive_nll(np.array([1, 0]), np.array([0.5, 0.5])), 4)
    0.6931
    """
    if not float(eps) > 0:
        raise ValueError(f"Argument `eps` must be > 0. Received: eps={eps!r}")
    labels, p, _ = _labels_and_probs(y_true, probs)
    picked = p[np.arange(labels.size), labels]
    return float(-np.mean(np.log(np.clip(picked, eps, 1.0))))


def reliability_curve(
    y_true: Any, probs: Any, num_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of a reliability diagram: confidence vs accuracy per bin.

    Binary inputs: confidence is the foreground probability and accuracy the
    foreground frequency in each bin. Multi-class: top-label confidence
    (max probability) and accuracy (argmax equals the label). Bins are
    ``num_bins`` equal-width intervals of [0, 1].

    Args:
        y_true: labels / masks as in :func:`classwise_ece`.
        probs: probabilities as in :func:`classwise_ece`.
        num_bins: int >= 1, default 15.

    Returns:
        ``(mean_confidence, accuracy, counts)``, each float64 ``(num_bins,)``;
        empty bins have NaN confidence and accuracy and count 0.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import reliability_curve
    >>> y, p = np.array([0, 1, 1]), np.array([0.1, 0.9, 0.8])
    >>> conf, acc, n = reliability_curve(y, p, num_bins=2)
    >>> conf.round(2).tolist(), acc.tolist(), n.tolist()
    ([0.1, 0.85], [0.0, 1.0], [1.0, 2.0])
    """
    num_bins = _check_bins(num_bins)
    labels, p, binary = _labels_and_probs(y_true, probs)
    if binary:
        confidence, outcome = p[:, 1], labels.astype(np.float64)
    else:
        confidence = p.max(axis=1)
        outcome = (p.argmax(axis=1) == labels).astype(np.float64)
    conf_sum, out_sum, counts = _bin_stats(confidence, outcome, num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return conf_sum / counts, out_sum / counts, counts


def uncertainty_auroc(errors_mask: Any, uncertainty: Any) -> float:
    """AUROC of uncertainty as a detector of errors.

    The probability that a randomly chosen erroneous element has higher
    uncertainty than a randomly chosen correct one (ties count half),
    computed from average ranks (Mann-Whitney U). 0.5 means uncertainty
    says nothing about errors; 1.0 means every error is more uncertain than
    every correct element.

    Args:
        errors_mask: boolean / 0-1 array, True where the prediction is wrong.
        uncertainty: array of the same shape (e.g. ``MCPrediction.total``).

    Returns:
        float in [0, 1].

    Raises:
        ValueError: for mismatched shapes, or when all elements are errors or
            none is.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import uncertainty_auroc
    >>> uncertainty_auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    errors = np.asarray(errors_mask).astype(bool).reshape(-1)
    scores = np.asarray(uncertainty, dtype=np.float64).reshape(-1)
    if np.shape(errors_mask) != np.shape(uncertainty):
        raise ValueError(
            "Arguments `errors_mask` and `uncertainty` must have the same shape. "
            f"Received: {np.shape(errors_mask)} and {np.shape(uncertainty)}"
        )
    n_err = int(errors.sum())
    n_ok = errors.size - n_err
    if n_err == 0 or n_ok == 0:
        raise ValueError(
            "Argument `errors_mask` must contain both errors and correct "
            f"elements for an AUROC. Received: {n_err} errors of {errors.size}"
        )
    ranks = stats.rankdata(scores)
    u = ranks[errors].sum() - n_err * (n_err + 1) / 2.0
    return float(u / (n_err * n_ok))
