"""``bayesseg predict`` on series: a saved tagger's probabilities, decisions and events.

A tagger saved by ``bayesseg demo --task anomaly`` carries its decision rule
in model.json (``decision``): the weights that correct its probabilities for
the class weights and the training windows' prior, and the threshold chosen
on a validation split. Each ``.npy`` series of ``(length,)`` or ``(length,
features)`` is predicted whole (an LSTM reads any length) and gets
``<stem>_prob.npy`` (corrected probabilities), ``<stem>_labels.npy`` (0/1
decisions), ``<stem>_epistemic.npy`` and ``<stem>_aleatoric.npy``;
predictions.json lists each series' flagged events (runs of flagged steps).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bayesseg.cli.report import _write_json


def is_tagger(model, metadata: dict) -> bool:
    """A per-step tagger of series: a saved anomaly model, or ``(batch, steps, features)`` in."""
    return metadata.get("task") == "anomaly" or len(model.input_shape) == 3


def _read_series(path: Path, features: int, nan_policy: str, what: str = "Series"):
    import numpy as np

    from bayesseg.data._finite import apply_policy

    if path.suffix.lower() != ".npy":
        raise ValueError(
            f"{what} {path.name!r}: a tagger reads series from .npy files of shape "
            "(length,) or (length, features)."
        )
    array = np.load(path, allow_pickle=False)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[-1] != features or array.shape[0] < 1:
        raise ValueError(
            f"{what} {path.name!r} has shape {array.shape}; the model expects (length, "
            f"{features})" + (" or (length,)" if features == 1 else "") + "."
        )
    return apply_policy(array.astype(np.float32), path.name, nan_policy)


def _read_labels(path: Path, length: int):
    import numpy as np

    labels = _read_series(path, 1, "error", "Labels")[:, 0]
    if labels.shape[0] != length:
        raise ValueError(
            f"Labels {path.name!r} hold {labels.shape[0]} steps; the series holds {length}."
        )
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError(f"Labels {path.name!r} must hold 0/1 per step.")
    return labels


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
    flag almost nothing, silently.
    """
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


def predict_series(args, files: list[Path], masks: dict, model, metadata, model_path, out):
    """Predict every series of ``files``; returns the file names written."""
    import numpy as np

    import bayesseg as bs

    if args.calibrate or args.patch_size:
        raise ValueError(
            "Arguments --calibrate and --patch-size apply to images; a tagger's correction "
            "and threshold come from its model.json (override the threshold with --threshold)."
        )
    rule = decision_rule(args, metadata, model_path)
    features = model.input_shape[-1]
    pooled = _Pooled() if masks else None
    written, events = [], {}
    for path in files:
        series = _read_series(path, features, args.nan_policy)
        labels = _read_labels(masks[path], len(series)) if masks else None
        pred = bs.uncertainty.predict_mc(
            model,
            series[None],
            num_samples=args.num_samples,
            batch_size=args.batch_size,
            correct_for_class_weights=rule["correction_weights"],
            verbose=0,
        )
        prob = pred.mean[0, :, 0]
        flags = prob >= rule["threshold"]
        stem = path.name[: -len(".npy")]
        arrays = {
            "prob": prob.astype(np.float32),
            "labels": flags.astype(np.uint8),
            "epistemic": pred.epistemic[0].astype(np.float32),
            "aleatoric": pred.aleatoric[0].astype(np.float32),
        }
        for kind, array in arrays.items():
            np.save(out / f"{stem}_{kind}.npy", array)
            written.append(f"{stem}_{kind}.npy")
        events[path.name] = _events(flags)
        if pooled is not None:
            pooled.add(path.name, labels, prob, rule["threshold"])
        if not args.quiet:
            print(f"{path.name}: {len(events[path.name])} event(s) flagged in {len(series)} steps")
    if pooled is not None:
        _write_json(out / "metrics.json", {"overall": pooled.overall(), "series": pooled.series})
        written.append("metrics.json")
    manifest = {
        "model": str(model_path),
        "num_samples": args.num_samples,
        "decision": rule,
        "events": events,
        "files": written,
    }
    _write_json(out / "predictions.json", manifest)
    print(
        f"bayesseg predict: {sum(map(len, events.values()))} event(s) flagged in "
        f"{len(files)} series (threshold {rule['threshold']:.4g}); wrote {len(written)} "
        f"files to {out}"
    )
    return 0
