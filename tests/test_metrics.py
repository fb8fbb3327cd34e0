"""Tests of bayesseg.metrics against scikit-learn and plain NumPy references."""

import keras
import numpy as np
import pytest
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
    pred[0, 1, 1] = pred[0, 2, 2] = 0.9  # diagonal neighbours
    pred[0, 9:12, 9:12] = 0.8
    pred[0, 13, 12] = 0.7  # false positive, 1 voxel
    # Image 1: no truth, one false positive of 4 voxels.
    pred[1, 5:7, 5:7] = 0.6
    out = metrics.lesion_f1(truth, pred, connectivity=1)
    assert out["true_lesions"] == 3 and out["pred_lesions"] == 5
    assert out["tp_pred"] == 3 and out["fp"] == 2
    assert out["detected"] == 2 and out["fn"] == 1
    assert out["precision"] == pytest.approx(3 / 5)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 * 0.6 * (2 / 3) / (0.6 + 2 / 3))
    # Full connectivity joins the diagonal pair; min_size drops the speck.
    out = metrics.lesion_f1(truth[..., None], pred[..., None], min_size=2)
    assert out["pred_lesions"] == 2 + 1 and out["tp_pred"] == 2
    # Thresholding.
    out = metrics.lesion_f1(truth, pred, threshold=0.85, connectivity=1)
    assert out["pred_lesions"] == 2 and out["detected"] == 1


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


def test_foreground_ece_sees_the_base_rate_model():
    rng = np.random.default_rng(0)
    y = (rng.random((8, 32, 32)) < 1 / 60).astype(float)
    base_rate = np.full(y.shape, y.mean())
    # Pixel-wise ECE calls the useless base-rate model calibrated...
    assert metrics.classwise_ece(y, base_rate)[1] < 1e-3
    # ...the foreground ECE does not.
    assert metrics.foreground_ece(y, base_rate) > 0.95
    # A good, calibrated-on-foreground model scores low.
    good = np.where(y > 0, 0.97, 0.001)
    good[(rng.random(y.shape) < 0.001) & (y == 0)] = 0.97
    assert metrics.foreground_ece(y, good) < 0.1
    # Reference: region = truth OR p >= 0.5, then the plain ECE loop.
    region = (y > 0) | (good >= 0.5)
    np.testing.assert_allclose(
        metrics.foreground_ece(y, good),
        _ece_loop(good[region], y[region], 15),
        atol=1e-12,
    )
    # Multi-class: foreground probability is 1 - p(background).
    labels, probs = _multiclass_sample(seed=3)
    p_fg = 1 - probs[:, 0]
    region = (labels != 0) | (p_fg >= 0.5)
    np.testing.assert_allclose(
        metrics.foreground_ece(labels, probs),
        _ece_loop(p_fg[region], (labels[region] != 0).astype(float), 15),
        atol=1e-12,
    )


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
