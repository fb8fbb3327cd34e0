"""Convert a pre-trained deterministic U-Net into a Bayesian one and fine-tune it.

1. Pre-train a Keras U-Net (batch normalisation) on synthetic lesion images
   with a class-weighted binary cross-entropy.
2. Convert it with ``bs.convert.to_bayesian(..., moped_delta=0.1)``: the
   posterior means are the trained weights, the posterior scales 10% of
   their magnitudes (MOPED).
3. Fine-tune the Bayesian U-Net with the ELBO for one epoch.
4. Compare the Dice of the deterministic model with the Dice of the
   posterior mean and of the Monte Carlo mean, and report the epistemic
   uncertainty.

Run: ``python examples/convert_pretrained.py`` (CPU, a few minutes), or
``--help`` for the sizes.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import bayesseg as bs  # noqa: E402
from bayesseg import convert  # noqa: E402


def dice(masks: np.ndarray, logits: np.ndarray, from_logits: bool = True) -> float:
    """Pooled Dice of the lesion class for thresholded predictions."""
    metric = bs.metrics.Dice(class_id=1, from_logits=from_logits)
    metric.update_state(masks, logits)
    return float(metric.result())


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Pre-train, convert, fine-tune and evaluate; returns the metrics.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        A dict with ``dice_deterministic``, ``dice_posterior_mean``,
        ``dice_mc_mean``, ``epistemic_mean``, ``kl`` and ``nll``.

    Example:

    >>> from examples.convert_pretrained import main  # doctest: +SKIP
    >>> metrics = main(["--images", "16", "--pretrain-epochs", "1"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="synthetic images")
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--pretrain-epochs", type=int, default=12)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--moped-delta", type=float, default=0.1)
    parser.add_argument("--mc-samples", type=int, default=16)
    parser.add_argument("--pos-weight", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    images, masks = bs.data.synthetic_lesions(
        args.images, shape=(args.size, args.size), lesion_fraction=1 / 30, seed=args.seed
    )
    split = max(1, (3 * args.images) // 4)
    x_train, y_train, x_test, y_test = images[:split], masks[:split], images[split:], masks[split:]
    likelihood = bs.losses.WeightedBinaryCrossentropy(pos_weight=args.pos_weight)

    deterministic = bs.models.unet(
        (args.size, args.size, 1),
        num_classes=1,
        base_filters=args.base_filters,
        depth=args.depth,
        normalization="batch",
    )
    # A few steps per epoch: a faster moving average lets BatchNormalization's
    # inference statistics catch up with the weights.
    for layer in deterministic.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.8
    deterministic.compile(optimizer=keras.optimizers.Adam(3e-3), loss=likelihood)
    deterministic.fit(
        x_train, y_train, batch_size=args.batch_size, epochs=args.pretrain_epochs, verbose=0
    )
    dice_deterministic = dice(y_test, deterministic.predict(x_test, verbose=0))

    bayesian = convert.to_bayesian(deterministic, moped_delta=args.moped_delta, seed=args.seed)
    bayesian.compile(
        optimizer=keras.optimizers.Adam(1e-4, global_clipnorm=1.0),
        loss=bs.ELBO(likelihood, bs.kl.PerExample(num_examples=len(x_train))),
    )
    history = bayesian.fit(
        x_train, y_train, batch_size=args.batch_size, epochs=args.finetune_epochs, verbose=0
    )
    with bs.layers.sampling_mode(bayesian, "mean"):
        dice_posterior_mean = dice(y_test, bayesian.predict(x_test, verbose=0))
    prediction = bs.uncertainty.predict_mc(bayesian, x_test, num_samples=args.mc_samples, verbose=0)
    return {
        "dice_deterministic": dice_deterministic,
        "dice_posterior_mean": dice_posterior_mean,
        "dice_mc_mean": dice(y_test, np.asarray(prediction.mean), from_logits=False),
        "epistemic_mean": float(np.mean(prediction.epistemic)),
        "kl": float(history.history["kl"][-1]),
        "nll": float(history.history["nll"][-1]),
    }


if __name__ == "__main__":
    for name, value in main().items():
        print(f"{name:>20s}: {value:.4f}")
