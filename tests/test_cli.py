"""The ``bayesseg`` command: demo, train -> predict round trips, one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from bayesseg.cli import build_parser, main
from bayesseg.data import read_image, write_image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = ["--depth", "2", "--base-filters", "2", "--quiet"]


def _numbers(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _numbers(value)
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        yield tree


def _assert_valid_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()


@pytest.mark.slow
def test_demo_lesion_tiny(tmp_path, capsys):
    args = ["demo", "--epochs", "1", "--num-images", "8", "--size", "16"]
    args += ["--num-samples", "2", "--batch-size", "4", "--out", str(tmp_path), *TINY]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"task", "config", "data", "model", "training", "metrics", "versions"} <= set(report)
    assert {"baseline_bce", "comparison"} <= set(report)
    metrics = report["metrics"]
    assert set(metrics["per_class"]) == {"0", "1"}
    for row in metrics["per_class"].values():
        assert {"dice", "recall", "precision"} <= set(row)
        # Both classes are in the masks: Dice and recall are defined; precision is
        # None (0/0, bs.metrics.per_class_scores' rule) for a class never predicted.
        assert row["support"] > 0
        assert all(0.0 <= row[k] <= 1.0 for k in ("dice", "recall"))
        assert row["precision"] is None or 0.0 <= row["precision"] <= 1.0
        if row["precision"] is None:
            assert row["recall"] == 0.0
    for key in ("foreground_ece", "predictive_nll", "mean_epistemic", "foreground_ece_floor"):
        assert math.isfinite(metrics[key]) and metrics[key] >= 0
    corrected = metrics["corrected_for_class_weights"]
    assert {"foreground_ece", "adaptive_ece", "adaptive_ece_floor", "ece_region_pixels"} <= set(
        corrected
    )
    # An empty calibration region (possible after one epoch) is reported as null.
    assert corrected["foreground_ece"] is None or 0 <= corrected["foreground_ece"] <= 1
    assert metrics["epistemic_share"] is None or 0 <= metrics["epistemic_share"] <= 1
    assert 0.0 <= metrics["lesion_f1"]["f1"] <= 1.0
    assert set(report["comparison"]["lesion_recall_pixelwise"]) == {"weighted_elbo", "bce"}
    assert report["versions"]["keras"].startswith("3")
    assert report["config"]["epochs"] == 1
    assert (
        report["config"]["learning_rate"] == 1e-3 and report["config"]["lr_schedule"] == "constant"
    )
    assert all(math.isfinite(x) for x in _numbers(report))
    for name in ("uncertainty.png", "training.png", "gradients.png"):
        _assert_valid_png(tmp_path / name)
    out = capsys.readouterr().out
    assert "lesion recall" in out and "weighted ELBO" in out
    assert "noise floor" in out and "epistemic share" in out


@pytest.mark.slow
def test_demo_multiclass_tiny(tmp_path, capsys):
    args = ["demo", "--task", "multiclass", "--num-classes", "4", "--epochs", "1"]
    args += ["--num-images", "8", "--num-test-images", "6", "--size", "16"]
    args += ["--num-samples", "2", "--out", str(tmp_path)]
    assert main(args + TINY) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    per_class = report["metrics"]["per_class"]
    assert set(per_class) == {"0", "1", "2", "3"}
    assert "baseline_bce" not in report
    assert len(report["data"]["class_weights"]) == 4
    assert report["data"]["test_images"] == 6
    assert report["config"]["learning_rate"] == 1e-2 and report["config"]["lr_schedule"] == "cosine"
    assert all(math.isfinite(x) for x in _numbers(report))
    _assert_valid_png(tmp_path / "uncertainty.png")
    # The headline is the mean over the foreground classes present, by hand.
    present = [row for c, row in per_class.items() if c != "0" and row["support"] > 0]
    summary = report["metrics"]["foreground_classes"]
    assert summary["present"] == len(present) > 0
    assert summary["recall"] == pytest.approx(np.mean([row["recall"] for row in present]))
    assert summary["dice"] == pytest.approx(np.mean([row["dice"] for row in present]))
    lines = capsys.readouterr().out.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.startswith("bayesseg demo (multiclass)")
    )
    assert lines[header + 1].startswith(f"mean over the {len(present)} foreground classes present")
    assert f"recall {summary['recall']:.3f}, Dice {summary['dice']:.3f}" in lines[header + 1]
    assert any(line.startswith("foreground vs background: lesion-wise F1") for line in lines)


ANOMALY_TINY = ["demo", "--task", "anomaly", "--epochs", "1", "--num-images", "40"]
ANOMALY_TINY += ["--length", "448", "--window", "64", "--num-samples", "2", "--batch-size", "8"]
ANOMALY_TINY += ["--base-filters", "2"]


def _assert_nested_close(actual, expected):
    """Equal keys, numbers equal to 1e-9 (relative), at every depth of two dicts."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected)
        for key in expected:
            _assert_nested_close(actual[key], expected[key])
    else:
        assert actual == pytest.approx(expected, rel=1e-9)


@pytest.fixture(scope="module")
def anomaly_run(tmp_path_factory):
    """The tiny anomaly demo's output folder and what it printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("anomaly")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*ANOMALY_TINY, "--out", str(out)]) == 0
    return out, printed.getvalue()


@pytest.mark.slow
def test_demo_anomaly_tiny(anomaly_run):
    import bayesseg as bs
    from bayesseg.data import synthetic_anomaly_series

    out, printed = anomaly_run
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "anomaly" and report["config"]["class_weights"] == "inverse_sqrt"
    assert report["config"]["learning_rate"] == 3e-3 and report["data"]["kind"] == "mixed"
    assert report["data"]["train_series"] == 32 and report["data"]["validation_series"] == 8
    assert report["model"]["bidirectional"] and report["model"]["units"] == [8]
    metrics = report["metrics"]
    for key in ("anomaly_recall", "anomaly_f1", "anomaly_average_precision"):
        assert 0.0 <= metrics[key] <= 1.0
    # Precision is 0/0, null in JSON (bs.metrics.per_class_scores' rule), exactly
    # when nothing is flagged.
    flagged = metrics["events"]["flagged_steps"]
    assert (metrics["anomaly_precision"] is None) == (flagged == 0)
    assert all(math.isfinite(x) for x in _numbers(report))
    for name in ("uncertainty.png", "training.png", "gradients.png"):
        _assert_valid_png(out / name)
    # The windows' prior and the series' prior give the saved correction.
    data, decision = report["data"], report["decision"]
    w = np.asarray(data["class_weights"])
    window_prior = np.array([1 - data["window_anomaly_fraction"], data["window_anomaly_fraction"]])
    series_prior = np.array([1 - data["anomaly_fraction"], data["anomaly_fraction"]])
    expected = w * window_prior / series_prior
    np.testing.assert_allclose(decision["correction_weights"], expected / expected.mean())
    # The event counts are the held-out series' runs of anomalous steps (counted here).
    _, tags = synthetic_anomaly_series(
        report["data"]["test_series"], length=448, seed=10_000, kind="mixed"
    )
    onsets = np.diff(np.pad(tags > 0.5, ((0, 0), (1, 0))).astype(int), axis=1) == 1
    events = metrics["events"]
    assert events["true_events"] == onsets.sum() > 0
    labels = tags > 0.5
    assert events["positive_steps"] == labels.sum() and events["steps"] == labels.size
    # Chance rows in closed form, random flags at the tagger's own rate.
    chance = bs.metrics.event_chance(labels, rate=events["flagged_fraction"])
    _assert_nested_close(metrics["chance"], chance)
    assert "pred_events" not in events and "tp_pred" not in events and "fp" not in events
    # The z-score baseline is scored on the same series, with its own threshold.
    baseline = report["baseline_zscore"]
    assert baseline["events"]["true_events"] == events["true_events"]
    assert 0 <= baseline["anomaly_average_precision"] <= 1
    assert report["spikes"] == [] or all("step" in s for s in report["spikes"])
    assert "per step: anomaly recall" in printed and "within +-2 steps" in printed
    assert "rolling z-score detector: event F1" in printed
    assert f"flag every step {chance['flag_all']['f1']:.3f}" in printed
    saved = json.loads((out / "model.json").read_text())
    assert saved["task"] == "series" and saved["decision"] == decision
    assert bs.metrics.DEFAULT_EVENT_TOLERANCE == decision["tolerance"]


@pytest.mark.slow
def test_demo_anomaly_without_an_admissible_threshold_keeps_the_model(
    tmp_path, monkeypatch, capsys
):
    import bayesseg as bs

    real = bs.metrics.choose_threshold

    def saturated(y_true, y_score, **kwargs):  # a model whose probabilities are all 1
        ones = [np.ones_like(s) for s in y_score] if isinstance(y_score, list) else None
        return real(y_true, np.ones_like(y_score) if ones is None else ones, **kwargs)

    monkeypatch.setattr(bs.metrics, "choose_threshold", saturated)
    out = tmp_path / "run"
    assert main([*ANOMALY_TINY, "--epochs", "1", "--num-images", "24", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot separate anything" in err, err
    assert "saved in" in err and "without a threshold" in err
    assert (out / "model.keras").is_file()
    decision = json.loads((out / "model.json").read_text())["decision"]
    assert decision["threshold"] is None and len(decision["correction_weights"]) == 2
    assert not (out / "report.json").exists()
    # predict asks for a threshold rather than deciding at 0.5 silently.
    series = tmp_path / "series"
    series.mkdir()
    np.save(series / "s.npy", np.zeros(448, np.float32))
    args = ["predict", "--model", str(out / "model.keras"), "--images", str(series)]
    assert main([*args, "--out", str(tmp_path / "p"), "--num-samples", "2"]) == 2
    assert "holds no threshold" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_series_applies_the_saved_rule(tmp_path, anomaly_run, capsys):
    import keras

    import bayesseg as bs
    from bayesseg.data import synthetic_anomaly_series

    out, _ = anomaly_run
    x, y = synthetic_anomaly_series(6, length=448, seed=77, kind="mixed")
    series, labels = tmp_path / "series", tmp_path / "labels"
    series.mkdir()
    labels.mkdir()
    for i in range(len(x)):
        # (length,) and (length, 1) are both accepted.
        np.save(series / f"s{i}.npy", x[i, :, 0] if i % 2 else x[i])
        np.save(labels / f"s{i}.npy", y[i])
    preds = tmp_path / "preds"
    args = ["predict", "--model", str(out / "model.keras"), "--images", str(series)]
    args += ["--masks", str(labels), "--out", str(preds), "--num-samples", "2", "--quiet"]
    assert main(args) == 0
    manifest = json.loads((preds / "predictions.json").read_text())
    decision = json.loads((out / "model.json").read_text())["decision"]
    assert manifest["decision"]["threshold"] == decision["threshold"]
    # Decisions are the saved threshold on the corrected probabilities, and the
    # events listed are their runs.
    probs = np.stack([np.load(preds / f"s{i}_prob.npy") for i in range(len(x))])
    flags = np.stack([np.load(preds / f"s{i}_labels.npy") for i in range(len(x))])
    np.testing.assert_array_equal(flags, probs >= decision["threshold"])
    for i in range(len(x)):
        runs = manifest["events"][f"s{i}.npy"]
        marked = np.zeros(448, bool)
        for first, last in runs:
            marked[first : last + 1] = True
        np.testing.assert_array_equal(marked, flags[i].astype(bool))
    # The probabilities are the model's, corrected by the saved weights (the
    # Monte Carlo mean of two draws, so compared with the posterior-mean run
    # only loosely; the correction itself exactly, on the mean-mode output).
    model = keras.saving.load_model(out / "model.keras", compile=False)
    with bs.layers.sampling_mode(model, "mean"):
        raw = keras.ops.sigmoid(model(x[:1])).numpy()[0, :, 0]
    corrected = bs.imbalance.unweight_probabilities(raw, decision["correction_weights"])
    assert np.corrcoef(corrected, probs[0])[0, 1] > 0.9
    # metrics.json pools the event counts over the series.
    metrics = json.loads((preds / "metrics.json").read_text())["overall"]
    expected = bs.metrics.event_f1(y, probs, threshold=decision["threshold"])
    assert metrics["events"] == pytest.approx(expected)
    chance = bs.metrics.event_chance(y, rate=expected["flagged_fraction"])
    _assert_nested_close(metrics["chance"], chance)
    assert metrics["average_precision"] == pytest.approx(bs.metrics.average_precision(y, probs))
    # --threshold overrides the saved one.
    again = tmp_path / "again"
    assert main([*args[:-7], "--out", str(again), "--num-samples", "2", "--threshold", "1"]) == 0
    assert json.loads((again / "predictions.json").read_text())["decision"]["threshold"] == 1.0


def test_anomaly_validation_split_is_stratified_and_disjoint():
    from bayesseg.cli.anomaly import _validation_split

    y = np.zeros((100, 30), np.float32)
    y[::5, 3] = 1  # 20 anomalous series
    x = np.arange(100, dtype=np.float32)[:, None, None] * np.ones((1, 30, 1), np.float32)
    xs, ys, xv, yv = _validation_split(x, y, 100)
    assert len(xv) == 10 and len(xs) == 90
    assert int(yv.any(axis=1).sum()) == 2 and int(ys.any(axis=1).sum()) == 18
    assert not set(xs[:, 0, 0]) & set(xv[:, 0, 0])
    # Few anomalous series: still one on each side; none at all is refused.
    y2 = np.zeros((20, 30), np.float32)
    y2[[4, 11], 3] = 1
    _, ys2, _, yv2 = _validation_split(x[:20], y2, 20)
    assert ys2.any(axis=1).sum() == 1 and yv2.any(axis=1).sum() == 1
    with pytest.raises(ValueError, match="at least 2 anomalous series"):
        _validation_split(x[:20], np.zeros_like(y2), 20)


@pytest.mark.slow  # the tiny anomaly demo behind the fixture trains a model
def test_predict_series_errors(tmp_path, anomaly_run, capsys):
    out, _ = anomaly_run
    folder = tmp_path / "bad"
    folder.mkdir()
    np.save(folder / "two.npy", np.zeros((50, 2), np.float32))
    args = ["predict", "--model", str(out / "model.keras"), "--images", str(folder)]
    args += ["--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "expects (length, 1) or (length,)" in capsys.readouterr().err
    np.save(folder / "two.npy", np.zeros(50, np.float32))
    assert main([*args, "--patch-size", "16"]) == 2
    assert "apply to images" in capsys.readouterr().err


def _nifti_folders(tmp_path, nib, shapes):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    affine = np.diag([1.5, 1.0, 2.0, 1.0])
    for i, shape in enumerate(shapes):
        mask = np.zeros(shape, np.uint8)
        mask[2:5, 3:7, 4:6] = 1
        mask[8:10, 1:3, 2:5] = 2
        volume = rng.normal(size=shape).astype(np.float32) + mask
        nib.save(nib.Nifti1Image(volume, affine), images / f"case{i}.nii.gz")
        nib.save(nib.Nifti1Image(mask, affine), masks / f"case{i}.nii.gz")
    return images, masks, affine


@pytest.mark.slow
def test_train_predict_nifti_volumes(tmp_path, capsys):
    import keras

    import bayesseg as bs

    nib = pytest.importorskip("nibabel")
    images, masks, affine = _nifti_folders(tmp_path, nib, [(12, 10, 8), (16, 12, 8)])
    out = tmp_path / "run"
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    args += ["--patch-size", "8", "--patches-per-image", "2", "--epochs", "1", "--num-classes"]
    assert main([*args, "3", "--batch-size", "2", *TINY]) == 0
    assert (out / "model.keras").is_file()
    meta = json.loads((out / "model.json").read_text())
    assert meta["num_classes"] == 3 and meta["patch_size"] == [8, 8, 8]
    assert sum(meta["class_counts"]) == 12 * 10 * 8 + 16 * 12 * 8
    # More than 2 classes: the many-class recipe's rate and schedule, saved with
    # the optimizer (2 images x 2 patches / batch 2 = 2 steps, warm-up 1 step).
    assert meta["config"]["learning_rate"] == 0.01 and meta["config"]["lr_schedule"] == "cosine"
    assert meta["config"]["class_weights"] == "inverse_sqrt"
    schedule = keras.saving.load_model(out / "model.keras").optimizer._learning_rate
    assert isinstance(schedule, bs.training.WarmupSchedule)
    assert (schedule.target_lr, schedule.warmup_steps) == (0.01, 1)
    assert float(schedule(1)) == pytest.approx(0.01) and float(schedule(2)) == 0.0
    assert (out / "training.csv").is_file()
    _assert_valid_png(out / "training.png")
    assert "bayesseg train: wrote" in capsys.readouterr().out

    preds = tmp_path / "preds"
    args = ["predict", "--model", str(out / "model.keras"), "--images", str(images)]
    args += ["--masks", str(masks), "--preview", "2"]
    assert main([*args, "--out", str(preds), "--num-samples", "2", "--quiet"]) == 0
    for stem, depth in (("case0", 12), ("case1", 16)):  # 2 evenly spread slices each
        for index in (depth // 4, 3 * depth // 4):
            _assert_valid_png(preds / f"{stem}_preview_axis0_slice{index}.png")
    metrics = json.loads((preds / "metrics.json").read_text())
    assert set(metrics["images"]) == {"case0.nii.gz", "case1.nii.gz"}
    assert set(metrics["overall"]["per_class"]) == {"0", "1", "2"}
    per_class = metrics["overall"]["per_class"]
    assert metrics["overall"]["foreground_classes"]["recall"] == pytest.approx(
        (per_class["1"]["recall"] + per_class["2"]["recall"]) / 2
    )
    prob = nib.load(preds / "case1_prob.nii.gz")
    assert prob.shape == (16, 12, 8, 3)
    np.testing.assert_allclose(prob.affine, affine)
    p = np.asarray(prob.dataobj)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    epistemic = np.asarray(nib.load(preds / "case1_epistemic.nii.gz").dataobj)
    assert epistemic.shape == (16, 12, 8) and np.all(epistemic >= 0)
    labels = np.asarray(nib.load(preds / "case0_labels.nii.gz").dataobj)
    assert labels.shape == (12, 10, 8) and labels.max() < 3
    assert (preds / "case0_aleatoric.nii.gz").is_file()


@pytest.mark.slow
def test_train_predict_png_with_config(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        mask = np.zeros((16, 16), np.uint8)
        r, c = rng.integers(0, 13, 2)
        mask[r : r + 3, c : c + 3] = 1
        image = np.clip(rng.normal(80, 20, (16, 16)) + 100 * mask, 0, 255).astype(np.uint8)
        write_image(images / f"img{i}.png", image)
        write_image(masks / f"img{i}.png", mask)
    config = tmp_path / "train.toml"
    config.write_text(
        f'[train]\nimages = "{images}"\nmasks = "{masks}"\nepochs = 1\nbase-filters = 2\n'
        "depth = 2\nbatch_size = 64\n"
    )
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--batch-size", "2"]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["config"]["batch_size"] == 2 and meta["config"]["epochs"] == 1
    assert meta["num_classes"] == 2 and meta["patch_size"] is None
    assert meta["config"]["learning_rate"] == 1e-3 and meta["config"]["lr_schedule"] == "constant"
    assert meta["config"]["class_weights"] == "balanced"

    big = tmp_path / "big"
    big.mkdir()
    write_image(big / "wide.png", rng.integers(0, 255, (20, 36)).astype(np.uint8))
    preds = tmp_path / "preds"
    args = ["predict", "--model", str(out / "model.keras"), "--images", str(big)]
    assert main([*args, "--out", str(preds), "--num-samples", "2", "--calibrate"]) == 0
    for kind in ("prob", "labels", "epistemic", "aleatoric"):
        path = preds / f"wide_{kind}.png"
        _assert_valid_png(path)
        assert read_image(path).shape == (20, 36, 1)
    assert Image.open(preds / "wide_prob.png").mode.startswith("I")
    manifest = json.loads((preds / "predictions.json").read_text())
    assert manifest["calibrated"] and len(manifest["files"]) == 4


def _bad_folders(tmp_path, case):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    np.save(images / "a.npy", np.zeros((16, 16), np.float32))
    mask = np.zeros((16, 16), np.uint8)
    if case == "no_mask":
        np.save(images / "orphan.npy", np.zeros((16, 16), np.float32))
    if case == "shape":
        mask = np.zeros((16, 12), np.uint8)
    if case == "labels":
        mask[3, 3] = 5
    np.save(masks / "a.npy", mask)
    return ["train", "--images", str(images), "--masks", str(masks), "--out", str(tmp_path)]


@pytest.mark.parametrize(
    ("case", "extra", "message"),
    [
        ("missing", [], "must be an existing directory"),
        ("no_mask", [], "'orphan.npy' has no mask"),
        ("shape", [], "'a.npy' has shape (16, 16) but its mask has shape (16, 12)"),
        ("labels", ["--num-classes", "3"], "'a.npy' holds labels [5] outside"),
        ("ok", ["--epochs", "-3"], "--epochs: must be a positive integer. Received: '-3'"),
        ("ok", ["--patch-size", "0"], "--patch-size: must be a positive integer"),
        ("ok", ["--patch-size", "5", *TINY], "must be divisible by 2**(depth-1) = 2"),
        ("ok", ["--estimator", "mcmc"], "--estimator: must be one of flipout"),
        ("ok", ["--num-classes", "1"], "--num-classes: must be >= 2"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, case, extra, message):
    args = _bad_folders(tmp_path, case)
    if case == "missing":
        args[2] = str(tmp_path / "nowhere")
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err and err.startswith("bayesseg")


def test_config_and_predict_errors(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("epochs = 2\nlearning_rat = 0.1\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "unknown key 'learning_rat'" in capsys.readouterr().err
    config.write_text("epochs = -1\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "epochs must be a positive integer" in capsys.readouterr().err
    config.write_text("epochs = [\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in capsys.readouterr().err
    assert main(["train", "--masks", str(tmp_path)]) == 2
    assert "--images is required" in capsys.readouterr().err
    args = ["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path)]
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model" in err
    assert main(["demo", "--size", "18", "--depth", "3"]) == 2
    assert "divisible by 2**(depth-1) = 4" in capsys.readouterr().err
    assert main(["nonsense"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_help_lists_every_command_and_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(c in text for c in ("demo", "train", "predict"))
    for command, flags in {
        "demo": ["--task", "--epochs", "--out", "--seed", "--num-images", "--size"],
        "train": [
            "--images",
            "--masks",
            "--config",
            "--patch-size",
            "--num-classes",
            "--calibration-split",
        ],
        "predict": [
            "--model",
            "--num-samples",
            "--patch-size",
            "--calibrate",
            "--ignore-calibration",
        ],
    }.items():
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert all(flag in text for flag in flags), command


# ------------------------------------------------------------- calibration split
def _npy_folders(tmp_path, count, size=16, seed=2):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        r, c = rng.integers(0, size - 4, 2)
        mask[r : r + 4, c : c + 4] = 1
        image = rng.normal(size=(size, size)).astype(np.float32) + 2.0 * mask
        np.save(images / f"img{i}.npy", image)
        np.save(masks / f"img{i}.npy", mask)
    return images, masks


def _assert_refused_before_training(tmp_path, capsys, images, masks, extra, message):
    """``train`` with ``extra`` exits 2 with one line holding ``message``; no model written."""
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "o")]
    assert main(args + extra + TINY) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o" / "model.keras").exists()


@pytest.mark.slow
def test_train_zscore_dataset_fits_on_training_images_and_predict_applies_it(tmp_path):
    # Images whose offsets and scales differ: --zscore dataset standardises
    # every image by the pooled mean and std of the training images (the
    # held-out one excluded), model.json keeps them, and predict applies
    # them: a deterministic U-Net's prediction equals Keras' own on
    # (image - mean) / std, and not on the per-image z-score.
    import keras

    images, masks = _npy_folders(tmp_path, 5)
    for i in range(5):
        image = np.load(images / f"img{i}.npy")
        np.save(images / f"img{i}.npy", 40.0 * i + (1.0 + i) * image)
    out = tmp_path / "run"
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    args += ["--zscore", "dataset", "--bayesian-blocks", "none", "--epochs", "1"]
    args += ["--batch-size", "2", "--calibration-split", "0.2", *TINY]
    assert main(args) == 0
    metadata = json.loads((out / "model.json").read_text())
    trained = metadata["train_images"]
    assert len(trained) == 4
    values = np.concatenate([np.load(images / f"{n}.npy").ravel() for n in trained])
    entry = metadata["normalize"]
    assert entry["zscore"] == "training images"
    assert entry["mean"] == pytest.approx(values.astype(np.float64).mean(), rel=1e-9)
    assert entry["std"] == pytest.approx(values.astype(np.float64).std(), rel=1e-9)
    preds = tmp_path / "preds"
    args = ["predict", "--model", str(out / "model.keras"), "--images", str(images)]
    args += ["--ignore-calibration", "--num-samples", "1", "--quiet"]
    assert main([*args, "--out", str(preds)]) == 0
    model = keras.saving.load_model(out / "model.keras", compile=False)

    def probability(x):  # the U-Net's one output is a logit
        return 1.0 / (1.0 + np.exp(-model.predict(x, verbose=0)[0, ..., 0]))

    for i in (0, 4):
        image = np.load(images / f"img{i}.npy")[None, ..., None]
        got = np.load(preds / f"img{i}_prob.npy")
        np.testing.assert_allclose(
            got, probability((image - entry["mean"]) / entry["std"]), atol=1e-5
        )
        assert np.abs(got - probability((image - image.mean()) / image.std())).max() > 1e-3
    # A "normalize" entry predict cannot apply is refused before any prediction.
    metadata["normalize"] = {"zscore": "training images", "mean": 1.0, "std": -2.0}
    (out / "model.json").write_text(json.dumps(metadata))
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    assert not (tmp_path / "refused").exists()


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    """One ``bayesseg train`` that the calibration-split and predict-metrics tests
    share (training is most of their time): 6 images, one with a NaN pixel
    (zeroed under nan_policy = "zero" from the config), 2 of them held out for
    Platt scaling. The tests read its folders and write into their own."""
    root = tmp_path_factory.mktemp("calibrated_run")
    images, masks = _npy_folders(root, 6)
    nan_images = root / "nan_images"
    nan_images.mkdir()
    for i in range(6):
        image = np.load(images / f"img{i}.npy")
        image[0, 0] = np.nan if i == 2 else image[0, 0]
        np.save(nan_images / f"img{i}.npy", image)
    config = root / "train.toml"
    config.write_text('[train]\nnan_policy = "zero"\nepochs = 1\n')
    out = root / "run"
    args = ["train", "--images", str(nan_images), "--masks", str(masks), "--out", str(out)]
    args += ["--config", str(config), "--batch-size", "2", "--calibration-split", "0.34", *TINY]
    assert main(args) == 0
    return root


@pytest.mark.slow
def test_train_calibration_split_fits_on_held_out_images_and_predict_applies_it(
    tmp_path, calibrated_run
):
    import keras

    import bayesseg as bs

    images, masks, out = (calibrated_run / name for name in ("images", "masks", "run"))
    meta = json.loads((out / "model.json").read_text())
    entry = meta["calibration"]
    # 2 of 6 images held out (seeded), disjoint from the 4 trained on.
    held, kept = entry["held_out_images"], meta["train_images"]
    assert len(held) == 2 and len(kept) == 4 and not set(held) & set(kept)
    order = np.random.default_rng(0).permutation(6)
    assert held == sorted(f"img{i}" for i in order[:2])
    assert meta["num_examples_per_epoch"] == 4
    # Class counts (and so weights and bias) come from the training images only.
    kept_masks = [np.load(masks / f"{name}.npy") for name in kept]
    assert meta["class_counts"] == np.bincount(np.ravel(kept_masks), minlength=2).tolist()
    calibration = keras.saving.deserialize_keras_object(entry["config"], safe_mode=True)
    assert isinstance(calibration, bs.calibration.PlattScaling)
    # The mean over predict's 16 draws is calibrated: 512 pixels, each with its
    # 16 draws (img2, held out, has its NaN pixel zeroed: counted, not dropped).
    assert "img2" in held
    assert entry["fit"]["num_elements"] == 2 * 16 * 16 and entry["fit"]["num_draws"] == 16
    assert entry["num_samples"] == 16
    assert entry["fit"]["nll_after"] <= entry["fit"]["nll_before"]

    # predict applies it: its maps equal predict_mc with the calibrator.
    preds = tmp_path / "preds"
    args = ["predict", "--model", str(out / "model.keras"), "--images", str(images)]
    args += ["--num-samples", "2", "--quiet"]
    assert main([*args, "--out", str(preds)]) == 0
    manifest = json.loads((preds / "predictions.json").read_text())
    assert manifest["calibration"] == "PlattScaling" and manifest["calibrated"]
    model = keras.saving.load_model(out / "model.keras", compile=False)
    image = np.load(images / "img0.npy")[..., None]
    image = (image - image.mean()) / image.std()
    expected = bs.uncertainty.predict_mc(
        model, image[None], num_samples=2, patch_size=(16, 16), calibration=calibration, verbose=0
    )
    np.testing.assert_allclose(
        np.load(preds / "img0_prob.npy"), expected.mean[0, ..., 0], atol=1e-5
    )
    # --calibrate (undo class weights) is the alternative, not an addition.
    assert main([*args, "--out", str(preds), "--calibrate"]) == 2
    assert main([*args, "--out", str(preds), "--calibrate", "--ignore-calibration"]) == 0
    manifest = json.loads((preds / "predictions.json").read_text())
    assert manifest["calibration"] == "class_weights"


@pytest.mark.parametrize(
    ("count", "extra", "message"),
    [
        (4, ["--calibration-split", "1.5"], "--calibration-split: must be a fraction in [0, 1)"),
        (2, ["--calibration-split", "0.9"], "leaving none to train on"),
        (4, ["--calibration-split", "0.25", "--seed", "5"], "hold no pixel of class 1"),
    ],
)
def test_calibration_split_errors_come_before_training(tmp_path, capsys, count, extra, message):
    images, masks = _npy_folders(tmp_path, count)
    if "--seed" in extra:
        # The image held out with seed 5 gets an empty mask.
        held = np.random.default_rng(5).permutation(count)[0]
        np.save(masks / f"img{held}.npy", np.zeros((16, 16), np.uint8))
    _assert_refused_before_training(tmp_path, capsys, images, masks, extra, message)


@pytest.mark.slow
def test_calibration_split_multiclass_fits_the_temperature_when_a_class_is_missing(
    tmp_path, capsys
):
    import keras

    import bayesseg as bs

    images, masks = _npy_folders(tmp_path, 4)
    held = int(np.random.default_rng(0).permutation(4)[0])
    for i in range(4):
        if i != held:  # class 2 everywhere but in the held-out image
            mask = np.load(masks / f"img{i}.npy")
            mask[:2, :2] = 2
            np.save(masks / f"img{i}.npy", mask)
    out = tmp_path / "run"
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    args += ["--epochs", "1", "--batch-size", "2", "--calibration-split", "0.25"]
    assert main(args + ["--depth", "2", "--base-filters", "2"]) == 0
    assert "temperature only" in capsys.readouterr().out
    meta = json.loads((out / "model.json").read_text())
    assert meta["num_classes"] == 3 and meta["calibration"]["held_out_images"] == [f"img{held}"]
    calibration = keras.saving.deserialize_keras_object(
        meta["calibration"]["config"], safe_mode=True
    )
    assert isinstance(calibration, bs.calibration.TemperatureScaling)
    assert not calibration.fit_bias and np.all(calibration.bias_value == 0)
    assert calibration.temperature_value > 0


@pytest.mark.parametrize("num_classes", [2, 5])
def test_report_per_class_equals_the_keras_metrics(num_classes):
    import bayesseg as bs
    from bayesseg.cli.report import _per_class

    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, (6, 16, 16))
    labels[labels == num_classes - 1] = 0  # a class absent from the labels
    if num_classes == 2:
        labels = rng.integers(0, 2, (6, 16, 16))
        outputs = rng.random((6, 16, 16, 1))
    else:
        outputs = rng.dirichlet(np.ones(num_classes), (6, 16, 16))
    rows = _per_class(labels, outputs, num_classes)
    for c in range(num_classes):
        for name, cls in (("dice", bs.metrics.Dice), ("recall", bs.metrics.Recall),
                          ("precision", bs.metrics.Precision)):  # fmt: skip
            metric = cls(class_id=c, from_logits=False)
            metric.update_state(labels, outputs)
            # A 0/0 is None (bs.metrics.per_class_scores' rule); Keras reports it as 0.
            expected = float(metric.result())
            if rows[str(c)][name] is None:
                assert expected == 0.0
            else:
                assert rows[str(c)][name] == pytest.approx(expected, abs=1e-6)
        assert rows[str(c)]["support"] == (labels == c).sum()


# ------------------------------------------------------------- task and class defaults
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (  # the many-class recipe
            ["--task", "multiclass"],
            {"learning_rate": 1e-2, "lr_schedule": "cosine", "class_weights": "inverse_sqrt",
             "num_images": 2560, "epochs": 10, "num_test_images": 200, "num_classes": 8,
             "scale_multiplier": 2.0, "num_samples": 16, "posterior_scale_init": 1e-2},
        ),
        (  # the binary defaults are unchanged
            [],
            {"learning_rate": 1e-3, "lr_schedule": "constant", "class_weights": "inverse_sqrt",
             "num_images": 160, "epochs": 12, "num_test_images": 40, "scale_multiplier": 20.0,
             "num_samples": 16, "posterior_scale_init": 1e-3},
        ),
        (
            ["--task", "anomaly", "--num-images", "20"],
            {"learning_rate": 3e-3, "lr_schedule": "constant", "class_weights": "inverse_sqrt",
             "epochs": 8, "num_test_images": 8, "length": 4096, "window": 512,
             "batch_size": 32, "num_samples": 16, "posterior_scale_init": 1e-2},
        ),
        (  # flags win over the task's defaults
            ["--task", "multiclass", "--learning-rate", "0.002", "--lr-schedule", "constant",
             "--num-images", "100", "--num-test-images", "7", "--num-samples", "3",
             "--posterior-scale-init", "0.02"],
            {"learning_rate": 2e-3, "lr_schedule": "constant", "num_images": 100, "epochs": 10,
             "num_test_images": 7, "num_samples": 3, "posterior_scale_init": 0.02},
        ),
    ],
)  # fmt: skip
def test_demo_task_defaults(argv, expected):
    from bayesseg.cli.demo import _apply_task_defaults
    from bayesseg.cli.parser import build_parser

    args = build_parser().parse_args(["demo", *argv])
    _apply_task_defaults(args)
    assert {name: getattr(args, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("num_classes", "expected"),
    [
        (2, (1e-3, "constant", "balanced", 20.0, 1e-3)),
        # At 10x the rate, a 10x smaller multiplier keeps the scales' speed,
        # and the scales start at the layers' 0.01.
        (3, (1e-2, "cosine", "inverse_sqrt", 2.0, 1e-2)),
    ],
)
def test_train_defaults_follow_the_number_of_classes_unless_set(num_classes, expected):
    from bayesseg.cli.train import _resolve_class_defaults

    names = (
        "learning_rate",
        "lr_schedule",
        "class_weights",
        "scale_multiplier",
        "posterior_scale_init",
    )
    options = dict.fromkeys(names)
    _resolve_class_defaults(options, num_classes)
    assert tuple(options[name] for name in names) == expected
    given = {
        "learning_rate": 5e-4,
        "lr_schedule": "constant",
        "class_weights": "none",
        "scale_multiplier": 7.0,
        "posterior_scale_init": 0.05,
    }
    options = dict(given)
    _resolve_class_defaults(options, num_classes)
    assert options == given


# ------------------------------------------------------------- option types and checks
@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("_positive_int", "+3", 3),
        ("_positive_int", " 3 ", 3),
        ("_positive_int", "08", "must be a positive integer. Received: '08'"),
        ("_positive_int", "0", "must be a positive integer. Received: '0'"),
        ("_int", "-4", -4),
        ("_int", "1.5", "must be an integer. Received: '1.5'"),
        ("_positive_float", "0.5", 0.5),
        ("_positive_float", "inf", "must be a finite number > 0. Received: 'inf'"),
        ("_overlap", "0", 0.0),
        ("_overlap", "1", "must be a number in [0, 1). Received: '1'"),
        ("_fraction", "nan", "must be a fraction in [0, 1). Received: 'nan'"),
        ("_num_classes", "2", 2),
        (
            "_num_classes",
            "+1",
            "must be >= 2 (background included; 2 means binary). Received: '+1'",
        ),
        ("_num_classes", "x", "must be a positive integer. Received: 'x'"),
    ],
)
def test_option_types_parse_or_give_argparse_errors(name, text, expected):
    import argparse

    from bayesseg.cli import options

    parse = getattr(options, name)
    if isinstance(expected, str):
        with pytest.raises(argparse.ArgumentTypeError) as info:
            parse(text)
        assert str(info.value) == expected
    else:
        assert parse(text) == expected and type(parse(text)) is type(expected)


def test_choice_type_and_patch_and_unet_size_helpers():
    import argparse

    from bayesseg._tiling import check_unet_shape, unet_divisor
    from bayesseg.cli.options import _choice
    from bayesseg.cli.training import _expand_patch

    parse = _choice(("flipout", "reparameterization"))
    assert parse("flipout") == "flipout" and parse.__name__ == "choice"
    with pytest.raises(argparse.ArgumentTypeError, match="one of flipout, reparam"):
        parse("Flipout")
    assert _expand_patch([8], 3) == (8, 8, 8) and _expand_patch([8, 4], 2) == (8, 4)
    assert _expand_patch([8, 4], 3) is None
    assert unet_divisor(4) == 8 and unet_divisor(None) == 1
    assert check_unet_shape((16, 24), 4, str) == 8
    with pytest.raises(ValueError, match="^4$"):
        check_unet_shape((16, 18), 3, str)


def test_python_m_bayesseg_cli_runs_the_command():
    import subprocess
    import sys

    import bayesseg

    result = subprocess.run(
        [sys.executable, "-m", "bayesseg.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip() == f"bayesseg {bayesseg.__version__}"


@pytest.mark.slow
def test_predict_in_a_fresh_process_loads_what_train_saved(tmp_path, calibrated_run):
    # train and predict are separate commands: predict must register bayesseg's
    # classes itself (a run in the same process as train hid that they were not).
    import subprocess
    import sys

    out = tmp_path / "preds"
    command = [sys.executable, "-m", "bayesseg.cli", "predict", "--model"]
    command += [str(calibrated_run / "run" / "model.keras"), "--images"]
    command += [str(calibrated_run / "images"), "--out", str(out), "--num-samples", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "img0_prob.npy").is_file()


# ------------------------------------------------------------- validation in train
def _hand_val_nll(model_path, images, masks, names, num_samples, batch_size):
    """-log p(y) of the Monte Carlo mean, pooled over the validation pixels."""
    import keras

    import bayesseg as bs

    model = keras.saving.load_model(model_path, compile=False)
    losses = []
    for name in names:
        image = bs.data.standardize_image(np.load(images / f"{name}.npy")[..., None])
        pred = bs.uncertainty.predict_mc(
            model,
            image[None],
            num_samples=num_samples,
            batch_size=batch_size,
            patch_size=image.shape[:-1],
            verbose=0,
        )
        p = pred.mean[0, ..., 0].astype(np.float64)
        y = np.load(masks / f"{name}.npy")
        losses.append(-np.log(np.where(y == 1, p, 1 - p)).ravel())
    return float(np.concatenate(losses).mean())


def _history_csv(path):
    lines = path.read_text().strip().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, map(float, line.split(",")), strict=True)) for line in lines[1:]]


@pytest.mark.slow
def test_train_validation_split_best_model_and_early_stopping(tmp_path):
    import keras

    images, masks = _npy_folders(tmp_path, 6)
    out = tmp_path / "run"
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    args += ["--epochs", "6", "--batch-size", "2", "--val-fraction", "0.34", "--val-samples"]
    # No later epoch can beat the first by 1e6 nats: stop after 1 + patience epochs.
    args += ["4", "--patience", "2", "--min-delta", "1e6", "--learning-rate", "0.05", *TINY]
    assert main(args) == 0
    meta = json.loads((out / "model.json").read_text())
    held, kept = meta["validation"]["images"], meta["train_images"]
    # Seeded (the same permutation as --calibration-split) and disjoint.
    order = np.random.default_rng(0).permutation(6)
    assert held == sorted(f"img{i}" for i in order[:2])
    assert len(kept) == 4 and not set(held) & set(kept)
    history = _history_csv(out / "training.csv")
    assert len(history) == 3  # stopped early: epoch 1 best, then 2 without improvement
    best = json.loads((out / "model_best.json").read_text())
    assert best["best"]["best_epoch"] == 1 and best["best"]["stopped_epoch"] == 3
    assert best["calibration"]["held_out_images"] == held
    for row in history:
        assert {"val_nll", "val_dice", "val_recall_0", "val_recall_1"} <= set(row)
        assert 0 <= row["val_dice"] <= 1 and 0 <= row["val_recall_1"] <= 1
    # The best model holds epoch 1's weights: its validation NLL, by hand, is
    # the one logged for epoch 1 (not the last epoch's).
    expected = _hand_val_nll(out / "model_best.keras", images, masks, held, 4, 2)
    assert history[0]["val_nll"] == pytest.approx(expected, rel=1e-5)
    assert history[-1]["val_nll"] != pytest.approx(expected, rel=1e-5)
    assert best["best"]["best_value"] == pytest.approx(history[0]["val_nll"], rel=1e-9)
    last = keras.saving.load_model(out / "model.keras", compile=False)
    first = keras.saving.load_model(out / "model_best.keras", compile=False)
    assert not all(
        np.array_equal(a, b) for a, b in zip(last.get_weights(), first.get_weights(), strict=True)
    )


@pytest.mark.slow
def test_train_resume_keeps_the_early_stopping_state(tmp_path, monkeypatch):
    import keras

    from bayesseg.cli import train

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:  # after the backup of epoch 2
                raise KeyboardInterrupt

    images, masks = _npy_folders(tmp_path, 6)
    out = tmp_path / "run"
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    args += ["--epochs", "6", "--batch-size", "2", "--val-fraction", "0.34", "--val-samples"]
    args += ["4", "--patience", "2", "--min-delta", "1e6", *TINY]
    callbacks = train._callbacks
    monkeypatch.setattr(train, "_callbacks", lambda *a: [*callbacks(*a), Interrupt()])
    with pytest.raises(KeyboardInterrupt):
        main(args)
    state = json.loads((out / "early_stopping.json").read_text())
    assert (state["best_epoch"], state["wait"], state["epoch"]) == (1, 1, 2)
    monkeypatch.setattr(train, "_callbacks", callbacks)
    assert main(args) == 0
    # Resumed at epoch 3 with the state of epochs 1-2: one more epoch without
    # improvement stops it (a fresh state would have run to epoch 5).
    assert len(_history_csv(out / "training.csv")) == 3
    best = json.loads((out / "model_best.json").read_text())["best"]
    assert best["best_epoch"] == 1 and best["stopped_epoch"] == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--val-fraction", "0.5", "--calibration-split", "0.5"], "give one"),
        (["--val-images", "x"], "--val-images and --val-masks go together"),
        (["--val-samples", "2"], "--val-samples: must be an integer >= 4. Received: '2'"),
        (["--patience", "-1"], "--patience: must be an integer >= 0"),
        (["--monitor", "loss"], "--monitor: must be one of val_nll, val_dice"),
        (["--val-fraction", "0.25", "--seed", "5"], "held out by --val-fraction 0.25 hold no"),
    ],
)
def test_validation_option_errors_come_before_training(tmp_path, capsys, extra, message):
    images, masks = _npy_folders(tmp_path, 4)
    if "--seed" in extra:
        held = np.random.default_rng(5).permutation(4)[0]
        np.save(masks / f"img{held}.npy", np.zeros((16, 16), np.uint8))
    _assert_refused_before_training(tmp_path, capsys, images, masks, extra, message)


@pytest.mark.slow
def test_predict_masks_metrics_match_a_hand_computation(tmp_path, calibrated_run):
    import shutil

    import bayesseg as bs

    nan_images, out = calibrated_run / "nan_images", calibrated_run / "run"
    # The first 3 images (and masks) of the shared run, in a folder of our own.
    images, masks = tmp_path / "images", tmp_path / "masks"
    for name in ("images", "masks"):
        (tmp_path / name).mkdir()
        for i in range(3):
            shutil.copy(calibrated_run / name / f"img{i}.npy", tmp_path / name)
    # Trained on a copy with a NaN pixel, zeroed under nan_policy = "zero" from the config.
    assert json.loads((out / "model.json").read_text())["config"]["nan_policy"] == "zero"
    # predict: the NaN image is an error (exit 2) unless --nan-policy zero.
    args = ["predict", "--model", str(out / "model.keras"), "--images", str(nan_images)]
    args += ["--num-samples", "2", "--quiet", "--out", str(tmp_path / "nan_preds")]
    assert main(args) == 2
    # A preview needs no masks: input, mean prediction and the two uncertainties.
    assert main([*args, "--nan-policy", "zero", "--preview"]) == 0
    _assert_valid_png(tmp_path / "nan_preds" / "img0_preview.png")
    preds = tmp_path / "preds"
    args = ["predict", "--model", str(out / "model.keras"), "--images", str(images)]
    args += ["--masks", str(masks), "--preview", "--num-samples", "4", "--out", str(preds)]
    assert main([*args, "--quiet"]) == 0
    _assert_valid_png(preds / "img0_preview.png")
    metrics = json.loads((preds / "metrics.json").read_text())
    assert "metrics.json" in json.loads((preds / "predictions.json").read_text())["files"]
    names = [f"img{i}" for i in range(3)]
    probs = {n: np.load(preds / f"{n}_prob.npy").astype(np.float64) for n in names}
    truth = {n: np.load(masks / f"{n}.npy") for n in names}

    def scores(p, y):
        pred = p >= 0.5
        tp, fp, fn = np.sum(pred & (y == 1)), np.sum(pred & (y == 0)), np.sum(~pred & (y == 1))
        tn = np.sum(~pred & (y == 0))
        nll = -np.mean(np.log(np.where(y == 1, p, 1 - p)))
        return {
            "1": (2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0, tp / (tp + fn)),
            "0": (2 * tn / (2 * tn + fn + fp), tn / (tn + fp)),
            "nll": nll,
        }

    for n in names:
        row, expected = metrics["images"][f"{n}.npy"], scores(probs[n], truth[n])
        for c in ("0", "1"):
            assert row["per_class"][c]["dice"] == pytest.approx(expected[c][0], abs=1e-6)
            assert row["per_class"][c]["recall"] == pytest.approx(expected[c][1], abs=1e-6)
        assert row["per_class"]["1"]["support"] == int(truth[n].sum())
        assert row["predictive_nll"] == pytest.approx(expected["nll"], rel=1e-5)
        lesions = bs.metrics.lesion_f1(truth[n][None] > 0, probs[n][None])
        assert row["lesion_f1"]["f1"] == pytest.approx(lesions["f1"])
        ece = bs.metrics.foreground_ece(truth[n], probs[n])
        assert row["foreground_ece"] == (None if np.isnan(ece) else pytest.approx(ece, abs=1e-6))
    pooled = scores(np.stack([probs[n] for n in names]), np.stack([truth[n] for n in names]))
    overall = metrics["overall"]
    assert overall["images"] == 3
    assert overall["per_class"]["1"]["dice"] == pytest.approx(pooled["1"][0], abs=1e-6)
    assert overall["per_class"]["1"]["recall"] == pytest.approx(pooled["1"][1], abs=1e-6)
    assert overall["predictive_nll"] == pytest.approx(pooled["nll"], rel=1e-5)
    # Lesion-wise F1 pooled from the summed counts: 3 true lesions, one per image.
    lesions = [metrics["images"][f"{n}.npy"]["lesion_f1"] for n in names]
    assert overall["lesion_f1"]["true_lesions"] == sum(r["true_lesions"] for r in lesions) == 3
    assert overall["lesion_f1"]["pred_lesions"] == sum(r["pred_lesions"] for r in lesions)
    assert overall["lesion_f1"]["detected"] == sum(r["detected"] for r in lesions)
    # The floor beside it: the whole image predicted, over the three images together.
    stacked = np.stack([truth[n] for n in names])
    chance = bs.metrics.lesion_chance(stacked > 0)
    assert overall["chance"]["whole_image_lesion_f1"] == pytest.approx(chance["whole_image"]["f1"])
    assert overall["chance"]["voxel_f1_flag_all"] == pytest.approx(chance["voxel_f1_flag_all"])


def test_predict_masks_need_every_image(tmp_path, capsys):
    images, masks = _npy_folders(tmp_path, 2)
    (masks / "img1.npy").unlink()
    model = tmp_path / "model.keras"
    model.write_bytes(b"")
    args = ["predict", "--model", str(model), "--images", str(images), "--out", str(tmp_path)]
    assert main([*args, "--masks", str(masks)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Image 'img1.npy' has no mask in" in err, err


def test_nan_image_is_one_line_exit_2_naming_the_file(tmp_path, capsys):
    from bayesseg.cli.options import NAN_POLICIES
    from bayesseg.data._finite import NAN_POLICIES as LIBRARY_POLICIES

    assert NAN_POLICIES == LIBRARY_POLICIES
    images, masks = _npy_folders(tmp_path, 2)
    image = np.load(images / "img1.npy")
    image[3, 4] = np.nan
    np.save(images / "img1.npy", image)
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "o")]
    assert main(args + TINY) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Image 'img1.npy' holds 1 NaN value" in err, err
    assert main(args + ["--nan-policy", "drop"] + TINY) == 2
    assert "--nan-policy: must be one of error, zero" in capsys.readouterr().err


@pytest.mark.slow
def test_train_validates_on_val_folders_from_the_config(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    images, masks = _npy_folders(tmp_path / "train", 4, seed=3)
    val_images, val_masks = _npy_folders(tmp_path / "val", 2, seed=4)
    config = tmp_path / "train.toml"
    config.write_text(
        f'[train]\nval-images = "{val_images}"\nval_masks = "{val_masks}"\n'
        'val_samples = 4\nmonitor = "val_dice"\npatience = 0\nepochs = 2\n'
    )
    out = tmp_path / "run"
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    assert main([*args, "--config", str(config), "--batch-size", "2", *TINY]) == 0
    meta = json.loads((out / "model_best.json").read_text())
    assert meta["validation"]["source"] == "val_images"
    assert (
        meta["validation"]["images"] == ["img0", "img1"] == meta["calibration"]["held_out_images"]
    )
    assert meta["num_examples_per_epoch"] == 4  # every training image is trained on
    assert meta["best"]["monitor"] == "val_dice" and meta["best"]["stopped_epoch"] is None
    history = _history_csv(out / "training.csv")
    assert len(history) == 2
    best = max(range(2), key=lambda i: (history[i]["val_dice"], -i))
    assert meta["best"]["best_epoch"] == best + 1


def test_options_are_never_completed_from_an_abbreviation(capsys):
    # --lr would have been taken as --lr-schedule (argparse's prefix matching).
    assert main(["demo", "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments: --lr 0.01" in err, err
    for command in ("train", "predict"):
        parser = build_parser()._subparsers._group_actions[0].choices[command]
        assert parser.allow_abbrev is False


@pytest.mark.parametrize(
    ("content", "name"),
    [(b"", "empty.keras"), (b"not a zip", "text.keras"), (b"PK\x03\x04 truncated", "cut.keras")],
)
def test_predict_names_a_file_that_is_not_a_keras_model(tmp_path, capsys, content, name):
    images, _ = _npy_folders(tmp_path, 1)
    model = tmp_path / name
    model.write_bytes(content)
    args = ["predict", "--model", str(model), "--images", str(images), "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"Model '{model}' exists but is not a Keras model file" in err


def test_predict_names_a_damaged_model_json(tmp_path, capsys):
    import zipfile

    images, _ = _npy_folders(tmp_path, 1)
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("config.json", "{}")
    (tmp_path / "model.json").write_text('{"task": "anom')  # cut short
    args = ["predict", "--model", str(model), "--images", str(images), "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"Cannot read '{tmp_path / 'model.json'}'" in err, err


# Lines TensorFlow prints on start-up (recorded on a CPU-only machine).
TF_NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796527675.163175    2316 port.cc:153] oneDNN custom operations are on.",
    b"I0000 00:00:1796527675.164592    2316 cudart_stub.cc:31] Could not find cuda drivers on "
    b"your machine, GPU will not be used.",
    b"I0000 00:00:1796527675.247728    2316 cpu_feature_guard.cc:227] This TensorFlow binary "
    b"is optimized to use available CPU instructions in performance-critical operations.",
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    b"TensorFlow with the appropriate compiler flags.",
    b"E0000 00:00:1733214522.339393    1 cuda_executor.cc:1228] failed call to cuInit: "
    b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]


def test_noise_filter_hides_start_up_lines_at_the_level_in_force():
    from bayesseg.cli._quiet import is_noise

    assert all(is_noise(line, 2) for line in TF_NOISE)
    real = b"E0000 00:00:1.0    7 op_kernel.cc:1857] OP_REQUIRES failed: RESOURCE_EXHAUSTED"
    assert not is_noise(real, 2) and is_noise(real, 3)  # a real error shows unless level 3
    ours = [b"bayesseg train: error: Cannot read 'a.npy'", b"Traceback (most recent call last):"]
    assert not any(is_noise(line, 3) for line in ours)
    assert not any(is_noise(line, 0) for line in TF_NOISE)  # the user asked for everything
    assert is_noise(TF_NOISE[1], 1) and not is_noise(TF_NOISE[-1], 1)  # E shows at level 1


def test_stderr_filter_passes_everything_else_in_order(capfd):
    import os

    from bayesseg.cli._quiet import StderrFilter

    with StderrFilter(2):
        for line in [b"first\n", TF_NOISE[0] + b"\n", TF_NOISE[1] + b"\n", b"second\n"]:
            os.write(2, line)
    assert capfd.readouterr().err == "first\nsecond\n"


@pytest.mark.slow
def test_commands_print_no_tensorflow_start_up_lines(tmp_path):
    import os
    import subprocess
    import sys

    images, masks = _npy_folders(tmp_path, 3)
    run, preds = tmp_path / "run", tmp_path / "preds"
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "x.npy", np.zeros((16, 16), np.float32))
    np.save(tmp_path / "badmask.npy", np.full((16, 16), 7, np.uint8))
    (tmp_path / "badmasks").mkdir()
    (tmp_path / "badmask.npy").rename(tmp_path / "badmasks" / "x.npy")
    script = (
        "from bayesseg.cli import main\n"
        f"print(main(['train', '--images', {str(images)!r}, '--masks', {str(masks)!r}, "
        f"'--out', {str(run)!r}, '--epochs', '1', '--base-filters', '2', '--depth', '2', "
        "'--quiet']))\n"
        f"print(main(['predict', '--model', {str(run / 'model.keras')!r}, '--images', "
        f"{str(images)!r}, '--out', {str(preds)!r}, '--num-samples', '2', '--quiet']))\n"
        # An error after TensorFlow is loaded: a mask label outside the 2 classes.
        f"print(main(['train', '--images', {str(bad)!r}, '--masks', "
        f"{str(tmp_path / 'badmasks')!r}, '--out', {str(tmp_path / 'r2')!r}, "
        "'--num-classes', '2']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, env=env, timeout=300
    )
    out, err = result.stdout.decode(), result.stderr.decode()
    codes = [line for line in out.splitlines() if line.strip().isdigit()]
    assert codes == ["0", "0", "2"], (out, err)
    for marker in ("absl::InitializeLog", "I0000", "E0000", "cuInit", "cuda drivers", "oneDNN"):
        assert marker not in out + err, (marker, err)
    assert err.strip().splitlines() == [err.strip()]  # the one error line, nothing else
    assert "bayesseg train: error:" in err


def test_stderr_filter_survives_an_abort_and_a_flood():
    # The filter runs in a child process: a fatal line written just before the
    # process aborts still shows, and more than a pipe's worth written by C
    # code holding the GIL neither blocks nor is lost.
    import subprocess
    import sys

    aborting = (
        "import os\nfrom bayesseg.cli._quiet import StderrFilter\n"
        "with StderrFilter(2):\n"
        "    os.write(2, b'I0000 00:00:1.0 1 port.cc:1] start-up note\\n')\n"
        "    os.write(2, b'F0000 00:00:1.0 1 x.cc:1] Check failed: fatal\\n')\n"
        "    os.abort()\n"
    )
    result = subprocess.run([sys.executable, "-c", aborting], capture_output=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr == b"F0000 00:00:1.0 1 x.cc:1] Check failed: fatal\n"
    flood = (
        "import ctypes\nfrom bayesseg.cli._quiet import StderrFilter\n"
        "with StderrFilter(2):\n"
        "    data = (b'x' * 99 + b'\\n') * 3000\n"
        "    ctypes.PyDLL(None).write(2, data, len(data))\n"
    )
    result = subprocess.run([sys.executable, "-c", flood], capture_output=True, timeout=60)
    assert result.returncode == 0 and len(result.stderr) == 300_000
