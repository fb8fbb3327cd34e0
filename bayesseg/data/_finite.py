"""Non-finite values in images and masks: the one owner of ``nan_policy``.

Every image the loaders read passes through here. With
``nan_policy="error"`` (the default) a NaN or infinite value raises a
one-line ``ValueError`` naming the file and how many values are bad; with
``"zero"`` they are replaced by 0 *before* the z-score (so the image's mean
and standard deviation are those of the zero-filled image, and the filled
voxels become ``-mean / std`` after normalisation). A mask never holds NaN:
that is always an error, whatever the policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from bayesseg._validation import check_choice

NAN_POLICIES = ("error", "zero")


def check_nan_policy(nan_policy: str) -> str:
    """``nan_policy`` checked against :data:`NAN_POLICIES` (the argument style)."""
    return check_choice("nan_policy", nan_policy, NAN_POLICIES)


def count_nonfinite(array: np.ndarray) -> tuple[int, int]:
    """(NaN count, infinite count) of ``array``; (0, 0) for integer data."""
    if array.dtype.kind not in "fc":
        return 0, 0
    # Fast path: a sum in float64 is finite exactly when every value is (a
    # float64 sum of float32 values cannot overflow; for float64 data an
    # overflow only sends us to the exact count below).
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is the NaN we test for
        total = np.sum(array, dtype=np.complex128 if array.dtype.kind == "c" else np.float64)
    if np.isfinite(total):
        return 0, 0
    nan = int(np.count_nonzero(np.isnan(array)))
    inf = int(np.count_nonzero(np.isinf(array)))
    return nan, inf


def _describe(nan: int, inf: int) -> str:
    parts = []
    if nan:
        parts.append(f"{nan} NaN value{'s' if nan != 1 else ''}")
    if inf:
        parts.append(f"{inf} infinite value{'s' if inf != 1 else ''}")
    return " and ".join(parts)


def image_error(name: str, nan: int, inf: int) -> ValueError:
    """The one-line error of an image holding non-finite values."""
    return ValueError(
        f"Image {name!r} holds {_describe(nan, inf)}; pass nan_policy='zero' "
        "(--nan-policy zero to bayesseg train or predict) to replace them by 0 before the "
        "z-score, or fix the file."
    )


def mask_error(name: str, nan: int, inf: int) -> ValueError:
    """The one-line error of a mask holding non-finite values (always an error)."""
    return ValueError(
        f"Mask {name!r} holds {_describe(nan, inf)}; masks must hold integer class "
        "labels (nan_policy applies to images only)."
    )


def apply_policy(array: np.ndarray, name: str, nan_policy: str) -> np.ndarray:
    """``array`` with the policy applied: raise on non-finite values, or set them to 0.

    ``array`` is returned unchanged (not copied) when it is finite.
    """
    nan, inf = count_nonfinite(array)
    if not (nan or inf):
        return array
    if nan_policy == "error":
        raise image_error(name, nan, inf)
    return np.where(np.isfinite(array), array, np.zeros((), array.dtype))


def checked_slabs(
    slabs: Iterable[np.ndarray], name: str, nan_policy: str, counts: list[int]
) -> Iterator[np.ndarray]:
    """Slabs of one image, non-finite values zeroed (``"zero"``) or counted.

    With ``"error"`` the error is raised after the last slab, with the
    image's total counts (the zeroed slabs before it keep the consumer's sums
    free of NaN warnings; nothing computed from them is kept). ``counts``
    receives the ``[nan, inf]`` totals (for :attr:`FolderScan.nonfinite`).
    """
    nan_total = inf_total = 0
    for slab in slabs:
        nan, inf = count_nonfinite(slab)
        nan_total += nan
        inf_total += inf
        if nan or inf:
            slab = np.where(np.isfinite(slab), slab, np.zeros((), slab.dtype))
        yield slab
    counts.extend([nan_total, inf_total])
    if (nan_total or inf_total) and nan_policy == "error":
        raise image_error(name, nan_total, inf_total)
