"""Long events (29 to 1500 steps, 10% of the steps): the thresholds the event score chooses.

The regime of public anomaly benchmarks (server metrics, industrial
sensors) rather than our users' two-step spikes, where a score that rewards
any alarm touching an event made the validation rule flag 94-100% of the
test steps. Data: ``bs.data.synthetic_event_series`` (series of 4096 to
16384 steps, level shifts, noise bursts, oscillations, flat lines), three
disjoint seeds for training, validation and held-out series.

Variants, each trained on the same 512-step windows cut end to end from the
training series (no event-centred sampling: events are common here), its
threshold chosen by ``bs.metrics.choose_threshold`` (event F1, the
default) on the validation series, scored on the held-out series:

- ``bayesian``: the series demo's recipe (``bs.recipes.build_series_model``
  with the demo's ``SeriesConfig``, benchmarks/_demo.py: a first layer
  standardising the inputs by the training series' mean and scale, Bayesian
  Conv1D front-end, bidirectional Bayesian LSTM, inverse-sqrt weighted ELBO,
  Adam 3e-3), Monte Carlo mean of 16 draws, the probabilities corrected for
  the class weights;
- ``keras``: the recipe's deterministic twin of the same shape
  (``SeriesConfig(bayesian=False)``, ``bs.models.lstm_tagger``), the same
  weighted likelihood, optimizer, windows and epochs.

Series are predicted whole; to share traced shapes they are padded to a
multiple of 1024 steps by reflection and the padding is cut off.

Per variant: held-out event F1 (recall per event, precision per flagged
step, +-2 steps), flagged fraction against the positive rate, the chance
rows (flag every step; random flags at the same rate), average precision,
step recall, training seconds (ratio to ``keras``).

Run: python benchmarks/bench_long_events.py [--seeds 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

WINDOW = 512
PAD_TO = 1024


def _windows(xs, ys):
    """Non-overlapping windows of WINDOW steps cut end to end from every series."""
    import numpy as np

    cut = [
        (x[s : s + WINDOW], y[s : s + WINDOW])
        for x, y in zip(xs, ys, strict=True)
        for s in range(0, len(y) - WINDOW + 1, WINDOW)
    ]
    return np.stack([c[0] for c in cut]), np.stack([c[1] for c in cut])


def _predict_series(predict, xs):
    """Per-series probabilities, the series padded by reflection to a multiple of PAD_TO."""
    import numpy as np

    out = [None] * len(xs)
    padded = {}
    for i, x in enumerate(xs):
        size = math.ceil(len(x) / PAD_TO) * PAD_TO
        padded.setdefault(size, []).append(i)
    for size, members in padded.items():
        batch = np.stack(
            [np.pad(xs[i], ((0, size - len(xs[i])), (0, 0)), "reflect") for i in members]
        )
        probs = predict(batch)
        for row, i in zip(probs, members, strict=True):
            out[i] = row[: len(xs[i])]
    return out


def run_seed(args, seed: int) -> dict:
    import dataclasses

    import keras
    import numpy as np
    from _demo import series_config

    import bayesseg as bs

    config = series_config(seed, length=WINDOW, num_samples=args.num_samples, epochs=args.epochs)
    x, y = bs.data.synthetic_event_series(args.num_series, seed=3 * seed)
    xv, yv = bs.data.synthetic_event_series(args.num_validation, seed=3 * seed + 1)
    xt, yt = bs.data.synthetic_event_series(args.num_test, seed=3 * seed + 2)
    xw, yw = _windows(x, y)
    counts = bs.imbalance.count_classes(yw, num_classes=2)
    normalization = None
    if config.standardize:
        # The recipe's first layer: each feature's mean and scale over the
        # training series (as bs.recipes.train_series computes them).
        steps = np.concatenate(x).astype(np.float64)
        std = steps.std(axis=0)
        normalization = (steps.mean(axis=0), np.where(std > 0, std, 1.0))
    positive_rate = float(np.mean(np.concatenate(yt)))
    results = {}
    for variant in args.variants:
        keras.utils.set_random_seed(seed)
        model, weights, _ = bs.recipes.build_series_model(
            dataclasses.replace(config, bayesian=variant == "bayesian"),
            xw.shape[-1],
            counts,
            len(xw),
            normalization,
        )
        # Windows cut end to end keep the series' prior: the correction undoes the weights.
        correction = bs.imbalance.prior_shift_weights(counts, counts, class_weights=weights)
        start = time.perf_counter()
        model.fit(xw, yw, batch_size=config.batch_size, epochs=config.epochs, verbose=0)
        train_s = time.perf_counter() - start

        def predict(batch, model=model, variant=variant, correction=correction):
            if variant == "keras":
                logits = model.predict(batch, batch_size=8, verbose=0)
                p = keras.ops.convert_to_numpy(keras.ops.sigmoid(logits))[..., 0]
                return bs.imbalance.unweight_probabilities(p, correction)
            pred = bs.uncertainty.predict_mc(
                model,
                batch,
                num_samples=config.num_samples,
                batch_size=8,
                correct_for_class_weights=correction,
                verbose=0,
            )
            return pred.mean[..., 0]

        start = time.perf_counter()
        chosen = bs.metrics.choose_threshold(yv, _predict_series(predict, xv))
        scores = _predict_series(predict, xt)
        predict_s = time.perf_counter() - start
        events = bs.metrics.event_f1(yt, scores, threshold=chosen["threshold"])
        results[variant] = {
            "threshold": chosen["threshold"],
            "validation_f1": chosen["f1"],
            "events": events,
            "chance": bs.metrics.event_chance(yt, rate=events["flagged_fraction"]),
            "average_precision": bs.metrics.average_precision(yt, scores),
            "flagged_over_positive_rate": events["flagged_fraction"] / positive_rate,
            "train_s": train_s,
            "predict_s": predict_s,
        }
        print(f"  seed {seed} {variant}: trained in {train_s:.0f} s", flush=True)
    return {
        "seed": seed,
        "train_series": len(x),
        "train_windows": len(xw),
        "validation_series": len(xv),
        "test_series": len(xt),
        "test_steps": int(sum(len(t) for t in yt)),
        "test_events": results[args.variants[0]]["events"]["true_events"],
        "positive_rate": positive_rate,
        "variants": results,
    }


def _print(run: dict) -> None:
    print(
        f"seed {run['seed']}: {run['train_series']} training series ({run['train_windows']} "
        f"windows), {run['test_series']} held out ({run['test_steps']} steps, "
        f"{run['test_events']} events, {100 * run['positive_rate']:.1f}% anomalous)"
    )
    print(
        f"  {'variant':9s} {'event F1':>8s} {'prec':>6s} {'recall':>6s} {'flagged':>8s} "
        f"{'x pos.':>6s} {'all':>6s} {'random':>6s} {'AP':>6s} {'step R':>6s} {'train s':>8s}"
    )
    base = run["variants"].get("keras", {}).get("train_s")
    for name, v in run["variants"].items():
        e, c = v["events"], v["chance"]
        ratio = f" ({v['train_s'] / base:.2f}x)" if base else ""
        print(
            f"  {name:9s} {e['f1']:8.3f} {e['precision']:6.3f} {e['recall']:6.3f} "
            f"{100 * e['flagged_fraction']:7.2f}% {v['flagged_over_positive_rate']:6.2f} "
            f"{c['flag_all']['f1']:6.3f} {c['random']['f1']:6.3f} {v['average_precision']:6.3f} "
            f"{e['step_recall']:6.3f} {v['train_s']:8.1f}{ratio}"
        )


def main() -> None:
    from bench_anomaly import run_seeds

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--variants", nargs="+", choices=("bayesian", "keras"), default=["bayesian", "keras"]
    )
    parser.add_argument("--num-series", type=int, default=60)
    parser.add_argument("--num-validation", type=int, default=12)
    parser.add_argument("--num-test", type=int, default=24)
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    run_seeds(args, run_seed, _print)


if __name__ == "__main__":
    main()
