"""The ``memory_span`` analysis: mean weighted-sum mass ``||w_{t-d}^t||`` vs distance ``d`` per
layer (Levy et al. 2018; :func:`..memory_span.estimate_memory_span`)."""

from __future__ import annotations

from typing import Any

from ..context import EXP_RATE, AnalysisContext
from ..memory_span import estimate_memory_span
from ..registry import Figures

__all__ = ["estimated_seconds", "run"]


def run(context: AnalysisContext) -> tuple[dict[str, Any], Figures]:
    from .. import figures

    settings = context.settings
    span = estimate_memory_span(
        context.model,
        context.stream,
        settings.max_distance,
        settings.batch_size,
        settings.window,
        progress=context.progress,
    )
    return span.to_dict(), {"memory_span": lambda: figures.plot_memory_span(span)}


def estimated_seconds(context: AnalysisContext) -> float:
    """The exp/log work of the weighted-sum spans of every window."""
    settings = context.settings
    sizes, _ = context.layer_sizes()
    span = settings.window + settings.max_distance - 1
    return context.stream.numel() * sum(sizes) * span * span / settings.window / EXP_RATE
