"""The Bayesian U-Net at its defaults against its twin, MC dropout and a deep
ensemble, per setting: one table from ``bench_quality.py --json`` files.

Every file is one ``bench_quality.py`` run (one setting; one or more
seeds); runs of the same setting and epochs are pooled by seed, so a run
of seed 0 with every variant and one of seeds 1-2 with the Bayesian U-Net
and its twin only make one setting. Columns, as means over the seeds that
measured the variant (their number is printed): pooled Dice, predictive
NLL, the class-weight corrected foreground ECE minus its noise floor, the
same after Platt scaling, AURC of 1 - per-image Dice ranked by the mean
total uncertainty on clean plus middle-severity shifted images, the shift
AUROC of the mean total uncertainty at middle noise, the epistemic share
and the training time over the twin's (per seed, then averaged).

Below each table, the issue's acceptance checks for the default against the
twin, on the seeds both ran: Dice >= twin - 0.01; NLL <= 1.02 x twin; ECE
minus floor <= twin's + 0.005, corrected and after Platt scaling; AURC <=
twin - 0.02 or shift AUROC >= twin + 0.05 ("uncertainty pays"); time <=
1.5x.

Run: python benchmarks/summarize_quality.py RUN.json [RUN.json ...] [--markdown]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

VARIANTS = ("bayesian", "bayesian_all", "deterministic", "mc_dropout", "ensemble")
NAMES = {
    "bayesian": "Bayesian U-Net (defaults)",
    "bayesian_all": "every layer Bayesian",
    "deterministic": "deterministic twin",
    "mc_dropout": "MC dropout (0.1)",
    "ensemble": "deep ensemble (5)",
}
COLUMNS = (
    ("Dice", lambda m: m["dice"]),
    ("NLL", lambda m: m["predictive_nll"]),
    ("ECE - floor", lambda m: m["foreground_ece"] - m["foreground_ece_floor"]),
    ("Platt ECE - floor", lambda m: m["platt_foreground_ece"] - m["platt_foreground_ece_floor"]),
    ("AURC clean + shifted", lambda m: m["aurc_pooled_mean_total"]),
    ("shift AUROC, noise 2", lambda m: m["noise2_auroc_mean_total"]),
    ("epistemic share", lambda m: m["epistemic_share"]),
)


def _setting(config: dict) -> str:
    return f"{config['setting']}, {config['epochs']} epochs"


def pool(paths) -> dict:
    """setting -> seed -> variant -> metrics, over every file."""
    settings: dict = defaultdict(dict)
    for path in paths:
        with open(path) as handle:
            result = json.load(handle)
        first = result["config"].get("first_seed", 0)
        for index, run in enumerate(result["runs"]):
            seed = run.get("seed", first + index)
            merged = settings[_setting(result["config"])].setdefault(seed, {})
            merged.update({v: run[v] for v in VARIANTS if v in run})
    return settings


def _row(seeds: dict, variant: str) -> tuple[list[float], int, float]:
    """Mean of every column over the seeds holding ``variant``, their number,
    and the mean time over the twin's (nan without a twin)."""
    runs = [s for s in seeds.values() if variant in s]
    values = [float(np.mean([f(s[variant]) for s in runs])) for _, f in COLUMNS]
    ratios = [
        s[variant]["train_seconds"] / s["deterministic"]["train_seconds"]
        for s in runs
        if "deterministic" in s
    ]
    return values, len(runs), float(np.mean(ratios)) if ratios else float("nan")


def acceptance(seeds: dict) -> dict:
    """The issue's checks for the default against the twin, on the seeds both ran."""
    paired = [s for s in seeds.values() if {"bayesian", "deterministic"} <= set(s)]

    def mean(variant, column):
        return float(np.mean([dict(COLUMNS)[column](s[variant]) for s in paired]))

    b, t = ({c: mean(v, c) for c, _ in COLUMNS} for v in ("bayesian", "deterministic"))
    time = float(
        np.mean(
            [s["bayesian"]["train_seconds"] / s["deterministic"]["train_seconds"] for s in paired]
        )
    )
    return {
        "seeds": len(paired),
        "dice >= twin - 0.01": b["Dice"] >= t["Dice"] - 0.01,
        "nll <= 1.02 twin": b["NLL"] <= 1.02 * t["NLL"],
        "nll / twin": b["NLL"] / t["NLL"],
        "ece <= twin + 0.005": b["ECE - floor"] <= t["ECE - floor"] + 0.005,
        "platt ece <= twin + 0.005": b["Platt ECE - floor"] <= t["Platt ECE - floor"] + 0.005,
        "uncertainty pays": b["AURC clean + shifted"] <= t["AURC clean + shifted"] - 0.02
        or b["shift AUROC, noise 2"] >= t["shift AUROC, noise 2"] + 0.05,
        "time / twin": time,
        "time <= 1.5x": time <= 1.5,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    settings = pool(args.paths)
    checks = {}
    for setting, seeds in settings.items():
        header = ["variant", "seeds", *(c for c, _ in COLUMNS), "time / twin"]
        print(f"\n{setting}\n\n| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for variant in VARIANTS:
            if not any(variant in s for s in seeds.values()):
                continue
            values, count, time = _row(seeds, variant)
            cells = [
                f"{v:.4f}" if c == "NLL" else f"{v:.3f}"
                for (c, _), v in zip(COLUMNS, values, strict=True)
            ]
            print(f"| {NAMES[variant]} | {count} | " + " | ".join(cells) + f" | {time:.2f} |")
        checks[setting] = acceptance(seeds)
        print("\n" + json.dumps(checks[setting]))
    return checks


if __name__ == "__main__":
    main()
