"""Bayesian U-Net (2D and 3D) and its deterministic twin."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from bayesseg import layers as bl
from bayesseg._defaults import (
    DEFAULT_UNET_POSTERIOR_SCALE_INIT,
    DEFAULT_UNET_SCALE_MULTIPLIER,
    ESTIMATORS,
)
from bayesseg._tiling import check_unet_shape
from bayesseg._validation import argument_error, check_choice, check_float, check_int
from bayesseg.training import BayesianModel

__all__ = ["bayesian_unet", "unet"]

_BLOCKS = ("all", "decoder", "bottleneck", "last")
_NORMALIZATIONS = (None, "batch", "group")


def _check_common(input_shape, num_classes, base_filters, depth, normalization, dropout):
    try:
        input_shape = tuple(int(d) if d is not None else None for d in input_shape)
    except TypeError:
        input_shape = ()
    if len(input_shape) not in (3, 4) or input_shape[-1] is None:
        raise argument_error(
            "input_shape",
            "be (height, width, channels) or (depth, height, width, channels) with a known "
            "channel count",
            input_shape,
        )
    check_int("num_classes", num_classes)
    check_int("base_filters", base_filters)
    check_int("depth", depth)
    check_unet_shape(
        input_shape[:-1],
        depth,
        lambda divisor: str(
            argument_error(
                "input_shape",
                f"have spatial sizes divisible by 2**(depth-1) = {divisor} for depth={depth}",
                input_shape,
            )
        ),
    )
    check_choice("normalization", normalization, _NORMALIZATIONS)
    check_float("dropout", dropout, minimum=0, maximum=1, strict_maximum=True)
    return input_shape


def _output_bias_initializer(output_bias, num_classes):
    if output_bias is None:
        return "zeros"
    bias = np.asarray(output_bias, dtype="float32").reshape(-1)
    if bias.size == 1 and num_classes == 1:
        return keras.initializers.Constant(float(bias[0]))
    if bias.size != num_classes or not np.all(np.isfinite(bias)):
        raise ValueError(
            f"Argument `output_bias` must hold {num_classes} finite value(s), one per "
            f"output channel. Received: output_bias={output_bias!r}"
        )
    return keras.initializers.Constant(bias.tolist())


def _build(
    input_shape,
    num_classes,
    base_filters,
    depth,
    normalization,
    dropout,
    output_bias,
    conv_for,
    up_for,
    model_cls,
    name,
):
    rank = len(input_shape) - 1
    pool = keras.layers.MaxPooling2D if rank == 2 else keras.layers.MaxPooling3D

    def block(x, filters, stage, index):
        for i in range(2):
            conv = conv_for(stage, index)
            x = conv(
                filters,
                3,
                padding="same",
                use_bias=normalization is None,
                name=f"{stage}{index}_conv{i}",
            )(x)
            if normalization == "batch":
                x = keras.layers.BatchNormalization(name=f"{stage}{index}_bn{i}")(x)
            elif normalization == "group":
                x = keras.layers.GroupNormalization(
                    groups=min(8, filters), name=f"{stage}{index}_gn{i}"
                )(x)
            x = keras.layers.Activation("relu", name=f"{stage}{index}_relu{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{stage}{index}_dropout")(x)
        return x

    inputs = keras.Input(input_shape, name="image")
    x, skips = inputs, []
    for level in range(depth - 1):
        x = block(x, base_filters * 2**level, "enc", level)
        skips.append(x)
        x = pool(2, name=f"pool{level}")(x)
    x = block(x, base_filters * 2 ** (depth - 1), "bottleneck", depth - 1)
    for level in reversed(range(depth - 1)):
        filters = base_filters * 2**level
        x = up_for(level)(filters, 2, strides=2, padding="same", name=f"up{level}")(x)
        x = keras.layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = block(x, filters, "dec", level)
    head = conv_for("head", 0)
    outputs = head(
        num_classes,
        1,
        bias_initializer=_output_bias_initializer(output_bias, num_classes),
        name="logits",
        dtype="float32",
    )(x)
    return model_cls(inputs, outputs, name=name)


def unet(
    input_shape: Sequence[int],
    num_classes: int,
    base_filters: int = 16,
    depth: int = 4,
    normalization: str | None = None,
    dropout: float = 0.0,
    output_bias=None,
) -> keras.Model:
    """A deterministic U-Net with plain Keras layers (the Bayesian U-Net's twin).

    Same architecture, layer names and weight shapes as :func:`bayesian_unet`;
    with ``dropout > 0`` it is the MC-dropout baseline: predict it through
    ``bs.uncertainty.predict_mc``, which turns dropout on and keeps batch
    normalisation in inference mode (a plain ``model(x, training=True)``
    would also normalise by the batch).

    Args:
        input_shape: (H, W, C) or (D, H, W, C); spatial sizes divisible by
            ``2**(depth-1)``.
        num_classes: 1 for one binary logit channel, else the number of
            classes (softmax logits).
        base_filters: int, filters of the first level (doubled per level).
        depth: int, resolution levels (``depth - 1`` poolings).
        normalization: None, "batch" or "group".
        dropout: float in [0, 1), dropout after every block.
        output_bias: initial bias of the logits (e.g. from
            ``bs.imbalance.initial_bias``).

    Returns:
        A ``keras.Model`` returning logits of shape ``input_shape[:-1] +
        (num_classes,)``.

    Example:

    >>> import bayesseg as bs
    >>> model = bs.models.unet((64, 64, 1), num_classes=1, depth=3, dropout=0.1)
    >>> model.output_shape
    (None, 64, 64, 1)
    """
    input_shape = _check_common(
        input_shape, num_classes, base_filters, depth, normalization, dropout
    )
    rank = len(input_shape) - 1
    conv = keras.layers.Conv2D if rank == 2 else keras.layers.Conv3D
    up = keras.layers.Conv2DTranspose if rank == 2 else keras.layers.Conv3DTranspose
    return _build(
        input_shape,
        num_classes,
        base_filters,
        depth,
        normalization,
        dropout,
        output_bias,
        lambda stage, index: conv,
        lambda level: up,
        keras.Model,
        "unet",
    )


def bayesian_unet(
    input_shape: Sequence[int],
    num_classes: int,
    base_filters: int = 16,
    depth: int = 4,
    estimator: str = "flipout",
    bayesian_blocks: str = "bottleneck",
    normalization: str | None = None,
    output_bias=None,
    prior=None,
    posterior_scale_init: float = DEFAULT_UNET_POSTERIOR_SCALE_INIT,
    scale_multiplier: float = DEFAULT_UNET_SCALE_MULTIPLIER,
) -> BayesianModel:
    """A Bayesian U-Net (2D or 3D) returning a :class:`bayesseg.BayesianModel`.

    Encoder blocks of two 3x3(x3) convolutions with ReLU (optionally batch or
    group normalisation), max pooling, a bottleneck, a decoder of transposed
    convolutions (stride 2), skip concatenations and two convolutions per
    level, and a 1x1 head of logits. ``bayesian_blocks`` chooses which of
    them are Bayesian layers: by default the bottleneck and the head.

    Args:
        input_shape: (H, W, C) for 2D images or (D, H, W, C) for volumes;
            spatial sizes divisible by ``2**(depth-1)``.
        num_classes: 1 for one binary logit channel (sigmoid), else the number
            of classes (softmax logits).
        base_filters: int, filters of the first level. Default 16.
        depth: int, resolution levels. Default 4.
        estimator: "flipout" (default) or "reparameterization".
        bayesian_blocks: which layers are Bayesian: "bottleneck" (default:
            the bottleneck block's convolutions and the head; they work at
            the lowest resolution, so training costs about what the
            deterministic twin's does), "all" (every convolution: about 2x
            the twin's training time with Flipout), "decoder"
            (up-convolutions, decoder blocks and head) or "last" (the head
            only: no epistemic uncertainty to speak of). docs/uncertainty.md
            ("Which layers are Bayesian") compares them with the twin.
        normalization: None (default), "batch" or "group". Batch statistics
            in VI are fine; at prediction BatchNormalization runs in
            inference mode while the weights are still sampled.
        output_bias: initial logit bias, e.g.
            ``bs.imbalance.initial_bias(frequencies, class_weights=w)``.
        prior: prior of every Bayesian layer (default ``Normal(0.1)``).
        posterior_scale_init: initial posterior scale. Default 0.001 (the
            layers' own default is 0.01): the scales grow to their trained
            size within the run, so the noise rises while the means fit
            (docs/uncertainty.md, "Which layers are Bayesian").
        scale_multiplier: ``c`` in ``scale = softplus(c * rho)``: the scales
            move up to ``c`` times the learning rate per step in log space
            under Adam. Default 10 (the layers' own is 20): with Adam 2e-3
            the scales grow up to 0.02 per step, fast enough to settle
            within a run of a few hundred updates, slowly enough that the
            means fit first (see ``bs.layers.BayesianLayer`` and
            docs/uncertainty.md); 1 is the classic parameterisation.

    Returns:
        A :class:`bayesseg.BayesianModel` mapping ``input_shape`` images to
        logits of shape ``input_shape[:-1] + (num_classes,)``; compile it with
        ``loss=bs.ELBO(...)``.

    Example:

    >>> import bayesseg as bs
    >>> model = bs.models.bayesian_unet((64, 64, 1), num_classes=1, depth=3)
    >>> model.output_shape
    (None, 64, 64, 1)
    >>> volume_model = bs.models.bayesian_unet((16, 32, 32, 1), num_classes=3, depth=2)
    """
    input_shape = _check_common(input_shape, num_classes, base_filters, depth, normalization, 0)
    estimator = check_choice("estimator", estimator, ESTIMATORS)
    check_choice("bayesian_blocks", bayesian_blocks, _BLOCKS)
    rank = len(input_shape) - 1
    bayes_conv = bl.bayesian_twin(f"Conv{rank}D", estimator)
    bayes_up = bl.bayesian_twin(f"Conv{rank}DTranspose", estimator)
    plain_conv = keras.layers.Conv2D if rank == 2 else keras.layers.Conv3D
    plain_up = keras.layers.Conv2DTranspose if rank == 2 else keras.layers.Conv3DTranspose
    bayes_kwargs = {
        "prior": prior,
        "posterior_scale_init": posterior_scale_init,
        "scale_multiplier": scale_multiplier,
    }

    def bayesian(cls):
        def make(*args, **kwargs):
            return cls(*args, **kwargs, **bayes_kwargs)

        return make

    def conv_for(stage, index):
        if bayesian_blocks == "all" or stage == "head":
            return bayesian(bayes_conv)
        if (bayesian_blocks, stage) in (("decoder", "dec"), ("bottleneck", "bottleneck")):
            return bayesian(bayes_conv)
        return plain_conv

    def up_for(level):
        return bayesian(bayes_up) if bayesian_blocks in ("all", "decoder") else plain_up

    return _build(
        input_shape,
        num_classes,
        base_filters,
        depth,
        normalization,
        0.0,
        output_bias,
        conv_for,
        up_for,
        BayesianModel,
        "bayesian_unet",
    )
