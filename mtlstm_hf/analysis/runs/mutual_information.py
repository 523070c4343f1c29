"""The ``mutual_information`` analysis: ``I(d)`` of the analysed split, its power-law fit, and the
decay the model's timescales imply (:mod:`..mutual_information`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..context import COUNT_RATE, AnalysisContext
from ..registry import Figures

__all__ = ["estimated_seconds", "run"]


def _model_timescales(context: AnalysisContext) -> tuple[torch.Tensor | None, str | None]:
    """Finite timescales of all layers for the model decay and where they come from: the estimated
    ones when the report has the timescales analysis (whichever run computed it), else the assigned."""
    if context.estimated_timescales_for_mi:
        try:
            pooled = context.timescale_estimate().pooled()
        except ValueError:  # no layer with a forget gate: nothing was estimated
            pooled = None
        if pooled is not None:
            return (pooled if pooled.numel() else None), "estimated"
    assigned_of = getattr(context.model, "assigned_timescales", None)  # only an MTLSTM assigns timescales
    assigned = [values for values in (assigned_of() if assigned_of else []) if values is not None]
    if not assigned:
        return None, None
    values = torch.cat(assigned)
    values = values[torch.isfinite(values) & (values > 0)]
    return (values if values.numel() else None), "assigned"


def run(context: AnalysisContext) -> tuple[dict[str, Any], Figures]:
    from .. import figures
    from ..mutual_information import compare_decay, fit_power_law, mutual_information, timescale_decay

    settings = context.settings
    max_distance = min(settings.mi_max_distance, context.stream.numel() - 2)
    if max_distance < 1:
        raise ValueError(f"the split has {context.stream.numel()} tokens; mutual information needs at least 3.")
    result = mutual_information(
        context.stream,
        max_distance=max_distance,
        num_distances=settings.mi_num_distances,
        estimator=settings.mi_estimator,
    )
    report: dict[str, Any] = {
        "distances": result.distances.tolist(),
        "mutual_information": result.mutual_information.tolist(),
        "plugin": result.plugin.tolist(),
        "num_pairs": result.num_pairs.tolist(),
        "estimator": result.estimator,
        "base": result.base,
        "fit": None,
        "model_decay": None,
        "model_timescales": None,
        "comparison": None,
    }
    fit = comparison = model_decay = None
    try:
        fit = fit_power_law(result.distances, result.mutual_information)
        report["fit"] = dataclasses.asdict(fit)
    except ValueError as error:
        report["fit"] = {"error": str(error)}
    timescales, source = _model_timescales(context)
    if timescales is not None:
        model_decay = timescale_decay(result.distances, timescales)
        report["model_decay"] = model_decay.tolist()
        report["model_timescales"] = source
        try:
            comparison = compare_decay(result, model_decay)
            report["comparison"] = {
                "data_fit": dataclasses.asdict(comparison.data_fit),
                "model_fit": dataclasses.asdict(comparison.model_fit),
                "scale": comparison.scale,
                "log_rmse": comparison.log_rmse,
                "power": comparison.power,
                "exponent_ratio": comparison.exponent_ratio,
            }
        except (ValueError, ZeroDivisionError) as error:
            report["comparison"] = {"error": str(error)}
    drawings: Figures = {
        "mutual_information": lambda: figures.plot_mutual_information(
            result, fit=fit, comparison=comparison, model_decay=model_decay
        )
    }
    return report, drawings


def estimated_seconds(context: AnalysisContext) -> float:
    """The token pairs counted: every token at each distance."""
    return context.stream.numel() * context.settings.mi_num_distances / COUNT_RATE
