"""Interleaved timing shared by the step benchmarks."""

from __future__ import annotations

import statistics
import time


def interleaved_medians(steps: dict, inputs: tuple, rounds: int, repeats: int) -> dict:
    """Seconds per call of each step, timed round-robin; returns name -> median."""
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(repeats):
                out = step(*inputs)
            float(out)  # wait for the last step to finish
            times[name].append((time.perf_counter() - start) / repeats)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(medians: dict, baseline: str, width: int = 15) -> dict:
    """Print medians (ms) and ratios to ``baseline``; return them as a dict."""
    base = medians[baseline]
    print(f"{'variant':<{width}}{'median ms':>11}{'ratio':>8}")
    results = {}
    for name, median in medians.items():
        results[name] = {"median_ms": 1000 * median, "ratio": median / base}
        print(f"{name:<{width}}{1000 * median:>11.1f}{median / base:>8.2f}x")
    return results
