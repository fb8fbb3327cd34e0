"""The recall guarantee in ``bayesseg predict`` (images and series): read from
model.json, stated in predictions.json, its labels scored in metrics.json.

``bayesseg train --recall-target`` saves a :class:`bayesseg.recipes.RecallGuarantee`;
predict writes ``<stem>_recall_labels`` from it and says in predictions.json which
guarantee holds for them: the saved one when predict's scores are computed as the
calibration's were (the same draws, calibration, windows), else none, and why.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bayesseg.cli.options import _one_line


def load_guarantee(args: argparse.Namespace, metadata: dict, metadata_path: Path, unit: str):
    """The recall guarantee saved by train --recall-target, unless ignored (or None)."""
    entry = metadata.get("recall_guarantee")
    if not entry or getattr(args, "ignore_recall_guarantee", False):
        return None
    from bayesseg.recipes import RecallGuarantee

    try:
        guarantee = RecallGuarantee.from_dict(entry)
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(
            f'{metadata_path.name!r} holds a "recall_guarantee" entry bayesseg cannot apply '
            f"({_one_line(err)}); pass --ignore-recall-guarantee to predict without it."
        ) from err
    if guarantee.unit != unit:
        nouns = {"image": "images", "series": "series"}
        raise ValueError(
            f"{metadata_path.name!r} holds a recall guarantee on {nouns[guarantee.unit]}, but "
            f"the model predicts {nouns[unit]}; pass --ignore-recall-guarantee to predict "
            "without it."
        )
    return guarantee


def guarantee_entry(guarantee, reason: str | None, labels: str) -> dict:
    """predictions.json's ``"recall_guarantee"``: the guarantee that holds for the labels
    written (``guarantee``, a sentence; None with ``void`` saying why not when the scores
    are not computed as the guarantee's were), its threshold and calibration count."""
    if guarantee is None:
        return {"guarantee": None, "ignored": True}
    return {
        "guarantee": None if reason else guarantee.statement(),
        "void": None if reason is None else f"the scores differ from the calibration's: {reason}",
        "recall_target": guarantee.recall_target,
        "threshold": guarantee.threshold,
        "n_calibration": guarantee.conformal.n_calibration_,
        "labels": labels,
        "ignored": False,
    }


def realised_entry(guarantee, realised, reason: str | None, per_item: str) -> dict:
    """metrics.json's ``"recall_guarantee"``: the recall guarantee's labels scored
    (``RealisedRecall.result()``), the guarantee that held (or None) and the items."""
    return {
        "guarantee": None if reason else guarantee.statement(),
        **realised.result(),
        per_item: realised.items,
    }


def print_note(guarantee, reason: str | None) -> None:
    """One line when the labels are written but the guarantee does not hold for them."""
    if guarantee is not None and reason is not None:
        print(
            "bayesseg predict: note: the recall guarantee in model.json does not hold for "
            f"these <stem>_recall_labels: {reason}"
        )
