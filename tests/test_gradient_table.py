"""The printed table of gradient_contributions: one value per column, always."""

import math

import keras
import numpy as np
import pytest

import bayesseg as bs
from bayesseg import diagnostics
from bayesseg.diagnostics.gradients import GradientReport, GradientRow

COLUMNS = ["layer", "group", "params", "|g_nll|", "|g_kl|", "kl/nll", "cosine", "share", "snr"]


def _parse(text):
    """The table's rows as lists of 9 fields (split on whitespace), header checked."""
    lines = text.splitlines()
    assert lines[0].split() == COLUMNS
    assert set(lines[1]) == {"-"}
    assert lines[-1].startswith("nll=")
    rows = [line.split() for line in lines[2:-1]]
    for fields in rows:
        assert len(fields) == len(COLUMNS), fields
    return rows


def _number(field):
    return None if field == "-" else float(field)


def _assert_row_matches(fields, row):
    assert fields[0] == row.layer[:24] and fields[1] == row.group
    assert int(fields[2]) == row.num_params
    for field, value in zip(
        fields[3:7], (row.nll_norm, row.kl_norm, row.ratio, row.cosine), strict=True
    ):
        # 3 significant digits (cosine: 3 decimals).
        assert _number(field) == pytest.approx(value, rel=5e-3, abs=5e-4)
    assert _number(fields[7]) == pytest.approx(row.share, rel=5e-3)
    if row.snr is None:
        assert fields[8] == "-"
    else:
        assert _number(fields[8]) == pytest.approx(row.snr, rel=5e-3)


def test_wide_values_stay_in_their_columns():
    # The values that ran "share" and "snr" together ("0.0003.12e+03").
    rows = [
        GradientRow(
            "conv2d_flipout", "posterior_loc", 1234, 1.2e-3, 3.4e-5, 0.0283, -1.0, 3e-4, 3120.0
        ),
        GradientRow(
            "a_very_long_layer_name_indeed_yes",
            "posterior_scale",
            10,
            123.0,
            4e-9,
            math.inf,
            0.5,
            0.9997,
            None,
        ),
        GradientRow("dense", "deterministic", 7, 0.0, 0.0, math.inf, 0.0, 0.0, 123456.0),
    ]
    total = GradientRow("all", "all", 1251, 1.0, 2.0, 2.0, 0.1, 1.0, -1.5e-7)
    report = GradientReport(rows=rows, total=total, nll=1.0, kl=2.0, kl_weight=1e-3, loss=3.0)
    text = str(report)
    assert "0.0003.12e+03" not in text
    parsed = _parse(text)
    assert len(parsed) == 4
    for fields, row in zip(parsed, [*rows, total], strict=True):
        _assert_row_matches(fields, row)
    # Columns line up: every value ends where its header ends.
    header = text.splitlines()[0]
    for line in text.splitlines()[2:-1]:
        assert len(line) == len(header)


def test_printed_report_of_a_model_parses_back_to_its_rows():
    inputs = keras.Input((5,))
    h = bs.layers.DenseFlipout(8, activation="tanh", seed=1)(inputs)
    h = keras.layers.Dense(4, activation="tanh", name="plain")(h)
    outputs = bs.layers.DenseReparameterization(1, seed=2, name="head")(h)
    model = bs.BayesianModel(inputs, outputs)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5)).astype("float32")
    y = (x[:, :1] > 0.5).astype("float32")
    elbo = bs.ELBO(bs.losses.WeightedBinaryCrossentropy(pos_weight=3.0), bs.kl.PerExample(100))
    report = diagnostics.gradient_contributions(model, elbo, x, y, num_samples=3)
    expected = [*report.rows, *report.groups, report.total]
    parsed = _parse(str(report))
    assert len(parsed) == len(expected)
    for fields, row in zip(parsed, expected, strict=True):
        _assert_row_matches(fields, row)
