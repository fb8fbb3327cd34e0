"""Writing a run: ``model.keras`` and ``model.json``, each whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_run(model, folder: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Write ``model.keras`` and ``model.json`` (``metadata``) into ``folder``.

    Each file is written under a temporary name and renamed, model.json
    last, so a folder never holds a half-written file or a model.json that
    describes another model. Returns the path of ``model.keras``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".model-{os.getpid()}.keras"
    model.save(partial)
    os.replace(partial, folder / "model.keras")
    partial_json = folder / f".model-{os.getpid()}.json"
    partial_json.write_text(json.dumps(metadata, indent=2, default=_json_default))
    os.replace(partial_json, folder / "model.json")
    return folder / "model.keras"
