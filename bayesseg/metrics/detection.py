"""Lesion-wise detection: precision, recall and F1 of connected components.

:func:`lesion_f1` splits each image's true mask and thresholded prediction
into connected components (``scipy.ndimage.label``) and counts the lesions
found and missed, pooled over all images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from bayesseg._validation import check_int

__all__ = ["lesion_f1"]


def _spatial_batch(name: str, array: Any) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim in (4, 5) and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (3, 4):
        raise ValueError(
            f"Argument `{name}` must be a batch of 2D images (N, H, W) or 3D "
            f"volumes (N, D, H, W), optionally with a trailing channel axis of "
            f"size 1. Received: {name} with shape {np.shape(array)}"
        )
    return a


def lesion_f1(
    y_true: Any,
    y_pred: Any,
    threshold: float = 0.5,
    min_size: int = 0,
    connectivity: int | None = None,
) -> dict[str, float]:
    """Lesion-wise detection precision, recall and F1 from connected components.

    Each image's true mask and thresholded prediction are split into
    connected components (``scipy.ndimage.label``). A predicted component is
    a true positive if it overlaps any true lesion (by at least one voxel);
    a true lesion is detected if any predicted component overlaps it. Then
    ``precision = TP_pred / predicted lesions``, ``recall = detected true
    lesions / true lesions`` and F1 their harmonic mean, pooled over all
    images. Undefined ratios are 0, except that with no true and no
    predicted lesion anywhere all three scores are 1.

    Args:
        y_true: binary masks ``(N, H, W)`` or ``(N, D, H, W)``, optionally
            with a trailing channel axis of size 1.
        y_pred: probabilities (or binary masks) of the same shape.
        threshold: float, foreground where ``y_pred >= threshold``. Default 0.5.
        min_size: int >= 0, predicted components smaller than this many
            voxels are discarded (specks); true lesions are kept as
            annotated. Default 0.
        connectivity: int in ``[1, ndim]`` or None (default: ``ndim``, i.e.
            8-connectivity in 2D, 26 in 3D), as in
            ``scipy.ndimage.generate_binary_structure``.

    Returns:
        A dict with float ``precision``, ``recall``, ``f1`` and the counts
        ``true_lesions``, ``pred_lesions``, ``tp_pred`` (predicted lesions
        that hit a true one), ``fp`` (predicted lesions that hit none),
        ``detected`` (true lesions hit) and ``fn`` (true lesions missed).

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import lesion_f1
    >>> t = np.zeros((1, 8, 8)); t[0, 1, 1] = t[0, 5, 5] = 1
    >>> p = np.zeros((1, 8, 8)); p[0, 1, 1] = p[0, 3, 7] = 1
    >>> lesion_f1(t, p)["f1"]
    0.5
    """
    truth = _spatial_batch("y_true", y_true) >= 0.5
    pred = _spatial_batch("y_pred", y_pred) >= threshold
    if truth.shape != pred.shape:
        raise ValueError(
            "Arguments `y_true` and `y_pred` must have the same shape. Received: "
            f"{np.shape(y_true)} and {np.shape(y_pred)}"
        )
    min_size = check_int("min_size", min_size, minimum=0)
    ndim = truth.ndim - 1
    if connectivity is None:
        connectivity = ndim
    connectivity = check_int("connectivity", connectivity, minimum=1, maximum=ndim)
    structure = ndimage.generate_binary_structure(ndim, connectivity)
    counts = dict.fromkeys(("true_lesions", "pred_lesions", "tp_pred", "detected"), 0)
    for t_img, p_img in zip(truth, pred, strict=True):
        t_lab, n_true = ndimage.label(t_img, structure)
        p_lab, n_pred = ndimage.label(p_img, structure)
        if min_size > 0 and n_pred:
            sizes = np.bincount(p_lab.ravel(), minlength=n_pred + 1)
            keep = sizes >= min_size
            keep[0] = False
            relabel = np.zeros(n_pred + 1, dtype=np.int64)
            relabel[keep] = np.arange(1, keep.sum() + 1)
            p_lab, n_pred = relabel[p_lab], int(keep.sum())
        overlap = (t_lab > 0) & (p_lab > 0)
        counts["true_lesions"] += n_true
        counts["pred_lesions"] += n_pred
        counts["tp_pred"] += len(np.unique(p_lab[overlap]))
        counts["detected"] += len(np.unique(t_lab[overlap]))
    n_true, n_pred = counts["true_lesions"], counts["pred_lesions"]
    if n_true == 0 and n_pred == 0:
        precision = recall = f1 = 1.0
    else:
        precision = counts["tp_pred"] / n_pred if n_pred else 0.0
        recall = counts["detected"] / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        **counts,
        "fp": n_pred - counts["tp_pred"],
        "fn": n_true - counts["detected"],
    }
