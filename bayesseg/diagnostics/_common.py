"""Helpers shared by the diagnostics modules: layer labels, the model check."""

from __future__ import annotations

from bayesseg._validation import argument_error
from bayesseg.training import BayesianModel


def layer_label(layer) -> str:
    """The layer's path (tells apart same-named nested layers), else its name."""
    return getattr(layer, "path", None) or layer.name


def require_bayesian_model(model, who: str) -> BayesianModel:
    """``model`` if it is a ``BayesianModel`` (``who`` runs inside its train step)."""
    if not isinstance(model, BayesianModel):
        raise argument_error(
            "model",
            f"be a bayesseg.BayesianModel ({who} runs inside its train step)",
            model,
        )
    return model
