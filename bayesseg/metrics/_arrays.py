"""The NumPy metrics' input convention and binning (private to ``bayesseg.metrics``).

Probability arrays follow one convention: ``probs`` of shape ``(..., C)``
(C >= 2, softmax probabilities) with integer labels ``y_true`` of shape
``(...)`` or ``(..., 1)``; or binary foreground probabilities of shape
``(..., 1)`` or ``(...)``, the same shape as ``y_true`` holding 0/1.
:func:`labels_and_probs` flattens both to ``(M,)`` labels and ``(M, C)``
probabilities; :func:`bin_stats` and :func:`ece` are the binning every ECE
and the reliability curve share.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayesseg import _probability


def check_probability_range(p: np.ndarray) -> None:
    """A ValueError unless every value of ``p`` is a probability in [0, 1] (not logits)."""
    if not np.all(np.isfinite(p)) or p.min(initial=0.0) < 0 or p.max(initial=0.0) > 1:
        raise ValueError(
            "Argument `probs` must hold probabilities in [0, 1] (not logits). "
            f"Received values in [{p.min()}, {p.max()}]"
        )


def labels_and_probs(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray, bool]:
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
    check_probability_range(p)
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


def bin_index(confidence: np.ndarray, num_bins: int, adaptive: bool = False) -> np.ndarray:
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


def bin_stats(
    confidence: np.ndarray, outcome: np.ndarray, num_bins: int, adaptive: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: sum of confidence, sum of outcome, count (see :func:`bin_index`)."""
    index = bin_index(confidence, num_bins, adaptive)
    counts = np.bincount(index, minlength=num_bins).astype(np.float64)
    conf_sum = np.bincount(index, weights=confidence, minlength=num_bins)
    out_sum = np.bincount(index, weights=outcome, minlength=num_bins)
    return conf_sum, out_sum, counts


def ece(
    confidence: np.ndarray, outcome: np.ndarray, num_bins: int, adaptive: bool = False
) -> float:
    """``sum_b (n_b / n) |mean confidence_b - mean outcome_b|``; NaN when n = 0."""
    if confidence.size == 0:
        return float("nan")
    conf_sum, out_sum, _ = bin_stats(confidence, outcome, num_bins, adaptive)
    return float(np.sum(np.abs(conf_sum - out_sum)) / confidence.size)


def foreground(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Flat foreground probability ``p_fg`` and truth indicator (float 0/1)."""
    labels, p, binary = labels_and_probs(y_true, probs)
    # The two-column form of a binary input holds the foreground in column 1.
    p_fg = p[:, 1] if binary else _probability.foreground_probability(p)
    return p_fg, (labels != 0).astype(np.float64)


def harmonic_mean(precision, recall):
    """F1 of precision and recall, 0 where both are 0 (scalars or arrays).

    The one place the detection scores (events, lesions) write it.

    Example:
        >>> float(harmonic_mean(0.5, 1.0)), float(harmonic_mean(0.0, 0.0))
        (0.6666666666666666, 0.0)
    """
    precision, recall = np.asarray(precision, dtype=np.float64), np.asarray(recall, np.float64)
    total = precision + recall
    return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)
