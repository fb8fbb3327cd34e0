"""Loss classes over the pure functions: one wrapper, one ``get_config``.

``LossFunctionWrapper`` is the Keras pattern (``keras.losses.LossFunctionWrapper``)
without the ``fn`` entry in the config, so that configs saved before keep
their keys: a subclass validates its arguments once and passes them by
keyword; ``call`` forwards them to the function by keyword and ``get_config``
serialises them (nested losses through Keras). The element-wise bases add
``element_mask`` and ``positive_mask`` for the ELBO and hard negative mining.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from bayesseg._validation import argument_error
from bayesseg.losses._inputs import binary_inputs, categorical_inputs

PACKAGE = "bayesseg"


def _serialise(value: Any) -> Any:
    if isinstance(value, keras.losses.Loss):
        return keras.saving.serialize_keras_object(value)
    if isinstance(value, tuple):
        return list(value)
    return value


class LossFunctionWrapper(keras.losses.Loss):
    """A ``keras.losses.Loss`` calling ``fn(y_true, y_pred, **arguments)``.

    Each keyword argument becomes an attribute of the same name and a key of
    ``get_config`` (tuples as lists, nested losses serialised), next to Keras'
    ``name`` and ``reduction``; ``from_config`` is Keras' ``cls(**config)``.

    Args:
        fn: the pure loss function.
        reduction: Keras reduction.
        name: str.
        dtype: Keras dtype policy or None.
        **arguments: the keyword arguments of ``fn``, already validated.
    """

    def __init__(
        self,
        fn: Callable[..., tf.Tensor],
        *,
        reduction: str | None,
        name: str | None,
        dtype: Any,
        **arguments: Any,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self._argument_names = tuple(arguments)
        for key, value in arguments.items():
            setattr(self, key, value)

    @property
    def arguments(self) -> dict[str, Any]:
        """The keyword arguments ``call`` passes to the function."""
        return {key: getattr(self, key) for key in self._argument_names}

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        return self.fn(y_true, y_pred, **self.arguments)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({key: _serialise(value) for key, value in self.arguments.items()})
        return config


class ElementwiseLoss(LossFunctionWrapper):
    """Base of the element-wise losses: per-element ``call`` and ``element_mask``.

    Subclasses pass ``from_logits`` and ``ignore_index`` (and ``sparse`` for
    multi-class losses) among their keyword arguments.
    """

    binary = True

    def _labels_and_valid(self, y_true: Any, y_pred: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns (positive-class indicator or one-hot labels, valid mask)."""
        raise NotImplementedError

    def positive_mask(self, y_true: Any, y_pred: Any, background_class: int = 0) -> tf.Tensor:
        """Boolean mask of counted elements whose label is not the background.

        Args:
            y_true: labels, as for ``call``.
            y_pred: predictions, as for ``call``.
            background_class: int, default 0. Only used by multi-class losses;
                for binary losses positives are labels > 0.5.

        Returns:
            Bool tensor with the per-element output shape of ``call``.

        Example:
            >>> import numpy as np
            >>> from bayesseg.losses import WeightedBinaryCrossentropy
            >>> WeightedBinaryCrossentropy().positive_mask(
            ...     np.array([0.0, 1.0]), np.zeros((2, 1))).numpy().tolist()
            [False, True]
        """
        labels, valid = self._labels_and_valid(y_true, y_pred)
        if self.binary:
            positive = labels > 0.5
        else:
            positive = tf.not_equal(tf.argmax(labels, -1), background_class)
        return tf.logical_and(positive, valid > 0)

    def element_mask(self, y_true: Any, y_pred: Any = None) -> tf.Tensor:
        """Returns 1.0 for counted elements and 0.0 for ignored ones.

        The mask has the per-element output shape of ``call``, so the mean over
        valid elements is ``sum(loss) / sum(mask)``.

        Args:
            y_true: labels, as for ``call``.
            y_pred: optional predictions. Needed only for multi-class losses
                built with ``sparse=None`` (format detected from the shapes).

        Returns:
            Float tensor of shape ``y_true`` without the class axis.

        Example:
            >>> import numpy as np
            >>> from bayesseg.losses import WeightedBinaryCrossentropy
            >>> loss = WeightedBinaryCrossentropy(ignore_index=255)
            >>> loss.element_mask(np.array([[0, 1, 255]])).numpy().tolist()
            [[1.0, 1.0, 0.0]]
        """
        if y_pred is None:
            y_pred = self._dummy_prediction(tf.convert_to_tensor(y_true))
        return self._labels_and_valid(y_true, y_pred)[1]

    def _dummy_prediction(self, y_true: tf.Tensor) -> tf.Tensor:
        if self.binary:
            return tf.zeros(tf.shape(y_true), tf.float32)
        raise ValueError(
            "`element_mask` needs `y_pred` to tell sparse from one-hot labels "
            "when the loss was built with sparse=None. Received: y_pred=None"
        )


class BinaryElementwiseLoss(ElementwiseLoss):
    binary = True

    def _labels_and_valid(self, y_true, y_pred):
        labels, _, valid = binary_inputs(y_true, y_pred, self.from_logits, self.ignore_index)
        return labels, valid


class CategoricalElementwiseLoss(ElementwiseLoss):
    binary = False

    def _labels_and_valid(self, y_true, y_pred):
        one_hot, _, _, valid = categorical_inputs(
            y_true, y_pred, self.from_logits, self.sparse, self.ignore_index
        )
        return one_hot, valid

    def _dummy_prediction(self, y_true):
        if self.sparse is None:
            return super()._dummy_prediction(y_true)
        if self.sparse:
            # Any class count >= 2 works: only the label shape matters here.
            shape = tf.shape(y_true)
            if y_true.shape.rank is not None and y_true.shape[-1] == 1 and (y_true.shape.rank >= 2):
                shape = shape[:-1]
            return tf.zeros(tf.concat([shape, [2]], 0), tf.float32)
        return tf.zeros(tf.shape(y_true), tf.float32)

    def element_mask(self, y_true: Any, y_pred: Any = None) -> tf.Tensor:
        if y_pred is None and self.sparse:
            # Without y_pred the class count is unknown; validity only depends on
            # ignore_index for sparse labels.
            y_true = tf.convert_to_tensor(y_true)
            if y_true.shape.rank is not None and y_true.shape.rank >= 2 and (y_true.shape[-1] == 1):
                y_true = tf.squeeze(y_true, -1)
            valid = tf.ones(tf.shape(y_true), tf.float32)
            if self.ignore_index is not None:
                valid = tf.cast(
                    tf.not_equal(tf.cast(y_true, tf.float32), float(self.ignore_index)),
                    tf.float32,
                )
            return valid
        return super().element_mask(y_true, y_pred)

    element_mask.__doc__ = ElementwiseLoss.element_mask.__doc__


def check_base_loss(name: str, base_loss: Any) -> ElementwiseLoss:
    """A bayesseg element-wise loss instance (a config dict is deserialised first)."""
    if isinstance(base_loss, dict):
        base_loss = keras.saving.deserialize_keras_object(base_loss)
    if not isinstance(base_loss, ElementwiseLoss):
        raise argument_error(
            name,
            "be one of bayesseg's element-wise losses (WeightedBinaryCrossentropy, "
            "WeightedCategoricalCrossentropy, BinaryFocalLoss, CategoricalFocalLoss)",
            base_loss,
        )
    return base_loss
