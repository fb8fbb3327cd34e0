"""Does the posterior converge within the demo's budget? Scales at B and 4B updates.

Trains the ``bayesseg demo`` lesion model (160 synthetic 64x64 images, batch
8, depth-3 U-Net with 8 base filters, no normalisation, inverse-sqrt class
weights, Adam 1e-3 with global_clipnorm 1, ELBO with PerExample(N)) for
``factor`` times the demo's 12 epochs, and reports per Bayesian layer:

* the median posterior scale after the demo's budget B (12 epochs, 240
  updates) and after factor x B, and their ratio;
* the median per-step |change of rho| in the last epoch of each, over the
  learning rate: the fraction of Adam's per-step cap the scale parameters
  used (about 1: dragged at the cap; about 0.1-0.2: jitter around an
  optimum);
* held-out Dice, predictive NLL and epistemic share at B and factor x B.

``--posterior-scale-init``, ``--scale-multiplier`` and ``--prior-scale``
default to the library's defaults; ``--posterior-scale-init 1e-3
--scale-multiplier 1 --prior-scale 1`` is the classic configuration, for
comparison. Not a CI gate.

Run: python benchmarks/bench_posterior.py [--factor 4] [--scale-multiplier 1 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import bayesseg as bs  # noqa: E402
from bayesseg._defaults import DEFAULT_POSTERIOR_SCALE_INIT, DEFAULT_SCALE_MULTIPLIER  # noqa: E402


class _Recorder(keras.callbacks.Callback):
    """Median scale per layer each epoch; per-step rho moves in the tracked epochs."""

    def __init__(self, layers, tracked, learning_rate, evaluate):
        super().__init__()
        self.layers, self.tracked, self.lr, self.evaluate = layers, tracked, learning_rate, evaluate
        self.scales, self.moves, self.quality = {}, {}, {}
        self._epoch, self._steps, self._before = 0, [], None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._steps = epoch + 1, []

    def on_train_batch_begin(self, batch, logs=None):
        if self._epoch in self.tracked:
            self._before = [layer.kernel_rho.numpy().copy() for layer in self.layers]

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch in self.tracked:
            after = [layer.kernel_rho.numpy() for layer in self.layers]
            self._steps.append(
                [
                    np.median(np.abs(a - b)) / self.lr
                    for a, b in zip(after, self._before, strict=True)
                ]
            )

    def on_epoch_end(self, epoch, logs=None):
        e = epoch + 1
        self.scales[e] = [
            float(np.median(layer.posterior_scale("kernel").numpy())) for layer in self.layers
        ]
        if e in self.tracked:
            self.moves[e] = np.median(np.array(self._steps), axis=0).tolist()
            self.quality[e] = self.evaluate()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posterior-scale-init", type=float, default=DEFAULT_POSTERIOR_SCALE_INIT)
    parser.add_argument("--scale-multiplier", type=float, default=DEFAULT_SCALE_MULTIPLIER)
    parser.add_argument(
        "--prior-scale",
        type=float,
        default=None,
        help="Normal prior scale (default: the library's)",
    )
    parser.add_argument("--epochs", type=int, default=12, help="the budget B (demo: 12)")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    x, y = bs.data.synthetic_lesions(200, shape=(64, 64), seed=args.seed)
    x, y, xt, yt = x[:160], y[:160], x[160:], y[160:, ..., 0]
    counts = bs.imbalance.count_classes(y, num_classes=2)
    weights = bs.imbalance.class_weights(counts, method="inverse_sqrt")
    bias = bs.imbalance.initial_bias(counts, "sigmoid", class_weights=weights)
    model = bs.models.bayesian_unet(
        (64, 64, 1),
        1,
        base_filters=8,
        depth=3,
        output_bias=bias,
        posterior_scale_init=args.posterior_scale_init,
        scale_multiplier=args.scale_multiplier,
        prior=args.prior_scale,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr, global_clipnorm=1.0),
        loss=bs.ELBO(
            bs.losses.WeightedBinaryCrossentropy(class_weights=weights),
            bs.kl.PerExample(len(x)),
        ),
    )
    layers = bs.layers.bayesian_layers(model)

    def evaluate():
        pred = bs.uncertainty.predict_mc(
            model, xt, num_samples=16, verbose=0, correct_for_class_weights=weights
        )
        p = pred.mean[..., 0]
        hard, truth = p >= 0.5, yt > 0
        return {
            "dice": float(2 * np.sum(hard & truth) / (hard.sum() + truth.sum())),
            "predictive_nll": bs.metrics.predictive_nll(yt, p),
            "epistemic_share": bs.uncertainty.epistemic_share(pred),
        }

    budget, long = args.epochs, args.epochs * args.factor
    recorder = _Recorder(layers, {budget, long}, args.lr, evaluate)
    start = time.perf_counter()
    model.fit(x, y, batch_size=8, epochs=long, verbose=0, callbacks=[recorder])
    seconds = time.perf_counter() - start
    print(
        f"posterior_scale_init {args.posterior_scale_init:g}, scale_multiplier "
        f"{args.scale_multiplier:g}, prior {model.get_layer('logits').prior}, Adam {args.lr:g}: "
        f"B = {budget} epochs "
        f"({budget * 20} updates), {args.factor}B in {seconds:.0f} s"
    )
    print(
        f"{'layer':<20}{'scale@B':>10}{'scale@' + str(args.factor) + 'B':>10}{'ratio':>7}"
        f"{'move@B':>8}{'move@' + str(args.factor) + 'B':>8}"
    )
    rows = []
    for i, layer in enumerate(layers):
        s1, s4 = recorder.scales[budget][i], recorder.scales[long][i]
        m1, m4 = recorder.moves[budget][i], recorder.moves[long][i]
        rows.append({"layer": layer.name, "scale_B": s1, "scale_long": s4, "move_B": m1})
        print(f"{layer.name:<20}{s1:>10.2e}{s4:>10.2e}{s4 / s1:>7.2f}{m1:>8.3f}{m4:>8.3f}")
    for epoch in (budget, long):
        q = recorder.quality[epoch]
        print(
            f"after {epoch} epochs: Dice {q['dice']:.3f}  NLL {q['predictive_nll']:.4f}  "
            f"epistemic share {q['epistemic_share']:.3f}"
        )
    result = {"config": vars(args), "rows": rows, "quality": recorder.quality, "seconds": seconds}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
