"""Word-frequency bin edges and their labels (the paper's bins: >=10K, 1K-10K, 100-1K, <100).

Plain Python with no torch, so that command lines can show the defaults without importing
torch; the per-token math on these bins is in :mod:`.frequency`.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

#: Thresholds (ascending) separating the paper's four bins: <100, 100-1K, 1K-10K, >=10K.
DEFAULT_BIN_EDGES: tuple[int, ...] = (100, 1_000, 10_000)


def check_edges(edges: Sequence[int]) -> tuple[int, ...]:
    """Validate bin edges (positive, distinct integers, any order); return them sorted ascending.

    Raises:
        ValueError: not integers (floats and booleans refused), empty, not positive, or repeated.
    """
    try:
        if any(isinstance(e, bool) or str(getattr(e, "dtype", "")) in ("bool", "torch.bool") for e in edges):
            raise TypeError("a boolean is no count")  # operator.index(True) would be 1
        values = tuple(operator.index(e) for e in edges)  # rejects floats such as 100.5
    except TypeError as err:
        raise ValueError(f"edges must be a sequence of positive integers, got {edges!r}") from err
    if len(values) == 0:
        raise ValueError("edges must contain at least one threshold")
    if any(v <= 0 for v in values):
        raise ValueError(f"edges must be positive, got {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"edges must be distinct, got {values!r}")
    return tuple(sorted(values))


def _format_count(value: int) -> str:
    """10000 -> '10K', 1000 -> '1K', 2500 -> '2.5K', 100 -> '100', 10**6 -> '1M'."""
    for divisor, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "K")):
        if value >= divisor:
            scaled = value / divisor
            text = f"{scaled:.0f}" if scaled == int(scaled) else f"{scaled:g}"
            return text + suffix
    return str(value)


def bin_labels(edges: Sequence[int] = DEFAULT_BIN_EDGES) -> list[str]:
    """Readable labels, most frequent bin first.

    ``bin_labels((100, 1000, 10000)) == [">=10K", "1K-10K", "100-1K", "<100"]``.
    """
    asc = check_edges(edges)
    desc = asc[::-1]
    labels = [f">={_format_count(desc[0])}"]
    labels += [f"{_format_count(lo)}-{_format_count(hi)}" for hi, lo in zip(desc[:-1], desc[1:])]
    labels.append(f"<{_format_count(desc[-1])}")
    return labels
