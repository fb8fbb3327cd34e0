"""``bayesseg demo``: the task defaults, and the lesion and multiclass tasks.

Trains a Bayesian U-Net with the weighted ELBO on the embedded synthetic data,
evaluates it on held-out images and writes report.json with three figures;
the lesion task also trains the same model with plain BCE and compares lesion
recall. The anomaly task lives in :mod:`bayesseg.cli.anomaly`.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from bayesseg._tiling import check_unet_shape, unet_divisor
from bayesseg.cli.report import (
    _evaluate,
    _final_logs,
    _plot_training,
    _print_demo_summary,
    _versions,
    _write_json,
)
from bayesseg.cli.training import (
    _gradient_callback,
    segmentation_config,
)
from bayesseg.recipes.segmentation import CLASS_DEPENDENT_DEFAULTS, NUM_SAMPLES
from bayesseg.recipes.series import SeriesConfig

# report["comparison"] rows of the lesion task: name -> where in the metrics.
_COMPARISON = {
    "lesion_recall_pixelwise": lambda m: m["per_class"]["1"]["recall"],
    "lesion_recall_lesionwise": lambda m: m["lesion_f1"]["recall"],
    "lesion_f1_lesionwise": lambda m: m["lesion_f1"]["f1"],
    "lesion_precision_pixelwise": lambda m: m["per_class"]["1"]["precision"],
}


# Per task, the defaults of the options left unset: (lesion, multiclass, anomaly).
# anomaly: the windowed recipe of docs/lstm.md. Windows half of which hold an
# anomaly (1 step in ~900) need only inverse-sqrt weights; batches of 32
# windows met the targets in all four runs measured (event F1 0.81-0.94),
# batches of 8 (4x the updates, 1.7x the time) in two of three (0.69-0.92); 160 series (~64
# anomalous steps) were too few for whole-series training (held-out F1 from
# 0.05 to 0.49 between seeds), 640 give ~230 events to cut windows around.
# multiclass: the many-class recipe of docs/imbalance.md. 32 classes at 99%
# background are told apart by small differences of intensity and texture; at a
# constant 1e-3 the U-Net learned 1 of 31 classes, at a warmed-up and decayed
# peak of 1e-2 on 8x the images it found every class with a mean recall of
# 0.48-0.51 on three seeds; on 16x the images (2560), with the posterior scales
# slowed to the binary recipe's speed (CLASS_DEPENDENT_DEFAULTS), 0.58-0.61,
# within 5 minutes on 2 cores (docs/imbalance.md).
# The anomaly column is the series recipe's (bayesseg.recipes.SeriesConfig), and the
# learning rate, schedule, scale multiplier and initial posterior scale of the
# lesion (2 classes) and multiclass columns the segmentation recipe's
# class-dependent defaults: not copies.
# (Its class weights are not: the demo's lesion task uses inverse_sqrt, not balanced.)
_SERIES = SeriesConfig()
_TASK_DEFAULTS = {
    "class_weights": ("inverse_sqrt", "inverse_sqrt", _SERIES.class_weights),
    "learning_rate": (*CLASS_DEPENDENT_DEFAULTS["learning_rate"], _SERIES.learning_rate),
    "lr_schedule": (*CLASS_DEPENDENT_DEFAULTS["lr_schedule"], "constant"),
    "num_images": (160, 2560, 640),
    "epochs": (12, 10, _SERIES.epochs),
    "batch_size": (8, 8, _SERIES.batch_size),
    "scale_multiplier": (*CLASS_DEPENDENT_DEFAULTS["scale_multiplier"], _SERIES.scale_multiplier),
    "posterior_scale_init": (
        *CLASS_DEPENDENT_DEFAULTS["posterior_scale_init"],
        _SERIES.posterior_scale_init,
    ),
    "num_samples": (NUM_SAMPLES, NUM_SAMPLES, _SERIES.num_samples),
}
_TASKS = ("lesion", "multiclass", "anomaly")


def _apply_task_defaults(args: argparse.Namespace) -> None:
    """Fill the options whose defaults depend on --task ("series" is "anomaly")."""
    if args.task == "series":
        args.task = "anomaly"
    task = _TASKS.index(args.task)
    for name, values in _TASK_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, values[task])
    if args.task != "multiclass" and args.num_classes is not None:
        raise ValueError("Argument --num-classes applies to --task multiclass only.")
    if args.task == "multiclass" and args.num_classes is None:
        args.num_classes = 8
    if args.num_test_images is None:
        # A multi-class score is a mean over the classes present: 200 images
        # hold every one of 32 classes many times (40 missed some entirely).
        if args.task == "multiclass":
            args.num_test_images = 200
        else:
            minimum = 8 if args.task == "anomaly" else 4
            args.num_test_images = max(minimum, args.num_images // 4)


def _check_size(args: argparse.Namespace) -> None:
    def message(divisor: int) -> str:
        return (
            f"Argument --size must be >= 8 and divisible by 2**(depth-1) = {divisor}. "
            f"Received: --size {args.size}"
        )

    if args.size < 8:
        raise ValueError(message(unet_divisor(args.depth)))
    check_unet_shape((args.size,), args.depth, message)


def _demo_data(args):
    import numpy as np

    import bayesseg as bs

    shape = (args.size, args.size)
    num_test = args.num_test_images
    if args.task == "lesion":
        x, y = bs.data.synthetic_lesions(args.num_images, shape=shape, seed=args.seed)
        xt, yt = bs.data.synthetic_lesions(num_test, shape=shape, seed=args.seed + 10_000)
        return x, y[..., 0].astype(np.int32), xt, yt[..., 0].astype(np.int32), 2
    num_classes = args.num_classes
    kwargs = {"num_classes": num_classes, "background_fraction": args.background_fraction}
    x, y = bs.data.synthetic_multiclass_masks(args.num_images, shape, seed=args.seed, **kwargs)
    xt, yt = bs.data.synthetic_multiclass_masks(num_test, shape, seed=args.seed + 10_000, **kwargs)
    return x, y, xt, yt, num_classes


def _train_unet(args, x, y, num_classes: int, counts, method: str, diagnostics: bool):
    """One seeded U-Net trained with ``method`` class weights (``bs.recipes.train_segmentation``).

    Returns ``(model, weights, bias, history, callbacks, seconds)``: the
    weights and bias as arrays, the history as Keras' ``history.history``.
    """
    import numpy as np

    import bayesseg as bs

    config = segmentation_config(
        vars(args) | {"normalization": "none", "kl_scaling": "per-example", "class_weights": method}
    )
    steps_per_epoch = math.ceil(len(x) / args.batch_size)
    callbacks = [_gradient_callback(steps_per_epoch * args.epochs)] if diagnostics else []
    t0 = time.perf_counter()
    run = bs.recipes.train_segmentation(
        x,
        y,
        config,
        num_classes=num_classes,
        counts=counts,
        callbacks=callbacks,
        verbose=0 if args.quiet else 1,
    )
    weights = None if run.class_weights is None else np.asarray(run.class_weights)
    bias = np.asarray(run.output_bias)
    return run.model, weights, bias, run.history, callbacks, time.perf_counter() - t0


def _model_entry(args, model, num_classes: int, num_train: int) -> dict[str, Any]:
    return {
        "architecture": "bayesian_unet",
        "estimator": args.estimator,
        "base_filters": args.base_filters,
        "depth": args.depth,
        "parameters": int(model.count_params()),
        "likelihood": (
            "WeightedBinaryCrossentropy" if num_classes == 2 else "WeightedCategoricalCrossentropy"
        ),
        "kl_scaling": f"PerExample({num_train})",
        "optimizer": f"Adam({args.learning_rate}, global_clipnorm={args.clipnorm})",
        "lr_schedule": args.lr_schedule,
    }


def _data_entry(x, xt, num_classes: int, counts, weights, bias) -> dict[str, Any]:
    import numpy as np

    return {
        "train_images": len(x),
        "test_images": len(xt),
        "num_classes": num_classes,
        "class_counts": counts.astype(int).tolist(),
        "foreground_fraction": float(1.0 - counts[0] / counts.sum()),
        "class_weights": None if weights is None else weights.tolist(),
        "output_bias": np.asarray(bias).tolist(),
    }


def _lesion_baseline(args, x, y, xt, yt, counts, metrics: dict) -> dict[str, Any]:
    """The same model trained with plain BCE: report["baseline_bce"] and ["comparison"]."""
    import numpy as np

    if not args.quiet:
        print("bayesseg demo: training the same model with plain (unweighted) BCE")
    model, _, bias, history, _, seconds = _train_unet(args, x, y, 2, counts, "none", False)
    base_metrics, _ = _evaluate(model, xt, yt, 2, None, args.num_samples)
    baseline = {
        "description": "same Bayesian U-Net and ELBO, WeightedBinaryCrossentropy() "
        "without weights, output bias log(pos/neg)",
        "output_bias": np.asarray(bias).tolist(),
        "training": {"seconds": seconds, "final": _final_logs(history)},
        "metrics": base_metrics,
    }
    comparison = {
        key: {"weighted_elbo": pick(metrics), "bce": pick(base_metrics)}
        for key, pick in _COMPARISON.items()
    }
    return {"baseline_bce": baseline, "comparison": comparison}


def _demo_unet(args: argparse.Namespace, out: Path, start: float) -> int:
    """The lesion and multiclass tasks."""
    import keras

    import bayesseg as bs

    keras.utils.set_random_seed(args.seed)
    x, y, xt, yt, num_classes = _demo_data(args)
    counts = bs.imbalance.count_classes(y, num_classes=num_classes)
    if not args.quiet:
        label = f"weighted ELBO ({args.class_weights} class weights)"
        print(f"bayesseg demo: {args.task}, training the Bayesian U-Net with the {label}")
    trained = _train_unet(args, x, y, num_classes, counts, args.class_weights, True)
    model, weights, bias, history, callbacks, seconds = trained
    metrics, pred = _evaluate(model, xt, yt, num_classes, weights, args.num_samples)
    report: dict[str, Any] = {
        "task": args.task,
        "config": {k: v for k, v in vars(args).items() if k != "func"},
        "data": _data_entry(x, xt, num_classes, counts, weights, bias),
        "model": _model_entry(args, model, num_classes, len(x)),
        "training": {"seconds": seconds, "final": _final_logs(history)},
        "metrics": metrics,
        "posterior_warnings": callbacks[0].warnings,
    }
    _plot_training(history, callbacks[0], out)
    fg = (yt > 0).reshape(len(yt), -1).sum(1)
    bs.plots.plot_uncertainty(xt, yt, pred, out / "uncertainty.png", index=int(fg.argmax()))
    if args.task == "lesion":
        report |= _lesion_baseline(args, x, y, xt, yt, counts, metrics)
    report["versions"] = _versions()
    report["runtime_seconds"] = time.perf_counter() - start
    _write_json(out / "report.json", report)
    _print_demo_summary(report, out)
    return 0


def _demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    _apply_task_defaults(args)
    if args.task != "anomaly":
        _check_size(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.task == "anomaly":
        from bayesseg.cli.anomaly import _demo_anomaly

        return _demo_anomaly(args, out, start)
    return _demo_unet(args, out, start)
