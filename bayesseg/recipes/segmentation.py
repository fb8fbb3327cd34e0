"""The segmentation recipe: a Bayesian U-Net with a class-weighted ELBO.

What ``bayesseg train`` (images) and ``bayesseg demo --task lesion |
multiclass`` build, in public and typed form: class weights and the output
bias from the training masks' counts (a class absent from them gets a
pseudo-count of 1, so its weight and bias stay finite), the weighted
likelihood (binary or categorical), the KL scaled per example, per batch or
by Blundell's schedule, Adam with a global gradient clip, and a constant
rate or a warm-up + cosine schedule.

Every default lives once, in :class:`SegmentationConfig`, including those
that depend on the number of classes (:meth:`SegmentationConfig.resolve`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bayesseg._defaults import (
    DEFAULT_POSTERIOR_SCALE_INIT,
    DEFAULT_SCALE_MULTIPLIER,
    DEFAULT_UNET_POSTERIOR_SCALE_INIT,
    ESTIMATORS,
)
from bayesseg._validation import argument_error, check_choice, check_float, check_int

__all__ = [
    "CLASS_DEPENDENT_DEFAULTS",
    "SegmentationConfig",
    "SegmentationRun",
    "build_segmentation_model",
    "fit_recall_guarantee",
    "foreground_probability",
    "segmentation_imbalance",
    "train_segmentation",
]

CLASS_WEIGHTS = ("balanced", "inverse_sqrt", "effective_number", "none")
NORMALIZATIONS = ("none", "batch", "group")
#: bs.models.bayesian_unet's bayesian_blocks, and "none": a deterministic U-Net.
BAYESIAN_BLOCKS = ("all", "decoder", "bottleneck", "last", "none")
KL_SCALINGS = ("per-example", "per-batch", "blundell")
LR_SCHEDULES = ("constant", "cosine")
#: Monte Carlo draws per prediction of a U-Net by default: 16, the smallest of
#: 4, 8 and 16 whose held-out NLL is within 1% of 16 draws' in every setting
#: measured (8 draws are within 0.3% at the tour's budgets but 1.1% over after
#: the benchmark's longer training, where the posterior is widest;
#: docs/uncertainty.md, "How many draws"). Series taggers use 16 too.
NUM_SAMPLES = 16
#: How ``bayesseg predict`` cuts an image into windows by default: their overlap,
#: and windows per forward pass (what a recall guarantee's scores repeat).
PREDICT_OVERLAP = 0.5
PREDICT_BATCH_SIZE = 8
#: How a recall guarantee records predict's own choice of windows (no --patch-size).
PREDICT_WINDOWS = "predict's default windows"

#: The defaults that depend on the number of classes: name -> (binary, more classes).
#: The many-class recipe (docs/imbalance.md): with more than 2 classes the
#: classes must be told apart by small differences, which a U-Net learns in a
#: CPU budget only at a high peak rate, warmed up and decayed; at that rate
#: balanced weights (3000:1 at 32 classes and 99% background) collapse the
#: model onto one class, their square roots do not. The posterior scales move
#: up to ``learning_rate * scale_multiplier`` per step in log space: 0.02 in
#: the binary recipe (1e-3 x 20); at 1e-2 the multiplier is 2 to keep that
#: rate, since 20 (0.2 per step) let the scales and the loss run away for a
#: few hundred steps on long runs (the 8-class demo on 2560 images: a batch
#: loss of 3e3 on seed 0, against a largest of 0.7 with 2). The scales' start
#: goes with their speed: 0.001 where they can grow 0.02 per step from the
#: first step (the binary recipe; on the tour at 2e-3 x 20, 0.04 per step,
#: 1.02x -> 0.99x the twin's NLL at 12 epochs), 0.01 where the many-class
#: schedule warms the rate up and the multiplier is 2 (from 0.001 the
#: 32-class posterior barely widened: mean recall 0.587 and NLL 1.02x the
#: twin's, against 0.593 and 1.00x from 0.01).
CLASS_DEPENDENT_DEFAULTS = {
    "class_weights": ("balanced", "inverse_sqrt"),
    "learning_rate": (1e-3, 1e-2),
    "lr_schedule": ("constant", "cosine"),
    "scale_multiplier": (DEFAULT_SCALE_MULTIPLIER, 2.0),
    "posterior_scale_init": (DEFAULT_UNET_POSTERIOR_SCALE_INIT, DEFAULT_POSTERIOR_SCALE_INIT),
}


@dataclasses.dataclass(frozen=True)
class SegmentationConfig:
    """Every setting of the segmentation recipe, checked on creation.

    ``class_weights``, ``learning_rate``, ``lr_schedule``,
    ``scale_multiplier`` and ``posterior_scale_init`` default to None: their
    values depend on the number of classes
    (:data:`CLASS_DEPENDENT_DEFAULTS`), filled in by :meth:`resolve`.

    Attributes:
        epochs, batch_size: passes over the data and examples per step.
        base_filters, depth: the U-Net's width and resolution levels.
        normalization: "none", "batch" or "group".
        bayesian_blocks: "all", "decoder", "bottleneck", "last", or "none"
            for the deterministic U-Net with the weighted likelihood alone.
        estimator: "flipout" or "reparameterization".
        class_weights: "balanced", "inverse_sqrt", "effective_number", "none" or None.
        learning_rate: Adam's (peak) rate, or None.
        lr_schedule: "constant", "cosine" (warm-up then cosine decay) or None.
        clipnorm: Adam's ``global_clipnorm``.
        kl_scaling: "per-example" (1/N), "per-batch" (1/(M B)) or "blundell".
        posterior_scale_init, scale_multiplier: the posterior's start and
            parameterisation, or None: by the number of classes (0.001 and
            20 for 2 classes: at the recipe's rate of 1e-3 the scales move
            up to 0.02 per step, as ``bs.models.bayesian_unet``'s default
            of 10 does under Adam 2e-3; 0.01 and 2 for more).
        seed: the seed of the weights and the data order.

    Example:

    >>> from bayesseg.recipes import SegmentationConfig
    >>> SegmentationConfig().resolve(2).learning_rate, SegmentationConfig().resolve(32).lr_schedule
    (0.001, 'cosine')
    >>> config = SegmentationConfig()
    >>> config.resolve(2).scale_multiplier, config.resolve(8).scale_multiplier
    (20.0, 2.0)
    >>> config.resolve(2).posterior_scale_init, config.resolve(8).posterior_scale_init
    (0.001, 0.01)
    >>> SegmentationConfig(learning_rate=5e-4).resolve(32).learning_rate  # given: kept
    0.0005
    """

    epochs: int = 20
    batch_size: int = 4
    base_filters: int = 16
    depth: int = 4
    normalization: str = "none"
    bayesian_blocks: str = "bottleneck"
    estimator: str = "flipout"
    class_weights: str | None = None
    learning_rate: float | None = None
    lr_schedule: str | None = None
    clipnorm: float = 1.0
    kl_scaling: str = "per-example"
    posterior_scale_init: float | None = None
    scale_multiplier: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "base_filters", "depth"):
            check_int(name, getattr(self, name))
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_choice("bayesian_blocks", self.bayesian_blocks, BAYESIAN_BLOCKS)
        check_choice("estimator", self.estimator, ESTIMATORS)
        check_choice("kl_scaling", self.kl_scaling, KL_SCALINGS)
        if self.class_weights is not None:
            check_choice("class_weights", self.class_weights, CLASS_WEIGHTS)
        if self.lr_schedule is not None:
            check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.learning_rate is not None:
            check_float("learning_rate", self.learning_rate, minimum=0.0, strict_minimum=True)
        for name in ("clipnorm", "posterior_scale_init", "scale_multiplier"):
            if getattr(self, name) is not None:
                check_float(name, getattr(self, name), minimum=0.0, strict_minimum=True)
        check_int("seed", self.seed, minimum=None)

    def resolve(self, num_classes: int) -> SegmentationConfig:
        """This config with the class-dependent settings left None filled in."""
        num_classes = check_int("num_classes", num_classes, minimum=2)
        column = 1 if num_classes > 2 else 0
        filled = {
            name: values[column]
            for name, values in CLASS_DEPENDENT_DEFAULTS.items()
            if getattr(self, name) is None
        }
        return dataclasses.replace(self, **filled)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        return dataclasses.asdict(self)


def segmentation_imbalance(counts: Sequence[float], num_classes: int, method: str):
    """Class weights (None for "none") and the output bias from training label counts.

    A class absent from the counts gets a pseudo-count of 1
    (``zero_count="pseudo"``), so its weight and bias stay finite.

    Example:

    >>> from bayesseg.recipes import segmentation_imbalance
    >>> weights, bias = segmentation_imbalance([990, 10], 2, "balanced")
    >>> [round(float(w), 2) for w in weights], round(float(bias[0]), 2)  # an even weighted prior
    ([0.51, 50.0], 0.0)
    """
    import bayesseg as bs
    from bayesseg import _probability

    activation = _probability.activation(_probability.output_channels(num_classes))
    counts = np.asarray(counts, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        weights = None
        if method != "none":
            weights = bs.imbalance.class_weights(counts, method=method, zero_count="pseudo")
        bias = bs.imbalance.initial_bias(
            counts, activation, class_weights=weights, zero_count="pseudo"
        )
    return weights, bias


def _kl_scaling(name: str, num_examples: int, steps_per_epoch: int):
    import bayesseg as bs

    if name == "per-example":
        return bs.kl.PerExample(num_examples)
    if name == "per-batch":
        return bs.kl.PerBatch(steps_per_epoch)
    return bs.kl.Blundell(steps_per_epoch)


def build_segmentation_model(
    config: SegmentationConfig,
    input_shape: Sequence[int | None],
    num_classes: int,
    counts: Sequence[float],
    num_examples: int,
    steps_per_epoch: int,
):
    """The compiled U-Net of ``config``, its class weights and its output bias.

    Args:
        config: a :class:`SegmentationConfig` (its class-dependent settings
            are resolved for ``num_classes`` here).
        input_shape: ``(H, W, C)`` or ``(D, H, W, C)``; None for any size.
        num_classes: 2 for one sigmoid output, more for a softmax.
        counts: the training labels' count per class.
        num_examples: examples (images or patches) per epoch: the KL's 1/N.
        steps_per_epoch: optimizer steps per epoch (per-batch and Blundell
            KL scaling, the cosine schedule's length with ``config.epochs``).

    Returns:
        ``(model, class_weights or None, output_bias)``: a compiled
        ``BayesianModel`` with the weighted ELBO, or with
        ``bayesian_blocks="none"`` a Keras U-Net with the weighted likelihood.

    Example:

    >>> from bayesseg.recipes import SegmentationConfig, build_segmentation_model
    >>> model, weights, bias = build_segmentation_model(
    ...     SegmentationConfig(base_filters=4, depth=2), (None, None, 1), 2, [990, 10], 40, 10)
    >>> model.loss.likelihood.__class__.__name__, [round(float(w), 2) for w in weights]
    ('WeightedBinaryCrossentropy', [0.51, 50.0])
    """
    import keras

    import bayesseg as bs
    from bayesseg import _probability

    if not isinstance(config, SegmentationConfig):
        raise argument_error("config", "be a SegmentationConfig", type(config).__name__)
    config = config.resolve(num_classes)
    weights, bias = segmentation_imbalance(counts, num_classes, config.class_weights)
    common = {
        "base_filters": config.base_filters,
        "depth": config.depth,
        "normalization": None if config.normalization == "none" else config.normalization,
        "output_bias": bias,
    }
    channels = _probability.output_channels(num_classes)
    if num_classes == 2:
        likelihood = bs.losses.WeightedBinaryCrossentropy(class_weights=weights)
        metrics = [bs.metrics.Dice(class_id=1), bs.metrics.Recall(class_id=1)]
    else:
        likelihood = bs.losses.WeightedCategoricalCrossentropy(class_weights=weights)
        metrics = []
    total_steps = steps_per_epoch * config.epochs
    rate = config.learning_rate
    if config.lr_schedule == "cosine" and total_steps >= 2:
        rate = bs.training.warmup_cosine_decay(config.learning_rate, total_steps)
    optimizer = keras.optimizers.Adam(rate, global_clipnorm=config.clipnorm)
    if config.bayesian_blocks == "none":
        model = bs.models.unet(tuple(input_shape), channels, **common)
        model.compile(optimizer=optimizer, loss=likelihood, metrics=metrics)
        return model, weights, bias
    model = bs.models.bayesian_unet(
        tuple(input_shape),
        channels,
        estimator=config.estimator,
        bayesian_blocks=config.bayesian_blocks,
        posterior_scale_init=config.posterior_scale_init,
        scale_multiplier=config.scale_multiplier,
        **common,
    )
    model.compile(
        optimizer=optimizer,
        loss=bs.ELBO(likelihood, _kl_scaling(config.kl_scaling, num_examples, steps_per_epoch)),
        metrics=metrics,
    )
    return model, weights, bias


@dataclasses.dataclass
class SegmentationRun:
    """What :func:`train_segmentation` returns: the model and how it was made.

    Attributes:
        model: the trained U-Net.
        config: the :class:`SegmentationConfig`, its class-dependent settings resolved.
        num_classes: 2 (one sigmoid output) or more (softmax).
        class_weights: the weights of the likelihood (None for "none").
        output_bias: the logits' initial bias.
        class_counts: the training labels' count per class.
        history: Keras' ``history.history``.
        recall_guarantee: None, or the
            :class:`bayesseg.recipes.RecallGuarantee` that
            :meth:`fit_recall_guarantee` fitted (saved in model.json).
    """

    model: Any
    config: SegmentationConfig
    num_classes: int
    class_weights: list[float] | None
    output_bias: list[float]
    class_counts: list[int]
    history: dict[str, list]
    recall_guarantee: Any = None

    def predict(
        self, images: Any, num_samples: int = NUM_SAMPLES, correct_for_class_weights: bool = False
    ):
        """``bs.uncertainty.predict_mc`` of ``images`` ``(N, *spatial, C)``; with
        ``correct_for_class_weights`` the class weights' shift is undone in every draw."""
        import bayesseg as bs

        weights = self.class_weights if correct_for_class_weights else None
        return bs.uncertainty.predict_mc(
            self.model,
            images,
            num_samples=num_samples,
            correct_for_class_weights=weights,
            verbose=0,
        )

    def fit_recall_guarantee(
        self, images: Any, masks: Any, recall_target: float, num_samples: int = NUM_SAMPLES
    ):
        """Fit and keep a recall guarantee on held-out ``images`` and ``masks``; returns it.

        :func:`fit_recall_guarantee`, each image predicted alone in windows of
        the model's input size, as ``bayesseg predict`` predicts with a model
        of this recipe (whole images for a model of any input size). The
        images must be ones the model was not trained on, standardised as the
        training images were.
        """
        size = tuple(self.model.input_shape[1:-1])
        self.recall_guarantee = fit_recall_guarantee(
            self.model,
            images,
            masks,
            recall_target,
            num_samples=num_samples,
            patch_size=lambda spatial: None if None in size else size,
        )
        return self.recall_guarantee

    def metadata(self) -> dict[str, Any]:
        """model.json's content for this run."""
        metadata = {
            "task": "segmentation",
            "num_classes": self.num_classes,
            "class_counts": self.class_counts,
            "class_weights": self.class_weights,
            "output_bias": self.output_bias,
            "config": self.config.to_dict(),
        }
        if self.recall_guarantee is not None:
            metadata["recall_guarantee"] = self.recall_guarantee.to_dict()
        return metadata

    def save(self, folder: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write ``model.keras`` and ``model.json`` (plus ``extra`` keys) into ``folder``,
        each under a temporary name then renamed, model.json last."""
        from bayesseg.recipes._saving import save_run

        return save_run(self.model, folder, {**self.metadata(), **(extra or {})})


def foreground_probability(mean: Any) -> np.ndarray:
    """The foreground score of Monte Carlo mean probabilities ``(..., K)``, as float64.

    One channel (a sigmoid output, binary masks): that probability, the
    ``<stem>_prob`` map of ``bayesseg predict``. ``K > 1`` channels (a
    softmax): ``1 - p(background)``, the probability that a pixel belongs to
    any foreground class (class 0 is the background).

    Example:

    >>> import numpy as np
    >>> from bayesseg.recipes import foreground_probability
    >>> foreground_probability(np.array([[0.2], [0.9]])).tolist()
    [0.2, 0.9]
    >>> foreground_probability(np.array([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0]])).tolist()
    [0.5, 0.0]
    """
    mean = np.asarray(mean, dtype=np.float64)
    return mean[..., 0] if mean.shape[-1] == 1 else 1.0 - mean[..., 0]


def fit_recall_guarantee(
    model,
    images: Any,
    masks: Any,
    recall_target: float,
    *,
    num_samples: int = NUM_SAMPLES,
    calibration=None,
    patch_size: Any = None,
    overlap: float = PREDICT_OVERLAP,
    batch_size: int = PREDICT_BATCH_SIZE,
    names: Sequence[str] | None = None,
):
    """A threshold on the foreground probability with an expected per-image recall >= target.

    Each held-out image is predicted alone as ``bayesseg predict`` predicts
    it (``bs.uncertainty.predict_mc(model, image[None], ...)`` with the same
    draws, windows and calibration), its score is
    :func:`foreground_probability` of the Monte Carlo mean, and
    :class:`bayesseg.calibration.ConformalRiskControl` at ``alpha = 1 -
    recall_target`` with ``risk="fnr"`` picks the highest threshold whose
    calibration risk passes the conformal rule. Then, for a new image with
    foreground exchangeable with the held-out images, the expected share of
    its foreground pixels with ``score >= threshold`` is at least
    ``recall_target`` (on average over the draw of the held-out images and
    the new one). Foreground is every label > 0; images without foreground
    are left out of the fit (and the guarantee is about images with
    foreground).

    The images must be held out of training (and of anything fitted on the
    same images that changes the ranking of the scores; a calibration map
    fitted on them, a map of each draw's logits with few parameters (Platt's
    two, monotone for a positive slope), has a small effect on
    exchangeability, but not nil).

    Args:
        model: the segmentation model (a U-Net of logits, or a
            ``DeepEnsemble`` of them).
        images: a list of images ``(*spatial, C)`` of any sizes, or an
            array ``(N, *spatial, C)``, standardised as for training.
        masks: their integer masks ``(*spatial)`` (or ``(*spatial, 1)``).
        recall_target: float in (0, 1), e.g. 0.9.
        num_samples: Monte Carlo draws per image. Default
            :data:`NUM_SAMPLES`, ``bayesseg predict``'s.
        calibration: None or the fitted ``LogitCalibrator`` that predict
            applies (``predict_mc(..., calibration=...)``).
        patch_size: None (whole images), a window size for every image, or a
            callable ``spatial -> window size or None``: predict's own choice
            per image (recorded as :data:`PREDICT_WINDOWS`; ``bayesseg
            train`` passes it).
        overlap, batch_size: ``predict_mc``'s, default predict's (0.5, 8).
        names: the images' names (kept in the guarantee), or None.

    Returns:
        A :class:`bayesseg.recipes.RecallGuarantee` (``unit="image"``) whose
        ``score`` records the draws, the calibration, the windows and the
        overlap.

    Raises:
        ValueError: fewer images with foreground than ``alpha`` needs
            (``bs.recipes.min_recall_items(recall_target)``; 9 for 0.9), a
            mask that does not match its image.

    Example:

    >>> import numpy as np
    >>> import bayesseg as bs
    >>> from bayesseg.recipes import fit_recall_guarantee
    >>> x, y = bs.data.synthetic_lesions(6, shape=(16, 16), seed=1)
    >>> model = bs.models.unet((16, 16, 1), 1, base_filters=2, depth=2)
    >>> g = fit_recall_guarantee(model, x, y[..., 0], 0.75, num_samples=1)
    >>> g.conformal.alpha, g.score["num_samples"], g.conformal.n_calibration_ <= 6
    (0.25, 1, True)
    """
    import bayesseg as bs
    from bayesseg.recipes._guarantee import RecallGuarantee

    check_int("num_samples", num_samples)
    if isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)):
        images = list(np.asarray(images))
    if isinstance(masks, np.ndarray) or not isinstance(masks, (list, tuple)):
        masks = list(np.asarray(masks))
    if len(images) != len(masks):
        raise argument_error("masks", f"hold one mask per image ({len(images)})", len(masks))
    scores, truths = [], []
    for k, (image, mask) in enumerate(zip(images, masks, strict=True)):
        image = np.asarray(image, dtype=np.float32)
        spatial = image.shape[:-1]
        mask = np.asarray(mask)
        if mask.shape not in (spatial, (*spatial, 1)):
            raise argument_error(f"masks[{k}]", f"have the image's shape {spatial}", mask.shape)
        window = patch_size(spatial) if callable(patch_size) else patch_size
        pred = bs.uncertainty.predict_mc(
            model,
            image[None],
            num_samples=num_samples,
            batch_size=batch_size,
            patch_size=window,
            overlap=overlap,
            calibration=calibration,
            verbose=0,
        )
        scores.append(foreground_probability(pred.mean[0]))
        truths.append(mask.reshape(spatial) > 0)
    score = {
        "definition": "foreground_probability of the Monte Carlo mean probabilities "
        "(p(foreground) for one sigmoid output, 1 - p(background) for a softmax), each "
        "image predicted alone as bayesseg predict does",
        "num_samples": int(num_samples),
        "calibrated": calibration is not None,
        "calibration": None if calibration is None else type(calibration).__name__,
        "overlap": float(overlap),
        "patch_size": PREDICT_WINDOWS if callable(patch_size) else patch_size,
    }
    return RecallGuarantee.fit(
        scores, truths, recall_target, unit="image", score=score, names=names
    )


def train_segmentation(
    x: Any,
    y: Any,
    config: SegmentationConfig | None = None,
    *,
    num_classes: int | None = None,
    counts: Sequence[float] | None = None,
    callbacks: Sequence[Any] = (),
    verbose: int = 0,
) -> SegmentationRun:
    """Train the segmentation recipe on images and integer masks held in memory.

    The class weights and output bias come from the masks' counts, the KL is
    scaled by the number of images (``config.kl_scaling``), and the model is
    seeded by ``config.seed`` (``bayesseg train`` streams folders of images
    through the same :func:`build_segmentation_model`).

    Args:
        x: float array ``(N, *spatial, C)``, spatial sizes divisible by
            ``2**(config.depth - 1)``.
        y: integer masks ``(N, *spatial)`` (or ``(N, *spatial, 1)``), labels
            in ``[0, num_classes)``.
        config: a :class:`SegmentationConfig` (default ``SegmentationConfig()``).
        num_classes: None (default: the largest label + 1, at least 2) or the
            number of classes.
        counts: None (default: counted from ``y``) or the count per class.
        callbacks: Keras callbacks for ``fit``.
        verbose: Keras' ``fit`` verbosity. Default 0.

    Returns:
        A :class:`SegmentationRun`.

    Raises:
        ValueError: for labels outside ``[0, num_classes)`` or a shape the
            U-Net does not accept, before training.

    Example:

    >>> import bayesseg as bs
    >>> from bayesseg.recipes import SegmentationConfig, train_segmentation
    >>> x, y = bs.data.synthetic_lesions(8, shape=(16, 16), seed=0)
    >>> run = train_segmentation(x, y[..., 0], SegmentationConfig(epochs=1, base_filters=2,
    ...                                                          depth=2, batch_size=4))
    >>> run.num_classes, run.config.class_weights, sorted(run.history)[:2]
    (2, 'balanced', ['dice', 'kl'])
    """
    import keras

    import bayesseg as bs

    config = SegmentationConfig() if config is None else config
    if not isinstance(config, SegmentationConfig):
        raise argument_error("config", "be a SegmentationConfig", type(config).__name__)
    x = np.asarray(x)
    y = np.asarray(y)
    if y.ndim == x.ndim and y.shape[-1] == 1:
        y = y[..., 0]
    if y.shape != x.shape[:-1]:
        raise argument_error(
            "y", f"hold one label per pixel of x, shape {x.shape[:-1]}", f"shape {y.shape}"
        )
    if num_classes is None:
        num_classes = max(2, int(y.max()) + 1)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    if y.min() < 0 or y.max() >= num_classes:
        raise argument_error(
            "y", f"hold labels in [0, {num_classes})", f"labels {int(y.min())}..{int(y.max())}"
        )
    if counts is None:
        counts = bs.imbalance.count_classes(y, num_classes=num_classes)
    config = config.resolve(num_classes)
    keras.utils.set_random_seed(config.seed)
    steps_per_epoch = -(-len(x) // config.batch_size)
    model, weights, bias = build_segmentation_model(
        config, x.shape[1:], num_classes, counts, len(x), steps_per_epoch
    )
    history = model.fit(
        x,
        y,
        batch_size=config.batch_size,
        epochs=config.epochs,
        verbose=verbose,
        callbacks=list(callbacks),
    )
    return SegmentationRun(
        model=model,
        config=config,
        num_classes=num_classes,
        class_weights=None if weights is None else [float(w) for w in weights],
        output_bias=np.asarray(bias, dtype=float).reshape(-1).tolist(),
        class_counts=[int(c) for c in np.asarray(counts)],
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
    )
