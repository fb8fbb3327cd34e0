"""Series on disk: folders of ``.npy`` / ``.csv`` series and their per-step labels.

A series is one recording of ``T`` steps and ``F`` features, of any length:

* ``.npy``: an array of shape ``(T,)`` (one feature) or ``(T, F)``;
* ``.csv``: a header row naming the columns, then one row per step and one
  column per feature (comma-separated numbers). With ``label_column`` one
  column holds the 0/1 label of each step and the others are the features.

Labels live beside the series, in another folder, under the same stem
(``pump_07.npy`` and ``labels/pump_07.csv``): ``.npy`` of shape ``(T,)``, or
``.csv`` with a header and one column. Every reader names the file in its
error and reads nothing it cannot check.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from bayesseg._validation import argument_error
from bayesseg.data._finite import check_nan_policy, count_nonfinite
from bayesseg.data.folders import list_files

__all__ = ["SERIES_SUFFIXES", "list_series", "pair_series_labels", "read_series", "read_labels"]

#: The suffixes of series (and label) files.
SERIES_SUFFIXES = (".npy", ".csv")


def list_series(folder: str | os.PathLike, argument: str = "folder") -> list[Path]:
    """The ``.npy`` and ``.csv`` files of a folder, sorted by name.

    Hidden files and other suffixes are skipped; two files of one stem
    (``a.npy`` and ``a.csv``) are an error, as pairing would be ambiguous.

    Raises:
        ValueError: if ``folder`` is not a directory, holds no series, or
            holds two files of one stem.

    Example:

    >>> import tempfile, pathlib, numpy as np
    >>> from bayesseg.data import list_series
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(d / "b.npy", np.zeros(5)); _ = (d / "a.csv").write_text("x\\n1\\n2\\n")
    >>> [p.name for p in list_series(d)]
    ['a.csv', 'b.npy']
    """
    return list_files(folder, SERIES_SUFFIXES, "series files", argument)


def pair_series_labels(files: list[Path], folder: str | os.PathLike) -> list[Path]:
    """Each series' label file in ``folder`` (same stem, ``.npy`` or ``.csv``).

    Raises:
        ValueError: naming the series without labels (all of them, up to 5).

    Example:

    >>> import tempfile, pathlib, numpy as np
    >>> from bayesseg.data import pair_series_labels
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(d / "a.npy", np.zeros(3))
    >>> [p.name for p in pair_series_labels([pathlib.Path("x/a.csv")], d)]
    ['a.npy']
    """
    labels = {p.stem: p for p in list_series(folder, "masks")}
    missing = [p.name for p in files if p.stem not in labels]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ValueError(
            f"No labels in {os.fspath(folder)!r} for {len(missing)} series ({shown}): each "
            "series needs a label file of the same stem (.npy or .csv)."
        )
    return [labels[p.stem] for p in files]


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """The header and the float64 rows of a CSV file."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"Cannot read {os.fspath(path)!r}: {err}") from err
    rows = [r for r in rows if r and any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise ValueError(
            f"Cannot read {os.fspath(path)!r}: a CSV series needs a header row and at least "
            f"one row of values; it holds {len(rows)} non-empty row(s)."
        )
    header = [h.strip() for h in rows[0]]
    width = len(header)
    values = np.empty((len(rows) - 1, width), dtype=np.float64)
    for i, row in enumerate(rows[1:]):
        if len(row) != width:
            raise ValueError(
                f"Cannot read {os.fspath(path)!r}: row {i + 2} has {len(row)} values, the "
                f"header {width}."
            )
        try:
            values[i] = [float(cell) for cell in row]
        except ValueError:
            raise ValueError(
                f"Cannot read {os.fspath(path)!r}: row {i + 2} holds a value that is not a "
                f"number: {row[:6]!r}."
            ) from None
    return header, values


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(
            f"Cannot read {os.fspath(path)!r}: the file is damaged or not a .npy array ({err})."
        ) from err


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SERIES_SUFFIXES:
        raise argument_error("path", "name a .npy or .csv file", os.fspath(path))
    return suffix


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    if not np.all((labels == 0) | (labels == 1)):
        bad = np.unique(labels[(labels != 0) & (labels != 1)])[:5]
        raise ValueError(f"Labels {name!r} must hold 0/1 per step; they hold {bad.tolist()}.")
    return labels.astype(np.float32)


def read_series(
    path: str | os.PathLike,
    label_column: str | None = None,
    nan_policy: str = "error",
) -> tuple[np.ndarray, np.ndarray | None]:
    """One series as float32 ``(T, F)``, and its labels when ``label_column`` names them.

    Args:
        path: a ``.npy`` file of shape ``(T,)`` or ``(T, F)``, or a ``.csv``
            file (header row, one column per feature).
        label_column: None (default), or the CSV column holding the 0/1
            step labels; the other columns are then the features.
        nan_policy: "error" (default: NaN or infinite values raise, naming
            the file) or "zero" (they become 0). Labels are never filled.

    Returns:
        ``(x, labels)``: x float32 ``(T, F)``; labels float32 ``(T,)`` or None.

    Raises:
        ValueError: for an unreadable or damaged file, a shape other than
            ``(T,)``/``(T, F)``, an empty series, a missing label column (or
            one given for a ``.npy``), non-0/1 labels, or non-finite values
            under ``nan_policy="error"``.

    Example:

    >>> import tempfile, pathlib
    >>> from bayesseg.data import read_series
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.csv"
    >>> _ = p.write_text("temp,flow,anomaly\\n1.0,2.0,0\\n1.5,2.5,1\\n")
    >>> x, y = read_series(p, label_column="anomaly")
    >>> x.shape, y.tolist()
    ((2, 2), [0.0, 1.0])
    """
    path = Path(path)
    nan_policy = check_nan_policy(nan_policy)
    suffix = _suffix(path)
    labels = None
    if suffix == ".csv":
        header, array = _read_csv(path)
        if label_column is not None:
            if label_column not in header:
                raise ValueError(
                    f"Series {path.name!r} has no column {label_column!r} (--label-column); "
                    f"its columns: {', '.join(header)}."
                )
            column = header.index(label_column)
            labels = _check_labels(array[:, column], path.name)
            array = np.delete(array, column, axis=1)
            if array.shape[1] == 0:
                raise ValueError(
                    f"Series {path.name!r} holds only the label column {label_column!r}: "
                    "no feature to read."
                )
    else:
        if label_column is not None:
            raise ValueError(
                f"Argument label_column (--label-column) applies to .csv series; "
                f"{path.name!r} is a .npy array (put its labels in the masks folder)."
            )
        array = _read_npy(path)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"Series {path.name!r} holds {array.dtype} values, not numbers.")
        if array.ndim == 1:
            array = array[:, None]
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(
            f"Series {path.name!r} has shape {array.shape}; a series is (length,) or "
            "(length, features) with at least one step."
        )
    nan, inf = count_nonfinite(array)
    if nan or inf:
        if nan_policy == "error":
            what = " and ".join(
                f"{n} {kind} value{'s' if n != 1 else ''}"
                for n, kind in ((nan, "NaN"), (inf, "infinite"))
                if n
            )
            raise ValueError(
                f"Series {path.name!r} holds {what}; pass --nan-policy zero (nan_policy="
                "'zero') to replace them by 0, or fix the file."
            )
        array = np.where(np.isfinite(array), array, 0.0)
    return array.astype(np.float32), labels


def read_labels(path: str | os.PathLike, length: int | None = None) -> np.ndarray:
    """A series' 0/1 step labels as float32 ``(T,)`` (``.npy`` or one-column ``.csv``).

    Args:
        path: the label file.
        length: None, or the series' number of steps, which the labels must match.

    Raises:
        ValueError: for an unreadable file, more than one column, NaN or
            values other than 0/1, or a length other than ``length``.

    Example:

    >>> import tempfile, pathlib, numpy as np
    >>> from bayesseg.data import read_labels
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.npy"
    >>> np.save(p, np.array([0, 0, 1, 0]))
    >>> read_labels(p, length=4).tolist()
    [0.0, 0.0, 1.0, 0.0]
    """
    path = Path(path)
    if _suffix(path) == ".csv":
        _, array = _read_csv(path)
    else:
        array = _read_npy(path)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"Labels {path.name!r} have shape {array.shape}; labels are (length,) (or one "
            "CSV column)."
        )
    if array.dtype.kind not in "biuf":
        raise ValueError(f"Labels {path.name!r} hold {array.dtype} values, not 0/1.")
    if length is not None and array.shape[0] != length:
        raise ValueError(
            f"Labels {path.name!r} hold {array.shape[0]} steps; the series holds {length}."
        )
    return _check_labels(array, path.name)
