"""Monte Carlo prediction and its uncertainty decomposition.

:func:`predict_mc` draws ``T`` stochastic forward passes of a model and returns
an :class:`MCPrediction`: the mean probabilities and, per element, in nats,

* ``total = H[mean_t p_t]`` (predictive entropy),
* ``aleatoric = mean_t H[p_t]`` (expected entropy),
* ``epistemic = total - aleatoric`` (the mutual information between the
  prediction and the weights, which equals ``mean_t KL(p_t || mean p)``).

Models output logits (the bayesseg convention): one channel is a sigmoid
(binary) output, ``C > 1`` channels a softmax over the last axis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from scipy.special import xlogy

from bayesseg.imbalance import unweight_probabilities
from bayesseg.layers.base import bayesian_layers, check_sampling, sampling_mode
from bayesseg.metrics import FOREGROUND_THRESHOLD

__all__ = ["EPISTEMIC_SHARE_THRESHOLD", "MCPrediction", "epistemic_share", "predict_mc"]

# Foreground probability from which an element counts in the epistemic share:
# the same region as the foreground ECE's.
EPISTEMIC_SHARE_THRESHOLD = FOREGROUND_THRESHOLD

# Traced Monte Carlo functions per model, keyed by everything read at trace
# time, so repeated calls (evaluation loops, benchmarks) do not retrace.
_FUNCTION_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True)
class MCPrediction:
    """The result of :func:`predict_mc`: mean probabilities and uncertainty maps.

    Attributes:
        mean: float32 array ``(N, *spatial, K)``, the mean over draws of the
            probabilities (K = 1: foreground probability of a sigmoid output;
            K = C: softmax probabilities).
        total: float32 array ``(N, *spatial)``, predictive entropy of ``mean``
            in nats (``H[E_t p_t]``).
        aleatoric: float32 array ``(N, *spatial)``, expected entropy
            ``E_t H[p_t]`` in nats.
        epistemic: float32 array ``(N, *spatial)``, mutual information
            ``total - aleatoric`` in nats (>= 0; round-off below zero is
            clipped).
        num_samples: int, the number of draws ``T``.

    Example:

    >>> import numpy as np
    >>> from bayesseg.uncertainty import MCPrediction
    >>> z = np.zeros((1, 2, 2), "float32")
    >>> pred = MCPrediction(z[..., None] + 0.5, z + 0.69, z + 0.6, z + 0.09, 8)
    >>> pred.epistemic.shape
    (1, 2, 2)
    """

    mean: np.ndarray
    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray
    num_samples: int

    @property
    def num_classes(self) -> int:
        """Number of classes: 2 for a one-channel (sigmoid) output, else C."""
        k = self.mean.shape[-1]
        return 2 if k == 1 else k


# --------------------------------------------------------------------------
# Entropies
# --------------------------------------------------------------------------
def _entropy_from_logits(logits: tf.Tensor) -> tf.Tensor:
    """Per-element entropy (nats) of sigmoid (1 channel) or softmax logits.

    Computed from logits with softplus / log_softmax, so it is exact for
    saturated outputs (no log(0), no NaN).
    """
    if logits.shape[-1] == 1:
        z = logits[..., 0]
        p = tf.sigmoid(z)
        # H = p * (-log p) + (1 - p) * (-log(1 - p)), -log p = softplus(-z).
        return p * tf.nn.softplus(-z) + (1.0 - p) * tf.nn.softplus(z)
    log_p = tf.nn.log_softmax(logits, axis=-1)
    return -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1)


def _entropy_from_probs_tf(p: tf.Tensor) -> tf.Tensor:
    p = tf.clip_by_value(p, 0.0, 1.0)
    if p.shape[-1] == 1:
        q = p[..., 0]
        return -(tf.math.xlogy(q, q) + tf.math.xlogy(1.0 - q, 1.0 - q))
    return -tf.reduce_sum(tf.math.xlogy(p, p), axis=-1)


def _entropy_np(p: np.ndarray) -> np.ndarray:
    """Entropy in nats of probabilities ``(..., K)`` (K = 1: Bernoulli)."""
    p = np.clip(p.astype(np.float64), 0.0, 1.0)
    if p.shape[-1] == 1:
        q = p[..., 0]
        return -(xlogy(q, q) + xlogy(1.0 - q, 1.0 - q))
    return -np.sum(xlogy(p, p), axis=-1)


# --------------------------------------------------------------------------
# Argument handling
# --------------------------------------------------------------------------
def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(
            f"Argument `{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
        )
    if value < minimum:
        raise ValueError(
            f"Argument `{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
        )
    return int(value)


def _check_patch_size(patch_size: Any, spatial_rank: int) -> tuple[int, ...] | None:
    if patch_size is None:
        return None
    if isinstance(patch_size, int | np.integer) and not isinstance(patch_size, bool):
        patch_size = (int(patch_size),) * spatial_rank
    try:
        patch = tuple(patch_size)
    except TypeError:
        patch = ()
    if (
        len(patch) != spatial_rank
        or any(isinstance(p, bool) or not isinstance(p, int | np.integer) for p in patch)
        or any(p <= 0 for p in patch)
    ):
        raise ValueError(
            f"Argument `patch_size` must be a positive int or a tuple of "
            f"{spatial_rank} positive ints (one per spatial axis of `x`). "
            f"Received: patch_size={patch_size!r}"
        )
    return tuple(int(p) for p in patch)


def _resolve_verbose(verbose: Any, steps: int) -> int:
    if verbose == "auto":
        return 1 if steps > 1 else 0
    if verbose in (0, 1, 2) and not isinstance(verbose, bool):
        return int(verbose)
    raise ValueError(f"Argument `verbose` must be 'auto', 0, 1 or 2. Received: verbose={verbose!r}")


def _class_weight_logit_shift(class_weights: Any, num_outputs: int) -> np.ndarray | None:
    """Logit offsets that undo a class-weighted likelihood's prior shift.

    ``p_c ∝ p_c / w_c`` is ``logit_c - log w_c`` before the softmax; for a
    sigmoid output it is ``z - log(w1 / w0)``.
    """
    if class_weights is None:
        return None
    weights = np.asarray(class_weights, dtype=np.float64)
    expected = 2 if num_outputs == 1 else num_outputs
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


@contextlib.contextmanager
def _batch_norm_in_inference(model: keras.layers.Layer):
    """Run every trainable BatchNormalization of ``model`` in inference mode.

    Keras' BatchNormalization uses the batch's statistics only when called
    with ``training=True`` *and* ``trainable`` set, so freezing it for the
    duration keeps MC-dropout draws (``training=True``) from normalising by
    the prediction batch: a pixel's prediction must not depend on which other
    images share its batch. ``trainable`` is restored afterwards.
    """
    frozen = [
        layer
        for layer in model._flatten_layers(include_self=True)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    for layer in frozen:
        layer.trainable = False
    try:
        yield
    finally:
        for layer in frozen:
            layer.trainable = True


# --------------------------------------------------------------------------
# The traced Monte Carlo loop
# --------------------------------------------------------------------------
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
    )
    cache = _FUNCTION_CACHE.setdefault(model, {})
    if key in cache:
        return cache[key]
    weights = None if class_weights is None else np.asarray(class_weights)
    # A weak reference: the cached function must not keep its model alive.
    model_ref = weakref.ref(model)

    def draw(x):
        out = tf.cast(model_ref()(x, training=training), tf.float32)
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
            if out.shape[-1] == 1:
                p = tf.sigmoid(out)
            else:
                p = tf.nn.softmax(out, axis=-1)
            return p, _entropy_from_logits(out)
        p = out
        if weights is not None:
            p = unweight_probabilities(
                p, weights, activation="sigmoid" if p.shape[-1] == 1 else "softmax"
            )
        return p, _entropy_from_probs_tf(p)

    @tf.function(
        input_signature=[tf.TensorSpec((None, *input_shape), dtype)],
        reduce_retracing=True,
    )
    def run(x):
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


# --------------------------------------------------------------------------
# Sliding windows
# --------------------------------------------------------------------------
def _window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Window origins covering ``[0, size)``; the last one is flush with the end."""
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def _gaussian_weights(patch: tuple[int, ...]) -> np.ndarray:
    """Blending weights: a Gaussian with sigma = patch / 8 per axis, max 1.

    Window borders, where zero padding distorts the prediction, get little
    weight; the floor keeps every pixel's total weight positive.
    """
    weights = np.ones(patch)
    for axis, size in enumerate(patch):
        coord = np.arange(size) - (size - 1) / 2.0
        sigma = size / 8.0
        profile = np.exp(-0.5 * (coord / sigma) ** 2)
        shape = [1] * len(patch)
        shape[axis] = size
        weights = weights * profile.reshape(shape)
    return np.maximum(weights / weights.max(), 1e-4)


def _progbar(steps: int, verbose: int) -> keras.utils.Progbar | None:
    return keras.utils.Progbar(steps, verbose=verbose) if verbose else None


def _finish(mean: np.ndarray, aleatoric: np.ndarray, num_samples: int) -> MCPrediction:
    total = _entropy_np(mean)
    epistemic = np.maximum(total - aleatoric, 0.0)
    return MCPrediction(
        mean=mean.astype(np.float32),
        total=total.astype(np.float32),
        aleatoric=aleatoric.astype(np.float32),
        epistemic=epistemic.astype(np.float32),
        num_samples=num_samples,
    )


def _predict_whole(run, x, num_samples, batch_size, verbose) -> MCPrediction:
    n = x.shape[0]
    steps = math.ceil(n / batch_size)
    bar = _progbar(steps, _resolve_verbose(verbose, steps))
    means, aleatorics = [], []
    for step in range(steps):
        batch = x[step * batch_size : (step + 1) * batch_size]
        sum_p, sum_h = run(tf.convert_to_tensor(batch))
        means.append(sum_p.numpy().astype(np.float64) / num_samples)
        aleatorics.append(sum_h.numpy().astype(np.float64) / num_samples)
        if bar is not None:
            bar.update(step + 1)
    return _finish(np.concatenate(means), np.concatenate(aleatorics), num_samples)


def _predict_windows(run, x, num_samples, batch_size, patch, overlap, verbose) -> MCPrediction:
    n, spatial = x.shape[0], x.shape[1:-1]
    # Inputs smaller than a patch are zero-padded at the end, then cropped.
    padded_shape = tuple(max(s, p) for s, p in zip(spatial, patch, strict=True))
    if padded_shape != spatial:
        pad = [(0, 0)] + [(0, p - s) for s, p in zip(spatial, padded_shape, strict=True)]
        x = np.pad(x, pad + [(0, 0)])
    strides = [max(1, int(round(p * (1.0 - overlap)))) for p in patch]
    origins = list(
        itertools.product(
            *[
                _window_starts(s, p, st)
                for s, p, st in zip(padded_shape, patch, strides, strict=True)
            ]
        )
    )
    windows = [(i, o) for i in range(n) for o in origins]
    weights = _gaussian_weights(patch)
    steps = math.ceil(len(windows) / batch_size)
    bar = _progbar(steps, _resolve_verbose(verbose, steps))
    acc_p = acc_h = None
    acc_w = np.zeros((n, *padded_shape))
    for step in range(steps):
        chunk = windows[step * batch_size : (step + 1) * batch_size]
        slices = [
            (i, *[slice(o, o + p) for o, p in zip(origin, patch, strict=True)])
            for i, origin in chunk
        ]
        batch = np.stack([x[s] for s in slices])
        sum_p, sum_h = run(tf.convert_to_tensor(batch))
        sum_p = sum_p.numpy().astype(np.float64) / num_samples
        sum_h = sum_h.numpy().astype(np.float64) / num_samples
        if acc_p is None:
            acc_p = np.zeros((n, *padded_shape, sum_p.shape[-1]))
            acc_h = np.zeros((n, *padded_shape))
        for k, s in enumerate(slices):
            acc_p[s] += weights[..., None] * sum_p[k]
            acc_h[s] += weights * sum_h[k]
            acc_w[s] += weights
        if bar is not None:
            bar.update(step + 1)
    crop = (slice(None), *[slice(0, s) for s in spatial])
    mean = acc_p[crop] / acc_w[crop][..., None]
    aleatoric = acc_h[crop] / acc_w[crop]
    return _finish(mean, aleatoric, num_samples)


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------
def predict_mc(
    model: keras.Model,
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

    Args:
        model: a Keras model mapping ``x`` to logits ``(B, *spatial, K)``.
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
        ValueError: for a bad ``num_samples``, ``batch_size``,
            ``patch_size``, ``overlap``, ``verbose``, ``sampling``,
            class weights or ``calibration`` (also: one that does not match
            the model's output channels, or given together with
            ``correct_for_class_weights`` or ``from_logits=False``), or an
            ``x`` with fewer than 2 axes.

    Example:

    >>> import bayesseg as bs, keras, numpy as np
    >>> from bayesseg.uncertainty import predict_mc
    >>> model = keras.Sequential([keras.Input((8, 8, 1)),
    ...                          bs.layers.Conv2DFlipout(1, 3, padding="same")])
    >>> pred = predict_mc(model, np.ones((2, 8, 8, 1), "float32"), num_samples=4)
    >>> pred.mean.shape, pred.epistemic.shape
    ((2, 8, 8, 1), (2, 8, 8))
    """
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(f"Argument `model` must be a Keras model. Received: model={model!r}")
    num_samples = _check_int("num_samples", num_samples)
    batch_size = 8 if batch_size is None else _check_int("batch_size", batch_size)
    sampling = check_sampling(sampling)
    if (
        isinstance(overlap, bool)
        or not isinstance(overlap, int | float)
        or not (0.0 <= overlap < 1.0)
    ):
        raise ValueError(
            f"Argument `overlap` must be a number in [0, 1). Received: overlap={overlap!r}"
        )
    if training is not None and not isinstance(training, bool):
        raise ValueError(
            f"Argument `training` must be None or a bool. Received: training={training!r}"
        )
    x_dtype = tf.as_dtype(getattr(x, "dtype", np.float32))
    if not x_dtype.is_floating:
        x_dtype = tf.float32
    x = np.asarray(x, dtype=x_dtype.as_numpy_dtype)
    if x.ndim < 2:
        raise ValueError(
            "Argument `x` must have a batch axis and a channel axis, "
            f"(N, ..., channels). Received: x with shape {x.shape}"
        )
    patch = _check_patch_size(patch_size, x.ndim - 2)
    if patch is not None and x.ndim < 3:
        raise ValueError(
            "Argument `patch_size` needs an `x` with spatial axes "
            f"(N, *spatial, channels). Received: x with shape {x.shape}"
        )
    _resolve_verbose(verbose, 1)
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
    if weights is not None:
        inexact = _inexact_correction_losses(model)
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
    layers = bayesian_layers(model)
    if training is None:
        training = not layers
    item_shape = x.shape[1:] if patch is None else (*patch, x.shape[-1])
    with (
        sampling_mode(model, sampling) if layers else contextlib.nullcontext(),
        _batch_norm_in_inference(model) if training else contextlib.nullcontext(),
    ):
        run = _mc_function(
            model, num_samples, training, from_logits, weights, item_shape, x_dtype, calibration
        )
        if patch is None:
            return _predict_whole(run, x, num_samples, batch_size, verbose)
        return _predict_windows(run, x, num_samples, batch_size, patch, float(overlap), verbose)


def epistemic_share(
    prediction: MCPrediction, threshold: float = EPISTEMIC_SHARE_THRESHOLD
) -> float:
    """Mean epistemic over mean total entropy where the foreground is plausible.

    ``share = mean(epistemic) / mean(total)`` over the elements whose
    foreground probability is at least ``threshold`` (one sigmoid channel:
    ``p``; a softmax: ``1 - p[..., 0]``, class 0 being the background). The
    region leaves out the sea of confident background, where both entropies
    are about 0 and would only dilute the ratio. It answers "how much of the
    model's doubt about the foreground is doubt about its weights": about 0
    for a network whose posterior never left a near-deterministic start,
    typically a few to tens of percent for a converged Bayesian network,
    and legitimately small with plenty of data.

    Pass the prediction whose probabilities are meant to be calibrated: with
    a class-weighted likelihood, the one from
    ``predict_mc(..., correct_for_class_weights=w)`` (or ``calibration=``),
    so the region follows corrected probabilities.

    Args:
        prediction: an :class:`MCPrediction` from :func:`predict_mc`.
        threshold: float in [0, 1), the foreground probability from which an
            element counts. Default 0.02.

    Returns:
        The share, a float in [0, 1]; NaN when no element reaches
        ``threshold`` or the region's total entropy is 0.

    Example:

    >>> import numpy as np
    >>> from bayesseg.uncertainty import MCPrediction, epistemic_share
    >>> mean = np.array([[[0.5], [0.001]]], "float32")       # 1 image, 2 pixels
    >>> total = np.array([[0.69, 0.008]], "float32")
    >>> epistemic = np.array([[0.23, 0.004]], "float32")
    >>> pred = MCPrediction(mean, total, total - epistemic, epistemic, 8)
    >>> round(epistemic_share(pred), 4)  # only the first pixel is in the region
    0.3333
    """
    if not isinstance(prediction, MCPrediction):
        raise ValueError(
            "Argument `prediction` must be an MCPrediction (from predict_mc). "
            f"Received: prediction={type(prediction).__name__}"
        )
    if isinstance(threshold, bool) or not (
        isinstance(threshold, int | float | np.floating) and 0.0 <= threshold < 1.0
    ):
        raise ValueError(
            f"Argument `threshold` must be a number in [0, 1). Received: threshold={threshold!r}"
        )
    mean = np.asarray(prediction.mean, dtype=np.float64)
    foreground = mean[..., 0] if mean.shape[-1] == 1 else 1.0 - mean[..., 0]
    region = foreground >= threshold
    if not region.any():
        return math.nan
    total = float(np.mean(prediction.total[region], dtype=np.float64))
    if total <= 0:
        return math.nan
    return float(np.mean(prediction.epistemic[region], dtype=np.float64) / total)
