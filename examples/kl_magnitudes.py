"""Why the KL looks 1000x the NLL, and why it does not matter: 2D vs 3D U-Nets.

Prints, for a 2D and a 3D Bayesian U-Net on the same kind of binary lesion
masks, the raw KL, the per-pixel NLL, the scaled KL term of the default ELBO
(per-element scale, ``PerExample(N)``) and the norms of the NLL and KL
*gradients*, which are what the optimizer sees.

Run: python examples/kl_magnitudes.py [--num-examples 400]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import bayesseg as bs  # noqa: E402


def measure(input_shape, num_examples: int, batch: int = 2, seed: int = 0) -> dict:
    """KL, NLL and gradient norms of one ELBO evaluation on random lesion masks."""
    rng = np.random.default_rng(seed)
    model = bs.models.bayesian_unet(input_shape, 1, base_filters=8, depth=3)
    x = rng.normal(size=(batch,) + tuple(input_shape)).astype("float32")
    y = (rng.random((batch,) + tuple(input_shape[:-1]) + (1,)) < 1 / 60).astype("float32")
    elbo = bs.ELBO(
        bs.losses.WeightedBinaryCrossentropy(pos_weight=60.0), bs.kl.PerExample(num_examples)
    ).bind(model)
    with tf.GradientTape(persistent=True) as tape:
        terms = elbo.compute(model, y, model(x), step=0)
        kl_term = terms.loss - terms.nll
    variables = model.trainable_variables
    g_nll = tf.linalg.global_norm(tape.gradient(terms.nll, variables))
    g_kl = tf.linalg.global_norm(tape.gradient(kl_term, variables))
    return {
        "input_shape": tuple(input_shape),
        "parameters": int(sum(np.prod(v.shape) for v in variables)),
        "elements_per_example": float(terms.elements_per_example),
        "kl_raw": float(terms.kl),
        "nll_per_example": float(terms.nll * terms.elements_per_example),
        "nll_per_pixel": float(terms.nll),
        "kl_term": float(kl_term),
        "grad_norm_nll": float(g_nll),
        "grad_norm_kl": float(g_kl),
    }


def main(argv=None) -> list[dict]:
    """Measure a 2D and a 3D U-Net and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-examples", type=int, default=400)
    args = parser.parse_args(argv)
    rows = [
        measure((64, 64, 1), args.num_examples),
        measure((32, 64, 64, 1), args.num_examples),
    ]
    keys = [
        "parameters",
        "elements_per_example",
        "kl_raw",
        "nll_per_example",
        "nll_per_pixel",
        "kl_term",
        "grad_norm_nll",
        "grad_norm_kl",
    ]
    print(f"{'':<22}" + "".join(f"{str(r['input_shape']):>20}" for r in rows))
    for key in keys:
        print(f"{key:<22}" + "".join(f"{r[key]:>20.4g}" for r in rows))
    return rows


if __name__ == "__main__":
    main()
