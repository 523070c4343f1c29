"""``REPORT.md``: one table per claim (the paper's value, ours with its 95% interval over seeds,
the verdict and its rule), then what the scale reduced, the per-seed numbers and the figures.
Written from ``report.json`` alone."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .claims import RULES, show, verdict_counts


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _signed(value: Any, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:+.{digits}f}"


def _bootstrap_cell(entry: Mapping[str, Any]) -> str:
    from ..evaluation import format_p_value

    low, high = entry["ci95"]
    p_text = format_p_value(entry)
    p_text = p_text if p_text.startswith("<=") else "=" + p_text
    return f"seed {entry['seed']}: {_signed(entry['difference'])} [{_signed(low)}, {_signed(high)}], p{p_text}"


def _span_label(edges: list[float], index: int) -> str:
    """The whole spans of bin ``index`` (``edges[i] <= s < edges[i + 1]``, the last bin closed:
    :func:`mtlstm_hf.reproduce.dyck.span_bin_index`), e.g. ``7-10``."""
    first = math.ceil(edges[index])
    last = math.floor(edges[-1]) if index == len(edges) - 2 else math.ceil(edges[index + 1]) - 1
    if last < first:
        return f"none ({edges[index]:.2f}-{edges[index + 1]:.2f})"
    return f"{first}-{last}" if last > first else str(first)


def _claims_section(report: Mapping[str, Any]) -> list[str]:
    lines = ["## Claims", ""]
    claims = report.get("claims", [])
    if not claims:
        return [*lines, "No claim can be checked yet (no seed has finished its analyses).", ""]
    counts = verdict_counts(claims)
    lines += [", ".join(f"{count} {verdict}" for verdict, count in counts.items()) + ".", ""]
    for claim in claims:
        lines += [
            f"### {claim['claim']}",
            "",
            "| paper | ours (mean [95% CI]) | verdict |",
            "| --- | --- | --- |",
            f"| {_cell(claim['paper'])} | {_cell(claim['ours'])} | **{claim['verdict']}** |",
            "",
            f"Rule ({claim['rule']}): {RULES[claim['rule']]}.",
            "",
        ]
    return lines


def prior_sweep_tables(report: Mapping[str, Any]) -> list[str]:
    """The prior sweep: per prior, test perplexity, its difference to the baseline (seed by seed,
    paired) and the relative gain per frequency bin, for each way of counting the bins."""
    summary = report.get("summary", {})
    priors = summary.get("priors", {})
    if not priors:
        return ["## Test perplexity per prior", "", "No seed has finished its evaluation yet.", ""]
    first = next(iter(priors.values()))
    lines = [
        "## Test perplexity per prior (batch 1, state carried over the whole split)",
        "",
        "Each prior on the paper's layer 2, its parameters bounded by the timescales of the inverse-gamma layer "
        "(the table below). Perplexity over seeds: "
        "geometric mean, 95% t interval of the logs; difference and gains: mean, 95% t interval, each prior paired with "
        "the baseline of its seed. Bootstrap: each seed's paired block bootstrap of the test stream, two-sided p.",
        "",
        f"Baseline: {show(first['test_perplexity']['baseline'])}.",
        "",
        "| prior | test perplexity | prior minus baseline | bootstrap per seed (all tokens, counts over train) |",
        "| --- | --- | --- | --- |",
    ]
    for prior, entry in priors.items():
        test = entry["test_perplexity"]
        boot = "; ".join(_bootstrap_cell(b) for b in entry["bins"]["train"]["overall"]["bootstrap"])
        lines.append(f"| {prior} | {show(test[prior])} | {show(test['difference'])} | {_cell(boot)} |")
    lines.append("")
    schedules = summary.get("schedules")
    if schedules:
        lines += [
            "### Each prior's layer 2",
            "",
            "The schedule's parameters bound its timescales by the inverse-gamma layer's smallest and largest; "
            "where its units fall in that range is the prior's own (tokens):",
            "",
            "| prior | schedule | min | median | max |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for prior, entry in schedules.items():
            spec = ", ".join(
                f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                for key, value in entry["schedule"].items()
                if key != "type"
            )
            lines.append(
                f"| {prior} | {_cell(spec)} | {entry['min']:.3g} | {entry['median']:.3g} | {entry['max']:.3g} |"
            )
        lines.append("")
    best = summary.get("best")
    if best is not None:
        verdict = "its interval is below 0" if best["interval_below_zero"] else "its interval does not exclude 0"
        lines += [
            f"Lowest test perplexity: **{best['prior']}** ({best['test_perplexity']:.2f}); against the baseline "
            f"{show(best['difference_to_baseline'])}: {verdict}.",
            "",
        ]
    for counting in first["bins"]:
        labels = [label for label in first["bins"][counting] if label != "overall"]
        lines += [
            f"### Relative gain per frequency bin (1 - prior / baseline), word counts over {counting.replace('_', ' + ')}",
            "",
            "| prior | " + " | ".join(labels) + " |",
            "| --- |" + " --- |" * len(labels),
        ]
        for prior, entry in priors.items():
            cells = [show(entry["bins"][counting][label]["relative_gain"], 1, percent=True) for label in labels]
            lines.append(f"| {prior} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def lm_tables(report: Mapping[str, Any]) -> list[str]:
    summary = report.get("summary", {})
    lines: list[str] = []
    perplexity = summary.get("perplexity")
    if perplexity is not None:
        test = perplexity["test_perplexity"]
        lines += [
            "## Test perplexity (batch 1, state carried over the whole split)",
            "",
            "An arm's perplexity over seeds: geometric mean, 95% t interval of the log perplexities; differences and "
            "gains: mean, 95% t interval. Bootstrap: paired block bootstrap of each seed's test stream "
            "(`mtlstm_hf.evaluation.paired_block_bootstrap`), two-sided p-value; `p<=`: no resample crossed zero, so the "
            "p-value is the smallest its number of resamples R can give, 2 / (R + 1), and only a bound.",
            "",
            "| | baseline | multi-timescale | multi-timescale minus baseline |",
            "| --- | --- | --- | --- |",
            f"| mean [95% CI] | {show(test['baseline'])} | {show(test['multi_timescale'])} | {show(test['difference'])} |",
        ]
        for position, seed in enumerate(perplexity["seeds"]):
            a, b = test["baseline"]["values"][position], test["multi_timescale"]["values"][position]
            difference = None if a is None or b is None else b - a
            lines.append(
                f"| seed {seed} | {_signed(a).lstrip('+')} | {_signed(b).lstrip('+')} | {_signed(difference)} |"
            )
        lines.append("")
        for counting, bins in perplexity["bins"].items():
            lines += [
                f"### Per frequency bin, word counts over {counting.replace('_', ' + ')}",
                "",
                "| bin | test tokens | baseline | multi-timescale | multi-timescale minus baseline | relative gain | "
                "bootstrap per seed: multi-timescale minus baseline [95% CI], p |",
                "| --- | ---: | --- | --- | --- | --- | --- |",
            ]
            for label, entry in bins.items():
                boot = "; ".join(_bootstrap_cell(b) for b in entry["bootstrap"])
                if label == "overall":  # the same numbers as the table above, with each seed's bootstrap
                    entry = {**test, "relative_gain": None}
                lines.append(
                    f"| {'all' if label == 'overall' else label} | {entry['n_tokens']} | {show(entry['baseline'])} | "
                    f"{show(entry['multi_timescale'])} | {show(entry['difference'])} | "
                    f"{show(entry['relative_gain'], 1, percent=True)} | {_cell(boot)} |"
                )
            lines.append("")
    timescales = summary.get("timescales")
    if timescales is not None:
        lines += [
            "## Baseline timescales: maximum-likelihood fits (pooled over layers, test split)",
            "",
            "| family | AIC | KS statistic | parameters per seed |",
            "| --- | --- | --- | --- |",
        ]
        for family, entry in timescales["families"].items():
            parameters = "; ".join(
                ", ".join(f"{name} {value:.3g}" for name, value in fit.items()) for fit in entry["parameters"]
            )
            lines.append(
                f"| {family} | {show(entry['aic'], 1)} | {show(entry['ks_statistic'], 3)} | {_cell(parameters)} |"
            )
        lines.append("")
    return lines


def dyck_tables(report: Mapping[str, Any]) -> list[str]:
    summary = report.get("summary", {})
    if not summary.get("arms"):
        return []
    edges = summary["span_edges"]
    lines = [
        "## Dyck-2 test sequence accuracy",
        "",
        "Mean over seeds and 95% t interval, cut at 0% and 100%.",
        "",
        "| span bin | test words | baseline | multi-timescale |",
        "| --- | ---: | --- | --- |",
        f"| all | {sum(summary['arms']['baseline']['span_counts'] or [0])} | "
        f"{show(summary['arms']['baseline']['accuracy'], 2, True)} | {show(summary['arms']['multi_timescale']['accuracy'], 2, True)} |",
    ]
    for index in range(len(edges) - 1):
        cells = [
            show(summary["arms"][arm]["span_accuracy"][index], 1, True)
            if summary["arms"][arm]["span_accuracy"]
            else "-"
            for arm in ("baseline", "multi_timescale")
        ]
        count = summary["arms"]["baseline"]["span_counts"][index] if summary["arms"]["baseline"]["span_counts"] else "-"
        lines.append(f"| {_span_label(edges, index)} | {count} | {cells[0]} | {cells[1]} |")
    lines.append("")
    return lines


def render_report(report: Mapping[str, Any], tables: Sequence[str], states_claims: bool = True) -> str:
    """The Markdown text of ``REPORT.md`` for a report, with its experiment's ``tables``
    (:meth:`.experiments.Experiment.tables`: :func:`lm_tables`, :func:`dyck_tables` or
    :func:`prior_sweep_tables`); ``states_claims=False`` (the prior sweep): no claims section."""
    scale = report.get("scale_settings", {})
    lines = [
        f"# Reproduction: {report['experiment']} at scale {report['scale']}",
        "",
        f"Command: `{report.get('command', '')}`",
        "",
        f"Seeds: {', '.join(str(seed) for seed in report.get('seeds', []))}. Recipe: {report.get('recipe', '-')}. "
        f"Data: {report.get('data_description', '-')}.",
        "",
        f"Scale: {scale.get('sizing', '')}.",
        "",
    ]
    reductions = scale.get("reductions", [])
    if reductions:
        lines += ["Reductions relative to the paper:", "", *(f"- {item}" for item in reductions), ""]
    else:
        lines += ["No reduction relative to the paper's sizes and budget.", ""]
    if states_claims:
        lines += _claims_section(report)
    lines += tables
    lines += ["## Figures", ""]
    figures = report.get("figures", [])
    if report.get("figures_skipped"):
        lines.append(f"Not drawn: {report['figures_skipped']}.")
    elif figures:
        lines += [f"![{name}](figures/{name})" for name in figures]
    else:
        lines.append("None yet.")
    lines.append("")
    return "\n".join(lines)


__all__ = ["dyck_tables", "lm_tables", "prior_sweep_tables", "render_report"]
