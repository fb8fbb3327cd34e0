"""Anomaly tagging at 4096 steps: the demo's Bayesian recipe against its baselines.

One process, one data set per seed (the demo's: ``--num-series`` generated
training series of ``--length`` steps with mixed point and contextual
anomalies, a tenth held out as the validation split, ``--num-test`` held-out
series; benchmarks/_demo.py writes out the demo's settings), and every
variant trained by ``bs.recipes.train_series`` on the same windows, its
threshold chosen on the same validation split (best event-level F1 on
corrected probabilities) and scored on the same held-out series, predicted
in overlapping windows (``bs.recipes.predict_series``) as the demo does:

- ``bayesian``: the demo's recipe (its ``SeriesConfig``: Bayesian Conv1D
  front-end, bidirectional Bayesian LSTM, weighted ELBO, Monte Carlo mean of
  ``--num-samples`` draws);
- ``keras``: the recipe's deterministic twin (``SeriesConfig(bayesian=False)``:
  ``bs.models.lstm_tagger``, Conv1D x2, ``Bidirectional(LSTM)``, Dense), the
  same weighted cross-entropy, optimizer, windows and epochs, predicted once;
- ``unidirectional``: the Bayesian recipe with one forward LSTM (what a
  causal tagger can do on contextual anomalies);
- ``zscore``: the non-learned detector (``bs.baselines.rolling_zscore``), the
  |z-score| of the first difference over a centred window of 128 steps.

Per variant: the event F1 (recall per event, precision per flagged step,
+-2 steps), the steps it flagged and the chance rows beside it (flag every
step; random flags at its rate), per-step average precision, per-step F1 at
the chosen threshold, training seconds (``fit``'s) and prediction seconds
(choosing the threshold and predicting the held-out series); time ratios are
against ``keras`` of the same seed.

Run: python benchmarks/bench_anomaly.py [--seeds 0 1] [--variants bayesian keras ...]
      [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VARIANTS = ("bayesian", "keras", "unidirectional", "zscore")


def _variant_config(config, variant: str):
    """The recipe's config of a learned variant (the demo's for ``bayesian``)."""
    import dataclasses

    if variant == "keras":  # the deterministic twin, predicted once
        return dataclasses.replace(config, bayesian=False, num_samples=1)
    if variant == "unidirectional":
        return dataclasses.replace(config, bidirectional=False)
    return config


def _fit_timer():
    """A Keras callback measuring the seconds ``fit`` takes (in ``.seconds``)."""
    import keras

    class FitTimer(keras.callbacks.Callback):
        seconds = 0.0

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.start

    return FitTimer()


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    import keras
    import numpy as np
    from _demo import detector_scores, series_config, series_data, zscore_baseline

    import bayesseg as bs

    config = series_config(
        seed,
        length=args.length,
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        epochs=args.epochs,
    )
    keras.utils.set_random_seed(seed)
    x, y, xv, yv, xt, yt = series_data(seed, args.num_series, args.num_test, args.length)
    labels = yt > 0.5
    results, windows = {}, None
    for variant in args.variants:
        keras.utils.set_random_seed(seed)
        if variant == "zscore":
            start = time.perf_counter()
            scores = zscore_baseline(xv, yv, xt, yt)
            results[variant] = {**scores, "train_s": 0.0, "predict_s": time.perf_counter() - start}
            continue
        # The recipe as the demo runs it: the same windows for every variant
        # (drawn with the config's seed), the threshold of the best validation
        # event F1 on corrected probabilities, held-out series predicted in
        # overlapping windows (bs.recipes.predict_series).
        timer = _fit_timer()
        start = time.perf_counter()
        run = bs.recipes.train_series(
            list(x),
            list(y),
            _variant_config(config, variant),
            validation=(list(xv), list(yv)),
            callbacks=[timer],
        )
        if run.threshold is None:
            raise ValueError(f"{variant}: {run.decision['error']}")
        scores = np.stack([p.prob for p in run.predict(list(xt))])
        predict_s = time.perf_counter() - start - timer.seconds  # validation and test
        windows = run.windows["windows"]
        results[variant] = {
            **detector_scores(labels, scores, run.threshold),
            "events_at_0.5": bs.metrics.event_f1(labels, scores),
            "predictive_nll": bs.metrics.predictive_nll(yt, scores),
            "threshold": run.threshold,
            "validation": run.decision["validation"],
            "train_s": timer.seconds,
            "predict_s": predict_s,
        }
        print(f"  seed {seed} {variant}: done in {timer.seconds:.0f} s training", flush=True)
    return {
        "seed": seed,
        "train_series": len(x),
        "validation_series": len(xv),
        "test_series": len(xt),
        "windows": windows,
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
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    run_seeds(args, run_seed, _print)


if __name__ == "__main__":
    main()
