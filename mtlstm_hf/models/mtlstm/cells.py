"""Catalogue of recurrent cells: the standard LSTM and the ablations of Levy et al. (2018).

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

The catalogue (:func:`cell_layout`) is plain data in ``layouts.py``; this module holds the per-step equations shared by every
implementation (:func:`gate_preactivations`, :func:`activate_gates`, :func:`cell_update`,
:func:`hidden_from_cell`), composed into one step, :func:`cell_step`. Fast whole-sequence
versions live in ``variants.py``; slow per-step loops that serve as test oracles, and the gate
extraction used by analysis, live outside the model in :mod:`mtlstm_hf.ops`. Only torch is
imported: this file travels to the Hub with the model.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .layouts import (  # the catalogue, re-exported: the cells' public vocabulary
    CELL_CANDIDATE,
    CELL_TYPES,
    FORGET_GATE,
    HIDDEN,
    INPUT_GATE,
    OUTPUT_GATE,
    TRACE_KEYS,
    CellLayout,
    cell_layout,
    present_trace_keys,
)

__all__ = [
    "CELL_CANDIDATE", "CELL_TYPES", "FORGET_GATE", "HIDDEN", "INPUT_GATE", "OUTPUT_GATE", "TRACE_KEYS",
    "CellLayout", "activate_gates", "cell_layout", "cell_step", "cell_update", "check_parameters",
    "gate_preactivations", "hidden_from_cell", "last_valid_step", "present_trace_keys",
]  # fmt: skip


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
    expected = layout.parameter_shapes(inputs.shape[-1], hidden_size)
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
        stacked = F.linear(torch.cat([inputs, previous_hidden], -1), torch.cat([weight_ih, weight_hh], 1), bias)
        return dict(zip(layout.input_gate_rows, stacked.split(hidden_size, -1)))
    preactivations = dict(zip(layout.input_gate_rows, F.linear(inputs, weight_ih).split(hidden_size, -1)))
    if layout.recurrent_gate_rows:
        recurrent = F.linear(previous_hidden, weight_hh).split(hidden_size, -1)
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


def hidden_from_cell(layout: CellLayout, cell: torch.Tensor, output_gate: torch.Tensor | None) -> torch.Tensor:
    """The output layer: ``h_t = o_t * tanh(c_t)``, or ``tanh(c_t)`` without output gate."""
    return output_gate * torch.tanh(cell) if layout.has_output_gate else torch.tanh(cell)


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
        step["cell"] = cell_update(step[FORGET_GATE], previous_cell, step[INPUT_GATE], step[CELL_CANDIDATE])
        step[HIDDEN] = hidden_from_cell(layout, step["cell"], step.get(OUTPUT_GATE))
    return step


def last_valid_step(per_step: torch.Tensor, initial: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``per_step[b, lengths[b] - 1]`` for each row, or ``initial[b]`` when the row is empty.

    Args:
        per_step: ``(B, T, H)``; initial: ``(B, H)``; lengths: ``(B,)`` or None (= all ``T``).

    Returns:
        ``(B, H)``.
    """
    total_steps = per_step.shape[1]
    if lengths is None:
        return per_step[:, -1] if total_steps else initial
    if total_steps == 0:
        return initial
    last = (lengths - 1).clamp(min=0).to(per_step.device)
    gathered = per_step.gather(1, last[:, None, None].expand(-1, 1, per_step.shape[2])).squeeze(1)
    return torch.where((lengths > 0).to(per_step.device)[:, None], gathered, initial)
