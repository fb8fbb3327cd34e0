"""Outputs that are all or nothing: written beside ``--out`` and moved in at the end.

``bayesseg predict`` writes into a temporary folder (:func:`staged_output`)
and publishes it only when every file is written, the manifest last. Only
the standard library: both prediction pipelines (images in
:mod:`bayesseg.cli.predict`, series in :mod:`bayesseg.cli.series`) import it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

MANIFEST = "predictions.json"


def check_out(out: Path) -> None:
    """``--out`` must be a folder or not exist yet; checked before any work.

    >>> check_out(Path("a-folder-that-does-not-exist"))
    """
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"Argument --out must be a folder (existing or not). Received: {os.fspath(out)!r}, "
            "a file."
        )


def _staging_folder(out: Path) -> Path:
    """A new empty folder ``<out>.tmp-<pid>`` beside ``out`` (one filesystem: the moves
    into ``out`` are renames); inside an existing ``out`` (hidden) when its parent
    cannot be written to."""
    target = out.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        name = f"{target.name}.tmp-{os.getpid()}" + (f"-{attempt}" if attempt else "")
        tmp = target.with_name(name)
        try:
            tmp.mkdir()
        except FileExistsError:
            continue
        except PermissionError:
            if not target.is_dir():
                raise
            tmp = target / f".{name}"
            try:
                tmp.mkdir()
            except FileExistsError:
                continue
        return tmp
    raise OSError(f"Cannot create a staging folder beside {os.fspath(out)!r}.")


def _publish(tmp: Path, out: Path) -> None:
    """Move the staged files into ``out``, the manifest last."""
    if not out.exists():
        try:
            os.rename(tmp, out)  # the whole folder at once
            return
        except OSError:
            if not out.is_dir():
                raise
    # An existing folder: a stale manifest would describe a half-replaced set of
    # maps while the files move, so it goes first and the new one comes last.
    (out / MANIFEST).unlink(missing_ok=True)
    for path in sorted(tmp.iterdir()):
        if path.name != MANIFEST:
            os.replace(path, out / path.name)
    if (tmp / MANIFEST).exists():
        os.replace(tmp / MANIFEST, out / MANIFEST)
    tmp.rmdir()


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Write into a temporary folder beside ``out``; publish it only if the block succeeds.

    The block writes every output (predictions.json included) into the folder
    it is given. On success the files move into ``out`` (the folder is
    renamed to ``out`` when ``out`` does not exist yet), predictions.json
    last; on any exception the folder is removed and ``out`` is left as it
    was (files already in it, from an earlier run or anything else, stay).

    Example:

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "preds"
    >>> with staged_output(out) as tmp:
    ...     _ = (tmp / "a.txt").write_text("a")
    >>> sorted(p.name for p in out.iterdir())
    ['a.txt']
    >>> try:
    ...     with staged_output(out) as tmp:
    ...         _ = (tmp / "b.txt").write_text("b")
    ...         raise RuntimeError("prediction failed")
    ... except RuntimeError:
    ...     pass
    >>> sorted(p.name for p in out.parent.iterdir()), sorted(p.name for p in out.iterdir())
    (['preds'], ['a.txt'])
    """
    tmp = _staging_folder(out)
    try:
        yield tmp
        _publish(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
