"""Counting the elements of each class in labels, arrays or streamed data sets."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from bayesseg._validation import argument_error, check_int
from bayesseg.losses._inputs import check_ignore_index, optional_bool

__all__ = ["count_classes"]


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
