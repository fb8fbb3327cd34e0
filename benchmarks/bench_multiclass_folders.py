"""The 32-class recipe through ``bayesseg train`` on folders, as a user meets it.

Writes the data of ``bayesseg demo --task multiclass --num-classes 32
--background-fraction 0.99 --seed S`` (the demo's 2560 training and 200
held-out 64x64 images, its own generator and seeds, ``benchmarks/_demo.py``) as
``.npy`` folders of images and masks, then runs the two documented
commands as subprocesses: ``bayesseg train`` with the demo's network and
budget (8 base filters, depth 3, batch 8, 10 epochs) and nothing else, so
that the class-dependent defaults (peak 1e-2 warmed up and decayed,
inverse-sqrt weights, the scale multiplier) come from the recipe, and
``bayesseg predict --masks`` on the held-out folder, whose ``metrics.json``
holds the per-class scores.

The images of this task code their classes by absolute intensity, which
``train``'s default per-image z-score moves with each image's foreground
share; ``--zscore`` chooses it (``image``, ``dataset`` or both, one run
each).

``--twin`` trains the deterministic twin instead (``--bayesian-blocks none``:
``bs.models.unet`` with the weighted likelihood alone, the same data, rate,
schedule, weights and epochs). ``--bayesian-blocks`` trains another
choice of Bayesian layers (``bayesseg train --bayesian-blocks``; default:
the recipe's).

Targets (the demo's, issue "32 classes on every seed"): mean foreground
recall >= 0.5, Dice >= 0.3, no class present at recall 0.

Run: python benchmarks/bench_multiclass_folders.py [--seed 0] [--zscore dataset image]
      [--work /tmp/multiclass-folders] [--json out.json]
      [--twin | --bayesian-blocks B] [--num-images 2560 --num-test-images 200 --epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench_own_series import _run  # noqa: E402  (one command, echoed and timed)

NUM_CLASSES, BACKGROUND = 32, 0.99
# The demo's network and budget (bayesseg demo's defaults; train's are larger).
NETWORK = ["--base-filters", "8", "--depth", "3", "--batch-size", "8"]
# The class-dependent settings train resolved (recorded from model.json).
RECIPE = (
    "estimator",
    "learning_rate",
    "lr_schedule",
    "class_weights",
    "bayesian_blocks",
    "posterior_scale_init",
)


def write_folders(work: Path, seed: int, num_train: int, num_test: int) -> None:
    """The demo's training and held-out images and masks as ``.npy`` files."""
    import numpy as np
    from _demo import DEMO_OPTIONS, DEMO_SERIES

    import bayesseg as bs

    shape = (DEMO_OPTIONS["size"],) * 2
    test_seed = seed + DEMO_SERIES["test_seed_offset"]
    sets = {"train": (num_train, seed), "test": (num_test, test_seed)}
    for name, (count, data_seed) in sets.items():
        x, y = bs.data.synthetic_multiclass_masks(
            count, shape, num_classes=NUM_CLASSES, background_fraction=BACKGROUND, seed=data_seed
        )
        for folder in ("images", "masks"):
            path = work / f"{name}_{folder}"
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
        for i in range(count):
            np.save(work / f"{name}_images" / f"img{i:04d}.npy", x[i])
            np.save(work / f"{name}_masks" / f"img{i:04d}.npy", y[i].astype(np.uint8))


def run(work: Path, seed: int, zscore: str, epochs: int, blocks: str | None = None) -> dict:
    """train and predict --masks with one --zscore and ``--bayesian-blocks
    blocks`` (None: the recipe's; "none": the deterministic twin); the
    held-out foreground scores."""
    cli = [sys.executable, "-m", "bayesseg.cli"]
    name = f"{zscore}_{blocks}" if blocks else zscore
    out, pred = work / f"run_{name}", work / f"pred_{name}"
    train_seconds = _run(
        [*cli, "train", "--images", str(work / "train_images"), "--masks",
         str(work / "train_masks"), "--num-classes", str(NUM_CLASSES), *NETWORK,
         "--epochs", str(epochs),
         "--zscore", zscore, "--seed", str(seed), "--out", str(out), "--overwrite",
         "--quiet", *(["--bayesian-blocks", blocks] if blocks else [])]
    )  # fmt: skip
    predict_seconds = _run(
        [*cli, "predict", "--model", str(out / "model.keras"), "--images",
         str(work / "test_images"), "--masks", str(work / "test_masks"), "--out", str(pred),
         "--quiet"]
    )  # fmt: skip
    metrics = json.loads((pred / "metrics.json").read_text())["overall"]
    config = json.loads((out / "model.json").read_text())["config"]
    shutil.rmtree(pred)  # 200 x 32 probability maps: not kept
    return {
        "zscore": zscore,
        "twin": blocks == "none",
        "seed": seed,
        **metrics["foreground_classes"],
        "nll": metrics["predictive_nll"],
        "recipe": {k: config[k] for k in RECIPE},
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zscore", nargs="+", choices=["dataset", "image"], default=["dataset"])
    parser.add_argument("--work", default="/tmp/multiclass-folders")
    parser.add_argument("--json", default=None, help="append each run's results here")
    parser.add_argument(
        "--twin", action="store_true", help="the deterministic twin (--bayesian-blocks none)"
    )
    parser.add_argument(
        "--bayesian-blocks",
        choices=["all", "decoder", "bottleneck", "last"],
        default=None,
        help="train's --bayesian-blocks (default: the recipe's)",
    )
    # The demo's sizes by default (smaller ones try the script quickly).
    from _demo import DEMO_UNET

    parser.add_argument("--num-images", type=int, default=DEMO_UNET["multiclass"]["num_images"])
    parser.add_argument(
        "--num-test-images", type=int, default=DEMO_UNET["multiclass"]["num_test_images"]
    )
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    work = Path(args.work)
    write_folders(work, args.seed, args.num_images, args.num_test_images)
    blocks = "none" if args.twin else args.bayesian_blocks
    for zscore in args.zscore:
        row = run(work, args.seed, zscore, args.epochs, blocks)
        row = {"train_images": args.num_images, **row}
        print(
            f"seed {args.seed}  {row['recipe']['bayesian_blocks']}  --zscore {zscore:<8} "
            f"recall {row['recall']:.3f}  "
            f"Dice {row['dice']:.3f}  at 0: {len(row['zero_recall'])}  "
            f"lowest {row['lowest_recall']}  train {row['train_seconds']:.0f} s  "
            f"predict {row['predict_seconds']:.0f} s",
            flush=True,
        )
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
