"""``bayesseg predict``: Monte Carlo probability, label and uncertainty maps of a
trained model, written in each input's format, with predictions.json.

A series tagger (a model.json ``"task"`` of ``"series"``, or ``"anomaly"``,
its older name; or a model of ``(batch, steps, features)`` inputs) goes to
:mod:`bayesseg.cli.series` instead, which applies its saved decision rule.

Predict is all or nothing: every input (and mask) is read and checked before
anything is written, the outputs are written into a folder beside ``--out``
(:func:`staged_output`) and moved into ``--out`` at the end, predictions.json
last; a failure on the way leaves ``--out`` as it was.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from bayesseg.cli import guarantee as recall
from bayesseg.cli.options import _one_line
from bayesseg.cli.report import _read_json, _write_json
from bayesseg.cli.staging import MANIFEST, check_out, staged_output
from bayesseg.cli.training import _window
from bayesseg.recipes.segmentation import NUM_SAMPLES, PREDICT_WINDOWS, foreground_probability


def _output_suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _check_keras_file(model_path: Path) -> None:
    """A ``.keras`` file is a zip archive holding ``config.json``: say so when it is not."""
    import zipfile

    try:
        with zipfile.ZipFile(model_path) as archive:
            holds_config = "config.json" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        holds_config = False
    if not holds_config:
        raise ValueError(
            f"Model {os.fspath(model_path)!r} exists but is not a Keras model file (a .keras "
            "file is a zip archive holding config.json and the weights; this one is damaged, "
            "truncated or something else)."
        )


def _load_model(args: argparse.Namespace, model_path: Path):
    import keras

    from bayesseg import _registration

    _registration.register()  # done already once Keras loaded; says what the load needs
    try:
        return keras.saving.load_model(os.fspath(model_path), compile=False)
    except (ValueError, TypeError) as err:
        raise ValueError(f"Cannot load model {args.model!r}: {_one_line(err)}") from err


def _load_calibration(args: argparse.Namespace, metadata: dict, metadata_path: Path):
    """The calibrator fitted by train --calibration-split, unless ignored (or None)."""
    entry = metadata.get("calibration")
    if not entry or args.ignore_calibration:
        return None
    if args.calibrate:
        raise ValueError(
            f"--calibrate undoes the class weights, but {metadata_path.name!r} holds a "
            "fitted calibration, applied by default, whose bias already absorbs their "
            "shift; drop --calibrate, or pass --ignore-calibration to use --calibrate "
            "instead."
        )
    return _calibrator(entry, metadata_path)


def _calibrator(entry: dict, metadata_path: Path):
    """model.json's ``"calibration"`` entry as the calibrator it saved (safe mode)."""
    import keras

    import bayesseg as bs

    calibration = keras.saving.deserialize_keras_object(entry["config"], safe_mode=True)
    if not isinstance(calibration, bs.calibration.LogitCalibrator):
        raise ValueError(
            f"The calibration in {metadata_path.name!r} is not a bayesseg calibrator: "
            f"{type(calibration).__name__}."
        )
    return calibration


def _default_draws(args: argparse.Namespace, metadata: dict) -> int:
    """A U-Net's draws without --num-samples: those its recall guarantee was fitted
    with (a model trained when the default was 8 keeps its guarantee), else
    :data:`~bayesseg.recipes.segmentation.NUM_SAMPLES`."""
    entry = metadata.get("recall_guarantee")
    if isinstance(entry, dict) and not getattr(args, "ignore_recall_guarantee", False):
        score = entry.get("score")
        recorded = score.get("num_samples") if isinstance(score, dict) else None
        if isinstance(recorded, int) and recorded >= 1:
            return recorded
    return NUM_SAMPLES  # a damaged entry is reported when the guarantee loads


def _class_weights(args: argparse.Namespace, metadata: dict, metadata_path: Path):
    """The class weights whose shift --calibrate undoes (None without --calibrate)."""
    weights = metadata.get("class_weights") if args.calibrate else None
    if args.calibrate and weights is None:
        raise ValueError(
            "--calibrate needs the class weights that bayesseg train saves in "
            f"{metadata_path.name!r}."
        )
    return weights


def _zscore(metadata: dict, metadata_path: Path) -> tuple[float, float] | None:
    """The ``(mean, std)`` every image is z-scored by (``bayesseg train --zscore
    dataset``), or None: each image by its own statistics."""
    entry = metadata.get("normalize", "zscore per image")
    if entry == "zscore per image":
        return None
    try:
        mean, std = float(entry["mean"]), float(entry["std"])
        valid = entry["zscore"] == "training images"
    except (KeyError, TypeError, ValueError):
        valid = False
    if not (valid and math.isfinite(mean) and math.isfinite(std) and std >= 0):
        raise ValueError(
            f'{metadata_path.name!r} holds a "normalize" entry bayesseg cannot apply: '
            f'{entry!r} (expected "zscore per image" or the training images\' finite '
            '"mean" and "std" >= 0, as bayesseg train writes them).'
        )
    return mean, std


def _maps(pred, num_classes: int, suffix: str) -> dict[str, tuple[Any, float | None]]:
    """The maps written per image: name -> (array, top of its value range or None)."""
    import numpy as np

    from bayesseg import _probability

    entropy_max = math.log(num_classes)
    mean = pred.mean[0]
    labels = _probability.hard_labels(mean).astype(np.uint8 if num_classes <= 256 else np.uint16)
    maps = {"labels": (labels, None), "epistemic": (pred.epistemic[0], entropy_max)}
    maps["aleatoric"] = (pred.aleatoric[0], entropy_max)
    if num_classes == 2 or suffix not in (".png", ".tif", ".tiff"):
        maps["prob"] = (mean[..., 0] if num_classes == 2 else mean, 1.0)
    else:
        for c in range(num_classes):
            maps[f"prob_class{c}"] = (mean[..., c], 1.0)
    return maps


def _check_image(args, path: Path, setup: dict, model) -> tuple[int, ...]:
    """Read one image (and its mask) as predict will, checking everything that can
    fail; returns its sliding-window size. Nothing is kept: images can be large."""
    import bayesseg as bs

    image = bs.data.read_image(path, spatial_rank=setup["rank"], nan_policy=args.nan_policy)
    if image.shape[-1] != setup["channels"]:
        raise ValueError(
            f"Image {path.name!r} has {image.shape[-1]} channel(s); the model "
            f"expects {setup['channels']}."
        )
    spatial = image.shape[:-1]
    patch = _window(args.patch_size, spatial, model, setup["train_patch"], setup["depth"])
    if setup["evaluation"] is not None:
        from bayesseg.cli import evaluate

        evaluate.read_labels(setup["masks"][path], spatial, setup["num_classes"])
    return patch


def _predict_image(args, path: Path, model, setup: dict, out: Path) -> list[str]:
    """Predict one (checked) image and write its maps; returns the file names written."""
    import bayesseg as bs

    image = bs.data.read_image(path, spatial_rank=setup["rank"], nan_policy=args.nan_policy)
    spatial = image.shape[:-1]
    image = bs.data.standardize_image(image, *(setup["zscore"] or ()))
    patch = setup["patches"][path]
    pred = bs.uncertainty.predict_mc(
        model,
        image[None],
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        patch_size=patch,
        overlap=args.overlap,
        correct_for_class_weights=setup["weights"],
        calibration=setup["calibration"],
        verbose=0,
    )
    suffix = _output_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)]
    written = []
    labels = None
    if setup["evaluation"] is not None:
        from bayesseg.cli import evaluate

        labels = evaluate.read_labels(setup["masks"][path], spatial, setup["num_classes"])
        setup["evaluation"].add(path.name, labels, pred.mean[0])
    if args.preview:
        from bayesseg.cli import evaluate

        written += evaluate.write_previews(out, stem, image, labels, pred, args.preview)
    for kind, (array, top) in _maps(pred, setup["num_classes"], suffix).items():
        target = out / f"{stem}_{kind}{suffix}"
        value_range = None if top is None else (0.0, top)
        bs.data.write_image(target, array, like=path, value_range=value_range)
        written.append(target.name)
    guarantee = setup["guarantee"]
    if guarantee is not None:
        score = foreground_probability(pred.mean[0])
        target = out / f"{stem}_recall_labels{suffix}"
        bs.data.write_image(target, guarantee.predict(score).astype("uint8"), like=path)
        written.append(target.name)
        if labels is not None:
            setup["realised"].add(path.name, score, labels)
    if not args.quiet:
        print(f"{path.name}: mean epistemic {pred.epistemic.mean():.4g} nats, windows of {patch}")
    return written


def _manifest(args, model_path: Path, calibration, num_classes: int, written: list[str]) -> dict:
    """predictions.json: the model, the calibration applied, the PNG scaling, the files."""
    return {
        "model": os.fspath(model_path),
        "num_samples": args.num_samples,
        "calibrated": bool(args.calibrate) or calibration is not None,
        "calibration": _calibration_name(args, calibration),
        "png_scaling": {
            "prob": "value * 65535 (16-bit)",
            "epistemic, aleatoric": f"value / log({num_classes}) * 65535 (16-bit)",
        },
        "files": written,
    }


def _paired_masks(args: argparse.Namespace, files: list[Path]) -> dict:
    """Each image's mask from --masks (empty without), checked before any work."""
    if not args.masks:
        return {}
    from bayesseg.cli import evaluate

    return dict(zip(files, evaluate.pair_masks(files, args.masks), strict=True))


def _predict(args: argparse.Namespace) -> int:
    model_path = Path(args.model)
    if not model_path.is_file():
        raise ValueError(
            f"Argument --model must be an existing .keras file. Received: {args.model!r}"
        )
    import bayesseg as bs
    from bayesseg import _probability
    from bayesseg.cli import series

    out = Path(args.out)
    check_out(out)
    metadata_path = model_path.with_suffix(".json")
    metadata = _read_json(metadata_path) if metadata_path.is_file() else {}
    if series.declares_tagger(metadata):
        inputs = series.list_inputs(args)  # paired before the model loads
        _check_keras_file(model_path)
        model = _load_model(args, model_path)
        return series.predict_series(args, model, metadata, model_path, out, inputs)
    files = bs.data.list_images(args.images, "--images")
    masks = _paired_masks(args, files)
    _check_keras_file(model_path)
    model = _load_model(args, model_path)
    if series.is_tagger(model, metadata):
        return series.predict_series(args, model, metadata, model_path, out)
    if args.num_samples is None:  # a tagger's default is predict_series's
        args.num_samples = _default_draws(args, metadata)
    if args.label_column is not None:
        raise ValueError(
            "Argument --label-column applies to a series tagger's .csv series; "
            f"{model_path.name!r} is a segmentation model (pass its masks with --masks). "
            f"Received: --label-column {args.label_column!r}"
        )
    if args.threshold is not None:
        raise ValueError(
            "Argument --threshold applies to a series tagger; a segmentation model's labels "
            "are the most probable class."
        )
    setup = {
        "rank": len(model.input_shape) - 2,
        "channels": model.input_shape[-1],
        "num_classes": _probability.num_classes(model.output_shape[-1]),
        "depth": metadata.get("config", {}).get("depth"),
        "train_patch": metadata.get("patch_size"),
        "calibration": _load_calibration(args, metadata, metadata_path),
        "weights": _class_weights(args, metadata, metadata_path),
        "zscore": _zscore(metadata, metadata_path),
        "evaluation": None,
    }
    setup["masks"] = masks
    setup["guarantee"] = recall.load_guarantee(args, metadata, metadata_path, "image")
    reason = None
    if setup["guarantee"] is not None:
        reason = setup["guarantee"].mismatch(
            num_samples=args.num_samples,
            calibration=_calibration_name(args, setup["calibration"]),
            overlap=args.overlap,
            patch_size=PREDICT_WINDOWS if args.patch_size is None else args.patch_size,
        )
    if masks:
        from bayesseg.cli.evaluate import Evaluation
        from bayesseg.recipes._guarantee import RealisedRecall

        setup["evaluation"] = Evaluation(setup["num_classes"])
        if setup["guarantee"] is not None:
            setup["realised"] = RealisedRecall(setup["guarantee"])
    # Every image and mask is read and checked before anything is written.
    setup["patches"] = {path: _check_image(args, path, setup, model) for path in files}
    written = []
    with staged_output(out) as staging:
        for path in files:
            written += _predict_image(args, path, model, setup, staging)
        if setup["evaluation"] is not None:
            evaluation = setup["evaluation"]
            metrics = {"overall": evaluation.overall(), "images": evaluation.images}
            if setup["guarantee"] is not None:
                metrics["recall_guarantee"] = recall.realised_entry(
                    setup["guarantee"], setup["realised"], reason, "images"
                )
            _write_json(staging / "metrics.json", metrics)
            written.append("metrics.json")
        manifest = _manifest(args, model_path, setup["calibration"], setup["num_classes"], written)
        if metadata.get("recall_guarantee"):
            manifest["recall_guarantee"] = recall.guarantee_entry(
                setup["guarantee"],
                reason,
                "<stem>_recall_labels.<ext>: 1 where the foreground score (p(foreground), or "
                "1 - p(background) for more than 2 classes) >= threshold, uint8",
            )
        with open(staging / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=2)
    print(f"bayesseg predict: wrote {len(written)} maps for {len(files)} images to {out}")
    recall.print_note(setup["guarantee"], reason)
    return 0


def _calibration_name(args: argparse.Namespace, calibration) -> str | None:
    """predictions.json's ``"calibration"``: the calibrator's class, "class_weights" or None."""
    if calibration is not None:
        return type(calibration).__name__
    return "class_weights" if args.calibrate else None
