"""Argument checks shared by every public function: one owner, one message style.

Every check raises ``ValueError`` before any work starts, with one message
shape across the package (Keras' own)::

    Argument `name` must <expectation>. Received: name=<value!r>

``bool`` is never accepted where a number is expected (``True`` is an
``int`` to Python, never a count or a rate to a user), NumPy scalars are
accepted wherever Python numbers are, and every check returns the value
converted to a plain Python type.

Example:
    >>> from bayesseg._validation import check_int
    >>> check_int("epochs", 3)
    3
    >>> check_int("epochs", 0)
    Traceback (most recent call last):
    ...
    ValueError: Argument `epochs` must be an integer >= 1. Received: epochs=0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = [
    "argument_error",
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_int_tuple",
    "is_integer",
    "is_number",
]


def argument_error(name: str, expectation: str, value: Any) -> ValueError:
    """The package's one error shape: ``Argument `name` must ... Received: name=...``.

    Args:
        name: the argument's name as the user wrote it.
        expectation: what it must be, completing "must": ``"be an integer >= 1"``.
        value: what was received (shown with ``repr``).

    Returns:
        A ``ValueError`` to raise.

    Example:
        >>> str(argument_error("gamma", "be a finite number >= 0", -1.0))
        'Argument `gamma` must be a finite number >= 0. Received: gamma=-1.0'
    """
    return ValueError(f"Argument `{name}` must {expectation}. Received: {name}={value!r}")


def is_integer(value: Any) -> bool:
    """True for Python and NumPy integers, False for ``bool`` and everything else.

    Example:
        >>> is_integer(3), is_integer(True), is_integer(3.0)
        (True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for real numbers (Python or NumPy), False for ``bool`` and everything else.

    Example:
        >>> is_number(0.5), is_number(2), is_number(False), is_number("1")
        (True, True, False, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bounds(minimum, maximum, strict_minimum: bool, strict_maximum: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if strict_minimum else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"{'<' if strict_maximum else '<='} {maximum}")
    return " and ".join(parts)


def _in_bounds(value, minimum, maximum, strict_minimum: bool, strict_maximum: bool) -> bool:
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        return False
    if maximum is not None and (value >= maximum if strict_maximum else value > maximum):
        return False
    return True


def check_int(
    name: str,
    value: Any,
    minimum: int | None = 1,
    maximum: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """An integer within ``[minimum, maximum]`` (either bound may be None).

    Args:
        name: argument name for the message.
        value: the value to check.
        minimum: smallest accepted value (default 1); None for no bound.
        maximum: largest accepted value; None (default) for no bound.
        allow_none: accept (and return) None.

    Returns:
        ``int(value)``, or None when ``allow_none`` and the value is None.

    Example:
        >>> check_int("depth", 4, minimum=2)
        4
        >>> check_int("seed", None, minimum=0, allow_none=True) is None
        True
        >>> check_int("depth", True)
        Traceback (most recent call last):
        ...
        ValueError: Argument `depth` must be an integer >= 1. Received: depth=True
    """
    if value is None and allow_none:
        return None
    if not is_integer(value) or not _in_bounds(value, minimum, maximum, False, False):
        bounds = _bounds(minimum, maximum, False, False)
        expectation = "be an integer" + (f" {bounds}" if bounds else "")
        if allow_none:
            expectation += " or None"
        raise argument_error(name, expectation, value)
    return int(value)


def check_float(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
    strict_maximum: bool = False,
    allow_none: bool = False,
) -> float | None:
    """A finite real number within the given bounds.

    Args:
        name: argument name for the message.
        value: the value to check (Python or NumPy number; not ``bool``).
        minimum, maximum: bounds, None for none.
        strict_minimum, strict_maximum: exclude the bound itself.
        allow_none: accept (and return) None.

    Returns:
        ``float(value)``, or None when ``allow_none`` and the value is None.

    Example:
        >>> check_float("temperature", 0.5, minimum=0, strict_minimum=True)
        0.5
        >>> check_float("fraction", 1.0, 0, 1, strict_minimum=True, strict_maximum=True)
        Traceback (most recent call last):
        ...
        ValueError: Argument `fraction` must be a finite number > 0 and < 1. Received: fraction=1.0
    """
    if value is None and allow_none:
        return None
    ok = (
        is_number(value)
        and math.isfinite(value)
        and _in_bounds(value, minimum, maximum, strict_minimum, strict_maximum)
    )
    if not ok:
        bounds = _bounds(minimum, maximum, strict_minimum, strict_maximum)
        expectation = "be a finite number" + (f" {bounds}" if bounds else "")
        if allow_none:
            expectation += " or None"
        raise argument_error(name, expectation, value)
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """A ``bool`` (Python or NumPy), never a number or a string that reads as one.

    Example:
        >>> check_bool("use_bias", False)
        False
        >>> check_bool("use_bias", "no")
        Traceback (most recent call last):
        ...
        ValueError: Argument `use_bias` must be True or False. Received: use_bias='no'
    """
    if isinstance(value, bool):
        return value
    if type(value).__name__ == "bool_" and type(value).__module__ == "numpy":
        return bool(value)
    raise argument_error(name, "be True or False", value)


def check_choice(
    name: str, value: Any, choices: Iterable[Any], lower: bool = False, allow_none: bool = False
) -> Any:
    """One of ``choices``; strings are lower-cased first when ``lower``.

    Example:
        >>> check_choice("padding", "SAME", ("valid", "same"), lower=True)
        'same'
        >>> check_choice("estimator", "mc", ("flipout", "reparameterization"))
        Traceback (most recent call last):
        ...
        ValueError: Argument `estimator` must be one of 'flipout', 'reparameterization'. Received: estimator='mc'
    """  # noqa: E501
    choices = tuple(choices)
    if value is None and allow_none:
        return None
    candidate = value.lower() if lower and isinstance(value, str) else value
    try:
        known = candidate in choices
    except TypeError:  # unhashable or incomparable
        known = False
    if not known:
        listed = ", ".join(repr(c) for c in choices)
        raise argument_error(
            name, f"be one of {listed}" + (" or None" if allow_none else ""), value
        )
    return candidate


def check_int_tuple(name: str, value: Any, length: int, minimum: int = 1) -> tuple[int, ...]:
    """An int (repeated ``length`` times) or a sequence of ``length`` ints >= ``minimum``.

    The rule of Keras' ``kernel_size``, ``strides`` and of patch sizes.

    Example:
        >>> check_int_tuple("kernel_size", 3, 2)
        (3, 3)
        >>> check_int_tuple("strides", (1, 2, 2), 3)
        (1, 2, 2)
        >>> check_int_tuple("kernel_size", (3, 0), 2)
        Traceback (most recent call last):
        ...
        ValueError: Argument `kernel_size` must be an integer >= 1 or a tuple of 2 integers >= 1. Received: kernel_size=(3, 0)
    """  # noqa: E501
    values: Any = (value,) * length if is_integer(value) else value
    try:
        values = tuple(values)
    except TypeError:
        values = None
    if (
        values is None
        or len(values) != length
        or not all(is_integer(v) and v >= minimum for v in values)
    ):
        raise argument_error(
            name,
            f"be an integer >= {minimum} or a tuple of {length} integers >= {minimum}",
            value,
        )
    return tuple(int(v) for v in values)
