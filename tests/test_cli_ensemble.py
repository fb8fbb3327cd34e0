"""``bayesseg train --ensemble K`` and ``--bayesian-blocks``: a deep ensemble
trained, saved, calibrated and predicted from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import _npy_folders as _folders  # the same image/mask folders

from bayesseg.cli import main

TINY = ["--depth", "2", "--base-filters", "2", "--quiet", "--epochs", "1", "--batch-size", "2"]


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    """One ``train --ensemble 2`` of deterministic members with a calibration split."""
    root = tmp_path_factory.mktemp("ensemble_run")
    images, masks = _folders(root, 6)
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(root / "run")]
    args += ["--ensemble", "2", "--bayesian-blocks", "none", "--calibration-split", "0.34"]
    args += TINY
    assert main(args) == 0
    return root, args


@pytest.mark.slow
def test_train_ensemble_saves_members_as_one_calibrated_model(ensemble_run):
    import keras

    import bayesseg as bs

    root, _ = ensemble_run
    out = root / "run"
    ensemble = keras.saving.load_model(out / "model.keras", compile=False)
    assert isinstance(ensemble, bs.models.DeepEnsemble) and ensemble.num_members == 2
    for k, member in enumerate(ensemble.members):
        assert not bs.layers.bayesian_layers(member)  # --bayesian-blocks none
        saved = keras.saving.load_model(out / f"member_{k}" / "model.keras", compile=False)
        for a, b in zip(member.weights, saved.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Seeds 0 and 1: the members start (and end) apart.
    first = [w.numpy() for w in ensemble.members[0].trainable_weights]
    second = [w.numpy() for w in ensemble.members[1].trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(first, second, strict=True))
    meta = json.loads((out / "model.json").read_text())
    assert meta["ensemble"] == {
        "members": 2,
        "models": ["member_0/model.keras", "member_1/model.keras"],
        "seeds": [0, 1],
    }
    # Every member held out the same images; the ensemble's calibration is
    # fitted there, one draw per deterministic member.
    held = meta["calibration"]["held_out_images"]
    for k in range(2):
        member_meta = json.loads((out / f"member_{k}" / "model.json").read_text())
        assert member_meta["calibration"]["held_out_images"] == held
        assert member_meta["config"]["seed"] == k
    assert meta["calibration"]["fit"]["num_draws"] == 2
    # The reference: fit_calibration on the held-out images, z-scored as train does.
    images = np.stack(
        [bs.data.standardize_image(np.load(root / "images" / f"{n}.npy")[..., None]) for n in held]
    )
    labels = np.stack([np.load(root / "masks" / f"{n}.npy") for n in held])
    reference = bs.calibration.fit_calibration(ensemble, images, labels, num_samples=8)
    fitted = keras.saving.deserialize_keras_object(meta["calibration"]["config"])
    np.testing.assert_allclose(
        [float(fitted.slope.numpy()), float(fitted.bias.numpy())],
        [float(reference.slope.numpy()), float(reference.bias.numpy())],
        rtol=1e-3,
        atol=1e-4,
    )


@pytest.mark.slow
def test_predict_with_an_ensemble_equals_predict_mc(ensemble_run, tmp_path):
    import keras

    import bayesseg as bs

    root, _ = ensemble_run
    out = root / "run"
    preds = tmp_path / "preds"
    args = ["predict", "--model", str(out / "model.keras"), "--images", str(root / "images")]
    assert main([*args, "--out", str(preds), "--num-samples", "4", "--quiet"]) == 0
    manifest = json.loads((preds / "predictions.json").read_text())
    assert manifest["calibration"] == "PlattScaling"
    ensemble = keras.saving.load_model(out / "model.keras", compile=False)
    meta = json.loads((out / "model.json").read_text())
    calibration = keras.saving.deserialize_keras_object(meta["calibration"]["config"])
    image = bs.data.standardize_image(np.load(root / "images" / "img1.npy")[..., None])
    expected = bs.uncertainty.predict_mc(
        ensemble, image[None], num_samples=4, calibration=calibration, verbose=0
    )
    np.testing.assert_allclose(
        np.load(preds / "img1_prob.npy"), expected.mean[0, ..., 0], atol=1e-5
    )
    # Members disagree somewhere: the ensemble's epistemic map is not zero.
    assert expected.epistemic.max() > 0


@pytest.mark.slow
def test_rerunning_an_ensemble_skips_finished_members(ensemble_run, capsys):
    root, args = ensemble_run
    out = root / "run"
    stamps = [(out / f"member_{k}" / "model.keras").stat().st_mtime_ns for k in range(2)]
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "member 1/2 already trained" in printed and "member 2/2 already trained" in printed
    assert [(out / f"member_{k}" / "model.keras").stat().st_mtime_ns for k in range(2)] == stamps
    # Another ensemble size in the same folder is refused, in one line.
    changed = [*args]
    changed[changed.index("--ensemble") + 1] = "3"
    assert main(changed) == 2
    assert "belongs to another ensemble run" in capsys.readouterr().err


@pytest.mark.slow
def test_validated_ensemble_is_made_of_the_members_best_models(tmp_path):
    import keras

    images, masks = _folders(tmp_path, count=8)
    out = tmp_path / "run"
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    args += ["--ensemble", "2", "--bayesian-blocks", "none", "--val-fraction", "0.25", *TINY]
    assert main(args) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["ensemble"]["models"] == ["member_0/model_best.keras", "member_1/model_best.keras"]
    assert meta["validation"]["best_model"] == "model.keras"
    assert meta["calibration"]["held_out_images"] == meta["validation"]["images"]
    ensemble = keras.saving.load_model(out / "model.keras", compile=False)
    for k, member in enumerate(ensemble.members):
        best = keras.saving.load_model(out / f"member_{k}" / "model_best.keras", compile=False)
        for a, b in zip(member.weights, best.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.slow
def test_bayesian_blocks_decoder_keeps_the_encoder_deterministic(tmp_path):
    """("none" is the ensemble fixture's members: no Bayesian layer at all.)"""
    import keras

    import bayesseg as bs

    images, masks = _folders(tmp_path, count=2)
    out = tmp_path / "run"
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    assert main([*args, "--bayesian-blocks", "decoder", *TINY]) == 0
    model = keras.saving.load_model(out / "model.keras", compile=False)
    names = [layer.name for layer in bs.layers.bayesian_layers(model)]
    assert names and not any(name.startswith(("enc", "bottleneck")) for name in names)
    assert any(name.startswith("dec") for name in names) and "logits" in names
    assert json.loads((out / "model.json").read_text())["config"]["bayesian_blocks"] == "decoder"


def test_ensemble_and_blocks_flags_are_checked():
    assert main(["train", "--images", "x", "--masks", "y", "--ensemble", "0"]) == 2
    assert main(["train", "--images", "x", "--masks", "y", "--bayesian-blocks", "some"]) == 2
