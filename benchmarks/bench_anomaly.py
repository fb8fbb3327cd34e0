"""Anomaly tagging at 4096 steps: the demo's Bayesian recipe against its baselines.

One process, one data set per seed (the demo's: ``--num-series`` generated
training series of ``--length`` steps with mixed point and contextual
anomalies, a tenth held out as the validation split, ``--num-test`` held-out
series), and every variant trained on the same windows, its threshold chosen
on the same validation split (best event-level F1) and scored on the same
held-out series:

- ``bayesian``: the demo's recipe (Bayesian Conv1D front-end, bidirectional
  Bayesian LSTM, weighted ELBO, Monte Carlo mean of ``--num-samples`` draws);
- ``keras``: a deterministic Keras model of the same shape (Conv1D x2,
  ``Bidirectional(LSTM)``, Dense), the same weighted cross-entropy, optimizer
  and learning-rate schedule, windows and epochs, predicted once;
- ``unidirectional``: the Bayesian recipe with one forward LSTM (what a
  causal tagger can do on contextual anomalies);
- ``zscore``: the non-learned detector, the |z-score| of the first difference
  over a centred window of 128 steps.

Per variant: the event F1 (recall per event, precision per flagged step,
+-2 steps), the steps it flagged and the chance rows beside it (flag every
step; random flags at its rate), per-step average precision, per-step F1 at
the chosen threshold, training and prediction seconds; time ratios are
against ``keras`` of the same seed.

Run: python benchmarks/bench_anomaly.py [--seeds 0 1] [--variants bayesian keras ...]
      [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VARIANTS = ("bayesian", "keras", "unidirectional", "zscore")


def _options(args: argparse.Namespace, seed: int) -> argparse.Namespace:
    """The demo's own options (its parser and task defaults) at this size and seed."""
    from bayesseg.cli.demo import _apply_task_defaults
    from bayesseg.cli.parser import build_parser

    options = build_parser().parse_args(
        ["demo", "--task", "anomaly", "--length", str(args.length), "--seed", str(seed)]
        + ["--num-images", str(args.num_series), "--num-test-images", str(args.num_test)]
        + ["--num-samples", str(args.num_samples)]
        + (["--batch-size", str(args.batch_size)] if args.batch_size else [])
        + (["--epochs", str(args.epochs)] if args.epochs else [])
        + (["--lr-schedule", args.lr_schedule] if args.lr_schedule else [])
    )
    _apply_task_defaults(options)
    return options


def _keras_model(options, bias: float):
    import keras

    filters, units = options.base_filters * 2, options.base_filters * 4
    inputs = keras.Input((None, 1))
    x = keras.layers.Conv1D(filters, 5, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv1D(filters, 5, padding="same", activation="relu")(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(units, return_sequences=True))(x)
    outputs = keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(bias))(x)
    return keras.Model(inputs, outputs)


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    import keras
    import numpy as np

    import bayesseg as bs
    from bayesseg.cli import anomaly
    from bayesseg.cli.training import _learning_rate

    options = _options(args, seed)
    keras.utils.set_random_seed(seed)
    x, y, xv, yv, xt, yt = anomaly._anomaly_data(options)
    window = min(options.window, options.length)
    xw, yw = bs.data.event_windows(x, y, window, seed=seed)
    counts = bs.imbalance.count_classes(yw, num_classes=2)
    series_counts = bs.imbalance.count_classes(y, num_classes=2)
    steps = math.ceil(len(xw) / options.batch_size) * options.epochs
    results = {}
    for variant in args.variants:
        keras.utils.set_random_seed(seed)
        if variant == "zscore":
            start = time.perf_counter()
            scores = anomaly._zscore_baseline(xv, yv, xt, yt)
            results[variant] = {**scores, "train_s": 0.0, "predict_s": time.perf_counter() - start}
            continue
        if variant == "keras":
            model, weights, bias = anomaly._anomaly_model(options, counts, len(xw), steps)
            model = _keras_model(options, float(np.asarray(bias).reshape(-1)[0]))
            model.compile(
                optimizer=keras.optimizers.Adam(
                    _learning_rate(vars(options), steps), global_clipnorm=options.clipnorm
                ),
                loss=bs.losses.WeightedBinaryCrossentropy(class_weights=weights),
            )
        else:
            model, weights, _ = anomaly._anomaly_model(
                options, counts, len(xw), steps, bidirectional=variant == "bayesian"
            )
        correction = bs.imbalance.prior_shift_weights(counts, series_counts, class_weights=weights)
        start = time.perf_counter()
        model.fit(xw, yw, batch_size=options.batch_size, epochs=options.epochs, verbose=0)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        if variant == "keras":

            def predict(series, model=model, correction=correction):
                logits = model.predict(series, batch_size=options.batch_size, verbose=0)
                p = keras.ops.convert_to_numpy(keras.ops.sigmoid(logits))[..., 0]
                return bs.imbalance.unweight_probabilities(p, correction)

            chosen = bs.metrics.choose_threshold(yv > 0.5, predict(xv))
            scores = anomaly._detector_scores(yt > 0.5, predict(xt), chosen["threshold"])
            threshold = chosen["threshold"]
        else:
            decision = anomaly._decision(model, xv, yv, correction, options)
            scores, _ = anomaly._anomaly_metrics(options, model, xt, yt, decision)
            threshold = decision["threshold"]
        results[variant] = {
            **scores,
            "threshold": threshold,
            "train_s": train_s,
            "predict_s": time.perf_counter() - start,
        }
        print(f"  seed {seed} {variant}: done in {train_s:.0f} s training", flush=True)
    return {
        "seed": seed,
        "train_series": len(x),
        "validation_series": len(xv),
        "test_series": len(xt),
        "windows": len(xw),
        "test_events": int(results[args.variants[0]]["events"]["true_events"]),
        "variants": results,
    }


def _print(run: dict) -> None:
    variants = run["variants"]
    base = variants.get("keras", {}).get("train_s")
    print(
        f"seed {run['seed']}: {run['train_series']} training series ({run['windows']} windows), "
        f"{run['test_series']} held out with {run['test_events']} events"
    )
    print(
        f"  {'variant':15s} {'event F1':>8s} {'prec':>6s} {'recall':>6s} {'flagged':>7s} "
        f"{'all':>6s} {'random':>6s} {'AP':>6s} {'step F1':>7s} {'train s':>8s} "
        f"{'x keras':>7s} {'predict s':>9s}"
    )
    for name, v in variants.items():
        ratio = f"{v['train_s'] / base:.2f}" if base and v["train_s"] else "-"
        e, chance = v["events"], v["chance"]
        print(
            f"  {name:15s} {e['f1']:8.3f} {e['precision']:6.3f} {e['recall']:6.3f} "
            f"{e['flagged_steps']:7d} {chance['flag_all']['f1']:6.4f} "
            f"{chance['random']['f1']:6.4f} "
            f"{v['anomaly_average_precision']:6.3f} {v['anomaly_f1']:7.3f} "
            f"{v['train_s']:8.1f} {ratio:>7s} {v['predict_s']:9.1f}"
        )


def run_seeds(args: argparse.Namespace, run, show) -> list[dict]:
    """``run(args, seed)`` for each of ``args.seeds``, shown as it ends, then
    written with the arguments to ``args.json`` when given."""
    runs = []
    for seed in args.seeds:
        runs.append(run(args, seed))
        show(runs[-1])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs}, f, indent=2, default=float)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--num-series", type=int, default=640)
    parser.add_argument("--num-test", type=int, default=160)
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the demo's")
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's")
    parser.add_argument("--lr-schedule", default=None, help="default: the demo's")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    run_seeds(args, run_seed, _print)


if __name__ == "__main__":
    main()
