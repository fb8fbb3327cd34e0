"""Shift detection, risk-coverage and per-lesion uncertainty for bench_quality.py.

Every variant is scored on the same shifted copies of the held-out images
(``bs.data.shift_images``: noise, blur and inversion through the deployed
pipeline's per-image z-score; the intensity gain without it, since the
z-score removes a gain exactly). Per image, the variant's
``bs.uncertainty.image_scores`` rank shifted above clean images; the AUROC of
that ranking is reported next to two baselines:

* ``input_stats``: a plain input-statistic detector, the Mahalanobis
  distance of the image's (mean, log standard deviation) from those of the
  clean validation images, computed on the model's input;
* ``input_stats_raw``: the same detector on the shifted image before the
  z-score (the acquired image), its strongest reading;
* the deterministic U-Net's mean predictive entropy (the ``mean_total``
  AUROC of the deterministic variant).
"""

from __future__ import annotations

import numpy as np

import bayesseg as bs

# (kind, standardize): the pipeline each shift is seen through.
SHIFTS = (("noise", True), ("blur", True), ("intensity", False), ("inversion", True))
LEVELS = (1, 2, 3)
SCORES = ("mean_epistemic", "mean_total", "uncertain_fraction")


def shifted_sets(x: np.ndarray, seed: int) -> dict[tuple[str, int], dict]:
    """Shifted copies of ``x`` per (kind, level): the model's input and the raw image."""
    sets = {}
    for kind, standardize in SHIFTS:
        for level in LEVELS:
            if kind == "inversion" and level > 1:
                continue  # no parameter: one level
            raw = bs.data.shift_images(x, kind, level, seed=seed, standardize=False)
            model_input = (
                bs.data.shift_images(x, kind, level, seed=seed, standardize=True)
                if standardize
                else raw
            )
            sets[(kind, level)] = {"x": model_input.astype("float32"), "raw": raw}
    return sets


def _statistics(x: np.ndarray) -> np.ndarray:
    """Per image (mean, log std), rounded to 1e-6 (about float32's resolution),
    so that round-off of the z-score is not read as a shift."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    return np.round(np.stack([flat.mean(1), np.log(flat.std(1) + 1e-12)], axis=1), 6)


def input_statistic_scores(reference: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each image's (mean, log std) from ``reference``'s."""
    ref = _statistics(reference)
    center = ref.mean(0)
    cov = np.cov(ref, rowvar=False) + 1e-12 * np.eye(2)
    diff = _statistics(x) - center
    return np.sqrt(np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff))


def _auroc(clean: np.ndarray, shifted: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(clean)), np.ones(len(shifted))]
    return bs.metrics.uncertainty_auroc(labels, np.r_[clean, shifted])


def _pipeline(x: np.ndarray, standardize: bool) -> np.ndarray:
    """``x`` as the shifted images reach the model: z-scored per image, or as is."""
    if not standardize:
        return x
    return np.stack([bs.data.standardize_image(image) for image in x])


def baseline_aurocs(x_val, x_test, sets) -> dict[str, float]:
    """The input-statistic detectors' AUROC per shifted set (flat keys).

    The clean images pass through the same pipeline as the shifted ones
    (the library's per-image z-score where the shift is seen through it):
    the synthetic images carry their own, equivalent normalisation, whose
    last-digit differences a detector of exact statistics would otherwise
    pick up instead of the shift.
    """
    out = {}
    through = dict(SHIFTS)
    for (kind, level), data in sets.items():
        reference, clean = (_pipeline(x, through[kind]) for x in (x_val, x_test))
        out[f"{kind}{level}_auroc_input_stats"] = _auroc(
            input_statistic_scores(reference, clean),
            input_statistic_scores(reference, data["x"]),
        )
        out[f"{kind}{level}_auroc_input_stats_raw"] = _auroc(
            input_statistic_scores(x_val, x_test), input_statistic_scores(x_val, data["raw"])
        )
    return out


def _dice(y, probs) -> float:
    metric = bs.metrics.Dice(class_id=1, from_logits=False)
    metric.update_state(y, probs[..., None])
    return float(metric.result())


def variant_metrics(predict, y_test, clean_pred, reference_pred, sets) -> dict[str, float]:
    """Shift AUROCs, shifted Dice, AURC (clean and pooled) and per-lesion AUROCs.

    ``predict(x)`` returns the variant's class-weight-corrected MCPrediction;
    ``clean_pred`` is its prediction on the clean held-out images,
    ``reference_pred`` on the clean validation images: the reference of the
    two-sided scores (``auroc2``: ``bs.uncertainty.atypicality``, a shift
    that makes the model more certain counts as well).
    """
    truth = y_test[..., 0]
    clean_scores = bs.uncertainty.image_scores(clean_pred).as_dict()
    reference = bs.uncertainty.image_scores(reference_pred).as_dict()

    def atypical(name, values):
        return bs.uncertainty.atypicality(values, reference[name])

    clean_probs = clean_pred.mean[..., 0]
    out = {}
    pooled_risk = [1 - bs.metrics.per_image_dice(truth, clean_probs)]
    pooled_scores = {name: [clean_scores[name]] for name in SCORES}
    for (kind, level), data in sets.items():
        pred = predict(data["x"])
        scores = bs.uncertainty.image_scores(pred).as_dict()
        prefix = f"{kind}{level}"
        out[f"{prefix}_dice"] = _dice(y_test, pred.mean[..., 0])
        for name in SCORES:
            out[f"{prefix}_auroc_{name}"] = _auroc(clean_scores[name], scores[name])
        for name in ("mean_epistemic", "mean_total"):
            out[f"{prefix}_auroc2_{name}"] = _auroc(
                atypical(name, clean_scores[name]), atypical(name, scores[name])
            )
        if level == 2 or kind == "inversion":
            pooled_risk.append(1 - bs.metrics.per_image_dice(truth, pred.mean[..., 0]))
            for name in SCORES:
                pooled_scores[name].append(scores[name])
    clean_risk = pooled_risk[0]
    pooled = np.concatenate(pooled_risk)
    for name in ("mean_epistemic", "mean_total"):
        curve = bs.metrics.risk_coverage(clean_risk, clean_scores[name])
        out[f"aurc_clean_{name}"] = curve.aurc
        curve = bs.metrics.risk_coverage(pooled, np.concatenate(pooled_scores[name]))
        out[f"aurc_pooled_{name}"] = curve.aurc
    for where, risk in (("clean", clean_risk), ("pooled", pooled)):
        out[f"aurc_{where}_optimal"] = bs.metrics.risk_coverage(risk, risk).optimal_aurc
        out[f"aurc_{where}_random"] = float(np.mean(risk))
    for name, values in (("total", clean_pred.total), ("epistemic", clean_pred.epistemic)):
        lesions = bs.metrics.lesion_uncertainty(truth, clean_probs, values)
        out[f"lesion_missed_auroc_{name}"] = lesions.missed_auroc
    out["lesions_missed"] = float(np.sum(~lesions.detected))
    out["lesions"] = float(len(lesions.detected))
    return out
