"""The catalogue of recurrent cells: which row blocks each cell type stacks in its parameters
and what it has (memory cell, forget gate, output gate), as plain data.

The equations of each cell type are in ``naive.py`` (one step) and ``kernel_variants.py`` (fast); this file imports nothing, so that the
configuration (a leaf) can validate ``cell_types`` and name the frozen biases without
importing any cell or layer code.
"""

from __future__ import annotations

from dataclasses import dataclass

CELL_TYPES: tuple[str, ...] = ("lstm", "lstm-srnn", "lstm-srnn-out", "lstm-srnn-hidden", "lstm-gates")
"""Allowed values of a layer's ``cell_type``."""

INPUT_GATE, FORGET_GATE, CELL_CANDIDATE, OUTPUT_GATE, HIDDEN = (
    "input_gate",
    "forget_gate",
    "cell_candidate",
    "output_gate",
    "hidden",
)
"""Row-block names (also the names of the bias vectors in ``layers.GateBiases``)."""


@dataclass(frozen=True)
class CellLayout:
    """Which row blocks one cell type stacks in its parameters, and what the cell has.

    Attributes:
        cell_type: one of :data:`CELL_TYPES`.
        input_gate_rows: names of the ``H``-row blocks of ``weight_ih``, in order.
        recurrent_gate_rows: names of the blocks of ``weight_hh`` (empty: no ``weight_hh``).
        bias_gates: names of the ``H``-blocks of the concatenated bias, in order.
        has_cell: whether there is a memory cell ``c_t`` (False: ``c`` is None everywhere).
        has_forget_gate: whether ``f_t`` exists (then so does ``i_t``).
        has_output_gate: whether ``h_t = o_t * tanh(c_t)`` (else ``tanh(c_t)``, or the RNN).
        linear_candidate: whether ``c~_t = W_cx x_t`` (S-RNN content layer removed) instead of
            ``tanh(W_cx x_t + W_ch h_{t-1} + b_c)``.
    """

    cell_type: str
    input_gate_rows: tuple[str, ...]
    recurrent_gate_rows: tuple[str, ...]
    bias_gates: tuple[str, ...]
    has_cell: bool
    has_forget_gate: bool
    has_output_gate: bool
    linear_candidate: bool


_IFGO = (INPUT_GATE, FORGET_GATE, CELL_CANDIDATE, OUTPUT_GATE)
_IFO = (INPUT_GATE, FORGET_GATE, OUTPUT_GATE)
_LAYOUTS: dict[str, CellLayout] = {
    "lstm": CellLayout("lstm", _IFGO, _IFGO, _IFGO, True, True, True, False),
    "lstm-srnn": CellLayout("lstm-srnn", _IFGO, _IFO, _IFO, True, True, True, True),
    "lstm-srnn-out": CellLayout(
        "lstm-srnn-out",
        (INPUT_GATE, FORGET_GATE, CELL_CANDIDATE),
        (INPUT_GATE, FORGET_GATE),
        (INPUT_GATE, FORGET_GATE),
        True,
        True,
        False,
        True,
    ),
    "lstm-srnn-hidden": CellLayout("lstm-srnn-hidden", _IFGO, (), _IFO, True, True, True, True),
    "lstm-gates": CellLayout("lstm-gates", (HIDDEN,), (HIDDEN,), (HIDDEN,), False, False, False, False),
}


def cell_layout(cell_type: str) -> CellLayout:
    """The :class:`CellLayout` of ``cell_type``.

    Raises:
        ValueError: naming the field ``cell_type`` and the allowed values.
    """
    try:
        return _LAYOUTS[cell_type]
    except (KeyError, TypeError):
        allowed = ", ".join(repr(name) for name in CELL_TYPES)
        raise ValueError(f"cell_type must be one of {allowed}; got {cell_type!r}.") from None


def layer_number(layer_index: int) -> int:
    """The number of a layer as the paper, reports, figures and messages give it (from 1) for its
    0-based index into ``model.model.layers`` (``layer_index``): the one conversion between them.
    In Python objects and arguments a layer is its ``layer_index``; in ``report.json`` and text, its
    ``layer`` number."""
    return int(layer_index) + 1


def layer_index_of(layer_number: int) -> int:
    """The 0-based ``layer_index`` of the layer numbered ``layer_number`` (from 1); see :func:`layer_number`."""
    return int(layer_number) - 1
