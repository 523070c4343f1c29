"""Slow, obviously correct per-step loops of every cell type: the test oracles of the fast
sequence kernels (``models/mtlstm/variants.py``) and of the gate extraction (:mod:`.gates`).

Each step is :func:`~mtlstm_hf.models.mtlstm.cells.cell_step`, the one place the cell
equations are written. Not part of the model that travels to the Hub.
"""

from __future__ import annotations

import torch

from ..models.mtlstm.cells import (
    CELL_CANDIDATE,
    FORGET_GATE,
    HIDDEN,
    INPUT_GATE,
    OUTPUT_GATE,
    TRACE_KEYS,
    cell_layout,
    cell_step,
    check_parameters,
    last_valid_step,
    present_trace_keys,
)


def reference_trace(
    cell_type: str,
    inputs: torch.Tensor,
    initial_hidden: torch.Tensor,
    initial_cell: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor | None,
    bias: torch.Tensor,
    lengths: torch.Tensor | None = None,
) -> dict[str, torch.Tensor | None]:
    """Slow per-step loop of the cell equations, recording every gate and state.

    The test oracle for ``variants.py`` and :mod:`.gates`. A padded step (``t >= lengths[b]``)
    is the identity step: the state is untouched, which the trace records as ``i = 0``,
    ``f = 1``, ``o = 0``, ``c~ = 0``, ``c_t = c_{t-1}`` (carried) and hidden output 0.

    Args:
        cell_type: one of ``cells.CELL_TYPES``.
        inputs: ``(B, T, E)``.
        initial_hidden: ``(B, H)``.
        initial_cell: ``(B, H)``; ignored (may be None) for a cell without memory cell.
        weight_ih, weight_hh, bias: per-type layout in ``models/mtlstm/cells.py``.
        lengths: optional ``(B,)`` valid leading steps per row.

    Returns:
        ``{key: (B, T, H) or None}`` for each key of :data:`TRACE_KEYS` (None where the cell
        lacks the quantity; ``hidden`` holds the outputs).
    """
    layout = cell_layout(cell_type)
    check_parameters(layout, inputs, weight_ih, weight_hh, bias)
    total_steps = inputs.shape[1]
    lengths = None if lengths is None else lengths.to(inputs.device)
    hidden = initial_hidden
    cell = initial_cell if layout.has_cell else None
    # Values of each traced quantity at a padded (identity) step; the cell is carried.
    identity = {INPUT_GATE: 0.0, FORGET_GATE: 1.0, OUTPUT_GATE: 0.0, CELL_CANDIDATE: 0.0, HIDDEN: 0.0}
    steps: dict[str, list[torch.Tensor]] = {key: [] for key in TRACE_KEYS}
    for step in range(total_steps):
        gates = cell_step(layout, inputs[:, step], hidden, cell, weight_ih, weight_hh, bias)
        if lengths is not None:
            valid = (lengths > step)[:, None]
            padded = {**identity, "cell": cell}
            gates = {key: torch.where(valid, value, padded[key]) for key, value in gates.items()}
            hidden = torch.where(valid, gates[HIDDEN], hidden)
        else:
            hidden = gates[HIDDEN]
        cell = gates.get("cell")
        for key, value in gates.items():
            steps[key].append(value)
    present = present_trace_keys(layout)
    empty = inputs.new_zeros(inputs.shape[0], 0, initial_hidden.shape[1])
    return {
        key: (torch.stack(steps[key], 1) if total_steps else empty) if key in present else None for key in TRACE_KEYS
    }


def reference_sequence(
    cell_type: str,
    inputs: torch.Tensor,
    initial_hidden: torch.Tensor,
    initial_cell: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor | None,
    bias: torch.Tensor,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Slow reference of one layer over a sequence (same contract as ``variants.variant_sequence``).

    Returns:
        ``(outputs (B, T, H), final_hidden (B, H), final_cell (B, H) or None)``. With
        ``lengths``, row ``b``'s final state is its state after step ``lengths[b] - 1`` (the
        initial state when 0) and its outputs at padded steps are 0, like
        ``recurrences.lstm_sequence``.
    """
    trace = reference_trace(cell_type, inputs, initial_hidden, initial_cell, weight_ih, weight_hh, bias, lengths)
    outputs = trace[HIDDEN]
    final_hidden = last_valid_step(outputs, initial_hidden, lengths)
    # The cell is carried through padded steps, so its last step is the final cell.
    final_cell = None
    if trace["cell"] is not None:
        final_cell = trace["cell"][:, -1] if outputs.shape[1] else initial_cell
    return outputs, final_hidden, final_cell
