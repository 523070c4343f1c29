"""Figures of the timescale, ablation/routing and memory-span analyses.

Every function returns a matplotlib ``Figure`` (drawn into ``ax`` when one is given). matplotlib
is imported only inside the functions; without it they raise ``ImportError`` naming
``pip install mtlstm_hf[plot]``. The state-gradient and mutual-information figures live in
:mod:`.plots`, the weighted-sum heat map in :mod:`.weighted_sum`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from mtlstm_hf.models.mtlstm.timescales import inverse_gamma_isf, inverse_gamma_pdf

from .memory_span import MemorySpan, passage_log_weights
from .timescales import DistributionFit, LayerTimescales, TimescaleEstimate
from .weighted_sum import plot_weighted_sum_heatmap

__all__ = [
    "plot_memory_span",
    "plot_passage_weighted_sum",
    "plot_routing_heatmap",
    "plot_timescale_histograms",
    "plot_timescales",
    "pyplot",
    "save_figure",
]


def pyplot(function_name: str = "this plot") -> Any:
    """``matplotlib.pyplot``, or an ImportError telling how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(f"{function_name} needs matplotlib: pip install mtlstm_hf[plot]") from error
    return plt


def _figure_and_axes(ax: Any, function_name: str, figsize: tuple[float, float] = (6.0, 4.0)) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    return pyplot(function_name).subplots(figsize=figsize)


def save_figure(figure: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write ``figure`` to ``path`` (format from the suffix, e.g. PNG), close it, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    pyplot("save_figure").close(figure)
    return path


def _sorted_positive(values: torch.Tensor) -> torch.Tensor:
    """Descending finite positive values (what a log axis can show)."""
    values = values.double()
    return values[torch.isfinite(values) & (values > 0)].sort(descending=True).values


def plot_timescales(
    layer: LayerTimescales,
    fit: DistributionFit | None = None,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Sorted estimated timescales on a log axis, with inverse-gamma quantiles (the paper's figure).

    Units are ranked by timescale, longest first (x = rank). Curves: the estimates; the assigned
    timescales sorted the same way (when the layer has a schedule); and the quantiles of the
    fitted inverse gamma at the same ranks, ``isf((k + 1/2) / K; alpha, beta)`` (when ``fit`` is
    an inverse-gamma :class:`DistributionFit`). Zeros and infinities cannot be drawn and are
    counted in the legend.
    """
    figure, ax = _figure_and_axes(ax, "plot_timescales")
    estimated = _sorted_positive(layer.timescales)
    left_out = layer.timescales.numel() - estimated.numel()
    label = "estimated" + (f" ({left_out} units at 0/inf not shown)" if left_out else "")
    ax.plot(torch.arange(estimated.numel()).numpy(), estimated.numpy(), lw=2, label=label)
    if layer.assigned is not None:
        assigned = _sorted_positive(layer.assigned)
        ax.plot(torch.arange(assigned.numel()).numpy(), assigned.numpy(), "r--", lw=1.5, label="assigned")
    if fit is not None:
        if fit.family != "inverse_gamma":
            raise ValueError(f"fit must be an inverse_gamma fit, got {fit.family!r}.")
        count = estimated.numel()
        levels = (torch.arange(count, dtype=torch.float64) + 0.5) / count
        quantiles = inverse_gamma_isf(levels, fit.parameters["alpha"], fit.parameters["beta"])
        ax.plot(
            torch.arange(count).numpy(),
            quantiles.numpy(),
            "k:",
            lw=1.5,
            label=f"InvGamma fit (alpha={fit.parameters['alpha']:.3g}, beta={fit.parameters['beta']:.3g})",
        )
    ax.set_yscale("log")
    ax.set_xlabel("unit rank (longest timescale first)")
    ax.set_ylabel("timescale T (tokens)")
    ax.set_title(title if title is not None else f"Layer {layer.layer}: timescales T = -1 / ln mean(f)")
    ax.legend()
    return figure


def plot_timescale_histograms(
    estimate: TimescaleEstimate,
    fits: dict[int, DistributionFit] | None = None,
    bins: int = 40,
    title: str | None = None,
) -> Any:
    """One histogram of ``log10 T`` per analysed layer, with the fitted inverse-gamma density.

    Args:
        estimate: from :func:`~.timescales.estimate_timescales`.
        fits: ``{layer index: inverse-gamma fit}``; the density of ``log10 T`` drawn is
            ``p_T(10^x) 10^x ln 10`` scaled to counts.
        bins: histogram bins (at most; fewer for few units).
    """
    plt = pyplot("plot_timescale_histograms")
    count = len(estimate.layers)
    figure, axes = plt.subplots(1, count, figsize=(4.0 * count, 3.5), squeeze=False)
    for ax, layer in zip(axes[0], estimate.layers):
        values = _sorted_positive(layer.timescales)
        ax.set_title(f"layer {layer.layer} ({layer.cell_type})")
        ax.set_xlabel("log10 T (tokens)")
        if values.numel() == 0:
            ax.text(0.5, 0.5, "no finite timescale", ha="center", va="center", transform=ax.transAxes)
            continue
        logs = values.log10()
        # a few units spread over many bins would show only isolated bars
        num_bins = min(bins, max(5, values.numel() // 2))
        counts, edges, _ = ax.hist(logs.numpy(), bins=num_bins, alpha=0.7, label="estimated")
        fit = (fits or {}).get(layer.layer)
        if fit is not None and fit.family == "inverse_gamma":
            grid = torch.linspace(float(edges[0]), float(edges[-1]), 200, dtype=torch.float64)
            timescale = 10.0**grid
            # density of log10 T: p_T(t) |dt / dlog10 t| = p_T(t) t ln 10
            density = inverse_gamma_pdf(timescale, fit.parameters["alpha"], fit.parameters["beta"]) * timescale * math.log(10.0)
            width = float(edges[1] - edges[0])
            ax.plot(grid.numpy(), (density * values.numel() * width).numpy(), "k-", label="InvGamma fit")
        ax.legend()
    axes[0][0].set_ylabel("units")
    if title is not None:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def _chunk_label(chunk: dict[str, Any], position: int) -> str:
    if "timescale_min" in chunk:
        return f"{position + 1}: T {chunk['timescale_min']:.3g}-{chunk['timescale_max']:.3g}"
    return f"{position + 1}: {chunk['n_units']} units"


def plot_routing_heatmap(
    report: dict[str, Any], ax: Any = None, title: str | None = None, annotate: bool = True
) -> Any:
    """Heat map of a routing report: rows = ablated chunks, columns = bins (+ overall), colour =
    ``ppl(ablated) / ppl(intact)`` centred on 1 (red: ablation hurts, blue: helps).

    Args:
        report: from :func:`~.ablation.routing_report` (or its JSON form: NaN may be None).
    """
    plt = pyplot("plot_routing_heatmap")
    from matplotlib.colors import TwoSlopeNorm

    matrix = torch.tensor(
        [[math.nan if value is None else float(value) for value in row] for row in report["ratio_matrix"]],
        dtype=torch.float64,
    )
    rows, columns = matrix.shape
    figure, ax = _figure_and_axes(ax, "plot_routing_heatmap", figsize=(1.2 * columns + 3.0, 0.35 * rows + 1.8))
    finite = matrix[torch.isfinite(matrix)]
    spread = float((finite - 1.0).abs().max()) if finite.numel() else 0.0
    spread = max(spread, 1e-6)  # TwoSlopeNorm needs vmin < 1 < vmax
    norm = TwoSlopeNorm(vcenter=1.0, vmin=1.0 - spread, vmax=1.0 + spread)
    image = ax.imshow(matrix.numpy(), cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(columns), labels=report["columns"])
    row_labels = [_chunk_label(chunk, position) for position, chunk in enumerate(report["chunks"])]
    ax.set_yticks(range(rows), labels=row_labels)
    ax.set_xlabel("target word bin")
    ax.set_ylabel(f"ablated chunk of layer {report['layer']} (order: {report['order']})")
    if annotate and rows * columns <= 400:
        for row in range(rows):
            for column in range(columns):
                value = float(matrix[row, column])
                if math.isfinite(value):
                    # white text on the saturated cells, where black would vanish
                    color = "white" if abs(value - 1.0) > 0.6 * spread else "black"
                    ax.text(column, row, f"{value:.3f}", ha="center", va="center", fontsize=7, color=color)
    figure.colorbar(image, ax=ax, label="perplexity ratio ablated / intact")
    ax.set_title(title if title is not None else "Routing: perplexity ratio per bin")
    return figure


def plot_memory_span(span: MemorySpan, ax: Any = None, log_distance: bool = False, title: str | None = None) -> Any:
    """Mean weighted-sum mass ``m(d)`` vs distance ``d``, one line per layer (log y axis)."""
    figure, ax = _figure_and_axes(ax, "plot_memory_span")
    first = 1 if log_distance else 0  # d = 0 has no place on a log axis
    distances = span.distances[first:].numpy()
    for position, layer in enumerate(span.layers):
        profile = span.mean_norm[position, first:]
        positive = profile > 0
        ax.plot(distances[positive.numpy()], profile[positive].numpy(), marker=".", label=f"layer {layer}")
    if log_distance:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("distance t - j (tokens)")
    ax.set_ylabel(r"mean $\|w_j^t\|_2$")
    ax.set_title(title if title is not None else "Memory span: weighted-sum mass vs distance")
    ax.legend()
    return figure


def plot_passage_weighted_sum(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    layer: int,
    tokens: list[str] | None = None,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Heat map of ``||w_j^t||_2`` over one passage of one layer (Levy et al. 2018, Fig. 2 style).

    Args:
        input_ids: ``(T,)`` token ids of a short passage (starts from the zero state).
        tokens: the ``T`` words for the tick labels (default the ids).
    """
    log_weights = passage_log_weights(model, input_ids, layer)
    labels = tokens if tokens is not None else [str(int(token)) for token in torch.as_tensor(input_ids).reshape(-1)]
    figure, _ = plot_weighted_sum_heatmap(
        log_weights, labels, ax, title=title if title is not None else f"Layer {layer}: weighted-sum weights"
    )
    return figure
