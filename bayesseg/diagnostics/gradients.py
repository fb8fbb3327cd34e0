"""Gradient contributions: the ELBO gradient split into its NLL and KL parts.

A large loss does not mean a large gradient. :func:`gradient_contributions`
splits the ELBO gradient into the part that comes from the likelihood and the
part that comes from the scaled KL, per layer and per parameter group
(:func:`parameter_groups`), into a :class:`GradientReport`.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from bayesseg._validation import check_int
from bayesseg.diagnostics._common import layer_label
from bayesseg.layers import BayesianLayer

__all__ = [
    "GROUPS",
    "GradientReport",
    "GradientRow",
    "flat_gradients",
    "gradient_contributions",
    "gradient_snr",
    "parameter_groups",
]

GROUPS = ("posterior_loc", "posterior_scale", "bias", "deterministic")


def _variable_groups(layer) -> dict[int, str]:
    # Variable id -> group, from what a Bayesian layer says its variables are
    # (never from variable names): the posterior's loc and rho, and its
    # deterministic bias. Everything else is "deterministic".
    if not isinstance(layer, BayesianLayer):
        return {}
    groups = {}
    bias = getattr(layer, "bias", None)
    if isinstance(bias, keras.Variable):
        groups[id(bias)] = "bias"
    for variables in layer.posterior_variables().values():
        groups[id(variables.loc)] = "posterior_loc"
        groups[id(variables.rho)] = "posterior_scale"
    return groups


def parameter_groups(model: keras.Model) -> list[tuple[str, str, list[int]]]:
    """Group the trainable variables of ``model`` by layer and parameter kind.

    Returns:
        A list of ``(layer_path, group, indices)`` (the path, e.g.
        ``"lstm0/lstm_cell"``, is the name for top-level layers) where ``indices`` point into
        ``model.trainable_variables`` and ``group`` is one of
        "posterior_loc", "posterior_scale" (the ``rho`` variables), "bias"
        (deterministic bias of a Bayesian layer) or "deterministic" (weights
        of non-Bayesian layers).

    Example:

    >>> import bayesseg as bs, keras
    >>> model = keras.Sequential([keras.Input((3,)), bs.layers.DenseFlipout(2)])
    >>> [(g, len(i)) for _, g, i in bs.diagnostics.parameter_groups(model)]
    [('posterior_loc', 1), ('posterior_scale', 1), ('bias', 1)]
    """
    index_of = {id(v): i for i, v in enumerate(model.trainable_variables)}
    groups: dict[tuple[str, str], list[int]] = {}
    seen = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        variable_groups = _variable_groups(layer)
        for variable in (
            layer._trainable_variables if hasattr(layer, "_trainable_variables") else []
        ):
            key_id = id(variable)
            if key_id not in index_of or key_id in seen:
                continue
            seen.add(key_id)
            # The path tells apart same-named nested layers (each LSTM's "lstm_cell").
            group = variable_groups.get(key_id, "deterministic")
            key = (layer_label(layer), group)
            groups.setdefault(key, []).append(index_of[key_id])
    leftover = [i for v, i in index_of.items() if v not in seen]
    if leftover:
        groups.setdefault((model.name, "deterministic"), []).extend(leftover)
    return [(layer, group, idx) for (layer, group), idx in groups.items()]


@dataclasses.dataclass
class GradientRow:
    """Figures of one parameter group (or of the whole model)."""

    layer: str
    group: str
    num_params: int
    nll_norm: float
    kl_norm: float
    ratio: float
    cosine: float
    share: float
    snr: float | None = None


@dataclasses.dataclass
class GradientReport:
    """Per-layer NLL and KL gradient figures, with totals over the model.

    Attributes:
        rows: one :class:`GradientRow` per (layer, parameter group).
        groups: one row per parameter group over all layers (layer "all"):
            the posterior means ("posterior_loc") and the posterior scales
            ("posterior_scale") apart. The model-wide ratio is dominated by
            the means; on the scales the KL is often the main force.
        total: the same figures over all trainable variables.
        nll, kl, kl_weight, loss: the ELBO terms of the (last) evaluation.
    """

    rows: list[GradientRow]
    total: GradientRow
    nll: float
    kl: float
    kl_weight: float
    loss: float
    groups: list[GradientRow] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain Python structure (JSON-serialisable)."""
        return {
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "groups": [dataclasses.asdict(r) for r in self.groups],
            "total": dataclasses.asdict(self.total),
            "nll": self.nll,
            "kl": self.kl,
            "kl_weight": self.kl_weight,
            "loss": self.loss,
        }

    def __str__(self) -> str:
        # Every column is right-aligned in a fixed width and separated by two
        # spaces, so no value (e.g. an snr of "3.12e+03") runs into the next.
        rows = [*self.rows, *self.groups, self.total]
        layer_width = max(5, *(len(row.layer[:24]) for row in rows))
        group_width = max(5, *(len(row.group) for row in rows))
        columns = ("params", "|g_nll|", "|g_kl|", "kl/nll", "cosine", "share", "snr")
        widths = (9, 9, 9, 9, 6, 8, 9)

        def line(layer: str, group: str, cells) -> str:
            numbers = "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
            return f"{layer:<{layer_width}}  {group:<{group_width}}  {numbers}"

        header = line("layer", "group", columns)
        lines = [header, "-" * len(header)]
        for row in rows:
            cells = (
                f"{row.num_params:d}",
                f"{row.nll_norm:.3e}",
                f"{row.kl_norm:.3e}",
                f"{row.ratio:.3g}",
                f"{row.cosine:.3f}",
                f"{row.share:.3g}",
                "-" if row.snr is None else f"{row.snr:.3g}",
            )
            lines.append(line(row.layer[:24], row.group, cells))
        lines.append(
            f"nll={self.nll:.5g}  kl={self.kl:.5g}  kl_weight={self.kl_weight:.3e}  "
            f"loss={self.loss:.5g}"
        )
        return "\n".join(lines)


def flat_gradients(grads, indices) -> tf.Tensor:
    """The gradients at ``indices`` (None ones skipped) as one flat float32 vector.

    Example:

    >>> import tensorflow as tf
    >>> from bayesseg.diagnostics.gradients import flat_gradients
    >>> flat_gradients([tf.ones((2, 2)), None, tf.zeros(3)], [0, 1, 2]).shape
    TensorShape([7])
    """
    parts = [
        tf.reshape(tf.cast(grads[i], tf.float32), [-1]) for i in indices if grads[i] is not None
    ]
    if not parts:
        return tf.zeros([0])
    return tf.concat(parts, 0)


def _row(layer, group, g_nll, g_kl, total_sq, snr=None) -> GradientRow:
    nll_norm = float(tf.norm(g_nll))
    kl_norm = float(tf.norm(g_kl))
    denom = nll_norm * kl_norm
    cosine = float(tf.reduce_sum(g_nll * g_kl)) / denom if denom > 0 else 0.0
    total = g_nll + g_kl
    share = float(tf.reduce_sum(total * total)) / total_sq if total_sq > 0 else 0.0
    ratio = kl_norm / nll_norm if nll_norm > 0 else math.inf
    return GradientRow(
        layer, group, int(g_nll.shape[0]), nll_norm, kl_norm, ratio, cosine, share, snr
    )


def gradient_snr(samples: np.ndarray) -> float | None:
    """Signal-to-noise ratio of a group's gradient over Monte Carlo draws.

    ``|mean_s g_s| / sqrt(sum_j var_s(g_s[j]))``: the norm of the mean
    gradient vector over the square root of the summed variance of its
    elements across draws (population variance, over the ``S`` draws). A
    value below 1 means one draw's gradient is mostly noise; it grows like
    ``sqrt(S)`` when the draws are averaged. Defined on the group as a
    whole, so parameters with a tiny gradient cannot inflate it (the former
    mean of per-element ratios, guarded by 1e-12, read 1e7 for them).

    Args:
        samples: array ``(S, P)``, one flattened gradient per draw, ``S >= 2``.

    Returns:
        The ratio; ``inf`` when the draws agree exactly on a non-zero
        gradient, ``None`` when every draw's gradient is zero.

    Example:
        >>> import numpy as np
        >>> gradient_snr(np.array([[3.0, 0.0], [1.0, 0.0]]))  # mean (2, 0), variance (1, 0)
        2.0
    """
    samples = np.asarray(samples, dtype=np.float64)
    signal = float(np.linalg.norm(samples.mean(axis=0)))
    noise = float(np.sqrt(samples.var(axis=0).sum()))
    if noise == 0.0:
        return float("inf") if signal > 0.0 else None
    return signal / noise


def gradient_contributions(
    model: keras.Model, elbo, x, y, sample_weight=None, num_samples: int = 1
) -> GradientReport:
    """Split the ELBO gradient into its NLL and scaled-KL parts, per layer.

    For each Monte Carlo draw, computes ``g_nll = d NLL / d theta`` and
    ``g_kl = d (kl term) / d theta`` (the KL term of the loss, i.e. scaled by
    the ELBO's ``kl_weight`` and temperature), averages them over the draws,
    and reports per (layer, parameter group): their norms, ``|g_kl| /
    |g_nll|``, their cosine similarity, the group's share of the squared norm
    of the total gradient ``g_nll + g_kl`` and, with ``num_samples > 1``, the
    gradient signal-to-noise ratio across draws (:func:`gradient_snr`: the
    norm of the mean gradient over the square root of the summed variance).
    ``total`` gives the same over the whole model: ``g_nll + g_kl`` is the
    gradient of the loss.

    Args:
        model: a model with Bayesian layers.
        elbo: a ``bayesseg.ELBO``.
        x, y: one batch.
        sample_weight: optional sample weights.
        num_samples: int >= 1, Monte Carlo draws of the weights.

    Returns:
        A :class:`GradientReport` (``print(report)`` shows a table).

    Example:

    >>> import bayesseg as bs, keras, numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), bs.layers.DenseFlipout(1)])
    >>> elbo = bs.ELBO(bs.losses.WeightedBinaryCrossentropy(), bs.kl.PerExample(10))
    >>> report = bs.diagnostics.gradient_contributions(
    ...     model, elbo, np.ones((4, 3)), np.ones((4, 1)), num_samples=2)
    >>> report.total.group
    'all'
    """
    num_samples = check_int("num_samples", num_samples)
    variables = model.trainable_variables
    if not variables:
        raise ValueError(f"Model {model.name!r} has no trainable variables.")
    if sample_weight is not None:
        # NumPy weights have no `.shape.rank`; one tensor serves every draw.
        sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
    draws_nll, draws_kl = [], []
    for _ in range(num_samples):
        with tf.GradientTape(persistent=True) as tape:
            y_pred = model(x, training=True)
            terms = elbo.compute(model, y, y_pred, sample_weight)
            kl_term = terms.loss - terms.nll
        g_nll = tape.gradient(terms.nll, variables)
        g_kl = tape.gradient(kl_term, variables)
        del tape
        draws_nll.append(
            [
                g if g is not None else tf.zeros_like(v)
                for g, v in zip(g_nll, variables, strict=True)
            ]
        )
        draws_kl.append(
            [g if g is not None else tf.zeros_like(v) for g, v in zip(g_kl, variables, strict=True)]
        )
    mean_nll = [tf.add_n([d[i] for d in draws_nll]) / num_samples for i in range(len(variables))]
    mean_kl = [tf.add_n([d[i] for d in draws_kl]) / num_samples for i in range(len(variables))]
    all_indices = list(range(len(variables)))
    total_vec = flat_gradients(mean_nll, all_indices) + flat_gradients(mean_kl, all_indices)
    total_sq = float(tf.reduce_sum(total_vec * total_vec))

    def snr(indices):
        if num_samples < 2:
            return None
        samples = tf.stack(
            [
                flat_gradients(dn, indices) + flat_gradients(dk, indices)
                for dn, dk in zip(draws_nll, draws_kl, strict=True)
            ]
        )
        return gradient_snr(samples.numpy())

    grouping = parameter_groups(model)
    rows = [
        _row(
            layer,
            group,
            flat_gradients(mean_nll, idx),
            flat_gradients(mean_kl, idx),
            total_sq,
            snr(idx),
        )
        for layer, group, idx in grouping
    ]
    by_group: dict[str, list[int]] = {}
    for _, group, idx in grouping:
        by_group.setdefault(group, []).extend(idx)
    groups = [
        _row(
            "all",
            group,
            flat_gradients(mean_nll, idx),
            flat_gradients(mean_kl, idx),
            total_sq,
            snr(idx),
        )
        for group, idx in sorted(by_group.items(), key=lambda item: GROUPS.index(item[0]))
    ]
    total = _row(
        model.name,
        "all",
        flat_gradients(mean_nll, all_indices),
        flat_gradients(mean_kl, all_indices),
        total_sq,
        snr(all_indices),
    )
    return GradientReport(
        rows=rows,
        groups=groups,
        total=total,
        nll=float(terms.nll),
        kl=float(terms.kl),
        kl_weight=float(terms.kl_weight),
        loss=float(terms.loss),
    )
