"""Likelihood terms for imbalanced segmentation and per-timestep classification.

Every loss here is a pure function over tensors (``weighted_binary_crossentropy``,
``categorical_focal_loss``, ...) plus a thin ``keras.losses.Loss`` subclass that
adds reduction and serialisation, in the style of Keras' ``LossFunctionWrapper``:
the class validates its arguments once, ``call`` passes them to the function
by keyword, and one ``get_config`` serialises them.

Modules, by family: ``crossentropy`` (class-weighted cross-entropies),
``focal`` (focal losses), ``mining`` (hard negative mining), ``dice``
(Dice/Tversky); ``_inputs`` holds the shared argument checks and label
handling, ``_base`` the loss wrapper classes.

Per-element contract (used by the ELBO): ``loss.call(y_true, y_pred)`` of every
element-wise loss returns one loss per element, shaped like the labels without
the class/channel axis:

- logits ``(B, H, W, 1)`` with labels ``(B, H, W)`` or ``(B, H, W, 1)`` ->
  ``(B, H, W)``;
- logits ``(B, 1)`` with labels ``(B,)`` -> ``(B,)``; logits ``(B, T)`` with
  labels ``(B, T)`` -> ``(B, T)``;
- logits ``(B, H, W, C)`` with sparse labels ``(B, H, W)`` (or ``(B, H, W, 1)``)
  or one-hot labels ``(B, H, W, C)`` -> ``(B, H, W)``.

Ignored or masked elements are exactly 0 there, with zero gradient, and
``loss.element_mask(y_true)`` returns 1 for counted elements and 0 for ignored
ones. Keras reductions (``"sum_over_batch_size"``, ``"sum"``, ``None``, ...)
apply to these per-element values exactly as for Keras' own losses.
``DiceLoss`` is not element-wise: its ``call`` returns one value per example.
"""

# The old private name of the element-wise base class, for callers that used it.
from bayesseg.losses._base import ElementwiseLoss as _ElementwiseLoss  # noqa: F401
from bayesseg.losses.crossentropy import (
    WeightedBinaryCrossentropy,
    WeightedCategoricalCrossentropy,
    weighted_binary_crossentropy,
    weighted_categorical_crossentropy,
)
from bayesseg.losses.dice import DiceLoss, dice_loss
from bayesseg.losses.focal import (
    BinaryFocalLoss,
    CategoricalFocalLoss,
    binary_focal_loss,
    categorical_focal_loss,
)
from bayesseg.losses.mining import HardNegativeMining, hard_negative_mining

__all__ = [
    "BinaryFocalLoss",
    "CategoricalFocalLoss",
    "DiceLoss",
    "HardNegativeMining",
    "WeightedBinaryCrossentropy",
    "WeightedCategoricalCrossentropy",
    "binary_focal_loss",
    "categorical_focal_loss",
    "dice_loss",
    "hard_negative_mining",
    "weighted_binary_crossentropy",
    "weighted_categorical_crossentropy",
]
