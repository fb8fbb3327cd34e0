"""Tests of bayesseg.metrics against scikit-learn and plain NumPy references."""

import doctest
import warnings

import keras
import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import (
    brier_score_loss,
    f1_score,
    jaccard_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from bayesseg import metrics


def _binary_batches(seed=0, batches=3, shape=(4, 16, 16, 1)):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batches):
        y = (rng.random(shape) < 0.1).astype("float32")
        logits = (rng.normal(size=shape) + 2.5 * (2 * y - 1) * rng.random(shape)).astype("float32")
        out.append((y, logits))
    return out


@pytest.mark.parametrize(
    ("cls", "reference"),
    [
        (metrics.Dice, f1_score),
        (metrics.F1, f1_score),
        (metrics.Recall, recall_score),
        (metrics.Precision, precision_score),
        (metrics.IoU, jaccard_score),
    ],
)
@pytest.mark.parametrize("class_id", [0, 1])
def test_binary_metrics_pool_over_batches(cls, reference, class_id):
    batches = _binary_batches()
    metric = cls(class_id=class_id)
    for y, logits in batches:
        metric.update_state(y, logits)
    y_all = np.concatenate([y for y, _ in batches]).ravel()
    pred_all = (np.concatenate([z for _, z in batches]).ravel() >= 0).astype(int)
    expected = reference(y_all, pred_all, pos_label=class_id)
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)
    # Pooled, not the mean of per-batch scores.
    per_batch = np.mean(
        [reference(y.ravel(), (z.ravel() >= 0).astype(int), pos_label=class_id) for y, z in batches]
    )
    assert abs(per_batch - expected) > 1e-6
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_probability_inputs_and_threshold():
    ((y, logits),) = _binary_batches(batches=1)
    probs = 1 / (1 + np.exp(-logits))
    metric = metrics.Recall(from_logits=False, threshold=0.3)
    metric.update_state(y, probs)
    expected = recall_score(y.ravel(), (probs.ravel() >= 0.3).astype(int))
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)
    # Same threshold on logits.
    metric = metrics.Recall(threshold=0.3)
    metric.update_state(y[..., 0], logits)  # labels without channel axis
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)


@pytest.mark.parametrize("label_format", ["sparse", "sparse1", "onehot"])
def test_multiclass_metrics_vs_sklearn(label_format):
    rng = np.random.default_rng(1)
    num_classes = 5
    metrics_by_name = {
        "dice": (metrics.Dice(class_id=3, num_classes=5), f1_score),
        "recall": (metrics.Recall(class_id=3), recall_score),
        "precision": (metrics.Precision(class_id=3), precision_score),
    }
    ys, preds = [], []
    for _ in range(3):
        labels = rng.integers(0, num_classes, size=(2, 8, 8))
        logits = rng.normal(size=(2, 8, 8, num_classes)).astype("float32")
        logits[..., 3] += 1.5 * (labels == 3)
        y = {
            "sparse": labels,
            "sparse1": labels[..., None],
            "onehot": np.eye(num_classes)[labels],
        }[label_format]
        for metric, _ in metrics_by_name.values():
            metric.update_state(y, logits)
        ys.append(labels.ravel())
        preds.append(logits.argmax(-1).ravel())
    y_all, p_all = np.concatenate(ys), np.concatenate(preds)
    for metric, reference in metrics_by_name.values():
        expected = reference(y_all == 3, p_all == 3)
        np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)


def test_sample_weight_and_compiled_model():
    ((y, logits),) = _binary_batches(batches=1, shape=(4, 8, 8, 1))
    weight = np.array([1.0, 0.0, 2.0, 1.0], "float32")
    metric = metrics.Dice()
    metric.update_state(y, logits, sample_weight=weight)
    w = np.broadcast_to(weight[:, None, None, None], y.shape).ravel()
    expected = f1_score(y.ravel(), (logits.ravel() >= 0).astype(int), sample_weight=w)
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)
    # Inside Keras evaluate (graph mode, several batches).
    x = logits
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Identity()])
    model.compile(loss="binary_crossentropy", metrics=[metrics.Dice(name="dice")])
    result = model.evaluate(x, y, batch_size=1, verbose=0, return_dict=True)
    expected = f1_score(y.ravel(), (logits.ravel() >= 0).astype(int))
    np.testing.assert_allclose(result["dice"], expected, rtol=1e-5)


def test_metric_serialisation_round_trip():
    metric = metrics.IoU(class_id=2, from_logits=False, threshold=0.4, num_classes=3)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is metrics.IoU
    assert restored.get_config() == metric.get_config()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"class_id": -1}, "class_id"),
        ({"class_id": 3, "num_classes": 3}, "class_id"),
        ({"num_classes": 1}, "num_classes"),
        ({"threshold": 1.0}, "threshold"),
    ],
)
def test_metric_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        metrics.Dice(**kwargs)


def test_lesion_f1_hand_counted():
    truth = np.zeros((2, 16, 16))
    pred = np.zeros((2, 16, 16))
    # Image 0: three true lesions; one hit by two predicted blobs, one by a
    # blob also covering background, one missed; plus one false blob.
    truth[0, 1:4, 1:4] = 1
    truth[0, 8:10, 8:10] = 1
    truth[0, 13:15, 1:3] = 1
    pred[0, 1, 1] = pred[0, 2, 2] = 0.9  # diagonal neighbours, IoU 1/9 each
    pred[0, 8:11, 8:11] = 0.8  # IoU 4/9
    pred[0, 13, 12] = 0.7  # false positive, 1 voxel
    # Image 1: no truth, one false positive of 4 voxels.
    pred[1, 5:7, 5:7] = 0.6
    out = metrics.lesion_f1(truth, pred, connectivity=1)
    # One to one: the first lesion is matched once, its second blob is a false positive.
    assert out == {
        "precision": pytest.approx(2 / 5),
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(2 * 0.4 * (2 / 3) / (0.4 + 2 / 3)),
        "true_lesions": 3,
        "pred_lesions": 5,
        "detected": 2,
        "fp": 3,
        "fn": 1,
    }
    # Full connectivity joins the diagonal pair (IoU 2/9); min_size drops the speck.
    out = metrics.lesion_f1(truth[..., None], pred[..., None], min_size=2)
    assert out["pred_lesions"] == 2 + 1 and out["detected"] == 2
    # Thresholding.
    out = metrics.lesion_f1(truth, pred, threshold=0.85, connectivity=1)
    assert out["pred_lesions"] == 2 and out["detected"] == 1
    # Overlap is not enough: a 9-voxel blob touching one voxel of a 4-voxel
    # lesion has IoU 1/12 and matches at 0.1, but not at 0.05.
    touch = np.zeros((1, 16, 16))
    touch[0, 9:12, 9:12] = 1
    assert metrics.lesion_f1(truth[:1, 8:12, 8:12], touch[:, 8:12, 8:12])["detected"] == 0
    loose = metrics.lesion_f1(truth[:1, 8:12, 8:12], touch[:, 8:12, 8:12], iou_threshold=0.05)
    assert loose["detected"] == 1


def test_lesion_f1_cannot_be_won_by_predicting_everything():
    truth = np.zeros((3, 50, 50))
    truth[:, 10:17, 10:17] = 1  # 2% foreground: IoU of the whole image 0.0196
    truth[:, 30:34, 30:34] = 1
    whole = metrics.lesion_f1(truth, np.ones_like(truth))
    assert (whole["f1"], whole["pred_lesions"], whole["detected"]) == (0.0, 3, 0)
    # One component merging two lesions matches at most one of them.
    merged = np.zeros((1, 8, 8))
    merged[0, 0:2, 0:2] = merged[0, 0:2, 3:5] = 1
    blob = np.zeros((1, 8, 8))
    blob[0, 0:2, 0:5] = 1  # IoU 4/10 with each
    out = metrics.lesion_f1(merged, blob)
    assert (out["detected"], out["fn"], out["precision"], out["recall"]) == (1, 1, 1.0, 0.5)
    with pytest.raises(ValueError, match="`iou_threshold`"):
        metrics.lesion_f1(merged, blob, iou_threshold=0.0)


def _matched_reference(truth, pred, iou_threshold, structure):
    """Matched pairs per image from IoUs computed pair by pair (an independent count)."""
    from scipy.optimize import linear_sum_assignment

    matched = 0
    for t_img, p_img in zip(truth, pred, strict=True):
        t_lab, n_true = ndimage.label(t_img, structure)
        p_lab, n_pred = ndimage.label(p_img, structure)
        iou = np.zeros((n_true, n_pred))
        for i in range(n_true):
            for j in range(n_pred):
                a, b = t_lab == i + 1, p_lab == j + 1
                iou[i, j] = (a & b).sum() / (a | b).sum()
        iou[iou < iou_threshold] = 0.0
        rows, cols = linear_sum_assignment(iou, maximize=True)
        matched += int((iou[rows, cols] > 0).sum())
    return matched


@pytest.mark.parametrize("iou_threshold", [0.1, 0.3, 0.6])
@pytest.mark.parametrize("seed", range(3))
def test_lesion_f1_matches_pairwise_ious(seed, iou_threshold):
    rng = np.random.default_rng(seed)
    truth = ndimage.binary_dilation(rng.random((3, 30, 30)) < 0.01, iterations=2)
    pred = ndimage.binary_dilation(
        np.roll(truth, rng.integers(-2, 3), axis=2) & (rng.random(truth.shape) < 0.3)
        | (rng.random(truth.shape) < 0.003),
        iterations=1,
    )
    structure = ndimage.generate_binary_structure(2, 2)
    out = metrics.lesion_f1(truth, pred, iou_threshold=iou_threshold)
    assert out["detected"] == _matched_reference(truth, pred, iou_threshold, structure)
    assert out["true_lesions"] > 5
    assert out["detected"] > 0 or iou_threshold > 0.5


def test_lesion_f1_3d_and_empty():
    truth = np.zeros((1, 6, 6, 6))
    truth[0, 1:3, 1:3, 1:3] = 1
    pred = truth.copy()
    pred[0, 4, 4, 4] = 1
    out = metrics.lesion_f1(truth, pred)
    assert (out["precision"], out["recall"]) == (0.5, 1.0)
    empty = metrics.lesion_f1(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))
    assert empty["f1"] == 1.0
    with pytest.raises(ValueError, match="`connectivity`"):
        metrics.lesion_f1(truth, pred, connectivity=4)
    with pytest.raises(ValueError, match="`y_true`"):
        metrics.lesion_f1(np.zeros((4, 4)), np.zeros((4, 4)))


# ------------------------------------------------------------------ calibration
def _ece_loop(confidence, outcome, num_bins):
    """Straightforward reference: loop over bins and elements."""
    total = 0.0
    n = len(confidence)
    for b in range(num_bins):
        lo, hi = b / num_bins, (b + 1) / num_bins
        members = [
            i
            for i in range(n)
            if (lo <= confidence[i] < hi) or (b == num_bins - 1 and confidence[i] == 1)
        ]
        if members:
            total += (
                len(members) / n * abs(np.mean(confidence[members]) - np.mean(outcome[members]))
            )
    return total


def _multiclass_sample(seed=0, n=400, c=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(c, p=p) for p in probs**1.5 / (probs**1.5).sum(1, keepdims=True)])
    return labels, probs


def test_classwise_and_top_label_ece_vs_loops():
    labels, probs = _multiclass_sample()
    got = metrics.classwise_ece(labels.reshape(20, 20), probs.reshape(20, 20, 4), 10)
    expected = [_ece_loop(probs[:, c], (labels == c).astype(float), 10) for c in range(4)]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    top = metrics.top_label_ece(labels[:, None], probs, num_bins=15)
    expected_top = _ece_loop(probs.max(1), (probs.argmax(1) == labels).astype(float), 15)
    np.testing.assert_allclose(top, expected_top, atol=1e-5)


def test_brier_and_nll_vs_references():
    labels, probs = _multiclass_sample(seed=1)
    one_hot = np.eye(4)[labels]
    expected = np.mean([np.sum((p - y) ** 2) for p, y in zip(probs, one_hot, strict=True)])
    np.testing.assert_allclose(metrics.brier_score(labels, probs), expected, rtol=1e-12)
    np.testing.assert_allclose(
        metrics.predictive_nll(labels, probs), log_loss(labels, probs), rtol=1e-9
    )
    rng = np.random.default_rng(2)
    y = (rng.random((3, 10, 10, 1)) < 0.2).astype(float)
    p = rng.random((3, 10, 10, 1))
    np.testing.assert_allclose(
        metrics.brier_score(y, p), brier_score_loss(y.ravel(), p.ravel()), rtol=1e-12
    )
    np.testing.assert_allclose(
        metrics.predictive_nll(y, p), log_loss(y.ravel(), p.ravel()), rtol=1e-9
    )
    # Saturated wrong predictions are finite.
    assert np.isfinite(metrics.predictive_nll(np.array([1.0]), np.array([0.0])))


def test_foreground_ece_region_is_chosen_by_prediction():
    rng = np.random.default_rng(0)
    y = (rng.random((8, 32, 32)) < 1 / 60).astype(float)
    base_rate = np.full(y.shape, y.mean())
    # The base-rate model (p = 1/60 everywhere) finds nothing, but it is
    # calibrated: E[y | p] = p. Calibration does not measure detection (Dice
    # and lesion F1 do). Its p_fg is below the 0.02 threshold, so the region
    # is empty (NaN) and the excluded report shows mean p = foreground rate.
    assert metrics.classwise_ece(y, base_rate)[1] < 1e-3
    summary = metrics.foreground_calibration(y, base_rate)
    assert np.isnan(summary.ece) and summary.region_size == 0
    assert summary.excluded_size == y.size
    assert summary.excluded_mean_probability == pytest.approx(summary.excluded_foreground_rate)
    assert summary.missed_foreground == int(y.sum())
    # With a lower threshold the region is every pixel: the pixel-wise ECE.
    assert metrics.foreground_ece(y, base_rate, threshold=0.01) < 1e-3
    np.testing.assert_allclose(
        metrics.foreground_ece(y, base_rate, threshold=0.0),
        metrics.classwise_ece(y, base_rate)[1],
        atol=1e-12,
    )
    # A good model, slightly overconfident on its false positives, scores low.
    good = np.where(y > 0, 0.97, 0.001)
    good[(rng.random(y.shape) < 0.001) & (y == 0)] = 0.97
    assert metrics.foreground_ece(y, good) < 0.1
    # Reference: region = p >= 0.02 (prediction only), then the plain ECE loop.
    region = good >= 0.02
    np.testing.assert_allclose(
        metrics.foreground_ece(y, good),
        _ece_loop(good[region], y[region], 15),
        atol=1e-12,
    )
    # Multi-class: foreground probability is 1 - p(background).
    labels, probs = _multiclass_sample(seed=3)
    p_fg = 1 - probs[:, 0]
    for threshold in (0.02, 0.5):
        region = p_fg >= threshold
        np.testing.assert_allclose(
            metrics.foreground_ece(labels, probs, threshold=threshold),
            _ece_loop(p_fg[region], (labels[region] != 0).astype(float), 15),
            atol=1e-12,
        )
    region = p_fg >= 0.02
    np.testing.assert_allclose(
        metrics.adaptive_ece(labels, probs, num_bins=7),
        _adaptive_ece_loop(p_fg[region], (labels[region] != 0).astype(float), 7),
        atol=1e-12,
    )


def _adaptive_ece_loop(confidence, outcome, num_bins):
    """Reference: the element of rank r (ascending) goes to bin r * B // n."""
    n = len(confidence)
    order = sorted(range(n), key=lambda i: confidence[i])
    total = 0.0
    for b in range(num_bins):
        members = [order[r] for r in range(n) if r * num_bins // n == b]
        if members:
            total += (
                len(members) / n * abs(np.mean(confidence[members]) - np.mean(outcome[members]))
            )
    return total


def test_ece_hand_computed_binary():
    y = np.array([1, 0, 0, 1, 0, 1, 1, 0])
    p = np.array([0.001, 0.01, 0.05, 0.3, 0.35, 0.9, 0.95, 0.6])
    # Region p >= 0.02: 0.05 0.3 0.35 0.9 0.95 0.6 with truth 0 1 0 1 1 0.
    # 2 bins: [0.05 0.3 0.35] mean 0.7/3 vs 1/3 -> 0.1; [0.6 0.9 0.95] mean
    # 2.45/3 vs 2/3 -> 0.15. ECE = (3 * 0.1 + 3 * 0.15) / 6 = 0.125.
    assert metrics.foreground_ece(y, p, num_bins=2) == pytest.approx(0.125, abs=1e-12)
    # 4 bins: [0.05]: 0.05; [0.3 0.35]: |0.325 - 0.5|; [0.6]: 0.6;
    # [0.9 0.95]: |0.925 - 1|. (0.05 + 2*0.175 + 0.6 + 2*0.075) / 6 = 1.15 / 6.
    assert metrics.foreground_ece(y, p, num_bins=4) == pytest.approx(1.15 / 6, abs=1e-12)
    # Equal mass, 3 bins of 2 sorted elements: {0.05 0.3} |0.175 - 0.5|,
    # {0.35 0.6} |0.475 - 0|, {0.9 0.95} |0.925 - 1|: (0.325 + 0.475 + 0.075) / 3.
    expected_adaptive = 0.875 / 3
    assert metrics.adaptive_ece(y, p, num_bins=3) == pytest.approx(expected_adaptive, abs=1e-12)
    assert metrics.foreground_ece(y[:, None], p[:, None], num_bins=3, adaptive=True) == (
        pytest.approx(expected_adaptive, abs=1e-12)
    )
    summary = metrics.foreground_calibration(y.reshape(2, 4), p.reshape(2, 4, 1), num_bins=2)
    assert summary.ece == pytest.approx(0.125, abs=1e-12)
    assert (summary.region_size, summary.excluded_size, summary.missed_foreground) == (6, 2, 1)
    assert summary.region_fraction == 0.75
    # Excluded: p 0.001 (foreground) and 0.01 (background).
    assert summary.excluded_mean_probability == pytest.approx(0.0055, abs=1e-15)
    assert summary.excluded_foreground_rate == 0.5
    # Region p 0.05 0.3 0.35 0.6 0.9 0.95 (sum 3.15) holding 3 foreground.
    assert summary.region_mean_probability == pytest.approx(3.15 / 6, abs=1e-15)
    assert summary.region_foreground_rate == 0.5
    assert (summary.threshold, summary.num_bins, summary.adaptive) == (0.02, 2, False)
    assert summary.as_dict()["ece"] == summary.ece
    # Pixel-wise, one-vs-rest, 2 bins on all 8 elements. Foreground:
    # [0.001 0.01 0.05 0.3 0.35] sum 0.711 vs 2 foreground, [0.9 0.95 0.6]
    # sum 2.45 vs 2: (1.289 + 0.45) / 8. The background column mirrors it.
    np.testing.assert_allclose(metrics.classwise_ece(y, p, 2), [1.739 / 8] * 2, atol=1e-12)
    # Top label, 2 bins: confidences max(p, 1 - p) = 0.999 0.99 0.95 0.7 0.65
    # 0.9 0.95 0.6 (all in [0.5, 1]), correct 0 1 1 0 1 1 1 0:
    # |6.739 - 5| / 8.
    assert metrics.top_label_ece(y, p, 2) == pytest.approx(1.739 / 8, abs=1e-12)


def test_ece_hand_computed_multiclass():
    probs = np.array(
        [
            [0.99, 0.005, 0.005],
            [0.97, 0.02, 0.01],
            [0.2, 0.5, 0.3],
            [0.6, 0.3, 0.1],
            [0.995, 0.004, 0.001],
        ]
    )
    labels = np.array([0, 1, 2, 0, 2])
    # p_fg = 1 - p_0 = 0.01 0.03 0.8 0.4 0.005; region (>= 0.02): 0.03 (fg),
    # 0.8 (fg), 0.4 (bg). 2 bins: {0.03 0.4} |0.215 - 0.5| * 2/3 + {0.8} 0.2 / 3.
    summary = metrics.foreground_calibration(labels, probs, num_bins=2)
    assert summary.ece == pytest.approx(0.77 / 3, abs=1e-12)
    assert (summary.region_size, summary.excluded_size, summary.missed_foreground) == (3, 2, 1)
    assert summary.region_fraction == pytest.approx(0.6)
    assert summary.excluded_mean_probability == pytest.approx(0.0075, abs=1e-12)
    assert summary.excluded_foreground_rate == 0.5
    # Equal mass, 3 bins of one element: (0.97 + 0.4 + 0.2) / 3.
    assert metrics.adaptive_ece(labels, probs, num_bins=3) == pytest.approx(1.57 / 3, abs=1e-12)
    # One-vs-rest, 2 bins. Class 0: {0.2} 0.2, {0.99 0.97 0.6 0.995} |3.555 - 2|;
    # class 1: {0.005 0.02 0.3 0.004} |0.329 - 1|, {0.5} 0.5;
    # class 2: all in bin 0, |0.416 - 2|.
    np.testing.assert_allclose(
        metrics.classwise_ece(labels[:, None], probs, 2),
        [1.755 / 5, 1.171 / 5, 1.584 / 5],
        atol=1e-12,
    )
    # Top label: confidences 0.99 0.97 0.5 0.6 0.995, all in [0.5, 1];
    # predicted 0 0 1 0 0, correct 1 0 0 1 0: |4.055 - 2| / 5.
    assert metrics.top_label_ece(labels, probs, 2) == pytest.approx(2.055 / 5, abs=1e-12)


def test_foreground_region_empty_and_bad_threshold():
    y = np.array([[0.0, 1.0], [0.0, 0.0]])
    p = np.array([[0.001, 0.015], [0.0, 0.005]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning for the empty region
        summary = metrics.foreground_calibration(y, p)
        assert np.isnan(metrics.foreground_ece(y, p))
        assert np.isnan(metrics.adaptive_ece(y, p))
    assert np.isnan(summary.ece)
    assert np.isnan(summary.region_mean_probability) and np.isnan(summary.region_foreground_rate)
    assert (summary.region_size, summary.region_fraction, summary.excluded_size) == (0, 0.0, 4)
    assert summary.excluded_mean_probability == pytest.approx(0.021 / 4)
    assert summary.excluded_foreground_rate == 0.25 and summary.missed_foreground == 1
    # threshold 0: every element is in the region; nothing is excluded.
    full = metrics.foreground_calibration(y, p, threshold=0.0)
    assert (full.region_size, full.region_fraction, full.excluded_size) == (4, 1.0, 0)
    assert np.isnan(full.excluded_mean_probability) and np.isnan(full.excluded_foreground_rate)
    assert full.ece == pytest.approx(abs(0.021 - 1) / 4)
    # One bin holds everything, so the ECE is the absolute region shift.
    shift = full.region_foreground_rate - full.region_mean_probability
    assert full.ece == pytest.approx(abs(shift))
    for bad in (1.0, -0.1, "0.1", True):
        with pytest.raises(ValueError, match="`threshold`"):
            metrics.foreground_ece(y, p, threshold=bad)
    with pytest.raises(ValueError, match="`num_bins`"):
        metrics.adaptive_ece(y, p, num_bins=0)


def _calibrated_sample(n, num_classes, seed=0):
    """Imbalanced predictions and labels drawn from them, plus an overconfident copy.

    95% of the elements have a foreground probability log-uniform in
    [0.001, 0.01], 5% one spread over (0, 1) (Beta(0.7, 0.7)); for C > 2
    classes it is split over the foreground classes by a Dirichlet(1) draw.
    Labels are drawn from the probabilities (calibrated by construction).
    The overconfident predictor multiplies the logits by 2.
    """
    rng = np.random.default_rng(seed)
    p_fg = np.exp(rng.uniform(np.log(1e-3), np.log(1e-2), n))
    spread = rng.random(n) < 0.05
    p_fg[spread] = rng.beta(0.7, 0.7, spread.sum())
    if num_classes == 2:
        labels = (rng.random(n) < p_fg).astype(float)
        overconfident = 1 / (1 + np.exp(-2 * (np.log(p_fg) - np.log1p(-p_fg))))
        return labels, p_fg, overconfident
    split = rng.dirichlet(np.ones(num_classes - 1), n)
    probs = np.concatenate([1 - p_fg[:, None], p_fg[:, None] * split], axis=1)
    cdf = np.cumsum(probs, axis=1)[:, :-1]
    labels = (rng.random(n)[:, None] >= cdf).sum(axis=1)
    logits = 2 * np.log(probs)
    logits -= logits.max(axis=1, keepdims=True)
    overconfident = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probs, overconfident


def _truth_selected_ece(y, p_fg, num_bins=15):
    """The old, biased definition: region = truth OR p_fg >= 0.5."""
    region = (y > 0) | (p_fg >= 0.5)
    c, o = p_fg[region], (y[region] > 0).astype(float)
    index = np.minimum((c * num_bins).astype(int), num_bins - 1)
    gaps = np.bincount(index, c, num_bins) - np.bincount(index, o, num_bins)
    return np.abs(gaps).sum() / c.size


@pytest.mark.parametrize("num_classes", [2, 4])
def test_calibrated_predictor_scores_near_zero(num_classes):
    labels, probs, overconfident = _calibrated_sample(1_000_000, num_classes)
    scores = {
        "foreground": metrics.foreground_ece(labels, probs),
        "adaptive": metrics.adaptive_ece(labels, probs),
        "classwise": metrics.classwise_ece(labels, probs).max(),
        "top_label": metrics.top_label_ece(labels, probs),
    }
    for name, score in scores.items():
        assert 0 <= score <= 0.01, (name, score)
    summary = metrics.foreground_calibration(labels, probs)
    assert 40_000 < summary.region_size < 55_000  # ~5% of 1e6 pixels
    # The excluded pixels are calibrated too: mean p = foreground rate (to
    # within ~4 standard errors of a rate near 0.004 on 950k pixels).
    assert abs(summary.excluded_mean_probability - summary.excluded_foreground_rate) < 3e-4
    # Selecting by the true label (the old definition) calls it miscalibrated.
    p_fg = probs if num_classes == 2 else 1 - probs[:, 0]
    assert _truth_selected_ece(labels, p_fg) > 0.15
    # Logits times 2: the foreground ECEs see it; pixel-wise averages dilute it.
    assert metrics.foreground_ece(labels, overconfident) >= 0.05
    assert metrics.adaptive_ece(labels, overconfident) >= 0.05
    assert metrics.foreground_ece(labels, overconfident, adaptive=True) >= 0.05


def _tfp_top_label_ece(labels, probs, num_bins=15):
    import tensorflow as tf
    import tensorflow_probability as tfp

    # tfp takes logits (it applies a softmax, so log-probabilities give back
    # the probabilities) and integer labels; equal-width bins of [0, 1] on the
    # probability of the argmax class.
    logits = np.log(np.clip(probs, 1e-30, 1.0))
    return float(
        tfp.stats.expected_calibration_error(
            num_bins,
            logits=tf.constant(logits, tf.float32),
            labels_true=tf.constant(labels, tf.int32),
        )
    )


def test_top_label_ece_matches_tfp():
    rng = np.random.default_rng(11)
    n = 1_000_000
    logits = rng.normal(size=(n, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = (rng.random(n)[:, None] >= np.cumsum(probs, axis=1)[:, :-1]).sum(axis=1)
    ours = metrics.top_label_ece(labels, probs)
    np.testing.assert_allclose(ours, _tfp_top_label_ece(labels, probs), atol=2e-5)
    # Binary inputs are the two columns (1 - p, p).
    p = rng.random(n)
    y = (rng.random(n) < p**1.2).astype(float)
    np.testing.assert_allclose(
        metrics.top_label_ece(y, p),
        _tfp_top_label_ece(y.astype(int), np.stack([1 - p, p], axis=1)),
        atol=2e-5,
    )
    # On an imbalanced set the top-label bin near 1 holds ~1e6 elements and
    # tfp's float32 sums drift by ~3e-3; the float64 result equals an
    # independent float64 reference.
    labels, p_fg, _ = _calibrated_sample(1_000_000, 2, seed=5)
    probs = np.stack([1 - p_fg, p_fg], axis=1)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    index = np.minimum(np.floor(confidence * 15), 14)
    reference = sum(
        abs(confidence[index == b].sum() - correct[index == b].sum()) for b in range(15)
    ) / len(labels)
    np.testing.assert_allclose(metrics.top_label_ece(labels, p_fg), reference, atol=1e-12)


def test_ece_noise_floor():
    labels, probs, overconfident = _calibrated_sample(1_000_000, 2, seed=7)
    floor = metrics.ece_noise_floor(probs)  # foreground ECE, 20 draws
    observed = metrics.foreground_ece(labels, probs)
    assert 0.002 < floor < 0.01
    assert floor / 3 < observed < 3 * floor  # calibrated: of the order of the floor
    assert metrics.foreground_ece(labels, overconfident) > 10 * floor
    # 1/sqrt(n): a quarter of the elements doubles the floor. Over 12 seeds
    # the ratio was 0.51 +- 0.03; here it is 0.57.
    small = metrics.ece_noise_floor(probs[:250_000], seed=1)
    assert 0.38 < floor / small < 0.62
    # Adaptive ECE and keyword arguments are passed through.
    adaptive_floor = metrics.ece_noise_floor(probs, metrics.adaptive_ece, num_draws=5, num_bins=10)
    assert 0.002 < adaptive_floor < 0.01
    # Multi-class draws are Categorical(p); array-valued ECEs give a median per entry.
    rows = np.tile([0.2, 0.3, 0.5], (100_000, 1))
    freq = metrics.ece_noise_floor(
        rows, lambda y, p: np.bincount(y.ravel(), minlength=3) / y.size, num_draws=3
    )
    np.testing.assert_allclose(freq, [0.2, 0.3, 0.5], atol=0.01)
    labels4, probs4, _ = _calibrated_sample(200_000, 4, seed=8)
    floor4 = metrics.ece_noise_floor(probs4, metrics.classwise_ece, num_draws=5)
    assert floor4.shape == (4,) and np.all(floor4 < 0.01)
    # Certain predictions leave no room for chance.
    assert metrics.ece_noise_floor(np.eye(3)[[0, 2, 1, 1]], metrics.top_label_ece) == 0.0
    assert metrics.ece_noise_floor(np.array([0.0, 1.0, 1.0]), threshold=0.0) == 0.0
    for kwargs, name in (
        ({"num_draws": 0}, "num_draws"),
        ({"ece_fn": "foreground"}, "ece_fn"),
        ({"multiclass": True}, "multiclass"),
    ):
        with pytest.raises(ValueError, match=f"`{name}`"):
            metrics.ece_noise_floor(np.array([0.1, 0.5]), **kwargs)
    with pytest.raises(ValueError, match="`probs`"):
        metrics.ece_noise_floor(np.array([0.1, 1.5]))


def test_docstring_examples():
    attempted = 0
    for module in (
        metrics,
        metrics.calibration,
        metrics.confusion,
        metrics.detection,
        metrics.scores,
    ):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0
        attempted += result.attempted
    assert attempted > 20


def test_reliability_curve():
    labels, probs = _multiclass_sample(seed=4)
    conf, acc, counts = metrics.reliability_curve(labels, probs, num_bins=5)
    assert counts.sum() == len(labels)
    top, correct = probs.max(1), probs.argmax(1) == labels
    for b in range(5):
        members = (top >= b / 5) & ((top < (b + 1) / 5) | (b == 4))
        assert counts[b] == members.sum()
        if members.any():
            np.testing.assert_allclose(conf[b], top[members].mean())
            np.testing.assert_allclose(acc[b], correct[members].mean())
        else:
            assert np.isnan(conf[b]) and np.isnan(acc[b])


def test_uncertainty_auroc_vs_sklearn():
    rng = np.random.default_rng(5)
    errors = rng.random((4, 16, 16)) < 0.1
    uncertainty = rng.random((4, 16, 16)) + 0.5 * errors
    uncertainty[0, :4] = 0.25  # ties
    np.testing.assert_allclose(
        metrics.uncertainty_auroc(errors, uncertainty),
        roc_auc_score(errors.ravel(), uncertainty.ravel()),
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match="`errors_mask`"):
        metrics.uncertainty_auroc(np.zeros(5), np.arange(5.0))


def test_calibration_bad_inputs():
    with pytest.raises(ValueError, match="`num_bins`"):
        metrics.classwise_ece(np.array([0, 1]), np.array([0.1, 0.9]), num_bins=0)
    with pytest.raises(ValueError, match="`probs`"):
        metrics.brier_score(np.array([0, 1]), np.array([-2.0, 3.0]))
    with pytest.raises(ValueError, match="`y_true`"):
        metrics.brier_score(np.array([0, 5]), np.array([[0.5, 0.5], [0.1, 0.9]]))


@pytest.mark.parametrize("iou_threshold", [0.1, 0.3])
def test_lesion_chance_equals_scoring_the_whole_image(iou_threshold):
    rng = np.random.default_rng(4)
    truth = ndimage.binary_dilation(rng.random((6, 20, 20)) < 0.01, iterations=2)
    truth[0, :9, :9] = True  # 81 + of 400 voxels: matched at 0.1, not at 0.3
    truth[1] = False  # an image without lesions still predicts one component
    chance = metrics.lesion_chance(truth[..., None], iou_threshold=iou_threshold)
    whole = metrics.lesion_f1(truth, np.ones(truth.shape), iou_threshold=iou_threshold)
    assert chance["whole_image"] == whole
    assert whole["pred_lesions"] == 6
    assert whole["detected"] == (1 if iou_threshold == 0.1 else 0)
    r = truth.mean()
    assert chance["foreground_fraction"] == pytest.approx(r)
    # Per voxel, the all-foreground Dice is 2r / (1 + r): sklearn's F1 on flattened masks.
    assert chance["voxel_f1_flag_all"] == pytest.approx(
        f1_score(truth.ravel(), np.ones(truth.size, bool))
    )
