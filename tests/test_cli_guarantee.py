"""Recall guarantees: ``bayesseg train --recall-target`` fits conformal risk control on the
held-out images (or validation series), model.json keeps it, ``bayesseg predict`` writes
its labels, states it and scores it. Every number is checked against an independent
computation (deterministic models, so Monte Carlo draws repeat exactly)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import TINY, _npy_folders

from bayesseg.cli import main


# --------------------------------------------------------------------------
# The recipe pieces, without the command line
# --------------------------------------------------------------------------
def _hand_scores(scores, truths, threshold):
    """Mean per-item recall over the items with foreground, pooled precision (numpy)."""
    recalls, tp, flagged = [], 0, 0
    for s, y in zip(scores, truths, strict=True):
        flags, y = np.asarray(s) >= threshold, np.asarray(y) > 0
        if y.any():
            recalls.append((flags & y).sum() / y.sum())
        tp += int((flags & y).sum())
        flagged += int(flags.sum())
    return float(np.mean(recalls)), (tp / flagged if flagged else None)


def test_recall_guarantee_fits_conformal_risk_control_and_scores_its_labels():
    import bayesseg as bs
    from bayesseg.recipes import RecallGuarantee, min_recall_items
    from bayesseg.recipes._guarantee import RealisedRecall

    rng = np.random.default_rng(3)
    sizes = [(6, 7), (8, 8), (5, 9)] * 4  # images of different sizes
    truths = [rng.random(s) < 0.3 for s in sizes]
    truths[2][:] = False  # no foreground: left out
    scores = [np.clip(0.35 * t + 0.65 * rng.random(t.shape), 0, 1) for t in truths]
    g = RecallGuarantee.fit(scores, truths, 0.9, score={"num_samples": 8, "calibration": None})
    crc = bs.calibration.ConformalRiskControl(0.1, "fnr").fit(scores, truths)
    assert g.threshold == crc.threshold_ and g.conformal.alpha == 0.1
    assert (g.conformal.n_calibration_, g.conformal.n_skipped_, g.n_items) == (11, 1, 12)
    assert min_recall_items(0.9) == 9 and min_recall_items(0.9, "series") == 9
    # The JSON round trip keeps everything predict reads.
    back = RecallGuarantee.from_dict(json.loads(json.dumps(g.to_dict())))
    assert back.threshold == g.threshold and back.statement() == g.statement()
    assert "the 11 calibration images" in g.statement()
    assert back.mismatch(num_samples=8, calibration=None) is None
    assert "num_samples 2" in back.mismatch(num_samples=2, calibration=None)
    # Scored item by item, the labels give what a direct computation gives.
    realised = RealisedRecall(back)
    for k, (s, t) in enumerate(zip(scores, truths, strict=True)):
        realised.add(f"i{k}", s, t.astype(np.uint8))
    result = realised.result()
    recall, precision = _hand_scores(scores, truths, g.threshold)
    assert result["realised_recall"] == pytest.approx(recall, abs=1e-12)
    assert result["realised_recall"] == pytest.approx(1 - crc.risk(scores, truths), abs=1e-12)
    assert result["precision"] == pytest.approx(precision, abs=1e-12)
    assert (result["items_counted"], result["items_skipped"]) == (11, 1)
    with pytest.raises(ValueError, match="at least 19 calibration items"):
        RecallGuarantee.fit(scores, truths, 0.95)


def test_fit_recall_guarantee_of_a_multiclass_unet_scores_one_minus_background():
    import bayesseg as bs
    from bayesseg.recipes import fit_recall_guarantee

    rng = np.random.default_rng(0)
    images = [rng.normal(size=(16, 16, 1)).astype(np.float32) for _ in range(5)]
    masks = [rng.integers(0, 3, (16, 16)) for _ in range(5)]
    model = bs.models.unet((None, None, 1), 3, base_filters=2, depth=2)  # deterministic
    g = fit_recall_guarantee(model, images, masks, 0.75, num_samples=1, names=list("abcde"))
    scores = [
        1.0 - bs.uncertainty.predict_mc(model, x[None], num_samples=1, verbose=0).mean[0, ..., 0]
        for x in images
    ]
    crc = bs.calibration.ConformalRiskControl(0.25).fit(scores, [m > 0 for m in masks])
    assert g.threshold == pytest.approx(crc.threshold_, abs=1e-6)
    assert g.items == list("abcde") and g.score["calibration"] is None
    # The run object's method: the same fit, kept in its model.json content.
    from bayesseg.recipes import SegmentationConfig, SegmentationRun

    run = SegmentationRun(model, SegmentationConfig(), 3, None, [0.0] * 3, [1, 1, 1], {})
    run.fit_recall_guarantee(np.stack(images), np.stack(masks), 0.75, num_samples=1)
    assert run.metadata()["recall_guarantee"]["threshold"] == g.threshold


# --------------------------------------------------------------------------
# bayesseg train --recall-target: refused before training
# --------------------------------------------------------------------------
def _refused(tmp_path, capsys, count, extra, message):
    images, masks = _npy_folders(tmp_path, count)
    out = tmp_path / "o"
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    assert main(args + extra + TINY) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (out / "model.keras").exists() and not (out / "model.json").exists()


@pytest.mark.parametrize(
    ("count", "extra", "message"),
    [
        (6, ["--recall-target", "0.9"], "--recall-target 0.9 needs --calibration-split"),
        (
            6,
            ["--recall-target", "0.9", "--val-fraction", "0.34"],
            "needs --calibration-split FRACTION",
        ),
        (6, ["--recall-target", "1", "--calibration-split", "0.34"], "--recall-target: must be"),
        (6, ["--recall-target", "0", "--calibration-split", "0.34"], "a recall in (0, 1)"),
        (
            6,
            ["--recall-target", "0.9", "--calibration-split", "0.34"],
            "--recall-target 0.9 needs at least 9 held-out images with foreground",
        ),
    ],
)
def test_recall_target_errors_come_before_training(tmp_path, capsys, count, extra, message):
    _refused(tmp_path, capsys, count, extra, message)


# --------------------------------------------------------------------------
# train -> model.json -> predict, images
# --------------------------------------------------------------------------
@pytest.mark.slow
def test_train_recall_target_saves_the_guarantee_and_predict_applies_it(tmp_path, capsys):
    import keras

    import bayesseg as bs

    images, masks = _npy_folders(tmp_path, 8)
    held = sorted(np.random.default_rng(0).permutation(8)[:4].tolist())  # --seed 0's split
    np.save(masks / f"img{held[0]}.npy", np.zeros((16, 16), np.uint8))  # left out of the fit
    out = tmp_path / "run"
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    args += ["--calibration-split", "0.5", "--recall-target", "0.75", "--epochs", "1"]
    args += ["--batch-size", "2", "--bayesian-blocks", "none", *TINY]
    assert main(args) == 0, capsys.readouterr().err
    meta = json.loads((out / "model.json").read_text())
    entry = meta["recall_guarantee"]
    assert entry["items"] == [f"img{i}" for i in held] == meta["calibration"]["held_out_images"]
    assert entry["score"]["num_samples"] == 16 and entry["score"]["calibration"] == "PlattScaling"
    assert entry["conformal"]["risk"] == "fnr" and entry["alpha"] == 0.25
    assert (entry["n_calibration"], entry["conformal"]["n_skipped"], entry["n_items"]) == (3, 1, 4)

    # Independently: the held-out images scored as predict scores them, then the fit.
    model = keras.saving.load_model(out / "model.keras", compile=False)
    calibration = keras.saving.deserialize_keras_object(
        meta["calibration"]["config"], safe_mode=True
    )

    def probability(name):
        image = bs.data.standardize_image(np.load(images / f"{name}.npy")[..., None])
        pred = bs.uncertainty.predict_mc(
            model, image[None], num_samples=16, patch_size=(16, 16), calibration=calibration
        )
        return pred.mean[0, ..., 0].astype(np.float64)

    names = [f"img{i}" for i in held]
    truth = {f"img{i}": np.load(masks / f"img{i}.npy") for i in range(8)}
    crc = bs.calibration.ConformalRiskControl(0.25, "fnr").fit(
        [probability(n) for n in names], [truth[n] for n in names]
    )
    assert entry["threshold"] == pytest.approx(crc.threshold_, abs=1e-6)
    assert entry["conformal"]["calibration_risk"] == pytest.approx(crc.calibration_risk_, abs=1e-6)

    # predict: the labels are prob >= threshold, the manifest states the guarantee,
    # metrics.json scores the labels.
    preds = tmp_path / "preds"
    predict = ["predict", "--model", str(out / "model.keras"), "--images", str(images)]
    predict += ["--masks", str(masks), "--quiet"]
    assert main([*predict, "--out", str(preds)]) == 0
    manifest = json.loads((preds / "predictions.json").read_text())["recall_guarantee"]
    threshold = entry["threshold"]
    assert manifest["guarantee"] == (
        "expected per-image recall >= 0.75 over new images with foreground, exchangeable "
        "with the 3 calibration images (conformal risk control)"
    )
    assert manifest["threshold"] == threshold and manifest["n_calibration"] == 3
    probs = [np.load(preds / f"img{i}_prob.npy") for i in range(8)]
    for i, p in enumerate(probs):
        np.testing.assert_array_equal(np.load(preds / f"img{i}_recall_labels.npy"), p >= threshold)
    scored = json.loads((preds / "metrics.json").read_text())["recall_guarantee"]
    recall, precision = _hand_scores(probs, [truth[f"img{i}"] for i in range(8)], threshold)
    assert scored["realised_recall"] == pytest.approx(recall, abs=1e-9)
    assert scored["precision"] == pytest.approx(precision, abs=1e-9)
    assert (scored["items_counted"], scored["items_skipped"]) == (7, 1)
    assert scored["guarantee"] == manifest["guarantee"]

    # Other draws than the calibration's: the labels are written, no guarantee is claimed.
    assert main([*predict, "--out", str(tmp_path / "p2"), "--num-samples", "2"]) == 0
    manifest = json.loads((tmp_path / "p2" / "predictions.json").read_text())["recall_guarantee"]
    assert manifest["guarantee"] is None and "num_samples 2" in manifest["void"]
    assert "does not hold" in capsys.readouterr().out
    # --ignore-recall-guarantee: no labels, no scores.
    assert main([*predict, "--out", str(tmp_path / "p3"), "--ignore-recall-guarantee"]) == 0
    assert not list((tmp_path / "p3").glob("*_recall_labels*"))
    assert json.loads((tmp_path / "p3" / "predictions.json").read_text())["recall_guarantee"] == {
        "guarantee": None,
        "ignored": True,
    }
    assert "recall_guarantee" not in json.loads((tmp_path / "p3" / "metrics.json").read_text())

    # A guarantee fitted with other draws (a model trained when the default was 8):
    # predict's default draws are the guarantee's, so it still holds.
    meta["recall_guarantee"]["score"]["num_samples"] = 8
    (out / "model.json").write_text(json.dumps(meta))
    assert main([*predict, "--out", str(tmp_path / "p4")]) == 0
    manifest = json.loads((tmp_path / "p4" / "predictions.json").read_text())
    assert manifest["num_samples"] == 8 and manifest["recall_guarantee"]["threshold"] == threshold
    assert manifest["recall_guarantee"]["guarantee"] is not None


# --------------------------------------------------------------------------
# train --task series --recall-target -> predict
# --------------------------------------------------------------------------
def _series_folders(tmp_path, count=30):
    import bayesseg as bs

    x, y = bs.data.synthetic_sensor_series(
        count, length=(400, 600), events_per_series=(1, 3), seed=2
    )
    (tmp_path / "series").mkdir()
    (tmp_path / "labels").mkdir()
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        np.save(tmp_path / "series" / f"s{i:02d}.npy", xi)
        np.save(tmp_path / "labels" / f"s{i:02d}.npy", yi)
    return x, y


_SERIES = ["train", "--task", "series", "--window", "96", "--epochs", "1"]
_SERIES += ["--base-filters", "2", "--bayesian-blocks", "none", "--quiet"]


def _series_argv(tmp_path, *extra):
    folders = ["--images", str(tmp_path / "series"), "--masks", str(tmp_path / "labels")]
    return [*_SERIES, *folders, "--out", str(tmp_path / "run"), *extra]


def test_series_recall_target_needs_enough_validation_series(tmp_path, capsys):
    _series_folders(tmp_path, count=12)
    assert main(_series_argv(tmp_path, "--recall-target", "0.95")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--recall-target 0.95 needs at least 19 validation" in err
    assert not (tmp_path / "run" / "model.json").exists()


@pytest.mark.slow
def test_train_series_recall_target_saves_the_guarantee_and_predict_applies_it(tmp_path, capsys):
    import keras

    import bayesseg as bs

    x, y = _series_folders(tmp_path)
    assert main(_series_argv(tmp_path, "--recall-target", "0.8")) == 0, capsys.readouterr().err
    out = tmp_path / "run"
    meta = json.loads((out / "model.json").read_text())
    entry = meta["recall_guarantee"]
    assert entry["unit"] == "series" and entry["conformal"]["risk"] == "missed_events"
    assert entry["items"] == meta["validation_series_names"]
    assert entry["score"] == {
        "definition": entry["score"]["definition"],
        "num_samples": 16,
        "window": 192,
    }
    # Independently: the validation series predicted as predict does, then the fit.
    model = keras.saving.load_model(out / "model.keras", compile=False)
    val = [int(name[1:3]) for name in meta["validation_series_names"]]
    correction = meta["decision"]["correction_weights"]
    probs = [
        p.prob
        for p in bs.recipes.predict_series(
            model, [x[i] for i in val], correction, num_samples=16, window=192
        )
    ]
    crc = bs.calibration.ConformalRiskControl(0.2, "missed_events").fit(probs, [y[i] for i in val])
    assert entry["threshold"] == pytest.approx(crc.threshold_, abs=1e-6)
    assert entry["n_calibration"] == crc.n_calibration_

    preds = tmp_path / "preds"
    predict = ["predict", "--model", str(out / "model.keras"), "--images", str(tmp_path / "series")]
    predict += ["--masks", str(tmp_path / "labels"), "--out", str(preds), "--quiet"]
    assert main(predict) == 0, capsys.readouterr().err
    manifest = json.loads((preds / "predictions.json").read_text())["recall_guarantee"]
    threshold = entry["threshold"]
    assert manifest["threshold"] == threshold and manifest["guarantee"].startswith(
        "expected per-series event recall >= 0.8"
    )
    probs = [np.load(preds / f"s{i:02d}_prob.npy") for i in range(len(x))]
    flags = [np.load(preds / f"s{i:02d}_recall_labels.npy") for i in range(len(x))]
    for p, f in zip(probs, flags, strict=True):
        np.testing.assert_array_equal(f, p >= threshold)
    scored = json.loads((preds / "metrics.json").read_text())["recall_guarantee"]
    fitted = bs.calibration.ConformalRiskControl.from_dict(entry["conformal"])
    assert scored["realised_recall"] == pytest.approx(1 - fitted.risk(probs, y), abs=1e-9)
    events = bs.metrics.event_f1(y, probs, threshold=threshold)
    assert scored["precision"] == pytest.approx(events["precision"], abs=1e-9)
    assert scored["pooled_recall"] == pytest.approx(events["recall"], abs=1e-9)


@pytest.mark.slow
def test_ensemble_recall_guarantee_is_fitted_on_the_ensemble(tmp_path, capsys):
    import keras

    import bayesseg as bs

    images, masks = _npy_folders(tmp_path, 6)
    out = tmp_path / "run"
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    args += ["--calibration-split", "0.5", "--recall-target", "0.7", "--epochs", "1"]
    args += ["--ensemble", "2", "--batch-size", "3", "--bayesian-blocks", "none", *TINY]
    assert main(args) == 0, capsys.readouterr().err
    meta = json.loads((out / "model.json").read_text())
    entry = meta["recall_guarantee"]
    ensemble = keras.saving.load_model(out / "model.keras", compile=False)
    calibration = keras.saving.deserialize_keras_object(
        meta["calibration"]["config"], safe_mode=True
    )
    scores = [
        bs.uncertainty.predict_mc(
            ensemble,
            bs.data.standardize_image(np.load(images / f"{n}.npy")[..., None])[None],
            num_samples=8,
            patch_size=(16, 16),
            calibration=calibration,
            verbose=0,
        ).mean[0, ..., 0]
        for n in entry["items"]
    ]
    crc = bs.calibration.ConformalRiskControl(0.3).fit(
        scores, [np.load(masks / f"{n}.npy") for n in entry["items"]]
    )
    assert entry["threshold"] == pytest.approx(crc.threshold_, abs=1e-6)
    assert entry["n_calibration"] == crc.n_calibration_ == 3


@pytest.mark.parametrize(
    ("entry", "ignored", "expected"),
    [
        ({"score": {"num_samples": 8}}, False, 8),  # the guarantee's draws
        ({"score": {"num_samples": 8}}, True, 16),  # --ignore-recall-guarantee
        ({"score": None}, False, 16),  # damaged: reported when the guarantee loads
        ("not an entry", False, 16),
        (None, False, 16),
    ],
)
def test_predict_default_draws_are_a_guarantees_or_16(entry, ignored, expected):
    import argparse

    from bayesseg.cli.predict import _default_draws
    from bayesseg.recipes.segmentation import NUM_SAMPLES

    args = argparse.Namespace(ignore_recall_guarantee=ignored)
    assert NUM_SAMPLES == 16
    assert _default_draws(args, {"recall_guarantee": entry}) == expected
