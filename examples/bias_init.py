"""Initial output biases and class weights for imbalanced classes.

A network whose last layer is ``softmax(W h + b)`` starts, with small ``W``,
at ``softmax(b)``. Setting ``b_c = log(f_c)`` (plus any constant) makes it
start at the class frequencies ``f``: the loss of the first steps is then
spent on learning features instead of the base rates. The numbers of the
example in docs/imbalance.md ("Bias initialisation and the weight formula"):

* frequencies (0.4, 0.3, 0.2, 0.08, 0.02) -> ``b = log f``; the trial-and-error
  answer (1.1, 0.81, 0.4, -0.51, -1.9) is that plus about 2.0;
* binary: ``b = log(pos / neg)``;
* class weights ``w_c = N / (C * n_c)`` for counts (370, 977, 795).

A tiny Keras model with ``bs.imbalance.PriorBias`` checks that the untrained
softmax indeed predicts the frequencies.

Run: ``python examples/bias_init.py``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import bayesseg as bs  # noqa: E402

FREQUENCIES = (0.4, 0.3, 0.2, 0.08, 0.02)
TRIAL_AND_ERROR = (1.1, 0.81, 0.4, -0.51, -1.9)
COUNTS = (370, 977, 795)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Compute the biases and weights, check them on a model, print and return them.

    Args:
        argv: command-line arguments (``--positives``, ``--negatives`` of the
            binary case). Default: ``sys.argv[1:]``.

    Returns:
        A dict: ``softmax_bias`` (log f, as returned by
        ``bs.imbalance.initial_bias``, centred), ``offset_of_trial_answer``
        (the constant separating the trial-and-error answer from log f),
        ``trial_answer_max_error`` (largest deviation after removing that
        offset), ``start_probabilities`` (an untrained model's mean softmax),
        ``binary_bias``, ``class_weights`` and ``weighted_counts``.

    Example:

    >>> result = main([])
    >>> round(result["offset_of_trial_answer"], 1)
    2.0
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positives", type=int, default=1)
    parser.add_argument("--negatives", type=int, default=59)
    args = parser.parse_args(argv)

    freqs = np.asarray(FREQUENCIES)
    bias = bs.imbalance.initial_bias(freqs, activation="softmax")
    log_f = np.log(freqs)
    offset = float(np.mean(np.asarray(TRIAL_AND_ERROR) - log_f))
    max_error = float(np.max(np.abs(np.asarray(TRIAL_AND_ERROR) - offset - log_f)))

    # An untrained model with zero kernel and the prior bias predicts f everywhere.
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(
                len(freqs),
                kernel_initializer="zeros",
                bias_initializer=bs.imbalance.PriorBias(freqs, activation="softmax"),
            ),
            keras.layers.Softmax(),
        ]
    )
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    start = model.predict(x, verbose=0).mean(0)

    binary = bs.imbalance.initial_bias([args.negatives, args.positives])
    weights = bs.imbalance.class_weights(np.asarray(COUNTS), method="balanced")
    result = {
        "softmax_bias": bias.tolist(),
        "log_frequencies": log_f.tolist(),
        "offset_of_trial_answer": offset,
        "trial_answer_max_error": max_error,
        "start_probabilities": start.astype(float).tolist(),
        "binary_bias": float(binary[0]),
        "binary_log_ratio": float(np.log(args.positives / args.negatives)),
        "class_weights": weights.tolist(),
        "weighted_counts": (weights * np.asarray(COUNTS)).tolist(),
    }
    print("softmax bias b = log f (centred):", np.round(bias, 3).tolist())
    print("log f:                           ", np.round(log_f, 3).tolist())
    print(f"trial-and-error answer = log f + {offset:.2f} (largest deviation {max_error:.2f})")
    print("untrained softmax predicts:      ", np.round(start, 4).tolist())
    print(
        f"binary {args.positives}:{args.negatives}: b = log(pos/neg) = {result['binary_bias']:.4f}"
    )
    print("class weights N/(C n_c) for counts", COUNTS, ":", np.round(weights, 4).tolist())
    return result


if __name__ == "__main__":
    main()
