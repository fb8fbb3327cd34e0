"""Training: BayesianModel, train-step hooks, learning-rate schedules, distributed loop.

``BayesianModel`` is a ``keras.Model`` compiled with a :class:`bayesseg.ELBO`
that logs ``nll``, ``kl`` and ``kl_weight``; :class:`TrainStepHook` runs inside
its train step (before the update); :func:`scaled_learning_rate` and
:class:`WarmupSchedule` adapt the learning rate to the global batch;
:func:`warmup_cosine_decay` is the many-class recipe's schedule;
:func:`fit_distributed` trains under any ``tf.distribute`` strategy, and
:func:`resolve_strategy` picks one by name (:data:`STRATEGIES`, the choices of
``bayesseg train --strategy``).

Modules: ``model`` (BayesianModel), ``hooks`` (StepContext, TrainStepHook),
``schedules`` (scaled_learning_rate, WarmupSchedule, warmup_cosine_decay),
``distributed`` (STRATEGIES, resolve_strategy, fit_distributed). Import every
public name from here (``bayesseg.training``), the path the docs use; the
submodules are where each is defined.
"""

from __future__ import annotations

from bayesseg.training.distributed import STRATEGIES, fit_distributed, resolve_strategy
from bayesseg.training.hooks import StepContext, TrainStepHook
from bayesseg.training.model import BayesianModel
from bayesseg.training.schedules import WarmupSchedule, scaled_learning_rate, warmup_cosine_decay

__all__ = [
    "STRATEGIES",
    "BayesianModel",
    "StepContext",
    "TrainStepHook",
    "WarmupSchedule",
    "fit_distributed",
    "resolve_strategy",
    "scaled_learning_rate",
    "warmup_cosine_decay",
]
