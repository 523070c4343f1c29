"""mtlstm_hf.reproduce.statistics, the one statistics module of the reproductions, against scipy's
own functions and textbook formulas: the t interval (scipy.stats.t.interval), Welch's interval and
p-value (scipy.stats.ttest_ind(equal_var=False) and the Welch-Satterthwaite formula by hand), the
geometric interval (the t interval of the logs, exponentiated) and the interval of fractions (cut
at 0 and 1). Every module of the package uses these functions and the one ARMS."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mtlstm_hf.reproduce import statistics
from mtlstm_hf.reproduce.statistics import (
    geometric_interval,
    interval,
    mean_confidence_interval,
    proportion_interval,
    welch_difference,
)

SAMPLES = [[0.91, 0.93, 0.92, 0.95], [58.1, 60.3, 57.7], [-1.5, 2.0], list(np.linspace(-3.0, 7.0, 20) ** 2)]


def scipy_t_interval(values, confidence=0.95):
    values = np.asarray(values, dtype=float)
    mean = values.mean()
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, low, high


@pytest.mark.parametrize("values", SAMPLES)
@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_t_interval_is_scipys(values, confidence):
    assert mean_confidence_interval(values, confidence) == pytest.approx(
        scipy_t_interval(values, confidence), rel=1e-12
    )


def test_t_interval_edge_cases():
    assert mean_confidence_interval([0.5, 0.7, math.nan]) == pytest.approx(scipy_t_interval([0.5, 0.7]))
    mean, low, high = mean_confidence_interval([0.4])
    assert mean == 0.4 and math.isnan(low) and math.isnan(high)
    assert mean_confidence_interval([0.3, 0.3]) == (0.3, 0.3, 0.3)
    with pytest.raises(ValueError, match="values"):
        mean_confidence_interval([math.nan])
    with pytest.raises(ValueError, match="confidence"):
        mean_confidence_interval([1.0, 2.0], confidence=1.0)


def test_interval_records_missing_values_as_nan():
    result = interval([1.0, None, 3.0, math.nan])
    assert result["n"] == 2 and result["values"][:3] == [1.0, pytest.approx(math.nan, nan_ok=True), 3.0]
    assert [result["mean"], *result["ci95"]] == pytest.approx(scipy_t_interval([1.0, 3.0]))
    empty = interval([None, None])
    assert empty["n"] == 0 and math.isnan(empty["mean"]) and all(math.isnan(end) for end in empty["ci95"])


@pytest.mark.parametrize(
    "ours, theirs",
    [([0.95, 0.97, 0.96], [0.90, 0.93, 0.91, 0.92]), ([1.0, 2.0, 4.0, 8.0], [3.0, 3.5]), ([0.1, 0.15], [0.2, 0.4])],
)
def test_welch_difference_is_scipys_and_the_textbook_formula(ours, theirs):
    result = welch_difference(ours, theirs)
    a, b = np.asarray(ours), np.asarray(theirs)
    gap = a.mean() - b.mean()
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))  # Welch-Satterthwaite
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert result["mean"] == pytest.approx(gap)
    assert result["ci95"] == pytest.approx([gap - half, gap + half], rel=1e-9)
    assert result["p_value"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)


def test_welch_difference_edge_cases():
    flat = welch_difference([0.5, 0.5], [0.25, 0.25])
    assert flat["mean"] == flat["ci95"][0] == flat["ci95"][1] == 0.25 and math.isnan(flat["p_value"])
    with pytest.raises(ValueError, match="at least 2 seeds per arm"):
        welch_difference([0.5], [0.4, 0.6])


def test_geometric_interval_is_the_t_interval_of_the_logs():
    values = [57.0, 61.0, 59.5]
    result = geometric_interval(values)
    mean, low, high = scipy_t_interval(np.log(values))
    assert result["mean"] == pytest.approx(math.exp(mean)) and result["scale"] == "log"
    assert result["ci95"] == pytest.approx([math.exp(low), math.exp(high)])
    assert result["mean"] == pytest.approx(stats.gmean(values))
    skipped = geometric_interval([57.0, 0.0, -1.0, None, 61.0])  # not positive: missing
    assert skipped["n"] == 2 and skipped["mean"] == pytest.approx(math.sqrt(57.0 * 61.0))


def test_an_interval_of_fractions_stays_in_0_1():
    near_one = [1.0, 0.99, 1.0]
    plain = interval(near_one)
    assert plain["ci95"][1] > 1  # the t interval crosses 1 ...
    cut = proportion_interval(near_one)
    assert cut["ci95"] == [pytest.approx(plain["ci95"][0]), 1.0]  # ... an accuracy's does not
    assert proportion_interval([0.002, 0.0, 0.004])["ci95"][0] == 0.0
    assert all(math.isnan(end) for end in proportion_interval([0.5])["ci95"])


def test_one_statistics_module_and_one_arms():
    """The summaries, the claims and the Dyck-2 library use these functions (no copy elsewhere), and
    every module uses the same ARMS."""
    from mtlstm_hf import reproduce
    from mtlstm_hf.reproduce import claims, dyck, figures, lm, scales, summary

    for name in ("interval", "proportion_interval", "geometric_interval", "welch_difference"):
        assert getattr(summary, name) is getattr(statistics, name)
    assert claims.interval is statistics.interval
    assert dyck.mean_confidence_interval is statistics.mean_confidence_interval
    assert dyck.welch_difference is reproduce.welch_difference is statistics.welch_difference
    assert dyck.ARMS is lm.ARMS is summary.ARMS is figures.ARMS is scales.ARMS == ("baseline", "multi_timescale")
