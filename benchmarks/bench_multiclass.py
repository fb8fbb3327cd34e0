"""The many-class recipe: `bayesseg demo --task multiclass` at 32 classes, 99% background.

Runs the demo command itself (one subprocess per variant and seed, so each
wall time includes start-up, data generation, training, the Monte Carlo
evaluation on 200 held-out images and the figures, as a user meets them)
and reads its report.json. Variants:

- ``recipe``: the defaults (peak 1e-2, warm-up + cosine decay, 2560 images,
  10 epochs, inverse-sqrt weights, Flipout, posterior scale multiplier 2);
- ``old defaults``: the defaults before the recipe (constant 1e-3, 160
  images, 12 epochs, multiplier 20): the baseline every ratio is taken against;
- ``Flipout, 1280 images``: the recipe of the previous release (1280
  images, multiplier 20);
- one-change ablations of that recipe: ``constant 1e-2`` (no schedule),
  ``cosine 1e-3`` (schedule, old rate), ``160 images x 80 epochs`` (the same
  steps on an eighth of the data), ``balanced weights``;
- ``multiplier 20``: the recipe with the binary recipe's multiplier, whose
  scales move 10x faster at this rate (runaways: benchmarks/RESULTS.md);
- ``reparameterization, 2560 images`` and ``3840 images`` (multiplier 20):
  the reparameterization estimator (a step at about the deterministic cost
  instead of Flipout's 2x) spent on more images in about the recipe's time.

Per variant it prints the mean per-class recall and Dice over the
foreground classes present in the held-out set, the number of classes at
recall 0 and below 0.05, the weakest class, the wall time, and the
held-out calibration after the class-weight correction (predictive NLL,
foreground ECE minus its noise floor) with the epistemic share; the
ratios are against ``old defaults`` of the same seed.

Run: python benchmarks/bench_multiclass.py [--seeds 0 1] [--variants recipe ...]
      [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK = ["demo", "--task", "multiclass", "--num-classes", "32", "--background-fraction", "0.99"]

# The recipe of the previous release: 1280 images, the binary multiplier.
_MULTIPLIER_20 = ["--scale-multiplier", "20"]
_FLIPOUT_1280 = ["--num-images", "1280", *_MULTIPLIER_20]
_REPARAMETERIZATION = ["--estimator", "reparameterization", *_MULTIPLIER_20]
VARIANTS = {
    "old defaults": [
        "--learning-rate", "1e-3", "--lr-schedule", "constant",
        "--num-images", "160", "--epochs", "12", *_MULTIPLIER_20,
    ],
    "recipe": [],
    "Flipout, 1280 images": _FLIPOUT_1280,
    "constant 1e-2": [*_FLIPOUT_1280, "--lr-schedule", "constant"],
    "cosine 1e-3": [*_FLIPOUT_1280, "--learning-rate", "1e-3"],
    "160 images x 80 epochs": ["--num-images", "160", "--epochs", "80", *_MULTIPLIER_20],
    "balanced weights": [*_FLIPOUT_1280, "--class-weights", "balanced"],
    "multiplier 20": _MULTIPLIER_20,
    "reparameterization, 2560 images": [*_REPARAMETERIZATION, "--num-images", "2560"],
    "reparameterization, 3840 images": [*_REPARAMETERIZATION, "--num-images", "3840"],
}  # fmt: skip


def run_demo(flags: list[str], seed: int) -> dict:
    """One demo run: its foreground-class summary, per-class recall and wall time."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "bayesseg.cli", *TASK, *flags]
        command += ["--seed", str(seed), "--out", out, "--quiet"]
        env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        report = json.loads((Path(out) / "report.json").read_text())
    metrics = report["metrics"]
    recalls = {
        int(c): row["recall"]
        for c, row in metrics["per_class"].items()
        if int(c) > 0 and row["support"] > 0
    }
    return {
        **metrics["foreground_classes"],
        "below_0.05": sum(r < 0.05 for r in recalls.values()),
        "per_class_recall": recalls,
        "seconds": seconds,
        "train_seconds": report["training"]["seconds"],
        "posterior_warnings": report["posterior_warnings"],
        **_calibration(metrics),
    }


def _calibration(metrics: dict) -> dict:
    """Held-out NLL and foreground ECE minus its floor, class-weight corrected, and
    the epistemic share (the uncorrected figures where the model had no weights)."""
    corrected = metrics.get("corrected_for_class_weights", metrics)
    return {
        "nll": corrected["predictive_nll"],
        "ece_minus_floor": corrected["foreground_ece"] - corrected["foreground_ece_floor"],
        "epistemic_share": metrics["epistemic_share"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--json", default=None, help="write every run's results here")
    args = parser.parse_args()
    variants = ["old defaults", *[v for v in args.variants if v != "old defaults"]]
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for seed in args.seeds:
        for name in variants:
            row = run_demo(VARIANTS[name], seed)
            results[name].append(row)
            print(
                f"seed {seed}  {name:<24} recall {row['recall']:.3f}  Dice {row['dice']:.3f}  "
                f"at 0: {len(row['zero_recall'])}  < 0.05: {row['below_0.05']}  "
                f"{row['seconds']:.0f} s  NLL {row['nll']:.4f}  "
                f"ECE-floor {row['ece_minus_floor']:.3f}  epistemic {row['epistemic_share']:.4f}",
                flush=True,
            )
    base = results["old defaults"]
    print(
        f"\n{'variant':<24}{'recall':>8}{'Dice':>8}{'at 0':>6}{'<0.05':>7}{'lowest':>8}"
        f"{'wall s':>8}{'recall x':>10}{'Dice x':>8}{'NLL':>8}{'ECE-fl':>8}"
    )
    for name, rows in results.items():

        def mean(key, rows=rows):
            return statistics.fmean(r[key] for r in rows)

        ratio_recall = statistics.fmean(
            r["recall"] / b["recall"] for r, b in zip(rows, base, strict=True)
        )
        ratio_dice = statistics.fmean(
            r["dice"] / b["dice"] if b["dice"] else float("inf")
            for r, b in zip(rows, base, strict=True)
        )
        lowest = statistics.fmean(r["lowest_recall"]["recall"] for r in rows)
        zero = statistics.fmean(len(r["zero_recall"]) for r in rows)
        print(
            f"{name:<24}{mean('recall'):>8.3f}{mean('dice'):>8.3f}{zero:>6.1f}"
            f"{mean('below_0.05'):>7.1f}{lowest:>8.2f}{mean('seconds'):>8.0f}"
            f"{ratio_recall:>10.2f}{ratio_dice:>8.2f}{mean('nll'):>8.4f}"
            f"{mean('ece_minus_floor'):>8.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": args.seeds, "results": results}, indent=1))


if __name__ == "__main__":
    main()
