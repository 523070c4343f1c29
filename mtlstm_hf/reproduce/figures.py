"""The figures of a reproduction, drawn from ``report.json`` alone with
:mod:`mtlstm_hf.analysis.figures` (its ``pyplot``, ``save_figure`` and routing heat map).

Without matplotlib nothing is drawn and :func:`draw_lm_figures` / :func:`draw_dyck_figures`
return the reason instead (the report says so); the numbers do not depend on the figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.figures import matplotlib_missing
from .scales import ARMS
from .summary import BINS


def _value(value: Any) -> float:
    return math.nan if value is None else float(value)


def perplexity_difference_figure(summary: Mapping[str, Any], counting: str, arm_label: str = "multi-timescale") -> Any:
    """Per bin (and overall): each seed's bootstrap difference ``arm_label`` minus baseline with
    its 95% interval, and the mean over seeds with its 95% t interval."""
    from ..analysis.figures import pyplot

    plt = pyplot("perplexity_difference_figure")
    bins = summary["perplexity"]["bins"][counting]
    labels = [*BINS, "overall"]
    figure, axes = plt.subplots(1, len(labels), figsize=(2.4 * len(labels), 3.6))
    overall = summary["perplexity"]["test_perplexity"]["difference"]
    for ax, label in zip(axes, labels):
        entries = bins[label]["bootstrap"]
        for position, entry in enumerate(entries):
            low, high = (_value(v) for v in entry["ci95"])
            centre = _value(entry["difference"])
            if math.isnan(centre):
                continue
            ax.errorbar([position], [centre], yerr=[[centre - low], [high - centre]], fmt="o", color="C0", capsize=3)
        stat = overall if label == "overall" else bins[label]["difference"]
        mean = _value(stat["mean"])
        if not math.isnan(mean):
            low, high = (_value(v) for v in stat["ci95"])
            x = len(entries) + 0.5
            if math.isnan(low):
                ax.plot([x], [mean], "s", color="C3")
            else:
                ax.errorbar([x], [mean], yerr=[[mean - low], [high - mean]], fmt="s", color="C3", capsize=3)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xticks([*range(len(entries)), len(entries) + 0.5], labels=[*(str(e["seed"]) for e in entries), "mean"])
        ax.set_title(label)
        ax.set_xlabel("seed")
    axes[0].set_ylabel(f"perplexity, {arm_label} minus baseline")
    figure.suptitle(
        "Test perplexity difference per frequency bin (blue: bootstrap 95% CI per seed; red: mean over seeds, 95% t CI)\n"
        f"word counts over: {counting.replace('_', '+')}",
        fontsize="small",
    )
    figure.tight_layout()
    return figure


def timescale_fit_figure(entry: Mapping[str, Any], seed: int) -> Any:
    """The baseline's estimated timescales pooled over its layers, sorted (longest first), with the
    quantiles of each fitted family at the same ranks."""
    from scipy import stats

    from ..analysis.figures import pyplot

    plt = pyplot("timescale_fit_figure")
    values = np.array([_value(v) for layer in entry["layers"] for v in layer["timescales"]], dtype=float)
    values = np.sort(values[np.isfinite(values) & (values > 0)])[::-1]
    figure, ax = plt.subplots(figsize=(6.0, 4.0))
    ranks = np.arange(values.size)
    ax.plot(ranks, values, color="C0", lw=2, label="estimated, pooled over layers")
    levels = (ranks + 0.5) / max(values.size, 1)
    fits = entry["pooled"]["fits"]
    shapes = {
        "inverse_gamma": lambda p: stats.invgamma(a=p["alpha"], scale=p["beta"]),
        "lognormal": lambda p: stats.lognorm(s=p["sigma"], scale=p["scale"]),
        "exponential": lambda p: stats.expon(scale=p["scale"]),
        "gamma": lambda p: stats.gamma(a=p["shape"], scale=p["scale"]),
    }
    if "error" not in fits:
        for position, (family, fit) in enumerate(fits.items()):
            distribution = shapes[family](fit["parameters"])
            ax.plot(
                ranks,
                distribution.isf(levels),
                linestyle=("--", ":", "-.", "-")[position % 4],
                color=f"C{position + 1}",
                label=f"{family.replace('_', ' ')} fit (KS {_value(fit['ks_statistic']):.3f}, AIC {_value(fit['aic']):.0f})",
            )
    ax.set_yscale("log")
    ax.set_xlabel("unit rank (longest timescale first)")
    ax.set_ylabel("timescale T (tokens)")
    ax.set_title(f"Baseline seed {seed}: estimated timescales and maximum-likelihood fits", fontsize="small")
    ax.legend(fontsize="x-small")
    return figure


def accuracy_by_span_figure(summary: Mapping[str, Any]) -> Any:
    """Dyck-2 test accuracy per longest-span bin, mean over seeds with its 95% t interval, per arm."""
    from ..analysis.figures import layer_style, pyplot

    plt = pyplot("accuracy_by_span_figure")
    edges = np.asarray(summary["span_edges"], dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2
    figure, ax = plt.subplots(figsize=(6.0, 4.0))
    for position, arm in enumerate(ARMS):
        stats = summary["arms"][arm]["span_accuracy"]
        means = np.array([_value(stat["mean"]) for stat in stats])
        lows = np.array([_value(stat["ci95"][0]) for stat in stats])
        highs = np.array([_value(stat["ci95"][1]) for stat in stats])
        style = layer_style(position)
        ax.plot(
            centres,
            means,
            label=f"{arm.replace('_', '-')} (n = {summary['arms'][arm]['accuracy']['n']} seeds)",
            **style,
        )
        band = ~np.isnan(lows)
        if band.any():
            ax.fill_between(centres[band], lows[band], highs[band], color=style["color"], alpha=0.2)
    ax.set_xlabel("longest bracket span (symbols), bin centre")
    ax.set_ylabel("test sequence accuracy")
    ax.set_title("Dyck-2: accuracy by longest span (mean over seeds, 95% t CI)", fontsize="small")
    ax.legend(fontsize="small")
    return figure


def _save(draw: Any, path: Path, drawn: list[str]) -> None:
    from ..analysis.figures import save_figure

    save_figure(draw(), path)
    drawn.append(path.name)


def draw_prior_sweep_figures(report: Mapping[str, Any], folder: str | Path) -> tuple[list[str], str | None]:
    """Per prior and way of counting the bins, its test perplexity minus the baseline's per bin
    (:func:`perplexity_difference_figure`); returns ``(file names, reason none were drawn or None)``."""
    missing = matplotlib_missing("mtlstm-reproduce figures")
    if missing is not None:
        return [], missing
    folder = Path(folder)
    drawn: list[str] = []
    for prior, entry in report.get("summary", {}).get("priors", {}).items():
        for counting in ("train", "train_valid_test"):
            _save(
                lambda e=entry, c=counting, p=prior: perplexity_difference_figure({"perplexity": e}, c, p),
                folder / f"perplexity_difference_{prior}_{counting}.png",
                drawn,
            )
    return drawn, None


def draw_lm_figures(report: Mapping[str, Any], folder: str | Path) -> tuple[list[str], str | None]:
    """Every language-model figure into ``folder``; returns ``(file names, reason none were drawn or None)``."""
    missing = matplotlib_missing("mtlstm-reproduce figures")
    if missing is not None:
        return [], missing
    from ..analysis.figures import plot_routing_heatmap

    folder = Path(folder)
    summary = report.get("summary", {})
    drawn: list[str] = []
    if "perplexity" in summary:
        for counting in ("train", "train_valid_test"):
            _save(
                lambda c=counting: perplexity_difference_figure(summary, c),
                folder / f"perplexity_difference_{counting}.png",
                drawn,
            )
    for seed, entry in sorted(report.get("per_seed", {}).items(), key=lambda item: int(item[0])):
        if "timescales" in entry:
            _save(
                lambda e=entry, s=seed: timescale_fit_figure(e["timescales"], int(s)),
                folder / f"timescale_fits_seed{seed}.png",
                drawn,
            )
        if "ablation" in entry:
            _save(
                lambda e=entry, s=seed: plot_routing_heatmap(
                    e["ablation"]["train_valid_test"],
                    title=f"Multi-timescale seed {s}: routing (counts train+valid+test)",
                ),
                folder / f"routing_seed{seed}.png",
                drawn,
            )
    return drawn, None


def draw_dyck_figures(report: Mapping[str, Any], folder: str | Path) -> tuple[list[str], str | None]:
    """The Dyck-2 accuracy-by-span figure into ``folder``; ``(file names, reason or None)``."""
    missing = matplotlib_missing("mtlstm-reproduce figures")
    if missing is not None:
        return [], missing
    drawn: list[str] = []
    if report.get("summary", {}).get("arms"):
        _save(lambda: accuracy_by_span_figure(report["summary"]), Path(folder) / "accuracy_by_span.png", drawn)
    return drawn, None


__all__ = [
    "accuracy_by_span_figure",
    "draw_dyck_figures",
    "draw_lm_figures",
    "perplexity_difference_figure",
    "timescale_fit_figure",
]
