"""Training windows cut from long series, a chosen share of them around an event.

At 2 anomalous steps in 4096, a model trained on whole series sees one
positive step per 10 000 and spends nearly all of its compute on steps that
teach it little. :func:`event_windows` cuts short windows instead: a chosen
fraction centred (up to a random offset) on an anomalous step, the rest at
random. The windows' share of anomalous steps is no longer the series' one;
the caller records both, so the prior shift can be undone exactly
(``bs.imbalance.prior_shift_weights``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayesseg._validation import argument_error, check_float, check_int

__all__ = ["event_windows"]


def event_windows(
    x: Any,
    y: Any,
    window: int,
    positive_fraction: float = 0.5,
    windows_per_event: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Short training windows from long series, ``positive_fraction`` of them holding an event.

    Every anomalous step (``y == 1``) gets ``windows_per_event`` windows that
    contain it at a uniformly drawn position at least ``window // 8`` steps
    from either edge (so a bidirectional model sees context on both sides;
    nearer the series' ends the window is shifted inwards). Windows at
    uniformly drawn positions of uniformly drawn series are added until they
    make up ``1 - positive_fraction`` of the total; they may hold an event by
    chance, and every window keeps its true labels. The result is shuffled.

    Args:
        x: array ``(n, length, features)``, the series.
        y: array ``(n, length)`` (or ``(n, length, 1)``) of 0/1 step labels.
        window: int in ``[2, length]``, steps per window.
        positive_fraction: float in (0, 1), the share of event windows.
            Default 0.5.
        windows_per_event: int >= 1, windows drawn around each anomalous
            step (different offsets: an augmentation). Default 4.
        seed: int, the seed of the positions and the shuffle. Default 0.

    Returns:
        ``(x_windows, y_windows)``: float32 ``(m, window, features)`` and
        float32 ``(m, window)``.

    Raises:
        ValueError: for shapes that do not match, labels other than 0/1, a
            ``window`` longer than the series, a fraction outside (0, 1), or
            series without any anomalous step.

    Example:

    >>> import bayesseg as bs
    >>> x, y = bs.data.synthetic_anomaly_series(20, length=512, seed=0)
    >>> xw, yw = bs.data.event_windows(x, y, window=128, positive_fraction=0.5)
    >>> xw.shape, yw.shape
    ((64, 128, 1), (64, 128))
    >>> float(yw.mean()) > float(y.mean())
    True
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 3:
        raise argument_error("x", "have shape (series, length, features)", f"shape {x.shape}")
    if y.ndim == 3 and y.shape[-1] == 1:
        y = y[..., 0]
    if y.shape != x.shape[:2]:
        raise ValueError(
            "Arguments `x` and `y` must hold the same series and steps: y of shape "
            f"{x.shape[:2]} for x of shape {x.shape}. Received: y.shape={y.shape}"
        )
    if y.size and not np.all((y == 0) | (y == 1)):
        raise argument_error("y", "hold 0/1 step labels", f"values {np.unique(y)[:6].tolist()}")
    length = x.shape[1]
    window = check_int("window", window, minimum=2)
    if window > length:
        raise argument_error("window", f"be at most the series length {length}", window)
    fraction = check_float("positive_fraction", positive_fraction, minimum=0.0)
    if not 0.0 < fraction < 1.0:
        raise argument_error("positive_fraction", "be in (0, 1)", positive_fraction)
    windows_per_event = check_int("windows_per_event", windows_per_event)
    series, steps = np.nonzero(y > 0.5)
    if series.size == 0:
        raise ValueError("Argument `y` holds no anomalous step: there is no event to centre on.")
    rng = np.random.default_rng(int(seed))
    margin = min(window // 8, (window - 1) // 2)
    num_events = series.size * windows_per_event
    event_series = np.repeat(series, windows_per_event)
    offsets = rng.integers(margin, window - margin, size=num_events)
    event_starts = np.clip(np.repeat(steps, windows_per_event) - offsets, 0, length - window)
    num_random = int(round(num_events * (1.0 - fraction) / fraction))
    random_series = rng.integers(0, x.shape[0], size=num_random)
    random_starts = rng.integers(0, length - window + 1, size=num_random)
    which = np.concatenate([event_series, random_series])
    starts = np.concatenate([event_starts, random_starts])
    order = rng.permutation(which.size)
    which, starts = which[order], starts[order]
    index = starts[:, None] + np.arange(window)[None, :]
    x_windows = x[which[:, None], index].astype(np.float32)
    y_windows = y[which[:, None], index].astype(np.float32)
    return x_windows, y_windows
