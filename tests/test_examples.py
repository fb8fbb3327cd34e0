"""The examples run end to end at tiny sizes and return sane metrics."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY = ["--num-images", "8", "--size", "16", "--epochs", "1", "--base-filters", "2"]
TINY += ["--depth", "2"]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bias_init_reproduces_frequencies_and_trial_answer():
    result = _load("bias_init").main([])
    log_f = np.log([0.4, 0.3, 0.2, 0.08, 0.02])
    np.testing.assert_allclose(result["softmax_bias"], log_f - log_f.mean(), atol=1e-12)
    assert result["offset_of_trial_answer"] == pytest.approx(2.0, abs=0.05)
    assert result["trial_answer_max_error"] < 0.05
    np.testing.assert_allclose(
        result["start_probabilities"], [0.4, 0.3, 0.2, 0.08, 0.02], atol=1e-6
    )
    assert result["binary_bias"] == pytest.approx(math.log(1 / 59))
    np.testing.assert_allclose(result["class_weights"], [2142 / (3 * n) for n in (370, 977, 795)])
    np.testing.assert_allclose(result["weighted_counts"], [714.0] * 3)


@pytest.mark.slow
def test_lesion_segmentation_tiny():
    result = _load("lesion_segmentation").main(TINY)
    assert 0.005 < result["lesion_fraction"] < 0.05
    assert result["class_weights"][1] > 10 * result["class_weights"][0]
    for key in ("f1_background", "recall_background", "f1_lesion", "recall_lesion", "lesion_f1"):
        assert 0.0 <= result[key] <= 1.0, key
    for key in ("foreground_ece", "mean_epistemic", "nll", "kl"):
        assert math.isfinite(result[key]) and result[key] >= 0, key


@pytest.mark.slow
def test_multiclass_unet_tiny():
    result = _load("multiclass_unet").main([*TINY, "--num-classes", "5"])
    assert len(result["recall_per_class"]) == 5 and len(result["class_weights"]) == 5
    assert result["background_fraction"] > 0.9
    assert result["class_weights"][0] < 1.0 < max(result["class_weights"][1:])
    assert 0.0 <= result["background_recall"] <= 1.0
    assert 0.0 <= result["accuracy"] <= 1.0
    assert all(math.isfinite(b) for b in result["output_bias"])
    finite = [r for r in result["recall_per_class"] if not math.isnan(r)]
    assert finite and all(0.0 <= r <= 1.0 for r in finite)


@pytest.mark.slow
def test_anomaly_lstm_tiny(tmp_path):
    import json

    import bayesseg as bs

    args = ["--series", "40", "--test-series", "8", "--length", "448", "--epochs", "1"]
    out = tmp_path / "run"
    result = _load("anomaly_lstm").main(
        args + ["--units", "4", "--samples", "2", "--out", str(out)]
    )
    assert 0 < result["anomaly_rate"] < 0.05
    for key in ("event_f1", "precision", "recall", "average_precision", "final_loss"):
        assert math.isfinite(result[key]) and result[key] >= 0
    # The flag-all floor is the event F1 of flagging every held-out step.
    _, yt = bs.data.synthetic_anomaly_series(8, length=448, kind="mixed", seed=10_000)
    flag_all = bs.metrics.event_f1(yt, np.ones_like(yt), threshold=0.5)["f1"]
    assert result["flag_all_f1"] == pytest.approx(flag_all)
    saved = json.loads((out / "model.json").read_text())
    assert saved["task"] == "series" and saved["decision"]["threshold"] == result["threshold"]


def test_kl_magnitudes_reports_kl_far_above_nll_but_small_gradient():
    module = _load("kl_magnitudes")
    row = module.measure((16, 16, 1), num_examples=100)
    assert row["kl_raw"] > 100 * row["nll_per_pixel"]
    assert row["grad_norm_kl"] < row["grad_norm_nll"]
    assert row["elements_per_example"] == 256


@pytest.mark.slow
def test_diagnose_training_tiny(tmp_path):
    args = [
        "--out",
        str(tmp_path),
        "--images",
        "16",
        "--size",
        "16",
        "--epochs",
        "1",
        "--series",
        "48",
        "--length",
        "32",
        "--pretrain-epochs",
        "1",
        "--bad-batch",
        "2",
    ]
    result = _load("diagnose_training").main(args)
    assert (tmp_path / "training.png").exists() and (tmp_path / "gradients.png").exists()
    assert math.isfinite(result["gradients"]["after"]["nll_norm"])
    assert isinstance(result["spike"]["spikes"], list)


@pytest.mark.slow
def test_multi_gpu_example_on_two_logical_cpus():
    args = ["--num-images", "16", "--size", "16", "--epochs", "2", "--batch", "4"]
    result = _load("multi_gpu").main(args)
    assert result["replicas_same_lr"]["replicas"] == 2
    # Same epochs, twice the global batch: half the optimizer steps.
    assert result["replicas_same_lr"]["steps"] * 2 == result["one_replica"]["steps"]
    assert result["scaled_learning_rate"] == pytest.approx(2e-3 * math.sqrt(2))
    for run in ("one_replica", "replicas_same_lr", "replicas_scaled_lr"):
        assert 0.0 <= result[run]["dice"] <= 1.0 and math.isfinite(result[run]["final_nll"])
