"""Post-hoc calibration against scikit-learn, scipy and closed forms."""

import json

import keras
import numpy as np
import pytest
import sklearn
import tensorflow as tf
from scipy.optimize import minimize
from scipy.special import expit, log_softmax
from sklearn.linear_model import LogisticRegression

import bayesseg as bs
from bayesseg.calibration import PlattScaling, TemperatureScaling, fit_calibration


def _unpenalised_logistic_regression():
    # scikit-learn 1.8 deprecated penalty=None in favour of C=inf (the same fit).
    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    if (major, minor) >= (1, 8):
        return LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000)
    return LogisticRegression(penalty=None, tol=1e-10, max_iter=10_000)


def _binary_data(n, seed=0):
    """True logits, labels drawn from them, and logits miscalibrated as 2z + 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n) * 2.0
    y = (rng.random(n) < expit(z)).astype(np.int64)
    return z, y, 2.0 * z + 1.0


def _multiclass_data(n, k=4, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 1.5
    p = np.exp(log_softmax(z, axis=1))
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    shift = np.array([1.0, 0.0, -1.0, 0.5])[:k]
    return z, y, 2.0 * z + shift, shift


def _nll(theta, z, y, w=None):
    """Independent multinomial NLL of z * s + b (no gradient)."""
    u = theta[0] * z + theta[1:]
    per = -log_softmax(u, axis=1)[np.arange(len(y)), y]
    return np.average(per, weights=w)


# ---------------------------------------------------------------------- Platt
def test_platt_equals_sklearn_logistic_regression():
    _, y, logits = _binary_data(20_000)
    platt = PlattScaling().fit(logits, y)
    reference = _unpenalised_logistic_regression().fit(logits[:, None], y)
    np.testing.assert_allclose(platt.slope_value, reference.coef_[0, 0], atol=1e-4)
    np.testing.assert_allclose(platt.bias_value, reference.intercept_[0], atol=1e-4)
    assert platt.fit_result["converged"] and platt.fit_result["num_elements"] == 20_000
    assert platt.fit_result["nll_after"] < platt.fit_result["nll_before"]


def test_platt_sample_weights_and_ignore_index_equal_sklearn():
    _, y, logits = _binary_data(10_000, seed=1)
    w = np.random.default_rng(2).random(10_000) * 3
    labels = y.copy()
    labels[:500] = 255  # ignored
    platt = PlattScaling().fit(logits[:, None], labels, sample_weight=w, ignore_index=255)
    reference = _unpenalised_logistic_regression().fit(
        logits[500:, None], y[500:], sample_weight=w[500:]
    )
    np.testing.assert_allclose(platt.slope_value, reference.coef_[0, 0], atol=1e-4)
    np.testing.assert_allclose(platt.bias_value, reference.intercept_[0], atol=1e-4)
    # Zero weights drop elements like ignore_index does.
    zero = np.where(np.arange(10_000) < 500, 0.0, w)
    again = PlattScaling().fit(logits, y, sample_weight=zero)
    np.testing.assert_allclose(again.slope_value, platt.slope_value, rtol=1e-6)


def test_platt_recovers_known_miscalibration_and_lowers_the_ece():
    z, y, logits = _binary_data(200_000, seed=3)
    platt = PlattScaling().fit(logits, y)
    # logits = 2 z + 1, so the calibrated logit z = 0.5 * logits - 0.5.
    np.testing.assert_allclose(platt.slope_value, 0.5, atol=0.01)
    np.testing.assert_allclose(platt.bias_value, -0.5, atol=0.02)
    calibrated = platt(logits[:, None].astype("float32")).numpy()[:, 0]
    before = bs.metrics.classwise_ece(y, expit(logits)).mean()
    after = bs.metrics.classwise_ece(y, expit(calibrated)).mean()
    assert before > 0.05 and after < 0.01


def test_platt_bias_absorbs_the_class_weight_shift():
    # A model trained with weighted BCE (w0, w1) at its optimum outputs the
    # true logit + log(w1 / w0); Platt's fitted bias is -log(w1 / w0).
    z, y, _ = _binary_data(100_000, seed=4)
    weights = (1.0, 20.0)
    shifted = z + np.log(weights[1] / weights[0])
    platt = PlattScaling().fit(shifted, y)
    exact = PlattScaling.from_class_weights(weights)
    np.testing.assert_allclose(exact.bias_value, -np.log(20.0), rtol=1e-6)
    np.testing.assert_allclose(platt.slope_value, 1.0, atol=0.02)
    np.testing.assert_allclose(platt.bias_value, exact.bias_value, atol=0.05)


# ---------------------------------------------------------------- temperature
def test_temperature_scaling_is_at_the_nll_minimum():
    z, y, logits, shift = _multiclass_data(20_000)
    small = slice(0, 4_000)  # Nelder-Mead below is slow on more
    ts = TemperatureScaling(4).fit(logits[small], y[small])
    theta = np.concatenate([[1 / ts.temperature_value], ts.bias_value])
    assert ts.fit_result["converged"]
    # Against scipy without gradients (Nelder-Mead on the independent NLL).
    direct = minimize(
        _nll,
        np.concatenate([[1.0], np.zeros(4)]),
        args=(logits[small], y[small]),
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 20_000, "maxfev": 20_000},
    )
    np.testing.assert_allclose(_nll(theta, logits[small], y[small]), direct.fun, atol=1e-8)
    np.testing.assert_allclose(1 / theta[0], 1 / direct.x[0], atol=1e-3)
    np.testing.assert_allclose(theta[1:], direct.x[1:] - direct.x[1:].mean(), atol=1e-3)
    # Central-difference gradient ~ 0, and perturbations raise the NLL.
    best = _nll(theta, logits[small], y[small])
    for i in range(5):
        step = np.zeros(5)
        step[i] = 1e-4
        up = _nll(theta + step, logits[small], y[small])
        down = _nll(theta - step, logits[small], y[small])
        assert abs(up - down) / 2e-4 < 1e-5
        assert _nll(theta + 100 * step, logits[small], y[small]) > best
        assert _nll(theta - 100 * step, logits[small], y[small]) > best
    # The known miscalibration: logits = 2 z + shift -> T = 2, bias = -shift / 2 (centred).
    ts = TemperatureScaling(4).fit(logits, y)
    np.testing.assert_allclose(ts.temperature_value, 2.0, atol=0.06)
    expected = -shift / 2 - (-shift / 2).mean()
    np.testing.assert_allclose(ts.bias_value, expected, atol=0.05)
    np.testing.assert_allclose(ts.bias_value.sum(), 0.0, atol=1e-6)
    probs = np.exp(log_softmax(ts(logits.astype("float32")).numpy(), axis=1))
    before = bs.metrics.classwise_ece(y, np.exp(log_softmax(logits, axis=1))).mean()
    assert bs.metrics.classwise_ece(y, probs).mean() < 0.01 < before


def test_temperature_weights_one_hot_and_temperature_only():
    _, y, logits, _ = _multiclass_data(5_000, k=3, seed=5)
    w = np.random.default_rng(6).random(5_000)
    ts = TemperatureScaling(3).fit(logits, y, sample_weight=w)
    theta = np.concatenate([[1 / ts.temperature_value], ts.bias_value])
    best = _nll(theta, logits, y, w)
    for i in range(4):
        step = np.zeros(4)
        step[i] = 1e-3
        assert _nll(theta + step, logits, y, w) > best < _nll(theta - step, logits, y, w)
    one_hot = TemperatureScaling(3).fit(logits, np.eye(3)[y], sample_weight=w)
    np.testing.assert_allclose(one_hot.temperature_value, ts.temperature_value, rtol=1e-6)
    # Temperature only: a 1-D minimisation of the NLL over 1/T.
    only = TemperatureScaling(3, fit_bias=False).fit(logits, y)
    s = minimize(lambda s: _nll(np.array([s[0], 0, 0, 0]), logits, y), [1.0], method="Nelder-Mead")
    np.testing.assert_allclose(1 / only.temperature_value, s.x[0], atol=1e-3)
    assert np.all(only.bias_value == 0)
    with pytest.raises(ValueError, match=r"no element of class\(es\) \[2\]"):
        TemperatureScaling(3).fit(logits[y < 2], y[y < 2])


def test_large_inputs_are_subsampled_deterministically():
    _, y, logits = _binary_data(50_000, seed=7)
    a = PlattScaling().fit(logits, y, max_elements=8_000, seed=3)
    b = PlattScaling().fit(logits, y, max_elements=8_000, seed=3)
    c = PlattScaling().fit(logits, y, max_elements=8_000, seed=4)
    assert a.fit_result["num_elements"] == 8_000 and a.fit_result["num_available"] == 50_000
    assert a.slope_value == b.slope_value and a.slope_value != c.slope_value
    index = np.sort(np.random.default_rng(3).choice(50_000, size=8_000, replace=False))
    explicit = PlattScaling().fit(logits[index], y[index])
    np.testing.assert_allclose(a.slope_value, explicit.slope_value, rtol=1e-7)
    # Multi-class: the cap counts logit values, elements x channels.
    _, ym, zm, _ = _multiclass_data(10_000, seed=8)
    ts = TemperatureScaling(4).fit(zm, ym, max_elements=8_000)
    assert ts.fit_result["num_elements"] == 2_000


# ---------------------------------------------------------------- serialising
@pytest.mark.parametrize("kind", ["platt", "temperature"])
def test_keras_file_and_json_round_trips_in_safe_mode(tmp_path, kind):
    rng = np.random.default_rng(9)
    if kind == "platt":
        calibrator = PlattScaling(slope=0.37, bias=-1.25)
        x = rng.normal(size=(2, 5, 1)).astype("float32")
    else:
        calibrator = TemperatureScaling(3, temperature=1.7, bias=[0.2, -0.5, 0.3])
        x = rng.normal(size=(2, 5, 3)).astype("float32")
    model = keras.Sequential([keras.Input(x.shape[1:]), calibrator])
    path = tmp_path / "calibrated.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.layers[-1]) is type(calibrator)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(calibrator)))
    restored = keras.saving.deserialize_keras_object(config, safe_mode=True)
    np.testing.assert_array_equal(restored(x).numpy(), calibrator(x).numpy())
    # The closed form of the map.
    if kind == "platt":
        np.testing.assert_allclose(calibrator(x).numpy(), 0.37 * x - 1.25, rtol=1e-6)
    else:
        expected = x / 1.7 + np.array([0.2, -0.5, 0.3])
        np.testing.assert_allclose(calibrator(x).numpy(), expected, rtol=1e-6)


# --------------------------------------------------------------- model fitting
def _flipout_model(channels, seed=0):
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            bs.layers.Conv2DFlipout(
                channels, 3, padding="same", posterior_scale_init=0.3, seed=seed
            ),
        ]
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_fit_calibration_fits_the_pooled_per_draw_logits(channels):
    model = _flipout_model(channels)
    rng = np.random.default_rng(10)
    x = rng.normal(size=(6, 6, 6, 2)).astype("float32")
    with bs.layers.sampling_mode(model, "mean"):
        z = model(x).numpy()
    # Labels that depend on the logits, so the fit is well posed.
    if channels == 1:
        y = (rng.random(z.shape[:-1]) < expit(0.5 * z[..., 0])).astype("int32")
    else:
        y = np.argmax(z + rng.gumbel(size=z.shape), axis=-1).astype("int32")
    layers = bs.layers.bayesian_layers(model)
    start = [int(layer.noise_step.numpy()) for layer in layers]
    fitted = fit_calibration(model, x, y, num_samples=3, batch_size=4, target="draws")
    # Reference: replay the same noise, collect each draw's logits, fit directly.
    for layer, step in zip(layers, start, strict=True):
        layer.noise_step.assign(step)
    draws = {0: [], 1: []}
    with bs.layers.sampling_mode(model, "shared"):
        for b, part in enumerate((slice(0, 4), slice(4, 6))):
            for _ in range(3):
                draws[b].append(model(x[part], training=False).numpy())
    logits = np.concatenate([np.concatenate(draws[0]), np.concatenate(draws[1])])
    labels = np.concatenate([np.tile(y[:4], (3, 1, 1)), np.tile(y[4:], (3, 1, 1))])
    reference = (PlattScaling() if channels == 1 else TemperatureScaling(3)).fit(logits, labels)
    assert type(fitted) is type(reference)
    for a, b in zip(fitted.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # A tf.data.Dataset of the same batches gives the same fit.
    for layer, step in zip(layers, start, strict=True):
        layer.noise_step.assign(step)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    from_dataset = fit_calibration(model, dataset, num_samples=3, target="draws")
    for a, b in zip(from_dataset.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The default target, the mean over draws: the same draws, grouped per element.
    for layer, step in zip(layers, start, strict=True):
        layer.noise_step.assign(step)
    mean_fit = fit_calibration(model, x, y, num_samples=3, batch_size=4)
    grouped = np.concatenate([np.stack(draws[0]), np.stack(draws[1])], axis=1)  # (3, 6, ...)
    calibrator = PlattScaling() if channels == 1 else TemperatureScaling(3)
    mean_reference = calibrator.fit_mean(grouped, y)
    for a, b in zip(mean_fit.get_weights(), mean_reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _mean_nll(calibrator, draws, y):
    """NLL of the mean over draws of the calibrated probabilities (independent NumPy)."""
    u = calibrator(draws.astype("float32")).numpy().astype(np.float64)
    if u.shape[-1] == 1:
        p1 = expit(u[..., 0]).mean(0)
        return -np.mean(np.where(y == 1, np.log(p1), np.log1p(-p1)))
    p = np.exp(u - u.max(-1, keepdims=True))
    p = (p / p.sum(-1, keepdims=True)).mean(0)
    return -np.mean(np.log(p[np.arange(len(y)), y]))


def test_fit_mean_recovers_the_map_that_calibrates_the_mean_of_draws():
    # Elements whose draws spread around a centre; labels drawn from the MEAN
    # of the draws' probabilities, then the logits distorted by 2z + 1.
    rng = np.random.default_rng(21)
    centre = rng.normal(-2.0, 2.0, size=20_000)
    draws = centre + 1.5 * rng.normal(size=(8, 20_000))
    y = (rng.random(20_000) < expit(draws).mean(0)).astype(int)
    distorted = 2 * draws + 1
    mean_fit = PlattScaling().fit_mean(distorted[..., None], y)
    np.testing.assert_allclose([mean_fit.slope_value, mean_fit.bias_value], [0.5, -0.5], atol=0.03)
    # Reference optimum: Nelder-Mead on the same objective, without gradients.
    z = distorted.astype(np.float64)

    def objective(theta):
        p1 = expit(theta[0] * z + theta[1]).mean(0)
        return -np.mean(np.where(y == 1, np.log(p1), np.log1p(-p1)))

    reference = minimize(
        objective,
        [1.0, 0.0],
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 4000},
    )
    np.testing.assert_allclose([mean_fit.slope_value, mean_fit.bias_value], reference.x, atol=2e-3)
    # Against the per-draw fit on the same logits: a lower NLL of the mean,
    # and a mean whose foreground ECE is at the noise level.
    draw_fit = PlattScaling().fit(distorted.reshape(-1), np.tile(y, 8))
    assert _mean_nll(mean_fit, distorted[..., None], y) < _mean_nll(
        draw_fit, distorted[..., None], y
    )
    mean_p = expit(mean_fit(distorted[..., None].astype("float32")).numpy()[..., 0]).mean(0)
    assert bs.metrics.foreground_ece(y, mean_p) < 0.02


def test_temperature_fit_mean_is_at_the_nll_minimum():
    rng = np.random.default_rng(22)
    centre = rng.normal(size=(6000, 3)) * 2
    draws = centre + rng.normal(size=(6, 6000, 3))
    p = np.exp(draws - draws.max(-1, keepdims=True))
    p = (p / p.sum(-1, keepdims=True)).mean(0)
    y = np.array([rng.choice(3, p=row) for row in p])
    fitted = TemperatureScaling(3).fit_mean(3 * draws, y)
    best = _mean_nll(fitted, 3 * draws, y)
    for dt, db in [(0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)]:
        other = TemperatureScaling(
            3, temperature=fitted.temperature_value + dt, bias=fitted.bias_value + [db, 0, -db]
        )
        assert _mean_nll(other, 3 * draws, y) > best
    assert fitted.temperature_value == pytest.approx(3.0, rel=0.1)


def test_fit_calibration_subsamples_while_collecting():
    model = _flipout_model(1)
    x = np.random.default_rng(11).normal(size=(8, 6, 6, 2)).astype("float32")
    y = (x[..., 0] > 0).astype("int32")
    fitted = fit_calibration(model, x, y, num_samples=4, max_elements=300, seed=1)
    # 8 * 36 * 4 = 1152 logits; each batch keeps a seeded ~300/1152, then the cap.
    assert fitted.fit_result["num_elements"] <= 300
    assert fitted.fit_result["num_available"] < 1152


_X, _Y = np.zeros((2, 6, 6, 2)), np.zeros((2, 6, 6))
_Z, _L = np.arange(4.0), np.array([0, 1, 0, 1])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: PlattScaling(slope=float("nan")), "slope"),
        (lambda: TemperatureScaling(1), "num_classes"),
        (lambda: TemperatureScaling(3, temperature=0.0), "temperature"),
        (lambda: TemperatureScaling(3, bias=[0.0, 1.0]), "bias"),
        (lambda: PlattScaling().fit(np.zeros(4), np.array([0, 1, 2, 0])), "labels"),
        (lambda: PlattScaling().fit(np.arange(4.0), np.zeros(4)), "labels"),
        (lambda: PlattScaling().fit(np.zeros(5), np.array([0, 1, 0, 1])), "logits"),
        (lambda: PlattScaling().fit(_Z, _L, max_elements=0), "max_elements"),
        (lambda: PlattScaling().fit(_Z, _L, sample_weight=-np.ones(4)), "sample_weight"),
        (lambda: PlattScaling().fit(_Z, _L, sample_weight=np.ones(3)), "sample_weight"),
        (lambda: TemperatureScaling(3).fit(np.zeros((4, 2)), np.zeros(4)), "logits"),
        (lambda: PlattScaling.from_class_weights([1.0]), "class_weights"),
        (lambda: fit_calibration(_flipout_model(1), _X, None), "y"),
        (lambda: fit_calibration(_flipout_model(1), _X, _Y, num_samples=0), "num_samples"),
        (lambda: fit_calibration(_flipout_model(1), _X, _Y, sampling="median"), "sampling"),
        (lambda: fit_calibration(_flipout_model(1), _X, _Y, target="median"), "target"),
        (lambda: PlattScaling().fit_mean(_Z, _L), "draw_logits"),
    ],
)
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()
