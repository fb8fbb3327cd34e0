"""Which models a Monte Carlo prediction draws from, and how often.

One model gets all ``T`` draws. An ensemble (a
:class:`bayesseg.models.DeepEnsemble`, or a list of models) spends them
across its ``k`` members: a deterministic member once (more draws would
repeat it), a stochastic member ``ceil(T / k)`` times; the members are then
weighted equally, whatever their number of draws.
"""

from __future__ import annotations

import dataclasses
import math

import keras

from bayesseg.layers.model_functions import bayesian_layers
from bayesseg.models.ensemble import ensemble_members
from bayesseg.uncertainty._sampling import resolve_training

__all__ = ["Member", "is_stochastic", "plan_draws"]

# Keras layers that draw noise when called with training=True.
_NOISE_LAYERS = (
    keras.layers.Dropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
)


@dataclasses.dataclass(frozen=True)
class Member:
    """One model of a prediction: its draws and its ``training`` flag."""

    model: keras.Model
    num_samples: int
    training: bool


def is_stochastic(model: keras.layers.Layer, training: bool, sampling: str) -> bool:
    """Whether two forward passes of ``model`` can differ.

    True for a model with bayesseg Bayesian layers (unless ``sampling`` is
    "mean"), or, with ``training=True``, one holding a Keras dropout or
    noise layer with a positive rate (``Dropout`` and its spatial variants,
    ``GaussianDropout``, ``GaussianNoise``, ``AlphaDropout``). A custom
    random layer is not recognised: its model counts as deterministic.

    Example:

    >>> import keras
    >>> from bayesseg.uncertainty._members import is_stochastic
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.1), keras.layers.Dense(1)])
    >>> is_stochastic(m, training=True, sampling="shared"), is_stochastic(m, False, "shared")
    (True, False)
    """
    if bayesian_layers(model):
        return sampling != "mean"
    if not training:
        return False
    for layer in model._flatten_layers(include_self=True):
        if isinstance(layer, _NOISE_LAYERS):
            rate = getattr(layer, "rate", getattr(layer, "stddev", 0.0))
            if float(rate) > 0:
                return True
    return False


def plan_draws(model, num_samples: int, training, sampling: str) -> list[Member] | None:
    """The members of an ensemble argument with their draws; None for one model.

    Args:
        model: a Keras model (None is returned), a ``DeepEnsemble`` or a
            list / tuple of Keras models.
        num_samples: ``T``, the draws of the whole prediction.
        training: None (resolved per member: False with Bayesian layers,
            True otherwise) or a bool for every member.
        sampling: the Bayesian layers' sampling mode.

    Example:

    >>> import keras
    >>> from bayesseg.uncertainty._members import plan_draws
    >>> det = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> mcd = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.2),
    ...                         keras.layers.Dense(1)])
    >>> [m.num_samples for m in plan_draws([det, mcd], 8, None, "shared")]
    [1, 4]
    """
    members = ensemble_members(model)
    if members is None:
        return None
    per_stochastic = math.ceil(num_samples / len(members))
    planned = []
    for member in members:
        flag = resolve_training(member, training)
        draws = per_stochastic if is_stochastic(member, flag, sampling) else 1
        planned.append(Member(member, draws, flag))
    return planned
