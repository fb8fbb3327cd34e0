"""bayesseg: Bayesian deep learning for imbalanced segmentation on TensorFlow.

Keras 3 Bayesian layers on TensorFlow Probability distributions, likelihoods
for imbalanced data, an ELBO with explicit KL scaling, and a model class that
logs its NLL and KL separately.
"""

from bayesseg._backend import check_backend

check_backend()

from bayesseg import (  # noqa: E402
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
    training,
    uncertainty,
)
from bayesseg.elbo import ELBO, ELBOTerms  # noqa: E402
from bayesseg.layers import kl_divergence  # noqa: E402
from bayesseg.training import BayesianModel  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BayesianModel",
    "ELBO",
    "ELBOTerms",
    "convert",
    "data",
    "diagnostics",
    "imbalance",
    "kl",
    "kl_divergence",
    "layers",
    "losses",
    "metrics",
    "models",
    "plots",
    "priors",
    "training",
    "uncertainty",
    "__version__",
]
