"""Per-class confusion counts and scores of hard labels, in NumPy: the one owner.

:func:`confusion_counts` counts, per class, the true positives, false
positives and false negatives of integer predictions against integer labels;
:func:`per_class_scores` turns the counts (summed over as many images as
wanted: they add up) into Dice, recall and precision with one rule for empty
cases:

**A score whose denominator is 0 is None (undefined), never 0 and never 1.**
So recall is None for a class absent from the truth, precision is None for a
class never predicted, and Dice is None only for a class absent from both the
truth and the prediction (a class predicted where the truth has none scores
Dice 0: every pixel given to it is wrong). This is scikit-learn's
``zero_division=np.nan``. Reports write None as ``null``.

The Keras metrics (:class:`~bayesseg.metrics.Dice`, ``Recall``,
``Precision``) give 0 for an empty denominator instead, as Keras metrics must
return a number; a report that promises their numbers converts None to 0
itself and says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayesseg._validation import check_int

__all__ = ["confusion_counts", "per_class_scores"]


def _class_labels(name: str, values: Any, num_classes: int) -> np.ndarray:
    """``values`` as int64, checked to be whole numbers in ``[0, num_classes)``."""
    array = np.asarray(values)
    if array.dtype.kind == "b":
        array = array.astype(np.int64)
    elif array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.floor(array)):
            bad = array[~np.isfinite(array) | (array != np.floor(array))][:5]
            raise ValueError(
                f"Argument `{name}` must hold whole-number class labels. Received: {name} "
                f"holding {bad.tolist()}"
            )
    elif array.dtype.kind not in "iu":
        raise ValueError(
            f"Argument `{name}` must hold integer class labels. Received: {name} of dtype "
            f"{array.dtype}"
        )
    array = array.astype(np.int64, copy=False)
    outside = (array < 0) | (array >= num_classes)
    if outside.any():
        bad = np.unique(array[outside])[:5]
        raise ValueError(
            f"Argument `{name}` must hold class labels in [0, {num_classes}) (num_classes="
            f"{num_classes}). Received: {name} holding {bad.tolist()}"
        )
    return array


def _confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts, rows the truth and columns the prediction."""
    num_classes = check_int("num_classes", num_classes, minimum=1)
    if np.shape(y_true) != np.shape(y_pred):
        raise ValueError(
            "Arguments `y_true` and `y_pred_labels` must have the same shape. Received: "
            f"y_true.shape={np.shape(y_true)} and y_pred_labels.shape={np.shape(y_pred)}"
        )
    truth = _class_labels("y_true", y_true, num_classes).reshape(-1)
    pred = _class_labels("y_pred_labels", y_pred, num_classes).reshape(-1)
    counts = np.bincount(truth * num_classes + pred, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _counts_from_matrix(matrix: Any) -> np.ndarray:
    """``(K, 3)`` tp / fp / fn of a ``(K, K)`` confusion matrix (rows: truth)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    tp = np.diag(matrix)
    return np.stack([tp, matrix.sum(0) - tp, matrix.sum(1) - tp], axis=1)


def confusion_counts(y_true: Any, y_pred_labels: Any, num_classes: int) -> np.ndarray:
    """True positives, false positives and false negatives of every class.

    Class ``c``'s true positives are the elements labelled ``c`` and
    predicted ``c``; its false positives those predicted ``c`` but labelled
    otherwise; its false negatives those labelled ``c`` but predicted
    otherwise. Counts of several images add up: sum them, then score the
    sum with :func:`per_class_scores` (a pooled, micro average).

    Args:
        y_true: integer class labels, any shape (bool and whole-number
            floats are accepted), each in ``[0, num_classes)``.
        y_pred_labels: the predicted labels (e.g. the argmax of softmax
            probabilities, or ``p >= 0.5`` of a sigmoid), the same shape.
        num_classes: int >= 1, the number of classes K.

    Returns:
        int64 array ``(K, 3)``: column 0 the true positives, 1 the false
        positives, 2 the false negatives of each class.

    Raises:
        ValueError: for arrays of different shapes, labels that are not
            whole numbers in ``[0, num_classes)``, or ``num_classes < 1``.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import confusion_counts
    >>> confusion_counts(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 0]), 4).tolist()
    [[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 0]]
    """
    return _counts_from_matrix(_confusion_matrix(y_true, y_pred_labels, num_classes))


def _ratio(numerator: int, denominator: int) -> float | None:
    return float(numerator / denominator) if denominator else None


def per_class_scores(counts: Any) -> dict[int, dict[str, Any]]:
    """Dice, recall, precision and support of every class from its counts.

    ``dice = 2 TP / (2 TP + FP + FN)``, ``recall = TP / (TP + FN)``,
    ``precision = TP / (TP + FP)`` and ``support = TP + FN`` (the elements
    labelled with the class).

    **Empty cases: a score whose denominator is 0 is None**, never 0 and never
    1 (scikit-learn's ``zero_division=np.nan``): recall is None for a class
    absent from the truth, precision None for a class never predicted, Dice
    None for a class absent from both. A class predicted but absent from the
    truth has Dice 0 and precision 0 (all its predictions are wrong); a class
    present but never predicted has Dice 0 and recall 0.

    Args:
        counts: ``(K, 3)`` non-negative integer counts, columns TP, FP, FN
            (:func:`confusion_counts`, or a sum of them).

    Returns:
        ``{class: {"dice", "recall", "precision", "support"}}`` for classes
        ``0 .. K-1``: floats or None, ``support`` an int.

    Raises:
        ValueError: for counts of another shape, or negative or fractional
            counts.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import confusion_counts, per_class_scores
    >>> counts = confusion_counts(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 0]), 4)
    >>> scores = per_class_scores(counts)
    >>> scores[0]
    {'dice': 0.5, 'recall': 0.5, 'precision': 0.5, 'support': 2}
    >>> scores[2]  # predicted once, never true
    {'dice': 0.0, 'recall': None, 'precision': 0.0, 'support': 0}
    >>> scores[3]  # neither true nor predicted
    {'dice': None, 'recall': None, 'precision': None, 'support': 0}
    """
    array = np.asarray(counts)
    if array.ndim != 2 or array.shape[1] != 3 or array.dtype.kind not in "iuf":
        raise ValueError(
            "Argument `counts` must be an array of counts of shape (num_classes, 3) (TP, FP, "
            f"FN). Received: counts of shape {array.shape} and dtype {array.dtype}"
        )
    bad = ~np.isfinite(array) | (array < 0) | (array != np.floor(array))
    if bad.any():
        raise ValueError(
            "Argument `counts` must hold non-negative whole numbers. Received: counts holding "
            f"{np.unique(array[bad])[:5].tolist()}"
        )
    rows = {}
    for c, (tp, fp, fn) in enumerate(array.astype(np.int64).tolist()):
        rows[c] = {
            "dice": _ratio(2 * tp, 2 * tp + fp + fn),
            "recall": _ratio(tp, tp + fn),
            "precision": _ratio(tp, tp + fp),
            "support": tp + fn,
        }
    return rows
