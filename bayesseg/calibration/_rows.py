"""Held-out logits and labels as rows: the input handling every calibration fit shares."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from bayesseg._validation import check_int


def as_numpy(value: Any) -> np.ndarray:
    """A NumPy array of an array-like or an eager tensor."""
    return value.numpy() if tf.is_tensor(value) else np.asarray(value)


def rows(
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
    z = as_numpy(logits)
    y = as_numpy(labels)
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
        w = as_numpy(sample_weight).astype(np.float64)
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


def check_fit_arguments(max_elements: Any, seed: Any, ignore_index: Any) -> int:
    """Validate the arguments every fit shares; returns ``max_elements``."""
    max_elements = check_int("max_elements", max_elements)
    check_int("seed", seed, minimum=None)
    check_int("ignore_index", ignore_index, minimum=None, allow_none=True)
    return max_elements


def subsample(arrays: tuple, cap: int, seed: int) -> tuple[tuple, int]:
    """A seeded uniform subsample of at most ``cap`` rows of every array."""
    n = len(arrays[0])
    if n <= cap:
        return arrays, n
    index = np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))
    return tuple(None if a is None else a[index] for a in arrays), n
