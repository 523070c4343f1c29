"""Per-layer traces of an MTLSTM: every gate, candidate, cell and hidden state, per token.

The single source of per-step quantities for the analyses (timescales, memory span, ...):

* :func:`forward_traces` / :func:`layer_traces` run **one** forward of the model with
  ``output_hidden_states=True`` and, per layer ``l``, pass ``hidden_states[l]`` (its input) and
  the layer's own outputs to :func:`mtlstm_hf.analysis.gates.layer_gates_and_cells`, which recovers
  ``i_t, f_t, o_t, c~_t, c_t, h_t`` with batched matmuls and a parallel scan (no Python loop
  over time for the standard cell).
* :func:`stream_traces` walks a long token stream in windows, carrying the recurrent state from
  one window to the next (the stream cut into ``batch_size`` contiguous rows by
  ``mtlstm_hf.evaluation.perplexity.token_rows``, as :func:`mtlstm_hf.evaluation.token_log_probs` cuts it), and yields one :class:`TraceChunk` per window;
  only one window's traces are alive at a time.
* :func:`trace_moments` reduces that stream to running per-unit sums (``sum x``, ``sum x^2``,
  token count) per layer and trace key, e.g. the mean forget gate of every unit over a corpus.

Everything runs in eval mode (no dropout, raw recurrent weights) under ``torch.no_grad``;
the model's training flag is restored afterwards.

Trace dictionary of one layer (``B`` batch rows, ``T`` steps, ``H`` units, ``E`` input size)::

    "layer"                int, 0-based index into model.model.layers (layer numbers in reports count from 1)
    "cell_type"            str, e.g. "lstm"
    "inputs"               (B, T, E) hidden_states[l], what the layer received
    "outputs"              (B, T, H) hidden_states[l + 1], what the layer passed up
                           (columns zeroed by an active ablation are zero here)
    "initial_hidden"       (B, H) state before the first step
    "initial_cell"         (B, H) (B, 0 for a cell-less layer)
    "input_gate", "forget_gate", "output_gate", "cell_candidate", "cell", "hidden"
                           (B, T, H) or None where the cell type lacks it (see models/mtlstm/naive.py)

``"hidden"`` is the layer's own (un-ablated) ``h_t``, the one its recurrence uses; it equals
``"outputs"`` unless units are ablated (:mod:`.ablation`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch

from mtlstm_hf.analysis.gates import layer_gates_and_cells
from mtlstm_hf.evaluation.perplexity import token_rows, windows
from mtlstm_hf.models.mtlstm.naive import TRACE_KEYS
from mtlstm_hf.models.mtlstm.state import MTLSTMState
from mtlstm_hf.progress import open_progress

from .adapter import (
    active_ablation,
    base_model,
    eval_mode,
    model_device_dtype,
    resolve_layers,
)

if TYPE_CHECKING:
    from mtlstm_hf.models.mtlstm.layers import MTLSTMLayer

__all__ = ["TraceChunk", "TraceMoments", "forward_traces", "layer_traces", "stream_traces", "trace_moments"]


def _layers_of(base: torch.nn.Module) -> Sequence[MTLSTMLayer]:
    """``base.layers`` (of :func:`.adapter.base_model`), typed: an ``nn.ModuleList`` of ``MTLSTMLayer``."""
    return cast("Sequence[MTLSTMLayer]", base.layers)


def _initial_state(model: torch.nn.Module, cache: MTLSTMState | None, batch_size: int) -> MTLSTMState:
    """``cache`` on the model's device/dtype, or the zero state the model itself would use."""
    base = base_model(model)
    device, dtype = model_device_dtype(model)
    if cache is None:
        return MTLSTMState.zeros(
            batch_size,
            [layer.hidden_size for layer in _layers_of(base)],
            [layer.cell_size for layer in _layers_of(base)],
            device=device,
            dtype=dtype,
        )
    return cache.to(device=device, dtype=dtype)


@dataclass
class TraceChunk:
    """Traces of one forward call.

    Attributes:
        layers: one trace dict per requested layer (keys in the module docstring).
        cache: the state after the chunk (to continue the stream).
        input_ids: ``(B, T)`` the chunk's tokens.
        start: position of the chunk's first token within each batch row of the stream.
    """

    layers: list[dict[str, Any]]
    cache: MTLSTMState
    input_ids: torch.Tensor
    start: int = 0


def forward_traces(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    cache: MTLSTMState | None = None,
    layers: int | Sequence[int] | None = None,
) -> TraceChunk:
    """One forward of the model plus each requested layer's gates and cells.

    Args:
        model: ``MTLSTMForCausalLM`` or ``MTLSTMModel``.
        input_ids: ``(B, T)`` token ids.
        cache: state to continue from (``None`` = zeros).
        layers: 0-based indices into ``model.model.layers`` of the layers to trace (default all).

    Returns:
        A :class:`TraceChunk`; its ``layers`` follow the order of ``layers``.
    """
    input_ids = torch.as_tensor(input_ids)
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (batch, sequence), got {tuple(input_ids.shape)}.")
    base = base_model(model)
    layer_indices = resolve_layers(model, layers)
    device, _ = model_device_dtype(model)
    input_ids = input_ids.to(device)
    state = _initial_state(model, cache, input_ids.shape[0])
    with eval_mode(model):
        # The base model only: no (B, T, V) logits are needed for traces.
        output = base(input_ids=input_ids, cache=state, use_cache=True, output_hidden_states=True)
        hidden_states = output.hidden_states
        traces = []
        for index in layer_indices:
            layer = _layers_of(base)[index]
            passed_up = hidden_states[index + 1]
            # Under an ablation the outputs passed up have zeroed columns but the layer's own
            # recurrence used the intact h_{t-1}: let gates_and_cells recompute h from the inputs.
            own_outputs = None if active_ablation(layer) is not None else passed_up
            gates = layer_gates_and_cells(
                layer, hidden_states[index], state.hidden[index], state.cell[index], hidden_outputs=own_outputs
            )
            trace: dict[str, Any] = {
                "layer": index,
                "cell_type": layer.cell_type,
                "inputs": hidden_states[index],
                "outputs": passed_up,
                "initial_hidden": state.hidden[index],
                "initial_cell": state.cell[index],
            }
            trace.update({key: gates[key] for key in TRACE_KEYS})
            traces.append(trace)
    return TraceChunk(traces, output.cache, input_ids)


def layer_traces(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    cache: MTLSTMState | None = None,
    layers: int | Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Per-layer traces of ``input_ids (B, T)``: ``forward_traces(...).layers`` (see module docstring)."""
    return forward_traces(model, input_ids, cache, layers).layers


def stream_traces(
    model: torch.nn.Module,
    stream: torch.Tensor,
    batch_size: int = 1,
    window: int = 70,
    layers: int | Sequence[int] | None = None,
    max_tokens: int | None = None,
    min_row_length: int = 1,
    progress: Any = False,
) -> Iterator[TraceChunk]:
    """Traces of a long token stream, one window at a time, with the state carried across windows.

    The stream is cut by ``mtlstm_hf.evaluation.perplexity.token_rows`` (in its ``windows``); each row starts from the zero state and is fed in
    windows of ``window`` tokens, each continuing from the previous window's final state, so
    the traces equal those of one forward over the whole row (``window`` only bounds memory).
    ``layers`` are 0-based indices into ``model.model.layers``. ``progress``: True for a progress
    bar over windows, or an object with ``total`` and ``update(n)`` advanced once per window.

    Yields:
        :class:`TraceChunk` per window, ``start`` = the window's offset within the rows.
    """
    rows = token_rows(stream, batch_size, max_tokens, min_row_length)
    spans = windows(rows.shape[1], window, targets=False)
    layer_indices = resolve_layers(model, layers)
    state = None
    with open_progress(progress, total=len(spans), desc="traces", unit="window") as bar:
        for start, stop in spans:
            chunk = forward_traces(model, rows[:, start:stop], state, layer_indices)
            chunk.start = start
            state = chunk.cache
            yield chunk
            bar.update(1)


@dataclass
class TraceMoments:
    """Running per-unit sums of trace quantities over a stream.

    Attributes:
        layers: the layer indices, in the order of the other fields.
        sums: per layer ``{key: (H,) float64 sum over tokens}``.
        squares: per layer ``{key: (H,) float64 sum of squares}``.
        num_tokens: tokens summed over (``B * n`` for the whole stream).
        cell_types: per layer cell type.
    """

    layers: list[int]
    sums: list[dict[str, torch.Tensor]]
    squares: list[dict[str, torch.Tensor]]
    num_tokens: int = 0
    cell_types: list[str] = field(default_factory=list)

    def mean(self, key: str) -> list[torch.Tensor | None]:
        """Per layer, the per-unit mean ``(H,)`` of ``key`` (None where the layer lacks it)."""
        return [sums[key] / self.num_tokens if key in sums else None for sums in self.sums]

    def std(self, key: str) -> list[torch.Tensor | None]:
        """Per layer, the per-unit population standard deviation ``(H,)`` of ``key``."""
        result: list[torch.Tensor | None] = []
        for sums, squares in zip(self.sums, self.squares):
            if key not in sums:
                result.append(None)
                continue
            mean = sums[key] / self.num_tokens
            result.append((squares[key] / self.num_tokens - mean**2).clamp(min=0.0).sqrt())
        return result


def trace_moments(
    model: torch.nn.Module,
    stream: torch.Tensor,
    keys: Sequence[str] = ("forget_gate",),
    batch_size: int = 1,
    window: int = 70,
    layers: int | Sequence[int] | None = None,
    max_tokens: int | None = None,
    progress: bool = False,
) -> TraceMoments:
    """Per-unit sums and sums of squares of trace ``keys`` over a stream (memory ``O(H)`` per key).

    A key a layer lacks (e.g. ``forget_gate`` of ``lstm-gates``) is simply absent from that
    layer's sums. Arguments as in :func:`stream_traces`.
    """
    unknown = [key for key in keys if key not in TRACE_KEYS]
    if unknown:
        raise ValueError(f"unknown trace keys {unknown}; allowed: {list(TRACE_KEYS)}.")
    layer_indices = resolve_layers(model, layers)
    base = base_model(model)
    moments = TraceMoments(
        layer_indices,
        [{} for _ in layer_indices],
        [{} for _ in layer_indices],
        cell_types=[_layers_of(base)[index].cell_type for index in layer_indices],
    )
    for chunk in stream_traces(model, stream, batch_size, window, layer_indices, max_tokens, progress=progress):
        for position, trace in enumerate(chunk.layers):
            for key in keys:
                value = trace[key]
                if value is None:
                    continue
                value = value.detach().double().reshape(-1, value.shape[-1])  # (B T, H), float64 sums
                sums, squares = moments.sums[position], moments.squares[position]
                sums[key] = sums.get(key, 0.0) + value.sum(0).cpu()
                squares[key] = squares.get(key, 0.0) + value.pow(2).sum(0).cpu()
        moments.num_tokens += chunk.input_ids.numel()
    return moments
