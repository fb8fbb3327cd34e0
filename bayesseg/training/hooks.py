"""Train-step hooks: what runs inside ``BayesianModel.train_step`` before the update.

Inside the train step, after the gradients are computed and before the
update, every registered :class:`TrainStepHook` sees a :class:`StepContext`
(the batch, per-example losses, gradients, ...) and may veto the update. Plain
Keras callbacks run after the update and never see the batch; monitors such as
``bayesseg.diagnostics.LossSpikeMonitor`` are built on this hook.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

__all__ = ["StepContext", "TrainStepHook"]


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What a :class:`TrainStepHook` sees inside one train step (tensors).

    Attributes:
        x, y, sample_weight: the batch as given to ``train_step``.
        y_pred: the model's outputs.
        per_example_nll: (B,) per-example NLL on the ELBO's scale.
        loss, nll, kl, kl_weight: the ELBO terms (see ``bayesseg.ELBOTerms``).
        gradients: list of gradient tensors, aligned with ``variables``.
        variables: the trainable variables.
        step: optimizer updates so far (before this one).
        gradient_scale: scalar by which ``gradients`` exceed the gradient of
            ``loss`` (the mixed-precision loss scale divided by the number of
            replicas); divide by it to get ``d loss / d variables``.
    """

    x: object
    y: object
    sample_weight: object
    y_pred: tf.Tensor
    per_example_nll: tf.Tensor
    loss: tf.Tensor
    nll: tf.Tensor
    kl: tf.Tensor
    kl_weight: tf.Tensor
    gradients: list
    variables: list
    step: tf.Tensor
    gradient_scale: tf.Tensor


class TrainStepHook:
    """Base class of hooks that run inside ``BayesianModel.train_step``.

    Override :meth:`before_update`; it runs while the step is traced, so use
    TensorFlow ops (``tf.py_function`` for Python-side recording). Return
    ``None`` to let the update happen, or a boolean scalar tensor: ``False``
    skips the optimizer update for this step (the weights, the optimizer
    state and its iteration count stay as they were).

    Example:

    >>> import bayesseg as bs, tensorflow as tf
    >>> class SkipHugeLosses(bs.training.TrainStepHook):
    ...     def before_update(self, context):
    ...         return context.loss < 100.0
    """

    def before_update(self, context: StepContext):
        """Run inside the traced step; return None or a boolean scalar (False skips the update)."""
        return None
