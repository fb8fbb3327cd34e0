"""Lesion-wise detection: precision, recall and F1 of connected components.

:func:`lesion_f1` splits each image's true mask and thresholded prediction
into connected components (``scipy.ndimage.label``) and counts the lesions
found and missed, pooled over all images. :func:`lesion_uncertainty` uses
the same components and the same detection rule to ask whether the lesions
the model misses are the ones it is unsure about.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import ndimage

from bayesseg._validation import check_int
from bayesseg.metrics.scores import uncertainty_auroc

__all__ = ["LesionUncertainty", "lesion_f1", "lesion_uncertainty"]


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


def _masks(
    y_true: Any, y_pred: Any, threshold: float, pred_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """The true mask (``y_true >= 0.5``) and the thresholded prediction, checked."""
    truth = _spatial_batch("y_true", y_true) >= 0.5
    pred = _spatial_batch(pred_name, y_pred) >= threshold
    if truth.shape != pred.shape:
        raise ValueError(
            f"Arguments `y_true` and `{pred_name}` must have the same shape. Received: "
            f"{np.shape(y_true)} and {np.shape(y_pred)}"
        )
    return truth, pred


def _structure(ndim: int, connectivity: Any) -> np.ndarray:
    """The labelling structure: ``connectivity`` in ``[1, ndim]``, None for ``ndim``."""
    if connectivity is None:
        connectivity = ndim
    connectivity = check_int("connectivity", connectivity, minimum=1, maximum=ndim)
    return ndimage.generate_binary_structure(ndim, connectivity)


def _components(
    truth: np.ndarray, pred: np.ndarray, structure: np.ndarray, min_size: int
) -> tuple[np.ndarray, int, np.ndarray, int]:
    """One image's labelled true and predicted components (specks dropped).

    Returns ``(t_lab, n_true, p_lab, n_pred)``: ``scipy.ndimage.label`` of
    the truth, and of the prediction after dropping predicted components
    smaller than ``min_size`` voxels (relabelled ``1..n_pred``).
    """
    t_lab, n_true = ndimage.label(truth, structure)
    p_lab, n_pred = ndimage.label(pred, structure)
    if min_size > 0 and n_pred:
        sizes = np.bincount(p_lab.ravel(), minlength=n_pred + 1)
        keep = sizes >= min_size
        keep[0] = False
        relabel = np.zeros(n_pred + 1, dtype=np.int64)
        relabel[keep] = np.arange(1, keep.sum() + 1)
        p_lab, n_pred = relabel[p_lab], int(keep.sum())
    return t_lab, n_true, p_lab, n_pred


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
    truth, pred = _masks(y_true, y_pred, threshold, "y_pred")
    min_size = check_int("min_size", min_size, minimum=0)
    structure = _structure(truth.ndim - 1, connectivity)
    counts = dict.fromkeys(("true_lesions", "pred_lesions", "tp_pred", "detected"), 0)
    for t_img, p_img in zip(truth, pred, strict=True):
        t_lab, n_true, p_lab, n_pred = _components(t_img, p_img, structure, min_size)
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


@dataclasses.dataclass(frozen=True)
class LesionUncertainty:
    """Result of :func:`lesion_uncertainty`: one entry per true lesion.

    Lesions are ordered by image, then by their label in
    ``scipy.ndimage.label`` of that image's true mask (raster order of each
    lesion's first voxel).

    Attributes:
        mean_uncertainty: float64 array ``(L,)``, the mean of ``uncertainty``
            over each lesion's voxels.
        detected: bool array ``(L,)``, whether a predicted component overlaps
            the lesion (the rule of :func:`lesion_f1`).
        size: int64 array ``(L,)``, the lesion's number of voxels.
        image_index: int64 array ``(L,)``, the image the lesion is in.
        label: int64 array ``(L,)``, the lesion's label in
            ``scipy.ndimage.label`` of its image's true mask (1-based).
        missed_auroc: float, AUROC of ``mean_uncertainty`` for ranking the
            missed lesions above the detected ones
            (:func:`~bayesseg.metrics.uncertainty_auroc`, ties count half):
            1.0 when every missed lesion is more uncertain than every
            detected one, 0.5 when uncertainty says nothing about misses.
            NaN when there is no lesion, or when every lesion is detected or
            every one is missed (no pair to rank).
        missed_mean_uncertainty: float, the mean of ``mean_uncertainty``
            over the missed lesions (NaN when none is missed).
        detected_mean_uncertainty: float, the same over the detected
            lesions (NaN when none is detected).

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import lesion_uncertainty
    >>> t = np.zeros((1, 6, 6)); t[0, 1, 1] = t[0, 4, 4] = 1
    >>> p = np.zeros((1, 6, 6)); p[0, 1, 1] = 0.9
    >>> u = np.full((1, 6, 6), 0.1); u[0, 4, 4] = 0.6
    >>> r = lesion_uncertainty(t, p, u)
    >>> r.detected.tolist(), r.mean_uncertainty.tolist(), r.missed_auroc
    ([True, False], [0.1, 0.6], 1.0)
    """

    mean_uncertainty: np.ndarray
    detected: np.ndarray
    size: np.ndarray
    image_index: np.ndarray
    label: np.ndarray
    missed_auroc: float
    missed_mean_uncertainty: float
    detected_mean_uncertainty: float

    @property
    def num_lesions(self) -> int:
        """Number of true lesions over all images."""
        return int(self.detected.size)


def lesion_uncertainty(
    y_true: Any,
    probs: Any,
    uncertainty: Any,
    threshold: float = 0.5,
    min_size: int = 0,
    connectivity: int | None = None,
) -> LesionUncertainty:
    """Per true lesion: its mean uncertainty and whether it was detected.

    Are the lesions the model misses the ones it is unsure about? Each
    image's true mask is split into connected components exactly as in
    :func:`lesion_f1` (same ``connectivity``, same ``min_size`` rule for the
    predicted components), and a lesion is detected when a predicted
    component of ``probs >= threshold`` overlaps it by at least one voxel,
    so ``result.detected.sum()`` equals ``lesion_f1(...)["detected"]``. For
    each lesion the uncertainty map is averaged over its voxels, and
    ``missed_auroc`` scores that mean as a detector of missed lesions.

    Args:
        y_true: binary masks ``(N, H, W)`` or ``(N, D, H, W)``, optionally
            with a trailing channel axis of size 1 (foreground where
            ``y_true >= 0.5``).
        probs: foreground probabilities (or binary masks) of the same shape;
            for a softmax output, ``1 - probs[..., 0]`` (as
            ``bayesseg._probability.foreground_probability`` gives it).
        uncertainty: finite per-voxel uncertainty of the same shape, e.g.
            ``MCPrediction.total`` or ``.epistemic`` of ``predict_mc``.
        threshold: float, predicted foreground where ``probs >= threshold``.
            Default 0.5.
        min_size: int >= 0, predicted components smaller than this many
            voxels are discarded before matching, as in :func:`lesion_f1`.
            Default 0.
        connectivity: int in ``[1, ndim]`` or None (default: ``ndim``, i.e.
            8-connectivity in 2D, 26 in 3D).

    Returns:
        A :class:`LesionUncertainty`.

    Raises:
        ValueError: for inputs that are not image or volume batches, shapes
            that differ, a non-finite ``uncertainty``, or a bad
            ``min_size``/``connectivity``.

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import lesion_uncertainty
    >>> t = np.zeros((2, 5, 5)); t[0, 0:2, 0] = 1; t[1, 3, 3] = 1
    >>> p = t * 0.8; p[1] = 0.0
    >>> u = np.zeros((2, 5, 5)); u[0, 0, 0] = 0.2; u[1, 3, 3] = 0.5
    >>> r = lesion_uncertainty(t, p, u)
    >>> r.size.tolist(), r.image_index.tolist(), r.mean_uncertainty.tolist()
    ([2, 1], [0, 1], [0.1, 0.5])
    >>> r.detected.tolist(), r.missed_auroc
    ([True, False], 1.0)
    """
    truth, pred = _masks(y_true, probs, threshold, "probs")
    u = _spatial_batch("uncertainty", uncertainty).astype(np.float64)
    if u.shape != truth.shape:
        raise ValueError(
            "Arguments `y_true` and `uncertainty` must have the same shape. Received: "
            f"{np.shape(y_true)} and {np.shape(uncertainty)}"
        )
    if not np.all(np.isfinite(u)):
        raise ValueError(
            "Argument `uncertainty` must hold finite values. Received: "
            f"{int(np.size(u) - np.isfinite(u).sum())} NaN or infinite values"
        )
    min_size = check_int("min_size", min_size, minimum=0)
    structure = _structure(truth.ndim - 1, connectivity)
    means, detected, sizes, images, labels = [], [], [], [], []
    for index, (t_img, p_img, u_img) in enumerate(zip(truth, pred, u, strict=True)):
        t_lab, n_true, p_lab, _ = _components(t_img, p_img, structure, min_size)
        if not n_true:
            continue
        size = np.bincount(t_lab.ravel(), minlength=n_true + 1)[1:]
        total = np.bincount(t_lab.ravel(), weights=u_img.ravel(), minlength=n_true + 1)[1:]
        hit = np.zeros(n_true + 1, dtype=bool)
        hit[t_lab[(t_lab > 0) & (p_lab > 0)]] = True
        means.append(total / size)
        detected.append(hit[1:])
        sizes.append(size)
        images.append(np.full(n_true, index, dtype=np.int64))
        labels.append(np.arange(1, n_true + 1, dtype=np.int64))

    def join(parts: list, dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    mean_u = join(means, np.float64)
    hit = join(detected, bool)
    n_missed = int(hit.size - hit.sum())
    auroc = uncertainty_auroc(~hit, mean_u) if 0 < n_missed < hit.size else float("nan")
    return LesionUncertainty(
        mean_uncertainty=mean_u,
        detected=hit,
        size=join(sizes, np.int64),
        image_index=join(images, np.int64),
        label=join(labels, np.int64),
        missed_auroc=float(auroc),
        missed_mean_uncertainty=float(mean_u[~hit].mean()) if n_missed else float("nan"),
        detected_mean_uncertainty=float(mean_u[hit].mean()) if hit.any() else float("nan"),
    )
