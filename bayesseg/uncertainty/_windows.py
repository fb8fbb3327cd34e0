"""Batching of the traced Monte Carlo function: whole inputs or sliding windows."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bayesseg._tiling import window_origins


def resolve_verbose(verbose: Any, steps: int) -> int:
    if verbose == "auto":
        return 1 if steps > 1 else 0
    if verbose in (0, 1, 2) and not isinstance(verbose, bool):
        return int(verbose)
    raise ValueError(f"Argument `verbose` must be 'auto', 0, 1 or 2. Received: verbose={verbose!r}")


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


def predict_whole(run, x, num_samples, batch_size, verbose) -> tuple[np.ndarray, np.ndarray]:
    """``run`` on batches of whole inputs: float64 ``(mean, aleatoric)`` over the draws."""
    n = x.shape[0]
    steps = math.ceil(n / batch_size)
    bar = _progbar(steps, resolve_verbose(verbose, steps))
    means, aleatorics = [], []
    for step in range(steps):
        batch = x[step * batch_size : (step + 1) * batch_size]
        sum_p, sum_h = run(tf.convert_to_tensor(batch))
        means.append(sum_p.numpy().astype(np.float64) / num_samples)
        aleatorics.append(sum_h.numpy().astype(np.float64) / num_samples)
        if bar is not None:
            bar.update(step + 1)
    return np.concatenate(means), np.concatenate(aleatorics)


def predict_windows(
    run, x, num_samples, batch_size, patch, overlap, verbose
) -> tuple[np.ndarray, np.ndarray]:
    """``run`` on sliding windows blended with Gaussian weights (see ``predict_mc``):
    float64 ``(mean, aleatoric)`` over the draws."""
    n, spatial = x.shape[0], x.shape[1:-1]
    # Inputs smaller than a patch are zero-padded at the end, then cropped.
    padded_shape = tuple(max(s, p) for s, p in zip(spatial, patch, strict=True))
    if padded_shape != spatial:
        pad = [(0, 0)] + [(0, p - s) for s, p in zip(spatial, padded_shape, strict=True)]
        x = np.pad(x, pad + [(0, 0)])
    strides = [max(1, int(round(p * (1.0 - overlap)))) for p in patch]
    origins = window_origins(padded_shape, patch, strides)
    windows = [(i, o) for i in range(n) for o in origins]
    weights = _gaussian_weights(patch)
    steps = math.ceil(len(windows) / batch_size)
    bar = _progbar(steps, resolve_verbose(verbose, steps))
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
    return mean, aleatoric
