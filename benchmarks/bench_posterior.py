"""Does the posterior converge within the demo's budget? Scales at B and 4B updates.

``--task lesion`` (default) trains the ``bayesseg demo`` lesion model (160
synthetic 64x64 images, batch 8, depth-3 U-Net with 8 base filters, no
normalisation, inverse-sqrt class weights, Adam with global_clipnorm 1, ELBO
with PerExample(N)); ``--task anomaly`` trains the ``bayesseg demo --task
anomaly`` tagger (two Bayesian LSTMs of 32 units and a dense head, series of
512 steps, balanced class weights, Adam 3e-3, batch 8; ``--num-series``
series, 640 by default as in the demo). Either runs ``factor`` times the
demo's 12 epochs and reports per Bayesian weight tensor:

* the median posterior scale after the demo's budget B (12 epochs) and after
  factor x B, and their ratio;
* the median per-step |change of rho| in the last epoch of each, over the
  learning rate: the fraction of Adam's per-step cap the scale parameters
  used (about 1: dragged at the cap; about 0.1-0.2: jitter around an
  optimum);
* held-out quality at B and factor x B (lesion: Dice, predictive NLL and
  epistemic share; anomaly: per-step F1 at the weighted model's 0.5
  threshold, average precision, predictive NLL and epistemic share).

``--posterior-scale-init``, ``--scale-multiplier`` and ``--prior-scale``
default to the library's defaults for the task; ``--posterior-scale-init 1e-3
--scale-multiplier 1 --prior-scale 1`` is the classic configuration, for
comparison. Not a CI gate.

Run: python benchmarks/bench_posterior.py [--task anomaly] [--factor 4] [--scale-multiplier 1 ...]
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
from bayesseg._defaults import (  # noqa: E402
    DEFAULT_POSTERIOR_SCALE_INIT,
    DEFAULT_RECURRENT_SCALE_MULTIPLIER,
    DEFAULT_SCALE_MULTIPLIER,
)


class _Recorder(keras.callbacks.Callback):
    """Median scale per weight each epoch; per-step rho moves in the tracked epochs."""

    def __init__(self, weights, tracked, learning_rate, evaluate):
        super().__init__()
        self.weights, self.tracked, self.lr, self.evaluate = (
            weights,
            tracked,
            learning_rate,
            evaluate,
        )
        self.scales, self.moves, self.quality = {}, {}, {}
        self._epoch, self._steps, self._before = 0, [], None

    def _rhos(self):
        return [getattr(layer, f"{name}_rho").numpy().copy() for layer, name in self.weights]

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._steps = epoch + 1, []

    def on_train_batch_begin(self, batch, logs=None):
        if self._epoch in self.tracked:
            self._before = self._rhos()

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch in self.tracked:
            self._steps.append(
                [
                    np.median(np.abs(a - b)) / self.lr
                    for a, b in zip(self._rhos(), self._before, strict=True)
                ]
            )

    def on_epoch_end(self, epoch, logs=None):
        e = epoch + 1
        self.scales[e] = [
            float(np.median(layer.posterior_scale(name).numpy())) for layer, name in self.weights
        ]
        if e in self.tracked:
            self.moves[e] = np.median(np.array(self._steps), axis=0).tolist()
            self.quality[e] = self.evaluate()


def _lesion(args):
    """The lesion demo's model, data and held-out evaluation."""
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

    return model, x, y, weights, evaluate


def _average_precision(truth, scores):
    """Average precision of per-step scores (sum over positives of precision at each)."""
    order = np.argsort(-scores.ravel(), kind="stable")
    hits = truth.ravel()[order]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision[hits].sum() / max(hits.sum(), 1))


def _anomaly(args):
    """The anomaly demo's tagger, data and held-out evaluation."""
    x, y = bs.data.synthetic_anomaly_series(args.num_series, length=512, seed=args.seed)
    xt, yt = bs.data.synthetic_anomaly_series(
        max(8, args.num_series // 4), length=512, seed=args.seed + 10_000
    )
    counts = bs.imbalance.count_classes(y, num_classes=2)
    weights = bs.imbalance.class_weights(counts, method="balanced", normalize=True)
    bias = bs.imbalance.initial_bias(counts / counts.sum(), class_weights=weights)
    posterior = {
        "posterior_scale_init": args.posterior_scale_init,
        "scale_multiplier": args.scale_multiplier,
    }
    if args.prior_scale is not None:
        posterior["prior"] = bs.priors.Normal(args.prior_scale)
    model = bs.models.bayesian_lstm_tagger(1, units=(32, 32), output_bias=bias, **posterior)
    truth = yt > 0.5

    def evaluate():
        mc = {"num_samples": 16, "batch_size": 8, "verbose": 0}
        pred = bs.uncertainty.predict_mc(model, xt, **mc)
        calibrated = bs.uncertainty.predict_mc(model, xt, correct_for_class_weights=weights, **mc)
        hard = pred.mean[..., 0] >= 0.5
        tp, fp, fn = (float(np.sum(a)) for a in (hard & truth, hard & ~truth, ~hard & truth))
        return {
            "f1": 2 * tp / max(2 * tp + fp + fn, 1.0),
            "average_precision": _average_precision(truth, pred.mean[..., 0]),
            "predictive_nll": bs.metrics.predictive_nll(yt, calibrated.mean[..., 0]),
            "epistemic_share": bs.uncertainty.epistemic_share(calibrated),
        }

    return model, x, y, weights, evaluate


def _priors(model) -> str:
    """The distinct priors of the model's Bayesian layers, in order."""
    names = [str(layer.prior) for layer in bs.layers.bayesian_layers(model)]
    return " / ".join(dict.fromkeys(names))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("lesion", "anomaly"), default="lesion")
    parser.add_argument("--posterior-scale-init", type=float, default=DEFAULT_POSTERIOR_SCALE_INIT)
    parser.add_argument(
        "--scale-multiplier",
        type=float,
        default=None,
        help="default: the library's for the task (U-Net 20, LSTM tagger "
        f"{DEFAULT_RECURRENT_SCALE_MULTIPLIER:g})",
    )
    parser.add_argument(
        "--prior-scale",
        type=float,
        default=None,
        help="Normal prior scale (default: the library's)",
    )
    parser.add_argument("--num-series", type=int, default=640, help="anomaly: training series")
    parser.add_argument("--epochs", type=int, default=12, help="the budget B (demo: 12)")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--lr", type=float, default=None, help="default: the demo's for the task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    anomaly = args.task == "anomaly"
    if args.scale_multiplier is None:
        args.scale_multiplier = (
            DEFAULT_RECURRENT_SCALE_MULTIPLIER if anomaly else DEFAULT_SCALE_MULTIPLIER
        )
    if args.lr is None:
        args.lr = 3e-3 if anomaly else 1e-3

    keras.utils.set_random_seed(args.seed)
    model, x, y, weights, evaluate = (_anomaly if anomaly else _lesion)(args)
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr, global_clipnorm=1.0),
        loss=bs.ELBO(
            bs.losses.WeightedBinaryCrossentropy(class_weights=weights),
            bs.kl.PerExample(len(x)),
        ),
    )
    tensors = [
        (layer, name)
        for layer in bs.layers.bayesian_layers(model)
        for name in layer.posterior_names
    ]
    budget, long = args.epochs, args.epochs * args.factor
    recorder = _Recorder(tensors, {budget, long}, args.lr, evaluate)
    start = time.perf_counter()
    model.fit(x, y, batch_size=8, epochs=long, verbose=0, callbacks=[recorder])
    seconds = time.perf_counter() - start
    updates = budget * int(np.ceil(len(x) / 8))
    print(
        f"{args.task}: posterior_scale_init {args.posterior_scale_init:g}, scale_multiplier "
        f"{args.scale_multiplier:g}, priors {_priors(model)}, "
        f"Adam {args.lr:g}: B = {budget} epochs ({updates} updates), "
        f"{args.factor}B in {seconds:.0f} s"
    )
    print(
        f"{'weight':<32}{'scale@B':>10}{'scale@' + str(args.factor) + 'B':>10}{'ratio':>7}"
        f"{'move@B':>8}{'move@' + str(args.factor) + 'B':>8}"
    )
    # posterior_scales lists the same (layer, weight) pairs in the same order.
    labels = [f"{r.layer}/{r.weight}" for r in bs.diagnostics.posterior_scales(model)]
    rows = []
    for i, (layer, name) in enumerate(tensors):
        s1, s4 = recorder.scales[budget][i], recorder.scales[long][i]
        m1, m4 = recorder.moves[budget][i], recorder.moves[long][i]
        label = layer.name if name == "kernel" and not anomaly else labels[i]
        rows.append(
            {"weight": label, "scale_B": s1, "scale_long": s4, "move_B": m1, "move_long": m4}
        )
        print(f"{label:<32}{s1:>10.2e}{s4:>10.2e}{s4 / s1:>7.2f}{m1:>8.3f}{m4:>8.3f}")
    for epoch in (budget, long):
        q = recorder.quality[epoch]
        print(f"after {epoch} epochs: " + "  ".join(f"{k} {v:.4f}" for k, v in q.items()))
    result = {"config": vars(args), "rows": rows, "quality": recorder.quality, "seconds": seconds}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
