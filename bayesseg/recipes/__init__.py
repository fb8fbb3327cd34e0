"""Recipes: what the command line runs, public and typed, one per task.

A recipe holds every default of a task once (a frozen config dataclass),
builds and compiles the model, trains it, chooses what a prediction needs
(a decision threshold, a calibration) and returns a run object that
predicts and saves. ``bayesseg train``, ``bayesseg demo``, the benchmarks and
the examples all call these functions.

* :mod:`bayesseg.recipes.segmentation`: the Bayesian U-Net with a
  class-weighted ELBO (``bayesseg train``, ``bayesseg demo --task lesion |
  multiclass``);
* :mod:`bayesseg.recipes.series`: the Bayesian LSTM tagger for rare events
  in series of any lengths (``bayesseg train --task series``).

Both recipes can fit a recall guarantee on held-out items
(:func:`fit_recall_guarantee`, :meth:`SeriesRun.fit_recall_guarantee`):
a :class:`RecallGuarantee`, the threshold of conformal risk control that
``bayesseg train --recall-target`` saves and ``bayesseg predict`` applies.
"""

from bayesseg.recipes._guarantee import RecallGuarantee, min_recall_items
from bayesseg.recipes.segmentation import (
    CLASS_DEPENDENT_DEFAULTS,
    SegmentationConfig,
    SegmentationRun,
    build_segmentation_model,
    fit_recall_guarantee,
    foreground_probability,
    segmentation_imbalance,
    train_segmentation,
)
from bayesseg.recipes.series import (
    SeriesConfig,
    SeriesData,
    SeriesPrediction,
    SeriesRun,
    build_series_model,
    predict_series,
    prepare_series,
    split_series,
    train_series,
)

__all__ = [
    "CLASS_DEPENDENT_DEFAULTS",
    "RecallGuarantee",
    "SegmentationConfig",
    "SegmentationRun",
    "SeriesConfig",
    "SeriesData",
    "SeriesPrediction",
    "SeriesRun",
    "build_segmentation_model",
    "build_series_model",
    "fit_recall_guarantee",
    "foreground_probability",
    "min_recall_items",
    "predict_series",
    "prepare_series",
    "segmentation_imbalance",
    "split_series",
    "train_segmentation",
    "train_series",
]
