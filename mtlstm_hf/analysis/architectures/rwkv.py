"""RWKV-4 (``RwkvForCausalLM``): the WKV recurrence of every block, one unit per channel.

transformers ``models/rwkv/modeling_rwkv.py``: ``rwkv_linear_attention_cpu`` (the reference path;
the CUDA kernel computes the same) carries a numerator and a denominator per channel ``c`` and
multiplies both by ``exp(w_c)`` per step, ``w = -exp(time_decay)`` (kept in a log-space form with a
running maximum for stability). The retention of channel ``c`` is

    a[c] = exp(-exp(time_decay[c]))

a parameter, the same at every step (read here in float64; the hook on ``attention.key`` only
gives it the shape of the window). A channel's ablation zeroes column ``c`` of the input of
``attention.output`` (``receptance * wkv``).

transformers' one-token call mixes a ``(B, H)`` shifted state with a ``(B, 1, H)`` input and gives
``(B, B, H)`` for ``B > 1`` rows (``RwkvSelfAttention.extract_key_value``,
``RwkvFeedForward.forward``); a one-token window of several rows is therefore fed one row at a
time. Windows of more tokens continue the state (``state``) exactly.

At initialisation (``RwkvPreTrainedModel._init_weights``): ``time_decay[c] = -5 + 8 (c / (C - 1))^(0.7
+ 1.3 l / (L - 1))`` in layer ``l``, so ``T[c] = exp(-time_decay[c])`` (about 0.05 to 148 tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import RecurrentAdapter, RecurrentLayer, RetentionSink

__all__ = ["RwkvAdapter"]


class RwkvAdapter(RecurrentAdapter):
    """:class:`~.base.RecurrentAdapter` of ``transformers.RwkvForCausalLM`` (see the module docstring)."""

    architecture = "rwkv"
    display_name = "RWKV"
    retention_formula = "a[c] = exp(-exp(time_decay[c])) (input-independent)"
    source = "transformers/models/rwkv/modeling_rwkv.py (rwkv_linear_attention_cpu)"

    def _attentions(self) -> list[Any]:
        return [block.attention for block in self.model.rwkv.blocks]

    def layers(self) -> list[RecurrentLayer]:
        return [
            RecurrentLayer(
                index=index,
                units=int(attention.attention_hidden_size),
                channels=int(attention.attention_hidden_size),
                channel_width=1,
                unit_channel=torch.arange(int(attention.attention_hidden_size)),
                kind="WKV channel (time_decay)",
            )
            for index, attention in enumerate(self._attentions())
        ]

    def _output_projection(self, index: int) -> torch.nn.Module:
        return self._attentions()[index].output

    @staticmethod
    def retention(attention: Any) -> torch.Tensor:
        """``(C,)`` float64 retention of every channel."""
        return torch.exp(-torch.exp(attention.time_decay.double()))

    def _retention_hooks(self, indices: Sequence[int], sink: RetentionSink) -> list[Any]:
        attentions = self._attentions()
        handles = []
        for index in indices:
            attention = attentions[index]

            def hook(
                module: Any, args: Any, output: torch.Tensor, index: int = index, attention: Any = attention
            ) -> None:
                sink(index, self.retention(attention).expand(*output.shape[:2], -1))

            handles.append(attention.key.register_forward_hook(hook))
        return handles

    def _forward(self, input_ids: torch.Tensor, state: Any, logits: bool) -> tuple[torch.Tensor | None, Any]:
        rows = input_ids.shape[0]
        if input_ids.shape[1] == 1 and rows > 1:  # transformers' one-token call takes one row (module docstring)
            pieces = [
                self._forward(
                    input_ids[row : row + 1], None if state is None else [s[row : row + 1] for s in state], logits
                )
                for row in range(rows)
            ]
            merged = None if not logits else torch.cat([piece[0] for piece in pieces], dim=0)  # type: ignore[misc]
            return merged, [torch.cat(parts, dim=0) for parts in zip(*(piece[1] for piece in pieces))]
        state = None if state is None else [tensor.clone() for tensor in state]
        if logits:
            output = self.model(input_ids, state=state, use_cache=True)
            return output.logits, output.state
        output = self.model.rwkv(input_ids, state=state, use_cache=True)
        return None, output.state
