"""The statistics of ``mtlstm-reproduce``, one module for every experiment: numbers over seeds as a
mean and a 95% Student-t interval, on the log scale for positive quantities, cut at 0 and 1 for
fractions, and Welch's interval of a difference of two means.

- :func:`mean_confidence_interval`: ``(mean, low, high)``, the t interval with ``n - 1`` degrees
  of freedom (``scipy.stats.t.interval``), NaN values left out, no interval from one value;
- :func:`interval`: the same as a JSON-ready record (``values``, ``n``, ``mean``, ``ci95``), the
  form of every number over seeds in ``report.json``;
- :func:`proportion_interval`: :func:`interval` of accuracies and KS statistics, cut at 0 and 1;
- :func:`geometric_interval`: :func:`interval` of the logs, exponentiated (perplexities);
- :func:`welch_difference`: ``mean(ours) - mean(theirs)`` with Welch's interval and p-value
  (``scipy.stats.ttest_ind(equal_var=False)``), for arms that are separate models.

Imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
"""The level of every interval of a report."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(value: Any) -> float:
    """``value`` as a float, ``None`` (a missing value in ``report.json``) as NaN."""
    return math.nan if value is None else float(value)


def mean_confidence_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` and its Student-t interval
    (``scipy.stats.t.interval`` with ``n - 1`` degrees of freedom and the standard error
    ``std(ddof=1) / sqrt(n)``). NaN values are left out. With one value the interval is
    ``(nan, nan)``; with identical values it is ``(mean, mean)``.

    Raises:
        ValueError: no (non-NaN) values, or ``confidence`` outside ``(0, 1)``.
    """
    if not _is_number(confidence) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}.")
    array = np.asarray(values, dtype=np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        raise ValueError("values must hold at least one number (NaN values are left out).")
    mean = float(array.mean())
    if array.size == 1:
        return mean, math.nan, math.nan
    sem = float(array.std(ddof=1) / math.sqrt(array.size))
    if sem == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, array.size - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def interval(values: Sequence[Any]) -> dict[str, Any]:
    """``{"values": [...] (None for missing), "n", "mean", "ci95": [low, high]}``, the mean and the
    95% t interval of the non-missing values (NaN when there are none, no interval from one)."""
    numbers = [number(value) for value in values]
    finite = [value for value in numbers if not math.isnan(value)]
    if not finite:
        mean, low, high = math.nan, math.nan, math.nan
    else:
        mean, low, high = mean_confidence_interval(finite)
    return {"values": numbers, "n": len(finite), "mean": mean, "ci95": [low, high]}


def proportion_interval(values: Sequence[Any]) -> dict[str, Any]:
    """:func:`interval` of fractions in ``[0, 1]`` (accuracies, KS statistics), its ends cut at 0
    and 1: a t interval over a few seeds can cross them (3 seeds at 0.2%, 0.0%, 0.4% give
    ``[-0.3%, 0.7%]``), no fraction can."""
    result = interval(values)
    result["ci95"] = [value if math.isnan(value) else min(max(value, 0.0), 1.0) for value in result["ci95"]]
    return result


def geometric_interval(values: Sequence[Any]) -> dict[str, Any]:
    """:func:`interval` on the log scale, for positive quantities such as perplexities: the
    geometric mean and ``exp`` of the t interval of the logs (so the interval stays positive and
    is symmetric in ratio, not in difference); ``"scale": "log"`` marks it. Non-positive values
    count as missing."""
    numbers = [number(value) for value in values]
    logs = [math.log(value) if value > 0 else math.nan for value in numbers]
    result = interval(logs)  # math.exp keeps NaN (no value, no interval) as NaN
    return {
        "values": numbers,
        "n": result["n"],
        "mean": math.exp(result["mean"]),
        "ci95": [math.exp(end) for end in result["ci95"]],
        "scale": "log",
    }


def welch_difference(ours: Sequence[float], theirs: Sequence[float]) -> dict[str, Any]:
    """Difference of means ``mean(ours) - mean(theirs)`` with Welch's 95% interval and p-value
    (scipy ``ttest_ind(equal_var=False)``); with no spread in either arm the interval is the
    difference itself and the p-value NaN. Needs at least 2 values per arm.

    Raises:
        ValueError: fewer than 2 values in an arm.
    """
    if len(ours) < 2 or len(theirs) < 2:
        raise ValueError(f"Welch's interval needs at least 2 seeds per arm, got {len(ours)} and {len(theirs)}.")
    gap = float(np.mean(ours) - np.mean(theirs))
    if np.std(ours) == 0 and np.std(theirs) == 0:
        return {"mean": gap, "ci95": [gap, gap], "p_value": math.nan}
    test = stats.ttest_ind(ours, theirs, equal_var=False)
    low_high = test.confidence_interval(CONFIDENCE)
    return {"mean": gap, "ci95": [float(low_high.low), float(low_high.high)], "p_value": float(test.pvalue)}


__all__ = [
    "CONFIDENCE",
    "geometric_interval",
    "interval",
    "mean_confidence_interval",
    "number",
    "proportion_interval",
    "welch_difference",
]
