"""The randomness of Monte Carlo draws, shared by ``predict_mc`` and ``fit_calibration``.

A model with bayesseg Bayesian layers is drawn from with ``training=False``
under a sampling mode; any other model (e.g. MC dropout) with
``training=True`` and its batch normalisation frozen, so a prediction never
depends on the other examples of its batch.
"""

from __future__ import annotations

import contextlib

import keras

from bayesseg._validation import check_bool
from bayesseg.layers.model_functions import bayesian_layers, sampling_mode

__all__ = ["batch_norm_in_inference", "mc_randomness", "resolve_training"]


def resolve_training(model: keras.layers.Layer, training) -> bool:
    """The ``training`` flag of the draws: None means "not for Bayesian layers".

    Args:
        model: the Keras model.
        training: None, or a bool (checked).

    Returns:
        ``training``, or when it is None: False for a model with Bayesian
        layers, True otherwise.
    """
    if training is not None:
        return check_bool("training", training)
    return not bayesian_layers(model)


@contextlib.contextmanager
def batch_norm_in_inference(model: keras.layers.Layer):
    """Run every trainable BatchNormalization of ``model`` in inference mode.

    Keras' BatchNormalization uses the batch's statistics only when called
    with ``training=True`` *and* ``trainable`` set, so freezing it for the
    duration keeps MC-dropout draws (``training=True``) from normalising by
    the prediction batch: a pixel's prediction must not depend on which other
    images share its batch. ``trainable`` is restored afterwards.
    """
    frozen = [
        layer
        for layer in model._flatten_layers(include_self=True)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    for layer in frozen:
        layer.trainable = False
    try:
        yield
    finally:
        for layer in frozen:
            layer.trainable = True


@contextlib.contextmanager
def mc_randomness(model: keras.layers.Layer, sampling: str, training: bool):
    """Run draws of ``model`` with its randomness: sampling mode and frozen batch norm.

    Sets the Bayesian layers' sampling mode (restored afterwards) when the
    model has any, and freezes batch normalisation while ``training``.
    """
    with (
        sampling_mode(model, sampling) if bayesian_layers(model) else contextlib.nullcontext(),
        batch_norm_in_inference(model) if training else contextlib.nullcontext(),
    ):
        yield
