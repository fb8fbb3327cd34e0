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
import math

import keras
import tensorflow as tf
from keras.src.losses import loss as keras_loss_module

from bayesseg.elbo import ELBO
from bayesseg.layers.base import bayesian_layers

__all__ = [
    "BayesianModel",
    "StepContext",
    "TrainStepHook",
    "WarmupSchedule",
    "fit_distributed",
    "scaled_learning_rate",
]


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

        The train function is traced again for the new set of hooks (traced
        functions are cached per set, so toggling a callback between fits
        does not retrace every time).
        """
        if not isinstance(hook, TrainStepHook):
            raise ValueError(
                f"Argument `hook` must be a bayesseg.training.TrainStepHook. Received: {hook!r}"
            )
        if hook not in self._train_step_hooks:
            self._swap_train_function(self._train_step_hooks + [hook])

    def remove_train_step_hook(self, hook: TrainStepHook) -> None:
        """Unregister a hook added with :meth:`add_train_step_hook`."""
        if hook in self._train_step_hooks:
            self._swap_train_function([h for h in self._train_step_hooks if h is not hook])

    def _swap_train_function(self, hooks: list[TrainStepHook]) -> None:
        # A traced train function bakes in the hooks and every Bayesian
        # layer's sampling mode, so it is cached under both: a mode changed
        # by ``set_sampling`` since it was traced makes it a miss.
        modes = tuple(layer.sampling for layer in bayesian_layers(self))
        cache = self.__dict__.setdefault("_train_functions_by_hooks", {})
        cache[(tuple(map(id, self._train_step_hooks)), modes)] = self.train_function
        self._train_step_hooks = hooks
        self.train_function = cache.get((tuple(map(id, hooks)), modes))

    # ------------------------------------------------------------------ steps
    def _forward(self, x, training):
        if self._call_has_training_arg:
            return self(x, training=training)
        return self(x)

    def _elbo_terms(self, x, y, sample_weight, training):
        y_pred = self._forward(x, training)
        terms = self.elbo.compute(self, y, y_pred, sample_weight)
        step = self.optimizer.iterations if self.optimizer is not None else tf.constant(0)
        checks = [
            tf.debugging.Assert(
                tf.math.is_finite(terms.nll),
                ["bayesseg: the NLL term is not finite at optimizer step", step, terms.nll],
            ),
            tf.debugging.Assert(
                tf.math.is_finite(terms.kl),
                ["bayesseg: the KL term is not finite at optimizer step", step, terms.kl],
            ),
        ]
        return y_pred, terms, [c for c in checks if c is not None]

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
            y_pred, terms, checks = self._elbo_terms(x, y, sample_weight, training=True)
            loss = keras_loss_module.scale_loss_for_distribution(terms.loss)
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # A loss scale optimizer skips non-finite steps by design. Any other
            # optimizer would write NaN into every variable: clipping by the
            # global norm turns an inf or NaN gradient, and finite gradients
            # whose squared sum overflows float32 (a norm above ~1.8e19), into
            # NaN for all of them; the next step's error would blame the KL.
            present = [g for g in gradients if g is not None]
            norm = tf.linalg.global_norm(present) if present else tf.constant(0.0)
            # After the loss checks: a non-finite loss is named by its own check
            # and never reaches this one.
            with tf.control_dependencies(checks):
                check = tf.debugging.Assert(
                    tf.math.is_finite(norm),
                    [
                        "bayesseg: the gradient is not finite (NaN, inf, or a global norm "
                        "that overflows float32) at optimizer step",
                        self.optimizer.iterations,
                        "while the loss is (NLL, KL):",
                        terms.nll,
                        terms.kl,
                        "Exploding gradients, often through long recurrences with wide "
                        "posterior scales: lower the learning rate, `scale_multiplier` or "
                        "the prior's scale (docs/diagnostics.md).",
                    ],
                )
            checks = checks + ([] if check is None else [check])
        if checks:
            # The update waits for every check (graph mode orders only data), so a
            # failing step writes nothing.
            with tf.control_dependencies(checks):
                gradients = [tf.identity(g) if isinstance(g, tf.Tensor) else g for g in gradients]
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
        y_pred, terms, _ = self._elbo_terms(x, y, sample_weight, training=False)
        self._update_trackers(x, terms)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


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
    if not isinstance(base_lr, (int, float)) or not base_lr > 0 or math.isinf(base_lr):
        raise ValueError(
            f"Argument `base_lr` must be a finite number > 0. Received: base_lr={base_lr!r}"
        )
    for name, value in (
        ("global_batch_size", global_batch_size),
        ("base_batch_size", base_batch_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"Argument `{name}` must be a positive integer. Received: {name}={value!r}"
            )
    ratio = global_batch_size / base_batch_size
    if rule == "linear":
        return base_lr * ratio
    if rule == "sqrt":
        return base_lr * math.sqrt(ratio)
    raise ValueError(f"Argument `rule` must be 'linear' or 'sqrt'. Received: rule={rule!r}")


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
        if not isinstance(target_lr, (int, float)) or not target_lr > 0:
            raise ValueError(f"Argument `target_lr` must be > 0. Received: target_lr={target_lr!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps <= 0:
            raise ValueError(
                "Argument `warmup_steps` must be a positive integer. "
                f"Received: warmup_steps={warmup_steps!r}"
            )
        if not isinstance(start_lr, (int, float)) or start_lr < 0:
            raise ValueError(f"Argument `start_lr` must be >= 0. Received: start_lr={start_lr!r}")
        if isinstance(after, dict):
            after = keras.saving.deserialize_keras_object(after)
        self.target_lr = float(target_lr)
        self.warmup_steps = warmup_steps
        self.start_lr = float(start_lr)
        self.after = after

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        fraction = tf.minimum(step / self.warmup_steps, 1.0)
        warm = self.start_lr + (self.target_lr - self.start_lr) * fraction
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


def fit_distributed(
    model: BayesianModel,
    dataset,
    epochs: int,
    strategy: tf.distribute.Strategy | None = None,
    callbacks=None,
    initial_epoch: int = 0,
    steps_per_epoch: int | None = None,
    verbose: int = 0,
) -> keras.callbacks.History:
    """Train a compiled :class:`BayesianModel` with a custom ``strategy.run`` loop.

    Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy``
    (keras-team/keras#20585); this loop runs ``model.train_step`` (the same
    ELBO, logs, hooks) on every replica of any ``tf.distribute`` strategy and
    drives the usual callbacks (``History``, ``BackupAndRestore``,
    ``ModelCheckpoint``, ``GradientDiagnostics``, ...). Build and compile the
    model inside ``strategy.scope()``.

    Args:
        model: a compiled ``BayesianModel`` created under ``strategy.scope()``.
        dataset: a ``tf.data.Dataset`` of *global* batches ``(x, y)`` or
            ``(x, y, sample_weight)``, or a function ``epoch -> Dataset`` (use it
            to shuffle with a seed derived from the epoch, so a run resumed by
            ``BackupAndRestore`` sees exactly the batches of an uninterrupted
            one).
        epochs: int > 0, the index of the last epoch (as Keras' ``epochs``).
        strategy: the strategy; default the model's ``distribute_strategy``.
        callbacks: list of Keras callbacks.
        initial_epoch: int >= 0, epoch to start from.
        steps_per_epoch: optional int, batches per epoch (default: all).
        verbose: 0 (silent) or 1 (progress bar).

    Returns:
        The ``History`` callback (``history.history`` has ``loss``, ``nll``,
        ``kl``, ``kl_weight`` and compiled metrics per epoch).

    Example:

    >>> import bayesseg as bs, keras, tensorflow as tf, numpy as np
    >>> strategy = tf.distribute.get_strategy()
    >>> with strategy.scope():
    ...     model = bs.models.bayesian_unet((16, 16, 1), 1, base_filters=2, depth=2)
    ...     model.compile(optimizer="adam", loss=bs.ELBO(
    ...         bs.losses.WeightedBinaryCrossentropy(), bs.kl.PerExample(8)))
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (np.zeros((8, 16, 16, 1), "float32"), np.zeros((8, 16, 16, 1), "float32"))).batch(4)
    >>> history = bs.training.fit_distributed(model, data, epochs=1)
    """
    if not isinstance(model, BayesianModel) or not model.compiled:
        raise ValueError(
            f"Argument `model` must be a compiled bayesseg.BayesianModel. Received: model={model!r}"
        )
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(
            f"Argument `epochs` must be a positive integer. Received: epochs={epochs!r}"
        )
    strategy = strategy or model.distribute_strategy
    make_dataset = (
        dataset if callable(dataset) and not isinstance(dataset, tf.data.Dataset) else None
    )
    if make_dataset is None and not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            "Argument `dataset` must be a tf.data.Dataset or a function epoch -> Dataset. "
            f"Received: dataset={dataset!r}"
        )
    callback_list = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose != 0,
        model=model,
        epochs=epochs,
        steps=steps_per_epoch,
        verbose=verbose,
    )

    @tf.function
    def distributed_step(batch):
        logs = strategy.run(model.train_step, args=(batch,))
        # As Keras' fit: metric results are averaged over the replicas.
        return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), logs)

    if not model.optimizer.built:
        # Keras' fit builds the optimizer before tracing; a lazy build inside
        # the replicated step fails (its variables would be created in a cond).
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
    model.stop_training = False
    model._initial_epoch = None
    callback_list.on_train_begin()
    # BackupAndRestore sets model._initial_epoch when it restores a backup.
    start = max(initial_epoch, model._initial_epoch or 0)
    logs = {}
    for epoch in range(start, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        data = make_dataset(epoch) if make_dataset is not None else dataset
        iterator = iter(strategy.experimental_distribute_dataset(data))
        step = 0
        for batch in iterator:
            if steps_per_epoch is not None and step >= steps_per_epoch:
                break
            callback_list.on_train_batch_begin(step)
            logs = {k: float(v) for k, v in distributed_step(batch).items()}
            callback_list.on_train_batch_end(step, logs)
            step += 1
            if model.stop_training:
                break
        epoch_logs = dict(logs)
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return model.history
