"""BayesianModel: a Keras model whose steps log the NLL and KL separately.

``BayesianModel`` is a ``keras.Model`` (functional construction works:
``BayesianModel(inputs, outputs)``) compiled with a :class:`bayesseg.ELBO`.
Its train and test steps evaluate the ELBO's terms once and log ``loss``,
``nll``, ``kl`` (raw, unscaled) and ``kl_weight`` (effective, so that
``loss = nll + kl_weight * temperature * kl`` under KL tempering) in the
progress bar and in ``History``. Its train step runs the registered
train-step hooks (``bayesseg.training.hooks``) before the update.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from bayesseg._input_shapes import fits, model_input_shapes, show
from bayesseg._validation import argument_error
from bayesseg.elbo import ELBO
from bayesseg.layers import bayesian_layers
from bayesseg.training.hooks import StepContext, TrainStepHook

__all__ = ["BayesianModel"]


def _scale_for_replicas(value):
    # Each replica's loss is divided by the replicas in sync, so that the
    # gradients summed over replicas are those of the global batch mean (what
    # Keras' own train step does).
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        value = value * tf.cast(1.0 / replicas, value.dtype)
    return value


def _input_shape_of(value, argument: str) -> tuple[tuple[int | None, ...], str] | None:
    """(shape, how to name it) of an array or of a dataset's inputs; None when unknown."""
    if isinstance(value, tf.data.Dataset):
        spec = value.element_spec
        name = f"{argument}.element_spec"
        if isinstance(spec, tuple) and spec:
            spec, name = spec[0], f"{name}[0]"
        if not isinstance(spec, tf.TensorSpec) or spec.shape.rank is None:
            return None
        return tuple(spec.shape.as_list()), f"{name}.shape"
    shape = getattr(value, "shape", None)
    if shape is None or isinstance(value, dict | list | tuple):
        return None
    try:
        return tuple(None if d is None else int(d) for d in shape), f"{argument}.shape"
    except (TypeError, ValueError):
        return None


def _check_input(expected: list[tuple[int | None, ...]], value, argument: str) -> None:
    """A one-line ValueError when ``value`` cannot enter a single-input model."""
    if len(expected) != 1:
        return
    found = _input_shape_of(value, argument)
    if found is None or fits(expected[0], found[0]):
        return
    shape, name = found
    hint = ""
    if isinstance(value, tf.data.Dataset) and len(shape) == len(expected[0]) - 1:
        hint = " (batch the dataset: dataset.batch(n))"
    raise ValueError(
        f"Argument `{argument}` must have the model's input shape {show(expected[0])} "
        f"(None: any size){hint}. Received: {name}={show(shape)}"
    )


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
    the optimizer step. ``fit`` checks arrays and ``tf.data`` datasets (of
    known element shape) against the model's declared input before
    anything is traced, and a failed ``fit`` leaves the model ready for the
    next one (its traced step is discarded, see :meth:`fit`).

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
            raise argument_error(
                "loss",
                "be a bayesseg.ELBO (it separates the NLL and the KL; wrap your likelihood: "
                "bs.ELBO(likelihood, kl_scaling))",
                loss,
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

    # -------------------------------------------------------------------- fit
    def fit(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.fit``, with its inputs checked first and a clean retry after a failure.

        Arrays (NumPy, tensors) and ``tf.data`` datasets with a known element
        shape, for ``x`` and ``validation_data``, must fit the model's
        declared input (``None`` axes take any size); otherwise a ValueError
        names both shapes before anything is traced. Generators and
        ``PyDataset`` pass unchecked (their shapes are known only by running
        them).

        When a fit fails (an error while tracing the first step, a non-finite
        loss, a ``KeyboardInterrupt``), the traced train and test functions
        are discarded, so the next ``fit`` traces afresh. (A ``tf.function``
        may create variables only in its first call; the optimizer's and the
        metrics' are created in the first trace, so a first trace that failed
        before them would otherwise make every later fit fail with "Creating
        variables on a non-first call to a function decorated with
        tf.function".)

        Example:

        >>> import bayesseg as bs, keras, numpy as np
        >>> inputs = keras.Input((4,))
        >>> model = bs.BayesianModel(inputs, bs.layers.DenseFlipout(1)(inputs))
        >>> model.compile(optimizer="adam", loss=bs.ELBO(
        ...     bs.losses.WeightedBinaryCrossentropy(), bs.kl.PerExample(num_examples=8)))
        >>> model.fit(np.ones((8, 5)), np.ones((8, 1)), verbose=0)
        Traceback (most recent call last):
        ...
        ValueError: Argument `x` must have the model's input shape (None, 4) (None: any size). \
Received: x.shape=(8, 5)
        >>> len(model.fit(np.ones((8, 4)), np.ones((8, 1)), verbose=0).history["loss"])
        1
        """
        expected = model_input_shapes(self)
        if expected is not None:
            _check_input(expected, x, "x")
            validation = kwargs.get("validation_data")
            if isinstance(validation, tuple | list) and validation:
                _check_input(expected, validation[0], "validation_data[0]")
            elif validation is not None:
                _check_input(expected, validation, "validation_data")
        try:
            return super().fit(x, y, *args, **kwargs)
        except BaseException:
            self._discard_traced_steps()
            raise

    def evaluate(self, *args, **kwargs):
        """``keras.Model.evaluate``; a failure discards the traced functions (see :meth:`fit`)."""
        try:
            return super().evaluate(*args, **kwargs)
        except BaseException:
            self._discard_traced_steps()
            raise

    def _discard_traced_steps(self) -> None:
        self.train_function = None
        self.test_function = None

    # ------------------------------------------------------------------ hooks
    def add_train_step_hook(self, hook: TrainStepHook) -> None:
        """Register a hook that runs inside every train step (before the update).

        The train function is traced again for the new set of hooks (traced
        functions are cached per set, so toggling a callback between fits
        does not retrace every time).
        """
        if not isinstance(hook, TrainStepHook):
            raise argument_error("hook", "be a bayesseg.training.TrainStepHook", hook)
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
            loss = _scale_for_replicas(terms.loss)
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
                gradient_scale=self.optimizer.scale_loss(_scale_for_replicas(tf.constant(1.0))),
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
