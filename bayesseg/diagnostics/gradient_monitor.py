"""GradientDiagnostics: NLL and KL gradient norms per layer, and posterior drift, during fit.

The callback registers a train-step hook that, every N steps, splits the
step's own gradient into its KL part and its NLL part per parameter group and
writes the figures into a :class:`GradientState`; the callback reads them
after the step, adds the posterior scales and their drift, and logs them.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from bayesseg._validation import check_float, check_int
from bayesseg.diagnostics._common import require_bayesian_model
from bayesseg.diagnostics.gradients import GROUPS, flat_gradients, parameter_groups
from bayesseg.diagnostics.posterior import posterior_scales, rho_snapshot
from bayesseg.training import TrainStepHook

__all__ = ["GradientDiagnostics", "GradientState"]

logger = logging.getLogger("bayesseg.diagnostics")

# Drift below which scales count as not moving at all (jitter around an
# optimum is ~0.1-0.2 of Adam's per-step cap).
_SETTLED_DRIFT = 0.05


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


@dataclasses.dataclass
class GradientState:
    """What the gradient hook writes inside the train step; the callback reads it after.

    Attributes:
        groups: ``parameter_groups(model)``, the rows measured.
        values: ``(len(groups) + 1, 3)`` float32 variable: per group, then over
            the model, ``|g_nll|``, ``|g_kl|`` and ``g_nll . g_kl``.
        measured_step: int64 variable, the optimizer step last measured (-1
            before the first).
    """

    groups: list
    values: tf.Variable
    measured_step: tf.Variable

    @classmethod
    def create(cls, model: keras.Model) -> GradientState:
        groups = parameter_groups(model)
        return cls(
            groups=groups,
            values=tf.Variable(tf.zeros([len(groups) + 1, 3]), trainable=False),
            measured_step=tf.Variable(tf.constant(-1, tf.int64), trainable=False),
        )


class _GradientHook(TrainStepHook):
    """Every N steps: split the step's gradient into NLL and KL parts, per group."""

    def __init__(self, every_n_steps: int):
        self.every_n_steps = every_n_steps
        self.model = None
        self.state: GradientState | None = None

    def bind(self, model) -> None:
        # The state is created once per model: a train function traced in an
        # earlier fit (and cached by the model) keeps writing to its variables.
        if self.model is not model:
            self.model = model
            self.state = GradientState.create(model)

    def before_update(self, context):
        model, state = self.model, self.state
        due = tf.equal(tf.math.floormod(context.step, self.every_n_steps), 0)

        def measure():
            variables = context.variables
            with tf.GradientTape() as tape:
                _, penalty = model.elbo.kl_penalty(model, context.kl_weight)
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
            for indices in [idx for _, _, idx in state.groups] + [list(range(len(variables)))]:
                n = flat_gradients(g_nll, indices)
                k = flat_gradients(g_kl, indices)
                rows.append(tf.stack([tf.norm(n), tf.norm(k), tf.reduce_sum(n * k)]))
            state.values.assign(tf.stack(rows))
            state.measured_step.assign(tf.cast(context.step, tf.int64))
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
        self.every_n_steps = check_int("every_n_steps", every_n_steps)
        self.log_dir = log_dir
        self.drift_warning = check_float(
            "drift_warning", drift_warning, minimum=0, strict_minimum=True
        )
        self.min_steps_for_warning = check_int("min_steps_for_warning", min_steps_for_warning)
        self.records: list[dict] = []
        self.warnings: list[str] = []
        self._rho_before: dict | None = None
        self._hook = _GradientHook(self.every_n_steps)
        self._last_logged = -1
        self._writer = None

    def set_model(self, model):
        super().set_model(model)
        self._hook.bind(require_bayesian_model(model, "GradientDiagnostics"))
        model.add_train_step_hook(self._hook)

    @property
    def groups(self) -> list[tuple[str, str, list[int]]]:
        """The model's ``parameter_groups``, the rows of each record (set by ``fit``)."""
        return self._hook.state.groups if self._hook.state is not None else []

    def _learning_rate(self) -> float:
        try:
            return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        except (AttributeError, TypeError, ValueError):
            return math.nan

    def _posterior_record(self, step: int) -> list[dict]:
        rows = posterior_scales(self.model)
        rho = rho_snapshot(self.model)
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
        state = self._hook.state
        step = int(state.measured_step.numpy())
        if step == self._last_logged or step < 0:
            return
        self._last_logged = step
        values = state.values.numpy()
        names = [(layer, group) for layer, group, _ in state.groups] + [(self.model.name, "all")]
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
