"""Overhead of GradientDiagnostics(every_n_steps=50) on a U-Net fit.

The Bayesian U-Net of bench_unet_step.py (depth 4, 16 base filters,
128x128x1, batch 4, Flipout), trained with ``BayesianModel.fit`` for
``--steps`` optimizer steps per fit, with and without the callback,
alternating (round-robin) so machine noise hits both alike. Prints the median
wall time per fit and the ratio.

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
    times = {"plain": [], "diagnostics": []}
    # Warm-up: trace both train functions once.
    model.fit(x[:8], y[:8], batch_size=4, epochs=1, verbose=0)
    model.fit(x[:8], y[:8], batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    for _ in range(args.rounds):
        for name in times:
            callbacks = [callback] if name == "diagnostics" else []
            start = time.perf_counter()
            model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=callbacks)
            times[name].append(time.perf_counter() - start)
    plain, diag = statistics.median(times["plain"]), statistics.median(times["diagnostics"])
    print(f"{'variant':<14}{'median s/fit':>14}{'ratio':>8}")
    print(f"{'plain':<14}{plain:>14.2f}{1.0:>8.3f}")
    print(f"{'diagnostics':<14}{diag:>14.2f}{diag / plain:>8.3f}")
    print(f"records: {len(callback.records)} measured steps")
    return {"plain_s": plain, "diagnostics_s": diag, "ratio": diag / plain}


if __name__ == "__main__":
    main()
