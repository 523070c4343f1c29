"""Mamba2 (``Mamba2ForCausalLM``): the SSD recurrence of every block, one unit per head.

transformers ``models/mamba2/modeling_mamba2.py``: ``Mamba2Mixer.forward`` splits the output of
``in_proj`` into ``[gate (D), conv input (D + 2 G N), dt (H)]``, and ``mamba2_chunk_scan`` (and
``mamba2_selective_state_update`` for one token) discretises the scalar ``A_h = -exp(A_log[h])`` of
each head ``h`` with ``dt_t[h] = clamp(softplus(dt[h] + dt_bias[h]), *time_step_limit)``: every
entry of head ``h``'s state ``(head_dim, N)`` keeps ``exp(dt_t[h] A_h)`` per step. The retention of
unit ``h`` is

    a_t[h] = exp(dt_t[h] * A_h)

read here (float64) from the output of ``in_proj``, captured by a forward hook, and the parameters.
(The one-token path, ``mamba2_selective_state_update``, does not apply ``time_step_limit``; with
the default limit ``(0, inf)`` the two agree.) A channel is a head (``head_dim`` columns); its
ablation zeroes the head's columns of the input of ``mixer.out_proj`` (after the gated norm).
transformers passes the cached state to the chunked scan (``initial_states``), so windows continue
the state as they are.

At initialisation (``Mamba2Mixer.init_mamba2_weights``): ``A_h = -(h + 1)`` (h = 0..H-1; the reference
``mamba_ssm`` draws ``A ~ U(1, 16)`` instead) and ``softplus(dt_bias) = exp(U(ln time_step_min, ln
time_step_max))`` floored at ``time_step_floor``; with the input's part of ``dt`` zero,
``T_h = 1 / (dt_h (h + 1))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import RecurrentAdapter, RecurrentLayer, RetentionSink

__all__ = ["Mamba2Adapter"]


class Mamba2Adapter(RecurrentAdapter):
    """:class:`~.base.RecurrentAdapter` of ``transformers.Mamba2ForCausalLM`` (see the module docstring)."""

    architecture = "mamba2"
    display_name = "Mamba2"
    retention_formula = (
        "a_t[h] = exp(dt_t[h] * A_h), A = -exp(A_log), dt_t = clamp(softplus(in_proj(u_t)[-H:] + dt_bias))"
    )
    source = "transformers/models/mamba2/modeling_mamba2.py (Mamba2Mixer.forward, mamba2_chunk_scan)"

    def _mixers(self) -> list[Any]:
        return [block.mixer for block in self.model.backbone.layers]

    def layers(self) -> list[RecurrentLayer]:
        return [
            RecurrentLayer(
                index=index,
                units=int(mixer.num_heads),
                channels=int(mixer.num_heads),
                channel_width=int(mixer.head_dim),
                unit_channel=torch.arange(int(mixer.num_heads)),
                kind="SSD head (one decay per head)",
            )
            for index, mixer in enumerate(self._mixers())
        ]

    def _output_projection(self, index: int) -> torch.nn.Module:
        return self._mixers()[index].out_proj

    @staticmethod
    def retention(mixer: Any, projected: torch.Tensor) -> torch.Tensor:
        """``(B, T, H)`` float64 retentions from the output of ``mixer.in_proj``."""
        low, high = mixer.time_step_limit
        time_step = torch.nn.functional.softplus(projected[..., -mixer.num_heads :].double() + mixer.dt_bias.double())
        time_step = time_step.clamp(min=low, max=high)
        return torch.exp(time_step * -torch.exp(mixer.A_log.double()))

    def _retention_hooks(self, indices: Sequence[int], sink: RetentionSink) -> list[Any]:
        mixers = self._mixers()
        handles = []
        for index in indices:
            mixer = mixers[index]

            def hook(module: Any, args: Any, output: torch.Tensor, index: int = index, mixer: Any = mixer) -> None:
                sink(index, self.retention(mixer, output))

            handles.append(mixer.in_proj.register_forward_hook(hook))
        return handles
