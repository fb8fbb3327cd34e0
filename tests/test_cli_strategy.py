"""``bayesseg train --strategy``: bs.training.resolve_strategy, MirroredStrategy on the
2 logical CPUs of tests/conftest.py equal to one device, and a two-process localhost
MultiWorkerMirroredStrategy run whose workers agree."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_cli import _npy_folders

import bayesseg as bs
from bayesseg.cli import main, options, train

# A deterministic U-Net (no weight noise: replicas would draw different noise by
# design), so that runs on different replica counts can be compared number for number.
TINY = ["--depth", "2", "--base-filters", "2", "--batch-size", "2", "--quiet"]
DETERMINISTIC = ["--bayesian-blocks", "none", "--epochs", "2", *TINY]


def _args(root, out, *extra):
    images, masks = root / "images", root / "masks"
    if not images.is_dir():
        _npy_folders(root, 4)
    return ["train", "--images", str(images), "--masks", str(masks), "--out", str(out), *extra]


def _weights(path):
    return keras.saving.load_model(path, compile=False).get_weights()


def _run(path):
    return json.loads(path.read_text())["run"]


def test_strategy_names_are_the_command_line_choices():
    assert bs.training.STRATEGIES == options.STRATEGIES
    assert "resolve_strategy" in bs.training.__all__ and "STRATEGIES" in bs.training.__all__


def test_resolve_strategy_docstring_example():
    import doctest

    from bayesseg.training import distributed

    finder = doctest.DocTestFinder()
    (test,) = finder.find(distributed.resolve_strategy, "resolve_strategy", globs={})
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    assert runner.run(test).failed == 0 and test.examples


def test_resolve_strategy(monkeypatch):
    assert bs.training.resolve_strategy("default") is tf.distribute.get_strategy()
    # No GPU here: auto is the default strategy; mirrored spans the 2 logical CPUs.
    assert bs.training.resolve_strategy("auto") is tf.distribute.get_strategy()
    mirrored = bs.training.resolve_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == 2
    with pytest.raises(ValueError, match=r"must be one of 'auto', 'default', 'mirrored'"):
        bs.training.resolve_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=r"needs the TF_CONFIG .* Received: TF_CONFIG unset$"):
        bs.training.resolve_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": ')
    with pytest.raises(ValueError, match=r"Received: TF_CONFIG='\{\"cluster\": '$"):
        bs.training.resolve_strategy("multiworker")


@pytest.mark.slow
def test_train_mirrored_on_two_replicas_equals_default(tmp_path):
    default, mirrored = tmp_path / "default", tmp_path / "mirrored"
    assert main(_args(tmp_path, default, "--strategy", "default", *DETERMINISTIC)) == 0
    assert main(_args(tmp_path, mirrored, "--strategy", "mirrored", *DETERMINISTIC)) == 0
    expected, found = _weights(default / "model.keras"), _weights(mirrored / "model.keras")
    for a, b in zip(expected, found, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)
    assert _run(mirrored / "model.json")["strategy"] == {
        "requested": "mirrored",
        "strategy": "MirroredStrategy",
        "replicas": 2,
        "workers": 1,
    }
    assert _run(default / "model.json")["strategy"]["strategy"] == "default"
    # Where a run trains does not change what it is: the same folder under another
    # --strategy holds a finished run.
    assert main(_args(tmp_path, mirrored, "--strategy", "default", *DETERMINISTIC)) == 0


def test_replica_batches_leave_no_replica_without_an_example(tmp_path, capsys):
    mirrored = bs.training.resolve_strategy("mirrored")
    data = tf.data.Dataset.range(7).batch(2)  # 4 batches, the last of 1 example
    kept, steps = train._replica_batches(data, 7, {"batch_size": 2}, mirrored)
    assert steps == 3 and int(kept.cardinality()) == 3
    assert "last batch (1 of the 7 examples" in capsys.readouterr().out
    kept, steps = train._replica_batches(data, 8, {"batch_size": 2}, mirrored)
    assert steps == 4 and kept is data
    # A global batch smaller than the replicas: one line, before training.
    assert main(_args(tmp_path, tmp_path / "o", "--strategy", "mirrored", "--batch-size", "1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--batch-size (the global batch) must be at least the 2" in err
    assert not (tmp_path / "o" / "model.json").exists()


def test_multiworker_without_tf_config_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert main(_args(tmp_path, tmp_path / "o", "--strategy", "multiworker", *TINY)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs the TF_CONFIG environment variable" in err
    # An ensemble's own files would be written by every worker: refused first.
    argv = _args(tmp_path, tmp_path / "o", "--strategy", "multiworker", "--ensemble", "2")
    assert main([*argv, *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--ensemble 2 and --strategy multiworker cannot" in err


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _launch_workers(argv):
    """``bayesseg train`` in 2 processes, TF_CONFIG per process as a cluster scheduler sets it."""
    ports = _free_ports(2)
    workers = []
    for index in range(2):
        tf_config = {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="3")
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "bayesseg.cli", *argv],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err[-3000:]
    return [out for out, _ in results]


@pytest.mark.slow
def test_two_worker_processes_agree_and_equal_one_process(tmp_path):
    out = tmp_path / "multi"
    argv = _args(tmp_path, out, "--strategy", "multiworker", *DETERMINISTIC)
    printed = _launch_workers(argv)
    # The chief (worker 0) writes --out; worker 1 keeps its own copy inside it.
    assert f"wrote {out / 'model.keras'}" in printed[0]
    assert f"wrote {out / 'worker_1' / 'model.keras'}" in printed[1]
    chief, other = _weights(out / "model.keras"), _weights(out / "worker_1" / "model.keras")
    for a, b in zip(chief, other, strict=True):
        np.testing.assert_array_equal(b, a)
    for path in (out / "model.json", out / "worker_1" / "model.json"):
        assert _run(path)["strategy"] == {
            "requested": "multiworker",
            "strategy": "MultiWorkerMirroredStrategy",
            "replicas": 2,
            "workers": 2,
        }
        assert _run(path)["finished"]
    # The same global batches in one process, on one device.
    single = tmp_path / "single"
    assert main(_args(tmp_path, single, "--strategy", "default", *DETERMINISTIC)) == 0
    for a, b in zip(_weights(single / "model.keras"), chief, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)
    # Rerun: both workers find their finished run and train nothing.
    printed = _launch_workers(argv)
    assert all("is already trained" in text for text in printed)
