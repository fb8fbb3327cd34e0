"""BayesianModel: a Keras model whose steps log the NLL and KL separately.

``BayesianModel`` is a ``keras.Model`` (functional construction works:
``BayesianModel(inputs, outputs)``) compiled with a :class:`bayesseg.ELBO`.
Its train and test steps evaluate the ELBO's terms once and log ``loss``,
``nll``, ``kl`` (raw, unscaled) and ``kl_weight`` (effective, so that
``loss = nll + kl_weight * temperature * kl`` under KL tempering) in the
progress bar and in ``History``.

Inside the train step, after the gradients are computed and before the
update, every registered :class:`TrainStepHook` sees a :class:`StepContext`
(the batch, per-example losses, gradients, ...) and may veto the update. Plain
Keras callbacks run after the update and never see the batch; monitors such as
``bayesseg.diagnostics.LossSpikeMonitor`` are built on this hook.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf
from keras.src.losses import loss as keras_loss_module

from bayesseg.elbo import ELBO

__all__ = ["BayesianModel", "TrainStepHook", "StepContext"]


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
        return None


@keras.saving.register_keras_serializable(package="bayesseg")
class BayesianModel(keras.Model):
    """A Keras model trained with an ELBO, logging ``nll``, ``kl``, ``kl_weight``.

    Build it like any Keras model (functional ``BayesianModel(inputs,
    outputs)`` or subclassing) and compile it with ``loss=bs.ELBO(...)``.
    ``fit``, ``evaluate`` and ``predict`` work as usual (``tf.data``,
    ``sample_weight``, callbacks, ``clipnorm``/``global_clipnorm``). By
    default the Bayesian layers sample in all three (see
    ``bs.layers.set_sampling`` for posterior-mean prediction).

    A non-finite NLL or KL stops training with an error naming the term and
    the optimizer step.

    Example:

    >>> import bayesseg as bs, keras, numpy as np
    >>> inputs = keras.Input((4,))
    >>> outputs = bs.layers.DenseFlipout(1)(inputs)
    >>> model = bs.BayesianModel(inputs, outputs)
    >>> model.compile(optimizer="adam", loss=bs.ELBO(
    ...     bs.losses.WeightedBinaryCrossentropy(pos_weight=3.0),
    ...     bs.kl.PerExample(num_examples=32)))
    >>> history = model.fit(np.ones((32, 4)), np.ones((32, 1)), epochs=1, verbose=0)
    >>> sorted(history.history)
    ['kl', 'kl_weight', 'loss', 'nll']
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._nll_tracker = keras.metrics.Mean(name="nll")
        self._kl_tracker = keras.metrics.Mean(name="kl")
        self._kl_weight_tracker = keras.metrics.Mean(name="kl_weight")
        self._train_step_hooks: list[TrainStepHook] = []

    # ---------------------------------------------------------------- compile
    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Configure training; ``loss`` must be a :class:`bayesseg.ELBO`."""
        if not isinstance(loss, ELBO):
            raise ValueError(
                "BayesianModel.compile needs `loss` to be a bayesseg.ELBO (it "
                "separates the NLL and the KL). Received: loss="
                f"{loss!r}. Wrap your likelihood: bs.ELBO(likelihood, kl_scaling)."
            )
        loss.bind(self)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config):
        """Recompile from a saved compile config (restores the ELBO)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    @property
    def elbo(self) -> ELBO:
        """The compiled ELBO."""
        if not isinstance(getattr(self, "loss", None), ELBO):
            raise ValueError("The model is not compiled with a bayesseg.ELBO.")
        return self.loss

    @property
    def metrics(self):
        metrics = super().metrics
        trackers = [self._nll_tracker, self._kl_tracker, self._kl_weight_tracker]
        if not self.compiled:
            return metrics
        return metrics[:1] + trackers + [m for m in metrics[1:] if m not in trackers]

    # ------------------------------------------------------------------ hooks
    def add_train_step_hook(self, hook: TrainStepHook) -> None:
        """Register a hook that runs inside every train step (before the update).

        The traced train function is reset so the hook takes part from the
        next ``fit`` on.
        """
        if not isinstance(hook, TrainStepHook):
            raise ValueError(
                f"Argument `hook` must be a bayesseg.training.TrainStepHook. Received: {hook!r}"
            )
        if hook not in self._train_step_hooks:
            self._train_step_hooks.append(hook)
        self.train_function = None

    def remove_train_step_hook(self, hook: TrainStepHook) -> None:
        """Unregister a hook added with :meth:`add_train_step_hook`."""
        if hook in self._train_step_hooks:
            self._train_step_hooks.remove(hook)
        self.train_function = None

    # ------------------------------------------------------------------ steps
    def _forward(self, x, training):
        if self._call_has_training_arg:
            return self(x, training=training)
        return self(x)

    def _elbo_terms(self, x, y, sample_weight, training):
        y_pred = self._forward(x, training)
        terms = self.elbo.compute(self, y, y_pred, sample_weight)
        step = self.optimizer.iterations if self.optimizer is not None else tf.constant(0)
        tf.debugging.Assert(
            tf.math.is_finite(terms.nll),
            ["bayesseg: the NLL term is not finite at optimizer step", step, terms.nll],
        )
        tf.debugging.Assert(
            tf.math.is_finite(terms.kl),
            ["bayesseg: the KL term is not finite at optimizer step", step, terms.kl],
        )
        return y_pred, terms

    def _update_trackers(self, x, terms):
        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        self._loss_tracker.update_state(terms.loss, sample_weight=batch)
        self._nll_tracker.update_state(terms.nll, sample_weight=batch)
        self._kl_tracker.update_state(terms.kl)
        self._kl_weight_tracker.update_state(terms.kl_weight)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            y_pred, terms = self._elbo_terms(x, y, sample_weight, training=True)
            loss = keras_loss_module.scale_loss_for_distribution(terms.loss)
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        apply = None
        if self._train_step_hooks:
            context = StepContext(
                x=x,
                y=y,
                sample_weight=sample_weight,
                y_pred=y_pred,
                per_example_nll=terms.per_example_nll,
                loss=terms.loss,
                nll=terms.nll,
                kl=terms.kl,
                kl_weight=terms.kl_weight,
                gradients=gradients,
                variables=variables,
                step=self.optimizer.iterations,
                gradient_scale=self.optimizer.scale_loss(
                    keras_loss_module.scale_loss_for_distribution(tf.constant(1.0))
                ),
            )
            for hook in self._train_step_hooks:
                verdict = hook.before_update(context)
                if verdict is not None:
                    verdict = tf.cast(verdict, tf.bool)
                    apply = verdict if apply is None else tf.logical_and(apply, verdict)
        if apply is None:
            self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        else:

            def update():
                self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
                return tf.constant(True)

            tf.cond(apply, update, lambda: tf.constant(False))
        self._update_trackers(x, terms)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred, terms = self._elbo_terms(x, y, sample_weight, training=False)
        self._update_trackers(x, terms)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
