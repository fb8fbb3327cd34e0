"""``bayesseg demo`` at its defaults, written out with the public API for the benchmarks.

The benchmarks import no ``bayesseg.cli`` names (tests/test_imports.py). Where
one reproduces the demo, it takes the demo's settings from here: each
constant names where in the command line it comes from, and
tests/test_imports.py checks that the constants, the configs and the data
equal what the demo itself uses.

- :data:`DEMO_UNET`, :func:`segmentation_config`, :func:`unet_data`: the lesion
  and multiclass tasks (a Bayesian U-Net, ``bs.recipes.build_segmentation_model``);
- :data:`DEMO_SERIES`, :func:`series_config`, :func:`series_data`: the series
  (anomaly) task (``bs.recipes.train_series``);
- :func:`detector_scores`, :func:`zscore_baseline`: the scores the series
  demo reports for a detector, and its rolling z-score detector.
"""

from __future__ import annotations

from typing import Any

# bayesseg/cli/parser.py::_add_demo and _add_model_options (defaults=True):
# the demo's option defaults shared by its tasks.
DEMO_OPTIONS = {
    "base_filters": 8,
    "depth": 3,
    "estimator": "flipout",
    "clipnorm": 1.0,
    "size": 64,
    "background_fraction": 0.97,
    "length": 4096,
    "window": 512,
    "anomaly_kind": "mixed",
}

# bayesseg/cli/demo.py::_TASK_DEFAULTS (the lesion and multiclass columns) and
# _apply_task_defaults (held-out images: a quarter of the training ones, at
# least 4, or 200 for multiclass; 8 classes for multiclass). The posterior's
# start and scale multiplier are the recipe's class-dependent ones.
DEMO_UNET = {
    "lesion": {
        "num_images": 160,
        "num_test_images": 40,
        "num_classes": 2,
        "epochs": 12,
        "batch_size": 8,
        "class_weights": "inverse_sqrt",
        "learning_rate": 1e-3,
        "lr_schedule": "constant",
        "scale_multiplier": 20.0,
        "posterior_scale_init": 1e-3,
        "num_samples": 16,
    },
    "multiclass": {
        "num_images": 2560,
        "num_test_images": 200,
        "num_classes": 8,
        "epochs": 10,
        "batch_size": 8,
        "class_weights": "inverse_sqrt",
        "learning_rate": 1e-2,
        "lr_schedule": "cosine",
        "scale_multiplier": 2.0,
        "posterior_scale_init": 1e-2,
        "num_samples": 16,
    },
}

# bayesseg/cli/demo.py::_TASK_DEFAULTS (the anomaly column: 640 series) and
# _apply_task_defaults (held out: a quarter, at least 8), and
# bayesseg/cli/anomaly.py::VALIDATION_FRACTION (a tenth of the training
# series, at least 8, chooses the threshold). Training settings are
# SeriesConfig's defaults (bayesseg/cli/anomaly.py::series_config).
DEMO_SERIES = {
    "num_images": 640,
    "num_test_images": 160,
    "validation_fraction": 0.1,
    "min_validation_series": 8,
    "test_seed_offset": 10_000,
    "num_samples": 16,
}


def segmentation_config(task: str, seed: int = 0, **overrides):
    """The ``bs.recipes.SegmentationConfig`` the demo trains its U-Net with for ``task``.

    As ``bayesseg/cli/demo.py::_train_unet`` builds it: the task's epochs,
    batch, class weights and learning rate, the demo's width and depth, no
    normalisation, the KL per example.
    """
    import bayesseg as bs

    settings = DEMO_UNET[task]
    values = {
        "epochs": settings["epochs"],
        "batch_size": settings["batch_size"],
        "base_filters": DEMO_OPTIONS["base_filters"],
        "depth": DEMO_OPTIONS["depth"],
        "normalization": "none",
        "estimator": DEMO_OPTIONS["estimator"],
        "class_weights": settings["class_weights"],
        "learning_rate": settings["learning_rate"],
        "lr_schedule": settings["lr_schedule"],
        "scale_multiplier": settings["scale_multiplier"],
        "posterior_scale_init": settings["posterior_scale_init"],
        "clipnorm": DEMO_OPTIONS["clipnorm"],
        "kl_scaling": "per-example",
        "seed": seed,
    }
    return bs.recipes.SegmentationConfig(**(values | overrides))


def unet_data(
    task: str,
    seed: int = 0,
    num_images: int | None = None,
    num_test: int | None = None,
    size: int | None = None,
):
    """``(x, y, x_test, y_test, num_classes)``: the demo's images for ``task``
    (``bayesseg/cli/demo.py::_demo_data``; the sizes default to the demo's)."""
    import numpy as np

    import bayesseg as bs

    settings = DEMO_UNET[task]
    n = settings["num_images"] if num_images is None else num_images
    n_test = settings["num_test_images"] if num_test is None else num_test
    side = DEMO_OPTIONS["size"] if size is None else size
    shape = (side, side)
    test_seed = seed + DEMO_SERIES["test_seed_offset"]
    if task == "lesion":
        x, y = bs.data.synthetic_lesions(n, shape=shape, seed=seed)
        xt, yt = bs.data.synthetic_lesions(n_test, shape=shape, seed=test_seed)
        return x, y[..., 0].astype(np.int32), xt, yt[..., 0].astype(np.int32), 2
    kwargs = {
        "num_classes": settings["num_classes"],
        "background_fraction": DEMO_OPTIONS["background_fraction"],
    }
    x, y = bs.data.synthetic_multiclass_masks(n, shape, seed=seed, **kwargs)
    xt, yt = bs.data.synthetic_multiclass_masks(n_test, shape, seed=test_seed, **kwargs)
    return x, y, xt, yt, settings["num_classes"]


def series_config(seed: int = 0, length: int | None = None, **overrides):
    """The ``bs.recipes.SeriesConfig`` of ``bayesseg demo --task series --seed seed``
    (``bayesseg/cli/anomaly.py::series_config``), for series of ``length`` steps.

    ``overrides`` set other fields (None keeps the demo's value).
    """
    import bayesseg as bs

    length = DEMO_OPTIONS["length"] if length is None else length
    width = DEMO_OPTIONS["base_filters"]
    values = {
        "window": min(DEMO_OPTIONS["window"], length),
        "conv_filters": (2 * width,) * 2,
        "units": (4 * width,),
        "estimator": DEMO_OPTIONS["estimator"],
        "clipnorm": DEMO_OPTIONS["clipnorm"],
        "num_samples": DEMO_SERIES["num_samples"],
        "seed": seed,
    }
    values |= {k: v for k, v in overrides.items() if v is not None}
    return bs.recipes.SeriesConfig(**values)


def validation_split(x, y):
    """``(x, y, x_val, y_val)``: the demo's validation split of its training series.

    A copy of ``bayesseg/cli/anomaly.py::_validation_split`` (the demo's, not
    ``bs.recipes.split_series``): a tenth of the series (at least 8),
    stratified so that both parts hold anomalous series, the last series of
    each kind held out.
    """
    import numpy as np

    anomalous = np.flatnonzero(y.any(axis=1))
    normal = np.flatnonzero(~y.any(axis=1))
    fraction = DEMO_SERIES["validation_fraction"]
    num_val = max(DEMO_SERIES["min_validation_series"], round(fraction * len(x)))
    if len(anomalous) < 2 or num_val >= len(x):
        raise ValueError(
            f"{len(x)} series hold {len(anomalous)} anomalous ones: too few for the demo's "
            f"split ({num_val} validation series, at least 2 anomalous series)."
        )
    val_anomalous = min(max(1, round(fraction * len(anomalous))), len(anomalous) - 1)
    val_normal = normal[len(normal) - min(num_val - val_anomalous, len(normal)) :]
    val = np.sort(np.concatenate([anomalous[-val_anomalous:], val_normal]))
    train = np.setdiff1d(np.arange(len(x)), val)
    return x[train], y[train], x[val], y[val]


def series_data(
    seed: int = 0,
    num_series: int | None = None,
    num_test: int | None = None,
    length: int | None = None,
):
    """``(x, y, x_val, y_val, x_test, y_test)``: the series demo's data
    (``bayesseg/cli/anomaly.py::_anomaly_data``; the sizes default to the demo's)."""
    import bayesseg as bs

    kwargs = {
        "length": DEMO_OPTIONS["length"] if length is None else length,
        "kind": DEMO_OPTIONS["anomaly_kind"],
    }
    n = DEMO_SERIES["num_images"] if num_series is None else num_series
    n_test = DEMO_SERIES["num_test_images"] if num_test is None else num_test
    x, y = bs.data.synthetic_anomaly_series(n, seed=seed, **kwargs)
    xt, yt = bs.data.synthetic_anomaly_series(
        n_test, seed=seed + DEMO_SERIES["test_seed_offset"], **kwargs
    )
    return (*validation_split(x, y), xt, yt)


def detector_scores(labels, scores, threshold: float) -> dict[str, Any]:
    """What the series demo reports for a detector (``bayesseg/cli/anomaly.py::_detector_scores``).

    The event F1 at ``threshold`` (``bs.metrics.event_f1``), its chance rows
    (``bs.metrics.event_chance`` at the flagged rate), the average precision
    (None without anomalous steps), and the per-step recall, precision and F1
    of the anomalous class.
    """
    import bayesseg as bs

    events = bs.metrics.event_f1(labels, scores, threshold=threshold)
    flags = scores >= threshold
    counts = bs.metrics.confusion_counts(labels.astype(int), flags.astype(int), 2)
    anomaly = bs.metrics.per_class_scores(counts)[1]
    return {
        "events": events,
        "chance": bs.metrics.event_chance(labels, rate=events["flagged_fraction"]),
        "anomaly_average_precision": (
            bs.metrics.average_precision(labels, scores) if labels.any() else None
        ),
        "anomaly_recall": anomaly["recall"],
        "anomaly_precision": anomaly["precision"],
        "anomaly_f1": anomaly["dice"],
    }


def zscore_baseline(xv, yv, xt, yt) -> dict[str, Any]:
    """The rolling z-score detector (``bs.baselines.rolling_zscore``), its threshold the
    best validation event F1, scored on the held-out series
    (``bayesseg/cli/anomaly.py::_zscore_baseline``)."""
    import bayesseg as bs

    chosen = bs.metrics.choose_threshold(yv > 0.5, bs.baselines.rolling_zscore(xv))
    return {
        "threshold": chosen["threshold"],
        **detector_scores(yt > 0.5, bs.baselines.rolling_zscore(xt), chosen["threshold"]),
    }
