"""Why the default Bayesian U-Net does not beat its deterministic twin outside one
regime, and which lever changes that: a diagnosis and a screen, one seed.

The setting users meet (the README tour through the public API): synthetic 2D
lesions (64x64, ~1/60 lesion pixels; 200 training, 50 validation and 100
held-out images), ``bs.models.bayesian_unet`` / ``bs.models.unet`` with 8
base filters, depth 3 and no normalisation, inverse-sqrt weighted BCE,
``PerExample`` ELBO, Adam 2e-3 (``global_clipnorm=1``), batch 16,
``predict_mc`` with the class-weight correction and 16 draws; at 12 and 36
epochs (``--epochs``). ``--setting tour_bn`` adds batch normalisation to
it; ``--setting bench`` is the configuration of ``bench_quality.py``
(16 filters, batch normalisation, Adam 3e-3, batch 8; 25 epochs there).
``--setting nuclei`` trains the tour's configuration on a real
fluorescence image of nuclei (``_real_nuclei.py``: 320 training, 8
validation and 16 held-out 64x64 tiles; the seed changes only the
initialisation and batch order), kept for confirmation. ``--setting
membranes`` does the same on electron-microscopy sections
(``_real_membranes.py``: 320 training, 8 validation and 128 held-out
tiles), the real set levers may be screened on.

Variants (every one gets the same number of epochs; a warm start's
deterministic epochs count):

* ``twin``: ``bs.models.unet`` trained with the likelihood alone;
* ``bayes``: ``bs.models.bayesian_unet`` at the library's defaults (every
  layer Bayesian until 2026-12-06; since then the bottleneck and the head);
* ``all``, ``bottleneck``: ``bayesian_blocks="all"`` / ``"bottleneck"``,
  whatever the default;
* ``reparam``: ``estimator="reparameterization"``;
* ``warm``: the twin for half the epochs, then ``bs.convert.to_bayesian(
  moped_delta=0.1)`` (MOPED; Krishnan et al., AAAI 2020) and the ELBO for
  the other half;
* ``warm_reparam``: the same warm start, converted with
  ``estimator="reparameterization"``;
* ``warm_short``: the warm start with two thirds of the epochs
  deterministic (Flipout for the last third: about 1.33x the twin's time);
* ``tempered``: ``ELBO(temperature=0.1)`` (Wenzel et al., ICML 2020);
* ``decoder``: ``bayesian_blocks="decoder"``;
* ``last``: ``bayesian_blocks="last"`` (a Bayesian head only; Kristiadi et
  al., ICML 2020);
* ``warmup``: ``bs.kl.Warmup(PerExample(N), steps=half the updates)``.

Variants combine with ``+``: ``reparam+tempered`` is the reparameterization
estimator trained with the tempered ELBO, ``warm+reparam`` the warm start
converted with that estimator (the same as ``warm_reparam``), ``decoder+reparam``
a Bayesian decoder drawn by reparameterization, ``warm+bottleneck`` the warm
start that converts only the bottleneck block and the head. ``tempered``
takes an optional temperature (``tempered0.3``); ``mult5``,
``init0.001`` and ``prior0.05`` set the Bayesian layers'
``scale_multiplier``, ``posterior_scale_init`` and prior scale
(``bottleneck+mult5``).

Per variant, on held-out images: pooled Dice at 0.5, predictive NLL, the
prediction-selected foreground ECE minus its noise floor (class-weight
corrected), the same after Platt scaling fitted on the validation images,
the epistemic share and the training seconds (ratio to the twin's, in the
same process). Diagnosis columns for the ELBO-trained variants: the last
epoch's NLL against ``kl_weight * KL``; the posterior scales' median over
layers relative to their start and to the prior (``posterior_scales``);
the NLL of the MC mean against that of the posterior-mean network (below
1: averaging draws helps); the NLL with the class-weight correction applied
to the MC mean instead of per draw; the NLL at 4 and 8 draws over that at
16.

Run: python benchmarks/explore_regimes.py [--epochs 12 36] [--variants twin,bayes,...]
      [--setting tour|tour_bn|bench|nuclei|membranes] [--seed 0] [--json out.jsonl]
      [--draw-repeats 8]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench_quality import REAL, _calibration, _likelihood, _predict  # noqa: E402

import bayesseg as bs  # noqa: E402

VARIANTS = (
    "twin",
    "bayes",
    "all",
    "bottleneck",
    "reparam",
    "warm",
    "warm_reparam",
    "warm_short",
    "tempered",
    "decoder",
    "last",
    "warmup",
)
SETTINGS = {
    "tour": {"base_filters": 8, "normalization": None, "lr": 2e-3, "batch": 16},
    "tour_bn": {"base_filters": 8, "normalization": "batch", "lr": 2e-3, "batch": 16},
    "bench": {"base_filters": 16, "normalization": "batch", "lr": 3e-3, "batch": 8},
}
SETTINGS |= dict.fromkeys(REAL, SETTINGS["tour"])  # the tour's network on real images
UNET_OPTIONS = {"reparam": {"estimator": "reparameterization"}}
BLOCKS = ("all", "decoder", "bottleneck", "last")
UNET_OPTIONS |= {blocks: {"bayesian_blocks": blocks} for blocks in BLOCKS}
_ALIASES = {"warm_reparam": "warm+reparam"}


# Tokens that carry a number: ``tempered0.3`` (the ELBO's temperature, 0.1
# alone), ``mult5`` (``scale_multiplier``), ``init0.001``
# (``posterior_scale_init``), ``prior0.05`` (the prior's scale).
_NUMERIC = {"tempered": 0.1, "mult": None, "init": None, "prior": None}


def _parts(variant: str) -> tuple[set[str], dict[str, float]]:
    """The tokens of a ``+``-combined variant and its numeric options
    (``{"tempered": 0.3, "mult": 5.0}``; absent: the library's default)."""
    tokens = set(_ALIASES.get(variant, variant).split("+"))
    numbers = {}
    for token in sorted(tokens):
        for prefix, default in _NUMERIC.items():
            if not token.startswith(prefix):
                continue
            value = token.removeprefix(prefix)
            if not value and default is None:
                raise ValueError(f"variant part {token!r} needs a number, e.g. {prefix}5")
            tokens.discard(token)
            numbers[prefix] = float(value or default)
    known = set(UNET_OPTIONS) | {"bayes", "warm", "warm_short", "warmup", "twin"}
    unknown = tokens - known
    if unknown:
        raise ValueError(f"unknown variant parts {sorted(unknown)} in {variant!r}")
    return tokens, numbers


def _data(seed: int, setting: str = "tour", size: int = 64):
    if setting in REAL:
        return REAL[setting].load()
    shape = (size, size)
    train = bs.data.synthetic_lesions(200, shape=shape, seed=seed)
    val = bs.data.synthetic_lesions(50, shape=shape, seed=seed + 2000)
    test = bs.data.synthetic_lesions(100, shape=shape, seed=seed + 1000)
    return train, val, test


def _metrics(pred, y) -> dict:
    probs = pred.mean[..., 0]
    dice = bs.metrics.Dice(class_id=1, from_logits=False)
    dice.update_state(y, pred.mean)
    calibration = _calibration(y[..., 0], probs)
    return {
        "dice": float(dice.result()),
        "nll": calibration["predictive_nll"],
        "ece_minus_floor": calibration["foreground_ece"] - calibration["foreground_ece_floor"],
        "epistemic_share": bs.uncertainty.epistemic_share(pred),
    }


def _draws_over_16(model, x, truth, weights, repeats: int, sixteen=None) -> dict:
    """The held-out NLL at 4 and 8 draws over that at 16, each the mean of
    ``repeats`` calls (every call draws new weights); ``sixteen``: the
    16-draw NLL already measured, used instead of new calls."""

    def nll(count):
        return np.mean(
            [
                bs.metrics.predictive_nll(truth, _predict(model, x, weights, count).mean[..., 0])
                for _ in range(repeats)
            ]
        )

    sixteen = nll(16) if sixteen is None else sixteen
    return {str(count): float(nll(count) / sixteen) for count in (4, 8)}


def _diagnosis(model, history, x, y, weights, samples, pred, repeats=1) -> dict:
    """Where the ELBO's terms, the posterior scales and the MC average stand
    (``pred``: the corrected ``samples``-draw prediction of ``x`` already made;
    ``repeats``: calls averaged per draw count, see ``_draws_over_16``)."""
    kernels = [r for r in bs.diagnostics.posterior_scales(model) if r.weight == "kernel"]
    truth = y[..., 0]
    with bs.layers.sampling_mode(model, "mean"):
        mean_net = _calibration(truth, _predict(model, x, weights, 1).mean[..., 0])
    draws = _calibration(truth, pred.mean[..., 0])
    raw = _predict(model, x, None, samples)
    on_mean = bs.imbalance.unweight_probabilities(raw.mean[..., 0], weights)
    kl_terms = [
        float(k) * float(w)
        for k, w in zip(history.history["kl"], history.history["kl_weight"], strict=True)
    ]
    return {
        # Per epoch: the NLL and the KL term the ELBO adds to it.
        "history_nll": [float(v) for v in history.history["nll"]],
        "history_kl_term": kl_terms,
        "layer_scales": [[r.layer, r.median_scale, r.initial_scale] for r in kernels],
        "final_nll": float(history.history["nll"][-1]),
        "final_kl_term": kl_terms[-1],
        "scale_over_start": float(np.median([r.median_scale / r.initial_scale for r in kernels])),
        "scale_over_prior": float(np.median([r.median_scale / r.prior_scale for r in kernels])),
        # Observed foreground rate minus mean p on the foreground region
        # (> 0: the lesions' probabilities are too low), MC mean and mean network.
        "shift_mc": draws["foreground_shift"],
        "shift_mean_net": mean_net["foreground_shift"],
        "nll_mc_over_mean_net": draws["predictive_nll"] / mean_net["predictive_nll"],
        "nll_correct_mean_over_per_draw": bs.metrics.predictive_nll(truth, on_mean)
        / draws["predictive_nll"],
        # How many draws the MC mean needs: its NLL at 4 and 8 draws over 16's.
        # One call per count: over the prediction already made (its 16 draws).
        "nll_draws_over_16": _draws_over_16(
            model, x, truth, weights, repeats, draws["predictive_nll"] if repeats == 1 else None
        ),
        "draw_repeats": repeats,
    }


def run(
    variant: str, setting: str, epochs: int, seed: int, samples: int = 16, repeats: int = 1
) -> dict:
    """Train ``variant`` on ``seed``'s data for ``epochs``; its held-out figures."""
    options = SETTINGS[setting]
    (x, y), (xv, yv), (xt, yt) = _data(seed, setting)
    counts = bs.imbalance.count_classes(y, num_classes=2)
    weights = bs.imbalance.class_weights(counts, method="inverse_sqrt", normalize=True)
    bias = bs.imbalance.initial_bias(counts / counts.sum(), class_weights=weights)
    common = {
        "base_filters": options["base_filters"],
        "depth": 3,
        "output_bias": bias,
        "normalization": options["normalization"],
    }
    keras.utils.set_random_seed(seed)
    batch = options["batch"]
    updates = epochs * -(-len(x) // batch)

    def optimizer():
        return keras.optimizers.Adam(options["lr"], global_clipnorm=1.0)

    def elbo(**kwargs):
        scaling = kwargs.pop("kl_scaling", bs.kl.PerExample(len(x)))
        return bs.ELBO(_likelihood(weights), scaling, **kwargs)

    fit = {"batch_size": batch, "verbose": 0}
    start = time.perf_counter()
    history = None
    tokens, numbers = _parts(variant)
    loss_options = {} if "tempered" not in numbers else {"temperature": numbers["tempered"]}
    if "warmup" in tokens:
        loss_options["kl_scaling"] = bs.kl.Warmup(bs.kl.PerExample(len(x)), steps=updates // 2)
    estimator = "reparameterization" if "reparam" in tokens else "flipout"
    layer_options = {}
    if "mult" in numbers:
        layer_options["scale_multiplier"] = numbers["mult"]
    if "init" in numbers:
        layer_options["posterior_scale_init"] = numbers["init"]
    if "prior" in numbers:
        layer_options["prior"] = numbers["prior"]
    if variant == "twin":
        model = bs.models.unet((64, 64, 1), 1, **common)
        model.compile(optimizer=optimizer(), loss=_likelihood(weights))
        model.fit(x, y, epochs=epochs, **fit)
    elif tokens & {"warm", "warm_short"}:
        deterministic = round(epochs * 2 / 3) if "warm_short" in tokens else epochs // 2
        twin = bs.models.unet((64, 64, 1), 1, **common)
        twin.compile(optimizer=optimizer(), loss=_likelihood(weights))
        twin.fit(x, y, epochs=deterministic, **fit)
        # ``warm+bottleneck``: only the bottleneck block and the head convert.
        layers = "all"
        if "bottleneck" in tokens:
            layers = [
                layer.name
                for layer in twin.layers
                if layer.name.startswith("bottleneck") or layer.name == "logits"
            ]
        model = bs.convert.to_bayesian(twin, estimator, layers=layers, moped_delta=0.1, seed=seed)
        model.compile(optimizer=optimizer(), loss=elbo(**loss_options))
        history = model.fit(x, y, epochs=epochs - deterministic, **fit)
    else:
        unet_options = {"estimator": estimator} | layer_options
        for token in tokens & set(BLOCKS):
            unet_options |= UNET_OPTIONS[token]
        model = bs.models.bayesian_unet((64, 64, 1), 1, **common, **unet_options)
        model.compile(optimizer=optimizer(), loss=elbo(**loss_options))
        history = model.fit(x, y, epochs=epochs, **fit)
    seconds = time.perf_counter() - start
    draws = 1 if variant == "twin" else samples
    result = {"variant": variant, "setting": setting, "epochs": epochs, "seed": seed}
    pred = _predict(model, xt, weights, draws)
    result |= _metrics(pred, yt)
    platt = bs.calibration.fit_calibration(model, xv, yv, num_samples=draws)
    platt_pred = _predict(model, xt, None, draws, calibration=platt)
    calibrated = _calibration(yt[..., 0], platt_pred.mean[..., 0])
    result["platt_nll"] = calibrated["predictive_nll"]
    result["platt_ece_minus_floor"] = (
        calibrated["foreground_ece"] - calibrated["foreground_ece_floor"]
    )
    result["train_seconds"] = seconds
    if history is not None:
        result |= _diagnosis(model, history, xt, yt, weights, draws, pred, repeats)
    return result


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="*", default=[12, 36])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="tour")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="append one JSON line per run")
    parser.add_argument(
        "--draw-repeats",
        type=int,
        default=1,
        help="average the 4-, 8- and 16-draw NLLs over this many calls each",
    )
    args = parser.parse_args(argv)
    rows = []
    for epochs in args.epochs:
        twin_seconds = None
        for variant in args.variants.split(","):
            row = run(variant, args.setting, epochs, args.seed, repeats=args.draw_repeats)
            if variant == "twin":
                twin_seconds = row["train_seconds"]
            if twin_seconds:
                row["time_over_twin"] = row["train_seconds"] / twin_seconds
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
    return rows


if __name__ == "__main__":
    main()
