"""The ``weighted_sum`` analysis: the norms ``||w_j^t||`` of the weighted sum of one passage,
per layer with a memory cell (a heat map each)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from mtlstm_hf.analysis.gates import weighted_sum_norms
from mtlstm_hf.models.mtlstm.layouts import layer_index_of, layer_number

from ..adapter import layers_with_forget_gate
from ..context import EXP_RATE, AnalysisContext
from ..memory_span import passage_log_weights
from ..registry import Figures
from ..settings import option_name

__all__ = ["estimated_seconds", "run"]


def run(context: AnalysisContext) -> tuple[dict[str, Any], Figures]:
    from .. import figures

    settings = context.settings
    start, length = settings.passage_start, settings.passage_length
    passage = context.stream[start : start + length]
    if passage.numel() < 2:
        raise ValueError(
            f"the passage [{start}, {start + length}) holds {passage.numel()} tokens of the split; need at least 2 "
            f"({option_name('passage_start')}, {option_name('passage_length')})."
        )
    tokens = context.tokenizer.convert_ids_to_tokens(passage.tolist())
    layers: list[dict[str, Any]] = []
    for layer in layers_with_forget_gate(context.model):
        log_weights = passage_log_weights(context.model, passage, layer)  # (T, T, H), [t, j]
        matrix = weighted_sum_norms(log_weights).T  # [j, t]
        future = torch.ones_like(matrix, dtype=torch.bool).tril(-1)  # j > t
        layers.append({"layer": layer_number(layer), "norms": matrix.masked_fill(future, math.nan).tolist()})
    if not layers:
        raise ValueError("the model has no layer with a memory cell (all 'lstm-gates').")

    def drawing(index: int) -> Callable[[], Any]:  # one layer's figure: its index bound now, the rest when drawn
        return lambda: figures.plot_passage_weighted_sum(context.model, passage, index, tokens)

    drawings: Figures = {
        f"weighted_sum_layer{item['layer']}": drawing(index)
        for index, item in ((layer_index_of(item["layer"]), item) for item in layers)
    }
    return {"tokens": tokens, "passage_start": start, "layers": layers}, drawings


def estimated_seconds(context: AnalysisContext) -> float:
    """The exp/log work of the passage's ``T x T`` weights per unit."""
    sizes, _ = context.layer_sizes()
    return context.settings.passage_length**2 * sum(sizes) / EXP_RATE
