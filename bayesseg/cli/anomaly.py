"""``bayesseg demo --task anomaly``: a Bayesian tagger for rare events in long series.

The recipe (docs/lstm.md): a small Bayesian ``Conv1D`` front-end and a
bidirectional Bayesian LSTM, trained with the weighted ELBO on windows cut
around the anomalies (``bs.data.event_windows``). The windows' class prior is
recorded, so the per-step probabilities are corrected back to the series'
prior (``bs.imbalance.prior_shift_weights``); the decision threshold is the
one of the best event-level F1 on a held-out validation split
(``bs.metrics.choose_threshold``). Both are saved beside the model, and
``bayesseg predict`` applies them to new series.

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

from bayesseg.cli.report import _final_logs, _fmt, _plot_training, _versions, _write_json
from bayesseg.cli.training import _gradient_callback, _learning_rate

# The share of the generated training series held out to choose the threshold.
VALIDATION_FRACTION = 0.1
# Window of the rolling z-score detector (steps): 128 beat 32 and 64 on the
# validation series of every kind (docs/lstm.md).
ZSCORE_WINDOW = 128


def _difference_zscore(x, window: int = ZSCORE_WINDOW):
    """The non-learned detector: |z-score| of the first difference, max over features.

    ``z_t = (d_t - mean(d)) / std(d)`` with ``d_t = x_t - x_(t-1)`` and the
    mean and standard deviation over a centred window of ``window`` steps.
    """
    import numpy as np
    from scipy import ndimage

    d = np.diff(np.asarray(x, np.float64), axis=1, prepend=x[:, :1])
    mean = ndimage.uniform_filter1d(d, window, axis=1, mode="nearest")
    square = ndimage.uniform_filter1d(d * d, window, axis=1, mode="nearest")
    std = np.sqrt(np.maximum(square - mean * mean, 1e-12))
    return np.abs((d - mean) / std).max(axis=-1)


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


def _anomaly_model(
    args: argparse.Namespace, counts, num_train: int, num_steps: int, bidirectional: bool = True
):
    """The compiled tagger with a class-weighted ELBO (and its weights, bias).

    ``bidirectional=False`` is the benchmark's causal variant.
    """
    import keras

    import bayesseg as bs

    weights = None
    if args.class_weights != "none":
        weights = bs.imbalance.class_weights(counts, method=args.class_weights, normalize=True)
    bias = bs.imbalance.initial_bias(counts / counts.sum(), class_weights=weights)
    model = bs.models.bayesian_lstm_tagger(
        1,
        units=(args.base_filters * 4,),
        estimator=args.estimator,
        output_bias=bias,
        posterior_scale_init=args.posterior_scale_init,
        scale_multiplier=args.scale_multiplier,
        bidirectional=bidirectional,
        conv_filters=(args.base_filters * 2,) * 2,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(
            _learning_rate(vars(args), num_steps), global_clipnorm=args.clipnorm
        ),
        loss=bs.ELBO(
            bs.losses.WeightedBinaryCrossentropy(class_weights=weights),
            bs.kl.PerExample(num_train),
        ),
    )
    return model, weights, bias


def _predict(model, series, correction, args: argparse.Namespace):
    """The Monte Carlo prediction of whole series, corrected by ``correction``.

    Series go 32 at a time at least: prediction needs no gradients, and a
    whole 4096-step series costs what a training batch of windows does.
    """
    import bayesseg as bs

    return bs.uncertainty.predict_mc(
        model,
        series,
        num_samples=args.num_samples,
        batch_size=max(args.batch_size, 32),
        correct_for_class_weights=correction,
        verbose=0,
    )


def _step_scores(labels, flags) -> dict[str, float]:
    """Per-step recall, precision and F1 (the Dice of class 1) of boolean decisions."""
    from bayesseg.cli.report import _confusion, _confusion_scores

    anomaly = _confusion_scores(_confusion(labels, flags[..., None].astype("float32"), 2))["1"]
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


def _decision(model, xv, yv, correction, args) -> dict[str, Any]:
    """The threshold of the best validation event F1, on corrected probabilities.

    Raises ValueError (``bs.metrics.choose_threshold``'s) when the validation
    scores admit no threshold, e.g. constant or saturated probabilities.
    """
    import bayesseg as bs

    pred = _predict(model, xv, correction, args)
    chosen = bs.metrics.choose_threshold(yv > 0.5, pred.mean[..., 0])
    return {
        "rule": "flag a step where the corrected probability >= threshold",
        "threshold": chosen["threshold"],
        "criterion": "event_f1",
        "tolerance": bs.metrics.DEFAULT_EVENT_TOLERANCE,
        "validation_series": len(xv),
        "validation": {
            k: chosen[k] for k in ("precision", "recall", "f1", "flagged_fraction", "step_recall")
        },
        "correction_weights": [float(w) for w in correction],
    }


def _anomaly_metrics(args, model, xt, yt, decision):
    """Held-out metrics of the tagger (and its Monte Carlo prediction)."""
    import bayesseg as bs

    pred = _predict(model, xt, decision["correction_weights"], args)
    scores = pred.mean[..., 0]
    labels = (yt > 0.5).reshape(scores.shape)
    flags = scores >= decision["threshold"]
    errors = flags != labels
    metrics = {
        **_detector_scores(labels, scores, decision["threshold"]),
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

    chosen = bs.metrics.choose_threshold(yv > 0.5, _difference_zscore(xv))
    return {
        "description": "|z-score| of the first difference over a centred window of "
        f"{ZSCORE_WINDOW} steps, threshold of the best validation event F1",
        "threshold": chosen["threshold"],
        **_detector_scores(yt > 0.5, _difference_zscore(xt), chosen["threshold"]),
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


def _save_model(model, out: Path, args, decision: dict | None, windows: dict) -> None:
    """model.keras, and model.json with the decision rule ``bayesseg predict`` applies
    (``decision["threshold"]`` None: no threshold could be chosen, none is saved)."""
    model.save(out / "model.keras")
    metadata = {
        "task": "anomaly",
        "architecture": "bayesian_lstm_tagger",
        "input": "raw series (length, features); no standardisation",
        "config": {k: v for k, v in vars(args).items() if k != "func"},
        "decision": decision,
        "windows": windows,
    }
    _write_json(out / "model.json", metadata)


def _demo_anomaly(args: argparse.Namespace, out: Path, start: float) -> int:
    import keras
    import numpy as np

    import bayesseg as bs

    keras.utils.set_random_seed(args.seed)
    x, y, xv, yv, xt, yt = _anomaly_data(args)
    window = min(args.window, args.length)
    xw, yw = bs.data.event_windows(x, y, window, seed=args.seed)
    series_counts = bs.imbalance.count_classes(y, num_classes=2)
    counts = bs.imbalance.count_classes(yw, num_classes=2)
    steps = math.ceil(len(xw) / args.batch_size) * args.epochs
    model, weights, bias = _anomaly_model(args, counts, len(xw), steps)
    correction = bs.imbalance.prior_shift_weights(counts, series_counts, class_weights=weights)
    callback = _gradient_callback(steps)
    monitor = bs.diagnostics.LossSpikeMonitor()
    if not args.quiet:
        print(
            f"bayesseg demo: anomaly, training the Bayesian tagger on {len(xw)} windows of "
            f"{window} steps with the weighted ELBO"
        )
    t0 = time.perf_counter()
    history = model.fit(
        xw,
        yw,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0 if args.quiet else 2,
        callbacks=[callback, monitor],
    )
    seconds = time.perf_counter() - t0
    windows = {
        "window": window,
        "windows": len(xw),
        "window_anomaly_fraction": float(counts[1] / counts.sum()),
        "series_anomaly_fraction": float(series_counts[1] / series_counts.sum()),
    }
    try:
        decision = _decision(model, xv, yv, correction, args)
    except ValueError as err:
        # Keep what was trained and its correction; save no threshold that could
        # not be chosen (predict then asks for --threshold).
        failed = {
            "threshold": None,
            "error": str(err),
            "correction_weights": [float(w) for w in correction],
        }
        _save_model(model, out, args, failed, windows)
        raise ValueError(
            f"{err} The trained model is saved in {out / 'model.keras'} without a threshold "
            "(model.json: decision.threshold null; bayesseg predict needs --threshold)."
        ) from err
    metrics, pred = _anomaly_metrics(args, model, xt, yt, decision)
    report = {
        "task": "anomaly",
        "config": {k: v for k, v in vars(args).items() if k != "func"},
        "data": {
            "kind": args.anomaly_kind,
            "train_series": len(x),
            "validation_series": len(xv),
            "test_series": len(xt),
            "length": args.length,
            "window": window,
            "train_windows": len(xw),
            "anomaly_fraction": windows["series_anomaly_fraction"],
            "window_anomaly_fraction": windows["window_anomaly_fraction"],
            "class_weights": None if weights is None else weights.tolist(),
            "output_bias": np.asarray(bias).tolist(),
        },
        "model": {
            "architecture": "bayesian_lstm_tagger",
            "conv_filters": [args.base_filters * 2] * 2,
            "units": [args.base_filters * 4],
            "bidirectional": True,
            "parameters": int(model.count_params()),
        },
        "training": {"seconds": seconds, "final": _final_logs(history)},
        "decision": decision,
        "metrics": metrics,
        "baseline_zscore": _zscore_baseline(xv, yv, xt, yt),
        "spikes": [{k: s[k] for k in ("step", "loss") if k in s} for s in monitor.spikes],
        "posterior_warnings": callback.warnings,
        "versions": _versions(),
    }
    _save_model(model, out, args, decision, windows)
    _plot_training(history, callback, out)
    _plot_series(xt, yt, pred, decision["threshold"], out)
    report["runtime_seconds"] = time.perf_counter() - start
    _write_json(out / "report.json", report)
    _print_anomaly_summary(report, args, out)
    return 0
