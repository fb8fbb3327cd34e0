"""Rare-event metrics: average precision against scikit-learn, event matching by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from bayesseg.metrics import DEFAULT_EVENT_TOLERANCE, average_precision, event_f1


@pytest.mark.parametrize("seed", range(4))
def test_average_precision_matches_sklearn_with_ties_at_our_users_rarity(seed):
    rng = np.random.default_rng(seed)
    # 40 series of 4096 steps, ~0.04% positive, scores rounded so that ties occur.
    labels = (rng.random((40, 4096)) < 4e-4).astype(int)
    labels[0, 100:102] = 1
    scores = np.round(0.3 * rng.random(labels.shape) + 0.4 * labels * rng.random(labels.shape), 2)
    expected = average_precision_score(labels.ravel(), scores.ravel())
    assert average_precision(labels, scores) == pytest.approx(expected, abs=1e-12)
    assert average_precision(labels[..., None], scores[..., None]) == pytest.approx(expected)


def test_average_precision_extremes_by_hand():
    labels = np.array([0, 1, 0, 0, 1])
    assert average_precision(labels, [0.1, 0.9, 0.2, 0.3, 0.8]) == 1.0  # perfect order
    # Reversed order: precision 1/4 at the first positive's threshold, 2/5 at the last.
    assert average_precision(labels, [0.9, 0.1, 0.8, 0.7, 0.2]) == pytest.approx(
        0.5 * 1 / 4 + 0.5 * 2 / 5
    )
    # All scores tied: one threshold, AP = the positive rate.
    assert average_precision(labels, np.full(5, 0.3)) == pytest.approx(2 / 5)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        (np.zeros(4), np.ones(4), "no positive step"),
        (np.array([0, 1]), np.array([0.5, 0.5, 0.5]), "same shape"),
        (np.array([0, 1]), np.array([0.5, np.nan]), "finite"),
        (np.array([0, 2]), np.array([0.5, 0.5]), "0/1 labels"),
    ],
)
def test_average_precision_refuses_bad_input(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        average_precision(labels, scores)


def test_event_f1_hand_built_example():
    truth = np.zeros((2, 30), int)
    flags = np.zeros((2, 30))
    # Series 0: event 3-4 found 2 steps late (step 6); event 10 missed; a false
    # alarm at 20-21; event 28-29 at the border found by a flag at 27.
    truth[0, 3:5] = 1
    truth[0, 10] = 1
    truth[0, 28:30] = 1
    flags[0, 6] = 0.9
    flags[0, 20:22] = 0.7
    flags[0, 27] = 0.6
    # Series 1: one long flagged run 4-12 covers two true events (5 and 11);
    # a run of low scores (0.4) below the threshold is ignored.
    truth[1, 5] = truth[1, 11] = 1
    flags[1, 4:13] = 0.8
    flags[1, 20:25] = 0.4
    scores = event_f1(truth, flags, tolerance=2)
    # True events: 3-4, 10, 28-29, 5, 11 -> 5, detected: all but 10 -> 4.
    # Predicted events: 6, 20-21, 27, 4-12 -> 4, near a true event: 6, 27, 4-12 -> 3.
    assert scores == {
        "precision": 3 / 4,
        "recall": 4 / 5,
        "f1": pytest.approx(2 * 0.75 * 0.8 / 1.55),
        "true_events": 5,
        "pred_events": 4,
        "tp_pred": 3,
        "fp": 1,
        "detected": 4,
        "fn": 1,
    }
    # Without tolerance the late flag at 6 misses 3-4 and becomes a false alarm;
    # the flag at 27 misses 28-29.
    exact = event_f1(truth, flags, tolerance=0)
    assert (exact["detected"], exact["tp_pred"]) == (2, 1)
    # A tolerance of 3 still misses event 10 (nearest flags 6 and 20).
    assert event_f1(truth, flags, tolerance=3)["detected"] == 4
    assert DEFAULT_EVENT_TOLERANCE == 2
    assert event_f1(truth, flags) == scores


def _brute_force_events(truth, flags, tolerance):
    """The same counts by explicit loops over runs (an independent implementation)."""

    def runs(row):
        out, start = [], None
        for t, value in enumerate(list(row) + [False]):
            if value and start is None:
                start = t
            elif not value and start is not None:
                out.append((start, t - 1))
                start = None
        return out

    counts = {"true_events": 0, "pred_events": 0, "tp_pred": 0, "detected": 0}
    for t_row, p_row in zip(truth, flags, strict=True):
        true_runs, pred_runs = runs(t_row), runs(p_row)
        counts["true_events"] += len(true_runs)
        counts["pred_events"] += len(pred_runs)
        near = [(s - tolerance, e + tolerance) for s, e in true_runs]
        counts["tp_pred"] += sum(any(a <= hi and b >= lo for lo, hi in near) for a, b in pred_runs)
        counts["detected"] += sum(any(a <= hi and b >= lo for a, b in pred_runs) for lo, hi in near)
    return counts


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tolerance", [0, 1, 2, 5])
def test_event_f1_counts_match_a_brute_force_loop(seed, tolerance):
    rng = np.random.default_rng(seed)
    truth = rng.random((6, 200)) < 0.03
    flags = rng.random((6, 200)) < 0.04
    scores = event_f1(truth.astype(int), flags.astype(float), tolerance=tolerance)
    expected = _brute_force_events(truth, flags, tolerance)
    assert {key: scores[key] for key in expected} == expected


def test_event_f1_edge_cases_and_shapes():
    empty = np.zeros((3, 10))
    assert event_f1(empty, empty)["f1"] == 1.0  # nothing to find, nothing flagged
    alarms = empty.copy()
    alarms[1, 4] = 1
    assert event_f1(empty, alarms)["precision"] == 0.0
    one = np.zeros(10)
    one[3] = 1
    assert event_f1(one, one)["f1"] == 1.0  # a single series (T,)
    assert event_f1(one[None, :, None], one[None, :, None])["true_events"] == 1
    with pytest.raises(ValueError, match="series"):
        event_f1(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="`tolerance`"):
        event_f1(one, one, tolerance=-1)
