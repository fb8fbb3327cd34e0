"""Every Bayesian layer takes its Keras twin's positional arguments, in order.

Built with the same positional arguments and given the twin's weights as
posterior means, a Bayesian layer under ``sampling_mode(..., "mean")``
computes the twin's function.
"""

import inspect

import keras
import numpy as np
import pytest

import bayesseg as bs
from bayesseg import layers as L

LSTM_ARGS = (
    3,  # units
    "tanh",  # activation
    "sigmoid",  # recurrent_activation
    True,  # use_bias
    "glorot_uniform",  # kernel_initializer
    "orthogonal",  # recurrent_initializer
    "zeros",  # bias_initializer
    True,  # unit_forget_bias
)
LSTM_TAIL = (None,) * 7 + (0.0, 0.0, None, True)  # ..., dropout, recurrent_dropout, seed, rs

# (Bayesian classes, Keras twin, positional arguments, input shape)
CASES = [
    ((L.DenseFlipout, L.DenseReparameterization, L.DenseLocalReparameterization),
     keras.layers.Dense, (4, "relu", True), (2, 5)),
    ((L.Conv1DFlipout, L.Conv1DReparameterization),
     keras.layers.Conv1D, (4, 3, 2, "same"), (2, 9, 2)),
    ((L.Conv2DFlipout, L.Conv2DReparameterization),
     keras.layers.Conv2D, (4, 3, 1, "valid", None, 2), (2, 9, 9, 2)),
    ((L.Conv3DFlipout, L.Conv3DReparameterization),
     keras.layers.Conv3D, (4, 2, 2, "same", None, 1, 1, "relu"), (2, 4, 4, 4, 2)),
    ((L.Conv2DTransposeFlipout, L.Conv2DTransposeReparameterization),
     keras.layers.Conv2DTranspose, (4, 2, 2), (2, 5, 5, 2)),
    ((L.Conv2DTransposeFlipout, L.Conv2DTransposeReparameterization),
     keras.layers.Conv2DTranspose, (4, 3, 2, "same", 1), (2, 5, 5, 2)),
    ((L.Conv3DTransposeFlipout, L.Conv3DTransposeReparameterization),
     keras.layers.Conv3DTranspose, (4, 3, 2, "same", None, 1), (2, 3, 3, 3, 2)),
    ((L.LSTMFlipout, L.LSTMReparameterization),
     keras.layers.LSTM, LSTM_ARGS + LSTM_TAIL, (2, 6, 2)),
]  # fmt: skip
CELLS = [L.LSTMCellFlipout, L.LSTMCellReparameterization]
PAIRS = [(cls, twin) for classes, twin, _, _ in CASES for cls in classes]
PAIRS += [(cls, keras.layers.LSTMCell) for cls in CELLS]
PAIRS = list(dict.fromkeys(PAIRS))


def _positional(function) -> list[str]:
    params = list(inspect.signature(function).parameters.values())[1:]  # self
    return [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]


def _copy_twin_weights(layer, twin) -> None:
    """The twin's weights into the posterior means (and deterministic bias)."""
    owner = getattr(layer, "cell", layer)
    source = getattr(twin, "cell", twin)
    posteriors = owner.posterior_variables()
    for name, variables in posteriors.items():
        variables.loc.assign(getattr(source, name))
    if "bias" not in posteriors:
        owner.bias.assign(source.bias)


def _assert_same_function(layer, twin, shape) -> None:
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    expected = twin(x)
    layer(x)
    _copy_twin_weights(layer, twin)
    with bs.layers.sampling_mode(layer, "mean"):
        np.testing.assert_allclose(layer(x), twin(x), atol=1e-5)
    assert layer(x).shape == expected.shape


@pytest.mark.parametrize(
    "cls,twin,args,shape",
    [(cls, twin, args, shape) for classes, twin, args, shape in CASES for cls in classes],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_twin_positional_arguments_give_the_twin_function(cls, twin, args, shape):
    keras.utils.set_random_seed(1)
    _assert_same_function(cls(*args), twin(*args), shape)


@pytest.mark.parametrize("cls", CELLS, ids=lambda c: c.__name__)
def test_cell_positional_arguments_give_the_twin_function(cls):
    keras.utils.set_random_seed(1)
    args = LSTM_ARGS[:1] + ("relu",) + LSTM_ARGS[2:]
    layer = keras.layers.RNN(cls(*args), return_sequences=True)
    twin = keras.layers.RNN(keras.layers.LSTMCell(*args), return_sequences=True)
    _assert_same_function(layer, twin, (2, 6, 2))


def test_transposed_strides_are_the_third_positional_argument():
    assert L.Conv2DTransposeFlipout(64, 2, 2).strides == (2, 2)
    assert keras.layers.Conv2DTranspose(64, 2, 2).strides == (2, 2)


@pytest.mark.parametrize("cls,twin", PAIRS, ids=lambda v: v.__name__)
def test_positional_parameters_are_the_twins_in_order(cls, twin):
    assert _positional(cls.__init__) == _positional(twin.__init__)


@pytest.mark.parametrize("cls", [cls for cls, _ in PAIRS] + [L.BayesianLayer, L.BaseConv])
def test_bayesian_arguments_are_keyword_only(cls):
    params = inspect.signature(cls.__init__).parameters
    for name in ("prior", "posterior_scale_init", "bayesian_bias", "sampling", "kl_samples"):
        if name in params:
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        else:
            assert any(p.kind is p.VAR_KEYWORD for p in params.values()), name


def _make(cls, **kwargs):
    if issubclass(cls, L.BaseConv):
        return cls(4, 3, **kwargs)
    return cls(4, **kwargs)


UNSUPPORTED = [
    (L.DenseFlipout, "kernel_regularizer", "l2"),
    (L.DenseReparameterization, "bias_constraint", "non_neg"),
    (L.DenseLocalReparameterization, "lora_rank", 2),
    (L.DenseFlipout, "quantization_config", "int8"),
    (L.Conv2DFlipout, "groups", 2),
    (L.Conv1DReparameterization, "kernel_regularizer", "l1"),
    (L.Conv3DTransposeFlipout, "bias_regularizer", "l2"),
    (L.LSTMFlipout, "dropout", 0.1),
    (L.LSTMReparameterization, "recurrent_constraint", "non_neg"),
    (L.LSTMCellFlipout, "recurrent_dropout", 0.2),
]


@pytest.mark.parametrize("cls,name,value", UNSUPPORTED)
def test_unsupported_keras_argument_raises_naming_it(cls, name, value):
    with pytest.raises(ValueError, match=f"Argument `{name}` must be .*Received: {name}="):
        _make(cls, **{name: value})
    _make(cls, **{name: inspect.signature(cls.__init__).parameters[name].default})


def test_activity_regularizer_goes_to_the_keras_layer():
    layer = L.DenseFlipout(2, activity_regularizer="l2")
    layer(np.ones((3, 4), "float32"))
    assert len(layer.losses) == 1
    restored = L.DenseFlipout.from_config(layer.get_config())
    assert restored.activity_regularizer is not None
