"""The ELBO: a class-weighted likelihood plus an explicitly scaled KL.

The loss minimised per step, on the default ``scale="per_element"``::

    nll_b     = sum_e loss_e over the elements of example b  (one image = one example)
    NLL       = (1/B) * sum_b w_b * nll_b / E            (E = elements per example)
    loss      = NLL + kl_weight * T * KL                 (tempering="kl")
    loss      = NLL + kl_weight * (CE - T * H)           (tempering="posterior")
    kl_weight = kl_scaling(step, B) / E

``loss_e`` are the likelihood's per-element losses (``likelihood.call``), ``w_b``
optional per-example sample weights, ``E`` is read from the per-element loss
shape (H*W for a (B, H, W) mask, T for a (B, T) series, 1 for (B,)) or given
as ``elements_per_example`` (required for per-image likelihoods such as
``DiceLoss``, whose one value per image is then read as a mean over E
elements: ``nll_b = E * value_b``), ``KL`` is
the raw, unscaled ``bs.kl_divergence(model)`` and ``KL = CE - H`` its split
into prior cross-entropy and posterior entropy. Dividing both terms by ``E``
keeps the optimum and makes the numbers read like a familiar per-pixel
cross-entropy; ``scale="per_example"`` drops the division (raw per-example
scale, on which ``kl_scaling`` is defined). See ``docs/kl_scaling.md``.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import keras
import tensorflow as tf

from bayesseg import kl as kl_lib
from bayesseg._validation import argument_error, check_choice, check_float
from bayesseg.layers import bayesian_layers, kl_divergence

__all__ = ["ELBO", "ELBOTerms"]

_TEMPERINGS = ("kl", "posterior")
_SCALES = ("per_element", "per_example")


class ELBOTerms(NamedTuple):
    """The parts of one ELBO evaluation (all float32 tensors).

    Attributes:
        loss: scalar, the value minimised (on the ELBO's scale).
        nll: scalar, the NLL term (batch mean, divided by E by default).
        kl: scalar, the raw unscaled KL divergence of the model.
        kl_weight: scalar, the effective weight with ``loss = nll +
            kl_weight * temperature * kl`` (KL tempering).
        per_example_nll: (B,), each example's NLL on the ELBO's scale,
            before sample weights.
        elements_per_example: scalar, E.
    """

    loss: tf.Tensor
    nll: tf.Tensor
    kl: tf.Tensor
    kl_weight: tf.Tensor
    per_example_nll: tf.Tensor
    elements_per_example: tf.Tensor


@keras.saving.register_keras_serializable(package="bayesseg")
class ELBO(keras.losses.Loss):
    """Negative evidence lower bound with an explicit KL scaling.

    Args:
        likelihood: a ``keras.losses.Loss`` whose ``call(y_true, y_pred)``
            returns per-element losses (every ``bayesseg.losses`` class does;
            Keras' built-in losses return per-position values too).
        kl_scaling: a ``bayesseg.kl.KLScaling`` (``PerExample(N)``,
            ``PerBatch(M)``, ``Blundell(M)``, ``Constant(w)``, optionally
            wrapped in ``Warmup``/``Cyclical``).
        temperature: float > 0. Default 1 (the Bayes posterior).
        tempering: "kl" multiplies the KL by ``temperature`` (KL tempering,
            beta-VI; T < 1 is "cold"); "posterior" tempers the whole posterior
            as Wenzel et al. 2020 (``p(theta|D)^(1/T)``): only the posterior
            entropy is scaled by T, the prior cross-entropy keeps weight 1.
        scale: "per_element" (default) divides NLL and KL by the elements per
            example; "per_example" keeps the raw per-example scale.
        elements_per_example: None (default: read E from the shape of the
            likelihood's per-element output) or a number > 0. A likelihood
            that returns one value per example for targets with spatial axes
            (``bs.losses.DiceLoss``: ``(B,)`` for ``(B, H, W)`` masks) is
            refused without it, since E = 1 would weigh the KL H*W times more
            than a per-element likelihood of the same data does. With it, each
            such value is read as a mean over ``elements_per_example``
            elements (``nll_b = E * value_b``; pass H*W for whole images), so
            the KL weighs as it would against a per-element likelihood of the
            same mean. For per-element likelihoods it replaces the element
            count as the divisor E.
        name: str. Default "elbo".

    The KL needs the model: :class:`bayesseg.BayesianModel` binds itself in
    ``compile``; with a plain ``keras.Model`` call ``elbo.bind(model)``
    before ``compile``. Calling the ELBO (``elbo(y_true, y_pred,
    sample_weight)``, as Keras does) returns the batch loss of
    :meth:`compute`, sample weights included: sample weights scale each
    example's NLL, never the KL, so a plain model and a ``BayesianModel``
    minimise the same loss.

    Example:

    >>> import bayesseg as bs
    >>> elbo = bs.ELBO(
    ...     likelihood=bs.losses.WeightedBinaryCrossentropy(pos_weight=60.0),
    ...     kl_scaling=bs.kl.PerExample(num_examples=400))
    """

    def __init__(
        self,
        likelihood,
        kl_scaling,
        temperature: float = 1.0,
        tempering: str = "kl",
        scale: str = "per_element",
        elements_per_example: float | None = None,
        name: str = "elbo",
        **kwargs,
    ):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)
        if isinstance(likelihood, dict):
            likelihood = keras.saving.deserialize_keras_object(likelihood)
        if not isinstance(likelihood, keras.losses.Loss):
            raise argument_error(
                "likelihood",
                "be a keras.losses.Loss instance (e.g. bs.losses.WeightedBinaryCrossentropy(...))",
                likelihood,
            )
        self.likelihood = likelihood
        self.kl_scaling = kl_lib.get(kl_scaling)
        self.temperature = check_float("temperature", temperature, minimum=0, strict_minimum=True)
        self.tempering = check_choice("tempering", tempering, _TEMPERINGS)
        self.scale = check_choice("scale", scale, _SCALES)
        # The elements each example's likelihood value stands for, e.g. H*W.
        self.elements_per_example = check_float(
            "elements_per_example",
            elements_per_example,
            minimum=0,
            strict_minimum=True,
            allow_none=True,
        )
        # A weak reference: the model holds the ELBO as its loss, and Keras'
        # saving walks attributes, so a strong back-reference would cycle.
        self._model_ref = None

    # ---------------------------------------------------------------- binding
    def bind(self, model) -> ELBO:
        """Attach the model whose KL this ELBO scales; returns ``self``.

        Raises:
            ValueError: if ``model`` has no Bayesian layers.
        """
        if not bayesian_layers(model):
            raise argument_error(
                "model",
                "have Bayesian layers (the ELBO scales their KL): build it from "
                "bayesseg.layers or bs.convert.to_bayesian, or train it with the likelihood alone",
                model,
            )
        self._model_ref = weakref.ref(model)
        return self

    # ------------------------------------------------------------------ terms
    def per_example_nll(self, y_true, y_pred, sample_weight=None):
        """Per-example NLL summed over elements, and the elements per example.

        Args:
            y_true: targets.
            y_pred: predictions ``(B, *spatial, K)`` (logits for bayesseg
                likelihoods).
            sample_weight: optional weights; those with rank > 1 (per element)
                are applied here, per-example ``(B,)`` weights are left to
                :meth:`compute`. NumPy arrays and tensors both work.

        Returns:
            ``(nll_b, E)``: a (B,) float32 tensor of ``sum_e w_e loss_e`` (or
            ``E * value_b`` for a per-image likelihood) and the float32 scalar E.

        Raises:
            ValueError: if the likelihood returns a scalar, or one value per
                example for targets with spatial axes while
                ``elements_per_example`` is None.

        Example:

        >>> import bayesseg as bs, numpy as np
        >>> elbo = bs.ELBO(bs.losses.WeightedBinaryCrossentropy(), bs.kl.PerExample(10))
        >>> nll, e = elbo.per_example_nll(np.zeros((2, 4, 4)), np.zeros((2, 4, 4, 1)))
        >>> nll.shape.as_list(), float(e)
        ([2], 16.0)
        """
        y_pred = tf.cast(y_pred, tf.float32)
        values = tf.cast(self.likelihood.call(y_true, y_pred), tf.float32)
        if values.shape.rank == 0:
            raise ValueError(
                f"The likelihood {type(self.likelihood).__name__} returned a scalar; "
                "the ELBO needs per-element (or per-example) losses from "
                "`likelihood.call(y_true, y_pred)`."
            )
        # Spatial axes of the target: those of the prediction between the
        # batch axis and the last (class) axis.
        pred_rank = y_pred.shape.rank
        spatial_rank = max(pred_rank - 2, 0) if pred_rank is not None else 0
        per_image = values.shape.rank - 1 < spatial_rank
        if per_image and self.elements_per_example is None:
            spatial = y_pred.shape[1:-1]
            count = spatial.num_elements() if spatial.is_fully_defined() else None
            hint = f"elements_per_example={count}" if count else "elements_per_example=H*W"
            raise ValueError(
                f"The likelihood {type(self.likelihood).__name__} returns per-example "
                f"values of shape {values.shape} for predictions of shape {y_pred.shape} "
                f"({spatial_rank} spatial axes): a per-image loss. The ELBO would count "
                "each example as E = 1 element and weigh the KL "
                f"{count or 'H*W'} times more than a per-element likelihood of the same "
                f"data. Pass {hint} to bs.ELBO (each value is then read as a mean over "
                "that many elements), or use a per-element likelihood. Received: "
                "elements_per_example=None"
            )
        if sample_weight is not None:
            sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
            if sample_weight.shape.rank is not None and sample_weight.shape.rank > 1:
                if per_image:
                    raise ValueError(
                        "Per-element sample weights need a per-element likelihood; "
                        f"{type(self.likelihood).__name__} returns one value per example. "
                        f"Received: sample_weight with shape {sample_weight.shape}"
                    )
                while sample_weight.shape.rank > values.shape.rank:
                    sample_weight = tf.squeeze(sample_weight, -1)
                values = values * sample_weight
        axes = list(range(1, values.shape.rank))
        if per_image:
            elements = tf.constant(self.elements_per_example, tf.float32)
            mean = tf.reduce_mean(values, axis=axes) if axes else values
            return mean * elements, elements
        if self.elements_per_example is not None:
            elements = tf.constant(self.elements_per_example, tf.float32)
        else:
            static = values.shape[1:]
            if static.is_fully_defined():
                elements = tf.constant(float(max(static.num_elements(), 1)), tf.float32)
            else:
                elements = tf.cast(tf.reduce_prod(tf.shape(values)[1:]), tf.float32)
        per_example = tf.reduce_sum(values, axis=axes) if axes else values
        return per_example, elements

    def kl_parts(self, model=None):
        """The raw KL and its split ``(kl, cross_entropy, entropy)`` of the model."""
        model = model if model is not None else self._require_model()
        if self.tempering == "kl":
            return kl_divergence(model), None, None
        layers = bayesian_layers(model)
        if not layers:
            raise ValueError(f"Model {model.name!r} has no Bayesian layers.")
        terms = [layer.kl_terms() for layer in layers]
        cross_entropy = tf.add_n([ce for ce, _ in terms])
        entropy = tf.add_n([h for _, h in terms])
        return cross_entropy - entropy, cross_entropy, entropy

    def kl_penalty(self, model, kl_weight):
        """The raw KL and the KL term of the loss for an effective ``kl_weight``.

        Returns:
            ``(kl, penalty)`` with ``penalty = kl_weight * T * kl`` (KL
            tempering) or ``kl_weight * (CE - T * H)`` (posterior tempering).
        """
        kl, cross_entropy, entropy = self.kl_parts(model)
        if self.tempering == "kl":
            return kl, kl_weight * self.temperature * kl
        return kl, kl_weight * (cross_entropy - self.temperature * entropy)

    def compute(
        self,
        model,
        y_true,
        y_pred,
        sample_weight=None,
        step=None,
        global_batch_size=None,
    ) -> ELBOTerms:
        """Evaluate every ELBO term for one batch.

        Args:
            model: the model whose Bayesian layers give the KL.
            y_true: targets.
            y_pred: logits (or whatever the likelihood takes).
            sample_weight: optional per-example (B,) or per-element weights.
            step: optimizer updates so far (for schedules). Default: the
                model's ``optimizer.iterations`` when it has one, else 0.
            global_batch_size: the batch size across replicas, used by the
                batch-size dependent scalings. Default: the local batch
                size times the number of replicas in sync.

        Returns:
            :class:`ELBOTerms`.
        """
        if sample_weight is not None:
            # NumPy weights have no `.shape.rank`; convert before any use.
            sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
        per_example, elements = self.per_example_nll(y_true, y_pred, sample_weight)
        if sample_weight is not None and sample_weight.shape.rank == 1:
            weighted = per_example * tf.cast(sample_weight, tf.float32)
        else:
            weighted = per_example
        divisor = elements if self.scale == "per_element" else tf.constant(1.0)
        nll = tf.reduce_mean(weighted) / divisor
        if step is None:
            optimizer = getattr(model, "optimizer", None)
            step = optimizer.iterations if optimizer is not None else 0
        if global_batch_size is None:
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            global_batch_size = tf.shape(per_example)[0] * replicas
        kl_weight = tf.cast(self.kl_scaling(step, global_batch_size), tf.float32) / divisor
        kl, penalty = self.kl_penalty(model, kl_weight)
        return ELBOTerms(
            loss=nll + penalty,
            nll=nll,
            kl=kl,
            kl_weight=kl_weight,
            per_example_nll=per_example / divisor,
            elements_per_example=elements,
        )

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The batch loss of :meth:`compute`, sample weights included.

        Keras' ``Loss.__call__`` would multiply each example's NLL *plus its
        share of the KL* by its sample weight, scaling the KL by the mean
        weight (weights ``[0, 0, 0, 1]`` would drop 3/4 of it). The ELBO
        applies the weights to the NLL alone, as ``BayesianModel`` does.

        Args:
            y_true: targets.
            y_pred: predictions.
            sample_weight: optional per-example ``(B,)`` or per-element weights
                (NumPy or tensor).

        Returns:
            The scalar loss (float32).

        Example:

        >>> import bayesseg as bs, keras, numpy as np
        >>> model = keras.Sequential([keras.Input((3,)), bs.layers.DenseFlipout(1)])
        >>> elbo = bs.ELBO(bs.losses.WeightedBinaryCrossentropy(),
        ...                bs.kl.PerExample(10)).bind(model)
        >>> x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
        >>> elbo(y, model(x), sample_weight=np.array([0.0, 0, 0, 1])).shape
        TensorShape([])
        """
        with tf.name_scope(self.name):
            # As Keras' Loss.__call__: both converted to the loss dtype.
            y_pred = tf.nest.map_structure(
                lambda v: keras.ops.convert_to_tensor(v, dtype=self.dtype), y_pred
            )
            y_true = tf.nest.map_structure(
                lambda v: keras.ops.convert_to_tensor(v, dtype=self.dtype), y_true
            )
            terms = self.compute(self._require_model(), y_true, y_pred, sample_weight)
            return terms.loss

    def call(self, y_true, y_pred):
        """Per-example NLL plus the scaled KL (their batch mean is the loss).

        Without sample weights ``mean(call(y_true, y_pred))`` equals
        ``compute(...).loss``; Keras calls :meth:`__call__`, which also
        handles sample weights.
        """
        terms = self.compute(self._require_model(), y_true, y_pred)
        return terms.per_example_nll + (terms.loss - terms.nll)

    def _require_model(self):
        model = self._model_ref() if self._model_ref is not None else None
        if model is None:
            raise ValueError(
                "This ELBO is not bound to a model, so it cannot compute the KL. "
                "Use bayesseg.BayesianModel (it binds the ELBO in compile) or call "
                "`elbo.bind(model)` before `model.compile(loss=elbo)`."
            )
        return model

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "likelihood": keras.saving.serialize_keras_object(self.likelihood),
            "kl_scaling": keras.saving.serialize_keras_object(self.kl_scaling),
            "temperature": self.temperature,
            "tempering": self.tempering,
            "scale": self.scale,
            "elements_per_example": self.elements_per_example,
        }

    @classmethod
    def from_config(cls, config: dict) -> ELBO:
        config = dict(config)
        config["likelihood"] = keras.saving.deserialize_keras_object(config["likelihood"])
        config["kl_scaling"] = keras.saving.deserialize_keras_object(config["kl_scaling"])
        return cls(**config)
