"""Does an input fit a model? The one check of ``fit`` and ``predict_mc`` (no TensorFlow).

A Keras model with a declared input (functional, or ``Sequential`` with
``keras.Input``) knows the shape it accepts, ``None`` for any size. Checking
an input against it *before* tracing turns a long ``tf.function`` traceback
into one line naming both shapes. Keras' own tolerance is kept: an input
one axis short of a model input ending in 1, or one axis longer ending in 1,
is accepted (Keras expands or squeezes it).
"""

from __future__ import annotations

from typing import Any


def model_input_shapes(model: Any) -> list[tuple[int | None, ...]] | None:
    """The shapes of a model's declared inputs, or None when it declares none.

    Example:
        >>> import keras
        >>> from bayesseg._input_shapes import model_input_shapes
        >>> model_input_shapes(keras.Sequential([keras.Input((8, 3)), keras.layers.Dense(2)]))
        [(None, 8, 3)]
        >>> model_input_shapes(keras.Sequential([keras.layers.Dense(2)])) is None
        True
    """
    try:
        inputs = model.inputs
    except (AttributeError, ValueError, RuntimeError):
        return None
    if not inputs:
        return None
    try:
        return [tuple(None if d is None else int(d) for d in x.shape) for x in inputs]
    except (AttributeError, TypeError):
        return None


def fits(expected: tuple[int | None, ...], received: tuple[int | None, ...]) -> bool:
    """Whether an input of shape ``received`` fits a model input ``expected``.

    Axes match when equal or when either is None (unknown); an input one
    axis longer ending in 1, or one axis shorter where ``expected`` ends in
    1, fits too (Keras squeezes or expands it).

    Example:
        >>> from bayesseg._input_shapes import fits
        >>> fits((None, 8, 8, 1), (4, 8, 8, 1)), fits((None, 8, 8, 1), (4, 8, 8, 3))
        (True, False)
        >>> fits((None, 8, 8, 1), (4, 8, 8))
        True
    """
    expected, received = tuple(expected), tuple(received)
    if len(received) == len(expected) + 1 and received[-1] == 1:
        received = received[:-1]
    elif len(received) == len(expected) - 1 and expected[-1] == 1:
        expected = expected[:-1]
    if len(received) != len(expected):
        return False
    return all(e is None or r is None or e == r for e, r in zip(expected, received, strict=True))


def show(shape: tuple[int | None, ...]) -> str:
    """A shape as Python writes a tuple: ``(None, 8, 8, 1)``."""
    return str(tuple(shape))
