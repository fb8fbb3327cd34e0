"""Gradient diagnostics: NLL versus KL contributions per layer; loss-spike monitor.

A large loss does not mean a large gradient. :func:`gradient_contributions`
splits the ELBO gradient into the part that comes from the likelihood and the
part that comes from the scaled KL, per layer and per parameter group;
:class:`GradientDiagnostics` records the same figures during ``fit``;
:class:`LossSpikeMonitor` catches a step whose loss jumps and records which
examples, elements and classes caused it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from bayesseg.layers.base import BayesianLayer, check_positive_int
from bayesseg.training import BayesianModel, TrainStepHook

__all__ = [
    "GradientReport",
    "gradient_contributions",
    "GradientDiagnostics",
    "LossSpikeMonitor",
    "PosteriorScaleRow",
    "parameter_groups",
    "posterior_scales",
]

logger = logging.getLogger(__name__)

GROUPS = ("posterior_loc", "posterior_scale", "bias", "deterministic")
# Drift below which scales count as not moving at all (jitter around an
# optimum is ~0.1-0.2 of Adam's per-step cap).
_SETTLED_DRIFT = 0.05


def _group_of(layer, variable) -> str:
    name = variable.path.rsplit("/", 1)[-1]
    if isinstance(layer, BayesianLayer):
        if name.endswith("_loc"):
            return "posterior_loc"
        if name.endswith("_rho"):
            return "posterior_scale"
        if name.startswith("bias"):
            return "bias"
    return "deterministic"


def _layer_label(layer) -> str:
    return getattr(layer, "path", None) or layer.name


def parameter_groups(model: keras.Model) -> list[tuple[str, str, list[int]]]:
    """Group the trainable variables of ``model`` by layer and parameter kind.

    Returns:
        A list of ``(layer_path, group, indices)`` (the path, e.g.
        ``"lstm0/lstm_cell"``, is the name for top-level layers) where ``indices`` point into
        ``model.trainable_variables`` and ``group`` is one of
        "posterior_loc", "posterior_scale" (the ``rho`` variables), "bias"
        (deterministic bias of a Bayesian layer) or "deterministic" (weights
        of non-Bayesian layers).

    Example:

    >>> import bayesseg as bs, keras
    >>> model = keras.Sequential([keras.Input((3,)), bs.layers.DenseFlipout(2)])
    >>> [(g, len(i)) for _, g, i in bs.diagnostics.parameter_groups(model)]
    [('posterior_loc', 1), ('posterior_scale', 1), ('bias', 1)]
    """
    index_of = {id(v): i for i, v in enumerate(model.trainable_variables)}
    groups: dict[tuple[str, str], list[int]] = {}
    seen = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for variable in (
            layer._trainable_variables if hasattr(layer, "_trainable_variables") else []
        ):
            key_id = id(variable)
            if key_id not in index_of or key_id in seen:
                continue
            seen.add(key_id)
            # The path tells apart same-named nested layers (each LSTM's "lstm_cell").
            key = (_layer_label(layer), _group_of(layer, variable))
            groups.setdefault(key, []).append(index_of[key_id])
    leftover = [i for v, i in index_of.items() if v not in seen]
    if leftover:
        groups.setdefault((model.name, "deterministic"), []).extend(leftover)
    return [(layer, group, idx) for (layer, group), idx in groups.items()]


@dataclasses.dataclass
class GradientRow:
    """Figures of one parameter group (or of the whole model)."""

    layer: str
    group: str
    num_params: int
    nll_norm: float
    kl_norm: float
    ratio: float
    cosine: float
    share: float
    snr: float | None = None


@dataclasses.dataclass
class GradientReport:
    """Per-layer NLL and KL gradient figures, with totals over the model.

    Attributes:
        rows: one :class:`GradientRow` per (layer, parameter group).
        groups: one row per parameter group over all layers (layer "all"):
            the posterior means ("posterior_loc") and the posterior scales
            ("posterior_scale") apart. The model-wide ratio is dominated by
            the means; on the scales the KL is often the main force.
        total: the same figures over all trainable variables.
        nll, kl, kl_weight, loss: the ELBO terms of the (last) evaluation.
    """

    rows: list[GradientRow]
    total: GradientRow
    nll: float
    kl: float
    kl_weight: float
    loss: float
    groups: list[GradientRow] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain Python structure (JSON-serialisable)."""
        return {
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "groups": [dataclasses.asdict(r) for r in self.groups],
            "total": dataclasses.asdict(self.total),
            "nll": self.nll,
            "kl": self.kl,
            "kl_weight": self.kl_weight,
            "loss": self.loss,
        }

    def __str__(self) -> str:
        header = (
            f"{'layer':<22}{'group':<17}{'params':>9}{'|g_nll|':>11}{'|g_kl|':>11}"
            f"{'kl/nll':>10}{'cosine':>8}{'share':>7}{'snr':>8}"
        )
        lines = [header, "-" * len(header)]
        for row in [*self.rows, *self.groups, self.total]:
            snr = "" if row.snr is None else f"{row.snr:8.3g}"
            lines.append(
                f"{row.layer[:21]:<22}{row.group:<17}{row.num_params:>9d}{row.nll_norm:>11.3e}"
                f"{row.kl_norm:>11.3e}{row.ratio:>10.3g}{row.cosine:>8.3f}{row.share:>7.3f}{snr}"
            )
        lines.append(
            f"nll={self.nll:.5g}  kl={self.kl:.5g}  kl_weight={self.kl_weight:.3e}  "
            f"loss={self.loss:.5g}"
        )
        return "\n".join(lines)


def _flat(grads, indices):
    parts = [
        tf.reshape(tf.cast(grads[i], tf.float32), [-1]) for i in indices if grads[i] is not None
    ]
    if not parts:
        return tf.zeros([0])
    return tf.concat(parts, 0)


def _row(layer, group, g_nll, g_kl, total_sq, snr=None) -> GradientRow:
    nll_norm = float(tf.norm(g_nll))
    kl_norm = float(tf.norm(g_kl))
    denom = nll_norm * kl_norm
    cosine = float(tf.reduce_sum(g_nll * g_kl)) / denom if denom > 0 else 0.0
    total = g_nll + g_kl
    share = float(tf.reduce_sum(total * total)) / total_sq if total_sq > 0 else 0.0
    ratio = kl_norm / nll_norm if nll_norm > 0 else math.inf
    return GradientRow(
        layer, group, int(g_nll.shape[0]), nll_norm, kl_norm, ratio, cosine, share, snr
    )


def gradient_contributions(
    model: keras.Model, elbo, x, y, sample_weight=None, num_samples: int = 1
) -> GradientReport:
    """Split the ELBO gradient into its NLL and scaled-KL parts, per layer.

    For each Monte Carlo draw, computes ``g_nll = d NLL / d theta`` and
    ``g_kl = d (kl term) / d theta`` (the KL term of the loss, i.e. scaled by
    the ELBO's ``kl_weight`` and temperature), averages them over the draws,
    and reports per (layer, parameter group): their norms, ``|g_kl| /
    |g_nll|``, their cosine similarity, the group's share of the squared norm
    of the total gradient ``g_nll + g_kl`` and, with ``num_samples > 1``, the
    gradient signal-to-noise ratio ``|mean| / std`` across draws (mean over
    the group's parameters). ``total`` gives the same over the whole model:
    ``g_nll + g_kl`` is the gradient of the loss.

    Args:
        model: a model with Bayesian layers.
        elbo: a ``bayesseg.ELBO``.
        x, y: one batch.
        sample_weight: optional sample weights.
        num_samples: int >= 1, Monte Carlo draws of the weights.

    Returns:
        A :class:`GradientReport` (``print(report)`` shows a table).

    Example:

    >>> import bayesseg as bs, keras, numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), bs.layers.DenseFlipout(1)])
    >>> elbo = bs.ELBO(bs.losses.WeightedBinaryCrossentropy(), bs.kl.PerExample(10))
    >>> report = bs.diagnostics.gradient_contributions(
    ...     model, elbo, np.ones((4, 3)), np.ones((4, 1)), num_samples=2)
    >>> report.total.group
    'all'
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(
            f"Argument `num_samples` must be an integer >= 1. Received: num_samples={num_samples!r}"
        )
    variables = model.trainable_variables
    if not variables:
        raise ValueError(f"Model {model.name!r} has no trainable variables.")
    if sample_weight is not None:
        # NumPy weights have no `.shape.rank`; one tensor serves every draw.
        sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
    draws_nll, draws_kl = [], []
    for _ in range(num_samples):
        with tf.GradientTape(persistent=True) as tape:
            y_pred = model(x, training=True)
            terms = elbo.compute(model, y, y_pred, sample_weight)
            kl_term = terms.loss - terms.nll
        g_nll = tape.gradient(terms.nll, variables)
        g_kl = tape.gradient(kl_term, variables)
        del tape
        draws_nll.append(
            [
                g if g is not None else tf.zeros_like(v)
                for g, v in zip(g_nll, variables, strict=True)
            ]
        )
        draws_kl.append(
            [g if g is not None else tf.zeros_like(v) for g, v in zip(g_kl, variables, strict=True)]
        )
    mean_nll = [tf.add_n([d[i] for d in draws_nll]) / num_samples for i in range(len(variables))]
    mean_kl = [tf.add_n([d[i] for d in draws_kl]) / num_samples for i in range(len(variables))]
    all_indices = list(range(len(variables)))
    total_vec = _flat(mean_nll, all_indices) + _flat(mean_kl, all_indices)
    total_sq = float(tf.reduce_sum(total_vec * total_vec))

    def snr(indices):
        if num_samples < 2:
            return None
        samples = tf.stack(
            [
                _flat(dn, indices) + _flat(dk, indices)
                for dn, dk in zip(draws_nll, draws_kl, strict=True)
            ]
        )
        mean = tf.reduce_mean(samples, 0)
        std = tf.math.reduce_std(samples, 0)
        ratio = tf.abs(mean) / (std + 1e-12)
        return float(tf.reduce_mean(ratio))

    grouping = parameter_groups(model)
    rows = [
        _row(layer, group, _flat(mean_nll, idx), _flat(mean_kl, idx), total_sq, snr(idx))
        for layer, group, idx in grouping
    ]
    by_group: dict[str, list[int]] = {}
    for _, group, idx in grouping:
        by_group.setdefault(group, []).extend(idx)
    groups = [
        _row("all", group, _flat(mean_nll, idx), _flat(mean_kl, idx), total_sq, snr(idx))
        for group, idx in sorted(by_group.items(), key=lambda item: GROUPS.index(item[0]))
    ]
    total = _row(
        model.name,
        "all",
        _flat(mean_nll, all_indices),
        _flat(mean_kl, all_indices),
        total_sq,
        snr(all_indices),
    )
    return GradientReport(
        rows=rows,
        groups=groups,
        total=total,
        nll=float(terms.nll),
        kl=float(terms.kl),
        kl_weight=float(terms.kl_weight),
        loss=float(terms.loss),
    )


@dataclasses.dataclass
class PosteriorScaleRow:
    """Where one Bayesian weight's posterior scales stand.

    Attributes:
        layer: the layer's name.
        weight: the weight's name ("kernel", "recurrent_kernel", "bias").
        num_weights: its number of entries.
        median_scale: median posterior standard deviation.
        initial_scale: the layer's ``posterior_scale_init``.
        prior_scale: median standard deviation of the prior (NaN when the
            prior has none).
        scale_multiplier: the layer's ``scale_multiplier``.
    """

    layer: str
    weight: str
    num_weights: int
    median_scale: float
    initial_scale: float
    prior_scale: float
    scale_multiplier: float


def _prior_stddev(layer: BayesianLayer, name: str, shape) -> float:
    try:
        std = layer.prior_distribution(name, shape).stddev()
    except (NotImplementedError, TypeError, ValueError):
        return math.nan
    return float(np.median(np.asarray(std)))


def posterior_scales(model: keras.layers.Layer) -> list[PosteriorScaleRow]:
    """Median posterior scale of every Bayesian weight, next to its start and its prior.

    The first question to ask of a trained Bayesian network: did its
    posterior scales leave their initial value? A median still at
    ``posterior_scale_init`` means the model is, in effect, its deterministic
    twin; a median at the prior's scale means the data did not constrain
    those weights at all.

    Args:
        model: a Keras model or layer holding Bayesian layers.

    Returns:
        One :class:`PosteriorScaleRow` per (Bayesian layer, weight).

    Example:

    >>> import bayesseg as bs, keras
    >>> model = keras.Sequential([keras.Input((3,)),
    ...                           bs.layers.DenseFlipout(2, posterior_scale_init=0.05)])
    >>> row = bs.diagnostics.posterior_scales(model)[0]
    >>> row.weight, round(row.median_scale, 6), row.initial_scale, round(row.prior_scale, 4)
    ('kernel', 0.05, 0.05, 0.1)
    """
    from bayesseg.layers.base import bayesian_layers

    rows = []
    for layer in bayesian_layers(model):
        for name in layer.posterior_names:
            scale = np.asarray(layer.posterior_scale(name))
            rows.append(
                PosteriorScaleRow(
                    layer=_layer_label(layer),
                    weight=name,
                    num_weights=int(scale.size),
                    median_scale=float(np.median(scale)),
                    initial_scale=float(layer.posterior_scale_init),
                    prior_scale=_prior_stddev(layer, name, scale.shape),
                    scale_multiplier=float(layer.scale_multiplier),
                )
            )
    return rows


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _require_bayesian_model(model, who: str) -> BayesianModel:
    if not isinstance(model, BayesianModel):
        raise ValueError(
            f"{who} needs a bayesseg.BayesianModel (it runs inside its train step). "
            f"Received a {type(model).__name__}."
        )
    return model


class _GradientHook(TrainStepHook):
    """Every N steps: split the step's gradient into NLL and KL parts, per group."""

    def __init__(self, callback):
        self.callback = callback

    def before_update(self, context):
        cb = self.callback
        due = tf.equal(tf.math.floormod(context.step, cb.every_n_steps), 0)

        def measure():
            variables = context.variables
            with tf.GradientTape() as tape:
                _, penalty = cb.model.elbo.kl_penalty(cb.model, context.kl_weight)
            g_kl = tape.gradient(penalty, variables)
            g_kl = [
                g if g is not None else tf.zeros_like(v)
                for g, v in zip(g_kl, variables, strict=True)
            ]
            g_total = [
                tf.cast(g, tf.float32) / tf.cast(context.gradient_scale, tf.float32)
                if g is not None
                else tf.zeros_like(v)
                for g, v in zip(context.gradients, variables, strict=True)
            ]
            g_nll = [t - k for t, k in zip(g_total, g_kl, strict=True)]
            rows = []
            for indices in [idx for _, _, idx in cb.groups] + [list(range(len(variables)))]:
                n = _flat(g_nll, indices)
                k = _flat(g_kl, indices)
                rows.append(tf.stack([tf.norm(n), tf.norm(k), tf.reduce_sum(n * k)]))
            cb._values.assign(tf.stack(rows))
            cb._measured_step.assign(tf.cast(context.step, tf.int64))
            return tf.constant(True)

        tf.cond(due, measure, lambda: tf.constant(False))
        return None


class GradientDiagnostics(keras.callbacks.Callback):
    """Record NLL and KL gradient norms per layer during ``fit``.

    Every ``every_n_steps`` optimizer updates, inside the train step of a
    :class:`bayesseg.BayesianModel`, the step's own gradient is split into its
    KL part (one extra backward pass through the KL only: no data) and its NLL
    part (the rest). Model-level figures go into ``History`` at the end of
    each epoch (``grad_norm_nll``, ``grad_norm_kl``, ``grad_kl_nll_ratio``,
    from the last measured step); per-group figures are kept in
    :attr:`records` and, with ``log_dir``, written as TensorBoard scalars and
    to ``log_dir/gradients.csv`` (the posterior figures below to
    ``log_dir/posterior.csv``). Under a multi-replica strategy the figures
    are those of the first replica's local gradient. The NLL part is the
    total minus the KL part, so where the KL part dominates by a factor R
    the NLL figure loses about log10(R) of float32's 7 digits.

    Each record also says whether the posterior converged:

    * ``record["groups"]``: the figures per parameter group over all layers,
      so the KL/NLL ratio of the posterior scales is read apart from that of
      the means (History: ``grad_kl_nll_ratio_loc``,
      ``grad_kl_nll_ratio_scale``);
    * ``record["posterior"]``: per Bayesian weight, the median posterior
      scale against its initial value and the prior's scale, and the
      *drift*: the median ``|change of rho|`` since the previous record over
      what the optimizer could have moved it, ``steps * learning_rate``
      (Adam-type optimizers move a parameter by at most about the learning
      rate per step). A drift near 1 means the scales are still being
      dragged at the optimizer's cap; noise around a converged value gives
      about 0.1 or less. History: ``posterior_scale_median`` (the median
      over weights of their median scale) and ``posterior_scale_drift`` (the
      largest drift).

    At the end of ``fit``, a warning (``logging``, and :attr:`warnings`)
    names the layers whose scales are still within 10% of their initial
    value after ``min_steps_for_warning`` updates while not moving (drift
    below 0.05), or whose drift is at least ``drift_warning`` (default
    0.25): in both cases the posterior had not converged, so the
    uncertainty it gives is that of its initialisation.
    The size of the epistemic uncertainty plays no part: with plenty of data
    a small one is the right answer.

    Args:
        every_n_steps: int >= 1. Default 50.
        log_dir: optional directory for TensorBoard events and the CSV.
        drift_warning: float > 0, the drift at which a layer's scales count as
            still moving. Default 0.25.
        min_steps_for_warning: int >= 1, updates before "still at the initial
            value" is worth a warning. Default 100.

    Example:

    >>> import bayesseg as bs
    >>> diagnostics = bs.diagnostics.GradientDiagnostics(every_n_steps=50)
    >>> # model.fit(x, y, callbacks=[diagnostics]); diagnostics.records[-1]
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        log_dir: str | None = None,
        drift_warning: float = 0.25,
        min_steps_for_warning: int = 100,
    ):
        super().__init__()
        check_positive_int("every_n_steps", every_n_steps)
        check_positive_int("min_steps_for_warning", min_steps_for_warning)
        if isinstance(drift_warning, bool) or not (
            isinstance(drift_warning, int | float) and drift_warning > 0
        ):
            raise ValueError(
                "Argument `drift_warning` must be a number > 0. "
                f"Received: drift_warning={drift_warning!r}"
            )
        self.every_n_steps = every_n_steps
        self.log_dir = log_dir
        self.drift_warning = float(drift_warning)
        self.min_steps_for_warning = min_steps_for_warning
        self.records: list[dict] = []
        self.warnings: list[str] = []
        self._rho_before: dict | None = None
        self._hook = _GradientHook(self)
        self._last_logged = -1
        self._writer = None

    def set_model(self, model):
        super().set_model(model)
        model = _require_bayesian_model(model, "GradientDiagnostics")
        if getattr(self, "_state_model", None) is not model:
            # Created once per model: a train function traced in an earlier
            # fit (and cached by the model) keeps writing to these variables.
            self._state_model = model
            self.groups = parameter_groups(model)
            self._values = tf.Variable(tf.zeros([len(self.groups) + 1, 3]), trainable=False)
            self._measured_step = tf.Variable(tf.constant(-1, tf.int64), trainable=False)
        model.add_train_step_hook(self._hook)

    def _rho_snapshot(self) -> dict:
        from bayesseg.layers.base import bayesian_layers

        return {
            (_layer_label(layer), name): np.array(getattr(layer, f"{name}_rho").numpy())
            for layer in bayesian_layers(self.model)
            for name in layer.posterior_names
        }

    def _learning_rate(self) -> float:
        try:
            return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        except (AttributeError, TypeError, ValueError):
            return math.nan

    def _posterior_record(self, step: int) -> list[dict]:
        rows = posterior_scales(self.model)
        rho = self._rho_snapshot()
        before = self._rho_before
        lr = self._learning_rate()
        out = []
        for row in rows:
            drift = math.nan
            key = (row.layer, row.weight)
            if before is not None and key in before and step > before["step"] and lr > 0:
                moved = np.median(np.abs(rho[key] - before[key]))
                drift = float(moved / ((step - before["step"]) * lr))
            out.append(dataclasses.asdict(row) | {"drift": drift})
        self._rho_before = rho | {"step": step}
        return out

    def on_train_begin(self, logs=None):
        self.warnings = []
        if self.log_dir:
            os.makedirs(self.log_dir, exist_ok=True)
            if _tensorboard_available():
                self._writer = tf.summary.create_file_writer(self.log_dir)
            else:
                logger.warning(
                    "TensorBoard is not installed: GradientDiagnostics writes only "
                    "%s/gradients.csv (pip install tensorboard for event files).",
                    self.log_dir,
                )

    def on_train_batch_end(self, batch, logs=None):
        step = int(self._measured_step.numpy())
        if step == self._last_logged or step < 0:
            return
        self._last_logged = step
        values = self._values.numpy()
        names = [(layer, group) for layer, group, _ in self.groups] + [(self.model.name, "all")]
        record = {"step": step, "rows": []}
        for (layer, group), (nll, kl, dot) in zip(names, values, strict=True):
            cosine = float(dot / (nll * kl)) if nll * kl > 0 else 0.0
            record["rows"].append(
                {
                    "layer": layer,
                    "group": group,
                    "nll_norm": float(nll),
                    "kl_norm": float(kl),
                    "ratio": float(kl / nll) if nll > 0 else math.inf,
                    "cosine": cosine,
                }
            )
        by_group: dict[str, list[float]] = {}
        for (_, group), (nll, kl, dot) in zip(names[:-1], values[:-1], strict=True):
            sums = by_group.setdefault(group, [0.0, 0.0, 0.0])
            sums[0] += float(nll) ** 2
            sums[1] += float(kl) ** 2
            sums[2] += float(dot)
        record["groups"] = []
        for group in sorted(by_group, key=GROUPS.index):
            nll_sq, kl_sq, dot = by_group[group]
            nll, kl = math.sqrt(nll_sq), math.sqrt(kl_sq)
            record["groups"].append(
                {
                    "group": group,
                    "nll_norm": nll,
                    "kl_norm": kl,
                    "ratio": kl / nll if nll > 0 else math.inf,
                    "cosine": dot / (nll * kl) if nll * kl > 0 else 0.0,
                }
            )
        record["posterior"] = self._posterior_record(step)
        self.records.append(record)
        if self._writer is not None:
            with self._writer.as_default(step=step):
                for row in record["rows"]:
                    tag = f"gradients/{row['layer']}/{row['group']}"
                    tf.summary.scalar(f"{tag}/nll_norm", row["nll_norm"])
                    tf.summary.scalar(f"{tag}/kl_norm", row["kl_norm"])
                for row in record["posterior"]:
                    tag = f"posterior/{row['layer']}/{row['weight']}"
                    tf.summary.scalar(f"{tag}/median_scale", row["median_scale"])
                    tf.summary.scalar(f"{tag}/drift", row["drift"])
        if self.log_dir:
            self._write_csv(
                "gradients.csv",
                ["layer", "group", "nll_norm", "kl_norm", "ratio", "cosine"],
                record["step"],
                record["rows"],
            )
            self._write_csv(
                "posterior.csv",
                ["layer", "weight", "median_scale", "initial_scale", "prior_scale", "drift"],
                record["step"],
                record["posterior"],
            )

    def _write_csv(self, name: str, columns: list[str], step: int, rows: list[dict]):
        path = os.path.join(self.log_dir, name)
        new = not os.path.exists(path)
        with open(path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", *columns])
            for row in rows:
                writer.writerow([step, *(row[column] for column in columns)])

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.records:
            return
        record = self.records[-1]
        total = record["rows"][-1]
        logs["grad_norm_nll"] = total["nll_norm"]
        logs["grad_norm_kl"] = total["kl_norm"]
        logs["grad_kl_nll_ratio"] = total["ratio"]
        for row in record["groups"]:
            short = {"posterior_loc": "loc", "posterior_scale": "scale"}.get(row["group"])
            if short:
                logs[f"grad_kl_nll_ratio_{short}"] = row["ratio"]
        posterior = record["posterior"]
        if posterior:
            logs["posterior_scale_median"] = float(
                np.median([row["median_scale"] for row in posterior])
            )
            drifts = [row["drift"] for row in posterior if math.isfinite(row["drift"])]
            logs["posterior_scale_drift"] = max(drifts) if drifts else math.nan

    def convergence_warnings(self) -> list[str]:
        """Why the posterior scales had not converged at the last record (empty if they had).

        See the class docstring for the two tests (still at the initial
        value; drift at or above ``drift_warning``).
        """
        if not self.records:
            return []
        record = self.records[-1]
        at_start, moving = [], []
        for row in record["posterior"]:
            label = f"{row['layer']}/{row['weight']}"
            ratio = row["median_scale"] / row["initial_scale"]
            # Near the start *and* not moving: a scale that jitters around an
            # optimum that happens to lie near its start (drift ~0.1) is fine.
            still = not (row["drift"] >= _SETTLED_DRIFT)
            if record["step"] >= self.min_steps_for_warning and 1 / 1.1 < ratio < 1.1 and still:
                at_start.append(label)
            elif math.isfinite(row["drift"]) and row["drift"] >= self.drift_warning:
                moving.append(f"{label} ({row['drift']:.2f})")
        messages = []
        if at_start:
            messages.append(
                f"After {record['step']} updates the posterior scales of {len(at_start)} "
                f"weight(s) are still within 10% of their initial value: "
                f"{', '.join(at_start)}. The network is, in effect, its deterministic "
                "twin; train longer or raise `scale_multiplier`."
            )
        if moving:
            messages.append(
                f"The posterior scales of {len(moving)} weight(s) are still moving at "
                f">= {self.drift_warning:g} of the optimizer's per-step cap (drift in "
                f"brackets): {', '.join(moving)}. They have not converged; train longer "
                "or raise `scale_multiplier`."
            )
        return messages

    def on_train_end(self, logs=None):
        self.warnings = self.convergence_warnings()
        for message in self.warnings:
            logger.warning(message)
        self.model.remove_train_step_hook(self._hook)
        if self._writer is not None:
            self._writer.flush()


class _SpikeHook(TrainStepHook):
    def __init__(self, monitor):
        self.monitor = monitor

    def before_update(self, context):
        m = self.monitor
        loss = tf.cast(context.loss, tf.float32)
        buffer = m._buffer
        filled = m._count >= m.window
        median = _median(buffer)
        mad = _median(tf.abs(buffer - median))
        z = (loss - median) / (1.4826 * mad + 1e-12 + 1e-3 * tf.abs(median))
        spike = tf.logical_and(filled, z > m.threshold)

        def record():
            # Only a spike pays for the per-element losses and the gradient norm.
            per_element = m.model.elbo.likelihood.call(context.y, context.y_pred)
            grads = [
                tf.cast(g, tf.float32) / tf.cast(context.gradient_scale, tf.float32)
                for g in context.gradients
                if g is not None
            ]
            m._batch_x.assign(tf.cast(tf.nest.flatten(context.x)[0], tf.float32))
            m._batch_y.assign(tf.cast(context.y, tf.float32))
            m._batch_pred.assign(tf.cast(context.y_pred, tf.float32))
            m._batch_elements.assign(tf.cast(per_element, tf.float32))
            m._batch_examples.assign(tf.cast(context.per_example_nll, tf.float32))
            return tf.linalg.global_norm(grads)

        grad_norm = tf.cond(spike, record, lambda: tf.constant(0.0))
        m._last.assign(
            tf.stack(
                [
                    loss,
                    median,
                    z,
                    grad_norm,
                    tf.cast(spike, tf.float32),
                    tf.cast(context.step, tf.float32),
                ]
            )
        )
        # A spike does not enter the window: the baseline stays clean.
        position = tf.math.floormod(m._count, m.window)
        new_buffer = tf.tensor_scatter_nd_update(buffer, [[position]], [loss])
        m._buffer.assign(tf.where(spike, buffer, new_buffer))
        m._count.assign_add(tf.where(spike, 0, 1))
        if m.on_spike in ("skip_update", "stop"):
            return tf.logical_not(spike)
        return None


def _median(values):
    sorted_values = tf.sort(values)
    n = tf.shape(values)[0]
    return 0.5 * (sorted_values[(n - 1) // 2] + sorted_values[n // 2])


class LossSpikeMonitor(keras.callbacks.Callback):
    """Flag loss spikes and record what caused them (built on the train-step hook).

    At every step, the loss is compared with the median of the last
    ``window`` non-spike losses by a robust z-score, ``(loss - median) /
    (1.4826 * MAD)``; above ``threshold`` the step is a spike. For a spike
    the monitor records the step, the loss, the baseline median, the
    gradient norm, the per-example losses, the top contributing examples,
    elements (timesteps/pixels: their index, label, predicted probability,
    weight and loss) and classes, in :attr:`spikes`; with ``save_dir`` it
    also saves the batch and the record (``spike_<step>.npz`` and ``.json``)
    for replay. Because it runs inside the train step (before the update),
    ``on_spike="skip_update"`` really skips the update and ``"stop"`` skips
    it and stops training; ``"log"`` only records.

    Args:
        threshold: float > 0, robust z-score above which a step spikes.
            Default 6.
        window: int >= 3, non-spike steps in the baseline. Default 50.
        save_dir: optional directory for ``.npz``/``.json`` records.
        on_spike: "log" (default), "skip_update" or "stop".
        top_k: int, how many examples/elements to list. Default 10.

    Example:

    >>> import bayesseg as bs
    >>> monitor = bs.diagnostics.LossSpikeMonitor(threshold=6.0, window=50)
    >>> # model.fit(x, y, callbacks=[monitor]); monitor.spikes
    """

    def __init__(
        self,
        threshold: float = 6.0,
        window: int = 50,
        save_dir: str | None = None,
        on_spike: str = "log",
        top_k: int = 10,
    ):
        super().__init__()
        if not isinstance(threshold, (int, float)) or not threshold > 0 or math.isinf(threshold):
            raise ValueError(
                "Argument `threshold` must be a finite number > 0. "
                f"Received: threshold={threshold!r}"
            )
        if isinstance(window, bool) or not isinstance(window, int) or window < 3:
            raise ValueError(
                f"Argument `window` must be an integer >= 3. Received: window={window!r}"
            )
        if on_spike not in ("log", "skip_update", "stop"):
            raise ValueError(
                "Argument `on_spike` must be 'log', 'skip_update' or 'stop'. "
                f"Received: on_spike={on_spike!r}"
            )
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(
                f"Argument `top_k` must be a positive integer. Received: top_k={top_k!r}"
            )
        self.threshold = float(threshold)
        self.window = window
        self.save_dir = save_dir
        self.on_spike = on_spike
        self.top_k = top_k
        self.spikes: list[dict] = []
        self._hook = _SpikeHook(self)

    def set_model(self, model):
        super().set_model(model)
        _require_bayesian_model(model, "LossSpikeMonitor")
        model.add_train_step_hook(self._hook)
        if getattr(self, "_state_model", None) is model:
            return  # a later fit on the same model keeps the loss window
        self._state_model = model
        unknown = tf.TensorShape(None)
        self._buffer = tf.Variable(tf.zeros([self.window]), trainable=False)
        self._count = tf.Variable(0, trainable=False)
        self._last = tf.Variable(tf.zeros([6]), trainable=False)
        self._batch_x = tf.Variable(tf.zeros([0]), shape=unknown, trainable=False)
        self._batch_y = tf.Variable(tf.zeros([0]), shape=unknown, trainable=False)
        self._batch_pred = tf.Variable(tf.zeros([0]), shape=unknown, trainable=False)
        self._batch_elements = tf.Variable(tf.zeros([0]), shape=unknown, trainable=False)
        self._batch_examples = tf.Variable(tf.zeros([0]), shape=unknown, trainable=False)

    def on_train_batch_end(self, batch, logs=None):
        loss, median, z, grad_norm, spike, step = (float(v) for v in self._last.numpy())
        if self.spikes and self.spikes[-1].get("loss_after") is None:
            self.spikes[-1]["loss_after"] = loss
        if not spike:
            return
        record = self._record(int(step), loss, median, z, grad_norm)
        self.spikes.append(record)
        logger.warning(
            "Loss spike at step %d: loss %.4g vs median %.4g (z=%.1f); top elements: %s",
            record["step"],
            loss,
            median,
            z,
            record["top_elements"][:3],
        )
        if self.save_dir:
            self._save(record)
        if self.on_spike == "stop":
            self.model.stop_training = True

    def _element_weights(self, labels):
        likelihood = self.model.elbo.likelihood
        pos_weight = getattr(likelihood, "pos_weight", None)
        class_weights = getattr(likelihood, "class_weights", None)
        if class_weights is not None:
            weights = np.asarray(class_weights, dtype="float64")
            if weights.size == 2 or labels.max() < weights.size:
                return weights[np.clip(labels.astype(int), 0, weights.size - 1)]
        if pos_weight is not None:
            return np.where(labels > 0.5, float(pos_weight), 1.0)
        return None

    def _record(self, step, loss, median, z, grad_norm) -> dict:
        elements = self._batch_elements.numpy()
        per_example = self._batch_examples.numpy()
        labels = self._batch_y.numpy().reshape(elements.shape + (-1,))
        label_values = labels[..., 0] if labels.shape[-1] == 1 else labels.argmax(-1)
        preds = self._batch_pred.numpy()
        if preds.size == elements.size:  # one logit per element: sigmoid
            p_positive = 1.0 / (1.0 + np.exp(-preds.reshape(elements.shape)))
            p_label = np.where(label_values > 0.5, p_positive, 1.0 - p_positive)
        else:  # softmax logits over the last axis
            shifted = preds - preds.max(axis=-1, keepdims=True)
            probs = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
            safe = np.clip(label_values.astype(int), 0, probs.shape[-1] - 1)
            p_label = np.take_along_axis(probs, safe[..., None], axis=-1)[..., 0]
        weights = self._element_weights(label_values)
        top_elements = []
        for flat in np.argsort(elements, axis=None)[::-1][: self.top_k]:
            index = np.unravel_index(flat, elements.shape)
            top_elements.append(
                {
                    "index": [int(i) for i in index],
                    "label": float(label_values[index]),
                    "probability_of_label": float(p_label[index]),
                    "weight": None if weights is None else float(weights[index]),
                    "loss": float(elements[index]),
                }
            )
        total = float(elements.sum()) or 1.0
        classes = {}
        for value in np.unique(label_values):
            share = float(elements[label_values == value].sum()) / total
            classes[str(int(value))] = share
        example_order = np.argsort(per_example)[::-1][: self.top_k]
        return {
            "step": step,
            "loss": loss,
            "loss_median_before": median,
            "loss_after": None,
            "z_score": z,
            "gradient_norm": grad_norm,
            "per_example_loss": per_example.tolist(),
            "top_examples": [
                {"example": int(i), "loss": float(per_example[i])} for i in example_order
            ],
            "top_elements": top_elements,
            "class_loss_share": classes,
        }

    def _save(self, record):
        os.makedirs(self.save_dir, exist_ok=True)
        stem = os.path.join(self.save_dir, f"spike_{record['step']}")
        np.savez_compressed(
            stem + ".npz",
            x=self._batch_x.numpy(),
            y=self._batch_y.numpy(),
            y_pred=self._batch_pred.numpy(),
            element_loss=self._batch_elements.numpy(),
        )
        with open(stem + ".json", "w") as handle:
            json.dump(record, handle, indent=2)

    def on_train_end(self, logs=None):
        self.model.remove_train_step_hook(self._hook)
