"""``bayesseg predict`` on series: a saved tagger's probabilities, decisions and events.

A tagger saved by ``bayesseg train --task series`` or ``bayesseg demo --task
anomaly`` carries its decision rule in model.json (``decision``): the
weights that correct its probabilities for the class weights and the
training windows' prior, and the threshold chosen on a validation split.
Each series of ``--images`` (``.npy`` of ``(length,)`` or ``(length,
features)``, or ``.csv`` with a header row, read by
``bs.data.read_series``) is predicted whole (an LSTM reads any length) and
gets ``<stem>_prob.npy`` (corrected probabilities), ``<stem>_labels.npy``
(0/1 decisions), ``<stem>_epistemic.npy`` and ``<stem>_aleatoric.npy``;
predictions.json lists each series' flagged events (runs of flagged steps).
Labels, from ``--masks`` (files of the same stem) or from the CSV's
``--label-column``, are scored the same way into metrics.json.

Every series and label file is read and checked before anything is written,
and the outputs reach ``--out`` through ``staging.staged_output``: all or
nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bayesseg.cli.report import _write_json
from bayesseg.recipes.series import SeriesConfig

#: model.json ``"task"`` values of a series tagger: "series", and "anomaly", its older name.
TAGGER_TASKS = ("series", "anomaly")


def declares_tagger(metadata: dict) -> bool:
    """Whether model.json says the model is a series tagger.

    >>> declares_tagger({"task": "anomaly"}), declares_tagger({"task": "series"})
    (True, True)
    >>> declares_tagger({"task": "lesion"}), declares_tagger({})
    (False, False)
    """
    return metadata.get("task") in TAGGER_TASKS


def is_tagger(model, metadata: dict) -> bool:
    """A per-step tagger of series: model.json says so, or ``(batch, steps, features)`` in.

    >>> from types import SimpleNamespace
    >>> unet = SimpleNamespace(input_shape=(None, 64, 64, 1))
    >>> lstm = SimpleNamespace(input_shape=(None, None, 2))
    >>> is_tagger(unet, {"task": "series"}), is_tagger(lstm, {}), is_tagger(unet, {})
    (True, True, False)
    """
    return declares_tagger(metadata) or len(model.input_shape) == 3


def list_inputs(args: argparse.Namespace) -> tuple[list[Path], dict[Path, Path]]:
    """The series of ``--images`` and each one's label file in ``--masks`` (an empty
    dict without), checked before the model loads.

    >>> import argparse, tempfile, numpy as np
    >>> d = Path(tempfile.mkdtemp())
    >>> np.save(d / "a.npy", np.zeros(4))
    >>> files, labels = list_inputs(argparse.Namespace(images=str(d), masks=None,
    ...                                                label_column=None))
    >>> [p.name for p in files], labels
    (['a.npy'], {})
    """
    import bayesseg as bs

    if args.label_column is not None and args.masks:
        raise ValueError(
            "Arguments --label-column and --masks both give the series' labels; pass one. "
            f"Received: --label-column {args.label_column!r} and --masks {args.masks!r}"
        )
    files = bs.data.list_series(args.images, "--images")
    if not args.masks:
        return files, {}
    return files, dict(zip(files, bs.data.pair_series_labels(files, args.masks), strict=True))


def _read_inputs(args, files: list[Path], label_paths: dict, features: int) -> list[tuple]:
    """``(path, series, labels or None)`` of every file, each read and checked once."""
    import bayesseg as bs

    inputs = []
    for path in files:
        series, labels = bs.data.read_series(
            path, label_column=args.label_column, nan_policy=args.nan_policy
        )
        if series.shape[1] != features:
            raise ValueError(
                f"Series {path.name!r} has {series.shape[1]} feature(s) (shape "
                f"{series.shape}); the model expects (length, {features})"
                + (" or (length,)" if features == 1 else "")
                + "."
            )
        if label_paths:
            labels = bs.data.read_labels(label_paths[path], len(series))
        inputs.append((path, series, labels))
    return inputs


def _events(flags) -> list[list[int]]:
    """``[first, last]`` steps of each run of flagged steps."""
    import numpy as np

    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [[int(s), int(e)] for s, e in zip(starts, ends, strict=True)]


def decision_rule(args: argparse.Namespace, metadata: dict, model_path: Path) -> dict[str, Any]:
    """The saved rule, with --threshold overriding its threshold.

    A tagger saved without a threshold (its validation scores admitted none)
    needs ``--threshold``: deciding at 0.5 on corrected probabilities would
    flag almost nothing, silently. A tagger whose training run has not
    finished (model.json's ``run``) has no rule yet: an error.
    """
    run = metadata.get("run")
    if isinstance(run, dict) and not run.get("finished", True):
        raise ValueError(
            f"{model_path.with_suffix('.json').name} describes an unfinished training run "
            f"({run.get('epochs_finished', 0)} of {run.get('epochs')} epochs, no decision "
            "threshold yet): rerun the same bayesseg train command to finish it."
        )
    saved = metadata.get("decision") or {}
    if saved and saved.get("threshold") is None and args.threshold is None:
        raise ValueError(
            f"{model_path.with_suffix('.json').name} holds no threshold: the demo could not "
            f"choose one ({saved.get('error', 'no admissible threshold')}). Pass --threshold T."
        )
    threshold = args.threshold if args.threshold is not None else saved.get("threshold", 0.5)
    return {
        "threshold": float(threshold),
        "threshold_source": (
            "--threshold"
            if args.threshold is not None
            else (f"{model_path.with_suffix('.json').name}" if saved else "default 0.5")
        ),
        "correction_weights": saved.get("correction_weights"),
    }


# What metrics.json's "events" are, written into it (the per-run counts
# pred_events, tp_pred and fp of earlier versions no longer exist).
EVENT_SCORE_DEFINITION = (
    "events: recall per true event (found when a flagged step lies within the tolerance of "
    "it) and precision per flagged step (correct when within the tolerance of an event), "
    "the composite F-score of Garg et al. 2021; flagged_steps and correct_steps replace the "
    "per-run pred_events, tp_pred and fp of bayesseg before 2026-12. chance: the same score "
    "for flagging every step and for random flags at this detector's flagged_fraction."
)


class _Pooled:
    """Event counts and per-step scores pooled over the series with labels."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.labels: list = []
        self.scores: list = []
        self.series: dict[str, dict] = {}

    def add(self, name: str, labels, scores, threshold: float) -> None:
        import bayesseg as bs

        events = bs.metrics.event_f1(labels, scores, threshold=threshold)
        for key, value in events.items():
            if isinstance(value, int):  # the counts; the ratios are recomputed from them
                self.counts[key] = self.counts.get(key, 0) + value
        self.series[name] = {
            **events,
            "chance": bs.metrics.event_chance(labels, rate=events["flagged_fraction"]),
        }
        self.labels.append(labels)
        self.scores.append(scores)

    def overall(self) -> dict[str, Any]:
        import bayesseg as bs
        from bayesseg.metrics.events import event_scores

        events = event_scores(self.counts)
        has_events = any(labels.any() for labels in self.labels)
        return {
            "definition": EVENT_SCORE_DEFINITION,
            "events": events,
            "chance": bs.metrics.event_chance(self.labels, rate=events["flagged_fraction"]),
            "average_precision": (
                bs.metrics.average_precision(self.labels, self.scores) if has_events else None
            ),
            "tolerance": bs.metrics.DEFAULT_EVENT_TOLERANCE,
        }


def prediction_window(metadata: dict) -> int | None:
    """Steps per prediction window of a saved tagger: its config's ``predict_window``, else
    twice its training window (the series recipe's rule), else None (whole series)."""
    config = metadata.get("config") or {}
    if config.get("predict_window"):
        return int(config["predict_window"])
    return 2 * int(config["window"]) if config.get("window") else None


def predict_series(args, model, metadata, model_path, out, inputs=None):
    """Predict every series of ``--images`` into ``out``; returns the exit code.

    Every series (and label file) is read and checked first; the outputs
    reach ``out`` through ``staging.staged_output``, all or nothing. Each
    series is predicted in blended windows (``bs.recipes.predict_series``) of
    :func:`prediction_window` steps, as the threshold was chosen.
    ``inputs``: ``list_inputs(args)`` when already done (else done here).

    Example (a tiny untrained tagger, its rule a threshold of 0.5):

    >>> import argparse, contextlib, io, tempfile, numpy as np, bayesseg as bs
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "in").mkdir(); np.save(d / "in" / "pump.npy", np.zeros((30, 2), np.float32))
    >>> args = argparse.Namespace(images=str(d / "in"), masks=None, label_column=None,
    ...     nan_policy="error", calibrate=False, patch_size=None, threshold=0.5,
    ...     num_samples=2, batch_size=8, quiet=True)
    >>> model = bs.models.bayesian_lstm_tagger(2, units=(2,))
    >>> with contextlib.redirect_stdout(io.StringIO()):
    ...     code = predict_series(args, model, {}, d / "model.keras", d / "out")
    >>> code
    0
    >>> sorted(p.name for p in (d / "out").iterdir())[:3]
    ['predictions.json', 'pump_aleatoric.npy', 'pump_epistemic.npy']
    """
    import numpy as np

    import bayesseg as bs
    from bayesseg.cli.staging import MANIFEST, staged_output

    if args.calibrate or args.patch_size:
        raise ValueError(
            "Arguments --calibrate and --patch-size apply to images; a tagger's correction "
            "and threshold come from its model.json (override the threshold with --threshold)."
        )
    from bayesseg.cli import guarantee as recall
    from bayesseg.recipes._guarantee import RealisedRecall

    files, label_paths = list_inputs(args) if inputs is None else inputs
    rule = decision_rule(args, metadata, model_path)
    # --num-samples not given: the series recipe's draws (a U-Net's are fewer).
    draws = SeriesConfig.num_samples if args.num_samples is None else args.num_samples
    window = prediction_window(metadata)
    guarantee = recall.load_guarantee(args, metadata, model_path.with_suffix(".json"), "series")
    reason = None
    if guarantee is not None:
        reason = guarantee.mismatch(num_samples=draws, window=window)
    series_inputs = _read_inputs(args, files, label_paths, model.input_shape[-1])
    scored = bool(label_paths) or args.label_column is not None
    pooled = _Pooled() if scored else None
    realised = RealisedRecall(guarantee) if scored and guarantee is not None else None
    written, events = [], {}
    with staged_output(out) as staging:
        for path, series, labels in series_inputs:
            pred = bs.recipes.predict_series(
                model,
                [series],
                correction=rule["correction_weights"],
                num_samples=draws,
                window=window or len(series),
                batch_size=args.batch_size,
            )[0]
            prob = pred.prob
            flags = prob >= rule["threshold"]
            arrays = {
                "prob": prob.astype(np.float32),
                "labels": flags.astype(np.uint8),
                "epistemic": pred.epistemic,
                "aleatoric": pred.aleatoric,
            }
            if guarantee is not None:
                arrays["recall_labels"] = guarantee.predict(prob).astype(np.uint8)
                if realised is not None:
                    realised.add(path.name, prob, labels)
            for kind, array in arrays.items():
                np.save(staging / f"{path.stem}_{kind}.npy", array)
                written.append(f"{path.stem}_{kind}.npy")
            events[path.name] = _events(flags)
            if pooled is not None:
                pooled.add(path.name, labels, prob, rule["threshold"])
            if not args.quiet:
                print(
                    f"{path.name}: {len(events[path.name])} event(s) flagged in {len(series)} steps"
                )
        if pooled is not None:
            metrics = {"overall": pooled.overall(), "series": pooled.series}
            if realised is not None:
                metrics["recall_guarantee"] = recall.realised_entry(
                    guarantee, realised, reason, "series"
                )
            _write_json(staging / "metrics.json", metrics)
            written.append("metrics.json")
        manifest = {
            "model": str(model_path),
            "num_samples": draws,
            "window": window,
            "decision": rule,
            "events": events,
            "files": written,
        }
        if metadata.get("recall_guarantee"):
            manifest["recall_guarantee"] = recall.guarantee_entry(
                guarantee,
                reason,
                "<stem>_recall_labels.npy: 1 where the corrected probability >= threshold "
                '(uint8); the events in "events" are those of <stem>_labels.npy',
            )
        _write_json(staging / MANIFEST, manifest)
    print(
        f"bayesseg predict: {sum(map(len, events.values()))} event(s) flagged in "
        f"{len(files)} series (threshold {rule['threshold']:.4g}); wrote {len(written)} "
        f"files to {out}"
    )
    recall.print_note(guarantee, reason)
    return 0
