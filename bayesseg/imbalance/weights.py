"""Per-class loss weights from class counts, and the zero-count rule."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from bayesseg._validation import argument_error, check_choice, check_float
from bayesseg.imbalance.counting import count_classes
from bayesseg.losses._inputs import class_vector

__all__ = ["class_weights"]

_METHODS = ("balanced", "inverse_sqrt", "effective_number")


def _check_counts(counts: Any, name: str) -> np.ndarray:
    arr = class_vector(
        name, counts, min_size=2, hint="class counts; pass num_classes= to count labels"
    )
    if arr.sum() <= 0:
        raise argument_error(name, "hold at least one nonzero class count", arr.tolist())
    return arr


def _pseudo_counts(name: str, counts: np.ndarray) -> np.ndarray:
    """The one zero-count rule (``zero_count="pseudo"``): an absent class counts 1 element.

    Shared by ``class_weights``, ``initial_bias`` and the CLI. Only counts
    (whole numbers summing to more than 1) say how much one element is, so a
    zero among frequencies raises.
    """
    if np.all(counts > 0):
        return counts
    if np.any(counts != np.round(counts)) or counts.sum() <= 1:
        raise argument_error(
            name,
            "hold class counts (whole numbers, more than 1 in all) when a class is absent: "
            "zero_count='pseudo' gives an absent class one element, which frequencies "
            "cannot express; pass the counts, e.g. count_classes(labels, num_classes)",
            counts.tolist(),
        )
    return np.maximum(counts, 1.0)


def class_weights(
    counts_or_labels: Any,
    method: str = "balanced",
    normalize: bool = False,
    beta: float = 0.999,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    zero_count: str = "pseudo",
) -> np.ndarray:
    """Per-class loss weights from class counts (or from labels).

    Methods, with ``N`` elements, ``C`` classes and ``n_c`` elements of class c:

    - ``"balanced"``: ``w_c = N / (C * n_c)``, scikit-learn's
      ``compute_class_weight("balanced")``.
    - ``"inverse_sqrt"``: ``w_c = sqrt(N / (C * n_c))``.
    - ``"effective_number"`` (Cui et al. 2019): ``w_c ∝ (1 - beta) /
      (1 - beta ** n_c)``, scaled so the weights sum to ``C``.

    ``normalize=True`` rescales the weights so the expected weight per element
    is 1, ``sum_c f_c * w_c = 1`` with ``f_c = n_c / N``: the weighted loss then
    stays on the unweighted loss' scale ("balanced" already satisfies it when
    every class occurs).

    A class absent from the counts (``n_c = 0``) is handled by ``zero_count``,
    with a ``UserWarning`` naming it:

    - ``"pseudo"`` (default, the CLI's rule): every zero count is raised to 1
      before the formula, so ``N`` and ``C`` include the absent class and its
      weight is finite and large (``N' / C`` for "balanced"); it never
      multiplies a label, and ``initial_bias`` accepts it. Needs counts (whole
      numbers), not frequencies.
    - ``"warn"``: weight 0 for the absent class, the others as if it had
      count 0 (``C`` still counts it). ``initial_bias`` refuses a weight 0.
    - ``"raise"``: ``ValueError``.

    Args:
        counts_or_labels: 1-D class counts when ``num_classes`` is None;
            otherwise labels accepted by ``count_classes`` (array, tensor,
            ``tf.data.Dataset``).
        method: str, default ``"balanced"``.
        normalize: bool, default False.
        beta: float in [0, 1), default 0.999. Only for ``"effective_number"``.
        num_classes: int or None, default None. Set it to pass labels.
        ignore_index: int or None, default None. Passed to ``count_classes``.
        zero_count: ``"pseudo"`` (default), ``"warn"`` or ``"raise"``.

    Returns:
        float64 array of length C.

    Example:
        >>> import numpy as np
        >>> np.round(class_weights([370, 977, 795]), 4).tolist()
        [1.9297, 0.7308, 0.8981]
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     np.round(class_weights([10, 0, 30]), 4).tolist()  # as [10, 1, 30]
        [1.3667, 13.6667, 0.4556]
    """
    method = check_choice("method", method, _METHODS)
    zero_count = check_choice("zero_count", zero_count, ("pseudo", "warn", "raise"))
    if num_classes is None:
        counts = _check_counts(counts_or_labels, "counts_or_labels")
    else:
        counts = _check_counts(
            count_classes(counts_or_labels, num_classes, ignore_index),
            "counts_or_labels",
        )
    present = counts > 0
    if not np.all(present):
        missing = np.flatnonzero(~present).tolist()
        if zero_count == "raise":
            raise argument_error(
                "counts_or_labels",
                f"count every class with zero_count='raise': classes {missing} have zero "
                "count, so their weight is undefined",
                counts.tolist(),
            )
        if zero_count == "pseudo":
            counts = _pseudo_counts("counts_or_labels", counts)
            present = counts > 0
        warnings.warn(
            f"Classes {missing} have zero count; "
            + (
                "they get a pseudo-count of 1 (zero_count='pseudo')."
                if zero_count == "pseudo"
                else "their weight is set to 0."
            ),
            UserWarning,
            stacklevel=2,
        )
    total, num = counts.sum(), counts.size
    safe = np.where(present, counts, 1.0)
    if method == "balanced":
        weights = total / (num * safe)
    elif method == "inverse_sqrt":
        weights = np.sqrt(total / (num * safe))
    else:
        beta = check_float("beta", beta, minimum=0, maximum=1, strict_maximum=True)
        # -expm1(n log beta) = 1 - beta**n without cancellation for beta near 1.
        weights = (
            (1.0 - beta) / -np.expm1(safe * np.log(beta)) if beta > 0 else (np.ones_like(safe))
        )
        weights = weights * np.sum(present) / np.sum(weights[present])
    weights = np.where(present, weights, 0.0)
    if normalize:
        weights = weights / np.sum(counts / total * weights)
    return weights.astype(np.float64)
