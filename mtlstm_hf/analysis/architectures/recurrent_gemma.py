"""RecurrentGemma (``RecurrentGemmaForCausalLM``, Griffin): the RG-LRU of every recurrent block, one
unit per channel; the local-attention blocks have no retention and are not analysed.

transformers ``models/recurrent_gemma/modeling_recurrent_gemma.py``: ``RecurrentGemmaRglru.forward``
computes the recurrence gate ``r_t = sigmoid(x_t W_a + b_a)`` (block-diagonal per head, from the
block's convolved input ``x_t``) and ``log a_t = -8 r_t softplus(recurrent_param)``; ``_rnn_scan``
keeps ``h_t = a_t h_{t-1} + sqrt(1 - a_t^2) (i_t x_t)``. The retention of channel ``c`` is

    a_t[c] = exp(-8 r_t[c] softplus(recurrent_param[c])) = sigmoid(-recurrent_param[c])^(8 r_t[c])

read here (float64) from the input of ``rg_lru`` (a forward pre-hook) and the parameters. (The
scan multiplies ``a_t`` by 0 where ``position_ids == 0``, a document start; that reset is not a
property of the channel and is not part of ``a_t`` here.) A channel's ablation zeroes column
``c`` of the input of ``temporal_block.linear_out`` (the RG-LRU output times the GeLU branch).

State across windows. transformers keeps a recurrent block's state on the module
(``rg_lru.recurrent_states``, ``conv1d_state``) and the attention keys in the cache; a multi-token
call restarts the block's temporal convolution from zeros (``conv_1d`` over the window alone, the
"prefill" branch of ``RecurrentGemmaRecurrentBlock.forward``). The adapter passes the position ids
and the cache, keeps the module states in its own state object (restored before each window), and
prepends the previous ``conv1d_width - 1`` convolution inputs to ``conv_1d``'s input (hooks on that
module): windows then give the logits of one forward over the whole row.

At initialisation (``RecurrentGemmaPreTrainedModel._init_weights``): ``recurrent_param`` is drawn so
that ``a0 = sigmoid(-recurrent_param) = sqrt(u)``, ``u ~ U(0.9^2, 0.999^2)``, and the gate's bias is
0; at ``r_t = 1/2`` (zero gate input) ``T = -1 / (4 ln a0)``, i.e. ``-1 / (2 ln u)``: 2.4 to 250 tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .base import RecurrentAdapter, RecurrentLayer, RetentionSink

__all__ = ["RecurrentGemmaAdapter"]


@dataclass
class _State:
    """What carries one stream across windows: the attention cache, the tokens seen, and per
    recurrent block its RG-LRU state and its last ``conv1d_width - 1`` convolution inputs."""

    cache: Any
    offset: int = 0
    recurrent: dict[int, torch.Tensor] = field(default_factory=dict)
    conv_inputs: dict[int, torch.Tensor] = field(default_factory=dict)


class RecurrentGemmaAdapter(RecurrentAdapter):
    """:class:`~.base.RecurrentAdapter` of ``transformers.RecurrentGemmaForCausalLM`` (module docstring)."""

    architecture = "recurrent_gemma"
    display_name = "RecurrentGemma"
    retention_formula = "a_t[c] = exp(-8 r_t[c] softplus(recurrent_param[c])), r_t = sigmoid(x_t W_a + b_a)"
    source = "transformers/models/recurrent_gemma/modeling_recurrent_gemma.py (RecurrentGemmaRglru.forward)"

    def _blocks(self) -> dict[int, Any]:
        """0-based layer index -> recurrent temporal block (layers with local attention left out)."""
        return {
            index: layer.temporal_block
            for index, layer in enumerate(self.model.model.layers)
            if hasattr(layer.temporal_block, "rg_lru")
        }

    def layers(self) -> list[RecurrentLayer]:
        return [
            RecurrentLayer(
                index=index,
                units=int(block.lru_width),
                channels=int(block.lru_width),
                channel_width=1,
                unit_channel=torch.arange(int(block.lru_width)),
                kind="RG-LRU channel",
            )
            for index, block in self._blocks().items()
        ]

    def _output_projection(self, index: int) -> torch.nn.Module:
        return self._blocks()[index].linear_out

    @staticmethod
    def retention(rg_lru: Any, activations: torch.Tensor) -> torch.Tensor:
        """``(B, T, C)`` float64 retentions from the input of ``rg_lru``, as ``RecurrentGemmaRglru.forward``."""
        batch, steps, width = activations.shape
        heads = rg_lru.num_attention_heads
        blocks = activations.double().reshape(batch * steps, heads, rg_lru.block_width).permute(1, 0, 2)
        gate = torch.baddbmm(
            rg_lru.recurrent_gate_bias.double()[:, None, :], blocks, rg_lru.recurrent_gate_weight.double()
        )
        gate = torch.sigmoid(gate.transpose(0, 1).reshape(batch, steps, width))
        return torch.exp(-8.0 * gate * torch.nn.functional.softplus(rg_lru.recurrent_param.double()))

    def _retention_hooks(self, indices: Sequence[int], sink: RetentionSink) -> list[Any]:
        blocks = self._blocks()
        handles = []
        for index in indices:
            rg_lru = blocks[index].rg_lru

            def hook(module: Any, args: Any, index: int = index) -> None:
                sink(index, self.retention(module, args[0]))

            handles.append(rg_lru.register_forward_pre_hook(hook))
        return handles

    def _forward(self, input_ids: torch.Tensor, state: Any, logits: bool) -> tuple[torch.Tensor | None, Any]:
        from transformers import DynamicCache

        batch, steps = input_ids.shape
        blocks = self._blocks()
        embedding = self.model.get_input_embeddings().weight
        if state is None:
            self.model._setup_cache(self.model.config, batch, embedding.device, embedding.dtype)
            state = _State(DynamicCache(config=self.model.config))
            for index, block in blocks.items():
                state.recurrent[index] = block.rg_lru.recurrent_states
                state.conv_inputs[index] = torch.zeros(
                    batch, block.lru_width, block.conv1d_width - 1, dtype=embedding.dtype, device=embedding.device
                )
        handles = []
        for index, block in blocks.items():
            block.rg_lru.recurrent_states = state.recurrent[index]
            block.conv1d_state = state.conv_inputs[index]  # what a one-token call continues from
            handles += self._convolution_hooks(block, state, index, continuing=state.offset > 0)
        position_ids = torch.arange(state.offset, state.offset + steps, device=input_ids.device)[None, :]
        try:
            output = self.model(input_ids, position_ids=position_ids, cache=state.cache, use_cache=True)
        finally:
            for handle in handles:
                handle.remove()
        state.offset += steps
        for index, block in blocks.items():
            state.recurrent[index] = block.rg_lru.recurrent_states
            if steps == 1:  # the one-token branch convolves with conv1d_state and shifts it itself
                state.conv_inputs[index] = block.conv1d_state
        return (output.logits if logits else None), state

    @staticmethod
    def _convolution_hooks(block: Any, state: _State, index: int, continuing: bool) -> list[Any]:
        """Hooks on ``block.conv_1d`` (called by a multi-token forward only) that prepend the previous
        window's last inputs and drop their outputs, and record this window's last inputs."""
        width = block.conv1d_width - 1

        def prepend(module: Any, args: Any) -> Any:
            (inputs,) = args
            joined = torch.cat([state.conv_inputs[index].to(inputs), inputs], dim=-1)
            state.conv_inputs[index] = joined[..., joined.shape[-1] - width :].clone()
            return (joined,) if continuing else None

        def drop(module: Any, args: Any, output: torch.Tensor) -> Any:
            return output[..., width:] if continuing else None

        return [block.conv_1d.register_forward_pre_hook(prepend), block.conv_1d.register_forward_hook(drop)]
