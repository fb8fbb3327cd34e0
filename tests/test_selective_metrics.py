"""Tests of risk-coverage (AURC), per-image Dice and per-lesion uncertainty.

References: hand computations, brute force over every ordering, scikit-learn
(``f1_score`` per image, ``roc_auc_score``) and ``scipy.ndimage`` directly.
"""

import doctest
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from sklearn.metrics import f1_score, roc_auc_score

from bayesseg import metrics
from bayesseg.metrics import detection, selective

# --------------------------------------------------------------- risk_coverage


def _aurc_for_order(risk, order):
    """Geifman et al.'s AURC for one ranking, written out as a loop."""
    kept, total = [], 0.0
    for k, i in enumerate(order, start=1):
        total += risk[i]
        kept.append(total / k)
    return np.array(kept), float(np.mean(kept))


def test_risk_coverage_hand_computed():
    risk = np.array([0.2, 0.0, 1.0, 0.5])
    uncertainty = np.array([0.3, 0.1, 0.9, 0.5])
    rc = metrics.risk_coverage(risk, uncertainty)
    # Least uncertain first: risks 0.0, 0.2, 0.5, 1.0.
    expected = [0.0, 0.2 / 2, 0.7 / 3, 1.7 / 4]
    np.testing.assert_allclose(rc.risk, expected)
    np.testing.assert_allclose(rc.coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(rc.thresholds, [0.1, 0.3, 0.5, 0.9])
    assert rc.aurc == pytest.approx(np.mean(expected))
    # This ranking is the oracle's: the risks come out sorted.
    assert rc.optimal_aurc == pytest.approx(rc.aurc)
    assert rc.excess_aurc == pytest.approx(0.0, abs=1e-15)
    assert rc.full_risk == rc.random_aurc == pytest.approx(0.425)
    # The worst ranking (most uncertain = least risky).
    worst = metrics.risk_coverage(risk, -uncertainty)
    worst_curve = [1.0, 1.5 / 2, 1.7 / 3, 1.7 / 4]
    np.testing.assert_allclose(worst.risk, worst_curve)
    assert worst.aurc == pytest.approx(np.mean(worst_curve))
    assert worst.excess_aurc == pytest.approx(np.mean(worst_curve) - np.mean(expected))
    d = worst.as_dict()
    assert d["aurc"] == worst.aurc and d["random_aurc"] == pytest.approx(0.425)
    assert d["risk"] == worst.risk.tolist()


def test_risk_coverage_matches_a_loop_without_ties():
    rng = np.random.default_rng(0)
    risk = rng.random(50)
    uncertainty = rng.normal(size=50)
    rc = metrics.risk_coverage(risk, uncertainty)
    curve, aurc = _aurc_for_order(risk, np.argsort(uncertainty))
    np.testing.assert_allclose(rc.risk, curve)
    assert rc.aurc == pytest.approx(aurc)
    _, oracle = _aurc_for_order(risk, np.argsort(risk))
    assert rc.optimal_aurc == pytest.approx(oracle)
    assert rc.excess_aurc == pytest.approx(aurc - oracle)
    # The oracle ordering is the uncertainty that reaches optimal_aurc.
    assert metrics.risk_coverage(risk, risk).aurc == pytest.approx(rc.optimal_aurc)
    assert metrics.risk_coverage(risk, risk).excess_aurc == pytest.approx(0.0, abs=1e-12)


def test_random_ordering_expected_aurc_is_the_mean_risk():
    risk = np.array([0.9, 0.1, 0.4, 0.0, 0.7])
    aurcs = [
        metrics.risk_coverage(risk, np.array(perm, dtype=float)).aurc
        for perm in itertools.permutations(range(5))
    ]
    assert np.mean(aurcs) == pytest.approx(risk.mean(), abs=1e-12)
    # All-tied uncertainties: exactly the random expectation, at every coverage.
    tied = metrics.risk_coverage(risk, np.zeros(5))
    np.testing.assert_allclose(tied.risk, np.full(5, risk.mean()), atol=1e-15)
    assert tied.aurc == pytest.approx(risk.mean(), abs=1e-15)


def test_ties_are_averaged_over_every_order_of_the_tied_items():
    risk = np.array([0.3, 1.0, 0.0, 0.6, 0.2, 0.8])
    uncertainty = np.array([0.5, 0.5, 0.1, 0.5, 0.9, 0.1])
    curves = []
    for tiebreak in itertools.permutations(range(6)):
        order = np.lexsort((np.array(tiebreak), uncertainty))
        curves.append(_aurc_for_order(risk, order)[0])
    expected = np.mean(curves, axis=0)
    rc = metrics.risk_coverage(risk, uncertainty)
    np.testing.assert_allclose(rc.risk, expected, atol=1e-12)
    assert rc.aurc == pytest.approx(expected.mean(), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 3)),
        min_size=1,
        max_size=12,
    ),
    st.randoms(use_true_random=False),
)
def test_risk_coverage_does_not_depend_on_input_order(pairs, random):
    risk = np.array([r / 4 for r, _ in pairs])
    uncertainty = np.array([float(u) for _, u in pairs])
    permutation = list(range(len(pairs)))
    random.shuffle(permutation)
    a = metrics.risk_coverage(risk, uncertainty)
    b = metrics.risk_coverage(risk[permutation], uncertainty[permutation])
    np.testing.assert_allclose(a.risk, b.risk, atol=1e-12)
    assert a.aurc == pytest.approx(b.aurc, abs=1e-12)
    assert a.optimal_aurc <= a.aurc + 1e-12
    assert a.risk[-1] == pytest.approx(risk.mean(), abs=1e-12)


def test_risk_coverage_on_per_image_dice():
    rng = np.random.default_rng(3)
    y = (rng.random((8, 12, 12)) < 0.2).astype("float32")
    noise = rng.random(8)  # image i is corrupted with probability noise[i]
    flip = rng.random(y.shape) < noise[:, None, None] * 0.5
    probs = np.where(flip, 1 - y, y) * 0.8 + 0.1
    dice = metrics.per_image_dice(y, probs)
    rc = metrics.risk_coverage(1 - dice, noise)
    order = np.argsort(noise)
    for k in range(1, 9):
        assert 1 - rc.risk[k - 1] == pytest.approx(dice[order[:k]].mean())
    assert rc.aurc < rc.random_aurc


def test_risk_coverage_argument_errors():
    with pytest.raises(ValueError, match="same shape"):
        metrics.risk_coverage(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="same shape"):
        metrics.risk_coverage(np.zeros((2, 3)), np.zeros(6))
    with pytest.raises(ValueError, match="Argument `risk` must be a non-empty"):
        metrics.risk_coverage(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="Argument `risk`"):
        metrics.risk_coverage(np.array([0.1, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match="Argument `uncertainty`"):
        metrics.risk_coverage(np.zeros(2), np.array([0.1, np.inf]))


# --------------------------------------------------------------- per_image_dice


@pytest.mark.parametrize("empty", [1.0, 0.0])
def test_per_image_dice_matches_sklearn_per_image(empty):
    rng = np.random.default_rng(1)
    y = (rng.random((6, 10, 10)) < 0.15).astype("float32")
    probs = np.clip(y * 0.6 + rng.random(y.shape) * 0.5, 0, 1)
    y[4] = 0  # no truth: foreground predicted, Dice 0
    y[5], probs[5] = 0, 0.1  # no truth and nothing predicted: `empty`
    for threshold in (0.5, 0.7):
        dice = metrics.per_image_dice(y[..., None], probs[..., None], threshold, empty)
        reference = [
            f1_score(
                y[i].ravel() >= 0.5,
                probs[i].ravel() >= threshold,
                zero_division=empty,
            )
            for i in range(len(y))
        ]
        np.testing.assert_allclose(dice, reference)
        assert dice[5] == empty
    # A sigmoid output with a channel axis against masks without one; volumes.
    np.testing.assert_allclose(
        metrics.per_image_dice(y, probs[..., None]), metrics.per_image_dice(y, probs)
    )
    volumes = metrics.per_image_dice(y.reshape(3, 2, 10, 10), probs.reshape(3, 2, 10, 10))
    pooled = [
        f1_score(y[2 * i : 2 * i + 2].ravel(), probs[2 * i : 2 * i + 2].ravel() >= 0.5)
        for i in range(3)
    ]
    np.testing.assert_allclose(volumes, pooled)


def test_per_image_dice_of_softmax_outputs():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=(5, 8, 8))
    labels[4] = 0
    probs = rng.dirichlet(np.ones(3), size=(5, 8, 8))
    probs[4] = [0.9, 0.05, 0.05]  # nothing predicted, nothing true: `empty`
    for threshold in (0.5, 0.8):
        reference = [
            f1_score(
                labels[i].ravel() != 0, 1 - probs[i, ..., 0].ravel() >= threshold, zero_division=1.0
            )
            for i in range(5)
        ]
        np.testing.assert_allclose(metrics.per_image_dice(labels, probs, threshold), reference)
        np.testing.assert_allclose(
            metrics.per_image_dice(labels[..., None], probs, threshold), reference
        )
    # Two softmax channels and one sigmoid channel give the same Dice.
    p1 = rng.random((3, 6, 6, 1))
    y = rng.random((3, 6, 6)) < 0.3
    np.testing.assert_allclose(
        metrics.per_image_dice(y, np.concatenate([1 - p1, p1], axis=-1)),
        metrics.per_image_dice(y, p1),
    )


def test_per_image_dice_argument_errors():
    y, p = np.zeros((2, 4, 4)), np.zeros((2, 4, 4))
    with pytest.raises(ValueError, match="Argument `threshold`"):
        metrics.per_image_dice(y, p, threshold=1.5)
    with pytest.raises(ValueError, match="Argument `threshold`"):
        metrics.per_image_dice(y, p, threshold=True)
    with pytest.raises(ValueError, match="Argument `empty`"):
        metrics.per_image_dice(y, p, empty=np.nan)
    with pytest.raises(ValueError, match="Argument `probs` must hold probabilities"):
        metrics.per_image_dice(y, p + 2.0)
    with pytest.raises(ValueError, match="same shape"):
        metrics.per_image_dice(y, p[:1])
    with pytest.raises(ValueError, match="same shape"):
        metrics.per_image_dice(np.zeros(4), np.zeros(4))


# ----------------------------------------------------------- lesion_uncertainty


def _hand_masks():
    """lesion_f1's hand-counted case (tests/test_metrics.py) and an uncertainty map."""
    truth = np.zeros((2, 16, 16))
    pred = np.zeros((2, 16, 16))
    truth[0, 1:4, 1:4] = 1  # lesion 1: 9 voxels, hit by a diagonal pair
    truth[0, 8:10, 8:10] = 1  # lesion 2: 4 voxels, matched by a blob (IoU 4/9)
    truth[0, 13:15, 1:3] = 1  # lesion 3: 4 voxels, missed
    pred[0, 1, 1] = pred[0, 2, 2] = 0.9
    pred[0, 8:11, 8:11] = 0.8
    pred[0, 13, 12] = 0.7
    pred[1, 5:7, 5:7] = 0.6
    truth[1, 0, 0] = 1  # lesion 1 of image 1: 1 voxel, missed
    uncertainty = np.random.default_rng(0).random((2, 16, 16))
    return truth, pred, uncertainty


def test_lesion_uncertainty_hand_built():
    truth, pred, u = _hand_masks()
    r = metrics.lesion_uncertainty(truth, pred, u, connectivity=1)
    assert r.num_lesions == 4
    assert r.image_index.tolist() == [0, 0, 0, 1]
    assert r.label.tolist() == [1, 2, 3, 1]
    assert r.size.tolist() == [9, 4, 4, 1]
    assert r.detected.tolist() == [True, True, False, False]
    expected = [u[0, 1:4, 1:4].mean(), u[0, 8:10, 8:10].mean(), u[0, 13:15, 1:3].mean(), u[1, 0, 0]]
    np.testing.assert_allclose(r.mean_uncertainty, expected)
    assert r.missed_auroc == pytest.approx(roc_auc_score([0, 0, 1, 1], expected))
    assert r.missed_mean_uncertainty == pytest.approx(np.mean(expected[2:]))
    assert r.detected_mean_uncertainty == pytest.approx(np.mean(expected[:2]))
    # Only the diagonal pair is above 0.85: lesion 2 is missed now.
    high = metrics.lesion_uncertainty(truth, pred, u, threshold=0.85)
    assert high.detected.tolist() == [True, False, False, False]


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"connectivity": 1}, {"threshold": 0.85}, {"min_size": 2}, {"min_size": 5}],
)
def test_lesion_uncertainty_detects_what_lesion_f1_detects(kwargs):
    truth, pred, u = _hand_masks()
    r = metrics.lesion_uncertainty(truth[..., None], pred[..., None], u[..., None], **kwargs)
    counts = metrics.lesion_f1(truth, pred, **kwargs)
    assert r.num_lesions == counts["true_lesions"]
    assert int(r.detected.sum()) == counts["detected"]


@pytest.mark.parametrize("shape, hit_rate", [((4, 24, 24), 0.1), ((2, 10, 12, 12), 0.03)])
def test_lesion_uncertainty_against_scipy_on_random_blobs(shape, hit_rate):
    rng = np.random.default_rng(5)
    truth = ndimage.binary_dilation(rng.random(shape) < 0.01, iterations=1)
    # A few lesion voxels predicted (some lesions missed), plus false specks.
    probs = np.where(rng.random(shape) < hit_rate, truth * 0.9, rng.random(shape) * 0.52)
    u = rng.random(shape)
    r = metrics.lesion_uncertainty(truth, probs, u)
    structure = ndimage.generate_binary_structure(len(shape) - 1, len(shape) - 1)
    means, detected = [], []
    for i in range(shape[0]):
        labels, n = ndimage.label(truth[i], structure)
        p_lab, n_pred = ndimage.label(probs[i] >= 0.5, structure)
        index = np.arange(1, n + 1)
        means += list(ndimage.mean(u[i], labels, index))
        # Matched: some predicted component has IoU >= 0.1 with the lesion (the
        # specks here are single voxels or lesion parts, so no pair conflicts).
        for j in index:
            ious = [
                ((labels == j) & (p_lab == k)).sum() / ((labels == j) | (p_lab == k)).sum()
                for k in range(1, n_pred + 1)
            ]
            detected.append(max(ious, default=0.0) >= 0.1)
    assert r.num_lesions == len(means) > 5
    np.testing.assert_allclose(r.mean_uncertainty, means)
    assert r.detected.tolist() == detected
    assert int(r.detected.sum()) == metrics.lesion_f1(truth, probs)["detected"]
    assert 0 < r.detected.sum() < r.num_lesions
    assert r.missed_auroc == pytest.approx(roc_auc_score(~r.detected, r.mean_uncertainty))


def test_lesion_uncertainty_nan_when_nothing_to_rank():
    truth, pred, u = _hand_masks()
    all_found = metrics.lesion_uncertainty(truth, np.maximum(pred, truth), u)
    assert all_found.detected.all() and np.isnan(all_found.missed_auroc)
    assert np.isnan(all_found.missed_mean_uncertainty)
    all_missed = metrics.lesion_uncertainty(truth, np.zeros_like(pred), u)
    assert not all_missed.detected.any() and np.isnan(all_missed.missed_auroc)
    assert np.isnan(all_missed.detected_mean_uncertainty)
    none = metrics.lesion_uncertainty(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))
    assert none.num_lesions == 0 and np.isnan(none.missed_auroc)
    assert none.mean_uncertainty.dtype == np.float64 and none.detected.dtype == bool


def test_lesion_uncertainty_argument_errors():
    truth, pred, u = _hand_masks()
    with pytest.raises(ValueError, match="`y_true` and `uncertainty` must have the same shape"):
        metrics.lesion_uncertainty(truth, pred, u[:1])
    with pytest.raises(ValueError, match="`y_true` and `probs` must have the same shape"):
        metrics.lesion_uncertainty(truth, pred[:1], u)
    bad = u.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="Argument `uncertainty` must hold finite"):
        metrics.lesion_uncertainty(truth, pred, bad)
    with pytest.raises(ValueError, match="Argument `connectivity`"):
        metrics.lesion_uncertainty(truth, pred, u, connectivity=3)
    with pytest.raises(ValueError, match="Argument `min_size`"):
        metrics.lesion_uncertainty(truth, pred, u, min_size=-1)
    with pytest.raises(ValueError, match="Argument `uncertainty`"):
        metrics.lesion_uncertainty(truth, pred, u[0])
    with pytest.raises(ValueError, match="Argument `y_true`"):
        metrics.lesion_uncertainty(truth[0], pred[0], u[0])


def test_docstring_examples():
    attempted = 0
    for module in (selective, detection):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0
        attempted += result.attempted
    assert attempted >= 10
