"""Turn a trained deterministic Keras model into a Bayesian one.

:func:`to_bayesian` clones a functional or Sequential model (nested models
included) with ``keras.models.clone_model(..., recursive=True)``, replacing
every selected ``Dense``, ``Conv1D/2D/3D``, ``Conv2D/3DTranspose`` and
``LSTM`` (and ``TimeDistributed(Dense)``, ``Bidirectional(LSTM)``) by its
Bayesian twin with the same
configuration, and copies the trained weights: a Bayesian layer's posterior
mean is the trained weight, its posterior scale ``posterior_scale_init`` or,
with MOPED (Krishnan et al. 2020), ``moped_delta * |w|``. Every other layer
(normalisation, pooling, concatenation, dropout...) is cloned with its
weights. The result is a :class:`bayesseg.BayesianModel` ready for
``compile(loss=bs.ELBO(...))``.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

# Keras exports no public class for functional models (keras.Model(inputs,
# outputs) returns this subclass); clone_model needs one, so does the check.
from keras.src.models.functional import Functional

from bayesseg import layers as bl
from bayesseg import priors as priors_lib
from bayesseg._defaults import ESTIMATORS
from bayesseg._validation import argument_error, check_choice, check_float, check_int
from bayesseg.layers.lstm import BaseLSTM
from bayesseg.training import BayesianModel

__all__ = ["to_bayesian"]

# Keras class -> stem of its Bayesian twin (exact types: a subclass may
# override ``call``, so it is not assumed to compute the same function).
_TWINS = {
    keras.layers.Dense: "Dense",
    keras.layers.Conv1D: "Conv1D",
    keras.layers.Conv2D: "Conv2D",
    keras.layers.Conv3D: "Conv3D",
    keras.layers.Conv2DTranspose: "Conv2DTranspose",
    keras.layers.Conv3DTranspose: "Conv3DTranspose",
    keras.layers.LSTM: "LSTM",
}
# Config keys passed to the twin unchanged.
_PASSED = (
    "units",
    "filters",
    "kernel_size",
    "strides",
    "padding",
    "data_format",
    "dilation_rate",
    "output_padding",
    "activation",
    "recurrent_activation",
    "use_bias",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "unit_forget_bias",
    "return_sequences",
    "return_state",
    "go_backwards",
    "stateful",
    "unroll",
    "zero_output_for_mask",
    "use_cudnn",
)
# Config keys whose value must be the neutral one for the twin to compute
# the same function (regularisers would be silently dropped from the loss).
_NEUTRAL = {
    "kernel_regularizer": None,
    "bias_regularizer": None,
    "recurrent_regularizer": None,
    "activity_regularizer": None,
    "kernel_constraint": None,
    "bias_constraint": None,
    "recurrent_constraint": None,
    "quantization_config": None,
    "lora_rank": None,
    "groups": 1,
    "dropout": 0.0,
    "recurrent_dropout": 0.0,
}
# Set by to_bayesian itself; "seed" of a Keras LSTM is its dropout seed.
_IGNORED = ("name", "trainable", "dtype", "seed", "lora_alpha")
# Layers with weights that stay deterministic by design (not warned about).
_KEPT_BY_DESIGN = tuple(
    cls
    for cls in (
        getattr(keras.layers, name, None)
        for name in (
            "BatchNormalization",
            "LayerNormalization",
            "GroupNormalization",
            "UnitNormalization",
            "RMSNormalization",
            "Normalization",
        )
    )
    if cls is not None
)


def _is_bayesian(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, (bl.BayesianLayer, BaseLSTM))


def _accepted_arguments(cls) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                names.add(param.name)
    return names


def _plan(layer: keras.layers.Layer, estimator: str) -> tuple[Callable | None, dict | str]:
    """A builder of the Bayesian twin of ``layer`` and its arguments, or ``(None, reason)``."""
    if type(layer) is keras.layers.Bidirectional:
        return _plan_bidirectional(layer, estimator)
    source = layer
    if type(layer) is keras.layers.TimeDistributed:
        if type(layer.layer) is not keras.layers.Dense:
            return None, (
                f"TimeDistributed({type(layer.layer).__name__}) would draw weights per "
                "timestep; only TimeDistributed(Dense) is converted"
            )
        # A Dense acts on the last axis, so one Bayesian Dense on the whole
        # sequence computes the same function with one draw per sequence.
        source = layer.layer
    cls, kwargs = _twin_arguments(source, estimator)
    if cls is None:
        return None, kwargs
    kwargs.update(name=layer.name, dtype=layer.dtype_policy, trainable=layer.trainable)
    return cls, kwargs


def _twin_arguments(source: keras.layers.Layer, estimator: str) -> tuple[type | None, dict | str]:
    """The Bayesian twin class of ``source`` and the config it passes on, or a reason."""
    stem = _TWINS.get(type(source))
    if stem is None:
        return None, "no Bayesian twin for this layer type"
    cls = bl.bayesian_twin(stem, estimator)
    config = source.get_config()
    accepted = _accepted_arguments(cls)
    kwargs: dict[str, Any] = {}
    for key, value in config.items():
        if key in _IGNORED:
            continue
        if key in _NEUTRAL:
            neutral = _NEUTRAL[key]
            if value != neutral:
                return None, f"{key}={value!r} is not supported (needs {neutral!r})"
            continue
        if key == "padding" and value == "causal":
            return None, "padding='causal' is not supported"
        if key not in _PASSED:
            return None, f"unknown config key {key!r}={value!r}"
        if key not in accepted:
            return None, f"{cls.__name__} has no argument {key!r} (value {value!r})"
        kwargs[key] = value
    return cls, kwargs


def _plan_bidirectional(layer, estimator: str) -> tuple[Callable | None, dict | str]:
    """``Bidirectional(LSTM)``: a Bidirectional of the two directions' twins."""
    directions = {}
    for side in ("forward", "backward"):
        inner = getattr(layer, f"{side}_layer")
        if type(inner) is not keras.layers.LSTM:
            return None, (
                f"Bidirectional({type(inner).__name__}): only Bidirectional(LSTM) is converted"
            )
        cls, kwargs = _twin_arguments(inner, estimator)
        if cls is None:
            return None, f"its {side} LSTM: {kwargs}"
        kwargs.update(name=inner.name, dtype=inner.dtype_policy, trainable=inner.trainable)
        directions[side] = (cls, kwargs)

    def build(**shared):
        forward, backward = (
            cls(**kwargs, **shared) for cls, kwargs in (directions[s] for s in directions)
        )
        return keras.layers.Bidirectional(
            forward,
            merge_mode=layer.merge_mode,
            backward_layer=backward,
            name=layer.name,
            trainable=layer.trainable,
        )

    return build, {}


def _graph_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers of ``model`` and of its nested functional/Sequential models."""
    found = []
    for layer in model.layers:
        if isinstance(layer, (Functional, keras.Sequential)):
            found.append(layer)
            found.extend(_graph_layers(layer))
        elif not isinstance(layer, keras.layers.InputLayer):
            found.append(layer)
    return found


def _select(model, graph, layers) -> tuple[set[int], set[int]]:
    """Ids of the layers chosen by ``layers``, and of those named directly."""
    if isinstance(layers, str) and layers == "all":
        return {id(layer) for layer in graph}, set()
    if callable(layers):
        chosen = set()
        for layer in graph:
            if isinstance(layer, (Functional, keras.Sequential)):
                continue
            if layers(layer):
                chosen.add(id(layer))
        return chosen, set()
    names = [layers] if isinstance(layers, str) else layers
    if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise argument_error(
            "layers", "be 'all', a callable `layer -> bool` or a list of layer names", layers
        )
    by_name: dict[str, keras.layers.Layer] = {}
    for layer in graph:
        by_name.setdefault(layer.name, layer)
    chosen, named = set(), set()
    for name in names:
        if name not in by_name:
            raise argument_error(
                "layers", f"name layers of model {model.name!r}, which has no {name!r}", layers
            )
        layer = by_name[name]
        if isinstance(layer, (Functional, keras.Sequential)):
            chosen.update(id(inner) for inner in _graph_layers(layer))
        else:
            named.add(id(layer))
        chosen.add(id(layer))
    return chosen, named


def to_bayesian(
    model: keras.Model,
    estimator: str = "flipout",
    layers: str | Sequence[str] | Callable[[keras.layers.Layer], bool] = "all",
    prior: priors_lib.Prior | float | None = None,
    posterior_scale_init: float = 1e-3,
    moped_delta: float | None = None,
    moped_scale_floor: float = 1e-5,
    moped_prior: bool = False,
    moped_prior_scale: float | None = None,
    moped_prior_floor: float = 1e-2,
    bayesian_bias: bool = False,
    seed: int | None = None,
) -> BayesianModel:
    """Convert a trained Keras model into a Bayesian model with the same function.

    Every selected ``Dense``, ``Conv1D/2D/3D``, ``Conv2D/3DTranspose``,
    ``LSTM`` and ``TimeDistributed(Dense)`` becomes its Bayesian twin
    (``DenseFlipout``, ``Conv2DReparameterization``, ``LSTMFlipout``...)
    with the same configuration and name, whose posterior mean is the
    trained weight; a ``Bidirectional(LSTM)`` becomes a ``Bidirectional``
    of the two directions' twins (same merge mode, each direction its own
    posterior, the pair drawing different noise from one seed). Other
    layers are cloned with their weights (BatchNormalization keeps its
    moving statistics). Nested functional and
    Sequential models are converted recursively. The input model is not
    modified. Layers with weights that stay deterministic (no twin, e.g.
    ``Embedding`` or a custom layer; or an unsupported configuration:
    regularisers, constraints, ``groups > 1``, causal padding, LSTM dropout)
    are listed, with the reason, in one ``UserWarning``; normalisation layers
    stay deterministic silently.

    Posterior scales: ``posterior_scale_init`` everywhere, or, with
    ``moped_delta`` (MOPED), ``max(moped_delta * |w|, moped_scale_floor)``
    per weight. ``moped_prior=True`` also centres the prior on the trained
    weights: ``bs.priors.WeightCentered(relative_scale=moped_prior_scale,
    scale_floor=moped_prior_floor)``, i.e. ``N(w, max(r |w|, floor)^2)``.

    Args:
        model: a built functional or Sequential ``keras.Model``.
        estimator: "flipout" (default) or "reparameterization".
        layers: which layers to convert: "all" (default), a list of layer
            names (a nested model's name selects all its layers; naming a
            missing or unconvertible layer raises), or a callable
            ``layer -> bool`` (unconvertible selections are warned about).
        prior: prior of the Bayesian layers (``bs.priors.Prior`` or a Normal
            scale). Default: each layer's own (``Normal(0.1)``; LSTM cells
            ``FanInNormal()``). A per-weight
            ``bs.priors.WeightCentered`` prior is centred on the trained
            weights. Exclusive with ``moped_prior``.
        posterior_scale_init: float > 0, posterior scale without MOPED.
            Default 1e-3.
        moped_delta: float > 0 or None (default): MOPED's relative posterior
            scale.
        moped_scale_floor: float > 0, the smallest MOPED posterior scale.
            Default 1e-5.
        moped_prior: bool, centre the prior on the trained weights. Default
            False.
        moped_prior_scale: float >= 0 or None: relative prior scale ``r``;
            None uses ``moped_delta`` (then the KL starts at 0 except where a
            floor binds). ``0`` gives the absolute scale ``moped_prior_floor``.
        moped_prior_floor: float > 0, the smallest prior scale. Default 1e-2.
        bayesian_bias: bool, Normal posteriors on the biases too (their
            scale follows the same rule). Default False.
        seed: int or None: the i-th converted layer gets noise seed
            ``seed + i``. Default None (random seeds).

    Returns:
        A new :class:`bayesseg.BayesianModel` with the input model's inputs,
        outputs and name.

    Raises:
        ValueError: for a model that is not a built functional/Sequential
            model, an unknown ``estimator``, ``moped_delta <= 0``, a bad
            scale or floor, ``layers`` naming a missing or unconvertible
            layer, or a selection that converts no layer.

    Example:

    >>> import bayesseg as bs, keras, numpy as np
    >>> from bayesseg import convert
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
    ...                           keras.layers.Dense(1)])
    >>> bayesian = convert.to_bayesian(model, moped_delta=0.1)
    >>> [type(layer).__name__ for layer in bayesian.layers[1:]]
    ['DenseFlipout', 'DenseFlipout']
    >>> x = np.ones((2, 4), "float32")
    >>> with bs.layers.sampling_mode(bayesian, "mean"):
    ...     bool(np.allclose(bayesian(x), model(x), atol=1e-6))
    True
    """
    if not isinstance(model, (Functional, keras.Sequential)):
        raise argument_error(
            "model",
            "be a functional or Sequential keras.Model (subclassed models cannot be cloned)",
            model,
        )
    try:
        model.inputs  # noqa: B018 - raises for an unbuilt Sequential model
        built = bool(model.inputs)
    except (AttributeError, ValueError):
        built = False
    if not built:
        raise ValueError(
            f"Argument `model` must be built with a `keras.Input`. Received: model={model.name!r} "
            "without defined inputs"
        )
    estimator = check_choice("estimator", estimator, ESTIMATORS)
    positive = {"minimum": 0, "strict_minimum": True}
    posterior_scale_init = check_float("posterior_scale_init", posterior_scale_init, **positive)
    moped_delta = check_float("moped_delta", moped_delta, allow_none=True, **positive)
    moped_scale_floor = check_float("moped_scale_floor", moped_scale_floor, **positive)
    moped_prior_floor = check_float("moped_prior_floor", moped_prior_floor, **positive)
    seed = check_int("seed", seed, minimum=None, allow_none=True)
    if moped_prior:
        if prior is not None:
            raise ValueError(
                "Arguments `prior` and `moped_prior` are exclusive (moped_prior sets a "
                f"WeightCentered prior). Received: prior={prior!r}, moped_prior=True"
            )
        if moped_prior_scale is None:
            if moped_delta is None:
                raise ValueError(
                    "Argument `moped_prior=True` needs `moped_prior_scale` or "
                    "`moped_delta`. Received: moped_prior_scale=None, moped_delta=None"
                )
            moped_prior_scale = moped_delta
        moped_prior_scale = check_float("moped_prior_scale", moped_prior_scale, minimum=0)
        prior = priors_lib.WeightCentered(moped_prior_scale, moped_prior_floor)
    prior = priors_lib.get(prior)

    graph = _graph_layers(model)
    chosen, named = _select(model, graph, layers)
    plans: dict[int, tuple[type, dict]] = {}
    kept: list[str] = []
    for layer in graph:
        if id(layer) not in chosen or isinstance(layer, (Functional, keras.Sequential)):
            continue
        strict = id(layer) in named
        if _is_bayesian(layer) or (not layer.weights and not strict):
            continue
        if isinstance(layer, _KEPT_BY_DESIGN) or not layer.weights:
            cls, kwargs = None, "no Bayesian twin for this layer type"
        else:
            cls, kwargs = _plan(layer, estimator)
        if cls is None:
            if strict:
                raise ValueError(
                    f"Argument `layers` names layer {layer.name!r} ({type(layer).__name__}) "
                    f"that cannot be converted: {kwargs}. Received: layers={layers!r}"
                )
            if not isinstance(layer, _KEPT_BY_DESIGN):
                kept.append(f"{layer.name!r} ({type(layer).__name__}): {kwargs}")
            continue
        kwargs.update(
            prior=prior,
            posterior_scale_init=posterior_scale_init,
            bayesian_bias=bayesian_bias,
        )
        if seed is not None:
            kwargs["seed"] = seed + len(plans)
        plans[id(layer)] = (cls, kwargs)
    if not plans:
        raise ValueError(
            f"Argument `layers` selects no convertible layer of model {model.name!r}. "
            f"Received: layers={layers!r}"
        )
    if kept:
        warnings.warn(
            f"to_bayesian kept {len(kept)} layer(s) with weights deterministic: " + "; ".join(kept),
            UserWarning,
            stacklevel=2,
        )

    pairs: list[tuple[keras.layers.Layer, keras.layers.Layer]] = []

    def clone(layer):
        plan = plans.get(id(layer))
        new = plan[0](**plan[1]) if plan else layer.__class__.from_config(layer.get_config())
        pairs.append((layer, new))
        return new

    def call(layer, *args, **kwargs):
        # The graph recorded the Keras layer's call arguments; a twin without
        # a ``mask`` argument (Dense for TimeDistributed(Dense)) cannot take it.
        if "mask" in kwargs and not layer._call_has_mask_arg:
            kwargs.pop("mask")
        return layer(*args, **kwargs)

    cloned = keras.models.clone_model(
        model,
        clone_function=clone,
        call_function=None if isinstance(model, keras.Sequential) else call,
        recursive=True,
    )
    if isinstance(cloned, keras.Sequential):
        inputs, outputs = cloned.inputs[0], cloned.outputs[0]
    else:  # keep dict/list structures of multi-input and multi-output models
        inputs, outputs = cloned._inputs_struct, cloned._outputs_struct
    result = BayesianModel(inputs, outputs, name=model.name)
    for old, new in pairs:
        if id(old) in plans and type(old) is keras.layers.Bidirectional:
            for side in ("forward_layer", "backward_layer"):
                copy = (getattr(old, side), getattr(new, side))
                _copy_to_bayesian(*copy, moped_delta, moped_scale_floor, posterior_scale_init)
        elif id(old) in plans:
            _copy_to_bayesian(old, new, moped_delta, moped_scale_floor, posterior_scale_init)
        elif old.weights:
            new.set_weights(old.get_weights())
    return result


def _copy_to_bayesian(old, new, moped_delta, floor, posterior_scale_init) -> None:
    """Posterior means (and prior centres) from the trained weights; MOPED scales.

    The Bayesian layer (an LSTM's cell) names its posterior variables through
    ``posterior_variables()``; every other weight of ``new`` (a deterministic
    bias) has the name of the trained weight it copies.
    """
    source = {variable.name: variable.numpy() for variable in old.weights}
    if len(source) != len(old.weights):
        raise ValueError(f"Layer {old.name!r} has weights with duplicate names.")
    # An LSTM's posteriors live in its cell, which owns the parameterisation.
    owner = getattr(new, "cell", new)
    used, placed = set(), {id(owner.noise_step)}
    for name, variables in owner.posterior_variables().items():
        w = source[name]
        variables.loc.assign(w)
        if variables.prior_loc is not None:
            variables.prior_loc.assign(w)
        if moped_delta is None:
            scale = np.full(w.shape, posterior_scale_init)
        else:
            scale = np.maximum(moped_delta * np.abs(w), floor)
        variables.rho.assign(np.asarray(owner.rho_for_scale(scale), variables.rho.dtype))
        used.add(name)
        placed.update(id(v) for v in variables if v is not None)
    for variable in new.weights:
        if id(variable) not in placed:
            variable.assign(source[variable.name])
            used.add(variable.name)
    missing = set(source) - used
    if missing:
        raise ValueError(
            f"Converting layer {old.name!r}: weights {sorted(missing)} have no place "
            f"in {type(new).__name__}."
        )
