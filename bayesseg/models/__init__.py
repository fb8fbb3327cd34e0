"""Ready-made Bayesian models: the U-Net (2D/3D) and the LSTM tagger."""

from bayesseg.models.lstm_tagger import bayesian_lstm_tagger
from bayesseg.models.unet import bayesian_unet, unet

__all__ = ["bayesian_lstm_tagger", "bayesian_unet", "unet"]
