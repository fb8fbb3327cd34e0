"""Figure of the diagnosis in docs/uncertainty.md: the Bayesian U-Net against its
twin across training budgets and normalisation (from explore_regimes.py's JSON lines).

Three panels: the ELBO's terms per epoch of the default Bayesian U-Net (NLL
and the KL term it adds); the posterior scales by layer at the end of
training, relative to their start; and, per setting and budget, the
held-out NLL of each variant relative to its twin's (mean over the seeds in
the files, each seed's ratio as a dot).

Run: python benchmarks/plot_regimes.py OUT.png RESULTS.jsonl [MORE.jsonl ...]
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def load(paths):
    rows = []
    for path in paths:
        with open(path) as handle:
            rows += [json.loads(line) for line in handle if line.strip()]
    return rows


def _first_seed_curves(rows):
    """The default Bayesian U-Net's run with history, lowest seed, per (setting, epochs)."""
    runs = {}
    for row in sorted(rows, key=lambda r: r["seed"]):
        if row["variant"] == "bayes" and "history_nll" in row:
            runs.setdefault((row["setting"], row["epochs"]), row)
    return [runs[key] for key in sorted(runs)]


def plot(rows, out: str) -> None:
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    curves = _first_seed_curves(rows)
    for index, row in enumerate(curves):
        epochs = np.arange(1, len(row["history_nll"]) + 1)
        label = f"{row['setting']}, {row['epochs']} ep (seed {row['seed']})"
        axes[0].plot(epochs, row["history_nll"], "-", color=f"C{index}", label=f"NLL, {label}")
        axes[0].plot(epochs, row["history_kl_term"], "--", color=f"C{index}", label="KL term")
        names = [name for name, _, _ in row["layer_scales"]]
        values = [scale / start for _, scale, start in row["layer_scales"]]
        axes[1].plot(range(len(names)), values, "-o", ms=3, color=f"C{index}", label=label)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("per-example training loss")
    axes[0].set_title("Default Bayesian U-Net: NLL (solid), KL term (dashed)")
    axes[0].legend(fontsize=6, loc="upper right", ncol=2)
    if curves:
        axes[1].set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    axes[1].set_ylabel("median posterior scale / its start")
    axes[1].set_title("Posterior width by layer (kernels), end of training")
    axes[1].legend(fontsize=7)

    twins = {
        (r["setting"], r["epochs"], r["seed"]): r["nll"] for r in rows if r["variant"] == "twin"
    }
    ratios = defaultdict(list)
    for r in rows:
        key = (r["setting"], r["epochs"], r["seed"])
        if r["variant"] != "twin" and key in twins:
            group = f"{r['setting']}\n{r['epochs']} ep"
            ratios[(r["variant"], group)].append(r["nll"] / twins[key])
    variants = sorted({v for v, _ in ratios}, key=lambda v: (v != "bayes", v))
    groups = sorted({g for _, g in ratios})
    width = 0.8 / max(len(variants), 1)
    top = 2.0
    for i, variant in enumerate(variants):
        labelled = False
        for j, group in enumerate(groups):
            values = ratios.get((variant, group))
            if not values:
                continue
            x = j + (i - (len(variants) - 1) / 2) * width
            mean = float(np.mean(values))
            label = None if labelled else variant
            axes[2].bar(x, min(mean, top), width, color=f"C{i}", label=label)
            labelled = True
            if mean > top:
                axes[2].text(x, top, f"{mean:.1f}", ha="center", va="bottom", fontsize=6)
            axes[2].plot([x] * len(values), np.minimum(values, top), "k.", ms=3)
    axes[2].axhline(1.0, color="k", lw=0.8)
    axes[2].set_ylim(0, top * 1.08)
    axes[2].set_xticks(range(len(groups)), groups, fontsize=8)
    axes[2].set_ylabel("held-out NLL / twin's (below 1: better)")
    axes[2].set_title("Against the deterministic twin (dots: seeds)")
    axes[2].legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(out, dpi=110)


if __name__ == "__main__":
    plot(load(sys.argv[2:]), sys.argv[1])
