"""bayesseg: Bayesian deep learning for imbalanced segmentation on TensorFlow."""

from bayesseg._backend import check_backend

check_backend()

from bayesseg import layers, priors  # noqa: E402
from bayesseg.layers import kl_divergence  # noqa: E402

__version__ = "0.1.0"

__all__ = ["layers", "priors", "kl_divergence", "__version__"]
