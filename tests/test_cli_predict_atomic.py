"""``bayesseg predict`` is all or nothing, for images and for series: every input
is checked before anything is written, the outputs reach ``--out`` through a
folder beside it with predictions.json last, and a failure leaves ``--out`` as
it was. Series are read from .npy and .csv, labels from --masks or a CSV column.

The models are tiny and untrained (built and saved once per module): predict
needs a saved model, not a good one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

import bayesseg as bs
from bayesseg.cli import main

SAMPLES = ["--num-samples", "2", "--quiet"]
IMAGE_MAPS = ("prob", "labels", "epistemic", "aleatoric")


# --------------------------------------------------------------------------
# Tiny saved models and their inputs
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    """A saved 2-level Bayesian U-Net for 16x16 one-channel images (binary)."""
    folder = tmp_path_factory.mktemp("image_model")
    keras.utils.set_random_seed(7)
    model = bs.models.bayesian_unet((16, 16, 1), 1, base_filters=2, depth=2)
    model.save(folder / "model.keras")
    return folder / "model.keras"


@pytest.fixture(scope="module")
def series_model(tmp_path_factory):
    """A saved LSTM tagger of 2-feature series of any length, with a model.json
    holding its decision rule (task "series")."""
    folder = tmp_path_factory.mktemp("series_model")
    keras.utils.set_random_seed(8)
    model = bs.models.bayesian_lstm_tagger(2, units=(3,))
    model.save(folder / "model.keras")
    # A threshold near the untrained model's probabilities, so that flags vary.
    probs = keras.ops.sigmoid(model(np.random.default_rng(0).normal(size=(1, 50, 2)))).numpy()
    metadata = {
        "task": "series",
        "decision": {"threshold": float(np.median(probs)), "correction_weights": None},
    }
    (folder / "model.json").write_text(json.dumps(metadata))
    return folder / "model.keras"


def _images(folder: Path, count: int = 4, size: int = 16) -> tuple[Path, Path]:
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(1)
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[3 + i : 8 + i, 4:9] = 1
        np.save(images / f"img{i}.npy", (rng.normal(size=(size, size)) + 2 * mask).astype("f4"))
        np.save(masks / f"img{i}.npy", mask)
    return images, masks


def _series(folder: Path, count: int = 4) -> tuple[Path, Path, list, list]:
    """``.npy`` series (length, 2) of different lengths and their .npy 0/1 labels."""
    series, labels = folder / "series", folder / "labels"
    series.mkdir(parents=True)
    labels.mkdir()
    rng = np.random.default_rng(2)
    xs, ys = [], []
    for i in range(count):
        length = 40 + 7 * i
        y = np.zeros(length, np.float32)
        y[10 + i : 14 + i] = 1
        x = rng.normal(size=(length, 2)).astype(np.float32) + 3 * y[:, None]
        np.save(series / f"s{i}.npy", x)
        np.save(labels / f"s{i}.npy", y)
        xs.append(x)
        ys.append(y)
    return series, labels, xs, ys


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> content); {} when it does not exist."""
    if not folder.exists():
        return {}
    return {
        os.fspath(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _assert_no_staging_left(out: Path) -> None:
    siblings = [p.name for p in out.parent.iterdir() if p.name.startswith(f"{out.name}.tmp-")]
    hidden = [p.name for p in out.iterdir() if ".tmp-" in p.name] if out.is_dir() else []
    assert siblings == [] and hidden == []


def _with_unrelated_file(out: Path) -> dict[str, bytes]:
    out.mkdir()
    (out / "notes.txt").write_text("mine, not predict's\n")
    return _snapshot(out)


# --------------------------------------------------------------------------
# Images: checked before anything is written
# --------------------------------------------------------------------------
def _nan_fourth(images: Path) -> None:
    image = np.load(images / "img3.npy")
    image[2, 5] = np.nan
    np.save(images / "img3.npy", image)


def _truncated_fourth(images: Path) -> None:
    content = (images / "img3.npy").read_bytes()
    (images / "img3.npy").write_bytes(content[: len(content) // 2])


@pytest.mark.parametrize(
    ("damage", "message"),
    [(_nan_fourth, "Image 'img3.npy' holds 1 NaN value"), (_truncated_fourth, "img3.npy")],
    ids=["nan", "truncated"],
)
@pytest.mark.parametrize("out_exists", [False, True], ids=["new_out", "existing_out"])
def test_a_bad_fourth_image_writes_nothing(
    tmp_path, capsys, image_model, damage, message, out_exists, monkeypatch
):
    images, masks = _images(tmp_path)
    damage(images)
    out = tmp_path / "preds"
    before = _with_unrelated_file(out) if out_exists else {}
    calls = []
    real = bs.uncertainty.predict_mc
    monkeypatch.setattr(
        bs.uncertainty, "predict_mc", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    args = ["predict", "--model", str(image_model), "--images", str(images), "--out", str(out)]
    assert main([*args, *SAMPLES]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert calls == []  # refused before the first prediction
    assert _snapshot(out) == before
    assert out.exists() == out_exists
    _assert_no_staging_left(out)
    # A damaged mask is refused the same way (the images are fine).
    _truncated_fourth(masks)
    np.save(images / "img3.npy", np.zeros((16, 16), np.float32))
    assert main([*args, *SAMPLES, "--masks", str(masks)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "img3.npy" in err, err
    assert _snapshot(out) == before and calls == []


def test_a_mask_of_the_wrong_shape_writes_nothing(tmp_path, capsys, image_model):
    images, masks = _images(tmp_path)
    np.save(masks / "img2.npy", np.zeros((16, 15), np.uint8))
    out = tmp_path / "preds"
    args = ["predict", "--model", str(image_model), "--images", str(images), "--out", str(out)]
    assert main([*args, *SAMPLES, "--masks", str(masks)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Mask 'img2.npy' has shape (16, 15)" in err, err
    assert not out.exists()


class _FailOnCall:
    """``predict_mc`` that raises on its ``n``-th call (and checks, on the calls
    before, that nothing has reached ``out`` yet)."""

    def __init__(self, n: int, out: Path, before: dict[str, bytes]):
        self.n, self.out, self.before, self.calls = n, out, before, 0
        self.real = bs.uncertainty.predict_mc

    def __call__(self, *args, **kwargs):
        self.calls += 1
        assert _snapshot(self.out) == self.before  # the outputs go to the staging folder
        staging = [p for p in self.out.parent.iterdir() if ".tmp-" in p.name]
        assert [p.name for p in staging] == [f"{self.out.name}.tmp-{os.getpid()}"]
        if self.calls == self.n:
            assert len(list(staging[0].iterdir())) > 0  # the first inputs' maps are there
            raise RuntimeError("injected failure in prediction")
        return self.real(*args, **kwargs)


@pytest.mark.parametrize("out_exists", [False, True], ids=["new_out", "existing_out"])
def test_a_failure_mid_prediction_leaves_out_as_it_was(
    tmp_path, image_model, monkeypatch, out_exists
):
    images, masks = _images(tmp_path)
    out = tmp_path / "preds"
    before = {}
    if out_exists:
        # An earlier run's outputs and a file of the user's: all must survive untouched.
        args = ["predict", "--model", str(image_model), "--images", str(images)]
        assert main([*args, "--out", str(out), *SAMPLES]) == 0
        (out / "notes.txt").write_text("mine\n")
        before = _snapshot(out)
        assert "predictions.json" in before and "img0_prob.npy" in before
    failing = _FailOnCall(3, out, before)
    monkeypatch.setattr(bs.uncertainty, "predict_mc", failing)
    args = ["predict", "--model", str(image_model), "--images", str(images), "--out", str(out)]
    with pytest.raises(RuntimeError, match="injected failure"):
        main([*args, *SAMPLES, "--masks", str(masks), "--preview"])
    assert failing.calls == 3
    assert _snapshot(out) == before
    assert out.exists() == out_exists
    _assert_no_staging_left(out)


def test_a_successful_run_writes_every_map_then_the_manifest(tmp_path, image_model, monkeypatch):
    images, masks = _images(tmp_path)
    out = tmp_path / "preds"
    args = ["predict", "--model", str(image_model), "--images", str(images)]
    args += ["--masks", str(masks), *SAMPLES]
    # A new --out: the staging folder becomes it.
    assert main([*args, "--out", str(out)]) == 0
    expected = {f"img{i}_{kind}.npy" for i in range(4) for kind in IMAGE_MAPS}
    expected |= {"metrics.json", "predictions.json"}
    assert set(_snapshot(out)) == expected
    manifest = json.loads((out / "predictions.json").read_text())
    assert set(manifest["files"]) == expected - {"predictions.json"}
    _assert_no_staging_left(out)
    # The maps are predict_mc's on the z-scored image (the saved model's seeds: the
    # first image predicted draws what a freshly loaded model's first call draws).
    model = keras.saving.load_model(image_model, compile=False)
    image = np.load(images / "img0.npy")[..., None]
    expected_pred = bs.uncertainty.predict_mc(
        model,
        ((image - image.mean()) / image.std())[None],
        num_samples=2,
        patch_size=(16, 16),
        verbose=0,
    )
    prob = np.load(out / "img0_prob.npy")
    np.testing.assert_allclose(prob, expected_pred.mean[0, ..., 0], atol=1e-6)
    epistemic = np.load(out / "img0_epistemic.npy")
    np.testing.assert_allclose(epistemic, expected_pred.epistemic[0], atol=1e-6)
    np.testing.assert_array_equal(
        np.load(out / "img0_labels.npy"), expected_pred.mean[0, ..., 0] >= 0.5
    )
    first = _snapshot(out)

    # An existing --out: the maps move in one by one and the manifest comes last;
    # a file of the user's stays.
    (out / "notes.txt").write_text("mine\n")
    moved = []
    real_replace = os.replace

    def replace(src, dst):
        moved.append(Path(dst).name)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert main([*args, "--out", str(out)]) == 0
    assert moved[-1] == "predictions.json" and set(moved) == expected
    again = _snapshot(out)
    assert again.pop("notes.txt") == b"mine\n"
    assert again == first  # the same model and seeds: the same files, byte for byte
    _assert_no_staging_left(out)


def test_out_must_be_a_folder(tmp_path, capsys, image_model):
    images, _ = _images(tmp_path, count=1)
    out = tmp_path / "preds"
    out.write_text("a file")
    args = ["predict", "--model", str(image_model), "--images", str(images), "--out", str(out)]
    assert main([*args, *SAMPLES]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Argument --out must be a folder" in err, err
    assert out.read_text() == "a file"


def test_label_column_with_a_segmentation_model_is_refused(tmp_path, capsys, image_model):
    images, _ = _images(tmp_path, count=1)
    out = tmp_path / "preds"
    args = ["predict", "--model", str(image_model), "--images", str(images), "--out", str(out)]
    assert main([*args, *SAMPLES, "--label-column", "anomaly"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Argument --label-column applies to a series tagger's .csv series" in err
    assert "'model.keras' is a segmentation model" in err and "'anomaly'" in err
    assert not out.exists()


# --------------------------------------------------------------------------
# Series
# --------------------------------------------------------------------------
def _write_csv(path: Path, x: np.ndarray, y: np.ndarray | None) -> None:
    header = [f"feature{j}" for j in range(x.shape[1])] + ([] if y is None else ["anomaly"])
    rows = [",".join(header)]
    for t in range(len(x)):
        values = [repr(float(v)) for v in x[t]] + ([] if y is None else [str(int(y[t]))])
        rows.append(",".join(values))
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_a_series_with_the_wrong_feature_count_writes_nothing(
    tmp_path, capsys, series_model, suffix, monkeypatch
):
    series, labels, xs, _ = _series(tmp_path)
    bad = np.concatenate([xs[2], xs[2][:, :1]], axis=1)  # 3 features
    if suffix == ".csv":
        for i, x in enumerate(xs):
            (series / f"s{i}.npy").unlink()
            _write_csv(series / f"s{i}.csv", bad if i == 2 else x, None)
    else:
        np.save(series / "s2.npy", bad)
    out = tmp_path / "tags"
    before = _with_unrelated_file(out)
    monkeypatch.setattr(bs.uncertainty, "predict_mc", _FailOnCall(1, out, before))
    args = ["predict", "--model", str(series_model), "--images", str(series), "--out", str(out)]
    assert main([*args, *SAMPLES, "--masks", str(labels)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"Series 's2{suffix}' has 3 feature(s)" in err and "expects (length, 2)" in err
    assert _snapshot(out) == before
    _assert_no_staging_left(out)


def _nan_series(series: Path, labels: Path) -> None:
    np.save(series / "s3.npy", np.full((30, 2), np.nan, np.float32))


def _short_labels(series: Path, labels: Path) -> None:
    np.save(labels / "s3.npy", np.zeros(5, np.float32))


def _damaged_labels(series: Path, labels: Path) -> None:
    (labels / "s1.npy").write_bytes(b"\x93NUMPY")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_nan_series, "Series 's3.npy' holds 60 NaN values"),
        (_short_labels, "Labels 's3.npy' hold 5 steps; the series holds 61"),
        (_damaged_labels, "s1.npy"),
    ],
    ids=["nan_series", "short_labels", "damaged_labels"],
)
def test_a_bad_series_or_label_file_writes_nothing(tmp_path, capsys, series_model, damage, message):
    series, labels, _, _ = _series(tmp_path)
    damage(series, labels)
    out = tmp_path / "tags"
    args = ["predict", "--model", str(series_model), "--images", str(series), "--out", str(out)]
    assert main([*args, *SAMPLES, "--masks", str(labels)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()
    _assert_no_staging_left(out)


def test_a_series_failure_mid_prediction_leaves_out_as_it_was(tmp_path, series_model, monkeypatch):
    series, labels, _, _ = _series(tmp_path)
    out = tmp_path / "tags"
    before = _with_unrelated_file(out)
    failing = _FailOnCall(3, out, before)
    monkeypatch.setattr(bs.uncertainty, "predict_mc", failing)
    args = ["predict", "--model", str(series_model), "--images", str(series), "--out", str(out)]
    with pytest.raises(RuntimeError, match="injected failure"):
        main([*args, *SAMPLES, "--masks", str(labels)])
    assert failing.calls == 3 and _snapshot(out) == before
    _assert_no_staging_left(out)


def test_csv_series_with_a_label_column_score_as_npy_with_masks(tmp_path, series_model):
    series, labels, xs, ys = _series(tmp_path)
    csv_folder = tmp_path / "csv"
    csv_folder.mkdir()
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        _write_csv(csv_folder / f"s{i}.csv", x, y)
    npy_out, csv_out = tmp_path / "npy_tags", tmp_path / "csv_tags"
    common = ["predict", "--model", str(series_model), *SAMPLES]
    npy_args = ["--images", str(series), "--masks", str(labels), "--out", str(npy_out)]
    assert main([*common, *npy_args]) == 0
    assert (
        main(
            [
                *common,
                "--images",
                str(csv_folder),
                "--label-column",
                "anomaly",
                "--out",
                str(csv_out),
            ]
        )
        == 0
    )
    names = {f"s{i}_{kind}.npy" for i in range(4) for kind in IMAGE_MAPS}
    names |= {"metrics.json", "predictions.json"}
    assert set(_snapshot(npy_out)) == set(_snapshot(csv_out)) == names
    # The CSV's numbers are the .npy's (repr round-trips float32 through float64).
    for i in range(4):
        for kind in IMAGE_MAPS:
            np.testing.assert_array_equal(
                np.load(csv_out / f"s{i}_{kind}.npy"), np.load(npy_out / f"s{i}_{kind}.npy")
            )
    npy_metrics = json.loads((npy_out / "metrics.json").read_text())
    csv_metrics = json.loads((csv_out / "metrics.json").read_text())
    # Series are named by file: s0.npy in one, s0.csv in the other.
    assert {k.replace(".csv", ".npy"): v for k, v in csv_metrics["series"].items()} == (
        npy_metrics["series"]
    )
    assert csv_metrics["overall"] == npy_metrics["overall"]
    # Against the library's scores of the written probabilities and the true labels.
    threshold = json.loads((npy_out / "predictions.json").read_text())["decision"]["threshold"]
    probs = [np.load(npy_out / f"s{i}_prob.npy") for i in range(4)]
    expected = bs.metrics.event_f1(ys, probs, threshold=threshold)
    assert npy_metrics["overall"]["events"] == pytest.approx(expected, rel=1e-12)
    assert npy_metrics["overall"]["events"]["true_events"] == 4
    assert npy_metrics["overall"]["average_precision"] == pytest.approx(
        bs.metrics.average_precision(ys, probs), rel=1e-12
    )
    for i in range(4):
        np.testing.assert_array_equal(np.load(npy_out / f"s{i}_labels.npy"), probs[i] >= threshold)
    manifest = json.loads((csv_out / "predictions.json").read_text())
    assert sorted(manifest["events"]) == [f"s{i}.csv" for i in range(4)]


def test_series_label_sources_are_one_or_the_other(tmp_path, capsys, series_model):
    series, labels, _, _ = _series(tmp_path)
    out = tmp_path / "tags"
    args = ["predict", "--model", str(series_model), "--images", str(series), "--out", str(out)]
    assert main([*args, *SAMPLES, "--masks", str(labels), "--label-column", "anomaly"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--label-column and --masks both give" in err, err
    # --label-column names a column of a .csv; a .npy series has none.
    assert main([*args, *SAMPLES, "--label-column", "anomaly"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'s0.npy' is a .npy array" in err, err
    assert not out.exists()


def test_default_draws_are_16_for_a_unet_and_for_a_tagger(tmp_path, image_model, series_model):
    # 16: the smallest of 4, 8 and 16 draws whose NLL is within 1% of 16 draws' in
    # every setting measured (docs/uncertainty.md); taggers use the series recipe's 16.
    images, _ = _images(tmp_path / "i", count=1)
    out = tmp_path / "image_preds"
    assert main(["predict", "--model", str(image_model), "--images", str(images), "--quiet",
                 "--out", str(out)]) == 0  # fmt: skip
    assert json.loads((out / "predictions.json").read_text())["num_samples"] == 16
    model = keras.saving.load_model(image_model, compile=False)
    image = np.load(images / "img0.npy")[..., None]
    expected = bs.uncertainty.predict_mc(
        model, ((image - image.mean()) / image.std())[None], num_samples=16,
        patch_size=(16, 16), verbose=0,
    )  # fmt: skip
    np.testing.assert_allclose(np.load(out / "img0_prob.npy"), expected.mean[0, ..., 0], atol=1e-6)
    series, _, _, _ = _series(tmp_path / "s", count=1)
    out = tmp_path / "series_preds"
    assert main(["predict", "--model", str(series_model), "--images", str(series), "--quiet",
                 "--out", str(out)]) == 0  # fmt: skip
    assert json.loads((out / "predictions.json").read_text())["num_samples"] == 16


@pytest.mark.parametrize("task", ["series", "anomaly"])
def test_series_and_anomaly_tasks_are_taggers(task, tmp_path, series_model):
    from bayesseg.cli import series as series_cli

    model = keras.saving.load_model(series_model, compile=False)
    assert series_cli.is_tagger(model, {"task": task})
    assert series_cli.declares_tagger({"task": task})
    assert not series_cli.declares_tagger({"task": "multiclass"})
    # Without model.json the (batch, steps, features) input says so.
    assert series_cli.is_tagger(model, {})
