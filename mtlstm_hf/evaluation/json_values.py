"""Results as strict JSON values (no torch import: command lines use it before loading a model)."""

from __future__ import annotations

import math
from typing import Any


def to_json_compatible(value: Any) -> Any:
    """Copy of a result that ``json.dumps(..., allow_nan=False)`` writes: NaN and infinite floats
    become ``None``, tuples lists, numpy/torch arrays lists and their scalars Python numbers;
    anything else is returned as it is (``json`` then says what it cannot write)."""
    if isinstance(value, dict):
        return {key: to_json_compatible(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_compatible(item) for item in value]
    if isinstance(value, (str, bytes, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # numpy / torch arrays and scalars
        return to_json_compatible(value.tolist())
    return value
