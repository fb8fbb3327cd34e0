"""Bayesian convolutions: the public path of every rank, estimator and direction.

The classes live one family per module, as Keras' own convolutions do:
:class:`~bayesseg.layers.base_conv.BaseConv` (``base_conv.py``) holds
everything rank-independent, and ``conv1d.py``, ``conv2d.py``, ``conv3d.py``,
``conv2d_transpose.py`` and ``conv3d_transpose.py`` hold the thin public
classes with their Keras twin's signature. This module re-exports them.

Example:

>>> from bayesseg.layers.conv import Conv2DFlipout
>>> Conv2DFlipout(4, 3, 2).strides
(2, 2)
"""

from __future__ import annotations

from bayesseg.layers.base_conv import BaseConv  # noqa: F401 - importable from here as before
from bayesseg.layers.conv1d import Conv1DFlipout, Conv1DReparameterization
from bayesseg.layers.conv2d import Conv2DFlipout, Conv2DReparameterization
from bayesseg.layers.conv2d_transpose import (
    Conv2DTransposeFlipout,
    Conv2DTransposeReparameterization,
)
from bayesseg.layers.conv3d import Conv3DFlipout, Conv3DReparameterization
from bayesseg.layers.conv3d_transpose import (
    Conv3DTransposeFlipout,
    Conv3DTransposeReparameterization,
)

__all__ = [
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
]
