"""KL scaling schedules: what multiplies the KL term of the ELBO.

Every schedule is a small serialisable object with one job,
``weight = scaling(step, batch_size)``, where ``step`` is the number of
optimizer updates so far (``optimizer.iterations``, which Keras already
divides by ``gradient_accumulation_steps``) and ``batch_size`` is the
current step's number of examples. Weights live on the ELBO's *per-example*
scale (see ``docs/kl_scaling.md``): the NLL is averaged over the batch, so

* ``PerExample(N)`` gives ``1/N``: the exact ELBO divided by N;
* ``PerBatch(M)`` gives ``1/(M*B)``: Blundell et al.'s ``1/M`` for an NLL
  *summed* over the minibatch, brought to the batch-mean scale. With
  ``N = M*B`` both are the same objective;
* ``Blundell(M)`` gives ``pi_i / B`` with ``pi_i = 2^(M-i) / (2^M - 1)`` for
  the i-th minibatch of an epoch (Blundell et al. 2015, eq. 9);
* ``Constant(w)`` gives ``w``.

``Warmup`` and ``Cyclical`` multiply any of them by a ramp in ``[0, 1]``;
:func:`ramp` is that ramp, shared with the learning-rate warm-up
(``bayesseg.training.WarmupSchedule``).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from bayesseg._validation import (
    argument_error,
    check_choice,
    check_float,
    check_int,
    is_number,
)

__all__ = [
    "KLScaling",
    "PerExample",
    "PerBatch",
    "Blundell",
    "Constant",
    "Warmup",
    "Cyclical",
    "get",
    "ramp",
]

_SHAPES = ("linear", "cosine")


def _as_float(x) -> tf.Tensor:
    return tf.cast(x, tf.float32)


def ramp(step, steps, start=0.0, end=1.0, shape: str = "linear") -> tf.Tensor:
    """A warm-up ramp from ``start`` (at step 0) to ``end`` (from ``steps`` on).

    ``start + (end - start) * r(min(step / steps, 1))`` with ``r(t) = t``
    ("linear") or ``(1 - cos(pi t)) / 2`` ("cosine"), in float32. The one
    ramp behind the KL warm-up (:class:`Warmup`), cyclical annealing
    (:class:`Cyclical`) and the learning-rate warm-up
    (``bayesseg.training.WarmupSchedule``); it runs inside traced steps, so
    ``step`` may be a tensor. Arguments are not checked here: the callers do.

    Args:
        step: updates so far (int, float or scalar tensor).
        steps: number > 0, updates until ``end`` is reached.
        start: value at step 0. Default 0.
        end: value from ``steps`` on. Default 1.
        shape: "linear" (default) or "cosine".

    Returns:
        A float32 scalar tensor.

    Example:

    >>> import bayesseg as bs
    >>> [float(bs.kl.ramp(k, 4)) for k in (0, 1, 4, 9)]
    [0.0, 0.25, 1.0, 1.0]
    >>> round(float(bs.kl.ramp(2, 4, start=0.1, end=0.3)), 6)
    0.2
    """
    t = tf.minimum(_as_float(step) / steps, 1.0)
    if shape == "cosine":
        t = 0.5 * (1.0 - tf.cos(math.pi * t))
    return start + (end - start) * t


@keras.saving.register_keras_serializable(package="bayesseg")
class KLScaling:
    """Base class of KL weights: ``weight = scaling(step, batch_size)``.

    Subclasses implement :meth:`__call__` with TensorFlow ops (it runs inside
    the compiled train step) and :meth:`get_config`.

    Example:

    >>> import bayesseg as bs
    >>> class Halved(bs.kl.KLScaling):
    ...     def __call__(self, step, batch_size):
    ...         return 0.5 / tf.cast(batch_size, "float32")
    """

    def __call__(self, step, batch_size) -> tf.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="bayesseg")
class PerExample(KLScaling):
    """KL weight ``1 / num_examples`` (the TFP examples' choice).

    With the NLL averaged over the batch, this is the exact negative ELBO
    divided by the training-set size N.

    Args:
        num_examples: int > 0, examples in the training set (images, volumes
            or sequences: one example is one target, whatever its pixels).

    Example:

    >>> import bayesseg as bs
    >>> round(float(bs.kl.PerExample(500)(step=0, batch_size=8)), 6)
    0.002
    """

    def __init__(self, num_examples: int):
        self.num_examples = check_int("num_examples", num_examples)

    def __call__(self, step, batch_size):
        return tf.constant(1.0 / self.num_examples, tf.float32)

    def get_config(self):
        return {"num_examples": self.num_examples}


@keras.saving.register_keras_serializable(package="bayesseg")
class PerBatch(KLScaling):
    """Blundell et al.'s ``1/M`` on the per-example scale: ``1 / (M * B)``.

    Blundell's 1/M assumes the NLL is *summed* over a minibatch of B
    examples; the ELBO here averages it, so the weight is ``1/(M*B)`` with B
    the step's actual batch size. Equal to ``PerExample(M*B)`` when every
    batch is full.

    Args:
        num_batches: int > 0, minibatches per epoch (M).

    Example:

    >>> import bayesseg as bs
    >>> round(float(bs.kl.PerBatch(num_batches=100)(step=0, batch_size=5)), 6)
    0.002
    """

    def __init__(self, num_batches: int):
        self.num_batches = check_int("num_batches", num_batches)

    def __call__(self, step, batch_size):
        return 1.0 / (self.num_batches * _as_float(batch_size))

    def get_config(self):
        return {"num_batches": self.num_batches}


@keras.saving.register_keras_serializable(package="bayesseg")
class Blundell(KLScaling):
    """Blundell et al. 2015's schedule (eq. 9): ``pi_i / B`` within each epoch.

    ``pi_i = 2^(M-i) / (2^M - 1)`` for the i-th minibatch (i = 1..M) of an
    epoch: early minibatches weigh the KL heavily, later ones let the data
    speak; the pi_i of one epoch sum to 1. Computed as
    ``2^-i / (1 - 2^-M)`` in float32, finite for any M (terms far down the
    epoch underflow to exactly 0).

    Args:
        num_batches: int > 0, minibatches (optimizer updates) per epoch (M).

    Example:

    >>> import bayesseg as bs
    >>> s = bs.kl.Blundell(num_batches=3)
    >>> [round(float(s(step=i, batch_size=1)), 4) for i in range(3)]
    [0.5714, 0.2857, 0.1429]
    """

    def __init__(self, num_batches: int):
        self.num_batches = check_int("num_batches", num_batches)

    def pi(self, step) -> tf.Tensor:
        """``pi_i`` for the update ``step`` (0-based over all epochs)."""
        i = tf.cast(tf.math.floormod(tf.cast(step, tf.int64), self.num_batches), tf.float64)
        # -log(1 - 2^-M) in Python float64 is exact even for M = 10,000, and
        # float64 exponentials keep pi_i exact to float32 rounding.
        log_norm = -math.log1p(-(2.0**-self.num_batches))
        return tf.cast(tf.exp(-(i + 1.0) * math.log(2.0) + log_norm), tf.float32)

    def __call__(self, step, batch_size):
        return self.pi(step) / _as_float(batch_size)

    def get_config(self):
        return {"num_batches": self.num_batches}


@keras.saving.register_keras_serializable(package="bayesseg")
class Constant(KLScaling):
    """A constant KL weight, applied as given (per-example scale).

    Args:
        weight: float >= 0.

    Example:

    >>> import bayesseg as bs
    >>> round(float(bs.kl.Constant(1e-4)(step=0, batch_size=8)), 8)
    0.0001
    """

    def __init__(self, weight: float):
        self.weight = check_float("weight", weight, minimum=0)

    def __call__(self, step, batch_size):
        return tf.constant(self.weight, tf.float32)

    def get_config(self):
        return {"weight": self.weight}


@keras.saving.register_keras_serializable(package="bayesseg")
class Warmup(KLScaling):
    """KL warm-up: ``scaling`` times a ramp from ``start`` to 1 over ``steps`` updates.

    Args:
        scaling: the KL scaling to warm up, a ``KLScaling`` and not a number:
            ``bs.kl.Constant(1 / 16)`` for a fixed weight of 1/16,
            ``bs.kl.PerExample(N)`` for 1/N per example.
        steps: int > 0, optimizer updates until the full weight is reached.
        shape: "linear" (default) or "cosine" (half-cosine ramp).
        start: float in [0, 1], ramp value at step 0. Default 0.

    The ramp is ``start + (1 - start) * r(min(step / steps, 1))`` with
    ``r(t) = t`` (linear) or ``(1 - cos(pi t)) / 2`` (cosine); the target is
    reached exactly at ``step == steps``.

    Example:

    >>> import bayesseg as bs
    >>> s = bs.kl.Warmup(bs.kl.PerExample(100), steps=10)
    >>> [round(float(s(k, 4)), 6) for k in (0, 5, 10, 20)]
    [0.0, 0.005, 0.01, 0.01]
    >>> s = bs.kl.Warmup(bs.kl.Constant(1 / 16), steps=4)  # not Warmup(1 / 16, 4)
    >>> [float(s(k, 4)) for k in (0, 2, 4)]
    [0.0, 0.03125, 0.0625]
    >>> bs.kl.Warmup(1 / 16, 4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: Argument `kl_scaling` must be ...: pass bs.kl.Constant(0.0625) ...
    """

    def __init__(self, scaling, steps: int, shape: str = "linear", start: float = 0.0):
        self.scaling = get(scaling)
        self.steps = check_int("steps", steps)
        self.shape = check_choice("shape", shape, _SHAPES)
        self.start = check_float("start", start, minimum=0, maximum=1)

    def ramp(self, step) -> tf.Tensor:
        """The multiplier in [start, 1] at update ``step``."""
        return ramp(step, self.steps, start=self.start, shape=self.shape)

    def __call__(self, step, batch_size):
        return self.ramp(step) * self.scaling(step, batch_size)

    def get_config(self):
        return {
            "scaling": keras.saving.serialize_keras_object(self.scaling),
            "steps": self.steps,
            "shape": self.shape,
            "start": self.start,
        }


@keras.saving.register_keras_serializable(package="bayesseg")
class Cyclical(KLScaling):
    """Cyclical KL annealing (Fu et al. 2019): repeated linear ramps.

    Each cycle of ``cycle_steps`` updates ramps the multiplier linearly from
    0 to 1 over its first ``ramp_fraction`` and holds 1 for the rest.

    Args:
        scaling: the KL scaling to anneal, a ``KLScaling`` and not a number
            (``bs.kl.Constant(w)``, ``bs.kl.PerExample(N)``, ...).
        cycle_steps: int > 0, updates per cycle.
        ramp_fraction: float in (0, 1], share of a cycle spent ramping.

    Example:

    >>> import bayesseg as bs
    >>> s = bs.kl.Cyclical(bs.kl.Constant(1.0), cycle_steps=4, ramp_fraction=0.5)
    >>> [float(s(k, 1)) for k in range(6)]
    [0.0, 0.5, 1.0, 1.0, 0.0, 0.5]
    """

    def __init__(self, scaling, cycle_steps: int, ramp_fraction: float = 0.5):
        self.scaling = get(scaling)
        self.cycle_steps = check_int("cycle_steps", cycle_steps)
        self.ramp_fraction = check_float(
            "ramp_fraction", ramp_fraction, minimum=0, maximum=1, strict_minimum=True
        )

    def ramp(self, step) -> tf.Tensor:
        """The multiplier in [0, 1] at update ``step``."""
        position = tf.math.floormod(tf.cast(step, tf.int64), self.cycle_steps)
        return ramp(position, self.cycle_steps * self.ramp_fraction)

    def __call__(self, step, batch_size):
        return self.ramp(step) * self.scaling(step, batch_size)

    def get_config(self):
        return {
            "scaling": keras.saving.serialize_keras_object(self.scaling),
            "cycle_steps": self.cycle_steps,
            "ramp_fraction": self.ramp_fraction,
        }


def get(identifier) -> KLScaling:
    """Return a :class:`KLScaling` from an instance or its serialised dict.

    A plain number is not a KL scaling: wrap a fixed weight in
    :class:`Constant` (``bs.kl.Constant(1 / 16)``), or scale per example
    with :class:`PerExample` (``bs.kl.PerExample(N)``).

    Example:

    >>> import bayesseg as bs
    >>> bs.kl.get(bs.kl.PerExample(10))
    PerExample(num_examples=10)
    """
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier)
    if not isinstance(identifier, KLScaling):
        fixed = (
            f"bs.kl.Constant({float(identifier)!r}) for a fixed weight"
            if is_number(identifier)
            else "bs.kl.Constant(w) for a fixed weight w"
        )
        raise argument_error(
            "kl_scaling",
            f"be a bayesseg.kl.KLScaling (a number is not one): pass {fixed}, or "
            "bs.kl.PerExample(N) for 1/N per example (N training examples)",
            identifier,
        )
    return identifier
