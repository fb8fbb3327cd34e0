"""Figures: uncertainty maps, reliability diagrams, training and gradient curves (PNG).

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never
through ``pyplot``, so nothing leaks into pyplot's global state and no
display is needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bayesseg import _probability, metrics
from bayesseg._validation import check_int
from bayesseg.metrics import _arrays
from bayesseg.uncertainty import MCPrediction

__all__ = [
    "plot_gradient_contributions",
    "plot_reliability",
    "plot_series_uncertainty",
    "plot_training",
    "plot_uncertainty",
]


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
        # A size-1 channel is the map itself; C channels show the labels.
        a = a[..., 0] if a.shape[-1] == 1 else _probability.hard_labels(a).astype(np.float64)
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
    truth: Any | None,
    prediction: MCPrediction | Mapping[str, Any],
    path: str | os.PathLike,
    index: int = 0,
    slice_index: int | None = None,
) -> str:
    """Write a PNG with the input, truth, mean prediction and uncertainty maps.

    Five panels for example ``index`` (four when ``truth`` is None, e.g. a
    preview of images without masks): the input (first channel), the true
    mask, the mean prediction (foreground probability for a one-channel
    output, the argmax label map for a softmax), the epistemic and the
    aleatoric maps (nats, with colour bars). 3D volumes show slice
    ``slice_index`` of the first spatial axis (default: the middle one), and
    the figure's title says which slice of which axis it is.

    Args:
        image: array ``(N, *spatial, channels)``, 2D or 3D spatial.
        truth: masks ``(N, *spatial)`` or ``(N, *spatial, 1)``, or None
            to leave the truth panel out.
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
    >>> no_truth = plot_uncertainty(z[..., None], None, maps,
    ...                             os.path.join(tempfile.mkdtemp(), "p.png"))
    """
    image = np.asarray(image)
    if image.ndim not in (4, 5):
        raise ValueError(
            "Argument `image` must be (N, H, W, channels) or (N, D, H, W, "
            f"channels). Received: image with shape {image.shape}"
        )
    index = check_int("index", index, minimum=-image.shape[0], maximum=image.shape[0] - 1)
    rank = image.ndim - 2
    mean, epistemic, aleatoric = _prediction_maps(prediction)
    panels = [
        ("input", _to_2d("image", image[index][..., 0], rank, slice_index), "gray"),
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
    if truth is not None:
        truth_map = _to_2d("truth", np.asarray(truth)[index], rank, slice_index)
        panels.insert(1, ("truth", truth_map, "gray"))
    fig = Figure(figsize=(3.2 * len(panels), 3.4), layout="constrained")
    if rank == 3:
        depth = image.shape[1]
        shown_slice = depth // 2 if slice_index is None else slice_index
        fig.suptitle(f"slice {shown_slice} of {depth} along axis 0 (D of the volume's (D, H, W))")
    for ax, (title, data, cmap) in zip(fig.subplots(1, len(panels)), panels, strict=True):
        shown = ax.imshow(data, cmap=cmap, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
        if "nats" in title or title == "mean prediction":
            fig.colorbar(shown, ax=ax, shrink=0.8)
    return _save(fig, path)


def plot_reliability(
    y_true: Any,
    probs: Any,
    path: str | os.PathLike,
    num_bins: int = 15,
    threshold: float = metrics.FOREGROUND_THRESHOLD,
) -> str:
    """Write a reliability diagram PNG of the foreground probability.

    The diagram is drawn on the region of :func:`bayesseg.metrics.foreground_ece`:
    elements whose foreground probability ``p_fg`` (binary output, or
    ``1 - p_0`` for a softmax) is at least ``threshold``. Top: the observed
    foreground frequency of each equal-width ``p_fg`` bin (bars) and its
    mean ``p_fg`` (dots) against the diagonal of perfect calibration; the
    title gives the foreground ECE and the region's size. The legend's last
    entry reports the excluded elements (``p_fg < threshold``): their mean
    ``p_fg`` against their observed foreground frequency (missed
    foreground), which the ECE leaves out. Bottom: the number of region
    elements per bin on a log scale.

    Args:
        y_true: labels / masks, as in :func:`bayesseg.metrics.foreground_calibration`.
        probs: probabilities, as in :func:`bayesseg.metrics.foreground_calibration`.
        path: str or path-like, where the PNG is written.
        num_bins: int >= 1, equal-width bins on [0, 1]. Default 15.
        threshold: float in [0, 1), the region's lower bound on ``p_fg``.
            Default ``bayesseg.metrics.FOREGROUND_THRESHOLD`` (0.02).

    Returns:
        ``path`` as a string.

    Example:

    >>> import numpy as np, tempfile, os
    >>> from bayesseg.plots import plot_reliability
    >>> out = plot_reliability(np.array([0, 1, 1]), np.array([0.2, 0.7, 0.9]),
    ...                        os.path.join(tempfile.mkdtemp(), "r.png"))
    >>> out.endswith("r.png")
    True
    """
    summary = metrics.foreground_calibration(y_true, probs, threshold, num_bins)
    p_fg, truth = _arrays.foreground(y_true, probs)
    region = p_fg >= summary.threshold
    confidence, accuracy, counts = metrics.reliability_curve(
        truth[region], p_fg[region], summary.num_bins
    )
    num_bins = summary.num_bins
    filled = counts > 0
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    centers, width = (edges[:-1] + edges[1:]) / 2, 1.0 / num_bins
    fig = Figure(figsize=(5, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.bar(
        centers[filled],
        accuracy[filled],
        width=width,
        edgecolor="black",
        label="foreground frequency",
    )
    top.plot(
        confidence[filled],
        accuracy[filled],
        "o",
        color="tab:red",
        ms=4,
        label="mean p_fg",
    )
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.plot(
        [],
        [],
        " ",
        label=(
            f"excluded (p_fg < {summary.threshold:g}): n = {summary.excluded_size},\n"
            f"mean p_fg {summary.excluded_mean_probability:.4f}, "
            f"foreground {summary.excluded_foreground_rate:.4f}"
        ),
    )
    top.set(
        ylabel="foreground frequency",
        xlim=(0, 1),
        ylim=(0, 1),
        title=(
            f"Foreground ECE = {summary.ece:.4f}\n"
            f"region p_fg >= {summary.threshold:g}: n = {summary.region_size} "
            f"({100 * summary.region_fraction:.1f}% of elements)"
        ),
    )
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(
        centers,
        np.maximum(counts, 0.5),
        width=width,
        color="gray",
        edgecolor="black",
        log=True,
    )
    bottom.set(xlabel="foreground probability p_fg", ylabel="count")
    return _save(fig, path)


def _history_dict(history: Any) -> dict:
    logs = getattr(history, "history", history)
    if not isinstance(logs, Mapping) or not logs:
        raise ValueError(
            "Argument `history` must be a keras History or a dict of per-epoch lists. "
            f"Received: history={history!r}"
        )
    return {k: np.asarray(v, dtype="float64") for k, v in logs.items()}


def plot_training(history: Any, path: str | os.PathLike) -> str:
    """Write the ELBO's training curves as a PNG: loss, NLL, KL and KL weight.

    Three panels over epochs: the loss and the NLL (and their ``val_``
    counterparts when present) with the KL term ``kl_weight * kl`` on a log
    scale, the raw KL, and the KL weight.

    Args:
        history: a ``keras.callbacks.History`` from ``BayesianModel.fit`` or
            its ``history`` dict (keys ``loss``, ``nll``, ``kl``, ``kl_weight``).
        path: where the PNG is written.

    Returns:
        ``path`` as a string.

    Example:

    >>> import os, tempfile
    >>> from bayesseg.plots import plot_training
    >>> logs = {"loss": [1.0, 0.6], "nll": [0.9, 0.5], "kl": [900.0, 850.0],
    ...         "kl_weight": [1e-4, 1e-4]}
    >>> out = plot_training(logs, os.path.join(tempfile.mkdtemp(), "t.png"))
    """
    logs = _history_dict(history)
    missing = {"loss", "nll", "kl", "kl_weight"} - set(logs)
    if missing:
        raise ValueError(
            f"Argument `history` lacks {sorted(missing)}: train a bayesseg.BayesianModel "
            f"(it logs them). Received keys: {sorted(logs)}"
        )
    epochs = np.arange(1, len(logs["loss"]) + 1)
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    for key, style in (("loss", "-"), ("nll", "--")):
        left.plot(epochs, logs[key], style, marker="o", ms=3, label=key)
        if f"val_{key}" in logs:
            left.plot(epochs, logs[f"val_{key}"], style, marker="s", ms=3, label=f"val_{key}")
    left.plot(epochs, logs["kl_weight"] * logs["kl"], ":", marker="^", ms=3, label="kl_weight * kl")
    left.set(yscale="log", xlabel="epoch", title="ELBO terms (per element)")
    left.legend(fontsize=8)
    middle.plot(epochs, logs["kl"], marker="o", ms=3, color="tab:purple")
    middle.set(xlabel="epoch", title="KL (raw, unscaled)")
    right.plot(epochs, logs["kl_weight"], marker="o", ms=3, color="tab:green")
    right.set(xlabel="epoch", title="kl_weight (effective)", yscale="log")
    for axis in (left, middle, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def plot_gradient_contributions(records: Any, path: str | os.PathLike, max_layers: int = 12) -> str:
    """Write per-layer NLL and KL gradient norms over training steps as a PNG.

    Args:
        records: ``GradientDiagnostics.records`` (or the callback itself): a
            list of ``{"step": int, "rows": [{"layer", "group", "nll_norm",
            "kl_norm", ...}]}``.
        path: where the PNG is written.
        max_layers: int, at most this many layers are drawn, plus the model
            total: the layers with a KL term (Bayesian layers) first, then
            deterministic ones, each by the size of their NLL gradient.

    Returns:
        ``path`` as a string.

    Left panel: NLL (solid) and KL (dashed) gradient norms of the model and
    of each layer's parameters (all groups of a layer combined) over steps,
    on a log scale; deterministic layers (no KL gradient at any step) have
    no dashed line. Right panel: the KL/NLL ratio per Bayesian layer at the
    last recorded step.

    Example:

    >>> import os, tempfile
    >>> from bayesseg.plots import plot_gradient_contributions
    >>> rows = [{"layer": "conv", "group": "posterior_loc", "nll_norm": 1.0, "kl_norm": 0.1},
    ...         {"layer": "model", "group": "all", "nll_norm": 1.0, "kl_norm": 0.1}]
    >>> out = plot_gradient_contributions([{"step": 0, "rows": rows}],
    ...                                   os.path.join(tempfile.mkdtemp(), "g.png"))
    """
    records = getattr(records, "records", records)
    if not isinstance(records, (list, tuple)) or not records:
        raise ValueError(
            "Argument `records` must be a non-empty list of GradientDiagnostics records "
            f"(train with the callback first). Received: records={records!r}"
        )
    steps = np.array([r["step"] for r in records])
    per_layer: dict[str, tuple[list[float], list[float]]] = {}
    for record in records:
        sums: dict[str, list[float]] = {}
        for row in record["rows"]:
            key = "model (all)" if row["group"] == "all" else row["layer"]
            acc = sums.setdefault(key, [0.0, 0.0])
            acc[0] += row["nll_norm"] ** 2
            acc[1] += row["kl_norm"] ** 2
        for key, (nll_sq, kl_sq) in sums.items():
            nll, kl = per_layer.setdefault(key, ([], []))
            nll.append(np.sqrt(nll_sq))
            kl.append(np.sqrt(kl_sq))
    by_nll = sorted(
        (k for k in per_layer if k != "model (all)"), key=lambda k: -per_layer[k][0][-1]
    )
    # A layer has a KL term iff its KL gradient is ever nonzero.
    bayesian = {k for k in by_nll if max(per_layer[k][1]) > 0}
    layers = [k for k in by_nll if k in bayesian] + [k for k in by_nll if k not in bayesian]
    layers = layers[:max_layers]
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    # One colour per layer (tab20 holds 20 distinct ones), the model in black.
    palette = matplotlib.colormaps["tab20"]
    colors = ["black", *(palette(i % 20) for i in range(len(layers)))]
    for color, key in zip(colors, ["model (all)", *layers], strict=True):
        nll, kl = per_layer[key]
        width = 2.5 if key == "model (all)" else 1.2
        left.plot(steps, nll, "-", color=color, lw=width, label=key)
        if key == "model (all)" or key in bayesian:
            left.plot(steps, np.maximum(kl, 1e-30), "--", color=color, lw=width)
    left.set(
        yscale="log",
        xlabel="optimizer step",
        title="gradient norm: NLL (solid) vs scaled KL (dashed)",
    )
    # Below the axes, never over the curves.
    left.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    shown = [(k, c) for k, c in zip(layers, colors[1:], strict=True) if k in bayesian]
    ratios = [per_layer[k][1][-1] / max(per_layer[k][0][-1], 1e-30) for k, _ in shown]
    right.barh(range(len(shown)), ratios, color=[c for _, c in shown])
    right.set_yticks(range(len(shown)), [k for k, _ in shown], fontsize=7)
    right.axvline(1.0, color="gray", ls="--")
    right.set(
        xscale="log",
        xlabel="|g_kl| / |g_nll|",
        title=f"KL/NLL ratio of the Bayesian layers at step {steps[-1]}",
    )
    return _save(fig, path)


def plot_series_uncertainty(
    series: Any,
    labels: Any,
    prediction: Any,
    path: str | os.PathLike,
    index: int = 0,
    threshold: float | None = None,
    steps: tuple[int, int] | None = None,
) -> str:
    """Write one series with its per-step anomaly probability and uncertainty (PNG).

    Three stacked panels over time: the input (first feature) with the true
    anomalous steps marked, the mean predicted probability (with the
    decision threshold, if given, and the flagged steps), and the epistemic
    and aleatoric uncertainty (nats).

    Args:
        series: (N, T, F) or (N, T) inputs.
        labels: (N, T) per-step labels in {0, 1}.
        prediction: an ``MCPrediction`` (``mean`` of shape (N, T, 1)) or a
            mapping with ``mean``, ``epistemic`` and ``aleatoric``.
        path: where the PNG is written.
        index: which series to draw.
        threshold: optional decision threshold on the probability, drawn as
            a dashed line; the steps at or above it are marked.
        steps: optional ``(start, stop)``, the range of steps to draw (a
            close-up of a long series). Default: all.

    Returns:
        ``path`` as a string.

    Example:

    >>> import numpy as np, os, tempfile
    >>> from bayesseg.plots import plot_series_uncertainty
    >>> pred = {"mean": np.full((1, 50, 1), 0.1), "epistemic": np.zeros((1, 50)),
    ...         "aleatoric": np.full((1, 50), 0.3)}
    >>> out = plot_series_uncertainty(np.zeros((1, 50, 1)), np.zeros((1, 50)), pred,
    ...                               os.path.join(tempfile.mkdtemp(), "s.png"))
    """
    mean, epistemic, aleatoric = _prediction_maps(prediction)
    series = np.asarray(series, dtype="float64")
    labels = np.asarray(labels)
    if series.ndim == 2:
        series = series[..., None]
    if series.ndim != 3 or not 0 <= index < len(series):
        raise ValueError(
            "Argument `series` must have shape (N, T) or (N, T, F) and `index` must "
            f"select one of its N series. Received: shape={series.shape}, index={index}"
        )
    start, stop = (0, series.shape[1]) if steps is None else steps
    if not 0 <= start < stop <= series.shape[1]:
        raise ValueError(
            f"Argument `steps` must be (start, stop) with 0 <= start < stop <= "
            f"{series.shape[1]}. Received: steps={steps}"
        )
    t = np.arange(start, stop)
    truth = (labels.reshape(len(labels), -1)[index] > 0.5)[start:stop]
    x = series[index, start:stop, 0]
    p = np.asarray(mean).reshape(len(series), -1)[index, start:stop]
    fig = Figure(figsize=(12, 6), layout="constrained")
    top, middle, bottom = fig.subplots(3, 1, sharex=True)
    top.plot(t, x, lw=0.8, color="tab:gray")
    top.plot(t[truth], x[truth], "o", color="tab:red", label="anomaly")
    top.set(title="input", ylabel="value")
    top.legend(fontsize=8)
    middle.plot(t, p, color="tab:blue")
    if threshold is not None:
        middle.axhline(threshold, ls="--", color="tab:orange", lw=1, label="threshold")
        flagged = p >= threshold
        middle.plot(t[flagged], p[flagged], "v", color="tab:orange", ms=4, label="flagged")
        middle.plot(t[truth], p[truth], "o", color="tab:red", mfc="none", label="anomaly")
        middle.legend(fontsize=8)
    middle.set(ylabel="p(anomaly)", yscale="log", title="mean predicted probability")
    bottom.plot(t, np.asarray(aleatoric).reshape(len(series), -1)[index, start:stop],
                label="aleatoric")  # fmt: skip
    bottom.plot(t, np.asarray(epistemic).reshape(len(series), -1)[index, start:stop],
                label="epistemic")  # fmt: skip
    bottom.set(xlabel="timestep", ylabel="nats", title="uncertainty")
    bottom.legend(fontsize=8)
    return _save(fig, path)
