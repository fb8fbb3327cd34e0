"""Segmentation quality, uncertainty and shift detection: Bayesian U-Nets against
a deterministic U-Net, MC dropout and a deep ensemble.

Synthetic 2D lesions (64x64, ~1/60 lesion pixels), the same U-Net
architecture, the same class-weighted likelihood and the same number of
optimizer updates for every trained model, over several seeds in one run:

* bayesian:           bs.models.bayesian_unet (Flipout) at the library's
                      DEFAULTS (which layers are Bayesian included), ELBO with
                      PerExample(N);
* bayesian_all:       bayesian_unet(bayesian_blocks="all"): every layer Bayesian;
* deterministic:      bs.models.unet trained with the likelihood alone;
* mc_dropout:         bs.models.unet(dropout=...) trained with the likelihood,
                      predicted with dropout on (training=True);
* ensemble:           bs.models.DeepEnsemble of --members deterministic U-Nets
                      (member 0 is the deterministic variant; the others differ
                      in initialisation and batch order); its training time is
                      the sum of its members';
* partial_bayesian:   bayesian_unet(bayesian_blocks="decoder"): a deterministic
                      encoder, Bayesian decoder and head;
* reparameterization: bayesian_unet(estimator="reparameterization").

Reported on held-out images, with probabilities corrected for the class
weights (``correct_for_class_weights``) and thresholded at 0.5: lesion Dice
(pooled), lesion-wise detection F1, predictive NLL, Brier score, the
foreground ECE and the adaptive ECE each next to its noise floor (the
median ECE of labels redrawn from the model's own probabilities), the
AUROC of per-pixel predictive entropy for ranking pixel errors, the
epistemic share (bs.uncertainty.epistemic_share) and training seconds; and
the NLL and foreground ECE again after Platt scaling (bs.calibration)
fitted on separate validation images instead of the class-weight correction.
Next to the held-out foreground ECE: its signed shift (observed foreground
rate minus mean p_fg on the region; > 0 under-predicts foreground) and the
same ECE, floor and shift on training images, to tell a correction that is
inexact from a model that does not generalise.

Shift detection and selective prediction (benchmarks/_shift_eval.py): the
held-out images shifted by bs.data.shift_images (noise, blur, inversion
through the per-image z-score; the intensity gain without it) at severities
1-3; per shifted set, each variant's Dice and the AUROC of its per-image
scores (bs.uncertainty.image_scores: mean epistemic, mean total, uncertain
fraction) for ranking shifted above clean images, and of the two-sided
scores (``auroc2``: bs.uncertainty.atypicality against the clean validation
images, so that a shift making the model more certain counts too), next to
the input-statistic detectors (baselines); risk-coverage AURC of 1 - per-image Dice on the clean
images and on clean + middle-severity shifted images; and the AUROC of the
lesion-wise mean uncertainty for ranking missed lesions above detected ones.
Each figure is the mean and standard deviation over the seeds. Not a CI gate.

Settings (``--setting``; any flag below overrides its value): ``bench``
(the default): U-Net depth 3 with 16 base filters and batch normalisation,
Adam 3e-3 (global_clipnorm=1), batch 8, 25 epochs (625 updates per model);
``tour``: the README tour's network, 8 base filters and no normalisation,
Adam 2e-3, batch 16, 12 epochs (156 updates; pass ``--epochs 36`` for the
longer budget). Both: 3 seeds (paired: every variant of a seed sees the
same data); 200 training, 50 validation and 100 held-out 64x64 images; 16
Monte Carlo samples (the ensemble: one draw per deterministic member).
``nuclei``: the tour's network and budget on a real fluorescence image of
nuclei (``_real_nuclei.py``: 320 training, 8 validation and 16 held-out
64x64 tiles, fixed; the seed changes initialisation and batch order only),
kept for confirmation. ``membranes``: the same on electron-microscopy
sections (``_real_membranes.py``: 320 training, 8 validation and 128
held-out tiles), a real set levers may be screened on.

Run: python benchmarks/bench_quality.py [--setting bench|tour|nuclei|membranes]
      [--seeds 3 --first-seed 0] [--epochs 25 --variants bayesian,deterministic ...]
      [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _real_membranes  # noqa: E402  (benchmarks/, the script's folder)
import _real_nuclei  # noqa: E402
import _shift_eval  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import bayesseg as bs  # noqa: E402

VARIANTS = (
    "bayesian",
    "bayesian_all",
    "deterministic",
    "mc_dropout",
    "ensemble",
    "partial_bayesian",
    "reparameterization",
)
# Variants whose models are Bayesian U-Nets trained with the ELBO.
BAYESIAN = {
    "bayesian": {},
    "bayesian_all": {"bayesian_blocks": "all"},
    "partial_bayesian": {"bayesian_blocks": "decoder"},
    "reparameterization": {"estimator": "reparameterization"},
}
KEYS = (
    "dice",
    "lesion_f1",
    "predictive_nll",
    "brier",
    "foreground_ece",
    "foreground_ece_floor",
    "foreground_shift",
    "train_foreground_ece",
    "train_foreground_ece_floor",
    "train_foreground_shift",
    "adaptive_ece",
    "adaptive_ece_floor",
    "uncertainty_auroc",
    "epistemic_share",
    "platt_predictive_nll",
    "platt_foreground_ece",
    "platt_foreground_ece_floor",
    "train_seconds",
)


def _likelihood(weights):
    return bs.losses.WeightedBinaryCrossentropy(class_weights=weights)


def _predict(model, x, weights, num_samples, training=None, calibration=None):
    """MC prediction, corrected for the class weights unless a calibration is given."""
    return bs.uncertainty.predict_mc(
        model,
        x,
        num_samples=num_samples,
        batch_size=16,
        verbose=0,
        training=training,
        correct_for_class_weights=None if calibration is not None else weights,
        calibration=calibration,
    )


def _calibration(truth, probs) -> dict:
    """NLL, foreground ECE with its floor, and the ECE's signed shift."""
    region = bs.metrics.foreground_calibration(truth, probs)
    return {
        "predictive_nll": bs.metrics.predictive_nll(truth, probs),
        "foreground_ece": region.ece,
        "foreground_ece_floor": bs.metrics.ece_noise_floor(probs),
        # observed foreground rate minus mean p_fg on the region: > 0 under-predicts
        "foreground_shift": region.region_foreground_rate - region.region_mean_probability,
    }


def _evaluate(pred, y) -> dict:
    probs = pred.mean[..., 0]
    truth = y[..., 0]
    dice = bs.metrics.Dice(class_id=1, from_logits=False)
    dice.update_state(y, pred.mean)
    errors = (probs >= 0.5) != (truth >= 0.5)
    return {
        "dice": float(dice.result()),
        "lesion_f1": bs.metrics.lesion_f1(truth, probs)["f1"],
        "brier": bs.metrics.brier_score(truth, probs),
        **_calibration(truth, probs),
        "adaptive_ece": bs.metrics.adaptive_ece(truth, probs),
        "adaptive_ece_floor": bs.metrics.ece_noise_floor(probs, bs.metrics.adaptive_ece),
        "uncertainty_auroc": bs.metrics.uncertainty_auroc(errors, pred.total),
        "epistemic_share": bs.uncertainty.epistemic_share(pred),
    }


def _fit(model, args, x, y) -> float:
    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, verbose=0)
    return time.perf_counter() - start


def run_seed(args, seed: int) -> dict:
    """Train the three variants on one seed's data; held-out metrics per variant."""
    keras.utils.set_random_seed(seed)
    shape = (args.size, args.size)
    if args.setting in REAL:
        # A real image (fixed split; the seed changes initialisation and batches).
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = REAL[args.setting].load()
        shape = x_train.shape[1:3]
    else:
        x_train, y_train = bs.data.synthetic_lesions(args.train, shape=shape, seed=seed)
        x_test, y_test = bs.data.synthetic_lesions(args.test, shape=shape, seed=seed + 1000)
        x_val, y_val = bs.data.synthetic_lesions(args.val, shape=shape, seed=seed + 2000)
    counts = bs.imbalance.count_classes(y_train, num_classes=2)
    weights = bs.imbalance.class_weights(counts, method="inverse_sqrt", normalize=True)
    bias = bs.imbalance.initial_bias(counts / counts.sum(), class_weights=weights)
    input_shape = (*shape, 1)
    common = {
        "base_filters": args.base_filters,
        "depth": args.depth,
        "output_bias": bias,
        "normalization": None if args.normalization == "none" else args.normalization,
    }
    posterior = {}
    if args.posterior_scale is not None:
        posterior["posterior_scale_init"] = args.posterior_scale
    if args.scale_multiplier is not None:
        posterior["scale_multiplier"] = args.scale_multiplier
    if args.prior_scale is not None:
        posterior["prior"] = bs.priors.Normal(args.prior_scale)

    def optimizer():
        return keras.optimizers.Adam(args.lr, global_clipnorm=1.0)

    wanted = args.variants.split(",")

    def build(name):
        if name in BAYESIAN:
            model = bs.models.bayesian_unet(input_shape, 1, **common, **posterior, **BAYESIAN[name])
            loss = bs.ELBO(_likelihood(weights), bs.kl.PerExample(len(x_train)))
        else:
            dropout = args.dropout if name == "mc_dropout" else 0.0
            model = bs.models.unet(input_shape, 1, dropout=dropout, **common)
            loss = _likelihood(weights)
        model.compile(optimizer=optimizer(), loss=loss)
        return model

    # Paired: every model is built and trained right after the same
    # set_random_seed, so the Bayesian U-Net's posterior means start at the
    # twin's weights and both see the same batches.
    models, seconds = {}, {}
    results = {"lesion_fraction": float(counts[1] / counts.sum())}
    for name in VARIANTS:
        if name == "ensemble" or (name not in wanted and name != "deterministic"):
            continue
        if name == "deterministic" and not {"deterministic", "ensemble"} & set(wanted):
            continue
        keras.utils.set_random_seed(seed)
        models[name] = build(name)
        seconds[name] = _fit(models[name], args, x_train, y_train)
    if "ensemble" in wanted:
        # The deterministic U-Net is member 0; the others differ in their
        # initialisation and batch order only, each with the same updates.
        members = [models["deterministic"]]
        member_seconds = [seconds["deterministic"]]
        for index in range(1, args.members):
            keras.utils.set_random_seed(seed * 1000 + index)
            member = build("deterministic")
            member_seconds.append(_fit(member, args, x_train, y_train))
            members.append(member)
        models["ensemble"] = bs.models.DeepEnsemble(members)
        seconds["ensemble"] = float(np.sum(member_seconds))
    sets = _shift_eval.shifted_sets(x_test, seed=seed + 3000)
    results["baselines"] = _shift_eval.baseline_aurocs(x_val, x_test, sets)
    for name in VARIANTS:
        if name not in wanted:
            continue
        model = models[name]
        samples = 1 if name == "deterministic" else args.samples
        training = True if name == "mc_dropout" else None

        def predict(x, model=model, samples=samples, training=training):
            return _predict(model, x, weights, samples, training)

        clean = predict(x_test)
        results[name] = _evaluate(clean, y_test)
        results[name].update(
            _shift_eval.variant_metrics(predict, y_test, clean, predict(x_val), sets)
        )
        # The same correction on images the model was fitted to: calibrated
        # there but not on held-out images means the gap is generalisation,
        # not the correction.
        pred = predict(x_train[: len(x_test)])
        fitted = _calibration(y_train[: len(x_test), ..., 0], pred.mean[..., 0])
        for key in ("foreground_ece", "foreground_ece_floor", "foreground_shift"):
            results[name][f"train_{key}"] = fitted[key]
        # Platt scaling fitted on held-out validation images (not the test set).
        platt = bs.calibration.fit_calibration(
            model, x_val, y_val, num_samples=samples, training=training
        )
        pred = _predict(model, x_test, None, samples, training, calibration=platt)
        calibrated = _calibration(y_test[..., 0], pred.mean[..., 0])
        for key in ("predictive_nll", "foreground_ece", "foreground_ece_floor"):
            results[name][f"platt_{key}"] = calibrated[key]
        results[name]["train_seconds"] = seconds[name]
    return results


def _print_table(summary, columns, keys, seeds) -> None:
    print(
        f"\n{'mean +- std over ' + str(seeds) + ' seeds':<34}"
        + "".join(f"{c:>22}" for c in columns)
    )
    for key in keys:
        cells = "".join(
            f"{summary[c][key][0]:>13.4f} +-{summary[c][key][1]:<7.4f}" for c in columns
        )
        print(f"{key:<34}{cells}")


# --setting: the values of the flags left unset.
_TOUR = {"base_filters": 8, "normalization": "none", "lr": 2e-3, "batch": 16, "epochs": 12}
SETTINGS = {
    "bench": {"base_filters": 16, "normalization": "batch", "lr": 3e-3, "batch": 8, "epochs": 25},
    "tour": _TOUR,
    # The tour's network on a real image (_real_nuclei.py), for confirmation.
    "nuclei": _TOUR,
    # The same on electron-microscopy sections (_real_membranes.py), for screening.
    "membranes": _TOUR,
}
REAL = {"nuclei": _real_nuclei, "membranes": _real_membranes}


def main(argv=None) -> dict:
    """Train the variants over the seeds; print mean and spread of each figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=tuple(SETTINGS), default="bench")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1"
    )
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument(
        "--val", type=int, default=50, help="held-out images that Platt scaling is fitted on"
    )
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--base-filters", type=int, default=None)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument(
        "--members", type=int, default=5, help="deep ensemble size (member 0: deterministic)"
    )
    parser.add_argument(
        "--normalization",
        choices=("none", "batch", "group"),
        default=None,
        help="normalization of the U-Net blocks (every variant)",
    )
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument(
        "--posterior-scale",
        type=float,
        default=None,
        help="override posterior_scale_init of the Bayesian U-Net (default: the library's)",
    )
    parser.add_argument(
        "--scale-multiplier",
        type=float,
        default=None,
        help="override scale_multiplier of the Bayesian U-Net (default: the library's)",
    )
    parser.add_argument(
        "--prior-scale",
        type=float,
        default=None,
        help="override the Normal prior's scale of the Bayesian U-Net (default: the library's)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated subset of " + ",".join(VARIANTS),
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    for name, value in SETTINGS[args.setting].items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    config = {**vars(args), "shift_severities": bs.data.SHIFT_SEVERITIES}
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        runs.append(run_seed(args, seed))
        runs[-1]["seed"] = seed
        print(f"seed {seed}: " + json.dumps({v: runs[-1][v] for v in variants}), flush=True)
        if args.json:  # partial results survive an interrupted run
            with open(args.json, "w") as handle:
                json.dump({"config": config, "runs": runs}, handle, indent=2)
    groups = {v: runs[0][v].keys() for v in variants}
    groups["baselines"] = runs[0]["baselines"].keys()
    summary = {
        group: {
            k: (
                float(np.nanmean([r[group][k] for r in runs])),
                float(np.nanstd([r[group][k] for r in runs])),
            )
            for k in keys
        }
        for group, keys in groups.items()
    }
    _print_table(summary, variants, KEYS, args.seeds)
    shift_keys = [k for k in groups[variants[0]] if k not in KEYS]
    _print_table(summary, variants, shift_keys, args.seeds)
    _print_table(summary, ["baselines"], list(groups["baselines"]), args.seeds)
    result = {"config": config, "runs": runs, "summary": summary}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
