"""The report the commands write: held-out evaluation, per-class scores,
calibration figures, JSON-safe numbers, ``report.json``, the printed demo
summary and the library versions. TensorFlow is imported inside the
functions only.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

# The lesion-wise detection figures a report keeps.
_LESION_KEYS = ("precision", "recall", "f1", "true_lesions", "pred_lesions", "detected")


def _chance_row(chance: dict[str, Any]) -> dict[str, Any]:
    """The floor a report keeps beside the lesion-wise F1, from ``bs.metrics.lesion_chance``:
    the whole image predicted as foreground."""
    return {
        "whole_image_lesion_f1": chance["whole_image"]["f1"],
        "voxel_f1_flag_all": chance["voxel_f1_flag_all"],
    }


def _versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow as tf
    import tensorflow_probability as tfp

    import bayesseg

    return {
        "bayesseg": bayesseg.__version__,
        "tensorflow": tf.__version__,
        "tensorflow_probability": tfp.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
    }


def _final_logs(history) -> dict[str, float]:
    """The last epoch's logs of a Keras ``History`` or of its ``history`` dict."""
    logs = history if isinstance(history, dict) else history.history
    return {key: float(values[-1]) for key, values in logs.items() if values}


def _finite(value: Any) -> Any:
    """JSON-safe numbers: NaN/inf become None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _read_json(path: Path) -> dict:
    """A JSON object the commands wrote earlier; the file named on any damage."""
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"Cannot read {str(path)!r}: not valid JSON ({err}).") from err
    if not isinstance(content, dict):
        raise ValueError(f"Cannot read {str(path)!r}: expected a JSON object.")
    return content


def _write_json(path: Path, content: Any) -> None:
    """``content`` as indented JSON, NaN/inf written as null."""
    with open(path, "w") as f:
        json.dump(_finite(content), f, indent=2)


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------
def _confusion(labels, outputs, num_classes: int):
    """The ``(K, K)`` confusion counts (rows: truth, columns: decision) of one prediction.

    ``outputs``: the mean probabilities ``(..., K)``, one channel for 2
    classes; the decision is that of bayesseg's Keras metrics (``p >= 0.5``
    or the argmax, ``_probability.hard_labels``). The counting is
    :mod:`bayesseg.metrics.per_class`'s; these matrices add up over images.
    """
    import numpy as np

    from bayesseg import _probability
    from bayesseg.metrics.per_class import _confusion_matrix

    outputs = np.asarray(outputs)
    truth = np.asarray(labels)
    if outputs.shape[-1] == 1:
        truth = truth >= 0.5
    return _confusion_matrix(truth, _probability.hard_labels(outputs), num_classes)


def _confusion_scores(confusion) -> dict[str, dict[str, float | None]]:
    """Pooled Dice / recall / precision and support per class from confusion counts.

    ``bs.metrics.per_class_scores`` of the ``(K, K)`` matrix's TP / FP / FN,
    keyed by the class as a string (JSON's keys), with its one rule for an
    empty denominator: the score is None (``null`` in report.json). Where
    defined, the numbers are those of ``bs.metrics.Dice(class_id=c)``,
    ``Recall`` and ``Precision`` (which report a 0/0 as 0), counted once for
    all classes instead of once per class and metric (96 Keras metric passes
    over a 200-image, 32-class prediction took 20 s).
    """
    import bayesseg as bs
    from bayesseg.metrics.per_class import _counts_from_matrix

    rows = bs.metrics.per_class_scores(_counts_from_matrix(confusion))
    return {str(c): dict(row) for c, row in rows.items()}


def _per_class(labels, outputs, num_classes: int) -> dict[str, dict[str, float]]:
    """Pooled Dice / recall / precision per class of one prediction (see ``_confusion``)."""
    return _confusion_scores(_confusion(labels, outputs, num_classes))


def _foreground_classes(per_class: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Means of the per-class scores over the foreground classes present.

    A multi-class model is judged by these (a macro average, every class
    counting once), never by a foreground-vs-background figure: "lesion-wise
    F1 0.99" is what a model that finds every blob but names none of them
    right scores. Classes absent from the labels (support 0) have no recall
    and are left out; ``zero_recall`` lists the present classes never found
    and ``lowest_recall`` names the weakest one (a class at recall 0.01 is
    all but missed, though not at 0).

    >>> rows = {"0": {"recall": 0.99, "dice": 0.99, "support": 900},
    ...         "1": {"recall": 0.5, "dice": 0.4, "support": 60},
    ...         "2": {"recall": 0.0, "dice": 0.0, "support": 40},
    ...         "3": {"recall": float("nan"), "dice": float("nan"), "support": 0}}
    >>> summary = _foreground_classes(rows)
    >>> summary["present"], summary["recall"], summary["dice"], summary["zero_recall"]
    (2, 0.25, 0.2, [2])
    >>> summary["lowest_recall"]
    {'class': 2, 'recall': 0.0}
    """
    rows = {int(c): row for c, row in per_class.items() if int(c) > 0 and row["support"] > 0}
    if not rows:
        return {
            "present": 0,
            "recall": None,
            "dice": None,
            "zero_recall": [],
            "lowest_recall": None,
        }
    lowest = min(rows, key=lambda c: rows[c]["recall"])
    return {
        "present": len(rows),
        "recall": sum(row["recall"] for row in rows.values()) / len(rows),
        "dice": sum(row["dice"] for row in rows.values()) / len(rows),
        "zero_recall": sorted(c for c, row in rows.items() if row["recall"] == 0),
        "lowest_recall": {"class": lowest, "recall": rows[lowest]["recall"]},
    }


def _mean_probs(pred, num_classes: int):
    """The Monte Carlo mean probabilities: foreground (binary) or every class."""
    return pred.mean[..., 0] if num_classes == 2 else pred.mean


def _uncertainty_auroc(errors, uncertainty) -> float | None:
    import bayesseg as bs

    try:
        return bs.metrics.uncertainty_auroc(errors, uncertainty)
    except ValueError:
        return None  # no errors (or only errors): the AUROC is undefined


def _evaluate(model, images, labels, num_classes: int, weights, num_samples: int) -> dict:
    """Held-out metrics of one model from Monte Carlo predictions (and the prediction)."""
    import bayesseg as bs
    from bayesseg import _probability

    pred = bs.uncertainty.predict_mc(model, images, num_samples=num_samples, verbose=0)
    probs = _mean_probs(pred, num_classes)
    hard = _probability.hard_labels(pred.mean)
    foreground = _probability.foreground_probability(pred.mean)
    lesions = bs.metrics.lesion_f1(labels > 0, foreground)
    per_class = _per_class(labels, pred.mean, num_classes)
    result = {
        "per_class": per_class,
        "foreground_classes": _foreground_classes(per_class),
        "lesion_f1": {k: v for k, v in lesions.items() if k in _LESION_KEYS},
        "chance": _chance_row(bs.metrics.lesion_chance(labels > 0)),
        "uncertainty_auroc": _uncertainty_auroc(hard != labels, pred.total),
        "mean_epistemic": float(pred.epistemic.mean()),
        "mean_aleatoric": float(pred.aleatoric.mean()),
        **_calibration(labels, probs),
    }
    calibrated = pred
    if weights is not None:
        # The weighted likelihood shifts probabilities towards rare classes;
        # undoing that shift gives calibrated probabilities.
        calibrated = bs.uncertainty.predict_mc(
            model,
            images,
            num_samples=num_samples,
            verbose=0,
            correct_for_class_weights=weights,
        )
        result["corrected_for_class_weights"] = _calibration(
            labels, _mean_probs(calibrated, num_classes)
        )
    result["epistemic_share"] = bs.uncertainty.epistemic_share(calibrated)
    return result, pred


def _calibration(labels, probs) -> dict:
    """Foreground and adaptive ECE next to their noise floors, the region, the NLL."""
    import bayesseg as bs

    details = bs.metrics.foreground_calibration(labels, probs)
    return {
        "foreground_ece": details.ece,
        "foreground_ece_floor": bs.metrics.ece_noise_floor(probs),
        "adaptive_ece": bs.metrics.adaptive_ece(labels, probs),
        "adaptive_ece_floor": bs.metrics.ece_noise_floor(probs, bs.metrics.adaptive_ece),
        "ece_region_pixels": details.region_size,
        "region_mean_probability": details.region_mean_probability,
        "region_foreground_rate": details.region_foreground_rate,
        "excluded_mean_probability": details.excluded_mean_probability,
        "excluded_foreground_rate": details.excluded_foreground_rate,
        "predictive_nll": bs.metrics.predictive_nll(labels, probs),
    }


def _plot_training(history, diagnostics, out: Path) -> None:
    """training.png, and gradients.png when the diagnostics recorded anything."""
    import bayesseg as bs

    bs.plots.plot_training(history, out / "training.png")
    if diagnostics.records:
        bs.plots.plot_gradient_contributions(diagnostics.records, out / "gradients.png")


# --------------------------------------------------------------------------
# The printed summary
# --------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _per_class_lines(report: dict) -> list[str]:
    data = report["data"]
    lines = [
        "",
        f"bayesseg demo ({report['task']}): {data['train_images']} training, "
        f"{data['test_images']} held-out images, "
        f"foreground {100 * data['foreground_fraction']:.2f}% of pixels",
    ]
    if data["num_classes"] > 2:
        # A multi-class run leads with what it is judged by: every class once.
        fg = report["metrics"]["foreground_classes"]
        missed = ", ".join(map(str, fg["zero_recall"])) or "none"
        lowest = fg["lowest_recall"]
        weakest = ""
        if lowest is not None:
            weakest = f"; lowest: class {lowest['class']} at {_fmt(lowest['recall'])}"
        lines.append(
            f"mean over the {fg['present']} foreground classes present: recall "
            f"{_fmt(fg['recall'])}, Dice {_fmt(fg['dice'])}; at recall 0: {missed}{weakest}"
        )
    lines.append(f"{'class':>7}{'dice':>9}{'recall':>9}{'precision':>11}{'support':>10}")
    for c, row in report["metrics"]["per_class"].items():
        lines.append(
            f"{c:>7}{_fmt(row['dice']):>9}{_fmt(row['recall']):>9}{_fmt(row['precision']):>11}"
            f"{row['support']:>10d}"
        )
    return lines


def _quality_lines(metrics: dict, num_classes: int) -> list[str]:
    calibrated = metrics.get("corrected_for_class_weights", metrics)
    which = "class-weight corrected" if "corrected_for_class_weights" in metrics else "as trained"
    # With many classes the blob-wise F1 only says foreground was told from
    # background, whatever class it was given: say so where it is printed.
    detection = "foreground vs background: lesion-wise F1" if num_classes > 2 else "lesion-wise F1"
    chance = metrics["chance"]
    return [
        f"{detection} {_fmt(metrics['lesion_f1']['f1'])} (whole image predicted: "
        f"{_fmt(chance['whole_image_lesion_f1'])}; foreground Dice of flagging every pixel: "
        f"{_fmt(chance['voxel_f1_flag_all'])})",
        f"uncertainty AUROC "
        f"{_fmt(metrics['uncertainty_auroc'])}   epistemic share "
        f"{_fmt(metrics['epistemic_share'])}",
        f"{which}: foreground ECE {_fmt(calibrated['foreground_ece'])} "
        f"(noise floor {_fmt(calibrated['foreground_ece_floor'])}, "
        f"{calibrated['ece_region_pixels']} pixels)   adaptive ECE "
        f"{_fmt(calibrated['adaptive_ece'])} (floor {_fmt(calibrated['adaptive_ece_floor'])})"
        f"   predictive NLL {calibrated['predictive_nll']:.4f}",
    ]


def _comparison_lines(comparison: dict) -> list[str]:
    lines = [f"{'lesion recall':<28}{'weighted ELBO':>15}{'plain BCE':>12}"]
    for key, pair in comparison.items():
        lines.append(
            f"{key.replace('_', ' '):<28}{_fmt(pair['weighted_elbo']):>15}{_fmt(pair['bce']):>12}"
        )
    return lines


def _print_demo_summary(report: dict, out: Path) -> None:
    lines = _per_class_lines(report)
    lines += _quality_lines(report["metrics"], report["data"]["num_classes"])
    if "comparison" in report:
        lines += _comparison_lines(report["comparison"])
    lines.append(
        f"wrote {out / 'report.json'}, uncertainty.png, training.png, gradients.png "
        f"in {report['runtime_seconds']:.0f} s"
    )
    print("\n".join(lines))
