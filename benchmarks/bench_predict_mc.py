"""Monte Carlo prediction time: predict_mc versus T deterministic forward passes.

U-Net: depth 4, 16 base filters, 128x128x1 inputs, batch 8, one sigmoid
logit, T = 16 draws. Variants, measured interleaved in one process
(round-robin, so machine noise hits them alike), reported as medians and
ratios to the deterministic baseline:

* keras_T_forwards: the deterministic Keras U-Net (Conv2D /
  Conv2DTranspose), T forward passes (sigmoid, summed) in one tf.function:
  the floor for any T-sample Monte Carlo prediction.
* predict_mc:       bayesseg.uncertainty.predict_mc on the same U-Net built
  from bayesseg Conv2DFlipout / Conv2DTransposeFlipout (shared sampling,
  T draws in one tf.function, entropies included).
* python_loop:      ``for t in range(T): model(x)`` on the Bayesian U-Net
  with its default sampling (per-example Flipout, two convolutions per
  layer), eager calls, no entropies.

And the library's own models (``bs.models``, same depth and filters):

* twin_T_forwards:  ``bs.models.unet``, T passes in one tf.function.
* default_unet:     predict_mc on ``bs.models.bayesian_unet`` (Bayesian
  bottleneck and head, the default): the encoder, which no draw changes,
  runs once per batch and only the rest per draw.
* default_whole:    the same with the whole model run per draw (the sharing
  switched off), to measure what the sharing saves.

Run: python benchmarks/bench_predict_mc.py [--rounds 7 --samples 16 --batch 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_unet_step import unet  # noqa: E402

import bayesseg as bs  # noqa: E402
from bayesseg.uncertainty import _prefix, predict_mc  # noqa: E402


def _build(conv_cls, up_cls):
    def conv(f, k):
        return conv_cls(f, k, padding="same", activation="relu")

    def up(f):
        return up_cls(f, 2, strides=2, padding="same")

    return unet(conv, up)


def main(argv=None) -> dict:
    """Measure the variants interleaved; print and return medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--samples", type=int, default=16, help="draws T")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    num_samples = args.samples
    x_np = np.random.default_rng(0).normal(size=(args.batch, 128, 128, 1))
    x_np = x_np.astype("float32")
    x = tf.constant(x_np)

    deterministic = _build(keras.layers.Conv2D, keras.layers.Conv2DTranspose)
    bayesian = _build(bs.layers.Conv2DFlipout, bs.layers.Conv2DTransposeFlipout)

    def forwards(model):
        """T deterministic passes of ``model`` in one tf.function (sigmoid, summed)."""

        @tf.function
        def run(x):
            total = tf.zeros_like(x)
            for _ in tf.range(num_samples):
                total += tf.sigmoid(model(x, training=False))
            return total

        return lambda: run(x).numpy()

    run_keras = forwards(deterministic)

    def run_predict_mc():
        return predict_mc(bayesian, x_np, num_samples=num_samples, batch_size=args.batch, verbose=0)

    def run_loop():
        outputs = [bayesian(x) for _ in range(num_samples)]
        return outputs[-1].numpy()

    twin = bs.models.unet((128, 128, 1), 1, base_filters=16, depth=4)
    default = bs.models.bayesian_unet((128, 128, 1), 1, base_filters=16, depth=4)

    def run_default(share):
        def run():
            _prefix.SHARE = share
            try:
                return predict_mc(
                    default, x_np, num_samples=num_samples, batch_size=args.batch, verbose=0
                )
            finally:
                _prefix.SHARE = True

        return run

    variants = {
        "keras_T_forwards": run_keras,
        "predict_mc": run_predict_mc,
        "python_loop": run_loop,
        "twin_T_forwards": forwards(twin),
        "default_unet": run_default(True),
        "default_whole": run_default(False),
    }
    for fn in variants.values():  # trace and warm up
        fn()
        fn()
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["keras_T_forwards"])
    results = {}
    print(
        f"U-Net depth 4, 16 filters, batch {args.batch}x128x128x1, T={num_samples}, "
        f"{args.rounds} rounds"
    )
    print(f"{'variant':<18}{'median ms':>11}{'ratio':>8}")
    for name, ts in times.items():
        median = statistics.median(ts)
        results[name] = {"median_ms": 1000 * median, "ratio": median / base}
        print(f"{name:<18}{1000 * median:>11.1f}{median / base:>8.2f}x")
    shared = results["default_unet"]["median_ms"] / results["default_whole"]["median_ms"]
    twin_ratio = results["default_unet"]["median_ms"] / results["twin_T_forwards"]["median_ms"]
    print(f"default_unet / default_whole: {shared:.2f}x; default_unet / twin_T_forwards: "
          f"{twin_ratio:.2f}x")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
