"""Your own series, end to end: ``bayesseg train --task series`` and ``predict --masks``.

Writes what a sensor engineer would have: 120 training series of
``bs.data.synthetic_sensor_series`` (3000-5000 steps, 2 features, spikes,
level shifts and missing beats on about 0.1-0.3% of the steps), 100 as
``.npy`` and 20 as ``.csv`` with a header, per-step labels under the same
stems in another folder; and 40 held-out series of another seed. Then runs
the two documented commands at their defaults, as subprocesses, and reads
what predict wrote (metrics.json), next to the rolling z-score detector
whose threshold is chosen on the same validation series the tagger used.

Targets (issue: your own data end to end): training <= 10 minutes on 2
cores; held-out average precision >= 0.8, event F1 >= 0.75, the saved
threshold flagging <= 5% of the steps; the rolling z-score's average
precision <= 0.35.

``--twin`` trains and scores the deterministic twin instead
(``--bayesian-blocks none``: ``bs.models.lstm_tagger`` with the weighted
likelihood alone, the same windows, threshold rule and series), written to
``results_own_series_<date>_seed<s>_twin.json``.

Run: python benchmarks/bench_own_series.py [--seed 0] [--work /tmp/own-series] [--twin]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
NUM_TRAIN, NUM_CSV, NUM_TEST = 120, 20, 40


def write_folder(x, y, series_dir: Path, labels_dir: Path, num_csv: int) -> None:
    """Series ``i < num_csv`` as CSV (header f0,f1,...), the rest as .npy; labels as .npy."""
    import numpy as np

    series_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        stem = f"series_{i:03d}"
        if i < num_csv:
            header = ",".join(f"f{k}" for k in range(xi.shape[1]))
            np.savetxt(
                series_dir / f"{stem}.csv",
                xi,
                delimiter=",",
                header=header,
                comments="",
                fmt="%.6g",
            )
        else:
            np.save(series_dir / f"{stem}.npy", xi)
        np.save(labels_dir / f"{stem}.npy", yi.astype(np.uint8))


def _run(command: list[str]) -> float:
    print("$ " + " ".join(command), flush=True)
    t0 = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/own-series")
    parser.add_argument("--twin", action="store_true", help="the deterministic twin")
    args = parser.parse_args()

    import numpy as np

    import bayesseg as bs

    work = Path(args.work)
    x, y = bs.data.synthetic_sensor_series(NUM_TRAIN, seed=args.seed)
    xt, yt = bs.data.synthetic_sensor_series(NUM_TEST, seed=args.seed + 10_000)
    write_folder(x, y, work / "series", work / "labels", NUM_CSV)
    write_folder(xt, yt, work / "test", work / "test_labels", 0)
    cli = [sys.executable, "-m", "bayesseg.cli"]
    train_seconds = _run(
        cli
        + [
            "train",
            "--task",
            "series",
            "--images",
            str(work / "series"),
            "--masks",
            str(work / "labels"),
            "--out",
            str(work / "run"),
            "--seed",
            str(args.seed),
            "--overwrite",
            *(["--bayesian-blocks", "none"] if args.twin else []),
        ]
    )
    predict_seconds = _run(
        cli
        + [
            "predict",
            "--model",
            str(work / "run" / "model.keras"),
            "--images",
            str(work / "test"),
            "--masks",
            str(work / "test_labels"),
            "--out",
            str(work / "pred"),
            "--quiet",
        ]
    )
    metrics = json.loads((work / "pred" / "metrics.json").read_text())["overall"]
    model = json.loads((work / "run" / "model.json").read_text())
    # The rolling z-score, its threshold chosen on the validation series the tagger used.
    names = model["validation_series_names"]
    index = [int(n.split("_")[1].split(".")[0]) for n in names]
    xv, yv = [x[i] for i in index], [y[i] for i in index]
    chosen = bs.metrics.choose_threshold(yv, bs.baselines.rolling_zscore(xv))
    zt = bs.baselines.rolling_zscore(xt)
    z_events = bs.metrics.event_f1(yt, zt, threshold=chosen["threshold"])
    result = {
        "date": date.today().isoformat(),
        "command": f"python benchmarks/bench_own_series.py --seed {args.seed}"
        + (" --twin" if args.twin else ""),
        "data": {
            "train_series": NUM_TRAIN,
            "csv_series": NUM_CSV,
            "test_series": NUM_TEST,
            "train_anomalous_fraction": float(np.concatenate(y).mean()),
            "test_anomalous_fraction": float(np.concatenate(yt).mean()),
            "test_events": metrics["events"]["true_events"],
        },
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "tagger": {
            "average_precision": metrics["average_precision"],
            "event_f1": metrics["events"]["f1"],
            "event_recall": metrics["events"]["recall"],
            "event_precision": metrics["events"]["precision"],
            "flagged_fraction": metrics["events"]["flagged_fraction"],
            "threshold": model["decision"]["threshold"],
            "chance_flag_all_f1": metrics["chance"]["flag_all"]["f1"],
            "chance_random_f1": metrics["chance"]["random"]["f1"],
        },
        "rolling_zscore": {
            "average_precision": bs.metrics.average_precision(yt, zt),
            "event_f1": z_events["f1"],
            "flagged_fraction": z_events["flagged_fraction"],
        },
    }
    print(json.dumps(result, indent=2))
    result["variant"] = "deterministic twin" if args.twin else "Bayesian tagger"
    suffix = "_twin" if args.twin else ""
    target = HERE / f"results_own_series_{date.today().isoformat()}_seed{args.seed}{suffix}.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
