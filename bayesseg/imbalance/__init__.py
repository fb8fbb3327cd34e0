"""Class counting, class weights and prior-bias initialisation for imbalanced data.

The pieces fit together as::

    counts = count_classes(train_masks, num_classes=2)        # [neg, pos]
    weights = class_weights(counts, method="balanced")        # sklearn's formula
    bias = initial_bias(counts, "sigmoid", class_weights=weights)
    # ... train with WeightedBinaryCrossentropy(class_weights=weights) ...
    p = unweight_probabilities(model_probabilities, weights)  # calibrated again
    # trained on windows richer in positives than the series they come from:
    shift = prior_shift_weights(window_counts, series_counts, class_weights=weights)
"""

from bayesseg.imbalance.bias import (
    PriorBias,
    initial_bias,
    prior_shift_weights,
    unweight_probabilities,
)
from bayesseg.imbalance.counting import count_classes
from bayesseg.imbalance.weights import class_weights

__all__ = [
    "PriorBias",
    "class_weights",
    "count_classes",
    "initial_bias",
    "prior_shift_weights",
    "unweight_probabilities",
]
