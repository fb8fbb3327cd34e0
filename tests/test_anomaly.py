"""Long-series anomaly tagging: contextual anomalies, event windows, the prior shift of
windows, the tagger's bidirectional front-end and its conversion."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy import ndimage, stats

import bayesseg as bs
from bayesseg import convert
from bayesseg.data import event_windows, synthetic_anomaly_series, synthetic_event_series
from bayesseg.imbalance import prior_shift_weights, unweight_probabilities
from bayesseg.metrics import average_precision, choose_threshold, event_chance, event_f1


# --------------------------------------------------------------------------
# Synthetic contextual anomalies
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["contextual", "mixed"])
def test_contextual_kinds_keep_the_exact_counts(kind):
    x, y = synthetic_anomaly_series(30, length=1024, num_features=2, seed=3, kind=kind)
    assert x.shape == (30, 1024, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    per_series = y.sum(axis=1)
    assert sorted(set(per_series.tolist())) == [0.0, 2.0]
    assert int((per_series == 2).sum()) == 6
    # Contextual anomalies sit away from the ends (two periods of at most 40 steps).
    steps = np.nonzero(y)[1]
    assert steps.min() >= 32 and steps.max() <= 1024 - 32


def test_the_difference_zscore_finds_point_anomalies_but_not_contextual_ones():
    # The reason the contextual kind exists: a non-learned detector that finds
    # spikes and jumps ranks missing and late beats no better than chance.
    scores = {}
    for kind in ("point", "contextual"):
        x, y = synthetic_anomaly_series(60, length=1024, seed=1, kind=kind)
        scores[kind] = average_precision(y, bs.baselines.rolling_zscore(x))
    assert scores["point"] > 0.8
    assert scores["contextual"] < 0.05


def test_a_missing_beat_leaves_a_gap_in_the_pulse_train():
    # Contextual series with one anomaly each: at a missing beat the pulse
    # feature holds no peak within +-2 steps, where every due beat has one.
    x, y = synthetic_anomaly_series(
        40, length=512, seed=7, kind="contextual", anomalous_series_fraction=0.5,
        anomalies_per_series=1,
    )  # fmt: skip
    for series, step in zip(*np.nonzero(y), strict=True):
        # A late beat's label is its peak: a local maximum right there.
        local = x[series, step - 2 : step + 3, 0]
        window = x[series, step - 12 : step + 13, 0]
        peak_here = local.max() == window.max()
        # A missing beat: nothing stands out within half a period either side.
        assert peak_here or window.max() - np.median(window) < 1.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"kind": "spiky"}, "kind"), ({"kind": "mixed", "length": 399}, "length")],
)
def test_contextual_kind_errors(kwargs, name):
    with pytest.raises(ValueError, match=f"Argument `{name}`"):
        synthetic_anomaly_series(4, **{"length": 512, **kwargs})


# --------------------------------------------------------------------------
# Event windows
# --------------------------------------------------------------------------
def _indexed_series(n=6, length=200):
    # x holds series * 10_000 + step, so every window says where it came from.
    x = (np.arange(n)[:, None] * 10_000 + np.arange(length)[None, :]).astype(np.float64)
    y = np.zeros((n, length), np.float32)
    y[1, 100] = y[3, 5] = y[3, 190] = 1  # one in the middle, two near the ends
    return x[..., None], y


def test_event_windows_are_slices_with_their_labels_and_the_requested_share():
    x, y = _indexed_series()
    xw, yw = event_windows(x, y, window=32, positive_fraction=0.25, windows_per_event=5, seed=2)
    assert xw.shape == (60, 32, 1) and yw.shape == (60, 32)  # 15 event windows, 45 random
    ids = xw[..., 0].astype(int)
    series, steps = ids // 10_000, ids % 10_000
    assert (series == series[:, :1]).all() and (np.diff(steps, axis=1) == 1).all()
    np.testing.assert_array_equal(yw, y[series, steps])
    # Every event is inside 5 windows; the one in the middle at least 4 steps
    # (window // 8) from either edge, those near the series' ends shifted inwards.
    for s, t in zip(*np.nonzero(y), strict=True):
        holding = (series[:, 0] == s) & (steps[:, 0] <= t) & (steps[:, -1] >= t)
        assert holding.sum() >= 5
    middle = (series[:, 0] == 1) & (steps[:, 0] <= 100) & (steps[:, -1] >= 100)
    offsets = 100 - steps[middle, 0]  # random windows may hold it anywhere
    assert ((offsets >= 4) & (offsets <= 27)).sum() >= 5
    # At least the requested share holds an event (random windows may, too).
    assert (yw.sum(axis=1) > 0).mean() >= 0.25


def test_event_windows_are_seeded():
    x, y = _indexed_series()
    a = event_windows(x, y, 32, seed=5)
    b = event_windows(x, y, 32, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], event_windows(x, y, 32, seed=6)[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 201}, "Argument `window`"),
        ({"window": 1}, "Argument `window`"),
        ({"positive_fraction": 1.0}, "Argument `positive_fraction`"),
        ({"positive_fraction": 0.0}, "Argument `positive_fraction`"),
        ({"windows_per_event": 0}, "Argument `windows_per_event`"),
    ],
)
def test_event_windows_errors(kwargs, match):
    x, y = _indexed_series()
    with pytest.raises(ValueError, match=match):
        event_windows(x, y, **{"window": 32, **kwargs})


def test_event_windows_input_errors():
    x, y = _indexed_series()
    with pytest.raises(ValueError, match="no anomalous step"):
        event_windows(x, np.zeros_like(y), 32)
    with pytest.raises(ValueError, match="same series and steps"):
        event_windows(x, y[:, :-1], 32)
    with pytest.raises(ValueError, match="0/1"):
        event_windows(x, 2 * y, 32)
    with pytest.raises(ValueError, match="Argument `x`"):
        event_windows(x[..., 0], y, 32)


# --------------------------------------------------------------------------
# The prior shift of windows
# --------------------------------------------------------------------------
@pytest.mark.parametrize("weights", [None, [1.0, 30.0]])
def test_prior_shift_weights_give_bayes_posterior_under_the_target_prior(weights):
    # Two Gaussian classes: N(0, 1) and N(2, 1). A model trained on windows
    # (prior 1%) with class weights w predicts q ∝ w_c pi_train_c L_c(x);
    # the correction must give Bayes' posterior under the series' 0.01% prior.
    x = np.linspace(-3.0, 6.0, 50)
    likelihood = np.stack([stats.norm.pdf(x, 0, 1), stats.norm.pdf(x, 2, 1)], axis=-1)
    train, target = np.array([0.99, 0.01]), np.array([0.9999, 0.0001])
    w = np.ones(2) if weights is None else np.asarray(weights)
    q = w * train * likelihood
    q = q[:, 1] / q.sum(axis=1)
    exact = target * likelihood
    exact = exact[:, 1] / exact.sum(axis=1)
    shift = prior_shift_weights(train, target, class_weights=weights)
    np.testing.assert_allclose(unweight_probabilities(q, shift), exact, rtol=1e-9)
    # Counts work as frequencies; the weights have a mean of 1.
    np.testing.assert_allclose(prior_shift_weights(train * 7, target * 3, weights), shift)
    assert shift.mean() == pytest.approx(1.0)


def test_prior_shift_weights_errors():
    with pytest.raises(ValueError, match="Argument `target_prior`"):
        prior_shift_weights([0.5, 0.5], [1.0, 0.0])
    with pytest.raises(ValueError, match="Argument `target_prior`"):
        prior_shift_weights([0.5, 0.5], [0.3, 0.3, 0.4])
    with pytest.raises(ValueError, match="Argument `class_weights`"):
        prior_shift_weights([0.5, 0.5], [0.9, 0.1], class_weights=[1.0, -1.0])


# --------------------------------------------------------------------------
# Long events in series of different lengths
# --------------------------------------------------------------------------
def test_event_series_lengths_share_and_spacing():
    x, y = synthetic_event_series(40, length=(4096, 9000), seed=3, num_features=2)
    assert len(x) == len(y) == 40
    assert len({len(t) for t in y}) > 30  # lengths differ
    runs = []
    for xs, ys in zip(x, y, strict=True):
        assert xs.shape == (len(ys), 2) and xs.dtype == np.float32
        assert 4096 <= len(ys) <= 9000 and set(np.unique(ys)) <= {0.0, 1.0}
        # The last event is cut to the target, never below 29 steps.
        assert round(0.1 * len(ys)) <= ys.sum() <= round(0.1 * len(ys)) + 29
        edges = np.flatnonzero(np.diff(np.r_[0, ys, 0]))
        starts, stops = edges[::2], edges[1::2]
        assert starts[0] >= 32 and stops[-1] <= len(ys) - 32
        assert np.all(starts[1:] - stops[:-1] >= 32)  # at least 32 normal steps apart
        runs += list(stops - starts)
    assert min(runs) >= 29 and max(runs) <= 1500 and max(runs) > 700


def test_event_series_are_seeded_per_series_and_faults_change_the_signal():
    x3, y3 = synthetic_event_series(3, length=5000, seed=7)
    x5, y5 = synthetic_event_series(5, length=5000, seed=7)
    for i in range(3):  # series i depends on (seed, i) only
        np.testing.assert_array_equal(x3[i], x5[i])
        np.testing.assert_array_equal(y3[i], y5[i])
    # The faults are what the labels say: a local statistic separates them.
    scores = [_fault_statistic(s) for s in x5]
    assert average_precision(y5, scores) > 0.5 > np.mean(np.concatenate(y5)) + 0.3


def test_event_series_errors():
    with pytest.raises(ValueError, match="Argument `anomaly_fraction`"):
        synthetic_event_series(2, anomaly_fraction=0.6)
    with pytest.raises(ValueError, match="Argument `event_length`"):
        synthetic_event_series(2, event_length=(50, 10))
    with pytest.raises(ValueError, match="Argument `length`"):
        synthetic_event_series(2, length=(100, 5000))
    with pytest.raises(ValueError, match="Argument `length`"):
        synthetic_event_series(2, length=(6000, 5000))


def _fault_statistic(x, window=16):
    """|level - slow level| + |log local spread / usual spread|: each fault moves one of them."""
    d = x[:, 0].astype(np.float64)
    level = ndimage.uniform_filter1d(d, window)
    slow = ndimage.median_filter(d, 801, mode="nearest")
    square = ndimage.uniform_filter1d(np.diff(d, prepend=d[0]) ** 2, window)
    spread = np.sqrt(np.maximum(square, 0.0)) + 1e-3
    usual = np.median(spread)
    return np.abs(level - slow) + np.abs(np.log(spread / usual))


def test_the_chosen_threshold_on_long_events_flags_little_and_beats_chance():
    # The acceptance case of the event score: a non-learned detector's
    # threshold, chosen on validation series, flags at most twice the test
    # positive rate and beats both chance rows by at least 0.2.
    xv, yv = synthetic_event_series(12, seed=21)
    xt, yt = synthetic_event_series(12, seed=22)
    chosen = choose_threshold(yv, [_fault_statistic(s) for s in xv])
    test_scores = [_fault_statistic(s) for s in xt]
    result = event_f1(yt, test_scores, threshold=chosen["threshold"])
    positive_rate = np.mean(np.concatenate(yt))
    assert result["flagged_fraction"] <= 2 * positive_rate
    chance = event_chance(yt, rate=result["flagged_fraction"])
    assert result["f1"] >= max(chance["flag_all"]["f1"], chance["random"]["f1"]) + 0.2


# --------------------------------------------------------------------------
# The tagger's front-end, and converting Bidirectional(LSTM)
# --------------------------------------------------------------------------
def _keras_tagger(merge_mode="concat"):
    inputs = keras.Input((None, 2))
    x = keras.layers.Conv1D(4, 5, padding="same", activation="relu", name="conv0")(inputs)
    x = keras.layers.Bidirectional(
        keras.layers.LSTM(3, return_sequences=True), merge_mode=merge_mode, name="bilstm0"
    )(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="logits")(x))


def test_bidirectional_tagger_matches_keras_with_its_posterior_means():
    keras.utils.set_random_seed(0)
    model = bs.models.bayesian_lstm_tagger(
        2, units=(3,), bidirectional=True, conv_filters=(4,), conv_kernel_size=5
    )
    names = [type(layer).__name__ for layer in model.layers[1:]]
    assert names == ["Conv1DFlipout", "Bidirectional", "DenseFlipout"]
    assert len(bs.layers.bayesian_layers(model)) == 4  # conv, two directions, head
    reference = _keras_tagger()
    # The posterior means, copied into the Keras model, give its function.
    reference.get_layer("conv0").set_weights(
        [model.get_layer("conv0").kernel_loc.numpy(), model.get_layer("conv0").bias.numpy()]
    )
    for side in ("forward_layer", "backward_layer"):
        ours = getattr(model.get_layer("bilstm0"), side)
        getattr(reference.get_layer("bilstm0"), side).set_weights(
            [ours.kernel_loc.numpy(), ours.recurrent_kernel_loc.numpy(), ours.bias.numpy()]
        )
    head = model.get_layer("logits")
    reference.get_layer("logits").set_weights([head.kernel_loc.numpy(), head.bias.numpy()])
    x = np.random.default_rng(1).normal(size=(3, 17, 2)).astype("float32")
    with bs.layers.sampling_mode(model, "mean"):
        np.testing.assert_allclose(model(x), reference(x), atol=1e-5)


def test_tagger_front_end_errors():
    with pytest.raises(ValueError, match="Argument `conv_filters`"):
        bs.models.bayesian_lstm_tagger(1, conv_filters=(0,))
    with pytest.raises(ValueError, match="cannot be combined"):
        bs.models.bayesian_lstm_tagger(1, conv_filters=(4,), mask_value=0.0)
    with pytest.raises(ValueError, match="Argument `bidirectional`"):
        bs.models.bayesian_lstm_tagger(1, bidirectional="yes")


@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_to_bayesian_converts_bidirectional_lstm(merge_mode, tmp_path):
    keras.utils.set_random_seed(3)
    model = _keras_tagger(merge_mode)
    bayesian = convert.to_bayesian(model, seed=11)
    wrapper = bayesian.get_layer("bilstm0")
    assert type(wrapper) is keras.layers.Bidirectional and wrapper.merge_mode == merge_mode
    assert type(wrapper.forward_layer).__name__ == "LSTMFlipout"
    assert wrapper.backward_layer.go_backwards and not wrapper.forward_layer.go_backwards
    source = model.get_layer("bilstm0")
    for side in ("forward_layer", "backward_layer"):
        np.testing.assert_array_equal(
            getattr(wrapper, side).kernel_loc.numpy(), getattr(source, side).cell.kernel.numpy()
        )
    x = np.random.default_rng(2).normal(size=(2, 9, 2)).astype("float32")
    with bs.layers.sampling_mode(bayesian, "mean"):
        np.testing.assert_allclose(bayesian(x), model(x), atol=1e-5)
    assert float(bayesian(x).numpy().std()) > 0  # sampled: a draw, not the mean
    path = tmp_path / "converted.keras"
    bayesian.save(path)
    loaded = keras.saving.load_model(path)
    with bs.layers.sampling_mode(loaded, "mean"):
        np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)


def test_to_bayesian_keeps_bidirectional_gru_with_a_reason():
    inputs = keras.Input((None, 2))
    x = keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    with pytest.warns(UserWarning, match=r"only Bidirectional\(LSTM\) is converted"):
        bayesian = convert.to_bayesian(model)
    assert [type(layer).__name__ for layer in bayesian.layers[1:]] == [
        "Bidirectional",
        "DenseFlipout",
    ]
