"""Numbers over seeds, read from the per-seed results in ``report.json`` (nothing is recomputed
from the models here): per-seed values, their mean and a 95% Student-t interval
(:mod:`.statistics`; ``n - 1`` degrees of freedom, NaN values left out, no interval from one
value). Perplexities of one arm are summarised on the log scale (:func:`.statistics.geometric_interval`:
geometric mean, interval always positive); differences, gains, AIC on its own scale; accuracies
and KS statistics with their intervals cut at 0 and 1 (:func:`.statistics.proportion_interval`).

Language models (:func:`lm_summary`): test perplexity per arm and the paired difference
(multi-timescale minus baseline, seed by seed: both arms of a seed share its data order), per
frequency bin for each way of counting, the relative gain ``1 - ppl_mts / ppl_baseline`` per bin,
each seed's bootstrap interval, the baseline's pooled timescale fits (AIC and KS per family, AIC of
the inverse gamma minus the best alternative), and the routing of the long-timescale chunks.

Dyck-2 (:func:`dyck_summary`): accuracy per arm overall and per span bin, Welch's interval of the
difference of means (arms are separate models), and the slope of the per-bin accuracy difference
against the span (seed by seed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .scales import ARMS
from .statistics import geometric_interval, interval, number, proportion_interval, welch_difference

BINS: tuple[str, ...] = (">=10K", "1K-10K", "100-1K", "<100")
"""The paper's frequency bins, most frequent first (``mtlstm_hf.evaluation.bin_labels()``)."""

LONG_TIMESCALE_RANGE: tuple[float, float] = (46.0, 320.0)
"""Assigned timescales (tokens) of the units whose ablation the paper finds hurts rare words most."""


def _seeds(report: Mapping[str, Any], *stages: str) -> list[str]:
    return sorted(
        (seed for seed, entry in report.get("per_seed", {}).items() if all(stage in entry for stage in stages)), key=int
    )


def _ratio_gain(baseline: float, ours: float) -> float:
    return 1.0 - ours / baseline if baseline and not math.isnan(baseline) and not math.isnan(ours) else math.nan


def _bootstrap(seeds: list[str], entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each seed's paired bootstrap of one bin: the observed difference, its interval and the
    p-value (``p_value_is_smallest``: no resample crossed zero, so the p-value is only a bound;
    :func:`mtlstm_hf.evaluation.paired_block_bootstrap`)."""
    return [
        {
            "seed": int(seed),
            "difference": number(entry["diff"]["observed"]),
            "ci95": [number(entry["diff"]["ci_low"]), number(entry["diff"]["ci_high"])],
            "p_value": number(entry["diff"]["p_value"]),
            "p_value_is_smallest": bool(entry["diff"].get("p_value_is_smallest", False)),
        }
        for seed, entry in zip(seeds, entries)
    ]


def _perplexity_summary(
    report: Mapping[str, Any], seeds: list[str], arm: str = "multi_timescale", prior: str | None = None
) -> dict[str, Any]:
    """Test perplexity of the baseline and ``arm`` (its key in the result) over ``seeds``, read from
    each seed's ``evaluation`` stage (the prior sweep's: its entry ``prior``)."""
    evaluations = [report["per_seed"][seed]["evaluation"] for seed in seeds]
    if prior is not None:
        evaluations = [item[prior] for item in evaluations]
    result: dict[str, Any] = {"seeds": [int(seed) for seed in seeds]}
    first = evaluations[0]["train"] if evaluations else None
    overall_a = [number(item["train"]["a"]["perplexity"]) for item in evaluations]
    overall_b = [number(item["train"]["b"]["perplexity"]) for item in evaluations]
    result["test_perplexity"] = {
        "baseline": geometric_interval(overall_a),
        arm: geometric_interval(overall_b),
        "difference": interval([b - a for a, b in zip(overall_a, overall_b)]),
        "n_tokens": first["a"]["n_tokens"] if first else None,
    }
    bins: dict[str, Any] = {}
    for counting in ("train", "train_valid_test"):
        per_bin: dict[str, Any] = {}
        for label in BINS:
            a = [number(item[counting]["a"]["bins"][label]["perplexity"]) for item in evaluations]
            b = [number(item[counting]["b"]["bins"][label]["perplexity"]) for item in evaluations]
            boot = [item[counting]["comparison"]["bins"][label] for item in evaluations]
            per_bin[label] = {
                "n_tokens": evaluations[0][counting]["a"]["bins"][label]["n_tokens"] if evaluations else None,
                "baseline": geometric_interval(a),
                arm: geometric_interval(b),
                "difference": interval([y - x for x, y in zip(a, b)]),
                "relative_gain": interval([_ratio_gain(x, y) for x, y in zip(a, b)]),
                "bootstrap": _bootstrap(seeds, boot),
            }
        per_bin["overall"] = {
            "bootstrap": _bootstrap(seeds, [item[counting]["comparison"]["overall"] for item in evaluations])
        }
        bins[counting] = per_bin
    result["bins"] = bins
    return result


def _pooled_fits(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    fits = entry["pooled"]["fits"]
    return None if "error" in fits else fits


def _timescale_summary(report: Mapping[str, Any], seeds: list[str]) -> dict[str, Any]:
    per_family: dict[str, dict[str, list[Any]]] = {}  # aic, ks_statistic: floats; parameters: the fits' dicts
    best: list[str | None] = []
    delta: list[float] = []
    fitted: list[int] = []
    for seed in seeds:
        fits = _pooled_fits(report["per_seed"][seed]["timescales"])
        if fits is None:
            best.append(None)
            delta.append(math.nan)
            continue
        fitted.append(int(seed))
        for family, fit in fits.items():
            values = per_family.setdefault(family, {"aic": [], "ks_statistic": [], "parameters": []})
            values["aic"].append(number(fit["aic"]))
            values["ks_statistic"].append(number(fit["ks_statistic"]))
            values["parameters"].append(fit["parameters"])
        aic = {family: number(fit["aic"]) for family, fit in fits.items() if not math.isnan(number(fit["aic"]))}
        # a family whose fit failed (NaN AIC) is left out
        best.append(min(aic, key=lambda name: aic[name]) if aic else None)
        others = [value for family, value in aic.items() if family != "inverse_gamma"]
        delta.append(aic["inverse_gamma"] - min(others) if others and "inverse_gamma" in aic else math.nan)
    return {
        "seeds": [int(seed) for seed in seeds],
        "fitted_seeds": fitted,
        "families": {
            family: {
                "aic": interval(values["aic"]),
                "ks_statistic": proportion_interval(values["ks_statistic"]),
                "parameters": values["parameters"],
            }
            for family, values in per_family.items()
        },
        "best_family_by_aic": best,
        "inverse_gamma_aic_minus_best_alternative": interval(delta),
        "inverse_gamma_alpha": geometric_interval(
            [fit.get("alpha") for fit in per_family.get("inverse_gamma", {}).get("parameters", [])]
        ),
    }


def long_timescale_chunks(routing: Mapping[str, Any], span: tuple[float, float] = LONG_TIMESCALE_RANGE) -> list[int]:
    """Positions of the routing report's chunks whose units' assigned timescales have a geometric
    mean inside ``span``: at the paper's sizes (1,150 units in chunks of 50) the two chunks of T
    96-321 and 46-94; in a smaller layer, the chunks mostly made of such units (400 units: the
    first chunk, T 50-55,000, 33 of its 50 units inside), not every chunk that merely touches it."""
    low, high = span
    chosen = []
    for position, chunk in enumerate(routing["chunks"]):
        centre = number(chunk.get("timescale_geometric_mean"))
        if not math.isnan(centre) and low <= centre <= high:
            chosen.append(position)
    return chosen


def _routing_summary(report: Mapping[str, Any], seeds: list[str]) -> dict[str, Any]:
    """Per way of counting: the long-timescale chunks of each seed (positions in the routing report,
    and the assigned-timescale range of each), the mean over them of
    ``ratio(<100) - ratio(>=10K)``, the largest ``ratio(<100)`` of any chunk, and whether in every
    chosen chunk ``<100`` is the bin hurt most and ``>=10K`` the bin hurt least."""
    result: dict[str, Any] = {"seeds": [int(seed) for seed in seeds]}
    for counting in ("train", "train_valid_test"):
        gaps, rare_max, chosen_chunks, ranges, rare_most, frequent_least = [], [], [], [], [], []
        for seed in seeds:
            routing = report["per_seed"][seed]["ablation"][counting]
            chosen = long_timescale_chunks(routing)
            chosen_chunks.append(chosen)
            ranges.append(
                [[routing["chunks"][p]["timescale_min"], routing["chunks"][p]["timescale_max"]] for p in chosen]
            )
            ratios = [routing["chunks"][position]["ratio"] for position in chosen]
            gap = [number(r["<100"]) - number(r[">=10K"]) for r in ratios]
            gap = [value for value in gap if not math.isnan(value)]
            gaps.append(float(np.mean(gap)) if gap else math.nan)
            rare = [number(chunk["ratio"]["<100"]) for chunk in routing["chunks"]]
            rare = [value for value in rare if not math.isnan(value)]
            rare_max.append(max(rare) if rare else math.nan)
            most, least = [], []
            for r in ratios:
                finite = {label: number(r[label]) for label in BINS if not math.isnan(number(r[label]))}
                most.append(bool(finite) and max(finite, key=lambda label: finite[label]) == "<100")
                least.append(bool(finite) and min(finite, key=lambda label: finite[label]) == ">=10K")
            rare_most.append(bool(most) and all(most))
            frequent_least.append(bool(least) and all(least))
        result[counting] = {
            "long_timescale_chunks": chosen_chunks,
            "long_timescale_ranges": ranges,
            "rare_minus_frequent_ratio": interval(gaps),
            "max_rare_ratio": interval(rare_max),
            "rare_bin_hurt_most": rare_most,
            "frequent_bin_hurt_least": frequent_least,
        }
    return result


def lm_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers over seeds of a language-model report (only seeds whose stages are all done)."""
    result: dict[str, Any] = {}
    seeds = _seeds(report, "evaluation")
    if seeds:
        result["perplexity"] = _perplexity_summary(report, seeds)
    seeds = _seeds(report, "timescales")
    if seeds:
        result["timescales"] = _timescale_summary(report, seeds)
    seeds = _seeds(report, "ablation")
    if seeds:
        result["routing"] = _routing_summary(report, seeds)
    result["training"] = _training_summary(report, ARMS)
    return result


def _training_summary(report: Mapping[str, Any], arms: Sequence[str]) -> dict[str, Any]:
    runs = report.get("runs", {})
    return {
        arm: {
            "best_validation_perplexity": geometric_interval(
                [run.get("best_val_perplexity") for run in runs.get(arm, {}).values()]
            ),
            "train_seconds": interval([run.get("train_seconds") for run in runs.get(arm, {}).values()]),
        }
        for arm in arms
    }


def prior_sweep_summary(report: Mapping[str, Any], priors: Sequence[str]) -> dict[str, Any]:
    """The numbers over seeds of the prior sweep: per prior, what :func:`lm_summary` gives the
    multi-timescale arm (test perplexity, per-bin differences, relative gains and each seed's
    bootstrap against the baseline of that seed), and ``best``: the prior with the lowest geometric
    mean test perplexity and whether its difference to the baseline has an interval below 0."""
    result: dict[str, Any] = {"priors": {}}
    seeds = _seeds(report, "evaluation")
    if seeds:
        for prior in priors:
            result["priors"][prior] = _perplexity_summary(report, seeds, arm=prior, prior=prior)
        means = {
            prior: entry["test_perplexity"][prior]["mean"]
            for prior, entry in result["priors"].items()
            if not math.isnan(entry["test_perplexity"][prior]["mean"])
        }
        if means:
            best = min(means, key=lambda prior: means[prior])
            difference = result["priors"][best]["test_perplexity"]["difference"]
            result["best"] = {
                "prior": best,
                "test_perplexity": means[best],
                "difference_to_baseline": difference,
                "interval_below_zero": bool(difference["ci95"][1] < 0),  # False for a NaN interval (one seed)
            }
    result["training"] = _training_summary(report, ["baseline", *priors])
    return result


def dyck_summary(runs: Sequence[Mapping[str, Any]], span_edges: Sequence[float]) -> dict[str, Any]:
    """Accuracy over seeds per arm, overall and per span bin, the Welch interval of the difference of
    means, and the per-seed slope of the span-bin accuracy difference (multi-timescale minus
    baseline, per symbol of span, least squares over the bins with test words in both arms)."""
    result: dict[str, Any] = {"span_edges": list(span_edges), "arms": {}}
    by_arm = {arm: sorted((run for run in runs if run["arm"] == arm), key=lambda run: run["seed"]) for arm in ARMS}
    for arm, arm_runs in by_arm.items():
        spans = np.array([[number(value) for value in run["span_accuracy"]] for run in arm_runs], dtype=float)
        result["arms"][arm] = {
            "seeds": [run["seed"] for run in arm_runs],
            "accuracy": proportion_interval([run["accuracy"] for run in arm_runs]),
            "span_accuracy": [proportion_interval(column.tolist()) for column in spans.T] if len(arm_runs) else [],
            "span_counts": arm_runs[0]["span_counts"] if arm_runs else [],
        }
    ours = [run["accuracy"] for run in by_arm["multi_timescale"]]
    theirs = [run["accuracy"] for run in by_arm["baseline"]]
    difference: dict[str, Any] = {
        "mean": math.nan,
        "ci95": [math.nan, math.nan],
        "p_value": math.nan,
        "test": "Welch t",
    }
    if len(ours) >= 2 and len(theirs) >= 2:
        difference.update(welch_difference(ours, theirs))
    result["difference"] = difference
    centres = (np.asarray(span_edges[:-1], dtype=float) + np.asarray(span_edges[1:], dtype=float)) / 2
    baseline = {run["seed"]: run for run in by_arm["baseline"]}
    slopes, seeds = [], []
    for run in by_arm["multi_timescale"]:
        other = baseline.get(run["seed"])
        if other is None:
            continue
        gap = np.array([number(a) - number(b) for a, b in zip(run["span_accuracy"], other["span_accuracy"])])
        usable = ~np.isnan(gap)
        seeds.append(run["seed"])
        slopes.append(float(np.polyfit(centres[usable], gap[usable], 1)[0]) if usable.sum() >= 2 else math.nan)
    result["span_slope"] = {"seeds": seeds, **interval(slopes)}
    return result


__all__ = [
    "ARMS",
    "BINS",
    "LONG_TIMESCALE_RANGE",
    "dyck_summary",
    "geometric_interval",
    "interval",
    "lm_summary",
    "long_timescale_chunks",
    "proportion_interval",
]
