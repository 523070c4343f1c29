"""What every analysis of a report run gets: :class:`AnalysisContext` (the model, the token
streams, the settings, the run-wide progress share, work shared between analyses), and the rates
of the rough cost model from which each analysis estimates its time (:mod:`.registry`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch

from mtlstm_hf.evaluation import frequency_bin_of_token, token_counts

from .adapter import base_model
from .settings import AnalysisSettings

__all__ = [
    "COUNT_RATE",
    "EXP_RATE",
    "GEMM_RATE",
    "STEP_RATE",
    "AnalysisContext",
]

# Relative speeds of the kinds of work (per second, measured on 2 cores; only ratios matter for the
# estimate of the total time, which the bar extrapolates from the measured rate).
GEMM_RATE = 8.0e10  # multiply-adds in large matrix products
STEP_RATE = 8.5e10  # multiply-adds of the state-gradient tangents (per-step products and their overhead)
EXP_RATE = 1.0e8  # exp/log work of the weighted-sum spans (memory span)
COUNT_RATE = 2.0e7  # token pairs counted (mutual information)


@dataclass
class AnalysisContext:
    """The inputs of one report run, handed to every analysis's ``run`` and ``estimated_seconds``.

    Attributes:
        model: ``MTLSTMForCausalLM``, or a causal LM of another architecture an adapter reads
            (:mod:`.architectures`; in eval mode while the analyses run).
        tokenizer: the model's tokenizer (ids -> words).
        stream: ``(N,)`` token ids of the analysed split (``max_tokens`` applied).
        counting_streams: the streams whose word counts define the frequency bins.
        settings: the run's :class:`~.settings.AnalysisSettings`.
        estimated_timescales_for_mi: the report has (or will have) the timescales analysis.
        progress: the current analysis's share of the run-wide bar (a
            :class:`mtlstm_hf.progress.Share`), or False.
        cache: work shared between analyses of one run (see :meth:`timescale_estimate`).
    """

    model: torch.nn.Module
    tokenizer: Any
    stream: torch.Tensor
    counting_streams: list[torch.Tensor]
    settings: AnalysisSettings
    estimated_timescales_for_mi: bool
    progress: Any = False
    cache: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def architecture(self) -> Any:
        """The model's :class:`~.architectures.base.RecurrentAdapter` (:func:`~.architectures.registry.adapter_for`).

        Raises:
            ValueError: no adapter reads this model's architecture (the message names those that do).
        """
        from .architectures.registry import adapter_for

        return adapter_for(self.model)

    def bin_of_token(self) -> torch.Tensor:
        """``(V,)`` frequency bin of every vocabulary id, from the counting streams' word counts."""
        vocab_size = self.architecture.vocab_size
        return frequency_bin_of_token(token_counts(self.counting_streams, vocab_size), self.settings.bin_edges)

    def timescale_estimate(self, progress: Any = False) -> Any:
        """The timescale estimate, computed once for every analysis that needs it."""
        if "timescales" not in self.cache:
            # The architecture's adapter: for an MTLSTM, estimate_timescales itself.
            self.cache["timescales"] = self.architecture.estimate_timescales(
                self.stream, self.settings.batch_size, self.settings.window, progress=progress
            )
        return self.cache["timescales"]

    def layer_sizes(self) -> tuple[list[int], list[int]]:
        """``(hidden sizes, input sizes)`` of the layers, bottom first (for the cost estimates)."""
        base: Any = base_model(self.model)
        sizes = [layer.hidden_size for layer in base.layers]
        return sizes, [base.embeddings.embedding_dim, *sizes[:-1]]

    def recurrent_multiply_adds(self) -> int:
        """Multiply-adds of the four gates of every layer, per token."""
        sizes, inputs = self.layer_sizes()
        return sum(4 * hidden * (hidden + size_in) for hidden, size_in in zip(sizes, inputs))
