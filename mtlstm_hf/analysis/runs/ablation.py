"""The ``ablation`` analysis: zero one layer's units chunk by chunk and report the perplexity
ratio per frequency bin (and per word class, with a word-class map): the routing heat maps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from mtlstm_hf.evaluation import bin_labels, target_positions
from mtlstm_hf.models.mtlstm.layouts import layer_number

from ..ablation import resolve_chunks, routing_from_log_probs, timescale_chunks, word_class_table
from ..adapter import base_model
from ..context import GEMM_RATE, AnalysisContext
from ..registry import Figures
from ..settings import option_name

__all__ = ["ablation_layer_index", "default_ablation_layer", "estimated_seconds", "run"]


def default_ablation_layer(model: torch.nn.Module) -> int:
    """The layer ablated by default, as a 0-based index into ``model.model.layers``: the first with an
    inverse-gamma schedule (the paper's layer 2, index 1), else the middle layer ``L // 2`` (layer 2
    of a 3-layer AWD-LSTM)."""
    schedules = getattr(model.config, "timescale_schedules", None) or []
    for index, schedule in enumerate(schedules):
        if isinstance(schedule, Mapping) and schedule.get("type") == "inverse_gamma":
            return index
    base: Any = base_model(model)  # its own modules (torch's Module typing says Tensor | Module)
    return len(base.layers) // 2


def ablation_layer_index(context: AnalysisContext) -> int:
    """The 0-based index of the ablated layer (``settings.ablation_layer`` is a number from 1)."""
    number = context.settings.ablation_layer
    num_layers = context.architecture.num_layers
    if number is None:
        return context.architecture.default_ablation_layer()  # an MTLSTM's: default_ablation_layer
    if not 1 <= number <= num_layers:
        raise ValueError(
            f"{option_name('ablation_layer')} must be a layer number from 1 to {num_layers} for this "
            f"{num_layers}-layer model, got {number}."
        )
    return number - 1


def _ablation_order(context: AnalysisContext, layer: int) -> tuple[torch.Tensor | None, str]:
    order = context.settings.ablation_order
    architecture = context.architecture
    assigned = architecture.assigned_timescales(layer)
    # A forget gate, or the retention of another architecture's recurrence.
    has_forget_gate = any(entry.index == layer for entry in architecture.layers())
    if order == "assigned" or (order == "auto" and assigned is not None):
        if assigned is None:
            raise ValueError(
                f"layer {layer_number(layer)} has no assigned timescales; use ablation_order (--ablation-order) "
                "'estimated' or 'index'."
            )
        return assigned, "assigned"
    if order == "estimated" and not has_forget_gate:
        raise ValueError(
            f"layer {layer_number(layer)} has no forget gate, so no estimated timescales; use ablation_order "
            "(--ablation-order) 'index'."
        )
    if order == "estimated" or (order == "auto" and has_forget_gate):
        # Per channel (an MTLSTM's units; a Mamba channel's longest state timescale).
        return architecture.channel_timescales(context.timescale_estimate().layer(layer)), "estimated"
    return None, "index"


def run(context: AnalysisContext) -> tuple[dict[str, Any], Figures]:
    from .. import figures

    settings = context.settings
    architecture = context.architecture
    layer = ablation_layer_index(context)
    ordering, order = _ablation_order(context, layer)
    hidden_size = architecture.channel_count(layer)
    # Unit order: consecutive chunks of unit indices.
    explicit = list(torch.arange(hidden_size).split(settings.chunk_size)) if ordering is None else None
    unit_chunks: list[torch.Tensor]
    if architecture.native:
        unit_chunks, ordering, _ = resolve_chunks(context.model, layer, explicit, settings.chunk_size, ordering)
    else:
        unit_chunks = explicit if explicit is not None else timescale_chunks(ordering, settings.chunk_size)
    # One batched pass scores every chunk; both reports (frequency, word classes) bin the same numbers
    # (an MTLSTM's: ablation.ablation_log_probs).
    log_probs = architecture.ablation_log_probs(
        context.stream,
        layer,
        unit_chunks,
        batch_size=settings.batch_size,
        window=settings.window,
        progress=context.progress,
    )
    targets = context.stream[target_positions(context.stream.numel(), settings.batch_size)]
    common: dict[str, Any] = dict(
        layer=layer,
        unit_chunks=unit_chunks,
        ordering=ordering,
        order=order,
        chunk_size=settings.chunk_size,
        batch_size=settings.batch_size,
        window=settings.window,
    )
    frequency = routing_from_log_probs(
        log_probs, targets, context.bin_of_token(), bin_labels(settings.bin_edges), False, **common
    )
    result: dict[str, Any] = {"frequency": frequency, "classes": None}
    drawings: Figures = {
        "routing_frequency": lambda: figures.plot_routing_heatmap(frequency, title="Routing by word frequency")
    }
    if isinstance(settings.word_classes, dict) and settings.word_classes:  # validated: a dict, or None
        vocab_size = architecture.vocab_size
        classes, labels = word_class_table(settings.word_classes, context.tokenizer, vocab_size, settings.other_label)
        by_class = routing_from_log_probs(log_probs, targets, classes, labels, True, **common)
        result["classes"] = by_class
        drawings["routing_classes"] = lambda: figures.plot_routing_heatmap(by_class, title="Routing by word class")
    return result, drawings


def estimated_seconds(context: AnalysisContext) -> float:
    """One forward pass (recurrent products and the output layer) per chunk, and one intact."""
    architecture = context.architecture
    if not architecture.native:
        try:
            channels = architecture.channel_count(ablation_layer_index(context))
        except ValueError:  # reported when the analysis runs
            return 0.0
        chunks = math.ceil(channels / context.settings.chunk_size)
        return (chunks + 1) * context.stream.numel() * architecture.forward_multiply_adds() / GEMM_RATE
    sizes, _ = context.layer_sizes()
    try:
        layer = ablation_layer_index(context)
    except ValueError:  # reported when the analysis runs
        layer = 0
    chunks = math.ceil(sizes[layer] / context.settings.chunk_size)
    base: Any = base_model(context.model)
    head = base.embeddings.num_embeddings * sizes[-1]
    return float((chunks + 1) * context.stream.numel() * (context.recurrent_multiply_adds() + head) / GEMM_RATE)
