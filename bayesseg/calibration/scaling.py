"""The two logit maps: :class:`PlattScaling` (one sigmoid logit) and :class:`TemperatureScaling`.

Both are non-trainable Keras layers fitted by :class:`~bayesseg.calibration.LogitCalibrator`'s
``fit`` / ``fit_mean``; each defines its map, its exact fit of one draw
(``_fit``) and its parameters as one vector (for ``fit_mean``).
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import tensorflow as tf
from scipy.optimize import minimize
from scipy.special import expit, log_expit, logsumexp

from bayesseg._validation import argument_error, check_float, is_integer
from bayesseg.calibration.base import LogitCalibrator

__all__ = ["PlattScaling", "TemperatureScaling"]


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
        slope = check_float("slope", slope)
        bias = check_float("bias", bias)
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
        if not is_integer(num_classes) or num_classes < 2:
            raise argument_error(
                "num_classes",
                "be an integer >= 2 (use PlattScaling for one sigmoid logit)",
                num_classes,
            )
        temperature = check_float("temperature", temperature, minimum=0.0, strict_minimum=True)
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

        start = self._theta_start()
        before = objective(start)[0]
        result = minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=self._theta_bounds(),
            options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-10},
        )
        self._assign_theta(result.x)
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
