"""The naive references of the kernels: the cell equations one step at a time, and slow
per-step loops over a sequence (test oracles of ``kernel_variants.py`` and of
``mtlstm_hf.analysis.gates``), with :func:`variant_sequence`, the checked entry point through
which the fast kernels are compared with them (the same contract).

Not part of the model that travels to the Hub: nothing the modelling file imports imports this
file (as fla keeps ``naive.py`` beside its kernels). Cell types and equations:

Levy, Lee, FitzGerald, Zettlemoyer, "Long Short-Term Memory as a Dynamically Computed
Element-wise Weighted Sum", ACL 2018, split the LSTM into a *content layer* (the cell
candidate ``c~_t``), a *memory cell* ``c_t = i_t * c~_t + f_t * c_{t-1}`` and an output
layer ``h_t = o_t * tanh(c_t)``, then remove parts of it. Cell types (one config string per
layer), with ``sigma`` the logistic sigmoid::

    lstm              i,f,o = sigma(W_x x_t + W_h h_{t-1} + b);  c~_t = tanh(W_cx x_t + W_ch h_{t-1} + b_c)
                      c_t = f_t c_{t-1} + i_t c~_t;                h_t = o_t tanh(c_t)
    lstm-srnn         as lstm with a linear content layer:       c~_t = W_cx x_t   (no h, no tanh, no bias)
    lstm-srnn-out     as lstm-srnn without output gate:          h_t = tanh(c_t)
    lstm-srnn-hidden  as lstm-srnn with every gate from x_t:     i,f,o = sigma(W_x x_t + b)
                      (the only recurrence left is the linear c_t = f_t c_{t-1} + i_t c~_t)
    lstm-gates        memory cell and gates removed: a plain tanh RNN
                      h_t = tanh(W_h h_{t-1} + W_x x_t + b);  no cell state

``lstm-gates`` is *this library's reading* of the paper's "LSTM - GATES" ablation, whose exact
definition was not verified against the paper (Levy et al. 2018, Sec. 3): with the gates gone,
``c_t = c~_t`` and ``h_t = tanh(c_t)``; folding the two tanh's into one gives the classic
Elman/S-RNN. Treat results with this cell as an S-RNN baseline until that is checked.

Parameter layout of one layer (``H`` hidden, ``E`` input); rows of the stacked matrices are
blocks of ``H`` named after the gate they feed (``input_gate``, ``forget_gate``,
``cell_candidate``, ``output_gate``; ``hidden`` for the tanh RNN), the bias is one
concatenated vector in :attr:`CellLayout.bias_gates` order:

    ==================  =====================  =====================  =================
    cell type           weight_ih rows         weight_hh rows         bias
    ==================  =====================  =====================  =================
    lstm                (4H, E) i, f, g, o     (4H, H) i, f, g, o     (4H) i, f, g, o
    lstm-srnn           (4H, E) i, f, g, o     (3H, H) i, f, o        (3H) i, f, o
    lstm-srnn-out       (3H, E) i, f, g        (2H, H) i, f           (2H) i, f
    lstm-srnn-hidden    (4H, E) i, f, g, o     None                   (3H) i, f, o
    lstm-gates          (H, E) hidden          (H, H) hidden          (H) hidden
    ==================  =====================  =====================  =================

"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .kernel_variants import hidden_from_cell, last_valid_step, sequence_function
from .layouts import CELL_CANDIDATE, FORGET_GATE, HIDDEN, INPUT_GATE, OUTPUT_GATE, CellLayout, cell_layout

TRACE_KEYS: tuple[str, ...] = (INPUT_GATE, FORGET_GATE, OUTPUT_GATE, CELL_CANDIDATE, "cell", HIDDEN)
"""Keys of a per-step trace (:func:`reference_trace`, ``mtlstm_hf.analysis.gates.gates_and_cells``)."""


def present_trace_keys(layout: CellLayout) -> set[str]:
    """Trace keys (:data:`TRACE_KEYS`) that exist for ``layout``; the others are None in a trace."""
    present = {HIDDEN} | set(layout.input_gate_rows)
    if layout.has_cell:
        present.add("cell")
    return present


def parameter_shapes(layout: CellLayout, input_size: int, hidden_size: int) -> dict[str, tuple[int, ...] | None]:
    """Expected shapes of ``weight_ih``, ``weight_hh`` (None if absent) and ``bias`` of ``layout``."""
    return {
        "weight_ih": (len(layout.input_gate_rows) * hidden_size, input_size),
        "weight_hh": (len(layout.recurrent_gate_rows) * hidden_size, hidden_size)
        if layout.recurrent_gate_rows
        else None,
        "bias": (len(layout.bias_gates) * hidden_size,),
    }


def check_parameters(
    layout: CellLayout,
    inputs: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor | None,
    bias: torch.Tensor,
) -> int:
    """Validate parameter shapes against ``layout`` for ``inputs (B, T, E)``; return ``H``.

    Raises:
        ValueError: with the expected and actual shapes.
    """
    blocks = len(layout.input_gate_rows)
    if weight_ih.dim() != 2 or weight_ih.shape[0] % blocks:
        raise ValueError(
            f"{layout.cell_type}: weight_ih must be ({blocks}H, E) with rows {layout.input_gate_rows}; "
            f"got {tuple(weight_ih.shape)}."
        )
    hidden_size = weight_ih.shape[0] // blocks
    expected = parameter_shapes(layout, inputs.shape[-1], hidden_size)
    actual = {
        "weight_ih": tuple(weight_ih.shape),
        "weight_hh": None if weight_hh is None else tuple(weight_hh.shape),
        "bias": tuple(bias.shape),
    }
    for name, shape in expected.items():
        if actual[name] != shape:
            raise ValueError(
                f"{layout.cell_type}: {name} must have shape {shape} (E={inputs.shape[-1]}, H={hidden_size}); "
                f"got {actual[name]}."
            )
    return hidden_size


# ---------------------------------------------------------------------------
# The cell equations, one step (written once)
# ---------------------------------------------------------------------------


def _recurrent_arguments(
    layout: CellLayout, previous_hidden: torch.Tensor | None, weight_hh: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(previous_hidden, weight_hh)`` for a layout with recurrent rows, which needs both.

    Raises:
        TypeError: one is None (as torch raises for a None tensor argument).
    """
    if previous_hidden is None or weight_hh is None:
        raise TypeError(
            f"{layout.cell_type}: previous_hidden and weight_hh are needed (recurrent rows {layout.recurrent_gate_rows})"
        )
    return previous_hidden, weight_hh


def gate_preactivations(
    layout: CellLayout,
    inputs: torch.Tensor,
    previous_hidden: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor | None,
    bias: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Pre-activation of every row block: ``W_x x + W_h h_prev + b`` (terms the layout has).

    Works for one step (``inputs (B, E)``, ``previous_hidden (B, H)``) or for all steps at
    once (``(B, T, E)`` and ``(B, T, H)`` holding ``h_{t-1}`` at ``t``): every term is a
    per-position linear map.

    Returns:
        ``{block name: (..., H)}`` for every name in ``layout.input_gate_rows``.
    """
    hidden_size = weight_ih.shape[0] // len(layout.input_gate_rows)
    if layout.input_gate_rows == layout.recurrent_gate_rows == layout.bias_gates:
        # Every block gets all three terms (lstm, lstm-gates): one matmul over [x, h_prev]
        # is faster than two (one pass over the (..., nH) output instead of three).
        hidden_term, recurrent_weight = _recurrent_arguments(layout, previous_hidden, weight_hh)
        stacked = F.linear(torch.cat([inputs, hidden_term], -1), torch.cat([weight_ih, recurrent_weight], 1), bias)
        return dict(zip(layout.input_gate_rows, stacked.split(hidden_size, -1)))
    preactivations = dict(zip(layout.input_gate_rows, F.linear(inputs, weight_ih).split(hidden_size, -1)))
    if layout.recurrent_gate_rows:
        recurrent = F.linear(*_recurrent_arguments(layout, previous_hidden, weight_hh)).split(hidden_size, -1)
        for name, term in zip(layout.recurrent_gate_rows, recurrent):
            preactivations[name] = preactivations[name] + term
    for name, term in zip(layout.bias_gates, bias.split(hidden_size)):
        preactivations[name] = preactivations[name] + term
    return preactivations


def activate_gates(layout: CellLayout, preactivations: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply each block's non-linearity: sigmoid for gates, tanh for the RNN's hidden state and
    the standard cell candidate, identity for a linear (S-RNN-free) candidate."""
    activated = {}
    for name, value in preactivations.items():
        if name == HIDDEN or (name == CELL_CANDIDATE and not layout.linear_candidate):
            activated[name] = torch.tanh(value)
        elif name == CELL_CANDIDATE:
            activated[name] = value
        else:
            activated[name] = torch.sigmoid(value)
    return activated


def cell_update(
    forget_gate: torch.Tensor, previous_cell: torch.Tensor, input_gate: torch.Tensor, cell_candidate: torch.Tensor
) -> torch.Tensor:
    """The memory cell: ``c_t = f_t * c_{t-1} + i_t * c~_t`` (all the same shape)."""
    return forget_gate * previous_cell + input_gate * cell_candidate


def cell_step(
    layout: CellLayout,
    inputs: torch.Tensor,
    previous_hidden: torch.Tensor,
    previous_cell: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor | None,
    bias: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """One time step of any cell type: the equations of the module docstring, written once.

    Args:
        layout: the cell type's :class:`CellLayout`.
        inputs: ``x_t (B, E)``; previous_hidden: ``h_{t-1} (B, H)``; previous_cell:
            ``c_{t-1} (B, H)`` (ignored, may be None, for a cell without memory cell).
        weight_ih, weight_hh, bias: the layer's parameters (layout in the module docstring).

    Returns:
        ``{block name: activated gate (B, H)}`` for every row block, plus ``"cell"`` (``c_t``,
        for cells with a memory cell) and ``"hidden"`` (``h_t``). Differentiable in every
        argument: state gradients and the reference loops are built from it.
    """
    step = activate_gates(layout, gate_preactivations(layout, inputs, previous_hidden, weight_ih, weight_hh, bias))
    if layout.has_cell:
        if previous_cell is None:  # (as torch raises for a None tensor argument)
            raise TypeError(f"{layout.cell_type} has a memory cell: previous_cell is needed")
        step["cell"] = cell_update(step[FORGET_GATE], previous_cell, step[INPUT_GATE], step[CELL_CANDIDATE])
        step[HIDDEN] = hidden_from_cell(layout, step["cell"], step.get(OUTPUT_GATE))
    return step


# ---------------------------------------------------------------------------
# Whole sequences: the fast kernels and the slow loops behind one checked contract
# ---------------------------------------------------------------------------


def variant_sequence(
    cell_type: str,
    inputs: torch.Tensor,
    initial_hidden: torch.Tensor,
    initial_cell: torch.Tensor | None,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor | None,
    bias: torch.Tensor,
    lengths: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run one layer of ``cell_type`` over a sequence, fast (see :mod:`naive` for the equations).

    Args:
        cell_type: one of ``layouts.CELL_TYPES``.
        inputs: ``(B, T, E)``.
        initial_hidden: ``(B, H)``.
        initial_cell: ``(B, H)``; ignored (may be None) for ``lstm-gates``.
        weight_ih, weight_hh, bias: per-type layout of ``cells`` (``weight_hh`` None for
            ``lstm-srnn-hidden``).
        lengths: optional ``(B,)`` number of valid leading steps per row.
        bias_hh: an optional second bias of ``bias``'s layout, added to it (PyTorch's ``bias_hh``;
            the fused kernels take it as their second bias, the others add the two).

    Returns:
        ``(outputs (B, T, H), final_hidden (B, H), final_cell (B, H) or None)``, equal to
        :func:`reference_sequence` (the per-step oracle) up to rounding.
    """
    check_parameters(cell_layout(cell_type), inputs, weight_ih, weight_hh, bias)
    return sequence_function(cell_type)(
        inputs, initial_hidden, initial_cell, weight_ih, weight_hh, bias, lengths, bias_hh=bias_hh
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

    The test oracle for ``kernel_variants.py`` and ``mtlstm_hf.analysis.gates``. A padded step (``t >= lengths[b]``)
    is the identity step: the state is untouched, which the trace records as ``i = 0``,
    ``f = 1``, ``o = 0``, ``c~ = 0``, ``c_t = c_{t-1}`` (carried) and hidden output 0.

    Args:
        cell_type: one of ``layouts.CELL_TYPES``.
        inputs: ``(B, T, E)``.
        initial_hidden: ``(B, H)``.
        initial_cell: ``(B, H)``; ignored (may be None) for a cell without memory cell.
        weight_ih, weight_hh, bias: per-type layout in this module's docstring.
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
            padded: dict[str, float | torch.Tensor] = dict(identity)
            if cell is not None:  # (None: a cell type without memory cell, whose gates have no "cell")
                padded["cell"] = cell
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
        ``kernel_lstm.lstm_sequence``.
    """
    trace = reference_trace(cell_type, inputs, initial_hidden, initial_cell, weight_ih, weight_hh, bias, lengths)
    outputs = trace[HIDDEN]
    assert outputs is not None  # every cell type has a hidden state (present_trace_keys)
    final_hidden = last_valid_step(outputs, initial_hidden, lengths)
    # The cell is carried through padded steps, so its last step is the final cell.
    final_cell = None
    if trace["cell"] is not None:
        final_cell = trace["cell"][:, -1] if outputs.shape[1] else initial_cell
    return outputs, final_hidden, final_cell
