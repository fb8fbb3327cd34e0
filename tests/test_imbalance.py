"""Tests for bayesseg.imbalance against scikit-learn, closed forms and scipy."""

import doctest
import importlib.util
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize
from sklearn.utils.class_weight import compute_class_weight

from bayesseg import imbalance, losses

FREQUENCIES = (0.4, 0.3, 0.2, 0.08, 0.02)


# --------------------------------------------------------------------------
# count_classes
# --------------------------------------------------------------------------
def test_count_classes_sparse_one_hot_tensor_and_dataset_agree():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (6, 5, 5))
    expected = np.bincount(labels.ravel(), minlength=4).astype(float)
    one_hot = np.eye(4, dtype="float32")[labels]
    images = rng.normal(size=(6, 5, 5, 1)).astype("float32")
    xy = tf.data.Dataset.from_tensor_slices((images, one_hot)).batch(4)
    y_only = tf.data.Dataset.from_tensor_slices(labels).batch(4)
    for source, kwargs in (
        (labels, {}),
        (one_hot, {}),
        (one_hot, {"one_hot": True}),
        (tf.constant(labels), {}),
        (xy, {}),
        (y_only, {}),
    ):
        counts = imbalance.count_classes(source, num_classes=4, **kwargs)
        assert counts.dtype == np.float64
        np.testing.assert_array_equal(counts, expected)


def test_count_classes_binary_masks_and_ignore_index():
    mask = np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 255.0]])
    for num_classes in (1, 2):
        counts = imbalance.count_classes(mask, num_classes, ignore_index=255)
        np.testing.assert_array_equal(counts, [3.0, 2.0])
    # Trailing channel axis of a (B, H, W, 1) mask is fine for num_classes=1.
    np.testing.assert_array_equal(
        imbalance.count_classes(np.ones((2, 3, 3, 1)), num_classes=1), [0.0, 18.0]
    )
    # A sparse binary (N, 2) array: auto-detection would call it one-hot.
    pairs = np.array([[0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(imbalance.count_classes(pairs, 2, one_hot=False), [2.0, 4.0])


def test_count_classes_bad_labels():
    with pytest.raises(ValueError, match=r"labels.*\[0, 3\).*num_classes=3.*\[3, 7\]"):
        imbalance.count_classes(np.array([0, 3, 7, 1]), num_classes=3)
    with pytest.raises(ValueError, match=r"labels.*integers.*nan"):
        imbalance.count_classes(np.array([0.0, np.nan]), num_classes=2)
    with pytest.raises(ValueError, match=r"labels.*-1"):
        imbalance.count_classes(np.array([0, -1]), num_classes=2)
    with pytest.raises(ValueError, match=r"num_classes.*0"):
        imbalance.count_classes(np.array([0]), num_classes=0)
    with pytest.raises(ValueError, match=r"labels.*one-hot.*0.5"):
        imbalance.count_classes(np.full((2, 3), 0.5), num_classes=3, one_hot=True)
    with pytest.raises(ValueError, match=r"`one_hot` must be True, False or None"):
        imbalance.count_classes(np.zeros(2), num_classes=2, one_hot=1)
    with pytest.raises(ValueError) as info:
        imbalance.count_classes(np.array([0]), num_classes=0)
    assert (
        str(info.value) == "Argument `num_classes` must be an integer >= 1. Received: num_classes=0"
    )
    with pytest.raises(ValueError) as info:
        imbalance.count_classes(np.array([0, 3, 7, 1]), num_classes=3)
    assert str(info.value).startswith("Argument `labels` must hold values in [0, 3)")


# --------------------------------------------------------------------------
# class_weights
# --------------------------------------------------------------------------
def test_balanced_weights_equal_scikit_learn():
    rng = np.random.default_rng(1)
    labels = rng.choice(5, size=2000, p=FREQUENCIES)
    reference = compute_class_weight("balanced", classes=np.arange(5), y=labels)
    np.testing.assert_allclose(
        imbalance.class_weights(labels, num_classes=5), reference, rtol=1e-12
    )
    counts = imbalance.count_classes(labels, num_classes=5)
    np.testing.assert_allclose(imbalance.class_weights(counts), reference, rtol=1e-12)
    # With every class present the zero-count rule is never used: all agree.
    for zero_count in ("pseudo", "warn", "raise"):
        weights = imbalance.class_weights(counts, zero_count=zero_count)
        np.testing.assert_allclose(weights, reference, rtol=1e-12)


def test_inverse_count_weight_formula_for_three_classes():
    counts = np.array([370.0, 977.0, 795.0])
    expected = (1.0 / counts) * counts.sum() / 3
    np.testing.assert_allclose(imbalance.class_weights(counts), expected, rtol=1e-12)


def test_inverse_sqrt_effective_number_and_normalisation():
    counts = np.array([9000.0, 900.0, 100.0])
    total = counts.sum()
    np.testing.assert_allclose(
        imbalance.class_weights(counts, "inverse_sqrt"),
        np.sqrt(total / (3 * counts)),
        rtol=1e-12,
    )
    beta = 0.99
    raw = (1 - beta) / (1 - beta**counts)
    effective = imbalance.class_weights(counts, "effective_number", beta=beta)
    np.testing.assert_allclose(effective, raw * 3 / raw.sum(), rtol=1e-10)
    for method in ("balanced", "inverse_sqrt", "effective_number"):
        w = imbalance.class_weights(counts, method, normalize=True)
        np.testing.assert_allclose(np.sum(counts / total * w), 1.0, rtol=1e-12)


def test_zero_count_policy():
    with pytest.warns(UserWarning, match=r"Classes \[1\].*weight is set to 0"):
        w = imbalance.class_weights([10.0, 0.0, 30.0], zero_count="warn")
    np.testing.assert_allclose(w, [40 / 30, 0.0, 40 / 90])
    with pytest.raises(ValueError, match=r"counts_or_labels.*\[1\].*zero"):
        imbalance.class_weights([10.0, 0.0, 30.0], zero_count="raise")
    with pytest.raises(ValueError, match=r"counts_or_labels.*-2\.0"):
        imbalance.class_weights([10.0, -2.0])
    with pytest.raises(ValueError, match=r"counts_or_labels.*nan"):
        imbalance.class_weights([10.0, np.nan])
    with pytest.raises(ValueError, match=r"method.*'focal'"):
        imbalance.class_weights([1.0, 2.0], method="focal")
    with pytest.raises(ValueError, match=r"zero_count.*'ignore'"):
        imbalance.class_weights([1.0, 2.0], zero_count="ignore")


def test_pseudo_count_by_hand_for_an_absent_class():
    # Counts [10, 0, 30]: the absent class counts 1, so N' = 41 and C = 3.
    # balanced: w = N' / (C n'): [41/30, 41/3, 41/90] = [1.3667, 13.6667, 0.4556].
    with pytest.warns(UserWarning, match=r"Classes \[1\].*pseudo-count of 1"):
        w = imbalance.class_weights([10.0, 0.0, 30.0])
    np.testing.assert_allclose(w, [41 / 30, 41 / 3, 41 / 90], rtol=1e-12)
    assert np.all(w > 0)
    # The same as scikit-learn on the labels plus one element of the absent class.
    labels = np.repeat([0, 1, 2], [10, 1, 30])
    reference = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    np.testing.assert_allclose(w, reference, rtol=1e-12)
    # The other methods and normalize read the same pseudo-counts [10, 1, 30].
    with pytest.warns(UserWarning):
        root = imbalance.class_weights([10, 0, 30], "inverse_sqrt", normalize=True)
    raw = np.sqrt([41 / 30, 41 / 3, 41 / 90])
    np.testing.assert_allclose(root, raw / (np.array([10, 1, 30]) / 41 @ raw), rtol=1e-12)
    # From labels, streamed: class 2 of 3 never occurs.
    masks = np.array([0] * 6 + [1] * 2).reshape(4, 2)
    dataset = tf.data.Dataset.from_tensor_slices(masks).batch(3)
    with pytest.warns(UserWarning, match=r"Classes \[2\]"):
        w = imbalance.class_weights(dataset, num_classes=3)
    np.testing.assert_allclose(w, [9 / 18, 9 / 6, 9 / 3], rtol=1e-12)
    # Frequencies cannot say what one element is: a zero among them raises.
    with pytest.raises(ValueError, match=r"`counts_or_labels` must hold class counts"):
        imbalance.class_weights([0.25, 0.0, 0.75])


def test_pseudo_count_bias_matches_the_weights():
    counts = np.array([10.0, 0.0, 30.0])
    with pytest.warns(UserWarning):
        weights = imbalance.class_weights(counts)
    # Balanced weights on pseudo-counts make w_c n'_c equal: the bias is 0.
    bias = imbalance.initial_bias(counts, "softmax", class_weights=weights)
    np.testing.assert_allclose(bias, np.zeros(3), atol=1e-12)
    # Unweighted: softmax(b) = n' / N' = [10, 1, 30] / 41.
    bias = imbalance.initial_bias(counts, "softmax")
    np.testing.assert_allclose(tf.nn.softmax(bias).numpy(), [10 / 41, 1 / 41, 30 / 41])
    # Sigmoid, all negatives: [1000, 0] counts as [1000, 1], b = log(1 / 1000).
    np.testing.assert_allclose(imbalance.initial_bias([1000, 0]), [np.log(1 / 1000)])
    with pytest.warns(UserWarning):
        weights = imbalance.class_weights([1000, 0])
    np.testing.assert_allclose(weights, [1001 / 2000, 1001 / 2], rtol=1e-12)
    np.testing.assert_allclose(
        imbalance.initial_bias([1000, 0], class_weights=weights), [0.0], atol=1e-12
    )
    init = imbalance.PriorBias([1000, 0])
    assert init.get_config()["zero_count"] == "pseudo"
    np.testing.assert_allclose(init((1,)).numpy(), [np.log(1 / 1000)], rtol=1e-6)
    # The other options: "raise" keeps the old refusal; weight 0 is refused.
    with pytest.raises(ValueError, match=r"frequencies.*> 0"):
        imbalance.initial_bias(counts, "softmax", zero_count="raise")
    with pytest.raises(ValueError, match=r"frequencies.*p=0\.0"):
        imbalance.initial_bias([1000, 0], zero_count="raise")
    with pytest.raises(ValueError, match=r"class_weights.*zero_count='pseudo'"):
        imbalance.initial_bias(counts, "softmax", class_weights=[1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"zero_count.*'warn'"):
        imbalance.initial_bias(counts, "softmax", zero_count="warn")
    with pytest.raises(ValueError, match=r"frequencies.*counts.*p=0\.0"):
        imbalance.initial_bias(0.0)


def test_the_cli_rule_and_the_api_rule_agree():
    # bayesseg train raises counts to at least 1 before both computations.
    counts = np.array([5000.0, 0.0, 120.0, 0.0])
    raised = np.maximum(counts, 1.0)
    for method in ("balanced", "inverse_sqrt", "effective_number"):
        with pytest.warns(UserWarning):
            ours = imbalance.class_weights(counts, method)
        np.testing.assert_allclose(ours, imbalance.class_weights(raised, method), rtol=1e-12)
        np.testing.assert_allclose(
            imbalance.initial_bias(counts, "softmax", class_weights=ours),
            imbalance.initial_bias(raised, "softmax", class_weights=ours),
            rtol=1e-12,
        )


# --------------------------------------------------------------------------
# initial_bias, PriorBias
# --------------------------------------------------------------------------
def test_softmax_bias_reproduces_frequencies():
    bias = imbalance.initial_bias(FREQUENCIES, activation="softmax")
    np.testing.assert_allclose(np.mean(bias), 0.0, atol=1e-12)
    probs = tf.nn.softmax(tf.constant(bias, tf.float64)).numpy()
    np.testing.assert_allclose(probs, FREQUENCIES, atol=1e-6)
    # Biases found by trial and error are the exact ones plus about 2.0.
    trial = np.array([1.1, 0.81, 0.4, -0.51, -1.9])
    offset = trial - np.log(FREQUENCIES)
    assert abs(offset.mean() - 2.0) < 0.02 and offset.std() < 0.02


def test_sigmoid_bias_unweighted_and_weighted():
    np.testing.assert_allclose(imbalance.initial_bias(0.2), [np.log(0.25)])
    np.testing.assert_allclose(imbalance.initial_bias([80, 20]), [np.log(20 / 80)])
    # 1 positive per 59 negatives with weights (1, 59): the optimum is p = 0.5.
    np.testing.assert_allclose(
        imbalance.initial_bias([59, 1], class_weights=[1.0, 59.0]), [0.0], atol=1e-12
    )
    np.testing.assert_allclose(
        imbalance.initial_bias(0.1, class_weights=[2.0, 3.0]), [np.log(3 * 0.1 / 1.8)]
    )


def test_weighted_bias_minimises_weighted_loss_of_constant_predictor():
    weights = np.array([0.5, 1.0, 2.0, 6.0, 20.0])
    labels = np.repeat(np.arange(5), (np.array(FREQUENCIES) * 50).astype(int))
    loss = losses.WeightedCategoricalCrossentropy(weights, dtype="float64")

    def objective(bias):
        logits = np.broadcast_to(bias, (labels.size, 5)).astype("float64")
        return float(loss(labels, logits))

    found = optimize.minimize(objective, np.zeros(5), method="BFGS", tol=1e-10).x
    ours = imbalance.initial_bias(FREQUENCIES, "softmax", class_weights=weights)
    np.testing.assert_allclose(tf.nn.softmax(found).numpy(), tf.nn.softmax(ours).numpy(), atol=1e-5)
    assert objective(ours) <= objective(found) + 1e-9

    binary = np.array([0.0] * 59 + [1.0])
    wbce = losses.WeightedBinaryCrossentropy(class_weights=[1.0, 59.0], dtype="float64")
    found = optimize.minimize_scalar(
        lambda b: float(wbce(binary, np.full((60, 1), b))),
        bounds=(-5, 5),
        method="bounded",
        options={"xatol": 1e-8},
    ).x
    ours = imbalance.initial_bias([59, 1], class_weights=[1.0, 59.0])
    np.testing.assert_allclose(found, ours[0], atol=1e-4)


def test_prior_bias_initializer_and_serialisation():
    init = imbalance.PriorBias(FREQUENCIES, activation="softmax", class_weights=None)
    layer = keras.layers.Dense(5, bias_initializer=init)
    layer.build((None, 3))
    np.testing.assert_allclose(
        layer.bias.numpy(), imbalance.initial_bias(FREQUENCIES, "softmax"), rtol=1e-6
    )
    weighted = imbalance.PriorBias([59, 1], class_weights=[1.0, 59.0])
    for obj in (init, weighted):
        config = obj.get_config()
        assert imbalance.PriorBias.from_config(config).get_config() == config
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
        assert isinstance(restored, imbalance.PriorBias)
        assert restored.get_config() == config
    with pytest.raises(ValueError, match=r"shape.*\(5,\).*\(3,\)"):
        init((3,))


def test_initial_bias_bad_input():
    with pytest.raises(ValueError, match=r"class_weights.*nan"):
        imbalance.initial_bias(0.2, class_weights=[1.0, np.nan])
    with pytest.raises(
        ValueError, match=r"`class_weights` must .*5 finite numbers.*\[1\.0, 2\.0\]"
    ):
        imbalance.initial_bias(FREQUENCIES, "softmax", class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"frequencies.*0\.0"):
        imbalance.initial_bias([0.5, 0.0, 0.5], "softmax")
    with pytest.raises(ValueError, match=r"frequencies.*p=1\.0"):
        imbalance.initial_bias(1.0)
    with pytest.raises(ValueError, match=r"activation.*'tanh'"):
        imbalance.initial_bias(0.2, activation="tanh")


# --------------------------------------------------------------------------
# unweight_probabilities
# --------------------------------------------------------------------------
def test_unweight_probabilities_undoes_the_weighted_optimum():
    weights = np.array([0.5, 1.0, 2.0, 6.0, 20.0])
    bias = imbalance.initial_bias(FREQUENCIES, "softmax", class_weights=weights)
    shifted = tf.nn.softmax(tf.constant(np.tile(bias, (2, 3, 1)))).numpy()
    back = imbalance.unweight_probabilities(shifted, weights)
    assert isinstance(back, np.ndarray) and back.shape == (2, 3, 5)
    np.testing.assert_allclose(back[1, 2], FREQUENCIES, atol=1e-12)
    back_tensor = imbalance.unweight_probabilities(tf.constant(shifted), weights)
    assert tf.is_tensor(back_tensor)
    np.testing.assert_allclose(back_tensor.numpy(), back, atol=1e-12)

    p = 0.2
    q = tf.sigmoid(imbalance.initial_bias(p, class_weights=[1.0, 7.0])).numpy()
    for shape in ((4,), (4, 1), (2, 2, 1)):
        probs = np.full(shape, q[0], "float32")
        out = imbalance.unweight_probabilities(probs, [1.0, 7.0])
        assert out.shape == shape
        np.testing.assert_allclose(out, p, rtol=1e-5)
        out = imbalance.unweight_probabilities(tf.constant(probs), [1.0, 7.0])
        np.testing.assert_allclose(out.numpy(), p, rtol=1e-5)
    two_channel = np.array([[1 - q[0], q[0]]])
    np.testing.assert_allclose(
        imbalance.unweight_probabilities(two_channel, [1.0, 7.0]), [[1 - p, p]], 1e-6
    )
    with pytest.raises(ValueError, match=r"class_weights.*-1\.0"):
        imbalance.unweight_probabilities(two_channel, [1.0, -1.0])


# --------------------------------------------------------------------------
# Docs and the example
# --------------------------------------------------------------------------
def test_docstring_examples_run():
    attempted = 0
    for module in (imbalance, imbalance.counting, imbalance.weights, imbalance.bias):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0
        attempted += result.attempted
    assert attempted > 5


@pytest.mark.slow
def test_imbalance_recipes_example_reports_sane_metrics():
    path = pathlib.Path(__file__).parents[1] / "examples" / "imbalance_recipes.py"
    spec = importlib.util.spec_from_file_location("imbalance_recipes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(
        ["--num-images", "16", "--size", "24", "--epochs", "4", "--learning-rate", "0.02"]
    )
    assert set(results) == {"plain BCE", "weighted BCE", "focal", "hard negatives"}
    for metrics in results.values():
        assert set(metrics) == {"recall_pos", "f1_pos", "recall_neg", "f1_neg"}
        assert all(0.0 <= v <= 1.0 and np.isfinite(v) for v in metrics.values())
    assert results["weighted BCE"]["recall_pos"] >= results["plain BCE"]["recall_pos"]
    assert results["weighted BCE"]["recall_pos"] > 0.5
