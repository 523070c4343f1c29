"""The ``context_swap`` analysis: every unit's timescale measured from activity (the same segment
after two contexts, :mod:`..context_swap`), per layer, with its rank correlation to the assigned
timescales where the model assigns them, and a figure of measured against assigned."""

from __future__ import annotations

import math
from typing import Any

import torch

from mtlstm_hf.models.mtlstm.layouts import layer_number

from ..context import GEMM_RATE, AnalysisContext
from ..context_swap import context_swap_timescales, hidden_state_activations, rank_correlation
from ..registry import Figures
from ..settings import option_name

__all__ = ["estimated_seconds", "run"]

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def assigned_timescales(model: Any) -> list[torch.Tensor | None] | None:
    """Per layer, the timescales the model assigns (``model.assigned_timescales()``), or None."""
    assigned = getattr(model, "assigned_timescales", None)
    return assigned() if callable(assigned) else None


def _summary(timescales: torch.Tensor, segment_length: int) -> dict[str, Any]:
    finite = timescales[torch.isfinite(timescales)]
    measured = timescales[~torch.isnan(timescales)]
    quantiles = (
        torch.quantile(measured.clamp(max=torch.finfo(torch.float64).max), torch.tensor(QUANTILES, dtype=torch.float64))
        if measured.numel()
        else torch.full((len(QUANTILES),), math.nan)
    )
    return {
        "units": int(timescales.numel()),
        "converged_units": int(finite.numel()),
        "unmeasured_units": int(timescales.numel() - measured.numel()),
        "beyond_segment_units": int((measured > segment_length).sum()),  # extrapolated past the segment
        "quantiles": {str(q): float(value) for q, value in zip(QUANTILES, quantiles.tolist())},
    }


def run(context: AnalysisContext) -> tuple[dict[str, Any], Figures]:
    from .. import figures

    settings = context.settings
    try:
        result = context_swap_timescales(
            hidden_state_activations(context.model),
            context.stream,
            context_length=settings.swap_context_length,
            segment_length=settings.swap_segment_length,
            samples=settings.swap_samples,
            batch_size=settings.batch_size,
        )
    except ValueError as error:
        sizes = ", ".join(option_name(name) for name in ("swap_context_length", "swap_segment_length", "swap_samples"))
        raise ValueError(f"{error} (options {sizes})") from None
    assigned = assigned_timescales(context.model) or [None] * len(result.timescales)
    if len(assigned) != len(result.timescales):
        assigned = [None] * len(result.timescales)
    layers = []
    for index, measured in enumerate(result.timescales):
        item: dict[str, Any] = {"layer": layer_number(index), **_summary(measured, result.segment_length)}
        given = assigned[index]
        if given is not None:
            item["assigned_rank_correlation"] = rank_correlation(measured, given)
        if settings.include_units:
            item["timescales"] = measured.tolist()
            item["assigned"] = None if given is None else given.tolist()
        layers.append(item)
    section = {
        "method": "context swap (Chien, Zhang & Honey, ICLR 2021): tau = -1/slope of log mean |h_A - h_B| over the segment",
        "context_length": result.context_length,
        "segment_length": result.segment_length,
        "samples": result.samples,
        "layers": layers,
    }
    drawings: Figures = {
        "context_swap_timescales": lambda: figures.plot_context_swap(result, assigned),
    }
    return section, drawings


def estimated_seconds(context: AnalysisContext) -> float:
    """Two forward passes of (context + segment) tokens per sample."""
    settings = context.settings
    tokens = 2 * settings.swap_samples * (settings.swap_context_length + settings.swap_segment_length)
    return tokens * 2 * context.recurrent_multiply_adds() / GEMM_RATE
