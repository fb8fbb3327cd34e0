"""bs.metrics.confusion_counts and per_class_scores: the one owner of per-class
confusion counts, checked against scikit-learn and by brute force, empty
classes included; and the CLI's reports that use it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score

import bayesseg as bs
from bayesseg.metrics import confusion_counts, per_class_scores

# With one class scikit-learn warns that it found a single label (its numbers are right).
pytestmark = pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")


@st.composite
def _cases(draw):
    """(y_true, y_pred, K): labels drawn from sub-ranges, so classes are often absent
    from the truth, from the prediction, or from both."""
    k = draw(st.integers(1, 6))
    n = draw(st.integers(1, 40))
    true_top = draw(st.integers(0, k - 1))
    pred_low = draw(st.integers(0, k - 1))
    y_true = draw(st.lists(st.integers(0, true_top), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.integers(pred_low, k - 1), min_size=n, max_size=n))
    return np.array(y_true), np.array(y_pred), k


def _brute_force(y_true, y_pred, k):
    return [
        [
            int(np.sum((y_true == c) & (y_pred == c))),
            int(np.sum((y_true != c) & (y_pred == c))),
            int(np.sum((y_true == c) & (y_pred != c))),
        ]
        for c in range(k)
    ]


def _none_as_nan(value):
    return math.nan if value is None else value


@settings(max_examples=300, deadline=None)
@given(_cases())
def test_counts_equal_brute_force_and_sklearns_confusion_matrix(case):
    y_true, y_pred, k = case
    counts = confusion_counts(y_true, y_pred, k)
    assert counts.dtype == np.int64 and counts.shape == (k, 3)
    assert counts.tolist() == _brute_force(y_true, y_pred, k)
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(k)))
    tp = np.diag(matrix)
    np.testing.assert_array_equal(counts[:, 0], tp)
    np.testing.assert_array_equal(counts[:, 1], matrix.sum(0) - tp)
    np.testing.assert_array_equal(counts[:, 2], matrix.sum(1) - tp)


@settings(max_examples=300, deadline=None)
@given(_cases())
def test_scores_equal_sklearn_with_zero_division_nan(case):
    y_true, y_pred, k = case
    rows = per_class_scores(confusion_counts(y_true, y_pred, k))
    assert sorted(rows) == list(range(k))
    labels = list(range(k))
    reference = {
        "dice": f1_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan),
        "recall": recall_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan),
        "precision": precision_score(
            y_true, y_pred, labels=labels, average=None, zero_division=np.nan
        ),
    }
    for c in range(k):
        for name, values in reference.items():
            ours = rows[c][name]
            assert ours is None or isinstance(ours, float)
            np.testing.assert_allclose(_none_as_nan(ours), values[c], rtol=1e-12, atol=0)
        assert rows[c]["support"] == int(np.sum(y_true == c))


@settings(max_examples=100, deadline=None)
@given(_cases(), _cases())
def test_counts_of_two_parts_add_up_to_the_counts_of_the_whole(first, second):
    k = max(first[2], second[2])
    whole = confusion_counts(
        np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]]), k
    )
    parts = confusion_counts(first[0], first[1], k) + confusion_counts(second[0], second[1], k)
    np.testing.assert_array_equal(parts, whole)


def test_the_empty_case_rule_class_by_class():
    # Class 0 present and found, 1 present never predicted, 2 predicted never
    # present, 3 neither: only a zero denominator gives None.
    y_true = np.array([0, 0, 1, 1, 0])
    y_pred = np.array([0, 0, 0, 0, 2])
    rows = per_class_scores(confusion_counts(y_true, y_pred, 4))
    assert rows[0] == {"dice": 4 / 7, "recall": 2 / 3, "precision": 0.5, "support": 3}
    assert rows[1] == {"dice": 0.0, "recall": 0.0, "precision": None, "support": 2}
    assert rows[2] == {"dice": 0.0, "recall": None, "precision": 0.0, "support": 0}
    assert rows[3] == {"dice": None, "recall": None, "precision": None, "support": 0}
    # Nothing at all: every score is undefined.
    empty = per_class_scores(confusion_counts(np.zeros(0, int), np.zeros(0, int), 2))
    assert all(
        value is None for row in empty.values() for k, value in row.items() if k != "support"
    )


def test_any_shape_bool_and_whole_float_labels():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, (2, 5, 7))
    y_pred = rng.integers(0, 3, (2, 5, 7))
    counts = confusion_counts(y_true, y_pred, 3)
    assert counts.tolist() == _brute_force(y_true.ravel(), y_pred.ravel(), 3)
    assert confusion_counts(y_true.astype(float), y_pred.astype(np.uint8), 3).tolist() == (
        counts.tolist()
    )
    binary = confusion_counts(np.array([True, False, True]), np.array([True, True, False]), 2)
    assert binary.tolist() == [[0, 1, 1], [1, 1, 1]]
    # Summed float counts are accepted when whole.
    assert per_class_scores(np.array([[2.0, 1.0, 1.0]]))[0]["dice"] == 4 / 6


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: confusion_counts(np.array([0, 1]), np.array([0, 1, 1]), 2),
            "Arguments `y_true` and `y_pred_labels` must have the same shape. Received: "
            "y_true.shape=(2,) and y_pred_labels.shape=(3,)",
        ),
        (
            lambda: confusion_counts(np.array([0, 3, 5]), np.array([0, 1, 1]), 3),
            "Argument `y_true` must hold class labels in [0, 3) (num_classes=3). Received: "
            "y_true holding [3, 5]",
        ),
        (
            lambda: confusion_counts(np.array([0, 1]), np.array([0.5, 1.0]), 2),
            "Argument `y_pred_labels` must hold whole-number class labels. Received: "
            "y_pred_labels holding [0.5]",
        ),
        (
            lambda: confusion_counts(np.array(["a"]), np.array([0]), 2),
            "Argument `y_true` must hold integer class labels. Received: y_true of dtype <U1",
        ),
        (
            lambda: confusion_counts(np.array([0]), np.array([0]), 0),
            "Argument `num_classes`",
        ),
        (
            lambda: per_class_scores(np.zeros((3, 3, 1))),
            "Argument `counts` must be an array of counts of shape (num_classes, 3) (TP, FP, "
            "FN). Received: counts of shape (3, 3, 1) and dtype float64",
        ),
        (
            lambda: per_class_scores(np.array([[1, -2, 0]])),
            "Argument `counts` must hold non-negative whole numbers. Received: counts holding [-2]",
        ),
    ],
)
def test_errors_are_one_line_naming_argument_and_value(call, message):
    with pytest.raises(ValueError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text and text.startswith(message), text


def test_exported_from_bs_metrics():
    assert {"confusion_counts", "per_class_scores"} <= set(bs.metrics.__all__)
    assert bs.metrics.confusion_counts is confusion_counts


# ------------------------------------------------------------- the reports that use it
def test_report_rows_are_the_owners():
    # report.json's per_class holds the owner's numbers, None for a 0/0;
    # validation's and anomaly's readers of _confusion / _confusion_scores too.
    from bayesseg.cli.report import _confusion, _confusion_scores, _per_class

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, (4, 8, 8))  # class 3 absent from the truth
    outputs = rng.dirichlet(np.ones(4), (4, 8, 8))
    outputs[..., 2] = 0.0  # class 2 never predicted
    matrix = _confusion(labels, outputs, 4)
    assert matrix.shape == (4, 4)
    np.testing.assert_array_equal(
        matrix, confusion_matrix(labels.ravel(), outputs.argmax(-1).ravel(), labels=range(4))
    )
    owner = per_class_scores(confusion_counts(labels, outputs.argmax(-1), 4))
    assert owner[2]["precision"] is None and owner[3]["recall"] is None
    rows = _per_class(labels, outputs, 4)
    assert rows == _confusion_scores(matrix)
    for c in range(4):
        for name in ("dice", "recall", "precision"):
            expected = owner[c][name]
            assert rows[str(c)][name] == expected
        assert rows[str(c)]["support"] == owner[c]["support"] == int((labels == c).sum())
    # Binary: one sigmoid channel, decided at p >= 0.5, truth at >= 0.5.
    binary = _confusion(np.array([1, 0, 1, 0]), np.array([[0.5], [0.7], [0.2], [0.1]]), 2)
    assert binary.tolist() == [[1, 1], [1, 1]]


def test_predict_metrics_rows_are_the_owners_with_null_for_undefined():
    from bayesseg.cli.evaluate import Evaluation

    rng = np.random.default_rng(4)
    images = [rng.integers(0, 2, (6, 6)) for _ in range(3)]  # class 2 never in a mask
    means = [rng.dirichlet(np.ones(3), (6, 6)) for _ in range(3)]
    means[1][..., 1] = 0.0
    evaluation = Evaluation(3)
    for i, (labels, mean) in enumerate(zip(images, means, strict=True)):
        row = evaluation.add(f"img{i}", labels, mean)
        expected = per_class_scores(confusion_counts(labels, mean.argmax(-1), 3))
        assert row["per_class"] == {str(c): r for c, r in expected.items()}
    overall = evaluation.overall()["per_class"]
    truth = np.concatenate([y.ravel() for y in images])
    pred = np.concatenate([m.argmax(-1).ravel() for m in means])
    recall = recall_score(truth, pred, labels=[0, 1, 2], average=None, zero_division=np.nan)
    f1 = f1_score(truth, pred, labels=[0, 1, 2], average=None, zero_division=np.nan)
    for c in range(3):
        np.testing.assert_allclose(_none_as_nan(overall[str(c)]["recall"]), recall[c])
        np.testing.assert_allclose(_none_as_nan(overall[str(c)]["dice"]), f1[c])
    assert overall["2"]["recall"] is None and overall["2"]["support"] == 0
