"""Proper scores and uncertainty quality: Brier score, predictive NLL, uncertainty AUROC.

Inputs follow the convention of :mod:`bayesseg.metrics`: ``(..., C)`` softmax
probabilities with integer labels, or binary foreground probabilities with
0/1 masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from bayesseg._validation import check_float
from bayesseg.metrics import _arrays

__all__ = ["brier_score", "predictive_nll", "uncertainty_auroc"]


def brier_score(y_true: Any, probs: Any) -> float:
    """Brier score: sum over classes of ``(p_c - y_c)^2``, mean over elements.

    For binary inputs (one foreground probability per element) the sum has
    one term, ``(p - y)^2``: scikit-learn's ``brier_score_loss``.

    Args:
        y_true: labels / masks as in :func:`~bayesseg.metrics.classwise_ece`.
        probs: probabilities as in :func:`~bayesseg.metrics.classwise_ece`.

    Returns:
        float.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import brier_score
    >>> brier_score(np.array([1.0, 0.0]), np.array([0.9, 0.2]))
    0.025
    """
    labels, p, binary = _arrays.labels_and_probs(y_true, probs)
    if binary:
        return float(np.mean((p[:, 1] - labels) ** 2))
    one_hot = np.eye(p.shape[1])[labels]
    return float(np.mean(np.sum((p - one_hot) ** 2, axis=1)))


def predictive_nll(y_true: Any, probs: Any, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood ``-log p(y)`` per element, in nats.

    Args:
        y_true: labels / masks as in :func:`~bayesseg.metrics.classwise_ece`.
        probs: probabilities as in :func:`~bayesseg.metrics.classwise_ece`.
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
    eps = check_float("eps", eps, minimum=0.0, strict_minimum=True)
    labels, p, _ = _arrays.labels_and_probs(y_true, probs)
    picked = p[np.arange(labels.size), labels]
    return float(-np.mean(np.log(np.clip(picked, eps, 1.0))))


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
