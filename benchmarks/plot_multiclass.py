"""Per-class recall of the 32-class demo: the old defaults against the recipe.

Reads the JSON written by ``bench_multiclass.py --json`` and draws, for each
foreground class present, its held-out recall under every variant given
(default: the old defaults and the recipe), one bar group per class.

Run: python benchmarks/plot_multiclass.py benchmarks/results_multiclass_2026-12-01.json
      docs/figures/multiclass_recall.png [--variants "old defaults" recipe]
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("figure")
    parser.add_argument("--variants", nargs="+", default=["old defaults", "recipe"])
    args = parser.parse_args()
    results = json.loads(open(args.results).read())["results"]
    fig, ax = plt.subplots(figsize=(11, 3.6))
    width = 0.8 / len(args.variants)
    for k, name in enumerate(args.variants):
        run = results[name][0]
        recalls = {int(c): r for c, r in run["per_class_recall"].items()}
        classes = sorted(recalls)
        x = np.arange(len(classes)) + (k - (len(args.variants) - 1) / 2) * width
        label = f"{name}: mean {run['recall']:.2f}, {len(run['zero_recall'])} at 0"
        ax.bar(x, [recalls[c] for c in classes], width, label=label)
    ax.set_xticks(np.arange(len(classes)), [str(c) for c in classes], fontsize=8)
    ax.set_xlabel("foreground class")
    ax.set_ylabel("held-out recall")
    ax.set_ylim(0, 1)
    ax.set_title("32 classes, 99% background: per-class recall on 200 held-out images")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.figure, dpi=110)


if __name__ == "__main__":
    main()
