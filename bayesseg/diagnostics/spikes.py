"""LossSpikeMonitor: catch a step whose loss jumps and record what caused it.

The monitor's train-step hook scores every step's loss against a window of
recent losses and, for a spike, copies the batch (and the dataset ids of its
examples, when the inputs carry them) into a :class:`SpikeState` (and may
veto the update); the monitor reads the state after the step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from bayesseg import _probability
from bayesseg._validation import argument_error, check_choice, check_float, check_int
from bayesseg.diagnostics._common import require_bayesian_model
from bayesseg.training import TrainStepHook

__all__ = ["LossSpikeMonitor", "SpikeState"]

logger = logging.getLogger("bayesseg.diagnostics")

_ON_SPIKE = ("log", "skip_update", "stop")
DEFAULT_ID_KEY = "example_id"
#: The share of a batch's examples over which a jump must be spread to be
#: flagged below ``min_ratio`` (``LossSpikeMonitor(min_spread=)``; measured on
#: the demos' clean runs and planted batches in docs/diagnostics.md).
DEFAULT_MIN_SPREAD = 0.5
#: The robust z-score above which a step can spike (``LossSpikeMonitor(threshold=)``).
DEFAULT_THRESHOLD = 4.0
#: How many times ``threshold`` the z-score of a jump spread over the batch must be.
SPREAD_Z_FACTOR = 2.0
#: The share of a batch's elements whose mean loss is the "tail" of
#: :func:`element_summary` that the monitor follows (the top 1%).
TAIL_FRACTION = 0.01
#: How many times its baseline the tail's mean loss must be for a jump spread
#: over the batch to be flagged (``LossSpikeMonitor(min_tail_ratio=)``).
DEFAULT_MIN_TAIL_RATIO = 10.0


@dataclasses.dataclass
class SpikeState:
    """What the spike hook writes inside the train step; the monitor reads it after.

    Attributes:
        buffer: (window,) the last non-spike losses (a ring).
        tail_buffer: (window,) the same steps' tail losses (the mean of the
            largest ``TAIL_FRACTION`` of element losses).
        count: non-spike steps seen so far.
        last: the step's ``[loss, median, z, gradient_norm, spike, step, ratio,
            spread, tail_ratio]``.
        batch_x, batch_y, batch_pred: the last spike's batch (first input),
            targets and predictions.
        batch_elements: the last spike's per-element losses.
        batch_examples: the last spike's per-example NLL.
        batch_ids: the last spike's dataset ids (int64, one per example).
        has_ids: 1 if the last spike's batch carried ids, else 0.
    """

    buffer: tf.Variable
    tail_buffer: tf.Variable
    count: tf.Variable
    last: tf.Variable
    batch_x: tf.Variable
    batch_y: tf.Variable
    batch_pred: tf.Variable
    batch_elements: tf.Variable
    batch_examples: tf.Variable
    batch_ids: tf.Variable
    has_ids: tf.Variable

    @classmethod
    def create(cls, window: int) -> SpikeState:
        def any_shape():
            return tf.Variable(tf.zeros([0]), shape=tf.TensorShape(None), trainable=False)

        return cls(
            buffer=tf.Variable(tf.zeros([window]), trainable=False),
            tail_buffer=tf.Variable(tf.zeros([window]), trainable=False),
            count=tf.Variable(0, trainable=False),
            last=tf.Variable(tf.zeros([9]), trainable=False),
            batch_x=any_shape(),
            batch_y=any_shape(),
            batch_pred=any_shape(),
            batch_elements=any_shape(),
            batch_examples=any_shape(),
            batch_ids=tf.Variable(
                tf.zeros([0], tf.int64), shape=tf.TensorShape(None), trainable=False
            ),
            has_ids=tf.Variable(0, trainable=False),
        )


class _SpikeHook(TrainStepHook):
    """Scores each step's loss against the window; records a spike's batch; may veto it."""

    def __init__(
        self,
        threshold: float,
        window: int,
        min_history: int,
        min_ratio: float,
        veto: bool,
        id_key: str,
        min_spread: float = 1.0,
        min_tail_ratio: float = DEFAULT_MIN_TAIL_RATIO,
    ):
        self.threshold = threshold
        self.min_ratio = min_ratio
        self.min_spread = min_spread
        self.min_tail_ratio = min_tail_ratio
        self.window = window
        self.min_history = min_history
        self.veto = veto
        self.id_key = id_key
        self.model = None
        self.state: SpikeState | None = None

    def bind(self, model) -> bool:
        """Attach to ``model``; False if already attached (its loss window is kept)."""
        # The state is created once per model: a train function traced in an
        # earlier fit (and cached by the model) keeps writing to its variables.
        if self.model is model:
            return False
        self.model = model
        self.state = SpikeState.create(self.window)
        return True

    def before_update(self, context):
        state = self.state
        loss = tf.cast(context.loss, tf.float32)
        # Until the ring is full, its first `count` entries are the history.
        filled = tf.maximum(tf.minimum(state.count, self.window), 1)
        history = state.buffer[:filled]
        ready = state.count >= self.min_history
        median, z, ratio, spread = step_statistics(
            loss,
            history,
            tf.cast(context.per_example_nll, tf.float32),
            loss - tf.cast(context.nll, tf.float32),
        )
        # Every step pays for its element losses (one elementwise pass and a
        # top-k of 1%): the tail's baseline needs every non-spike step.
        per_element = self.model.elbo.likelihood.call(context.y, context.y_pred)
        tail = element_summary(per_element, TAIL_FRACTION)[1]
        tail_ratio = tail_ratio_to_baseline(tail, state.tail_buffer[:filled])
        spike = tf.logical_and(
            ready,
            spike_rule(
                z,
                ratio,
                spread,
                tail_ratio,
                self.threshold,
                self.min_ratio,
                self.min_spread,
                self.min_tail_ratio,
            ),
        )
        inputs, ids = _split_ids(context.x, self.id_key)

        def record():
            # Only a spike pays for the gradient norm.
            grads = [
                tf.cast(g, tf.float32) / tf.cast(context.gradient_scale, tf.float32)
                for g in context.gradients
                if g is not None
            ]
            state.batch_x.assign(tf.cast(tf.nest.flatten(inputs)[0], tf.float32))
            if ids is None:
                state.has_ids.assign(0)
            else:
                state.batch_ids.assign(tf.reshape(tf.cast(ids, tf.int64), [-1]))
                state.has_ids.assign(1)
            state.batch_y.assign(tf.cast(context.y, tf.float32))
            state.batch_pred.assign(tf.cast(context.y_pred, tf.float32))
            state.batch_elements.assign(tf.cast(per_element, tf.float32))
            state.batch_examples.assign(tf.cast(context.per_example_nll, tf.float32))
            return tf.linalg.global_norm(grads)

        grad_norm = tf.cond(spike, record, lambda: tf.constant(0.0))
        state.last.assign(
            tf.stack(
                [
                    loss,
                    median,
                    z,
                    grad_norm,
                    tf.cast(spike, tf.float32),
                    tf.cast(context.step, tf.float32),
                    ratio,
                    spread,
                    tail_ratio,
                ]
            )
        )
        # A spike does not enter the window: the baseline stays clean.
        position = tf.math.floormod(state.count, self.window)
        for ring, value in ((state.buffer, loss), (state.tail_buffer, tail)):
            pushed = tf.tensor_scatter_nd_update(ring, [[position]], [value])
            ring.assign(tf.where(spike, ring, pushed))
        state.count.assign_add(tf.where(spike, 0, 1))
        if self.veto:
            return tf.logical_not(spike)
        return None


def step_statistics(loss, history, per_example_nll, kl_term):
    """A step's ``(median, z, ratio, spread)`` against the window ``history``.

    * ``median``: the median of the window's losses (the baseline);
    * ``z``: the robust z-score ``(loss - median) / (1.4826 * MAD)`` (MAD:
      the window's median absolute deviation; a floor of 1e-3 of the median
      keeps a flat window from dividing by zero);
    * ``ratio``: ``loss / |median|``;
    * ``spread``: over how many of the batch's examples the jump is spread,
      as a share of the batch. Each example's excess is its NLL above the
      baseline's NLL (``median - kl_term``, floored at 0), and ``spread``
      is their participation ratio ``(sum e)^2 / (B * sum e^2)``: 1 when
      every example carries the same excess, ``1 / B`` when one carries it
      all, 0 when none exceeds the baseline.

    Plain TensorFlow ops on tensors (or NumPy arrays, eagerly): the train
    step's hook and the tests on recorded traces call the same function.

    Example:
        >>> import numpy as np
        >>> m, z, r, s = step_statistics(4.0, np.ones(10, "float32"),
        ...                              np.array([1.0, 7.0, 1.0, 7.0], "float32"), 0.0)
        >>> float(m), round(float(r), 2), round(float(s), 2)  # two of four examples jumped
        (1.0, 4.0, 0.5)
    """
    loss = tf.cast(loss, tf.float32)
    history = tf.cast(history, tf.float32)
    per_example = tf.reshape(tf.cast(per_example_nll, tf.float32), [-1])
    median = _median(history)
    mad = _median(tf.abs(history - median))
    z = (loss - median) / (1.4826 * mad + 1e-12 + 1e-3 * tf.abs(median))
    ratio = loss / tf.maximum(tf.abs(median), 1e-12)
    excess = tf.nn.relu(per_example - tf.nn.relu(median - tf.cast(kl_term, tf.float32)))
    total = tf.reduce_sum(excess)
    size = tf.cast(tf.size(excess), tf.float32)
    spread = tf.math.divide_no_nan(total * total, size * tf.reduce_sum(excess * excess))
    return median, z, ratio, spread


def element_summary(per_element, top_fraction):
    """``(mean, top_mean)``: a batch's mean element loss and the mean of its largest ones.

    ``per_element`` is the likelihood's loss for every element (timestep,
    pixel, voxel) of the batch, any shape; ``top_mean`` averages its
    ``ceil(top_fraction * size)`` largest values. Against their baselines,
    the two tell how a jump is spread over elements: a few mislabelled steps
    raise ``top_mean`` by as much as the whole jump, a batch that is worse
    everywhere raises both in proportion.

    Example:
        >>> import numpy as np
        >>> mean, top = element_summary(np.array([[0.0, 1.0], [3.0, 0.0]], "float32"), 0.25)
        >>> float(mean), float(top)
        (1.0, 3.0)
    """
    flat = tf.reshape(tf.cast(per_element, tf.float32), [-1])
    size = tf.size(flat)
    k = tf.maximum(1, tf.cast(tf.math.ceil(top_fraction * tf.cast(size, tf.float32)), tf.int32))
    top = tf.math.top_k(flat, k=tf.minimum(k, size)).values
    return tf.reduce_mean(flat), tf.reduce_mean(top)


def tail_ratio_to_baseline(tail, history):
    """How many times the baseline a step's tail loss is: ``tail / median(history)``.

    ``tail`` is the step's mean of its largest element losses
    (:func:`element_summary` at ``TAIL_FRACTION``), ``history`` the same
    figure for the baseline's steps (a floor of 1e-12 on the median).

    Example:
        >>> import numpy as np
        >>> float(tail_ratio_to_baseline(30.0, np.array([2.0, 3.0, 4.0], "float32")))
        10.0
    """
    median = _median(tf.cast(history, tf.float32))
    return tf.cast(tail, tf.float32) / tf.maximum(median, 1e-12)


def spike_rule(z, ratio, spread, tail_ratio, threshold, min_ratio, min_spread, min_tail_ratio):
    """Whether a step spikes: a large jump, or a spread jump that lifts the batch's tail.

    ``(z > threshold and ratio >= min_ratio)`` or ``(z > SPREAD_Z_FACTOR *
    threshold and spread >= min_spread and tail_ratio >= min_tail_ratio)``.

    Weighted losses are heavy-tailed: one true anomaly the model finds
    unlikely lifts its example's loss, and the batch's, well past a z of 6,
    so the z-score alone would bury users in alarms. A jump carried by one
    or two examples must be large (a positive step at p ~ 0.01 under weight
    100 multiplies the loss by hundreds). A jump carried by most of the
    batch's examples is flagged below that level only when the batch's
    largest element losses (the top ``TAIL_FRACTION``) are ``min_tail_ratio``
    times their baseline: mislabelled steps the model confidently calls
    normal make exactly those elements jump (15x in the diluted case users
    report), while at a high learning rate whole clean batches get worse
    everywhere, their loss 3-9x the baseline at z 8-16 but their largest
    element losses at most 7x theirs (docs/diagnostics.md has the
    measurements).

    Example:
        >>> bool(spike_rule(9.8, 5.0, 0.91, 15.1, 4.0, 10.0, 0.5, 10.0))  # mislabelled steps
        True
        >>> bool(spike_rule(15.6, 8.0, 0.94, 6.1, 4.0, 10.0, 0.5, 10.0))  # worse everywhere
        False
        >>> bool(spike_rule(22.0, 2.4, 0.1, 30.0, 4.0, 10.0, 0.5, 10.0))  # one example
        False
        >>> bool(spike_rule(22.0, 40.0, 0.1, 30.0, 4.0, 10.0, 0.5, 10.0))  # a large jump
        True
    """
    large = tf.logical_and(z > threshold, ratio >= min_ratio)
    spread_out = tf.logical_and(z > SPREAD_Z_FACTOR * threshold, spread >= min_spread)
    spread_out = tf.logical_and(spread_out, tail_ratio >= min_tail_ratio)
    return tf.logical_or(large, spread_out)


def _split_ids(x, id_key):
    """``(inputs, ids)``: the batch's inputs without the id entry, and the ids or None."""
    if isinstance(x, dict) and id_key in x:
        ids = x[id_key]
        if ids.dtype == tf.string or ids.dtype == tf.bool:
            raise argument_error(
                f"x[{id_key!r}]",
                "hold integer dataset ids (index a table of names with them)",
                ids,
            )
        inputs = {key: value for key, value in x.items() if key != id_key}
        return inputs, ids
    return x, None


def _median(values):
    sorted_values = tf.sort(values)
    n = tf.shape(values)[0]
    return 0.5 * (sorted_values[(n - 1) // 2] + sorted_values[n // 2])


class LossSpikeMonitor(keras.callbacks.Callback):
    """Flag loss spikes and record what caused them (built on the train-step hook).

    At every step, the loss is compared with the baseline median of the last
    ``window`` non-spike losses by a robust z-score, ``(loss - median) /
    (1.4826 * MAD)``, and the jump is measured by how it is spread over the
    batch (:func:`step_statistics`). A step spikes (:func:`spike_rule`) when
    its z-score exceeds ``threshold`` and its loss is at least ``min_ratio``
    times the baseline median (a heavily weighted element the model gets
    badly wrong), or, with ``min_spread`` given, when its z-score exceeds
    twice ``threshold``, the jump is spread over at least ``min_spread`` of
    the batch's examples and the batch's largest element losses (its top
    1%, :data:`TAIL_FRACTION`) are at least ``min_tail_ratio`` times their
    baseline median (a mislabelled or corrupted batch, whatever the size of
    the jump; a batch that is merely worse everywhere, as at a high learning
    rate, lifts its tail far less).
    Detection starts once ``min_history`` non-spike losses are in the
    baseline (the window keeps filling up to ``window`` after that). Every
    step's figures are kept in :attr:`trace` (``(step, loss, median, z,
    ratio, spread, tail_ratio)``), so a step that was not flagged can be
    looked up. For
    a spike the monitor
    records the step, the loss, the baseline median, the gradient norm, the
    per-example losses, the top contributing examples, elements
    (timesteps/pixels: their position, label, predicted probability, weight
    and loss) and classes, in :attr:`spikes`; with ``save_dir`` it also saves
    the batch and the record (``spike_<step>.npz`` and ``.json``) for replay.
    Because it runs inside the train step (before the update),
    ``on_spike="skip_update"`` really skips the update and ``"stop"`` skips
    it and stops training; ``"log"`` only records.

    **Dataset rows.** Give the inputs as a dict holding the model's input
    under its name and the rows' integer ids under ``id_key``
    (``{"series": x, "example_id": np.arange(len(x))}``, or the same dict
    in a ``tf.data`` element, before shuffling): Keras passes the model only
    its named inputs, and every top example and element of a record then
    carries its dataset ``"id"``, whatever the shuffling. Without ids,
    ``"id"`` is None and only the batch position (``"example"``) is known.

    Args:
        threshold: float > 0, robust z-score above which a step can spike
            (twice this for a jump flagged by its spread). Default 4: with
            the rest of the rule, at most 0.62 alarms per 200 steps on clean
            runs of every demo task (5 seeds each, and 2 more multiclass
            seeds recorded after the rule was fixed; docs/diagnostics.md).
        window: int >= 3, non-spike steps in the baseline. Default 50.
        save_dir: optional directory for ``.npz``/``.json`` records.
        on_spike: "log" (default), "skip_update" or "stop".
        top_k: int, how many examples/elements to list. Default 10.
        min_history: int >= 3, non-spike steps before detection starts
            (capped at ``window``). Default 10: the robust z-score of 10
            losses already holds a clean run's steps low, while waiting
            for a full window of 50 would miss everything in a short run.
        min_ratio: float >= 1, how many times the baseline median a spike's
            loss must at least be. Default 10: a clean run of the earlier
            (whole-series, 640x-weighted) anomaly demo holds steps at z = 103
            whose loss is 7x the median (a true anomaly at p ~ 0.2), while
            a mislabelled heavily weighted step makes it jump by orders of
            magnitude. 1 keeps the z-score alone.
        id_key: str, the input dict's key that holds the dataset ids.
            Default "example_id".
        min_spread: float in [0, 1] or None, the share of the batch's
            examples over which a jump must be spread to be flagged below
            ``min_ratio`` (with a z-score above twice ``threshold``).
            Default 0.5; None (or any value above 1) switches that path off.
            Every step's ``spread`` is in :attr:`trace` either way (7 floats
            a step: 100 000 steps hold 6 MB).
        min_tail_ratio: float >= 1, how many times its baseline median the
            batch's tail loss (the mean of its largest 1% of element losses)
            must be for a jump flagged by its spread. Default 10: the
            diluted mislabelled batch of docs/diagnostics.md lifts it 15x,
            clean batches of the demos at most 7x. 1 flags by the spread
            alone (the rule of the previous release).

    Example:

    >>> import bayesseg as bs
    >>> monitor = bs.diagnostics.LossSpikeMonitor(threshold=6.0, window=50, min_history=10)
    >>> # model.fit({"series": x, "example_id": ids}, y, callbacks=[monitor])
    >>> # monitor.spikes[0]["top_examples"][0]["id"]: the dataset row
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        window: int = 50,
        save_dir: str | None = None,
        on_spike: str = "log",
        top_k: int = 10,
        min_history: int = 10,
        min_ratio: float = 10.0,
        id_key: str = DEFAULT_ID_KEY,
        min_spread: float | None = DEFAULT_MIN_SPREAD,
        min_tail_ratio: float = DEFAULT_MIN_TAIL_RATIO,
    ):
        super().__init__()
        self.threshold = check_float("threshold", threshold, minimum=0, strict_minimum=True)
        self.window = check_int("window", window, minimum=3)
        self.min_history = min(check_int("min_history", min_history, minimum=3), self.window)
        self.min_ratio = check_float("min_ratio", min_ratio, minimum=1)
        self.min_spread = (
            None if min_spread is None else check_float("min_spread", min_spread, minimum=0)
        )
        self.min_tail_ratio = check_float("min_tail_ratio", min_tail_ratio, minimum=1)
        self.save_dir = save_dir
        self.on_spike = check_choice("on_spike", on_spike, _ON_SPIKE)
        self.top_k = check_int("top_k", top_k)
        if not isinstance(id_key, str) or not id_key:
            raise argument_error("id_key", "be a non-empty string", id_key)
        self.id_key = id_key
        self.spikes: list[dict] = []
        self.trace: list[tuple[int, float, float, float, float, float, float]] = []
        self._hook = _SpikeHook(
            self.threshold,
            self.window,
            self.min_history,
            self.min_ratio,
            veto=self.on_spike in ("skip_update", "stop"),
            id_key=self.id_key,
            min_spread=math.inf if self.min_spread is None else self.min_spread,
            min_tail_ratio=self.min_tail_ratio,
        )

    def set_model(self, model):
        super().set_model(model)
        # A later fit on the same model keeps the loss window.
        self._hook.bind(require_bayesian_model(model, "LossSpikeMonitor"))
        model.add_train_step_hook(self._hook)

    def on_train_batch_end(self, batch, logs=None):
        last = (float(v) for v in self._hook.state.last.numpy())
        loss, median, z, grad_norm, spike, step, ratio, spread, tail_ratio = last
        self.trace.append((int(step), loss, median, z, ratio, spread, tail_ratio))
        if self.spikes and self.spikes[-1].get("loss_after") is None:
            self.spikes[-1]["loss_after"] = loss
        if not spike:
            return
        record = self._record(int(step), loss, median, z, grad_norm)
        record["spread"] = spread
        record["tail_ratio"] = tail_ratio
        self.spikes.append(record)
        logger.warning(
            "Loss spike at step %d: loss %.4g vs baseline median %.4g (z=%.1f); "
            "top examples (id, batch position): %s; top elements: %s",
            record["step"],
            loss,
            median,
            z,
            [(e["id"], e["example"]) for e in record["top_examples"][:3]],
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
        state = self._hook.state
        elements = state.batch_elements.numpy()
        per_example = state.batch_examples.numpy()
        labels = state.batch_y.numpy().reshape(elements.shape + (-1,))
        label_values = labels[..., 0] if labels.shape[-1] == 1 else labels.argmax(-1)
        # Logits (..., K): one channel is a sigmoid, more a softmax.
        logits = state.batch_pred.numpy().reshape(elements.shape + (-1,))
        p_label = _probability.label_probability(_probability.probabilities(logits), label_values)
        weights = self._element_weights(label_values)
        ids = state.batch_ids.numpy() if int(state.has_ids.numpy()) else None
        top_elements = []
        for flat in np.argsort(elements, axis=None)[::-1][: self.top_k]:
            index = np.unravel_index(flat, elements.shape)
            top_elements.append(
                {
                    "index": [int(i) for i in index],
                    "example": int(index[0]),
                    "id": _id(ids, index[0]),
                    "position": [int(i) for i in index[1:]],
                    "label": float(label_values[index]),
                    "probability_of_label": float(p_label[index]),
                    "weight": None if weights is None else float(weights[index]),
                    "loss": float(elements[index]),
                }
            )
        total = float(elements.sum()) or 1.0
        listed = float(sum(e["loss"] for e in top_elements))
        classes = {}
        for value in np.unique(label_values):
            share = float(elements[label_values == value].sum()) / total
            classes[str(int(value))] = share
        example_order = np.argsort(per_example)[::-1][: self.top_k]
        return {
            "step": step,
            "loss": loss,
            "baseline_median": median,
            "ratio_to_baseline": loss / median if median > 0 else None,
            # The same value under its earlier name, for code that reads it.
            "loss_median_before": median,
            "loss_after": None,
            "z_score": z,
            "gradient_norm": grad_norm,
            "per_example_loss": per_example.tolist(),
            "top_examples": [
                {"example": int(i), "id": _id(ids, i), "loss": float(per_example[i])}
                for i in example_order
            ],
            "top_elements": top_elements,
            # How much of the batch's loss the listed elements carry.
            "top_elements_loss_share": listed / total,
            "class_loss_share": classes,
        }

    def _save(self, record):
        os.makedirs(self.save_dir, exist_ok=True)
        state = self._hook.state
        stem = os.path.join(self.save_dir, f"spike_{record['step']}")
        np.savez_compressed(
            stem + ".npz",
            x=state.batch_x.numpy(),
            y=state.batch_y.numpy(),
            y_pred=state.batch_pred.numpy(),
            element_loss=state.batch_elements.numpy(),
            **({"ids": state.batch_ids.numpy()} if int(state.has_ids.numpy()) else {}),
        )
        with open(stem + ".json", "w") as handle:
            json.dump(record, handle, indent=2)

    def on_train_end(self, logs=None):
        self.model.remove_train_step_hook(self._hook)


def _id(ids, position) -> int | None:
    """The dataset id of the example at batch ``position`` (None without ids)."""
    return None if ids is None else int(ids[position])
