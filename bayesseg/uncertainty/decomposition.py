"""The uncertainty decomposition of Monte Carlo draws: :class:`MCPrediction`.

Per element, in nats, from ``T`` draws of probabilities ``p_t``:

* ``total = H[mean_t p_t]`` (predictive entropy),
* ``aleatoric = mean_t H[p_t]`` (expected entropy),
* ``epistemic = total - aleatoric`` (the mutual information between the
  prediction and the weights, which equals ``mean_t KL(p_t || mean p)``).

:func:`epistemic_share` summarises the epistemic part where the foreground is
plausible.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from bayesseg import _probability
from bayesseg._validation import argument_error, check_float
from bayesseg.metrics import FOREGROUND_THRESHOLD

__all__ = ["EPISTEMIC_SHARE_THRESHOLD", "MCPrediction", "decompose", "epistemic_share"]

# Foreground probability from which an element counts in the epistemic share:
# the same region as the foreground ECE's.
EPISTEMIC_SHARE_THRESHOLD = FOREGROUND_THRESHOLD


@dataclasses.dataclass(frozen=True)
class MCPrediction:
    """The result of :func:`predict_mc`: mean probabilities and uncertainty maps.

    Attributes:
        mean: float32 array ``(N, *spatial, K)``, the mean over draws of the
            probabilities (K = 1: foreground probability of a sigmoid output;
            K = C: softmax probabilities).
        total: float32 array ``(N, *spatial)``, predictive entropy of ``mean``
            in nats (``H[E_t p_t]``).
        aleatoric: float32 array ``(N, *spatial)``, expected entropy
            ``E_t H[p_t]`` in nats.
        epistemic: float32 array ``(N, *spatial)``, mutual information
            ``total - aleatoric`` in nats (>= 0; round-off below zero is
            clipped).
        num_samples: int, the number of draws ``T``.

    Example:

    >>> import numpy as np
    >>> from bayesseg.uncertainty import MCPrediction
    >>> z = np.zeros((1, 2, 2), "float32")
    >>> pred = MCPrediction(z[..., None] + 0.5, z + 0.69, z + 0.6, z + 0.09, 8)
    >>> pred.epistemic.shape
    (1, 2, 2)
    """

    mean: np.ndarray
    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray
    num_samples: int

    @property
    def num_classes(self) -> int:
        """Number of classes: 2 for a one-channel (sigmoid) output, else C."""
        return _probability.num_classes(self.mean.shape[-1])


def decompose(mean: np.ndarray, aleatoric: np.ndarray, num_samples: int) -> MCPrediction:
    """The :class:`MCPrediction` of accumulated draws: ``total = H[mean]``, ``epistemic >= 0``.

    ``epistemic = total - aleatoric``, its round-off below zero clipped.

    Args:
        mean: ``(N, *spatial, K)``, mean probabilities over the draws.
        aleatoric: ``(N, *spatial)``, mean entropy (nats) of the draws.
        num_samples: number of draws.

    Returns:
        An :class:`MCPrediction` of float32 arrays.

    Example:

    >>> import numpy as np
    >>> from bayesseg.uncertainty.decomposition import decompose
    >>> pred = decompose(np.full((1, 2, 1), 0.5), np.full((1, 2), 0.5), num_samples=4)
    >>> round(float(pred.total[0, 0]), 4), round(float(pred.epistemic[0, 0]), 4)
    (0.6931, 0.1931)
    """
    total = _probability.entropy(mean)
    epistemic = np.maximum(total - aleatoric, 0.0)
    return MCPrediction(
        mean=mean.astype(np.float32),
        total=total.astype(np.float32),
        aleatoric=aleatoric.astype(np.float32),
        epistemic=epistemic.astype(np.float32),
        num_samples=num_samples,
    )


def epistemic_share(
    prediction: MCPrediction, threshold: float = EPISTEMIC_SHARE_THRESHOLD
) -> float:
    """Mean epistemic over mean total entropy where the foreground is plausible.

    ``share = mean(epistemic) / mean(total)`` over the elements whose
    foreground probability is at least ``threshold`` (one sigmoid channel:
    ``p``; a softmax: ``1 - p[..., 0]``, class 0 being the background). The
    region leaves out the sea of confident background, where both entropies
    are about 0 and would only dilute the ratio. It answers "how much of the
    model's doubt about the foreground is doubt about its weights": about 0
    for a network whose posterior never left a near-deterministic start,
    typically a few to tens of percent for a converged Bayesian network,
    and legitimately small with plenty of data.

    Pass the prediction whose probabilities are meant to be calibrated: with
    a class-weighted likelihood, the one from
    ``predict_mc(..., correct_for_class_weights=w)`` (or ``calibration=``),
    so the region follows corrected probabilities.

    Args:
        prediction: an :class:`MCPrediction` from :func:`predict_mc`.
        threshold: float in [0, 1), the foreground probability from which an
            element counts. Default 0.02.

    Returns:
        The share, a float in [0, 1]; NaN when no element reaches
        ``threshold`` or the region's total entropy is 0.

    Example:

    >>> import numpy as np
    >>> from bayesseg.uncertainty import MCPrediction, epistemic_share
    >>> mean = np.array([[[0.5], [0.001]]], "float32")       # 1 image, 2 pixels
    >>> total = np.array([[0.69, 0.008]], "float32")
    >>> epistemic = np.array([[0.23, 0.004]], "float32")
    >>> pred = MCPrediction(mean, total, total - epistemic, epistemic, 8)
    >>> round(epistemic_share(pred), 4)  # only the first pixel is in the region
    0.3333
    """
    if not isinstance(prediction, MCPrediction):
        raise argument_error(
            "prediction", "be an MCPrediction (from predict_mc)", type(prediction).__name__
        )
    threshold = check_float("threshold", threshold, 0.0, 1.0, strict_maximum=True)
    foreground = _probability.foreground_probability(np.asarray(prediction.mean, dtype=np.float64))
    region = foreground >= threshold
    if not region.any():
        return math.nan
    total = float(np.mean(prediction.total[region], dtype=np.float64))
    if total <= 0:
        return math.nan
    return float(np.mean(prediction.epistemic[region], dtype=np.float64) / total)
