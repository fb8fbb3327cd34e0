"""The command line's vocabulary: option types, choices, `train` options, usage errors.

Every option type parses its text and checks the value with the package's
shared checks (``bayesseg._validation``); a bad value becomes argparse's
one-line usage error in the package's style, ``argument --x: must be ... Received: '...'``
(argparse names the option; exit code 2).
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from bayesseg._defaults import (
    ESTIMATORS,
)
from bayesseg._validation import check_choice, check_float, check_int

# The recipe's choices (it owns them): class weights, normalisations,
# bayesian_unet's bayesian_blocks and "none" (a deterministic U-Net), KL
# scalings, and learning-rate schedules (constant, or
# bs.training.warmup_cosine_decay).
from bayesseg.recipes.segmentation import (
    BAYESIAN_BLOCKS,
    CLASS_WEIGHTS,
    KL_SCALINGS,
    LR_SCHEDULES,
    NORMALIZATIONS,
    SegmentationConfig,
)

EXIT_USAGE = 2
# Early-stopping monitors of `train`: name -> "min" or "max" (which way is better).
MONITORS = {"val_nll": "min", "val_dice": "max"}
# Fewest Monte Carlo draws of a validation pass: one draw of a Bayesian model is noisy.
MIN_VAL_SAMPLES = 4
# What the loaders do with NaN/Inf in images: bayesseg.data._finite.NAN_POLICIES,
# written out because importing bayesseg.data imports TensorFlow (a test keeps
# the two equal).
NAN_POLICIES = ("error", "zero")
# How train z-scores its images (model.json records it; predict applies the same):
# by each image's own statistics, or by the pooled statistics of the training images.
ZSCORES = ("image", "dataset")
# What `train` trains: a U-Net on images and masks, or a tagger on series and
# per-step labels ("anomaly" is another name of "series", the demo's name).
TRAIN_TASKS = ("segmentation", "series", "anomaly")
# How `train` places the model: bayesseg.training.STRATEGIES, written out
# because importing bayesseg.training imports TensorFlow (a test keeps them equal).
STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def canonical_task(task: str) -> str:
    """The one name of a task: "anomaly" is "series" (the demo's older name)."""
    return "series" if task == "anomaly" else task


class _UsageError(Exception):
    """A command-line mistake: reported in one line, exit code 2."""


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())


# --------------------------------------------------------------------------
# Argument types
# --------------------------------------------------------------------------
def _option_type(parse: Callable[[str], Any], check: Callable[[Any], Any], expectation: str):
    """An argparse type: ``check(parse(text))``, else "must be <expectation>. Received: <text>"."""

    def convert(text: str) -> Any:
        try:
            return check(parse(text))
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {expectation}. Received: {text!r}") from None

    return convert


def _canonical_int(text: str) -> int:
    """``int(text)`` for a plain decimal integer (sign, spaces allowed; not ``08``, ``1e3``)."""
    value = int(text)
    if str(text).strip().lstrip("+") != str(value):
        raise ValueError(text)
    return value


_positive_int = _option_type(
    _canonical_int, lambda v: check_int("value", v, minimum=1), "a positive integer"
)
_int = _option_type(int, lambda v: check_int("value", v, minimum=None), "an integer")
_positive_float = _option_type(
    float,
    lambda v: check_float("value", v, minimum=0, strict_minimum=True),
    "a finite number > 0",
)


def _in_unit_interval(noun: str):
    """An argument type for numbers in [0, 1); ``noun`` names them in the error."""
    return _option_type(
        float,
        lambda v: check_float("value", v, minimum=0, maximum=1, strict_maximum=True),
        f"{noun} in [0, 1)",
    )


_non_negative_int = _option_type(
    _canonical_int, lambda v: check_int("value", v, minimum=0), "an integer >= 0"
)
_non_negative_float = _option_type(
    float, lambda v: check_float("value", v, minimum=0), "a finite number >= 0"
)
_val_samples = _option_type(
    _canonical_int,
    lambda v: check_int("value", v, minimum=MIN_VAL_SAMPLES),
    f"an integer >= {MIN_VAL_SAMPLES}",
)
_overlap = _in_unit_interval("a number")
_fraction = _in_unit_interval("a fraction")
_probability_arg = _option_type(
    float,
    lambda v: check_float("value", v, minimum=0, maximum=1, strict_minimum=True),
    "a probability in (0, 1]",
)
_recall_target = _option_type(
    float,
    lambda v: check_float(
        "value", v, minimum=0, maximum=1, strict_minimum=True, strict_maximum=True
    ),
    "a recall in (0, 1), e.g. 0.9",
)


def _num_classes(text: str) -> int:
    value = _positive_int(text)
    try:
        return check_int("num_classes", value, minimum=2)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be >= 2 (background included; 2 means binary). Received: {text!r}"
        ) from None


def _choice(choices: tuple[str, ...]):
    parse = _option_type(
        str, lambda v: check_choice("value", v, choices), f"one of {', '.join(choices)}"
    )
    parse.__name__ = "choice"
    return parse


def _text(text: str) -> str:
    return str(text)


# The segmentation recipe's defaults: `train`'s, written once in the recipe's config
# (the series recipe's are bayesseg.recipes.SeriesConfig's, applied by train_series.py).
_SEGMENTATION = SegmentationConfig()
# Options of `train` that a TOML config may set: name -> (type, default).
_TRAIN_OPTIONS: dict[str, tuple[Any, Any]] = {
    "task": (_choice(TRAIN_TASKS), "segmentation"),
    "images": (_text, None),
    "masks": (_text, None),
    "out": (_text, "bayesseg-run"),
    "epochs": (_positive_int, _SEGMENTATION.epochs),
    "batch_size": (_positive_int, _SEGMENTATION.batch_size),
    "patch_size": (_positive_int, None),
    "patches_per_image": (_positive_int, 4),
    "num_classes": (_num_classes, None),
    "estimator": (_choice(ESTIMATORS), _SEGMENTATION.estimator),
    "bayesian_blocks": (_choice(BAYESIAN_BLOCKS), _SEGMENTATION.bayesian_blocks),
    "ensemble": (_positive_int, 1),
    "base_filters": (_positive_int, _SEGMENTATION.base_filters),
    "depth": (_positive_int, _SEGMENTATION.depth),
    "normalization": (_choice(NORMALIZATIONS), _SEGMENTATION.normalization),
    # None: resolved from the classes found (SegmentationConfig.resolve, the
    # recipe's CLASS_DEPENDENT_DEFAULTS); class_weights too, below.
    "learning_rate": (_positive_float, None),
    "lr_schedule": (_choice(LR_SCHEDULES), None),
    "clipnorm": (_positive_float, _SEGMENTATION.clipnorm),
    "class_weights": (_choice(CLASS_WEIGHTS), None),
    "kl_scaling": (_choice(KL_SCALINGS), _SEGMENTATION.kl_scaling),
    "posterior_scale_init": (_positive_float, None),
    "scale_multiplier": (_positive_float, _SEGMENTATION.scale_multiplier),
    "calibration_split": (_fraction, 0.0),
    # The recall guarantee fitted on the --calibration-split images (None: off).
    "recall_target": (_recall_target, None),
    "val_fraction": (_fraction, 0.0),
    "val_images": (_text, None),
    "val_masks": (_text, None),
    "val_samples": (_val_samples, 8),
    "monitor": (_choice(tuple(MONITORS)), "val_nll"),
    "patience": (_non_negative_int, 10),
    "min_delta": (_non_negative_float, 0.0),
    "nan_policy": (_choice(NAN_POLICIES), "error"),
    "zscore": (_choice(ZSCORES), "image"),
    "seed": (_int, _SEGMENTATION.seed),
    "strategy": (_choice(STRATEGIES), "auto"),
    # --task series: windows (None: the series recipe's default) and labels in the CSV.
    "window": (_positive_int, None),
    "label_column": (_text, None),
}
