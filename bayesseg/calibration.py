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
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from scipy.optimize import minimize
from scipy.special import expit, log_expit, logsumexp

from bayesseg.layers.base import bayesian_layers, check_sampling, sampling_mode

__all__ = [
    "DEFAULT_MAX_ELEMENTS",
    "LogitCalibrator",
    "PlattScaling",
    "TemperatureScaling",
    "fit_calibration",
]

#: Logit values (elements x channels) a fit uses at most; larger inputs are
#: subsampled uniformly with a seed. 2e6 values keep a multi-class fit in
#: float64 under ~100 MB and a few seconds, and leave the binomial error of
#: the fitted parameters far below any miscalibration worth correcting.
DEFAULT_MAX_ELEMENTS = 2_000_000


# --------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------
def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Argument `{name}` must be an integer >= 1. Received: {name}={value!r}")
    return int(value)


def _check_finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be a finite number. Received: {name}={value!r}")
    return float(value)


def _as_numpy(value: Any) -> np.ndarray:
    return value.numpy() if tf.is_tensor(value) else np.asarray(value)


def _rows(
    logits: Any,
    labels: Any,
    channels: int,
    sample_weight: Any,
    ignore_index: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Flatten to ``(n, channels)`` logits, ``(n,)`` int labels, ``(n,)`` weights.

    Ignored and zero-weight elements are dropped; labels and logits are
    checked (finite logits, labels in ``[0, K)``) before any fitting.
    """
    z = _as_numpy(logits)
    y = _as_numpy(labels)
    if z.dtype.kind not in "fiu":
        raise ValueError(f"Argument `logits` must be numeric. Received dtype {z.dtype}")
    if channels == 1:
        if z.ndim >= 1 and z.shape[-1] == 1 and z.shape != y.shape:
            z = z[..., 0]
        if y.ndim >= 1 and y.shape[-1] == 1 and y.shape != z.shape:
            y = y[..., 0]
    else:
        if z.ndim < 1 or z.shape[-1] != channels:
            raise ValueError(
                f"Argument `logits` must have {channels} channels on its last axis. "
                f"Received: logits with shape {z.shape}"
            )
        if y.shape == z.shape:  # one-hot labels
            if not np.all((y == 0) | (y == 1)) or not np.all(y.sum(-1) == 1):
                raise ValueError(
                    "Argument `labels` of the logits' shape must be one-hot (0/1, one 1 per "
                    "element). Received values outside that."
                )
            y = y.argmax(-1)
        elif y.ndim >= 1 and y.shape[-1] == 1 and y.shape[:-1] == z.shape[:-1]:
            y = y[..., 0]
        z = z.reshape(-1, channels)
    shape = y.shape
    y = y.reshape(-1)
    z = z.reshape(-1, channels)
    if len(y) != len(z):
        raise ValueError(
            "Arguments `logits` and `labels` must describe the same elements: labels of "
            f"shape {shape} for logits with {len(z)} element(s) of {channels} channel(s). "
            f"Received: logits with shape {np.shape(logits)}, labels with shape "
            f"{np.shape(labels)}"
        )
    keep = np.ones(len(y), bool)
    if ignore_index is not None:
        keep &= y != ignore_index
    weights = None
    if sample_weight is not None:
        w = _as_numpy(sample_weight).astype(np.float64)
        try:
            w = np.broadcast_to(w.reshape(w.shape + (1,) * (len(shape) - w.ndim)), shape)
        except ValueError as err:
            raise ValueError(
                "Argument `sample_weight` must broadcast to the labels' shape "
                f"{shape}. Received: sample_weight with shape {np.shape(sample_weight)}"
            ) from err
        w = w.reshape(-1)
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("Argument `sample_weight` must hold finite weights >= 0.")
        keep &= w > 0
        weights = w
    if not np.all(keep):
        y, z = y[keep], z[keep]
        weights = None if weights is None else weights[keep]
    if len(y) == 0:
        raise ValueError(
            "Arguments `labels` / `sample_weight` leave no element to fit on (all ignored "
            "or of zero weight)."
        )
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise ValueError("Argument `labels` must hold integer class labels.")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"Argument `labels` must be numeric. Received dtype {y.dtype}")
    top = 2 if channels == 1 else channels
    bad = (y < 0) | (y >= top)
    if np.any(bad):
        raise ValueError(
            f"Argument `labels` must hold labels in [0, {top}) for {channels} logit "
            f"channel(s) (or ignore_index={ignore_index}). Received values such as "
            f"{np.unique(y[bad])[:5].tolist()}"
        )
    if not np.all(np.isfinite(z)):
        raise ValueError("Argument `logits` must be finite. Received NaN or inf values.")
    return z, y.astype(np.int64), weights


def _check_fit_arguments(max_elements: Any, seed: Any, ignore_index: Any) -> int:
    """Validate the arguments every fit shares; returns ``max_elements``."""
    max_elements = _check_positive_int("max_elements", max_elements)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"Argument `seed` must be an integer. Received: seed={seed!r}")
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral)
    ):
        raise ValueError(
            f"Argument `ignore_index` must be None or an integer. "
            f"Received: ignore_index={ignore_index!r}"
        )
    return max_elements


def _subsample(arrays: tuple, cap: int, seed: int) -> tuple[tuple, int]:
    """A seeded uniform subsample of at most ``cap`` rows of every array."""
    n = len(arrays[0])
    if n <= cap:
        return arrays, n
    index = np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))
    return tuple(None if a is None else a[index] for a in arrays), n


# --------------------------------------------------------------------------
# The calibrators
# --------------------------------------------------------------------------
class LogitCalibrator(keras.layers.Layer):
    """Base class: a fixed, non-trainable map of logits fitted on held-out data.

    Subclasses hold their parameters in non-trainable variables (so a traced
    function that uses the calibrator sees a later :meth:`fit`) and repeat
    them in ``get_config`` (so the JSON config alone restores them). Call it
    on logits ``(..., channels)``; it computes in float32.

    Attributes:
        num_channels: int, logit channels it maps (1: sigmoid).
        fit_result: dict after :meth:`fit` (``num_elements`` used,
            ``num_available``, ``nll_before``, ``nll_after`` in nats per
            element, ``converged``), else None. Not serialised.

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> isinstance(bs.calibration.PlattScaling(), bs.calibration.LogitCalibrator)
    True
    """

    num_channels: int = 1

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")  # never autocast logits to float16
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.fit_result: dict | None = None

    def _check_channels(self, logits) -> None:
        last = logits.shape[-1] if logits.shape.rank else None
        if last is not None and last != self.num_channels:
            raise ValueError(
                f"{type(self).__name__} maps logits with {self.num_channels} channel(s) on "
                f"the last axis. Received: logits with shape {tuple(logits.shape)}"
            )

    def fit(
        self,
        logits: Any,
        labels: Any,
        sample_weight: Any = None,
        ignore_index: int | None = None,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
        seed: int = 0,
    ) -> LogitCalibrator:
        """Fit the parameters by minimising the NLL on held-out logits; returns ``self``.

        Args:
            logits: NumPy array or tensor ``(..., channels)`` (binary: also
                ``(...)``), the model's logits on held-out data.
            labels: integer labels ``(...)`` or ``(..., 1)`` (binary: 0/1),
                or one-hot ``(..., K)`` for multi-class.
            sample_weight: optional weights >= 0 broadcastable to the labels
                (per example or per element); 0 drops an element.
            ignore_index: optional label value to leave out.
            max_elements: int >= 1, logit values (elements x channels) used at
                most; above, a uniform subsample drawn with ``seed``.
                Default :data:`DEFAULT_MAX_ELEMENTS` (2e6).
            seed: int, seed of the subsample. Default 0.

        Returns:
            ``self``, fitted; ``self.fit_result`` describes the fit.

        Raises:
            ValueError: bad shapes, labels outside the classes, non-finite
                logits, no element left, or a class the fit cannot bound.

        Example:

        >>> import bayesseg as bs, numpy as np
        >>> rng = np.random.default_rng(0)
        >>> z = rng.normal(size=4000) * 3
        >>> y = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(int)
        >>> platt = bs.calibration.PlattScaling().fit(2 * z + 1, y)
        >>> round(platt.slope_value, 1), round(platt.bias_value, 1)
        (0.5, -0.5)
        """
        max_elements = _check_fit_arguments(max_elements, seed, ignore_index)
        z, y, w = _rows(logits, labels, self.num_channels, sample_weight, ignore_index)
        cap = max(1, max_elements // self.num_channels)
        (z, y, w), available = _subsample((z, y, w), cap, int(seed))
        z = z.astype(np.float64)
        w = np.ones(len(y)) if w is None else w
        self.fit_result = {"num_elements": len(y), "num_available": available}
        self.fit_result.update(self._fit(z, y, w / w.sum()))
        return self

    def _fit(self, z: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict:
        raise NotImplementedError

    def fit_mean(
        self,
        draw_logits: Any,
        labels: Any,
        sample_weight: Any = None,
        ignore_index: int | None = None,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
        seed: int = 0,
    ) -> LogitCalibrator:
        """Fit so that the *mean over draws* of the calibrated probabilities is calibrated.

        :meth:`fit` makes one calibrated draw as likely as possible; a
        Monte Carlo prediction reports the mean of ``T`` draws, and the mean
        of probabilities is not the probability of the mean logit. This fit
        minimises the NLL of ``mean_t p(map(z_t))``, the quantity
        ``predict_mc(..., calibration=self).mean`` returns, by L-BFGS-B in
        float64 over the same parameters (the map is still applied to every
        draw).

        Args:
            draw_logits: array ``(T, ..., channels)`` (binary: also
                ``(T, ...)``): ``T`` draws of the logits of the same elements.
            labels: labels of one draw's elements, as for :meth:`fit`.
            sample_weight, ignore_index, seed: as for :meth:`fit`.
            max_elements: int >= 1, logit values (elements x draws x channels)
                used at most; above, a seeded subsample of the elements.

        Returns:
            ``self``, fitted; ``self.fit_result`` as for :meth:`fit` (NLL of
            the mean prediction, nats per element).

        Example:

        >>> import bayesseg as bs, numpy as np
        >>> rng = np.random.default_rng(0)
        >>> m = rng.normal(-2, 2, size=3000)
        >>> draws = m + rng.normal(size=(8, 3000))        # 8 draws per element
        >>> y = (rng.random(3000) < (1 / (1 + np.exp(-draws))).mean(0)).astype(int)
        >>> platt = bs.calibration.PlattScaling().fit_mean(2 * draws + 1, y)
        >>> round(platt.slope_value, 1), round(platt.bias_value, 1)
        (0.5, -0.5)
        """
        max_elements = _check_fit_arguments(max_elements, seed, ignore_index)
        draws = _as_numpy(draw_logits)
        if draws.ndim < 2:
            raise ValueError(
                "Argument `draw_logits` must have a leading draws axis: (T, ..., channels). "
                f"Received: draw_logits with shape {draws.shape}"
            )
        num_draws = draws.shape[0]
        rows = [
            _rows(draws[t], labels, self.num_channels, sample_weight, ignore_index)
            for t in range(num_draws)
        ]
        z = np.stack([r[0] for r in rows])  # (T, n, C): the same elements in every draw
        y, w = rows[0][1], rows[0][2]
        cap = max(1, max_elements // (self.num_channels * num_draws))
        n = len(y)
        if n > cap:
            index = np.sort(np.random.default_rng(int(seed)).choice(n, size=cap, replace=False))
            z, y = z[:, index], y[index]
            w = None if w is None else w[index]
        w = np.ones(len(y)) if w is None else w
        w = w / w.sum()
        z = z.astype(np.float64)

        def objective(theta):
            u = self._map_np(theta, z)
            if self.num_channels == 1:
                log_p = np.where(y == 1, log_expit(u[..., 0]), log_expit(-u[..., 0]))
            else:
                log_p = (u - logsumexp(u, axis=-1, keepdims=True))[:, np.arange(len(y)), y]
            log_mean = logsumexp(log_p, axis=0) - math.log(num_draws)
            return -np.dot(w, log_mean)

        start = self._theta_start()
        before = objective(start)
        result = minimize(
            objective,
            start,
            method="L-BFGS-B",
            bounds=self._theta_bounds(),
            options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-9},
        )
        self._assign_theta(result.x)
        self.fit_result = {
            "num_elements": len(y),
            "num_available": n,
            "num_draws": num_draws,
            "nll_before": float(before),
            "nll_after": float(result.fun),
            "converged": bool(result.success),
        }
        return self

    # The parameters as one vector, for fit_mean.
    def _theta_start(self) -> np.ndarray:
        raise NotImplementedError

    def _theta_bounds(self) -> list:
        raise NotImplementedError

    def _map_np(self, theta: np.ndarray, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _assign_theta(self, theta: np.ndarray) -> None:
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="bayesseg")
class PlattScaling(LogitCalibrator):
    """Platt scaling of one sigmoid logit: ``z' = slope * z + bias``.

    Fitted as a logistic regression of the labels on the 1-D logit (Newton's
    method in float64; the same optimum as scikit-learn's
    ``LogisticRegression(penalty=None)`` on ``z``). The bias absorbs the
    prior shift of a class-weighted likelihood: weighted BCE with weights
    ``(w0, w1)`` moves the optimal logit by ``+log(w1 / w0)``, which
    ``from_class_weights`` undoes exactly (slope 1) and :meth:`fit` learns
    from data, together with the slope that corrects over-confidence.

    Args:
        slope: float, default 1.
        bias: float, default 0.
        name: optional layer name.

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> platt = bs.calibration.PlattScaling(slope=0.5, bias=-0.5)
    >>> platt(np.array([[1.0], [3.0]], "float32")).numpy().ravel().tolist()
    [0.0, 1.0]
    """

    num_channels = 1

    def __init__(self, slope: float = 1.0, bias: float = 0.0, **kwargs):
        slope = _check_finite("slope", slope)
        bias = _check_finite("bias", bias)
        super().__init__(**kwargs)
        self.slope = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(slope),
            trainable=False,
            name="slope",
        )
        self.bias = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(bias),
            trainable=False,
            name="bias",
        )
        self.built = True

    @classmethod
    def from_class_weights(cls, class_weights, **kwargs) -> PlattScaling:
        """The class-weight correction as a Platt map: slope 1, bias ``-log(w1 / w0)``.

        Args:
            class_weights: ``(w0, w1)``, both finite and > 0.
            **kwargs: passed to the constructor (e.g. ``name``).

        Returns:
            A :class:`PlattScaling` equal to ``correct_for_class_weights``.

        Example:

        >>> import bayesseg as bs
        >>> round(bs.calibration.PlattScaling.from_class_weights((1.0, 59.0)).bias_value, 4)
        -4.0775
        """
        w = np.asarray(class_weights, dtype=np.float64)
        if w.shape != (2,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(
                "Argument `class_weights` must be two finite weights > 0, (w0, w1). "
                f"Received: class_weights={class_weights!r}"
            )
        return cls(slope=1.0, bias=-math.log(w[1] / w[0]), **kwargs)

    @property
    def slope_value(self) -> float:
        """The slope as a Python float."""
        return float(keras.ops.convert_to_numpy(self.slope))

    @property
    def bias_value(self) -> float:
        """The bias as a Python float."""
        return float(keras.ops.convert_to_numpy(self.bias))

    def call(self, logits):
        """Return ``slope * logits + bias`` (float32)."""
        logits = tf.cast(logits, tf.float32)
        self._check_channels(logits)
        return self.slope * logits + self.bias

    def _fit(self, z, y, w):
        z = z[:, 0]
        if np.all(y == y[0]):
            raise ValueError(
                "Argument `labels` must hold both classes (0 and 1) among the fitted "
                f"elements; all are {int(y[0])}, so the bias would be unbounded."
            )
        if np.ptp(z) == 0:
            raise ValueError("Argument `logits` is constant: the slope is not identifiable.")
        y = y.astype(np.float64)

        def nll(theta):
            s = theta[0] * z + theta[1]
            return -np.sum(w * (y * log_expit(s) + (1 - y) * log_expit(-s)))

        theta = np.array([1.0, 0.0])
        before = value = nll(theta)
        converged = False
        # Newton's method with backtracking: the NLL is convex in (a, b), so
        # this reaches the optimum to machine precision in a few steps.
        for _ in range(100):
            p = expit(theta[0] * z + theta[1])
            r = w * (p - y)
            grad = np.array([np.dot(r, z), r.sum()])
            h = w * p * (1 - p)
            hess = np.array([[np.dot(h, z * z), np.dot(h, z)], [np.dot(h, z), h.sum()]])
            if np.max(np.abs(grad)) < 1e-12:
                converged = True
                break
            try:
                step = np.linalg.solve(hess, grad)
            except np.linalg.LinAlgError:
                step = grad
            t = 1.0
            while t > 1e-12:
                candidate = theta - t * step
                new = nll(candidate)
                if new <= value:
                    break
                t /= 2
            if t <= 1e-12:
                converged = np.max(np.abs(grad)) < 1e-8
                break
            theta, value = candidate, new
        if not converged:
            warnings.warn(
                "PlattScaling.fit did not converge: the held-out logits may separate the "
                "classes perfectly, so the slope grows without bound.",
                UserWarning,
                stacklevel=3,
            )
        self.slope.assign(theta[0])
        self.bias.assign(theta[1])
        return {"nll_before": float(before), "nll_after": float(value), "converged": converged}

    def _theta_start(self):
        return np.array([1.0, 0.0])

    def _theta_bounds(self):
        return [(None, None), (None, None)]

    def _map_np(self, theta, z):
        return theta[0] * z + theta[1]

    def _assign_theta(self, theta):
        self.slope.assign(theta[0])
        self.bias.assign(theta[1])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"slope": self.slope_value, "bias": self.bias_value})
        return config


@keras.saving.register_keras_serializable(package="bayesseg")
class TemperatureScaling(LogitCalibrator):
    """Temperature scaling with a per-class bias: ``z' = z / temperature + bias``.

    Fitted by L-BFGS-B (scipy) on the exact multinomial NLL and its gradient
    in float64, parametrised by the inverse temperature (the NLL is convex in
    ``(1 / T, bias)``). The bias vector absorbs the prior shift of
    class-weighted likelihoods (``-log w_c`` per class undoes weights ``w``:
    ``from_class_weights``) and is centred to mean 0 (the softmax ignores a
    common offset). With ``fit_bias=False`` only the temperature is fitted.

    Args:
        num_classes: int >= 2, logit channels.
        temperature: float > 0, default 1.
        bias: ``num_classes`` floats or None (zeros).
        fit_bias: bool, whether :meth:`fit` fits the bias (default True).
        name: optional layer name.

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> ts = bs.calibration.TemperatureScaling(3, temperature=2.0, bias=[0.0, 1.0, -1.0])
    >>> ts(np.array([[2.0, 2.0, 2.0]], "float32")).numpy().tolist()
    [[1.0, 2.0, 0.0]]
    """

    def __init__(
        self,
        num_classes: int,
        temperature: float = 1.0,
        bias=None,
        fit_bias: bool = True,
        **kwargs,
    ):
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
            num_classes = 0
        if num_classes < 2:
            raise ValueError(
                "Argument `num_classes` must be an integer >= 2 (use PlattScaling for one "
                f"sigmoid logit). Received: num_classes={num_classes!r}"
            )
        temperature = _check_finite("temperature", temperature)
        if temperature <= 0:
            raise ValueError(
                f"Argument `temperature` must be > 0. Received: temperature={temperature!r}"
            )
        bias = np.zeros(num_classes) if bias is None else np.asarray(bias, dtype=np.float64)
        if bias.shape != (num_classes,) or not np.all(np.isfinite(bias)):
            raise ValueError(
                f"Argument `bias` must be None or {num_classes} finite numbers. "
                f"Received: bias={bias.tolist()!r}"
            )
        super().__init__(**kwargs)
        self.num_channels = int(num_classes)
        self.fit_bias = bool(fit_bias)
        self.temperature = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(temperature),
            trainable=False,
            name="temperature",
        )
        self.bias = self.add_weight(
            shape=(num_classes,), initializer="zeros", trainable=False, name="bias"
        )
        self.bias.assign(bias.astype(np.float32))
        self.built = True

    @property
    def num_classes(self) -> int:
        """Number of classes (logit channels)."""
        return self.num_channels

    @classmethod
    def from_class_weights(cls, class_weights, **kwargs) -> TemperatureScaling:
        """The class-weight correction as this map: T = 1, bias ``-log w_c``.

        Args:
            class_weights: one finite weight > 0 per class.
            **kwargs: passed to the constructor (e.g. ``name``).

        Returns:
            A :class:`TemperatureScaling` equal to ``correct_for_class_weights``.

        Example:

        >>> import bayesseg as bs
        >>> ts = bs.calibration.TemperatureScaling.from_class_weights([1.0, 1.0, 4.0])
        >>> ts.bias_value.round(3).tolist()
        [0.462, 0.462, -0.924]
        """
        w = np.asarray(class_weights, dtype=np.float64)
        if w.ndim != 1 or w.size < 2 or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(
                "Argument `class_weights` must hold one finite weight > 0 per class (at "
                f"least 2). Received: class_weights={class_weights!r}"
            )
        bias = -np.log(w)
        return cls(w.size, temperature=1.0, bias=bias - bias.mean(), **kwargs)

    @property
    def temperature_value(self) -> float:
        """The temperature as a Python float."""
        return float(keras.ops.convert_to_numpy(self.temperature))

    @property
    def bias_value(self) -> np.ndarray:
        """The bias as a float64 NumPy array."""
        return keras.ops.convert_to_numpy(self.bias).astype(np.float64)

    def call(self, logits):
        """Return ``logits / temperature + bias`` (float32)."""
        logits = tf.cast(logits, tf.float32)
        self._check_channels(logits)
        return logits / self.temperature + self.bias

    def _fit(self, z, y, w):
        k = self.num_channels
        mass = np.bincount(y, weights=w, minlength=k)
        if self.fit_bias and np.any(mass == 0):
            raise ValueError(
                "Argument `labels` holds no element of class(es) "
                f"{np.flatnonzero(mass == 0).tolist()} among the fitted elements: their "
                "bias would go to -inf. Hold out more data, or fit the temperature alone "
                "(TemperatureScaling(..., fit_bias=False))."
            )
        z_true = z[np.arange(len(y)), y]

        def objective(theta):
            u = theta[0] * z + (theta[1:] if self.fit_bias else 0.0)
            lse = logsumexp(u, axis=1)
            nll = np.dot(w, lse - u[np.arange(len(y)), y])
            p = np.exp(u - lse[:, None])
            grad_s = np.dot(w, np.sum(p * z, axis=1) - z_true)
            if not self.fit_bias:
                return nll, np.array([grad_s])
            grad_b = w @ p - mass
            return nll, np.concatenate([[grad_s], grad_b])

        start = np.concatenate([[1.0], np.zeros(k)]) if self.fit_bias else np.array([1.0])
        before = objective(start)[0]
        result = minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            # 1/T > 0; the lower bound keeps T finite.
            bounds=[(1e-6, None)] + [(None, None)] * (len(start) - 1),
            options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-10},
        )
        theta = result.x
        self.temperature.assign(1.0 / theta[0])
        if self.fit_bias:
            bias = theta[1:] - theta[1:].mean()
            self.bias.assign(bias.astype(np.float32))
        else:
            self.bias.assign(np.zeros(k, np.float32))
        return {
            "nll_before": float(before),
            "nll_after": float(result.fun),
            "converged": bool(result.success),
        }

    def _theta_start(self):
        k = self.num_channels
        return np.concatenate([[1.0], np.zeros(k)]) if self.fit_bias else np.array([1.0])

    def _theta_bounds(self):
        # 1/T > 0; the lower bound keeps T finite.
        return [(1e-6, None)] + [(None, None)] * (len(self._theta_start()) - 1)

    def _map_np(self, theta, z):
        return theta[0] * z + (theta[1:] if self.fit_bias else 0.0)

    def _assign_theta(self, theta):
        self.temperature.assign(1.0 / theta[0])
        if self.fit_bias:
            self.bias.assign((theta[1:] - theta[1:].mean()).astype(np.float32))
        else:
            self.bias.assign(np.zeros(self.num_channels, np.float32))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_channels,
                "temperature": self.temperature_value,
                "bias": self.bias_value.tolist(),
                "fit_bias": self.fit_bias,
            }
        )
        return config


# --------------------------------------------------------------------------
# Fitting on a model's Monte Carlo logits
# --------------------------------------------------------------------------
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
    One output channel gives a :class:`PlattScaling`, ``K > 1`` a
    :class:`TemperatureScaling`. Use data
    disjoint from the test images (and ideally from the training images).

    Args:
        model: a Keras model mapping ``x`` to logits ``(B, *spatial, K)``.
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
    from bayesseg.uncertainty._sampling import batch_norm_in_inference as _batch_norm_in_inference

    if not isinstance(model, keras.layers.Layer):
        raise ValueError(f"Argument `model` must be a Keras model. Received: model={model!r}")
    num_samples = _check_positive_int("num_samples", num_samples)
    batch_size = _check_positive_int("batch_size", batch_size)
    max_elements = _check_positive_int("max_elements", max_elements)
    sampling = check_sampling(sampling)
    if training is not None and not isinstance(training, bool):
        raise ValueError(
            f"Argument `training` must be None or a bool. Received: training={training!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"Argument `seed` must be an integer. Received: seed={seed!r}")
    if target not in ("mean", "draws"):
        raise ValueError(
            f"Argument `target` must be 'mean' or 'draws'. Received: target={target!r}"
        )
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
        x = _as_numpy(x)
        if y is None:
            raise ValueError("Argument `y` is required with an array `x`. Received: y=None")
        y = _as_numpy(y)
        if x.ndim < 2 or len(y) != len(x):
            raise ValueError(
                "Arguments `x` and `y` must hold the same examples on their first axis. "
                f"Received: x with shape {x.shape}, y with shape {y.shape}"
            )
        if sample_weight is not None:
            sample_weight = _as_numpy(sample_weight)
            if len(sample_weight) != len(x):
                raise ValueError(
                    "Argument `sample_weight` must hold one weight per example (or per "
                    f"element) of `x`. Received: sample_weight with shape {sample_weight.shape}"
                )
        total_batches = math.ceil(len(x) / batch_size)
    layers = bayesian_layers(model)
    if training is None:
        training = not layers
    draw = tf.function(lambda batch: model(batch, training=training), reduce_retracing=True)
    rng = np.random.default_rng(int(seed))
    keep_fraction = None
    logits, labels, weights = [], [], []
    channels = None
    with (
        sampling_mode(model, sampling) if layers else contextlib.nullcontext(),
        _batch_norm_in_inference(model) if training else contextlib.nullcontext(),
    ):
        for xb, yb, wb in _batches(x, y, sample_weight, batch_size):
            outs = [draw(tf.convert_to_tensor(xb)).numpy() for _ in range(num_samples)]
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
