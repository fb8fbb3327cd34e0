"""``bayesseg train --ensemble K``: K members trained one after another, saved
as one :class:`bayesseg.models.DeepEnsemble` with a calibration of its own.

Each member is a whole single-model run in ``out/member_<k>/`` (its own
checkpoint, resume backup, history, validation and early stopping) with seed
``seed + k``; every member holds out the same images (the split is seeded by
``seed``). ``out/ensemble.json`` lists the finished members, so rerunning an
interrupted command resumes the member in progress and skips the others.

:func:`train_command` is what ``bayesseg train`` runs: one model
(:mod:`bayesseg.cli.train`), or K of them here. It lives here so that the
dependency goes one way, from the ensemble to the single-model pipeline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bayesseg.cli import train
from bayesseg.cli.options import canonical_task
from bayesseg.cli.report import _finite, _read_json

PROGRESS = "ensemble.json"


def _member_model(member_out: Path, validated: bool) -> Path:
    """The member's model to ensemble: its best model when validated, else its last."""
    from bayesseg.cli.validation import BEST_MODEL

    best = member_out / BEST_MODEL
    return best if validated and best.is_file() else member_out / "model.keras"


def _read_progress(out: Path, options: dict) -> list[int]:
    path = out / PROGRESS
    if not path.is_file():
        return []
    progress = _read_json(path)
    if progress.get("members") != options["ensemble"] or progress.get("seed") != options["seed"]:
        raise ValueError(
            f"{path} belongs to another ensemble run (members {progress.get('members')}, "
            f"seed {progress.get('seed')}); use another --out or remove that folder. "
            f"Received: --ensemble {options['ensemble']} --seed {options['seed']}"
        )
    return [int(k) for k in progress.get("finished", [])]


def _write_progress(out: Path, options: dict, finished: list[int]) -> None:
    progress = {"members": options["ensemble"], "seed": options["seed"], "finished": finished}
    (out / PROGRESS).write_text(json.dumps(progress, indent=2))


def train_command(args: argparse.Namespace) -> int:
    """``bayesseg train``: one model, or ``--ensemble K`` members and their ensemble."""
    options = train._resolve_train_options(args)
    if canonical_task(options["task"]) == "series":
        from bayesseg.cli import train_series

        return train_series.train_series_command(args, options)
    if options["ensemble"] > 1:
        return train_ensemble(args, options)
    return train._train_one(args, options)


def train_ensemble(args: argparse.Namespace, options: dict) -> int:
    """Train ``options["ensemble"]`` members, then save and calibrate the ensemble."""
    start = time.perf_counter()
    out = Path(options["out"])
    out.mkdir(parents=True, exist_ok=True)
    count = options["ensemble"]
    finished = _read_progress(out, options)
    # One scan and one held-out split (seeded by --seed) for every member and
    # the ensemble's calibration; the data are checked before any training.
    prepared = train._scan_and_split(options)
    for k in range(count):
        member_out = out / f"member_{k}"
        if k in finished:
            print(f"bayesseg train: member {k + 1}/{count} already trained ({member_out})")
            continue
        print(f"bayesseg train: member {k + 1}/{count} (seed {options['seed'] + k})")
        member = {**options, "out": str(member_out), "seed": options["seed"] + k, "ensemble": 1}
        train._train_one(args, member, prepared)
        finished.append(k)
        _write_progress(out, options, finished)

    import keras

    import bayesseg as bs

    validated = train._validated(options)
    paths = [_member_model(out / f"member_{k}", validated) for k in range(count)]
    members = [keras.saving.load_model(path, compile=False) for path in paths]
    ensemble = bs.models.DeepEnsemble(members, name="deep_ensemble")
    ensemble.save(out / "model.keras")
    # The ensemble's model.json: member 0's (data, classes, weights), its own
    # options, the members, and a calibration fitted on the ensemble itself.
    metadata = _read_json(out / "member_0" / "model.json")
    metadata.pop("best", None)
    metadata["config"] = options
    metadata["ensemble"] = {
        "members": count,
        "models": [str(path.relative_to(out)) for path in paths],
        "seeds": [options["seed"] + k for k in range(count)],
    }
    metadata["calibration"] = None
    metadata["recall_guarantee"] = None
    if metadata.get("validation"):
        # The ensemble's model.keras is already made of the members' best models.
        metadata["validation"]["best_model"] = "model.keras"
    _, num_classes, patch, (_, held_scan, _) = prepared
    if held_scan is not None:
        metadata["calibration"] = _finite(
            train._fit_calibration(ensemble, options, held_scan, patch, num_classes, args.quiet)
        )
        if options["recall_target"] is not None:
            metadata["recall_guarantee"] = _finite(
                train._fit_recall_guarantee(
                    ensemble, options, held_scan, patch, metadata, args.quiet
                )
            )
    train._write_metadata(out, metadata)
    print(
        f"bayesseg train: wrote {out / 'model.keras'} (a deep ensemble of {count} members) "
        f"after {time.perf_counter() - start:.0f} s"
    )
    return 0
