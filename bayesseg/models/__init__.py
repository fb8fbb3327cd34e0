"""Ready-made Bayesian models: the U-Net (2D/3D) and the LSTM tagger."""

from bayesseg.models.unet import bayesian_unet, unet

__all__ = ["bayesian_unet", "unet"]
