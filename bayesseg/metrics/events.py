"""Rare events in series: average precision of per-step scores, event-level detection.

When 2 steps in 10 000 are positive, per-step accuracy and ROC-AUC say
little: a detector that ranks every positive above 99.9% of the negatives
still raises ten false alarms per true step. :func:`average_precision` (the
area under the precision-recall curve, as scikit-learn computes it) is the
threshold-free figure that stays honest at that rarity. :func:`event_f1`
scores detections as a user counts them: an anomaly is a run of consecutive
positive steps (an *event*), found if any predicted step lies within
``tolerance`` steps of it, so a causal model that flags a level jump one step
after its onset is not punished as if it had missed it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from bayesseg._validation import argument_error, check_choice, check_float, check_int

__all__ = [
    "DEFAULT_EVENT_TOLERANCE",
    "THRESHOLD_CRITERIA",
    "average_precision",
    "choose_threshold",
    "event_f1",
]

#: Steps a detection may lie before or after a true event and still find it.
DEFAULT_EVENT_TOLERANCE = 2


def _binary_labels(name: str, labels: Any) -> np.ndarray:
    y = np.asarray(labels)
    if y.size and not np.all((y == 0) | (y == 1)):
        raise ValueError(
            f"Argument `{name}` must hold 0/1 labels (1 = anomalous step). "
            f"Received values {np.unique(y)[:6].tolist()}"
        )
    return y.astype(bool)


def _matching(y_true: Any, y_score: Any, score_name: str) -> tuple[np.ndarray, np.ndarray]:
    truth = _binary_labels("y_true", y_true)
    score = np.asarray(y_score, dtype=np.float64)
    if truth.shape != score.shape:
        raise ValueError(
            f"Arguments `y_true` and `{score_name}` must have the same shape. Received: "
            f"{truth.shape} and {score.shape}"
        )
    if not np.all(np.isfinite(score)):
        raise ValueError(f"Argument `{score_name}` must be finite. Received NaN or infinity")
    return truth, score


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
            steps or ``(N, T, 1)``.
        y_score: scores of the same shape, higher meaning more anomalous
            (probabilities, corrected or not: AP depends on their order only).

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
    """
    truth, score = _matching(y_true, y_score, "y_score")
    truth, score = truth.ravel(), score.ravel()
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
    flagged = ends + 1
    precision = true_positives / flagged
    recall = true_positives / positives
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _as_series(truth: np.ndarray, score: np.ndarray, score_name: str):
    """``(N, T)`` views of matching ``(N, T)``, ``(N, T, 1)`` or ``(T,)`` arrays."""
    if truth.ndim == 3 and truth.shape[-1] == 1:
        truth, score = truth[..., 0], score[..., 0]
    if truth.ndim == 1:
        truth, score = truth[None], score[None]
    if truth.ndim != 2:
        raise ValueError(
            f"Arguments `y_true` and `{score_name}` must be series (N, T), (N, T, 1) or one "
            f"series (T,). Received shape {truth.shape}"
        )
    return truth, score


# Runs connect along time only, never across series: a (3, 3) element whose
# middle row is set (scipy's label wants 3 in every dimension).
_RUNS = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=bool)


def event_f1(
    y_true: Any,
    y_pred: Any,
    threshold: float = 0.5,
    tolerance: int = DEFAULT_EVENT_TOLERANCE,
) -> dict[str, float]:
    """Event-level precision, recall and F1 of per-step detections, within a tolerance.

    Along the last axis (time) of each series, a true *event* is a run of
    consecutive positive steps and a predicted event a run of consecutive
    steps with ``y_pred >= threshold``. A true event ``[s, e]`` is detected if
    any predicted step lies in ``[s - tolerance, e + tolerance]``; a
    predicted event is a true positive if any of its steps lies there for
    some true event. ``precision = TP_pred / predicted events``, ``recall =
    detected / true events``, F1 their harmonic mean, pooled over all series
    (the rules of :func:`lesion_f1`, with time for space and a tolerance).
    Undefined ratios are 0, except that with no true and no predicted event
    anywhere all three are 1.

    Args:
        y_true: 0/1 labels ``(N, T)``, ``(N, T, 1)`` or one series ``(T,)``.
        y_pred: probabilities or 0/1 decisions of the same shape.
        threshold: float, a step is flagged where ``y_pred >= threshold``.
            Default 0.5.
        tolerance: int >= 0, steps a detection may lie before or after a
            true event (0: it must overlap). Default
            ``DEFAULT_EVENT_TOLERANCE`` = 2: a causal model sees a level
            jump only in the steps after its labelled onset.

    Returns:
        A dict with float ``precision``, ``recall``, ``f1`` and the counts
        ``true_events``, ``pred_events``, ``tp_pred`` (predicted events near
        a true one), ``fp``, ``detected`` (true events found) and ``fn``.

    Raises:
        ValueError: for different shapes, labels other than 0/1, NaN or
            infinite predictions, a bad ``threshold`` or ``tolerance``.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import event_f1
    >>> truth = np.zeros((1, 20)); truth[0, 5:7] = 1; truth[0, 15] = 1
    >>> flags = np.zeros((1, 20)); flags[0, 8] = 1; flags[0, 12] = 1
    >>> scores = event_f1(truth, flags, tolerance=2)  # step 8 finds 5-6; 12 is a false alarm
    >>> scores["recall"], scores["precision"]
    (0.5, 0.5)
    """
    truth, pred = _as_series(*_matching(y_true, y_pred, "y_pred"), "y_pred")
    threshold = check_float("threshold", threshold)
    tolerance = check_int("tolerance", tolerance, minimum=0)
    flagged = pred >= threshold
    true_runs, n_true = ndimage.label(truth, _RUNS)
    pred_runs, n_pred = ndimage.label(flagged, _RUNS)
    if tolerance:
        window = np.ones((1, 2 * tolerance + 1), dtype=bool)  # along time only
        near_truth = ndimage.binary_dilation(truth, window)
        near_flags = ndimage.binary_dilation(flagged, window)
    else:
        near_truth, near_flags = truth, flagged
    tp_pred = len(np.unique(pred_runs[flagged & near_truth]))
    detected = len(np.unique(true_runs[truth & near_flags]))
    return event_scores(int(n_true), int(n_pred), tp_pred, detected)


def event_scores(true_events: int, pred_events: int, tp_pred: int, detected: int) -> dict:
    """:func:`event_f1`'s dict from its counts (summed over series, for pooled scores).

    Not exported: the one place the ratios and their conventions (0 when
    undefined, 1 with no event on either side) are written.
    """
    if true_events == 0 and pred_events == 0:
        precision = recall = f1 = 1.0
    else:
        precision = tp_pred / pred_events if pred_events else 0.0
        recall = detected / true_events if true_events else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_events": true_events,
        "pred_events": pred_events,
        "tp_pred": tp_pred,
        "fp": pred_events - tp_pred,
        "detected": detected,
        "fn": true_events - detected,
    }


#: The rules :func:`choose_threshold` can optimise.
THRESHOLD_CRITERIA = ("event_f1", "event_recall")


def choose_threshold(
    y_true: Any,
    y_score: Any,
    criterion: str = "event_f1",
    target_recall: float | None = None,
    tolerance: int = DEFAULT_EVENT_TOLERANCE,
    max_candidates: int = 400,
) -> dict[str, float]:
    """The decision threshold on per-step scores that a validation split supports best.

    The candidates are the level at which each true event is first detected
    (the highest score within ``tolerance`` steps of it), and
    ``max_candidates`` distinct scores spread evenly by rank; all of them
    flag at most 100 steps per positive step (lower thresholds raise alarms
    that no event-level score should reward: a threshold that flags a whole
    series makes it one predicted event). Each is scored by
    :func:`event_f1`:

    * ``criterion="event_f1"``: the threshold of the highest event-level F1
      (ties: the higher threshold, fewer alarms);
    * ``criterion="event_recall"``: the highest threshold whose event recall
      is at least ``target_recall`` (the most precise rule that finds that
      share of the events); if none reaches it, the one with the highest
      recall.

    Choose it on series the model was not trained on, then apply it
    unchanged to new ones (``bayesseg demo --task anomaly`` saves it beside
    the model and ``bayesseg predict`` uses it). The threshold applies to the
    scores as given: probabilities corrected for class weights and a window
    prior (``bs.imbalance.prior_shift_weights``) rank the steps exactly as
    uncorrected ones do, but the threshold's value differs.

    Args:
        y_true: 0/1 labels ``(N, T)``, ``(N, T, 1)`` or ``(T,)``.
        y_score: per-step scores of the same shape (probabilities or any
            score where higher means more anomalous), finite.
        criterion: "event_f1" (default) or "event_recall".
        target_recall: float in (0, 1], required with "event_recall" only.
        tolerance: int >= 0, the event matching tolerance. Default
            ``DEFAULT_EVENT_TOLERANCE``.
        max_candidates: int >= 1, the most thresholds tried. Default 400.

    Returns:
        A dict: ``threshold`` and the validation ``precision``, ``recall``
        and ``f1`` (event-level) it reached.

    Raises:
        ValueError: for the checks of :func:`event_f1`, an unknown
            ``criterion``, ``target_recall`` missing, given with "event_f1"
            or outside (0, 1], or labels without any event.

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
    truth, score = _as_series(*_matching(y_true, y_score, "y_score"), "y_score")
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
    max_candidates = check_int("max_candidates", max_candidates)
    tolerance = check_int("tolerance", tolerance, minimum=0)
    if not truth.any():
        raise ValueError(
            "Argument `y_true` holds no event: there is nothing to tune a threshold on."
        )
    values = np.unique(score)[::-1]  # distinct scores, highest first
    ordered = np.sort(score, axis=None)
    flagged = ordered.size - np.searchsorted(ordered, values)  # steps >= each value
    # Never more than 100 alarms per true step (the highest value always stays).
    reach = max(int(np.searchsorted(flagged, 100 * int(truth.sum()), side="right")), 1)
    ranks = np.unique(np.linspace(0, reach - 1, min(max_candidates, reach)).round().astype(int))
    # And the level at which each event is first detected: the highest score
    # within the tolerance of it (where the event-level recall moves).
    levels = ndimage.maximum_filter1d(score, 2 * tolerance + 1, axis=-1, mode="nearest")[truth]
    candidates = np.union1d(values[ranks], levels[levels >= values[reach - 1]])[::-1]
    best: dict[str, float] | None = None
    for threshold in candidates:  # highest first: ties keep the higher threshold
        scores = event_f1(truth, score, threshold=float(threshold), tolerance=tolerance)
        entry = {
            "threshold": float(threshold),
            "precision": scores["precision"],
            "recall": scores["recall"],
            "f1": scores["f1"],
        }
        if criterion == "event_recall":
            if entry["recall"] >= target_recall:
                return entry
            if best is None or entry["recall"] > best["recall"]:
                best = entry
        elif best is None or entry["f1"] > best["f1"]:
            best = entry
    return best
