"""The ``bayesseg`` command line."""

from __future__ import annotations

import argparse
import os
import sys


def _versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow as tf
    import tensorflow_probability as tfp

    import bayesseg

    return {
        "bayesseg": bayesseg.__version__,
        "tensorflow": tf.__version__,
        "tensorflow_probability": tfp.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
    }


def _demo(args: argparse.Namespace) -> int:
    for name, version in _versions().items():
        print(f"{name:<24}{version}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayesseg`` command."""
    parser = argparse.ArgumentParser(
        prog="bayesseg",
        description="Bayesian segmentation and per-timestep classification "
        "on imbalanced data (Keras 3, TensorFlow Probability).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo on the embedded synthetic data")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesseg`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
