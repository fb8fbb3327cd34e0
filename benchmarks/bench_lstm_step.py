"""Train-step time of a 2x64 LSTM tagger: Keras, bayesseg and a naive Bayesian cell.

Model: 1 feature per step, two stacked 64-unit LSTMs returning sequences, a
per-step logit head (Dense on the sequence), BCE loss (+ KL / N for the
Bayesian variants), Adam, all inside one tf.function. Variants, measured
interleaved in one process (round-robin, so machine noise hits them alike)
and reported as medians and ratios to the Keras LSTM:

* keras:        keras.layers.LSTM + Dense (baseline)
* bs_reparam:   bayesseg LSTMReparameterization + DenseReparameterization
* bs_flipout:   bayesseg LSTMFlipout + DenseFlipout
* naive_flipout: a per-timestep Flipout cell under keras.layers.RNN (the
                design of bayesian-torch's LSTM): the input projection runs
                inside the loop and the weights and signs are redrawn at
                every timestep; head DenseFlipout.

Run: python benchmarks/bench_lstm_step.py [--length 4096 --batch 32 --rounds 5]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from _timing import interleaved_medians, report, sigmoid_train_step  # noqa: E402

import bayesseg as bs  # noqa: E402
from bayesseg.layers import base  # noqa: E402
from bayesseg.layers.lstm import LSTMFlipout, LSTMReparameterization  # noqa: E402

NUM_EXAMPLES = 1000
UNITS = 64


class NaiveFlipoutLSTMCell(keras.layers.Layer):
    """Flipout LSTM cell that redraws weights and signs at every timestep."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        rho = keras.initializers.Constant(base.inverse_softplus(1e-3))
        four = 4 * self.units
        self.kernel_loc = self.add_weight(shape=(input_shape[-1], four))
        self.kernel_rho = self.add_weight(shape=(input_shape[-1], four), initializer=rho)
        self.recurrent_loc = self.add_weight(shape=(self.units, four), initializer="orthogonal")
        self.recurrent_rho = self.add_weight(shape=(self.units, four), initializer=rho)
        self.bias = self.add_weight(shape=(four,), initializer="zeros")

    def _flipout(self, x, loc, rho):
        scale = tf.nn.softplus(rho)
        delta = scale * tf.random.normal(tf.shape(scale))
        batch = tf.shape(x)[0]
        sign_in = tf.sign(tf.random.uniform([batch, loc.shape[0]], -1.0, 1.0))
        sign_out = tf.sign(tf.random.uniform([batch, loc.shape[1]], -1.0, 1.0))
        return tf.matmul(x, loc) + tf.matmul(x * sign_in, delta) * sign_out

    def call(self, inputs, states):
        h, c = states
        z = (
            self._flipout(inputs, self.kernel_loc, self.kernel_rho)
            + self._flipout(h, self.recurrent_loc, self.recurrent_rho)
            + self.bias
        )
        z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
        c = tf.sigmoid(z_f) * c + tf.sigmoid(z_i) * tf.tanh(z_c)
        h = tf.sigmoid(z_o) * tf.tanh(c)
        return h, [h, c]

    def kl_divergence(self):
        total = 0.0
        for loc, rho in (
            (self.kernel_loc, self.kernel_rho),
            (self.recurrent_loc, self.recurrent_rho),
        ):
            q = tfp.distributions.Normal(loc, tf.nn.softplus(rho))
            p = tfp.distributions.Normal(0.0, 1.0)
            total += tf.reduce_sum(tfp.distributions.kl_divergence(q, p))
        return total


def tagger(lstm, head, length):
    inputs = keras.Input((length, 1))
    x = lstm()(inputs)
    x = lstm()(x)
    return keras.Model(inputs, head()(x))


def build_variants(length):
    keras_model = tagger(
        lambda: keras.layers.LSTM(UNITS, return_sequences=True),
        lambda: keras.layers.Dense(1),
        length,
    )
    variants = {"keras": (keras_model, None)}
    for name, lstm_cls, dense_cls in (
        ("bs_reparam", LSTMReparameterization, bs.layers.DenseReparameterization),
        ("bs_flipout", LSTMFlipout, bs.layers.DenseFlipout),
    ):
        model = tagger(
            lambda c=lstm_cls: c(UNITS, return_sequences=True),
            lambda d=dense_cls: d(1),
            length,
        )
        variants[name] = (model, lambda m=model: bs.kl_divergence(m))
    naive_cells = []

    def naive_lstm():
        cell = NaiveFlipoutLSTMCell(UNITS)
        naive_cells.append(cell)
        return keras.layers.RNN(cell, return_sequences=True)

    naive = tagger(naive_lstm, lambda: bs.layers.DenseFlipout(1), length)

    def naive_kl():
        return bs.kl_divergence(naive) + tf.add_n([c.kl_divergence() for c in naive_cells])

    variants["naive_flipout"] = (naive, naive_kl)
    return variants


def make_step(model, kl_fn):
    if kl_fn is not None:
        kl_fn = tf.autograph.experimental.do_not_convert(kl_fn)
    return sigmoid_train_step(model, keras.optimizers.Adam(1e-3), kl_fn, NUM_EXAMPLES)


def main(argv=None) -> dict:
    """Measure every variant interleaved; print and return medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1, help="steps per round")
    parser.add_argument(
        "--variants", default="", help="comma-separated subset (keras is always run)"
    )
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(args.batch, args.length, 1)).astype("float32"))
    y = tf.constant((rng.random((args.batch, args.length, 1)) < 0.02).astype("float32"))
    steps = {}
    wanted = {"keras", *filter(None, args.variants.split(","))}
    for name, (model, kl_fn) in build_variants(args.length).items():
        if args.variants and name not in wanted:
            continue
        steps[name] = make_step(model, kl_fn)
        for _ in range(2):  # trace and warm up
            steps[name](x, y)
    medians = interleaved_medians(steps, (x, y), args.rounds, args.steps)
    print(f"length {args.length}, batch {args.batch}, {args.rounds} rounds")
    results = report(medians, "keras", width=15)
    return results


if __name__ == "__main__":
    main()
