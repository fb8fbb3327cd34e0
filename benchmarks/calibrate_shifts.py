"""Calibrate the severities of bs.data.shift_images: Dice drop of a deterministic U-Net.

The issue's requirement: at the middle severity the deterministic model's
held-out Dice drops by 0.05-0.2; the mild level about half that, the severe
level about twice. This script trains the deterministic U-Net of
``benchmarks/bench_quality.py`` at its settings (synthetic 64x64 lesions,
200 training images of seed ``s``, 100 held-out images of seed ``s + 1000``;
inverse-sqrt class weights and the matching output bias; depth 3, 16 base
filters, batch normalisation; weighted BCE; Adam 3e-3 with
``global_clipnorm=1``, batch 8, 25 epochs), then sweeps a grid of levels of
each shift on the held-out images and prints the lesion Dice (pooled;
class-weight-corrected probabilities >= 0.5) and its drop from the clean
Dice, averaged over the seeds.

Noise and blur are swept with ``standardize=True`` (the per-image z-score
``bayesseg predict`` applies: the deployed pipeline); the intensity gain with
``standardize=False``, since the z-score removes a gain exactly; the
inversion has no parameter and is reported once (both ways).

Suggested levels: for each kind the grid level whose mean drop is closest
to 0.1 among those within [0.05, 0.2] (middle), then the weaker and the
stronger levels closest to half and to twice its drop (mild, severe); the
intensity among gains below 1 (above 1 the drop is not monotone).

Run: python benchmarks/calibrate_shifts.py [--seeds 2 --epochs 25 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import bayesseg as bs  # noqa: E402

#: kind -> (grid of levels, standardize)
GRIDS = {
    "noise": ((0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8), True),
    "blur": ((0.25, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0), True),
    "intensity": (
        (0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 1.25, 1.5, 2.0, 2.5, 3.0),
        False,
    ),
}
TRANSFORMS = {
    "noise": lambda x, level: bs.data.add_noise(x, level, seed=0),
    "blur": bs.data.blur,
    "intensity": bs.data.scale_intensity,
}


def _standardized(x):
    return np.stack([bs.data.standardize_image(image) for image in x])


def _dice(model, x, y, weights) -> float:
    pred = bs.uncertainty.predict_mc(
        model, x, num_samples=1, batch_size=16, verbose=0, correct_for_class_weights=weights
    )
    dice = bs.metrics.Dice(class_id=1, from_logits=False)
    dice.update_state(y, pred.mean)
    return float(dice.result())


def train(args, seed: int):
    """The deterministic U-Net of bench_quality.run_seed; the held-out data and weights."""
    keras.utils.set_random_seed(seed)
    shape = (args.size, args.size)
    x_train, y_train = bs.data.synthetic_lesions(args.train, shape=shape, seed=seed)
    x_test, y_test = bs.data.synthetic_lesions(args.test, shape=shape, seed=seed + 1000)
    counts = bs.imbalance.count_classes(y_train, num_classes=2)
    weights = bs.imbalance.class_weights(counts, method="inverse_sqrt", normalize=True)
    bias = bs.imbalance.initial_bias(counts / counts.sum(), class_weights=weights)
    model = bs.models.unet(
        (*shape, 1), 1, base_filters=16, depth=3, normalization="batch", output_bias=bias
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr, global_clipnorm=1.0),
        loss=bs.losses.WeightedBinaryCrossentropy(class_weights=weights),
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch, epochs=args.epochs, verbose=0)
    print(f"seed {seed}: trained in {time.perf_counter() - start:.0f} s", flush=True)
    return model, x_test, y_test, weights


def sweep(model, x, y, weights) -> dict:
    """Held-out Dice, clean and at every grid level of every kind."""
    result = {"clean": _dice(model, x, y, weights)}
    for kind, (grid, standardize) in GRIDS.items():
        for level in grid:
            shifted = TRANSFORMS[kind](x, level)
            if standardize:
                shifted = _standardized(shifted)
            result[f"{kind}={level}"] = _dice(model, shifted, y, weights)
    inverted = bs.data.invert_contrast(x)
    result["inversion"] = _dice(model, _standardized(inverted), y, weights)
    result["inversion (raw)"] = _dice(model, inverted, y, weights)
    # The library's constants as shift_images applies them.
    for kind in bs.data.SHIFT_KINDS:
        standardize = kind != "intensity"
        for severity in (1, 2, 3):
            shifted = bs.data.shift_images(x, kind, severity, standardize=standardize)
            result[f"shift_images({kind}, {severity})"] = _dice(model, shifted, y, weights)
    return result


def _strength(kind: str, level: float) -> float:
    """How far a level is from no shift: the level itself, or 1/gain for a gain below 1."""
    return 1 / level if kind == "intensity" else level


def suggest(drops: dict) -> dict:
    """Per kind: (mild, middle, severe) grid levels, or None when no level fits.

    The intensity is suggested among gains below 1 (a dimmer calibration): on
    the synthetic lesions a gain above 1 first raises the Dice (see the table).
    """
    suggestions = {}
    for kind, (grid, _) in GRIDS.items():
        side = [lv for lv in grid if kind != "intensity" or lv < 1]
        candidates = [lv for lv in side if 0.05 <= drops[f"{kind}={lv}"] <= 0.2]
        if not candidates:
            suggestions[kind] = None
            continue
        middle = min(candidates, key=lambda lv: abs(drops[f"{kind}={lv}"] - 0.1))
        target = drops[f"{kind}={middle}"]
        weaker = [lv for lv in side if _strength(kind, lv) < _strength(kind, middle)]
        stronger = [lv for lv in side if _strength(kind, lv) > _strength(kind, middle)]
        mild = min(weaker, key=lambda lv: abs(drops[f"{kind}={lv}"] - target / 2), default=None)
        severe = min(stronger, key=lambda lv: abs(drops[f"{kind}={lv}"] - 2 * target), default=None)
        suggestions[kind] = (mild, middle, severe)
    return suggestions


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)

    runs = []
    for seed in range(args.seeds):
        model, x, y, weights = train(args, seed)
        runs.append(sweep(model, x, y, weights))
        print(f"seed {seed}: " + json.dumps(runs[-1]), flush=True)
    keys = list(runs[0])
    dice = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    drops = {k: float(np.mean([r["clean"] - r[k] for r in runs])) for k in keys}
    spread = {k: float(np.std([r["clean"] - r[k] for r in runs])) for k in keys}
    print(
        f"\n{'shift (mean over ' + str(args.seeds) + ' seeds)':<32}{'Dice':>8}{'drop':>8}{'+-':>8}"
    )
    for key in keys:
        print(f"{key:<32}{dice[key]:>8.3f}{drops[key]:>8.3f}{spread[key]:>8.3f}")
    suggestions = suggest(drops)
    print("\nsuggested (mild, middle, severe):")
    for kind, levels in suggestions.items():
        print(f"  {kind}: {levels}")
    result = {
        "config": vars(args),
        "runs": runs,
        "dice": dice,
        "drop": drops,
        "drop_std": spread,
        "suggested": suggestions,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
