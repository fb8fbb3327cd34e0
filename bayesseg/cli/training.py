"""The training pipeline shared by ``demo``, ``train`` and ``predict``: the U-Net's size
rule, class weights and output bias, the compiled Bayesian U-Net, the gradient
diagnostics callback, and the sliding-window size of an image (which validation and
prediction share). TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bayesseg._tiling import check_patch_size, check_unet_shape, unet_divisor


def _imbalance(counts, num_classes: int, method: str):
    """Class weights and output bias from the training label counts.

    A class absent from the training masks gets the library's pseudo-count
    of 1 (``zero_count="pseudo"``), so its weight and bias stay finite (its
    weight never multiplies a label); the report lists absent classes, so
    the library's warning is not repeated here.
    """
    import warnings

    import bayesseg as bs
    from bayesseg import _probability

    activation = _probability.activation(_probability.output_channels(num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        weights = None
        if method != "none":
            weights = bs.imbalance.class_weights(counts, method=method, zero_count="pseudo")
        bias = bs.imbalance.initial_bias(
            counts, activation, class_weights=weights, zero_count="pseudo"
        )
    return weights, bias


def _likelihood(num_classes: int, weights):
    """The weighted likelihood and the Keras metrics compiled with it."""
    import bayesseg as bs

    if num_classes == 2:
        likelihood = bs.losses.WeightedBinaryCrossentropy(class_weights=weights)
        return likelihood, [bs.metrics.Dice(class_id=1), bs.metrics.Recall(class_id=1)]
    return bs.losses.WeightedCategoricalCrossentropy(class_weights=weights), []


def _kl_scaling(name: str, num_examples: int, steps_per_epoch: int):
    import bayesseg as bs

    if name == "per-example":
        return bs.kl.PerExample(num_examples)
    if name == "per-batch":
        return bs.kl.PerBatch(steps_per_epoch)
    return bs.kl.Blundell(steps_per_epoch)


def _learning_rate(options: dict[str, Any], total_steps: int):
    """Adam's learning rate: the number, or the warm-up + cosine schedule over the run.

    A run of a single step has no schedule to follow and keeps the constant rate.
    """
    import bayesseg as bs

    if options.get("lr_schedule", "constant") == "cosine" and total_steps >= 2:
        return bs.training.warmup_cosine_decay(options["learning_rate"], total_steps)
    return options["learning_rate"]


def _build_model(
    input_shape: tuple,
    num_classes: int,
    counts,
    num_examples: int,
    steps_per_epoch: int,
    options: dict[str, Any],
):
    """A compiled U-Net and its class weights and output bias.

    A Bayesian U-Net (``options["bayesian_blocks"]`` "all", "decoder" or
    "last") with a class-weighted ELBO; with "none", a deterministic U-Net
    (``bs.models.unet``) with the weighted likelihood alone.
    """
    import keras

    import bayesseg as bs
    from bayesseg import _probability

    weights, bias = _imbalance(counts, num_classes, options["class_weights"])
    blocks = options.get("bayesian_blocks", "all")
    common = {
        "base_filters": options["base_filters"],
        "depth": options["depth"],
        "normalization": None if options["normalization"] == "none" else options["normalization"],
        "output_bias": bias,
    }
    channels = _probability.output_channels(num_classes)
    likelihood, metrics = _likelihood(num_classes, weights)
    learning_rate = _learning_rate(options, steps_per_epoch * options["epochs"])
    optimizer = keras.optimizers.Adam(learning_rate, global_clipnorm=options["clipnorm"])
    if blocks == "none":
        model = bs.models.unet(input_shape, channels, **common)
        model.compile(optimizer=optimizer, loss=likelihood, metrics=metrics)
        return model, weights, bias
    model = bs.models.bayesian_unet(
        input_shape,
        channels,
        estimator=options["estimator"],
        bayesian_blocks=blocks,
        posterior_scale_init=options["posterior_scale_init"],
        scale_multiplier=options["scale_multiplier"],
        **common,
    )
    model.compile(
        optimizer=optimizer,
        loss=bs.ELBO(likelihood, _kl_scaling(options["kl_scaling"], num_examples, steps_per_epoch)),
        metrics=metrics,
    )
    return model, weights, bias


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
