"""Calibration of probabilities: ECE variants, foreground calibration, noise floor.

* :func:`foreground_calibration` (:class:`ForegroundCalibration`),
  :func:`foreground_ece` and :func:`adaptive_ece`: calibration of the
  foreground probability on the region ``p_fg >= threshold``, selected by the
  prediction only (never by the true label), so a calibrated predictor scores
  near its noise floor;
* :func:`classwise_ece` and :func:`top_label_ece`: the usual ECEs;
* :func:`ece_noise_floor`: the ECE a calibrated model gets by chance;
* :func:`reliability_curve`: the points of a reliability diagram.

Inputs follow the convention of :mod:`bayesseg.metrics`: ``(..., C)`` softmax
probabilities with integer labels, or binary foreground probabilities with
0/1 masks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from bayesseg._validation import argument_error, check_float, check_int
from bayesseg.metrics import _arrays

__all__ = [
    "FOREGROUND_THRESHOLD",
    "ForegroundCalibration",
    "adaptive_ece",
    "classwise_ece",
    "ece_noise_floor",
    "foreground_calibration",
    "foreground_ece",
    "reliability_curve",
    "top_label_ece",
]

#: Default foreground probability threshold of :func:`foreground_calibration`.
FOREGROUND_THRESHOLD = 0.02


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
    num_bins = check_int("num_bins", num_bins)
    labels, p, _ = _arrays.labels_and_probs(y_true, probs)
    outcomes = [(labels == c).astype(np.float64) for c in range(p.shape[1])]
    return np.array([_arrays.ece(p[:, c], outcome, num_bins) for c, outcome in enumerate(outcomes)])


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
    num_bins = check_int("num_bins", num_bins)
    threshold = check_float("threshold", threshold, 0.0, 1.0, strict_maximum=True)
    p_fg, truth = _arrays.foreground(y_true, probs)
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
        ece=_arrays.ece(p_fg[region], truth[region], num_bins, bool(adaptive)),
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
    num_bins = check_int("num_bins", num_bins)
    labels, p, _ = _arrays.labels_and_probs(y_true, probs)
    predicted = np.argmax(p, axis=1)
    confidence = p[np.arange(labels.size), predicted]
    return _arrays.ece(confidence, (predicted == labels).astype(np.float64), num_bins)


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
        raise argument_error("ece_fn", "be a callable (y_true, probs, **kwargs)", ece_fn)
    num_draws = check_int("num_draws", num_draws)
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
    for _ in range(num_draws):
        if multiclass:
            u = rng.random(cdf.shape[0])
            labels = (u[:, None] >= cdf).sum(axis=1).reshape(p.shape[:-1])
        else:
            labels = (rng.random(p.shape) < p).astype(np.float64)
        scores.append(np.asarray(ece_fn(labels, p, **ece_kwargs), dtype=np.float64))
    floor = np.median(np.stack(scores), axis=0)
    return float(floor) if floor.ndim == 0 else floor


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
    num_bins = check_int("num_bins", num_bins)
    labels, p, binary = _arrays.labels_and_probs(y_true, probs)
    if binary:
        confidence, outcome = p[:, 1], labels.astype(np.float64)
    else:
        confidence = p.max(axis=1)
        outcome = (p.argmax(axis=1) == labels).astype(np.float64)
    conf_sum, out_sum, counts = _arrays.bin_stats(confidence, outcome, num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return conf_sum / counts, out_sum / counts, counts
