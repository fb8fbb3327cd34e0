"""The base of the logit calibrators: fitting on held-out logits (one draw or the mean)."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from scipy.optimize import minimize
from scipy.special import log_expit, logsumexp

from bayesseg.calibration import _rows

__all__ = ["DEFAULT_MAX_ELEMENTS", "LogitCalibrator"]

#: Logit values (elements x channels) a fit uses at most; larger inputs are
#: subsampled uniformly with a seed. 2e6 values keep a multi-class fit in
#: float64 under ~100 MB and a few seconds, and leave the binomial error of
#: the fitted parameters far below any miscalibration worth correcting.
DEFAULT_MAX_ELEMENTS = 2_000_000


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
        max_elements = _rows.check_fit_arguments(max_elements, seed, ignore_index)
        z, y, w, available = self._prepared(
            [logits], labels, sample_weight, ignore_index, max_elements, seed
        )
        self.fit_result = {"num_elements": len(y), "num_available": available}
        self.fit_result.update(self._fit(z[0], y, w))
        return self

    def _prepared(self, draws, labels, sample_weight, ignore_index, max_elements, seed):
        """Checked rows of ``T`` draws of the same elements, subsampled to the cap.

        Returns ``(z, y, w, available)``: float64 logits ``(T, n, channels)``,
        int labels ``(n,)``, weights ``(n,)`` summing to 1, and the number of
        elements before the subsample.
        """
        rows = [
            _rows.rows(d, labels, self.num_channels, sample_weight, ignore_index) for d in draws
        ]
        z = np.stack([r[0] for r in rows], axis=1)  # (n, T, C): elements keep their draws
        y, w = rows[0][1], rows[0][2]
        cap = max(1, max_elements // (self.num_channels * len(draws)))
        (z, y, w), available = _rows.subsample((z, y, w), cap, int(seed))
        z = np.ascontiguousarray(z.transpose(1, 0, 2), dtype=np.float64)
        w = np.ones(len(y)) if w is None else w
        return z, y, w / w.sum(), available

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
        max_elements = _rows.check_fit_arguments(max_elements, seed, ignore_index)
        draws = _rows.as_numpy(draw_logits)
        if draws.ndim < 2:
            raise ValueError(
                "Argument `draw_logits` must have a leading draws axis: (T, ..., channels). "
                f"Received: draw_logits with shape {draws.shape}"
            )
        z, y, w, n = self._prepared(
            list(draws), labels, sample_weight, ignore_index, max_elements, seed
        )
        num_draws = len(z)

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
