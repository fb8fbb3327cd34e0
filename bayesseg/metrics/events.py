"""Rare events in series: average precision, an event score that pays for alarms, thresholds.

When 2 steps in 10 000 are positive, per-step accuracy and ROC-AUC say
little, and an event score that counts a detection whenever any alarm
touches an event says less: one alarm that never stops "detects" every
event. The scores here are the ones a trivial detector cannot win:

* :func:`average_precision`: the area under the per-step precision-recall
  curve (scikit-learn's definition). Random scores get the positive rate.
* :func:`event_f1`: the composite F-score of Garg et al. (2021): *recall
  per event* (an anomaly is a run of positive steps, found when any flagged
  step lies within ``tolerance`` steps of it) and *precision per flagged
  step* (a flagged step is correct when it lies within ``tolerance`` of a
  true event). Flagging every step scores ``2r / (1 + r)``, with ``r`` the
  share of steps within tolerance of an event; widening alarms lowers it.
* :func:`event_chance`: those floors in closed form, for flagging every
  step and for flagging steps at random at a given rate, to print beside
  every score.
* :func:`choose_threshold`: the threshold of the best event F1 (or the
  most precise one reaching a target event recall) over every distinct
  score, exactly, from one pass of sorted cumulative counts.

Series may be given as an array ``(N, T)``, ``(N, T, 1)`` or ``(T,)``, or as
a list of 1-D (or ``(T, 1)``) arrays of different lengths: scores are then
the counts pooled over the series (average precision: over their
concatenated steps). Events never span two series.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bayesseg._validation import argument_error, check_choice, check_float, check_int
from bayesseg.metrics._arrays import harmonic_mean

__all__ = [
    "DEFAULT_EVENT_TOLERANCE",
    "MAX_ALARMS_PER_POSITIVE",
    "THRESHOLD_CRITERIA",
    "average_precision",
    "choose_threshold",
    "event_chance",
    "event_f1",
]

#: Steps a detection may lie before or after a true event and still find it.
DEFAULT_EVENT_TOLERANCE = 2

#: The most steps :func:`choose_threshold` lets a threshold flag per positive step.
MAX_ALARMS_PER_POSITIVE = 100

#: The rules :func:`choose_threshold` can optimise.
THRESHOLD_CRITERIA = ("event_f1", "event_recall")


def _binary_labels(name: str, labels: np.ndarray, positive: str = "anomalous step") -> np.ndarray:
    if labels.size and not np.all((labels == 0) | (labels == 1)):
        raise ValueError(
            f"Argument `{name}` must hold 0/1 labels (1 = {positive}). "
            f"Received values {np.unique(labels)[:6].tolist()}"
        )
    return labels.astype(bool)


def _finite_scores(name: str, scores: np.ndarray) -> np.ndarray:
    scores = scores.astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"Argument `{name}` must be finite. Received NaN or infinity")
    return scores


def _is_ragged(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and any(
        isinstance(item, (list, tuple, np.ndarray)) for item in value
    )


def _one_series(name: str, index: int, value: Any) -> np.ndarray:
    a = np.asarray(value)
    if a.ndim == 2 and a.shape[-1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(
            f"Argument `{name}` must be a list of series of shape (T,) or (T, 1). "
            f"Received: {name}[{index}] with shape {np.shape(value)}"
        )
    return a


def _flat_series(
    y_true: Any, y_score: Any, score_name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(truth, score, lengths)``: every series' steps end to end, and their lengths.

    Accepts matching arrays ``(N, T)``, ``(N, T, 1)`` or ``(T,)``, or matching
    lists of 1-D (or ``(T, 1)``) series of any lengths.
    """
    if _is_ragged(y_true) or _is_ragged(y_score):
        if not (isinstance(y_true, (list, tuple)) and isinstance(y_score, (list, tuple))):
            raise ValueError(
                f"Arguments `y_true` and `{score_name}` must both be lists of series, or "
                "both arrays. Received: "
                f"{type(y_true).__name__} and {type(y_score).__name__}"
            )
        if len(y_true) != len(y_score):
            raise ValueError(
                f"Arguments `y_true` and `{score_name}` must hold the same number of series. "
                f"Received: {len(y_true)} and {len(y_score)}"
            )
        truths = [_one_series("y_true", i, t) for i, t in enumerate(y_true)]
        scores = [_one_series(score_name, i, s) for i, s in enumerate(y_score)]
        for i, (t, s) in enumerate(zip(truths, scores, strict=True)):
            if t.shape != s.shape:
                raise ValueError(
                    f"Arguments `y_true` and `{score_name}` must have the same shape per "
                    f"series. Received: series {i} of {t.shape[0]} and {s.shape[0]} steps"
                )
        lengths = np.array([t.size for t in truths], dtype=np.int64)
        truth = np.concatenate(truths) if truths else np.zeros(0)
        score = np.concatenate(scores) if scores else np.zeros(0)
    else:
        truth, score = np.asarray(y_true), np.asarray(y_score)
        if truth.shape != score.shape:
            raise ValueError(
                f"Arguments `y_true` and `{score_name}` must have the same shape. Received: "
                f"{truth.shape} and {score.shape}"
            )
        if truth.ndim == 3 and truth.shape[-1] == 1:
            truth, score = truth[..., 0], score[..., 0]
        if truth.ndim == 1:
            truth, score = truth[None], score[None]
        if truth.ndim != 2:
            raise ValueError(
                f"Arguments `y_true` and `{score_name}` must be series (N, T), (N, T, 1), one "
                f"series (T,) or a list of series of any lengths. Received shape {truth.shape}"
            )
        lengths = np.full(truth.shape[0], truth.shape[1], dtype=np.int64)
        truth, score = truth.ravel(), score.ravel()
    if lengths.size == 0:
        raise ValueError("Argument `y_true` holds no series.")
    return _binary_labels("y_true", truth), _finite_scores(score_name, score), lengths


@dataclasses.dataclass(frozen=True)
class _Events:
    """Series laid end to end, their true events and the steps near them.

    ``near[i]``: step ``i`` lies within ``tolerance`` steps of a true step of
    its own series. Per true event ``j`` (a run of positive steps):
    ``zone[j]``, the steps within tolerance of it (clipped to its series),
    and ``level[j]``, the highest score in that zone: the event is detected
    at every threshold up to ``level[j]``.
    """

    truth: np.ndarray
    score: np.ndarray
    near: np.ndarray
    level: np.ndarray
    zone: np.ndarray

    @classmethod
    def build(cls, truth: np.ndarray, score: np.ndarray, lengths: np.ndarray, tolerance: int):
        n = truth.size
        index = np.arange(n)
        first = np.repeat(np.cumsum(lengths) - lengths, lengths)  # each step's series start
        end = first + np.repeat(lengths, lengths)  # and its (exclusive) end
        previous = np.maximum.accumulate(np.where(truth, index, -1)) if n else index
        following = np.minimum.accumulate(np.where(truth, index, n)[::-1])[::-1] if n else index
        near = ((previous >= first) & (index - previous <= tolerance)) | (
            (following < end) & (following - index <= tolerance)
        )
        before = np.zeros(n, dtype=bool)
        before[1:] = truth[:-1]
        before &= index != first
        after = np.zeros(n, dtype=bool)
        after[:-1] = truth[1:]
        after &= index + 1 != end
        starts, ends = np.flatnonzero(truth & ~before), np.flatnonzero(truth & ~after)
        lo = np.maximum(starts - tolerance, first[starts])
        hi = np.minimum(ends + tolerance, end[ends] - 1)
        if starts.size:
            # The highest score in each zone: reduceat reduces every [lo, hi + 1)
            # slice on its own, so overlapping zones are fine (the odd slices,
            # between zones, are dropped).
            bounds = np.column_stack([lo, hi + 1]).ravel()
            level = np.maximum.reduceat(np.r_[score, -np.inf], bounds)[::2]
        else:
            level = np.zeros(0)
        return cls(truth=truth, score=score, near=near, level=level, zone=hi - lo + 1)

    def counts(self, threshold: float) -> dict[str, int]:
        flagged = self.score >= threshold
        return {
            "steps": int(self.truth.size),
            "positive_steps": int(self.truth.sum()),
            "near_steps": int(self.near.sum()),
            "true_events": int(self.level.size),
            "detected_events": int((self.level >= threshold).sum()),
            "flagged_steps": int(flagged.sum()),
            "correct_steps": int((flagged & self.near).sum()),
            "flagged_positive_steps": int((flagged & self.truth).sum()),
        }


def event_scores(counts: dict[str, int]) -> dict[str, float | int]:
    """:func:`event_f1`'s dict from its counts (summed over series, for pooled scores).

    Not exported: the one place the ratios and their conventions are written.
    A ratio whose denominator is 0 is 0, except that with no true event and
    no flagged step anywhere precision, recall and F1 are all 1 (nothing to
    find, nothing claimed).
    """
    events, flagged = counts["true_events"], counts["flagged_steps"]
    if events == 0 and flagged == 0:
        precision = recall = 1.0
    else:
        precision = counts["correct_steps"] / flagged if flagged else 0.0
        recall = counts["detected_events"] / events if events else 0.0
    positives = counts["positive_steps"]
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(harmonic_mean(precision, recall)),
        "flagged_fraction": flagged / counts["steps"] if counts["steps"] else 0.0,
        "step_recall": counts["flagged_positive_steps"] / positives if positives else 0.0,
        **counts,
    }


def event_f1(
    y_true: Any,
    y_pred: Any,
    threshold: float = 0.5,
    tolerance: int = DEFAULT_EVENT_TOLERANCE,
) -> dict[str, float | int]:
    """Event-level recall and per-step precision of detections, and their F1.

    The composite F-score of Garg et al. (2021, "event-based F1" in the
    TSB-AD benchmark), with a tolerance. Along time, a true *event* is a run
    of consecutive positive steps; a step is *flagged* where ``y_pred >=
    threshold``. Then, pooled over all series:

    * ``recall``: the share of true events with a flagged step within
      ``tolerance`` steps of them (``[start - tolerance, end + tolerance]``);
    * ``precision``: the share of flagged steps that lie within ``tolerance``
      steps of a true event. Every other flagged step is a false alarm, so
      an alarm costs what it lasts: flagging every step scores ``2r / (1 +
      r)`` with ``r`` the share of steps near an event (``event_chance``),
      and widening alarms beyond the tolerance lowers the score;
    * ``f1``: their harmonic mean.

    One flagged step inside each long event scores precision 1 and recall 1:
    the event was found and nothing false was claimed. How much of each event
    was covered is a different question, answered by ``step_recall``.

    Args:
        y_true: 0/1 labels ``(N, T)``, ``(N, T, 1)``, one series ``(T,)``,
            or a list of 1-D (or ``(T, 1)``) series of any lengths.
        y_pred: probabilities or 0/1 decisions of the same shape (or list).
        threshold: float, a step is flagged where ``y_pred >= threshold``.
            Default 0.5.
        tolerance: int >= 0, steps a flag may lie before or after a true
            event and still find it (0: it must overlap). Default
            ``DEFAULT_EVENT_TOLERANCE`` = 2: a causal model sees a level
            jump only in the steps after its labelled onset.

    Returns:
        A dict with the float scores ``precision`` (per flagged step),
        ``recall`` (per event), ``f1``, ``flagged_fraction`` (flagged steps
        over all steps) and ``step_recall`` (flagged positive steps over
        positive steps), and the int counts ``steps``, ``positive_steps``,
        ``near_steps`` (steps within tolerance of an event), ``true_events``,
        ``detected_events``, ``flagged_steps``, ``correct_steps`` (flagged
        steps near an event) and ``flagged_positive_steps``. A ratio with a
        zero denominator is 0, except that with no true event and no flagged
        step precision, recall and F1 are 1.

    Raises:
        ValueError: for different shapes, labels other than 0/1, NaN or
            infinite predictions, a bad ``threshold`` or ``tolerance``.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import event_f1
    >>> truth = np.zeros((1, 20)); truth[0, 5:7] = 1; truth[0, 15] = 1
    >>> flags = np.zeros((1, 20)); flags[0, 8] = 1; flags[0, 11:13] = 1
    >>> s = event_f1(truth, flags, tolerance=2)  # 8 finds 5-6; 11-12 are false alarms
    >>> s["recall"], round(s["precision"], 3), s["correct_steps"], s["flagged_steps"]
    (0.5, 0.333, 1, 3)
    >>> event_f1(truth, np.ones((1, 20)))["precision"]  # flag everything: 11 of 20 steps near
    0.55
    """
    threshold = check_float("threshold", threshold)
    tolerance = check_int("tolerance", tolerance, minimum=0)
    truth, score, lengths = _flat_series(y_true, y_pred, "y_pred")
    return event_scores(_Events.build(truth, score, lengths, tolerance).counts(threshold))


def event_chance(
    y_true: Any, rate: float | None = None, tolerance: int = DEFAULT_EVENT_TOLERANCE
) -> dict[str, Any]:
    """What trivial detectors score on these labels under :func:`event_f1`, in closed form.

    * ``flag_all`` (every step flagged): precision ``r``, the share of steps
      within ``tolerance`` of a true event; recall 1; F1 ``2r / (1 + r)``.
    * ``random`` (each step flagged independently with probability
      ``rate``): precision ``r`` (exact: the expected precision given at
      least one flag), recall the mean over events of ``1 - (1 - rate)^m``
      with ``m`` the steps within tolerance of the event (exact expected
      recall), and F1 of those two expectations. With hundreds of events and
      thousands of flags, the F1 of random flags lies within 0.01 of it.

    A detector is worth its alarms when it beats both at the same rate.

    Args:
        y_true: 0/1 labels in any form :func:`event_f1` accepts.
        rate: float in [0, 1], the share of steps random flags hit, usually
            the detector's ``flagged_fraction``. Default None: no ``random``
            entry.
        tolerance: int >= 0, as in :func:`event_f1`.

    Returns:
        A dict: ``near_fraction`` (``r``), ``flag_all`` and, with ``rate``,
        ``random``, each a dict of ``precision``, ``recall`` and ``f1``
        (``random`` also holds ``rate``).

    Raises:
        ValueError: for labels other than 0/1, a bad ``rate`` or
            ``tolerance``.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import event_chance
    >>> truth = np.zeros(100); truth[50] = 1  # 5 of 100 steps lie within 2 of it
    >>> c = event_chance(truth, rate=0.1)
    >>> c["flag_all"]["f1"] == 2 * 0.05 / 1.05, round(c["random"]["recall"], 4)
    (True, 0.4095)
    """
    tolerance = check_int("tolerance", tolerance, minimum=0)
    if rate is not None:
        rate = check_float("rate", rate, minimum=0.0, maximum=1.0)
    if _is_ragged(y_true):
        scores: Any = [np.zeros(np.shape(t)) for t in y_true]
    else:
        scores = np.zeros(np.shape(y_true))
    truth, score, lengths = _flat_series(y_true, scores, "y_true")
    events = _Events.build(truth, score, lengths, tolerance)
    near = float(events.near.mean()) if truth.size else 0.0
    out: dict[str, Any] = {
        "near_fraction": near,
        "flag_all": {"precision": near, "recall": 1.0 if events.level.size else 0.0},
    }
    if rate is not None and not events.level.size and rate == 0.0:
        # Nothing to find and nothing flagged: event_f1's convention, 1.
        out["random"] = {"rate": rate, "precision": 1.0, "recall": 1.0}
    elif rate is not None:
        recall = float(np.mean(1 - (1 - rate) ** events.zone)) if events.level.size else 0.0
        out["random"] = {"rate": rate, "precision": near if rate else 0.0, "recall": recall}
    for key in ("flag_all", "random"):
        if key in out:
            out[key]["f1"] = float(harmonic_mean(out[key]["precision"], out[key]["recall"]))
    return out


def average_precision(y_true: Any, y_score: Any) -> float:
    """Average precision of per-step scores: the area under the precision-recall curve.

    ``AP = sum_n (R_n - R_(n-1)) * P_n`` over the distinct score thresholds
    taken from the highest down (no interpolation), the definition of
    scikit-learn's ``average_precision_score``, computed here with NumPy.
    Every step of every series is one item; steps with equal scores enter
    together. A detector that ranks at random scores the positive rate
    (0.0004 at our users' 0.04%); a perfect ranking scores 1.

    Args:
        y_true: 0/1 labels of any shape, e.g. ``(N, T)`` series of ``T``
            steps or ``(N, T, 1)``, or a list of series of any lengths
            (their steps are pooled).
        y_score: scores of the same shape (or list), higher meaning more
            anomalous (probabilities, corrected or not: AP depends on their
            order only).

    Returns:
        The average precision, a float in [0, 1].

    Raises:
        ValueError: for different shapes, labels other than 0/1, scores
            that are NaN or infinite, or no positive label (AP is undefined).

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import average_precision
    >>> average_precision(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.8333333333333333
    >>> average_precision([np.array([0, 1]), np.array([0, 0, 1])], [[0.1, 0.35], [0.4, 0.0, 0.8]])
    0.8333333333333333
    """
    if _is_ragged(y_true) or _is_ragged(y_score):
        truth, score, _ = _flat_series(y_true, y_score, "y_score")
    else:
        truth, score = np.asarray(y_true), np.asarray(y_score)
        if truth.shape != score.shape:
            raise ValueError(
                "Arguments `y_true` and `y_score` must have the same shape. Received: "
                f"{truth.shape} and {score.shape}"
            )
        truth = _binary_labels("y_true", truth.ravel())
        score = _finite_scores("y_score", score.ravel())
    positives = int(truth.sum())
    if positives == 0:
        raise ValueError(
            "Argument `y_true` holds no positive step: average precision is undefined "
            "(there is nothing to recall)."
        )
    order = np.argsort(-score, kind="stable")
    score, truth = score[order], truth[order]
    # The last item of each run of equal scores: one threshold per distinct score.
    ends = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    true_positives = np.cumsum(truth)[ends]
    precision = true_positives / (ends + 1)
    recall = true_positives / positives
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def choose_threshold(
    y_true: Any,
    y_score: Any,
    criterion: str = "event_f1",
    target_recall: float | None = None,
    tolerance: int = DEFAULT_EVENT_TOLERANCE,
) -> dict[str, Any]:
    """The decision threshold on per-step scores that a validation split supports best.

    Every distinct score is a candidate, scored exactly by :func:`event_f1`
    from one sort and cumulative counts (flagged steps and steps near an
    event above each score; each event detected up to the highest score
    within tolerance of it). A candidate must leave at least one step
    unflagged and flag at most ``MAX_ALARMS_PER_POSITIVE`` (100) steps per
    positive step, ties included: a rule that flags everything is no
    decision. Then:

    * ``criterion="event_f1"`` (default): the candidate of the highest
      event F1 (ties: the higher threshold, fewer alarms);
    * ``criterion="event_recall"``: the highest candidate whose event recall
      is at least ``target_recall`` (the rule with the fewest alarms that
      finds that share of the events); if none reaches it, the one of the
      highest recall.

    Choose it on series the model was not trained on, then apply it
    unchanged to new ones (``bayesseg demo --task anomaly`` saves it beside
    the model and ``bayesseg predict`` uses it). The threshold applies to the
    scores as given: probabilities corrected for class weights and a window
    prior (``bs.imbalance.prior_shift_weights``) rank the steps exactly as
    uncorrected ones do, but the threshold's value differs.

    Args:
        y_true: 0/1 labels in any form :func:`event_f1` accepts (arrays or a
            list of series of any lengths).
        y_score: per-step scores of the same shape (probabilities or any
            score where higher means more anomalous), finite.
        criterion: "event_f1" (default) or "event_recall".
        target_recall: float in (0, 1], required with "event_recall" only.
        tolerance: int >= 0, the event matching tolerance. Default
            ``DEFAULT_EVENT_TOLERANCE``.

    Returns:
        A dict: ``threshold``, ``criterion``, ``candidates`` (how many
        thresholds were admissible) and every entry of :func:`event_f1` at
        that threshold on these series.

    Raises:
        ValueError: for the checks of :func:`event_f1`, an unknown
            ``criterion``, ``target_recall`` missing, given with "event_f1"
            or outside (0, 1], labels without any event, or scores with no
            admissible candidate (constant scores, or a top score shared by
            more than 100 steps per positive step): such scores cannot
            separate anything, and no threshold is returned.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import choose_threshold
    >>> truth = np.zeros((2, 500)); truth[0, 100] = truth[1, 300] = 1
    >>> score = np.full((2, 500), 0.01); score[0, 100] = 0.9; score[1, 300] = 0.3
    >>> score[1, 5] = 0.5  # a false alarm between the two true events
    >>> best = choose_threshold(truth, score)  # both events, one false alarm
    >>> best["threshold"], round(best["f1"], 3)
    (0.3, 0.8)
    >>> choose_threshold(truth, score, "event_recall", target_recall=0.5)["threshold"]
    0.9
    """
    criterion = check_choice("criterion", criterion, THRESHOLD_CRITERIA)
    if criterion == "event_recall":
        if target_recall is None:
            raise ValueError('Argument `target_recall` is required with criterion="event_recall".')
        target_recall = check_float("target_recall", target_recall, minimum=0.0, maximum=1.0)
        if target_recall == 0.0:
            raise argument_error("target_recall", "be in (0, 1]", target_recall)
    elif target_recall is not None:
        raise ValueError(
            'Argument `target_recall` applies to criterion="event_recall" only. '
            f"Received: target_recall={target_recall}"
        )
    tolerance = check_int("tolerance", tolerance, minimum=0)
    truth, score, lengths = _flat_series(y_true, y_score, "y_score")
    if not truth.any():
        raise ValueError(
            "Argument `y_true` holds no event: there is nothing to tune a threshold on."
        )
    events = _Events.build(truth, score, lengths, tolerance)
    ordered = np.sort(score)
    values = np.unique(ordered)[::-1]  # the candidates, highest first

    def at_or_above(sorted_values: np.ndarray) -> np.ndarray:
        return sorted_values.size - np.searchsorted(sorted_values, values, side="left")

    flagged = at_or_above(ordered)
    correct = at_or_above(np.sort(score[events.near]))
    detected = at_or_above(np.sort(events.level))
    limit = MAX_ALARMS_PER_POSITIVE * int(truth.sum())
    admissible = (flagged <= limit) & (flagged < score.size)
    if not admissible.any():
        raise ValueError(
            f"Argument `y_score` cannot separate anything: its highest value ({values[0]:.6g}) "
            f"is shared by {flagged[0]} of {score.size} steps, so every threshold flags every "
            f"step or more than {MAX_ALARMS_PER_POSITIVE} steps per positive step "
            f"({truth.sum()} positive). Constant or saturated scores give no threshold."
        )
    precision = correct / flagged
    recall = detected / events.level.size
    if criterion == "event_recall":
        reached = admissible & (recall >= target_recall)
        key = reached if reached.any() else np.where(admissible, recall, -1.0)
        best = int(np.argmax(key))  # the first (highest) threshold of the best key
    else:
        best = int(np.argmax(np.where(admissible, harmonic_mean(precision, recall), -1.0)))
    threshold = float(values[best])
    return {
        "threshold": threshold,
        "criterion": criterion,
        "candidates": int(admissible.sum()),
        **event_scores(events.counts(threshold)),
    }
