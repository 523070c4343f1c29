"""The paper's claims, the values it reports, and the rules that turn our numbers into a verdict.

Verdicts: ``holds``, ``does not hold``, ``inconclusive at this scale``. The rules
(:data:`RULES`, printed in ``REPORT.md``):

- **direction** (one model better than the other, one bin more than another, a fit better than
  the alternatives): the 95% interval over seeds of the difference excludes 0 in the paper's
  direction: holds; excludes 0 the other way: does not hold; contains 0, or fewer than 2 seeds:
  inconclusive at this scale.
- **value** (a number the paper reports): only the ``paper`` scale on the standard corpus can
  reproduce it; at a reduced scale, or on another copy of the corpus, it is inconclusive at this
  scale (the table still shows our number). At the paper scale it holds when the paper's value
  lies in our 95% interval over seeds widened by :data:`VALUE_TOLERANCE` of the paper's value on
  each side (with one seed: within that tolerance of our value), and does not hold otherwise.

The reported values are Mahto et al.'s (ICLR 2021, arXiv 2009.12727: its tables, and the asserts
and logs of the reference code, github.com/HuthLab/multi-timescale-LSTM-LMs); the Dyck-2
accuracies could not be checked against the code and are marked unverified.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .statistics import interval

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive at this scale"

VALUE_TOLERANCE = 0.02
"""Relative tolerance of the value rule (2% of the paper's value)."""

RULES: dict[str, str] = {
    "direction": (
        "holds when the 95% t interval over seeds of the difference excludes 0 in the paper's direction; does not "
        "hold when it excludes 0 the other way; inconclusive at this scale when it contains 0 or there are fewer "
        "than 2 seeds"
    ),
    "value": (
        "only the paper scale on the standard corpus can reproduce a reported number: below it, inconclusive at "
        f"this scale; at it, holds when the paper's value lies in our 95% interval widened by {VALUE_TOLERANCE:.0%} "
        "of the paper's value (one seed: within that tolerance of our value), else does not hold"
    ),
}

PAPER_LM: dict[str, Any] = {
    "lm-ptb": {
        "test_perplexity": {"multi_timescale": 57.58, "baseline": 58.98},
        "bins": {">=10K": 6.79, "1K-10K": 26.68, "100-1K": 167.97, "<100": 1902.37},
    },
    "lm-wikitext2": {"test_perplexity": {"multi_timescale": 66.06}},
    "max_rare_ablation_ratio": 1.058,
}
"""Reported numbers (Mahto et al. 2021 and its reference code): PTB test perplexity (the reference's released training
log ends at 59.69 before its evaluation script) and the multi-timescale model's per-bin PTB
perplexities (counts over train + valid + test), WikiText-2 multi-timescale test perplexity, and
the largest perplexity ratio of rare words (< 100) when a long-timescale chunk is ablated."""


def _finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def direction_verdict(stat: Mapping[str, Any], expected: int) -> str:
    """Verdict of the direction rule for an :func:`~.summary.interval` of a difference; ``expected``
    is ``-1`` (the paper says it is negative) or ``+1``."""
    low, high = stat.get("ci95", [None, None])
    if stat.get("n", 0) < 2 or not (_finite(low) and _finite(high)):
        return INCONCLUSIVE
    if (expected < 0 and high < 0) or (expected > 0 and low > 0):
        return HOLDS
    if (expected < 0 and low > 0) or (expected > 0 and high < 0):
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def value_verdict(stat: Mapping[str, Any], paper: float, comparable: bool) -> str:
    """Verdict of the value rule for our :func:`~.summary.interval` against the paper's value."""
    if not comparable or stat.get("n", 0) < 1 or not _finite(stat.get("mean")):
        return INCONCLUSIVE
    slack = VALUE_TOLERANCE * abs(paper)
    low, high = stat["ci95"]
    if not (_finite(low) and _finite(high)):
        low = high = stat["mean"]
    return HOLDS if low - slack <= paper <= high + slack else DOES_NOT_HOLD


def show(stat: Mapping[str, Any] | None, digits: int = 2, percent: bool = False) -> str:
    """``mean [low, high] (n seeds)`` of an interval (``(n seeds, geometric)`` for one summarised on
    the log scale), ``-`` where a value is missing."""
    if stat is None or not _finite(stat.get("mean")):
        return "-"
    scale = 100.0 if percent else 1.0
    suffix = "%" if percent else ""

    def number(value: Any) -> str:
        return f"{scale * value:.{digits}f}{suffix}" if _finite(value) else "-"

    low, high = stat.get("ci95", [None, None])
    text = number(stat["mean"])
    if _finite(low) and _finite(high):
        text += f" [{number(low)}, {number(high)}]"
    geometric = ", geometric" if stat.get("scale") == "log" else ""
    return f"{text} ({stat.get('n', 0)} seed{'s' if stat.get('n', 0) != 1 else ''}{geometric})"


def _claim(identifier: str, claim: str, paper: str, ours: str, verdict: str, rule: str, **extra: Any) -> dict[str, Any]:
    return {"id": identifier, "claim": claim, "paper": paper, "ours": ours, "verdict": verdict, "rule": rule, **extra}


def _direction_claim(
    identifier: str, claim: str, paper: str, ours: str, stat: Mapping[str, Any], sign: int
) -> dict[str, Any]:
    """A claim judged by the direction rule: ``stat``'s interval against 0 in the paper's ``sign``."""
    return _claim(identifier, claim, paper, ours, direction_verdict(stat, sign), "direction")


def _value_claim(
    identifier: str, claim: str, paper: str, stat: Mapping[str, Any], ours: str, reported: float, comparable: bool
) -> dict[str, Any]:
    """A claim judged by the value rule: the ``reported`` number against ``stat`` (``ours``: its text)."""
    return _claim(identifier, claim, paper, ours, value_verdict(stat, reported, comparable), "value")


@dataclass(frozen=True)
class ClaimContext:
    """What a claim is judged against besides the numbers: the experiment, its scale, whether the
    corpus is the standard copy, and the values the paper reports (``PAPER_LM`` entry, or the Dyck
    accuracies)."""

    experiment: str
    scale: str
    standard_corpus: bool
    paper: Mapping[str, Any]

    @property
    def comparable(self) -> bool:
        """Whether a reported value can be reproduced: the paper scale on the standard corpus."""
        return self.scale == "paper" and self.standard_corpus


@dataclass(frozen=True)
class ClaimRow:
    """One row of a claims table: the summary ``section`` it reads (the row is left out until that
    stage has run; ``None``: the whole summary, always there) and ``decide``, which gives the
    claim(s) with our numbers and verdict (one per reported value for a value row)."""

    section: str | None
    decide: Callable[[ClaimContext, Mapping[str, Any]], list[dict[str, Any]]]


def _test_perplexity_lower(context: ClaimContext, perplexity: Mapping[str, Any]) -> list[dict[str, Any]]:
    test = perplexity["test_perplexity"]
    reported = context.paper.get("test_perplexity", {})
    paper_text = " vs ".join(
        f"{reported[arm]:.2f} ({arm.replace('_', '-')})" for arm in ("multi_timescale", "baseline") if arm in reported
    )
    return [
        _direction_claim(
            "test_perplexity_lower",
            "The multi-timescale model has a lower test perplexity than the baseline",
            paper_text or "lower (no baseline value reported)",
            f"multi-timescale minus baseline {show(test['difference'])}",
            test["difference"],
            -1,
        )
    ]


def _test_perplexity_values(context: ClaimContext, perplexity: Mapping[str, Any]) -> list[dict[str, Any]]:
    test = perplexity["test_perplexity"]
    return [
        _value_claim(
            f"test_perplexity_{arm}",
            f"{arm.replace('_', '-').capitalize()} test perplexity",
            f"{value:.2f}",
            test[arm],
            show(test[arm]),
            value,
            context.comparable,
        )
        for arm, value in context.paper.get("test_perplexity", {}).items()
    ]


def _bin_perplexity_values(context: ClaimContext, perplexity: Mapping[str, Any]) -> list[dict[str, Any]]:
    bins = perplexity["bins"]["train_valid_test"]
    return [
        _value_claim(
            f"bin_perplexity_{label}",
            f"Multi-timescale test perplexity of words in bin {label} (counts over train+valid+test)",
            f"{value:.2f}",
            bins[label]["multi_timescale"],
            show(bins[label]["multi_timescale"]),
            value,
            context.comparable,
        )
        for label, value in context.paper.get("bins", {}).items()
    ]


def _largest_gain_rare(context: ClaimContext, perplexity: Mapping[str, Any]) -> list[dict[str, Any]]:
    bins = perplexity["bins"]["train_valid_test"]
    gains = {label: bins[label]["relative_gain"] for label in (">=10K", "1K-10K", "100-1K", "<100")}
    rare, frequent = gains["<100"], gains[">=10K"]
    gap_values = [r - f if _finite(r) and _finite(f) else math.nan for r, f in zip(rare["values"], frequent["values"])]
    gap = interval(gap_values)
    verdict = direction_verdict(gap, +1)
    means = {label: stat["mean"] for label, stat in gains.items() if _finite(stat["mean"])}
    if verdict == HOLDS and (not means or max(means, key=lambda label: means[label]) != "<100"):
        verdict = INCONCLUSIVE  # rarer than frequent, but not the largest gain of all bins
    return [
        _claim(
            "largest_gain_rare",
            "The multi-timescale model's gain is largest for rare words (relative gain 1 - ppl_mts / ppl_baseline; "
            "bin < 100 minus bin >= 10K, counts over train+valid+test)",
            "largest in the rare bins",
            "; ".join(f"{label}: {show(stat, 1, percent=True)}" for label, stat in gains.items())
            + f"; <100 minus >=10K: {show(gap, 1, percent=True)}",
            verdict,
            "direction",
        )
    ]


def _baseline_timescales_inverse_gamma(context: ClaimContext, timescales: Mapping[str, Any]) -> list[dict[str, Any]]:
    delta = timescales["inverse_gamma_aic_minus_best_alternative"]
    families = timescales["families"]
    ks = ", ".join(f"{family} {show(stat['ks_statistic'], 3)}" for family, stat in families.items())
    return [
        _direction_claim(
            "baseline_timescales_inverse_gamma",
            "The baseline's estimated timescales (pooled over its layers) follow an inverse gamma better than a "
            "log-normal or an exponential (maximum likelihood; AIC of the inverse gamma minus the best alternative)",
            "inverse gamma fits better (ML shape about 2.2 on PTB, 1.6 on WikiText-2)",
            f"AIC difference {show(delta, 1)}; inverse gamma ML shape {show(timescales['inverse_gamma_alpha'])}; "
            f"KS statistic: {ks}; best family by seed: "
            + ", ".join(str(name) for name in timescales["best_family_by_aic"]),
            delta,
            -1,
        )
    ]


def _ablation_long_timescales_rare_words(context: ClaimContext, routing: Mapping[str, Any]) -> list[dict[str, Any]]:
    entry = routing["train_valid_test"]
    verdict = direction_verdict(entry["rare_minus_frequent_ratio"], +1)
    ordered = all(entry["rare_bin_hurt_most"]) and all(entry["frequent_bin_hurt_least"])
    if verdict == HOLDS and not ordered:
        verdict = INCONCLUSIVE  # rare words hurt more than frequent ones, but not most / least of all bins

    def every_seed(flags: Sequence[bool]) -> str:
        return str(all(flags)) if flags else "-"

    chunks = "; ".join(
        f"seed {seed}: " + (", ".join(f"T {low:.1f}-{high:.1f}" for low, high in found) or "none")
        for seed, found in zip(routing["seeds"], entry["long_timescale_ranges"])
    )
    return [
        _claim(
            "ablation_long_timescales_rare_words",
            "Ablating layer-2 units with long assigned timescales (T about 46-320) hurts rare words (< 100) most and "
            "frequent words (>= 10K) least (perplexity ratio ablated / intact; the chunks whose units' geometric-mean "
            "assigned timescale lies in 46-320, counts over train+valid+test)",
            f"rare-word ratio up to {PAPER_LM['max_rare_ablation_ratio']}",
            f"ratio(<100) minus ratio(>=10K): {show(entry['rare_minus_frequent_ratio'], 4)}; largest ratio(<100) of "
            f"any chunk: {show(entry['max_rare_ratio'], 4)}; in every chosen chunk of every seed <100 hurt most: "
            f"{every_seed(entry['rare_bin_hurt_most'])}, >=10K hurt least: {every_seed(entry['frequent_bin_hurt_least'])}; "
            f"chunks chosen: {chunks}",
            verdict,
            "direction",
        )
    ]


LM_CLAIMS: tuple[ClaimRow, ...] = (
    ClaimRow("perplexity", _test_perplexity_lower),
    ClaimRow("perplexity", _test_perplexity_values),
    ClaimRow("perplexity", _bin_perplexity_values),
    ClaimRow("perplexity", _largest_gain_rare),
    ClaimRow("timescales", _baseline_timescales_inverse_gamma),
    ClaimRow("routing", _ablation_long_timescales_rare_words),
)
"""The claims of a language-model experiment, in report order: one row per claim (a value row gives
one claim per number the paper reports)."""


def _dyck_accuracy_higher(context: ClaimContext, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    arms, difference = summary["arms"], summary["difference"]
    n = min(arms[arm]["accuracy"]["n"] for arm in arms) if arms else 0
    stat = {"mean": difference["mean"], "ci95": difference["ci95"], "n": n}
    return [
        _direction_claim(
            "dyck_accuracy_higher",
            "Dyck-2 sequence accuracy is higher with the multi-timescale model (Welch interval of the difference of means)",
            f"{100 * context.paper['multi_timescale']:.2f}% vs {100 * context.paper['baseline']:.2f}% over 20 seeds (unverified)",
            f"multi-timescale minus baseline {show(stat, 2, percent=True)}",
            stat,
            +1,
        )
    ]


def _dyck_accuracy_values(context: ClaimContext, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    arms = summary["arms"]
    return [
        _value_claim(
            f"dyck_accuracy_{arm}",
            f"Dyck-2 {arm.replace('_', '-')} sequence accuracy",
            f"{100 * context.paper[arm]:.2f}% (unverified)",
            arms[arm]["accuracy"],
            show(arms[arm]["accuracy"], 2, percent=True),
            context.paper[arm],
            context.scale == "paper",
        )
        for arm in ("multi_timescale", "baseline")
    ]


def _dyck_gain_grows_with_span(context: ClaimContext, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        _direction_claim(
            "dyck_gain_grows_with_span",
            "The multi-timescale model's advantage grows with the longest bracket span (slope of the per-span-bin "
            "accuracy difference, per symbol of span, seed by seed)",
            "increasingly higher at long spans",
            f"slope {show(summary['span_slope'], 3, percent=True)} per symbol",
            summary["span_slope"],
            +1,
        )
    ]


DYCK_CLAIMS: tuple[ClaimRow, ...] = (
    ClaimRow(None, _dyck_accuracy_higher),
    ClaimRow(None, _dyck_accuracy_values),
    ClaimRow(None, _dyck_gain_grows_with_span),
)
"""The Dyck-2 claims, in report order."""


def judge(rows: Sequence[ClaimRow], context: ClaimContext, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The claims of ``rows`` with our numbers and verdicts; a row whose section has not run yet is left out."""
    claims: list[dict[str, Any]] = []
    for row in rows:
        section = summary if row.section is None else summary.get(row.section)
        if section is not None:
            claims.extend(row.decide(context, section))
    return claims


def lm_claims(experiment: str, scale: str, summary: Mapping[str, Any], standard_corpus: bool) -> list[dict[str, Any]]:
    """The claims of a language-model experiment (:data:`LM_CLAIMS`) with our numbers and verdicts
    (claims whose stage has not run yet are left out)."""
    return judge(LM_CLAIMS, ClaimContext(experiment, scale, standard_corpus, PAPER_LM.get(experiment, {})), summary)


def dyck_claims(scale: str, summary: Mapping[str, Any], paper_accuracy: Mapping[str, float]) -> list[dict[str, Any]]:
    """The Dyck-2 claims (:data:`DYCK_CLAIMS`) with our numbers and verdicts (``paper_accuracy``: the
    reported accuracies)."""
    return judge(DYCK_CLAIMS, ClaimContext("dyck2", scale, True, paper_accuracy), summary)


def verdict_counts(claims: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many claims got each verdict."""
    counts = {HOLDS: 0, DOES_NOT_HOLD: 0, INCONCLUSIVE: 0}
    for claim in claims:
        counts[claim["verdict"]] += 1
    return counts


__all__ = [
    "DOES_NOT_HOLD",
    "DYCK_CLAIMS",
    "LM_CLAIMS",
    "ClaimContext",
    "ClaimRow",
    "judge",
    "HOLDS",
    "INCONCLUSIVE",
    "PAPER_LM",
    "RULES",
    "VALUE_TOLERANCE",
    "direction_verdict",
    "dyck_claims",
    "lm_claims",
    "show",
    "value_verdict",
    "verdict_counts",
]
