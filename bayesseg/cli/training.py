"""What ``demo``, ``train`` and ``predict`` share around the segmentation recipe: the
options -> :class:`bayesseg.recipes.SegmentationConfig` mapping, the gradient
diagnostics callback, and the sliding-window size of an image (which validation and
prediction share). TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bayesseg._tiling import check_patch_size, check_unet_shape, unet_divisor


def segmentation_config(options: dict[str, Any]):
    """The :class:`bayesseg.recipes.SegmentationConfig` of resolved command-line options."""
    import dataclasses

    from bayesseg.recipes import SegmentationConfig

    names = {f.name for f in dataclasses.fields(SegmentationConfig)}
    return SegmentationConfig(**{k: v for k, v in options.items() if k in names})


def _build_model(
    input_shape: tuple,
    num_classes: int,
    counts,
    num_examples: int,
    steps_per_epoch: int,
    options: dict[str, Any],
):
    """The segmentation recipe's compiled U-Net, class weights and output bias for ``options``
    (``bs.recipes.build_segmentation_model``)."""
    import bayesseg as bs

    return bs.recipes.build_segmentation_model(
        segmentation_config(options),
        input_shape,
        num_classes,
        counts,
        num_examples,
        steps_per_epoch,
    )


def _gradient_callback(steps: int):
    """GradientDiagnostics recording about 20 times over ``steps`` training steps."""
    import bayesseg as bs

    return bs.diagnostics.GradientDiagnostics(every_n_steps=max(1, steps // 20))


def _expand_patch(values: Sequence[int], rank: int) -> tuple[int, ...] | None:
    """A patch size from 1 value (every axis) or ``rank`` values; None for another count."""
    try:
        return check_patch_size(values[0] if len(values) == 1 else tuple(values), rank)
    except ValueError:
        return None


def _window(patch_size, spatial: tuple[int, ...], model, train_patch, depth) -> tuple[int, ...]:
    """The sliding-window size for an image of ``spatial`` shape (``patch_size``: the
    --patch-size values or None)."""
    rank = len(spatial)
    if patch_size:
        patch = _expand_patch(patch_size, rank)
        if patch is None:
            raise ValueError(
                f"Argument --patch-size needs 1 or {rank} values. Received: {patch_size}"
            )
    elif train_patch and any(s > p for s, p in zip(spatial, train_patch, strict=True)):
        patch = tuple(train_patch)
    elif model.input_shape[1:-1] != (None,) * rank:
        patch = tuple(model.input_shape[1:-1])
    else:
        # One window covering the image, zero-padded to a size the U-Net accepts.
        divisor = unet_divisor(depth)
        patch = tuple(math.ceil(s / divisor) * divisor for s in spatial)
    check_unet_shape(
        patch,
        depth,
        lambda divisor: (
            f"Patch size {patch} must be divisible by 2**(depth-1) = {divisor} for this model."
        ),
    )
    return patch
