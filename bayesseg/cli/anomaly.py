"""``bayesseg demo --task anomaly``: a Bayesian LSTM tagger on synthetic series.

Trains the tagger with the weighted ELBO, scores per-step anomaly recall,
precision and F1 (``bayesseg.metrics``) on held-out series, and writes
report.json with three figures.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from bayesseg.cli.report import _final_logs, _fmt, _plot_training, _versions, _write_json
from bayesseg.cli.training import _gradient_callback, _learning_rate


def _anomaly_data(args: argparse.Namespace):
    import bayesseg as bs

    num_test = args.num_test_images
    x, y = bs.data.synthetic_anomaly_series(args.num_images, length=args.length, seed=args.seed)
    xt, yt = bs.data.synthetic_anomaly_series(num_test, length=args.length, seed=args.seed + 10_000)
    return x, y, xt, yt


def _anomaly_model(args: argparse.Namespace, counts, num_train: int):
    """The compiled Bayesian LSTM tagger with a class-weighted ELBO (and its weights, bias)."""
    import keras

    import bayesseg as bs

    weights = None
    if args.class_weights != "none":
        weights = bs.imbalance.class_weights(counts, method=args.class_weights, normalize=True)
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
        optimizer=keras.optimizers.Adam(
            _learning_rate(vars(args), math.ceil(num_train / args.batch_size) * args.epochs),
            global_clipnorm=args.clipnorm,
        ),
        loss=bs.ELBO(
            bs.losses.WeightedBinaryCrossentropy(class_weights=weights),
            bs.kl.PerExample(num_train),
        ),
    )
    return model, weights, bias


def _detection_scores(labels, outputs) -> dict[str, float]:
    """Per-step anomaly recall, precision and F1 of the decision ``p >= 0.5``."""
    import bayesseg as bs

    scores = {}
    for name, cls in (
        ("anomaly_recall", bs.metrics.Recall),
        ("anomaly_precision", bs.metrics.Precision),
        ("anomaly_f1", bs.metrics.F1),
    ):
        metric = cls(class_id=1, from_logits=False, dtype="float64")
        metric.update_state(labels, outputs)
        scores[name] = float(metric.result())
    return scores


def _anomaly_metrics(args, model, xt, yt, weights):
    """Held-out metrics (and the Monte Carlo prediction)."""
    import bayesseg as bs
    from bayesseg import _probability

    # Decisions use the weighted model's own probabilities (its threshold 0.5 is
    # the weighted decision rule); calibration is reported after undoing the
    # class weights' prior shift, as for the segmentation tasks.
    mc = {"num_samples": args.num_samples, "batch_size": args.batch_size, "verbose": 0}
    pred = bs.uncertainty.predict_mc(model, xt, **mc)
    calibrated = bs.uncertainty.predict_mc(model, xt, correct_for_class_weights=weights, **mc)
    errors = _probability.hard_labels(pred.mean) != (yt > 0.5)
    scores = pred.mean[..., 0]
    labels = (yt > 0.5).reshape(scores.shape)
    metrics = {
        **_detection_scores(yt, pred.mean),
        # Threshold-free, and per event (+-2 steps) beside the per-step figures.
        "anomaly_average_precision": (
            bs.metrics.average_precision(labels, scores) if labels.any() else None
        ),
        "events": bs.metrics.event_f1(labels, scores),
        "predictive_nll": bs.metrics.predictive_nll(yt, calibrated.mean[..., 0]),
        "uncertainty_auroc": (
            bs.metrics.uncertainty_auroc(errors, pred.total)
            if 0 < errors.sum() < errors.size
            else None
        ),
        "mean_epistemic": float(pred.epistemic.mean()),
        "epistemic_share": bs.uncertainty.epistemic_share(calibrated),
    }
    return metrics, pred


def _print_anomaly_summary(report: dict[str, Any], args: argparse.Namespace, out: Path) -> None:
    import bayesseg as bs

    m = report["metrics"]
    print(
        f"bayesseg demo (anomaly): {report['data']['train_series']} training series of "
        f"{args.length} steps, "
        f"anomalous steps {100 * report['data']['anomaly_fraction']:.3f}%\n"
        f"  events (+-{bs.metrics.DEFAULT_EVENT_TOLERANCE} steps): recall "
        f"{_fmt(m['events']['recall'])}  precision {_fmt(m['events']['precision'])}  "
        f"F1 {_fmt(m['events']['f1'])} ({m['events']['true_events']} events)   "
        f"average precision {_fmt(m['anomaly_average_precision'])}\n"
        f"  per step: anomaly recall {_fmt(m['anomaly_recall'])}  precision "
        f"{_fmt(m['anomaly_precision'])}  F1 {_fmt(m['anomaly_f1'])}  "
        f"uncertainty AUROC {_fmt(m['uncertainty_auroc'])}  epistemic share "
        f"{_fmt(m['epistemic_share'])}\n"
        f"wrote {out}/report.json, uncertainty.png, training.png, gradients.png "
        f"in {report['runtime_seconds']:.0f} s"
    )


def _demo_anomaly(args: argparse.Namespace, out: Path, start: float) -> int:
    import keras
    import numpy as np

    import bayesseg as bs

    keras.utils.set_random_seed(args.seed)
    x, y, xt, yt = _anomaly_data(args)
    counts = bs.imbalance.count_classes(y, num_classes=2)
    model, weights, bias = _anomaly_model(args, counts, len(x))
    callback = _gradient_callback(math.ceil(len(x) / args.batch_size) * args.epochs)
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
    metrics, pred = _anomaly_metrics(args, model, xt, yt, weights)
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
        "metrics": metrics,
        "posterior_warnings": callback.warnings,
        "versions": _versions(),
    }
    _plot_training(history, callback, out)
    shown = int(np.argmax((yt > 0.5).sum(axis=1)))
    bs.plots.plot_series_uncertainty(xt, yt, pred, out / "uncertainty.png", index=shown)
    report["runtime_seconds"] = time.perf_counter() - start
    _write_json(out / "report.json", report)
    _print_anomaly_summary(report, args, out)
    return 0
