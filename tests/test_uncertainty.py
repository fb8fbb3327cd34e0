"""Tests of bayesseg.uncertainty.predict_mc and bayesseg.plots."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bayesseg import layers as bl
from bayesseg import metrics, plots
from bayesseg.imbalance import unweight_probabilities
from bayesseg.uncertainty import MCPrediction, predict_mc

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _bayesian_model(channels=1, scale=0.3, size=8, seed=0):
    return keras.Sequential(
        [
            keras.Input((size, size, 2)),
            bl.Conv2DFlipout(
                6,
                3,
                padding="same",
                activation="relu",
                posterior_scale_init=scale,
                seed=seed,
            ),
            bl.Conv2DFlipout(
                channels, 3, padding="same", posterior_scale_init=scale, seed=seed + 1
            ),
        ]
    )


def _looped_reference(model, x, num_samples, start_steps):
    """Per-draw probabilities from eager calls under the same noise stream."""
    for layer, step in zip(bl.bayesian_layers(model), start_steps, strict=True):
        layer.noise_step.assign(step)
    draws = []
    with bl.sampling_mode(model, "shared"):
        for _ in range(num_samples):
            z = model(x, training=False).numpy().astype(np.float64)
            if z.shape[-1] == 1:
                p = 1 / (1 + np.exp(-z))
                p = np.concatenate([1 - p, p], axis=-1)
            else:
                p = np.exp(z - z.max(-1, keepdims=True))
                p /= p.sum(-1, keepdims=True)
            draws.append(p)
    return np.stack(draws)  # (T, N, H, W, K) with K >= 2


def _entropy(p):
    return -np.sum(p * np.log(np.clip(p, 1e-300, 1)), axis=-1)


@pytest.mark.parametrize("channels", [1, 4])
def test_decomposition_matches_looped_reference_and_kl(channels):
    model = _bayesian_model(channels)
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype("float32")
    layers = bl.bayesian_layers(model)
    start = [int(layer.noise_step.numpy()) for layer in layers]
    pred = predict_mc(model, x, num_samples=6, batch_size=3, verbose=0)
    # The fast path leaves the sampling mode as it was, and advanced the
    # noise counters by one step per draw.
    assert [layer.sampling for layer in layers] == ["sample", "sample"]
    assert [int(layer.noise_step.numpy()) for layer in layers] == [s + 6 for s in start]

    draws = _looped_reference(model, x, 6, start)
    mean = draws.mean(0)
    total = _entropy(mean)
    aleatoric = _entropy(draws).mean(0)
    kl = np.sum(draws * (np.log(draws) - np.log(mean)), axis=-1).mean(0)
    expected_mean = mean[..., 1:] if channels == 1 else mean
    np.testing.assert_allclose(pred.mean, expected_mean, atol=1e-5)
    np.testing.assert_allclose(pred.total, total, atol=1e-5)
    np.testing.assert_allclose(pred.aleatoric, aleatoric, atol=1e-5)
    # Mutual information computed independently as mean_t KL(p_t || mean).
    np.testing.assert_allclose(pred.epistemic, kl, atol=1e-5)
    np.testing.assert_allclose(pred.epistemic, pred.total - pred.aleatoric, atol=1e-6)
    assert pred.epistemic.max() > 1e-3  # a non-trivial case
    assert pred.mean.shape == (3, 8, 8, channels)
    assert pred.total.shape == pred.aleatoric.shape == pred.epistemic.shape == (3, 8, 8)
    assert pred.num_samples == 6 and pred.num_classes == max(channels, 2)


def test_zero_posterior_scale_has_no_epistemic_uncertainty():
    model = _bayesian_model(1, scale=1e-9)
    x = np.random.default_rng(1).normal(size=(5, 8, 8, 2)).astype("float32")
    pred = predict_mc(model, x, num_samples=8, batch_size=2, verbose=0)
    assert np.abs(pred.epistemic).max() < 1e-6
    assert pred.aleatoric.max() > 0.05
    with bl.sampling_mode(model, "mean"):
        p = tf.sigmoid(model(x)).numpy()
    np.testing.assert_allclose(pred.mean, p, atol=1e-6)


def test_mc_dropout_model_uses_training_mode():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(3),
        ]
    )
    x = np.random.default_rng(2).normal(size=(4, 6)).astype("float32")
    pred = predict_mc(model, x, num_samples=16, verbose=0)
    assert pred.epistemic.min() > 0 and pred.mean.shape == (4, 3)
    np.testing.assert_allclose(pred.mean.sum(-1), 1, atol=1e-5)
    still = predict_mc(model, x, num_samples=4, training=False, verbose=0)
    assert still.epistemic.max() < 1e-6


def test_mc_dropout_keeps_batch_norm_in_inference_mode():
    # MC dropout samples dropout only: batch normalisation must use its moving
    # statistics, so a prediction does not depend on the rest of its batch.
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.0),
            keras.layers.Dense(2),
        ]
    )
    bn = model.layers[1]
    bn.moving_mean.assign(np.linspace(-1, 1, 8))
    bn.moving_variance.assign(np.linspace(0.5, 2, 8))
    x = np.random.default_rng(3).normal(size=(5, 6)).astype("float32")
    pred = predict_mc(model, x, num_samples=3, batch_size=5, verbose=0)
    reference = tf.nn.softmax(model(x, training=False)).numpy()
    np.testing.assert_allclose(pred.mean, reference, atol=1e-6)
    # One example alone gets the same prediction as inside the batch.
    alone = predict_mc(model, x[:1], num_samples=3, verbose=0)
    np.testing.assert_allclose(alone.mean, pred.mean[:1], atol=1e-6)
    # (A plain training=True call would have normalised by the batch.)
    batch_stats = tf.nn.softmax(model(x, training=True)).numpy()
    assert np.abs(batch_stats - reference).max() > 1e-2
    # The layer is trainable again afterwards, and training still updates it.
    assert bn.trainable and len(model.trainable_weights) == 6
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.zeros((5, 2), "float32"), epochs=1, verbose=0)
    assert not np.allclose(bn.moving_mean.numpy(), np.linspace(-1, 1, 8))


def test_saturated_outputs_give_no_nan():
    model = keras.Sequential([keras.Input((4, 1)), keras.layers.Dense(2, use_bias=False)])
    model.layers[0].set_weights([np.array([[1.0, -1.0]], "float32")])
    x = np.array([[[-200.0], [-30.0], [30.0], [200.0]]], "float32")
    for from_logits in (True, False):
        out_model = (
            model if from_logits else keras.Sequential([model, keras.layers.Activation("softmax")])
        )
        pred = predict_mc(out_model, x, num_samples=2, from_logits=from_logits, verbose=0)
        for field in (pred.mean, pred.total, pred.aleatoric, pred.epistemic):
            assert np.all(np.isfinite(field))
        assert pred.total.max() < 1e-6


def _tile_model(rank):
    conv = keras.layers.Conv2D if rank == 2 else keras.layers.Conv3D
    return keras.Sequential(
        [
            keras.Input((None,) * rank + (1,)),
            conv(4, 3, padding="same", activation="tanh"),
            conv(2, 1),
        ]
    )


@pytest.mark.parametrize("rank", [2, 3])
def test_sliding_windows_equal_per_tile_prediction(rank):
    model = _tile_model(rank)
    tile = 8 if rank == 2 else 6
    rng = np.random.default_rng(3)
    image = rng.normal(size=(2,) + (2 * tile,) * rank + (1,)).astype("float32")
    pred = predict_mc(
        model,
        image,
        num_samples=1,
        patch_size=tile,
        overlap=0.0,
        batch_size=3,
        verbose=0,
    )
    per_tile = np.zeros_like(pred.mean)
    for corner in np.ndindex(*(2,) * rank):
        box = (slice(None),) + tuple(slice(c * tile, (c + 1) * tile) for c in corner)
        per_tile[box] = predict_mc(model, image[box], num_samples=1, verbose=0).mean
    np.testing.assert_allclose(pred.mean, per_tile, atol=1e-6)


def test_overlapping_windows_blend_to_the_whole_image_prediction():
    model = _tile_model(2)
    rng = np.random.default_rng(4)
    image = rng.normal(size=(1, 20, 20, 1)).astype("float32")
    whole = predict_mc(model, image, num_samples=1, verbose=0)
    windows = predict_mc(
        model, image, num_samples=1, patch_size=8, overlap=0.5, batch_size=4, verbose=0
    )
    # Windows start at 0, 4, 8, 12: a pixel next to a window border sees
    # that window's zero padding; every other pixel must match exactly.
    starts = [0, 4, 8, 12]
    borders = {s for s in starts} | {s + 7 for s in starts}
    inner = np.array([i not in borders or i in (0, 19) for i in range(20)])
    mask = inner[:, None] & inner[None, :]
    assert mask.sum() > 50
    np.testing.assert_allclose(windows.mean[0][mask], whole.mean[0][mask], atol=1e-6)
    np.testing.assert_allclose(windows.aleatoric[0][mask], whole.aleatoric[0][mask], atol=1e-6)
    # Inputs smaller than a patch are padded, then cropped back.
    small = predict_mc(model, image[:, :5, :6], num_samples=1, patch_size=8, verbose=0)
    assert small.mean.shape == (1, 5, 6, 2)


@pytest.mark.parametrize("channels", [1, 3])
def test_class_weight_correction_matches_closed_form(channels):
    rng = np.random.default_rng(5)
    kernel = rng.normal(size=(2, channels)).astype("float32")
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.Dense(channels, use_bias=False)])
    model.layers[-1].set_weights([kernel])
    x = rng.normal(size=(3, 5, 2)).astype("float32") * 2
    z = x.astype(np.float64) @ kernel
    weights = [1.0, 59.0] if channels == 1 else [0.5, 4.0, 20.0]
    pred = predict_mc(model, x, num_samples=2, correct_for_class_weights=weights, verbose=0)
    if channels == 1:
        q = 1 / (1 + np.exp(-z))
        w0, w1 = weights
        expected = (q / w1) / (q / w1 + (1 - q) / w0)
    else:
        q = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        expected = (q / weights) / (q / weights).sum(-1, keepdims=True)
    np.testing.assert_allclose(pred.mean, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        pred.mean, unweight_probabilities(pred_plain(model, x), weights), rtol=1e-5
    )
    # The probability-output path gives the same answer.
    act = "sigmoid" if channels == 1 else "softmax"
    prob_model = keras.Sequential([model, keras.layers.Activation(act)])
    pred_p = predict_mc(
        prob_model,
        x,
        num_samples=2,
        correct_for_class_weights=weights,
        from_logits=False,
        verbose=0,
    )
    np.testing.assert_allclose(pred_p.mean, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(pred_p.total, pred.total, atol=1e-5)


def pred_plain(model, x):
    return predict_mc(model, x, num_samples=1, verbose=0).mean.astype(np.float64)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_samples": 0}, "num_samples"),
        ({"batch_size": 0}, "batch_size"),
        ({"patch_size": (4,)}, "patch_size"),
        ({"patch_size": 4, "overlap": 1.0}, "overlap"),
        ({"correct_for_class_weights": [1.0, -2.0]}, "correct_for_class_weights"),
        ({"correct_for_class_weights": [1.0, 2.0, 3.0]}, "correct_for_class_weights"),
        ({"verbose": "loud"}, "verbose"),
        ({"sampling": "median"}, "sampling"),
        ({"training": "yes"}, "training"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    model = _bayesian_model(1)
    x = np.zeros((2, 8, 8, 2), "float32")
    with pytest.raises(ValueError, match=f"`{name}`"):
        predict_mc(model, x, **{"num_samples": 2, **kwargs})


# ------------------------------------------------------------------------ plots
def test_plots_write_png(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    image = rng.normal(size=(2, 16, 16, 1)).astype("float32")
    truth = (rng.random((2, 16, 16, 1)) < 0.1).astype("float32")
    pred = predict_mc(
        keras.Sequential(
            [
                keras.Input((16, 16, 1)),
                bl.Conv2DFlipout(1, 3, padding="same", posterior_scale_init=0.5),
            ]
        ),
        image,
        num_samples=4,
        verbose=0,
    )
    assert isinstance(pred, MCPrediction)
    path = plots.plot_uncertainty(image, truth, pred, tmp_path / "u.png", index=1)
    assert open(path, "rb").read(8) == PNG_SIGNATURE
    volume = rng.normal(size=(1, 6, 10, 10, 1))
    maps = {
        "mean": rng.random((1, 6, 10, 10, 3)),
        "epistemic": rng.random((1, 6, 10, 10)),
        "aleatoric": rng.random((1, 6, 10, 10)),
    }
    path3d = plots.plot_uncertainty(volume, volume[..., 0] > 0, maps, tmp_path / "v.png")
    assert open(path3d, "rb").read(8) == PNG_SIGNATURE
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or save(fig, path))
    plots.plot_uncertainty(volume, None, maps, tmp_path / "v2.png", slice_index=2)
    assert figures[0].get_suptitle() == "slice 2 of 6 along axis 0 (D of the volume's (D, H, W))"
    probs = 1 / (1 + np.exp(-(4 * truth - 2 + rng.normal(size=truth.shape))))
    rel = plots.plot_reliability(truth, probs, tmp_path / "r.png", num_bins=10)
    assert open(rel, "rb").read(8) == PNG_SIGNATURE
    assert metrics.reliability_curve(truth, probs, 10)[2].sum() == truth.size
    with pytest.raises(ValueError, match="`prediction`"):
        plots.plot_uncertainty(image, truth, (1, 2), tmp_path / "bad.png")


def test_traced_function_is_reused_and_does_not_keep_the_model_alive():
    import gc
    import weakref

    from bayesseg import uncertainty

    model = _bayesian_model(1)
    x = np.zeros((3, 8, 8, 2), "float32")
    predict_mc(model, x, num_samples=2, batch_size=2, verbose=0)
    predict_mc(model, x, num_samples=2, batch_size=2, verbose=0)
    (run,) = uncertainty.monte_carlo._FUNCTION_CACHE[model].values()
    assert run.experimental_get_tracing_count() == 1
    ref = weakref.ref(model)
    del model, run
    gc.collect()
    assert ref() is None


# ------------------------------------------------- class-weight correction warning
def _compiled(loss_kind):
    import bayesseg as bs

    model = _bayesian_model(1)
    wbce = bs.losses.WeightedBinaryCrossentropy(pos_weight=9.0)
    likelihood = {
        "weighted_ce": wbce,
        "focal": bs.losses.BinaryFocalLoss(),
        "dice": bs.losses.DiceLoss(),
        "mining": bs.losses.HardNegativeMining(wbce),
    }[loss_kind.removeprefix("plain_")]
    if loss_kind.startswith("plain_"):
        model.compile(optimizer="sgd", loss=likelihood)
    else:
        elbo = bs.ELBO(likelihood, bs.kl.PerExample(10), elements_per_example=64)
        model.compile(optimizer="sgd", loss=elbo.bind(model))
    return model


@pytest.mark.parametrize("loss_kind", ["focal", "dice", "mining", "plain_focal", "plain_dice"])
def test_class_weight_correction_warns_for_inexact_losses(loss_kind):
    model = _compiled(loss_kind)
    x = np.zeros((1, 8, 8, 2), "float32")
    name = type(getattr(model.loss, "likelihood", model.loss)).__name__
    with pytest.warns(UserWarning, match=rf"compiled with {name}.*not calibrated"):
        predict_mc(model, x, num_samples=1, correct_for_class_weights=[1.0, 9.0], verbose=0)


@pytest.mark.parametrize("loss_kind", ["weighted_ce", "plain_weighted_ce"])
def test_class_weight_correction_is_silent_for_weighted_cross_entropy(loss_kind):
    import warnings

    model = _compiled(loss_kind)
    x = np.zeros((1, 8, 8, 2), "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict_mc(model, x, num_samples=1, correct_for_class_weights=[1.0, 9.0], verbose=0)
        # No correction asked: no warning either, whatever the loss.
        predict_mc(_compiled("focal"), x, num_samples=1, verbose=0)


# --------------------------------------------------------------- calibration
def _looped_logits(model, x, num_samples, start_steps):
    """Per-draw logits from eager calls under the same noise stream."""
    for layer, step in zip(bl.bayesian_layers(model), start_steps, strict=True):
        layer.noise_step.assign(step)
    with bl.sampling_mode(model, "shared"):
        return np.stack([model(x, training=False).numpy() for _ in range(num_samples)])


@pytest.mark.parametrize("channels", [1, 4])
def test_calibration_is_applied_to_every_draw(channels):
    from bayesseg.calibration import PlattScaling, TemperatureScaling

    model = _bayesian_model(channels)
    x = np.random.default_rng(7).normal(size=(3, 8, 8, 2)).astype("float32")
    if channels == 1:
        calibration = PlattScaling(slope=0.6, bias=-1.3)
    else:
        calibration = TemperatureScaling(4, temperature=1.8, bias=[0.5, -0.2, 0.1, -0.4])
    start = [int(layer.noise_step.numpy()) for layer in bl.bayesian_layers(model)]
    pred = predict_mc(model, x, num_samples=5, batch_size=3, calibration=calibration, verbose=0)
    # Hand computation: the calibration's closed form on each draw's logits.
    z = _looped_logits(model, x, 5, start).astype(np.float64)
    if channels == 1:
        z = 0.6 * z - 1.3
        p = 1 / (1 + np.exp(-z))
        draws = np.concatenate([1 - p, p], axis=-1)
    else:
        z = z / 1.8 + np.array([0.5, -0.2, 0.1, -0.4])
        draws = np.exp(z - z.max(-1, keepdims=True))
        draws /= draws.sum(-1, keepdims=True)
    mean = draws.mean(0)
    np.testing.assert_allclose(pred.mean, mean[..., 1:] if channels == 1 else mean, atol=1e-5)
    np.testing.assert_allclose(pred.total, _entropy(mean), atol=1e-5)
    np.testing.assert_allclose(pred.aleatoric, _entropy(draws).mean(0), atol=1e-5)
    kl = np.sum(draws * (np.log(draws) - np.log(mean)), axis=-1).mean(0)
    np.testing.assert_allclose(pred.epistemic, kl, atol=1e-5)
    # Calibrating the mean probabilities instead would give another answer.
    uncalibrated = predict_mc(model, x, num_samples=5, batch_size=3, verbose=0)
    assert np.abs(uncalibrated.mean - pred.mean).max() > 1e-2


@pytest.mark.parametrize("channels", [1, 3])
def test_calibration_from_class_weights_equals_the_class_weight_correction(channels):
    from bayesseg.calibration import PlattScaling, TemperatureScaling

    model = keras.Sequential([keras.Input((5, 2)), keras.layers.Dense(channels)])
    x = np.random.default_rng(8).normal(size=(3, 5, 2)).astype("float32")
    weights = [1.0, 59.0] if channels == 1 else [0.5, 4.0, 20.0]
    cls = PlattScaling if channels == 1 else TemperatureScaling
    calibration = cls.from_class_weights(weights)
    a = predict_mc(model, x, num_samples=2, calibration=calibration, verbose=0)
    b = predict_mc(model, x, num_samples=2, correct_for_class_weights=weights, verbose=0)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.total, b.total, atol=1e-6)
    # A later fit is seen by the cached traced function (variables, no retrace).
    shift = np.zeros(calibration.bias.shape, "float32")
    shift.flat[-1] = 1.0  # one class's bias (a common offset would change nothing)
    calibration.bias.assign(calibration.bias + shift)
    c = predict_mc(model, x, num_samples=2, calibration=calibration, verbose=0)
    assert np.abs(c.mean - a.mean).max() > 1e-3


def test_calibration_argument_errors():
    from bayesseg.calibration import PlattScaling, TemperatureScaling

    model = _bayesian_model(1)
    x = np.zeros((2, 8, 8, 2), "float32")
    platt = PlattScaling()
    with pytest.raises(ValueError, match=r"`calibration` and `correct_for_class_weights`"):
        predict_mc(model, x, calibration=platt, correct_for_class_weights=[1.0, 3.0])
    with pytest.raises(ValueError, match=r"`calibration`.*from_logits=True"):
        predict_mc(model, x, calibration=platt, from_logits=False)
    with pytest.raises(ValueError, match=r"`calibration` maps 3 logit channel\(s\)"):
        predict_mc(model, x, calibration=TemperatureScaling(3))
    with pytest.raises(ValueError, match=r"`calibration` must be None or a fitted"):
        predict_mc(model, x, calibration=lambda z: z)


def test_epistemic_share_by_hand_binary_and_multiclass():
    from bayesseg.uncertainty import epistemic_share

    # Binary: p = (0.5, 0.3, 0.01); the last pixel is below the 0.02 threshold.
    mean = np.array([[[0.5], [0.3], [0.01]]], "float32")
    total = np.array([[0.6, 0.5, 0.05]], "float32")
    epistemic = np.array([[0.2, 0.05, 0.04]], "float32")
    pred = MCPrediction(mean, total, total - epistemic, epistemic, 4)
    assert epistemic_share(pred) == pytest.approx((0.2 + 0.05) / (0.6 + 0.5), rel=1e-6)
    assert epistemic_share(pred, threshold=0.0) == pytest.approx(0.29 / 1.15, rel=1e-6)
    assert np.isnan(epistemic_share(pred, threshold=0.9))
    # Softmax: the foreground probability is 1 - p(background = class 0).
    mean3 = np.array([[[0.99, 0.005, 0.005], [0.6, 0.3, 0.1]]], "float32")
    pred3 = MCPrediction(mean3, total[:, :2], total[:, :2], epistemic[:, :2], 4)
    assert epistemic_share(pred3) == pytest.approx(0.05 / 0.5, rel=1e-6)  # second pixel only
    for bad in (1.0, -0.1, "0.1", True):
        with pytest.raises(ValueError, match="`threshold`"):
            epistemic_share(pred, threshold=bad)
    with pytest.raises(ValueError, match="`prediction`"):
        epistemic_share(mean)


def test_epistemic_share_is_zero_without_posterior_noise_and_grows_with_it():
    from bayesseg.uncertainty import epistemic_share

    x = np.random.default_rng(3).normal(size=(4, 8, 8, 2)).astype("float32")
    shares = []
    for scale in (1e-9, 0.05, 0.3):
        model = _bayesian_model(1, scale=scale)
        shares.append(epistemic_share(predict_mc(model, x, num_samples=16, verbose=0), 0.0))
    assert shares[0] < 1e-5
    assert 0 < shares[1] < shares[2] < 1


def test_wrong_input_shape_is_one_line_before_tracing():
    model = _bayesian_model(size=8)  # input (None, 8, 8, 2)
    from bayesseg.uncertainty import monte_carlo

    cached = dict(monte_carlo._FUNCTION_CACHE.get(model, {}))
    with pytest.raises(ValueError) as info:
        predict_mc(model, np.ones((3, 8, 8, 1), "float32"), num_samples=2)
    assert str(info.value) == (
        "Argument `x` must have the model's input shape (None, 8, 8, 2) (None: any size). "
        "Received: x.shape=(3, 8, 8, 1)"
    )
    with pytest.raises(ValueError) as info:
        predict_mc(model, np.ones((1, 16, 16, 2), "float32"), num_samples=2)
    assert str(info.value).endswith("Received: x.shape=(1, 16, 16, 2)")
    with pytest.raises(ValueError) as info:
        predict_mc(model, np.ones((1, 16, 16, 2), "float32"), num_samples=2, patch_size=4)
    assert str(info.value) == (
        "Argument `patch_size` must make windows of the model's input shape (None, 8, 8, 2) "
        "(None: any size). Received: patch_size=4, windows of shape (4, 4, 2)"
    )
    with pytest.raises(ValueError, match=r"Received: x.shape=\(1, 16, 16, 3\)$"):
        predict_mc(model, np.ones((1, 16, 16, 3), "float32"), num_samples=2, patch_size=8)
    # Nothing was traced for the rejected inputs.
    assert dict(monte_carlo._FUNCTION_CACHE.get(model, {})) == cached
    # Windows of the model's size, and a fully convolutional model, still work.
    pred = predict_mc(model, np.ones((1, 16, 16, 2), "float32"), num_samples=2, patch_size=8)
    assert pred.mean.shape == (1, 16, 16, 1)
    free = keras.Sequential([keras.Input((None, None, 2)), bl.Conv2DFlipout(1, 3, padding="same")])
    assert predict_mc(free, np.ones((1, 12, 10, 2), "float32"), num_samples=2).total.shape == (
        1,
        12,
        10,
    )
    with pytest.raises(ValueError, match=r"\(None, None, None, 2\).*x.shape=\(1, 12, 10, 5\)"):
        predict_mc(free, np.ones((1, 12, 10, 5), "float32"), num_samples=2)
