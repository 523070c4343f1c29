"""MTLSTM (``MTLSTMForCausalLM``): the first adapter, the analyses' own model read through the same
protocol as every other architecture.

Each unit of a layer with a forget gate is one unit and one channel; its retention is the forget
gate ``f_t`` (``T = -1 / ln mean(f)``, Mahto et al. 2021). Everything delegates to the MTLSTM code
that existed before the adapters, so the numbers of an MTLSTM report are those of that code:
:func:`mtlstm_hf.analysis.timescales.estimate_timescales` (gates from one vectorised forward per
window, :mod:`mtlstm_hf.analysis.traces`), :func:`mtlstm_hf.analysis.ablation.ablation_log_probs`
(the batched pass that runs the layers below the ablated one once) and
:class:`mtlstm_hf.analysis.ablation.UnitAblation` (zeroes a layer's output for the layers above).
Every analysis applies (layers without a forget gate are left out where the analysis needs one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..adapter import base_model, layers_with_forget_gate
from ..timescales import TimescaleEstimate
from ..traces import TraceMoments
from .base import RecurrentAdapter, RecurrentLayer, RetentionSink

__all__ = ["MTLSTMAdapter"]


class MTLSTMAdapter(RecurrentAdapter):
    """:class:`~.base.RecurrentAdapter` of :class:`mtlstm_hf.MTLSTMForCausalLM` (module docstring)."""

    architecture = "mtlstm"
    display_name = "MTLSTM"
    retention_formula = "the forget gate f_t (T = -1 / ln mean(f), Mahto et al. 2021)"
    source = "mtlstm_hf/models/mtlstm (naive.cell_step; mtlstm_hf/analysis/gates.py)"
    native = True

    @property
    def analyses(self) -> tuple[str, ...]:  # type: ignore[override]  # every analysis
        from ..registry import ANALYSIS_REGISTRY

        return tuple(ANALYSIS_REGISTRY)

    def layers(self) -> list[RecurrentLayer]:
        base: Any = base_model(self.model)
        result = []
        for index in layers_with_forget_gate(self.model):
            size = int(base.layers[index].hidden_size)
            result.append(RecurrentLayer(index, size, size, 1, torch.arange(size), str(base.layers[index].cell_type)))
        return result

    @property
    def num_layers(self) -> int:
        base: Any = base_model(self.model)
        return len(base.layers)

    @property
    def vocab_size(self) -> int:
        base: Any = base_model(self.model)
        return int(base.embeddings.num_embeddings)

    def cell_type(self, layer: RecurrentLayer) -> str:
        return layer.kind

    def channel_count(self, index: int) -> int:
        """Units of any layer (one with or without a forget gate can be ablated)."""
        base: Any = base_model(self.model)
        return int(base.layers[index].hidden_size)

    def assigned_timescales(self, index: int) -> torch.Tensor | None:
        assigned = self.model.assigned_timescales()[index]
        return None if assigned is None else assigned.detach().double().cpu()

    def default_ablation_layer(self) -> int:
        from ..runs.ablation import default_ablation_layer

        return default_ablation_layer(self.model)

    def not_applicable(self, analysis: str) -> str | None:
        return None

    def summary(self) -> dict[str, Any]:
        config = self.model.config
        return {
            "num_layers": self.num_layers,
            "hidden_sizes": list(config.hidden_sizes),
            "cell_types": list(config.cell_types)
            if isinstance(config.cell_types, (list, tuple))
            else config.cell_types,
            "timescale_schedules": config.timescale_schedules,
            "vocab_size": int(config.vocab_size),
        }

    def _forward(self, input_ids: torch.Tensor, state: Any, logits: bool) -> tuple[torch.Tensor | None, Any]:
        output = self.model(input_ids, cache=state, use_cache=True)
        return output.logits, output.cache

    def _retention_hooks(self, indices: Sequence[int], sink: RetentionSink) -> list[Any]:
        raise NotImplementedError("the MTLSTM's forget gates come from mtlstm_hf.analysis.traces, not from hooks")

    def window_retentions(
        self, input_ids: torch.Tensor, state: Any = None, layers: int | Sequence[int] | None = None
    ) -> tuple[list[torch.Tensor], Any]:
        """Forget gates ``(B, T, H)`` float64 of the layers (:func:`mtlstm_hf.analysis.traces.forward_traces`)."""
        from ..traces import forward_traces

        chunk = forward_traces(self.model, input_ids, state, self._layer_indices(layers))
        return [trace["forget_gate"].double() for trace in chunk.layers], chunk.cache

    def retention_moments(
        self,
        stream: torch.Tensor,
        batch_size: int = 1,
        window: int = 70,
        layers: int | Sequence[int] | None = None,
        max_tokens: int | None = None,
        progress: Any = False,
    ) -> TraceMoments:
        """:func:`mtlstm_hf.analysis.traces.trace_moments` of the forget gate, under the key ``"retention"``."""
        from ..traces import trace_moments

        moments = trace_moments(
            self.model, stream, ("forget_gate",), batch_size, window, self._layer_indices(layers), max_tokens, progress
        )
        for sums in (*moments.sums, *moments.squares):
            if "forget_gate" in sums:
                sums["retention"] = sums.pop("forget_gate")
        return moments

    def estimate_timescales(
        self,
        stream: torch.Tensor,
        batch_size: int = 1,
        window: int = 70,
        layers: int | Sequence[int] | None = None,
        max_tokens: int | None = None,
        progress: Any = False,
    ) -> TimescaleEstimate:
        """:func:`mtlstm_hf.analysis.timescales.estimate_timescales` (assigned timescales and
        schedules included)."""
        from ..timescales import estimate_timescales

        return estimate_timescales(self.model, stream, batch_size, window, layers, max_tokens, progress=progress)

    def ablate(self, layer: int, channels: Any) -> Any:
        """:class:`mtlstm_hf.analysis.ablation.UnitAblation` of the layer's units (its output for the layers above)."""
        from ..ablation import UnitAblation

        return UnitAblation(self.model, {layer: channels})

    def ablation_log_probs(
        self,
        stream: torch.Tensor,
        layer: int,
        chunks: Sequence[Any],
        *,
        batch_size: int = 1,
        window: int = 70,
        progress: Any = False,
    ) -> torch.Tensor:
        """:func:`mtlstm_hf.analysis.ablation.ablation_log_probs`."""
        from ..ablation import ablation_log_probs

        return ablation_log_probs(
            self.model, stream, layer, chunks, batch_size=batch_size, window=window, progress=progress
        )

    def _output_projection(self, index: int) -> torch.nn.Module:
        raise NotImplementedError("an MTLSTM ablation zeroes the layer's output (UnitAblation), see ablate")
