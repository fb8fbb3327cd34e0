"""The series recipe and its public pieces: the generator, the rolling z-score, event
windows over ragged series, the deterministic tagger, the recipe and ``train --task series``."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import bayesseg as bs
from bayesseg.cli import main
from bayesseg.data.synthetic import LEVEL_LABEL_STEPS, MISSING_BEAT_LABEL_STEPS
from bayesseg.recipes import SeriesConfig, predict_series, split_series, train_series


# --------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------
def _runs(labels):
    edges = np.diff(np.concatenate([[0], labels.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


@pytest.mark.parametrize(
    ("kind", "steps"),
    [("point", 1), ("level", LEVEL_LABEL_STEPS), ("missing_beat", MISSING_BEAT_LABEL_STEPS)],
)
def test_sensor_series_label_extents_and_what_changes(kind, steps):
    x, y = bs.data.synthetic_sensor_series(6, events_per_series=(3, 3), kinds=(kind,), seed=4)
    # The same series without anomalies: same seed, same background draws up to the anomaly.
    for xi, yi in zip(x, y, strict=True):
        runs = _runs(yi)
        assert len(runs) == 3 and all(stop - start == steps for start, stop in runs)
        if kind == "level":
            # The first difference at the onset stands out of the noise (0.1) on some feature.
            for start, _ in runs:
                assert np.abs(xi[start] - xi[start - 1]).max() >= 0.4
    assert 0 < np.concatenate(y).mean() < 0.01


def test_sensor_series_defaults_lengths_and_rarity():
    x, y = bs.data.synthetic_sensor_series(20, seed=0)
    assert all(3000 <= len(s) <= 5000 and s.shape[1] == 2 for s in x)
    assert [len(s) for s in x] == [len(t) for t in y]
    assert np.concatenate(y).mean() < 0.01


def test_rolling_zscore_cannot_rank_the_sensor_anomalies():
    x, y = bs.data.synthetic_sensor_series(40, seed=1)
    ap = bs.metrics.average_precision(y, bs.baselines.rolling_zscore(x))
    assert ap <= 0.35
    # ... although it finds spikes (an event F1 within the +-2 steps tolerance,
    # as the step after a spike scores as high): the detector works.
    xp, yp = bs.data.synthetic_sensor_series(20, kinds=("point",), seed=1)
    assert bs.metrics.choose_threshold(yp, bs.baselines.rolling_zscore(xp))["f1"] > 0.8


def test_sensor_series_errors():
    with pytest.raises(ValueError, match="Argument `length`"):
        bs.data.synthetic_sensor_series(2, length=100)
    with pytest.raises(ValueError, match="Argument `kinds`"):
        bs.data.synthetic_sensor_series(2, kinds=("spike",))
    with pytest.raises(ValueError, match="Argument `events_per_series`"):
        bs.data.synthetic_sensor_series(2, events_per_series=(3, 1))


# --------------------------------------------------------------------------
# The rolling z-score, against a loop written from its definition
# --------------------------------------------------------------------------
def test_rolling_zscore_equals_its_definition():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    window = 9
    d = np.diff(x, axis=0, prepend=x[:1])
    padded = np.pad(d, ((window // 2, window // 2), (0, 0)), mode="edge")
    expected = np.empty(60)
    for t in range(60):
        part = padded[t : t + window]
        mean, std = part.mean(axis=0), part.std(axis=0)
        expected[t] = np.max(np.abs(d[t] - mean) / std)
    np.testing.assert_allclose(bs.baselines.rolling_zscore(x, window), expected, rtol=1e-6)
    ragged = bs.baselines.rolling_zscore([x, x[:30]], window)
    np.testing.assert_allclose(ragged[0], expected, rtol=1e-6)
    assert ragged[1].shape == (30,)
    with pytest.raises(ValueError, match="finite"):
        bs.baselines.rolling_zscore(np.full((10, 1), np.nan))


# --------------------------------------------------------------------------
# Event windows over series of different lengths, per event
# --------------------------------------------------------------------------
def _indexed(lengths):
    x = [(i * 100_000 + np.arange(n))[:, None].astype(np.float64) for i, n in enumerate(lengths)]
    y = [np.zeros(n, np.float32) for n in lengths]
    return x, y


def test_event_windows_on_ragged_series_are_slices_with_their_labels():
    x, y = _indexed([300, 500, 200])
    y[0][250:280] = 1  # a 30-step event: one event, not 30
    y[1][10] = 1
    y[2][100:103] = 1
    xw, yw = bs.data.event_windows(x, y, 64, positive_fraction=0.5, windows_per_event=3, seed=1)
    assert xw.shape == (18, 64, 1)  # 3 events x 3 windows, as many random ones
    ids = xw[..., 0].astype(np.int64)
    series, steps = ids // 100_000, ids % 100_000
    assert (series == series[:, :1]).all() and (np.diff(steps, axis=1) == 1).all()
    for k in range(len(xw)):
        np.testing.assert_array_equal(yw[k], y[series[k, 0]][steps[k]])
    # Each event lies whole inside 3 windows, at least 64 // 8 steps from the edges
    # where the series allows.
    for s, first, last in ((0, 250, 279), (2, 100, 102)):
        inside = (series[:, 0] == s) & (steps[:, 0] <= first - 8) & (steps[:, -1] >= last + 8)
        assert inside.sum() >= 3


def test_event_windows_longer_event_than_window_still_gets_its_windows():
    x, y = _indexed([1000])
    y[0][100:600] = 1  # 500 steps, longer than the window
    xw, yw = bs.data.event_windows(x, y, 64, windows_per_event=4, seed=0)
    assert len(xw) == 8 and (yw.sum(axis=1) > 0).sum() >= 4


def test_event_windows_names_the_short_series():
    x, y = _indexed([300, 40])
    y[0][5] = 1
    with pytest.raises(ValueError, match=r"shortest series' length 40 \(series 1"):
        bs.data.event_windows(x, y, 64)
    with pytest.raises(ValueError, match="both be arrays or both be lists"):
        bs.data.event_windows(x, np.zeros((2, 300)), 64)


# --------------------------------------------------------------------------
# The deterministic tagger and the input normalisation
# --------------------------------------------------------------------------
def test_lstm_tagger_is_the_bayesian_taggers_twin():
    kwargs = {"units": (6,), "bidirectional": True, "conv_filters": (4,)}
    twin = bs.models.lstm_tagger(3, **kwargs)
    bayes = bs.models.bayesian_lstm_tagger(3, **kwargs)
    for name in ("conv0", "logits"):
        loc = bayes.get_layer(name).posterior_variables()["kernel"].loc
        assert tuple(twin.get_layer(name).kernel.shape) == tuple(loc.shape)
    assert [layer.name for layer in twin.layers] == [layer.name for layer in bayes.layers]


def test_input_normalization_equals_standardising_the_inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(2, 40, 2)).astype("float32")
    mean, std = np.array([5.0, 4.0]), np.array([3.0, 2.0])
    normalized = bs.models.lstm_tagger(2, units=(4,), input_normalization=(mean, std))
    plain = bs.models.lstm_tagger(2, units=(4,))
    for layer in plain.layers:
        layer.set_weights(normalized.get_layer(layer.name).get_weights())
    np.testing.assert_allclose(
        normalized.predict(x, verbose=0),
        plain.predict(((x - mean) / std).astype("float32"), verbose=0),
        rtol=1e-4,
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="input_normalization"):
        bs.models.lstm_tagger(2, input_normalization=([0.0], [1.0]))


# --------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------
def test_series_config_checks_and_round_trips():
    config = SeriesConfig(window=64, units=[8, 8], bayesian=False)
    assert config.units == (8, 8)
    assert SeriesConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="Argument `class_weights`"):
        SeriesConfig(class_weights="sqrt")
    with pytest.raises(ValueError, match="Argument `units`"):
        SeriesConfig(units=())
    with pytest.raises(ValueError, match="Argument `values`"):
        SeriesConfig.from_dict({"windw": 3})


def test_split_series_is_stratified_disjoint_and_seeded():
    y = [np.ones(5) if i < 10 else np.zeros(5) for i in range(100)]
    train, val = split_series(y, val_fraction=0.2, seed=3)
    assert len(val) == 20 and not set(train) & set(val) and len(train) + len(val) == 100
    assert sum(i < 10 for i in val) == 2  # the share of series with events is kept
    np.testing.assert_array_equal(val, split_series(y, val_fraction=0.2, seed=3)[1])
    with pytest.raises(ValueError, match="at least 2 series with an event"):
        split_series([np.zeros(5)] * 20)


def test_predict_series_of_a_per_step_model_is_exact_at_every_step():
    # A model whose output at a step depends on that step only: windows and
    # their blending must give each step exactly its own probability.
    model = keras.Sequential([keras.Input((None, 2)), keras.layers.Dense(1, name="logits")])
    rng = np.random.default_rng(1)
    series = [rng.normal(size=(n, 2)).astype("float32") for n in (300, 97, 1000)]
    out = predict_series(model, series, num_samples=2, window=128)
    for s, p in zip(series, out, strict=True):
        logits = model.predict(s[None], verbose=0)[0, :, 0]
        expected = 1.0 / (1.0 + np.exp(-logits))
        np.testing.assert_allclose(p.prob, expected, rtol=1e-5, atol=1e-6)
        entropy = -(expected * np.log(expected) + (1 - expected) * np.log1p(-expected))
        np.testing.assert_allclose(p.aleatoric, entropy, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(p.epistemic, 0.0, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_series():
    return bs.data.synthetic_sensor_series(30, length=(400, 600), events_per_series=(1, 3), seed=2)


_TINY = {"window": 96, "epochs": 1, "units": (4,), "conv_filters": (4,), "num_samples": 2}


@pytest.mark.slow
def test_train_series_threshold_is_the_best_on_its_validation_series(tiny_series, tmp_path):
    x, y = tiny_series
    run = train_series(x, y, SeriesConfig(**_TINY))
    xv, yv = [x[i] for i in run.val_index], [y[i] for i in run.val_index]
    assert len(run.val_index) == 8 and any(t.any() for t in yv)
    # The saved decision equals choose_threshold on the run's own validation predictions.
    scores = [p.prob for p in run.predict(xv)]
    if run.threshold is not None:
        chosen = bs.metrics.choose_threshold(yv, scores)
        # Monte Carlo draws differ between calls: the chosen thresholds agree closely.
        assert chosen["f1"] == pytest.approx(run.decision["validation"]["f1"], abs=0.15)
    run.save(tmp_path, {"note": 1})
    loaded = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    metadata = json.loads((tmp_path / "model.json").read_text())
    assert metadata["task"] == "series" and metadata["note"] == 1
    assert metadata["config"] == SeriesConfig(**_TINY).to_dict()
    np.testing.assert_allclose([w.numpy() for w in loaded.weights][0], run.model.weights[0].numpy())


# --------------------------------------------------------------------------
# bayesseg train --task series
# --------------------------------------------------------------------------
def _write(folder, x, y, csv_every=0, label_column=None):
    (folder / "series").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        if csv_every and i % csv_every == 0:
            columns = [f"f{k}" for k in range(xi.shape[1])]
            data = xi
            if label_column:
                columns.append(label_column)
                data = np.column_stack([xi, yi])
            np.savetxt(
                folder / "series" / f"s{i:02d}.csv",
                data,
                delimiter=",",
                header=",".join(columns),
                comments="",
                fmt="%.7g",
            )
        else:
            np.save(folder / "series" / f"s{i:02d}.npy", xi)
        np.save(folder / "labels" / f"s{i:02d}.npy", yi)


_CLI = ["--window", "96", "--epochs", "1", "--base-filters", "2", "--quiet"]


def _train_series_argv(tmp_path, *extra):
    """``bayesseg train --task series`` on ``tmp_path``'s series/ and labels/, into run/."""
    return [
        "train",
        "--task",
        "series",
        "--images",
        str(tmp_path / "series"),
        "--masks",
        str(tmp_path / "labels"),
        "--out",
        str(tmp_path / "run"),
        *extra,
    ]


@pytest.mark.slow
def test_train_task_series_writes_a_model_predict_applies(tiny_series, tmp_path, capsys):
    x, y = tiny_series
    _write(tmp_path, x, y, csv_every=4)
    out = tmp_path / "run"
    code = main(_train_series_argv(tmp_path, *_CLI))
    assert code == 0, capsys.readouterr().err
    metadata = json.loads((out / "model.json").read_text())
    assert metadata["task"] == "series" and metadata["config"]["window"] == 96
    assert metadata["config"]["units"] == [8] and metadata["config"]["conv_filters"] == [4, 4]
    assert len(metadata["validation_series_names"]) == 8
    assert (out / "training.csv").read_text().startswith("epoch")
    pred = tmp_path / "pred"
    code = main(
        [
            "predict",
            "--model",
            str(out / "model.keras"),
            "--images",
            str(tmp_path / "series"),
            "--masks",
            str(tmp_path / "labels"),
            "--out",
            str(pred),
            "--quiet",
            "--num-samples",
            "2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    probs = np.load(pred / "s01_prob.npy")
    assert probs.shape == (len(x[1]),) and np.all((probs >= 0) & (probs <= 1))


@pytest.mark.slow
def test_train_task_series_reads_labels_from_a_csv_column(tiny_series, tmp_path, capsys):
    x, y = tiny_series
    _write(tmp_path, x, y, csv_every=1, label_column="anomaly")
    code = main(
        [
            "train",
            "--task",
            "anomaly",
            "--images",
            str(tmp_path / "series"),
            "--label-column",
            "anomaly",
            "--out",
            str(tmp_path / "run"),
            *_CLI,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "model.json").read_text())["task"] == "series"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--depth", "3"], "--depth apply to --task segmentation"),
        (["--zscore", "dataset"], "--zscore apply to --task segmentation"),
        (["--window", "5000"], "fewer than a training window of 5000"),
        (["--val-fraction", "0"], "--val-fraction must be > 0"),
    ],
)
def test_train_task_series_errors_before_any_work(tiny_series, tmp_path, capsys, extra, message):
    x, y = tiny_series
    _write(tmp_path, x[:10], y[:10])
    code = main(_train_series_argv(tmp_path, "--quiet", *extra))
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "model.keras").exists()


def test_train_task_series_names_series_without_labels(tiny_series, tmp_path, capsys):
    x, y = tiny_series
    _write(tmp_path, x[:10], y[:10])
    (tmp_path / "labels" / "s03.npy").unlink()
    code = main(_train_series_argv(tmp_path))
    assert code == 2 and "s03.npy" in capsys.readouterr().err


# --------------------------------------------------------------------------
# docs/lstm.md's walkthrough, run as written
# --------------------------------------------------------------------------
def _walkthrough_blocks():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "lstm.md").read_text()
    section = text.split("## Your own series, end to end", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(python|bash)\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_the_own_series_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    import shlex

    monkeypatch.chdir(tmp_path)
    blocks = _walkthrough_blocks()
    assert [kind for kind, _ in blocks] == ["python", "bash", "bash", "python"]
    namespace: dict = {}
    for kind, code in blocks:
        if kind == "python":
            exec(compile(code, "docs/lstm.md", "exec"), namespace)
            continue
        for line in code.strip().splitlines():
            words = shlex.split(line)
            assert words[0] == "bayesseg"
            assert main(words[1:]) == 0, capsys.readouterr().err
    for name in ("model.keras", "model.json", "training.csv", "history.json"):
        assert (tmp_path / "run" / name).is_file()
    assert json.loads((tmp_path / "run" / "model.json").read_text())["task"] == "series"
    metrics = json.loads((tmp_path / "pred" / "metrics.json").read_text())["overall"]
    assert metrics["events"]["true_events"] > 0
    assert (tmp_path / "pred" / "pump_040_prob.npy").is_file()
    assert (tmp_path / "run-python" / "model.json").is_file()
    assert len(namespace["flags"]) == 8


# --------------------------------------------------------------------------
# train --task series: reruns, divergence, resume (bayesseg.cli.runs)
# --------------------------------------------------------------------------
def _series_args(tmp_path, *extra):
    return _train_series_argv(tmp_path, "--window", "96", "--base-filters", "2", "--quiet", *extra)


@pytest.fixture(scope="module")
def series_folder(tiny_series, tmp_path_factory):
    folder = tmp_path_factory.mktemp("series_runs")
    x, y = tiny_series
    _write(folder, x[:16], y[:16])
    return folder


@pytest.mark.slow
def test_series_rerun_of_a_finished_run_does_nothing(series_folder, tmp_path, capsys):
    import shutil

    shutil.copytree(series_folder / "series", tmp_path / "series")
    shutil.copytree(series_folder / "labels", tmp_path / "labels")
    args = _series_args(tmp_path, "--epochs", "1")
    assert main(args) == 0
    model = tmp_path / "run" / "model.keras"
    before = (model.stat().st_mtime_ns, model.read_bytes())
    run = json.loads((tmp_path / "run" / "model.json").read_text())["run"]
    assert run["finished"] and run["epochs_finished"] == 1
    assert run["strategy"]["strategy"] == "default"
    capsys.readouterr()
    assert main(args) == 0
    assert "is already trained" in capsys.readouterr().out
    assert (model.stat().st_mtime_ns, model.read_bytes()) == before
    # Other settings in the same folder: refused in one line, suggesting --overwrite.
    assert main(_series_args(tmp_path, "--epochs", "2")) == 2
    err = capsys.readouterr().err
    assert "add --overwrite" in err and "epochs 1 -> 2" in err and err.count("\n") == 1
    # Other input files: refused too.
    np.save(
        tmp_path / "labels" / "s00.npy", np.zeros_like(np.load(tmp_path / "labels" / "s00.npy"))
    )
    assert main(args) == 2 and "add --overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_series_divergence_is_one_line_and_leaves_nothing(series_folder, tmp_path, capsys):
    import shutil

    shutil.copytree(series_folder / "series", tmp_path / "series")
    shutil.copytree(series_folder / "labels", tmp_path / "labels")
    assert main(_series_args(tmp_path, "--epochs", "1", "--learning-rate", "1e6")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training diverged at epoch 1 of 1, step" in err
    assert "is not finite" in err and "nothing was saved" in err
    assert not (tmp_path / "run" / "model.json").exists()
    assert not (tmp_path / "run" / "training.csv").exists()


class _InterruptAfterSecondEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_series_interrupted_run_resumes_and_logs_each_epoch_once(
    series_folder, tmp_path, capsys, monkeypatch
):
    import csv
    import shutil

    from bayesseg.cli import train_series

    shutil.copytree(series_folder / "series", tmp_path / "series")
    shutil.copytree(series_folder / "labels", tmp_path / "labels")
    args = _series_args(tmp_path, "--epochs", "3")
    real = train_series._callbacks

    def interrupted(*a):
        callbacks, guard, recorder = real(*a)
        return [*callbacks, _InterruptAfterSecondEpoch()], guard, recorder

    monkeypatch.setattr(train_series, "_callbacks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    monkeypatch.undo()
    out = tmp_path / "run"
    assert json.loads((out / "model.json").read_text())["run"]["epochs_finished"] == 2
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming from epoch 3 of 3" in capsys.readouterr().out  # 2 of 3 finished
    with open(out / "training.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2]
    saved = json.loads((out / "model.json").read_text())
    assert saved["run"]["finished"] and saved["decision"]["correction_weights"]


@pytest.mark.slow
def test_predict_refuses_an_unfinished_series_run(series_folder, tmp_path, capsys):
    import shutil

    shutil.copytree(series_folder / "series", tmp_path / "series")
    shutil.copytree(series_folder / "labels", tmp_path / "labels")
    assert main(_series_args(tmp_path, "--epochs", "1")) == 0
    path = tmp_path / "run" / "model.json"
    metadata = json.loads(path.read_text())
    metadata["run"]["finished"] = False  # as model.json reads between two epochs
    path.write_text(json.dumps(metadata))
    code = main(
        [
            "predict",
            "--model",
            str(tmp_path / "run" / "model.keras"),
            "--images",
            str(tmp_path / "series"),
            "--out",
            str(tmp_path / "pred"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "unfinished training run" in err and err.count("\n") == 1
    assert not (tmp_path / "pred").exists()


# --------------------------------------------------------------------------
# The segmentation recipe's run object
# --------------------------------------------------------------------------
def test_train_segmentation_weights_are_balanced_and_the_run_saves(tmp_path):
    from bayesseg.recipes import SegmentationConfig, train_segmentation

    x, y = bs.data.synthetic_lesions(8, shape=(16, 16), seed=1)
    labels = y[..., 0].astype(int)
    config = SegmentationConfig(epochs=1, base_filters=2, depth=2, batch_size=4)
    run = train_segmentation(x, labels, config)
    counts = np.bincount(labels.ravel(), minlength=2)
    # balanced weights in closed form: N / (C * n_c)
    np.testing.assert_allclose(run.class_weights, counts.sum() / (2 * counts), rtol=1e-6)
    assert run.class_counts == counts.tolist() and run.config.learning_rate == 1e-3
    run.save(tmp_path)
    loaded = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    metadata = json.loads((tmp_path / "model.json").read_text())
    assert metadata["task"] == "segmentation" and metadata["config"]["class_weights"] == "balanced"
    np.testing.assert_array_equal(loaded.weights[0].numpy(), run.model.weights[0].numpy())
    assert run.predict(x[:2], num_samples=2).mean.shape == (2, 16, 16, 1)
    with pytest.raises(ValueError, match="Argument `y` must hold labels in"):
        train_segmentation(x, labels + 5, config, num_classes=2)
