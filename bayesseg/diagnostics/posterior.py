"""Posterior scales: where each Bayesian weight's scales stand, against start and prior."""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np

from bayesseg.diagnostics._common import layer_label
from bayesseg.layers import BayesianLayer, bayesian_layers

__all__ = ["PosteriorScaleRow", "posterior_scales"]


@dataclasses.dataclass
class PosteriorScaleRow:
    """Where one Bayesian weight's posterior scales stand.

    Attributes:
        layer: the layer's name.
        weight: the weight's name ("kernel", "recurrent_kernel", "bias").
        num_weights: its number of entries.
        median_scale: median posterior standard deviation.
        initial_scale: the layer's ``posterior_scale_init``.
        prior_scale: median standard deviation of the prior (NaN when the
            prior has none).
        scale_multiplier: the layer's ``scale_multiplier``.
    """

    layer: str
    weight: str
    num_weights: int
    median_scale: float
    initial_scale: float
    prior_scale: float
    scale_multiplier: float


def _prior_stddev(layer: BayesianLayer, name: str, shape) -> float:
    try:
        std = layer.prior_distribution(name, shape).stddev()
    except (NotImplementedError, TypeError, ValueError):
        return math.nan
    return float(np.median(np.asarray(std)))


def posterior_scales(model: keras.layers.Layer) -> list[PosteriorScaleRow]:
    """Median posterior scale of every Bayesian weight, next to its start and its prior.

    The first question to ask of a trained Bayesian network: did its
    posterior scales leave their initial value? A median still at
    ``posterior_scale_init`` means the model is, in effect, its deterministic
    twin; a median at the prior's scale means the data did not constrain
    those weights at all.

    Args:
        model: a Keras model or layer holding Bayesian layers.

    Returns:
        One :class:`PosteriorScaleRow` per (Bayesian layer, weight).

    Example:

    >>> import bayesseg as bs, keras
    >>> model = keras.Sequential([keras.Input((3,)),
    ...                           bs.layers.DenseFlipout(2, posterior_scale_init=0.05)])
    >>> row = bs.diagnostics.posterior_scales(model)[0]
    >>> row.weight, round(row.median_scale, 6), row.initial_scale, round(row.prior_scale, 4)
    ('kernel', 0.05, 0.05, 0.1)
    """
    rows = []
    for layer in bayesian_layers(model):
        for name in layer.posterior_names:
            scale = np.asarray(layer.posterior_scale(name))
            rows.append(
                PosteriorScaleRow(
                    layer=layer_label(layer),
                    weight=name,
                    num_weights=int(scale.size),
                    median_scale=float(np.median(scale)),
                    initial_scale=float(layer.posterior_scale_init),
                    prior_scale=_prior_stddev(layer, name, scale.shape),
                    scale_multiplier=float(layer.scale_multiplier),
                )
            )
    return rows


def rho_snapshot(model: keras.layers.Layer) -> dict[tuple[str, str], np.ndarray]:
    """A copy of every Bayesian weight's ``rho``, by ``(layer, weight)`` as the scale rows.

    ``GradientDiagnostics`` compares two snapshots to measure the drift.

    Example:

    >>> import bayesseg as bs, keras
    >>> from bayesseg.diagnostics.posterior import rho_snapshot
    >>> model = keras.Sequential([keras.Input((3,)), bs.layers.DenseFlipout(2)])
    >>> [(weight, rho.shape) for (_, weight), rho in rho_snapshot(model).items()]
    [('kernel', (3, 2))]
    """
    return {
        (layer_label(layer), name): np.array(variables.rho.numpy())
        for layer in bayesian_layers(model)
        for name, variables in layer.posterior_variables().items()
    }
