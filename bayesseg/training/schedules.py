"""Learning-rate schedules for data-parallel training: scaling rules and warm-up.

The warm-up ramp is ``bayesseg.kl.ramp``, the one behind the KL warm-up.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from bayesseg._validation import check_choice, check_float, check_int
from bayesseg.kl import ramp

__all__ = ["WarmupSchedule", "scaled_learning_rate", "warmup_cosine_decay"]

_RULES = ("linear", "sqrt")


def scaled_learning_rate(
    base_lr: float, global_batch_size: int, base_batch_size: int, rule: str = "linear"
) -> float:
    """Scale a learning rate tuned at ``base_batch_size`` to ``global_batch_size``.

    ``rule="linear"``: ``base_lr * global / base`` (Goyal et al. 2017; suits
    SGD, combine with a warm-up); ``rule="sqrt"``: ``base_lr * sqrt(global /
    base)`` (the usual choice for Adam). With 2 GPUs of batch 8 each the global
    batch is 16: keep the loss reduction over the global batch (bayesseg does)
    and scale the learning rate, or 2 replicas train differently from 1
    (86% accuracy on 1 GPU against 84% on 2 at equal epochs; see
    docs/distributed.md).

    Args:
        base_lr: float > 0, the learning rate tuned at ``base_batch_size``.
        global_batch_size: int > 0, the batch summed over replicas.
        base_batch_size: int > 0.
        rule: "linear" or "sqrt".

    Returns:
        The scaled learning rate.

    Example:

    >>> import bayesseg as bs
    >>> bs.training.scaled_learning_rate(1e-3, 16, 8)
    0.002
    >>> round(bs.training.scaled_learning_rate(1e-3, 16, 8, rule="sqrt"), 6)
    0.001414
    """
    base_lr = check_float("base_lr", base_lr, minimum=0, strict_minimum=True)
    global_batch_size = check_int("global_batch_size", global_batch_size)
    base_batch_size = check_int("base_batch_size", base_batch_size)
    rule = check_choice("rule", rule, _RULES)
    ratio = global_batch_size / base_batch_size
    if rule == "linear":
        return base_lr * ratio
    return base_lr * math.sqrt(ratio)


@keras.saving.register_keras_serializable(package="bayesseg")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear learning-rate warm-up to ``target_lr``, then constant or another schedule.

    Args:
        target_lr: float > 0, the learning rate reached at ``warmup_steps``.
        warmup_steps: int > 0.
        start_lr: float >= 0, the learning rate at step 0. Default 0.
        after: optional ``LearningRateSchedule`` used after the warm-up (its
            step counts from the end of the warm-up).

    Example:

    >>> import bayesseg as bs, keras
    >>> lr = bs.training.WarmupSchedule(
    ...     bs.training.scaled_learning_rate(0.1, 256, 32), warmup_steps=500)
    >>> optimizer = keras.optimizers.SGD(lr, momentum=0.9)
    """

    def __init__(self, target_lr: float, warmup_steps: int, start_lr: float = 0.0, after=None):
        self.target_lr = check_float("target_lr", target_lr, minimum=0, strict_minimum=True)
        self.warmup_steps = check_int("warmup_steps", warmup_steps)
        self.start_lr = check_float("start_lr", start_lr, minimum=0)
        if isinstance(after, dict):
            after = keras.saving.deserialize_keras_object(after)
        self.after = after

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = ramp(step, self.warmup_steps, start=self.start_lr, end=self.target_lr)
        if self.after is None:
            return warm
        later = tf.cast(self.after(tf.maximum(step - self.warmup_steps, 0.0)), tf.float32)
        return tf.where(step < self.warmup_steps, warm, later)

    def get_config(self):
        return {
            "target_lr": self.target_lr,
            "warmup_steps": self.warmup_steps,
            "start_lr": self.start_lr,
            "after": None
            if self.after is None
            else keras.saving.serialize_keras_object(self.after),
        }


def warmup_cosine_decay(
    learning_rate: float, total_steps: int, warmup_fraction: float = 0.05
) -> WarmupSchedule:
    """A linear warm-up to ``learning_rate``, then a cosine decay to 0 at ``total_steps``.

    The schedule behind bayesseg's many-class recipe (``docs/imbalance.md``):
    a 32-class U-Net at 99% background must tell classes apart by small
    differences of intensity and texture, which needs large weights, so a
    high peak rate (1e-2 with Adam) is what lets it learn in a few hundred
    steps; the warm-up keeps the first steps, whose gradients are the
    largest, from diverging, and the decay lets the last steps settle
    instead of bouncing around at the peak rate. Step ``s`` gets
    ``learning_rate * s / w`` for ``s < w = max(1, round(warmup_fraction *
    total_steps))``, then ``learning_rate * (1 + cos(pi * (s - w) / (total_steps
    - w))) / 2``, and 0 from ``total_steps`` on.

    Args:
        learning_rate: float > 0, the peak learning rate.
        total_steps: int >= 2, the optimizer steps of the whole run (steps
            per epoch times epochs).
        warmup_fraction: float in [0, 1), the share of ``total_steps`` spent
            warming up. Default 0.05.

    Returns:
        A :class:`WarmupSchedule` (serialisable, so a saved model resumes
        the schedule where it stopped).

    Example:

    >>> import bayesseg as bs
    >>> lr = bs.training.warmup_cosine_decay(1e-2, total_steps=105)
    >>> [round(float(lr(s)), 5) for s in (0, 5, 55, 105)]
    [0.0, 0.01, 0.005, 0.0]
    """
    learning_rate = check_float("learning_rate", learning_rate, minimum=0, strict_minimum=True)
    total_steps = check_int("total_steps", total_steps, minimum=2)
    warmup_fraction = check_float(
        "warmup_fraction", warmup_fraction, minimum=0, maximum=1, strict_maximum=True
    )
    warmup = max(1, round(warmup_fraction * total_steps))
    warmup = min(warmup, total_steps - 1)
    decay = keras.optimizers.schedules.CosineDecay(learning_rate, total_steps - warmup)
    return WarmupSchedule(learning_rate, warmup, after=decay)
