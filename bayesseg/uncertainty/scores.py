"""One uncertainty score per image: :func:`image_scores`.

An :class:`~bayesseg.uncertainty.MCPrediction` holds an uncertainty map per
image; deciding which images to send to a person, or whether an image is
unlike the training data, needs one number per image. Scored against a
clean-versus-shifted label with :func:`bayesseg.metrics.uncertainty_auroc`,
they measure how well a model notices a distribution shift;
:func:`atypicality` rates them against reference images in either
direction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from bayesseg._validation import argument_error, check_float
from bayesseg.uncertainty.decomposition import MCPrediction

__all__ = ["UNCERTAIN_ENTROPY_FRACTION", "ImageScores", "atypicality", "image_scores"]

# A pixel is uncertain when its predictive entropy reaches this fraction of
# the largest possible, log(K) nats: for two classes p in about [0.11, 0.89].
UNCERTAIN_ENTROPY_FRACTION = 0.5


@dataclasses.dataclass(frozen=True)
class ImageScores:
    """Per-image summaries of an :class:`MCPrediction`, each of shape ``(N,)``.

    Attributes:
        mean_epistemic: mean epistemic part (mutual information, nats) over
            the image's pixels.
        mean_total: mean predictive entropy (nats).
        mean_aleatoric: mean expected entropy (nats).
        uncertain_fraction: fraction of pixels whose predictive entropy is at
            least ``threshold * log(K)``.
        threshold: the fraction of ``log(K)`` used for ``uncertain_fraction``.

    Example:

    >>> import numpy as np
    >>> from bayesseg.uncertainty import ImageScores
    >>> s = ImageScores(*(np.zeros(2),) * 4, threshold=0.5)
    >>> sorted(s.as_dict())
    ['mean_aleatoric', 'mean_epistemic', 'mean_total', 'uncertain_fraction']
    """

    mean_epistemic: np.ndarray
    mean_total: np.ndarray
    mean_aleatoric: np.ndarray
    uncertain_fraction: np.ndarray
    threshold: float

    def as_dict(self) -> dict[str, np.ndarray]:
        """The four score arrays by name (what ``score=`` arguments accept)."""
        return {
            "mean_epistemic": self.mean_epistemic,
            "mean_total": self.mean_total,
            "mean_aleatoric": self.mean_aleatoric,
            "uncertain_fraction": self.uncertain_fraction,
        }


def image_scores(
    prediction: MCPrediction,
    threshold: float = UNCERTAIN_ENTROPY_FRACTION,
    mask: Any = None,
) -> ImageScores:
    """Per-image uncertainty scores: mean epistemic, mean total, uncertain fraction.

    Averages each uncertainty map over an image's pixels (or over ``mask``)
    and counts the fraction of pixels whose predictive entropy ``total`` is
    at least ``threshold * log(K)`` nats (``K`` classes; a one-channel
    sigmoid output has ``K = 2``). The epistemic mean is the score meant for
    "is this image unlike the training data"; the total and the uncertain
    fraction also grow with ambiguous but familiar content (faint lesions,
    blurry borders).

    Args:
        prediction: an :class:`MCPrediction` of ``N`` images.
        threshold: float in (0, 1], the fraction of the largest entropy
            ``log(K)`` from which a pixel counts as uncertain. Default 0.5
            (for two classes: ``p`` between about 0.11 and 0.89).
        mask: optional boolean array ``(N, *spatial)`` (or ``(*spatial)``
            for every image): average over the pixels where it is True only,
            e.g. a body or brain mask, so that the empty background does not
            dilute the scores. Every image must keep at least one pixel.

    Returns:
        An :class:`ImageScores` of float64 arrays ``(N,)``.

    Raises:
        ValueError: for a ``prediction`` that is not an ``MCPrediction``, a
            ``threshold`` outside (0, 1], or a ``mask`` of another shape or
            leaving an image without pixels.

    Example:

    >>> import numpy as np
    >>> from bayesseg.uncertainty import MCPrediction, image_scores
    >>> total = np.array([[0.0, 0.69], [0.1, 0.2]], "float32")  # 2 images, 2 pixels
    >>> epistemic = np.array([[0.0, 0.2], [0.0, 0.0]], "float32")
    >>> pred = MCPrediction(np.full((2, 2, 1), 0.5, "float32"), total, total - epistemic,
    ...                     epistemic, 8)
    >>> s = image_scores(pred)
    >>> s.mean_epistemic.tolist(), s.uncertain_fraction.tolist()
    ([0.10000000149011612, 0.0], [0.5, 0.0])
    """
    if not isinstance(prediction, MCPrediction):
        raise argument_error(
            "prediction", "be an MCPrediction (from predict_mc)", type(prediction).__name__
        )
    threshold = check_float("threshold", threshold, 0.0, 1.0, strict_minimum=True)
    shape = prediction.total.shape
    if mask is None:
        weights = np.ones(shape, dtype=np.float64)
    else:
        region = np.asarray(mask)
        if region.shape == shape[1:]:
            region = np.broadcast_to(region, shape)
        if region.shape != shape:
            raise ValueError(
                f"Argument `mask` must have the prediction's spatial shape {shape[1:]} or "
                f"its shape with the batch axis {shape}. Received: mask with shape "
                f"{np.shape(mask)}"
            )
        weights = region.astype(bool).astype(np.float64)
    weights = weights.reshape(shape[0], -1)
    counts = weights.sum(axis=1)
    if np.any(counts == 0):
        empty = np.flatnonzero(counts == 0).tolist()
        raise ValueError(
            f"Argument `mask` must keep at least one pixel of every image. Received: a mask "
            f"with no pixel in image(s) {empty}"
        )

    def mean(values: np.ndarray) -> np.ndarray:
        flat = np.asarray(values, dtype=np.float64).reshape(shape[0], -1)
        return (flat * weights).sum(axis=1) / counts

    cut = threshold * math.log(prediction.num_classes)
    uncertain = (np.asarray(prediction.total, dtype=np.float64) >= cut).astype(np.float64)
    return ImageScores(
        mean_epistemic=mean(prediction.epistemic),
        mean_total=mean(prediction.total),
        mean_aleatoric=mean(prediction.aleatoric),
        uncertain_fraction=mean(uncertain),
        threshold=threshold,
    )


def atypicality(scores, reference) -> np.ndarray:
    """How far each score lies from a reference set's, in either direction.

    ``|s - median(reference)| / (1.4826 * MAD(reference))``: a robust
    z-score against per-image scores of images known to be like the
    training data (e.g. held-out validation images). A shift can make a
    model *more* certain as well as less (blur and dimming smooth away the
    faint structures it hesitates on), so "unlike the training data" is
    two-sided: ranking by the raw uncertainty would miss a drop that this
    flags. The scale is the median absolute deviation times 1.4826 (the
    standard deviation for normal data); a zero MAD falls back to the
    standard deviation, and a reference without spread to 1.

    Args:
        scores: array of per-image scores to rate, e.g.
            ``image_scores(pred).mean_epistemic``.
        reference: 1-D array of at least 2 finite scores of reference images.

    Returns:
        float64 array of ``scores``' shape, >= 0.

    Raises:
        ValueError: for a ``reference`` with fewer than 2 values or any
            non-finite value, or non-finite ``scores``.

    Example:

    >>> import numpy as np
    >>> from bayesseg.uncertainty import atypicality
    >>> reference = np.array([1.0, 2.0, 3.0, 4.0, 5.0])   # median 3, MAD 1
    >>> atypicality(np.array([3.0, 0.0, 6.0]), reference).round(3).tolist()
    [0.0, 2.023, 2.023]
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    values = np.asarray(scores, dtype=np.float64)
    if ref.size < 2 or not np.all(np.isfinite(ref)):
        raise argument_error(
            "reference",
            "hold at least 2 finite scores",
            f"{ref.size} value(s), finite: {bool(np.all(np.isfinite(ref)))}",
        )
    if not np.all(np.isfinite(values)):
        raise argument_error(
            "scores", "be finite", f"{int(np.sum(~np.isfinite(values)))} non-finite"
        )
    center = np.median(ref)
    scale = 1.4826 * np.median(np.abs(ref - center))
    if scale <= 0:
        scale = float(np.std(ref)) or 1.0
    return np.abs(values - center) / scale
