"""Prior families for the weights of Bayesian layers.

A prior is a small serialisable object that turns a weight shape into a
``tfp.distributions`` distribution with that batch shape (one independent
scalar prior per weight). Layers never hold lambdas, so models that use any
prior here load with ``keras.models.load_model(..., safe_mode=True)``.

Write your own family by subclassing :class:`Prior`, implementing
``distribution`` and ``get_config``, and registering the class with
``keras.saving.register_keras_serializable``.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from bayesseg._defaults import DEFAULT_PRIOR_SCALE
from bayesseg._validation import argument_error, check_float, is_number

tfd = tfp.distributions

__all__ = ["Prior", "Normal", "FanInNormal", "ScaleMixture", "WeightCentered", "fan_in", "get"]


@keras.saving.register_keras_serializable(package="bayesseg")
class Prior:
    """Base class of weight priors.

    Subclasses implement :meth:`distribution`, returning a distribution with
    scalar events whose batch shape broadcasts to the weight shape (a scalar
    batch shape for i.i.d. priors, the full shape for per-weight priors), and
    :meth:`get_config`, returning the constructor arguments.

    Example:

    >>> import bayesseg as bs
    >>> import tensorflow as tf
    >>> import tensorflow_probability as tfp
    >>> class Laplace(bs.priors.Prior):
    ...     def __init__(self, scale=1.0):
    ...         self.scale = scale
    ...     def distribution(self, shape, dtype="float32"):
    ...         return tfp.distributions.Laplace(
    ...             tf.zeros(shape, dtype), tf.fill(shape, tf.cast(self.scale, dtype)))
    ...     def get_config(self):
    ...         return {"scale": self.scale}
    """

    def distribution(self, shape, dtype="float32") -> tfd.Distribution:
        """Return the prior over a weight tensor of the given shape."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `distribution(shape, dtype)`."
        )

    def get_config(self) -> dict:
        """Return the constructor arguments as a JSON-serialisable dict."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> Prior:
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="bayesseg")
class Normal(Prior):
    """Independent Normal prior ``N(loc, scale^2)`` on every weight.

    The KL divergence from a mean-field Normal posterior is computed in closed
    form (``tfd.kl_divergence``).

    Args:
        scale: float, standard deviation (> 0). Default 1.0.
        loc: float, mean. Default 0.0.

    Example:

    >>> import bayesseg as bs
    >>> prior = bs.priors.Normal(scale=0.1)
    >>> float(prior.distribution((3, 2)).log_prob(0.0))  # doctest: +ELLIPSIS
    1.383...
    """

    def __init__(self, scale: float = 1.0, loc: float = 0.0):
        self.scale = check_float("scale", scale, minimum=0, strict_minimum=True)
        self.loc = check_float("loc", loc)

    def distribution(self, shape, dtype="float32") -> tfd.Distribution:
        dtype = tf.as_dtype(dtype)
        return tfd.Normal(tf.constant(self.loc, dtype), tf.constant(self.scale, dtype))

    def get_config(self) -> dict:
        return {"scale": self.scale, "loc": self.loc}


def fan_in(shape) -> int:
    """Inputs feeding one output unit of a weight tensor, as Keras' initializers count them.

    ``(in, out)`` kernels: ``in``; convolution kernels ``(*window, in, out)``:
    ``prod(window) * in`` (a transposed convolution's kernel is
    ``(*window, out, in)`` and counts like Keras' initializers count it).

    Example:

    >>> from bayesseg.priors import fan_in
    >>> fan_in((3, 3, 16, 32)), fan_in((64, 256))
    (144, 64)
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        raise argument_error("shape", "be a kernel shape of rank >= 2 (to have a fan-in)", shape)
    receptive_field = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return max(1, shape[-2] * receptive_field)


@keras.saving.register_keras_serializable(package="bayesseg")
class FanInNormal(Prior):
    """Zero-mean Normal prior whose scale follows the layer's width: ``gain / sqrt(fan_in)``.

    A network whose weights are drawn from it is scaled like one drawn from
    He initialisation (``gain = sqrt(2)``): each unit's input has about unit
    variance whatever the layer's width, where one prior scale for every
    layer is too wide for wide layers or too narrow for narrow ones. It is
    not the default: on the batch-normalised U-Net of
    ``benchmarks/bench_quality.py`` the default ``Normal(0.1)`` gave better
    Dice and calibration over two seeds (Dice 0.894 / 0.846 against 0.850 /
    0.814); it is wide on narrow layers (0.35 on a 1x1 logit head over 16
    channels, whose noise goes straight into the logits; docs/uncertainty.md).

    Weights of rank < 2 (a Bayesian bias) get ``Normal(bias_scale)``.

    Args:
        gain: float > 0, the scale times ``sqrt(fan_in)``. Default
            ``sqrt(2)`` (He).
        bias_scale: float > 0, the scale of rank-1 weights. Default 1.0.

    Example:

    >>> import bayesseg as bs
    >>> prior = bs.priors.FanInNormal()
    >>> round(float(prior.distribution((3, 3, 16, 32)).stddev()[0, 0, 0, 0]), 4)
    0.1179
    >>> round(float(prior.distribution((8,)).stddev()[0]), 1)
    1.0
    """

    def __init__(self, gain: float = math.sqrt(2.0), bias_scale: float = 1.0):
        self.gain = check_float("gain", gain, minimum=0, strict_minimum=True)
        self.bias_scale = check_float("bias_scale", bias_scale, minimum=0, strict_minimum=True)

    def scale(self, shape) -> float:
        """The prior's standard deviation for a weight of this shape."""
        shape = tuple(int(d) for d in shape)
        if len(shape) < 2:
            return self.bias_scale
        return self.gain / math.sqrt(fan_in(shape))

    def distribution(self, shape, dtype="float32") -> tfd.Distribution:
        dtype = tf.as_dtype(dtype)
        scale = tf.fill(tf.TensorShape(shape), tf.constant(self.scale(shape), dtype))
        return tfd.Normal(tf.zeros_like(scale), scale)

    def get_config(self) -> dict:
        return {"gain": self.gain, "bias_scale": self.bias_scale}


@keras.saving.register_keras_serializable(package="bayesseg")
class ScaleMixture(Prior):
    """Scale mixture of two zero-mean Normals (Blundell et al. 2015, eq. 7).

    ``p(w) = pi N(w | 0, scale1^2) + (1 - pi) N(w | 0, scale2^2)``, with
    ``scale1 > scale2`` giving a heavy-tailed, spike-and-slab-like prior. TFP
    registers no closed-form KL from a Normal to this mixture, so layers
    estimate its cross-entropy by Monte Carlo with their own seeded draw (the
    posterior entropy stays exact).

    Args:
        pi: float in (0, 1), weight of the first component. Default 0.5.
        scale1: float > 0, scale of the first (wide) component. Default 1.0.
        scale2: float > 0, scale of the second (narrow) component.
            Default ``exp(-6)`` (about 0.0025), one of Blundell's settings.

    Example:

    >>> import bayesseg as bs
    >>> prior = bs.priors.ScaleMixture(pi=0.25, scale1=1.0, scale2=0.002)
    >>> layer = bs.layers.DenseFlipout(4, prior=prior)
    """

    def __init__(self, pi: float = 0.5, scale1: float = 1.0, scale2: float = math.exp(-6.0)):
        self.pi = check_float("pi", pi, 0, 1, strict_minimum=True, strict_maximum=True)
        self.scale1 = check_float("scale1", scale1, minimum=0, strict_minimum=True)
        self.scale2 = check_float("scale2", scale2, minimum=0, strict_minimum=True)

    def distribution(self, shape, dtype="float32") -> tfd.Distribution:
        dtype = tf.as_dtype(dtype)
        return tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(
                probs=tf.constant([self.pi, 1.0 - self.pi], dtype)
            ),
            components_distribution=tfd.Normal(
                tf.zeros([2], dtype), tf.constant([self.scale1, self.scale2], dtype)
            ),
        )

    def get_config(self) -> dict:
        return {"pi": self.pi, "scale1": self.scale1, "scale2": self.scale2}


@keras.saving.register_keras_serializable(package="bayesseg")
class WeightCentered(Prior):
    """Per-weight Normal prior centred on stored values (MOPED's empirical prior).

    ``p(w_i) = N(c_i, max(relative_scale * |c_i|, scale_floor)^2)``: each
    weight has its own centre ``c_i``, typically the weight of a pre-trained
    deterministic network (Krishnan et al. 2020). A layer with this prior
    stores the centres in a saved, non-trainable variable
    ``{name}_prior_loc`` next to each posterior (zeros until set, e.g. by
    ``bayesseg.convert.to_bayesian``), so the prior survives ``.keras``
    save/load with ``safe_mode=True`` while its config stays two numbers.
    The floor keeps the KL finite and moderate for weights near zero;
    ``relative_scale=0`` gives an absolute scale ``scale_floor``. The KL from
    the Normal posterior is closed form.

    Args:
        relative_scale: float >= 0, prior scale per unit of ``|c_i|``.
            Default 0.1.
        scale_floor: float > 0, the smallest prior scale. Default 1e-2.

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> layer = bs.layers.DenseFlipout(2, prior=bs.priors.WeightCentered(0.1, 1e-2))
    >>> _ = layer(np.ones((1, 3), "float32"))
    >>> _ = layer.kernel_prior_loc.assign(layer.kernel_loc)  # centre the prior
    >>> layer.prior_distribution("kernel", (3, 2)).mean().shape
    TensorShape([3, 2])
    """

    per_weight = True

    def __init__(self, relative_scale: float = 0.1, scale_floor: float = 1e-2):
        self.relative_scale = check_float("relative_scale", relative_scale, minimum=0)
        self.scale_floor = check_float("scale_floor", scale_floor, minimum=0, strict_minimum=True)

    def scale(self, loc):
        """The prior scale ``max(relative_scale * |loc|, scale_floor)`` (NumPy or tensor)."""
        if isinstance(loc, np.ndarray):
            return np.maximum(self.relative_scale * np.abs(loc), self.scale_floor)
        return tf.maximum(
            self.relative_scale * tf.abs(loc), tf.constant(self.scale_floor, loc.dtype)
        )

    def distribution(self, shape, dtype="float32", loc=None) -> tfd.Distribution:
        """The prior for centres ``loc`` (a tensor of the weight's shape).

        Raises:
            ValueError: without ``loc`` (the centres live in the layer).
        """
        if loc is None:
            raise argument_error(
                "loc",
                "be the weights' prior centres: WeightCentered is a per-weight prior whose "
                "centres are stored in the layer (`{name}_prior_loc`); call "
                "`layer.prior_distribution(name, shape)`",
                loc,
            )
        loc = tf.cast(loc, tf.as_dtype(dtype))
        return tfd.Normal(loc, self.scale(loc))

    def get_config(self) -> dict:
        return {"relative_scale": self.relative_scale, "scale_floor": self.scale_floor}


def get(identifier: Prior | float | int | dict | None) -> Prior:
    """Turn a prior specification into a :class:`Prior`.

    Args:
        identifier: a ``Prior`` (returned as is), a positive number (the scale
            of a zero-mean :class:`Normal`), a serialised prior dict, or
            ``None`` (``Normal(0.1)``, the default prior of dense and conv
            layers; see docs/uncertainty.md).

    Example:

    >>> import bayesseg as bs
    >>> bs.priors.get(0.5)
    Normal(scale=0.5, loc=0.0)
    """
    if identifier is None:
        return Normal(DEFAULT_PRIOR_SCALE)
    if isinstance(identifier, Prior):
        return identifier
    if isinstance(identifier, dict):
        prior = keras.saving.deserialize_keras_object(identifier)
        if not isinstance(prior, Prior):
            raise argument_error("prior", "deserialise to a bayesseg Prior", identifier)
        return prior
    if is_number(identifier):
        return Normal(scale=float(identifier))
    raise argument_error(
        "prior", "be a bayesseg.priors.Prior, a positive number (Normal scale) or None", identifier
    )
