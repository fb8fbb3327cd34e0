"""Distributed training: :func:`resolve_strategy` (a ``tf.distribute`` strategy by
name, as ``bayesseg train --strategy`` picks it) and :func:`fit_distributed` (a
``strategy.run`` training loop for any strategy).
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from bayesseg._validation import argument_error, check_choice, check_int

__all__ = ["STRATEGIES", "fit_distributed", "resolve_strategy"]

# The names resolve_strategy accepts (bayesseg.cli.options keeps a copy, so that
# the command line's help needs no TensorFlow; a test keeps the two equal).
STRATEGIES = ("auto", "default", "mirrored", "multiworker")

# One MultiWorkerMirroredStrategy per process: TensorFlow configures its
# collective ops once, at start-up.
_MULTI_WORKER: dict[str, tf.distribute.Strategy] = {}


def _tf_config() -> str:
    """TF_CONFIG, checked: a JSON object with a "cluster" and a "task" (one line else)."""
    text = os.environ.get("TF_CONFIG")
    expectation = (
        'the TF_CONFIG environment variable describing the cluster: JSON such as {"cluster": '
        '{"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}, '
        "one process per worker"
    )
    if not text:
        raise ValueError(
            f"Argument `name` 'multiworker' (--strategy multiworker) needs {expectation}. "
            "Received: TF_CONFIG unset"
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        config = None
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("cluster"), dict)
        or not isinstance(config.get("task"), dict)
    ):
        raise ValueError(
            f"Argument `name` 'multiworker' (--strategy multiworker) needs {expectation}. "
            f"Received: TF_CONFIG={text!r}"
        )
    return text


def resolve_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy called ``name`` (one of :data:`STRATEGIES`).

    * ``"default"``: the strategy in force, outside any scope the default one
      (one device).
    * ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over every visible GPU;
      without a GPU, over the logical CPU devices (one, unless
      ``tf.config.set_logical_device_configuration`` split the CPU, as the
      tests do to run 2 replicas). Each call makes a new strategy, in
      collective keys of its own, so several in one process (an ensemble's
      members) do not mix their all-reduces up.
    * ``"auto"``: ``"mirrored"`` over the GPUs when more than one is visible,
      else ``"default"``.
    * ``"multiworker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` of the
      cluster that the ``TF_CONFIG`` environment variable describes (one process
      per worker, started with the same arguments). TensorFlow allows it only
      before it has initialised its devices, so resolve it first thing in the
      process; a second call in the same process returns the first strategy.

    Build and compile the model under ``strategy.scope()`` and feed it *global*
    batches; :func:`fit_distributed` trains under any of them (Keras' ``fit``
    fails under ``MultiWorkerMirroredStrategy``).

    Args:
        name: "auto" (default), "default", "mirrored" or "multiworker".

    Returns:
        A ``tf.distribute.Strategy``.

    Raises:
        ValueError: an unknown ``name``; "multiworker" without a valid
            ``TF_CONFIG``, or after TensorFlow initialised its devices.

    Example:

    >>> import bayesseg as bs
    >>> strategy = bs.training.resolve_strategy("default")
    >>> strategy.num_replicas_in_sync
    1
    >>> bs.training.resolve_strategy("horovod")
    Traceback (most recent call last):
    ...
    ValueError: Argument `name` must be one of 'auto', 'default', 'mirrored', \
'multiworker'. Received: name='horovod'
    """
    name = check_choice("name", name, STRATEGIES)
    if name == "multiworker":
        config = _tf_config()
        if config not in _MULTI_WORKER:
            try:
                _MULTI_WORKER[config] = tf.distribute.MultiWorkerMirroredStrategy()
            except (RuntimeError, ValueError) as err:
                raise ValueError(
                    "Argument `name` 'multiworker' must be resolved before TensorFlow "
                    "initialises its devices (first thing in a fresh process, one process "
                    f"per worker). Received: {' '.join(str(err).split())}"
                ) from err
        return _MULTI_WORKER[config]
    if name == "default":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return _mirrored(gpus) if len(gpus) > 1 else tf.distribute.get_strategy()
    return _mirrored(gpus or tf.config.list_logical_devices("CPU"))


def _mirrored(devices) -> tf.distribute.MirroredStrategy:
    """A MirroredStrategy over ``devices``, in collective keys of its own.

    A new MirroredStrategy over the devices of an earlier one in the same
    process starts from the same collective keys, and TensorFlow then mixes
    their all-reduces up ("Shape mismatch in the collective instance 100"
    once the models differ): each one made here takes a key range of its
    own, as TensorFlow's own tests do (``strategy_combinations``), and moves
    the class's base on past it, so that a MirroredStrategy made directly
    afterwards does not share it either.
    """
    cls = tf.distribute.MirroredStrategy
    keyed = isinstance(getattr(cls, "_collective_key_base", None), int)
    if keyed:
        cls._collective_key_base += 100_000
    strategy = cls([d.name for d in devices])
    if keyed:
        cls._collective_key_base += 100_000
    return strategy


def fit_distributed(
    model: keras.Model,
    dataset,
    epochs: int,
    strategy: tf.distribute.Strategy | None = None,
    callbacks=None,
    initial_epoch: int = 0,
    steps_per_epoch: int | None = None,
    verbose: int = 0,
) -> keras.callbacks.History:
    """Train a compiled Keras model with a custom ``strategy.run`` loop.

    Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy``
    (keras-team/keras#20585); this loop runs ``model.train_step`` (the same
    ELBO, logs, hooks) on every replica of any ``tf.distribute`` strategy and
    drives the usual callbacks (``History``, ``BackupAndRestore``,
    ``ModelCheckpoint``, ``GradientDiagnostics``, ...). Build and compile the
    model inside ``strategy.scope()``.

    Args:
        model: a compiled ``BayesianModel`` (or any compiled ``keras.Model``,
            whose own train step scales its loss for the replicas as Keras'
            does) created under ``strategy.scope()``.
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
    if not isinstance(model, keras.Model) or not model.compiled:
        raise argument_error("model", "be a compiled Keras model (a bayesseg.BayesianModel)", model)
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
