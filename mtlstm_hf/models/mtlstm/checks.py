"""Field checks: is a value a number, an integer, a positive integer, a positive finite number.

The one home of these checks for the whole library (the configuration, the settings of the
commands, the training configuration, the analyses). It imports only the standard library, so
that the configuration, a leaf that travels to the Hub, can use it too.

Two notions of a number, on purpose:

* :func:`is_number` / :func:`is_integer`: any real / integral number that is not a ``bool``
  (``numpy.float32(0.5)`` and ``numpy.int64(3)`` count), for values used in computation;
* :func:`is_plain_number` / :func:`is_plain_integer`: a Python ``int``/``float`` that is not a
  ``bool``, for fields written to JSON (``json`` cannot write ``numpy.int64``).

Every ``check_*`` raises ``ValueError("<field> must be ..., got <value!r>.")``, naming the field,
what is allowed and the value given, and returns the value converted (``int``/``float``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = [
    "is_number",
    "is_integer",
    "is_plain_number",
    "is_plain_integer",
    "check_positive_int",
    "check_int_at_least",
    "check_positive_finite",
]


def is_number(value: Any) -> bool:
    """A real number (Python or numpy), not a ``bool``. NaN and infinities count."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """An integral number (Python or numpy), not a ``bool``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_plain_number(value: Any) -> bool:
    """A Python ``int`` or ``float`` (subclasses included), not a ``bool``: what ``json`` writes."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_plain_integer(value: Any) -> bool:
    """A Python ``int``, not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int_at_least(value: Any, field: str, minimum: int, allowed: str = "", plain: bool = False) -> int:
    """``value`` as an ``int`` when it is an integer (not a bool) ``>= minimum``.

    Args:
        value: the value given.
        field: its name in the message (``"batch_size"``, ``"chunk_size (--chunk-size)"``).
        minimum: the smallest value allowed.
        allowed: words added after the rule, e.g. ``" or None"``.
        plain: only a Python ``int`` (a field written to JSON; ``numpy.int64`` refused).

    Raises:
        ValueError: ``"<field> must be a positive integer<allowed>, got <value!r>."`` (for
        ``minimum=1``; ``"an integer >= <minimum>"`` otherwise).
    """
    if not (is_plain_integer(value) if plain else is_integer(value)) or value < minimum:
        rule = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{field} must be {rule}{allowed}, got {value!r}.")
    return int(value)


def check_positive_int(value: Any, field: str, allowed: str = "", plain: bool = False) -> int:
    """``value`` as an ``int`` when it is a positive integer (not a bool); see :func:`check_int_at_least`."""
    return check_int_at_least(value, field, 1, allowed, plain)


def check_positive_finite(value: Any, field: str) -> float:
    """``value`` as a ``float`` when it is a finite number ``> 0`` (not a bool).

    Raises:
        ValueError: ``"<field> must be a positive finite number, got <value!r>."``
    """
    if not is_number(value) or not (math.isfinite(float(value)) and float(value) > 0.0):
        raise ValueError(f"{field} must be a positive finite number, got {value!r}.")
    return float(value)
