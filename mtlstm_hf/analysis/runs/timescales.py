"""The ``timescales`` analysis: estimated timescales per layer, their fitted distributions
(:func:`..timescales.timescale_report`), a figure per layer and one of the histograms."""

from __future__ import annotations

import functools
from typing import Any

from mtlstm_hf.models.mtlstm.layouts import layer_number

from ..context import GEMM_RATE, AnalysisContext
from ..registry import Figures
from ..timescales import DistributionFit, fit_inverse_gamma, timescale_report

__all__ = ["estimated_seconds", "run"]


def run(context: AnalysisContext) -> tuple[dict[str, Any], Figures]:
    from .. import figures

    estimate = context.timescale_estimate(context.progress)
    result = timescale_report(estimate, context.settings.families, context.settings.include_units)
    architecture = context.architecture
    if not architecture.native:  # what the "forget gate" of each unit is in this architecture
        result["architecture"] = {
            "name": architecture.architecture,
            "retention": architecture.retention_formula,
            "source": architecture.source,
            "note": "mean_forget_gate holds the mean per-step retention a_t of every unit; T = -1 / ln mean(a)",
        }
    fits: dict[int, DistributionFit | None] = {}
    for entry in estimate.layers:
        try:
            fits[entry.layer_index] = fit_inverse_gamma(entry.timescales)
        except ValueError:  # too few distinct finite timescales (e.g. a two-valued fixed layer)
            fits[entry.layer_index] = None
    # The figures draw a fit only where inverse_gamma_fit_note finds it meaningful.
    drawings: Figures = {
        f"timescales_layer{layer_number(entry.layer_index)}": functools.partial(
            figures.plot_timescales, entry, fits[entry.layer_index]
        )
        for entry in estimate.layers
    }
    drawings["timescale_histograms"] = lambda: figures.plot_timescale_histograms(
        estimate, {layer: fit for layer, fit in fits.items() if fit is not None}
    )
    return result, drawings


def estimated_seconds(context: AnalysisContext) -> float:
    """One forward pass over the split (input and recurrent products)."""
    if not context.architecture.native:
        return context.stream.numel() * context.architecture.forward_multiply_adds() / GEMM_RATE
    return context.stream.numel() * 2 * context.recurrent_multiply_adds() / GEMM_RATE
