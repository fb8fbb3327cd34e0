"""Figure of bench_quality.py's shift detection: AUROC per shift and variant.

Reads the JSON that ``bench_quality.py --json FILE`` writes and draws, for
each shift at its middle severity (the inversion has one level), the mean
AUROC over the seeds (error bars: standard deviation) of every variant's
per-image score (the mean epistemic part; the deterministic U-Net has none,
so its mean predictive entropy) next to the input-statistic detector.

Run: python benchmarks/plot_shift_detection.py RESULTS.json FIGURE.png
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SETS = (("noise2", "noise (middle)"), ("blur2", "blur (middle)"))
SETS += (("intensity2", "gain (middle)"), ("inversion1", "inversion"))
VARIANTS = (
    ("deterministic", "mean_total", "deterministic (entropy)"),
    ("mc_dropout", "mean_epistemic", "MC dropout"),
    ("ensemble", "mean_epistemic", "deep ensemble (5)"),
    ("bayesian", "mean_epistemic", "Bayesian (Flipout, defaults)"),
    ("partial_bayesian", "mean_epistemic", "Bayesian decoder only"),
    ("reparameterization", "mean_epistemic", "Bayesian (reparameterization)"),
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="JSON written by bench_quality.py --json")
    parser.add_argument("figure", help="PNG to write")
    args = parser.parse_args(argv)
    with open(args.results) as handle:
        runs = json.load(handle)["runs"]
    columns = [(None, None, "input mean / std")] + [
        v for v in VARIANTS if all(v[0] in run for run in runs)
    ]
    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=120)
    width = 0.8 / len(columns)
    for j, (variant, score, label) in enumerate(columns):
        means, stds = [], []
        for key, _ in SETS:
            if variant is None:
                values = [run["baselines"][f"{key}_auroc_input_stats"] for run in runs]
            else:
                values = [run[variant][f"{key}_auroc_{score}"] for run in runs]
            means.append(np.mean(values))
            stds.append(np.std(values))
        x = np.arange(len(SETS)) + (j - (len(columns) - 1) / 2) * width
        color = "0.6" if variant is None else None
        ax.bar(x, means, width, yerr=stds, label=label, color=color, capsize=2)
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.axhline(0.9, color="tab:red", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(SETS)), [name for _, name in SETS])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("AUROC, shifted vs clean images")
    ax.set_title(
        f"Shift detection from per-image uncertainty ({len(runs)} seeds; "
        "dotted: chance, dashed: the 0.9 target)"
    )
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.figure)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
