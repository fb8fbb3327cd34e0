"""The series recipe: a Bayesian LSTM tagger for rare events in long series.

What ``bayesseg train --task series`` and ``bayesseg demo --task series``
run, in public and typed form:

1. a validation split *by series* (stratified: both parts hold events);
2. short training windows, half of them around an event
   (:func:`bayesseg.data.event_windows`), from series of any lengths;
3. inverse-sqrt class weights and the output bias from the windows' counts;
4. a small Bayesian ``Conv1D`` front-end and a bidirectional Bayesian LSTM
   (:func:`bayesseg.models.bayesian_lstm_tagger`, or its deterministic twin
   :func:`bayesseg.models.lstm_tagger`), the features standardised by a
   first layer that carries the training series' mean and scale;
5. the weighted ELBO with the KL scaled per window;
6. the decision: probabilities corrected for the class weights and the
   windows' prior (:func:`bayesseg.imbalance.prior_shift_weights`), and the
   threshold of the best validation event F1
   (:func:`bayesseg.metrics.choose_threshold`).

Every default lives once, in :class:`SeriesConfig`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bayesseg._defaults import (
    DEFAULT_POSTERIOR_SCALE_INIT,
    DEFAULT_RECURRENT_SCALE_MULTIPLIER,
    ESTIMATORS,
)
from bayesseg._validation import argument_error, check_choice, check_float, check_int

__all__ = [
    "SeriesConfig",
    "SeriesData",
    "SeriesPrediction",
    "SeriesRun",
    "build_series_model",
    "predict_series",
    "prepare_series",
    "split_series",
    "train_series",
]

_CLASS_WEIGHTS = ("balanced", "inverse_sqrt", "effective_number", "none")
_CRITERIA = ("event_f1", "event_recall")


@dataclasses.dataclass(frozen=True)
class SeriesConfig:
    """Every setting of the series recipe, with its default, checked on creation.

    The defaults are the recipe measured in docs/lstm.md: 512-step windows,
    half of them around an event, 8 per event; inverse-sqrt class weights;
    two Bayesian ``Conv1D(16)`` layers and one bidirectional Bayesian LSTM of
    32 units per direction; 32 windows per step; Adam at 3e-3 for 8 epochs; a
    tenth of the series (at least 8) held out to choose the threshold. On 120
    series of ``synthetic_sensor_series`` (seed 5, kept for tuning; scored on
    40 held-out series), 4 windows per event gave an average precision of
    0.73 / 0.85 / 0.88 after 8 / 12 / 16 epochs (event F1 0.87 / 0.86 /
    0.84), wider layers (32 filters, 64 units) 0.87 (F1 0.83) after 12, and 8
    windows per event 0.92 (F1 0.92) after 8 epochs, in 219 s on 2 cores.

    Attributes:
        window: steps per training window (at most the shortest series).
        positive_fraction: share of the windows cut around an event.
        windows_per_event: windows drawn around each event.
        epochs: passes over the windows.
        batch_size: windows per optimizer step (the global batch).
        learning_rate: Adam's learning rate.
        clipnorm: Adam's ``global_clipnorm``.
        class_weights: "inverse_sqrt", "balanced", "effective_number" or "none".
        conv_filters: filters of the ``Conv1D`` front-end (may be empty).
        units: units of each stacked LSTM.
        bidirectional: whether each LSTM reads both directions.
        bayesian: True for the Bayesian tagger with the ELBO; False for its
            deterministic twin with the weighted likelihood alone.
        estimator: "flipout" or "reparameterization".
        posterior_scale_init: initial posterior standard deviation.
        scale_multiplier: ``scale = softplus(c * rho)``.
        standardize: add a first layer mapping each feature to its z-score
            over the training series (saved with the model).
        val_fraction: share of the series held out to choose the threshold.
        min_val_series: fewest validation series.
        criterion: "event_f1" (default) or "event_recall" (with
            ``target_recall``), :func:`bayesseg.metrics.choose_threshold`'s.
        target_recall: the event recall to reach for "event_recall".
        num_samples: Monte Carlo draws per prediction.
        predict_window: steps per prediction window (series are cut into
            windows overlapping by half and blended); None: 2 * ``window``.
        seed: seed of the split, the windows, the weights and the draws.

    Example:

    >>> from bayesseg.recipes import SeriesConfig
    >>> config = SeriesConfig(epochs=2, window=256)
    >>> config.batch_size, config.units, config.to_dict()["window"]
    (32, (32,), 256)
    >>> SeriesConfig(window=1)
    Traceback (most recent call last):
    ...
    ValueError: Argument `window` must be an integer >= 2. Received: window=1
    """

    window: int = 512
    positive_fraction: float = 0.5
    windows_per_event: int = 8
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 3e-3
    clipnorm: float = 1.0
    class_weights: str = "inverse_sqrt"
    conv_filters: tuple[int, ...] = (16, 16)
    units: tuple[int, ...] = (32,)
    bidirectional: bool = True
    bayesian: bool = True
    estimator: str = "flipout"
    posterior_scale_init: float = DEFAULT_POSTERIOR_SCALE_INIT
    scale_multiplier: float = DEFAULT_RECURRENT_SCALE_MULTIPLIER
    standardize: bool = True
    val_fraction: float = 0.1
    min_val_series: int = 8
    criterion: str = "event_f1"
    target_recall: float | None = None
    num_samples: int = 16
    predict_window: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("window", self.window, minimum=2)
        fraction = check_float("positive_fraction", self.positive_fraction, 0.0, 1.0)
        if not 0.0 < fraction < 1.0:
            raise argument_error("positive_fraction", "be in (0, 1)", self.positive_fraction)
        for name in ("windows_per_event", "epochs", "batch_size", "num_samples"):
            check_int(name, getattr(self, name))
        check_int("min_val_series", self.min_val_series, minimum=1)
        for name in ("learning_rate", "clipnorm", "posterior_scale_init", "scale_multiplier"):
            check_float(name, getattr(self, name), minimum=0.0, strict_minimum=True)
        check_choice("class_weights", self.class_weights, _CLASS_WEIGHTS)
        check_choice("estimator", self.estimator, ESTIMATORS)
        check_choice("criterion", self.criterion, _CRITERIA)
        check_float("val_fraction", self.val_fraction, 0.0, 1.0, strict_maximum=True)
        for name in ("bidirectional", "bayesian", "standardize"):
            if not isinstance(getattr(self, name), bool):
                raise argument_error(name, "be True or False", getattr(self, name))
        for name, allow_empty in (("conv_filters", True), ("units", False)):
            sizes = tuple(getattr(self, name))
            if (not sizes and not allow_empty) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes
            ):
                raise argument_error(name, "be a sequence of integers >= 1", getattr(self, name))
            object.__setattr__(self, name, sizes)
        check_int("predict_window", self.predict_window, minimum=2, allow_none=True)
        check_int("seed", self.seed, minimum=None)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SeriesConfig:
        """A config from :meth:`to_dict`'s values; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise argument_error("values", f"hold only {sorted(known)}", unknown)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------
def _as_lists(x: Any, y: Any | None) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Series as a list of float32 ``(T_i, F)`` and labels as float32 ``(T_i,)``."""
    if isinstance(x, np.ndarray) and x.ndim == 3:
        xs = list(x)
    elif isinstance(x, (list, tuple)) and len(x) > 0:
        xs = list(x)
    else:
        raise argument_error(
            "x",
            "be a list of (length, features) series or an array (series, length, features)",
            getattr(x, "shape", type(x).__name__),
        )
    xs = [np.asarray(s, dtype=np.float32) for s in xs]
    xs = [s[:, None] if s.ndim == 1 else s for s in xs]
    for i, s in enumerate(xs):
        if s.ndim != 2 or s.shape[0] < 1:
            raise argument_error(f"x[{i}]", "have shape (length, features)", s.shape)
        if not np.all(np.isfinite(s)):
            raise argument_error(f"x[{i}]", "hold finite values", "NaN or infinite values")
    features = {s.shape[1] for s in xs}
    if len(features) > 1:
        raise argument_error("x", "hold series of one feature count", sorted(features))
    if y is None:
        return xs, None
    ys = [np.asarray(t, dtype=np.float32).reshape(-1) for t in (list(y) if len(y) else [])]
    if len(ys) != len(xs):
        raise argument_error("y", f"hold labels for the {len(xs)} series", f"{len(ys)} arrays")
    for i, (s, t) in enumerate(zip(xs, ys, strict=True)):
        if t.shape[0] != s.shape[0]:
            raise argument_error(f"y[{i}]", f"hold {s.shape[0]} steps as x[{i}] does", t.shape)
        if not np.all((t == 0) | (t == 1)):
            raise argument_error(f"y[{i}]", "hold 0/1 step labels", np.unique(t)[:5].tolist())
    return xs, ys


def split_series(
    y: Sequence[np.ndarray], val_fraction: float = 0.1, min_val_series: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation series indices, stratified by whether a series holds an event.

    ``max(min_val_series, round(val_fraction * n))`` series are held out, a
    share of the series with events about ``val_fraction`` of them (at least
    one, never all), drawn with ``seed``.

    Raises:
        ValueError: when fewer than 2 series hold an event (one to train on,
            one to choose the threshold on), or no training series would remain.

    Example:

    >>> import numpy as np
    >>> from bayesseg.recipes import split_series
    >>> y = [np.eye(1, 50, k=i % 7).ravel() if i % 3 == 0 else np.zeros(50) for i in range(30)]
    >>> train, val = split_series(y, val_fraction=0.2, min_val_series=4)
    >>> len(train), len(val), sorted(set(train) & set(val))
    (24, 6, [])
    """
    has_events = np.array([bool(np.any(np.asarray(t) > 0.5)) for t in y])
    n = len(has_events)
    num_val = max(min_val_series, round(val_fraction * n))
    anomalous, normal = np.flatnonzero(has_events), np.flatnonzero(~has_events)
    if len(anomalous) < 2 or num_val >= n:
        raise ValueError(
            f"The series recipe holds out {num_val} of {n} series to choose the threshold and "
            f"needs at least 2 series with an event (one to train on, one to choose on) and "
            f"training series left over; {len(anomalous)} of the {n} hold an event. Give more "
            "series, or lower val_fraction / min_val_series."
        )
    rng = np.random.default_rng(int(seed))
    val_anomalous = min(max(1, round(num_val * len(anomalous) / n)), len(anomalous) - 1)
    val_normal = min(num_val - val_anomalous, len(normal))
    val = np.concatenate(
        [rng.permutation(anomalous)[:val_anomalous], rng.permutation(normal)[:val_normal]]
    )
    val = np.sort(val).astype(int)
    return np.setdiff1d(np.arange(n), val), val


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------
def build_series_model(
    config: SeriesConfig,
    num_features: int,
    counts: Sequence[float],
    num_windows: int,
    input_normalization=None,
):
    """The compiled tagger of ``config``, its class weights and its output bias.

    Args:
        config: the :class:`SeriesConfig`.
        num_features: features per step.
        counts: ``(normal, anomalous)`` step counts of the training windows.
        num_windows: training windows per epoch (the KL's 1/N).
        input_normalization: None or ``(mean, std)`` per feature.

    Returns:
        ``(model, class_weights or None, output_bias)``.

    Example:

    >>> from bayesseg.recipes import SeriesConfig, build_series_model
    >>> model, weights, bias = build_series_model(SeriesConfig(), 2, [9900, 100], 64)
    >>> model.name, [round(float(w), 2) for w in weights]
    ('bayesian_lstm_tagger', [0.92, 9.13])
    """
    import keras

    import bayesseg as bs

    counts = np.asarray(counts, dtype=np.float64)
    weights = None
    if config.class_weights != "none":
        weights = bs.imbalance.class_weights(counts, method=config.class_weights, normalize=True)
    bias = bs.imbalance.initial_bias(counts / counts.sum(), class_weights=weights)
    common = {
        "units": config.units,
        "output_bias": bias,
        "bidirectional": config.bidirectional,
        "conv_filters": config.conv_filters,
        "input_normalization": input_normalization,
    }
    likelihood = bs.losses.WeightedBinaryCrossentropy(class_weights=weights)
    optimizer = keras.optimizers.Adam(config.learning_rate, global_clipnorm=config.clipnorm)
    if not config.bayesian:
        model = bs.models.lstm_tagger(num_features, **common)
        model.compile(optimizer=optimizer, loss=likelihood)
        return model, weights, bias
    model = bs.models.bayesian_lstm_tagger(
        num_features,
        estimator=config.estimator,
        posterior_scale_init=config.posterior_scale_init,
        scale_multiplier=config.scale_multiplier,
        **common,
    )
    model.compile(optimizer=optimizer, loss=bs.ELBO(likelihood, bs.kl.PerExample(num_windows)))
    return model, weights, bias


# --------------------------------------------------------------------------
# Prediction of whole series of any lengths
# --------------------------------------------------------------------------
@dataclasses.dataclass
class SeriesPrediction:
    """Per-step results of one series (float32 arrays of its length).

    Attributes:
        prob: the mean corrected probability of an event.
        epistemic, aleatoric: the uncertainty decomposition, in nats.
    """

    prob: np.ndarray
    epistemic: np.ndarray
    aleatoric: np.ndarray


def _window_starts(length: int, window: int) -> np.ndarray:
    stride = max(window // 2, 1)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return np.array(starts)


def predict_series(
    model,
    x: Any,
    correction: Sequence[float] | None = None,
    num_samples: int = 16,
    window: int = 1024,
    batch_size: int = 64,
) -> list[SeriesPrediction]:
    """Monte Carlo prediction of series of any lengths, cut into windows and blended.

    Each series is cut into windows of ``min(window, length)`` steps
    overlapping by half (the last one ending at the series' end); all windows
    of all series go through :func:`bayesseg.uncertainty.predict_mc` in
    batches, and each step's mean probability and aleatoric entropy are the
    averages over the windows holding it, weighted by ``predict_mc``'s
    Gaussian blending weights (sigma = window / 8 around each window's
    centre), so a step is read with
    context on both sides wherever it can be. The total uncertainty is the
    entropy of the blended mean; epistemic = total - aleatoric (clipped at 0).

    Args:
        model: a tagger ``(batch, steps, features) -> (batch, steps, 1)`` logits.
        x: a list of ``(length_i, features)`` series, or an array of them.
        correction: None, or ``(w0, w1)``: the weights whose shift is undone
            in every draw (``predict_mc``'s ``correct_for_class_weights``).
        num_samples: Monte Carlo draws. Default 16.
        window: steps per prediction window. Default 1024.
        batch_size: windows per forward pass. Default 64.

    Returns:
        A list of :class:`SeriesPrediction`, one per series.

    Example:

    >>> import numpy as np, bayesseg as bs
    >>> from bayesseg.recipes import predict_series
    >>> model = bs.models.bayesian_lstm_tagger(1, units=(4,))
    >>> out = predict_series(model, [np.zeros((300, 1)), np.zeros((70, 1))], num_samples=2,
    ...                      window=128)
    >>> [p.prob.shape for p in out]
    [(300,), (70,)]
    """
    import bayesseg as bs
    from bayesseg._probability import entropy
    from bayesseg.uncertainty._windows import _gaussian_weights

    xs, _ = _as_lists(x, None)
    window = check_int("window", window, minimum=2)
    pieces, where = [], []
    for i, s in enumerate(xs):
        w = min(window, len(s))
        for start in _window_starts(len(s), w):
            pieces.append(s[start : start + w])
            where.append((i, int(start), w))
    results = [
        (np.zeros(len(s)), np.zeros(len(s)), np.zeros(len(s))) for s in xs
    ]  # weighted sums of prob and aleatoric, and of the weights
    by_size: dict[int, list[int]] = {}
    for k, (_, _, w) in enumerate(where):
        by_size.setdefault(w, []).append(k)
    for w, ks in by_size.items():
        pred = bs.uncertainty.predict_mc(
            model,
            np.stack([pieces[k] for k in ks]),
            num_samples=num_samples,
            batch_size=batch_size,
            correct_for_class_weights=correction,
            verbose=0,
        )
        bump = _gaussian_weights((w,))  # predict_mc's blending weights
        for j, k in enumerate(ks):
            i, start, _ = where[k]
            prob, aleatoric, total_weight = results[i]
            prob[start : start + w] += bump * pred.mean[j, :, 0]
            aleatoric[start : start + w] += bump * pred.aleatoric[j]
            total_weight[start : start + w] += bump
    out = []
    for prob, aleatoric, total_weight in results:
        mean = prob / total_weight
        aleatoric = aleatoric / total_weight
        epistemic = np.maximum(entropy(mean[:, None]) - aleatoric, 0.0)
        out.append(
            SeriesPrediction(
                mean.astype(np.float32), epistemic.astype(np.float32), aleatoric.astype(np.float32)
            )
        )
    return out


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------
@dataclasses.dataclass
class SeriesRun:
    """What :func:`train_series` returns: the model, its decision rule and how it was made.

    Attributes:
        model: the trained tagger.
        config: the :class:`SeriesConfig`.
        decision: the rule ``bayesseg predict`` applies: ``threshold`` (None
            when the validation scores admitted none, with ``error``),
            ``correction_weights``, the validation scores.
        windows: the windows' size, count and anomalous shares.
        history: Keras' ``history.history``.
        train_index, val_index: the series each part used.
        class_weights, output_bias: as computed from the windows.
        recall_guarantee: None, or the
            :class:`bayesseg.recipes.RecallGuarantee` that
            :meth:`fit_recall_guarantee` fitted (saved in model.json).
    """

    model: Any
    config: SeriesConfig
    decision: dict[str, Any]
    windows: dict[str, Any]
    history: dict[str, list]
    train_index: np.ndarray
    val_index: np.ndarray
    class_weights: list[float] | None
    output_bias: list[float]
    recall_guarantee: Any = None

    @property
    def threshold(self) -> float | None:
        """The decision threshold on corrected probabilities (None: none could be chosen)."""
        return self.decision.get("threshold")

    def predict(self, x: Any, num_samples: int | None = None) -> list[SeriesPrediction]:
        """Corrected probabilities and uncertainties of series (see :func:`predict_series`)."""
        return predict_series(
            self.model,
            x,
            correction=self.decision["correction_weights"],
            num_samples=num_samples or self.config.num_samples,
            window=self.config.predict_window or 2 * self.config.window,
        )

    def fit_recall_guarantee(
        self,
        x: Any,
        y: Any,
        recall_target: float,
        num_samples: int | None = None,
        names: Sequence[str] | None = None,
    ):
        """Fit and keep a guarantee on the expected share of a series' events found.

        The series are predicted as :meth:`predict` (and ``bayesseg
        predict``) does: the corrected Monte Carlo mean probability per step,
        in blended windows of ``config.predict_window`` (or twice the
        training window). :class:`bayesseg.calibration.ConformalRiskControl`
        at ``alpha = 1 - recall_target`` with ``risk="missed_events"`` (an
        event is a run of positive steps, found when a flagged step lies
        within ``DEFAULT_EVENT_TOLERANCE`` = 2 steps of it) picks the
        highest threshold the conformal rule admits. Then, for a new series
        holding an event and exchangeable with these, the expected share of
        its events found by ``prob >= threshold`` is at least
        ``recall_target``. Series without an event are left out.

        The series must not have been trained on: the validation series
        (``train_index`` / ``val_index``) serve, as choosing the event-F1
        threshold on them does not change the scores.

        Args:
            x, y: the calibration series and their 0/1 step labels (lists).
            recall_target: float in (0, 1), e.g. 0.9.
            num_samples: Monte Carlo draws (default ``config.num_samples``).
            names: the series' names (kept in the guarantee), or None.

        Returns:
            The :class:`bayesseg.recipes.RecallGuarantee` (``unit="series"``).

        Raises:
            ValueError: fewer series with an event than ``alpha`` needs
                (``bs.recipes.min_recall_items(recall_target, "series")``).

        Example:

        >>> import numpy as np
        >>> import bayesseg as bs
        >>> from bayesseg.recipes import SeriesConfig, SeriesRun
        >>> x, y = bs.data.synthetic_sensor_series(6, 400, events_per_series=(1, 2))
        >>> model = bs.models.bayesian_lstm_tagger(2, units=(2,))  # untrained, for the example
        >>> run = SeriesRun(model, SeriesConfig(window=64, num_samples=2),
        ...     {"correction_weights": [1.0, 1.0]}, {}, {}, np.arange(0), np.arange(6), None, [0.0])
        >>> g = run.fit_recall_guarantee(x, y, 0.75)
        >>> g.unit, g.conformal.alpha, g.score["num_samples"], "recall_guarantee" in run.metadata()
        ('series', 0.25, 2, True)
        """
        from bayesseg.recipes._guarantee import RecallGuarantee

        draws = num_samples or self.config.num_samples
        xs, ys = _as_lists(x, y)
        scores = [p.prob for p in self.predict(xs, num_samples=draws)]
        score = {
            "definition": "the corrected Monte Carlo mean probability of an event per step "
            "(bs.recipes.predict_series), as bayesseg predict writes it in <stem>_prob.npy",
            "num_samples": int(draws),
            "window": self.config.predict_window or 2 * self.config.window,
        }
        self.recall_guarantee = RecallGuarantee.fit(
            scores, ys, recall_target, unit="series", score=score, names=names
        )
        return self.recall_guarantee

    def metadata(self) -> dict[str, Any]:
        """model.json's content: what ``bayesseg predict`` needs besides the weights."""
        metadata = {
            "task": "series",
            "architecture": self.model.name,
            "input": "raw series (length, features); the model standardises them itself"
            if self.config.standardize
            else "raw series (length, features); no standardisation",
            "config": self.config.to_dict(),
            "decision": self.decision,
            "windows": self.windows,
            "class_weights": self.class_weights,
            "output_bias": self.output_bias,
        }
        if self.recall_guarantee is not None:
            metadata["recall_guarantee"] = self.recall_guarantee.to_dict()
        return metadata

    def save(self, folder: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write ``model.keras`` and ``model.json`` (plus ``extra`` keys) into ``folder``.

        Each file is written under a temporary name and renamed, model.json
        last, so a folder never holds a model.json that describes another model.
        """
        from bayesseg.recipes._saving import save_run

        return save_run(self.model, folder, {**self.metadata(), **(extra or {})})


def _decision(model, xv, yv, correction, config: SeriesConfig) -> dict[str, Any]:
    import bayesseg as bs

    decision: dict[str, Any] = {
        "rule": "flag a step where the corrected probability >= threshold",
        "criterion": config.criterion,
        "tolerance": bs.metrics.DEFAULT_EVENT_TOLERANCE,
        "validation_series": len(xv),
        "correction_weights": [float(w) for w in correction],
    }
    scores = [
        p.prob
        for p in predict_series(
            model, xv, correction, config.num_samples, config.predict_window or 2 * config.window
        )
    ]
    try:
        chosen = bs.metrics.choose_threshold(
            yv, scores, criterion=config.criterion, target_recall=config.target_recall
        )
    except ValueError as err:
        return {**decision, "threshold": None, "error": str(err)}
    keys = ("precision", "recall", "f1", "flagged_fraction", "step_recall")
    return {
        **decision,
        "threshold": chosen["threshold"],
        "validation": {k: chosen[k] for k in keys},
    }


@dataclasses.dataclass
class SeriesData:
    """What :func:`prepare_series` makes of labelled series: the training windows and
    the validation series, before any model exists.

    Attributes:
        x_windows, y_windows: float32 ``(m, window, features)`` and ``(m, window)``.
        window_counts, series_counts: ``(normal, anomalous)`` steps of the
            windows and of the training series (the prior the correction restores).
        normalization: ``(mean, std)`` per feature of the training series, or None.
        x_val, y_val: the validation series and labels (lists).
        train_index, val_index: which input series each part holds (``val_index``
            empty when the validation series were given).
    """

    x_windows: np.ndarray
    y_windows: np.ndarray
    window_counts: np.ndarray
    series_counts: np.ndarray
    normalization: tuple[np.ndarray, np.ndarray] | None
    x_val: list[np.ndarray]
    y_val: list[np.ndarray]
    train_index: np.ndarray
    val_index: np.ndarray

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps per epoch at ``batch_size`` windows per step."""
        return -(-len(self.x_windows) // batch_size)


def prepare_series(
    x: Any,
    y: Any,
    config: SeriesConfig | None = None,
    *,
    validation: tuple[Any, Any] | None = None,
) -> SeriesData:
    """The validation split, the training windows and the statistics of the series recipe.

    Args:
        x, y, config, validation: as for :func:`train_series`.

    Returns:
        A :class:`SeriesData`; pass it to ``train_series(..., data=)``.

    Raises:
        ValueError: for bad series or labels, series shorter than
            ``config.window``, too few series with events, or validation
            series of another feature count or without any event.

    Example:

    >>> import bayesseg as bs
    >>> from bayesseg.recipes import SeriesConfig, prepare_series
    >>> x, y = bs.data.synthetic_sensor_series(24, length=(600, 800), events_per_series=(1, 3))
    >>> data = prepare_series(x, y, SeriesConfig(window=128))
    >>> data.x_windows.shape[1:], len(data.x_val), data.steps_per_epoch(32) > 0
    ((128, 2), 8, True)
    """
    import bayesseg as bs

    config = SeriesConfig() if config is None else config
    if not isinstance(config, SeriesConfig):
        raise argument_error("config", "be a SeriesConfig", type(config).__name__)
    xs, ys = _as_lists(x, y)
    if validation is None:
        train_index, val_index = split_series(
            ys, config.val_fraction, config.min_val_series, config.seed
        )
        xv, yv = [xs[i] for i in val_index], [ys[i] for i in val_index]
        xs, ys = [xs[i] for i in train_index], [ys[i] for i in train_index]
    else:
        xv, yv = _as_lists(*validation)
        train_index, val_index = np.arange(len(xs)), np.array([], dtype=int)
        if not any(t.any() for t in yv):
            raise argument_error("validation", "hold at least one event", "no anomalous step")
    if xv[0].shape[1] != xs[0].shape[1]:
        raise argument_error(
            "validation", f"hold series of {xs[0].shape[1]} features", xv[0].shape[1]
        )
    xw, yw = bs.data.event_windows(
        xs,
        ys,
        config.window,
        positive_fraction=config.positive_fraction,
        windows_per_event=config.windows_per_event,
        seed=config.seed,
    )
    normalization = None
    if config.standardize:
        steps = np.concatenate(xs).astype(np.float64)
        std = steps.std(axis=0)
        normalization = (steps.mean(axis=0), np.where(std > 0, std, 1.0))
    return SeriesData(
        x_windows=xw,
        y_windows=yw,
        window_counts=bs.imbalance.count_classes(yw, num_classes=2),
        series_counts=bs.imbalance.count_classes(np.concatenate(ys), num_classes=2),
        normalization=normalization,
        x_val=xv,
        y_val=yv,
        train_index=train_index,
        val_index=val_index,
    )


def _fit(model, data: SeriesData, config: SeriesConfig, strategy, callbacks, verbose):
    """Keras' fit under the default strategy; ``bs.training.fit_distributed`` (a
    ``strategy.run`` loop) under any other, on global batches reshuffled each epoch
    with a seed derived from it, the last partial batch left out so every replica
    gets examples."""
    import tensorflow as tf

    import bayesseg as bs

    if strategy is None or strategy is tf.distribute.get_strategy():
        return model.fit(
            data.x_windows,
            data.y_windows,
            batch_size=config.batch_size,
            epochs=config.epochs,
            verbose=verbose,
            callbacks=list(callbacks),
        )
    replicas = int(strategy.num_replicas_in_sync)
    if config.batch_size < replicas:
        raise argument_error(
            "config.batch_size",
            f"be at least the {replicas} replicas (the global batch)",
            config.batch_size,
        )

    def epoch_data(epoch):
        order = np.random.default_rng([config.seed, int(epoch)]).permutation(len(data.x_windows))
        return tf.data.Dataset.from_tensor_slices(
            (data.x_windows[order], data.y_windows[order])
        ).batch(config.batch_size, drop_remainder=replicas > 1)

    steps = len(data.x_windows) // config.batch_size if replicas > 1 else None
    return bs.training.fit_distributed(
        model,
        epoch_data,
        epochs=config.epochs,
        strategy=strategy,
        callbacks=list(callbacks),
        steps_per_epoch=steps,
        verbose=min(int(verbose), 1),
    )


def train_series(
    x: Any,
    y: Any,
    config: SeriesConfig | None = None,
    *,
    validation: tuple[Any, Any] | None = None,
    callbacks: Sequence[Any] = (),
    strategy=None,
    verbose: int = 0,
    data: SeriesData | None = None,
) -> SeriesRun:
    """Train the series recipe on labelled series and choose its decision threshold.

    Args:
        x: a list of ``(length_i, features)`` series of any lengths (or an
            array ``(n, length, features)``); ``(length_i,)`` is one feature.
        y: their 0/1 step labels, ``(length_i,)`` each.
        config: a :class:`SeriesConfig` (default: ``SeriesConfig()``).
        validation: None (default: hold out series with
            :func:`split_series`), or ``(x_val, y_val)`` to choose the
            threshold on.
        callbacks: Keras callbacks for training (e.g. ``LossSpikeMonitor``).
        strategy: None (default) or a ``tf.distribute`` strategy (e.g.
            ``bs.training.resolve_strategy("mirrored")``): the model is built
            under its scope, ``config.batch_size`` is the global batch, and a
            strategy other than the default one trains through
            ``bs.training.fit_distributed``.
        verbose: Keras' ``fit`` verbosity. Default 0.
        data: None, or :func:`prepare_series`'s result for these arguments
            (then ``x``, ``y`` and ``validation`` are not read again).

    Returns:
        A :class:`SeriesRun`. When no threshold can be chosen (e.g. constant
        validation scores), its ``decision["threshold"]`` is None and
        ``decision["error"]`` says why; the model is still trained.

    Raises:
        ValueError: for bad series or labels (before any training), series
            shorter than ``config.window``, or too few series with events.

    Example:

    >>> import bayesseg as bs
    >>> from bayesseg.recipes import SeriesConfig, train_series
    >>> x, y = bs.data.synthetic_sensor_series(24, length=(600, 800), events_per_series=(1, 3))
    >>> run = train_series(x, y, SeriesConfig(window=128, epochs=1, units=(4,),
    ...                                       conv_filters=(4,), num_samples=2))
    >>> sorted(run.decision)[:3], run.windows["window"]
    (['correction_weights', 'criterion', 'rule'], 128)
    """
    import keras

    import bayesseg as bs

    config = SeriesConfig() if config is None else config
    if data is None:
        data = prepare_series(x, y, config, validation=validation)
    keras.utils.set_random_seed(config.seed)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        model, weights, bias = build_series_model(
            config,
            data.x_windows.shape[-1],
            data.window_counts,
            len(data.x_windows),
            data.normalization,
        )
    counts, series_counts = data.window_counts, data.series_counts
    correction = bs.imbalance.prior_shift_weights(counts, series_counts, class_weights=weights)
    history = _fit(model, data, config, strategy, callbacks, verbose)
    windows = {
        "window": config.window,
        "windows": len(data.x_windows),
        "window_anomaly_fraction": float(counts[1] / counts.sum()),
        "series_anomaly_fraction": float(series_counts[1] / series_counts.sum()),
    }
    return SeriesRun(
        model=model,
        config=config,
        decision=_decision(model, data.x_val, data.y_val, correction, config),
        windows=windows,
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        train_index=data.train_index,
        val_index=data.val_index,
        class_weights=None if weights is None else [float(w) for w in weights],
        output_bias=np.asarray(bias, dtype=float).reshape(-1).tolist(),
    )
