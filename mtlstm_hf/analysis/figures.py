"""Every figure of the analyses (one module; matplotlib is imported only inside the functions).

Each function returns a matplotlib ``Figure`` (drawn into ``ax`` when it takes one and one is
given). Without matplotlib they raise ``ImportError`` naming ``pip install matplotlib``, a dependency of mtlstm_hf.

Conventions shared by all figures:

* Layers are labelled by their *number*, counted from 1 as in the paper ("layer 2"); the Python
  objects passed in carry 0-based indices (``LayerTimescales.layer_index``, ``MemorySpan.layers``,
  ``StateGradientResult.layer_index``), report entries (``routing_report``) carry the number.
* A word-frequency bin (or class) without tokens is not drawn: it has no value, and the figure
  says which were left out.
* A fitted inverse gamma is drawn only where it means something (see
  :func:`~.timescales.inverse_gamma_fit_note`); otherwise the legend says why there is none.
* Curves of different layers differ in colour, line style and marker (:func:`layer_style`), so
  they stay apart in grey scale too.
* Legends and axis labels are words ("inverse-gamma fit, shape 0.56, scale 1").
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mtlstm_hf.analysis.gates import weighted_sum_norms
from mtlstm_hf.models.mtlstm.layouts import layer_number
from mtlstm_hf.models.mtlstm.timescales import inverse_gamma_isf

from .memory_span import MemorySpan, passage_log_weights
from .mutual_information import DecayComparison, MutualInformationResult, PowerLawFit
from .power_law import inverse_gamma_pdf
from .state_gradient_result import StateGradientResult
from .timescales import DistributionFit, LayerTimescales, TimescaleEstimate, inverse_gamma_fit_note

__all__ = [
    "layer_style",
    "plot_memory_span",
    "plot_mutual_information",
    "plot_passage_weighted_sum",
    "plot_routing_heatmap",
    "plot_state_gradient_layers",
    "plot_state_gradient_memory",
    "plot_timescale_histograms",
    "plot_timescales",
    "plot_weighted_sum_heatmap",
    "pyplot",
    "save_figure",
]

_COLORS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9")
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def layer_style(position: int) -> dict[str, Any]:
    """Colour, line style and marker of the ``position``-th curve (all three differ between neighbours)."""
    return {
        "color": _COLORS[position % len(_COLORS)],
        "linestyle": _LINESTYLES[position % len(_LINESTYLES)],
        "marker": _MARKERS[position % len(_MARKERS)],
    }


def pyplot(function_name: str = "this plot") -> Any:
    """``matplotlib.pyplot``, or an ImportError telling how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{function_name} needs matplotlib: pip install matplotlib (a dependency of mtlstm_hf)"
        ) from error
    return plt


def matplotlib_missing(purpose: str = "figures") -> str | None:
    """Why ``purpose`` cannot be drawn (matplotlib is not installed, with how to install it), or
    None when it can: for callers that skip figures instead of failing."""
    try:
        pyplot(purpose)
    except ImportError as error:
        return str(error)
    return None


def _figure_and_axes(ax: Any, function_name: str, figsize: tuple[float, float] = (6.0, 4.0)) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    return pyplot(function_name).subplots(figsize=figsize)


def save_figure(figure: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write ``figure`` to ``path`` (format from the suffix, e.g. PNG) atomically, close it, return the path.

    The image is written to a temporary file next to ``path`` and renamed over it, so an
    interrupted run never leaves a half-written figure.
    """
    from mtlstm_hf.files import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    finally:
        pyplot("save_figure").close(figure)
    return path


def _layer_label(index: int | None) -> str:
    return "custom stack" if index is None else f"layer {layer_number(index)}"


# ---------------------------------------------------------------------------
# Timescales
# ---------------------------------------------------------------------------


def _sorted_positive(values: torch.Tensor) -> torch.Tensor:
    """Descending finite positive values (what a log axis can show)."""
    values = values.double()
    return values[torch.isfinite(values) & (values > 0)].sort(descending=True).values


def _fit_label(fit: DistributionFit) -> str:
    return f"inverse-gamma fit, shape alpha {fit.parameters['alpha']:.3g}, scale beta {fit.parameters['beta']:.3g}"


def _usable_fit(layer: LayerTimescales, fit: DistributionFit | None) -> tuple[DistributionFit | None, str | None]:
    """The fit to draw and, when there is none, why (for the legend)."""
    if fit is not None and fit.family != "inverse_gamma":
        raise ValueError(f"fit must be an inverse_gamma fit, got {fit.family!r}.")
    note = inverse_gamma_fit_note(layer.timescales, layer.schedule)
    if note is not None:
        return None, note
    return fit, None


def plot_timescales(
    layer: LayerTimescales,
    fit: DistributionFit | None = None,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Sorted estimated timescales on a log axis, with the assigned ones and inverse-gamma quantiles.

    Units are ranked by timescale, longest first (x = rank, 0-based). Curves: the estimates; the
    assigned timescales sorted the same way (when the layer has a schedule); and the quantiles of
    the fitted inverse gamma at the same ranks, ``isf((k + 1/2) / K; alpha, scale=beta)`` (when
    ``fit`` is given and a fit means something for the layer, see
    :func:`~.timescales.inverse_gamma_fit_note`; otherwise the legend gives the reason). Zeros and
    infinities cannot be drawn and are counted in the legend.

    Args:
        layer: one layer of :func:`~.timescales.estimate_timescales`.
        fit: an inverse-gamma :class:`~.timescales.DistributionFit` of the layer's timescales.

    Raises:
        ValueError: ``fit`` of another family.
    """
    fit, note = _usable_fit(layer, fit)
    figure, ax = _figure_and_axes(ax, "plot_timescales")
    estimated = _sorted_positive(layer.timescales)
    left_out = layer.timescales.numel() - estimated.numel()
    label = "estimated, T = -1 / ln(mean forget gate)"
    if left_out:
        label += f" ({left_out} units at 0 or infinity not shown)"
    ax.plot(torch.arange(estimated.numel()).numpy(), estimated.numpy(), color="C0", lw=2, label=label)
    if layer.assigned is not None:
        assigned = _sorted_positive(layer.assigned)
        ax.plot(
            torch.arange(assigned.numel()).numpy(),
            assigned.numpy(),
            color="C3",
            linestyle="--",
            lw=1.5,
            label="assigned by the schedule",
        )
    if fit is not None:
        count = estimated.numel()
        levels = (torch.arange(count, dtype=torch.float64) + 0.5) / count
        quantiles = inverse_gamma_isf(levels, fit.parameters["alpha"], fit.parameters["beta"])
        ax.plot(torch.arange(count).numpy(), quantiles.numpy(), color="k", linestyle=":", lw=1.5, label=_fit_label(fit))
    elif note is not None:
        ax.plot([], [], " ", label=textwrap.fill(f"no inverse-gamma fit: {note}", 60))
    ax.set_yscale("log")
    ax.set_xlabel("unit rank (longest timescale first)")
    ax.set_ylabel("timescale T (tokens)")
    ax.set_title(
        title if title is not None else f"{_layer_label(layer.layer_index).capitalize()}: timescales of its units"
    )
    ax.legend(fontsize="small")
    return figure


def plot_timescale_histograms(
    estimate: TimescaleEstimate,
    fits: Mapping[int, DistributionFit] | None = None,
    bins: int = 40,
    title: str | None = None,
) -> Any:
    """One histogram of ``log10 T`` per analysed layer, with the fitted inverse-gamma density.

    Args:
        estimate: from :func:`~.timescales.estimate_timescales`.
        fits: ``{0-based layer index: inverse-gamma fit}``; the density of ``log10 T`` drawn is
            ``p_T(10^x) 10^x ln 10`` scaled to counts (bin width times the number of units), only
            for layers where a fit means something (:func:`~.timescales.inverse_gamma_fit_note`).
        bins: histogram bins (at most; fewer for few units).
    """
    plt = pyplot("plot_timescale_histograms")
    count = len(estimate.layers)
    figure, axes = plt.subplots(1, count, figsize=(4.5 * count, 4.0), squeeze=False)
    for ax, layer in zip(axes[0], estimate.layers):
        values = _sorted_positive(layer.timescales)
        ax.set_title(f"{_layer_label(layer.layer_index)} ({layer.cell_type})")
        ax.set_xlabel("log10 of the timescale T (tokens)")
        if values.numel() == 0:
            ax.text(0.5, 0.5, "no finite timescale", ha="center", va="center", transform=ax.transAxes)
            continue
        logs = values.log10()
        # a few units spread over many bins would show only isolated bars
        num_bins = min(bins, max(5, values.numel() // 2))
        counts, edges, _ = ax.hist(logs.numpy(), bins=num_bins, color="C0", alpha=0.7, label="units (estimated T)")
        fit, note = _usable_fit(layer, (fits or {}).get(layer.layer_index))
        if fit is not None:
            grid = torch.linspace(float(edges[0]), float(edges[-1]), 200, dtype=torch.float64)
            timescale = 10.0**grid
            # density of log10 T: p_T(t) |dt / dlog10 t| = p_T(t) t ln 10
            density = (
                inverse_gamma_pdf(timescale, fit.parameters["alpha"], fit.parameters["beta"])
                * timescale
                * math.log(10.0)
            )
            width = float(edges[1] - edges[0])
            ax.plot(
                grid.numpy(), (density * values.numel() * width).numpy(), "k-", label=textwrap.fill(_fit_label(fit), 34)
            )
        elif note is not None:
            ax.plot([], [], " ", label=textwrap.fill(f"no fit: {note}", 34))
        ax.legend(fontsize="x-small", loc="upper right")
    axes[0][0].set_ylabel("units")
    if title is not None:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------------------
# Ablation / routing
# ---------------------------------------------------------------------------


def plot_context_swap(result: Any, assigned: Sequence[torch.Tensor | None] | None = None, ax: Any = None) -> Any:
    """Context-swap timescales (:mod:`.context_swap`) of every layer: against the assigned
    timescales where a layer has them (log-log scatter, the diagonal dashed), else sorted per unit.

    Args:
        result: a :class:`~.context_swap.ContextSwapResult`.
        assigned: per layer ``(units,)`` assigned timescales or None.
    """
    figure, ax = _figure_and_axes(ax, "plot_context_swap")
    assigned = list(assigned) if assigned is not None else [None] * len(result.timescales)
    lows, highs = [], []
    for position, measured in enumerate(result.timescales):
        style = layer_style(position)
        label = _layer_label(position)
        given = assigned[position]
        if given is not None:
            x, y = given.double(), measured.double()
            shown = torch.isfinite(x) & torch.isfinite(y) & (x > 0) & (y > 0)
            ax.scatter(x[shown], y[shown], s=10, color=style["color"], marker=style["marker"], label=label)
            if shown.any():
                lows.append(float(torch.minimum(x[shown], y[shown]).min()))
                highs.append(float(torch.maximum(x[shown], y[shown]).max()))
        else:
            values = _sorted_positive(measured)
            ax.plot(
                torch.arange(1, values.numel() + 1),
                values,
                color=style["color"],
                linestyle=style["linestyle"],
                label=f"{label} (units by rank)",
            )
    if lows:
        ax.plot([min(lows), max(highs)], [min(lows), max(highs)], "k--", linewidth=0.8, label="measured = assigned")
        ax.set_xlabel("assigned timescale (tokens), or unit rank")
    else:
        ax.set_xlabel("unit rank")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel("context-swap timescale (tokens)")
    ax.set_title(
        f"Timescales from activity: {result.samples} segments of {result.segment_length} tokens after a swapped context"
    )
    ax.legend(fontsize="small")
    return figure


def _chunk_label(chunk: Mapping[str, Any], position: int) -> str:
    if "timescale_min" in chunk:
        return f"chunk {position + 1}: T {chunk['timescale_min']:.3g}-{chunk['timescale_max']:.3g}"
    return f"chunk {position + 1}: {chunk['n_units']} units"


def plot_routing_heatmap(
    report: Mapping[str, Any], ax: Any = None, title: str | None = None, annotate: bool = True
) -> Any:
    """Heat map of a routing report: rows = ablated chunks (in report order), columns = bins with
    tokens (+ overall), colour = ``ppl(ablated) / ppl(intact)`` centred on 1 (red: ablation hurts).

    Bins without tokens in the analysed text have no ratio and are left out; the x label names them.

    Args:
        report: from :func:`~.ablation.routing_report` (or its JSON form: NaN may be None).
    """
    pyplot("plot_routing_heatmap")  # matplotlib, or the ImportError saying how to install it
    from matplotlib.colors import TwoSlopeNorm

    columns = list(report["columns"])
    intact_bins = report["intact"]["bins"]
    empty = [label for label in report["labels"] if not intact_bins[label]["n_tokens"]]
    shown = [index for index, column in enumerate(columns) if column not in empty]
    matrix = torch.tensor(
        [[math.nan if row[index] is None else float(row[index]) for index in shown] for row in report["ratio_matrix"]],
        dtype=torch.float64,
    ).reshape(len(report["ratio_matrix"]), len(shown))
    rows, width = matrix.shape
    figure, ax = _figure_and_axes(ax, "plot_routing_heatmap", figsize=(1.2 * width + 3.0, 0.35 * rows + 1.8))
    finite = matrix[torch.isfinite(matrix)]
    spread = float((finite - 1.0).abs().max()) if finite.numel() else 0.0
    spread = max(spread, 1e-6)  # TwoSlopeNorm needs vmin < 1 < vmax
    norm = TwoSlopeNorm(vcenter=1.0, vmin=1.0 - spread, vmax=1.0 + spread)
    image = ax.imshow(matrix.numpy(), cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(width), labels=[columns[index] for index in shown])
    ax.set_yticks(
        range(rows), labels=[_chunk_label(chunk, position) for position, chunk in enumerate(report["chunks"])]
    )
    xlabel = "target word bin"
    if empty:
        xlabel += f" (no tokens, not shown: {', '.join(empty)})"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"ablated units of layer {report['layer']} (order: {report['order']})")
    if annotate and rows * width <= 400:
        for row in range(rows):
            for column in range(width):
                value = float(matrix[row, column])
                if math.isfinite(value):
                    # white text on the saturated cells, where black would vanish
                    color = "white" if abs(value - 1.0) > 0.6 * spread else "black"
                    ax.text(column, row, f"{value:.3f}", ha="center", va="center", fontsize=7, color=color)
    figure.colorbar(image, ax=ax, label="perplexity ratio, ablated / intact")
    ax.set_title(title if title is not None else "Routing: perplexity ratio per bin when a chunk is ablated")
    return figure


# ---------------------------------------------------------------------------
# Memory span and weighted sums
# ---------------------------------------------------------------------------


def plot_memory_span(span: MemorySpan, ax: Any = None, log_distance: bool = False, title: str | None = None) -> Any:
    """Mean weighted-sum mass ``m(d)`` vs distance ``d``, one curve per layer (log y axis).

    Non-positive values (and ``d = 0`` with ``log_distance``) cannot be drawn and are left out.
    """
    figure, ax = _figure_and_axes(ax, "plot_memory_span")
    first = 1 if log_distance else 0  # d = 0 has no place on a log axis
    distances = span.distances[first:].numpy()
    for position, layer in enumerate(span.layers):
        profile = span.mean_norm[position, first:]
        positive = profile > 0
        ax.plot(
            distances[positive.numpy()],
            profile[positive].numpy(),
            markersize=3,
            label=_layer_label(layer),
            **layer_style(position),
        )
    if log_distance:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("distance t - j (tokens)")
    ax.set_ylabel("mean norm of the weight w_j^t of word j in the cell at t")
    ax.set_title(title if title is not None else "Memory span: weighted-sum mass vs distance")
    ax.legend()
    return figure


def plot_weighted_sum_heatmap(
    log_weights: torch.Tensor,
    tokens: list[str],
    ax: Any = None,
    *,
    cmap: str = "viridis",
    colorbar: bool = True,
    title: str | None = None,
) -> tuple[Any, Any]:
    """Draw ``||w_j^t||_2`` for one sequence as a heat map (Levy et al. 2018, Fig. 2 style).

    ``c_t = sum_j w_j^t * c~_j``: rows = context word ``j``, columns = current word ``t``, so
    column ``t`` tells how much each earlier word's content still contributes to the cell at ``t``.

    Args:
        log_weights: ``(T, T, H)`` log weights of one batch row, indexed ``[t, j, unit]``
            (``-inf`` above the diagonal, ``j > t``), e.g. ``weighted_sum_log_weights(...)[0][b]``.
        tokens: the ``T`` words, used as tick labels on both axes.
        ax: a matplotlib Axes to draw into; a new figure is created if None.
        cmap: colour map name.
        colorbar: add a colour bar labelled with the quantity.
        title: optional axes title.

    Returns:
        ``(figure, axes)``. Cells with ``j > t`` (the future) are left blank (NaN).

    Raises:
        ImportError: if matplotlib is missing (``pip install matplotlib``, a dependency of mtlstm_hf).
        ValueError: if shapes and tokens disagree.
    """
    if log_weights.dim() != 3 or log_weights.shape[0] != log_weights.shape[1]:
        raise ValueError(f"log_weights must be (T, T, H) for one sequence; got {tuple(log_weights.shape)}.")
    if len(tokens) != log_weights.shape[0]:
        raise ValueError(f"got {len(tokens)} tokens for T={log_weights.shape[0]} steps.")
    plt = pyplot("plot_weighted_sum_heatmap")
    # norms[t, j] -> image[j, t]: rows = context word j, columns = current word t.
    norms = weighted_sum_norms(log_weights.detach().double().cpu()).T
    total_steps = norms.shape[0]
    future = torch.arange(total_steps)[:, None] > torch.arange(total_steps)[None, :]  # j > t
    image = norms.masked_fill(future, float("nan")).numpy()
    if ax is None:
        figure, ax = plt.subplots(figsize=(0.45 * total_steps + 2.5, 0.45 * total_steps + 1.5))
    else:
        figure = ax.figure
    artist = ax.imshow(image, cmap=cmap, origin="upper", aspect="equal", interpolation="nearest")
    ax.set_xticks(range(total_steps), labels=tokens, rotation=90)
    ax.set_yticks(range(total_steps), labels=tokens)
    ax.set_xlabel("current word t")
    ax.set_ylabel("context word j")
    if title is not None:
        ax.set_title(title)
    if colorbar:
        figure.colorbar(artist, ax=ax, label="norm of the weight w_j^t")
    return figure, ax


def plot_passage_weighted_sum(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    layer: int,
    tokens: list[str] | None = None,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Heat map of ``||w_j^t||_2`` over one passage of one layer.

    Args:
        input_ids: ``(T,)`` token ids of a short passage (starts from the zero state).
        layer: 0-based index into ``model.model.layers`` (the title says its number, ``layer_number(layer)``).
        tokens: the ``T`` words for the tick labels (default the ids).
    """
    log_weights = passage_log_weights(model, input_ids, layer)
    labels = tokens if tokens is not None else [str(int(token)) for token in torch.as_tensor(input_ids).reshape(-1)]
    default = f"{_layer_label(layer).capitalize()}: weighted-sum weights of the memory cell"
    figure, _ = plot_weighted_sum_heatmap(log_weights, labels, ax, title=title if title is not None else default)
    return figure


# ---------------------------------------------------------------------------
# State gradients
# ---------------------------------------------------------------------------


def _memory_curves(
    result: StateGradientResult, k: int, measure: str | int, whitening: torch.Tensor | None
) -> tuple[torch.Tensor, str]:
    values = result.singular_values(k, whitening)  # (D, C, k)
    if measure == "sum":
        curves, ylabel = values.sum(-1), f"memory: sum of the top {k} singular values"
    elif isinstance(measure, int) and not isinstance(measure, bool) and 0 <= measure < k:
        curves, ylabel = values[..., measure], f"singular value {measure + 1}"
    else:
        raise ValueError(f"measure must be 'sum' or an int in [0, {k}), got {measure!r}.")
    return curves, ylabel + (" (whitened embeddings)" if whitening is not None else "")


def plot_state_gradient_memory(
    result: StateGradientResult,
    k: int = 5,
    measure: str | int = "sum",
    whitening: torch.Tensor | None = None,
    ax: Any = None,
    log_delay: bool = True,
    title: str | None = None,
) -> Any:
    """Memory vs delay of one layer, one curve per source-word class, on log axes (Verwimp et al. 2020).

    Classes without any counted gradient (an empty frequency bin) are left out and named in the title.

    Args:
        result: from :func:`~mtlstm_hf.analysis.state_gradients.state_gradients`.
        k: how many singular values of the normalised average gradient ``G~`` to use.
        measure: ``"sum"`` (sum of the top ``k``, the paper's memory curve) or an index
            ``i < k`` (plot ``sigma_{i+1}`` alone).
        whitening: ``D`` from ``embedding_whitening`` (None: raw gradients).
        ax: Axes to draw into (default a new figure).
        log_delay: log x axis; delay 0 cannot be shown there and is left out.
        title: axes title (default names layer and state).

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError: bad ``measure`` or ``k``.
    """
    curves, ylabel = _memory_curves(result, k, measure, whitening)
    figure, ax = _figure_and_axes(ax, "plot_state_gradient_memory")
    delays = torch.arange(result.max_delay)
    first = 1 if log_delay else 0
    labels = result.class_labels or [f"class {index + 1}" for index in range(result.num_classes)]
    empty = [str(label) for index, label in enumerate(labels) if not bool(result.counts[:, index].any())]
    drawn = 0
    for index, label in enumerate(labels):
        if str(label) in empty:
            continue
        ax.plot(
            delays[first:].numpy(), curves[first:, index].numpy(), markersize=3, label=str(label), **layer_style(drawn)
        )
        drawn += 1
    if log_delay:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("delay tau (tokens)")
    ax.set_ylabel(ylabel)
    default = f"State-gradient memory of the {result.state} state, {_layer_label(result.layer_index)}"
    if empty:
        default += f"\n(no source words in: {', '.join(empty)})"
    ax.set_title(title if title is not None else default)
    if drawn > 1 or result.class_labels:
        ax.legend(title="source word")
    return figure


def plot_state_gradient_layers(
    results: Sequence[StateGradientResult],
    k: int = 5,
    whitening: torch.Tensor | None = None,
    log_delay: bool = True,
    title: str | None = None,
) -> Any:
    """Memory vs delay of several layers: one panel for all source words and one per non-empty class,
    one curve per layer in each (its own colour, line style and marker: :func:`layer_style`).

    Args:
        results: one :class:`StateGradientResult` per layer (same classes and delays).
        k: singular values summed (the memory measure of :func:`plot_state_gradient_memory`).
        whitening: ``D`` from ``embedding_whitening`` (None: raw gradients).
        log_delay: log x axis; delay 0 cannot be shown there and is left out.

    Raises:
        ValueError: no results, or results with different classes or delays.
    """
    if not results:
        raise ValueError("give at least one StateGradientResult.")
    first_result = results[0]
    for result in results[1:]:
        if result.counts.shape != first_result.counts.shape or result.class_labels != first_result.class_labels:
            raise ValueError("all results must have the same delays and classes (one state_gradients call).")
    labels = first_result.class_labels or [f"class {index + 1}" for index in range(first_result.num_classes)]
    present = [index for index in range(first_result.num_classes) if bool(first_result.counts[:, index].any())]
    empty = [str(labels[index]) for index in range(first_result.num_classes) if index not in present]
    panels: list[tuple[str, list[torch.Tensor]]] = [
        ("all source words", [result.pooled().memory(k, whitening)[:, 0] for result in results])
    ]
    if len(present) > 1:
        per_class = [result.memory(k, whitening) for result in results]
        panels += [(f"source word: {labels[index]}", [memory[:, index] for memory in per_class]) for index in present]
    plt = pyplot("plot_state_gradient_layers")
    figure, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.6), squeeze=False, sharey=True)
    delays = torch.arange(first_result.max_delay)
    start = 1 if log_delay else 0
    for ax, (panel_title, curves) in zip(axes[0], panels):
        for position, (result, curve) in enumerate(zip(results, curves)):
            ax.plot(
                delays[start:].numpy(),
                curve[start:].numpy(),
                markersize=3,
                label=f"{_layer_label(result.layer_index)}, {result.state} state",
                **layer_style(position),
            )
        if log_delay:
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(panel_title)
        ax.set_xlabel("delay tau (tokens)")
    axes[0][0].set_ylabel(
        f"memory: sum of the top {k} singular values" + (" (whitened)" if whitening is not None else "")
    )
    axes[0][0].legend(fontsize="small")
    heading = title if title is not None else "State-gradient memory vs delay"
    if empty:
        heading += f" (no source words in: {', '.join(empty)})"
    figure.suptitle(heading)
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------------------
# Mutual information
# ---------------------------------------------------------------------------


def plot_mutual_information(
    result: MutualInformationResult,
    fit: PowerLawFit | None = None,
    comparison: DecayComparison | None = None,
    model_decay: torch.Tensor | None = None,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """``I(d)`` vs distance on log-log axes, with a power-law fit and a model's implied decay.

    Args:
        result: from :func:`~mtlstm_hf.analysis.mutual_information.mutual_information`;
            non-positive estimates cannot be drawn on a log axis and are left out.
        fit: a power-law fit of the MI (drawn over its range); defaults to
            ``comparison.data_fit`` when a comparison is given.
        comparison: from ``compare_decay``; with ``model_decay`` (the same values passed to
            it), the model curve ``scale * decay^power`` is overlaid.
        model_decay: ``(K,)`` the model's decay at ``result.distances``.
        ax: Axes to draw into (default a new figure).
        title: axes title.

    Returns:
        The matplotlib ``Figure``.
    """
    figure, ax = _figure_and_axes(ax, "plot_mutual_information")
    distances = result.distances.to(torch.float64)
    positive = result.mutual_information > 0
    unit = "bits" if result.base == 2.0 else f"log base {result.base:g}"
    ax.plot(
        distances[positive].numpy(),
        result.mutual_information[positive].numpy(),
        "o",
        color="C0",
        label=f"mutual information of the text ({result.estimator} estimator)",
    )
    fit = fit if fit is not None else (comparison.data_fit if comparison is not None else None)
    if fit is not None:
        span = distances[(distances >= fit.d_min) & (distances <= fit.d_max)]
        ax.plot(
            span.numpy(),
            fit.predict(span).numpy(),
            "-",
            color="C1",
            label=f"power-law fit: {fit.amplitude:.3g} * d^-{fit.exponent:.3f} (R squared {fit.r_squared:.3f})",
        )
    if model_decay is not None:
        scale = comparison.scale if comparison is not None else 1.0
        power = comparison.power if comparison is not None else 1.0
        curve = scale * torch.as_tensor(model_decay, dtype=torch.float64) ** power
        label = "decay implied by the model's timescales"
        if comparison is not None:
            label += f" (times {scale:.3g}, to the power {power:g}; exponent {comparison.model_fit.exponent:.3f})"
        ax.plot(distances.numpy(), curve.numpy(), "--", color="C2", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("distance d between two words (tokens)")
    ax.set_ylabel(f"mutual information ({unit})")
    ax.set_title(title if title is not None else "Mutual information between words at distance d")
    ax.legend(fontsize="small")
    return figure
