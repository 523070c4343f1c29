"""Exact per-step gates and memory cells of any cell type, and the LSTM as a weighted sum.

:func:`gates_and_cells` recovers ``i_t, f_t, o_t, c~_t, c_t, h_t`` for a whole sequence
without a Python loop over time: given the hidden outputs ``h_1..h_T`` (from the fast fused
forward, or passed in), every gate depends only on ``x_t`` and ``h_{t-1}``, so all gates come
from batched matmuls, and the cells from the linear recurrence ``c_t = f_t c_{t-1} + i_t c~_t``
evaluated by the model's parallel ``scan.linear_scan``.

Levy et al. (2018, Sec. 3) unroll that recurrence into an element-wise weighted sum::

    c_t = sum_{j<=t} w_j^t * c~_j + (prod_{k<=t} f_k) * c_{-1},   w_j^t = i_j * prod_{k=j+1..t} f_k

:func:`weighted_sum_log_weights` returns ``log w_j^t`` (``= log i_j + F_t - F_j`` with
``F = cumsum(log f)``) and the log weight of the initial cell; :func:`reconstruct_cells` sums
the terms back (a consistency check); :func:`weighted_sum_span` prepares a slice
``[start, end)`` of a longer sequence, whose "initial cell" is then ``c_{start-1}``.

Used by analysis and tests; not part of the model that travels to the Hub.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..models.mtlstm.kernel_scan import linear_scan
from ..models.mtlstm.kernel_variants import hidden_from_cell
from ..models.mtlstm.layouts import CELL_CANDIDATE, FORGET_GATE, HIDDEN, INPUT_GATE, OUTPUT_GATE, cell_layout
from ..models.mtlstm.naive import TRACE_KEYS, activate_gates, check_parameters, gate_preactivations, variant_sequence

if TYPE_CHECKING:
    from ..models.mtlstm.layers import MTLSTMLayer


def gates_and_cells(
    cell_type: str,
    inputs: torch.Tensor,
    initial_hidden: torch.Tensor,
    initial_cell: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor | None,
    bias: torch.Tensor,
    lengths: torch.Tensor | None = None,
    hidden_outputs: torch.Tensor | None = None,
) -> dict[str, torch.Tensor | None]:
    """Every gate, candidate, cell and hidden state of one layer over a sequence.

    Args:
        cell_type: one of ``layouts.CELL_TYPES``.
        inputs: ``(B, T, E)``; initial_hidden, initial_cell: ``(B, H)`` (the cell is ignored
            for ``lstm-gates``).
        weight_ih, weight_hh, bias: the layer's parameters (layout in ``models/mtlstm/naive.py``).
        lengths: optional ``(B,)`` valid leading steps per row.
        hidden_outputs: optional ``(B, T, H)`` outputs of this same layer on these inputs
            (e.g. kept from the model's forward); computed with the fast forward if None.

    Returns:
        ``{"input_gate", "forget_gate", "output_gate", "cell_candidate", "cell", "hidden"}``,
        each ``(B, T, H)`` or None where the cell type lacks it (``lstm-srnn-out`` has no
        output gate; ``lstm-gates`` only has ``hidden``). Padded steps (``t >= lengths[b]``)
        are identity steps: ``i = 0``, ``f = 1``, ``o = 0``, ``c~ = 0``, the cell carried
        from the last valid step and ``hidden = 0``, exactly like :func:`.naive.reference_trace`.
    """
    layout = cell_layout(cell_type)
    check_parameters(layout, inputs, weight_ih, weight_hh, bias)
    if hidden_outputs is None and (layout.recurrent_gate_rows or not layout.has_cell):
        hidden_outputs, _, _ = variant_sequence(
            cell_type, inputs, initial_hidden, initial_cell, weight_ih, weight_hh, bias, lengths
        )
    result: dict[str, torch.Tensor | None] = dict.fromkeys(TRACE_KEYS)
    if not layout.has_cell:  # tanh RNN: the hidden state is all there is
        result[HIDDEN] = hidden_outputs
        return result
    previous_hidden = None
    if layout.recurrent_gate_rows:
        assert hidden_outputs is not None  # computed above for a layout with recurrent rows
        # h_{t-1} at every step: the initial state, then the outputs shifted by one.
        previous_hidden = torch.cat([initial_hidden[:, None], hidden_outputs[:, :-1]], dim=1)
    gates = activate_gates(layout, gate_preactivations(layout, inputs, previous_hidden, weight_ih, weight_hh, bias))
    if lengths is not None:
        steps = torch.arange(inputs.shape[1], device=inputs.device)
        valid = (steps < lengths.to(inputs.device)[:, None])[..., None]
        padded_value = {INPUT_GATE: 0.0, FORGET_GATE: 1.0, OUTPUT_GATE: 0.0, CELL_CANDIDATE: 0.0}
        gates = {name: torch.where(valid, value, padded_value[name]) for name, value in gates.items()}
    result.update(gates)
    if initial_cell is None:  # (linear_scan raised AttributeError for it)
        raise TypeError(f"{cell_type} has a memory cell: initial_cell is needed")
    cells = linear_scan(gates[FORGET_GATE], gates[INPUT_GATE] * gates[CELL_CANDIDATE], initial_cell)
    result["cell"] = cells
    if hidden_outputs is None:  # lstm-srnn-hidden: h_t needs only o_t and c_t
        hidden_outputs = hidden_from_cell(layout, cells, gates.get(OUTPUT_GATE))
        if lengths is not None:
            hidden_outputs = torch.where(valid, hidden_outputs, 0.0)
    result[HIDDEN] = hidden_outputs
    return result


def layer_gates_and_cells(
    layer: MTLSTMLayer,
    inputs: torch.Tensor,
    initial_hidden: torch.Tensor,
    initial_cell: torch.Tensor,
    lengths: torch.Tensor | None = None,
    hidden_outputs: torch.Tensor | None = None,
) -> dict[str, torch.Tensor | None]:
    """:func:`gates_and_cells` of one ``MTLSTMLayer`` (its cell type, weights and biases), with
    the recurrent weight of the layer's current mode (call in ``eval()`` for analysis: no
    DropConnect). ``initial_cell`` is ``(B, layer.cell_size)``."""
    cell = initial_cell if layer.layout.has_cell else None
    return gates_and_cells(
        layer.cell_type, inputs, initial_hidden, cell, layer.weight_ih, layer.recurrent_weight(),
        layer.gate_biases.concatenated(inputs.dtype), lengths, hidden_outputs,
    )  # fmt: skip


def weighted_sum_log_weights(input_gate: torch.Tensor, forget_gate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log weights of the LSTM-as-weighted-sum view (Levy et al. 2018, eq. 3).

    ``log w_j^t = log i_j + sum_{k=j+1..t} log f_k`` (mathematically ``log i_j + F_t - F_j``
    with ``F = cumsum(log f)``). The sum is formed directly for each ``(t, j)`` rather than as
    a difference of two cumulative sums: no cancellation between large ``F`` values over long
    spans, and a gate of exactly 0 gives ``-inf`` (weight 0) instead of ``-inf - (-inf) = nan``.

    Args:
        input_gate: ``(B, T, H)`` values ``i_j`` in ``[0, 1]``.
        forget_gate: ``(B, T, H)`` values ``f_k`` in ``[0, 1]``.

    Returns:
        ``(log_weights (B, T_t, T_j, H), log_initial_weight (B, T, H))``: ``log_weights[b, t, j]``
        is ``log w_j^t`` (``-inf`` where ``j > t``), ``log_initial_weight[b, t]`` is
        ``sum_{k<=t} log f_k``, the log weight of the initial cell ``c_{-1}``. Memory is
        ``O(B T^2 H)``: use :func:`weighted_sum_span` for a window of a long sequence.
    """
    log_forget = torch.log(forget_gate)
    steps = torch.arange(forget_gate.shape[1], device=forget_gate.device)
    later = (steps[:, None] > steps[None, :])[None, :, :, None]  # (1, T_t, T_j, 1): t > j
    # Running over t for each fixed j, add log f_t once t has passed j: the cumulative sum is
    # then exactly sum_{k=j+1..t} log f_k (0 for t <= j).
    decay = torch.where(later, log_forget[:, :, None], 0.0).cumsum(1)
    causal = later | (steps[:, None] == steps[None, :])[None, :, :, None]
    log_weights = torch.where(causal, torch.log(input_gate)[:, None] + decay, float("-inf"))
    return log_weights, log_forget.cumsum(1)


def reconstruct_cells(
    log_weights: torch.Tensor,
    log_initial_weight: torch.Tensor,
    cell_candidate: torch.Tensor,
    initial_cell: torch.Tensor,
) -> torch.Tensor:
    """Sum the weighted-sum terms back: ``c_t = sum_j w_j^t c~_j + exp(log_initial_weight_t) c_{-1}``.

    Args:
        log_weights: ``(B, T, T, H)`` from :func:`weighted_sum_log_weights`.
        log_initial_weight: ``(B, T, H)``.
        cell_candidate: ``(B, T, H)`` ``c~_j`` (any sign: the weights are positive, so the
            terms are formed as ``exp(log w) * c~`` without logs of the candidate).
        initial_cell: ``(B, H)`` the cell before the first step of the span.

    Returns:
        ``(B, T, H)`` cells ``c_t``.
    """
    weighted = torch.einsum("btjh,bjh->bth", log_weights.exp(), cell_candidate)
    return weighted + log_initial_weight.exp() * initial_cell[:, None]


def weighted_sum_span(
    trace: dict[str, torch.Tensor | None], start: int, end: int, initial_cell: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The weighted-sum view of the span ``[start, end)`` of a longer sequence.

    Inside the span, ``c_t = sum_{start<=j<=t} w_j^t c~_j + (prod_{start<=k<=t} f_k) c_{start-1}``.

    Args:
        trace: the output of :func:`gates_and_cells` for the whole sequence (a cell type
            with a memory cell).
        start, end: the span, ``0 <= start < end <= T``.
        initial_cell: ``(B, H)`` the cell before step 0 of the whole sequence (used when
            ``start == 0``).

    Returns:
        ``{"log_weights" (B, S, S, H), "log_initial_weight" (B, S, H), "cell_candidate" (B, S, H),
        "initial_cell" (B, H), "cell" (B, S, H)}`` with ``S = end - start``; feed the first four
        to :func:`reconstruct_cells` to get ``cell``.
    """
    cell = trace["cell"]
    if cell is None:
        raise ValueError("weighted_sum_span needs a cell type with a memory cell (not 'lstm-gates').")
    total_steps = cell.shape[1]
    if not 0 <= start < end <= total_steps:
        raise ValueError(f"span must satisfy 0 <= start < end <= T={total_steps}; got [{start}, {end}).")
    span = slice(start, end)
    input_gate, forget_gate, candidate = trace[INPUT_GATE], trace[FORGET_GATE], trace[CELL_CANDIDATE]
    if input_gate is None or forget_gate is None or candidate is None:  # every cell type with a cell has them
        raise ValueError("weighted_sum_span needs the trace's input gate, forget gate and cell candidate.")
    log_weights, log_initial_weight = weighted_sum_log_weights(input_gate[:, span], forget_gate[:, span])
    return {
        "log_weights": log_weights,
        "log_initial_weight": log_initial_weight,
        "cell_candidate": candidate[:, span],
        "initial_cell": initial_cell if start == 0 else cell[:, start - 1],
        "cell": cell[:, span],
    }


def weighted_sum_norms(log_weights: torch.Tensor) -> torch.Tensor:
    """``||w_j^t||_2`` over the hidden units, computed in log space (no underflow of tiny weights).

    Args:
        log_weights: ``(..., T_t, T_j, H)``.

    Returns:
        ``(..., T_t, T_j)``; 0 where ``j > t``.
    """
    return torch.exp(0.5 * torch.logsumexp(2.0 * log_weights, dim=-1))
