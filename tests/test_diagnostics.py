"""Gradient diagnostics and the loss-spike monitor."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import bayesseg as bs
from bayesseg import diagnostics


def _model():
    inputs = keras.Input((5,))
    h = bs.layers.DenseFlipout(8, activation="tanh", seed=1)(inputs)
    h = keras.layers.Dense(4, activation="tanh", name="plain")(h)
    outputs = bs.layers.DenseReparameterization(1, seed=2, name="head")(h)
    return bs.BayesianModel(inputs, outputs)


def _batch(n=16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = (x[:, :1] > 0.5).astype("float32")
    return x, y


def _elbo(n):
    return bs.ELBO(bs.losses.WeightedBinaryCrossentropy(pos_weight=3.0), bs.kl.PerExample(n))


def _reset_noise(model):
    for layer in bs.layers.bayesian_layers(model):
        layer.noise_step.assign(0)


def _scale_row(report, layer):
    return next(r for r in report.rows if r.layer == layer and r.group == "posterior_scale")


def test_kl_dominates_with_tiny_n_and_flips_with_large_n():
    model, (x, y) = _model(), _batch()
    small = diagnostics.gradient_contributions(model, _elbo(1), x, y)
    large = diagnostics.gradient_contributions(model, _elbo(10_000_000), x, y)
    for layer in ("dense_flipout", "head"):
        name = next(layer_.name for layer_ in model.layers if layer_.name.startswith(layer))
        assert _scale_row(small, name).ratio > 100
        assert _scale_row(large, name).ratio < 1
    groups = {(r.layer, r.group) for r in small.rows}
    assert ("plain", "deterministic") in groups
    plain = next(r for r in small.rows if r.layer == "plain")
    assert plain.kl_norm == 0.0  # no KL flows into deterministic weights
    assert sum(r.share for r in small.rows) == pytest.approx(1.0, rel=1e-5)
    text = str(small)
    assert "posterior_scale" in text and "kl/nll" in text
    assert json.dumps(small.to_dict())


def test_totals_add_up_to_the_elbo_gradient():
    model, (x, y) = _model(), _batch()
    elbo = _elbo(20).bind(model)
    _reset_noise(model)
    report = diagnostics.gradient_contributions(model, elbo, x, y)
    _reset_noise(model)
    with tf.GradientTape() as tape:
        terms = elbo.compute(model, y, model(x, training=True))
    direct = tf.linalg.global_norm(tape.gradient(terms.loss, model.trainable_variables))
    t = report.total
    combined = np.sqrt(t.nll_norm**2 + t.kl_norm**2 + 2 * t.cosine * t.nll_norm * t.kl_norm)
    np.testing.assert_allclose(combined, float(direct), rtol=1e-5)
    np.testing.assert_allclose(report.loss, float(terms.loss), rtol=1e-6)


def test_cosine_of_a_gradient_with_itself_is_one():
    g = tf.constant(np.random.default_rng(1).normal(size=50).astype("float32"))
    row = diagnostics._row("layer", "group", g, g, float(tf.reduce_sum((2 * g) ** 2)))
    assert row.cosine == pytest.approx(1.0, abs=1e-6)
    assert row.ratio == pytest.approx(1.0) and row.share == pytest.approx(1.0)


def test_snr_with_several_samples():
    model, (x, y) = _model(), _batch()
    report = diagnostics.gradient_contributions(model, _elbo(100), x, y, num_samples=4)
    assert all(r.snr is not None and r.snr >= 0 for r in report.rows)
    # Deterministic weights see the noise only through the Bayesian layers:
    # their SNR is finite and positive.
    assert report.total.snr > 0
    with pytest.raises(ValueError, match="`num_samples`"):
        diagnostics.gradient_contributions(model, _elbo(100), x, y, num_samples=0)


def test_callback_matches_the_function_and_writes_logs(tmp_path):
    model, (x, y) = _model(), _batch()
    elbo = _elbo(16)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=elbo)
    callback = diagnostics.GradientDiagnostics(every_n_steps=1, log_dir=str(tmp_path))
    _reset_noise(model)
    history = model.fit(
        x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, callbacks=[callback]
    )
    assert {"grad_norm_nll", "grad_norm_kl", "grad_kl_nll_ratio"} <= set(history.history)
    assert [r["step"] for r in callback.records] == [0, 1]  # SGD(0) still counts updates
    _reset_noise(model)
    report = diagnostics.gradient_contributions(model, elbo, x, y)
    measured = {(r["layer"], r["group"]): r for r in callback.records[0]["rows"]}
    for row in report.rows:
        got = measured[(row.layer, row.group)]
        # The callback gets the NLL part as total minus KL: where the KL part is
        # ~1000x larger (posterior scales here) float32 cancellation costs digits.
        rtol = 1e-3 if row.group == "posterior_scale" else 1e-5
        np.testing.assert_allclose(got["nll_norm"], row.nll_norm, rtol=rtol)
        np.testing.assert_allclose(got["kl_norm"], row.kl_norm, rtol=1e-5)
    # A second fit with the same callback reuses the cached train function.
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=[callback])
    assert [r["step"] for r in callback.records] == [0, 1, 2]
    csv_lines = (tmp_path / "gradients.csv").read_text().splitlines()
    assert csv_lines[0].startswith("step,layer,group") and len(csv_lines) == 1 + 3 * (
        len(report.rows) + 1
    )
    has_events = any(p.name.startswith("events.out") for p in tmp_path.iterdir())
    assert has_events == diagnostics._tensorboard_available()


def _series_model(length):
    inputs = keras.Input((length, 1))
    h = bs.layers.Conv1DFlipout(8, 5, padding="same", activation="relu", seed=4)(inputs)
    outputs = bs.layers.Conv1DFlipout(1, 1, seed=5)(h)
    return bs.BayesianModel(inputs, outputs)


def _series(n, length, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.2, size=(n, length, 1)).astype("float32")
    y = np.zeros((n, length), "float32")
    for i in range(0, n, 5):  # an anomaly every 5th series: a clear spike in x
        t = rng.integers(length)
        x[i, t, 0] += 4.0
        y[i, t] = 1.0
    return x, y


@pytest.mark.parametrize("planted", [True, False])
def test_spike_monitor_names_planted_elements(planted, tmp_path):
    length, batch = 64, 8
    x, y = _series(160, length, seed=0)
    planted_at = 15  # batch index of the bad batch
    bad = []
    if planted:
        # Positives labelled where the input is plain noise: p ~ 0.01 after
        # training, weight 100 -> the anomaly tagger's loss spike.
        for i, t in [(2, 10), (5, 40)]:
            row = planted_at * batch + i
            y[row, t] = 1.0
            bad.append((i, t))
    model = _series_model(length)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=bs.ELBO(bs.losses.WeightedBinaryCrossentropy(pos_weight=100.0), bs.kl.PerExample(160)),
    )
    # Pre-train on clean data so the model predicts p ~ 0.01 on plain noise.
    clean_x, clean_y = _series(160, length, seed=1)
    model.fit(clean_x, clean_y, batch_size=batch, epochs=3, verbose=0)
    monitor = diagnostics.LossSpikeMonitor(threshold=8.0, window=10, save_dir=str(tmp_path))
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    if not planted:
        assert monitor.spikes == []
        return
    assert len(monitor.spikes) >= 1
    spike = monitor.spikes[0]
    assert spike["step"] == 3 * 20 + planted_at  # 20 batches per epoch of pre-training
    top = {tuple(e["index"]) for e in spike["top_elements"][:4]}
    assert set(bad) <= top
    first = spike["top_elements"][0]
    assert (
        first["label"] == 1.0 and first["weight"] == 100.0 and first["probability_of_label"] < 0.1
    )
    assert {e["example"] for e in spike["top_examples"][:2]} == {2, 5}
    saved = json.loads((tmp_path / f"spike_{spike['step']}.json").read_text())
    assert saved["step"] == spike["step"]
    assert np.load(tmp_path / f"spike_{spike['step']}.npz")["x"].shape == (batch, length, 1)
    assert spike["loss_after"] is not None and spike["loss_after"] < spike["loss"]


def test_spike_monitor_skip_update_keeps_weights():
    length, batch = 32, 4
    x, y = _series(8, length, seed=2)
    model = _series_model(length)
    model.compile(
        optimizer=keras.optimizers.SGD(1e-3),
        loss=bs.ELBO(bs.losses.WeightedBinaryCrossentropy(pos_weight=100.0), bs.kl.PerExample(8)),
    )
    monitor = diagnostics.LossSpikeMonitor(threshold=3.0, window=3, on_spike="skip_update")
    clean = np.zeros_like(y)
    model.fit(
        np.concatenate([x] * 2),
        np.concatenate([clean] * 2),
        batch_size=batch,
        verbose=0,
        shuffle=False,
        callbacks=[monitor],
    )
    before = [v.numpy() for v in model.trainable_variables]
    iterations = int(model.optimizer.iterations.numpy())
    bad_y = np.ones_like(y[:batch])  # every step positive: a huge weighted loss
    model.fit(x[:batch], bad_y, batch_size=batch, verbose=0, callbacks=[monitor])
    assert monitor.spikes and monitor.spikes[-1]["step"] == iterations
    assert int(model.optimizer.iterations.numpy()) == iterations
    for b, v in zip(before, model.trainable_variables, strict=True):
        np.testing.assert_array_equal(b, v.numpy())


@pytest.mark.parametrize(
    "make,argument",
    [
        (lambda: diagnostics.GradientDiagnostics(every_n_steps=0), "every_n_steps"),
        (lambda: diagnostics.LossSpikeMonitor(threshold=-1), "threshold"),
        (lambda: diagnostics.LossSpikeMonitor(window=1), "window"),
        (lambda: diagnostics.LossSpikeMonitor(on_spike="ignore"), "on_spike"),
    ],
)
def test_bad_arguments(make, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make()


def test_callbacks_need_a_bayesian_model():
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plain.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="BayesianModel"):
        plain.fit(
            np.ones((2, 2)), np.ones((2, 1)), verbose=0, callbacks=[diagnostics.LossSpikeMonitor()]
        )
