"""Non-learned detectors: what a learned tagger must beat before it earns its cost.

:func:`rolling_zscore` is the detector the series reports (``bayesseg demo
--task series``, ``bayesseg train --task series``) set beside the tagger:
a step is as unusual as its first difference is far from the differences
around it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from bayesseg._validation import argument_error, check_int

__all__ = ["ZSCORE_WINDOW", "rolling_zscore"]

#: The rolling z-score's window (steps): 128 beat 32 and 64 on the validation
#: series of every synthetic kind (docs/lstm.md).
ZSCORE_WINDOW = 128


def _one(x: np.ndarray, window: int) -> np.ndarray:
    d = np.diff(x, axis=0, prepend=x[:1])
    mean = ndimage.uniform_filter1d(d, window, axis=0, mode="nearest")
    square = ndimage.uniform_filter1d(d * d, window, axis=0, mode="nearest")
    std = np.sqrt(np.maximum(square - mean * mean, 1e-12))
    return np.abs((d - mean) / std).max(axis=-1)


def rolling_zscore(x: Any, window: int = ZSCORE_WINDOW) -> np.ndarray | list[np.ndarray]:
    """Per-step anomaly scores: the |z-score| of the first difference, max over features.

    ``score_t = max_f |d_t,f - mean(d_f)| / std(d_f)`` with ``d_t = x_t -
    x_(t-1)`` (``d_0 = 0``) and the mean and standard deviation over a
    centred window of ``window`` steps (edges repeat the nearest value). It
    finds spikes and the onsets of level shifts; it cannot see what only the
    context reveals (a missing beat, the steps after an onset). Use it as the
    floor a learned detector must clear, with a threshold chosen on the same
    validation series (``bs.metrics.choose_threshold``).

    Args:
        x: array ``(length, features)`` or ``(series, length, features)``,
            or a list of ``(length_i, features)`` arrays of different lengths
            (a ``(length,)`` series is one feature).
        window: int >= 2, steps of the rolling window. Default 128.

    Returns:
        float64 scores: ``(length,)``, ``(series, length)``, or a list of
        ``(length_i,)`` arrays for a list.

    Raises:
        ValueError: for a ``window`` < 2, an empty series or non-finite values.

    Example:

    >>> import numpy as np
    >>> from bayesseg.baselines import rolling_zscore
    >>> x = np.sin(np.arange(600) / 20.0)[:, None]
    >>> x[300:] += 2.0                     # a level shift at step 300
    >>> int(np.argmax(rolling_zscore(x)))
    300
    """
    window = check_int("window", window, minimum=2)
    if isinstance(x, (list, tuple)):
        return [rolling_zscore(s, window) for s in x]
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim not in (2, 3) or x.shape[-2] < 1:
        raise argument_error(
            "x", "be (length, features), (series, length, features) or a list of series", x.shape
        )
    if not np.all(np.isfinite(x)):
        raise argument_error("x", "hold finite values", "NaN or infinite values")
    if x.ndim == 2:
        return _one(x, window)
    return np.stack([_one(s, window) for s in x])
