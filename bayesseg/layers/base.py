"""The shared base of every Bayesian layer: posterior, prior, KL and noise.

Every Bayesian layer in bayesseg derives from :class:`BayesianLayer`, which
owns, once for all ranks and estimators:

* the mean-field Normal posterior of each weight tensor: a ``loc`` variable
  (initialised like the matching Keras layer's weight) and an unconstrained
  ``rho`` variable with ``scale = softplus(scale_multiplier * rho)``,
  initialised so that the scale equals ``posterior_scale_init`` (0.01 by
  default: a fresh Bayesian network starts next to its deterministic twin,
  and the multiplier lets the scales leave that start within a short
  budget; docs/uncertainty.md);
* the prior (``bayesseg.priors``) and the unscaled KL divergence, closed form
  when TensorFlow Probability registers one, a seeded Monte Carlo estimate
  otherwise;
* stateless noise: every sampled call draws from stateless random ops seeded
  by ``(layer seed, noise step, replica id)``. The noise step is a saved,
  non-trainable counter advanced by one per sampled call, so noise differs
  between replicas of a ``tf.distribute`` strategy and a model resumed from a
  checkpoint draws exactly what the uninterrupted run would have drawn;
* the ``sampling`` switch ("sample" or "mean"), independent of ``training``.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from bayesseg import priors as priors_lib
from bayesseg._defaults import (
    DEFAULT_POSTERIOR_SCALE_INIT,
    DEFAULT_PRIOR_SCALE,
    DEFAULT_SCALE_MULTIPLIER,
)
from bayesseg._validation import argument_error, check_float, check_int

# The functions over a whole model live in model_functions.py and are
# re-exported here, where they were released; the sampling modes live there
# too. model_functions imports nothing from this module (the imports go one
# way), so either module may be imported first.
from bayesseg.layers.model_functions import (  # noqa: F401 - SAMPLING_MODES importable as before
    SAMPLING_MODES,
    BayesianLayerType,
    bayesian_layers,
    check_sampling,
    kl_divergence,
    sampling_mode,
    set_sampling,
)

tfd = tfp.distributions

__all__ = [
    "BayesianLayer",
    "bayesian_layers",
    "kl_divergence",
    "set_sampling",
    "sampling_mode",
]

# Noise streams: distinct stateless seeds folded from one call's seed, owned
# here for every layer of the package (public to the package, not in
# ``__all__``). Weight noise, bias noise, Flipout input and output signs and
# the Monte Carlo KL; then the recurrent kernel's noise and signs (LSTM
# cells), and the stream folded into the seed of a layer that reads its
# sequence backwards, so the two directions of a ``Bidirectional`` wrapper
# (same config, same seed) draw different noise. Changing a number changes
# the noise every saved model draws.
STREAM_KERNEL = 0
STREAM_BIAS = 1
STREAM_SIGN_IN = 2
STREAM_SIGN_OUT = 3
STREAM_KL = 4
STREAM_RECURRENT_KERNEL = 5
STREAM_RECURRENT_SIGN_IN = 6
STREAM_RECURRENT_SIGN_OUT = 7
STREAM_BACKWARD = 8


class PosteriorVariables(NamedTuple):
    """The variables of one Bayesian weight: posterior mean, ``rho``, prior centre."""

    loc: keras.Variable
    rho: keras.Variable
    prior_loc: keras.Variable | None


def inverse_softplus(x):
    """Return ``rho`` with ``softplus(rho) == x`` (x > 0, float or array), stable for tiny x."""
    x = np.asarray(x, dtype="float64")
    rho = x + np.log(-np.expm1(-x))
    return float(rho) if rho.ndim == 0 else rho


def check_unsupported(layer: str, **arguments) -> None:
    """Refuse Keras arguments a Bayesian layer takes for positional compatibility only.

    Each keyword is ``name=(value, default)``; a value other than its default
    raises in the package's argument style.
    """
    for name, (value, default) in arguments.items():
        if value is not default and value != default:
            raise argument_error(name, f"be {default!r}: {layer} does not support it", value)


def fold_in(seed: tf.Tensor, stream: int) -> tf.Tensor:
    """Derive an independent stateless seed for one noise stream."""
    return tf.random.experimental.stateless_fold_in(seed, stream)


def random_signs(shape, seed: tf.Tensor, dtype) -> tf.Tensor:
    """Rademacher (+1/-1) tensor drawn from a stateless seed."""
    bits = tf.random.stateless_uniform(shape, seed, minval=0, maxval=2, dtype=tf.int32)
    return tf.cast(2 * bits - 1, dtype)


@keras.saving.register_keras_serializable(package="bayesseg")
class BayesianLayer(keras.layers.Layer):
    """Base class of bayesseg's Bayesian layers.

    Subclasses create their weights with :meth:`add_posterior` (a Bayesian
    weight) in ``build`` and draw noise in ``call`` from :meth:`next_seed`.
    The base class provides the posterior, the prior, the KL divergence and
    the sampling switch; it never scales the KL (the ELBO does).

    Args:
        prior: a ``bayesseg.priors.Prior`` or a positive float (the scale of a
            zero-mean Normal prior). Default (None): :meth:`default_prior`,
            ``Normal(0.1)`` (``FanInNormal()`` for LSTM cells).
        posterior_scale_init: float > 0, the initial posterior standard
            deviation of every Bayesian weight. Default 0.01.
        bayesian_bias: bool, whether the bias has a Normal posterior (True) or
            is a deterministic weight (False, default).
        sampling: "sample" (default) draws weights on every call, in ``fit``,
            ``evaluate`` and ``predict`` alike, with the layer's estimator;
            "mean" uses the posterior mean; "shared" draws one weight set per
            call shared by the whole batch (Flipout and local
            reparameterization layers then cost one convolution/matmul, the
            fast path for Monte Carlo prediction, where decorrelating examples
            buys nothing). Independent of ``training``; switch a whole model
            with :func:`set_sampling` or :func:`sampling_mode`.
        kl_samples: int >= 1, Monte Carlo samples for the KL when the prior
            has no closed-form KL (e.g. ``ScaleMixture``). Default 1.
        seed: int, the layer's noise seed. Default: drawn from NumPy's global
            generator (seeded by ``keras.utils.set_random_seed``) and stored
            in the config, so a reloaded model draws the same noise. Python's
            ``random`` module, which Keras's initializers draw from, is left
            alone: after the same ``set_random_seed``, a Bayesian model's
            posterior means start at its deterministic twin's weights.
        scale_multiplier: float > 0, ``c`` in ``scale = softplus(c * rho)``.
            Adam-type optimizers move ``rho`` by at most about the learning
            rate per step, and for small scales ``log(scale) ~ c * rho``, so
            the scales can change by ``c`` times the learning rate per step
            in log space: with ``c = 1`` a scale grows at most x1.27 in 240
            steps at lr 1e-3, far from where the ELBO wants it. Default
            (None): 20, the class attribute ``default_scale_multiplier`` (5
            for LSTM cells, whose recurrent noise compounds over time; see
            docs/uncertainty.md). Multiplying rho's *gradient* instead would
            change nothing under Adam. Under plain SGD the effective learning
            rate of ``rho`` is ``c**2`` times the optimizer's.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``).

    Example:

    >>> import bayesseg as bs, numpy as np
    >>> layer = bs.layers.DenseFlipout(3)
    >>> y = layer(np.ones((2, 4), "float32"))
    >>> float(layer.kl_divergence()) > 0
    True
    """

    # The defaults a subclass may change (LSTM cells do; docs/uncertainty.md).
    default_scale_multiplier: float = DEFAULT_SCALE_MULTIPLIER

    def default_prior(self) -> priors_lib.Prior:
        """The prior used when none is given: ``Normal(0.1)`` here.

        Subclasses override it (LSTM cells return ``FanInNormal()``).

        Example:

        >>> import bayesseg as bs
        >>> bs.layers.DenseFlipout(2).prior
        Normal(scale=0.1, loc=0.0)
        """
        return priors_lib.Normal(DEFAULT_PRIOR_SCALE)

    def __init__(
        self,
        *,
        prior=None,
        posterior_scale_init: float = DEFAULT_POSTERIOR_SCALE_INIT,
        bayesian_bias: bool = False,
        sampling: str = "sample",
        kl_samples: int = 1,
        seed: int | None = None,
        scale_multiplier: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.prior = self.default_prior() if prior is None else priors_lib.get(prior)
        self.posterior_scale_init = check_float(
            "posterior_scale_init", posterior_scale_init, minimum=0, strict_minimum=True
        )
        if scale_multiplier is None:
            scale_multiplier = self.default_scale_multiplier
        self.scale_multiplier = check_float(
            "scale_multiplier", scale_multiplier, minimum=0, strict_minimum=True
        )
        self.bayesian_bias = bool(bayesian_bias)
        self.sampling = check_sampling(sampling)
        self.kl_samples = check_int("kl_samples", kl_samples)
        if seed is None:
            # NumPy's global generator, not Python's: Keras's initializers
            # draw their seeds from Python's ``random``, so drawing from it
            # here would shift the initial weights of every layer created
            # after this one, and a Bayesian model would not start where its
            # deterministic twin does.
            seed = int(np.random.randint(2**31 - 1))  # noqa: NPY002 (the seeded global)
        self.seed = check_int("seed", seed, minimum=None)
        self._posterior_names: list[str] = []

    # ------------------------------------------------------------------ weights
    def add_posterior(self, name: str, shape, initializer) -> None:
        """Create the posterior of a Bayesian weight: ``{name}_loc``, ``{name}_rho``.

        Args:
            name: str, the weight's name ("kernel", "bias", ...).
            shape: tuple of ints, the weight's shape.
            initializer: initializer of the posterior mean (the Keras layer's
                weight initializer, so ``loc`` starts where Keras would).
        """
        loc = self.add_weight(
            name=f"{name}_loc", shape=shape, initializer=initializer, trainable=True
        )
        rho = self.add_weight(
            name=f"{name}_rho",
            shape=shape,
            initializer=keras.initializers.Constant(self.rho_for_scale(self.posterior_scale_init)),
            trainable=True,
        )
        setattr(self, f"{name}_loc", loc)
        setattr(self, f"{name}_rho", rho)
        if getattr(self.prior, "per_weight", False):
            # A per-weight prior (e.g. ``priors.WeightCentered``) reads its
            # centre from this saved, non-trainable variable.
            prior_loc = self.add_weight(
                name=f"{name}_prior_loc", shape=shape, initializer="zeros", trainable=False
            )
            setattr(self, f"{name}_prior_loc", prior_loc)
        self._posterior_names.append(name)

    def build_noise_state(self) -> None:
        """Create the saved noise counter; call once at the end of ``build``."""
        # "only_first_replica": each replica may advance it inside a replica
        # context; all replicas hold the same count, the replica id is folded
        # into the seed instead.
        self.noise_step = self.add_weight(
            name="noise_step",
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
        )

    @property
    def posterior_names(self) -> tuple[str, ...]:
        """Names of the Bayesian weights of this layer (e.g. ``("kernel",)``)."""
        return tuple(self._posterior_names)

    def posterior_loc(self, name: str):
        """The posterior mean variable of weight ``name``."""
        return getattr(self, f"{name}_loc")

    def posterior_variables(self) -> dict[str, PosteriorVariables]:
        """Each Bayesian weight's variables, by weight name; the only way in.

        Code outside the layer (conversion, diagnostics) asks here instead of
        parsing variable names.

        Returns:
            ``{name: PosteriorVariables(loc, rho, prior_loc)}`` in build order;
            ``prior_loc`` is None unless the prior is per-weight.

        Example:

        >>> import bayesseg as bs
        >>> layer = bs.layers.DenseFlipout(2, bayesian_bias=True)
        >>> layer.build((None, 3))
        >>> {k: tuple(v.rho.shape) for k, v in layer.posterior_variables().items()}
        {'kernel': (3, 2), 'bias': (2,)}
        """
        return {
            name: PosteriorVariables(
                loc=getattr(self, f"{name}_loc"),
                rho=getattr(self, f"{name}_rho"),
                prior_loc=getattr(self, f"{name}_prior_loc", None),
            )
            for name in self._posterior_names
        }

    def rho_for_scale(self, scale):
        """The ``rho`` value whose posterior scale is ``scale`` (float or array > 0).

        The inverse of :meth:`posterior_scale`: ``inverse_softplus(scale) / scale_multiplier``.

        Example:

        >>> import bayesseg as bs
        >>> layer = bs.layers.DenseFlipout(2, scale_multiplier=10.0)
        >>> round(float(layer.rho_for_scale(0.01)), 4)
        -0.46
        """
        return inverse_softplus(scale) / self.scale_multiplier

    def posterior_scale(self, name: str) -> tf.Tensor:
        """The posterior standard deviation ``softplus(scale_multiplier * rho)`` of ``name``."""
        rho = getattr(self, f"{name}_rho")
        return tf.nn.softplus(self.scale_multiplier * tf.convert_to_tensor(rho))

    def prior_distribution(self, name: str, shape) -> tfd.Distribution:
        """The float32 prior of weight ``name`` (per-weight priors read ``{name}_prior_loc``)."""
        if getattr(self.prior, "per_weight", False):
            loc = tf.cast(getattr(self, f"{name}_prior_loc"), tf.float32)
            return self.prior.distribution(shape, tf.float32, loc=loc)
        return self.prior.distribution(shape, tf.float32)

    def posterior(self, name: str) -> tfd.Distribution:
        """The posterior of weight ``name`` as a float32 ``tfd.Normal``."""
        loc = tf.cast(self.posterior_loc(name), tf.float32)
        rho = tf.cast(getattr(self, f"{name}_rho"), tf.float32)
        return tfd.Normal(loc, tf.nn.softplus(self.scale_multiplier * rho))

    # -------------------------------------------------------------------- noise
    @property
    def sampling_active(self) -> bool:
        """Whether this call draws noise ("sample" or "shared")."""
        return self.sampling != "mean"

    @property
    def shared_sample(self) -> bool:
        """Whether one weight draw is shared by the batch this call."""
        return self.sampling == "shared"

    def next_seed(self) -> tf.Tensor:
        """Seed of this sampled call; advances the noise counter by one.

        The seed folds in the replica id under a ``tf.distribute`` strategy,
        so replicas draw different noise from the same counter.
        """
        step = tf.convert_to_tensor(self.noise_step.value)
        step = tf.identity(step)
        self.noise_step.assign(step + 1)
        seed = tf.stack([tf.constant(self.seed, tf.int64), step])
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            replica = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
            seed = tf.random.experimental.stateless_fold_in(seed, replica)
        return seed

    def sample_weight_noise(self, name: str, seed: tf.Tensor, stream: int, dtype):
        """A perturbation ``scale * eps`` of weight ``name`` (one draw)."""
        scale = tf.cast(self.posterior_scale(name), dtype)
        eps = tf.random.stateless_normal(tf.shape(scale), fold_in(seed, stream), dtype=dtype)
        return scale * eps

    def sample_weight(self, name: str, seed: tf.Tensor, stream: int, dtype):
        """One draw ``loc + scale * eps`` of weight ``name`` in ``dtype``."""
        loc = tf.cast(self.posterior_loc(name), dtype)
        return loc + self.sample_weight_noise(name, seed, stream, dtype)

    def bias_value(self, dtype, seed: tf.Tensor | None):
        """The bias for this call: a draw when Bayesian and sampling, else the mean."""
        if not self.bayesian_bias:
            return tf.cast(self.bias, dtype)
        if seed is None:
            return tf.cast(self.posterior_loc("bias"), dtype)
        return self.sample_weight("bias", seed, STREAM_BIAS, dtype)

    # ----------------------------------------------------------------------- KL
    def kl_terms(self, num_samples: int | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """The two parts of the unscaled KL: ``(cross_entropy, entropy)``.

        ``KL(q || p) = cross_entropy(q, p) - entropy(q)``, summed over every
        Bayesian weight of the layer, in float32. The entropy of the Normal
        posterior is exact; the cross-entropy to the prior is exact when TFP
        registers a closed form (Normal prior) and a Monte Carlo estimate with
        ``num_samples`` draws (default ``kl_samples``) otherwise, seeded from
        the layer seed and the current noise step (never the last forward
        pass's draw). Posterior tempering (``ELBO(tempering="posterior")``)
        weights the two parts differently.

        Example:

        >>> import bayesseg as bs, numpy as np
        >>> layer = bs.layers.DenseReparameterization(2)
        >>> _ = layer(np.ones((1, 3), "float32"))
        >>> ce, ent = layer.kl_terms()
        >>> bool(abs((ce - ent) - layer.kl_divergence()) < 1e-2)
        True
        """
        self._check_built()
        cross_entropy = tf.constant(0.0, tf.float32)
        entropy = tf.constant(0.0, tf.float32)
        for name in self._posterior_names:
            q = self.posterior(name)
            entropy += tf.reduce_sum(q.entropy())
            cross_entropy += self._cross_entropy(name, q, num_samples)
        return cross_entropy, entropy

    def kl_divergence(self, num_samples: int | None = None) -> tf.Tensor:
        """The layer's unscaled KL divergence ``KL(q(w) || p(w))`` (float32 scalar).

        Closed form when TFP registers the pair (Normal posterior, Normal
        prior), else ``cross_entropy_mc - entropy`` (see :meth:`kl_terms`).
        Nothing here divides by the number of examples: the ELBO owns the
        scaling.

        Example:

        >>> import bayesseg as bs, numpy as np
        >>> layer = bs.layers.Conv2DFlipout(4, 3)
        >>> _ = layer(np.ones((1, 8, 8, 1), "float32"))
        >>> float(layer.kl_divergence()) > 0
        True
        """
        self._check_built()
        total = tf.constant(0.0, tf.float32)
        for name in self._posterior_names:
            q = self.posterior(name)
            p = self.prior_distribution(name, q.batch_shape)
            try:
                kl = tfd.kl_divergence(q, p)
            except NotImplementedError:
                kl = self._cross_entropy(name, q, num_samples) - tf.reduce_sum(q.entropy())
            total += tf.reduce_sum(kl)
        return total

    def _cross_entropy(self, name, q, num_samples) -> tf.Tensor:
        p = self.prior_distribution(name, q.batch_shape)
        try:
            return tf.reduce_sum(q.cross_entropy(p))
        except NotImplementedError:
            pass
        num_samples = check_int(
            "num_samples", self.kl_samples if num_samples is None else num_samples
        )
        seed = tf.stack(
            [
                tf.constant(self.seed, tf.int64),
                tf.cast(tf.convert_to_tensor(self.noise_step.value), tf.int64),
            ]
        )
        seed = fold_in(fold_in(seed, STREAM_KL), self._posterior_names.index(name))
        w = q.sample(num_samples, seed=seed)
        return -tf.reduce_sum(p.log_prob(w)) / num_samples

    def _check_built(self) -> None:
        if not self.built:
            raise ValueError(
                f"Layer {self.name!r} has no weights yet: call it on an input (or "
                "build it) before asking for its KL divergence."
            )

    # ------------------------------------------------------------------- config
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "prior": keras.saving.serialize_keras_object(self.prior),
                "posterior_scale_init": self.posterior_scale_init,
                "bayesian_bias": self.bayesian_bias,
                "sampling": self.sampling,
                "kl_samples": self.kl_samples,
                "seed": self.seed,
                "scale_multiplier": self.scale_multiplier,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict):
        # Files saved before ``scale_multiplier`` existed hold rho itself.
        return super().from_config({"scale_multiplier": 1.0, **config})


# The functions over a whole model find Bayesian layers as instances of
# model_functions.BayesianLayerType, which imports nothing from here.
BayesianLayerType.register(BayesianLayer)
