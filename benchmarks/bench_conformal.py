"""Conformal recall guarantees on the lesion demo and the 4096-step task: does the
realised recall hold, and what does it cost in precision, for the Bayesian
model, its twin and a deep ensemble?

Per seed, the lesion demo's recipe (``bs.recipes.train_segmentation``: 160
synthetic 64x64 images, 12 epochs, batch 8, 8 base filters, depth 3,
inverse-sqrt class weights, the library's other defaults) trains the
Bayesian U-Net (``bayesian_blocks`` at its default), its deterministic twin
(``"none"``) and, with ``--variants ...,ensemble``, a deep ensemble of the
twin and four more twins seeded ``1000 * seed + k``. A pool of ``--pool``
held-out images (the demo's held-out generator) is predicted once per model
(8 draws for the Bayesian U-Net, the class-weight correction applied).
Then, ``--splits`` times, the pool is shuffled into ``--calibration``
calibration images and the rest as test images;
``bs.calibration.ConformalRiskControl(alpha, risk="fnr")`` is fitted on the
calibration images and applied to the test images. Per model and ``alpha``:
the mean realised per-image FNR over test images with a lesion (the
guarantee: its expectation is at most ``alpha``), its spread, the share of
splits above ``alpha``, the realised recall (1 - FNR) and the pooled pixel
precision of the flags, the flagged share of pixels, and, for reference,
the same scores at the fixed threshold 0.5 (no guarantee).

``--task series``: the anomaly demo's recipe (``bs.recipes.train_series``
with ``SeriesConfig(seed=S)``: 640 series of 4096 steps of
``synthetic_anomaly_series``, the demo's ``kind="mixed"`` (``--anomaly-kind``),
512-step windows, 8 epochs; the twin with
``bayesian=False``; 16 draws for the Bayesian tagger), a pool of held-out
series, and ``risk="missed_events"``: the loss of a series is the share of
its events no flag finds (within 2 steps), series without an event left
out; precision is ``bs.metrics.event_f1``'s, per flagged step.

Run: python benchmarks/bench_conformal.py [--task lesion|series] [--seeds 0 1 2]
      [--alphas 0.05 0.1 0.2] [--variants bayesian,deterministic,ensemble]
      [--pool 400 --calibration 100 (series: 200) --splits 200] [--json out.json]
      [--figure docs/figures/conformal_fnr.png]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import bayesseg as bs  # noqa: E402
from bayesseg.recipes import SegmentationConfig, train_segmentation  # noqa: E402

VARIANTS = ("bayesian", "deterministic", "ensemble")
DEMO = {"epochs": 12, "batch_size": 8, "base_filters": 8, "depth": 3}


def _probabilities(runs, x) -> np.ndarray:
    """The mean foreground probability of ``runs`` (one run, or an ensemble's members)."""
    maps = []
    for run in runs:
        samples = 1 if run.config.bayesian_blocks == "none" else 8
        pred = run.predict(x, num_samples=samples, correct_for_class_weights=True)
        maps.append(np.asarray(pred.mean)[..., 0])
    return np.mean(maps, axis=0)


def train_series_models(seed: int, variants, num_train: int, pool: int, kind: str = "mixed"):
    """Every variant's held-out step probabilities on the pool, the pool's labels, seconds."""
    from bayesseg.recipes import SeriesConfig, train_series

    data = {"length": 4096, "kind": kind}
    x, y = bs.data.synthetic_anomaly_series(num_train, seed=seed, **data)
    xp, yp = bs.data.synthetic_anomaly_series(pool, seed=seed + 10_000, **data)
    probs, seconds, twin = {}, {}, None
    for variant in variants:
        start = time.perf_counter()
        if variant == "bayesian":
            runs = [train_series(list(x), list(y), SeriesConfig(seed=seed))]
        else:
            if twin is None:
                twin = train_series(list(x), list(y), SeriesConfig(bayesian=False, seed=seed))
            runs = [twin]
            if variant == "ensemble":
                runs += [
                    train_series(
                        list(x), list(y), SeriesConfig(bayesian=False, seed=1000 * seed + k)
                    )
                    for k in range(1, 5)
                ]
        maps = []
        for run in runs:
            draws = run.config.num_samples if run.config.bayesian else 1
            maps.append(np.stack([p.prob for p in run.predict(list(xp), num_samples=draws)]))
        probs[variant] = np.mean(maps, axis=0)
        seconds[variant] = time.perf_counter() - start
    return probs, np.asarray(yp).astype(bool), seconds


def train_models(seed: int, variants, num_train: int, pool: int) -> tuple[dict, np.ndarray]:
    """Every variant's held-out probability maps on the pool, and the pool's masks."""
    x, y = bs.data.synthetic_lesions(num_train, shape=(64, 64), seed=seed)
    xp, yp = bs.data.synthetic_lesions(pool, shape=(64, 64), seed=seed + 10_000)
    base = SegmentationConfig(class_weights="inverse_sqrt", seed=seed, **DEMO)
    maps, seconds = {}, {}
    twin = None
    for variant in variants:
        start = time.perf_counter()
        if variant == "bayesian":
            runs = [train_segmentation(x, y[..., 0], base)]
        else:
            if twin is None:
                config = SegmentationConfig(**{**base.to_dict(), "bayesian_blocks": "none"})
                twin = train_segmentation(x, y[..., 0], config)
            runs = [twin]
            if variant == "ensemble":
                for k in range(1, 5):
                    config = SegmentationConfig(
                        **{**base.to_dict(), "bayesian_blocks": "none", "seed": 1000 * seed + k}
                    )
                    runs.append(train_segmentation(x, y[..., 0], config))
        maps[variant] = _probabilities(runs, xp)
        seconds[variant] = time.perf_counter() - start
    return maps, yp[..., 0].astype(bool), seconds


def _flag_scores(flags: np.ndarray, masks: np.ndarray) -> dict:
    """Mean per-image recall over images with a lesion, pooled pixel precision, flagged share."""
    positives = masks.reshape(len(masks), -1).sum(axis=1)
    hits = (flags & masks).reshape(len(masks), -1).sum(axis=1)
    has = positives > 0
    flagged = flags.sum()
    return {
        "recall": float(np.mean(hits[has] / positives[has])),
        "precision": float(hits.sum() / flagged) if flagged else 0.0,
        "flagged": float(flags.mean()),
    }


def _event_scores(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Mean per-series recall of events (series with one), per-step precision, flagged share."""
    found = bs.calibration.ConformalRiskControl.from_dict(
        {"alpha": 0.5, "risk": "missed_events", "threshold": threshold}
    )
    events = bs.metrics.event_f1(labels, probs, threshold=threshold)
    return {
        "recall": 1 - found.risk(probs, labels),
        "precision": events["precision"],
        "flagged": events["flagged_fraction"],
    }


def evaluate(probs, masks, alphas, calibration: int, splits: int, seed: int, risk="fnr") -> dict:
    """Realised FNR (or missed-event share), recall, precision and flags over random
    calibration/test splits."""
    rng = np.random.default_rng(seed)
    out = {}
    for alpha in alphas:
        rows = []
        for _ in range(splits):
            order = rng.permutation(len(probs))
            cal, test = order[:calibration], order[calibration:]
            crc = bs.calibration.ConformalRiskControl(alpha, risk=risk).fit(probs[cal], masks[cal])
            if risk == "fnr":
                scores = _flag_scores(crc.predict(probs[test]), masks[test])
            else:
                scores = _event_scores(probs[test], masks[test], crc.threshold_)
            rows.append({"fnr": 1 - scores["recall"], "threshold": crc.threshold_, **scores})
        fnr = np.array([r["fnr"] for r in rows])
        out[str(alpha)] = {
            "mean_fnr": float(fnr.mean()),
            "std_fnr": float(fnr.std()),
            "above_alpha": float(np.mean(fnr > alpha)),
            **{
                f"mean_{key}": float(np.mean([r[key] for r in rows]))
                for key in ("recall", "precision", "flagged", "threshold")
            },
            "fnr_per_split": fnr.tolist(),
        }
    if risk == "fnr":
        out["threshold_0.5"] = _flag_scores(probs >= 0.5, masks)
    else:
        out["threshold_0.5"] = _event_scores(probs, masks, 0.5)
    return out


def plot(path: str, results: list[dict], alphas, task: str = "lesion") -> None:
    """Realised FNR over the splits, per alpha and model (seeds pooled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v in VARIANTS if v in results[0]["models"]]
    figure, axis = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        data = [
            np.concatenate([r["models"][variant][str(a)]["fnr_per_split"] for r in results])
            for a in alphas
        ]
        positions = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(alphas))]
        parts = axis.boxplot(
            data, positions=positions, widths=width * 0.9, patch_artist=True, showfliers=False
        )
        for box in parts["boxes"]:
            box.set_facecolor(f"C{i}")
        axis.plot(
            positions, [np.mean(d) for d in data], "k^", ms=5, label="mean" if i == 0 else None
        )
        axis.plot([], [], "s", color=f"C{i}", label=variant)
    for j, alpha in enumerate(alphas):
        axis.hlines(alpha, j - 0.45, j + 0.45, colors="red", linestyles="--")
    axis.set_xticks(range(len(alphas)), [f"alpha = {a:g}" for a in alphas])
    axis.set_ylabel(
        "realised per-image FNR on the test images"
        if task == "lesion"
        else "realised share of events missed per series"
    )
    seeds = len(results)
    splits = len(results[0]["models"][variants[0]][str(alphas[0])]["fnr_per_split"])
    axis.set_title(
        f"Conformal risk control, {task} ({seeds} seeds x {splits} splits; red: alpha)",
        fontsize=10,
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("lesion", "series"), default="lesion")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--variants", default="bayesian,deterministic,ensemble")
    parser.add_argument("--train", type=int, default=None, help="160; series: 640")
    parser.add_argument("--pool", type=int, default=400)
    parser.add_argument("--anomaly-kind", default="mixed", help="series: point, contextual, mixed")
    parser.add_argument("--calibration", type=int, default=None, help="100; series: 200")
    parser.add_argument("--splits", type=int, default=200)
    parser.add_argument("--json", default=None)
    parser.add_argument("--figure", default=None)
    args = parser.parse_args(argv)
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    series = args.task == "series"
    if args.train is None:
        args.train = 640 if series else 160
    if args.calibration is None:
        args.calibration = 200 if series else 100
    trainer = train_series_models if series else train_models
    risk = "missed_events" if series else "fnr"
    results = []
    for seed in args.seeds:
        extra = {"kind": args.anomaly_kind} if series else {}
        maps, masks, seconds = trainer(seed, variants, args.train, args.pool, **extra)
        models = {
            v: evaluate(maps[v], masks, args.alphas, args.calibration, args.splits, seed, risk)
            for v in variants
        }
        results.append({"seed": seed, "models": models, "train_seconds": seconds})
        for v in variants:
            cells = "  ".join(
                f"a={a:g}: FNR {models[v][str(a)]['mean_fnr']:.3f} "
                f"(>a {models[v][str(a)]['above_alpha']:.2f}) "
                f"prec {models[v][str(a)]['mean_precision']:.3f}"
                for a in args.alphas
            )
            fixed = models[v]["threshold_0.5"]
            print(
                f"seed {seed} {v:<13} {cells}  | at 0.5: recall {fixed['recall']:.3f} "
                f"prec {fixed['precision']:.3f}",
                flush=True,
            )
        if args.json:
            with open(args.json, "w") as handle:
                json.dump({"config": vars(args), "runs": results}, handle)
    if args.figure:
        plot(args.figure, results, args.alphas, args.task)
    return results


if __name__ == "__main__":
    main()
