"""Deep ensembles: :class:`DeepEnsemble`, several models read as one.

A deep ensemble (Lakshminarayanan et al., 2017) trains the same network
several times from different random initialisations and averages the
members' predictive distributions. :class:`DeepEnsemble` holds the members
as one Keras model: called, it returns the logits of the members' mean
probabilities (the bayesseg convention, so ``predict``, ``evaluate`` and
saving work as for one model); :func:`bayesseg.uncertainty.predict_mc`
reads its members and draws from each, so the uncertainty decomposition
counts disagreement between members as epistemic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import tensorflow as tf

from bayesseg._input_shapes import model_input_shapes, show
from bayesseg._validation import argument_error

__all__ = ["DeepEnsemble", "ensemble_members", "mixture_logits"]


def mixture_logits(logits: Sequence[tf.Tensor]) -> tf.Tensor:
    """Logits of the equally weighted mixture of several logit tensors.

    For one channel (sigmoid) the result is ``logit(mean_k sigmoid(z_k))``;
    for ``K > 1`` channels (softmax) it is ``log(mean_k softmax(z_k))``,
    whose softmax is the mean of the softmaxes. Both are computed with
    log-sum-exp, so saturated members give finite logits.

    Args:
        logits: a non-empty sequence of tensors of one shape ``(..., K)``.

    Returns:
        A float32 tensor of that shape.

    Example:

    >>> import tensorflow as tf
    >>> from bayesseg.models.ensemble import mixture_logits
    >>> z = mixture_logits([tf.constant([[2.0]]), tf.constant([[-2.0]])])
    >>> round(float(tf.sigmoid(z)[0, 0]), 4)  # the mean of 0.8808 and 0.1192
    0.5
    """
    z = tf.stack([tf.cast(member, tf.float32) for member in logits])
    log_k = math.log(len(logits))
    if z.shape[-1] == 1:
        log_p = tf.reduce_logsumexp(tf.math.log_sigmoid(z), axis=0) - log_k
        log_q = tf.reduce_logsumexp(tf.math.log_sigmoid(-z), axis=0) - log_k
        return log_p - log_q
    return tf.reduce_logsumexp(tf.nn.log_softmax(z, axis=-1), axis=0) - log_k


def _check_members(members) -> list[keras.Model]:
    if isinstance(members, keras.layers.Layer) or not isinstance(members, Sequence):
        raise argument_error("members", "be a list of Keras models", members)
    members = list(members)
    if not members:
        raise argument_error("members", "hold at least one Keras model", members)
    for index, member in enumerate(members):
        if isinstance(member, DeepEnsemble):
            raise argument_error(
                "members", "hold models, not ensembles (pass their members)", members
            )
        if not isinstance(member, keras.Model):
            raise ValueError(
                "Argument `members` must be a list of Keras models. "
                f"Received: members[{index}] of type {type(member).__name__}"
            )
    if len({id(member) for member in members}) != len(members):
        raise ValueError(
            "Argument `members` must hold each model once (a model listed twice would "
            "count twice and its weights would be saved twice). Received the same model "
            "more than once"
        )
    shapes = [model_input_shapes(member) for member in members]
    declared = [(i, s) for i, s in enumerate(shapes) if s is not None]
    for index, shape in declared[1:]:
        first, first_shape = declared[0]
        if len(shape) != len(first_shape) or any(
            a[-1] != b[-1] or len(a) != len(b) for a, b in zip(shape, first_shape, strict=True)
        ):
            raise ValueError(
                "Argument `members` must hold models of one input (rank and channels). "
                f"Received: members[{first}] with input {show(first_shape[0])} and "
                f"members[{index}] with input {show(shape[0])}"
            )
    outputs = {}
    for index, member in enumerate(members):
        try:
            outputs[index] = member.output_shape[-1]
        except (AttributeError, ValueError):
            continue  # a subclassed model without a known output: checked when called
    if len(set(outputs.values())) > 1:
        raise ValueError(
            "Argument `members` must hold models with the same number of output channels. "
            f"Received output channels {outputs} (member index: channels)"
        )
    return members


@keras.saving.register_keras_serializable(package="bayesseg")
class DeepEnsemble(keras.Model):
    """Several models of one task read as one: a deep ensemble.

    Called on ``x``, returns the logits of the members' mean probabilities
    (:func:`mixture_logits`), so ``ensemble.predict(x)`` and the bayesseg
    metrics treat it as one model. :func:`bayesseg.uncertainty.predict_mc`
    and :func:`bayesseg.calibration.fit_calibration` recognise it and draw
    from every member: a deterministic member once, a stochastic one
    (Bayesian layers, MC dropout) ``ceil(T / k)`` times, and the members are
    weighted equally. The members may mix kinds (deterministic, MC dropout,
    Bayesian) as long as they map the same input to the same output
    channels.

    Saving writes every member into one ``.keras`` file
    (``ensemble.save("ensemble.keras")``); ``keras.saving.load_model``
    rebuilds it (after ``import bayesseg.models``).

    Args:
        members: a list of Keras models (at least one, each once) with one
            input rank and channel count and one output channel count.
        name: optional model name.
        **kwargs: passed to ``keras.Model`` (e.g. ``trainable``).

    Raises:
        ValueError: for an empty list, something other than Keras models,
            the same model twice, or members whose declared inputs or
            outputs disagree.

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> members = [bs.models.unet((16, 16, 1), 1, base_filters=4, depth=2) for _ in range(3)]
    >>> ensemble = bs.models.DeepEnsemble(members)
    >>> x = np.zeros((2, 16, 16, 1), "float32")
    >>> ensemble.predict(x, verbose=0).shape
    (2, 16, 16, 1)
    >>> bs.uncertainty.predict_mc(ensemble, x, verbose=0).num_samples  # one draw each
    3
    """

    def __init__(self, members, name: str | None = None, **kwargs):
        members = _check_members(members)
        super().__init__(name=name, **kwargs)
        self.members = members
        if all(member.built for member in members):
            self.built = True

    def call(self, inputs, training=None):
        return mixture_logits([member(inputs, training=training) for member in self.members])

    def build(self, input_shape):
        for member in self.members:
            if not member.built:
                member.build(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.members[0].compute_output_shape(input_shape)

    @property
    def input_shape(self):
        """The first member's input shape (every member takes this input)."""
        return self.members[0].input_shape

    @property
    def output_shape(self):
        """The first member's output shape (every member's, and the ensemble's)."""
        return self.members[0].output_shape

    @property
    def num_members(self) -> int:
        """The number of members ``k``."""
        return len(self.members)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "members": [keras.saving.serialize_keras_object(m) for m in self.members],
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        config = dict(config)
        members = [
            keras.saving.deserialize_keras_object(m, custom_objects=custom_objects)
            for m in config.pop("members")
        ]
        return cls(members, **config)


def ensemble_members(model) -> list[keras.Model] | None:
    """The members of an ensemble argument; None for a single model.

    A :class:`DeepEnsemble` gives its members; a list or tuple of models is
    checked as ``DeepEnsemble``'s ``members`` argument.

    Example:

    >>> import keras
    >>> from bayesseg.models.ensemble import ensemble_members
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> ensemble_members(m) is None, len(ensemble_members([m]))
    (True, 1)
    """
    if isinstance(model, DeepEnsemble):
        return list(model.members)
    if isinstance(model, list | tuple):
        return _check_members(model)
    return None
