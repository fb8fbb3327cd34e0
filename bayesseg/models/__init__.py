"""Ready-made models: the U-Net (2D/3D), the LSTM tagger and deep ensembles."""

from bayesseg.models.ensemble import DeepEnsemble
from bayesseg.models.lstm_tagger import bayesian_lstm_tagger, lstm_tagger
from bayesseg.models.unet import bayesian_unet, unet

__all__ = ["DeepEnsemble", "bayesian_lstm_tagger", "bayesian_unet", "lstm_tagger", "unet"]
