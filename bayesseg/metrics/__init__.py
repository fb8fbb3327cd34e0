"""Segmentation metrics for imbalanced data: overlap, detection, calibration.

* :mod:`~bayesseg.metrics.confusion`: Keras metrics (:class:`Dice`,
  :class:`F1`, :class:`IoU`, :class:`Recall`, :class:`Precision`) for one
  class, pooled over the whole evaluation set: true positives, false
  positives and false negatives are summed over every batch and the score is
  computed once from the totals (a micro average over elements, not a mean of
  per-batch or per-image scores).
* :mod:`~bayesseg.metrics.per_class`: the NumPy owner of per-class
  confusion counts, :func:`confusion_counts` (TP / FP / FN of every class of
  hard labels) and :func:`per_class_scores` (Dice, recall, precision and
  support from them; a score whose denominator is 0 is None).
* :mod:`~bayesseg.metrics.detection`: :func:`lesion_f1`, lesion-wise
  detection scores from connected components matched one to one at IoU >=
  ``LESION_IOU_THRESHOLD`` (0.1), :func:`lesion_chance`, what predicting
  the whole image scores on them, and
  :func:`lesion_uncertainty` (:class:`LesionUncertainty`): each true
  lesion's mean uncertainty and whether it was detected.
* :mod:`~bayesseg.metrics.calibration`: NumPy calibration metrics,
  :func:`foreground_calibration` (:class:`ForegroundCalibration`),
  :func:`foreground_ece`, :func:`adaptive_ece`, :func:`classwise_ece`,
  :func:`top_label_ece`, :func:`ece_noise_floor`, :func:`reliability_curve`.
  Foreground ECEs select elements by the prediction only (``p_fg >=
  threshold``), never by the true label, so a calibrated predictor scores
  near its noise floor.
* :mod:`~bayesseg.metrics.scores`: :func:`brier_score`,
  :func:`predictive_nll` and :func:`uncertainty_auroc`.
* :mod:`~bayesseg.metrics.events`: rare events in series (arrays or lists
  of series of any lengths), :func:`average_precision` of per-step scores
  (the area under the precision-recall curve), :func:`event_f1`, recall
  per event and precision per flagged step within a tolerance of
  ``DEFAULT_EVENT_TOLERANCE`` steps (a score that pays for the extent of
  alarms), :func:`event_chance`, what flagging everything or at random
  scores on it, and :func:`choose_threshold`, the decision threshold a
  validation split supports best (event F1, or a target event recall).
* :mod:`~bayesseg.metrics.selective`: :func:`risk_coverage`
  (:class:`RiskCoverage`), the risk-coverage curve and its area (AURC) for
  setting the most uncertain items aside, and :func:`per_image_dice`.

Probability arrays follow one convention: ``probs`` of shape ``(..., C)``
(C >= 2, softmax probabilities) with integer labels ``y_true`` of shape
``(...)`` or ``(..., 1)``; or binary foreground probabilities of shape
``(..., 1)`` or ``(...)``, the same shape as ``y_true`` holding 0/1.

Example:
    >>> import numpy as np
    >>> from bayesseg.metrics import brier_score
    >>> brier_score(np.array([1.0, 0.0]), np.array([0.9, 0.2]))
    0.025
"""

from bayesseg.metrics.calibration import (
    FOREGROUND_THRESHOLD,
    ForegroundCalibration,
    adaptive_ece,
    classwise_ece,
    ece_noise_floor,
    foreground_calibration,
    foreground_ece,
    reliability_curve,
    top_label_ece,
)
from bayesseg.metrics.confusion import F1, Dice, IoU, Precision, Recall
from bayesseg.metrics.detection import (
    LESION_IOU_THRESHOLD,
    LesionUncertainty,
    lesion_chance,
    lesion_f1,
    lesion_uncertainty,
)
from bayesseg.metrics.events import (
    DEFAULT_EVENT_TOLERANCE,
    MAX_ALARMS_PER_POSITIVE,
    THRESHOLD_CRITERIA,
    average_precision,
    choose_threshold,
    event_chance,
    event_f1,
)
from bayesseg.metrics.per_class import confusion_counts, per_class_scores
from bayesseg.metrics.scores import brier_score, predictive_nll, uncertainty_auroc
from bayesseg.metrics.selective import RiskCoverage, per_image_dice, risk_coverage

__all__ = [
    "DEFAULT_EVENT_TOLERANCE",
    "Dice",
    "F1",
    "FOREGROUND_THRESHOLD",
    "ForegroundCalibration",
    "IoU",
    "LESION_IOU_THRESHOLD",
    "LesionUncertainty",
    "MAX_ALARMS_PER_POSITIVE",
    "Precision",
    "Recall",
    "RiskCoverage",
    "THRESHOLD_CRITERIA",
    "adaptive_ece",
    "average_precision",
    "brier_score",
    "choose_threshold",
    "classwise_ece",
    "confusion_counts",
    "ece_noise_floor",
    "event_chance",
    "event_f1",
    "foreground_calibration",
    "foreground_ece",
    "lesion_chance",
    "lesion_f1",
    "lesion_uncertainty",
    "per_class_scores",
    "per_image_dice",
    "predictive_nll",
    "reliability_curve",
    "risk_coverage",
    "top_label_ece",
    "uncertainty_auroc",
]
