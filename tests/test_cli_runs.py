"""``bayesseg train`` reruns and divergence (bayesseg.cli.runs): a diverged run ends in
one line (exit 2) with a consistent folder; a rerun resumes, reports a finished run,
refuses another run's folder (suggesting --overwrite), or retrains with --overwrite;
training.csv never holds an epoch twice."""

from __future__ import annotations

import csv
import doctest
import json
import shutil

import keras
import numpy as np
import pytest
from test_cli import _npy_folders

from bayesseg.cli import main, runs, train

TINY = ["--depth", "2", "--base-filters", "2", "--batch-size", "2", "--quiet"]


def _args(images, masks, out):
    return ["train", "--images", str(images), "--masks", str(masks), "--out", str(out)]


def _train_args(tmp_path, epochs=1, *extra):
    images, masks = tmp_path / "images", tmp_path / "masks"
    if not images.is_dir():
        _npy_folders(tmp_path, 4)
    return [*_args(images, masks, tmp_path / "run"), "--epochs", str(epochs), *TINY, *extra]


def _epochs(path):
    with open(path, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    return err


def _with_callback(monkeypatch, callback):
    """Append ``callback`` to train's callbacks (after the checkpoint and model.json)."""
    callbacks = train._callbacks
    monkeypatch.setattr(train, "_callbacks", lambda *a: [*callbacks(*a), callback])


# --------------------------------------------------------------------------
# Divergence
# --------------------------------------------------------------------------
@pytest.mark.slow
def test_divergence_in_the_first_epoch_is_one_line_and_leaves_nothing(tmp_path, capsys):
    args = _train_args(tmp_path, 2, "--learning-rate", "1e6")
    assert main(args) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith("bayesseg train: error: training diverged at epoch 1 of 2, step ")
    assert "the NLL is not finite" in err and "lower --learning-rate" in err
    assert "No epoch finished: nothing was saved." in err
    # No model, no model.json describing one, no empty training.csv.
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []
    # The folder is as new: the same command with a sane rate trains there.
    args[args.index("1e6")] = "1e-3"
    assert main(args) == 0


class _PoisonAfterFirstEpoch(keras.callbacks.Callback):
    """After epoch 1's checkpoint: a NaN output bias (the NLL fails, not the KL)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            bias = next(v for v in self.model.weights if v.path == "logits/bias")
            bias.assign(np.full(bias.shape, np.nan, "float32"))


@pytest.mark.slow
def test_divergence_after_an_epoch_keeps_that_epoch(tmp_path, capsys, monkeypatch):
    args = _train_args(tmp_path, 3)
    out = tmp_path / "run"
    _with_callback(monkeypatch, _PoisonAfterFirstEpoch())
    assert main(args) == 2
    err = _one_line(capsys.readouterr().err)
    assert "training diverged at epoch 2 of 3, step 1 of 2: the NLL is not finite" in err
    assert f"{out / 'model.keras'} holds epoch 1, the last finished one." in err
    # The checkpoint of epoch 1 (finite), a model.json that says so, one CSV row.
    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    run = json.loads((out / "model.json").read_text())["run"]
    assert run["epochs_finished"] == 1 and not run["finished"]
    assert run["diverged"] == {"epoch": 2, "step": 1, "term": "NLL"}
    assert _epochs(out / "training.csv") == [0]
    # The same options would diverge again: refused, with the way out.
    monkeypatch.undo()
    assert main(args) == 2
    err = _one_line(capsys.readouterr().err)
    assert "holds a run that diverged at epoch 2 (the NLL was not finite)" in err
    assert "--overwrite" in err


def test_guard_names_the_term_and_place():
    guard = runs.DivergenceGuard(epochs=4, steps=10)
    guard.on_epoch_begin(2)
    guard.on_train_batch_begin(6)
    guard.on_train_batch_end(6, {"loss": 1.0, "nll": 0.5, "kl": 3.0})  # finite: nothing
    with pytest.raises(runs.Diverged, match=r"epoch 3 of 4, step 7 of 10: the KL is not finite"):
        guard.on_train_batch_end(6, {"loss": np.inf, "nll": 0.5, "kl": np.inf})
    with pytest.raises(runs.Diverged, match="the NLL is not finite") as info:
        guard.on_train_batch_end(6, {"loss": np.nan, "nll": np.nan, "kl": np.inf})
    assert isinstance(info.value, ValueError)  # the command line prints it in one line
    assert info.value.record() == {"epoch": 3, "step": 7, "term": "NLL"}
    # The model's own assertions, as TensorFlow words them.
    message = (
        "Graph execution error:\n\nassertion failed: [bayesseg: the gradient is not finite "
        "(NaN, inf, or a global norm that overflows float32) at optimizer step] [12]"
    )
    diverged = runs.diverged_from_error(RuntimeError(message), guard)
    assert diverged.term == "gradient" and "--clipnorm" in str(diverged)
    assert "\n" not in str(diverged.with_saved("Kept x."))


# --------------------------------------------------------------------------
# Reruns
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished 1-epoch run the rerun tests copy (training is most of their time)."""
    root = tmp_path_factory.mktemp("finished_run")
    assert main(_train_args(root, 1)) == 0
    return root


def _copy_run(finished_run, tmp_path):
    for name in ("images", "masks", "run"):
        shutil.copytree(finished_run / name, tmp_path / name)
    # model.json names its folder: a copy elsewhere is the same run ("out" is not compared).
    return _train_args(tmp_path, 1)


def test_model_json_records_the_run(finished_run):
    meta = json.loads((finished_run / "run" / "model.json").read_text())
    files = sorted((finished_run / "images").iterdir()) + sorted((finished_run / "masks").iterdir())
    assert meta["run"] == {
        "fingerprint": runs.input_fingerprint(files),
        "epochs": 1,
        "epochs_finished": 1,
        "finished": True,
        "strategy": {"requested": "auto", "strategy": "default", "replicas": 1, "workers": 1},
        "diverged": None,
    }
    assert meta["config"]["epochs"] == 1 and meta["config"]["strategy"] == "auto"


def test_finished_run_is_reported_and_kept(finished_run, tmp_path, capsys):
    args = _copy_run(finished_run, tmp_path)
    out = tmp_path / "run"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"{out / 'model.keras'} is already trained (1 epochs" in printed
    assert "nothing to do" in printed
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--seed", "3"], "holds a run with other options (seed 0 -> 3)"),
        (["--learning-rate", "0.01"], "learning_rate 0.001 -> 0.01"),
        ("data", "holds a run with other input files"),
    ],
)
def test_another_run_in_the_folder_is_refused(finished_run, tmp_path, capsys, change, message):
    args = _copy_run(finished_run, tmp_path)
    if change == "data":
        image = np.load(tmp_path / "images" / "img0.npy")
        np.save(tmp_path / "images" / "img0.npy", image + 1.0)
    else:
        args += change
    assert main(args) == 2
    err = _one_line(capsys.readouterr().err)
    assert message in err and "add --overwrite" in err


@pytest.mark.slow
def test_overwrite_trains_from_scratch_and_keeps_other_files(finished_run, tmp_path, capsys):
    args = _copy_run(finished_run, tmp_path)
    out = tmp_path / "run"
    (out / "notes.txt").write_text("mine")
    (out / "backup").mkdir()  # a stale backup must not be resumed
    assert main([*args, "--epochs", "2"]) == 2  # other options, no --overwrite
    assert "add --overwrite" in capsys.readouterr().err
    assert main([*args, "--epochs", "2", "--overwrite"]) == 0
    printed = capsys.readouterr().out
    removed = "--overwrite: removed backup, gradients.png, history.json, model.json and 3 more"
    assert removed in printed
    assert _epochs(out / "training.csv") == [0, 1]
    run = json.loads((out / "model.json").read_text())["run"]
    assert run["finished"] and run["epochs_finished"] == 2
    assert (out / "notes.txt").read_text() == "mine" and not (out / "backup").exists()


def test_folder_of_other_files_is_refused_unless_overwrite(tmp_path, capsys):
    args = _train_args(tmp_path, 1)
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.keras").write_text("not ours")
    assert main(args) == 2
    err = _one_line(capsys.readouterr().err)
    assert "holds files of another program or an older bayesseg (model.keras)" in err
    assert "add --overwrite" in err


class _Interrupt(keras.callbacks.Callback):
    """Keep a copy of the backup after epoch 1, stop after epoch 2 (Ctrl-C)."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            shutil.copytree(self.out / "backup", self.out.parent / "backup_epoch1")
        if epoch == 1:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_resumed_run_says_so_and_writes_each_epoch_once(tmp_path, capsys, monkeypatch):
    args = _train_args(tmp_path, 3)
    out = tmp_path / "run"
    _with_callback(monkeypatch, _Interrupt(out))
    with pytest.raises(KeyboardInterrupt):
        main(args)
    monkeypatch.undo()
    assert _epochs(out / "training.csv") == [0, 1]
    assert json.loads((out / "model.json").read_text())["run"]["epochs_finished"] == 2
    # Killed between epoch 2's CSV row and its backup: the backup holds epoch 1.
    shutil.rmtree(out / "backup")
    shutil.copytree(tmp_path / "backup_epoch1", out / "backup")
    capsys.readouterr()
    assert main(args) == 0
    assert f"bayesseg train: resuming from epoch 2 of 3 ({out})" in capsys.readouterr().out
    # Epoch 2 was trained again: its row replaced, never doubled.
    assert _epochs(out / "training.csv") == [0, 1, 2]
    run = json.loads((out / "model.json").read_text())["run"]
    assert run["finished"] and run["epochs_finished"] == 3
    assert not (out / "backup").exists()


@pytest.mark.slow
def test_run_stopped_in_its_first_epoch_restarts(finished_run, tmp_path, capsys):
    """Killed before any epoch ended: model.json says 0 epochs, no backup."""
    args = _copy_run(finished_run, tmp_path)
    out = tmp_path / "run"
    meta = json.loads((out / "model.json").read_text())
    meta["run"].update(finished=False, epochs_finished=0)
    runs.write_json(out / "model.json", meta)
    for name in ("model.keras", "training.csv", "history.json"):
        (out / name).unlink()
    assert main(args) == 0
    assert "restarting: the earlier run" in capsys.readouterr().out
    assert _epochs(out / "training.csv") == [0]


# --------------------------------------------------------------------------
# The helpers on their own
# --------------------------------------------------------------------------
def test_fingerprint_follows_names_sizes_and_contents(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        (folder / "x.npy").write_bytes(b"abc")
    base = runs.input_fingerprint([first])
    assert runs.input_fingerprint([second]) == base  # the folder's path is not hashed
    (second / "x.npy").rename(second / "y.npy")
    assert runs.input_fingerprint([second]) != base  # a name
    (first / "x.npy").write_bytes(b"abd")
    assert runs.input_fingerprint([first]) != base  # a content of the same size
    with pytest.raises(ValueError, match=r"^Argument paths must hold files or folders"):
        runs.input_fingerprint([tmp_path / "missing"])


def test_unfinished_run_without_backup_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    record = runs.run_record("sha256:x", 5, epochs_finished=2)
    runs.write_json(out / "model.json", {"config": {"epochs": 5}, "run": record})
    with pytest.raises(ValueError, match=r"unfinished run \(2 of 5 epochs\) without its resume"):
        runs.prepare_out(out, {"epochs": 5}, "sha256:x", overwrite=False)
    assert runs.prepare_out(out, {"epochs": 5}, "sha256:x", overwrite=True).action == "train"
    assert sorted(out.iterdir()) == []


def test_runs_docstring_examples():
    result = doctest.testmod(runs, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0
