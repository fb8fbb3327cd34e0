"""The ``bayesseg`` argument parser: one builder per command, one-line usage errors.

Building it imports no TensorFlow: the command functions it dispatches to
import TensorFlow themselves, once the arguments are valid.
"""

from __future__ import annotations

import argparse

from bayesseg._defaults import (
    DEFAULT_SCALE_MULTIPLIER,
    ESTIMATORS,
)
from bayesseg._version import __version__
from bayesseg.cli.demo import _demo
from bayesseg.cli.ensemble import train_command
from bayesseg.cli.options import (
    MONITORS,
    NAN_POLICIES,
    STRATEGIES,
    TRAIN_TASKS,
    ZSCORES,
    _choice,
    _fraction,
    _int,
    _non_negative_float,
    _non_negative_int,
    _num_classes,
    _overlap,
    _positive_float,
    _positive_int,
    _probability_arg,
    _recall_target,
    _UsageError,
    _val_samples,
)
from bayesseg.cli.predict import _predict
from bayesseg.recipes.segmentation import (
    BAYESIAN_BLOCKS,
    CLASS_DEPENDENT_DEFAULTS,
    CLASS_WEIGHTS,
    KL_SCALINGS,
    LR_SCHEDULES,
    NORMALIZATIONS,
    PREDICT_BATCH_SIZE,
    PREDICT_OVERLAP,
    SegmentationConfig,
)
from bayesseg.recipes.series import SeriesConfig


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage dump), and which never
    completes an abbreviated option (``--lr`` is not ``--lr-schedule``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise _UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# The recipes' defaults, quoted in the help (they hold them once).
_SEGMENTATION = SegmentationConfig()
_SERIES = SeriesConfig()
_MANY_CLASS_MULTIPLIER = CLASS_DEPENDENT_DEFAULTS["scale_multiplier"][1]
_UNET_START, _MANY_CLASS_START = CLASS_DEPENDENT_DEFAULTS["posterior_scale_init"]


def _note(value) -> str:
    return f" (default: {value})"


def _add_network_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """--batch-size, --estimator, --base-filters, --depth (demo's defaults or None)."""

    def default(value):
        return value if defaults else None

    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="examples per optimizer step"
        + _note(
            f"8; --task series: {_SERIES.batch_size} windows"
            if defaults
            else f"{_SEGMENTATION.batch_size}; --task series: {_SERIES.batch_size} windows"
        ),
    )
    parser.add_argument(
        "--estimator",
        type=_choice(ESTIMATORS),
        default=default("flipout"),
        help="gradient estimator of the Bayesian layers: flipout or reparameterization"
        + _note("flipout"),
    )
    parser.add_argument(
        "--base-filters",
        type=_positive_int,
        default=default(8),
        help="filters of the first U-Net level, doubled per level (--task series: 2x "
        "this in each of the two Conv1D layers, 4x LSTM units per direction)"
        + _note(8 if defaults else _SEGMENTATION.base_filters),
    )
    parser.add_argument(
        "--depth",
        type=_positive_int,
        default=default(3),
        help="U-Net resolution levels; spatial sizes must be divisible by 2**(depth-1)"
        + _note(3 if defaults else 4),
    )


def _add_optimizer_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """Class weights, Adam, the posterior's start and speed, --quiet."""

    def default(value):
        return value if defaults else None

    parser.add_argument(
        "--class-weights",
        type=_choice(CLASS_WEIGHTS),
        default=None,
        help="how class weights are computed from the training masks: balanced "
        "(N / (C * n_c)), inverse_sqrt (sqrt of balanced: recall without wrecking "
        "precision), effective_number or none"
        + _note(
            "inverse_sqrt"
            if defaults
            else "balanced; inverse_sqrt for more than 2 classes and for --task series"
        ),
    )
    parser.add_argument(
        "--clipnorm",
        type=_positive_float,
        default=default(1.0),
        help="Adam's global_clipnorm" + _note(1.0),
    )
    parser.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=None,
        help="Adam's (peak) learning rate"
        + _note(
            f"0.001; --task series: {_SERIES.learning_rate:g}; --task multiclass: 0.01"
            if defaults
            else f"0.001; 0.01 for more than 2 classes; --task series: {_SERIES.learning_rate:g}"
        ),
    )
    parser.add_argument(
        "--lr-schedule",
        type=_choice(LR_SCHEDULES),
        default=None,
        help="constant, or cosine: a linear warm-up over the first 5%% of the steps to "
        "--learning-rate, then a cosine decay to 0 at the last step"
        + _note(
            "constant; --task multiclass: cosine"
            if defaults
            else "constant; cosine for more than 2 classes"
        ),
    )
    parser.add_argument(
        "--posterior-scale-init",
        type=_positive_float,
        default=None,
        help="initial posterior standard deviation of every Bayesian weight"
        + _note(
            f"{_UNET_START:g}; {_MANY_CLASS_START:g} for more than 2 classes; --task series: "
            f"{_SERIES.posterior_scale_init:g}"
        ),
    )
    parser.add_argument(
        "--scale-multiplier",
        type=_positive_float,
        default=None,
        help="posterior scale = softplus(multiplier * rho): how many times faster than "
        "the learning rate the scales move under Adam; 1 gives the classic, "
        "rate-limited parameterisation"
        + _note(
            f"{DEFAULT_SCALE_MULTIPLIER:g}; --task multiclass: {_MANY_CLASS_MULTIPLIER:g}; "
            f"--task series: {_SERIES.scale_multiplier:g}"
            if defaults
            else f"{DEFAULT_SCALE_MULTIPLIER:g}; {_MANY_CLASS_MULTIPLIER:g} for more than 2 "
            f"classes (their learning rate is 10x); --task series: {_SERIES.scale_multiplier:g}"
        ),
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_model_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """Options shared by demo (with its defaults) and train (None: resolved later)."""
    _add_network_options(parser, defaults)
    _add_optimizer_options(parser, defaults)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayesseg`` command.

    Returns:
        An ``argparse.ArgumentParser`` with the sub-commands ``demo``,
        ``train`` and ``predict``. Its ``error`` raises instead of exiting;
        :func:`main` turns that into a one-line message and exit code 2.

    Example:

    >>> from bayesseg.cli import build_parser
    >>> args = build_parser().parse_args(["demo", "--epochs", "2"])
    >>> args.task, args.epochs
    ('lesion', 2)
    """
    parser = _Parser(
        prog="bayesseg",
        description="Bayesian segmentation on imbalanced data (Keras 3, TensorFlow "
        "Probability): train a Bayesian U-Net with a class-weighted ELBO and write "
        "probability and uncertainty maps. Exit codes: 0 success, 2 bad arguments or "
        "input data (one-line message on stderr).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_demo(sub)
    _add_train(sub)
    _add_predict(sub)
    for command in sub.choices.values():
        command.add_argument(
            "--verbose",
            action="store_true",
            help="show TensorFlow's own start-up and warning lines (hidden by default; a "
            "TF_CPP_MIN_LOG_LEVEL you set is respected either way)",
        )
    return parser


def _add_demo(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="train on the embedded synthetic data and write a report",
        description="Train a Bayesian U-Net on synthetic imbalanced data (CPU, a few "
        "minutes), evaluate it on held-out synthetic images and write report.json, "
        "uncertainty.png, training.png and gradients.png to --out. The lesion task also "
        "trains the same model with plain, unweighted BCE and compares lesion recall. "
        "The anomaly task trains a bidirectional Bayesian LSTM tagger on windows of long "
        "series, chooses its threshold on a validation split, compares it with a rolling "
        "z-score detector and saves model.keras and model.json for bayesseg predict.",
    )
    demo.add_argument(
        "--task",
        choices=("lesion", "multiclass", "series", "anomaly"),
        default="lesion",
        help="lesion: binary masks, ~1 lesion pixel per 60; multiclass: "
        "--num-classes classes, mostly background; series (or anomaly): per-timestep "
        "anomalies (2 steps in 20%% of the series) in series of --length steps, "
        "Bayesian LSTM tagger (default: lesion)",
    )
    demo.add_argument(
        "--length",
        type=_positive_int,
        default=4096,
        help="anomaly task: steps per series; --num-images series are generated (default: 4096)",
    )
    demo.add_argument(
        "--window",
        type=_positive_int,
        default=512,
        help="anomaly task: training windows of this many steps, half of them around an "
        "anomaly (the whole series when longer) (default: 512)",
    )
    demo.add_argument(
        "--anomaly-kind",
        type=_choice(("mixed", "point", "contextual")),
        default="mixed",
        help="anomaly task: point (spikes, level jumps), contextual (missing or late "
        "beats of a pulse train) or mixed (either, even odds) (default: mixed)",
    )
    demo.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="training epochs (default: 12; --task multiclass: 10; --task anomaly: 8, "
        "over the windows)",
    )
    demo.add_argument(
        "--out", default="bayesseg-demo", help="output folder (default: bayesseg-demo)"
    )
    demo.add_argument("--seed", type=_int, default=0, help="random seed (default: 0)")
    demo.add_argument(
        "--num-images",
        type=_positive_int,
        default=None,
        help="training images (series for --task anomaly) (default: 160; --task multiclass: "
        "1280; --task anomaly: 640)",
    )
    demo.add_argument(
        "--num-test-images",
        type=_positive_int,
        default=None,
        help="held-out images (series for --task anomaly) the report scores (default: "
        "200 for --task multiclass, so every class is present; else a quarter of "
        "--num-images, at least 4 images or 8 series)",
    )
    demo.add_argument(
        "--size", type=_positive_int, default=64, help="image side in pixels (default: 64)"
    )
    demo.add_argument(
        "--num-classes",
        type=_num_classes,
        default=None,
        help="classes of the multiclass task, background included (default: 8)",
    )
    demo.add_argument(
        "--background-fraction",
        type=_overlap,
        default=0.97,
        help="background share of the multiclass task (default: 0.97)",
    )
    demo.add_argument(
        "--num-samples",
        type=_positive_int,
        default=None,
        help="Monte Carlo draws per held-out image (default: 16)",
    )
    _add_model_options(demo, defaults=True)
    demo.set_defaults(func=_demo)


def _add_train_data_options(train: argparse.ArgumentParser) -> None:
    """--config, --epochs, --patch-size, --patches-per-image, --out."""
    train.add_argument(
        "--config",
        default=None,
        help="TOML file with any of these options (snake_case or dashes, top level or "
        "under [train]); command-line flags override it",
    )
    train.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help=f"training epochs (default: {_SEGMENTATION.epochs}; --task series: "
        f"{_SERIES.epochs}, over the windows)",
    )
    train.add_argument(
        "--patch-size",
        type=_positive_int,
        nargs="+",
        default=None,
        help="train on random patches of this size (1 value or one per spatial axis); "
        "needed when images differ in shape (default: whole images)",
    )
    train.add_argument(
        "--patches-per-image",
        type=_positive_int,
        default=None,
        help="random patches per image and epoch (default: 4)",
    )
    train.add_argument("--out", default=None, help="output folder (default: bayesseg-run)")


def _add_train_validation_options(train: argparse.ArgumentParser) -> None:
    """--val-fraction, --val-images/--val-masks, --val-samples and early stopping."""
    train.add_argument(
        "--val-fraction",
        type=_fraction,
        default=None,
        metavar="FRACTION",
        help="hold out this fraction of the images (seeded, by image or volume) for "
        "validation after every epoch; the calibration is then fitted on them (default: 0; "
        f"--task series: {_SERIES.val_fraction:g} of the series, at least "
        f"{_SERIES.min_val_series}, to choose the decision threshold on)",
    )
    train.add_argument(
        "--val-images", default=None, help="folder of validation images (with --val-masks)"
    )
    train.add_argument("--val-masks", default=None, help="folder of validation masks")
    train.add_argument(
        "--val-samples",
        type=_val_samples,
        default=None,
        help="Monte Carlo draws per validation image; the scores are those of their "
        "mean (default: 8, at least 4)",
    )
    train.add_argument(
        "--monitor",
        type=_choice(tuple(MONITORS)),
        default=None,
        help="validation score that picks the best model and stops early: val_nll "
        "(lower is better) or val_dice (higher is better) (default: val_nll)",
    )
    train.add_argument(
        "--patience",
        type=_non_negative_int,
        default=None,
        help="stop after this many epochs without improvement; 0 never stops early (default: 10)",
    )
    train.add_argument(
        "--min-delta",
        type=_non_negative_float,
        default=None,
        help="smallest change of the monitor that counts as an improvement (default: 0)",
    )


def _add_nan_policy(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument(
        "--nan-policy",
        type=_choice(NAN_POLICIES),
        default=default,
        help="NaN or infinite values in an image: error (one line naming the file, exit "
        "code 2) or zero (replaced by 0 before the z-score) (default: error)",
    )


def _add_train(sub) -> None:
    train = sub.add_parser(
        "train",
        help="train on folders of images and masks",
        description="Train a Bayesian U-Net on --images and --masks (paired by file stem; "
        ".npy, .npz, .png, .tif/.tiff, .nii/.nii.gz). Class weights and the output bias "
        "come from the mask counts, the KL is scaled per example. Writes "
        "out/model.keras (checkpointed every epoch; rerun the same command to resume an "
        "interrupted run), out/model.json, out/training.csv, training.png, "
        "gradients.png and TensorBoard logs when tensorboard is installed. Options may "
        "come from --config (TOML; flags override it).",
    )
    train.add_argument(
        "--task",
        type=_choice(TRAIN_TASKS),
        default=None,
        help="segmentation: a U-Net on --images and --masks; series (or anomaly): a "
        "Bayesian LSTM tagger on a folder of series (.npy of shape (length,) or (length, "
        "features), or .csv with a header row, one column per feature) of any lengths, "
        "with 0/1 per-step labels of the same stem in --masks (or --label-column) "
        "(default: segmentation)",
    )
    train.add_argument("--images", default=None, help="folder of images, or of series (required)")
    train.add_argument(
        "--masks",
        default=None,
        help="folder of integer masks, or of per-step 0/1 labels (required, unless --label-column)",
    )
    train.add_argument(
        "--label-column",
        default=None,
        metavar="NAME",
        help="--task series with .csv series: the column holding the 0/1 labels (the "
        "other columns are the features; no --masks then)",
    )
    train.add_argument(
        "--window",
        type=_positive_int,
        default=None,
        help="--task series: training windows of this many steps, half of them around an "
        f"event (default: {_SERIES.window})",
    )
    train.add_argument(
        "--strategy",
        type=_choice(STRATEGIES),
        default=None,
        help="where training runs: default (one device), mirrored (every visible GPU, or "
        "CPU), multiworker (the cluster TF_CONFIG describes) or auto (mirrored over the "
        "GPUs when there is more than one, else default) (default: auto)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="train from scratch into an --out that holds another run (its files are "
        "replaced); without it such a folder is an error, a finished identical run is "
        "reported and kept, an interrupted one is resumed",
    )
    _add_train_data_options(train)
    train.add_argument(
        "--num-classes",
        type=_num_classes,
        default=None,
        help="classes including background; 2 trains one sigmoid output, more a softmax. "
        "Labels outside [0, num-classes) are an error (default: largest label + 1)",
    )
    train.add_argument(
        "--normalization",
        type=_choice(NORMALIZATIONS),
        default=None,
        help="normalisation in the U-Net blocks: none, batch or group (default: none)",
    )
    train.add_argument(
        "--bayesian-blocks",
        type=_choice(BAYESIAN_BLOCKS),
        default=None,
        help="which layers are Bayesian: all, decoder (up-convolutions, decoder and head), "
        "bottleneck (the bottleneck block and the head), last (the head) or none (a "
        "deterministic U-Net trained with the weighted likelihood alone, e.g. as "
        "deep-ensemble members; no training.png or gradients.png, which plot the "
        "ELBO's parts) (default: bottleneck)",
    )
    train.add_argument(
        "--ensemble",
        type=_positive_int,
        default=None,
        metavar="K",
        help="train K members (seeds seed, seed+1, ...; the same held-out split) into "
        "out/member_<k>/ and save them as one deep ensemble in out/model.keras, its "
        "calibration fitted on the held-out images; rerunning skips finished members "
        "(default: 1, one model)",
    )
    train.add_argument(
        "--kl-scaling",
        type=_choice(KL_SCALINGS),
        default=None,
        help="KL weight: per-example (1/N, N examples per epoch), per-batch (1/(M*B)) or "
        "blundell (pi_i/B) (default: per-example)",
    )
    train.add_argument(
        "--calibration-split",
        type=_fraction,
        default=None,
        metavar="FRACTION",
        help="hold out this fraction of the images (seeded, disjoint from training), fit "
        "Platt scaling (binary) or temperature scaling with class biases on the model's "
        "Monte Carlo logits there after training, and save it in model.json; predict "
        "applies it. 0 = off (default: 0). With a validation set (--val-fraction, "
        "--val-images) the calibration is fitted on it instead: do not combine them",
    )
    train.add_argument(
        "--recall-target",
        type=_recall_target,
        default=None,
        metavar="R",
        help="after training, choose on the held-out images of --calibration-split (needed) "
        "the threshold on predict's foreground probability (1 - p(background) for more "
        "than 2 classes) whose expected per-image recall on new images with foreground is "
        "at least R (conformal risk control, alpha = 1 - R; needs at least 1/(1 - R) - 1 "
        "held-out images with foreground, e.g. 9 for 0.9), and save it in model.json; "
        "predict then also writes <stem>_recall_labels. --task series: on the validation "
        "series, the expected share of a series' events found (default: off)",
    )
    _add_train_validation_options(train)
    _add_nan_policy(train, None)
    train.add_argument(
        "--zscore",
        type=_choice(ZSCORES),
        default=None,
        help="how images are standardised: image (each by its own mean and standard "
        "deviation) or dataset (every image by those of all training images, kept in "
        "model.json and applied by predict: for intensities that mean something, such "
        "as CT in Hounsfield units) (default: image)",
    )
    train.add_argument("--seed", type=_int, default=None, help="random seed (default: 0)")
    _add_model_options(train, defaults=False)
    train.set_defaults(func=train_command)


def _add_predict(sub) -> None:
    predict = sub.add_parser(
        "predict",
        help="write probability and uncertainty maps",
        description="Monte Carlo prediction with a trained model on every image of "
        "--images. Writes, per image, <stem>_prob, <stem>_labels, <stem>_epistemic and "
        "<stem>_aleatoric in the input's format (PNG: 16-bit, see predictions.json for "
        "the scaling; TIFF: float; NIfTI: with the input's affine and header). Images "
        "larger than the training patches are predicted with sliding windows. A model "
        "trained with --recall-target also gets <stem>_recall_labels (foreground score >= "
        "the saved threshold), and predictions.json states the guarantee. With a "
        "series tagger (demo --task anomaly's model.keras), --images holds .npy series "
        "of shape (length,) or (length, features): each is predicted whole, its "
        "probabilities corrected and thresholded by the rule saved in model.json, and "
        "predictions.json lists the flagged events.",
    )
    predict.add_argument("--model", required=True, help="a model.keras written by train")
    predict.add_argument("--images", required=True, help="folder of images")
    predict.add_argument("--out", required=True, help="output folder")
    predict.add_argument(
        "--num-samples",
        type=_positive_int,
        default=None,
        help="Monte Carlo draws per image (default: 16, or those a model's recall guarantee "
        "was fitted with)",
    )
    predict.add_argument(
        "--patch-size",
        type=_positive_int,
        nargs="+",
        default=None,
        help="sliding-window size (1 value or one per spatial axis) (default: the "
        "training patch size for larger images, else the whole image)",
    )
    predict.add_argument(
        "--overlap",
        type=_overlap,
        default=PREDICT_OVERLAP,
        help=f"overlap of neighbouring windows, in [0, 1) (default: {PREDICT_OVERLAP})",
    )
    predict.add_argument(
        "--batch-size",
        type=_positive_int,
        default=PREDICT_BATCH_SIZE,
        help=f"windows per forward pass (default: {PREDICT_BATCH_SIZE})",
    )
    predict.add_argument(
        "--threshold",
        type=_probability_arg,
        default=None,
        help="series tagger: flag steps whose corrected probability is at least this "
        "(default: the threshold model.json saved, chosen on a validation split)",
    )
    predict.add_argument(
        "--calibrate",
        action="store_true",
        help="undo the class weights' shift of the probabilities (weights from model.json); "
        "an alternative to a calibration fitted by train --calibration-split, which is "
        "applied by default",
    )
    predict.add_argument(
        "--ignore-calibration",
        action="store_true",
        help="do not apply the calibration fitted by train --calibration-split",
    )
    predict.add_argument(
        "--ignore-recall-guarantee",
        action="store_true",
        help="do not write the labels of the recall guarantee saved by train "
        "--recall-target (<stem>_recall_labels), nor score them",
    )
    predict.add_argument(
        "--masks",
        default=None,
        help="folder of masks paired with --images by file stem: write metrics.json with "
        "per-image and pooled per-class Dice and recall, lesion-wise F1, foreground ECE "
        "and NLL of the written maps (series: .npy 0/1 step labels; event-level scores "
        "and average precision)",
    )
    predict.add_argument(
        "--preview",
        type=_positive_int,
        nargs="?",
        const=3,
        default=None,
        metavar="SLICES",
        help="write <stem>_preview*.png (input, truth with --masks, mean prediction, "
        "epistemic, aleatoric) of each image, SLICES evenly spread slices of a volume "
        "(default when given without a number: 3)",
    )
    predict.add_argument(
        "--label-column",
        default=None,
        metavar="NAME",
        help="series tagger with .csv series: the column holding 0/1 labels (scored as "
        "--masks would be; the other columns are the features)",
    )
    _add_nan_policy(predict, "error")
    predict.add_argument("--quiet", action="store_true", help="less output")
    predict.set_defaults(func=_predict)
