"""The Bayesian twin of a Keras layer family: one owner of the class-name rule.

Every public Bayesian layer is named after its Keras twin plus its estimator
(``Conv2D`` + ``"flipout"`` -> ``Conv2DFlipout``). The model builders and
:func:`bayesseg.convert.to_bayesian` pick classes through
:func:`bayesian_twin` instead of assembling names themselves.
"""

from __future__ import annotations

from bayesseg._defaults import ESTIMATORS
from bayesseg._validation import argument_error, check_choice

__all__ = ["bayesian_twin"]

_SUFFIXES = {"flipout": "Flipout", "reparameterization": "Reparameterization"}
FAMILIES = (
    "Dense",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "LSTM",
    "LSTMCell",
)


def bayesian_twin(family: str, estimator: str = "flipout") -> type:
    """The Bayesian layer class for the Keras layer family ``family``.

    Args:
        family: the Keras class name, one of "Dense", "Conv1D", "Conv2D",
            "Conv3D", "Conv2DTranspose", "Conv3DTranspose", "LSTM", "LSTMCell".
        estimator: "flipout" (default) or "reparameterization".

    Returns:
        The class, e.g. :class:`~bayesseg.layers.Conv2DFlipout`.

    Example:
        >>> import bayesseg as bs
        >>> bs.layers.bayesian_twin("Conv2DTranspose", "reparameterization").__name__
        'Conv2DTransposeReparameterization'
    """
    estimator = check_choice("estimator", estimator, ESTIMATORS)
    if family not in FAMILIES:
        listed = ", ".join(repr(f) for f in FAMILIES)
        raise argument_error("family", f"be one of {listed}", family)
    # From the modules that hold the classes, not from the package (whose
    # __init__ imports this module): Dense in dense, LSTM in lstm, LSTMCell in
    # lstm_cell, every convolution in conv (which re-exports the families).
    from bayesseg.layers import conv, dense, lstm, lstm_cell

    module = {"Dense": dense, "LSTM": lstm, "LSTMCell": lstm_cell}.get(family, conv)
    return getattr(module, family + _SUFFIXES[estimator])
