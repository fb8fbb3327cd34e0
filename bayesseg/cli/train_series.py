"""``bayesseg train --task series``: the series recipe on a folder of the user's series.

Parse -> :class:`bayesseg.recipes.SeriesConfig` -> read and check every
series and label file -> :func:`bayesseg.recipes.train_series` -> write
model.keras, model.json (the decision rule ``bayesseg predict`` applies),
training.csv and history.json, and print the validation scores next to the
rolling z-score's on the same validation series.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from bayesseg.cli.options import _TRAIN_OPTIONS
from bayesseg.cli.report import _fmt, _versions, _write_json

# Options of `train` that mean nothing to the series recipe: given explicitly,
# they are an error rather than silently ignored.
_SEGMENTATION_ONLY = (
    "patch_size",
    "zscore",
    "patches_per_image",
    "depth",
    "normalization",
    "lr_schedule",
    "kl_scaling",
    "calibration_split",
    "val_samples",
    "monitor",
    "patience",
    "min_delta",
)
# train options that set the SeriesConfig field of the same name.
_FIELDS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "clipnorm",
    "class_weights",
    "estimator",
    "posterior_scale_init",
    "scale_multiplier",
    "window",
    "val_fraction",
    "seed",
)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The options set on the command line or in --config (not the defaults)."""
    from bayesseg.cli.train import _load_config

    given = _load_config(args.config) if args.config else {}
    for name in _TRAIN_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            given[name] = value
    return given


def series_config(args: argparse.Namespace, options: dict[str, Any]):
    """The :class:`SeriesConfig` of the command: its defaults, overridden by what was given."""
    from bayesseg.recipes import SeriesConfig

    given = _given(args)
    wrong = [name for name in _SEGMENTATION_ONLY if name in given]
    if options["ensemble"] > 1:
        wrong.append("ensemble")
    if given.get("num_classes") not in (None, 2):
        wrong.append("num_classes")
    # A tagger is Bayesian ("all") or not ("none"); the other choices name U-Net blocks.
    if given.get("bayesian_blocks") not in (None, "all", "none"):
        wrong.append("bayesian_blocks")
    if wrong:
        flags = ", ".join("--" + name.replace("_", "-") for name in wrong)
        raise ValueError(
            f"Argument(s) {flags} apply to --task segmentation (U-Net options); the series "
            "recipe does not use them. Received: --task series"
        )
    values = {name: given[name] for name in _FIELDS if name in given}
    if "val_fraction" in values and values["val_fraction"] == 0.0:
        raise ValueError(
            "Argument --val-fraction must be > 0 for --task series: the decision threshold "
            "is chosen on held-out series (or pass --val-images and --val-masks). "
            "Received: --val-fraction 0"
        )
    if "base_filters" in given:
        values["conv_filters"] = (2 * given["base_filters"],) * 2
        values["units"] = (4 * given["base_filters"],)
    if given.get("bayesian_blocks") == "none":
        values["bayesian"] = False
    return SeriesConfig(**values)


def read_labelled_series(folder, masks, label_column, nan_policy: str, what: str):
    """Every series of ``folder`` and its labels, all read and checked before any work.

    Returns ``(files, series, labels, label_files)`` (``label_files`` empty
    when the labels are a CSV column).
    """
    import bayesseg as bs

    files = bs.data.list_series(folder, what)
    if label_column is None and masks is None:
        raise ValueError(
            f"Argument --masks (or --label-column for .csv series) is required: the series in "
            f"{os.fspath(folder)!r} need per-step labels."
        )
    label_files = None if label_column is not None else bs.data.pair_series_labels(files, masks)
    series, labels = [], []
    features = None
    for k, path in enumerate(files):
        x, y = bs.data.read_series(path, label_column=label_column, nan_policy=nan_policy)
        if label_files is not None:
            y = bs.data.read_labels(label_files[k], length=len(x))
        if features is None:
            features = x.shape[1]
        elif x.shape[1] != features:
            raise ValueError(
                f"Series {path.name!r} has {x.shape[1]} feature(s), {files[0].name!r} "
                f"{features}: every series needs the same features."
            )
        series.append(x)
        labels.append(y)
    return files, series, labels, label_files or []


def _zscore_on(xv, yv) -> dict[str, Any] | None:
    """The rolling z-score detector's best event F1 on the validation series."""
    import bayesseg as bs

    scores = bs.baselines.rolling_zscore(xv)
    try:
        chosen = bs.metrics.choose_threshold(yv, scores)
    except ValueError:
        return None
    return {
        "description": "|z-score| of the first difference over a centred window of "
        f"{bs.baselines.ZSCORE_WINDOW} steps (bs.baselines.rolling_zscore), threshold of "
        "the best validation event F1",
        "threshold": chosen["threshold"],
        "f1": chosen["f1"],
        "average_precision": bs.metrics.average_precision(yv, scores),
    }


# Options that do not change what is trained: where it is written and where it
# runs (the data are compared by their fingerprint, not by their folders' paths).
_NOT_COMPARED = ("out", "strategy")


def _resolved(config, options: dict[str, Any]) -> dict[str, Any]:
    """model.json's "config": the recipe's settings and how the files were read."""
    return {
        "task": "series",
        **config.to_dict(),
        "label_column": options["label_column"],
        "nan_policy": options["nan_policy"],
        "validation_folder": options["val_images"] is not None,
        "recall_target": options["recall_target"],
    }


def _check_recall_items(options: dict[str, Any], y_val) -> None:
    """``--recall-target R`` needs ``bs.recipes.min_recall_items(R, "series")`` validation
    series with an event: else an error, before training."""
    import bayesseg as bs

    target = options["recall_target"]
    if target is None:
        return
    needed = bs.recipes.min_recall_items(target, "series")
    with_events = sum(bool(labels.any()) for labels in y_val)
    if with_events < needed:
        where = (
            f"--val-images {options['val_images']!r}"
            if options["val_images"] is not None
            else "the validation split (--val-fraction)"
        )
        raise ValueError(
            f"Argument --recall-target {target:g} needs at least {needed} validation series "
            f"with an event (conformal risk control at alpha = 1 - R = "
            f"{round(1.0 - target, 12):g} needs n >= 1 / alpha - 1); {where} holds "
            f"{len(y_val)} series, {with_events} with an event. Hold out more series "
            "(a larger --val-fraction, more series) or lower --recall-target."
        )


def _callbacks(out: Path, epochs: int, steps: int, metadata: dict):
    """The divergence guard (first), resume backup, checkpoint, CSV log, model.json."""
    import keras

    from bayesseg.cli import runs

    guard = runs.DivergenceGuard(epochs, steps)
    recorder = runs.RunRecorder(out / "model.json", metadata)
    callbacks = [
        guard,
        keras.callbacks.BackupAndRestore(os.fspath(out / runs.BACKUP)),
        keras.callbacks.ModelCheckpoint(os.fspath(out / "model.keras")),
        runs.EpochLog(out / "training.csv"),
        recorder,
    ]
    return callbacks, guard, recorder


def train_series_command(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """Train the series recipe into ``options["out"]`` (see the module's docstring).

    The folder decides first (:func:`bayesseg.cli.runs.prepare_out`): train,
    resume an interrupted run ("resuming from epoch k of n"), nothing to do
    for a finished run of the same settings and files, or a one-line error
    suggesting ``--overwrite``. A non-finite loss ends in one line naming the
    epoch, step and term (exit code 2), the folder keeping the last finished
    epoch.
    """
    start = time.perf_counter()
    import bayesseg as bs
    from bayesseg.cli import runs

    # Before any TensorFlow op: a multi-worker strategy must come first.
    strategy = bs.training.resolve_strategy(options["strategy"])
    config = series_config(args, options)
    files, series, labels, label_files = read_labelled_series(
        options["images"],
        options["masks"],
        options["label_column"],
        options["nan_policy"],
        "--images",
    )
    inputs = [*files, *label_files]
    validation = None
    if options["val_images"] is not None:
        val_files, xv, yv, val_labels = read_labelled_series(
            options["val_images"],
            options["val_masks"],
            options["label_column"],
            options["nan_policy"],
            "--val-images",
        )
        validation = (xv, yv)
        inputs += [*val_files, *val_labels]
    shortest = min(len(s) for s in series)
    if shortest < config.window:
        name = files[min(range(len(series)), key=lambda i: len(series[i]))].name
        raise ValueError(
            f"Series {name!r} holds {shortest} steps, fewer than a training window of "
            f"{config.window}: pass a smaller --window (windows never cross a series' end)."
        )
    data = bs.recipes.prepare_series(series, labels, config, validation=validation)
    _check_recall_items(options, data.y_val)
    out = runs.worker_out(strategy, Path(options["out"]))
    resolved = _resolved(config, options)
    fingerprint = runs.input_fingerprint(inputs)
    plan = runs.prepare_out(
        out,
        resolved,
        fingerprint,
        bool(args.overwrite),
        epochs=config.epochs,
        ignore=_NOT_COMPARED,
        skip=runs.WORKER_FOLDERS,
    )
    if plan.action == "done":
        return 0
    steps = data.steps_per_epoch(config.batch_size)
    metadata = {
        "task": "series",
        "config": resolved,
        runs.RUN_KEY: runs.run_record(
            fingerprint,
            config.epochs,
            epochs_finished=plan.initial_epoch,
            strategy=runs.strategy_record(options["strategy"], strategy),
        ),
    }
    runs.write_json(out / "model.json", metadata)
    callbacks, guard, recorder = _callbacks(out, config.epochs, steps, metadata)
    if not args.quiet:
        total = sum(len(s) for s in series)
        events = bs.metrics.event_f1(labels, labels)["true_events"]
        print(
            f"bayesseg train: {len(series)} series ({total} steps, {series[0].shape[1]} "
            f"feature(s), {events} events, {100 * sum(t.sum() for t in labels) / total:.3f}% "
            f"anomalous steps); the series recipe: {len(data.x_windows)} windows of "
            f"{config.window}, {steps} steps per epoch, {config.epochs} epochs"
        )
    with runs.guarded_training(out, plan, guard, recorder):
        run = bs.recipes.train_series(
            series,
            labels,
            config,
            data=data,
            callbacks=callbacks,
            strategy=strategy,
            verbose=0 if args.quiet else 2,
        )
    if validation is None:
        xv = [series[i] for i in run.val_index]
        yv = [labels[i] for i in run.val_index]
        names = [files[i].name for i in run.val_index]
    else:
        names = None
    baseline = _zscore_on(xv, yv)
    if options["recall_target"] is not None:
        named = names if validation is None else [path.name for path in val_files]
        guarantee = run.fit_recall_guarantee(xv, yv, options["recall_target"], names=named)
        if not args.quiet:
            fit = guarantee.conformal
            print(
                f"bayesseg train: recall guarantee (--recall-target "
                f"{guarantee.recall_target:g}): threshold {fit.threshold_:.4g} on "
                f"{fit.n_calibration_} validation series with an event: their mean share of "
                f"events found {1 - fit.calibration_risk_:.4g}, "
                f"{100 * fit.flagged_fraction_:.3g}% of their steps flagged"
            )
    metadata[runs.RUN_KEY].update(finished=True, epochs_finished=recorder.epochs_finished)
    extra = {
        "config": resolved,
        runs.RUN_KEY: metadata[runs.RUN_KEY],
        "validation_series_names": names,
        "baseline_zscore": baseline,
        "training_seconds": time.perf_counter() - start,
        "files": {"series": len(files), "label_column": options["label_column"]},
        "versions": _versions(),
    }
    run.save(out, extra)
    _write_json(out / "history.json", run.history)
    if run.threshold is None:
        raise ValueError(
            f"{run.decision['error']} The trained model is saved in {out / 'model.keras'} "
            "without a threshold (model.json: decision.threshold null; bayesseg predict "
            "needs --threshold)."
        )
    v = run.decision["validation"]
    floor = (
        ""
        if baseline is None
        else f"; rolling z-score on the same series: event F1 {_fmt(baseline['f1'])}"
    )
    print(
        f"bayesseg train: wrote {out / 'model.keras'} and model.json after "
        f"{time.perf_counter() - start:.0f} s; threshold {run.threshold:.4g} (validation event "
        f"F1 {_fmt(v['f1'])}, recall {_fmt(v['recall'])}, precision {_fmt(v['precision'])}, "
        f"{100 * v['flagged_fraction']:.3f}% of steps flagged, on {len(xv)} series{floor})"
    )
    return 0
