"""Conformal risk control: a threshold whose expected loss on a new item is at most ``alpha``.

Angelopoulos, Bates, Fisch, Lei and Schuster (2024), "Conformal Risk
Control" (ICLR). Given ``n`` calibration items, each with a loss
``L_i(lambda)`` in ``[0, B]`` that never increases as ``lambda`` grows, the
rule

    ``lambda_hat = inf {lambda : n / (n + 1) * R_n(lambda) + B / (n + 1) <= alpha}``,

with ``R_n`` the mean calibration loss, gives ``E[L_{n+1}(lambda_hat)] <=
alpha`` for a new item exchangeable with the calibration items.

**Convention.** A pixel or step is *flagged* where its score (a probability
in [0, 1]) is ``>= threshold``; the paper's parameter is ``lambda = 1 -
threshold`` (flag where ``score >= 1 - lambda``). A larger ``lambda`` (a
lower threshold) flags more, so the loss never increases with ``lambda``;
``lambda_max = 1`` (threshold 0) flags everything. ``lambda_hat``, the
smallest admissible ``lambda``, is the *highest* admissible threshold: the
fewest flags that keep the risk at ``alpha``.

**Exact rule.** Between two consecutive distinct calibration scores nothing
changes on the calibration items, so the candidates are the distinct scores
(plus 0 and 1): the threshold is the highest of them that satisfies the
inequality, computed from one sort and cumulative sums for the built-in
risks, with no grid to approximate.

**Built-in risks.**

* ``"fnr"``: segmentation masks. The loss of an image is its pixel false
  negative rate, ``missed positive pixels / positive pixels``. An image
  without a positive pixel has no FNR (0 / 0): it is left out of the
  calibration (counted in ``n_skipped_``), and the guarantee is about new
  images *that have foreground*.
* ``"missed_events"``: series. The loss of a series is the fraction of its
  events missed, with :func:`bayesseg.metrics.event_f1`'s definition: an
  event is a run of positive steps, found when a flagged step lies within
  ``tolerance`` steps of it. A series without an event is left out as
  above; the guarantee is about new series that hold an event.

Flagging everything has loss 0 for both, so once ``B / (n + 1) <= alpha``
(enough calibration items, checked) the rule always has an answer.

**Custom risks.** ``risk=callable`` with ``callable(scores, labels,
threshold) -> losses`` (one per item, in ``[0, bound]``), see
:class:`ConformalRiskControl`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from bayesseg._validation import argument_error, check_float, check_int
from bayesseg.metrics.events import (
    DEFAULT_EVENT_TOLERANCE,
    _binary_labels,
    _Events,
    _flat_series,
    _is_ragged,
)

__all__ = ["RISKS", "ConformalRiskControl"]

#: The built-in risks of :class:`ConformalRiskControl`.
RISKS = ("fnr", "missed_events")

# Round-off allowed on a custom loss (its bound, and its monotonicity).
_SLACK = 1e-12


def _min_items(alpha: float, bound: float) -> int:
    """The smallest ``n >= 1`` with ``bound / (n + 1) <= alpha`` (the rule's feasibility)."""
    n = max(1, math.ceil(bound / alpha) - 1)
    while n > 1 and bound / n <= alpha:
        n -= 1
    while bound / (n + 1) > alpha:
        n += 1
    return n


def _check_probabilities(name: str, values: np.ndarray) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        raise ValueError(
            f"Argument `{name}` must hold probabilities in [0, 1]. Received "
            f"{int(values.size - finite.sum())} NaN or infinite values"
        )
    if values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(
            f"Argument `{name}` must hold probabilities in [0, 1] (not logits). Received "
            f"values in [{values.min():.6g}, {values.max():.6g}]"
        )


def _mask_items(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scores, labels, lengths)``: every item's elements end to end, and their counts.

    Accepts arrays ``(N, ...)`` of the same shape (one may have an extra
    trailing axis of size 1), or lists of per-item arrays of any shapes.
    """
    if _is_ragged(scores) or _is_ragged(labels):
        if not (isinstance(scores, (list, tuple)) and isinstance(labels, (list, tuple))):
            raise ValueError(
                "Arguments `scores` and `labels` must both be lists of items, or both arrays. "
                f"Received: {type(scores).__name__} and {type(labels).__name__}"
            )
        if len(scores) != len(labels):
            raise ValueError(
                "Arguments `scores` and `labels` must hold the same number of items. "
                f"Received: {len(scores)} and {len(labels)}"
            )
        s_items = [np.asarray(s, dtype=np.float64) for s in scores]
        y_items = [np.asarray(y) for y in labels]
        for i, (s, y) in enumerate(zip(s_items, y_items, strict=True)):
            if s.size != y.size or (s.shape != y.shape and s.squeeze().shape != y.squeeze().shape):
                raise ValueError(
                    "Arguments `scores` and `labels` must have the same shape per item. "
                    f"Received: item {i} with shapes {s.shape} and {y.shape}"
                )
        lengths = np.array([s.size for s in s_items], dtype=np.int64)
        s_flat = np.concatenate([s.ravel() for s in s_items]) if s_items else np.zeros(0)
        y_flat = np.concatenate([y.ravel() for y in y_items]) if y_items else np.zeros(0)
    else:
        s_arr, y_arr = np.asarray(scores, dtype=np.float64), np.asarray(labels)
        if s_arr.shape != y_arr.shape:
            if s_arr.shape == (*y_arr.shape, 1):
                s_arr = s_arr[..., 0]
            elif y_arr.shape == (*s_arr.shape, 1):
                y_arr = y_arr[..., 0]
            else:
                raise ValueError(
                    "Arguments `scores` and `labels` must have the same shape (one may have a "
                    f"trailing axis of size 1). Received: scores.shape={s_arr.shape} and "
                    f"labels.shape={y_arr.shape}"
                )
        if s_arr.ndim < 2:
            raise ValueError(
                "Argument `scores` must be masks (N, ...) with at least one axis after the item "
                f"axis, or a list of per-item arrays. Received: scores.shape={s_arr.shape}"
            )
        lengths = np.full(s_arr.shape[0], math.prod(s_arr.shape[1:]), dtype=np.int64)
        s_flat, y_flat = s_arr.reshape(-1), y_arr.reshape(-1)
    if lengths.size == 0:
        raise ValueError("Argument `scores` holds no item.")
    _check_probabilities("scores", s_flat)
    return s_flat, _binary_labels("labels", y_flat, "foreground"), lengths


def _series_items(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`bayesseg.metrics.events`' reading of series, with this class' argument names.

    Arrays may also differ by a trailing axis of size 1 (``(N, T, 1)`` scores
    with ``(N, T)`` labels).
    """
    if not (_is_ragged(scores) or _is_ragged(labels)):
        scores, labels = np.asarray(scores), np.asarray(labels)
        if scores.shape == (*labels.shape, 1):
            scores = scores[..., 0]
        elif labels.shape == (*scores.shape, 1):
            labels = labels[..., 0]
    try:
        truth, score, lengths = _flat_series(labels, scores, "scores")
    except ValueError as error:
        raise ValueError(str(error).replace("`y_true`", "`labels`")) from None
    _check_probabilities("scores", score)
    return score, truth, lengths


class _Targets:
    """What a built-in loss counts: per item, the scores of its targets.

    A target is a positive pixel (``"fnr"``) or an event (``"missed_events"``,
    scored by the highest score within tolerance of it). Item ``i`` misses
    target ``j`` at threshold ``t`` when ``score[j] < t``; its loss is the
    fraction of its ``count[i]`` targets missed (undefined when 0).
    """

    def __init__(self, score: np.ndarray, item: np.ndarray, count: np.ndarray, steps: np.ndarray):
        self.score, self.item, self.count = score, item, count
        self.steps = steps  # every pixel's or step's score, flat

    @classmethod
    def build(cls, risk: str, scores: Any, labels: Any, tolerance: int) -> _Targets:
        if risk == "fnr":
            s, y, lengths = _mask_items(scores, labels)
            position = np.flatnonzero(y)
            target_score = s[position]
        else:
            s, y, lengths = _series_items(scores, labels)
            events = _Events.build(y, s, lengths, tolerance)
            # The first step of every run of positive steps, in the order of
            # events.level: a positive step whose predecessor is negative or
            # lies in another series.
            first = np.cumsum(lengths) - lengths
            starts = y.copy()
            starts[1:] &= ~y[:-1]
            starts[first[first < y.size]] = y[first[first < y.size]]
            position = np.flatnonzero(starts)
            if position.size != events.level.size:  # pragma: no cover - internal invariant
                raise AssertionError("event starts and event levels disagree")
            target_score = events.level
        item = np.searchsorted(np.cumsum(lengths), position, side="right")
        count = np.bincount(item, minlength=lengths.size)
        return cls(target_score, item, count, s)

    def losses(self, threshold: float) -> np.ndarray:
        """Per-item loss at ``threshold``; NaN for items without a target."""
        missed = np.bincount(
            self.item,
            weights=(self.score < threshold).astype(np.float64),
            minlength=self.count.size,
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, missed / np.maximum(self.count, 1), np.nan)


class ConformalRiskControl:
    """A decision threshold with a finite-sample guarantee on the expected loss.

    :meth:`fit` picks, from calibration items (held-out images or series
    the model was not trained on), the threshold of conformal risk control;
    :meth:`predict` flags ``scores >= threshold_``. For a new item
    exchangeable with the calibration items, the expected loss is at most
    ``alpha``, *on average over the draw of the calibration set and the new
    item* (a marginal guarantee, not one per item or per calibration set).

    The rule, with ``n`` calibration items, mean loss ``R_n`` and bound ``B``:
    the threshold is the highest ``t`` (the smallest ``lambda = 1 - t``) with
    ``n / (n + 1) * R_n(t) + B / (n + 1) <= alpha``, over the distinct
    calibration scores plus 0 and 1 (exact: the loss changes nowhere else).
    It needs ``B / (n + 1) <= alpha``, i.e. ``n >= B / alpha - 1`` items
    (19 for ``alpha = 0.05``, 9 for 0.1): fewer are refused.

    Args:
        alpha: float in (0, 1), the risk to control.
        risk: ``"fnr"`` (default: per-image pixel false negative rate of
            masks), ``"missed_events"`` (per-series fraction of events
            missed), or a callable ``risk(scores, labels, threshold) ->
            losses``: ``scores`` the calibration scores as checked (a
            float64 array ``(N, ...)`` or a list of float64 arrays),
            ``labels`` as given (``np.asarray`` of it, or the list),
            ``threshold`` a float in [0, 1] (flag ``scores >= threshold``);
            it returns ``N`` finite losses in ``[0, bound]`` that never
            decrease as the threshold rises (never increase as more is
            flagged), and each item's loss must be at most ``alpha`` at
            threshold 0 (everything flagged: the paper's ``L(lambda_max)
            <= alpha``). Both are checked on the calibration data.
        bound: float, ``B``, an upper bound of the loss. Default 1.0 (the
            built-in risks lie in [0, 1]; they accept ``bound >= 1``).
        tolerance: int >= 0, steps a flag may lie before or after an event
            and still find it (``"missed_events"`` only). Default
            ``DEFAULT_EVENT_TOLERANCE`` (2), as in
            :func:`bayesseg.metrics.event_f1`.
        max_evaluations: int >= 2, custom risks only: calls of ``risk`` on
            an even grid of the candidates (by rank) that check
            monotonicity; when there are more candidates, a bisection
            between the grid points finds the exact threshold with about
            ``log2(candidates / max_evaluations)`` more calls, each also
            checked. Default 128.

    Attributes (after :meth:`fit`):
        threshold_: float, the score threshold :meth:`predict` applies.
        lambda_: float, ``1 - threshold_``, the paper's ``lambda_hat``.
        n_calibration_: int, the items the guarantee rests on (``n``).
        n_skipped_: int, items left out (no foreground pixel or no event;
            0 for custom risks).
        calibration_risk_: float, ``R_n(threshold_)``, the mean calibration
            loss at the threshold (at most ``alpha``, usually just below).
        flagged_fraction_: float, the share of calibration pixels or steps
            flagged: what the guarantee costs in flags.
        n_candidates_: int, distinct candidate thresholds.
        fallback_: bool, True when no candidate satisfied the rule and the
            threshold fell back to 0 (flag everything, ``lambda_max``);
            possible for custom risks only.
        n_evaluations_: int, calls of a custom ``risk`` (None otherwise).

    Example:

    >>> import numpy as np
    >>> import bayesseg as bs
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.random((60, 8, 8)) < 0.2
    >>> scores = np.clip(0.3 * labels + 0.7 * rng.random((60, 8, 8)), 0, 1)
    >>> crc = bs.calibration.ConformalRiskControl(alpha=0.1).fit(scores, labels)
    >>> crc.n_calibration_, crc.calibration_risk_ <= 0.1, round(crc.threshold_, 3)
    (60, True, 0.353)
    >>> bool(np.array_equal(crc.predict(scores), scores >= crc.threshold_))
    True
    """

    def __init__(
        self,
        alpha: float,
        risk: str | Callable[..., Any] = "fnr",
        bound: float = 1.0,
        tolerance: int = DEFAULT_EVENT_TOLERANCE,
        max_evaluations: int = 128,
    ):
        self.alpha = check_float("alpha", alpha, 0.0, 1.0, strict_minimum=True, strict_maximum=True)
        if not callable(risk) and not (isinstance(risk, str) and risk in RISKS):
            raise argument_error(
                "risk", "be 'fnr', 'missed_events' or a callable (scores, labels, threshold)", risk
            )
        self.loss: str | Callable[..., Any] = risk
        self.bound = check_float("bound", bound, minimum=0.0, strict_minimum=True)
        if isinstance(risk, str) and self.bound < 1.0:
            raise argument_error("bound", f'be >= 1 with risk="{risk}" (its losses reach 1)', bound)
        self.tolerance = check_int("tolerance", tolerance, minimum=0)
        self.max_evaluations = check_int("max_evaluations", max_evaluations, minimum=2)
        self.threshold_: float | None = None
        self.n_calibration_: int | None = None
        self.n_skipped_: int | None = None
        self.calibration_risk_: float | None = None
        self.flagged_fraction_: float | None = None
        self.n_candidates_: int | None = None
        self.fallback_: bool | None = None
        self.n_evaluations_: int | None = None

    # ------------------------------------------------------------------
    @property
    def lambda_(self) -> float | None:
        """``1 - threshold_``, the paper's ``lambda_hat`` (None before :meth:`fit`)."""
        return None if self.threshold_ is None else 1.0 - self.threshold_

    @property
    def risk_name(self) -> str:
        """``"fnr"``, ``"missed_events"`` or ``"custom"`` (a callable risk).

        Example:

        >>> import bayesseg as bs
        >>> bs.calibration.ConformalRiskControl(0.1, risk=lambda s, y, t: 0).risk_name
        'custom'
        """
        return self.loss if isinstance(self.loss, str) else "custom"

    @property
    def min_calibration_items(self) -> int:
        """Items the rule needs at least: the smallest ``n`` with ``bound / (n + 1) <= alpha``.

        Example:

        >>> import bayesseg as bs
        >>> bs.calibration.ConformalRiskControl(0.05).min_calibration_items
        19
        """
        return _min_items(self.alpha, self.bound)

    def _check_fitted(self) -> float:
        if self.threshold_ is None:
            raise ValueError("This ConformalRiskControl is not fitted: call fit(scores, labels).")
        return self.threshold_

    def _check_count(self, n: int, skipped: int) -> None:
        needed = self.min_calibration_items
        if n < needed:
            what = "items" if self.risk_name == "custom" else "items that count"
            note = f" ({skipped} without foreground or event were left out)" if skipped else ""
            raise ValueError(
                f"Argument `labels` must hold at least {needed} calibration {what} for "
                f"alpha={self.alpha} and bound={self.bound} (the rule needs bound / (n + 1) "
                f"<= alpha, i.e. n >= bound / alpha - 1). Received: {n}{note}. Use more "
                "calibration items or a larger alpha."
            )

    # ------------------------------------------------------------------
    def fit(self, scores: Any, labels: Any) -> ConformalRiskControl:
        """Choose the threshold on calibration items; returns ``self``.

        Args:
            scores: probabilities in [0, 1], higher meaning more likely
                foreground (or anomalous). ``"fnr"``: masks ``(N, ...)``
                (e.g. ``(N, H, W)`` or ``(N, H, W, 1)``) or a list of
                per-image arrays of any shapes. ``"missed_events"``: series
                ``(N, T)``, ``(N, T, 1)``, one series ``(T,)``, or a list of
                1-D series of any lengths. Custom: an array ``(N, ...)`` or a
                list of ``N`` arrays.
            labels: 0/1 labels of the same shape (or list) for the built-in
                risks; anything with ``N`` items for a custom risk.

        Returns:
            ``self``, with the attributes of the class set.

        Raises:
            ValueError: scores outside [0, 1], NaN or infinite; labels other
                than 0/1; different shapes; too few items that count for
                ``alpha`` (the message says how many are needed); a custom
                loss of the wrong shape, outside ``[0, bound]``, above
                ``alpha`` at threshold 0, or not monotone.

        Example:

        >>> import numpy as np
        >>> import bayesseg as bs
        >>> labels = np.zeros((20, 50)); labels[:, 10:12] = 1; labels[:, 30] = 1
        >>> scores = np.full((20, 50), 0.05); scores[:, 10] = 0.9
        >>> scores[:, 30] = np.linspace(0.2, 0.8, 20)  # the second event is harder
        >>> crc = bs.calibration.ConformalRiskControl(0.3, risk="missed_events")
        >>> crc.fit(scores, labels)  # misses the second event of the 10 lowest-scored series
        ConformalRiskControl(alpha=0.3, risk='missed_events', threshold_=0.515789)
        >>> crc.calibration_risk_, 20 / 21 * 0.25 + 1 / 21 <= 0.3  # 11 misses would break it
        (0.25, True)
        """
        if self.risk_name == "custom":
            return self._fit_custom(scores, labels)
        targets = _Targets.build(self.loss, scores, labels, self.tolerance)  # type: ignore[arg-type]
        counted = targets.count > 0
        n = int(counted.sum())
        skipped = int(counted.size - n)
        self._check_count(n, skipped)
        # Sum over items of L_i(t) = sum over targets of (score < t) / count[item]:
        # cumulative weights of the sorted target scores, read at every candidate.
        order = np.argsort(targets.score, kind="stable")
        sorted_score = targets.score[order]
        weight = 1.0 / targets.count[targets.item[order]]
        cumulative = np.r_[0.0, np.cumsum(weight)]
        candidates = np.unique(np.r_[0.0, sorted_score, 1.0])
        mean_loss = cumulative[np.searchsorted(sorted_score, candidates, side="left")] / n
        feasible = n / (n + 1) * mean_loss + self.bound / (n + 1) <= self.alpha
        best = int(np.flatnonzero(feasible)[-1])  # feasible[0]: loss 0, checked n
        self._set_fit(
            float(candidates[best]),
            n,
            skipped,
            float(mean_loss[best]),
            targets.steps,
            candidates.size,
            fallback=False,
        )
        return self

    def _set_fit(self, threshold, n, skipped, risk, all_scores, candidates, fallback) -> None:
        self.threshold_ = threshold
        self.n_calibration_ = n
        self.n_skipped_ = skipped
        self.calibration_risk_ = risk
        self.flagged_fraction_ = float(np.mean(all_scores >= threshold)) if all_scores.size else 0.0
        self.n_candidates_ = int(candidates)
        self.fallback_ = bool(fallback)

    def _fit_custom(self, scores: Any, labels: Any) -> ConformalRiskControl:
        loss_fn = self.loss
        scores, labels, n = _custom_items(scores, labels)
        self._check_count(n, 0)
        flat = _flat_scores(scores)
        candidates = np.unique(np.r_[0.0, flat, 1.0])
        k = candidates.size
        rows: dict[int, np.ndarray] = {}

        def evaluate(index: int) -> np.ndarray:
            threshold = float(candidates[index])
            out = np.asarray(loss_fn(scores, labels, threshold), dtype=np.float64)
            if out.shape != (n,) or not np.all(np.isfinite(out)):
                raise ValueError(
                    f"Argument `risk` must return {n} finite losses, one per item. Received: "
                    f"shape {out.shape} with {int(out.size - np.isfinite(out).sum())} NaN or "
                    f"infinite values at threshold={threshold!r}"
                )
            slack = _SLACK * max(1.0, self.bound)
            if out.min() < -slack or out.max() > self.bound + slack:
                raise ValueError(
                    f"Argument `risk` must return losses in [0, bound={self.bound}]. Received "
                    f"values in [{out.min():.6g}, {out.max():.6g}] at threshold={threshold!r}"
                )
            rows[index] = np.clip(out, 0.0, self.bound)
            return rows[index]

        def check_order(lower: int, upper: int) -> None:
            rise = rows[lower] - rows[upper]  # > 0: flagging more (lower) raised a loss
            if np.any(rise > _SLACK * max(1.0, self.bound)):
                i = int(np.argmax(rise))
                raise ValueError(
                    "Argument `risk` must give losses that never increase as more is flagged "
                    f"(as the threshold falls). Received: item {i}'s loss is "
                    f"{rows[upper][i]:.6g} at threshold {candidates[upper]!r} and "
                    f"{rows[lower][i]:.6g} at threshold {candidates[lower]!r}"
                )

        def feasible(index: int) -> bool:
            mean = float(rows[index].mean())
            return n / (n + 1) * mean + self.bound / (n + 1) <= self.alpha

        grid = np.unique(np.round(np.linspace(0, k - 1, min(k, self.max_evaluations))))
        grid = grid.astype(np.int64).tolist()
        for index in grid:
            evaluate(index)
        for lower, upper in zip(grid, grid[1:], strict=False):
            check_order(lower, upper)
        at_zero = rows[0]
        if at_zero.max() > self.alpha:
            i = int(np.argmax(at_zero))
            raise ValueError(
                f"Argument `risk` must give every item a loss <= alpha={self.alpha} when "
                "everything is flagged (threshold 0: the paper's assumption L(lambda_max) <= "
                "alpha, which makes falling back to flagging everything safe). Received: "
                f"item {i}'s loss {at_zero[i]:.6g}"
            )
        ok = [index for index in grid if feasible(index)]
        if not ok:
            best, fallback = 0, True  # lambda_max: flag everything
        else:
            best, fallback = ok[-1], False
            position = grid.index(best)
            if position + 1 < len(grid):
                upper = grid[position + 1]
                while upper - best > 1:  # bisection between two grid points
                    middle = (best + upper) // 2
                    evaluate(middle)
                    check_order(best, middle)
                    check_order(middle, upper)
                    if feasible(middle):
                        best = middle
                    else:
                        upper = middle
        self._set_fit(
            float(candidates[best]),
            n,
            0,
            float(rows[best].mean()),
            flat,
            k,
            fallback=fallback,
        )
        self.n_evaluations_ = len(rows)
        return self

    # ------------------------------------------------------------------
    def predict(self, scores: Any) -> Any:
        """Flags: ``scores >= threshold_``, with the shape of ``scores``.

        Args:
            scores: probabilities in [0, 1], an array of any shape or a list
                of arrays (series or images of different sizes).

        Returns:
            A bool array of the shape of ``scores``, or a list of them.

        Example:

        >>> import numpy as np
        >>> import bayesseg as bs
        >>> crc = bs.calibration.ConformalRiskControl.from_dict(
        ...     {"alpha": 0.1, "risk": "fnr", "threshold": 0.25})
        >>> crc.predict(np.array([[0.1, 0.25, 0.9]])).tolist()
        [[False, True, True]]
        """
        threshold = self._check_fitted()
        if _is_ragged(scores):
            items = [np.asarray(s, dtype=np.float64) for s in scores]
            for s in items:
                _check_probabilities("scores", s.ravel())
            return [s >= threshold for s in items]
        array = np.asarray(scores, dtype=np.float64)
        _check_probabilities("scores", array.ravel())
        return array >= threshold

    def losses(self, scores: Any, labels: Any) -> np.ndarray:
        """Each item's loss at ``threshold_``; NaN for items that do not count.

        Args:
            scores, labels: items in any form :meth:`fit` accepts.

        Returns:
            float64 array ``(N,)``: the FNR of each image, the fraction of
            each series' events missed, or the custom loss; NaN for an image
            without foreground or a series without an event.

        Example:

        >>> import numpy as np
        >>> import bayesseg as bs
        >>> crc = bs.calibration.ConformalRiskControl.from_dict(
        ...     {"alpha": 0.1, "risk": "fnr", "threshold": 0.5})
        >>> labels = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
        >>> crc.losses(np.array([[0.9, 0.2, 0.7, 0.1], [0.1, 0.6, 0.3, 0.2]]), labels).tolist()
        [0.5, nan]
        """
        threshold = self._check_fitted()
        if self.risk_name == "custom":
            loss_fn = self.loss
            scores, labels, n = _custom_items(scores, labels)
            out = np.asarray(loss_fn(scores, labels, threshold), dtype=np.float64)
            if out.shape != (n,):
                raise ValueError(
                    f"Argument `risk` must return {n} losses, one per item. Received: shape "
                    f"{out.shape}"
                )
            return out
        return _Targets.build(self.loss, scores, labels, self.tolerance).losses(threshold)  # type: ignore[arg-type]

    def risk(self, scores: Any, labels: Any) -> float:
        """The realised risk at ``threshold_``: the mean loss of the items that count.

        On a test set, this is what the guarantee bounds in expectation:
        ``alpha`` or less on average over calibration and test draws (one
        test set can lie above it).

        Args:
            scores, labels: items in any form :meth:`fit` accepts.

        Returns:
            The mean of :meth:`losses` over the items with foreground (or an
            event; every item for a custom risk).

        Raises:
            ValueError: for the checks of :meth:`fit`, or no item that counts.

        Example:

        >>> import numpy as np
        >>> import bayesseg as bs
        >>> crc = bs.calibration.ConformalRiskControl.from_dict(
        ...     {"alpha": 0.1, "risk": "fnr", "threshold": 0.5})
        >>> labels = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 1, 1, 1]])
        >>> scores = np.array([[0.9, 0.2, 0.7, 0.1], [0.1, 0.6, 0.3, 0.2], [0, 0.5, 0.6, 0.7]])
        >>> crc.risk(scores, labels)  # images 1 and 3: FNR 0.5 and 0
        0.25
        """
        values = self.losses(scores, labels)
        kept = values[~np.isnan(values)]
        if kept.size == 0:
            raise ValueError(
                "Argument `labels` holds no item that counts (no foreground pixel or no "
                "event): the risk is undefined."
            )
        return float(kept.mean())

    # ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The settings and the fit as JSON-ready values (a custom loss by name only).

        Example:

        >>> import bayesseg as bs
        >>> d = bs.calibration.ConformalRiskControl(0.1, "missed_events").to_dict()
        >>> d["risk"], d["alpha"], d["threshold"]
        ('missed_events', 0.1, None)
        """
        return {
            "type": type(self).__name__,
            "alpha": self.alpha,
            "risk": self.risk_name,
            "bound": self.bound,
            "tolerance": self.tolerance,
            "max_evaluations": self.max_evaluations,
            "threshold": self.threshold_,
            "lambda": self.lambda_,
            "n_calibration": self.n_calibration_,
            "n_skipped": self.n_skipped_,
            "calibration_risk": self.calibration_risk_,
            "flagged_fraction": self.flagged_fraction_,
            "n_candidates": self.n_candidates_,
            "fallback": self.fallback_,
        }

    @classmethod
    def from_dict(
        cls, values: dict[str, Any], risk: Callable[..., Any] | None = None
    ) -> ConformalRiskControl:
        """An instance from :meth:`to_dict`'s values; unknown keys are an error.

        Args:
            values: a dict as :meth:`to_dict` writes it (``alpha`` and
                ``risk`` required; missing fit entries leave it unfitted, a
                ``threshold`` alone is enough to predict).
            risk: the callable, for a dict of a custom risk (its name is all
                the dict holds): without it, the instance predicts but
                cannot compute losses or refit.

        Example:

        >>> import json
        >>> import bayesseg as bs
        >>> crc = bs.calibration.ConformalRiskControl.from_dict(
        ...     {"alpha": 0.05, "risk": "fnr", "threshold": 0.25, "n_calibration": 200})
        >>> text = json.dumps(crc.to_dict())  # e.g. into a model.json
        >>> back = bs.calibration.ConformalRiskControl.from_dict(json.loads(text))
        >>> back.threshold_, back.lambda_, back.n_calibration_
        (0.25, 0.75, 200)
        """
        if not isinstance(values, dict):
            raise argument_error("values", "be a dict written by to_dict()", type(values).__name__)
        known = set(cls(0.5).to_dict())
        unknown = sorted(set(values) - known)
        if unknown:
            raise argument_error("values", f"hold only {sorted(known)}", unknown)
        if values.get("type", cls.__name__) != cls.__name__:
            raise argument_error("values", f'have type "{cls.__name__}"', values["type"])
        for key in ("alpha", "risk"):
            if key not in values:
                raise argument_error("values", f"hold {key!r}", sorted(values))
        name = values["risk"]
        if name == "custom":
            if risk is not None and not callable(risk):
                raise argument_error("risk", "be a callable or None", risk)
            loss: Any = risk if risk is not None else _missing_loss
        else:
            if risk is not None:
                raise argument_error("risk", f'be None for a dict of risk "{name}"', risk)
            loss = name
        out = cls(
            values["alpha"],
            loss,
            bound=values.get("bound", 1.0),
            tolerance=values.get("tolerance", DEFAULT_EVENT_TOLERANCE),
            max_evaluations=values.get("max_evaluations", 128),
        )
        threshold = values.get("threshold")
        if threshold is not None:
            threshold = check_float("threshold", threshold, minimum=0.0, maximum=1.0)
            out.threshold_ = threshold
            out.n_calibration_ = values.get("n_calibration")
            out.n_skipped_ = values.get("n_skipped")
            out.calibration_risk_ = values.get("calibration_risk")
            out.flagged_fraction_ = values.get("flagged_fraction")
            out.n_candidates_ = values.get("n_candidates")
            out.fallback_ = values.get("fallback")
        return out

    def __repr__(self) -> str:
        fitted = "" if self.threshold_ is None else f", threshold_={self.threshold_:.6g}"
        return f"ConformalRiskControl(alpha={self.alpha}, risk={self.risk_name!r}{fitted})"


def _missing_loss(scores: Any, labels: Any, threshold: float) -> Any:
    """The stand-in of a custom loss that a dict cannot hold."""
    raise ValueError(
        "This ConformalRiskControl was loaded from a dict without its custom loss: pass it "
        "again with ConformalRiskControl.from_dict(values, risk=...)."
    )


def _custom_items(scores: Any, labels: Any) -> tuple[Any, Any, int]:
    """Checked scores (float64 array or list of them), labels and the item count."""
    if _is_ragged(scores):
        checked: Any = [np.asarray(s, dtype=np.float64) for s in scores]
        for s in checked:
            _check_probabilities("scores", s.ravel())
    else:
        checked = np.asarray(scores, dtype=np.float64)
        if checked.ndim < 1:
            raise argument_error("scores", "be an array (N, ...) or a list of N arrays", scores)
        _check_probabilities("scores", checked.ravel())
    n = len(checked)
    labels = labels if isinstance(labels, (list, tuple)) else np.asarray(labels)
    if len(labels) != n:
        raise ValueError(
            "Arguments `scores` and `labels` must hold the same number of items. "
            f"Received: {n} and {len(labels)}"
        )
    return checked, labels, n


def _flat_scores(scores: Any) -> np.ndarray:
    """Every score of every item, flat (for the flagged fraction), as float64."""
    if isinstance(scores, (list, tuple)):
        parts = [np.asarray(s, dtype=np.float64).ravel() for s in scores]
        return np.concatenate(parts) if parts else np.zeros(0)
    return np.asarray(scores, dtype=np.float64).ravel()
