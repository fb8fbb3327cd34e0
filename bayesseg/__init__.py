"""bayesseg: Bayesian deep learning for imbalanced segmentation on TensorFlow.

Keras 3 Bayesian layers on TensorFlow Probability distributions, likelihoods
for imbalanced data, an ELBO with explicit KL scaling, and a model class that
logs its NLL and KL separately.

Submodules load on first use (PEP 562), so ``import bayesseg`` and the
``bayesseg --help`` command do not import TensorFlow; ``bs.layers``,
``bs.ELBO`` and every other public name work as if imported eagerly. The
submodules that register bayesseg's Keras classes are imported as soon as
Keras and TensorFlow are loaded (``bayesseg._registration``), so after
``import bayesseg`` a saved model loads with ``keras.saving.load_model``.

Example:
    >>> import bayesseg as bs
    >>> bs.ELBO.__name__, bs.losses.__name__
    ('ELBO', 'bayesseg.losses')
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bayesseg import _registration
from bayesseg._backend import check_backend_config
from bayesseg._version import __version__

check_backend_config()
_registration.install()

_SUBMODULES = (
    "baselines",
    "calibration",
    "convert",
    "data",
    "diagnostics",
    "elbo",
    "imbalance",
    "kl",
    "layers",
    "losses",
    "metrics",
    "models",
    "plots",
    "priors",
    "recipes",
    "training",
    "uncertainty",
)
# Public names re-exported at the top level, and the submodule that owns each.
_NAMES = {
    "BayesianModel": "training",
    "ELBO": "elbo",
    "ELBOTerms": "elbo",
    "kl_divergence": "layers",
}

__all__ = sorted(set(_SUBMODULES) - {"elbo"}) + sorted(_NAMES) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover - static analysers see the eager imports
    from bayesseg import (  # noqa: F401
        baselines,
        calibration,
        convert,
        data,
        diagnostics,
        imbalance,
        kl,
        layers,
        losses,
        metrics,
        models,
        plots,
        priors,
        recipes,
        training,
        uncertainty,
    )
    from bayesseg.elbo import ELBO, ELBOTerms  # noqa: F401
    from bayesseg.layers import kl_divergence  # noqa: F401
    from bayesseg.training import BayesianModel  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        from bayesseg._backend import check_backend

        check_backend()
        module = importlib.import_module(f"bayesseg.{name}")
        globals()[name] = module
        return module
    if name in _NAMES:
        value = getattr(__getattr__(_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bayesseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
