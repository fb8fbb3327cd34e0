"""Selective prediction: the risk-coverage curve, AURC and per-image Dice.

:func:`risk_coverage` sets the most uncertain items aside one by one and
records the mean risk of those kept; its area (AURC, Geifman et al. 2019,
"Bias-reduced uncertainty estimation for deep neural classifiers") is small
when the uncertainty puts the worst items last. Per image, with
``risk = 1 - Dice`` (:func:`per_image_dice`) and one uncertainty score per
image, the curve reads "Dice as the most uncertain images are set aside".
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bayesseg import _probability
from bayesseg._validation import check_float
from bayesseg.metrics._arrays import check_probability_range

__all__ = ["RiskCoverage", "per_image_dice", "risk_coverage"]


@dataclasses.dataclass(frozen=True)
class RiskCoverage:
    """Result of :func:`risk_coverage`.

    With ``n`` items ranked from the least to the most uncertain, the
    ``k``-th point keeps the ``k`` least uncertain.

    Attributes:
        coverage: float64 array ``(n,)``, ``k / n`` for ``k = 1..n``
            (ascending; the last point keeps everything).
        risk: float64 array ``(n,)``, the mean risk of the ``k`` kept items
            (the selective risk). Within a group of tied uncertainties the
            kept members are averaged over every order of the group (see
            :func:`risk_coverage`).
        thresholds: float64 array ``(n,)``, the largest uncertainty kept at
            each point: keeping the items with uncertainty ``<=
            thresholds[k - 1]`` reaches ``coverage[k - 1]`` (up to ties).
        aurc: float, the area under the curve: ``mean(risk)``.
        optimal_aurc: float, the AURC of the oracle ranking by the risk
            itself: the lowest any uncertainty can reach on these risks.
        full_risk: float, the mean risk of all items (``risk[-1]``), which is
            also the expected AURC of a random ranking.
        excess_aurc: float, ``aurc - optimal_aurc`` (E-AURC): >= 0, and 0
            only for a ranking as good as the oracle's.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import risk_coverage
    >>> rc = risk_coverage(np.array([0.0, 1.0]), np.array([0.2, 0.9]))
    >>> rc.coverage.tolist(), rc.risk.tolist(), rc.aurc, rc.random_aurc
    ([0.5, 1.0], [0.0, 0.5], 0.25, 0.5)
    """

    coverage: np.ndarray
    risk: np.ndarray
    thresholds: np.ndarray
    aurc: float
    optimal_aurc: float
    full_risk: float
    excess_aurc: float

    @property
    def random_aurc(self) -> float:
        """Expected AURC of a random ranking: the mean risk (``full_risk``)."""
        return self.full_risk

    def as_dict(self) -> dict[str, Any]:
        """The scalars and the curve (as lists), JSON-ready."""
        return {
            "aurc": self.aurc,
            "optimal_aurc": self.optimal_aurc,
            "excess_aurc": self.excess_aurc,
            "random_aurc": self.random_aurc,
            "full_risk": self.full_risk,
            "coverage": self.coverage.tolist(),
            "risk": self.risk.tolist(),
            "thresholds": self.thresholds.tolist(),
        }


def _finite_vector(name: str, value: Any) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(
            f"Argument `{name}` must be a non-empty array of finite numbers. Received: "
            f"{name}.shape={np.shape(value)}, {int(a.size - np.isfinite(a).sum())} NaN or "
            "infinite values"
        )
    return a


def _selective_risk(risk: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Mean risk of the ``k`` items of smallest ``key``, ``k = 1..n``, ties averaged.

    Items with equal keys form a group; a cut through a group keeps ``m``
    of its members, counted at the group's mean risk: the expectation over
    every order of the group, so the result does not depend on input order.
    """
    order = np.argsort(key, kind="stable")
    sorted_key, sorted_risk = key[order], risk[order]
    n = sorted_key.size
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    group_sum = np.add.reduceat(sorted_risk, starts)
    group_size = np.diff(np.r_[starts, n])
    group = np.repeat(np.arange(starts.size), group_size)
    before = np.r_[0.0, np.cumsum(group_sum)[:-1]]  # risk of the groups before each
    k = np.arange(1, n + 1)
    taken = k - starts[group]  # members of the current group kept at k
    total = before[group] + taken * (group_sum / group_size)[group]
    return total / k


def risk_coverage(risk: Any, uncertainty: Any) -> RiskCoverage:
    """Risk-coverage curve and its area (AURC) for ranking items by uncertainty.

    The items are ranked from the least to the most uncertain; keeping the
    first ``k`` (coverage ``k / n``) gives the selective risk
    ``r_k = (1 / k) * sum of their risks``. The AURC is the mean of the
    curve, ``AURC = (1 / n) * sum_{k=1..n} r_k`` (Geifman et al. 2019). It
    is compared with two references on the same risks: ``optimal_aurc``,
    the same sum for the oracle ranking by risk (the least an uncertainty
    can reach), and ``full_risk``, the mean risk, which is the expected
    AURC of a random ranking (every ``r_k`` has the mean risk as its
    expectation). ``excess_aurc = aurc - optimal_aurc``.

    **Ties.** Items with equal uncertainty cannot be ranked against each
    other, so where the cut passes through a tied group, its kept members
    count at the group's mean risk: the curve and the AURC are the
    expectation over every order of the tied items. The result does not
    depend on the input order, and all-equal uncertainties give
    ``aurc == full_risk`` exactly.

    Per image, use ``risk = 1 - per_image_dice(...)`` and a per-image
    uncertainty score: ``1 - risk`` is then the mean Dice of the images
    kept as the most uncertain ones are set aside.

    Args:
        risk: finite numbers, one per item (any shape; flattened), e.g.
            ``1 - Dice`` per image or a 0/1 error per element. Lower is
            better.
        uncertainty: finite numbers of the same shape; higher means less
            trusted (set aside first).

    Returns:
        A :class:`RiskCoverage`.

    Raises:
        ValueError: for empty inputs, non-finite values or different shapes.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import risk_coverage
    >>> risk = np.array([0.1, 0.5, 0.3])
    >>> rc = risk_coverage(risk, uncertainty=np.array([0.2, 0.9, 0.4]))
    >>> rc.risk.tolist()  # keep 1, 2, 3 images: 0.1, (0.1 + 0.3) / 2, 0.9 / 3
    [0.1, 0.2, 0.3]
    >>> round(rc.aurc, 6), round(rc.optimal_aurc, 6), round(rc.full_risk, 6)
    (0.2, 0.2, 0.3)
    """
    r = _finite_vector("risk", risk)
    u = _finite_vector("uncertainty", uncertainty)
    if np.shape(risk) != np.shape(uncertainty):
        raise ValueError(
            "Arguments `risk` and `uncertainty` must have the same shape. Received: "
            f"risk.shape={np.shape(risk)} and uncertainty.shape={np.shape(uncertainty)}"
        )
    n = r.size
    curve = _selective_risk(r, u)
    optimal = np.cumsum(np.sort(r)) / np.arange(1, n + 1)
    aurc, optimal_aurc = float(curve.mean()), float(optimal.mean())
    return RiskCoverage(
        coverage=np.arange(1, n + 1, dtype=np.float64) / n,
        risk=curve,
        thresholds=np.sort(u),
        aurc=aurc,
        optimal_aurc=optimal_aurc,
        full_risk=float(r.mean()),
        excess_aurc=aurc - optimal_aurc,
    )


def per_image_dice(
    y_true: Any, probs: Any, threshold: float = 0.5, empty: float = 1.0
) -> np.ndarray:
    """One foreground Dice per image: ``2 TP / (2 TP + FP + FN)``.

    Unlike :class:`~bayesseg.metrics.Dice`, which pools the counts over the
    whole set, every image gets its own score, e.g. as the risk ``1 - Dice``
    of :func:`risk_coverage`.

    The foreground follows :mod:`bayesseg._probability`'s rule: one channel
    is the foreground probability ``p``; ``C >= 2`` softmax channels give
    ``p = 1 - p_0`` (anything but background class 0), with the truth's
    foreground ``label != 0``.

    Args:
        y_true: binary masks ``(N, ...)`` (foreground where ``y_true >=
            0.5``), one image, volume or series per row; with a softmax
            ``probs``, integer labels ``(N, ...)`` or ``(N, ..., 1)``.
        probs: foreground probabilities in [0, 1] of the same shape, or with
            one more trailing axis of size 1 (a sigmoid output); or softmax
            probabilities ``(N, ..., C)``, ``C >= 2``.
        threshold: float in [0, 1], predicted foreground where ``p >=
            threshold``. Default 0.5.
        empty: float in [0, 1], the score of an image with no true and no
            predicted foreground, where Dice is 0 / 0. Default 1.0 (nothing
            to find and nothing found is a perfect answer; scikit-learn's
            ``f1_score(..., zero_division=1.0)``).

    Returns:
        float64 array ``(N,)``.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import per_image_dice
    >>> y = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]])
    >>> p = np.array([[0.9, 0.2, 0.7, 0.1], [0.1, 0.0, 0.3, 0.2], [0.0, 0.1, 0.2, 0.0]])
    >>> per_image_dice(y, p).tolist()
    [0.5, 1.0, 0.0]
    """
    threshold = check_float("threshold", threshold, minimum=0.0, maximum=1.0)
    empty = check_float("empty", empty, minimum=0.0, maximum=1.0)
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    softmax = (
        p.ndim >= 3
        and p.shape[-1] >= 2
        and (p.shape[:-1] == y.shape or (y.shape[-1:] == (1,) and p.shape[:-1] == y.shape[:-1]))
    )
    if softmax:
        y = y.reshape(p.shape[:-1])
        p_fg = _probability.foreground_probability(p)
    elif p.ndim == y.ndim + 1 and p.shape[-1] == 1:
        p_fg = p[..., 0]
    else:
        p_fg = p
    if y.ndim < 2 or p_fg.shape != y.shape:
        raise ValueError(
            "Arguments `y_true` and `probs` must be batches (N, ...) of the same shape "
            "(probs may have one more trailing axis: of size 1, or C >= 2 softmax "
            f"channels). Received: y_true.shape={np.shape(y_true)} and "
            f"probs.shape={np.shape(probs)}"
        )
    check_probability_range(p)
    truth = ((y != 0) if softmax else (y >= 0.5)).reshape(y.shape[0], -1)
    pred = (p_fg >= threshold).reshape(y.shape[0], -1)
    tp = np.sum(truth & pred, axis=1, dtype=np.float64)
    denominator = truth.sum(axis=1, dtype=np.float64) + pred.sum(axis=1, dtype=np.float64)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, 2.0 * tp / safe, empty)
