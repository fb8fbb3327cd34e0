"""fit_distributed: a ``strategy.run`` training loop for any ``tf.distribute`` strategy."""

from __future__ import annotations

import keras
import tensorflow as tf

from bayesseg._validation import argument_error, check_int
from bayesseg.training.model import BayesianModel

__all__ = ["fit_distributed"]


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
        raise argument_error("model", "be a compiled bayesseg.BayesianModel", model)
    epochs = check_int("epochs", epochs)
    strategy = strategy or model.distribute_strategy
    make_dataset = (
        dataset if callable(dataset) and not isinstance(dataset, tf.data.Dataset) else None
    )
    if make_dataset is None and not isinstance(dataset, tf.data.Dataset):
        raise argument_error(
            "dataset", "be a tf.data.Dataset or a function epoch -> Dataset", dataset
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
