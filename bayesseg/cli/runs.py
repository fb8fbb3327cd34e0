"""Runs of ``bayesseg train``: what an output folder holds, and training that ends cleanly.

Independent of the task (images or series), so that every training command
shares one behaviour:

* :func:`input_fingerprint` hashes the input files (names, sizes, contents).
* :func:`prepare_out` reads the folder's ``model.json`` and decides: train
  (a new or empty folder), resume (an interrupted run of the same options and
  inputs), nothing to do (the same run, finished), or refuse with a one-line
  ``ValueError`` suggesting ``--overwrite`` (anything else); ``--overwrite``
  clears the run's own files (:func:`clear_run`) first.
* :func:`run_record` is the ``"run"`` entry of ``model.json`` that
  :func:`prepare_out` reads back: the input fingerprint, whether training
  finished, the epochs trained, the strategy and, after a divergence, where.
  The resolved options go in ``model.json``'s ``"config"``.
* Callbacks: :class:`DivergenceGuard` stops training at the first non-finite
  loss, NLL or KL with :class:`Diverged` (a ``ValueError``: the command line
  prints it in one line, exit code 2); :class:`EpochLog` writes
  ``training.csv`` with one row per epoch, never two rows of one epoch (a
  resumed run replaces the rows of the epochs it trains again);
  :class:`RunRecorder` rewrites ``model.json`` after every checkpoint, so it
  always describes the ``model.keras`` beside it.
* :func:`diverged_from_error` turns the model's own finiteness checks (a
  TensorFlow ``InvalidArgumentError`` naming the NLL, the KL or the gradient)
  into :class:`Diverged`; :func:`finish_failed` leaves the folder consistent
  after a failure (no ``model.json`` when no epoch finished, else the last
  finished epoch's ``model.keras`` and ``model.json``).

The layout these helpers share: ``out/model.keras`` (saved after every epoch),
``out/model.json`` (``"config"``: the resolved options; ``"run"``:
:func:`run_record`), ``out/training.csv``, ``out/backup/`` (Keras'
``BackupAndRestore``, present while a run is unfinished).

This module imports Keras at the top (its callbacks): ``bayesseg.cli.train``
imports it inside its functions only, so ``import bayesseg.cli`` stays free of
TensorFlow.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fnmatch
import hashlib
import io
import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

__all__ = [
    "BACKUP",
    "CONFIG_KEY",
    "HINTS",
    "RUN_FILES",
    "RUN_KEY",
    "STRATEGY_NAMES",
    "WORKER_FOLDERS",
    "DivergenceGuard",
    "Diverged",
    "EpochLog",
    "RunPlan",
    "RunRecorder",
    "clear_run",
    "diverged_from_error",
    "finish_failed",
    "guarded_training",
    "input_fingerprint",
    "is_default_strategy",
    "prepare_out",
    "run_record",
    "strategy_record",
    "worker_out",
    "write_json",
]

# The files and folders a run writes into its --out (names or glob patterns):
# what --overwrite removes, and nothing else.
RUN_FILES = (
    "model.keras",
    "model.json",
    "training.csv",
    "history.json",
    "early_stopping.json",
    "backup",
    "logs",
    "model_best.*",
    "*.tmp.keras",
    "*.png",
)
RUN_KEY = "run"  # model.json's entry written by run_record
CONFIG_KEY = "config"  # model.json's entry holding the resolved options
BACKUP = "backup"  # keras.callbacks.BackupAndRestore's folder

_CHUNK = 1 << 20
# Digests of files already hashed in this process, by (path, size, mtime):
# an ensemble fingerprints the same images once per member.
_DIGESTS: dict[tuple[str, int, int], str] = {}


# --------------------------------------------------------------------------
# Fingerprint of the inputs
# --------------------------------------------------------------------------
def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (os.fspath(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def input_fingerprint(paths: Iterable[str | os.PathLike]) -> str:
    """A hash of the input files: each one's name, size and content, in order.

    Args:
        paths: files and folders, in a fixed order (e.g. every image, then
            every mask). A folder counts every file under it (names relative
            to it, sorted); a file counts with its base name. Contents are
            read in chunks, so large volumes cost time, not memory; a file
            already hashed in this process (same path, size and modification
            time) is not read again.

    Returns:
        ``"sha256:<hex>"``; equal for equal inputs, whatever their folders'
        paths (move the data and the fingerprint stays).

    Raises:
        ValueError: a path that is neither a file nor a folder (one line).

    Example:

    >>> import tempfile, pathlib
    >>> from bayesseg.cli.runs import input_fingerprint
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "a.npy").write_bytes(b"1234")
    >>> before = input_fingerprint([root])
    >>> before == input_fingerprint([root / "a.npy"]), before.startswith("sha256:")
    (False, True)
    >>> _ = (root / "a.npy").write_bytes(b"12345")
    >>> input_fingerprint([root]) == before
    False
    """
    digest = hashlib.sha256()
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            files = sorted(
                (p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path)
            )
            named = [(p, p.relative_to(path).as_posix()) for p in files]
            digest.update(f"folder\0{len(named)}\0".encode())
        elif path.is_file():
            named = [(path, path.name)]
        else:
            raise ValueError(
                f"Argument paths must hold files or folders. Received: {os.fspath(path)!r}, "
                "which does not exist"
            )
        for file, name in named:
            size = file.stat().st_size
            digest.update(f"{name}\0{size}\0{_file_digest(file)}\0".encode())
    return f"sha256:{digest.hexdigest()}"


# --------------------------------------------------------------------------
# model.json's run record
# --------------------------------------------------------------------------
def run_record(
    fingerprint: str,
    epochs: int,
    *,
    epochs_finished: int = 0,
    finished: bool = False,
    strategy: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``"run"`` entry of ``model.json``, which :func:`prepare_out` reads back.

    Args:
        fingerprint: :func:`input_fingerprint` of the inputs.
        epochs: the epochs asked for.
        epochs_finished: epochs trained so far (:class:`RunRecorder` updates it).
        finished: True once the command finished (training and what follows).
        strategy: where it trains, e.g. ``{"requested": "auto", "strategy":
            "MirroredStrategy", "replicas": 2, "workers": 1}``.

    Returns:
        ``{"fingerprint", "epochs", "epochs_finished", "finished", "strategy",
        "diverged"}`` (``"diverged"``: None, or where training diverged).

    Example:

    >>> from bayesseg.cli.runs import run_record
    >>> run_record("sha256:ab", 3)["finished"]
    False
    """
    return {
        "fingerprint": fingerprint,
        "epochs": int(epochs),
        "epochs_finished": int(epochs_finished),
        "finished": bool(finished),
        "strategy": None if strategy is None else dict(strategy),
        "diverged": None,
    }


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically (a temporary file, then a rename).

    A run killed while writing leaves the previous file whole.

    Example:

    >>> import tempfile, pathlib, json
    >>> from bayesseg.cli.runs import write_json
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.json"
    >>> write_json(path, {"run": None})
    >>> json.loads(path.read_text())
    {'run': None}
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2))
    os.replace(temporary, path)


# --------------------------------------------------------------------------
# The decision: train, resume, nothing to do, or refuse
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What :func:`prepare_out` decided.

    Attributes:
        action: "train" (from scratch), "resume" (an interrupted run: Keras'
            ``BackupAndRestore`` in ``out/backup`` restores it) or "done" (the
            same run already finished: nothing to train).
        out: the output folder (it exists).
        initial_epoch: epochs already trained (0 for "train").

    Example:

    >>> import pathlib
    >>> from bayesseg.cli.runs import RunPlan
    >>> plan = RunPlan("resume", pathlib.Path("run"), 2)
    >>> plan.action, plan.initial_epoch
    ('resume', 2)
    """

    action: str
    out: Path
    initial_epoch: int


def _is_run_file(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def clear_run(out: str | os.PathLike, files: Iterable[str] = RUN_FILES) -> list[str]:
    """Remove a run's own files and folders from ``out``; other files stay.

    Args:
        out: the output folder (a missing one is left missing).
        files: names or glob patterns of the run's files (default
            :data:`RUN_FILES`).

    Returns:
        The names removed, sorted.

    Example:

    >>> import tempfile, pathlib
    >>> from bayesseg.cli.runs import clear_run
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("model.keras", "training.png", "notes.txt"):
    ...     _ = (out / name).write_text("x")
    >>> (out / "backup").mkdir()
    >>> clear_run(out), sorted(p.name for p in out.iterdir())
    (['backup', 'model.keras', 'training.png'], ['notes.txt'])
    """
    out = Path(out)
    if not out.is_dir():
        return []
    patterns = tuple(files)
    removed = []
    for entry in sorted(out.iterdir()):
        if not _is_run_file(entry.name, patterns):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    return removed


def _comparable(config: Mapping[str, Any], ignore: Iterable[str]) -> dict[str, Any]:
    """The options as JSON reads them back (tuples as lists), without ``ignore``."""
    ignored = set(ignore)
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in ignored}))


def _read_model_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _backup_epoch(out: Path) -> int | None:
    """Epochs the backup holds (BackupAndRestore's metadata), or None without one."""
    backup = out / BACKUP
    metadata = backup / "training_metadata.json"
    if not (backup / "latest.weights.h5").is_file() or not metadata.is_file():
        return None
    try:
        return int(json.loads(metadata.read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _differences(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    changed = []
    for key in sorted(set(stored) | set(given)):
        if stored.get(key) != given.get(key):
            changed.append(f"{key} {stored.get(key)!r} -> {given.get(key)!r}")
    return changed


def _listing(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def prepare_out(
    out: str | os.PathLike,
    resolved_config: Mapping[str, Any],
    fingerprint: str,
    overwrite: bool,
    *,
    epochs: int | None = None,
    ignore: Iterable[str] = ("out",),
    files: Iterable[str] = RUN_FILES,
    skip: Iterable[str] = (),
    prog: str = "bayesseg train",
) -> RunPlan:
    """Decide what a training command does with its output folder, and prepare it.

    The folder's ``model.json`` (``"config"``: the resolved options, ``"run"``:
    :func:`run_record`) is compared with ``resolved_config`` (less the keys in
    ``ignore``) and ``fingerprint``:

    * ``overwrite``: the run's own files (``files``) are removed, others
      kept: train from scratch.
    * a missing or empty folder: train.
    * the same options and inputs, finished: print that the model is
      already trained and return "done" (exit 0 without training).
    * the same, interrupted, with Keras' backup in ``out/backup``: print
      "resuming from epoch k of n" and return "resume" (``BackupAndRestore``
      restores it; :class:`EpochLog` replaces the rows of the epochs trained
      again).
    * the same, stopped before its first epoch finished (no backup, no epoch
      recorded): its files are removed; train.
    * anything else (other options or inputs, a run that diverged, files of
      another program, a ``model.json`` without a run record): a one-line
      ``ValueError`` suggesting ``--overwrite``.

    Args:
        out: the output folder.
        resolved_config: the options as they will be stored in ``model.json``'s
            ``"config"`` (JSON values).
        fingerprint: :func:`input_fingerprint` of the inputs.
        overwrite: ``--overwrite``.
        epochs: the epochs asked for, for the messages (default
            ``resolved_config["epochs"]``).
        ignore: option names that do not change what is trained (default
            ``("out",)``: a run moved elsewhere is the same run).
        files: names or glob patterns of the run's files (:data:`RUN_FILES`).
        skip: names or glob patterns in ``out`` that belong to neither this
            run nor anyone else (e.g. other workers' folders): never read,
            never removed.
        prog: the command, for the printed lines.

    Returns:
        A :class:`RunPlan`; ``out`` exists.

    Raises:
        ValueError: the folder holds something this run must not replace
            (names what, and suggests ``--overwrite``), or ``out`` is a file.

    Example:

    >>> import tempfile, pathlib
    >>> from bayesseg.cli.runs import prepare_out, run_record, write_json
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> options = {"epochs": 2, "seed": 0, "out": str(out)}
    >>> prepare_out(out, options, "sha256:ab", overwrite=False).action
    'train'
    >>> record = run_record("sha256:ab", 2, epochs_finished=2, finished=True)
    >>> write_json(out / "model.json", {"config": options, "run": record})
    >>> prepare_out(out, options, "sha256:ab", overwrite=False).action
    bayesseg train: ... is already trained (2 epochs; the same options and input files): \
nothing to do (add --overwrite to train it again)
    'done'
    >>> prepare_out(out, {**options, "seed": 1}, "sha256:ab", overwrite=False)
    Traceback (most recent call last):
    ...
    ValueError: Argument --out ... holds a run with other options (seed 0 -> 1); \
add --overwrite to train from scratch there (replacing its model.keras, model.json, \
training.csv, backup/ ...) or choose another --out.
    """
    out = Path(out)
    overwrite_hint = (
        "add --overwrite to train from scratch there (replacing its model.keras, "
        "model.json, training.csv, backup/ ...) or choose another --out."
    )
    where = f"Argument --out {os.fspath(out)!r}"
    if out.exists() and not out.is_dir():
        raise ValueError(f"{where} must be a folder. Received: a file")
    patterns = tuple(files)
    skipped = tuple(skip)
    if overwrite:
        removed = clear_run(out, patterns)
        if removed:
            print(f"{prog}: --overwrite: removed {_listing(removed)} from {out}")
        out.mkdir(parents=True, exist_ok=True)
        return RunPlan("train", out, 0)
    entries = (
        sorted(e.name for e in out.iterdir() if not _is_run_file(e.name, skipped))
        if out.is_dir()
        else []
    )
    if not entries:
        out.mkdir(parents=True, exist_ok=True)
        return RunPlan("train", out, 0)
    metadata = _read_model_json(out / "model.json")
    run = None if metadata is None else metadata.get(RUN_KEY)
    if not isinstance(run, dict) or not isinstance(metadata.get(CONFIG_KEY), dict):
        what = (
            f"files of another program or an older bayesseg ({_listing(entries)})"
            if metadata is None
            else "a model.json without a run record (an older bayesseg's)"
        )
        raise ValueError(f"{where} holds {what}; {overwrite_hint}")
    given = _comparable(resolved_config, ignore)
    stored = _comparable(metadata[CONFIG_KEY], ignore)
    differences = _differences(stored, given)
    what = []
    if differences:
        what.append(f"other options ({_listing(differences, 3)})")
    if run.get("fingerprint") != fingerprint:
        what.append("other input files (names, sizes or contents changed)")
    if what:
        raise ValueError(f"{where} holds a run with {' and '.join(what)}; {overwrite_hint}")
    epochs = int(resolved_config["epochs"] if epochs is None else epochs)
    done = int(run.get("epochs_finished") or 0)
    if run.get("finished"):
        print(
            f"{prog}: {out / 'model.keras'} is already trained ({done} epochs; the same "
            "options and input files): nothing to do (add --overwrite to train it again)"
        )
        return RunPlan("done", out, done)
    diverged = run.get("diverged")
    if diverged:
        raise ValueError(
            f"{where} holds a run that diverged at epoch {diverged.get('epoch')} (the "
            f"{diverged.get('term')} was not finite), which the same options would repeat: "
            "lower --learning-rate and add --overwrite, or choose another --out."
        )
    backup = _backup_epoch(out)
    if backup is not None:
        if backup < epochs:
            print(f"{prog}: resuming from epoch {backup + 1} of {epochs} ({out})")
        else:
            print(f"{prog}: resuming after epoch {backup} of {epochs}: finishing the run ({out})")
        return RunPlan("resume", out, backup)
    if done == 0:
        removed = clear_run(out, patterns)
        print(
            f"{prog}: restarting: the earlier run in {out} stopped before its first epoch "
            f"finished (removed {_listing(removed) or 'nothing'})"
        )
        return RunPlan("train", out, 0)
    raise ValueError(
        f"{where} holds an unfinished run ({done} of {epochs} epochs) without its resume "
        f"state {BACKUP}/; {overwrite_hint}"
    )


# --------------------------------------------------------------------------
# Divergence
# --------------------------------------------------------------------------
# What to try, per term that went non-finite (the command line's options).
HINTS = {
    "NLL": "lower --learning-rate (or --clipnorm), or check the inputs and labels for "
    "extreme values",
    "KL": "lower --learning-rate or --scale-multiplier (the posterior scales grew without bound)",
    "gradient": "lower --learning-rate or --clipnorm (exploding gradients), or check the "
    "inputs for extreme values",
    "loss": "lower --learning-rate (or --clipnorm), or check the inputs and labels for "
    "extreme values",
    "weights": "lower --learning-rate or --clipnorm (an update overflowed)",
}
# The logs a BayesianModel writes, in the order they are blamed.
_TERMS = (("nll", "NLL"), ("kl", "KL"), ("loss", "loss"))


class Diverged(ValueError):
    """Training stopped at a non-finite loss, NLL, KL or gradient (a one-line ValueError).

    Attributes:
        term: "NLL", "KL", "gradient", "loss" or "weights" (an update that
            overflowed).
        epoch: the epoch (from 1) in which it happened.
        step: the step of that epoch (from 1), or None when unknown.
        value: the value seen (NaN or inf) or None.
        saved: what the output folder kept, appended to the message.

    Example:

    >>> from bayesseg.cli.runs import Diverged
    >>> error = Diverged("NLL", 2, 3, value=float("nan"), epochs=5, steps=4)
    >>> print(error)
    training diverged at epoch 2 of 5, step 3 of 4: the NLL is not finite (nan); \
lower --learning-rate (or --clipnorm), or check the inputs and labels for extreme values.
    >>> error.record()
    {'epoch': 2, 'step': 3, 'term': 'NLL'}
    >>> str(error.with_saved("Kept epoch 1.")).endswith("values. Kept epoch 1.")
    True
    """

    def __init__(
        self,
        term: str,
        epoch: int,
        step: int | None,
        *,
        value: float | None = None,
        epochs: int | None = None,
        steps: int | None = None,
        hint: str | None = None,
        saved: str | None = None,
    ):
        self.term, self.epoch, self.step, self.value = term, epoch, step, value
        self.epochs, self.steps, self.saved = epochs, steps, saved
        self.hint = HINTS.get(term, HINTS["loss"]) if hint is None else hint
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"epoch {self.epoch}" + ("" if self.epochs is None else f" of {self.epochs}")
        if self.step is not None:
            where += f", step {self.step}" + ("" if self.steps is None else f" of {self.steps}")
        value = "" if self.value is None else f" ({self.value})"
        verb = "are" if self.term == "weights" else "is"
        text = (
            f"training diverged at {where}: the {self.term} {verb} not finite{value}; {self.hint}."
        )
        return text if self.saved is None else f"{text} {self.saved}"

    def with_saved(self, saved: str) -> Diverged:
        """The same error, its message ending with what the folder kept."""
        return Diverged(
            self.term,
            self.epoch,
            self.step,
            value=self.value,
            epochs=self.epochs,
            steps=self.steps,
            hint=self.hint,
            saved=saved,
        )

    def record(self) -> dict[str, Any]:
        """model.json's ``run["diverged"]``."""
        return {"epoch": self.epoch, "step": self.step, "term": self.term}


def _scalar(value) -> float | None:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return float(array) if array.size == 1 else None


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training with :class:`Diverged` at the first non-finite loss, NLL or KL.

    After every training batch (and epoch) it reads the logs a
    ``BayesianModel`` writes (``nll``, ``kl``, ``loss``; a plain Keras model's
    ``loss``) and raises :class:`Diverged` naming the epoch, the step and the
    term; at the end of an epoch it also checks the weights (an update that
    overflowed), before the epoch's checkpoint: nothing non-finite is saved. Put it
    first among the callbacks. It also tracks where training is, so that
    :func:`diverged_from_error` can place the model's own finiteness errors.

    Args:
        epochs: the epochs of the run, for the message.
        steps: steps per epoch, for the message.
        hints: what to try per term (default :data:`HINTS`); a string for all.

    Example:

    >>> import bayesseg as bs, keras, numpy as np
    >>> from bayesseg.cli.runs import DivergenceGuard, Diverged
    >>> inputs = keras.Input((4,))
    >>> model = bs.BayesianModel(inputs, bs.layers.DenseFlipout(1)(inputs))
    >>> model.compile(optimizer="adam", loss=bs.ELBO(
    ...     bs.losses.WeightedBinaryCrossentropy(), bs.kl.PerExample(num_examples=8)))
    >>> guard = DivergenceGuard(epochs=1, steps=1)
    >>> guard.set_model(model)
    >>> guard.on_train_batch_begin(0)
    >>> guard.on_train_batch_end(0, {"loss": 0.7, "nll": 0.7, "kl": float("inf")})
    Traceback (most recent call last):
    ...
    bayesseg.cli.runs.Diverged: training diverged at epoch 1 of 1, step 1 of 1: the KL is \
not finite (inf); lower --learning-rate or --scale-multiplier (the posterior scales grew \
without bound).
    """

    def __init__(
        self,
        epochs: int | None = None,
        steps: int | None = None,
        hints: Mapping[str, str] | str | None = None,
    ):
        super().__init__()
        self.epochs, self.steps = epochs, steps
        self.hints = hints
        self.epoch = 0  # from 0, as Keras counts
        self.batch: int | None = None

    def _hint(self, term: str) -> str | None:
        if isinstance(self.hints, str):
            return self.hints
        return None if self.hints is None else self.hints.get(term)

    def diverged(self, term: str, value: float | None = None) -> Diverged:
        """:class:`Diverged` at the current epoch and step.

        Example:

        >>> from bayesseg.cli.runs import DivergenceGuard
        >>> guard = DivergenceGuard(epochs=3)
        >>> guard.on_epoch_begin(1)
        >>> guard.diverged("KL").record()
        {'epoch': 2, 'step': None, 'term': 'KL'}
        """
        return Diverged(
            term,
            self.epoch + 1,
            None if self.batch is None else self.batch + 1,
            value=value,
            epochs=self.epochs,
            steps=self.steps,
            hint=self._hint(term),
        )

    def _check(self, logs) -> None:
        if not logs:
            return
        for key, term in _TERMS:
            if key in logs:
                value = _scalar(logs[key])
                if value is not None and not math.isfinite(value):
                    raise self.diverged(term, value)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.batch = epoch, None

    def on_train_batch_begin(self, batch, logs=None):
        self.batch = batch

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs)
        # A finite loss can still take an update that overflows (a model
        # without the BayesianModel's gradient check): never checkpoint it.
        for variable in self.model.weights if self.model is not None else ():
            value = np.asarray(keras.ops.convert_to_numpy(variable.value))
            if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
                raise self.diverged("weights")


# The model's own checks (bayesseg.training.model): an Assert whose message
# names the term; the numbers that follow are the optimizer step and the value.
_ASSERTS = (
    ("bayesseg: the NLL term is not finite", "NLL"),
    ("bayesseg: the KL term is not finite", "KL"),
    ("bayesseg: the gradient is not finite", "gradient"),
)
_VALUE = re.compile(r"optimizer step\] \[\d+\] \[([^\]]+)\]")


def diverged_from_error(error: BaseException, guard: DivergenceGuard) -> Diverged | None:
    """:class:`Diverged` for an error raised by the model's own finiteness checks, else None.

    A ``BayesianModel``'s train step asserts that the NLL, the KL and the
    gradient are finite (a TensorFlow ``InvalidArgumentError`` with a long
    graph traceback); this names the term and places it at the ``guard``'s
    epoch and step. A :class:`Diverged` passes through.

    Example:

    >>> from bayesseg.cli.runs import DivergenceGuard, diverged_from_error
    >>> error = ValueError("assertion failed: [bayesseg: the KL term is not finite at "
    ...                    "optimizer step] [7] [inf]")
    >>> str(diverged_from_error(error, DivergenceGuard()))[:58]
    'training diverged at epoch 1: the KL is not finite (inf); '
    >>> diverged_from_error(KeyError("x"), DivergenceGuard()) is None
    True
    """
    if isinstance(error, Diverged):
        return error
    text = str(error)
    for marker, term in _ASSERTS:
        if marker in text:
            match = _VALUE.search(text[text.index(marker) :]) if term != "gradient" else None
            value = None if match is None else _scalar(match.group(1))
            return guard.diverged(term, value)
    return None


# --------------------------------------------------------------------------
# After a failure
# --------------------------------------------------------------------------
def finish_failed(
    out: str | os.PathLike,
    plan: RunPlan,
    epochs_finished: int,
    diverged: Diverged | None = None,
    files: Iterable[str] = RUN_FILES,
) -> str:
    """Leave ``out`` consistent after training failed; say what it kept.

    When no epoch finished in a run that started from scratch, the run's
    files are removed (no ``model.json`` without a model). Otherwise the last
    finished epoch's ``model.keras`` and ``model.json`` stay (the backup too,
    so an interrupted run resumes); after a divergence ``model.json``'s
    ``run["diverged"]`` records where, so a rerun of the same options is
    refused rather than diverging again.

    Args:
        out: the output folder.
        plan: what :func:`prepare_out` decided for this run.
        epochs_finished: epochs whose checkpoint was written (all runs).
        diverged: the divergence, or None for another failure.
        files: the run's files (:data:`RUN_FILES`).

    Returns:
        A sentence saying what the folder holds, for the error message.

    Example:

    >>> import tempfile, pathlib
    >>> from bayesseg.cli.runs import RunPlan, finish_failed
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (out / "model.json").write_text("{}")
    >>> finish_failed(out, RunPlan("train", out, 0), 0)
    'No epoch finished: nothing was saved.'
    >>> sorted(out.iterdir())
    []
    """
    out = Path(out)
    if epochs_finished == 0 and plan.action == "train":
        clear_run(out, files)
        return "No epoch finished: nothing was saved."
    path = out / "model.json"
    metadata = _read_model_json(path)
    if diverged is not None and metadata is not None and isinstance(metadata.get(RUN_KEY), dict):
        metadata[RUN_KEY]["diverged"] = diverged.record()
        write_json(path, metadata)
    return f"{out / 'model.keras'} holds epoch {epochs_finished}, the last finished one."


@contextlib.contextmanager
def guarded_training(out: str | os.PathLike, plan: RunPlan, guard, recorder) -> Iterator[None]:
    """Run the training inside; on a failure leave ``out`` consistent (:func:`finish_failed`).

    A divergence (the guard's :class:`Diverged`, or the model's own
    finiteness error that :func:`diverged_from_error` recognises) is raised as
    :class:`Diverged` saying what the folder kept; any other exception, and
    ``KeyboardInterrupt``, propagate unchanged after the folder is tidied (an
    interrupted run stays resumable unless nothing was saved).

    Example:

    >>> import tempfile, pathlib
    >>> from bayesseg.cli.runs import RunPlan, guarded_training
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> class Recorder: epochs_finished = 0
    >>> try:
    ...     with guarded_training(out, RunPlan("train", out, 0), None, Recorder()):
    ...         raise OSError("disk full")
    ... except OSError as err:
    ...     print(err)
    disk full
    """
    try:
        yield
    except Exception as err:
        diverged = None if guard is None else diverged_from_error(err, guard)
        saved = finish_failed(out, plan, recorder.epochs_finished, diverged)
        if diverged is None:
            raise
        raise diverged.with_saved(saved) from err
    except BaseException:  # KeyboardInterrupt: resumable unless nothing was saved
        finish_failed(out, plan, recorder.epochs_finished)
        raise


# --------------------------------------------------------------------------
# Where training runs: the strategy's part of a run
# --------------------------------------------------------------------------
#: TensorFlow's class names of the public strategies.
STRATEGY_NAMES = {"CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy"}
#: The folders of the non-chief workers of a multi-worker run, inside the chief's ``out``.
WORKER_FOLDERS = ("worker_*",)


def is_default_strategy(strategy) -> bool:
    """Whether ``strategy`` is the one in force outside any scope (one device).

    Example:

    >>> import tensorflow as tf
    >>> from bayesseg.cli.runs import is_default_strategy
    >>> is_default_strategy(tf.distribute.get_strategy())
    True
    """
    import tensorflow as tf

    return strategy is tf.distribute.get_strategy()


def _task(strategy) -> tuple[str, int, dict] | None:
    """(task type, index, cluster spec) of a multi-worker process; None otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None
    return resolver.task_type, int(resolver.task_id or 0), resolver.cluster_spec().as_dict()


def worker_out(strategy, out: Path) -> Path:
    """Where this process writes: ``out`` for the chief (worker 0, or the "chief"
    task), ``out/<type>_<index>`` for the other workers.

    Each worker keeps its own checkpoint and backup, so that every worker
    resumes from the same epoch, on a shared file system or not.

    Example:

    >>> import pathlib, tensorflow as tf
    >>> from bayesseg.cli.runs import worker_out
    >>> worker_out(tf.distribute.get_strategy(), pathlib.Path("run")).name
    'run'
    """
    task = _task(strategy)
    if task is None:
        return out
    task_type, index, spec = task
    chief = task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in spec)
    return out if chief else out / f"{task_type}_{index}"


def strategy_record(requested: str, strategy) -> dict[str, Any]:
    """model.json's ``run["strategy"]``: what was asked, what ran, on how many replicas.

    Example:

    >>> import tensorflow as tf
    >>> from bayesseg.cli.runs import strategy_record
    >>> strategy_record("auto", tf.distribute.get_strategy())
    {'requested': 'auto', 'strategy': 'default', 'replicas': 1, 'workers': 1}
    """
    task = _task(strategy)
    workers = 1 if task is None else sum(len(task[2].get(t, [])) for t in ("chief", "worker"))
    kind = type(strategy).__name__
    return {
        "requested": requested,
        "strategy": "default" if is_default_strategy(strategy) else STRATEGY_NAMES.get(kind, kind),
        "replicas": int(strategy.num_replicas_in_sync),
        "workers": workers,
    }


# --------------------------------------------------------------------------
# training.csv and model.json, epoch by epoch
# --------------------------------------------------------------------------
def _text(value) -> str:
    number = _scalar(value)
    return str(value) if number is None else repr(number)


class EpochLog(keras.callbacks.Callback):
    """``training.csv``: one row per finished epoch, never two rows of one epoch.

    As Keras' ``CSVLogger`` (an ``epoch`` column counted from 0, then the
    logs' keys sorted), but written only when an epoch ends (no empty file
    when none does) and rewritten whole, atomically: rows of the epoch being
    written and of later ones (left by an interrupted run that a resumed run
    trains again) are dropped first; a key first seen later is added as a
    column (empty in earlier rows).

    Args:
        path: the CSV file.

    Example:

    >>> import tempfile, pathlib
    >>> from bayesseg.cli.runs import EpochLog
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "training.csv"
    >>> log = EpochLog(path)
    >>> for epoch in (0, 1, 1):  # epoch 1 again, as after a resume
    ...     log.on_epoch_end(epoch, {"loss": 0.5 - epoch / 10})
    >>> print(path.read_text().strip())
    epoch,loss
    0,0.5
    1,0.4
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = Path(path)

    def _read(self) -> tuple[list[str], list[dict[str, str]]]:
        if not self.path.is_file():
            return [], []
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return list(reader.fieldnames or []), rows

    def on_epoch_end(self, epoch, logs=None):
        keys, rows = self._read()
        kept = []
        for row in rows:
            try:
                if int(row.get("epoch") or "") < epoch:
                    kept.append(row)
            except ValueError:
                continue  # not a row of ours
        new = {"epoch": str(epoch), **{k: _text(v) for k, v in (logs or {}).items()}}
        fields = keys or ["epoch"]
        fields += [k for k in sorted(new) if k not in fields]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept + [new])
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(buffer.getvalue(), encoding="utf-8")
        os.replace(temporary, self.path)


class RunRecorder(keras.callbacks.Callback):
    """Rewrites ``model.json`` after every epoch: ``run["epochs_finished"]`` follows
    the checkpoint.

    Put it after ``ModelCheckpoint``: ``model.json`` then always describes
    the ``model.keras`` beside it. ``metadata`` is the dict written (its
    ``"run"`` entry is :func:`run_record`'s); the caller keeps writing it
    after training.

    Args:
        path: ``model.json``.
        metadata: the dict to write; updated in place.

    Example:

    >>> import tempfile, pathlib, json
    >>> from bayesseg.cli.runs import RunRecorder, run_record
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.json"
    >>> recorder = RunRecorder(path, {"run": run_record("sha256:ab", 3)})
    >>> recorder.on_epoch_end(0, {})
    >>> json.loads(path.read_text())["run"]["epochs_finished"], recorder.epochs_finished
    (1, 1)
    """

    def __init__(self, path: str | os.PathLike, metadata: dict):
        super().__init__()
        self.path = Path(path)
        self.metadata = metadata
        self.epochs_finished = int(metadata[RUN_KEY]["epochs_finished"])

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_finished = epoch + 1
        self.metadata[RUN_KEY]["epochs_finished"] = self.epochs_finished
        write_json(self.path, self.metadata)
