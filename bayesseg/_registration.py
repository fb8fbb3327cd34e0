"""bayesseg's Keras classes are registered as soon as Keras is usable, without importing it.

``import bayesseg`` stays free of TensorFlow (``bayesseg --help`` answers in
well under a second), yet ``keras.saving.load_model`` must find
``bayesseg>BayesianModel`` and every other class we save in a fresh
process, and Keras imports a custom class's module only for its own
packages. So the submodules that register classes are imported the moment
both Keras and TensorFlow have finished loading: at once if they already
have when bayesseg is imported, otherwise right after the import that
completes them (a finder on ``sys.meta_path`` watches for it). TensorFlow
imports Keras while it loads itself, so registering after Keras alone would
run against a half-initialised TensorFlow; waiting for both avoids that.
Likewise, when the import that loads Keras comes from one of our own
submodules (``import bayesseg.elbo`` first), registration waits until that
submodule has finished.

Example:
    >>> import keras
    >>> import bayesseg
    >>> keras.saving.get_registered_object("bayesseg>BayesianModel").__name__
    'BayesianModel'
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
from typing import Any

__all__ = ["install"]

# The submodules whose import registers a saveable Keras class: layers,
# priors, KL scalings, the ELBO, likelihoods, metrics, initialisers,
# BayesianModel and its schedules, DeepEnsemble, calibrators.
REGISTERING = (
    "layers",
    "priors",
    "kl",
    "elbo",
    "losses",
    "metrics",
    "imbalance",
    "training",
    "models",
    "calibration",
)
_WATCHED = ("keras", "tensorflow")
_OURS = "bayesseg."
_state: dict[str, Any] = {"finished": set(), "registered": False}


def register() -> None:
    """Import every registering submodule (once; idempotent)."""
    if _state["registered"]:
        return
    _state["registered"] = True
    for name in REGISTERING:
        importlib.import_module(f"bayesseg.{name}")


def _loaded(name: str) -> bool:
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    return module is not None and not getattr(spec, "_initializing", False)


def _ours_loading() -> bool:
    """Whether one of our submodules is still being imported (it may be the one
    whose import loaded Keras: registering now would meet it half built)."""
    return any(
        name.startswith(_OURS) and name not in _state["finished"] and not _loaded(name)
        for name in list(sys.modules)
    )


def _finished(name: str) -> None:
    _state["finished"].add(name)
    ready = all(n in _state["finished"] or _loaded(n) for n in _WATCHED)
    if ready and not _ours_loading():
        _uninstall()
        try:
            register()
        except Exception:  # never break the user's own import of Keras
            _state["registered"] = False
            logging.getLogger("bayesseg").warning(
                "bayesseg could not register its Keras classes; call "
                "bayesseg._registration.register() before loading a saved bayesseg model.",
                exc_info=True,
            )


class _ThenRegister(importlib.abc.Loader):
    """Delegates to the real loader, then reports the module as finished."""

    def __init__(self, loader: importlib.abc.Loader, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        # Until exec_module returns the module is marked initialising: this one is done.
        _finished(self._name)

    def __getattr__(self, attribute: str):  # resources, source, ... of the real loader
        if attribute.startswith("__") or attribute == "_loader":
            raise AttributeError(attribute)
        return getattr(self._loader, attribute)


class _Watcher(importlib.abc.MetaPathFinder):
    """Finds Keras and TensorFlow with the other finders and wraps their loaders."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _WATCHED and not fullname.startswith(_OURS):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _ThenRegister(spec.loader, fullname)
        return spec


_WATCHER = _Watcher()


def _uninstall() -> None:
    if _WATCHER in sys.meta_path:
        sys.meta_path.remove(_WATCHER)


def install() -> None:
    """Register now if Keras and TensorFlow are loaded, else once they are."""
    if _state["registered"]:
        return
    if all(_loaded(n) for n in _WATCHED) and not _ours_loading():
        register()
    elif _WATCHER not in sys.meta_path:
        # A finder left by an earlier copy of this module (importlib.reload) goes first.
        sys.meta_path[:] = [f for f in sys.meta_path if type(f).__qualname__ != "_Watcher"]
        sys.meta_path.insert(0, _WATCHER)
