"""Figures of the memory analyses: state-gradient singular values and the MI decay.

Every function returns a matplotlib ``Figure`` (drawn into ``ax`` when one is given).
matplotlib is imported only inside the functions: ``pip install mtlstm_hf[plot]``.
"""

from __future__ import annotations

from typing import Any

import torch

from .mutual_information import DecayComparison, MutualInformationResult, PowerLawFit
from .state_gradients import StateGradientResult

__all__ = ["plot_mutual_information", "plot_state_gradient_memory"]


def _pyplot(function_name: str) -> Any:
    try:
        import matplotlib.pyplot as pyplot
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(f"{function_name} needs matplotlib: pip install mtlstm_hf[plot]") from error
    return pyplot


def _figure_and_axes(ax: Any, function_name: str) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    figure, ax = _pyplot(function_name).subplots(figsize=(6.0, 4.0))
    return figure, ax


def plot_state_gradient_memory(
    result: StateGradientResult,
    k: int = 5,
    measure: str | int = "sum",
    whitening: torch.Tensor | None = None,
    ax: Any = None,
    log_delay: bool = True,
    title: str | None = None,
) -> Any:
    """Memory vs delay, one line per source-word class, on log axes (Verwimp et al. 2020).

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
    """
    values = result.singular_values(k, whitening)  # (D, C, k)
    if measure == "sum":
        curves, ylabel = values.sum(-1), f"sum of top {k} singular values"
    elif isinstance(measure, int) and 0 <= measure < k:
        curves, ylabel = values[..., measure], f"singular value {measure + 1}"
    else:
        raise ValueError(f"measure must be 'sum' or an int in [0, {k}), got {measure!r}.")
    figure, ax = _figure_and_axes(ax, "plot_state_gradient_memory")
    delays = torch.arange(result.max_delay)
    first = 1 if log_delay else 0
    labels = result.class_labels or [f"class {index}" for index in range(result.num_classes)]
    for index, label in enumerate(labels):
        ax.plot(delays[first:].numpy(), curves[first:, index].numpy(), marker=".", label=str(label))
    if log_delay:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("delay tau (tokens)")
    ax.set_ylabel(ylabel + (" (normalised)" if whitening is not None else ""))
    layer = "" if result.layer is None else f"layer {result.layer} "
    ax.set_title(title if title is not None else f"State-gradient memory: {layer}{result.state} state")
    if result.num_classes > 1 or result.class_labels:
        ax.legend()
    return figure


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
        distances[positive].numpy(), result.mutual_information[positive].numpy(), "o", label=f"MI ({result.estimator})"
    )
    fit = fit if fit is not None else (comparison.data_fit if comparison is not None else None)
    if fit is not None:
        span = distances[(distances >= fit.d_min) & (distances <= fit.d_max)]
        ax.plot(
            span.numpy(),
            fit.predict(span).numpy(),
            "-",
            label=f"fit {fit.amplitude:.3g} d^-{fit.exponent:.3f} (R^2={fit.r_squared:.3f})",
        )
    if model_decay is not None:
        scale = comparison.scale if comparison is not None else 1.0
        power = comparison.power if comparison is not None else 1.0
        curve = scale * torch.as_tensor(model_decay, dtype=torch.float64) ** power
        label = "model decay"
        if comparison is not None:
            label += f" (x{scale:.3g}, ^{power:g}, exponent {comparison.model_fit.exponent:.3f})"
        ax.plot(distances.numpy(), curve.numpy(), "--", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("distance d (tokens)")
    ax.set_ylabel(f"mutual information ({unit})")
    ax.set_title(title if title is not None else "Mutual information between words at distance d")
    ax.legend()
    return figure
