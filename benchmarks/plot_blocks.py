"""Figure for docs/uncertainty.md ("Which layers are Bayesian"): Bayesian
U-Net variants against their deterministic twin, per setting.

Inputs: ``explore_regimes.py`` JSON lines (variant ``twin`` and the variants
to plot) and ``bench_multiclass_folders.py`` JSON lines (the 32-class task
through ``bayesseg train``: rows with ``"twin": true`` are the twin; the
others are named ``BLOCKS+initS`` from their recorded ``bayesian_blocks``
and ``posterior_scale_init``, 0.01 where a row predates that record). Two
panels: the held-out Dice minus the twin's (for 32 classes, the mean
foreground recall minus the twin's) and the held-out NLL over the twin's;
bars are means over the paired seeds, dots single seeds.

``--variants`` names the variants and their legend labels, ``name=label``
separated by ``;`` (default: the default U-Net, whose scales start at
0.001 and move at a multiplier of 10, the same at 20, and at 20 started
at 0.01: the two defaults before; the labels describe binary U-Nets).
``--seeds`` (default 0 1 2) keeps the paired seeds the docs report.

Run: python benchmarks/plot_blocks.py OUT.png --regimes R.jsonl [...]
      [--multiclass M.jsonl ...] [--variants "name=label;..."] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from plot_regimes import load  # noqa: E402  (JSON lines, from benchmarks/)

VARIANTS = {
    "mult10": "default: bottleneck + head, scales start at 0.001, multiplier 10",
    "bottleneck+init0.001": "the same at multiplier 20 (the default before)",
    "bottleneck+init0.01": "multiplier 20, scales start at 0.01 (the default before that)",
}


def paired(regimes, multiclass, variants=VARIANTS, seeds=(0, 1, 2)) -> dict:
    """(group, variant) -> [(quality difference, NLL ratio)] per seed in ``seeds``."""
    table = {}
    for r in regimes:  # the last row of a (setting, epochs, seed, variant) wins
        table[(f"{r['setting']}\n{r['epochs']} ep", r["seed"], r["variant"])] = (
            r["dice"],
            r["nll"],
        )
    for r in multiclass:
        if r.get("train_images") != 2560 or r["zscore"] != "dataset":
            continue
        recipe = r["recipe"]
        start = recipe.get("posterior_scale_init", 0.01)
        variant = f"{recipe.get('bayesian_blocks', 'all')}+init{start:g}"
        variant = "twin" if r.get("twin") else variant
        table[("32 classes\n(recall)", r["seed"], variant)] = (r["recall"], r["nll"])
    out = defaultdict(list)
    for (group, seed, variant), (quality, nll) in table.items():
        twin = table.get((group, seed, "twin"))
        if variant in variants and twin and seed in seeds:
            out[(group, variant)].append((quality - twin[0], nll / twin[1]))
    return out


def plot(out: str, regimes, multiclass, variants=VARIANTS, seeds=(0, 1, 2)) -> None:
    pairs = paired(regimes, multiclass, variants, seeds)
    order = ("tour", "bench", "membranes", "nuclei", "32 classes")
    groups = sorted(
        {g for g, _ in pairs},
        key=lambda g: (next(i for i, o in enumerate(order) if g.startswith(o)), len(g), g),
    )
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.9))
    width = 0.8 / len(variants)
    for i, (variant, label) in enumerate(variants.items()):
        for panel, axis in enumerate(axes):
            xs, means = [], []
            for j, group in enumerate(groups):
                values = [p[panel] for p in pairs.get((group, variant), [])]
                if not values:
                    continue
                x = j + (i - (len(variants) - 1) / 2) * width
                xs.append(x)
                means.append(float(np.mean(values)))
                axis.plot([x] * len(values), values, "k.", ms=4)
                text = f"{means[-1]:.3f}" if panel == 0 else f"{means[-1]:.2f}"
                axis.annotate(
                    text, (x, means[-1]), ha="center", va="bottom", fontsize=6, color=f"C{i}"
                )
            axis.bar(xs, np.array(means) - panel, width, bottom=panel, color=f"C{i}", label=label)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].axhline(-0.01, color="gray", lw=0.8, ls="--")
    axes[0].set_ylabel("Dice (32 classes: recall) minus the twin's")
    axes[0].set_title("Quality against the twin (dashed: the -0.01 target)")
    axes[1].axhline(1.0, color="k", lw=0.8)
    axes[1].axhline(1.02, color="gray", lw=0.8, ls="--")
    axes[1].set_ylabel("held-out NLL / the twin's (below 1: better)")
    axes[1].set_title("NLL against the twin (dashed: the 1.02 target)")
    for axis in axes:
        axis.set_xticks(range(len(groups)), groups, fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(variants), fontsize=8)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(out, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--regimes", nargs="+", required=True)
    parser.add_argument("--multiclass", nargs="*", default=[])
    parser.add_argument("--variants", default=None, help='"name=label;name=label"')
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    variants = VARIANTS
    if args.variants:
        variants = dict(item.split("=", 1) for item in args.variants.split(";"))
    plot(args.out, load(args.regimes), load(args.multiclass), variants, tuple(args.seeds))


if __name__ == "__main__":
    main()
