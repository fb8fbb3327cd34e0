"""Shared by the step benchmarks: the traced train step, interleaved timing, the report."""

from __future__ import annotations

import statistics
import time

import tensorflow as tf


def sigmoid_train_step(model, optimizer, kl_fn, num_examples: int):
    """A traced train step: mean sigmoid cross-entropy + ``kl_fn() / num_examples``."""
    variables = model.trainable_variables

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))
            if kl_fn is not None:
                loss += kl_fn() / num_examples
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    return step


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
