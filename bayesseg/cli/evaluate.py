"""What ``bayesseg predict`` writes for people who look: scores against masks
(per image and pooled over the images) and PNG previews of a few slices.

TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayesseg.cli.report import _LESION_KEYS, _chance_row, _foreground_classes

# Lesion-wise counts summed over images for the pooled lesion-wise F1.
_LESION_COUNTS = ("true_lesions", "pred_lesions", "detected")


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


def pair_masks(files: list[Path], masks_dir: str) -> list[Path]:
    """The mask of each image (same file stem) in ``masks_dir``; fails before any work."""
    import bayesseg as bs

    masks = {_stem(p): p for p in bs.data.list_images(masks_dir, "--masks")}
    paired = []
    for path in files:
        if _stem(path) not in masks:
            raise ValueError(
                f"Image {path.name!r} has no mask in {masks_dir!r} (expected a file named "
                f"{_stem(path)}.<ext>)."
            )
        paired.append(masks[_stem(path)])
    return paired


def read_labels(mask_path: Path, spatial: tuple[int, ...], num_classes: int):
    """The mask of an image of ``spatial`` shape, its labels checked against the model."""
    import numpy as np

    import bayesseg as bs

    labels = bs.data.read_mask(mask_path)
    if labels.shape != tuple(spatial):
        raise ValueError(
            f"Mask {mask_path.name!r} has shape {labels.shape} but its image has shape "
            f"{tuple(spatial)}: the mask must match the image's spatial shape."
        )
    outside = np.unique(labels[(labels < 0) | (labels >= num_classes)])
    if outside.size:
        raise ValueError(
            f"Mask {mask_path.name!r} holds labels {outside[:5].tolist()} outside the model's "
            f"classes [0, {num_classes})."
        )
    return labels


class Evaluation:
    """Scores of the predicted maps against masks: per image, and pooled.

    Per image: per-class Dice, recall, precision and support of the mean
    prediction's decision (``p >= 0.5`` or the argmax), from
    ``bs.metrics.confusion_counts`` and ``bs.metrics.per_class_scores`` (a
    score whose denominator is 0 is None: recall of a class absent from the
    mask, precision of a class never predicted, Dice of a class absent from
    both), lesion-wise detection
    (``bs.metrics.lesion_f1``) beside its floor (``bs.metrics.lesion_chance``:
    the whole image predicted as foreground), the foreground ECE with its region
    (``bs.metrics.foreground_calibration``) and the predictive NLL. Pooled:
    Dice and recall over every pixel of every image, the lesion-wise F1 from
    the summed lesion counts, the foreground ECE and NLL of all pixels
    together (it keeps each pixel's foreground probability and label: 5 bytes
    per pixel).
    """

    def __init__(self, num_classes: int):
        import numpy as np

        self.num_classes = num_classes
        self.counts = np.zeros((num_classes, 3), np.int64)  # TP, FP, FN of every class
        self.nll_sum = 0.0
        self.pixels = 0
        self.images: dict[str, dict[str, Any]] = {}
        self.lesion_counts = dict.fromkeys(_LESION_COUNTS, 0)
        self.whole_image_counts = dict.fromkeys(_LESION_COUNTS, 0)
        self.foreground: list = []
        self.truth: list = []

    def add(self, name: str, labels, mean) -> dict[str, Any]:
        """Score one image (``mean``: its ``(*spatial, K)`` Monte Carlo mean)."""
        import numpy as np

        import bayesseg as bs
        from bayesseg import _probability

        counts = bs.metrics.confusion_counts(
            labels, _probability.hard_labels(mean), self.num_classes
        )
        self.counts += counts
        nll = bs.metrics.predictive_nll(labels, mean[..., 0] if self.num_classes == 2 else mean)
        self.nll_sum += nll * labels.size
        self.pixels += labels.size
        foreground = _probability.foreground_probability(mean).astype(np.float32)
        truth = labels != 0
        lesions = bs.metrics.lesion_f1(truth[None], foreground[None])
        chance = bs.metrics.lesion_chance(truth[None])
        whole = chance["whole_image"]
        for key in _LESION_COUNTS:
            self.lesion_counts[key] += int(lesions[key])
            self.whole_image_counts[key] += int(whole[key])
        self.foreground.append(foreground.ravel())
        self.truth.append(truth.ravel())
        row = {
            "per_class": _per_class_rows(counts),
            "lesion_f1": {k: lesions[k] for k in _LESION_KEYS},
            "chance": _chance_row(chance),
            **_foreground_scores(truth.ravel(), foreground.ravel()),
            "predictive_nll": nll,
        }
        self.images[name] = row
        return row

    def overall(self) -> dict[str, Any]:
        """The scores pooled over every image added."""
        import numpy as np

        from bayesseg.metrics.detection import lesion_scores

        per_class = _per_class_rows(self.counts)
        truth = np.concatenate(self.truth)
        r = float(truth.mean()) if truth.size else 0.0
        lesions = lesion_scores(self.lesion_counts)
        return {
            "images": len(self.images),
            "per_class": per_class,
            "foreground_classes": _foreground_classes(per_class),
            "lesion_f1": {k: lesions[k] for k in _LESION_KEYS},
            "chance": {
                "whole_image_lesion_f1": lesion_scores(self.whole_image_counts)["f1"],
                "voxel_f1_flag_all": 2 * r / (1 + r),
            },
            **_foreground_scores(truth, np.concatenate(self.foreground)),
            "predictive_nll": self.nll_sum / self.pixels if self.pixels else None,
        }


def _per_class_rows(counts) -> dict[str, dict[str, Any]]:
    """metrics.json's ``per_class``: ``bs.metrics.per_class_scores`` keyed by class name
    (a score whose denominator is 0 is None, written as null)."""
    import bayesseg as bs

    return {str(c): row for c, row in bs.metrics.per_class_scores(counts).items()}


def _foreground_scores(truth, foreground) -> dict[str, Any]:
    """The fixed-region foreground ECE of foreground probabilities, with its region."""
    import bayesseg as bs

    details = bs.metrics.foreground_calibration(truth.astype("int32"), foreground)
    return {
        "foreground_ece": details.ece,
        "ece_region_pixels": details.region_size,
    }


def preview_slices(spatial: tuple[int, ...], count: int) -> list[int | None]:
    """Slices drawn for a preview: None (2D), else ``count`` evenly spread slices
    of the first axis of a volume.

    >>> preview_slices((8, 8), 3), preview_slices((10, 8, 8), 3)
    ([None], [1, 5, 8])
    """
    if len(spatial) == 2:
        return [None]
    depth = spatial[0]
    count = min(count, depth)
    return sorted({min(depth - 1, (2 * i + 1) * depth // (2 * count)) for i in range(count)})


def write_previews(out: Path, stem: str, image, labels, pred, count: int) -> list[str]:
    """PNG previews (input, truth when ``labels`` is given, mean prediction,
    epistemic, aleatoric) of a few slices of one image, by
    ``bs.plots.plot_uncertainty``; the file names written. Volumes are
    sliced along their first spatial axis (D of ``(D, H, W)``), which both
    the file name (``_axis0_slice<i>``) and the figure's title say."""
    import bayesseg as bs

    written = []
    for index in preview_slices(image.shape[:-1], count):
        suffix = "" if index is None else f"_axis0_slice{index}"
        target = out / f"{stem}_preview{suffix}.png"
        truth = None if labels is None else labels[None]
        bs.plots.plot_uncertainty(image[None], truth, pred, target, slice_index=index)
        written.append(target.name)
    return written
