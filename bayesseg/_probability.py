"""The output convention, in one place: one channel is a sigmoid, C channels a softmax.

A bayesseg model's last axis holds ``K`` logits (or probabilities). ``K = 1``
is a Bernoulli output: the sigmoid of the one logit is the *foreground*
probability, and there are two classes (background 0, foreground 1).
``K = C >= 2`` is a categorical output: the softmax over the last axis, class
0 being the background. Every conversion that depends on that rule lives
here, so no other module branches on ``shape[-1] == 1``:

* :func:`num_classes`: classes of a ``K``-channel output (2 for ``K = 1``);
* :func:`output_channels`: the inverse, channels of a ``C``-class output;
* :func:`activation`: its activation's name, "sigmoid" or "softmax";
* :func:`probabilities` (NumPy) and :func:`probabilities_tf` (TensorFlow):
  logits -> per-channel probabilities (sigmoid or softmax);
* :func:`hard_labels` / :func:`hard_labels_tf`: outputs -> integer labels
  (``p >= threshold`` for one channel, the argmax for C);
* :func:`foreground_probability`: ``p`` for one channel, ``1 - p_0`` for C;
* :func:`label_probability`: the probability of given labels;
* :func:`entropy`, :func:`entropy_tf`, :func:`entropy_from_logits_tf`:
  per-element entropy in nats (Bernoulli or categorical).

Example:
    >>> import numpy as np
    >>> from bayesseg import _probability
    >>> _probability.hard_labels(np.array([[0.7], [0.2]])).tolist()
    [1, 0]
    >>> _probability.hard_labels(np.array([[0.1, 0.2, 0.7]])).tolist()
    [2]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf
from scipy.special import expit, softmax, xlogy

__all__ = [
    "activation",
    "entropy",
    "entropy_from_logits_tf",
    "entropy_tf",
    "foreground_probability",
    "hard_labels",
    "hard_labels_tf",
    "label_probability",
    "num_classes",
    "output_channels",
    "probabilities",
    "probabilities_tf",
]


def num_classes(channels: int) -> int:
    """Number of classes of an output with ``channels`` channels (1 -> 2).

    Example:
        >>> num_classes(1), num_classes(4)
        (2, 4)
    """
    return 2 if channels == 1 else int(channels)


def output_channels(num_classes: int) -> int:
    """Output channels of a ``num_classes``-class model: 1 (a sigmoid) for 2, else C.

    Example:
        >>> output_channels(2), output_channels(4)
        (1, 4)
    """
    return 1 if num_classes == 2 else int(num_classes)


def activation(channels: int) -> str:
    """The activation of a ``channels``-channel output: "sigmoid" for 1, else "softmax".

    Example:
        >>> activation(1), activation(3)
        ('sigmoid', 'softmax')
    """
    return "sigmoid" if channels == 1 else "softmax"


def _logit(threshold: float) -> float:
    """The logit whose sigmoid is ``threshold`` (a probability in (0, 1))."""
    return float(math.log(threshold / (1.0 - threshold)))


# --------------------------------------------------------------------------
# NumPy
# --------------------------------------------------------------------------
def probabilities(outputs: Any, from_logits: bool = True) -> np.ndarray:
    """Per-channel probabilities ``(..., K)`` of logits (sigmoid for K = 1, else softmax).

    Args:
        outputs: array ``(..., K)``.
        from_logits: whether ``outputs`` are logits (default) or already
            probabilities (then returned as a float64 array).

    Returns:
        float64 array of the same shape.

    Example:
        >>> probabilities(np.array([[0.0]])).tolist()
        [[0.5]]
        >>> probabilities(np.array([[0.0, 0.0]])).tolist()
        [[0.5, 0.5]]
    """
    z = np.asarray(outputs, dtype=np.float64)
    if not from_logits:
        return z
    return expit(z) if z.shape[-1] == 1 else softmax(z, axis=-1)


def hard_labels(probs: Any, threshold: float = 0.5) -> np.ndarray:
    """Integer labels ``(...)`` of probabilities ``(..., K)``.

    One channel: 1 where ``p >= threshold``; C channels: the argmax (ties go
    to the lower class).

    Args:
        probs: array ``(..., K)`` of probabilities.
        threshold: foreground threshold of a one-channel output. Default 0.5.

    Returns:
        int64 array ``(...)``.

    Example:
        >>> hard_labels(np.array([[0.5], [0.49]])).tolist()
        [1, 0]
    """
    p = np.asarray(probs)
    if p.shape[-1] == 1:
        return (p[..., 0] >= threshold).astype(np.int64)
    return p.argmax(axis=-1).astype(np.int64)


def foreground_probability(probs: Any) -> np.ndarray:
    """Foreground probability ``(...)``: ``p`` of one channel, ``1 - p_0`` of C channels.

    Example:
        >>> foreground_probability(np.array([[0.3]])).tolist()
        [0.3]
        >>> foreground_probability(np.array([[0.75, 0.125, 0.125]])).tolist()
        [0.25]
    """
    p = np.asarray(probs)
    return p[..., 0] if p.shape[-1] == 1 else 1.0 - p[..., 0]


def label_probability(probs: Any, labels: Any) -> np.ndarray:
    """The probability each element gives its label, ``(...)``.

    Args:
        probs: array ``(..., K)`` of probabilities.
        labels: labels ``(...)``: 0/1 (or a float mask, foreground where
            ``> 0.5``) for one channel, integers in ``[0, C)`` for C (values
            outside are clipped into range).

    Example:
        >>> label_probability(np.array([[0.8], [0.8]]), np.array([1, 0])).round(2).tolist()
        [0.8, 0.2]
        >>> label_probability(np.array([[0.1, 0.9]]), np.array([1])).tolist()
        [0.9]
    """
    p = np.asarray(probs)
    y = np.asarray(labels)
    if p.shape[-1] == 1:
        return np.where(y > 0.5, p[..., 0], 1.0 - p[..., 0])
    safe = np.clip(y.astype(int), 0, p.shape[-1] - 1)
    return np.take_along_axis(p, safe[..., None], axis=-1)[..., 0]


def entropy(probs: Any) -> np.ndarray:
    """Entropy in nats ``(...)`` of probabilities ``(..., K)`` (K = 1: Bernoulli), float64.

    Example:
        >>> round(float(entropy(np.array([0.5]))), 4)
        0.6931
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    if p.shape[-1] == 1:
        q = p[..., 0]
        return -(xlogy(q, q) + xlogy(1.0 - q, 1.0 - q))
    return -np.sum(xlogy(p, p), axis=-1)


# --------------------------------------------------------------------------
# TensorFlow
# --------------------------------------------------------------------------
def probabilities_tf(logits: tf.Tensor) -> tf.Tensor:
    """Per-channel probabilities of logits ``(..., K)``: sigmoid for K = 1, else softmax.

    Example:
        >>> import tensorflow as tf
        >>> probabilities_tf(tf.zeros((1, 2))).numpy().tolist()
        [[0.5, 0.5]]
    """
    if logits.shape[-1] == 1:
        return tf.sigmoid(logits)
    return tf.nn.softmax(logits, axis=-1)


def hard_labels_tf(outputs: tf.Tensor, from_logits: bool = True, threshold: float = 0.5):
    """int32 labels ``(...)`` of outputs ``(..., K)`` (logits or probabilities).

    One channel: 1 where the foreground probability is ``>= threshold``
    (compared on the logit, ``log(t / (1 - t))``, for logits); C channels:
    the argmax, the same for logits and probabilities.

    Example:
        >>> import tensorflow as tf
        >>> hard_labels_tf(tf.constant([[3.0], [-3.0]])).numpy().tolist()
        [1, 0]
    """
    if outputs.shape[-1] == 1:
        cut = _logit(threshold) if from_logits else threshold
        return tf.cast(tf.cast(outputs[..., 0], tf.float32) >= cut, tf.int32)
    return tf.argmax(outputs, axis=-1, output_type=tf.int32)


def entropy_from_logits_tf(logits: tf.Tensor) -> tf.Tensor:
    """Per-element entropy (nats) of sigmoid (1 channel) or softmax logits.

    Computed with softplus / log_softmax, so it is exact for saturated
    outputs (no log(0), no NaN).

    Example:
        >>> import tensorflow as tf
        >>> round(float(entropy_from_logits_tf(tf.zeros((1,)))), 4)
        0.6931
    """
    if logits.shape[-1] == 1:
        z = logits[..., 0]
        p = tf.sigmoid(z)
        # H = p * (-log p) + (1 - p) * (-log(1 - p)), -log p = softplus(-z).
        return p * tf.nn.softplus(-z) + (1.0 - p) * tf.nn.softplus(z)
    log_p = tf.nn.log_softmax(logits, axis=-1)
    return -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1)


def entropy_tf(probs: tf.Tensor) -> tf.Tensor:
    """Per-element entropy (nats) of probabilities ``(..., K)`` (K = 1: Bernoulli).

    Example:
        >>> import tensorflow as tf
        >>> round(float(entropy_tf(tf.constant([0.5]))), 4)
        0.6931
    """
    p = tf.clip_by_value(probs, 0.0, 1.0)
    if p.shape[-1] == 1:
        q = p[..., 0]
        return -(tf.math.xlogy(q, q) + tf.math.xlogy(1.0 - q, 1.0 - q))
    return -tf.reduce_sum(tf.math.xlogy(p, p), axis=-1)
