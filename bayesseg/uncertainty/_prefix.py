"""The deterministic front of a model, computed once per batch of Monte Carlo draws.

A U-Net whose bottleneck and head are Bayesian (the default of
``bs.models.bayesian_unet``) draws noise only from the bottleneck on: its
encoder computes the same tensors in every draw. :func:`split_deterministic`
cuts such a functional model into ``prefix`` (every layer no draw can change)
and ``suffix`` (the rest), so that ``model(x) == suffix(prefix(x))`` and
``predict_mc`` runs the prefix once per batch and only the suffix per draw.

The cut is conservative: a layer belongs to the prefix only if it and every
layer nested in it are Keras's or bayesseg's own, hold no Bayesian layer and
run no code of the user's (``Lambda`` and the wrappers of other frameworks'
modules count as the user's), keep no state across calls (a stateful RNN
advances with every draw), and all its inputs come from the prefix; any
other layer (which might draw noise at inference) counts as random. Models
that are not single-input, single-output Keras functional models with
Keras's own ``call``, or that mask (``Masking``, ``Embedding(mask_zero=True)``),
are never cut.
"""

from __future__ import annotations

import weakref

import keras

from bayesseg.layers.model_functions import bayesian_layers

__all__ = ["SHARE", "Split", "shared_split", "split_deterministic"]

#: Whether Monte Carlo draws share the deterministic prefix (``predict_mc``,
#: ``fit_calibration``). Off only to measure or test the sharing.
SHARE = True
# Modules whose layers and operations draw no noise at inference (Keras's
# dropout and noise layers are the identity with training=False).
_DETERMINISTIC_MODULES = ("keras.", "bayesseg.")
_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Split:
    """A model cut in two: ``model(x) == suffix(prefix(x))`` at inference.

    Attributes:
        prefix: the Keras model from the input to the shared tensors.
        suffix: the Keras model from the shared tensors to the output; it
            holds every Bayesian layer.
    """

    def __init__(self, prefix: keras.Model, suffix: keras.Model):
        self.prefix = prefix
        self.suffix = suffix

    def __call__(self, x, training: bool = False):
        """The model's output on ``x``, through both halves (one draw)."""
        return self.suffix(self.features(x, training), training=training)

    def features(self, x, training: bool = False) -> list:
        """The shared tensors of ``x``, as a list (the suffix's inputs)."""
        out = self.prefix(x, training=training)
        return list(out) if isinstance(out, list | tuple) else [out]


# Keras layers that run the user's code, which might draw noise at inference.
_USER_CODE = tuple(
    cls
    for cls in (
        getattr(keras.layers, name, None)
        for name in ("Lambda", "TFSMLayer", "JaxLayer", "FlaxLayer", "TorchModuleWrapper")
    )
    if isinstance(cls, type)
)


def _deterministic_operation(operation) -> bool:
    if not isinstance(operation, keras.layers.Layer):
        return type(operation).__module__.startswith(_DETERMINISTIC_MODULES)
    if bayesian_layers(operation):
        return False
    return all(
        type(part).__module__.startswith(_DETERMINISTIC_MODULES)
        and not isinstance(part, _USER_CODE)
        and not getattr(part, "stateful", False)  # its state advances with every draw
        for part in operation._flatten_layers(include_self=True)
    )


def _masks(model) -> bool:
    return any(
        isinstance(layer, keras.layers.Masking) or getattr(layer, "mask_zero", False)
        for layer in model._flatten_layers(include_self=False)
    )


def _producer(tensor):
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]


def _find_split(model) -> Split | None:
    from keras.src.models.functional import Functional

    if not isinstance(model, Functional) or type(model).call is not Functional.call:
        return None  # a subclass's own call is not the graph
    if not bayesian_layers(model) or _masks(model):
        return None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    deterministic = {}
    # Largest depth first: the input layers, then every node after its parents.
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            deterministic[id(node)] = _deterministic_operation(node.operation) and all(
                deterministic[id(parent)] for parent in node.parent_nodes
            )
    shared, seen = [], set()
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if deterministic[id(node)]:
                continue
            for tensor in node.input_tensors:
                if deterministic[id(_producer(tensor))] and id(tensor) not in seen:
                    seen.add(id(tensor))
                    shared.append(tensor)
    inputs = model.inputs[0]
    if all(tensor is inputs for tensor in shared):
        return None  # noise from the first layer on: nothing to share
    prefix = keras.Model(inputs, shared, name=f"{model.name}_shared")
    return Split(prefix, keras.Model(shared, model.outputs[0], name=f"{model.name}_drawn"))


def split_deterministic(model: keras.layers.Layer) -> Split | None:
    """``model`` cut into its deterministic prefix and the rest, or None.

    Cached per model (the result only depends on the model's graph).

    Args:
        model: a Keras model.

    Returns:
        A :class:`Split`, or None when nothing can be shared between draws
        (not a single-input, single-output functional model with Keras's
        own ``call``; no Bayesian layer; masking; noise from the first
        layer; before the first Bayesian layer, a layer that is neither
        Keras's nor bayesseg's or that runs the user's code).

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> from bayesseg.uncertainty._prefix import split_deterministic
    >>> model = bs.models.bayesian_unet((16, 16, 1), 1, base_filters=2, depth=2)
    >>> split = split_deterministic(model)
    >>> len(bs.layers.bayesian_layers(split.prefix)), len(split.prefix.outputs)
    (0, 2)
    >>> with bs.layers.sampling_mode(model, "mean"):
    ...     x = np.ones((1, 16, 16, 1), "float32")
    ...     bool(np.allclose(split(x), model(x)))
    True
    """
    if model in _SPLITS:
        return _SPLITS[model]
    try:
        split = _find_split(model)
    except (AttributeError, KeyError, TypeError, ValueError):
        split = None  # a graph this walk does not know: draw the whole model
    _SPLITS[model] = split
    return split


def shared_split(model: keras.layers.Layer, training: bool) -> Split | None:
    """The split the draws of ``model`` share, or None: never under training-mode
    randomness (MC dropout draws its noise anywhere), nor with :data:`SHARE` off."""
    if training or not SHARE:
        return None
    return split_deterministic(model)
