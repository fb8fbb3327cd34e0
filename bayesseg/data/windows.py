"""Training windows cut from long series, a chosen share of them around an event.

At 2 anomalous steps in 4096, a model trained on whole series sees one
positive step per 10 000 and spends nearly all of its compute on steps that
teach it little. :func:`event_windows` cuts short windows instead: a chosen
fraction centred (up to a random offset) on an anomalous step, the rest at
random. The windows' share of anomalous steps is no longer the series' one;
the caller records both, so the prior shift can be undone exactly
(``bs.imbalance.prior_shift_weights``). Series may differ in length, and an
event lasting many steps gets as many windows as a one-step spike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayesseg._validation import argument_error, check_float, check_int

__all__ = ["event_windows"]


def _as_series(x: Any, y: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``x`` and ``y`` as lists of ``(length_i, features)`` and ``(length_i,)`` arrays."""
    ragged = isinstance(x, (list, tuple))
    if ragged != isinstance(y, (list, tuple)):
        raise ValueError(
            "Arguments `x` and `y` must both be arrays or both be lists of series. Received: "
            f"x of type {type(x).__name__}, y of type {type(y).__name__}"
        )
    if not ragged:
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 3:
            raise argument_error("x", "have shape (series, length, features)", f"shape {x.shape}")
        if y.ndim == 3 and y.shape[-1] == 1:
            y = y[..., 0]
        if y.shape != x.shape[:2]:
            raise ValueError(
                "Arguments `x` and `y` must hold the same series and steps: y of shape "
                f"{x.shape[:2]} for x of shape {x.shape}. Received: y.shape={y.shape}"
            )
        return list(x), list(y)
    if len(x) != len(y) or not x:
        raise ValueError(
            "Arguments `x` and `y` must be lists of as many series, at least one. Received: "
            f"{len(x)} series and {len(y)} label arrays"
        )
    xs, ys = [], []
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        xi, yi = np.asarray(xi), np.asarray(yi)
        if xi.ndim != 2:
            raise argument_error(f"x[{i}]", "have shape (length, features)", f"shape {xi.shape}")
        if yi.ndim == 2 and yi.shape[-1] == 1:
            yi = yi[:, 0]
        if yi.shape != xi.shape[:1]:
            raise ValueError(
                f"Arguments `x` and `y` must hold the same steps: y[{i}] of shape "
                f"{xi.shape[:1]} for x[{i}] of shape {xi.shape}. Received: y[{i}].shape={yi.shape}"
            )
        xs.append(xi)
        ys.append(yi)
    if len({xi.shape[1] for xi in xs}) > 1:
        raise argument_error(
            "x", "hold series of one feature count", sorted({xi.shape[1] for xi in xs})
        )
    return xs, ys


def _runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last step of each run of 1s."""
    edges = np.diff(np.concatenate([[0], (labels > 0.5).astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1


def event_windows(
    x: Any,
    y: Any,
    window: int,
    positive_fraction: float = 0.5,
    windows_per_event: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Short training windows from long series, ``positive_fraction`` of them holding an event.

    An event is a run of consecutive anomalous steps (``y == 1``). Each event
    gets ``windows_per_event`` windows: one shorter than the window lies
    whole inside each, at a uniformly drawn position at least ``window // 8``
    steps from either edge where it fits (so a bidirectional model sees
    context on both sides; nearer the series' ends the window is shifted
    inwards); a longer one is entered at a uniformly drawn step of the event,
    placed as a one-step event would be. Windows at uniformly drawn positions
    (every start of every series equally likely) are added until they make up
    ``1 - positive_fraction`` of the total; they may hold an event by chance,
    and every window keeps its true labels. The result is shuffled.

    Series may differ in length (pass lists): windows never cross a series'
    end, so every series must be at least ``window`` steps long.

    Args:
        x: array ``(n, length, features)``, or a list of ``n`` arrays
            ``(length_i, features)`` of different lengths.
        y: array ``(n, length)`` (or ``(n, length, 1)``), or a list of ``n``
            arrays ``(length_i,)``, of 0/1 step labels.
        window: int in ``[2, shortest length]``, steps per window.
        positive_fraction: float in (0, 1), the share of event windows.
            Default 0.5.
        windows_per_event: int >= 1, windows drawn around each event
            (different offsets: an augmentation). Default 4.
        seed: int, the seed of the positions and the shuffle. Default 0.

    Returns:
        ``(x_windows, y_windows)``: float32 ``(m, window, features)`` and
        float32 ``(m, window)``.

    Raises:
        ValueError: for shapes that do not match, labels other than 0/1, a
            ``window`` longer than a series (naming the shortest), a
            fraction outside (0, 1), or series without any anomalous step.

    Example:

    >>> import bayesseg as bs
    >>> x, y = bs.data.synthetic_anomaly_series(20, length=512, seed=0)
    >>> xw, yw = bs.data.event_windows(x, y, window=128, positive_fraction=0.5)
    >>> xw.shape, yw.shape
    ((64, 128, 1), (64, 128))
    >>> float(yw.mean()) > float(y.mean())
    True
    """
    xs, ys = _as_series(x, y)
    for i, yi in enumerate(ys):
        if yi.size and not np.all((yi == 0) | (yi == 1)):
            raise argument_error(
                "y", "hold 0/1 step labels", f"values {np.unique(yi)[:6].tolist()} in series {i}"
            )
    lengths = np.array([len(xi) for xi in xs])
    window = check_int("window", window, minimum=2)
    if window > lengths.min():
        shortest = int(np.argmin(lengths))
        raise argument_error(
            "window",
            f"be at most the shortest series' length {lengths.min()} (series {shortest}; "
            "windows never cross a series' end)",
            window,
        )
    fraction = check_float("positive_fraction", positive_fraction, minimum=0.0)
    if not 0.0 < fraction < 1.0:
        raise argument_error("positive_fraction", "be in (0, 1)", positive_fraction)
    windows_per_event = check_int("windows_per_event", windows_per_event)
    runs = [_runs(yi) for yi in ys]
    series = np.concatenate([np.full(len(r[0]), i) for i, r in enumerate(runs)]).astype(int)
    if series.size == 0:
        raise ValueError("Argument `y` holds no anomalous step: there is no event to centre on.")
    first = np.concatenate([r[0] for r in runs])
    last = np.concatenate([r[1] for r in runs])
    rng = np.random.default_rng(int(seed))
    margin = min(window // 8, (window - 1) // 2)
    num_events = series.size * windows_per_event
    event_series = np.repeat(series, windows_per_event)
    first, last = np.repeat(first, windows_per_event), np.repeat(last, windows_per_event)
    room = window - 2 * margin  # steps a whole event may span with its margins
    fits = last - first + 1 <= room
    # An event that fits: its start's offset in the window, drawn so that the
    # whole event lies at least `margin` steps from either edge. One that
    # does not: a step of it, at an offset drawn as for a one-step event.
    span = np.where(fits, last - first, 0)
    offsets = rng.integers(margin, window - margin - span)
    anchors = np.where(fits, first, first + rng.integers(0, last - first + 1))
    limit = lengths[event_series] - window
    event_starts = np.clip(anchors - offsets, 0, limit)
    num_random = int(round(num_events * (1.0 - fraction) / fraction))
    starts_per_series = lengths - window + 1
    if np.all(lengths == lengths[0]):
        random_series = rng.integers(0, len(xs), size=num_random)
    else:
        weights = starts_per_series / starts_per_series.sum()
        random_series = rng.choice(len(xs), size=num_random, p=weights)
    random_starts = rng.integers(0, starts_per_series[random_series])
    which = np.concatenate([event_series, random_series])
    starts = np.concatenate([event_starts, random_starts])
    order = rng.permutation(which.size)
    which, starts = which[order], starts[order]
    features = xs[0].shape[1]
    x_windows = np.empty((which.size, window, features), dtype=np.float32)
    y_windows = np.empty((which.size, window), dtype=np.float32)
    for k, (i, start) in enumerate(zip(which, starts, strict=True)):
        x_windows[k] = xs[i][start : start + window]
        y_windows[k] = ys[i][start : start + window]
    return x_windows, y_windows
