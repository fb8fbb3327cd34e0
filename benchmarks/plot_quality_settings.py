"""Figure for RESULTS.md: the default Bayesian U-Net, its twin, MC dropout and a
deep ensemble per setting, from ``bench_quality.py --json`` files.

Three panels, one group of bars per setting (means over the seeds that ran
the variant, pooled as ``summarize_quality.py`` pools them): the held-out
NLL over the twin's, the AURC of 1 - per-image Dice on clean plus shifted
images (lower is better), and the shift AUROC at middle noise (0.5 is
chance).

Run: python benchmarks/plot_quality_settings.py OUT.png RUN.json [RUN.json ...]
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from summarize_quality import NAMES, pool  # noqa: E402  (benchmarks/)

SHOWN = ("bayesian", "deterministic", "mc_dropout", "ensemble")
TOP = 1.15  # the NLL panel's upper limit
PANELS = (
    ("held-out NLL / the twin's", lambda m: m["predictive_nll"], True),
    ("AURC, clean + shifted (lower is better)", lambda m: m["aurc_pooled_mean_total"], False),
    ("shift AUROC, middle noise", lambda m: m["noise2_auroc_mean_total"], False),
)


def plot(out: str, paths) -> None:
    settings = pool(paths)
    names = sorted(settings, key=lambda s: ("nuclei" in s, "bench" in s, s))
    figure, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.4))
    width = 0.8 / len(SHOWN)
    for axis, (title, value, relative) in zip(axes, PANELS, strict=True):
        for i, variant in enumerate(SHOWN):
            xs, heights = [], []
            for j, setting in enumerate(names):
                runs = [s for s in settings[setting].values() if variant in s]
                if not runs:
                    continue
                mean = float(np.mean([value(s[variant]) for s in runs]))
                if relative:
                    twins = [value(s["deterministic"]) for s in runs if "deterministic" in s]
                    mean /= float(np.mean(twins))
                xs.append(j + (i - (len(SHOWN) - 1) / 2) * width)
                heights.append(mean)
            axis.bar(xs, heights, width, color=f"C{i}", label=NAMES[variant])
            if relative:  # bars cut by the axis carry their value
                for x, height in zip(xs, heights, strict=True):
                    if height > TOP:
                        axis.text(x, TOP, f"{height:.2f}", ha="center", va="top", fontsize=7)
        axis.set_xticks(range(len(names)), [n.replace(", ", "\n") for n in names], fontsize=8)
        axis.set_title(title)
    axes[0].axhline(1.0, color="k", lw=0.8)
    axes[0].set_ylim(0.6, TOP)
    axes[2].axhline(0.5, color="k", lw=0.8, ls="--")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out, dpi=110)


if __name__ == "__main__":
    plot(sys.argv[1], sys.argv[2:])
