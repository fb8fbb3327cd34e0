"""Monte Carlo prediction and its uncertainty decomposition.

:func:`predict_mc` (:mod:`~bayesseg.uncertainty.monte_carlo`) draws ``T``
stochastic forward passes of a model and returns an :class:`MCPrediction`
(:mod:`~bayesseg.uncertainty.decomposition`): the mean probabilities and,
per element, in nats,

* ``total = H[mean_t p_t]`` (predictive entropy),
* ``aleatoric = mean_t H[p_t]`` (expected entropy),
* ``epistemic = total - aleatoric`` (the mutual information between the
  prediction and the weights, which equals ``mean_t KL(p_t || mean p)``).

Models output logits (the bayesseg convention): one channel is a sigmoid
(binary) output, ``C > 1`` channels a softmax over the last axis.
``predict_mc`` also takes a deep ensemble (a
:class:`bayesseg.models.DeepEnsemble` or a list of models) and spends the
draws across its members. :func:`image_scores`
(:mod:`~bayesseg.uncertainty.scores`) summarises each image in one number
(mean epistemic, mean total, fraction of uncertain pixels), e.g. to detect
shifted inputs.

Example:
    >>> from bayesseg.uncertainty import EPISTEMIC_SHARE_THRESHOLD
    >>> EPISTEMIC_SHARE_THRESHOLD
    0.02
"""

from bayesseg.uncertainty.decomposition import (
    EPISTEMIC_SHARE_THRESHOLD,
    MCPrediction,
    epistemic_share,
)
from bayesseg.uncertainty.monte_carlo import predict_mc
from bayesseg.uncertainty.scores import (
    UNCERTAIN_ENTROPY_FRACTION,
    ImageScores,
    atypicality,
    image_scores,
)

__all__ = [
    "EPISTEMIC_SHARE_THRESHOLD",
    "ImageScores",
    "MCPrediction",
    "UNCERTAIN_ENTROPY_FRACTION",
    "atypicality",
    "epistemic_share",
    "image_scores",
    "predict_mc",
]
