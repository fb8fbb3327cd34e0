"""Keras 3 Bayesian layers on TensorFlow Probability distributions.

Every layer derives from :class:`BayesianLayer` (``base.py``), which owns the
posterior, prior, KL and noise; the public classes are thin rank- and
estimator-specific subclasses.
"""

from bayesseg.layers.base import (
    BayesianLayer,
    bayesian_layers,
    kl_divergence,
    sampling_mode,
    set_sampling,
)
from bayesseg.layers.conv import (
    BaseConv,
    Conv1DFlipout,
    Conv1DReparameterization,
    Conv2DFlipout,
    Conv2DReparameterization,
    Conv2DTransposeFlipout,
    Conv2DTransposeReparameterization,
    Conv3DFlipout,
    Conv3DReparameterization,
    Conv3DTransposeFlipout,
    Conv3DTransposeReparameterization,
)
from bayesseg.layers.dense import (
    BaseDense,
    DenseFlipout,
    DenseLocalReparameterization,
    DenseReparameterization,
)
from bayesseg.layers.lstm import (
    LSTMCellFlipout,
    LSTMCellReparameterization,
    LSTMFlipout,
    LSTMReparameterization,
)
from bayesseg.layers.twins import bayesian_twin

__all__ = [
    "BayesianLayer",
    "BaseConv",
    "BaseDense",
    "bayesian_layers",
    "bayesian_twin",
    "kl_divergence",
    "sampling_mode",
    "set_sampling",
    "DenseFlipout",
    "DenseReparameterization",
    "DenseLocalReparameterization",
    "Conv1DFlipout",
    "Conv2DFlipout",
    "Conv3DFlipout",
    "Conv1DReparameterization",
    "Conv2DReparameterization",
    "Conv3DReparameterization",
    "Conv2DTransposeFlipout",
    "Conv3DTransposeFlipout",
    "Conv2DTransposeReparameterization",
    "Conv3DTransposeReparameterization",
    "LSTMFlipout",
    "LSTMReparameterization",
    "LSTMCellFlipout",
    "LSTMCellReparameterization",
]
