"""Speed of ``bs.metrics.choose_threshold`` on long series with long events.

The case of the public benchmarks that made the old rule slow: 300 000
steps in one list of series of different lengths, 110 events of 29 to 1500
steps (about 25% of the steps anomalous), scores with ties. Every distinct
score is a candidate (about 300 000 here). Baselines measured in the same
process: one ``event_f1`` evaluation at a single threshold (what the old
rule paid per candidate, and it tried one per positive step) and a plain
``np.sort`` of the scores (the floor of any exact rule).

Run: python benchmarks/bench_choose_threshold.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def case(seed: int = 0):
    """Labels and scores: 12 series of different lengths, 300 000 steps, 110 events."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.multinomial(300_000 - 12 * 1000, np.ones(12) / 12) + 1000
    truth = [np.zeros(n, bool) for n in lengths]
    placed = 0
    while placed < 110:
        row = truth[rng.integers(12)]
        size = int(rng.integers(29, 1501))
        start = int(rng.integers(1, row.size - size - 1))
        if not row[start - 1 : start + size + 1].any():  # keep events apart
            row[start : start + size] = True
            placed += 1
    scores = [np.round(rng.random(t.size) + 0.25 * t, 5) for t in truth]
    return truth, scores


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import numpy as np

    import bayesseg as bs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    truth, scores = case()
    flat = np.concatenate(scores)
    result = bs.metrics.choose_threshold(truth, scores)
    timings = {
        "choose_threshold": _median_seconds(
            lambda: bs.metrics.choose_threshold(truth, scores), args.repeats
        ),
        "event_f1 at one threshold": _median_seconds(
            lambda: bs.metrics.event_f1(truth, scores, threshold=0.5), args.repeats
        ),
        "np.sort of the scores": _median_seconds(lambda: np.sort(flat), args.repeats),
    }
    events = bs.metrics.event_f1(truth, scores, threshold=result["threshold"])
    print(
        f"{flat.size} steps in {len(scores)} series, {events['true_events']} events, "
        f"{np.unique(flat).size} distinct scores, {result['candidates']} admissible"
    )
    print(
        f"chosen threshold {result['threshold']:.4f}: event F1 {result['f1']:.3f}, "
        f"flagged {100 * result['flagged_fraction']:.2f}% of the steps"
    )
    base = timings["event_f1 at one threshold"]
    for name, seconds in timings.items():
        print(f"  {name:28s} {1000 * seconds:9.1f} ms   {seconds / base:6.2f}x one event_f1")


if __name__ == "__main__":
    main()
