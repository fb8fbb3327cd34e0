"""Checks that Keras runs on its TensorFlow backend before anything else loads.

Two checks share one message: :func:`check_backend_config` reads the backend
Keras *will* choose (``KERAS_BACKEND``, then ``keras.json``) without importing
Keras, so ``import bayesseg`` and ``bayesseg --help`` stay fast; and
:func:`check_backend` asks the imported Keras itself, once a submodule that
needs it is first loaded.
"""

from __future__ import annotations

import json
import os
import sys


def _error(backend: str) -> ImportError:
    return ImportError(
        "bayesseg requires Keras' TensorFlow backend, but Keras is using "
        f"backend={backend!r}. Set KERAS_BACKEND=tensorflow before importing "
        "keras (or edit ~/.keras/keras.json)."
    )


def configured_backend() -> str:
    """The backend Keras selects, read the way Keras reads it, without importing Keras.

    ``KERAS_BACKEND`` wins; otherwise the ``"backend"`` entry of
    ``$KERAS_HOME/keras.json`` (default ``~/.keras/keras.json``); otherwise
    ``"tensorflow"``. Once Keras is imported, its own answer is returned.

    Example:
        >>> configured_backend() in {"tensorflow", "jax", "torch", "numpy", "openvino"}
        True
    """
    if "keras" in sys.modules and hasattr(sys.modules["keras"], "backend"):
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as handle:
            return str(json.load(handle).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def check_backend_config() -> None:
    """Raise ``ImportError`` if Keras is configured for a backend other than TensorFlow.

    Cheap: it does not import Keras or TensorFlow (see :func:`configured_backend`).
    """
    backend = configured_backend()
    if backend != "tensorflow":
        raise _error(backend)


def check_backend() -> None:
    """Raise ``ImportError`` unless the imported Keras uses the TensorFlow backend.

    bayesseg builds on TensorFlow Probability distributions and
    ``tf.distribute``; its layers do not run on JAX or PyTorch.
    """
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise _error(backend)
