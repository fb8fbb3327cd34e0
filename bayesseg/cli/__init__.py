"""The ``bayesseg`` command line: ``demo``, ``train`` and ``predict``.

``bayesseg demo`` trains a Bayesian U-Net on the embedded synthetic data and
writes a report with figures; ``bayesseg train`` runs the same pipeline on
folders of images and masks; ``bayesseg predict`` writes probability and
uncertainty maps in the input's format. See ``docs/cli.md``.

Bad paths, shapes or values end the command with a one-line message on
stderr and exit code 2 (``main`` returns it); TensorFlow is imported only
once the arguments are valid.

Modules: ``parser`` (the argument parser), ``options`` (option types,
choices, usage errors), ``demo`` and ``anomaly`` (``bayesseg demo``),
``train``, ``splits`` (the images train holds out), ``validation``
(per-epoch validation, the best model, early stopping), ``predict``,
``evaluate`` (predict's metrics.json and previews), ``guarantee`` (the
recall guarantee of ``train --recall-target`` in predict), ``training`` (the U-Net
pipeline shared by demo and train) and ``report`` (evaluation, report.json,
the printed summary).
"""

from __future__ import annotations

import logging
import os
import sys

from bayesseg.cli._quiet import StderrFilter, log_level
from bayesseg.cli.options import EXIT_USAGE, _one_line, _UsageError
from bayesseg.cli.parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesseg`` console script.

    Args:
        argv: the arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 2 for bad arguments or input data (a
        one-line message on stderr, no traceback).

    Example:

    >>> from bayesseg.cli import main
    >>> main(["demo", "--epochs", "-3"])
    2
    """
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        if getattr(args, "verbose", False):
            return args.func(args)
        # Quiet unless asked: TensorFlow's start-up lines and its Python warnings
        # (retracing notes) are not the command's output. A level the user set wins.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        with StderrFilter(log_level()):
            return args.func(args)
    except _UsageError as err:
        print(_one_line(err), file=sys.stderr)
    except (ValueError, OSError, ImportError) as err:
        command = getattr(args, "command", None)
        prog = "bayesseg" if command is None else f"bayesseg {command}"
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
    return EXIT_USAGE
