"""The ``bayesseg`` command line: ``demo``, ``train`` and ``predict``.

``bayesseg demo`` trains a Bayesian U-Net on the embedded synthetic data and
writes a report with figures; ``bayesseg train`` runs the same pipeline on
folders of images and masks; ``bayesseg predict`` writes probability and
uncertainty maps in the input's format. See ``docs/cli.md``.

Bad paths, shapes or values end the command with a one-line message on
stderr and exit code 2 (``main`` returns it); TensorFlow is imported only
once the arguments are valid.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from bayesseg._defaults import (
    DEFAULT_POSTERIOR_SCALE_INIT,
    DEFAULT_RECURRENT_SCALE_MULTIPLIER,
    DEFAULT_SCALE_MULTIPLIER,
)
from bayesseg._version import __version__

EXIT_USAGE = 2

_CLASS_WEIGHTS = ("balanced", "inverse_sqrt", "effective_number", "none")
_ESTIMATORS = ("flipout", "reparameterization")
_NORMALIZATIONS = ("none", "batch", "group")
_KL_SCALINGS = ("per-example", "per-batch", "blundell")


class _UsageError(Exception):
    """A command-line mistake: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage dump)."""

    def error(self, message: str):
        raise _UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# --------------------------------------------------------------------------
# Argument types
# --------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or str(text).strip().lstrip("+") != str(value):
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from err


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _in_unit_interval(noun: str):
    """An argument type for numbers in [0, 1); ``noun`` names them in the error."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = math.nan
        if not 0.0 <= value < 1.0:
            raise argparse.ArgumentTypeError(f"must be {noun} in [0, 1), got {text!r}")
        return value

    return parse


_overlap = _in_unit_interval("a number")
_fraction = _in_unit_interval("a fraction")


def _num_classes(text: str) -> int:
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"must be >= 2 (background included; 2 means binary), got {text!r}"
        )
    return value


def _choice(choices: tuple[str, ...]):
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}, got {text!r}")
        return text

    parse.__name__ = "choice"
    return parse


def _text(text: str) -> str:
    return str(text)


# Options of `train` that a TOML config may set: name -> (type, default).
_TRAIN_OPTIONS: dict[str, tuple[Any, Any]] = {
    "images": (_text, None),
    "masks": (_text, None),
    "out": (_text, "bayesseg-run"),
    "epochs": (_positive_int, 20),
    "batch_size": (_positive_int, 4),
    "patch_size": (_positive_int, None),
    "patches_per_image": (_positive_int, 4),
    "num_classes": (_num_classes, None),
    "estimator": (_choice(_ESTIMATORS), "flipout"),
    "base_filters": (_positive_int, 16),
    "depth": (_positive_int, 4),
    "normalization": (_choice(_NORMALIZATIONS), "none"),
    "learning_rate": (_positive_float, 1e-3),
    "clipnorm": (_positive_float, 1.0),
    "class_weights": (_choice(_CLASS_WEIGHTS), "balanced"),
    "kl_scaling": (_choice(_KL_SCALINGS), "per-example"),
    "posterior_scale_init": (_positive_float, DEFAULT_POSTERIOR_SCALE_INIT),
    "scale_multiplier": (_positive_float, DEFAULT_SCALE_MULTIPLIER),
    "calibration_split": (_fraction, 0.0),
    "seed": (_int, 0),
}

# Monte Carlo draws per held-out batch when `train --calibration-split` fits
# the calibration (pooled per-draw logits, as predict_mc applies it).
_CALIBRATION_SAMPLES = 8


def _versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow as tf
    import tensorflow_probability as tfp

    import bayesseg

    return {
        "bayesseg": bayesseg.__version__,
        "tensorflow": tf.__version__,
        "tensorflow_probability": tfp.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
    }


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())


# --------------------------------------------------------------------------
# The shared training pipeline
# --------------------------------------------------------------------------
def _imbalance(counts, num_classes: int, method: str):
    """Class weights and output bias from the training label counts.

    A class absent from the training masks gets a pseudo-count of 1, so its
    weight and bias stay finite (its weight never multiplies a label).
    """
    import numpy as np

    import bayesseg as bs

    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    weights = None if method == "none" else bs.imbalance.class_weights(counts, method=method)
    if num_classes == 2:
        bias = bs.imbalance.initial_bias(counts, "sigmoid", class_weights=weights)
    else:
        bias = bs.imbalance.initial_bias(counts, "softmax", class_weights=weights)
    return weights, bias


def _build_model(
    input_shape: tuple,
    num_classes: int,
    counts,
    num_examples: int,
    steps_per_epoch: int,
    options: dict,
):
    """A compiled Bayesian U-Net with a class-weighted ELBO (and its weights, bias)."""
    import keras

    import bayesseg as bs

    weights, bias = _imbalance(counts, num_classes, options["class_weights"])
    outputs = 1 if num_classes == 2 else num_classes
    model = bs.models.bayesian_unet(
        input_shape,
        outputs,
        base_filters=options["base_filters"],
        depth=options["depth"],
        estimator=options["estimator"],
        posterior_scale_init=options["posterior_scale_init"],
        scale_multiplier=options["scale_multiplier"],
        normalization=None if options["normalization"] == "none" else options["normalization"],
        output_bias=bias,
    )
    if num_classes == 2:
        likelihood = bs.losses.WeightedBinaryCrossentropy(class_weights=weights)
        metrics = [bs.metrics.Dice(class_id=1), bs.metrics.Recall(class_id=1)]
    else:
        likelihood = bs.losses.WeightedCategoricalCrossentropy(class_weights=weights)
        metrics = []
    scaling = {
        "per-example": lambda: bs.kl.PerExample(num_examples),
        "per-batch": lambda: bs.kl.PerBatch(steps_per_epoch),
        "blundell": lambda: bs.kl.Blundell(steps_per_epoch),
    }[options["kl_scaling"]]()
    model.compile(
        optimizer=keras.optimizers.Adam(
            options["learning_rate"], global_clipnorm=options["clipnorm"]
        ),
        loss=bs.ELBO(likelihood, scaling),
        metrics=metrics,
    )
    return model, weights, bias


def _gradient_callback(steps: int):
    import bayesseg as bs

    return bs.diagnostics.GradientDiagnostics(every_n_steps=max(1, steps // 20))


def _final_logs(history) -> dict[str, float]:
    return {key: float(values[-1]) for key, values in history.history.items() if values}


def _finite(value: Any) -> Any:
    """JSON-safe numbers: NaN/inf become None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------
# Evaluation (demo)
# --------------------------------------------------------------------------
def _per_class(labels, probs, num_classes: int) -> dict[str, dict[str, float]]:
    """Pooled Dice / recall / precision per class with bayesseg's Keras metrics."""
    import bayesseg as bs

    scores = {}
    y_pred = probs[..., None] if num_classes == 2 else probs
    for c in range(num_classes):
        row = {}
        for name, cls in (
            ("dice", bs.metrics.Dice),
            ("recall", bs.metrics.Recall),
            ("precision", bs.metrics.Precision),
        ):
            metric = cls(class_id=c, from_logits=False)
            metric.update_state(labels, y_pred)
            row[name] = float(metric.result())
        row["support"] = int((labels == c).sum())
        scores[str(c)] = row
    return scores


def _evaluate(model, images, labels, num_classes: int, weights, num_samples: int) -> dict:
    """Held-out metrics of one model from Monte Carlo predictions."""
    import numpy as np

    import bayesseg as bs

    pred = bs.uncertainty.predict_mc(model, images, num_samples=num_samples, verbose=0)
    probs = pred.mean[..., 0] if num_classes == 2 else pred.mean
    if num_classes == 2:
        hard, foreground = (probs >= 0.5).astype(np.int32), probs
    else:
        hard, foreground = probs.argmax(-1), 1.0 - probs[..., 0]
    errors = hard != labels
    try:
        auroc = bs.metrics.uncertainty_auroc(errors, pred.total)
    except ValueError:
        auroc = None  # no errors (or only errors): the AUROC is undefined
    result = {
        "per_class": _per_class(labels, probs, num_classes),
        "lesion_f1": {
            k: v
            for k, v in bs.metrics.lesion_f1(labels > 0, foreground).items()
            if k in ("precision", "recall", "f1", "true_lesions", "pred_lesions")
        },
        "uncertainty_auroc": auroc,
        "mean_epistemic": float(pred.epistemic.mean()),
        "mean_aleatoric": float(pred.aleatoric.mean()),
        **_calibration(labels, probs),
    }
    calibrated = pred
    if weights is not None:
        # The weighted likelihood shifts probabilities towards rare classes;
        # undoing that shift gives calibrated probabilities.
        calibrated = bs.uncertainty.predict_mc(
            model,
            images,
            num_samples=num_samples,
            verbose=0,
            correct_for_class_weights=weights,
        )
        cprobs = calibrated.mean[..., 0] if num_classes == 2 else calibrated.mean
        result["corrected_for_class_weights"] = _calibration(labels, cprobs)
    result["epistemic_share"] = bs.uncertainty.epistemic_share(calibrated)
    return result, pred


def _calibration(labels, probs) -> dict:
    """Foreground and adaptive ECE next to their noise floors, the region, the NLL."""
    import bayesseg as bs

    details = bs.metrics.foreground_calibration(labels, probs)
    return {
        "foreground_ece": details.ece,
        "foreground_ece_floor": bs.metrics.ece_noise_floor(probs),
        "adaptive_ece": bs.metrics.adaptive_ece(labels, probs),
        "adaptive_ece_floor": bs.metrics.ece_noise_floor(probs, bs.metrics.adaptive_ece),
        "ece_region_pixels": details.region_size,
        "region_mean_probability": details.region_mean_probability,
        "region_foreground_rate": details.region_foreground_rate,
        "excluded_mean_probability": details.excluded_mean_probability,
        "excluded_foreground_rate": details.excluded_foreground_rate,
        "predictive_nll": bs.metrics.predictive_nll(labels, probs),
    }


def _demo_data(args):
    import numpy as np

    import bayesseg as bs

    shape = (args.size, args.size)
    num_test = max(4, args.num_images // 4)
    if args.task == "lesion":
        x, y = bs.data.synthetic_lesions(args.num_images, shape=shape, seed=args.seed)
        xt, yt = bs.data.synthetic_lesions(num_test, shape=shape, seed=args.seed + 10_000)
        return x, y[..., 0].astype(np.int32), xt, yt[..., 0].astype(np.int32), 2
    num_classes = args.num_classes
    kwargs = {"num_classes": num_classes, "background_fraction": args.background_fraction}
    x, y = bs.data.synthetic_multiclass_masks(args.num_images, shape, seed=args.seed, **kwargs)
    xt, yt = bs.data.synthetic_multiclass_masks(num_test, shape, seed=args.seed + 10_000, **kwargs)
    return x, y, xt, yt, num_classes


def _demo_anomaly(args: argparse.Namespace, out: Path, start: float) -> int:
    import keras
    import numpy as np

    import bayesseg as bs

    keras.utils.set_random_seed(args.seed)
    num_test = max(8, args.num_images // 4)
    x, y = bs.data.synthetic_anomaly_series(args.num_images, length=args.length, seed=args.seed)
    xt, yt = bs.data.synthetic_anomaly_series(num_test, length=args.length, seed=args.seed + 10_000)
    counts = bs.imbalance.count_classes(y, num_classes=2)
    method = None if args.class_weights == "none" else args.class_weights
    weights = None
    if method is not None:
        weights = bs.imbalance.class_weights(counts, method=method, normalize=True)
    bias = bs.imbalance.initial_bias(counts / counts.sum(), class_weights=weights)
    model = bs.models.bayesian_lstm_tagger(
        1,
        units=(args.base_filters * 4,) * 2,
        estimator=args.estimator,
        output_bias=bias,
        posterior_scale_init=args.posterior_scale_init,
        scale_multiplier=args.scale_multiplier,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate, global_clipnorm=args.clipnorm),
        loss=bs.ELBO(
            bs.losses.WeightedBinaryCrossentropy(class_weights=weights),
            bs.kl.PerExample(len(x)),
        ),
    )
    steps = math.ceil(len(x) / args.batch_size) * args.epochs
    callback = _gradient_callback(steps)
    if not args.quiet:
        print("bayesseg demo: anomaly, training the Bayesian LSTM tagger with the weighted ELBO")
    t0 = time.perf_counter()
    history = model.fit(
        x,
        y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0 if args.quiet else 1,
        callbacks=[callback],
    )
    seconds = time.perf_counter() - t0
    # Decisions use the weighted model's own probabilities (its threshold 0.5 is
    # the weighted decision rule); calibration is reported after undoing the
    # class weights' prior shift, as for the segmentation tasks.
    mc = {"num_samples": args.num_samples, "batch_size": args.batch_size, "verbose": 0}
    pred = bs.uncertainty.predict_mc(model, xt, **mc)
    calibrated = bs.uncertainty.predict_mc(model, xt, correct_for_class_weights=weights, **mc)
    probs = pred.mean[..., 0]
    truth = yt > 0.5
    hard = probs >= 0.5
    tp, fp, fn = (float(np.sum(a)) for a in (hard & truth, hard & ~truth, ~hard & truth))
    errors = hard != truth
    report = {
        "task": "anomaly",
        "config": {k: v for k, v in vars(args).items() if k != "func"},
        "data": {
            "train_series": len(x),
            "test_series": len(xt),
            "length": args.length,
            "anomaly_fraction": float(counts[1] / counts.sum()),
            "class_weights": None if weights is None else weights.tolist(),
            "output_bias": np.asarray(bias).tolist(),
        },
        "training": {"seconds": seconds, "final": _final_logs(history)},
        "metrics": {
            "anomaly_recall": tp / max(tp + fn, 1.0),
            "anomaly_precision": tp / max(tp + fp, 1.0),
            "anomaly_f1": 2 * tp / max(2 * tp + fp + fn, 1.0),
            "predictive_nll": bs.metrics.predictive_nll(yt, calibrated.mean[..., 0]),
            "uncertainty_auroc": (
                bs.metrics.uncertainty_auroc(errors, pred.total)
                if 0 < errors.sum() < errors.size
                else None
            ),
            "mean_epistemic": float(pred.epistemic.mean()),
            "epistemic_share": bs.uncertainty.epistemic_share(calibrated),
        },
        "posterior_warnings": callback.warnings,
        "versions": _versions(),
    }
    bs.plots.plot_training(history, out / "training.png")
    if callback.records:
        bs.plots.plot_gradient_contributions(callback.records, out / "gradients.png")
    shown = int(np.argmax(truth.sum(axis=1)))
    bs.plots.plot_series_uncertainty(xt, yt, pred, out / "uncertainty.png", index=shown)
    report["runtime_seconds"] = time.perf_counter() - start
    with open(out / "report.json", "w") as f:
        json.dump(_finite(report), f, indent=2)
    m = report["metrics"]
    print(
        f"bayesseg demo (anomaly): {len(x)} training series of {args.length} steps, "
        f"anomalous steps {100 * report['data']['anomaly_fraction']:.3f}%\n"
        f"  anomaly recall {_fmt(m['anomaly_recall'])}  precision "
        f"{_fmt(m['anomaly_precision'])}  F1 {_fmt(m['anomaly_f1'])}  "
        f"uncertainty AUROC {_fmt(m['uncertainty_auroc'])}  epistemic share "
        f"{_fmt(m['epistemic_share'])}\n"
        f"wrote {out}/report.json, uncertainty.png, training.png, gradients.png "
        f"in {report['runtime_seconds']:.0f} s"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    # Task-dependent defaults: two anomalous steps in thousands need the full
    # balanced weights and a faster learning rate to be found in a few epochs.
    anomaly = args.task == "anomaly"
    if args.class_weights is None:
        args.class_weights = "balanced" if anomaly else "inverse_sqrt"
    if args.learning_rate is None:
        args.learning_rate = 3e-3 if anomaly else 1e-3
    if args.num_images is None:
        # 160 series hold ~64 anomalous steps: too few to learn a posterior
        # from, and the held-out F1 swung from 0.05 to 0.49 between seeds.
        args.num_images = 640 if anomaly else 160
    if args.scale_multiplier is None:
        args.scale_multiplier = (
            DEFAULT_RECURRENT_SCALE_MULTIPLIER if anomaly else DEFAULT_SCALE_MULTIPLIER
        )
    if args.task == "anomaly":
        if args.num_classes is not None:
            raise ValueError("Argument --num-classes applies to --task multiclass only.")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        return _demo_anomaly(args, out, start)
    if args.task == "lesion" and args.num_classes is not None:
        raise ValueError("Argument --num-classes applies to --task multiclass only.")
    if args.task == "multiclass" and args.num_classes is None:
        args.num_classes = 8
    depth_factor = 2 ** (args.depth - 1)
    if args.size < 8 or args.size % depth_factor:
        raise ValueError(
            f"Argument --size must be >= 8 and divisible by 2**(depth-1) = {depth_factor}. "
            f"Received: --size {args.size}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import keras
    import numpy as np

    import bayesseg as bs

    keras.utils.set_random_seed(args.seed)
    x, y, xt, yt, num_classes = _demo_data(args)
    counts = bs.imbalance.count_classes(y, num_classes=num_classes)
    options = vars(args) | {"normalization": "none", "kl_scaling": "per-example"}
    steps_per_epoch = math.ceil(len(x) / args.batch_size)
    verbose = 0 if args.quiet else 1

    def train(method: str, diagnostics: bool):
        keras.utils.set_random_seed(args.seed)
        model, weights, bias = _build_model(
            x.shape[1:],
            num_classes,
            counts,
            len(x),
            steps_per_epoch,
            options | {"class_weights": method},
        )
        callbacks = [_gradient_callback(steps_per_epoch * args.epochs)] if diagnostics else []
        t0 = time.perf_counter()
        history = model.fit(
            x,
            y,
            batch_size=args.batch_size,
            epochs=args.epochs,
            verbose=verbose,
            callbacks=callbacks,
        )
        return model, weights, bias, history, callbacks, time.perf_counter() - t0

    label = f"weighted ELBO ({args.class_weights} class weights)"
    if not args.quiet:
        print(f"bayesseg demo: {args.task}, training the Bayesian U-Net with the {label}")
    model, weights, bias, history, callbacks, seconds = train(args.class_weights, True)
    metrics, pred = _evaluate(model, xt, yt, num_classes, weights, args.num_samples)
    report: dict[str, Any] = {
        "task": args.task,
        "config": {k: v for k, v in vars(args).items() if k != "func"},
        "data": {
            "train_images": len(x),
            "test_images": len(xt),
            "num_classes": num_classes,
            "class_counts": counts.astype(int).tolist(),
            "foreground_fraction": float(1.0 - counts[0] / counts.sum()),
            "class_weights": None if weights is None else weights.tolist(),
            "output_bias": np.asarray(bias).tolist(),
        },
        "model": {
            "architecture": "bayesian_unet",
            "estimator": args.estimator,
            "base_filters": args.base_filters,
            "depth": args.depth,
            "parameters": int(model.count_params()),
            "likelihood": (
                "WeightedBinaryCrossentropy"
                if num_classes == 2
                else "WeightedCategoricalCrossentropy"
            ),
            "kl_scaling": f"PerExample({len(x)})",
            "optimizer": f"Adam({args.learning_rate}, global_clipnorm={args.clipnorm})",
        },
        "training": {"seconds": seconds, "final": _final_logs(history)},
        "metrics": metrics,
    }
    diagnostics = callbacks[0]
    report["posterior_warnings"] = diagnostics.warnings
    bs.plots.plot_training(history, out / "training.png")
    if diagnostics.records:
        bs.plots.plot_gradient_contributions(diagnostics.records, out / "gradients.png")
    fg = (yt > 0).reshape(len(yt), -1).sum(1)
    bs.plots.plot_uncertainty(xt, yt, pred, out / "uncertainty.png", index=int(fg.argmax()))
    if args.task == "lesion":
        if not args.quiet:
            print("bayesseg demo: training the same model with plain (unweighted) BCE")
        base_model, _, base_bias, base_history, _, base_seconds = train("none", False)
        base_metrics, _ = _evaluate(base_model, xt, yt, 2, None, args.num_samples)
        report["baseline_bce"] = {
            "description": "same Bayesian U-Net and ELBO, WeightedBinaryCrossentropy() "
            "without weights, output bias log(pos/neg)",
            "output_bias": np.asarray(base_bias).tolist(),
            "training": {"seconds": base_seconds, "final": _final_logs(base_history)},
            "metrics": base_metrics,
        }
        report["comparison"] = {
            key: {"weighted_elbo": pick(metrics), "bce": pick(base_metrics)}
            for key, pick in (
                ("lesion_recall_pixelwise", lambda m: m["per_class"]["1"]["recall"]),
                ("lesion_recall_lesionwise", lambda m: m["lesion_f1"]["recall"]),
                ("lesion_f1_lesionwise", lambda m: m["lesion_f1"]["f1"]),
                ("lesion_precision_pixelwise", lambda m: m["per_class"]["1"]["precision"]),
            )
        }
    report["versions"] = _versions()
    report["runtime_seconds"] = time.perf_counter() - start
    with open(out / "report.json", "w") as f:
        json.dump(_finite(report), f, indent=2)
    _print_demo_summary(report, out)
    return 0


def _fmt(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _print_demo_summary(report: dict, out: Path) -> None:
    metrics = report["metrics"]
    lines = [
        "",
        f"bayesseg demo ({report['task']}): {report['data']['train_images']} training, "
        f"{report['data']['test_images']} held-out images, "
        f"foreground {100 * report['data']['foreground_fraction']:.2f}% of pixels",
        f"{'class':>7}{'dice':>9}{'recall':>9}{'precision':>11}{'support':>10}",
    ]
    for c, row in metrics["per_class"].items():
        lines.append(
            f"{c:>7}{row['dice']:>9.3f}{row['recall']:>9.3f}{row['precision']:>11.3f}"
            f"{row['support']:>10d}"
        )
    calibrated = metrics.get("corrected_for_class_weights", metrics)
    which = "class-weight corrected" if "corrected_for_class_weights" in metrics else "as trained"
    lines.append(
        f"lesion-wise F1 {_fmt(metrics['lesion_f1']['f1'])}   uncertainty AUROC "
        f"{_fmt(metrics['uncertainty_auroc'])}   epistemic share "
        f"{_fmt(metrics['epistemic_share'])}"
    )
    lines.append(
        f"{which}: foreground ECE {_fmt(calibrated['foreground_ece'])} "
        f"(noise floor {_fmt(calibrated['foreground_ece_floor'])}, "
        f"{calibrated['ece_region_pixels']} pixels)   adaptive ECE "
        f"{_fmt(calibrated['adaptive_ece'])} (floor {_fmt(calibrated['adaptive_ece_floor'])})"
        f"   predictive NLL {calibrated['predictive_nll']:.4f}"
    )
    if "comparison" in report:
        lines.append(f"{'lesion recall':<28}{'weighted ELBO':>15}{'plain BCE':>12}")
        for key, pair in report["comparison"].items():
            lines.append(
                f"{key.replace('_', ' '):<28}{_fmt(pair['weighted_elbo']):>15}"
                f"{_fmt(pair['bce']):>12}"
            )
    lines.append(
        f"wrote {out / 'report.json'}, uncertainty.png, training.png, gradients.png "
        f"in {report['runtime_seconds']:.0f} s"
    )
    print("\n".join(lines))


# --------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------
def _load_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"Config file {path!r} is not valid TOML: {err}") from err
    if isinstance(raw.get("train"), dict):
        raw = {**{k: v for k, v in raw.items() if k != "train"}, **raw["train"]}
    config = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in _TRAIN_OPTIONS:
            raise ValueError(
                f"Config file {path!r} has an unknown key {key!r}; known keys: "
                f"{', '.join(sorted(_TRAIN_OPTIONS))}."
            )
        parse = _TRAIN_OPTIONS[name][0]
        try:
            if name == "patch_size":
                values = value if isinstance(value, list) else [value]
                config[name] = [parse(str(v)) for v in values]
            else:
                config[name] = parse(str(value))
        except argparse.ArgumentTypeError as err:
            raise ValueError(f"Config file {path!r}: {key} {err}") from err
    return config


def _resolve_train_options(args: argparse.Namespace) -> dict[str, Any]:
    config = _load_config(args.config) if args.config else {}
    options = {}
    for name, (_, default) in _TRAIN_OPTIONS.items():
        value = getattr(args, name)
        options[name] = value if value is not None else config.get(name, default)
    for name in ("images", "masks"):
        if options[name] is None:
            raise _UsageError(
                f"bayesseg train: error: --{name} is required (on the command line or in "
                "the config file) (see bayesseg train --help)"
            )
    return options


def _check_patch(options: dict, scan) -> tuple[int, ...] | None:
    rank = scan.spatial_rank
    patch = options["patch_size"]
    factor = 2 ** (options["depth"] - 1)
    if patch is not None:
        if len(patch) == 1:
            patch = patch * rank
        if len(patch) != rank:
            raise ValueError(
                f"Argument --patch-size needs 1 or {rank} values for {rank}D images. "
                f"Received: {patch}"
            )
        shape, what = tuple(patch), "--patch-size"
    else:
        for name, shape in zip(scan.names, scan.shapes, strict=True):
            if shape != scan.shapes[0]:
                raise ValueError(
                    f"Image {name!r} has shape {shape}, unlike {scan.shapes[0]} of "
                    f"{scan.names[0]!r}: pass --patch-size to train on mixed sizes."
                )
        shape, what = scan.shapes[0], "the image shape (no --patch-size)"
    if any(s % factor for s in shape):
        raise ValueError(
            f"{what} {tuple(shape)} must be divisible by 2**(depth-1) = {factor} for "
            f"--depth {options['depth']}; choose another --patch-size or --depth."
        )
    return None if patch is None else tuple(patch)


def _calibration_split(options: dict, scan, num_classes: int):
    """Seeded, disjoint split of the images into training and calibration sets.

    Returns ``(train_scan, held_out_scan, train_counts)``; ``held_out_scan``
    is None without a split. The class counts (hence the class weights and the
    output bias) come from the training images only. Fails before training
    when the held-out images cannot support a fit.
    """
    import numpy as np

    import bayesseg as bs

    counts = np.zeros(num_classes, np.int64)
    found = np.asarray(scan.class_counts, np.int64)
    counts[: len(found)] += found
    fraction = options["calibration_split"]
    if not fraction:
        return scan, None, counts
    n = len(scan.names)
    n_held = max(1, round(fraction * n))
    if n_held >= n:
        raise ValueError(
            f"Argument --calibration-split {fraction} holds out {n_held} of {n} image(s), "
            "leaving none to train on; use a smaller fraction or more images."
        )
    order = np.random.default_rng(options["seed"]).permutation(n)
    held, kept = sorted(order[:n_held].tolist()), sorted(order[n_held:].tolist())
    held_counts = np.zeros(num_classes, np.int64)
    for i in held:
        labels = bs.data.read_mask(scan.mask_paths[i])
        held_counts += np.bincount(labels.ravel(), minlength=num_classes)[:num_classes]
    missing = np.flatnonzero(held_counts == 0).tolist()
    if num_classes == 2 and missing:
        raise ValueError(
            f"The {n_held} image(s) held out by --calibration-split {fraction} hold no "
            f"pixel of class {missing[0]}, so Platt scaling cannot be fitted; use a larger "
            "fraction or another --seed."
        )
    train_counts = counts - held_counts
    return scan.subset(kept, train_counts), scan.subset(held, held_counts), train_counts


def _fit_calibration(model, options: dict, held_scan, patch, num_classes: int, quiet: bool):
    """Fit Platt / temperature scaling on the held-out images; its model.json entry."""
    import keras
    import numpy as np

    import bayesseg as bs

    dataset = bs.data.folder_dataset(
        options["images"],
        options["masks"],
        patch_size=patch,
        batch_size=options["batch_size"],
        shuffle=False,
        patches="grid",  # every held-out voxel once (whole images without a patch)
        scan=held_scan,
    )
    counts = np.asarray(held_scan.class_counts)
    # A class absent from the held-out masks has an unbounded bias: fit the
    # temperature alone then, rather than fail after training.
    fit_bias = bool(np.all(counts[:num_classes] > 0))
    calibration = bs.calibration.fit_calibration(
        model,
        dataset,
        num_samples=_CALIBRATION_SAMPLES,
        seed=options["seed"],
        fit_bias=fit_bias,
    )
    result = dict(calibration.fit_result)
    if not quiet:
        print(
            f"bayesseg train: fitted {type(calibration).__name__} on "
            f"{len(held_scan.names)} held-out image(s): NLL {result['nll_before']:.4g} -> "
            f"{result['nll_after']:.4g} nats per pixel"
            + ("" if fit_bias else " (temperature only: a class is absent from them)")
        )
    return {
        "kind": type(calibration).__name__,
        "config": keras.saving.serialize_keras_object(calibration),
        "held_out_images": list(held_scan.names),
        "num_samples": _CALIBRATION_SAMPLES,
        "fit": result,
    }


def _tensorboard_installed() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _train(args: argparse.Namespace) -> int:
    options = _resolve_train_options(args)
    start = time.perf_counter()
    import bayesseg as bs

    scan = bs.data.scan_folder(options["images"], options["masks"], options["num_classes"])
    num_classes = options["num_classes"] or max(2, len(scan.class_counts))
    patch = _check_patch(options, scan)
    train_scan, held_scan, counts = _calibration_split(options, scan, num_classes)
    out = Path(options["out"])
    out.mkdir(parents=True, exist_ok=True)
    import keras
    import numpy as np

    keras.utils.set_random_seed(options["seed"])
    dataset = bs.data.folder_dataset(
        options["images"],
        options["masks"],
        patch_size=patch,
        batch_size=options["batch_size"],
        shuffle=True,
        seed=options["seed"],
        patches_per_image=options["patches_per_image"],
        scan=train_scan,
    )
    num_examples = len(train_scan.names) * (1 if patch is None else options["patches_per_image"])
    steps = math.ceil(num_examples / options["batch_size"])
    input_shape = (None,) * scan.spatial_rank + (scan.channels,)
    model, weights, bias = _build_model(
        input_shape, num_classes, np.asarray(counts), num_examples, steps, options
    )
    diagnostics = _gradient_callback(steps * options["epochs"])
    callbacks = [
        keras.callbacks.BackupAndRestore(os.fspath(out / "backup")),
        keras.callbacks.ModelCheckpoint(os.fspath(out / "model.keras")),
        keras.callbacks.CSVLogger(os.fspath(out / "training.csv"), append=True),
        diagnostics,
    ]
    if _tensorboard_installed():
        callbacks.append(keras.callbacks.TensorBoard(os.fspath(out / "logs")))
    metadata = {
        "num_classes": num_classes,
        "spatial_rank": scan.spatial_rank,
        "channels": scan.channels,
        "patch_size": None if patch is None else list(patch),
        "normalize": "zscore per image",
        "class_counts": [int(c) for c in counts],
        "class_weights": None if weights is None else [float(w) for w in weights],
        "output_bias": np.asarray(bias).tolist(),
        "num_examples_per_epoch": num_examples,
        "train_images": None if held_scan is None else list(train_scan.names),
        "calibration": None,
        "config": options,
        "versions": _versions(),
    }
    with open(out / "model.json", "w") as f:
        json.dump(metadata, f, indent=2)
    if not args.quiet:
        held = "" if held_scan is None else f" ({len(held_scan.names)} held out for calibration)"
        print(
            f"bayesseg train: {len(train_scan.names)} training images{held} ({scan.spatial_rank}D, "
            f"{scan.channels} channel(s)), {num_classes} classes, class counts "
            f"{[int(c) for c in counts]}, {steps} steps per epoch"
        )
    history = model.fit(
        dataset,
        epochs=options["epochs"],
        shuffle=False,  # the data set shuffles files and patches itself, seeded
        verbose=0 if args.quiet else 1,
        callbacks=callbacks,
    )
    if history.history:
        bs.plots.plot_training(history, out / "training.png")
        with open(out / "history.json", "w") as f:
            json.dump(_finite(history.history), f, indent=2)
    if diagnostics.records:
        bs.plots.plot_gradient_contributions(diagnostics.records, out / "gradients.png")
    if held_scan is not None:
        metadata["calibration"] = _finite(
            _fit_calibration(model, options, held_scan, patch, num_classes, args.quiet)
        )
        with open(out / "model.json", "w") as f:
            json.dump(metadata, f, indent=2)
    final = _final_logs(history)
    summary = ", ".join(f"{k} {v:.4g}" for k, v in final.items())
    print(
        f"bayesseg train: wrote {out / 'model.keras'} after "
        f"{time.perf_counter() - start:.0f} s ({summary or 'resumed: nothing left to train'})"
    )
    return 0


# --------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------
def _output_suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _predict(args: argparse.Namespace) -> int:
    model_path = Path(args.model)
    if not model_path.is_file():
        raise ValueError(
            f"Argument --model must be an existing .keras file. Received: {args.model!r}"
        )
    import bayesseg as bs

    files = bs.data.list_images(args.images, "--images")
    metadata_path = model_path.with_suffix(".json")
    metadata = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
    import keras
    import numpy as np

    try:
        model = keras.saving.load_model(os.fspath(model_path), compile=False)
    except (ValueError, TypeError) as err:
        raise ValueError(f"Cannot load model {args.model!r}: {_one_line(err)}") from err
    rank = len(model.input_shape) - 2
    channels = model.input_shape[-1]
    outputs = model.output_shape[-1]
    num_classes = 2 if outputs == 1 else outputs
    depth = metadata.get("config", {}).get("depth")
    factor = 2 ** (depth - 1) if depth else 1
    train_patch = metadata.get("patch_size")
    calibration = None
    entry = metadata.get("calibration")
    if entry and not args.ignore_calibration:
        if args.calibrate:
            raise ValueError(
                f"--calibrate undoes the class weights, but {metadata_path.name!r} holds a "
                "fitted calibration, applied by default, whose bias already absorbs their "
                "shift; drop --calibrate, or pass --ignore-calibration to use --calibrate "
                "instead."
            )
        calibration = keras.saving.deserialize_keras_object(entry["config"], safe_mode=True)
        if not isinstance(calibration, bs.calibration.LogitCalibrator):
            raise ValueError(
                f"The calibration in {metadata_path.name!r} is not a bayesseg calibrator: "
                f"{type(calibration).__name__}."
            )
    weights = metadata.get("class_weights") if args.calibrate else None
    if args.calibrate and weights is None:
        raise ValueError(
            "--calibrate needs the class weights that bayesseg train saves in "
            f"{metadata_path.name!r}."
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    entropy_max = math.log(num_classes)
    written = []
    for path in files:
        image = bs.data.read_image(path, spatial_rank=rank)
        if image.shape[-1] != channels:
            raise ValueError(
                f"Image {path.name!r} has {image.shape[-1]} channel(s); the model "
                f"expects {channels}."
            )
        spatial = image.shape[:-1]
        image = (image - image.mean()) / (image.std() or 1.0)
        if args.patch_size:
            patch = tuple(args.patch_size * rank if len(args.patch_size) == 1 else args.patch_size)
            if len(patch) != rank:
                raise ValueError(
                    f"Argument --patch-size needs 1 or {rank} values. Received: {args.patch_size}"
                )
        elif train_patch and any(s > p for s, p in zip(spatial, train_patch, strict=True)):
            patch = tuple(train_patch)
        elif model.input_shape[1:-1] != (None,) * rank:
            patch = tuple(model.input_shape[1:-1])
        else:
            # One window covering the image, zero-padded to a size the U-Net accepts.
            patch = tuple(math.ceil(s / factor) * factor for s in spatial)
        if factor > 1 and any(p % factor for p in patch):
            raise ValueError(
                f"Patch size {patch} must be divisible by 2**(depth-1) = {factor} for this model."
            )
        pred = bs.uncertainty.predict_mc(
            model,
            image[None],
            num_samples=args.num_samples,
            batch_size=args.batch_size,
            patch_size=patch,
            overlap=args.overlap,
            correct_for_class_weights=weights,
            calibration=calibration,
            verbose=0,
        )
        suffix = _output_suffix(path)
        stem = path.name[: len(path.name) - len(suffix)]
        mean = pred.mean[0]
        labels = (mean[..., 0] >= 0.5) if num_classes == 2 else mean.argmax(-1)
        labels = labels.astype(np.uint8 if num_classes <= 256 else np.uint16)
        maps = {"labels": (labels, None), "epistemic": (pred.epistemic[0], entropy_max)}
        maps["aleatoric"] = (pred.aleatoric[0], entropy_max)
        if num_classes == 2 or suffix not in (".png", ".tif", ".tiff"):
            maps["prob"] = (mean[..., 0] if num_classes == 2 else mean, 1.0)
        else:
            for c in range(num_classes):
                maps[f"prob_class{c}"] = (mean[..., c], 1.0)
        for kind, (array, top) in maps.items():
            target = out / f"{stem}_{kind}{suffix}"
            value_range = None if top is None else (0.0, top)
            bs.data.write_image(target, array, like=path, value_range=value_range)
            written.append(target.name)
        if not args.quiet:
            print(
                f"{path.name}: mean epistemic {pred.epistemic.mean():.4g} nats, windows of {patch}"
            )
    manifest = {
        "model": os.fspath(model_path),
        "num_samples": args.num_samples,
        "calibrated": bool(args.calibrate) or calibration is not None,
        "calibration": (
            type(calibration).__name__
            if calibration is not None
            else ("class_weights" if args.calibrate else None)
        ),
        "png_scaling": {
            "prob": "value * 65535 (16-bit)",
            "epistemic, aleatoric": f"value / log({num_classes}) * 65535 (16-bit)",
        },
        "files": written,
    }
    with open(out / "predictions.json", "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"bayesseg predict: wrote {len(written)} maps for {len(files)} images to {out}")
    return 0


# --------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------
def _add_model_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    def default(value):
        return value if defaults else None

    def note(value):
        return f" (default: {value})"

    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=default(8),
        help="examples per optimizer step" + note(8 if defaults else 4),
    )
    parser.add_argument(
        "--estimator",
        type=_choice(_ESTIMATORS),
        default=default("flipout"),
        help="gradient estimator of the Bayesian layers: flipout or reparameterization"
        + note("flipout"),
    )
    parser.add_argument(
        "--base-filters",
        type=_positive_int,
        default=default(8),
        help="filters of the first U-Net level, doubled per level" + note(8 if defaults else 16),
    )
    parser.add_argument(
        "--depth",
        type=_positive_int,
        default=default(3),
        help="U-Net resolution levels; spatial sizes must be divisible by 2**(depth-1)"
        + note(3 if defaults else 4),
    )
    parser.add_argument(
        "--class-weights",
        type=_choice(_CLASS_WEIGHTS),
        default=None,
        help="how class weights are computed from the training masks: balanced "
        "(N / (C * n_c)), inverse_sqrt (sqrt of balanced: recall without wrecking "
        "precision), effective_number or none"
        + note("inverse_sqrt; demo --task anomaly: balanced" if defaults else "balanced"),
    )
    parser.add_argument(
        "--clipnorm",
        type=_positive_float,
        default=default(1.0),
        help="Adam's global_clipnorm" + note(1.0),
    )
    parser.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=None,
        help="Adam learning rate"
        + note("0.001; demo --task anomaly: 0.003" if defaults else 0.001),
    )
    parser.add_argument(
        "--posterior-scale-init",
        type=_positive_float,
        default=default(DEFAULT_POSTERIOR_SCALE_INIT),
        help="initial posterior standard deviation of every Bayesian weight"
        + note(DEFAULT_POSTERIOR_SCALE_INIT),
    )
    parser.add_argument(
        "--scale-multiplier",
        type=_positive_float,
        default=None,
        help="posterior scale = softplus(multiplier * rho): how many times faster than "
        "the learning rate the scales move under Adam; 1 gives the classic, "
        "rate-limited parameterisation"
        + note(
            f"{DEFAULT_SCALE_MULTIPLIER:g}; demo --task anomaly: "
            f"{DEFAULT_RECURRENT_SCALE_MULTIPLIER:g}"
            if defaults
            else f"{DEFAULT_SCALE_MULTIPLIER:g}"
        ),
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


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

    demo = sub.add_parser(
        "demo",
        help="train on the embedded synthetic data and write a report",
        description="Train a Bayesian U-Net on synthetic imbalanced data (CPU, a few "
        "minutes), evaluate it on held-out synthetic images and write report.json, "
        "uncertainty.png, training.png and gradients.png to --out. The lesion task also "
        "trains the same model with plain, unweighted BCE and compares lesion recall.",
    )
    demo.add_argument(
        "--task",
        choices=("lesion", "multiclass", "anomaly"),
        default="lesion",
        help="lesion: binary masks, ~1 lesion pixel per 60; multiclass: "
        "--num-classes classes, mostly background; anomaly: per-timestep "
        "anomalies (2 steps in 20%% of the series) in series of --length steps, "
        "Bayesian LSTM tagger (default: lesion)",
    )
    demo.add_argument(
        "--length",
        type=_positive_int,
        default=512,
        help="anomaly task: steps per series; --num-images series are generated (default: 512)",
    )
    demo.add_argument(
        "--epochs", type=_positive_int, default=12, help="training epochs (default: 12)"
    )
    demo.add_argument(
        "--out", default="bayesseg-demo", help="output folder (default: bayesseg-demo)"
    )
    demo.add_argument("--seed", type=_int, default=0, help="random seed (default: 0)")
    demo.add_argument(
        "--num-images",
        type=_positive_int,
        default=None,
        help="training images (series for --task anomaly); a quarter as many (at least 4, "
        "8 series) are held out (default: 160; --task anomaly: 640)",
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
        default=16,
        help="Monte Carlo draws per held-out image (default: 16)",
    )
    _add_model_options(demo, defaults=True)
    demo.set_defaults(func=_demo)

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
    train.add_argument("--images", default=None, help="folder of images (required)")
    train.add_argument("--masks", default=None, help="folder of integer masks (required)")
    train.add_argument(
        "--config",
        default=None,
        help="TOML file with any of these options (snake_case or dashes, top level or "
        "under [train]); command-line flags override it",
    )
    train.add_argument(
        "--epochs", type=_positive_int, default=None, help="training epochs (default: 20)"
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
    train.add_argument(
        "--num-classes",
        type=_num_classes,
        default=None,
        help="classes including background; 2 trains one sigmoid output, more a softmax. "
        "Labels outside [0, num-classes) are an error (default: largest label + 1)",
    )
    train.add_argument(
        "--normalization",
        type=_choice(_NORMALIZATIONS),
        default=None,
        help="normalisation in the U-Net blocks: none, batch or group (default: none)",
    )
    train.add_argument(
        "--kl-scaling",
        type=_choice(_KL_SCALINGS),
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
        "applies it. 0 = off (default: 0)",
    )
    train.add_argument("--seed", type=_int, default=None, help="random seed (default: 0)")
    _add_model_options(train, defaults=False)
    train.set_defaults(func=_train)

    predict = sub.add_parser(
        "predict",
        help="write probability and uncertainty maps",
        description="Monte Carlo prediction with a trained model on every image of "
        "--images. Writes, per image, <stem>_prob, <stem>_labels, <stem>_epistemic and "
        "<stem>_aleatoric in the input's format (PNG: 16-bit, see predictions.json for "
        "the scaling; TIFF: float; NIfTI: with the input's affine and header). Images "
        "larger than the training patches are predicted with sliding windows.",
    )
    predict.add_argument("--model", required=True, help="a model.keras written by train")
    predict.add_argument("--images", required=True, help="folder of images")
    predict.add_argument("--out", required=True, help="output folder")
    predict.add_argument(
        "--num-samples",
        type=_positive_int,
        default=16,
        help="Monte Carlo draws per image (default: 16)",
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
        default=0.5,
        help="overlap of neighbouring windows, in [0, 1) (default: 0.5)",
    )
    predict.add_argument(
        "--batch-size",
        type=_positive_int,
        default=8,
        help="windows per forward pass (default: 8)",
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
    predict.add_argument("--quiet", action="store_true", help="less output")
    predict.set_defaults(func=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesseg`` console script.

    Args:
        argv: the arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 2 for bad arguments or input data (a
        one-line message on stderr, no traceback).

    Example:

    >>> from bayesseg.cli import main
    >>> main(["demo", "--epochs", "-3"])
    2
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except _UsageError as err:
        print(_one_line(err), file=sys.stderr)
    except (ValueError, OSError, ImportError) as err:
        command = getattr(locals().get("args"), "command", None)
        prog = "bayesseg" if command is None else f"bayesseg {command}"
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
