"""Tests for bayesseg.losses against Keras' losses and closed forms."""

import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

from bayesseg import losses

RNG_SEED = 0


def _softplus(x):
    return np.logaddexp(0.0, x)


def _bce_reference(y, x):
    """Exact binary cross-entropy from logits in float64."""
    return y * _softplus(-x) + (1 - y) * _softplus(x)


def _log_softmax(x):
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def _grad(loss_fn, y_true, logits):
    logits = tf.convert_to_tensor(logits, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = loss_fn(y_true, logits)
        total = tf.reduce_sum(value)
    return value.numpy(), tape.gradient(total, logits).numpy()


# --------------------------------------------------------------------------
# Weighted cross-entropies
# --------------------------------------------------------------------------
def test_weighted_bce_equals_hand_written_pos_weight_formula():
    rng = np.random.default_rng(RNG_SEED)
    y = (rng.random((2, 5, 6)) < 1 / 60).astype("float32")
    y[0, 0, 0] = 1.0
    logits = rng.normal(0, 3, (2, 5, 6, 1)).astype("float32")
    expected = np.mean(_bce_reference(y, logits[..., 0]) * (y * 59 + 1))
    for labels in (y, y[..., None]):
        got = losses.WeightedBinaryCrossentropy(pos_weight=60.0)(labels, logits)
        np.testing.assert_allclose(float(got), expected, rtol=1e-6)
    by_class = losses.WeightedBinaryCrossentropy(class_weights=[1.0, 60.0])(y, logits)
    np.testing.assert_allclose(float(by_class), expected, rtol=1e-6)
    keras_bce = keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)(
        y[..., None], logits
    )
    np.testing.assert_allclose(np.mean(keras_bce.numpy() * (y * 59 + 1)), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "label_shape, logit_shape, out_shape",
    [
        ((4,), (4, 1), (4,)),
        ((4,), (4,), (4,)),
        ((4, 1), (4, 1), (4,)),
        ((2, 7), (2, 7), (2, 7)),
        ((2, 7), (2, 7, 1), (2, 7)),
        ((2, 3, 4), (2, 3, 4, 1), (2, 3, 4)),
        ((2, 3, 4, 1), (2, 3, 4, 1), (2, 3, 4)),
        ((2, 3, 4, 5), (2, 3, 4, 5, 1), (2, 3, 4, 5)),
    ],
)
def test_binary_per_element_contract(label_shape, logit_shape, out_shape):
    rng = np.random.default_rng(1)
    y = (rng.random(label_shape) < 0.3).astype("float32")
    x = rng.normal(size=logit_shape).astype("float32")
    for loss in (
        losses.WeightedBinaryCrossentropy(pos_weight=3.0),
        losses.BinaryFocalLoss(),
    ):
        per_element = loss.call(y, x)
        assert tuple(per_element.shape) == out_shape
        assert tuple(loss.element_mask(y).shape) == out_shape
        reduced = loss(y, x)
        np.testing.assert_allclose(float(reduced), per_element.numpy().mean(), 1e-6)


@pytest.mark.parametrize(
    "label_shape, logit_shape, out_shape",
    [
        ((4,), (4, 3), (4,)),
        ((2, 7), (2, 7, 3), (2, 7)),
        ((2, 3, 4), (2, 3, 4, 3), (2, 3, 4)),
        ((2, 3, 4, 1), (2, 3, 4, 3), (2, 3, 4)),
        ((2, 2, 3, 4), (2, 2, 3, 4, 3), (2, 2, 3, 4)),
    ],
)
def test_categorical_per_element_contract(label_shape, logit_shape, out_shape):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, label_shape)
    x = rng.normal(size=logit_shape).astype("float32")
    one_hot = np.eye(3, dtype="float32")[y.reshape(out_shape)]
    for cls in (losses.WeightedCategoricalCrossentropy, losses.CategoricalFocalLoss):
        sparse_out = cls(sparse=True).call(y, x)
        dense_out = cls(sparse=False).call(one_hot, x)
        auto_out = cls(sparse=None).call(one_hot, x)
        assert tuple(sparse_out.shape) == out_shape
        np.testing.assert_allclose(sparse_out.numpy(), dense_out.numpy(), rtol=1e-6)
        np.testing.assert_allclose(auto_out.numpy(), dense_out.numpy(), rtol=1e-6)


def test_weighted_cce_matches_weighted_keras_crossentropy():
    rng = np.random.default_rng(3)
    weights = [0.2, 1.0, 5.0, 30.0]
    y = rng.integers(0, 4, (2, 6, 5))
    x = rng.normal(0, 2, (2, 6, 5, 4)).astype("float32")
    keras_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)(
        y, x
    ).numpy()
    expected = keras_ce * np.asarray(weights)[y]
    got = losses.WeightedCategoricalCrossentropy(weights, reduction=None)(y, x)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    probs = tf.nn.softmax(x).numpy()
    from_probs = losses.WeightedCategoricalCrossentropy(weights, from_logits=False, reduction=None)(
        y, probs
    )
    np.testing.assert_allclose(from_probs.numpy(), expected, rtol=1e-4)


def test_ignore_index_gives_exact_zero_and_zero_gradient():
    y = np.array([[0, 2, 255, 1]])
    x = np.array([[[1.0, -2.0, 0.5]] * 4], dtype="float32")
    loss = losses.WeightedCategoricalCrossentropy([1.0, 2.0, 3.0], ignore_index=255)
    value, grad = _grad(loss.call, y, x)
    assert value[0, 2] == 0.0 and np.all(value[0, [0, 1, 3]] > 0)
    assert np.all(grad[0, 2] == 0.0)
    np.testing.assert_array_equal(loss.element_mask(y).numpy(), [[1, 1, 0, 1]])
    # One-hot labels: an all-zero row is an ignored element.
    one_hot = np.array([[[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0]]], "float32")
    dense = losses.WeightedCategoricalCrossentropy([1.0, 2.0, 3.0], sparse=False)
    np.testing.assert_allclose(dense.call(one_hot, x).numpy(), value, rtol=1e-6)
    np.testing.assert_array_equal(dense.element_mask(one_hot).numpy(), [[1, 1, 0, 1]])
    # Binary with ignore_index and the functional mask argument.
    yb = np.array([[0.0, 1.0, 255.0]])
    xb = np.array([[2.0, -1.0, 3.0]], "float32")
    wbce = losses.WeightedBinaryCrossentropy(pos_weight=5.0, ignore_index=255)
    value, grad = _grad(wbce.call, yb, xb)
    assert value[0, 2] == 0.0 and grad[0, 2] == 0.0
    masked = losses.weighted_binary_crossentropy(
        yb[:, :2], xb[:, :2], pos_weight=5.0, mask=np.array([[1, 0]])
    )
    assert masked.numpy()[0, 1] == 0.0


def test_keras_reductions_behave_as_in_keras():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, (2, 4, 4))
    y[0, 0, 0] = -1
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    per_element = losses.WeightedCategoricalCrossentropy(
        [1.0, 2.0, 0.5], ignore_index=-1, reduction=None
    )(y, x).numpy()
    assert per_element.shape == (2, 4, 4)
    for reduction, expected in (
        ("sum_over_batch_size", per_element.mean()),
        ("sum", per_element.sum()),
    ):
        loss = losses.WeightedCategoricalCrossentropy(
            [1.0, 2.0, 0.5], ignore_index=-1, reduction=reduction
        )
        np.testing.assert_allclose(float(loss(y, x)), expected, rtol=1e-6)
    # As for Keras' own losses, sample weights must broadcast to the output.
    sample_weight = np.array([1.0, 3.0])[:, None, None]
    weighted = losses.WeightedCategoricalCrossentropy([1.0, 2.0, 0.5], ignore_index=-1)(
        y, x, sample_weight=sample_weight
    )
    expected = (per_element * sample_weight).mean()
    np.testing.assert_allclose(float(weighted), expected, rtol=1e-6)


# --------------------------------------------------------------------------
# Focal losses against Keras
# --------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.7])
def test_binary_focal_matches_keras(gamma, alpha):
    rng = np.random.default_rng(5)
    y = (rng.random((3, 4, 5, 1)) < 0.3).astype("float64")
    x = rng.uniform(-10, 10, (3, 4, 5, 1))
    keras_loss = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=alpha is not None,
        alpha=0.25 if alpha is None else alpha,
        gamma=gamma,
        from_logits=True,
        reduction=None,
        dtype="float64",
    )
    expected = keras_loss(y, x).numpy()
    got = losses.BinaryFocalLoss(gamma, alpha, reduction=None, dtype="float64")(y, x)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25, [0.1, 0.5, 2.0, 1.0]])
def test_categorical_focal_matches_keras(gamma, alpha):
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 4, (3, 5, 4))
    y = np.eye(4)[labels]
    # Keras clips p >= 1e-7: keep logit gaps below ~16 so clipping never binds.
    x = rng.uniform(-5, 5, (3, 5, 4, 4))
    keras_loss = keras.losses.CategoricalFocalCrossentropy(
        alpha=1.0 if alpha is None else alpha,
        gamma=gamma,
        from_logits=True,
        reduction=None,
        dtype="float64",
    )
    expected = keras_loss(y, x).numpy()
    got = losses.CategoricalFocalLoss(gamma, alpha, sparse=False, reduction=None, dtype="float64")(
        y, x
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-9)
    sparse = losses.categorical_focal_loss(labels, x, gamma, alpha)
    np.testing.assert_allclose(sparse.numpy(), expected, rtol=1e-5, atol=1e-9)


def test_focal_stays_exact_beyond_keras_clipping():
    x = np.array([30.0, -30.0, 1e4, -1e4])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    for gamma in (0.0, 0.5, 2.0):
        got = losses.binary_focal_loss(y, x, gamma=gamma).numpy()
        # p^gamma * softplus(x) for y=0, (1-p)^gamma * softplus(-x) for y=1.
        p = expit(x)
        expected = np.where(y == 1, (1 - p) ** gamma, p**gamma) * _bce_reference(y, x)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    logits = np.array([[30.0, 0.0, -30.0], [1e4, -1e4, 0.0]])
    labels = np.array([2, 1])
    got = losses.categorical_focal_loss(labels, logits, gamma=2.0).numpy()
    np.testing.assert_allclose(got, [60.0, 2e4], rtol=1e-6)


# --------------------------------------------------------------------------
# Finite values and gradients (property tests)
# --------------------------------------------------------------------------
_ELEMENTWISE = {
    "wbce": lambda: losses.WeightedBinaryCrossentropy(pos_weight=60.0, ignore_index=2),
    "bfocal0": lambda: losses.BinaryFocalLoss(gamma=0.0, ignore_index=2),
    "bfocal05": lambda: losses.BinaryFocalLoss(gamma=0.5, alpha=0.25, ignore_index=2),
    "wcce": lambda: losses.WeightedCategoricalCrossentropy([1.0, 5.0], ignore_index=2),
    "cfocal0": lambda: losses.CategoricalFocalLoss(gamma=0.0, ignore_index=2),
    "cfocal05": lambda: losses.CategoricalFocalLoss(gamma=0.5, ignore_index=2),
    "hnm": lambda: losses.HardNegativeMining(
        losses.BinaryFocalLoss(gamma=0.5, ignore_index=2), min_negatives=2
    ),
}
_logit_values = st.sampled_from([-1e4, -50.0, -17.0, -1.0, 0.0, 1.0, 17.0, 50.0, 1e4])


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(_ELEMENTWISE)),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    label_mode=st.sampled_from(["random", "all_negative", "all_positive", "ignored"]),
    data=st.data(),
)
def test_losses_and_gradients_stay_finite(name, shape, label_mode, data):
    loss = _ELEMENTWISE[name]()
    size = int(np.prod(shape))
    values = data.draw(st.lists(_logit_values, min_size=2 * size, max_size=2 * size))
    if label_mode == "random":
        labels = data.draw(st.lists(st.integers(0, 2), min_size=size, max_size=size))
    else:
        fill = {"all_negative": 0, "all_positive": 1, "ignored": 2}[label_mode]
        labels = [fill] * size
    y = np.asarray(labels, "float32").reshape(shape)
    channels = 1 if getattr(loss, "binary", True) else 2
    x = np.asarray(values[: size * channels], "float32").reshape([*shape, channels])
    value, grad = _grad(loss.call, y, x)
    assert value.shape == tuple(shape)
    assert np.all(np.isfinite(value)) and np.all(value >= 0)
    assert np.all(np.isfinite(grad))
    ignored = y == 2
    assert np.all(value[ignored] == 0) and np.all(grad[ignored] == 0)
    reduced = loss(y, x)
    assert np.isfinite(float(reduced))


def test_focal_gamma_zero_and_half_saturated_gradients_finite():
    x = np.array([[1e4], [-1e4], [40.0], [-40.0]], "float32")
    for gamma in (0.0, 0.5):
        for y in (np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.0, 1.0, 0.0, 1.0])):
            value, grad = _grad(losses.BinaryFocalLoss(gamma=gamma).call, y, x)
            assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
        xc = np.array([[1e4, -1e4, 0.0], [0.0, 0.0, 1e4]], "float32")
        for yc in (np.array([0, 2]), np.array([1, 1])):
            value, grad = _grad(losses.CategoricalFocalLoss(gamma=gamma).call, yc, xc)
            assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))


# --------------------------------------------------------------------------
# Hard negative mining
# --------------------------------------------------------------------------
def test_hard_negative_mining_keeps_exactly_expected_gradients():
    # 2 positives -> k = 3 * 2 = 6 hardest negatives (largest logits for y=0).
    y = np.zeros((1, 12), "float32")
    y[0, [1, 7]] = 1.0
    x = np.array([[5.0, -1.0, 0.3, 4.0, -6.0, 2.0, 1.0, 0.5, 3.0, -2.0, -3.0, 0.1]], "float32")[
        ..., None
    ]
    loss = losses.HardNegativeMining(losses.WeightedBinaryCrossentropy(), 3.0, 0)
    value, grad = _grad(loss.call, y, x)
    expected = np.zeros(12, bool)
    expected[[1, 7]] = True  # positives
    expected[[0, 3, 8, 5, 6, 2]] = True  # negatives ranked by logit: 5,4,3,2,1,0.3
    np.testing.assert_array_equal(grad[0, :, 0] != 0, expected)
    np.testing.assert_array_equal(value[0] != 0, expected)
    base = losses.WeightedBinaryCrossentropy().call(y, x).numpy()
    np.testing.assert_allclose(value[0][expected], base[0][expected])
    np.testing.assert_array_equal(loss.element_mask(y, x).numpy()[0], expected.astype("float32"))


def test_hard_negative_mining_ties_min_negatives_and_per_example():
    # Equal negative losses: ties go to the lower flat index.
    y = np.zeros((2, 4), "float32")
    x = np.zeros((2, 4, 1), "float32")
    loss = losses.HardNegativeMining(
        losses.WeightedBinaryCrossentropy(), 3.0, min_negatives=3, reduction=None
    )
    kept = loss(y, x).numpy() != 0
    np.testing.assert_array_equal(kept, [[1, 1, 1, 0], [0, 0, 0, 0]])
    per_example = losses.HardNegativeMining(
        losses.WeightedBinaryCrossentropy(),
        3.0,
        min_negatives=1,
        per_example=True,
        reduction=None,
    )
    y2 = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], "float32")
    x2 = np.array([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]], "float32")
    kept = per_example(y2, x2).numpy() != 0
    np.testing.assert_array_equal(kept, [[1, 0, 1, 1, 1], [0, 0, 0, 0, 1]])


@pytest.mark.slow
def test_hard_negative_mining_multiclass_and_xla():
    rng = np.random.default_rng(7)
    y = np.zeros((2, 6, 6), "int32")
    y[0, 1, 1] = 2
    y[1, 3, 2:4] = 1
    y[1, 0, 0] = 255
    x = rng.normal(0, 2, (2, 6, 6, 3)).astype("float32")
    loss = losses.HardNegativeMining(
        losses.CategoricalFocalLoss(gamma=1.0, ignore_index=255),
        neg_pos_ratio=2.0,
        min_negatives=4,
        reduction=None,
    )
    eager = loss(y, x).numpy()
    assert np.count_nonzero(eager) == 3 + 6
    base = losses.CategoricalFocalLoss(gamma=1.0, ignore_index=255).call(y, x).numpy()
    negatives = np.where((y == 0), base, -np.inf).ravel()
    hardest = np.argsort(-negatives, kind="stable")[:6]
    expected = np.zeros(y.size, bool)
    expected[hardest] = True
    expected[((y != 0) & (y != 255)).ravel()] = True
    np.testing.assert_array_equal(eager.ravel() != 0, expected)

    @tf.function(jit_compile=True)
    def compiled(labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss.call(labels, logits)
            total = tf.reduce_sum(value)
        return value, tape.gradient(total, logits)

    xla_value, xla_grad = compiled(tf.constant(y), tf.constant(x))
    np.testing.assert_allclose(xla_value.numpy(), eager, rtol=1e-6)
    _, eager_grad = _grad(loss.call, y, x)
    np.testing.assert_allclose(xla_grad.numpy(), eager_grad, rtol=1e-5, atol=1e-7)
    assert np.all(xla_grad.numpy()[~expected.reshape(2, 6, 6)] == 0)


# --------------------------------------------------------------------------
# Dice / Tversky
# --------------------------------------------------------------------------
def test_dice_matches_keras_where_parameters_coincide():
    rng = np.random.default_rng(8)
    y = (rng.random((3, 5, 5, 1)) < 0.3).astype("float32")
    p = rng.random((3, 5, 5, 1)).astype("float32")
    ours = dict(smooth=0.0, from_logits=False)
    batch = losses.DiceLoss(aggregation="batch", **ours)(y, p)
    np.testing.assert_allclose(float(batch), float(keras.losses.Dice()(y, p)), 1e-5)
    per_image = losses.DiceLoss(reduction=None, **ours)(y, p)
    keras_per_image = keras.losses.Dice(axis=(1, 2, 3), reduction=None)(y, p)
    np.testing.assert_allclose(per_image.numpy(), keras_per_image.numpy(), 1e-5)
    # Multi-class: Keras per-class Dice over batch and space, mean over classes.
    labels = rng.integers(0, 3, (3, 5, 5))
    one_hot = np.eye(3, dtype="float32")[labels]
    probs = tf.nn.softmax(rng.normal(size=(3, 5, 5, 3))).numpy()
    keras_multi = keras.losses.Dice(axis=(0, 1, 2))(one_hot, probs)
    ours_multi = losses.DiceLoss(aggregation="batch", **ours)(labels, probs)
    np.testing.assert_allclose(float(ours_multi), float(keras_multi), rtol=1e-5)
    # Tversky: Keras' alpha multiplies false negatives, ours false positives.
    keras_tv = keras.losses.Tversky(alpha=0.7, beta=0.3)(y, p)
    ours_tv = losses.DiceLoss(aggregation="batch", alpha=0.3, beta=0.7, **ours)(y, p)
    np.testing.assert_allclose(float(ours_tv), float(keras_tv), rtol=1e-5)
    tp = np.sum(y * p)
    fp, fn = np.sum(p * (1 - y)), np.sum((1 - p) * y)
    np.testing.assert_allclose(float(ours_tv), 1 - tp / (tp + 0.3 * fp + 0.7 * fn), 1e-5)


def test_dice_empty_masks_background_and_ce_term():
    empty = np.zeros((2, 4, 4), "float32")
    far_negative = np.full((2, 4, 4, 1), -1e4, "float32")
    for smooth in (0.0, 1.0):
        value, grad = _grad(
            losses.DiceLoss(smooth=smooth, reduction=None).call, empty, far_negative
        )
        np.testing.assert_allclose(value, [0.0, 0.0], atol=1e-6)
        assert np.all(np.isfinite(grad))
    # Keras' Dice scores the same empty mask and empty prediction as 1.
    assert float(keras.losses.Dice()(empty[..., None], np.zeros_like(empty)[..., None])) == 1
    labels = np.array([[[0, 1], [2, 2]]])
    logits = np.log(np.eye(3)[labels] * 0.97 + 0.01).astype("float32")
    without_bg = losses.DiceLoss(include_background=False, smooth=0.0, reduction=None)
    probs = tf.nn.softmax(logits).numpy()
    one_hot = np.eye(3)[labels]
    scores = [
        2
        * np.sum(probs[..., c] * one_hot[..., c])
        / (np.sum(probs[..., c]) + np.sum(one_hot[..., c]))
        for c in (1, 2)
    ]
    np.testing.assert_allclose(without_bg(labels, logits).numpy(), [1 - np.mean(scores)], 1e-5)
    ce = losses.WeightedCategoricalCrossentropy([1.0, 2.0, 3.0])
    combined = losses.DiceLoss(ce_loss=ce, ce_weight=0.5, reduction=None)
    expected = losses.DiceLoss(reduction=None)(labels, logits).numpy() + 0.5 * np.mean(
        ce.call(labels, logits).numpy()
    )
    np.testing.assert_allclose(combined(labels, logits).numpy(), expected, rtol=1e-5)


# --------------------------------------------------------------------------
# Serialisation
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "loss",
    [
        losses.WeightedBinaryCrossentropy(pos_weight=60.0, ignore_index=255),
        losses.WeightedBinaryCrossentropy(class_weights=[0.5, 3.0], reduction="sum"),
        losses.WeightedCategoricalCrossentropy([1.0, 2.0, 3.0], sparse=False),
        losses.BinaryFocalLoss(gamma=0.5, alpha=0.3, from_logits=False),
        losses.CategoricalFocalLoss(gamma=1.0, alpha=[1.0, 2.0, 3.0]),
        losses.HardNegativeMining(
            losses.BinaryFocalLoss(gamma=1.0), neg_pos_ratio=2.0, per_example=True
        ),
        losses.DiceLoss(
            smooth=0.5,
            alpha=0.3,
            beta=0.7,
            aggregation="batch",
            ce_loss=losses.WeightedBinaryCrossentropy(pos_weight=4.0),
        ),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_get_config_round_trips(loss):
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == config


_RELEASED_CONFIG_KEYS = {
    "WeightedBinaryCrossentropy": ["from_logits", "ignore_index", "pos_weight", "class_weights"],
    "WeightedCategoricalCrossentropy": ["from_logits", "ignore_index", "sparse", "class_weights"],
    "BinaryFocalLoss": ["from_logits", "ignore_index", "gamma", "alpha"],
    "CategoricalFocalLoss": ["from_logits", "ignore_index", "sparse", "gamma", "alpha"],
    "HardNegativeMining": [
        "base_loss",
        "neg_pos_ratio",
        "min_negatives",
        "per_example",
        "background_class",
    ],
    "DiceLoss": [
        "smooth",
        "alpha",
        "beta",
        "include_background",
        "background_class",
        "aggregation",
        "from_logits",
        "sparse",
        "ignore_index",
        "ce_loss",
        "ce_weight",
    ],
}


@pytest.mark.parametrize("name", sorted(_RELEASED_CONFIG_KEYS))
def test_config_keys_and_registered_names_are_the_released_ones(name):
    cls = getattr(losses, name)
    loss = cls(losses.WeightedBinaryCrossentropy()) if name == "HardNegativeMining" else cls()
    assert list(loss.get_config()) == ["name", "reduction", *_RELEASED_CONFIG_KEYS[name]]
    assert keras.saving.get_registered_name(cls) == f"bayesseg>{name}"
    # Each configured argument is an attribute of the same name.
    for key in _RELEASED_CONFIG_KEYS[name]:
        assert hasattr(loss, key)


def test_model_with_loss_saves_and_loads(tmp_path):
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))
    model.compile(loss=losses.HardNegativeMining(losses.WeightedBinaryCrossentropy(pos_weight=5.0)))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.loss.get_config() == model.loss.get_config()


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------
def test_bad_input_raises_value_error_naming_the_argument():
    x = np.zeros((2, 3, 3), "float32")
    with pytest.raises(ValueError, match=r"y_true.*\[0, 3\).*3\.0"):
        losses.weighted_categorical_crossentropy(np.array([[0, 3, 1], [0, 0, 0]]), x)
    with pytest.raises(ValueError, match="y_true"):
        losses.weighted_binary_crossentropy(np.array([0.0, 2.0]), np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"`class_weights` must .* >= 0.*-1\.0"):
        losses.WeightedCategoricalCrossentropy([1.0, -1.0, 2.0])
    with pytest.raises(ValueError, match=r"class_weights.*nan"):
        losses.WeightedBinaryCrossentropy(class_weights=[1.0, float("nan")])
    with pytest.raises(
        ValueError, match=r"`class_weights` must .* 3 finite numbers.*3 classes.*\[1\.0, 2\.0\]"
    ):
        losses.WeightedCategoricalCrossentropy([1.0, 2.0])(np.zeros((2, 3)), x)
    with pytest.raises(
        ValueError, match=r"`alpha` must .* 3 finite numbers.*3 classes.*\[1\.0, 2\.0\]"
    ):
        losses.CategoricalFocalLoss(alpha=[1.0, 2.0])(np.zeros((2, 3)), x)
    with pytest.raises(ValueError, match=r"y_true.*\(2, 4\).*y_pred.*\(2, 3, 3\)"):
        losses.WeightedCategoricalCrossentropy()(np.zeros((2, 4)), x)
    with pytest.raises(ValueError, match=r"y_true.*\(2, 5\)"):
        losses.WeightedBinaryCrossentropy()(np.zeros((2, 5)), np.zeros((2, 4, 1)))
    with pytest.raises(ValueError, match="sparse=True"):
        losses.WeightedCategoricalCrossentropy()(np.zeros((2, 3, 3)), x)
    with pytest.raises(ValueError, match=r"pos_weight.*class_weights"):
        losses.WeightedBinaryCrossentropy(pos_weight=2.0, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"gamma.*-1"):
        losses.BinaryFocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match=r"neg_pos_ratio.*-2"):
        losses.HardNegativeMining(losses.BinaryFocalLoss(), neg_pos_ratio=-2.0)
    with pytest.raises(ValueError, match="base_loss"):
        losses.HardNegativeMining(keras.losses.BinaryCrossentropy())
    with pytest.raises(ValueError, match=r"aggregation.*'image'"):
        losses.DiceLoss(aggregation="image")
    with pytest.raises(ValueError, match=r"`sparse` must be True, False or None"):
        losses.CategoricalFocalLoss(sparse="yes")
    with pytest.raises(ValueError, match=r"`ignore_index` must be an integer or None"):
        losses.WeightedBinaryCrossentropy(ignore_index=2.5)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: losses.BinaryFocalLoss(gamma=-1.0),
            "Argument `gamma` must be a finite number >= 0. Received: gamma=-1.0",
        ),
        (
            lambda: losses.BinaryFocalLoss(alpha=1.5),
            "Argument `alpha` must be a finite number >= 0 and <= 1 or None. Received: alpha=1.5",
        ),
        (
            lambda: losses.HardNegativeMining(losses.BinaryFocalLoss(), min_negatives=-1),
            "Argument `min_negatives` must be an integer >= 0. Received: min_negatives=-1",
        ),
        (
            lambda: losses.WeightedCategoricalCrossentropy([1.0, -1.0]),
            "Argument `class_weights` must be a non-empty 1-D sequence of finite numbers >= 0. "
            "Received: class_weights=[1.0, -1.0]",
        ),
    ],
)
def test_argument_errors_use_the_package_message_style(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message


def test_docstring_examples_run():
    attempted = 0
    for module in (losses.crossentropy, losses.focal, losses.mining, losses.dice, losses._base):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted > 20
