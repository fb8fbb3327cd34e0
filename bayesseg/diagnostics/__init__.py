"""Gradient diagnostics: NLL versus KL contributions per layer; loss-spike monitor.

A large loss does not mean a large gradient. :func:`gradient_contributions`
splits the ELBO gradient into the part that comes from the likelihood and the
part that comes from the scaled KL, per layer and per parameter group;
:class:`GradientDiagnostics` records the same figures during ``fit``;
:class:`LossSpikeMonitor` catches a step whose loss jumps and records which
examples, elements and classes caused it; :func:`posterior_scales` says where
the posterior scales stand.

Modules: ``gradients`` (parameter_groups, gradient_contributions,
GradientReport), ``posterior`` (posterior_scales, PosteriorScaleRow),
``gradient_monitor`` (GradientDiagnostics and its hook's state), ``spikes``
(LossSpikeMonitor and its hook's state). Import the public names from here.
"""

from __future__ import annotations

from bayesseg.diagnostics.gradient_monitor import GradientDiagnostics
from bayesseg.diagnostics.gradients import (
    GradientReport,
    gradient_contributions,
    parameter_groups,
)
from bayesseg.diagnostics.posterior import PosteriorScaleRow, posterior_scales
from bayesseg.diagnostics.spikes import LossSpikeMonitor

__all__ = [
    "GradientReport",
    "gradient_contributions",
    "GradientDiagnostics",
    "LossSpikeMonitor",
    "PosteriorScaleRow",
    "parameter_groups",
    "posterior_scales",
]
