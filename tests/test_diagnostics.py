"""Gradient diagnostics and the loss-spike monitor."""

import csv
import json
from pathlib import Path

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
    row = diagnostics.gradients._row("layer", "group", g, g, float(tf.reduce_sum((2 * g) ** 2)))
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


def test_gradient_snr_by_hand():
    # Three draws of a 3-parameter gradient: mean (2, 1, 0); variances (2/3, 2/3, 0).
    samples = np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [3.0, 0.0, 0.0]])
    expected = np.sqrt(2.0**2 + 1.0**2) / np.sqrt(2 / 3 + 2 / 3)
    assert diagnostics.gradients.gradient_snr(samples) == pytest.approx(expected)
    # A parameter with a tiny, steady gradient no longer inflates it (the old
    # mean of per-element ratios with a 1e-12 guard read about 1e9 here).
    steady = np.array([[1.0, 1e-9], [-1.0, 1e-9]])
    assert diagnostics.gradients.gradient_snr(steady) == pytest.approx(1e-9, rel=1e-6)
    assert diagnostics.gradients.gradient_snr(np.ones((2, 3))) == float("inf")
    assert diagnostics.gradients.gradient_snr(np.zeros((2, 3))) is None


def test_report_snr_is_gradient_snr_of_the_draws(monkeypatch):
    model, (x, y) = _model(), _batch()
    seen = []
    real = diagnostics.gradients.gradient_snr

    def spy(samples):
        seen.append(np.asarray(samples))
        return real(samples)

    monkeypatch.setattr(diagnostics.gradients, "gradient_snr", spy)
    report = diagnostics.gradient_contributions(model, _elbo(100), x, y, num_samples=3)
    assert seen and all(s.shape[0] == 3 for s in seen)
    # The total row is computed last, over every parameter.
    assert report.total.snr == pytest.approx(real(seen[-1]))
    assert seen[-1].shape[1] == sum(int(np.prod(v.shape)) for v in model.trainable_variables)


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
    # Two Bayesian layers with one Bayesian weight each, at three records.
    with open(tmp_path / "posterior.csv") as handle:
        posterior = list(csv.DictReader(handle))
    assert len(posterior) == 3 * 2
    last = {row["layer"]: row for row in posterior if row["step"] == "2"}
    scales = {r.layer: r.median_scale for r in diagnostics.posterior_scales(model)}
    for layer, row in last.items():
        np.testing.assert_allclose(float(row["median_scale"]), scales[layer], rtol=1e-6)
    has_events = any(p.name.startswith("events.out") for p in tmp_path.iterdir())
    assert has_events == diagnostics.gradient_monitor._tensorboard_available()


def test_group_rows_combine_the_layer_rows():
    model, (x, y) = _model(), _batch()
    report = diagnostics.gradient_contributions(model, _elbo(1), x, y)
    assert [g.group for g in report.groups] == [
        "posterior_loc",
        "posterior_scale",
        "bias",
        "deterministic",
    ]
    for group in report.groups:
        rows = [r for r in report.rows if r.group == group.group]
        # The norm of concatenated gradients: the root of the summed squares.
        np.testing.assert_allclose(
            group.nll_norm, np.sqrt(sum(r.nll_norm**2 for r in rows)), rtol=1e-5
        )
        np.testing.assert_allclose(
            group.kl_norm, np.sqrt(sum(r.kl_norm**2 for r in rows)), rtol=1e-5
        )
        assert group.num_params == sum(r.num_params for r in rows)
    scale = next(g for g in report.groups if g.group == "posterior_scale")
    loc = next(g for g in report.groups if g.group == "posterior_loc")
    # With N = 1 the KL dominates the scales more than the means (a ratio of
    # about 2.6 with the default Normal(0.1) prior): two figures, not one.
    assert scale.ratio > 2 * loc.ratio
    assert "all" in str(report) and report.to_dict()["groups"][1]["group"] == "posterior_scale"


def test_posterior_scales_against_softplus_and_prior_closed_forms():
    mixture = bs.priors.ScaleMixture(0.25, 1.0, 0.01)
    inputs = keras.Input((5,))
    h = bs.layers.DenseFlipout(
        8, posterior_scale_init=0.03, scale_multiplier=7.0, prior=mixture, name="first"
    )(inputs)
    outputs = bs.layers.DenseReparameterization(1, prior=0.5, bayesian_bias=True, name="second")(h)
    model = keras.Model(inputs, outputs)
    first = model.get_layer("first")
    rho = np.random.default_rng(0).normal(-0.5, 0.2, size=(5, 8)).astype("float32")
    first.kernel_rho.assign(rho)
    rows = {(r.layer, r.weight): r for r in diagnostics.posterior_scales(model)}
    assert set(rows) == {("first", "kernel"), ("second", "kernel"), ("second", "bias")}
    row = rows[("first", "kernel")]
    np.testing.assert_allclose(row.median_scale, np.median(np.log1p(np.exp(7.0 * rho))), rtol=1e-5)
    assert row.initial_scale == 0.03 and row.scale_multiplier == 7.0 and row.num_weights == 40
    # The mixture's standard deviation: sqrt(pi s1^2 + (1 - pi) s2^2).
    np.testing.assert_allclose(row.prior_scale, np.sqrt(0.25 + 0.75 * 1e-4), rtol=1e-5)
    assert rows[("second", "bias")].prior_scale == pytest.approx(0.5)
    default = bs.layers.DenseFlipout(1).posterior_scale_init
    assert rows[("second", "kernel")].median_scale == pytest.approx(default, rel=1e-4)


def _fit_with_diagnostics(scale_multiplier, epochs, lr=1e-3):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5,))
    scales = {"posterior_scale_init": 1e-3, "scale_multiplier": scale_multiplier}
    h = bs.layers.DenseFlipout(16, activation="tanh", seed=1, name="hidden", **scales)(inputs)
    outputs = bs.layers.DenseFlipout(1, seed=2, name="out", **scales)(h)
    model = bs.BayesianModel(inputs, outputs)
    x, y = _batch(64)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=_elbo(64))
    callback = diagnostics.GradientDiagnostics(every_n_steps=25)
    snapshots = {}

    class Snapshot(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(self.model.optimizer.iterations.numpy()) - 1
            snapshots[step] = self.model.get_layer("hidden").kernel_rho.numpy().copy()

    history = model.fit(
        x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=[callback, Snapshot()]
    )
    return callback, history, snapshots


def test_callback_flags_scales_dragged_at_the_optimizer_cap(caplog):
    # A tiny data set (N = 64): the KL pulls every scale up, and with rho ~
    # log(sigma) Adam can raise it by only ~lr per step.
    with caplog.at_level("WARNING", logger="bayesseg.diagnostics"):
        callback, history, snapshots = _fit_with_diagnostics(1.0, epochs=25)
    assert callback.warnings and "moving at" in callback.warnings[-1]
    assert "hidden/kernel" in callback.warnings[-1]
    assert any("optimizer's per-step cap" in r.message for r in caplog.records)
    last, previous = callback.records[-1], callback.records[-2]
    row = next(r for r in last["posterior"] if r["layer"] == "hidden")
    # Drift against the snapshots taken by an independent callback.
    moved = np.median(np.abs(snapshots[last["step"]] - snapshots[previous["step"]]))
    expected = moved / ((last["step"] - previous["step"]) * 1e-3)
    np.testing.assert_allclose(row["drift"], expected, rtol=1e-4)
    assert row["drift"] > 0.5
    assert row["initial_scale"] == pytest.approx(1e-3)
    assert row["prior_scale"] == pytest.approx(0.1)  # the default prior
    assert {
        "grad_kl_nll_ratio_loc",
        "grad_kl_nll_ratio_scale",
        "posterior_scale_median",
        "posterior_scale_drift",
    } <= set(history.history)
    groups = {g["group"]: g for g in last["groups"]}
    assert groups["posterior_scale"]["ratio"] > groups["posterior_loc"]["ratio"]


@pytest.mark.slow
def test_callback_is_quiet_once_the_scales_settle():
    # The same problem with the scales 50x faster (and lr 3e-3): they reach
    # their optimum within ~150 steps and then only jitter around it.
    callback, history, _ = _fit_with_diagnostics(50.0, epochs=25, lr=3e-3)
    assert callback.warnings == []
    assert history.history["posterior_scale_drift"][-1] < 0.25
    assert history.history["posterior_scale_median"][-1] > 0.01


def test_callback_warns_when_scales_stay_at_their_start():
    callback = diagnostics.GradientDiagnostics(min_steps_for_warning=10)
    callback.records = [
        {
            "step": 200,
            "posterior": [
                {
                    "layer": "conv",
                    "weight": "kernel",
                    "median_scale": 1.05e-3,
                    "initial_scale": 1e-3,
                    "drift": 0.01,
                }
            ],
        }
    ]
    (message,) = callback.convergence_warnings()
    assert "within 10% of their initial value: conv/kernel" in message
    # Jittering around an optimum that lies near the start is not a warning.
    callback.records[0]["posterior"][0]["drift"] = 0.12
    assert callback.convergence_warnings() == []
    callback.records[0]["posterior"][0].update(drift=0.01, median_scale=2e-3)
    assert callback.convergence_warnings() == []


def _series_model(length):
    inputs = keras.Input((length, 1), name="series")
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


def _planted_model(length):
    model = _series_model(length)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=bs.ELBO(bs.losses.WeightedBinaryCrossentropy(pos_weight=100.0), bs.kl.PerExample(160)),
    )
    return model


def _restored_planted_model(length, state):
    """A fresh planted-test model continuing from ``pretrained_planted_state``."""
    model = _planted_model(length)
    weights, optimizer_state = state
    model.set_weights(weights)
    model.optimizer.build(model.trainable_variables)
    for variable, value in zip(model.optimizer.variables, optimizer_state, strict=True):
        variable.assign(value)
    return model


@pytest.fixture(scope="module")
def pretrained_planted_state():
    """The planted-elements test's pre-training on clean data (p ~ 0.01 on plain
    noise), run once for both of its cases: the weights (the layers' noise
    counters included) and Adam's state (its 60 steps included), from which
    each case continues exactly as after 3 epochs of its own. Seeded: an
    unseeded initialisation and shuffle made the planted batch's size vary
    from run to run, and with it whether it crossed the rule's 10x. Seeds
    1-3 pre-train the clean loss to 0.09-0.12, where the planted batch is
    12-15x it; seed 0 stops at 0.15, where it is 7.9x: a batch the
    documented rule rightly leaves alone, so not this test's case."""
    keras.utils.set_random_seed(1)
    model = _planted_model(64)
    clean_x, clean_y = _series(160, 64, seed=1)
    model.fit(clean_x, clean_y, batch_size=8, epochs=3, verbose=0)
    return model.get_weights(), [np.array(v.numpy()) for v in model.optimizer.variables]


@pytest.mark.slow
@pytest.mark.parametrize("planted", [True, False])
def test_spike_monitor_names_planted_elements(planted, pretrained_planted_state, tmp_path):
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
    # Pre-trained on clean data so the model predicts p ~ 0.01 on plain noise.
    model = _restored_planted_model(length, pretrained_planted_state)
    assert int(model.optimizer.iterations.numpy()) == 3 * 20
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


@pytest.fixture(scope="module")
def pretrained_tagger_weights():
    """A series tagger trained on clean data: it predicts p ~ 0.01 on plain noise."""
    length, batch = 64, 8
    keras.utils.set_random_seed(0)
    model = _series_model(length)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=bs.ELBO(bs.losses.WeightedBinaryCrossentropy(pos_weight=100.0), bs.kl.PerExample(192)),
    )
    clean_x, clean_y = _series(160, length, seed=1)
    model.fit(clean_x, clean_y, batch_size=batch, epochs=3, verbose=0)
    return model.get_weights()


# Dataset rows given a mislabelled positive (row -> timestep) where the input is
# plain noise (no row of _series(192, 64, seed=0) with i % 5 != 0 is anomalous).
_PLANTED = {101: 12, 163: 47}


@pytest.mark.slow
@pytest.mark.parametrize("source", ["arrays", "dataset"])
def test_spike_monitor_names_planted_dataset_rows(source, pretrained_tagger_weights, tmp_path):
    # A 24-step run at the default window (50) and min_history (10): the steps
    # that hold a planted row spike, and the record names the row by its id.
    length, batch, n = 64, 8, 192
    x, y = _series(n, length, seed=0)
    for row, t in _PLANTED.items():
        assert y[row].sum() == 0
        y[row, t] = 1.0
    ids = np.arange(n)
    keras.utils.set_random_seed(0)

    def shuffled(seed):
        # The order in which fit sees the rows: a permutation of our own
        # (arrays), or tf.data's seeded shuffle (read back from the data set).
        if source == "arrays":
            order = np.random.default_rng(seed).permutation(n)
            return order, {"x": {"series": x[order], "example_id": ids[order]}, "y": y[order]}
        dataset = (
            tf.data.Dataset.from_tensor_slices(({"series": x, "example_id": ids}, y))
            .shuffle(n, seed=seed, reshuffle_each_iteration=False)
            .batch(batch)
        )
        return np.concatenate([b["example_id"].numpy() for b, _ in dataset]), {"x": dataset}

    # The first shuffle that puts both planted rows after min_history (10 steps).
    for seed in range(100):
        order, data = shuffled(seed)
        where = {row: divmod(int(np.flatnonzero(order == row)[0]), batch) for row in _PLANTED}
        if min(step for step, _ in where.values()) >= 10:
            break

    def run(**monitor_kwargs):
        keras.utils.set_random_seed(0)
        model = _series_model(length)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),  # fresh moments: small steps
            loss=bs.ELBO(
                bs.losses.WeightedBinaryCrossentropy(pos_weight=100.0), bs.kl.PerExample(n)
            ),
        )
        model.set_weights(pretrained_tagger_weights)
        monitor = diagnostics.LossSpikeMonitor(**monitor_kwargs)
        fit_kwargs = {"batch_size": batch} if source == "arrays" else {}
        model.fit(**data, epochs=1, shuffle=False, verbose=0, callbacks=[monitor], **fit_kwargs)
        return monitor

    # One mislabelled step at p ~ 0.1 among a batch's 512 elements lifts this
    # toy's loss only 3-5x (z ~ 10-15): under the default min_ratio of 10 (set
    # for long series, where it jumps by orders of magnitude, and above the 7x
    # steps of true anomalies in the clean anomaly demo), so this run uses 2.
    if source == "arrays":
        assert run().spikes == []
    monitor = run(save_dir=str(tmp_path), min_ratio=2.0)
    assert (monitor.window, monitor.min_history) == (50, 10)
    # Exactly the steps that hold a planted row, and nothing else.
    assert sorted(s["step"] for s in monitor.spikes) == sorted({s for s, _ in where.values()})
    for spike in monitor.spikes:
        step = spike["step"]
        planted_here = {row for row, (s, _) in where.items() if s == step}
        top = spike["top_elements"][: len(planted_here)]
        # The top elements name the planted rows by dataset id, at the planted
        # timestep, with their batch position as fit saw it.
        assert {e["id"] for e in top} == planted_here
        for e in top:
            assert e["position"] == [_PLANTED[e["id"]]]
            assert e["example"] == where[e["id"]][1]
            assert e["index"] == [e["example"], *e["position"]]
            assert e["label"] == 1.0 and e["probability_of_label"] < 0.25
        assert {e["id"] for e in spike["top_examples"][: len(planted_here)]} == planted_here
        # The batch's ids are order[step * batch: ...]: the rows fit saw.
        saved = np.load(tmp_path / f"spike_{step}.npz")
        np.testing.assert_array_equal(saved["ids"], order[step * batch : (step + 1) * batch])
        assert spike["baseline_median"] == spike["loss_median_before"]
        assert 2 <= spike["ratio_to_baseline"] < 10


def test_spike_monitor_without_ids_records_batch_positions():
    length, batch = 32, 4
    x, y = _series(8, length, seed=2)
    model = _series_model(length)
    model.compile(
        optimizer=keras.optimizers.SGD(1e-3),
        loss=bs.ELBO(bs.losses.WeightedBinaryCrossentropy(pos_weight=100.0), bs.kl.PerExample(8)),
    )
    # One mislabelled step among 128: 1.2x the baseline, so min_ratio=1 (z alone).
    monitor = diagnostics.LossSpikeMonitor(threshold=3.0, window=3, min_ratio=1.0)
    clean = np.zeros_like(y)
    model.fit(
        np.concatenate([x] * 2),
        np.concatenate([clean] * 2),
        batch_size=batch,
        verbose=0,
        shuffle=False,
        callbacks=[monitor],
    )
    assert monitor.spikes == []
    bad_y = clean[:batch].copy()
    bad_y[2, 5] = 1.0
    model.fit(x[:batch], bad_y, batch_size=batch, shuffle=False, verbose=0, callbacks=[monitor])
    (spike,) = monitor.spikes
    first = spike["top_elements"][0]
    assert (first["example"], first["position"], first["id"]) == (2, [5], None)
    assert spike["top_examples"][0] == {
        "example": 2,
        "id": None,
        "loss": spike["per_example_loss"][2],
    }


@pytest.mark.slow
def test_spike_monitor_min_history_starts_detection():
    # A constant loss history of k steps, then a jump: flagged once k >= min_history.
    hook_monitor = diagnostics.LossSpikeMonitor(window=50, min_history=4)
    assert hook_monitor.min_history == 4
    assert diagnostics.LossSpikeMonitor(window=5).min_history == 5  # capped at window
    length, batch = 32, 4
    x, y = _series(4, length, seed=3)
    clean = np.zeros_like(y)
    bad_y = clean.copy()
    bad_y[:, :8] = 1.0
    for history, flagged in [(3, False), (4, True)]:
        model = _series_model(length)
        model.compile(
            optimizer=keras.optimizers.SGD(0.0),
            loss=bs.ELBO(
                bs.losses.WeightedBinaryCrossentropy(pos_weight=100.0), bs.kl.PerExample(4)
            ),
        )
        monitor = diagnostics.LossSpikeMonitor(window=50, min_history=4, min_ratio=1.0)
        xs = np.concatenate([x] * (history + 1))
        ys = np.concatenate([clean] * history + [bad_y])
        model.fit(xs, ys, batch_size=batch, shuffle=False, verbose=0, callbacks=[monitor])
        assert [s["step"] for s in monitor.spikes] == ([history] if flagged else [])


@pytest.mark.slow
def test_spike_monitor_is_quiet_on_the_clean_anomaly_demo():
    # `bayesseg demo --task anomaly`'s own data, windows, model and compile at a
    # small size (160 series of 512 steps, windows of 256, 2 epochs), with a
    # default monitor: nothing is flagged from step 10 on. The full demo
    # reports its monitor's flags in report.json (none at 4096 steps:
    # docs/lstm.md); before the windowed recipe, 1280x weights held steps at
    # z > 6 that only the default min_ratio left unflagged (docs/diagnostics.md).
    from bayesseg.cli.anomaly import _anomaly_data, series_config
    from bayesseg.cli.demo import _apply_task_defaults
    from bayesseg.cli.parser import build_parser

    args = build_parser().parse_args(
        ["demo", "--task", "anomaly", "--num-images", "160", "--length", "512", "--epochs", "2"]
    )
    _apply_task_defaults(args)
    keras.utils.set_random_seed(args.seed)
    x, y, _, _, _, _ = _anomaly_data(args)
    xw, yw = bs.data.event_windows(x, y, 256, seed=args.seed)
    counts = bs.imbalance.count_classes(yw, num_classes=2)
    model, weights, _ = bs.recipes.build_series_model(
        series_config(args), x.shape[-1], counts, len(xw)
    )
    assert 10 < weights[1] / weights[0] < 100  # inverse-sqrt weights on the windows
    monitor = diagnostics.LossSpikeMonitor()
    recorded = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            recorded.append(monitor._hook.state.last.numpy()[:3])  # loss, median, z

    model.fit(
        {"series": xw, "example_id": np.arange(len(xw))},
        yw,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
        callbacks=[monitor, Record()],
    )
    assert len(recorded) == -(-len(xw) // args.batch_size) * args.epochs
    assert monitor.spikes == []
    loss, median, _ = np.array(recorded)[10:].T
    assert (loss / median).max() < 10


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
        (lambda: diagnostics.GradientDiagnostics(drift_warning=0), "drift_warning"),
        (lambda: diagnostics.GradientDiagnostics(drift_warning=True), "drift_warning"),
        (
            lambda: diagnostics.GradientDiagnostics(min_steps_for_warning=1.5),
            "min_steps_for_warning",
        ),
        (lambda: diagnostics.LossSpikeMonitor(threshold=-1), "threshold"),
        (lambda: diagnostics.LossSpikeMonitor(window=1), "window"),
        (lambda: diagnostics.LossSpikeMonitor(on_spike="ignore"), "on_spike"),
        (lambda: diagnostics.LossSpikeMonitor(min_history=2), "min_history"),
        (lambda: diagnostics.LossSpikeMonitor(min_history=True), "min_history"),
        (lambda: diagnostics.LossSpikeMonitor(id_key=""), "id_key"),
        (lambda: diagnostics.LossSpikeMonitor(min_tail_ratio=0.5), "min_tail_ratio"),
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


# --------------------------------------------------------------------------
# The spike rule on recorded traces (benchmarks/bench_spike_rule.py)
# --------------------------------------------------------------------------
TRACES = Path(__file__).resolve().parents[1] / "benchmarks" / "spike_traces"


def _alarms(trace, min_history=10, **rule):
    """The steps the default rule (or ``rule``'s overrides) flags in a recorded trace."""
    from bayesseg.diagnostics.spikes import (
        DEFAULT_MIN_SPREAD,
        DEFAULT_MIN_TAIL_RATIO,
        DEFAULT_THRESHOLD,
        spike_rule,
    )

    options = {
        "threshold": DEFAULT_THRESHOLD,
        "min_ratio": 10.0,
        "min_spread": DEFAULT_MIN_SPREAD,
        "min_tail_ratio": DEFAULT_MIN_TAIL_RATIO,
        **rule,
    }
    step, _, _, z, ratio, spread, tail = np.asarray(trace).T
    flagged = np.asarray(spike_rule(z, ratio, spread, tail, **options)) & (
        np.arange(len(step)) >= min_history
    )
    return step[flagged].astype(int).tolist()


CLEAN_TRACES = sorted(
    str(p.relative_to(TRACES).with_suffix("")) for p in TRACES.rglob("*_seed*.npz")
)
# Real runaways of the 8-class demo at its 1e-2 peak rate with the posterior
# scales' multiplier at 20 (the recipe now uses 2): with the reparameterization
# estimator on 3840 images (seeds 1, 2) and with Flipout on 2560 (seed 0).
DIVERGED = json.loads((TRACES / "diverged" / "onset.json").read_text())


def test_every_demo_task_has_recorded_clean_traces():
    # 5 seeds per demo task at its defaults; the multiclass demo's earlier
    # recipe (Flipout, 1280 images: 7 seeds, the rule's tail condition was
    # chosen on 0-4) is kept in flipout_1280/.
    runs = [name.rsplit("_seed", 1)[0] for name in CLEAN_TRACES]
    assert {run: runs.count(run) for run in set(runs)} == {
        "lesion": 5,
        "multiclass": 5,
        "anomaly": 5,
        "flipout_1280/multiclass": 7,
    }


@pytest.mark.parametrize("name", CLEAN_TRACES or ["missing"])
def test_spike_rule_stays_quiet_on_clean_demo_runs(name):
    # Every demo task at its defaults: at most 1 alarm per 200 steps.
    trace = np.load(TRACES / f"{name}.npz")["trace"]
    assert len(trace) >= 200
    assert len(_alarms(trace)) <= len(trace) / 200, _alarms(trace)


@pytest.mark.parametrize(
    "kind",
    ["flat", "swapped", "corrupted", "whole_series", "unet_patch", "flipout_1280/unet_patch"],
)
def test_spike_rule_catches_each_planted_bad_batch(kind):
    # A demo's training with one bad batch in its 6th epoch (the tagger on
    # whole series: its 9th): the rule flags that step, and at most 1 other
    # per 200 steps.
    folder, _, kind = kind.rpartition("/")
    planted = json.loads((TRACES / folder / "planted.json").read_text())[kind]
    trace = np.load(TRACES / folder / f"planted_{kind}.npz")["trace"]
    flagged = _alarms(trace)
    assert planted in flagged
    assert len(flagged) - 1 <= len(trace) / 200, flagged


@pytest.mark.parametrize("name", sorted(DIVERGED))
def test_spike_rule_flags_a_real_divergence_at_its_first_step(name):
    # The loss, 0.015-0.025 for the 200 steps before, reached 3e7, 2e4 and
    # 3e3 within 100 steps and stayed 8-40x its earlier median for 200,
    # while the KL term rose 20-50x (the scales running away). The rule
    # flags the episode's first step, and more steps than a clean run may
    # have (the clean recipe's traces stay under 1 per 200, above).
    onset = DIVERGED[name]
    trace = np.load(TRACES / "diverged" / f"{name}.npz")["trace"]
    loss = trace[:, 1]
    at = int(np.flatnonzero(trace[:, 0] == onset)[0])
    assert loss[at : at + 100].max() > 1e4 * np.median(loss[at - 200 : at])
    assert np.median(loss[at : at + 200]) > 5 * np.median(loss[at - 200 : at])
    assert onset in _alarms(trace)
    assert len(_alarms(trace)) > len(trace) / 200


def test_the_diluted_mislabelled_batch_is_caught_by_its_spread_and_tail_not_its_level():
    # The case users report: a tagger trained on whole 1024-step series with
    # pos_weight 100, one batch with 4 normal steps per series labelled
    # anomalous, after 160 clean steps. The jump is 5x the median at z 9.8,
    # spread over 0.91 of the batch, and lifts the largest 1% of element
    # losses 15x: under min_ratio (the level rule, z > 6 and 10x, misses
    # it), flagged by its spread and tail.
    planted = json.loads((TRACES / "planted.json").read_text())["whole_series"]
    trace = np.load(TRACES / "planted_whole_series.npz")["trace"]
    row = trace[trace[:, 0] == planted][0]
    assert row[3] > 8 and row[4] < 10 and row[5] > 0.9 and row[6] > 10  # z, ratio, spread, tail
    assert planted not in _alarms(trace, threshold=6.0, min_spread=np.inf)
    assert _alarms(trace) == [planted]


def test_the_tail_tells_a_mislabelled_batch_from_a_batch_worse_everywhere():
    # Multiclass seed 3 (the earlier Flipout recipe) at its peak learning
    # rate: whole clean batches jump 3-8x at z 8-16 with spread 0.6-0.94,
    # like the diluted mislabelled batch, but their largest element losses
    # rise at most 6.4x. The rule of the previous release (no tail
    # condition) flagged 17 of its steps.
    trace = np.load(TRACES / "flipout_1280" / "multiclass_seed3.npz")["trace"]
    before = _alarms(trace, min_tail_ratio=1.0)
    assert len(before) == 17
    rows = trace[np.isin(trace[:, 0], before)]
    assert np.all(rows[:, 3] > 8) and np.all(rows[:, 5] >= 0.5) and np.all(rows[:, 4] < 10)
    assert rows[:, 6].max() < 6.5
    assert _alarms(trace) == []


def test_element_summary_and_tail_ratio_by_hand():
    from bayesseg.diagnostics.spikes import element_summary, tail_ratio_to_baseline

    rng = np.random.default_rng(0)
    losses = rng.exponential(size=(4, 250)).astype("float32")  # 1000 elements
    mean, top = element_summary(losses, 0.01)
    assert float(mean) == pytest.approx(losses.mean(), rel=1e-6)
    assert float(top) == pytest.approx(np.sort(losses, axis=None)[-10:].mean(), rel=1e-6)
    # ceil: 0.25% of 1000 is 2.5 -> the 3 largest; never fewer than one.
    assert float(element_summary(losses, 0.0025)[1]) == pytest.approx(
        np.sort(losses, axis=None)[-3:].mean(), rel=1e-6
    )
    assert float(element_summary(losses, 1e-9)[1]) == pytest.approx(losses.max())
    history = np.array([1.0, 4.0, 2.0, 3.0], "float32")  # median 2.5
    assert float(tail_ratio_to_baseline(25.0, history)) == pytest.approx(10.0)


def test_step_statistics_by_hand():
    from bayesseg.diagnostics.spikes import step_statistics

    history = np.array([1.0, 1.2, 0.8, 1.0, 1.1], "float32")  # median 1.0, MAD 0.1
    per_example = np.array([0.5, 0.5, 3.5, 3.5], "float32")
    median, z, ratio, spread = step_statistics(2.0, history, per_example, 0.5)
    assert float(median) == pytest.approx(1.0)
    assert float(z) == pytest.approx((2.0 - 1.0) / (1.4826 * 0.1 + 1e-12 + 1e-3), rel=1e-5)
    assert float(ratio) == pytest.approx(2.0)
    # Baseline NLL = 1.0 - 0.5; excesses (0, 0, 3, 3): spread (6^2) / (4 * 18) = 0.5.
    assert float(spread) == pytest.approx(0.5)
    none = step_statistics(2.0, history, np.zeros(4, "float32"), 0.5)[3]
    assert float(none) == 0.0


@pytest.mark.slow
def test_spike_monitor_flags_a_batch_whose_every_example_is_mislabelled(
    pretrained_planted_state,
):
    # One mislabelled step in every series of batch 15 (the spread path: the
    # ratio path is switched off), and the record names those steps.
    length, batch = 64, 8
    x, y = _series(160, length, seed=0)
    planted_at = 15
    bad = []
    for i in range(batch):
        row = planted_at * batch + i
        t = 20 + 3 * i
        if y[row, t] == 0:
            y[row, t] = 1.0
            bad.append((i, t))
    model = _restored_planted_model(length, pretrained_planted_state)
    monitor = diagnostics.LossSpikeMonitor(window=10, min_ratio=1e9, min_spread=0.5)
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    assert [s["step"] for s in monitor.spikes] == [3 * 20 + planted_at]
    (spike,) = monitor.spikes
    assert spike["spread"] >= 0.5 and spike["tail_ratio"] >= 10
    assert {tuple(e["index"]) for e in spike["top_elements"][: len(bad)]} == set(bad)
    assert spike["top_elements_loss_share"] > 0.5
    assert len(monitor.trace) == 20 and monitor.trace[planted_at][0] == 3 * 20 + planted_at
    assert monitor.trace[planted_at][6] == pytest.approx(spike["tail_ratio"])
