"""Overhead of GradientDiagnostics(every_n_steps=50) and of LossSpikeMonitor on a U-Net fit.

The Bayesian U-Net of bench_unet_step.py (depth 4, 16 base filters,
128x128x1, batch 4, Flipout), trained with ``BayesianModel.fit`` for
``--steps`` optimizer steps per fit, without a callback, with
``GradientDiagnostics`` and with ``LossSpikeMonitor()`` at its defaults
(which scores every step: its per-element losses and their top 1%),
alternating (round-robin) so machine noise hits all alike. Prints the
median wall time per fit and the ratio to the plain fit.

Run: python benchmarks/bench_diagnostics.py [--rounds 3 --steps 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import bayesseg as bs  # noqa: E402


def main(argv=None) -> dict:
    """Time fits with and without the callback; print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=50)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = 4 * args.steps
    x = rng.normal(size=(n, 128, 128, 1)).astype("float32")
    y = (rng.random((n, 128, 128, 1)) < 1 / 60).astype("float32")
    model = bs.models.bayesian_unet((128, 128, 1), 1, base_filters=16, depth=4)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=bs.ELBO(bs.losses.WeightedBinaryCrossentropy(pos_weight=60.0), bs.kl.PerExample(n)),
    )
    callback = bs.diagnostics.GradientDiagnostics(every_n_steps=args.every)
    monitor = bs.diagnostics.LossSpikeMonitor()
    callbacks = {"plain": [], "diagnostics": [callback], "spike_monitor": [monitor]}
    times = {name: [] for name in callbacks}
    # Warm-up: trace every train function once.
    for name in times:
        model.fit(x[:8], y[:8], batch_size=4, epochs=1, verbose=0, callbacks=callbacks[name])
    for _ in range(args.rounds):
        for name in times:
            start = time.perf_counter()
            model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=callbacks[name])
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'variant':<14}{'median s/fit':>14}{'ratio':>8}")
    for name, median in medians.items():
        print(f"{name:<14}{median:>14.2f}{median / medians['plain']:>8.3f}")
    print(f"records: {len(callback.records)} measured steps")
    return {f"{name}_s": median for name, median in medians.items()} | {
        "ratio": medians["diagnostics"] / medians["plain"],
        "spike_ratio": medians["spike_monitor"] / medians["plain"],
    }


if __name__ == "__main__":
    main()
