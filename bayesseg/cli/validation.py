"""Validation in ``bayesseg train``: Monte Carlo scores of held-out images after
every epoch, the best model beside the last checkpoint, and early stopping
whose state survives a resume.

This module imports Keras at the top: ``train`` imports it inside its
functions only, so ``import bayesseg.cli`` stays free of TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

import bayesseg as bs
from bayesseg.cli.options import MONITORS
from bayesseg.cli.report import (
    _confusion,
    _confusion_scores,
    _foreground_classes,
    _read_json,
)
from bayesseg.cli.training import _window

BEST_MODEL = "model_best.keras"
STATE_FILE = "early_stopping.json"


# --------------------------------------------------------------------------
# Scores of Monte Carlo mean probabilities, pooled over images
# --------------------------------------------------------------------------
class PooledScores:
    """Pooled NLL, per-class Dice and recall of Monte Carlo mean probabilities.

    ``update`` takes one image at a time (its labels and the ``(*spatial, K)``
    mean of ``predict_mc``; one channel for 2 classes), so no more than one
    image is held in memory. The Dice and recall are those of bayesseg's
    Keras metrics, pooled over every pixel seen, from summed confusion counts
    (``report._confusion``); an undefined score (0/0: the recall of a class
    absent from every mask seen) is NaN.
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.nll_sum = 0.0
        self.count = 0
        self.confusion = np.zeros((num_classes, num_classes), np.int64)

    def update(self, labels: np.ndarray, mean: np.ndarray) -> None:
        probs = mean[..., 0] if self.num_classes == 2 else mean
        self.nll_sum += bs.metrics.predictive_nll(labels, probs) * labels.size
        self.count += labels.size
        self.confusion += _confusion(labels, mean, self.num_classes)

    def per_class(self) -> dict[str, dict[str, float]]:
        """``{class: {"dice", "recall", "support"}}``: ``bs.metrics.per_class_scores``
        values, an undefined one (0/0, e.g. the recall of a class absent from every
        mask seen) as NaN, as Keras logs hold floats."""
        rows = {}
        for c, scores in _confusion_scores(self.confusion).items():
            rows[c] = {
                key: math.nan if scores[key] is None else scores[key] for key in ("dice", "recall")
            }
            rows[c]["support"] = scores["support"]
        return rows

    def nll(self) -> float:
        return self.nll_sum / self.count if self.count else math.nan

    def logs(self) -> dict[str, float]:
        """The ``val_*`` entries of an epoch's logs."""
        rows = self.per_class()
        dice = _foreground_classes(rows)["dice"]
        logs = {"val_nll": self.nll(), "val_dice": math.nan if dice is None else dice}
        for c in range(self.num_classes):
            logs[f"val_recall_{c}"] = rows[str(c)]["recall"]
        return logs


def _predict_image(model, path, rank: int, setup: dict, statistics: tuple[float, float]):
    """``predict_mc`` of one image z-scored by ``statistics`` (the scan's
    ``(mean, std)`` for it): its mean ``(*spatial, K)``."""
    image = bs.data.read_image(path, spatial_rank=rank, nan_policy=setup["nan_policy"])
    image = bs.data.standardize_image(image, *statistics)
    window = _window(None, image.shape[:-1], model, setup["train_patch"], setup["depth"])
    pred = bs.uncertainty.predict_mc(
        model,
        image[None],
        num_samples=setup["num_samples"],
        batch_size=setup["batch_size"],
        patch_size=window,
        verbose=0,
    )
    return pred.mean[0]


def validation_logs(model, scan, setup: dict) -> dict[str, float]:
    """The ``val_*`` scores of ``model`` on the images of ``scan``, in file order.

    The model's non-trainable state (the Bayesian layers' noise counters,
    batch-norm statistics) is put back afterwards, so validating changes
    neither training nor the model saved after it.
    """
    saved = [np.array(v.numpy()) for v in model.non_trainable_variables]
    scores = PooledScores(setup["num_classes"])
    try:
        files = zip(scan.image_paths, scan.mask_paths, scan.means, scan.stds, strict=True)
        for image_path, mask_path, mean, std in files:
            probs = _predict_image(model, image_path, scan.spatial_rank, setup, (mean, std))
            scores.update(bs.data.read_mask(mask_path), probs)
    finally:
        for variable, value in zip(model.non_trainable_variables, saved, strict=True):
            variable.assign(value)
    return scores.logs()


# --------------------------------------------------------------------------
# Best model and early stopping
# --------------------------------------------------------------------------
def _fresh_state(monitor: str) -> dict[str, Any]:
    return {
        "monitor": monitor,
        "best_value": None,
        "best_epoch": None,
        "wait": 0,
        "epoch": 0,
        "stopped_epoch": None,
    }


def load_state(out: Path, monitor: str, resuming: bool) -> dict[str, Any]:
    """The early-stopping state: from ``out/early_stopping.json`` when resuming
    an interrupted run of the same monitor, else fresh."""
    path = out / STATE_FILE
    if resuming and path.is_file():
        state = _read_json(path)
        if state.get("monitor") == monitor:
            return state
    return _fresh_state(monitor)


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class _ValidationCallback(keras.callbacks.Callback):
    """After each epoch: the ``val_*`` logs, the best model, early stopping.

    Must come first among the callbacks, so the CSV log, the progress bar and
    the history see the ``val_*`` entries it adds to the epoch's logs.
    """

    def __init__(self, evaluate, out: Path, options: dict, state: dict):
        super().__init__()
        self.evaluate = evaluate
        self.out = out
        self.mode = MONITORS[options["monitor"]]
        self.patience = options["patience"]
        self.min_delta = options["min_delta"]
        self.state = state

    def on_epoch_end(self, epoch, logs=None):
        scores = self.evaluate(self.model)
        if logs is not None:
            logs.update(scores)
        state = self.state
        value = scores[state["monitor"]]
        if _improved(value, state["best_value"], self.mode, self.min_delta):
            state.update(best_value=value, best_epoch=epoch + 1, wait=0)
            temporary = self.out / f"{BEST_MODEL[: -len('.keras')]}.tmp.keras"
            self.model.save(os.fspath(temporary))
            os.replace(temporary, self.out / BEST_MODEL)
        else:
            state["wait"] += 1
        state["epoch"] = epoch + 1
        if self.patience and state["wait"] >= self.patience:
            state["stopped_epoch"] = epoch + 1
            self.model.stop_training = True
        (self.out / STATE_FILE).write_text(json.dumps(state, indent=2))


def validation_callback(model_setup: dict, val_scan, out: Path, options: dict, resuming: bool):
    """The callback validating on ``val_scan`` after every epoch (see the class)."""
    setup = {**model_setup, "num_samples": options["val_samples"]}
    state = load_state(out, options["monitor"], resuming)
    return _ValidationCallback(
        lambda model: validation_logs(model, val_scan, setup), out, options, state
    )
