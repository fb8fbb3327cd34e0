"""Functions over every Bayesian layer of a model: find them, sum their KL, switch sampling.

Re-exported by :mod:`bayesseg.layers.base` (where they were released) and
:mod:`bayesseg.layers`. The imports go one way: ``base`` imports this module,
never the reverse. This module owns the sampling modes, which ``BayesianLayer``
checks with :func:`check_sampling`, and knows a Bayesian layer as an instance
of :class:`BayesianLayerType`, with which ``base`` registers ``BayesianLayer``
(and so every subclass) as it defines it.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator

import keras
import tensorflow as tf

from bayesseg._validation import argument_error, check_choice

__all__ = ["bayesian_layers", "kl_divergence", "set_sampling", "sampling_mode"]

SAMPLING_MODES = ("sample", "mean", "shared")


def check_sampling(sampling: str) -> str:
    """A sampling mode, one of ``SAMPLING_MODES`` (the shared ``check_choice``).

    Example:

    >>> from bayesseg.layers.model_functions import check_sampling
    >>> check_sampling("mean")
    'mean'
    >>> check_sampling("draw")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Argument `sampling` must be one of 'sample', 'mean', 'shared'. Received: ...
    """
    return check_choice("sampling", sampling, SAMPLING_MODES)


class BayesianLayerType(abc.ABC):  # noqa: B024 - a type to register with, no methods
    """What :func:`bayesian_layers` collects: the abstract type of a Bayesian layer.

    :class:`~bayesseg.layers.base.BayesianLayer` registers itself here when
    it is defined, so every bayesseg Bayesian layer is an instance, and this
    module needs no import of ``base`` (which imports this one).

    Example:

    >>> import bayesseg as bs
    >>> from bayesseg.layers.model_functions import BayesianLayerType
    >>> isinstance(bs.layers.DenseFlipout(2), BayesianLayerType)
    True
    """


def bayesian_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """All Bayesian layers inside ``model`` (nested models and RNN cells too).

    Args:
        model: a Keras model or layer.

    Returns:
        A list of :class:`~bayesseg.layers.base.BayesianLayer`, each once, in tracking order.

    Example:

    >>> import bayesseg as bs, keras
    >>> model = keras.Sequential([keras.Input((3,)), bs.layers.DenseFlipout(2)])
    >>> [type(l).__name__ for l in bs.layers.bayesian_layers(model)]
    ['DenseFlipout']
    """
    if not isinstance(model, keras.layers.Layer):
        raise argument_error("model", "be a Keras model or layer", model)
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, BayesianLayerType) and id(layer) not in seen:
            seen.add(id(layer))
            found.append(layer)
    return found


def kl_divergence(model: keras.layers.Layer, num_samples: int | None = None) -> tf.Tensor:
    """Sum of the unscaled KL divergences of every Bayesian layer in ``model``.

    This is the quantity the ELBO scales; it does not rely on
    ``model.losses`` (bayesseg layers add no losses).

    Args:
        model: a built Keras model or layer.
        num_samples: Monte Carlo samples for priors without closed-form KL.

    Returns:
        A float32 scalar tensor.

    Raises:
        ValueError: if ``model`` holds no Bayesian layer.

    Example:

    >>> import bayesseg as bs, keras
    >>> model = keras.Sequential([keras.Input((3,)), bs.layers.DenseFlipout(2)])
    >>> kl = bs.kl_divergence(model)
    """
    layers = bayesian_layers(model)
    if not layers:
        raise ValueError(
            f"Model {model.name!r} has no Bayesian layers, so it has no KL "
            "divergence. Build it from bayesseg.layers (or convert it)."
        )
    return tf.add_n([layer.kl_divergence(num_samples) for layer in layers])


_COMPILED_FUNCTIONS = ("train_function", "test_function", "predict_function")


def _reset_compiled_functions(model) -> None:
    # Keras caches traced train/test/predict functions; the sampling switch is
    # read when they are traced, so they must be traced again.
    for attr in _COMPILED_FUNCTIONS:
        if hasattr(model, attr):
            setattr(model, attr, None)


def _saved_compiled_functions(model) -> dict:
    return {attr: getattr(model, attr) for attr in _COMPILED_FUNCTIONS if hasattr(model, attr)}


def set_sampling(model: keras.layers.Layer, mode: str) -> None:
    """Set the sampling mode of every Bayesian layer in ``model``.

    Args:
        model: a Keras model or layer.
        mode: "sample" (draw with the layer's estimator), "shared" (one
            weight draw shared by the batch) or "mean" (posterior mean).

    Keras' cached ``fit``/``evaluate``/``predict`` functions are reset so the
    new mode takes effect on the next call. Functions you wrapped in
    ``tf.function`` yourself keep the mode they were traced with.

    Example:

    >>> import bayesseg as bs, keras
    >>> model = keras.Sequential([keras.Input((3,)), bs.layers.DenseFlipout(2)])
    >>> bs.layers.set_sampling(model, "mean")
    """
    mode = check_sampling(mode)
    for layer in bayesian_layers(model):
        layer.sampling = mode
    _reset_compiled_functions(model)


@contextlib.contextmanager
def sampling_mode(model: keras.layers.Layer, mode: str) -> Iterator[None]:
    """Context manager: temporarily set the sampling mode of ``model``.

    Example:

    >>> import bayesseg as bs, keras, numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), bs.layers.DenseFlipout(2)])
    >>> with bs.layers.sampling_mode(model, "mean"):
    ...     y = model.predict(np.ones((4, 3)), verbose=0)
    """
    mode = check_sampling(mode)
    layers = bayesian_layers(model)
    previous = [layer.sampling for layer in layers]
    # Functions traced before the block saw the previous modes, so they are
    # valid again once the modes are restored: putting them back keeps a
    # ``fit`` that called this (e.g. ``predict_mc`` in a callback) running.
    saved = _saved_compiled_functions(model)
    set_sampling(model, mode)
    try:
        yield
    finally:
        for layer, old in zip(layers, previous, strict=True):
            layer.sampling = old
        _reset_compiled_functions(model)
        for attr, value in saved.items():
            setattr(model, attr, value)
