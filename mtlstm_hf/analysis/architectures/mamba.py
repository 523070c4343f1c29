"""Mamba (``MambaForCausalLM``): the selective SSM of every block, one unit per (channel, state).

transformers ``models/mamba/modeling_mamba.py``: ``MambaMixer.forward`` computes
``dt_t = softplus(dt_proj.weight @ x_proj(u_t)[:R] + dt_proj.bias)`` (``(D,)`` per token, ``R`` =
``time_step_rank``) and ``mamba_selective_scan`` discretises ``A = -exp(A_log)`` (``(D, N)``) as
``discrete_A = exp(A * dt)``: the state ``h_t[d, n] = exp(dt_t[d] A[d, n]) h_{t-1}[d, n] + dt_t[d]
B_t[n] u_t[d]``. The retention of unit ``(d, n)`` (flattened ``d N + n``) is

    a_t[d, n] = exp(dt_t[d] * A[d, n])

read here (float64) from the output of ``x_proj``, captured by a forward hook, and the parameters.
A channel ``d`` holds the ``N`` units ``(d, 0..N-1)``; its ablation zeroes column ``d`` of the input
of ``mixer.out_proj`` (the gated scan output, ``y_t[d] silu(z_t[d])``).

State across windows. transformers' full-sequence form (``mamba_selective_scan`` with more than one
token) starts its scan from a zero state even when the cache holds one ("Initial hidden state is
not supported by the kernel path"): feeding a stream in windows would forget the SSM state at every
window (only one-token calls use it). The adapter adds what the cached state ``h0`` contributes, as
the recurrence is linear in it: ``y_t[d] += sum_n C_t[n] (prod_{s <= t} a_s[d, n]) h0[d, n]`` on the
input of ``out_proj`` (times ``silu(z_t[d])``), and the state handed on becomes the zero-start final
state plus ``(prod_s a_s) h0``. Windows then give the logits of one forward over the whole row (tested
to 1e-5). A probe on the first use checks that the installed transformers drops the state; if a
version passes it to the scan, no correction is made.

At initialisation (``MambaMixer.init_mamba_weights``): ``A[d, n] = -(n + 1)`` and ``softplus(dt_proj.bias)
= exp(U(ln time_step_min, ln time_step_max))`` floored at ``time_step_floor``; with the input's part
of ``dt`` zero, ``T[d, n] = 1 / (dt[d] (n + 1))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import RecurrentAdapter, RecurrentLayer, RetentionSink

__all__ = ["MambaAdapter"]


class MambaAdapter(RecurrentAdapter):
    """:class:`~.base.RecurrentAdapter` of ``transformers.MambaForCausalLM`` (see the module docstring)."""

    architecture = "mamba"
    display_name = "Mamba"
    retention_formula = (
        "a_t[d, n] = exp(dt_t[d] * A[d, n]), A = -exp(A_log), dt_t = softplus(dt_proj(x_proj(u_t)[:time_step_rank]))"
    )
    source = "transformers/models/mamba/modeling_mamba.py (MambaMixer.forward, mamba_selective_scan)"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self._drops_state: bool | None = None
        self.drops_state()  # probed now, before any hook of the adapter or of a caller is on the mixer

    def _mixers(self) -> list[Any]:
        return [block.mixer for block in self.model.backbone.layers]

    def layers(self) -> list[RecurrentLayer]:
        result = []
        for index, mixer in enumerate(self._mixers()):
            channels, states = int(mixer.intermediate_size), int(mixer.ssm_state_size)
            result.append(
                RecurrentLayer(
                    index=index,
                    units=channels * states,
                    channels=channels,
                    channel_width=1,
                    unit_channel=torch.arange(channels * states) // states,
                    kind="selective SSM state (channel x state)",
                )
            )
        return result

    def _output_projection(self, index: int) -> torch.nn.Module:
        return self._mixers()[index].out_proj

    @staticmethod
    def _time_step(mixer: Any, projected: torch.Tensor) -> torch.Tensor:
        """``dt (B, T, D)`` float64 from the output of ``x_proj``, as ``MambaMixer.forward``."""
        time_step = projected[..., : mixer.time_step_rank].double()
        raw = time_step @ mixer.dt_proj.weight.double().T + mixer.dt_proj.bias.double()
        return torch.nn.functional.softplus(raw)

    @staticmethod
    def _log_retention(mixer: Any, time_step: torch.Tensor) -> torch.Tensor:
        """``dt A``: ``(B, T, D, N)`` float64 log-retentions."""
        return time_step[..., None] * -torch.exp(mixer.A_log.double())

    def _retention_hooks(self, indices: Sequence[int], sink: RetentionSink) -> list[Any]:
        handles = []
        mixers = self._mixers()
        for index in indices:
            mixer = mixers[index]

            def hook(module: Any, args: Any, output: torch.Tensor, index: int = index, mixer: Any = mixer) -> None:
                log_a = self._log_retention(mixer, self._time_step(mixer, output))
                sink(index, log_a.exp().reshape(*log_a.shape[:2], -1))

            handles.append(mixer.x_proj.register_forward_hook(hook))
        return handles

    # ------------------------------------------------------------------ the state across windows

    def _forward(self, input_ids: torch.Tensor, state: Any, logits: bool) -> tuple[torch.Tensor | None, Any]:
        handles = self._state_hooks() if state is not None and input_ids.shape[1] > 1 and self.drops_state() else []
        try:
            return super()._forward(input_ids, state, logits)
        finally:
            for handle in handles:
                handle.remove()

    def drops_state(self) -> bool:
        """Whether the installed transformers' full-sequence form ignores the cached SSM state (probed
        once, when the adapter is made, on the first block: the same two tokens after two different
        cached states give the same output)."""
        if self._drops_state is None:
            from transformers import DynamicCache

            mixer = self._mixers()[0]
            weight = mixer.in_proj.weight
            generator = torch.Generator().manual_seed(0)
            inputs = torch.randn(2, 1, 2, mixer.hidden_size, generator=generator).to(weight)
            outputs = []
            with torch.no_grad():
                for scale in (0.0, 1.0):
                    cache = DynamicCache(config=self.model.config)
                    mixer(inputs[0], cache=cache)
                    state = cache.get_recurrent_state(mixer.layer_idx)
                    assert state is not None  # the first call initialised it
                    cache.update_recurrent_state(torch.full_like(state, scale), mixer.layer_idx)
                    outputs.append(mixer(inputs[1], cache=cache))
            self._drops_state = bool(torch.equal(outputs[0], outputs[1]))
        return self._drops_state

    def _state_hooks(self) -> list[Any]:
        """Hooks that add the cached state's contribution to one multi-token forward (module docstring)."""
        handles: list[Any] = []
        for mixer in self._mixers():
            saved: dict[str, Any] = {}

            def start(module: Any, args: Any, kwargs: Any, saved: dict[str, Any] = saved) -> None:
                saved.clear()
                cache = kwargs.get("cache")
                h0 = None if cache is None else cache.get_recurrent_state(module.layer_idx)
                if h0 is not None:
                    saved["h0"] = h0.detach().double().clone()

            def gate(
                module: Any, args: Any, output: torch.Tensor, saved: dict[str, Any] = saved, mixer: Any = mixer
            ) -> None:
                if "h0" in saved:
                    saved["z"] = output[..., mixer.intermediate_size :].double()

            def projected(
                module: Any, args: Any, output: torch.Tensor, saved: dict[str, Any] = saved, mixer: Any = mixer
            ) -> None:
                if "h0" in saved:
                    cumulative = torch.cumsum(self._log_retention(mixer, self._time_step(mixer, output)), dim=1)
                    saved["decay"] = cumulative.exp()  # (B, T, D, N): prod_{s <= t} a_s
                    saved["C"] = output[..., mixer.time_step_rank + mixer.ssm_state_size :].double()  # (B, T, N)

            def add_state(module: Any, args: Any, saved: dict[str, Any] = saved) -> Any:
                if "h0" not in saved:
                    return None
                inputs, *rest = args
                # y_t[d] = sum_n C_t[n] decay_t[d, n] h0[d, n], gated as the scan output: * silu(z_t[d]).
                carried = torch.einsum("btn,btdn,bdn->btd", saved["C"], saved["decay"], saved["h0"])
                carried = carried * torch.nn.functional.silu(saved["z"])
                return ((inputs.double() + carried).to(inputs.dtype), *rest)

            def finish(module: Any, args: Any, kwargs: Any, output: Any, saved: dict[str, Any] = saved) -> None:
                if "h0" in saved:
                    cache = kwargs["cache"]
                    zero_start = cache.get_recurrent_state(module.layer_idx)
                    final = zero_start.double() + saved["decay"][:, -1] * saved["h0"]
                    cache.update_recurrent_state(final.to(zero_start.dtype), module.layer_idx)
                saved.clear()

            handles.append(mixer.register_forward_pre_hook(start, with_kwargs=True))
            handles.append(mixer.in_proj.register_forward_hook(gate))
            handles.append(mixer.x_proj.register_forward_hook(projected))
            # First of the pre-hooks: an ablation's zeroing (registered before) must see the sum.
            handles.append(mixer.out_proj.register_forward_pre_hook(add_state, prepend=True))
            handles.append(mixer.register_forward_hook(finish, with_kwargs=True))
        return handles
