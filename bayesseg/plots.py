"""Figures: uncertainty maps and reliability diagrams, written as PNG files.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never
through ``pyplot``, so nothing leaks into pyplot's global state and no
display is needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bayesseg import metrics
from bayesseg.uncertainty import MCPrediction

__all__ = ["plot_reliability", "plot_uncertainty"]


def _save(fig: Figure, path: str | os.PathLike) -> str:
    FigureCanvasAgg(fig)
    path = os.fspath(path)
    fig.savefig(path, format="png", dpi=100)
    return path


def _prediction_maps(prediction: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(prediction, MCPrediction):
        return prediction.mean, prediction.epistemic, prediction.aleatoric
    if isinstance(prediction, Mapping) and {"mean", "epistemic", "aleatoric"} <= set(prediction):
        return (
            np.asarray(prediction["mean"]),
            np.asarray(prediction["epistemic"]),
            np.asarray(prediction["aleatoric"]),
        )
    raise ValueError(
        "Argument `prediction` must be an MCPrediction or a mapping with keys "
        f"'mean', 'epistemic' and 'aleatoric'. Received: {type(prediction).__name__}"
    )


def _to_2d(name: str, array: np.ndarray, spatial_rank: int, slice_index) -> np.ndarray:
    """One 2D view of a single example's map: drop channels, slice 3D volumes."""
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == spatial_rank + 1:
        a = a[..., 0] if a.shape[-1] == 1 else a.argmax(-1).astype(np.float64)
    if a.ndim != spatial_rank:
        raise ValueError(
            f"Argument `{name}` has shape {np.shape(array)} for one example; "
            f"expected {spatial_rank} spatial axes (+ optional channel axis)."
        )
    if spatial_rank == 3:
        depth = a.shape[0]
        index = depth // 2 if slice_index is None else slice_index
        if not 0 <= index < depth:
            raise ValueError(
                f"Argument `slice_index` must be in [0, {depth}). "
                f"Received: slice_index={slice_index!r}"
            )
        a = a[index]
    return a


def plot_uncertainty(
    image: Any,
    truth: Any,
    prediction: MCPrediction | Mapping[str, Any],
    path: str | os.PathLike,
    index: int = 0,
    slice_index: int | None = None,
) -> str:
    """Write a PNG with the input, truth, mean prediction and uncertainty maps.

    Five panels for example ``index``: the input (first channel), the true
    mask, the mean prediction (foreground probability for a one-channel
    output, the argmax label map for a softmax), the epistemic and the
    aleatoric maps (nats, with colour bars). 3D volumes show slice
    ``slice_index`` of the first spatial axis (default: the middle one).

    Args:
        image: array ``(N, *spatial, channels)``, 2D or 3D spatial.
        truth: masks ``(N, *spatial)`` or ``(N, *spatial, 1)``.
        prediction: an :class:`~bayesseg.uncertainty.MCPrediction` or a
            mapping with arrays ``mean`` ``(N, *spatial, K)``, ``epistemic``
            and ``aleatoric`` ``(N, *spatial)``.
        path: str or path-like, where the PNG is written.
        index: int, which example to draw. Default 0.
        slice_index: int or None, the slice of a 3D volume. Default None.

    Returns:
        ``path`` as a string.

    Example:

    >>> import numpy as np, tempfile, os
    >>> from bayesseg.plots import plot_uncertainty
    >>> z = np.zeros((1, 8, 8))
    >>> maps = {"mean": z[..., None], "epistemic": z, "aleatoric": z}
    >>> out = plot_uncertainty(z[..., None], z, maps,
    ...                        os.path.join(tempfile.mkdtemp(), "u.png"))
    """
    image = np.asarray(image)
    if image.ndim not in (4, 5):
        raise ValueError(
            "Argument `image` must be (N, H, W, channels) or (N, D, H, W, "
            f"channels). Received: image with shape {image.shape}"
        )
    if (
        isinstance(index, bool)
        or not isinstance(index, int | np.integer)
        or not (-image.shape[0] <= index < image.shape[0])
    ):
        raise ValueError(
            f"Argument `index` must be an integer in [0, {image.shape[0]}). "
            f"Received: index={index!r}"
        )
    rank = image.ndim - 2
    mean, epistemic, aleatoric = _prediction_maps(prediction)
    panels = [
        ("input", _to_2d("image", image[index][..., 0], rank, slice_index), "gray"),
        ("truth", _to_2d("truth", np.asarray(truth)[index], rank, slice_index), "gray"),
        ("mean prediction", _to_2d("mean", mean[index], rank, slice_index), "viridis"),
        (
            "epistemic (nats)",
            _to_2d("epistemic", epistemic[index], rank, slice_index),
            "magma",
        ),
        (
            "aleatoric (nats)",
            _to_2d("aleatoric", aleatoric[index], rank, slice_index),
            "magma",
        ),
    ]
    fig = Figure(figsize=(3.2 * len(panels), 3.4), layout="constrained")
    for ax, (title, data, cmap) in zip(fig.subplots(1, len(panels)), panels, strict=True):
        shown = ax.imshow(data, cmap=cmap, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
        if "nats" in title or title == "mean prediction":
            fig.colorbar(shown, ax=ax, shrink=0.8)
    return _save(fig, path)


def plot_reliability(y_true: Any, probs: Any, path: str | os.PathLike, num_bins: int = 15) -> str:
    """Write a reliability diagram PNG: accuracy vs confidence per bin.

    Top: the accuracy of each confidence bin (bars) against the diagonal of
    perfect calibration, with the ECE in the title (top-label for a softmax,
    the foreground probability's for binary inputs). Bottom: the number of
    elements per bin on a log scale, as imbalanced data piles up near 0.

    Args:
        y_true: labels / masks, as in :func:`bayesseg.metrics.reliability_curve`.
        probs: probabilities, as in :func:`bayesseg.metrics.reliability_curve`.
        path: str or path-like, where the PNG is written.
        num_bins: int >= 1, equal-width bins on [0, 1]. Default 15.

    Returns:
        ``path`` as a string.

    Example:

    >>> import numpy as np, tempfile, os
    >>> from bayesseg.plots import plot_reliability
    >>> out = plot_reliability(np.array([0, 1, 1]), np.array([0.2, 0.7, 0.9]),
    ...                        os.path.join(tempfile.mkdtemp(), "r.png"))
    """
    confidence, accuracy, counts = metrics.reliability_curve(y_true, probs, num_bins)
    filled = counts > 0
    ece = float(
        np.sum(counts[filled] * np.abs(confidence[filled] - accuracy[filled])) / counts.sum()
    )
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    centers, width = (edges[:-1] + edges[1:]) / 2, 1.0 / num_bins
    fig = Figure(figsize=(5, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.bar(
        centers[filled],
        accuracy[filled],
        width=width,
        edgecolor="black",
        label="accuracy",
    )
    top.plot(
        confidence[filled],
        accuracy[filled],
        "o",
        color="tab:red",
        ms=4,
        label="mean confidence",
    )
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set(
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"Reliability (ECE = {ece:.4f})",
    )
    top.legend(loc="upper left")
    bottom.bar(
        centers,
        np.maximum(counts, 0.5),
        width=width,
        color="gray",
        edgecolor="black",
        log=True,
    )
    bottom.set(xlabel="confidence", ylabel="count")
    return _save(fig, path)
