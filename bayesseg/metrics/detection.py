"""Lesion-wise detection: precision, recall and F1 of matched connected components.

:func:`lesion_f1` splits each image's true mask and thresholded prediction
into connected components (``scipy.ndimage.label``) and matches them one to
one where their intersection over union is at least ``iou_threshold``
(default 0.1, the localisation criterion Metrics Reloaded recommends for
detection; Maier-Hein et al., Nature Methods 2024), pooled over all images.
One predicted blob covering the image matches nothing, so predicting
everything as foreground cannot score. :func:`lesion_uncertainty` uses the
same components and the same matching to ask whether the lesions the model
misses are the ones it is unsure about.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import ndimage, optimize

from bayesseg._validation import check_float, check_int
from bayesseg.metrics._arrays import harmonic_mean
from bayesseg.metrics.scores import uncertainty_auroc

__all__ = [
    "LESION_IOU_THRESHOLD",
    "LesionUncertainty",
    "lesion_chance",
    "lesion_f1",
    "lesion_uncertainty",
]

#: The intersection over union at which a predicted component matches a true lesion.
LESION_IOU_THRESHOLD = 0.1


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


def _matches(
    t_lab: np.ndarray, n_true: int, p_lab: np.ndarray, n_pred: int, iou_threshold: float
) -> np.ndarray:
    """The true lesions (labels ``1..n_true``) matched one to one to a predicted component.

    Pairs of overlapping components with IoU >= ``iou_threshold`` are
    candidates; where a lesion or a component has several, the assignment
    of the largest total IoU (``scipy.optimize.linear_sum_assignment``)
    decides. Above an IoU of 0.5 every candidate pair is already unique.
    Returns a bool array ``(n_true + 1,)``, True at each matched lesion.
    """
    matched = np.zeros(n_true + 1, dtype=bool)
    both = (t_lab > 0) & (p_lab > 0)
    if not both.any():
        return matched
    pairs, inter = np.unique(
        t_lab[both].astype(np.int64) * (n_pred + 1) + p_lab[both], return_counts=True
    )
    t_ids, p_ids = np.divmod(pairs, n_pred + 1)
    t_size = np.bincount(t_lab.ravel(), minlength=n_true + 1)
    p_size = np.bincount(p_lab.ravel(), minlength=n_pred + 1)
    iou = inter / (t_size[t_ids] + p_size[p_ids] - inter)
    keep = iou >= iou_threshold
    t_ids, p_ids, iou = t_ids[keep], p_ids[keep], iou[keep]
    if t_ids.size == np.unique(t_ids).size and p_ids.size == np.unique(p_ids).size:
        matched[t_ids] = True
        return matched
    rows, t_index = np.unique(t_ids, return_inverse=True)
    _, p_index = np.unique(p_ids, return_inverse=True)
    weights = np.zeros((rows.size, p_index.max() + 1))
    weights[t_index, p_index] = iou
    chosen, columns = optimize.linear_sum_assignment(weights, maximize=True)
    matched[rows[chosen[weights[chosen, columns] > 0]]] = True
    return matched


def lesion_f1(
    y_true: Any,
    y_pred: Any,
    threshold: float = 0.5,
    min_size: int = 0,
    connectivity: int | None = None,
    iou_threshold: float = LESION_IOU_THRESHOLD,
) -> dict[str, float]:
    """Lesion-wise detection precision, recall and F1 from matched connected components.

    Each image's true mask and thresholded prediction are split into
    connected components (``scipy.ndimage.label``) and matched one to one: a
    predicted component and a true lesion match when their intersection
    over union is at least ``iou_threshold`` (where one could match several,
    the assignment of the largest total IoU decides). Then ``precision =
    matched / predicted components``, ``recall = matched / true lesions``
    and F1 their harmonic mean, pooled over all images. Undefined ratios are
    0, except that with no true and no predicted lesion anywhere all three
    scores are 1.

    The IoU rule is what makes the score honest: one blob over the whole
    image (2% foreground) overlaps every lesion but matches none (IoU
    0.02), and a component that merges two lesions matches at most one.

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
        iou_threshold: float in (0, 1], the IoU at which a component matches
            a lesion. Default ``LESION_IOU_THRESHOLD`` = 0.1.

    Returns:
        A dict with float ``precision``, ``recall``, ``f1`` and the counts
        ``true_lesions``, ``pred_lesions``, ``detected`` (matched pairs:
        true lesions found, each by its own component), ``fp`` (predicted
        components matched to none) and ``fn`` (true lesions missed).

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import lesion_f1
    >>> t = np.zeros((1, 8, 8)); t[0, 1, 1] = t[0, 5, 5] = 1
    >>> p = np.zeros((1, 8, 8)); p[0, 1, 1] = p[0, 3, 7] = 1
    >>> lesion_f1(t, p)["f1"]
    0.5
    >>> lesion_f1(t, np.ones((1, 8, 8)))["f1"]  # one blob over the image: IoU 2/64
    0.0
    """
    truth, pred = _masks(y_true, y_pred, threshold, "y_pred")
    min_size = check_int("min_size", min_size, minimum=0)
    iou_threshold = _iou_threshold(iou_threshold)
    structure = _structure(truth.ndim - 1, connectivity)
    counts = dict.fromkeys(("true_lesions", "pred_lesions", "detected"), 0)
    for t_img, p_img in zip(truth, pred, strict=True):
        t_lab, n_true, p_lab, n_pred = _components(t_img, p_img, structure, min_size)
        counts["true_lesions"] += n_true
        counts["pred_lesions"] += n_pred
        counts["detected"] += int(_matches(t_lab, n_true, p_lab, n_pred, iou_threshold).sum())
    return lesion_scores(counts)


def lesion_scores(counts: dict[str, int]) -> dict[str, float | int]:
    """:func:`lesion_f1`'s dict from its counts (summed over images, for pooled scores).

    Not exported: the one place the ratios and their conventions are written.
    """
    n_true, n_pred, matched = counts["true_lesions"], counts["pred_lesions"], counts["detected"]
    if n_true == 0 and n_pred == 0:
        precision = recall = 1.0
    else:
        precision = matched / n_pred if n_pred else 0.0
        recall = matched / n_true if n_true else 0.0
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(harmonic_mean(precision, recall)),
        "true_lesions": n_true,
        "pred_lesions": n_pred,
        "detected": matched,
        "fp": n_pred - matched,
        "fn": n_true - matched,
    }


def lesion_chance(
    y_true: Any,
    connectivity: int | None = None,
    iou_threshold: float = LESION_IOU_THRESHOLD,
) -> dict[str, Any]:
    """What predicting the whole image as foreground scores, lesion-wise and per voxel.

    In closed form: each image becomes one predicted component, whose IoU
    with a lesion of ``s`` voxels is ``s / (image voxels)``; it matches the
    largest lesion when that reaches ``iou_threshold``, so
    :func:`lesion_f1` of the whole image counts one predicted lesion per
    image and at most one match. Per voxel, flagging everything scores a
    foreground F1 (Dice) of ``2r / (1 + r)`` with ``r`` the foreground
    fraction. Print both beside a model's scores: the floor a detector must
    clear.

    Args:
        y_true: binary masks ``(N, H, W)`` or ``(N, D, H, W)``, optionally
            with a trailing channel axis of size 1.
        connectivity: as in :func:`lesion_f1`.
        iou_threshold: as in :func:`lesion_f1`. Default 0.1.

    Returns:
        A dict: ``foreground_fraction`` (``r``), ``whole_image`` (the dict of
        :func:`lesion_f1` for an all-foreground prediction) and
        ``voxel_f1_flag_all`` (``2r / (1 + r)``).

    Example:

    >>> import numpy as np
    >>> from bayesseg.metrics import lesion_chance
    >>> t = np.zeros((2, 10, 10)); t[0, :4, :4] = 1; t[1, 0, 0] = 1  # 16% and 1%
    >>> c = lesion_chance(t)
    >>> c["whole_image"]["detected"], c["whole_image"]["f1"], round(c["voxel_f1_flag_all"], 4)
    (1, 0.5, 0.1567)
    """
    truth = _spatial_batch("y_true", y_true) >= 0.5
    iou_threshold = _iou_threshold(iou_threshold)
    structure = _structure(truth.ndim - 1, connectivity)
    counts = dict.fromkeys(("true_lesions", "pred_lesions", "detected"), 0)
    voxels = int(np.prod(truth.shape[1:]))
    for t_img in truth:
        t_lab, n_true = ndimage.label(t_img, structure)
        largest = np.bincount(t_lab.ravel(), minlength=2)[1:].max() if n_true else 0
        counts["true_lesions"] += n_true
        counts["pred_lesions"] += int(voxels > 0)
        counts["detected"] += int(n_true > 0 and largest / voxels >= iou_threshold)
    r = float(truth.mean()) if truth.size else 0.0
    return {
        "foreground_fraction": r,
        "whole_image": lesion_scores(counts),
        "voxel_f1_flag_all": 2 * r / (1 + r),
    }


def _iou_threshold(value: Any) -> float:
    value = check_float("iou_threshold", value, minimum=0.0, maximum=1.0)
    if value == 0.0:
        raise ValueError(
            "Argument `iou_threshold` must be in (0, 1]: at 0 every lesion would match "
            "any component. Received: iou_threshold=0.0"
        )
    return value


@dataclasses.dataclass(frozen=True)
class LesionUncertainty:
    """Result of :func:`lesion_uncertainty`: one entry per true lesion.

    Lesions are ordered by image, then by their label in
    ``scipy.ndimage.label`` of that image's true mask (raster order of each
    lesion's first voxel).

    Attributes:
        mean_uncertainty: float64 array ``(L,)``, the mean of ``uncertainty``
            over each lesion's voxels.
        detected: bool array ``(L,)``, whether a predicted component is
            matched to the lesion (IoU >= ``iou_threshold``, one to one: the
            rule of :func:`lesion_f1`).
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
    iou_threshold: float = LESION_IOU_THRESHOLD,
) -> LesionUncertainty:
    """Per true lesion: its mean uncertainty and whether it was detected.

    Are the lesions the model misses the ones it is unsure about? Each
    image's true mask is split into connected components exactly as in
    :func:`lesion_f1` (same ``connectivity``, same ``min_size`` rule for the
    predicted components), and a lesion is detected when a predicted
    component of ``probs >= threshold`` is matched to it (IoU >=
    ``iou_threshold``, one to one), so ``result.detected.sum()`` equals
    ``lesion_f1(...)["detected"]``. For
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
        iou_threshold: float in (0, 1], as in :func:`lesion_f1`. Default 0.1.

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
    iou_threshold = _iou_threshold(iou_threshold)
    structure = _structure(truth.ndim - 1, connectivity)
    means, detected, sizes, images, labels = [], [], [], [], []
    for index, (t_img, p_img, u_img) in enumerate(zip(truth, pred, u, strict=True)):
        t_lab, n_true, p_lab, n_pred = _components(t_img, p_img, structure, min_size)
        if not n_true:
            continue
        size = np.bincount(t_lab.ravel(), minlength=n_true + 1)[1:]
        total = np.bincount(t_lab.ravel(), weights=u_img.ravel(), minlength=n_true + 1)[1:]
        hit = _matches(t_lab, n_true, p_lab, n_pred, iou_threshold)
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
