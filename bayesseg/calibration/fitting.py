"""Fitting a calibration to a model's Monte Carlo logits: :func:`fit_calibration`."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bayesseg._validation import argument_error, check_choice, check_int
from bayesseg.calibration import _rows
from bayesseg.calibration.base import DEFAULT_MAX_ELEMENTS, LogitCalibrator
from bayesseg.calibration.scaling import PlattScaling, TemperatureScaling
from bayesseg.layers.model_functions import check_sampling

__all__ = ["fit_calibration"]


def _batches(x, y, sample_weight, batch_size):
    """Yield ``(x, y, w)`` NumPy batches from arrays or a ``tf.data.Dataset``."""
    if isinstance(x, tf.data.Dataset):
        for element in x:
            if not isinstance(element, tuple | list) or len(element) not in (2, 3):
                raise ValueError(
                    "Argument `x` as a tf.data.Dataset must yield batches (x, y) or "
                    f"(x, y, sample_weight). Received an element {type(element).__name__}"
                )
            w = element[2].numpy() if len(element) == 3 else None
            yield element[0], element[1].numpy(), w
        return
    n = len(x)
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        w = None if sample_weight is None else sample_weight[part]
        yield x[part], y[part], w


def _draw_function(model, training: bool):
    """``draws(batch, count)``: ``count`` draws of the logits of ``batch`` (NumPy).

    As in ``predict_mc``, the layers before the first Bayesian one run once
    per batch (``uncertainty/_prefix.py``).
    """
    from bayesseg.uncertainty._prefix import shared_split

    split = shared_split(model, training)
    if split is None:
        one = tf.function(lambda batch: model(batch, training=training), reduce_retracing=True)
        return lambda batch, count: [one(batch).numpy() for _ in range(count)]
    features = tf.function(split.features, reduce_retracing=True)
    rest = tf.function(lambda shared: split.suffix(shared, training=False), reduce_retracing=True)

    def draws(batch, count):
        shared = features(batch)
        return [rest(shared).numpy() for _ in range(count)]

    return draws


def _members(model, num_samples: int, training, sampling: str):
    """The models drawn from, each with its draws per batch.

    One model: ``num_samples`` draws. An ensemble: every member the same
    number of draws (1 when all are deterministic, else ``ceil(T / k)``), so
    the mean over the pooled draws weights the members equally, as
    ``predict_mc`` does.
    """
    from bayesseg.uncertainty._members import Member, plan_draws
    from bayesseg.uncertainty._sampling import resolve_training

    planned = plan_draws(model, num_samples, training, sampling)
    if planned is None:
        if not isinstance(model, keras.layers.Layer):
            raise argument_error(
                "model", "be a Keras model, a DeepEnsemble or a list of Keras models", model
            )
        return [Member(model, num_samples, resolve_training(model, training))]
    draws = max(member.num_samples for member in planned)
    return [Member(member.model, draws, member.training) for member in planned]


def fit_calibration(
    model: keras.Model,
    x: Any,
    y: Any = None,
    num_samples: int = 8,
    batch_size: int = 8,
    sample_weight: Any = None,
    ignore_index: int | None = None,
    sampling: str = "shared",
    training: bool | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    seed: int = 0,
    fit_bias: bool = True,
    target: str = "mean",
) -> LogitCalibrator:
    """Fit Platt or temperature scaling to a model's Monte Carlo logits on held-out data.

    Draws ``num_samples`` stochastic forward passes per batch, with the
    randomness :func:`bayesseg.uncertainty.predict_mc` uses (Bayesian layers
    under sampling mode ``sampling`` with ``training=False``; other models
    with ``training=True`` and batch normalisation frozen).
    ``predict_mc(..., calibration=...)`` applies the fitted map to every
    draw; ``target`` says what the fit makes calibrated:

    * ``"mean"`` (default): the mean over draws of the calibrated
      probabilities, i.e. what ``predict_mc`` reports
      (:meth:`LogitCalibrator.fit_mean`);
    * ``"draws"``: a single calibrated draw (:meth:`LogitCalibrator.fit` on
      the pooled per-draw logits).

    With one draw (``num_samples=1``, a deterministic model) the two agree.
    An ensemble (a :class:`bayesseg.models.DeepEnsemble` or a list of
    models) is fitted as one model whose draws are its members' draws: every
    member gets the same number of draws (one each when all are
    deterministic, else ``ceil(num_samples / k)``), so the mean over draws
    is the members' equally weighted mixture that ``predict_mc`` reports.
    One output channel gives a :class:`PlattScaling`, ``K > 1`` a
    :class:`TemperatureScaling`. Use data
    disjoint from the test images (and ideally from the training images).

    Args:
        model: a Keras model mapping ``x`` to logits ``(B, *spatial, K)``,
            or a ``DeepEnsemble`` / list of such models.
        x: array ``(N, *spatial, channels)``, or a ``tf.data.Dataset`` of
            batches ``(x, y)`` / ``(x, y, sample_weight)`` (then ``y=None``).
        y: labels ``(N, *spatial)`` (binary: 0/1; multi-class: integers, or
            one-hot ``(N, *spatial, K)``). None for a data set.
        num_samples: int >= 1, draws per batch. Default 8.
        batch_size: int >= 1, examples per forward pass (arrays). Default 8.
        sample_weight: optional weights >= 0, per example ``(N,)`` or per
            element (arrays; a data set carries its own).
        ignore_index: optional label value to leave out.
        sampling: "shared" (default), "sample" or "mean", as for predict_mc.
        training: None (default: False for models with Bayesian layers, True
            otherwise) or a bool.
        max_elements: int >= 1, logit values (elements x draws x channels)
            the fit uses at most; larger inputs are subsampled uniformly,
            seeded, while the draws are collected, so memory stays bounded.
            Default 2e6.
        seed: int, seed of the subsample. Default 0.
        fit_bias: bool, multi-class only: fit the per-class bias (default
            True) or the temperature alone.
        target: "mean" (default) or "draws", see above.

    Returns:
        A fitted :class:`PlattScaling` or :class:`TemperatureScaling`.

    Raises:
        ValueError: bad arguments (named), labels that do not match the
            logits, or a class the bias fit cannot bound.

    Example:

    >>> import bayesseg as bs, keras, numpy as np
    >>> model = keras.Sequential([keras.Input((8, 8, 1)),
    ...                          bs.layers.Conv2DFlipout(1, 3, padding="same")])
    >>> x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    >>> y = (x[..., 0] > 1).astype("int32")
    >>> platt = bs.calibration.fit_calibration(model, x, y, num_samples=2)
    >>> type(platt).__name__
    'PlattScaling'
    """
    from bayesseg.uncertainty._sampling import mc_randomness

    num_samples = check_int("num_samples", num_samples)
    batch_size = check_int("batch_size", batch_size)
    max_elements = check_int("max_elements", max_elements)
    sampling = check_sampling(sampling)
    members = _members(model, num_samples, training, sampling)
    num_samples = sum(member.num_samples for member in members)
    seed = check_int("seed", seed, minimum=None)
    target = check_choice("target", target, ("mean", "draws"))
    dataset = isinstance(x, tf.data.Dataset)
    if dataset:
        if y is not None or sample_weight is not None:
            raise ValueError(
                "Arguments `y` and `sample_weight` must be None when `x` is a "
                "tf.data.Dataset (it yields them). Received: y and/or sample_weight"
            )
        cardinality = int(x.cardinality())
        total_batches = cardinality if cardinality > 0 else None
    else:
        x = _rows.as_numpy(x)
        if y is None:
            raise ValueError("Argument `y` is required with an array `x`. Received: y=None")
        y = _rows.as_numpy(y)
        if x.ndim < 2 or len(y) != len(x):
            raise ValueError(
                "Arguments `x` and `y` must hold the same examples on their first axis. "
                f"Received: x with shape {x.shape}, y with shape {y.shape}"
            )
        if sample_weight is not None:
            sample_weight = _rows.as_numpy(sample_weight)
            if len(sample_weight) != len(x):
                raise ValueError(
                    "Argument `sample_weight` must hold one weight per example (or per "
                    f"element) of `x`. Received: sample_weight with shape {sample_weight.shape}"
                )
        total_batches = math.ceil(len(x) / batch_size)
    draws = [
        (_draw_function(member.model, member.training), member.num_samples) for member in members
    ]
    rng = np.random.default_rng(int(seed))
    keep_fraction = None
    logits, labels, weights = [], [], []
    channels = None
    with contextlib.ExitStack() as stack:
        for member in members:
            stack.enter_context(mc_randomness(member.model, sampling, member.training))
        for xb, yb, wb in _batches(x, y, sample_weight, batch_size):
            xb = tf.convert_to_tensor(xb)
            outs = [out for draw, count in draws for out in draw(xb, count)]
            channels = outs[0].shape[-1]
            rows = outs[0].size // channels
            if keep_fraction is None:
                # Keep a seeded fraction of each batch, sized from the first
                # one, so the collected logits stay near the cap.
                estimate = rows * num_samples * channels * (total_batches or 1)
                keep_fraction = 1.0 if total_batches is None else min(1.0, max_elements / estimate)
            per_draw = np.stack([o.reshape(rows, channels) for o in outs])  # (T, rows, C)
            yb = np.asarray(yb)
            if channels > 1 and yb.shape == outs[0].shape:
                yb = yb.argmax(-1)  # one-hot labels
            yb = yb.reshape(-1)
            if yb.size != rows:
                raise ValueError(
                    f"Labels of shape {np.shape(yb)} do not match the model's logits of "
                    f"shape {outs[0].shape} (one label per element expected)."
                )
            if wb is not None:
                wb = np.asarray(wb, dtype=np.float64)
                per_example = wb.reshape(len(wb), -1)
                if per_example.shape[1] == 1:
                    per_example = np.repeat(per_example, rows // len(wb), axis=1)
                wr = per_example.reshape(-1)
            else:
                wr = None
            if target == "mean":
                # Elements keep all their draws together.
                if keep_fraction < 1.0:
                    keep = rng.random(rows) < keep_fraction
                    per_draw, yb = per_draw[:, keep], yb[keep]
                    wr = None if wr is None else wr[keep]
                logits.append(per_draw)
                labels.append(yb)
                weights.append(wr)
                continue
            z = per_draw.reshape(-1, channels)
            yt = np.tile(yb, num_samples)
            wt = None if wr is None else np.tile(wr, num_samples)
            if keep_fraction < 1.0:
                keep = rng.random(len(yt)) < keep_fraction
                z, yt = z[keep], yt[keep]
                wt = None if wt is None else wt[keep]
            logits.append(z)
            labels.append(yt)
            weights.append(wt)
    if channels is None:
        raise ValueError("Argument `x` holds no example to fit the calibration on.")
    has_weights = any(w is not None for w in weights)
    if has_weights:
        weights = [
            np.ones(len(t)) if w is None else w for w, t in zip(weights, labels, strict=True)
        ]
    calibrator = (
        PlattScaling() if channels == 1 else TemperatureScaling(channels, fit_bias=fit_bias)
    )
    fit = calibrator.fit_mean if target == "mean" else calibrator.fit
    return fit(
        np.concatenate(logits, axis=1 if target == "mean" else 0),
        np.concatenate(labels),
        sample_weight=np.concatenate(weights) if has_weights else None,
        ignore_index=ignore_index,
        max_elements=max_elements,
        seed=int(seed),
    )
