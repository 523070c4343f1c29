"""xLSTM (``xLSTMForCausalLM``): the mLSTM cell of every block, one unit per head (its forget gate).

transformers ``models/xlstm/modeling_xlstm.py``: ``xLSTMLayer.forward`` computes the forget-gate
pre-activation ``f = soft_cap(fgate_preact(x), gate_soft_cap)`` per head (``ifgate_preact``'s second
half with ``weight_mode="fused"``), and the backends (``mlstm_recurrent_step_native``,
``mlstm_chunkwise_native_autograd``) decay the head's matrix memory ``C`` and normaliser ``n`` by
``exp(logsigmoid(f))`` per step (stored with a stabiliser ``m``, which rescales ``C`` and ``n``
together and leaves the decay of the state they represent unchanged). The retention of head ``h``
is its forget gate

    a_t[h] = sigmoid(soft_cap(f_t[h])) = exp(logsigmoid(soft_cap(f_t[h])))

read here (float64) from the output of ``fgate_preact`` (``ifgate_preact``), captured by a forward
hook. A channel is a head (``v_dim / num_heads`` columns); its ablation zeroes the head's columns of
the input of ``mlstm_layer.out_proj`` (after the multi-head norm and the output gate). The cache
(``xLSTMCache``) continues the state exactly across windows.

At initialisation (``xLSTMPreTrainedModel._init_weights``, ``weight_mode="single"``): the gate weights
are 0 and the forget bias is ``linspace(3, 6, H)``, so ``T_h = -1 / ln sigmoid(b_h)`` (about 20.6 to
404 tokens) whatever the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import RecurrentAdapter, RecurrentLayer, RetentionSink

__all__ = ["XlstmAdapter"]


class XlstmAdapter(RecurrentAdapter):
    """:class:`~.base.RecurrentAdapter` of ``transformers.xLSTMForCausalLM`` (see the module docstring)."""

    architecture = "xlstm"
    display_name = "xLSTM"
    retention_formula = "a_t[h] = sigmoid(soft_cap(fgate_preact(x_t)[h], gate_soft_cap)) (the mLSTM forget gate)"
    source = "transformers/models/xlstm/modeling_xlstm.py (xLSTMLayer.forward, mlstm_recurrent_step_native)"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        config = self.model.config
        layer_dims = (int(config.hidden_size * config.qk_dim_factor), int(config.hidden_size * config.v_dim_factor))
        if layer_dims != (config.qk_dim, config.v_dim):
            raise ValueError(
                f"this xLSTM's layers have qk/v widths {layer_dims} (hidden_size * qk_dim_factor, * v_dim_factor) but "
                f"transformers' xLSTMCache rounds them up to {(config.qk_dim, config.v_dim)} (multiples of 64): the "
                "state cannot be carried across windows. Give hidden_size * qk_dim_factor and hidden_size * "
                "v_dim_factor as multiples of 64."
            )

    def _cells(self) -> list[Any]:
        return [block.mlstm_layer for block in self.model.backbone.blocks]

    @property
    def num_layers(self) -> int:
        return len(self.model.backbone.blocks)

    def layers(self) -> list[RecurrentLayer]:
        heads = int(self.model.config.num_heads)
        return [
            RecurrentLayer(
                index=index,
                units=heads,
                channels=heads,
                channel_width=int(cell.v_dim) // heads,
                unit_channel=torch.arange(heads),
                kind="mLSTM head (forget gate)",
            )
            for index, cell in enumerate(self._cells())
        ]

    def _output_projection(self, index: int) -> torch.nn.Module:
        return self._cells()[index].out_proj

    def retention(self, preactivation: torch.Tensor) -> torch.Tensor:
        """``(B, T, H)`` float64 forget gates from the output of the forget-gate projection."""
        config = self.model.config
        heads = int(config.num_heads)
        values = preactivation.double()
        if config.weight_mode == "fused":
            values = values[..., heads:]
        cap = config.gate_soft_cap
        if cap is not None:
            values = cap * torch.tanh(values / cap)
        return torch.sigmoid(values)

    def _retention_hooks(self, indices: Sequence[int], sink: RetentionSink) -> list[Any]:
        cells = self._cells()
        handles = []
        for index in indices:
            cell = cells[index]
            module = cell.ifgate_preact if self.model.config.weight_mode == "fused" else cell.fgate_preact

            def hook(module: Any, args: Any, output: torch.Tensor, index: int = index) -> None:
                sink(index, self.retention(output))

            handles.append(module.register_forward_hook(hook))
        return handles
