"""Train-step time of a U-Net built from bayesseg, Keras and tfp.layers layers.

U-Net: depth 4, 16 base filters, 128x128x1 inputs, batch 4, one sigmoid
logit. Variants, all measured interleaved in one process (round-robin, so
machine noise hits them alike) and reported as medians and ratios to the
deterministic Keras U-Net:

* keras:            keras.layers.Conv2D / Conv2DTranspose (baseline)
* bs_flipout:       bayesseg Conv2DFlipout / Conv2DTransposeFlipout
* bs_reparam:       bayesseg Conv2DReparameterization / ...Transpose...
* bs_flipout_kup,   the same with deterministic Keras up-convolutions, the
  bs_reparam_kup:   like-for-like comparison with tfp.layers below
* tfp_flipout,      tfp.layers.Convolution2DFlipout / ...Reparameterization
  tfp_reparam:      with deterministic up-convolutions (TFP has none), when
                    tf_keras is importable.
* unet_twin,        the library's models at the same size: ``bs.models.unet``
  bayes_all,        and ``bs.models.bayesian_unet`` (Flipout) with
  bayes_decoder,    ``bayesian_blocks`` "all", "decoder" and "bottleneck"
  bayes_bottleneck: (the bottleneck block and the head Bayesian).

Every step computes BCE + KL / N and applies Adam, inside one tf.function.

Run: python benchmarks/bench_unet_step.py [--rounds 15 --steps 5]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import interleaved_medians, report, sigmoid_train_step  # noqa: E402

import bayesseg as bs  # noqa: E402

NUM_EXAMPLES = 1000


def unet(conv, up, input_shape=(128, 128, 1), base_filters=16, depth=4, lib=keras):
    """A plain U-Net; ``conv(filters, kernel)`` and ``up(filters)`` make its layers."""
    inputs = lib.Input(input_shape)
    x, skips = inputs, []
    for level in range(depth - 1):
        filters = base_filters * 2**level
        x = conv(filters, 3)(x)
        x = conv(filters, 3)(x)
        skips.append(x)
        x = lib.layers.MaxPooling2D(2)(x)
    x = conv(base_filters * 2 ** (depth - 1), 3)(x)
    x = conv(base_filters * 2 ** (depth - 1), 3)(x)
    for level in reversed(range(depth - 1)):
        filters = base_filters * 2**level
        x = up(filters)(x)
        x = lib.layers.Concatenate()([x, skips[level]])
        x = conv(filters, 3)(x)
        x = conv(filters, 3)(x)
    outputs = lib.layers.Conv2D(1, 1)(x)
    return lib.Model(inputs, outputs)


def _keras_variant(conv_cls, up_cls):
    def conv(f, k):
        return conv_cls(f, k, padding="same", activation="relu")

    def up(f):
        return up_cls(f, 2, strides=2, padding="same")

    return unet(conv, up)


def build_variants():
    variants = {
        "keras": (
            _keras_variant(keras.layers.Conv2D, keras.layers.Conv2DTranspose),
            None,
        ),
    }
    for name, conv_cls, up_cls in (
        ("bs_flipout", bs.layers.Conv2DFlipout, bs.layers.Conv2DTransposeFlipout),
        (
            "bs_reparam",
            bs.layers.Conv2DReparameterization,
            bs.layers.Conv2DTransposeReparameterization,
        ),
        ("bs_flipout_kup", bs.layers.Conv2DFlipout, keras.layers.Conv2DTranspose),
        (
            "bs_reparam_kup",
            bs.layers.Conv2DReparameterization,
            keras.layers.Conv2DTranspose,
        ),
    ):
        model = _keras_variant(conv_cls, up_cls)
        variants[name] = (model, lambda m=model: bs.kl_divergence(m))
    library = {"input_shape": (128, 128, 1), "num_classes": 1, "base_filters": 16, "depth": 4}
    variants["unet_twin"] = (bs.models.unet(**library), None)
    for blocks in ("all", "decoder", "bottleneck"):
        model = bs.models.bayesian_unet(**library, bayesian_blocks=blocks)
        variants[f"bayes_{blocks}"] = (model, lambda m=model: bs.kl_divergence(m))
    try:
        import tensorflow_probability as tfp
        import tf_keras
    except ImportError:
        return variants
    for name, cls in (
        ("tfp_flipout", tfp.layers.Convolution2DFlipout),
        ("tfp_reparam", tfp.layers.Convolution2DReparameterization),
    ):

        def conv(f, k, cls=cls):
            return cls(f, k, padding="same", activation="relu")

        def up(f):
            return tf_keras.layers.Conv2DTranspose(f, 2, strides=2, padding="same")

        model = unet(conv, up, lib=tf_keras)
        variants[name] = (model, lambda m=model: tf.add_n(m.losses))
    return variants


def make_step(model, kl_fn, tfp_model: bool):
    if tfp_model:
        import tf_keras

        optimizer = tf_keras.optimizers.Adam(1e-3)
    else:
        optimizer = keras.optimizers.Adam(1e-3)
    return sigmoid_train_step(model, optimizer, kl_fn, NUM_EXAMPLES)


def main(argv=None) -> dict:
    """Measure every variant interleaved; print and return medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5, help="steps per round")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(args.batch, 128, 128, 1)).astype("float32"))
    y = tf.constant((rng.random((args.batch, 128, 128, 1)) < 1 / 60).astype("float32"))
    steps = {}
    for name, (model, kl_fn) in build_variants().items():
        steps[name] = make_step(model, kl_fn, name.startswith("tfp"))
        for _ in range(3):  # trace and warm up
            steps[name](x, y)
    medians = interleaved_medians(steps, (x, y), args.rounds, args.steps)
    results = report(medians, "keras", width=18)
    return results


if __name__ == "__main__":
    main()
