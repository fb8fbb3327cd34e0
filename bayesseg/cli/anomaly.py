"""``bayesseg demo --task series`` (or ``anomaly``): the series recipe on generated series.

The recipe is :mod:`bayesseg.recipes.series` (docs/lstm.md): a small Bayesian
``Conv1D`` front-end and a bidirectional Bayesian LSTM, trained with the
weighted ELBO on windows cut around the anomalies; the per-step probabilities
are corrected back to the series' prior and thresholded at the best
validation event F1. The demo maps its flags onto a
:class:`bayesseg.recipes.SeriesConfig`, holds out its own validation series,
and saves the run as ``bayesseg train --task series`` does, for ``bayesseg
predict``.

The report scores held-out series by the event F1 (recall per event within
+-2 steps, precision per flagged step), by average precision and per step,
next to a non-learned detector (a rolling z-score of the first difference)
whose threshold is chosen on the same validation split, and next to the
chance rows of flagging every step and flagging at random at the same rate.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from bayesseg.cli.report import _fmt, _plot_training, _versions, _write_json
from bayesseg.cli.training import _gradient_callback

# The share of the generated training series held out to choose the threshold.
VALIDATION_FRACTION = 0.1


def _anomaly_data(args: argparse.Namespace):
    """Training, validation and held-out series (validation: a split of the training ones)."""
    import bayesseg as bs

    kwargs = {"length": args.length, "kind": args.anomaly_kind}
    x, y = bs.data.synthetic_anomaly_series(args.num_images, seed=args.seed, **kwargs)
    xt, yt = bs.data.synthetic_anomaly_series(
        args.num_test_images, seed=args.seed + 10_000, **kwargs
    )
    return (*_validation_split(x, y, args.num_images), xt, yt)


def _validation_split(x, y, num_images: int):
    """``(x, y, x_val, y_val)``: a tenth of the series (at least 8), stratified so
    that both parts hold anomalous series."""
    import numpy as np

    anomalous = np.flatnonzero(y.any(axis=1))
    normal = np.flatnonzero(~y.any(axis=1))
    num_val = max(8, round(VALIDATION_FRACTION * len(x)))
    if len(anomalous) < 2 or num_val >= len(x):
        raise ValueError(
            f"Argument --num-images must give at least 2 anomalous series (one to train on, "
            f"one to choose the threshold on) and leave training series after the {num_val} "
            f"validation series; {num_images} series hold {len(anomalous)} anomalous ones. "
            f"Received: --num-images {num_images}"
        )
    val_anomalous = min(max(1, round(VALIDATION_FRACTION * len(anomalous))), len(anomalous) - 1)
    # The generator draws which series are anomalous at random: the last ones
    # of each kind are as good a split as any.
    val_normal = normal[len(normal) - min(num_val - val_anomalous, len(normal)) :]
    val = np.sort(np.concatenate([anomalous[-val_anomalous:], val_normal]))
    train = np.setdiff1d(np.arange(len(x)), val)
    return x[train], y[train], x[val], y[val]


def series_config(args: argparse.Namespace, bidirectional: bool = True):
    """The :class:`bayesseg.recipes.SeriesConfig` of the demo's flags.

    ``bidirectional=False`` is the benchmarks' causal variant.
    """
    from bayesseg.recipes import SeriesConfig

    if args.lr_schedule not in (None, "constant"):
        raise ValueError(
            "Argument --lr-schedule applies to the U-Net tasks; the series recipe trains at a "
            f"constant rate. Received: --lr-schedule {args.lr_schedule}"
        )
    return SeriesConfig(
        window=min(args.window, args.length),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        clipnorm=args.clipnorm,
        class_weights=args.class_weights,
        conv_filters=(args.base_filters * 2,) * 2,
        units=(args.base_filters * 4,),
        bidirectional=bidirectional,
        estimator=args.estimator,
        posterior_scale_init=args.posterior_scale_init,
        scale_multiplier=args.scale_multiplier,
        num_samples=args.num_samples,
        seed=args.seed,
    )


def _as_prediction(predictions):
    """Equal-length ``SeriesPrediction`` s as one ``MCPrediction`` (for the uncertainty scores)."""
    import numpy as np

    import bayesseg as bs

    mean = np.stack([p.prob for p in predictions])
    aleatoric = np.stack([p.aleatoric for p in predictions])
    epistemic = np.stack([p.epistemic for p in predictions])
    return bs.uncertainty.MCPrediction(
        mean=mean[..., None],
        total=aleatoric + epistemic,
        aleatoric=aleatoric,
        epistemic=epistemic,
        num_samples=0,
    )


def _step_scores(labels, flags) -> dict[str, float | None]:
    """Per-step recall, precision and F1 (the Dice of class 1) of boolean decisions."""
    import bayesseg as bs

    counts = bs.metrics.confusion_counts(labels.astype(int), flags.astype(int), 2)
    anomaly = bs.metrics.per_class_scores(counts)[1]
    return {
        "anomaly_recall": anomaly["recall"],
        "anomaly_precision": anomaly["precision"],
        "anomaly_f1": anomaly["dice"],
    }


def _detector_scores(labels, scores, threshold: float) -> dict[str, Any]:
    """Event-level, threshold-free and per-step scores of one detector, and its chance rows.

    ``chance``: the event F1 of flagging every step and of flagging steps at
    random at this detector's rate (``bs.metrics.event_chance``).
    """
    import bayesseg as bs

    events = bs.metrics.event_f1(labels, scores, threshold=threshold)
    return {
        "events": events,
        "chance": bs.metrics.event_chance(labels, rate=events["flagged_fraction"]),
        "anomaly_average_precision": (
            bs.metrics.average_precision(labels, scores) if labels.any() else None
        ),
        **_step_scores(labels, scores >= threshold),
    }


def _anomaly_metrics(run, xt, yt):
    """Held-out metrics of the tagger (and its prediction)."""
    import bayesseg as bs

    pred = _as_prediction(run.predict(xt))
    scores = pred.mean[..., 0]
    labels = (yt > 0.5).reshape(scores.shape)
    threshold = run.threshold
    errors = (scores >= threshold) != labels
    metrics = {
        **_detector_scores(labels, scores, threshold),
        "events_at_0.5": bs.metrics.event_f1(labels, scores),
        "predictive_nll": bs.metrics.predictive_nll(yt, scores),
        "uncertainty_auroc": (
            bs.metrics.uncertainty_auroc(errors, pred.total)
            if 0 < errors.sum() < errors.size
            else None
        ),
        "mean_epistemic": float(pred.epistemic.mean()),
        "epistemic_share": bs.uncertainty.epistemic_share(pred),
    }
    return metrics, pred


def _zscore_baseline(xv, yv, xt, yt) -> dict[str, Any]:
    """The rolling z-score detector, its threshold chosen on the same validation series."""
    import bayesseg as bs

    chosen = bs.metrics.choose_threshold(yv > 0.5, bs.baselines.rolling_zscore(xv))
    return {
        "description": "|z-score| of the first difference over a centred window of "
        f"{bs.baselines.ZSCORE_WINDOW} steps (bs.baselines.rolling_zscore), threshold of the "
        "best validation event F1",
        "threshold": chosen["threshold"],
        **_detector_scores(yt > 0.5, bs.baselines.rolling_zscore(xt), chosen["threshold"]),
    }


def _print_anomaly_summary(report: dict[str, Any], args: argparse.Namespace, out: Path) -> None:
    import bayesseg as bs

    m, z = report["metrics"], report["baseline_zscore"]
    d, e = report["data"], report["metrics"]["events"]
    chance = m["chance"]
    print(
        f"bayesseg demo (anomaly): {d['train_series']} training series of {args.length} "
        f"steps ({d['train_windows']} windows of {d['window']}), {d['test_series']} held out, "
        f"anomalous steps {100 * d['anomaly_fraction']:.3f}%\n"
        f"  event F1 {_fmt(e['f1'])} (recall {_fmt(e['recall'])} of {e['true_events']} events "
        f"within +-{bs.metrics.DEFAULT_EVENT_TOLERANCE} steps, precision "
        f"{_fmt(e['precision'])} of {e['flagged_steps']} flagged steps, "
        f"{100 * e['flagged_fraction']:.3f}% flagged)   average precision "
        f"{_fmt(m['anomaly_average_precision'])}\n"
        f"  chance: flag every step {_fmt(chance['flag_all']['f1'])}, random flags at the same "
        f"rate {_fmt(chance['random']['f1'])}   rolling z-score detector: event F1 "
        f"{_fmt(z['events']['f1'])}, average precision {_fmt(z['anomaly_average_precision'])}\n"
        f"  per step: anomaly recall {_fmt(m['anomaly_recall'])}  precision "
        f"{_fmt(m['anomaly_precision'])}  F1 {_fmt(m['anomaly_f1'])}  "
        f"uncertainty AUROC {_fmt(m['uncertainty_auroc'])}  epistemic share "
        f"{_fmt(m['epistemic_share'])}\n"
        f"  threshold {report['decision']['threshold']:.4g} on corrected probabilities "
        f"(validation event F1 {_fmt(report['decision']['validation']['f1'])}); "
        f"loss spikes flagged: {len(report['spikes'])}\n"
        f"wrote {out}/model.keras, model.json, report.json, uncertainty.png"
        f"{', uncertainty_zoom.png' if (out / 'uncertainty_zoom.png').is_file() else ''}, "
        "training.png, "
        f"gradients.png in {report['runtime_seconds']:.0f} s"
    )


def _plot_series(xt, yt, pred, threshold: float, out: Path) -> None:
    """uncertainty.png: a held-out series with anomalies; and a close-up of a long one."""
    import numpy as np

    import bayesseg as bs

    shown = int(np.argmax((yt > 0.5).sum(axis=1)))
    kwargs = {"index": shown, "threshold": threshold}
    bs.plots.plot_series_uncertainty(xt, yt, pred, out / "uncertainty.png", **kwargs)
    length = xt.shape[1]
    if length > 1024 and (yt[shown] > 0.5).any():
        first = int(np.flatnonzero(yt[shown] > 0.5)[0])
        start = min(max(first - 200, 0), length - 400)
        bs.plots.plot_series_uncertainty(
            xt, yt, pred, out / "uncertainty_zoom.png", steps=(start, start + 400), **kwargs
        )


def _demo_anomaly(args: argparse.Namespace, out: Path, start: float) -> int:

    import bayesseg as bs

    config = series_config(args)
    x, y, xv, yv, xt, yt = _anomaly_data(args)
    callback = _gradient_callback(
        math.ceil(2 * (y > 0.5).sum() * config.windows_per_event / config.batch_size)
        * config.epochs
    )
    monitor = bs.diagnostics.LossSpikeMonitor()
    if not args.quiet:
        print(
            f"bayesseg demo: series, training the Bayesian tagger on windows of "
            f"{config.window} steps of {len(x)} series with the weighted ELBO"
        )
    t0 = time.perf_counter()
    run = bs.recipes.train_series(
        list(x),
        list(y),
        config,
        validation=(list(xv), list(yv)),
        callbacks=[callback, monitor],
        verbose=0 if args.quiet else 2,
    )
    seconds = time.perf_counter() - t0
    demo = {"demo": {k: v for k, v in vars(args).items() if k != "func"}}
    run.save(out, demo)
    if run.threshold is None:
        # The trained model and its correction are saved, without a threshold
        # that could not be chosen (predict then asks for --threshold).
        raise ValueError(
            f"{run.decision['error']} The trained model is saved in {out / 'model.keras'} "
            "without a threshold (model.json: decision.threshold null; bayesseg predict needs "
            "--threshold)."
        )
    metrics, pred = _anomaly_metrics(run, xt, yt)
    history = run.history
    report = {
        "task": "anomaly",
        "config": {k: v for k, v in vars(args).items() if k != "func"},
        "recipe": config.to_dict(),
        "data": {
            "kind": args.anomaly_kind,
            "train_series": len(x),
            "validation_series": len(xv),
            "test_series": len(xt),
            "length": args.length,
            "window": config.window,
            "train_windows": run.windows["windows"],
            "anomaly_fraction": run.windows["series_anomaly_fraction"],
            "window_anomaly_fraction": run.windows["window_anomaly_fraction"],
            "class_weights": run.class_weights,
            "output_bias": run.output_bias,
        },
        "model": {
            "architecture": run.model.name,
            "conv_filters": list(config.conv_filters),
            "units": list(config.units),
            "bidirectional": config.bidirectional,
            "parameters": int(run.model.count_params()),
        },
        "training": {
            "seconds": seconds,
            "final": {k: v[-1] for k, v in history.items() if v},
        },
        "decision": run.decision,
        "metrics": metrics,
        "baseline_zscore": _zscore_baseline(xv, yv, xt, yt),
        "spikes": [{k: s[k] for k in ("step", "loss") if k in s} for s in monitor.spikes],
        "posterior_warnings": callback.warnings,
        "versions": _versions(),
    }
    _plot_training(history, callback, out)
    _plot_series(xt, yt, pred, run.threshold, out)
    report["runtime_seconds"] = time.perf_counter() - start
    _write_json(out / "report.json", report)
    _print_anomaly_summary(report, args, out)
    return 0
