"""Monte Carlo prediction: :func:`predict_mc` and its traced loop over the draws.

Models output logits (the bayesseg convention): one channel is a sigmoid
(binary) output, ``C > 1`` channels a softmax over the last axis
(:mod:`bayesseg._probability`). The draws are accumulated inside one
``tf.function``; :mod:`~bayesseg.uncertainty.decomposition` turns their sums
into the total / aleatoric / epistemic maps.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bayesseg import _probability
from bayesseg._input_shapes import fits, model_input_shapes, show
from bayesseg._tiling import check_patch_size
from bayesseg._validation import argument_error, check_float, check_int
from bayesseg.imbalance import unweight_probabilities
from bayesseg.layers.model_functions import bayesian_layers, check_sampling
from bayesseg.uncertainty import _prefix, _windows
from bayesseg.uncertainty._members import Member, plan_draws
from bayesseg.uncertainty._sampling import mc_randomness, resolve_training
from bayesseg.uncertainty.decomposition import MCPrediction, decompose

__all__ = ["predict_mc"]

# Traced Monte Carlo functions per model, keyed by everything read at trace
# time, so repeated calls (evaluation loops, benchmarks) do not retrace.
_FUNCTION_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _class_weight_logit_shift(class_weights: Any, num_outputs: int) -> np.ndarray | None:
    """Logit offsets that undo a class-weighted likelihood's prior shift.

    ``p_c ∝ p_c / w_c`` is ``logit_c - log w_c`` before the softmax; for a
    sigmoid output it is ``z - log(w1 / w0)``.
    """
    if class_weights is None:
        return None
    weights = np.asarray(class_weights, dtype=np.float64)
    expected = _probability.num_classes(num_outputs)
    if weights.shape != (expected,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ValueError(
            "Argument `correct_for_class_weights` must hold one finite weight > 0 "
            f"per class ({expected} for a model with {num_outputs} output "
            f"channel(s)). Received: correct_for_class_weights={class_weights!r}"
        )
    if num_outputs == 1:
        return np.array([-math.log(weights[1] / weights[0])], dtype=np.float32)
    return (-np.log(weights)).astype(np.float32)


def _inexact_correction_losses(model: keras.layers.Layer) -> list[str]:
    """Names of compiled losses for which ``p_c / w_c`` does not undo the weights.

    The correction is exact for class-weighted cross-entropy (and for
    resampling): their optimum is ``q_c ∝ w_c p_c``. Focal, Dice and
    hard-negative-mining losses move the optimum in other, data-dependent
    ways, so dividing by the weights leaves the probabilities miscalibrated.
    """
    from bayesseg import losses
    from bayesseg.elbo import ELBO

    inexact = (
        losses.BinaryFocalLoss,
        losses.CategoricalFocalLoss,
        losses.DiceLoss,
        losses.HardNegativeMining,
    )
    compiled = getattr(model, "loss", None)
    if compiled is None:
        return []
    if isinstance(compiled, dict):
        compiled = list(compiled.values())
    found = []
    for loss in compiled if isinstance(compiled, list | tuple) else [compiled]:
        likelihood = loss.likelihood if isinstance(loss, ELBO) else loss
        if isinstance(likelihood, inexact):
            found.append(type(likelihood).__name__)
    return found


def _mc_function(
    model: keras.Model,
    num_samples: int,
    training: bool,
    from_logits: bool,
    class_weights: tuple[float, ...] | None,
    input_shape: tuple[int, ...],
    dtype: tf.DType,
    calibration=None,
):
    """One ``tf.function``: ``T`` draws on a batch -> (sum of p, sum of H[p])."""
    sampling = tuple(layer.sampling for layer in bayesian_layers(model))
    # The calibrator's identity is part of the key; the cached function holds
    # it (its variables), so the id cannot be reused while the entry lives.
    calibration_key = None if calibration is None else id(calibration)
    key = (
        num_samples,
        training,
        from_logits,
        class_weights,
        input_shape,
        sampling,
        calibration_key,
        _prefix.SHARE,
    )
    cache = _FUNCTION_CACHE.setdefault(model, {})
    if key in cache:
        return cache[key]
    weights = None if class_weights is None else np.asarray(class_weights)
    # A weak reference: the cached function must not keep its model alive.
    model_ref = weakref.ref(model)
    # Without training-mode randomness, the layers before the first Bayesian
    # one compute the same tensors in every draw: computed once per batch.
    split = _prefix.shared_split(model, training)

    def forward(x):
        if split is not None:
            return split.suffix(x, training=False)  # x: the prefix's tensors
        return model_ref()(x, training=training)

    def draw(x):
        out = tf.cast(forward(x), tf.float32)
        if out.shape[-1] is None:
            raise ValueError(
                "predict_mc needs a model whose last output axis (classes) has a "
                f"static size. Received output shape {out.shape}."
            )
        if from_logits:
            if calibration is not None:
                # Calibrate each draw's logits before its probabilities and
                # entropies, so every output comes from calibrated draws.
                out = calibration(out)
            shift = _class_weight_logit_shift(weights, out.shape[-1])
            if shift is not None:
                out = out + shift
            return _probability.probabilities_tf(out), _probability.entropy_from_logits_tf(out)
        p = out
        if weights is not None:
            p = unweight_probabilities(p, weights, activation=_probability.activation(p.shape[-1]))
        return p, _probability.entropy_tf(p)

    @tf.function(
        input_signature=[tf.TensorSpec((None, *input_shape), dtype)],
        reduce_retracing=True,
    )
    def run(x):
        if split is not None:
            x = split.features(x)
        # The first draw fixes the output shape; the rest accumulate in a
        # while loop, so memory is O(1) in the number of draws.
        sum_p, sum_h = draw(x)
        for _ in tf.range(num_samples - 1):
            p, h = draw(x)
            sum_p += p
            sum_h += h
        return sum_p, sum_h

    cache[key] = run
    return run


def _check_calibration_channels(model, calibration) -> None:
    """A ValueError when the model's declared output channels differ from the calibrator's."""
    try:
        outputs = model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        outputs = None  # unbuilt or subclassed: checked when the draw is traced
    last = outputs[-1] if isinstance(outputs, tuple) and outputs else None
    if isinstance(last, int) and last != calibration.num_channels:
        raise ValueError(
            f"Argument `calibration` maps {calibration.num_channels} logit channel(s), "
            f"but the model outputs {last}. Received: calibration="
            f"{type(calibration).__name__}"
        )


def _check_fits_model(model, x_shape, item_shape, patch_size, patch) -> None:
    """A ValueError naming both shapes when ``x`` (or its windows) cannot enter ``model``.

    Runs before tracing, so a wrong channel count is one line rather than a
    ``tf.function`` traceback. Models without a declared input pass.
    """
    expected = model_input_shapes(model)
    if expected is None or len(expected) != 1:
        return
    expected = expected[0]
    if fits(expected, (x_shape[0], *item_shape)):
        return
    if patch is None or not fits(expected[-1:], x_shape[-1:]):
        raise ValueError(
            f"Argument `x` must have the model's input shape {show(expected)} (None: any "
            f"size). Received: x.shape={show(x_shape)}"
        )
    raise ValueError(
        f"Argument `patch_size` must make windows of the model's input shape "
        f"{show(expected)} (None: any size). Received: patch_size={patch_size!r}, "
        f"windows of shape {show(item_shape)}"
    )


def predict_mc(
    model: keras.Model | Sequence[keras.Model],
    x: Any,
    num_samples: int = 32,
    batch_size: int | None = None,
    patch_size: int | Sequence[int] | None = None,
    overlap: float = 0.5,
    correct_for_class_weights: Sequence[float] | None = None,
    verbose: str | int = "auto",
    training: bool | None = None,
    from_logits: bool = True,
    sampling: str = "shared",
    calibration=None,
) -> MCPrediction:
    """Monte Carlo prediction with the total/aleatoric/epistemic decomposition.

    Runs ``num_samples`` stochastic forward passes per batch inside one
    ``tf.function`` (a ``tf.range`` loop accumulating the sum of
    probabilities and of their entropies, so memory does not grow with the
    number of draws) and returns, per element, in nats::

        mean      = (1/T) sum_t p_t
        total     = H[mean]
        aleatoric = (1/T) sum_t H[p_t]
        epistemic = total - aleatoric = (1/T) sum_t KL(p_t || mean)

    Models output logits: one channel is read as a sigmoid (Bernoulli)
    output, ``C > 1`` channels as a softmax over the last axis. Pass
    ``from_logits=False`` for a model that outputs probabilities.

    Which randomness is used depends on the model. A model with bayesseg
    Bayesian layers runs with ``training=False`` under sampling mode
    ``sampling`` (default "shared": one weight draw per forward pass shared
    by the batch, so a Flipout layer costs one convolution per draw); the
    previous modes are restored afterwards. Any other model (e.g. MC
    dropout) runs with ``training=True`` so its dropout is active. With
    ``training=True``, ``BatchNormalization`` layers still normalise with
    their moving statistics (they are frozen for the call), so a prediction
    never depends on the other examples of its batch.

    **Ensembles.** ``model`` may also be a
    :class:`bayesseg.models.DeepEnsemble` or a list of models of one task
    (deterministic, MC dropout or Bayesian, mixed freely). The ``T`` draws
    are spent across the ``k`` members: a deterministic member (no Bayesian
    layer, and no active dropout or noise layer) once, a stochastic member
    ``ceil(T / k)`` times, each with its own ``training`` resolution. The
    members are weighted equally: ``mean`` is the mean of the members' mean
    probabilities and ``aleatoric`` the mean of their mean entropies, so
    ``epistemic`` counts both the disagreement between members and the
    spread within each stochastic member. ``num_samples`` of the result is
    the total number of draws. Sliding windows, the class-weight correction
    and ``calibration`` apply to every member's draws.

    Args:
        model: a Keras model mapping ``x`` to logits ``(B, *spatial, K)``;
            or a ``DeepEnsemble`` / list of such models (see above).
        x: array ``(N, *spatial, channels)`` (NumPy or tensor).
        num_samples: int >= 1, draws ``T`` per example. Default 32.
        batch_size: int >= 1, examples (or windows) per forward pass.
            Default None: 8.
        patch_size: None (default; whole inputs) or int / tuple of ints, one
            per spatial axis: predict with sliding windows of this size, for
            inputs larger than the training patches.
        overlap: float in [0, 1), fraction of overlap between neighbouring
            windows (stride = ``round(patch * (1 - overlap))``). Default 0.5.
            Overlapping windows are blended with a Gaussian weight map
            (sigma = patch / 8 per axis): the mean probabilities and the
            aleatoric maps are weighted averages, and ``total`` is the entropy
            of the blended mean, so ``epistemic`` also counts disagreement
            between windows.
        correct_for_class_weights: None (default) or one weight per class
            (``(w0, w1)`` for a sigmoid output): undo the prior shift of a
            class-weighted likelihood, ``p_c ∝ p_c / w_c`` renormalised, in
            every draw before the entropies are taken (for logits: ``z_c -
            log w_c``, the same as ``bayesseg.imbalance.unweight_probabilities``).
            Exact for class-weighted cross-entropy only: a ``UserWarning`` is
            raised when the model's compiled loss (or its ELBO's likelihood) is
            a focal, Dice or hard-negative-mining loss.
        verbose: "auto" (default: a progress bar when there is more than one
            batch), 0 (silent), 1 or 2 (``keras.utils.Progbar`` modes).
        training: None (default: False for models with Bayesian layers, True
            otherwise) or a bool passed to ``model(x, training=...)``.
        from_logits: bool, whether the model outputs logits (default True,
            the bayesseg convention) or probabilities.
        sampling: sampling mode of the Bayesian layers during prediction:
            "shared" (default, fast), "sample" (each layer's own estimator,
            e.g. per-example Flipout signs) or "mean" (deterministic).
        calibration: None (default) or a fitted
            ``bayesseg.calibration.LogitCalibrator`` (``PlattScaling`` for one
            logit, ``TemperatureScaling`` for K): applied to the logits of
            every draw before its probabilities and entropies, so ``mean``,
            ``total``, ``aleatoric`` and ``epistemic`` all come from
            calibrated draws. Needs ``from_logits=True``. An alternative to
            ``correct_for_class_weights`` (its bias absorbs the class
            weights' shift): passing both is a ValueError.

    Returns:
        An :class:`MCPrediction` of NumPy arrays: ``mean`` ``(N, *spatial,
        K)``; ``total``, ``aleatoric``, ``epistemic`` ``(N, *spatial)``.

    Raises:
        ValueError: for a bad ``model`` (or ensemble members),
            ``num_samples``, ``batch_size``, ``patch_size``, ``overlap``,
            ``verbose``, ``sampling``,
            class weights or ``calibration`` (also: one that does not match
            the model's output channels, or given together with
            ``correct_for_class_weights`` or ``from_logits=False``), an
            ``x`` with fewer than 2 axes, or an ``x`` (or windows) whose shape
            the model's declared input does not accept (wrong channel count,
            wrong fixed size), before anything is traced.

    Example:

    >>> import bayesseg as bs, keras, numpy as np
    >>> from bayesseg.uncertainty import predict_mc
    >>> model = keras.Sequential([keras.Input((8, 8, 1)),
    ...                          bs.layers.Conv2DFlipout(1, 3, padding="same")])
    >>> pred = predict_mc(model, np.ones((2, 8, 8, 1), "float32"), num_samples=4)
    >>> pred.mean.shape, pred.epistemic.shape
    ((2, 8, 8, 1), (2, 8, 8))
    """
    num_samples = check_int("num_samples", num_samples)
    batch_size = 8 if batch_size is None else check_int("batch_size", batch_size)
    sampling = check_sampling(sampling)
    overlap = check_float("overlap", overlap, 0.0, 1.0, strict_maximum=True)
    members = plan_draws(model, num_samples, training, sampling)
    if members is None:
        if not isinstance(model, keras.layers.Layer):
            raise argument_error(
                "model", "be a Keras model, a DeepEnsemble or a list of Keras models", model
            )
        members = [Member(model, num_samples, resolve_training(model, training))]
    x_dtype = tf.as_dtype(getattr(x, "dtype", np.float32))
    if not x_dtype.is_floating:
        x_dtype = tf.float32
    x = np.asarray(x, dtype=x_dtype.as_numpy_dtype)
    if x.ndim < 2:
        raise ValueError(
            "Argument `x` must have a batch axis and a channel axis, "
            f"(N, ..., channels). Received: x with shape {x.shape}"
        )
    patch = check_patch_size(patch_size, x.ndim - 2)
    if patch is not None and x.ndim < 3:
        raise ValueError(
            "Argument `patch_size` needs an `x` with spatial axes "
            f"(N, *spatial, channels). Received: x with shape {x.shape}"
        )
    _windows.resolve_verbose(verbose, 1)
    weights = (
        None
        if correct_for_class_weights is None
        else tuple(float(w) for w in np.ravel(correct_for_class_weights))
    )
    if weights is not None and (
        len(weights) < 2 or not all(math.isfinite(w) and w > 0 for w in weights)
    ):
        raise ValueError(
            "Argument `correct_for_class_weights` must hold one finite weight > 0 "
            f"per class. Received: correct_for_class_weights="
            f"{correct_for_class_weights!r}"
        )
    if calibration is not None:
        from bayesseg.calibration import LogitCalibrator

        if not isinstance(calibration, LogitCalibrator):
            raise ValueError(
                "Argument `calibration` must be None or a fitted "
                "bayesseg.calibration.LogitCalibrator (PlattScaling, TemperatureScaling). "
                f"Received: calibration={calibration!r}"
            )
        if not from_logits:
            raise ValueError(
                "Argument `calibration` maps logits; it needs from_logits=True. "
                f"Received: calibration={type(calibration).__name__}, from_logits=False"
            )
        if weights is not None:
            raise ValueError(
                "Arguments `calibration` and `correct_for_class_weights` are alternatives: "
                "a fitted calibration's bias already absorbs the class weights' shift, so "
                "applying both would correct it twice. Pass one of them. Received: "
                f"calibration={type(calibration).__name__}, "
                f"correct_for_class_weights={correct_for_class_weights!r}"
            )
        for member in members:
            _check_calibration_channels(member.model, calibration)
    if weights is not None:
        inexact = sorted({name for m in members for name in _inexact_correction_losses(m.model)})
        if inexact:
            warnings.warn(
                f"correct_for_class_weights divides the probabilities by the class weights, "
                f"which undoes weighted cross-entropy (or resampling) exactly, but the model "
                f"was compiled with {', '.join(inexact)}, whose optimum is shifted in another, "
                "data-dependent way: the corrected probabilities are not calibrated. Fit a "
                "calibration on held-out data instead (bs.calibration.fit_calibration).",
                UserWarning,
                stacklevel=2,
            )
    item_shape = x.shape[1:] if patch is None else (*patch, x.shape[-1])
    for member in members:
        _check_fits_model(member.model, x.shape, item_shape, patch_size, patch)
    with contextlib.ExitStack() as stack, _quiet_retracing(len(members) > 1):
        runs = []
        for member in members:
            stack.enter_context(mc_randomness(member.model, sampling, member.training))
            fn = _mc_function(
                member.model,
                member.num_samples,
                member.training,
                from_logits,
                weights,
                item_shape,
                x_dtype,
                calibration,
            )
            runs.append((fn, member.num_samples))
        run, draws = runs[0] if len(runs) == 1 else (_mixture_run(runs), 1)
        if patch is None:
            mean, aleatoric = _windows.predict_whole(run, x, draws, batch_size, verbose)
        else:
            mean, aleatoric = _windows.predict_windows(
                run, x, draws, batch_size, patch, overlap, verbose
            )
    return decompose(mean, aleatoric, sum(m.num_samples for m in members))


def _mixture_run(runs):
    """One batch through every member: the members' mean of (mean p, mean H[p]).

    Each member's sums are divided by its own number of draws, so the
    members are weighted equally (a deep ensemble's mixture).
    """

    def run(batch):
        sum_p = sum_h = 0.0
        for fn, draws in runs:
            p, h = fn(batch)
            sum_p += p / draws
            sum_h += h / draws
        return sum_p / len(runs), sum_h / len(runs)

    return run


class _RetracingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _quiet_retracing(active: bool):
    """Drop TensorFlow's "frequent retracing" warning while an ensemble traces.

    Every member traces its own copy of the Monte Carlo function (once; they
    are cached), which TensorFlow's detector of functions created in a loop
    reports as retracing. Only that message is filtered, only meanwhile.
    """
    if not active:
        yield
        return
    logger = tf.get_logger()
    log_filter = _RetracingFilter()
    logger.addFilter(log_filter)
    try:
        yield
    finally:
        logger.removeFilter(log_filter)
