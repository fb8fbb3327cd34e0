"""``bayesseg train``: the options (flags over a TOML config), the checks that
run before training, the seeded calibration split, training with checkpoints
and the calibration fitted on the held-out images.

What a rerun does with ``--out`` (resume, nothing to do, refuse, ``--overwrite``),
the divergence guard and ``training.csv`` come from :mod:`bayesseg.cli.runs`;
``--strategy`` from ``bs.training.resolve_strategy`` (Keras' fit on the default
strategy, ``bs.training.fit_distributed`` under any other).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import tomllib
from pathlib import Path
from typing import Any

from bayesseg._tiling import check_unet_shape
from bayesseg.cli.options import _TRAIN_OPTIONS, _UsageError, canonical_task
from bayesseg.cli.report import _final_logs, _finite, _versions, _write_json
from bayesseg.cli.splits import _calibration_split
from bayesseg.cli.training import (
    _build_model,
    _expand_patch,
    _gradient_callback,
)
from bayesseg.recipes.segmentation import NUM_SAMPLES


# --------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------
def _parse_config_value(name: str, value: Any) -> Any:
    parse = _TRAIN_OPTIONS[name][0]
    if name == "patch_size":
        values = value if isinstance(value, list) else [value]
        return [parse(str(v)) for v in values]
    return parse(str(value))


def _load_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"Config file {path!r} is not valid TOML: {err}") from err
    if isinstance(raw.get("train"), dict):
        raw = {**{k: v for k, v in raw.items() if k != "train"}, **raw["train"]}
    config = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in _TRAIN_OPTIONS:
            raise ValueError(
                f"Config file {path!r} has an unknown key {key!r}; known keys: "
                f"{', '.join(sorted(_TRAIN_OPTIONS))}."
            )
        try:
            config[name] = _parse_config_value(name, value)
        except argparse.ArgumentTypeError as err:
            raise ValueError(f"Config file {path!r}: {key} {err}") from err
    return config


def _resolve_train_options(args: argparse.Namespace) -> dict[str, Any]:
    config = _load_config(args.config) if args.config else {}
    options = {}
    for name, (_, default) in _TRAIN_OPTIONS.items():
        value = getattr(args, name)
        options[name] = value if value is not None else config.get(name, default)
    series = canonical_task(options["task"]) == "series"
    if not series and options["ensemble"] > 1 and options["strategy"] == "multiworker":
        raise ValueError(
            f"Arguments --ensemble {options['ensemble']} and --strategy multiworker cannot "
            "be combined (every worker would write the ensemble into the same --out); use "
            "--strategy mirrored (the GPUs of one machine) or default."
        )
    if not series and options["recall_target"] is not None and not options["calibration_split"]:
        given = " (validation images choose the model, so they cannot serve)"
        raise ValueError(
            f"Argument --recall-target {options['recall_target']:g} needs --calibration-split "
            "FRACTION: the recall guarantee is fitted on held-out images that training never "
            "saw" + (given if _validated(options) else "") + ". Received: --recall-target "
            "without --calibration-split"
        )
    for name in ("images", "masks"):
        if name == "masks" and series and options["label_column"] is not None:
            continue  # the labels are a column of each CSV series
        if options[name] is None:
            raise _UsageError(
                f"bayesseg train: error: --{name} is required (on the command line or in "
                "the config file) (see bayesseg train --help)"
            )
    return options


# --------------------------------------------------------------------------
# Checks before training
# --------------------------------------------------------------------------
def _check_patch(options: dict, scan) -> tuple[int, ...] | None:
    rank = scan.spatial_rank
    patch = options["patch_size"]
    if patch is not None:
        expanded = _expand_patch(patch, rank)
        if expanded is None:
            raise ValueError(
                f"Argument --patch-size needs 1 or {rank} values for {rank}D images. "
                f"Received: {patch}"
            )
        shape, what = expanded, "--patch-size"
    else:
        for name, shape in zip(scan.names, scan.shapes, strict=True):
            if shape != scan.shapes[0]:
                raise ValueError(
                    f"Image {name!r} has shape {shape}, unlike {scan.shapes[0]} of "
                    f"{scan.names[0]!r}: pass --patch-size to train on mixed sizes."
                )
        shape, what = scan.shapes[0], "the image shape (no --patch-size)"
    check_unet_shape(
        shape,
        options["depth"],
        lambda divisor: (
            f"{what} {tuple(shape)} must be divisible by 2**(depth-1) = {divisor} for "
            f"--depth {options['depth']}; choose another --patch-size or --depth."
        ),
    )
    return None if patch is None else shape


# --------------------------------------------------------------------------
# The calibration fitted after training
# --------------------------------------------------------------------------
def _fit_calibration(model, options: dict, held_scan, patch, num_classes: int, quiet: bool):
    """Fit Platt / temperature scaling on the held-out images; its model.json entry."""
    import keras
    import numpy as np

    import bayesseg as bs

    dataset = bs.data.folder_dataset(
        options["val_images"] or options["images"],
        options["val_masks"] or options["masks"],
        patch_size=patch,
        batch_size=options["batch_size"],
        shuffle=False,
        patches="grid",  # every held-out voxel once (whole images without a patch)
        scan=held_scan,
        nan_policy=options["nan_policy"],
    )
    # A class absent from the held-out masks has an unbounded bias: fit the
    # temperature alone then, rather than fail after training.
    fit_bias = bool(np.all(np.asarray(held_scan.class_counts)[:num_classes] > 0))
    # predict's draws: the map is fitted to the mean of the draws predict reports.
    draws = NUM_SAMPLES
    calibration = bs.calibration.fit_calibration(
        model, dataset, num_samples=draws, seed=options["seed"], fit_bias=fit_bias
    )
    result = dict(calibration.fit_result)
    if not quiet:
        print(
            f"bayesseg train: fitted {type(calibration).__name__} on "
            f"{len(held_scan.names)} held-out image(s): NLL {result['nll_before']:.4g} -> "
            f"{result['nll_after']:.4g} nats per pixel"
            + ("" if fit_bias else " (temperature only: a class is absent from them)")
        )
    return {
        "kind": type(calibration).__name__,
        "config": keras.saving.serialize_keras_object(calibration),
        "held_out_images": list(held_scan.names),
        "num_samples": draws,
        "fit": result,
    }


def _fit_recall_guarantee(model, options: dict, held_scan, patch, metadata: dict, quiet: bool):
    """--recall-target: the recall guarantee on the held-out images, each scored as
    ``bayesseg predict`` scores it (its draws, windows, z-score and the calibration
    in ``metadata``, loaded as predict loads it); its model.json entry
    (``bs.recipes.fit_recall_guarantee``)."""
    import bayesseg as bs
    from bayesseg.cli.predict import _calibrator, _zscore
    from bayesseg.cli.training import _window

    # predict's own readings of model.json's calibration and z-score, so the
    # scores are predict's.
    entry = metadata.get("calibration")
    calibration = _calibrator(entry, Path("model.json")) if entry else None
    zscore = _zscore(metadata, Path("model.json")) or ()
    rank = metadata["spatial_rank"]
    images = [
        bs.data.standardize_image(
            bs.data.read_image(path, spatial_rank=rank, nan_policy=options["nan_policy"]),
            *zscore,
        )
        for path in held_scan.image_paths
    ]
    masks = [bs.data.read_mask(path) for path in held_scan.mask_paths]
    guarantee = bs.recipes.fit_recall_guarantee(
        model,
        images,
        masks,
        options["recall_target"],
        calibration=calibration,
        patch_size=lambda spatial: _window(None, spatial, model, patch, options["depth"]),
        names=list(held_scan.names),
    )
    fit = guarantee.conformal
    if not quiet:
        left_out = f" ({fit.n_skipped_} without foreground left out)" if fit.n_skipped_ else ""
        print(
            f"bayesseg train: recall guarantee (--recall-target {guarantee.recall_target:g}): "
            f"threshold {fit.threshold_:.4g} on {fit.n_calibration_} held-out image(s) with "
            f"foreground{left_out}: their mean recall {1 - fit.calibration_risk_:.4g}, "
            f"{100 * fit.flagged_fraction_:.3g}% of their pixels flagged"
        )
    return guarantee.to_dict()


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------
def _tensorboard_installed() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _check_training_log(path: Path) -> None:
    """A training.csv left by an earlier run, which the CSV log appends to, must be text
    whose first line is a header: else say so, naming it, before any training."""
    if not path.is_file():
        return
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline()
            f.read()  # a damaged byte anywhere would stop the log at the end of the run
    except (UnicodeDecodeError, OSError) as err:
        raise ValueError(
            f"Cannot read {os.fspath(path)!r}: the training log is damaged ({err}); "
            "move it away or use another --out."
        ) from err
    if header and not header.startswith("epoch"):
        raise ValueError(
            f"Cannot read {os.fspath(path)!r}: a training log starts with an 'epoch,...' "
            f"header, this one with {header[:40]!r}; move it away or use another --out."
        )


def _callbacks(out: Path, diagnostics, validation=None, run=None) -> list:
    """The divergence guard (first: nothing non-finite reaches a checkpoint),
    validation (it adds the val_* logs the others read), resume backup,
    checkpoint, CSV log, model.json (after the checkpoint it describes), the
    diagnostics and TensorBoard when installed. ``run``: the guard and the
    model.json recorder (:mod:`bayesseg.cli.runs`)."""
    import keras

    from bayesseg.cli import runs

    guard, recorder = run if run is not None else (None, None)
    callbacks = [] if guard is None else [guard]
    callbacks += [] if validation is None else [validation]
    callbacks += [
        keras.callbacks.BackupAndRestore(os.fspath(out / runs.BACKUP)),
        keras.callbacks.ModelCheckpoint(os.fspath(out / "model.keras")),
        runs.EpochLog(out / "training.csv"),
    ]
    if recorder is not None:
        callbacks.append(recorder)
    if diagnostics is not None:
        callbacks.append(diagnostics)
    if _tensorboard_installed():
        callbacks.append(keras.callbacks.TensorBoard(os.fspath(out / "logs")))
    return callbacks


def _training_dataset(options: dict, patch, train_scan, distributed: bool = False):
    """The shuffled training batches (global batches); ``distributed``: shard them
    by data across workers (each worker reads every file and keeps its part of
    each global batch: the generator cannot be split by file)."""
    import tensorflow as tf

    import bayesseg as bs

    dataset = bs.data.folder_dataset(
        options["images"],
        options["masks"],
        patch_size=patch,
        batch_size=options["batch_size"],
        shuffle=True,
        seed=options["seed"],
        patches_per_image=options["patches_per_image"],
        scan=train_scan,
        nan_policy=options["nan_policy"],
    )
    if distributed:
        shard = tf.data.Options()
        shard.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(shard)
    return dataset


def _metadata(options, scans, patch, counts, num_examples: int, outputs) -> dict[str, Any]:
    """model.json: what predict needs besides the weights (calibration filled in later)."""
    import numpy as np

    scan, train_scan, held_scan = scans
    num_classes, weights, bias = outputs
    return {
        "num_classes": num_classes,
        "spatial_rank": scan.spatial_rank,
        "channels": scan.channels,
        "patch_size": None if patch is None else list(patch),
        "normalize": _zscore_entry(options, train_scan),
        "class_counts": [int(c) for c in counts],
        "class_weights": None if weights is None else [float(w) for w in weights],
        "output_bias": np.asarray(bias).tolist(),
        "num_examples_per_epoch": num_examples,
        "train_images": None if held_scan is None else list(train_scan.names),
        "validation": _validation_entry(options, held_scan),
        "calibration": None,
        "recall_guarantee": None,
        "config": options,
        "versions": _versions(),
    }


def _validated(options: dict) -> bool:
    return bool(options["val_fraction"]) or options["val_images"] is not None


def _validation_entry(options: dict, held_scan) -> dict | None:
    """model.json's "validation": the images, draws and early-stopping rule."""
    if not _validated(options):
        return None
    return {
        "images": list(held_scan.names),
        "source": "val_images" if options["val_images"] is not None else "val_fraction",
        "num_samples": options["val_samples"],
        "monitor": options["monitor"],
        "patience": options["patience"],
        "min_delta": options["min_delta"],
        "best_model": "model_best.keras",
    }


def _write_metadata(out: Path, metadata: dict, name: str = "model.json") -> None:
    with open(out / name, "w") as f:
        json.dump(metadata, f, indent=2)


def _print_start(scans, options: dict, num_classes: int, counts, steps: int, run=None) -> None:
    scan, train_scan, held_scan = scans
    purpose = "validation" if _validated(options) else "calibration"
    held = "" if held_scan is None else f" ({len(held_scan.names)} held out for {purpose})"
    where = ""
    if run is not None and run["strategy"]["strategy"] != "default":
        placed = run["strategy"]
        where = f", {placed['strategy']} over {placed['replicas']} replica(s)"
        where += f" on {placed['workers']} workers" if placed["workers"] > 1 else ""
    print(
        f"bayesseg train: {len(train_scan.names)} training images{held} ({scan.spatial_rank}D, "
        f"{scan.channels} channel(s)), {num_classes} classes, class counts "
        f"{[int(c) for c in counts]}, {steps} steps per epoch (global batch "
        f"{options['batch_size']}{where})"
    )


def _save_history(history, diagnostics, out: Path) -> None:
    """history.json (when epochs ran), training.png (when it logged the ELBO's
    parts), gradients.png (when recorded)."""
    import bayesseg as bs

    if history.history:
        # training.png plots the ELBO's parts (nll, kl): a Bayesian model's logs.
        if "kl" in history.history:
            bs.plots.plot_training(history, out / "training.png")
        _write_json(out / "history.json", history.history)
    if diagnostics is not None and diagnostics.records:
        bs.plots.plot_gradient_contributions(diagnostics.records, out / "gradients.png")


def _validation(options: dict, held_scan, out: Path, setup: dict):
    """The validation callback (None without a validation set) and whether this
    run resumes an interrupted one (BackupAndRestore's weights are on disk)."""
    if not _validated(options):
        return None
    from bayesseg.cli import validation

    resuming = (out / "backup" / "latest.weights.h5").is_file()
    return validation.validation_callback(setup, held_scan, out, options, resuming)


def _finish_validation(callback, options, held_scan, patch, metadata, out: Path, quiet: bool):
    """model_best.json: the metadata, the best epoch and the calibration fitted
    on the validation images with the best model."""
    import keras

    from bayesseg.cli.validation import BEST_MODEL

    state = callback.state
    best_path = out / BEST_MODEL
    if state["best_epoch"] is None or not best_path.is_file():
        print(f"bayesseg train: no finite {state['monitor']}: {BEST_MODEL} was not written")
        return
    if state["stopped_epoch"] is not None and not quiet:
        print(
            f"bayesseg train: stopped early after epoch {state['stopped_epoch']} "
            f"({options['patience']} epoch(s) without improvement of {state['monitor']})"
        )
    best = keras.saving.load_model(best_path, compile=False)
    best_metadata = {**metadata, "best": _finite(dict(state))}
    best_metadata["calibration"] = _finite(
        _fit_calibration(best, options, held_scan, patch, metadata["num_classes"], quiet)
    )
    _write_metadata(out, best_metadata, "model_best.json")
    metadata["best"] = best_metadata["best"]
    _write_metadata(out, metadata)
    print(
        f"bayesseg train: wrote {best_path} (epoch {state['best_epoch']}, "
        f"{state['monitor']} {state['best_value']:.4g})"
    )


def _scan_and_split(options: dict):
    """The image scan, the patch, the held-out split (seeded by ``options["seed"]``)
    and the training counts."""
    import bayesseg as bs

    scan = bs.data.scan_folder(
        options["images"],
        options["masks"],
        options["num_classes"],
        nan_policy=options["nan_policy"],
    )
    num_classes = options["num_classes"] or max(2, len(scan.class_counts))
    patch = _check_patch(options, scan)
    train_scan, held_scan, counts = _calibration_split(options, scan, num_classes)
    if options["zscore"] == "dataset":
        # One z-score for every image, fitted on the training images only.
        statistics = train_scan.pooled_statistics()
        scan, train_scan = (s.with_statistics(*statistics) for s in (scan, train_scan))
        if held_scan is not None:
            held_scan = held_scan.with_statistics(*statistics)
    return scan, num_classes, patch, (train_scan, held_scan, counts)


def _zscore_entry(options: dict, train_scan) -> str | dict[str, Any]:
    """model.json's "normalize": how predict must standardise an image."""
    if options["zscore"] == "image":
        return "zscore per image"
    return {
        "zscore": "training images",
        "mean": float(train_scan.means[0]),
        "std": float(train_scan.stds[0]),
    }


def _resolve_class_defaults(options: dict, num_classes: int) -> None:
    """Fill the options left unset whose defaults depend on the number of classes."""
    from bayesseg.recipes.segmentation import CLASS_DEPENDENT_DEFAULTS

    for name, (binary, many) in CLASS_DEPENDENT_DEFAULTS.items():
        if options[name] is None:
            options[name] = many if num_classes > 2 else binary


# --------------------------------------------------------------------------
# Where training runs: the --strategy
# --------------------------------------------------------------------------
# Options that do not change what is trained: where it is written and where it
# runs. The data are compared by their fingerprint (file names, sizes and
# contents), not by the paths of their folders.
_NOT_COMPARED = ("out", "images", "masks", "val_images", "val_masks", "strategy")


def _fit(model, dataset, strategy, options: dict, steps: int, callbacks, quiet: bool):
    """Keras' fit under the default strategy; bayesseg's ``strategy.run`` loop
    (``bs.training.fit_distributed``) under any other (Keras' fit fails under
    MultiWorkerMirroredStrategy). Both drive the same callbacks."""
    import bayesseg as bs
    from bayesseg.cli import runs

    verbose = 0 if quiet else 1
    if runs.is_default_strategy(strategy):
        return model.fit(
            dataset,
            epochs=options["epochs"],
            shuffle=False,  # the data set shuffles files and patches itself, seeded
            verbose=verbose,
            callbacks=callbacks,
        )
    return bs.training.fit_distributed(
        model,
        dataset,
        epochs=options["epochs"],
        strategy=strategy,
        callbacks=callbacks,
        steps_per_epoch=steps,
        verbose=verbose,
    )


def _replica_batches(dataset, num_examples: int, options: dict, strategy):
    """The batches and steps per epoch; under several replicas, without a last
    batch too small to give every replica an example (TensorFlow's convolutions
    fail on an empty batch), which is then left out of every epoch, with a note."""
    batch, replicas = options["batch_size"], int(strategy.num_replicas_in_sync)
    steps = math.ceil(num_examples / batch)
    if replicas == 1:
        return dataset, steps
    if batch < replicas:
        raise ValueError(
            f"Argument --batch-size (the global batch) must be at least the {replicas} "
            f"replicas of --strategy {options['strategy']}: each replica trains on a part "
            f"of every batch. Received: --batch-size {batch}"
        )
    left = num_examples % batch
    if 0 < left < replicas:
        steps = num_examples // batch
        print(
            f"bayesseg train: each epoch's last batch ({left} of the {num_examples} "
            f"examples, shuffled anew every epoch) is left out: {replicas} replicas need one "
            "example each; a --batch-size that divides the examples per epoch keeps them all"
        )
        dataset = dataset.take(steps)
    return dataset, steps


def _input_files(options: dict, scan, held_scan) -> list:
    """The files training reads, in a fixed order: what the fingerprint hashes."""
    files = [*scan.image_paths, *scan.mask_paths]
    if options["val_images"] is not None and held_scan is not None:
        files += [*held_scan.image_paths, *held_scan.mask_paths]
    return files


def _prepare_run(args: argparse.Namespace, options: dict, strategy, scans):
    """The run's folder and plan (:func:`bayesseg.cli.runs.prepare_out`) and the
    input fingerprint; ``options["out"]`` becomes this worker's folder."""
    from bayesseg.cli import runs

    scan, _, held_scan = scans
    out = runs.worker_out(strategy, Path(options["out"]))
    options["out"] = os.fspath(out) if out != Path(options["out"]) else options["out"]
    overwrite = bool(getattr(args, "overwrite", False))
    if not overwrite:
        _check_training_log(out / "training.csv")
    fingerprint = runs.input_fingerprint(_input_files(options, scan, held_scan))
    plan = runs.prepare_out(
        out, options, fingerprint, overwrite, ignore=_NOT_COMPARED, skip=runs.WORKER_FOLDERS
    )
    return out, plan, fingerprint


def _train_one(args: argparse.Namespace, options: dict, prepared=None) -> int:
    """Train one model into ``options["out"]`` (the whole single-model pipeline).

    ``prepared``: the result of :func:`_scan_and_split`, when the caller (an
    ensemble) scanned the images once for every member; None scans them here.
    The folder decides first (:func:`bayesseg.cli.runs.prepare_out`): train,
    resume an interrupted run, nothing to do for a finished identical one, or
    a one-line error suggesting ``--overwrite``. A non-finite loss ends in a
    one-line :class:`bayesseg.cli.runs.Diverged` (exit code 2), the folder
    keeping the last finished epoch.
    """
    start = time.perf_counter()
    import bayesseg as bs

    # Before any TensorFlow op: a multi-worker strategy must come first.
    strategy = bs.training.resolve_strategy(options["strategy"])
    scan, num_classes, patch, split = prepared or _scan_and_split(options)
    train_scan, held_scan, counts = split
    _resolve_class_defaults(options, num_classes)
    scans = (scan, train_scan, held_scan)
    out, plan, fingerprint = _prepare_run(args, options, strategy, scans)
    if plan.action == "done":
        return 0
    import keras
    import numpy as np

    from bayesseg.cli import runs

    keras.utils.set_random_seed(options["seed"])
    dataset = _training_dataset(options, patch, train_scan, not runs.is_default_strategy(strategy))
    num_examples = len(train_scan.names) * (1 if patch is None else options["patches_per_image"])
    dataset, steps = _replica_batches(dataset, num_examples, options, strategy)
    input_shape = (None,) * scan.spatial_rank + (scan.channels,)
    # Built and compiled under the strategy; the KL's N is the examples per
    # epoch (the global batch's replicas do not change it).
    with strategy.scope():
        model, weights, bias = _build_model(
            input_shape, num_classes, np.asarray(counts), num_examples, steps, options
        )
    # The NLL / KL gradient split needs Bayesian layers (not --bayesian-blocks none).
    diagnostics = (
        _gradient_callback(steps * options["epochs"])
        if options["bayesian_blocks"] != "none"
        else None
    )
    setup = {
        "num_classes": num_classes,
        "train_patch": patch,
        "depth": options["depth"],
        "batch_size": options["batch_size"],
        "nan_policy": options["nan_policy"],
    }
    validation = _validation(options, held_scan, out, setup)
    outputs = (num_classes, weights, bias)
    metadata = _metadata(options, scans, patch, counts, num_examples, outputs)
    metadata[runs.RUN_KEY] = runs.run_record(
        fingerprint,
        options["epochs"],
        epochs_finished=plan.initial_epoch,
        strategy=runs.strategy_record(options["strategy"], strategy),
    )
    runs.write_json(out / "model.json", metadata)
    guard = runs.DivergenceGuard(options["epochs"], steps)
    recorder = runs.RunRecorder(out / "model.json", metadata)
    callbacks = _callbacks(out, diagnostics, validation, (guard, recorder))
    if not args.quiet:
        _print_start(scans, options, num_classes, counts, steps, metadata[runs.RUN_KEY])
    with runs.guarded_training(out, plan, guard, recorder):
        history = _fit(model, dataset, strategy, options, steps, callbacks, args.quiet)
    _save_history(history, diagnostics, out)
    if validation is not None:
        _finish_validation(validation, options, held_scan, patch, metadata, out, args.quiet)
    elif held_scan is not None:
        metadata["calibration"] = _finite(
            _fit_calibration(model, options, held_scan, patch, num_classes, args.quiet)
        )
        if options["recall_target"] is not None:
            metadata["recall_guarantee"] = _finite(
                _fit_recall_guarantee(model, options, held_scan, patch, metadata, args.quiet)
            )
    metadata[runs.RUN_KEY].update(finished=True, epochs_finished=recorder.epochs_finished)
    runs.write_json(out / "model.json", metadata)
    summary = ", ".join(f"{k} {v:.4g}" for k, v in _final_logs(history).items())
    print(
        f"bayesseg train: wrote {out / 'model.keras'} after "
        f"{time.perf_counter() - start:.0f} s ({summary or 'resumed: nothing left to train'})"
    )
    return 0
