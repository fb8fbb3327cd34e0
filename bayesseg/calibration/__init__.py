"""Post-hoc calibration of logits, fitted on held-out data.

A class-weighted (or otherwise tilted) likelihood leaves a model whose
probabilities are shifted towards the rare classes, and any network can be
over- or under-confident. Two small maps of the logits, fitted by minimising
the NLL on held-out images (never the test images), fix both:

* :class:`PlattScaling` for one sigmoid logit: ``z' = slope * z + bias``;
* :class:`TemperatureScaling` for ``K`` softmax logits: ``z' = z / T + b``
  with a temperature ``T`` and a per-class bias vector ``b``.

Both are Keras layers (non-trainable, registered as ``bayesseg>PlattScaling``
and ``bayesseg>TemperatureScaling``): call them on logit tensors, put them in
a model, save them in a ``.keras`` file or as JSON
(``keras.saving.serialize_keras_object``); they load with ``safe_mode=True``.
:func:`fit_calibration` collects a model's per-draw Monte Carlo logits on
validation data and fits the right one; ``bs.uncertainty.predict_mc(...,
calibration=...)`` applies it to every draw.

**Relation to the class-weight correction.** With weighted BCE (weights
``w0``, ``w1``) the optimum's logit is the true log-odds plus ``log(w1 /
w0)``. ``predict_mc(correct_for_class_weights=(w0, w1))`` subtracts exactly
that shift, and is exact only if the model reached that optimum. Platt's
bias learns the shift from held-out data (``PlattScaling.from_class_weights``
is the class-weight correction written as a Platt map: slope 1, bias
``-log(w1 / w0)``), together with any other miscalibration; the slope
corrects over- or under-confidence. The same holds per class for the
multi-class bias (``-log w_c``). The two are alternatives: ``predict_mc``
refuses both at once.

Modules: :mod:`~bayesseg.calibration.base` (:class:`LogitCalibrator`, the
fits), :mod:`~bayesseg.calibration.scaling` (the two maps),
:mod:`~bayesseg.calibration.fitting` (:func:`fit_calibration`) and
:mod:`~bayesseg.calibration.conformal` (:class:`ConformalRiskControl`: a
decision threshold, chosen on held-out images or series, whose expected
per-image false negative rate, fraction of events missed or custom loss on
new items is at most ``alpha``: conformal risk control).

Example:
    >>> import bayesseg as bs
    >>> bs.calibration.PlattScaling(slope=0.5).slope_value
    0.5
"""

from bayesseg.calibration.base import DEFAULT_MAX_ELEMENTS, LogitCalibrator
from bayesseg.calibration.conformal import ConformalRiskControl
from bayesseg.calibration.fitting import fit_calibration
from bayesseg.calibration.scaling import PlattScaling, TemperatureScaling

__all__ = [
    "ConformalRiskControl",
    "DEFAULT_MAX_ELEMENTS",
    "LogitCalibrator",
    "PlattScaling",
    "TemperatureScaling",
    "fit_calibration",
]
