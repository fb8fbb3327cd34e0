"""Conformal risk control: the exact rule, its guarantee, its refusals and its round trip.

The rule is checked against a brute-force implementation written from the
paper (Angelopoulos et al., "Conformal Risk Control", ICLR 2024): every
candidate ``lambda`` is tried, and the smallest one with ``n / (n + 1) *
R_n(lambda) + B / (n + 1) <= alpha`` wins. The guarantee is checked by
Monte Carlo over random calibration / test splits of synthetic data.
NumPy only: no model is built.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import bayesseg as bs
from bayesseg.calibration import ConformalRiskControl

# --------------------------------------------------------------------------
# Brute force, written from the paper
# --------------------------------------------------------------------------


def _fnr_losses(scores, labels, threshold):
    """Per-image pixel FNR at ``threshold`` (flag ``score >= threshold``); None if no positive."""
    out = []
    for s, y in zip(scores, labels, strict=True):
        y = np.asarray(y).astype(bool).ravel()
        s = np.asarray(s, dtype=np.float64).ravel()
        out.append(None if not y.any() else float(np.sum(y & (s < threshold)) / y.sum()))
    return out


def _event_zones(labels, tolerance):
    """Per series, the ``[lo, hi)`` step ranges within ``tolerance`` of each event, by hand.

    An event is a run of positive steps; a flagged step anywhere in its zone
    (``start - tolerance`` to ``end + tolerance``, clipped to the series) finds it.
    """
    zones = []
    for y in labels:
        y, found, step = np.asarray(y).astype(bool), [], 0
        while step < y.size:
            if y[step]:
                end = step
                while end + 1 < y.size and y[end + 1]:
                    end += 1
                found.append((max(0, step - tolerance), min(y.size, end + tolerance + 1)))
                step = end + 1
            else:
                step += 1
        zones.append(found)
    return zones


def _event_losses(scores, zones, threshold):
    """Per-series fraction of events missed at ``threshold``; None if no event."""
    out = []
    for s, found in zip(scores, zones, strict=True):
        missed = [not np.any(np.asarray(s)[lo:hi] >= threshold) for lo, hi in found]
        out.append(float(np.mean(missed)) if found else None)
    return out


def test_the_brute_force_event_loss_is_the_library_definition():
    rng = np.random.default_rng(99)
    scores, labels = _random_series(rng, 30, 40, ties=False)
    for tolerance in (0, 2):
        zones = _event_zones(labels, tolerance)
        for threshold in (0.2, 0.5, 0.7):
            mine = _event_losses(scores, zones, threshold)
            for s, y, loss in zip(scores, labels, mine, strict=True):
                counts = bs.metrics.event_f1(y[None], s[None], threshold, tolerance)
                if counts["true_events"] == 0:
                    assert loss is None
                else:
                    recall = counts["detected_events"] / counts["true_events"]
                    assert loss == pytest.approx(1.0 - recall)


def _brute_threshold(loss_at, all_scores, alpha, bound):
    """The paper's rule by exhaustion over lambda = 1 - threshold.

    ``loss_at(t)`` gives the per-item losses (None: the item does not count).
    The candidates are every distinct score, 0, 1 and the midpoints between
    them (the midpoints can never win: the loss is constant between scores).
    Returns the threshold of the smallest feasible lambda, or 0 (lambda_max)
    when none is feasible.
    """
    values = np.unique(np.r_[0.0, np.ravel(all_scores), 1.0])
    candidates = np.unique(np.r_[values, (values[1:] + values[:-1]) / 2])
    feasible = []  # (lambda, threshold) pairs
    for t in candidates:
        losses = [v for v in loss_at(t) if v is not None]
        n = len(losses)
        risk = float(np.mean(losses))
        if n / (n + 1) * risk + bound / (n + 1) <= alpha:
            feasible.append((1.0 - t, float(t)))
    if not feasible:
        return 0.0
    return min(feasible)[1]  # the threshold of the smallest feasible lambda


def _random_masks(rng, n, size, ties):
    labels = rng.random((n, size, size)) < rng.uniform(0.05, 0.5, (n, 1, 1))
    labels[rng.random(n) < 0.2] = False  # some images without foreground
    scores = np.clip(rng.uniform(0.1, 0.6) * labels + rng.random((n, size, size)) * 0.7, 0, 1)
    return (np.round(scores, 1) if ties else scores), labels


def _random_series(rng, n, length, ties):
    labels = np.zeros((n, length), dtype=np.int64)
    for i in range(n):
        for _ in range(rng.integers(0, 4)):
            start = int(rng.integers(0, length - 3))
            labels[i, start : start + int(rng.integers(1, 4))] = 1
    scores = np.clip(0.4 * labels * rng.random((n, 1)) + 0.6 * rng.random((n, length)), 0, 1)
    return (np.round(scores, 1) if ties else scores), labels


def _weighted_miss(scores, labels, threshold, bound):
    """A custom loss: ``bound`` x the share of label weight on unflagged elements."""
    s = np.asarray(scores).reshape(len(scores), -1)
    w = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    return bound * (w * (s < threshold)).sum(1) / w.sum(1)


@pytest.mark.parametrize("case", range(12))
def test_fnr_threshold_equals_brute_force(case):
    rng = np.random.default_rng(case)
    alpha = rng.uniform(0.12, 0.5)
    scores, labels = _random_masks(rng, int(rng.integers(20, 40)), 4, ties=case % 3 == 0)
    crc = ConformalRiskControl(alpha).fit(scores, labels)
    expected = _brute_threshold(lambda t: _fnr_losses(scores, labels, t), scores, alpha, 1.0)
    assert crc.threshold_ == expected
    assert crc.lambda_ == 1.0 - expected
    counted = labels.reshape(len(labels), -1).any(1)
    assert (crc.n_calibration_, crc.n_skipped_) == (counted.sum(), (~counted).sum())
    brute_risk = np.mean([v for v in _fnr_losses(scores, labels, expected) if v is not None])
    assert crc.calibration_risk_ == pytest.approx(brute_risk, abs=1e-12)
    assert crc.risk(scores, labels) == pytest.approx(brute_risk, abs=1e-12)
    assert crc.flagged_fraction_ == np.mean(scores >= expected)
    assert not crc.fallback_


@pytest.mark.parametrize("case", range(10))
def test_missed_events_threshold_equals_brute_force(case):
    rng = np.random.default_rng(100 + case)
    alpha = rng.uniform(0.15, 0.5)
    tolerance = int(case % 3)
    scores, labels = _random_series(rng, int(rng.integers(25, 40)), 20, ties=case % 4 == 0)
    crc = ConformalRiskControl(alpha, risk="missed_events", tolerance=tolerance)
    crc.fit(scores, labels)

    zones = _event_zones(labels, tolerance)

    def loss_at(t):
        return _event_losses(scores, zones, t)

    expected = _brute_threshold(loss_at, scores, alpha, 1.0)
    assert crc.threshold_ == expected
    counted = [v is not None for v in loss_at(0.5)]
    assert crc.n_calibration_ == sum(counted) and crc.n_skipped_ == len(counted) - sum(counted)
    brute = [np.nan if v is None else v for v in loss_at(expected)]
    np.testing.assert_allclose(crc.losses(scores, labels), brute, atol=1e-12)
    assert crc.calibration_risk_ == pytest.approx(np.nanmean(brute), abs=1e-12)


@pytest.mark.parametrize("case", range(8))
def test_custom_threshold_equals_brute_force(case):
    rng = np.random.default_rng(200 + case)
    bound = [1.0, 2.0][case % 2]
    alpha = rng.uniform(0.15, 0.5)
    n = int(np.ceil(bound / alpha)) + int(rng.integers(5, 25))
    scores = rng.random((n, 12))
    weights = rng.random((n, 12)) * (rng.random((n, 12)) < 0.4)  # non-binary labels
    weights[:, 0] += 0.1  # every item has some weight

    def loss(s, y, t):
        return _weighted_miss(s, y, t, bound)

    # max_evaluations 4 < 12 n candidates: the bisection finds the exact threshold.
    for max_evaluations in (4, 10_000):
        crc = ConformalRiskControl(alpha, risk=loss, bound=bound, max_evaluations=max_evaluations)
        crc.fit(scores, weights)
        expected = _brute_threshold(lambda t: list(loss(scores, weights, t)), scores, alpha, bound)
        assert crc.threshold_ == expected, max_evaluations
        assert crc.n_calibration_ == n and crc.n_skipped_ == 0 and not crc.fallback_
        assert crc.risk(scores, weights) == pytest.approx(loss(scores, weights, expected).mean())
    assert crc.n_evaluations_ == np.unique(scores).size + 2


def test_custom_bisection_uses_few_evaluations():
    rng = np.random.default_rng(7)
    scores, labels = rng.random((50, 400)), rng.random((50, 400)) < 0.3
    crc = ConformalRiskControl(0.1, risk=lambda s, y, t: _weighted_miss(s, y, t, 1.0))
    crc.fit(scores, labels)
    assert crc.n_candidates_ == 20_002 and crc.n_evaluations_ <= 128 + 10
    exact = ConformalRiskControl(0.1).fit(scores, labels)  # the same loss, built in
    assert crc.threshold_ == exact.threshold_


def test_custom_fallback_to_flag_everything():
    # A constant loss of 0.1 <= alpha everywhere, but 50/51 * 0.1 + 1/51 > 0.1: no
    # threshold qualifies, so the rule falls back to lambda_max (threshold 0).
    crc = ConformalRiskControl(0.1, risk=lambda s, y, t: np.full(len(s), 0.1))
    crc.fit(np.random.default_rng(0).random((50, 3)), np.zeros((50, 3)))
    assert crc.fallback_ and crc.threshold_ == 0.0 and crc.lambda_ == 1.0


def test_fnr_at_the_minimum_count_flags_every_positive():
    # n = 9 items at alpha = 0.1: B / (n + 1) = alpha exactly, so the rule needs
    # zero calibration loss: the threshold is the lowest positive score.
    rng = np.random.default_rng(3)
    labels = rng.random((9, 5, 5)) < 0.5
    labels[:, 0, 0] = True
    scores = rng.random((9, 5, 5))
    crc = ConformalRiskControl(0.1).fit(scores, labels)
    assert crc.min_calibration_items == 9
    assert crc.threshold_ == scores[labels].min() and crc.calibration_risk_ == 0.0


def test_scores_of_one_are_kept_at_threshold_one():
    labels = np.zeros((30, 4))
    labels[:, 0] = 1
    scores = np.full((30, 4), 0.2)
    scores[:, 0] = 1.0
    crc = ConformalRiskControl(0.1).fit(scores, labels)
    assert crc.threshold_ == 1.0 and crc.lambda_ == 0.0
    assert crc.predict(scores)[:, 0].all() and not crc.predict(scores)[:, 1:].any()


def test_items_without_foreground_change_nothing_but_the_skip_count():
    rng = np.random.default_rng(4)
    scores, labels = _random_masks(rng, 30, 5, ties=False)
    labels[:, 0, 0] = True
    base = ConformalRiskControl(0.15).fit(scores, labels)
    more_scores = np.concatenate([scores, rng.random((7, 5, 5))])
    more_labels = np.concatenate([labels, np.zeros((7, 5, 5), bool)])
    more = ConformalRiskControl(0.15).fit(more_scores, more_labels)
    assert more.threshold_ == base.threshold_
    assert (more.n_calibration_, more.n_skipped_) == (30, 7)
    assert np.isnan(more.losses(more_scores, more_labels)[30:]).all()


# --------------------------------------------------------------------------
# The guarantee, by Monte Carlo over calibration / test splits
# --------------------------------------------------------------------------
SPLITS = 500
N_CALIBRATION = 300


def _synthetic_masks(rng, n=1000, size=8):
    labels = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        if rng.random() < 0.85:
            y, x = rng.integers(0, size - 2, 2)
            h, w = rng.integers(1, 4, 2)
            labels[i, y : y + h, x : x + w] = True
    difficulty = rng.uniform(0.5, 6.0, (n, 1, 1))  # some images are hard
    positive = rng.beta(difficulty, 2.0, (n, size, size))
    scores = np.where(labels, positive, rng.beta(1.0, 4.0, (n, size, size)))
    # Per image, the sorted positive scores (padded with inf: never missed).
    counts = labels.reshape(n, -1).sum(1)
    hits = np.full((n, max(counts.max(), 1)), np.inf)
    for i in range(n):
        hits[i, : counts[i]] = np.sort(scores[i][labels[i]])
    return scores, labels, hits, counts


def _synthetic_series(rng, n=1000, length=96, tolerance=2):
    labels = np.zeros((n, length), dtype=np.int64)
    scores = rng.beta(1.0, 6.0, (n, length))
    levels = []
    for i in range(n):
        for _ in range(rng.integers(0, 4)):
            start, width = int(rng.integers(0, length - 4)), int(rng.integers(1, 5))
            labels[i, start : start + width] = 1
            scores[i, start : start + width] = rng.beta(rng.uniform(0.5, 5.0), 2.0, width)
    for i in range(n):  # each event's level: its best score within tolerance, by hand
        row, found, step = labels[i], [], 0
        while step < length:
            if row[step]:
                end = step
                while end + 1 < length and row[end + 1]:
                    end += 1
                lo, hi = max(0, step - tolerance), min(length, end + tolerance + 1)
                found.append(scores[i, lo:hi].max())
                step = end + 1
            else:
                step += 1
        levels.append(found)
    counts = np.array([len(v) for v in levels])
    hits = np.full((n, max(counts.max(), 1)), np.inf)
    for i, v in enumerate(levels):
        hits[i, : len(v)] = v
    return scores, labels, hits, counts


def _split_risks(rng, scores, labels, hits, counts, alpha, risk):
    """Realised test risk of the fitted threshold over random splits."""
    out = []
    for _ in range(SPLITS):
        order = rng.permutation(len(scores))
        calibration, test = order[:N_CALIBRATION], order[N_CALIBRATION:]
        crc = ConformalRiskControl(alpha, risk=risk).fit(scores[calibration], labels[calibration])
        test = test[counts[test] > 0]
        missed = (hits[test] < crc.threshold_).sum(1) / counts[test]
        out.append(missed.mean())
    return np.array(out)


@pytest.mark.parametrize("risk", ["fnr", "missed_events"])
def test_expected_test_risk_is_controlled_and_not_vacuous(risk):
    rng = np.random.default_rng(11)
    make = _synthetic_masks if risk == "fnr" else _synthetic_series
    scores, labels, hits, counts = make(rng)
    for alpha in (0.05, 0.1, 0.2):
        risks = _split_risks(rng, scores, labels, hits, counts, alpha, risk)
        mean, error = risks.mean(), risks.std(ddof=1) / np.sqrt(SPLITS)
        assert mean <= alpha + 3 * error, (alpha, mean, error)
        assert mean >= alpha - 0.05, (alpha, mean)


# --------------------------------------------------------------------------
# Series and masks of different lengths
# --------------------------------------------------------------------------
def test_ragged_series_equal_the_zero_padded_array():
    rng = np.random.default_rng(5)
    scores, labels = _random_series(rng, 40, 50, ties=False)
    lengths = rng.integers(10, 51, 40)
    ragged_s = [scores[i, : lengths[i]] for i in range(40)]
    ragged_y = [labels[i, : lengths[i]] for i in range(40)]
    padded_s, padded_y = scores.copy(), labels.copy()
    for i in range(40):
        padded_s[i, lengths[i] :] = 0.0
        padded_y[i, lengths[i] :] = 0
    a = ConformalRiskControl(0.2, risk="missed_events").fit(ragged_s, ragged_y)
    b = ConformalRiskControl(0.2, risk="missed_events").fit(padded_s, padded_y)
    assert a.threshold_ == b.threshold_
    assert (a.n_calibration_, a.n_skipped_) == (b.n_calibration_, b.n_skipped_)
    np.testing.assert_array_equal(a.losses(ragged_s, ragged_y), b.losses(padded_s, padded_y))
    assert a.risk(ragged_s, ragged_y) == b.risk(padded_s, padded_y)
    flags = a.predict(ragged_s)
    assert isinstance(flags, list) and all(
        np.array_equal(f, s >= a.threshold_) for f, s in zip(flags, ragged_s, strict=True)
    )
    # (N, T, 1) series and lists of (T, 1) series read the same.
    c = ConformalRiskControl(0.2, risk="missed_events").fit(padded_s[..., None], padded_y)
    d = ConformalRiskControl(0.2, risk="missed_events")
    d.fit([s[:, None] for s in ragged_s], [y[:, None] for y in ragged_y])
    assert c.threshold_ == d.threshold_ == b.threshold_


def test_ragged_masks_equal_the_padded_array():
    rng = np.random.default_rng(6)
    scores, labels = _random_masks(rng, 30, 6, ties=False)
    sizes = rng.integers(3, 7, (30, 2))
    ragged_s = [scores[i, :h, :w] for i, (h, w) in enumerate(sizes)]
    ragged_y = [labels[i, :h, :w] for i, (h, w) in enumerate(sizes)]
    padded_y = np.zeros_like(labels)
    for i, (h, w) in enumerate(sizes):
        padded_y[i, :h, :w] = labels[i, :h, :w]
    a = ConformalRiskControl(0.2).fit(ragged_s, ragged_y)
    b = ConformalRiskControl(0.2).fit(scores, padded_y)  # padding: no positive pixel
    assert a.threshold_ == b.threshold_ and a.n_calibration_ == b.n_calibration_
    np.testing.assert_array_equal(a.losses(ragged_s, ragged_y), b.losses(scores, padded_y))
    # A trailing channel axis of 1 on either side reads the same.
    c = ConformalRiskControl(0.2).fit(scores[..., None], padded_y)
    d = ConformalRiskControl(0.2).fit(scores, padded_y[..., None])
    assert c.threshold_ == d.threshold_ == b.threshold_


# --------------------------------------------------------------------------
# predict, to_dict / from_dict
# --------------------------------------------------------------------------
@pytest.mark.parametrize("risk", ["fnr", "missed_events"])
def test_round_trip_through_json_and_predict(risk):
    rng = np.random.default_rng(8)
    scores, labels = (_random_masks if risk == "fnr" else _random_series)(rng, 40, 8, False)
    crc = ConformalRiskControl(0.2, risk=risk, tolerance=1).fit(scores, labels)
    data = crc.to_dict()
    back = ConformalRiskControl.from_dict(json.loads(json.dumps(data)))
    assert back.to_dict() == data
    assert back.tolerance == 1 and back.risk_name == risk
    np.testing.assert_array_equal(back.predict(scores), scores >= crc.threshold_)
    np.testing.assert_array_equal(crc.predict(scores), scores >= crc.threshold_)
    assert back.risk(scores, labels) == crc.risk(scores, labels)
    assert crc.risk(scores, labels) == pytest.approx(crc.calibration_risk_, abs=1e-12)
    assert repr(back) == repr(crc)


def test_round_trip_of_a_custom_risk_needs_the_callable_back():
    def loss(s, y, t):
        return _weighted_miss(s, y, t, 1.0)

    rng = np.random.default_rng(9)
    scores, labels = rng.random((30, 6)), (rng.random((30, 6)) < 0.5) + 0.01
    crc = ConformalRiskControl(0.2, risk=loss).fit(scores, labels)
    data = json.loads(json.dumps(crc.to_dict()))
    assert data["risk"] == "custom"
    alone = ConformalRiskControl.from_dict(data)
    np.testing.assert_array_equal(alone.predict(scores), crc.predict(scores))
    with pytest.raises(ValueError, match="without its custom loss"):
        alone.risk(scores, labels)
    again = ConformalRiskControl.from_dict(data, risk=loss)
    assert again.risk(scores, labels) == crc.risk(scores, labels)
    assert again.to_dict() == crc.to_dict()


def test_unfitted_instances_refuse_to_predict_and_round_trip_unfitted():
    crc = ConformalRiskControl(0.1, risk="missed_events")
    with pytest.raises(ValueError, match="not fitted"):
        crc.predict(np.zeros((2, 3)))
    back = ConformalRiskControl.from_dict(crc.to_dict())
    assert back.to_dict() == crc.to_dict() and back.threshold_ is None


# --------------------------------------------------------------------------
# Refusals: one ValueError each, naming the argument
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": True}, "alpha"),
        ({"alpha": "0.1"}, "alpha"),
        ({"alpha": 0.1, "risk": "dice"}, "risk"),
        ({"alpha": 0.1, "risk": 3}, "risk"),
        ({"alpha": 0.1, "bound": 0.0}, "bound"),
        ({"alpha": 0.1, "bound": 0.5}, "bound"),
        ({"alpha": 0.1, "tolerance": -1}, "tolerance"),
        ({"alpha": 0.1, "max_evaluations": 1}, "max_evaluations"),
    ],
)
def test_bad_settings_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        ConformalRiskControl(**kwargs)


def _masks(n=30):
    rng = np.random.default_rng(10)
    labels = rng.random((n, 4, 4)) < 0.4
    labels[:, 0, 0] = True
    return rng.random((n, 4, 4)), labels


def test_too_few_calibration_items_are_refused_with_the_count_needed():
    scores, labels = _masks(30)
    labels[8:] = False  # 8 images with foreground; alpha 0.1 needs 9
    with pytest.raises(ValueError, match=r"`labels` must hold at least 9 .* Received: 8 \(22"):
        ConformalRiskControl(0.1).fit(scores, labels)
    ConformalRiskControl(0.1).fit(scores[:9], np.ones((9, 4, 4)))  # 9 is enough
    with pytest.raises(ValueError, match="at least 19"):
        ConformalRiskControl(0.05).fit(scores[:18], labels[:18] | True)
    with pytest.raises(ValueError, match="at least 39"):  # bound 2: n >= 2 / 0.05 - 1
        ConformalRiskControl(0.05, bound=2.0).fit(scores, labels | True)
    with pytest.raises(ValueError, match="at least 9 calibration items"):
        ConformalRiskControl(0.1, risk=lambda s, y, t: np.zeros(len(s))).fit(scores[:5], labels[:5])


@pytest.mark.parametrize(
    ("change", "name"),
    [
        (lambda s, y: (s[:, :3], y), "scores"),
        (lambda s, y: (s, y[:20]), "labels"),
        (lambda s, y: (s, y * 2), "labels"),
        (lambda s, y: (s, y - 0.5), "labels"),
        (lambda s, y: (np.where(s > 0.9, np.nan, s), y), "scores"),
        (lambda s, y: (np.where(s > 0.9, np.inf, s), y), "scores"),
        (lambda s, y: (s * 3 - 1, y), "scores"),
        (lambda s, y: (s[:, 0, 0], y[:, 0, 0]), "scores"),
        (lambda s, y: (list(s), y), "scores"),
        (lambda s, y: (list(s), list(y)[:5]), "labels"),
        (lambda s, y: (list(s), [v[:2] for v in y]), "labels"),
    ],
)
def test_bad_mask_inputs_are_refused(change, name):
    scores, labels = change(*_masks())
    with pytest.raises(ValueError, match=f"`{name}`"):
        ConformalRiskControl(0.2).fit(scores, labels)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        (lambda s, y: (s[:, :10], y), "scores"),
        (lambda s, y: (s, y + 1), "labels"),
        (lambda s, y: (s + 1, y), "scores"),
        (lambda s, y: (list(s), list(y)[:3]), "labels"),
        (lambda s, y: (list(s), [v[:5] for v in y]), "labels"),
        (lambda s, y: (s[..., None, None], y[..., None, None]), "labels"),
    ],
)
def test_bad_series_inputs_are_refused(change, name):
    scores, labels = _random_series(np.random.default_rng(12), 30, 20, ties=False)
    scores, labels = change(scores, labels)
    with pytest.raises(ValueError, match=f"`{name}`"):
        ConformalRiskControl(0.2, risk="missed_events").fit(scores, labels)


def test_predict_refuses_scores_that_are_not_probabilities():
    crc = ConformalRiskControl.from_dict({"alpha": 0.1, "risk": "fnr", "threshold": 0.5})
    for bad in (np.array([0.2, 1.5]), np.array([np.nan]), [np.array([0.1]), np.array([-2.0])]):
        with pytest.raises(ValueError, match="`scores`"):
            crc.predict(bad)


@pytest.mark.parametrize(
    ("loss", "match"),
    [
        # Rises as more is flagged: a false-positive rate is not a risk to control this way.
        (lambda s, y, t: (s >= t).reshape(len(s), -1).mean(1), "never increase as more is"),
        # Monotone in the mean but not per item.
        (
            lambda s, y, t: np.where(np.arange(len(s)) % 2 == 0, 0.1 * t, 0.1 * (1 - t)),
            "never increase as more is flagged",
        ),
        (lambda s, y, t: np.zeros(3), "return 30 finite losses"),
        (lambda s, y, t: np.full(len(s), np.nan), "return 30 finite losses"),
        (lambda s, y, t: np.full(len(s), 1.5), r"losses in \[0, bound=1.0\]"),
        (lambda s, y, t: np.full(len(s), -0.1), r"losses in \[0, bound=1.0\]"),
        (lambda s, y, t: np.full(len(s), 0.5), "loss <= alpha=0.2 when everything is flagged"),
    ],
)
def test_bad_custom_losses_are_refused(loss, match):
    scores, labels = _masks()
    with pytest.raises(ValueError, match="`risk`") as info:
        ConformalRiskControl(0.2, risk=loss).fit(scores, labels)
    assert info.match(match)


@pytest.mark.parametrize(
    ("values", "risk", "name"),
    [
        ({"alpha": 0.1, "risk": "fnr", "colour": 1}, None, "values"),
        ({"risk": "fnr"}, None, "values"),
        ({"alpha": 0.1, "risk": "fnr", "type": "PlattScaling"}, None, "values"),
        ({"alpha": 0.1, "risk": "fnr", "threshold": 2.0}, None, "threshold"),
        ({"alpha": 0.1, "risk": "fnr"}, lambda s, y, t: 0, "risk"),
        ({"alpha": 0.1, "risk": "custom"}, "fnr", "risk"),
        ({"alpha": 2.0, "risk": "fnr"}, None, "alpha"),
    ],
)
def test_bad_dicts_are_refused(values, risk, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        ConformalRiskControl.from_dict(values, risk=risk)


def test_risk_needs_an_item_that_counts():
    crc = ConformalRiskControl.from_dict({"alpha": 0.1, "risk": "fnr", "threshold": 0.5})
    with pytest.raises(ValueError, match="`labels` holds no item that counts"):
        crc.risk(np.full((2, 3), 0.5), np.zeros((2, 3)))
