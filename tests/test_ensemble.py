"""Deep ensembles (bs.models.DeepEnsemble, predict_mc and fit_calibration over
members) and per-image uncertainty scores (bs.uncertainty.image_scores)."""

import math

import keras
import numpy as np
import pytest

import bayesseg as bs
from bayesseg import layers as bl
from bayesseg.models import ensemble as ensemble_module
from bayesseg.uncertainty import MCPrediction, _members, atypicality, image_scores, predict_mc

SIZE = 8


def _plain(channels=1, seed=0, dropout=0.0):
    """A small deterministic (or MC-dropout) convolutional model of logits."""
    init = keras.initializers.GlorotNormal(seed=seed)
    layers = [
        keras.Input((SIZE, SIZE, 2)),
        keras.layers.Conv2D(6, 3, padding="same", activation="relu", kernel_initializer=init),
    ]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Conv2D(channels, 3, padding="same", kernel_initializer=init))
    return keras.Sequential(layers)


def _bayesian(channels=1, seed=0):
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 2)),
            bl.Conv2DFlipout(6, 3, padding="same", activation="relu", seed=seed),
            bl.Conv2DFlipout(channels, 3, padding="same", posterior_scale_init=0.3, seed=seed + 1),
        ]
    )


def _x(n=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, SIZE, SIZE, 2)).astype("float32")


def _probs(logits):
    """Class probabilities (..., K>=2) from sigmoid (1 channel) or softmax logits, float64."""
    z = np.asarray(logits, dtype=np.float64)
    if z.shape[-1] == 1:
        p = 1 / (1 + np.exp(-z))
        return np.concatenate([1 - p, p], axis=-1)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _entropy(p):
    return -np.sum(p * np.log(np.clip(p, 1e-300, 1)), axis=-1)


def _hand_decomposition(member_probs):
    """total, aleatoric, epistemic of an equally weighted list of (N, ..., K) probabilities."""
    stacked = np.stack(member_probs)
    mean = stacked.mean(0)
    total = _entropy(mean)
    aleatoric = _entropy(stacked).mean(0)
    return mean, total, aleatoric, total - aleatoric


@pytest.fixture(scope="module")
def members():
    return [_plain(1, seed=s) for s in range(3)]


# --------------------------------------------------------------------------
# predict_mc over members
# --------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_ensemble_decomposition_equals_hand_computation(channels):
    models = [_plain(channels, seed=s) for s in range(3)]
    x = _x()
    pred = predict_mc(models, x, num_samples=16, verbose=0)
    member_probs = [_probs(m(x).numpy()) for m in models]
    mean, total, aleatoric, epistemic = _hand_decomposition(member_probs)
    np.testing.assert_allclose(pred.mean, mean[..., 1:] if channels == 1 else mean, atol=1e-6)
    np.testing.assert_allclose(pred.total, total, atol=1e-5)
    np.testing.assert_allclose(pred.aleatoric, aleatoric, atol=1e-5)
    np.testing.assert_allclose(pred.epistemic, np.maximum(epistemic, 0), atol=1e-5)
    # Epistemic is the members' disagreement: the mean KL to the mixture.
    kl = np.mean([np.sum(p * np.log(p / mean), -1) for p in member_probs], axis=0)
    np.testing.assert_allclose(pred.epistemic, kl, atol=1e-5)
    assert pred.epistemic.max() > 1e-3
    assert pred.num_samples == 3  # one draw per deterministic member


def test_deep_ensemble_object_equals_list_and_windows(members):
    x = _x(2, seed=3)
    from_list = predict_mc(members, x, verbose=0)
    from_object = predict_mc(bs.models.DeepEnsemble(members), x, verbose=0)
    np.testing.assert_allclose(from_object.mean, from_list.mean, atol=1e-7)
    np.testing.assert_allclose(from_object.epistemic, from_list.epistemic, atol=1e-7)
    # Windows covering the image once (stride = patch) blend nothing: the
    # ensemble's windowed prediction equals each window predicted alone.
    big = _x(1, seed=4).repeat(2, axis=1)[:, :, :SIZE]  # (1, 16, 8, 2)
    free = [keras.Sequential([keras.Input((None, None, 2)), *m.layers]) for m in members]
    windowed = predict_mc(free, big, patch_size=SIZE, overlap=0.0, verbose=0)
    for start in (0, SIZE):
        part = predict_mc(free, big[:, start : start + SIZE], verbose=0)
        np.testing.assert_allclose(windowed.mean[:, start : start + SIZE], part.mean, atol=1e-6)
        np.testing.assert_allclose(
            windowed.aleatoric[:, start : start + SIZE], part.aleatoric, atol=1e-6
        )


def test_draws_are_spent_across_members_as_documented():
    det, mcd, bay = _plain(seed=0), _plain(seed=1, dropout=0.3), _bayesian(seed=2)
    planned = _members.plan_draws([det, mcd, bay], 10, None, "shared")
    assert [m.num_samples for m in planned] == [1, 4, 4]  # ceil(10 / 3) = 4
    assert [m.training for m in planned] == [True, True, False]
    # training=False makes dropout inactive: the member is deterministic.
    assert [m.num_samples for m in _members.plan_draws([det, mcd], 10, False, "shared")] == [1, 1]
    # sampling="mean" makes a Bayesian member deterministic.
    assert [m.num_samples for m in _members.plan_draws([bay, det], 10, None, "mean")] == [1, 1]
    x = _x(2, seed=5)
    assert predict_mc([det, mcd, bay], x, num_samples=10, verbose=0).num_samples == 9


def test_mixed_ensemble_weights_members_equally():
    det, bay = _plain(seed=0), _bayesian(seed=7)
    x = _x(2, seed=6)
    layers = bl.bayesian_layers(bay)
    start = [int(layer.noise_step.numpy()) for layer in layers]
    pred = predict_mc([det, bay], x, num_samples=6, verbose=0)
    # The same noise stream, replayed: the Bayesian member alone with its 3 draws.
    for layer, step in zip(layers, start, strict=True):
        layer.noise_step.assign(step)
    alone = predict_mc(bay, x, num_samples=3, verbose=0)
    det_p = _probs(det(x).numpy())
    bay_p = np.concatenate([1 - alone.mean, alone.mean], axis=-1).astype(np.float64)
    mean = (det_p + bay_p) / 2
    np.testing.assert_allclose(pred.mean[..., 0], mean[..., 1], atol=1e-6)
    np.testing.assert_allclose(pred.aleatoric, (_entropy(det_p) + alone.aleatoric) / 2, atol=1e-5)
    np.testing.assert_allclose(pred.total, _entropy(mean), atol=1e-5)
    assert pred.num_samples == 4


def test_class_weight_correction_and_calibration_apply_to_every_member(members):
    x = _x(2, seed=8)
    logits = [m(x).numpy().astype(np.float64) for m in members]
    weights = (1.0, 4.0)
    corrected = predict_mc(members, x, correct_for_class_weights=weights, verbose=0)
    expected = _hand_decomposition([_probs(z - math.log(4.0)) for z in logits])
    np.testing.assert_allclose(corrected.mean[..., 0], expected[0][..., 1], atol=1e-6)
    np.testing.assert_allclose(corrected.aleatoric, expected[2], atol=1e-5)
    platt = bs.calibration.PlattScaling(slope=0.5, bias=-1.0)
    calibrated = predict_mc(members, x, calibration=platt, verbose=0)
    expected = _hand_decomposition([_probs(0.5 * z - 1.0) for z in logits])
    np.testing.assert_allclose(calibrated.mean[..., 0], expected[0][..., 1], atol=1e-6)
    np.testing.assert_allclose(calibrated.epistemic, np.maximum(expected[3], 0), atol=1e-5)


def test_fit_calibration_of_an_ensemble_fits_the_mixture(members):
    x = _x(6, seed=9)
    y = (x[..., 0] > 0.3).astype("int32")
    fitted = bs.calibration.fit_calibration(members, x, y, num_samples=8)
    # Reference: the same fit on the members' logits stacked as draws.
    stacked = np.stack([m(x).numpy().reshape(-1, 1) for m in members])
    reference = bs.calibration.PlattScaling().fit_mean(stacked, y.reshape(-1))
    np.testing.assert_allclose(
        [float(fitted.slope.numpy()), float(fitted.bias.numpy())],
        [float(reference.slope.numpy()), float(reference.bias.numpy())],
        rtol=1e-4,
        atol=1e-5,
    )
    same = bs.calibration.fit_calibration(bs.models.DeepEnsemble(members), x, y)
    np.testing.assert_allclose(same.slope.numpy(), fitted.slope.numpy(), atol=1e-6)


# --------------------------------------------------------------------------
# DeepEnsemble as a Keras model
# --------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 4])
def test_mixture_logits_give_the_mean_probabilities(channels):
    rng = np.random.default_rng(10)
    z = [rng.normal(scale=3, size=(5, channels)).astype("float32") for _ in range(3)]
    mixed = ensemble_module.mixture_logits(z).numpy()
    mean = np.mean([_probs(zi) for zi in z], axis=0)
    np.testing.assert_allclose(_probs(mixed), mean, atol=1e-6)
    saturated = ensemble_module.mixture_logits([np.full((1, channels), 200.0, "float32")] * 2)
    assert np.all(np.isfinite(saturated.numpy()))


def test_deep_ensemble_predict_save_and_load(tmp_path, members):
    bay = _bayesian(seed=11)
    ensemble = bs.models.DeepEnsemble([*members, bay], name="five")
    x = _x(2, seed=12)
    with bl.sampling_mode(bay, "mean"):
        expected = np.mean([_probs(m(x).numpy()) for m in [*members, bay]], axis=0)
        np.testing.assert_allclose(_probs(ensemble.predict(x, verbose=0)), expected, atol=1e-6)
    path = tmp_path / "ensemble.keras"
    ensemble.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, bs.models.DeepEnsemble) and loaded.name == "five"
    assert loaded.num_members == 4
    assert isinstance(loaded.members[-1], keras.Sequential)
    for original, restored in zip(ensemble.members, loaded.members, strict=True):
        for a, b in zip(original.weights, restored.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    a = predict_mc(ensemble, x, sampling="mean", verbose=0)
    b = predict_mc(loaded, x, sampling="mean", verbose=0)
    np.testing.assert_allclose(b.mean, a.mean, atol=1e-6)
    np.testing.assert_allclose(b.epistemic, a.epistemic, atol=1e-6)


def test_deep_ensemble_compiles_and_evaluates_as_one_model(members):
    ensemble = bs.models.DeepEnsemble(members)
    ensemble.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True))
    x = _x(4, seed=13)
    y = (x[..., :1] > 0).astype("float32")
    loss = ensemble.evaluate(x, y, verbose=0)
    p = _probs(np.stack([m(x).numpy() for m in members]).astype(np.float64))[..., 1].mean(0)
    t = y[..., 0]
    expected = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    assert loss == pytest.approx(expected, rel=1e-4)


def test_ensemble_argument_errors(members):
    with pytest.raises(ValueError, match="Argument `members` must hold at least one"):
        bs.models.DeepEnsemble([])
    with pytest.raises(ValueError, match="members\\[1\\] of type str"):
        bs.models.DeepEnsemble([members[0], "model"])
    with pytest.raises(ValueError, match="each model once"):
        bs.models.DeepEnsemble([members[0], members[0]])
    with pytest.raises(ValueError, match="same number of output channels"):
        bs.models.DeepEnsemble([members[0], _plain(3)])
    other = keras.Sequential([keras.Input((SIZE, SIZE, 5)), keras.layers.Conv2D(1, 1)])
    with pytest.raises(ValueError, match="one input"):
        bs.models.DeepEnsemble([members[0], other])
    with pytest.raises(ValueError, match="not ensembles"):
        bs.models.DeepEnsemble([bs.models.DeepEnsemble(members)])
    with pytest.raises(ValueError, match="Argument `members` must be a list"):
        bs.models.DeepEnsemble(members[0])
    with pytest.raises(ValueError, match="Argument `model` must be a Keras model, a DeepEnsemble"):
        predict_mc("model", _x())
    with pytest.raises(ValueError, match="Argument `x` must have the model's input shape"):
        predict_mc(members, np.zeros((1, SIZE, SIZE, 3), "float32"))


# --------------------------------------------------------------------------
# Per-image scores
# --------------------------------------------------------------------------
def _prediction(mean, total, epistemic):
    total = np.asarray(total, "float32")
    epistemic = np.asarray(epistemic, "float32")
    return MCPrediction(np.asarray(mean, "float32"), total, total - epistemic, epistemic, 4)


def test_image_scores_by_hand():
    total = np.array([[[0.1, 0.5], [0.6, 0.0]], [[0.0, 0.0], [0.0, 0.7]]])
    epistemic = total / 4
    pred = _prediction(np.full((2, 2, 2, 1), 0.5), total, epistemic)
    s = image_scores(pred)
    np.testing.assert_allclose(s.mean_total, [0.3, 0.175], atol=1e-7)
    np.testing.assert_allclose(s.mean_epistemic, [0.075, 0.04375], atol=1e-7)
    np.testing.assert_allclose(s.mean_aleatoric, [0.225, 0.13125], atol=1e-7)
    # 0.5 * log 2 = 0.3466: pixels 0.5 and 0.6 of image 0, 0.7 of image 1
    np.testing.assert_allclose(s.uncertain_fraction, [0.5, 0.25])
    strict = image_scores(pred, threshold=0.8)  # 0.5545: only 0.6 and 0.7
    np.testing.assert_allclose(strict.uncertain_fraction, [0.25, 0.25])
    masked = image_scores(pred, mask=np.array([[True, True], [False, False]]))
    np.testing.assert_allclose(masked.mean_total, [0.3, 0.0], atol=1e-7)
    per_image = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 1]]], bool)
    np.testing.assert_allclose(image_scores(pred, mask=per_image).mean_total, [0.1, 0.7], atol=1e-7)


def test_image_scores_use_log_k_for_multiclass():
    total = np.array([[0.6, 0.5]])  # log(3) / 2 = 0.549
    pred = _prediction(np.full((1, 2, 3), 1 / 3), total, total * 0)
    np.testing.assert_allclose(image_scores(pred).uncertain_fraction, [0.5])


def test_image_scores_of_a_real_ensemble_rank_noise_above_clean(members):
    clean = _x(6, seed=14)
    noisy = clean + np.random.default_rng(15).normal(scale=3.0, size=clean.shape).astype("float32")
    pred = predict_mc(members, np.concatenate([clean, noisy]), verbose=0)
    s = image_scores(pred)
    shifted = np.repeat([0, 1], 6)
    auroc = bs.metrics.uncertainty_auroc(shifted, s.mean_epistemic)
    # The reference: the AUROC as the fraction of (shifted, clean) pairs ranked right.
    pairs = [(a > b) + 0.5 * (a == b) for a in s.mean_epistemic[6:] for b in s.mean_epistemic[:6]]
    assert auroc == pytest.approx(np.mean(pairs))


def test_image_scores_argument_errors():
    pred = _prediction(np.full((1, 2, 2, 1), 0.5), np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="Argument `prediction` must be an MCPrediction"):
        image_scores(np.zeros(3))
    with pytest.raises(ValueError, match="Argument `threshold`"):
        image_scores(pred, threshold=0.0)
    with pytest.raises(ValueError, match="Argument `mask` must have"):
        image_scores(pred, mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="no pixel in image\\(s\\) \\[0\\]"):
        image_scores(pred, mask=np.zeros((2, 2), bool))


def test_atypicality_is_a_robust_two_sided_z_score():
    rng = np.random.default_rng(16)
    reference = rng.normal(loc=2.0, scale=0.5, size=4001)
    values = np.array([2.0, 1.0, 3.0, 0.5])
    z = atypicality(values, reference)
    center = np.median(reference)
    mad = np.median(np.abs(reference - center))
    np.testing.assert_allclose(z, np.abs(values - center) / (1.4826 * mad))
    # For normal data the scale is the standard deviation: 1 and 3 sit 2 sd away.
    np.testing.assert_allclose(z[1:3], [2.0, 2.0], atol=0.1)
    # A shift that lowers the score is flagged like one that raises it.
    clean, lowered = reference[:50], reference[50:100] - 2.0
    labels = np.r_[np.zeros(50), np.ones(50)]
    scores = np.r_[clean, lowered]
    assert bs.metrics.uncertainty_auroc(labels, scores) < 0.05
    assert bs.metrics.uncertainty_auroc(labels, atypicality(scores, reference[100:])) > 0.95
    # No spread in the reference: the standard deviation, then 1.
    np.testing.assert_allclose(
        atypicality([3.0], [1.0, 1.0, 1.0, 5.0]), [2 / np.std([1, 1, 1, 5.0])]
    )
    np.testing.assert_allclose(atypicality([3.0], [1.0, 1.0]), [2.0])
    with pytest.raises(ValueError, match="Argument `reference` must hold at least 2"):
        atypicality([1.0], [1.0])
    with pytest.raises(ValueError, match="Argument `scores` must be finite"):
        atypicality([np.nan], [1.0, 2.0])
