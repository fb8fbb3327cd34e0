"""Rare-event metrics: average precision against scikit-learn; the event score, its chance
rows and the threshold rule against a reference written from the definition, by hand,
and against the trivial detectors it must not reward."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score

from bayesseg.metrics import (
    DEFAULT_EVENT_TOLERANCE,
    MAX_ALARMS_PER_POSITIVE,
    average_precision,
    choose_threshold,
    event_chance,
    event_f1,
)


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


def test_average_precision_pools_ragged_series_as_concatenated_steps():
    rng = np.random.default_rng(3)
    lengths = (50, 300, 7)
    labels = [(rng.random(n) < 0.1).astype(int) for n in lengths]
    labels[0][3] = 1
    scores = [rng.random(n) + 0.3 * y for n, y in zip(lengths, labels, strict=True)]
    expected = average_precision_score(np.concatenate(labels), np.concatenate(scores))
    assert average_precision(labels, scores) == pytest.approx(expected, abs=1e-12)
    column = [s[:, None] for s in scores]
    assert average_precision(labels, column) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------
# The event score: recall per event, precision per flagged step
# --------------------------------------------------------------------------
def _reference(truth, flags, tolerance):
    """Garg et al.'s composite score with a tolerance, by explicit loops per series.

    An independent implementation: events found by scanning runs, each flagged
    step checked against every true step of its own series.
    """
    counts = dict.fromkeys(
        ("steps", "positive_steps", "true_events", "detected_events", "flagged_steps"), 0
    )
    counts.update(correct_steps=0, flagged_positive_steps=0, near_steps=0)
    for t_row, f_row in zip(truth, flags, strict=True):
        t_row, f_row = [bool(v) for v in t_row], [bool(v) for v in f_row]
        n = len(t_row)
        true_steps = [i for i in range(n) if t_row[i]]
        near = [any(abs(i - j) <= tolerance for j in true_steps) for i in range(n)]
        runs, start = [], None
        for i, value in enumerate([*t_row, False]):
            if value and start is None:
                start = i
            elif not value and start is not None:
                runs.append((start, i - 1))
                start = None
        counts["steps"] += n
        counts["positive_steps"] += len(true_steps)
        counts["near_steps"] += sum(near)
        counts["true_events"] += len(runs)
        counts["detected_events"] += sum(
            any(f_row[i] for i in range(max(s - tolerance, 0), min(e + tolerance, n - 1) + 1))
            for s, e in runs
        )
        counts["flagged_steps"] += sum(f_row)
        counts["correct_steps"] += sum(f and c for f, c in zip(f_row, near, strict=True))
        counts["flagged_positive_steps"] += sum(f and t for f, t in zip(f_row, t_row, strict=True))
    precision = counts["correct_steps"] / counts["flagged_steps"] if counts["flagged_steps"] else 0
    recall = counts["detected_events"] / counts["true_events"] if counts["true_events"] else 0
    if not counts["true_events"] and not counts["flagged_steps"]:
        precision = recall = 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, **counts}


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
    # steps 8 and 9 lie more than 2 steps from both: 2 false alarms inside the run.
    # A run of low scores (0.4) below the threshold is ignored.
    truth[1, 5] = truth[1, 11] = 1
    flags[1, 4:13] = 0.8
    flags[1, 20:25] = 0.4
    scores = event_f1(truth, flags, tolerance=2)
    # Near steps: series 0: 1-6, 8-12, 26-29 (15); series 1: 3-7, 9-13 (10).
    # Flagged: 6, 20, 21, 27, 4..12 -> 13; correct: 6, 27, 4-7, 9-12 -> 10.
    # Events: 3-4, 10, 28-29, 5, 11 -> 5, detected: all but 10 -> 4.
    assert scores == {
        "precision": 10 / 13,
        "recall": 4 / 5,
        "f1": pytest.approx(2 * (10 / 13) * 0.8 / (10 / 13 + 0.8)),
        "flagged_fraction": 13 / 60,
        "step_recall": 2 / 7,  # of the 7 positive steps, 5 and 11 are flagged
        "steps": 60,
        "positive_steps": 7,
        "near_steps": 25,
        "true_events": 5,
        "detected_events": 4,
        "flagged_steps": 13,
        "correct_steps": 10,
        "flagged_positive_steps": 2,
    }
    # Without tolerance the late flag at 6 misses 3-4 and the flag at 27 misses
    # 28-29; only the flags on 5 and 11 are correct.
    exact = event_f1(truth, flags, tolerance=0)
    assert (exact["detected_events"], exact["correct_steps"]) == (2, 2)
    # A tolerance of 3 still misses event 10 (nearest flags 6 and 20).
    assert event_f1(truth, flags, tolerance=3)["detected_events"] == 4
    assert DEFAULT_EVENT_TOLERANCE == 2
    assert event_f1(truth, flags) == scores


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tolerance", [0, 1, 2, 5])
def test_event_f1_matches_a_reference_written_from_the_definition(seed, tolerance):
    rng = np.random.default_rng(seed)
    truth = rng.random((6, 200)) < 0.03
    truth[0, -2:] = True  # an event at the border
    truth[1, :1] = True
    flags = rng.random((6, 200)) < 0.04
    scores = event_f1(truth.astype(int), flags.astype(float), tolerance=tolerance)
    expected = _reference(truth, flags, tolerance)
    assert {key: scores[key] for key in expected} == pytest.approx(expected)


@pytest.mark.parametrize("tolerance", [0, 2, 7])
def test_ragged_series_equal_the_counts_pooled_one_series_at_a_time(tolerance):
    rng = np.random.default_rng(11)
    lengths = (1, 40, 333, 90)
    truth = [rng.random(n) < 0.05 for n in lengths]
    truth[1][-1] = truth[2][0] = True  # events at both ends of neighbouring series
    score = [rng.random(n) for n in lengths]
    pooled = event_f1(truth, score, threshold=0.8, tolerance=tolerance)
    single = [
        event_f1(t, s, threshold=0.8, tolerance=tolerance)
        for t, s in zip(truth, score, strict=True)
    ]
    for key in ("steps", "true_events", "detected_events", "flagged_steps", "correct_steps"):
        assert pooled[key] == sum(one[key] for one in single)
    expected = _reference(truth, [s >= 0.8 for s in score], tolerance)
    assert {key: pooled[key] for key in expected} == pytest.approx(expected)
    # (T, 1) series and tuples are accepted too.
    columns = tuple(s[:, None] for s in score)
    assert event_f1(truth, columns, threshold=0.8, tolerance=tolerance) == pooled


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
    assert event_f1(one, np.zeros(10))["f1"] == 0.0  # an event, no flag
    with pytest.raises(ValueError, match="series"):
        event_f1(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="`tolerance`"):
        event_f1(one, one, tolerance=-1)
    with pytest.raises(ValueError, match="same number of series"):
        event_f1([one, one], [one])
    with pytest.raises(ValueError, match=r"series 1 of 10 and 9 steps"):
        event_f1([one, one], [one, one[:9]])
    with pytest.raises(ValueError, match=r"y_pred\[0\] with shape \(10, 2\)"):
        event_f1([one], [np.zeros((10, 2))])
    with pytest.raises(ValueError, match="both be lists"):
        event_f1([one], one[None])
    with pytest.raises(ValueError, match="no series"):
        event_f1(np.zeros((0, 5)), np.zeros((0, 5)))


# --------------------------------------------------------------------------
# Trivial detectors cannot win it; the chance rows in closed form
# --------------------------------------------------------------------------
def _one_step_events(num_series=20, length=2000, per_series=5, seed=0):
    rng = np.random.default_rng(seed)
    truth = np.zeros((num_series, length), bool)
    for row in truth:
        row[rng.choice(np.arange(100, length - 100, 150), per_series, replace=False)] = True
    return truth


def test_flagging_everything_scores_its_closed_form_and_no_more():
    truth = np.zeros((1, 4096), bool)
    truth[0, 50:4000:99] = True  # 40 one-step events in one long series
    everything = event_f1(truth, np.ones(truth.shape))
    r = 5 * 40 / 4096
    assert everything["precision"] == pytest.approx(r)
    assert everything["recall"] == 1.0
    assert everything["f1"] == pytest.approx(2 * r / (1 + r))
    assert everything["f1"] < 0.1
    chance = event_chance(truth)
    assert chance["near_fraction"] == pytest.approx(r)
    assert chance["flag_all"]["f1"] == pytest.approx(everything["f1"])


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_random_flags_score_their_expected_value(rate):
    truth = _one_step_events()
    chance = event_chance(truth, rate=rate)["random"]
    rng = np.random.default_rng(5)
    draws = [event_f1(truth, rng.random(truth.shape) < rate) for _ in range(200)]
    # Exact expectations for precision and recall (Monte Carlo error ~0.01).
    assert np.mean([d["precision"] for d in draws]) == pytest.approx(chance["precision"], abs=0.003)
    assert np.mean([d["recall"] for d in draws]) == pytest.approx(chance["recall"], abs=0.01)
    assert np.mean([d["f1"] for d in draws]) == pytest.approx(chance["f1"], abs=0.01)
    # 100 events with 5-step zones: recall 1 - (1 - rate)^5 exactly.
    assert chance["recall"] == pytest.approx(1 - (1 - rate) ** 5)
    assert chance["f1"] < 0.06


def test_random_chance_counts_zones_clipped_at_the_series_ends():
    truth = np.zeros(20)
    truth[0] = truth[10:13] = 1  # zones of 3 steps (clipped) and 7 steps
    chance = event_chance([truth, np.zeros(5)], rate=0.5, tolerance=2)
    assert chance["random"]["recall"] == pytest.approx((1 - 0.5**3 + 1 - 0.5**7) / 2)
    assert chance["near_fraction"] == pytest.approx(10 / 25)
    assert event_chance(truth, rate=0.0)["random"]["f1"] == 0.0
    with pytest.raises(ValueError, match="`rate`"):
        event_chance(truth, rate=1.5)


def test_widening_alarms_beyond_the_tolerance_lowers_the_score():
    truth = _one_step_events()
    f1 = {}
    for width in (0, 2, 10, 50, 70):
        alarms = ndimage.binary_dilation(truth, np.ones((1, 2 * width + 1), bool))
        f1[width] = event_f1(truth, alarms)["f1"]
    assert f1[0] == f1[2] == 1.0
    assert f1[2] > f1[10] > f1[50] > f1[70]
    assert f1[70] <= 0.1
    # Precision is exactly the 5 near steps over the 141 flagged per event.
    assert f1[70] == pytest.approx(2 * (5 / 141) / (1 + 5 / 141))


def test_one_flag_inside_each_long_event_finds_it_and_says_how_little_it_covers():
    truth = np.zeros((1, 3000), bool)
    truth[0, 100:400] = truth[0, 1000:2500] = True
    flags = np.zeros_like(truth)
    flags[0, 200] = flags[0, 1800] = True
    scores = event_f1(truth, flags)
    # Both events found, nothing false claimed: the event score is 1 ...
    assert (scores["precision"], scores["recall"], scores["f1"]) == (1.0, 1.0, 1.0)
    # ... and step_recall says that 2 of the 1800 anomalous steps were flagged.
    assert scores["step_recall"] == pytest.approx(2 / 1800)


# --------------------------------------------------------------------------
# Choosing the threshold
# --------------------------------------------------------------------------
def _brute_force(truth, score, criterion, target=None, tolerance=2):
    """Every distinct score, scored by the reference, inside the alarm cap."""
    flat_truth, flat_score = np.concatenate(truth, axis=None), np.concatenate(score, axis=None)
    limit = MAX_ALARMS_PER_POSITIVE * flat_truth.sum()
    best = None
    for t in sorted(set(flat_score.tolist()), reverse=True):
        flagged = (flat_score >= t).sum()
        if flagged > limit or flagged == flat_score.size:
            continue
        e = _reference(truth, [s >= t for s in score], tolerance)
        key = e["recall"] if criterion == "event_recall" else e["f1"]
        if criterion == "event_recall" and e["recall"] >= target:
            return t, e
        if best is None or key > best[0] + 1e-12:
            best = (key, t, e)
    return best[1], best[2]


@pytest.mark.parametrize("seed", range(6))
def test_choose_threshold_matches_a_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    truth = np.zeros((8, 300), bool)
    for s in range(0, 8, 2):
        start = rng.integers(10, 280)
        truth[s, start : start + rng.integers(1, 15)] = True
    score = np.round(rng.random(truth.shape) * 0.6, 3)
    score[truth] = np.round(0.3 + 0.7 * rng.random(truth.sum()), 3)
    chosen = choose_threshold(truth, score)
    threshold, expected = _brute_force(truth, score, "event_f1")
    assert chosen["threshold"] == threshold
    assert chosen["f1"] == pytest.approx(expected["f1"])
    assert chosen == {
        "threshold": threshold,
        "criterion": "event_f1",
        "candidates": chosen["candidates"],
        **event_f1(truth, score, threshold=threshold),
    }
    for target in (0.5, 1.0):
        recall = choose_threshold(truth, score, "event_recall", target_recall=target)
        assert recall["threshold"] == _brute_force(truth, score, "event_recall", target)[0]


def test_choose_threshold_on_ragged_series_matches_the_brute_force_search():
    rng = np.random.default_rng(2)
    truth = [rng.random(n) < 0.02 for n in (500, 120, 900)]
    score = [rng.random(t.size) * 0.7 + 0.4 * t for t in truth]
    ragged = choose_threshold(truth, score)
    expected, _ = _brute_force(truth, score, "event_f1")
    assert ragged["threshold"] == expected


def test_choose_threshold_never_returns_a_rule_that_flags_everything():
    truth = np.zeros((4, 500), bool)
    truth[:, 100:160] = True
    with pytest.raises(ValueError, match="cannot separate anything"):
        choose_threshold(truth, np.full(truth.shape, 0.3))  # constant
    # Saturated: one positive step, probability 1.0 on 1500 of 2000 steps.
    saturated = np.zeros((4, 500))
    saturated[:3] = 1.0
    one = np.zeros((4, 500), bool)
    one[0, 7] = True
    with pytest.raises(ValueError, match="shared by 1500 of 2000 steps"):
        choose_threshold(one, saturated)
    # The cap holds for ties: 1 positive step, the top value shared by 101 steps.
    rare = np.zeros(1000, bool)
    rare[500] = True
    tied = np.zeros(1000)
    tied[400:501] = 1.0
    with pytest.raises(ValueError, match="more than 100 steps per positive step"):
        choose_threshold(rare, tied)
    tied[400] = 0.5  # now the top value flags 100 steps: admissible
    assert choose_threshold(rare, tied)["flagged_steps"] == 100


def test_choose_threshold_prefers_the_score_that_pays_for_alarms():
    # A detector that is right about two events but fires late and long around
    # the third: F1 at a threshold that finds all three pays for the long alarm.
    truth = np.zeros((1, 1000), bool)
    truth[0, [100, 400, 700]] = True
    score = np.zeros((1, 1000))
    score[0, [100, 400]] = 0.9
    score[0, 700:900] = 0.5  # a 200-step alarm that starts on the third event
    chosen = choose_threshold(truth, score)
    # At 0.9: P 1, R 2/3, F1 0.8; at 0.5: P 5/202 (the near steps 100, 400, 700-702),
    # R 1, F1 ~0.06. The first wins.
    assert chosen["threshold"] == 0.9
    assert chosen["f1"] == pytest.approx(0.8)


def test_choose_threshold_checks_its_arguments():
    rng = np.random.default_rng(0)
    truth = rng.random((20, 1000)) < 0.002
    score = rng.random(truth.shape) + truth
    assert choose_threshold(truth, score)["f1"] == 1.0  # separable scores
    assert choose_threshold(truth, score)["threshold"] == score[truth].min()
    with pytest.raises(ValueError, match="target_recall"):
        choose_threshold(truth, score, "event_recall")
    with pytest.raises(ValueError, match="target_recall"):
        choose_threshold(truth, score, target_recall=0.5)
    with pytest.raises(ValueError, match="Argument `criterion`"):
        choose_threshold(truth, score, "f2")
    with pytest.raises(ValueError, match="no event"):
        choose_threshold(np.zeros_like(truth), score)


def test_chance_rows_follow_event_f1s_conventions_without_events():
    nothing = np.zeros((2, 50))
    chance = event_chance(nothing, rate=0.0)
    assert chance["random"]["f1"] == event_f1(nothing, nothing)["f1"] == 1.0
    # Flagging every step of series without events: all false alarms, like event_f1.
    assert chance["flag_all"]["f1"] == event_f1(nothing, np.ones((2, 50)))["f1"] == 0.0
    assert event_chance([0, 1, 0, 0])["flag_all"]["precision"] == 1.0  # a plain list
