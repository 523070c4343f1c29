"""The per-step functions that state gradients differentiate, and their linearisations.

Verwimp, Van hamme, Wambacq, "State gradients for analyzing memory in LSTM language models",
Computer Speech & Language 61 (2020). The state gradient ``G(t, tau) = d s_t / d x_{t-tau}`` is
pushed forward step by step (:mod:`.state_gradients`); each step needs, per layer, the
linearisation of the step at the values the forward pass went through::

    d state_t = A_t d state_{t-1} + B_t d input_t,     A_t = d state_t / d state_{t-1},  B_t = d state_t / d input_t

A layer of the model is a :class:`CellStep`: one step of its cell type is
:func:`mtlstm_hf.models.mtlstm.naive.cell_step` (the one place the cell equations are written) on
the flat state ``[h, c]`` (``[h]`` for the cell-less ``lstm-gates``), so every cell type with a
state works. Per segment of tokens its forward values come from one batched
:func:`mtlstm_hf.analysis.gates.gates_and_cells` (the model's fused kernel and batched matmuls, no Python
loop over time for the standard cell); its linearisation is

* for the standard LSTM, the closed form of :class:`LSTMLinearization` (the derivative of
  ``cell_step``'s equations at the step's gate values: one ``(2H x H)`` product per tangent column,
  no Jacobian formed; the tests compare it with :func:`torch.func.jacfwd` of ``cell_step``);
* for every other cell type, the Jacobians of ``cell_step`` from :func:`torch.func.jacfwd`.

Any other recurrence, e.g. the linear test oracle ``h_t = W h_{t-1} + U x_t`` (``G(t, tau) = W^tau
U``), is a :class:`StepFunction` around a plain per-step callable (forward by a loop, Jacobians by
``jacfwd``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from torch.func import jacfwd, vmap

from mtlstm_hf.analysis.gates import gates_and_cells
from mtlstm_hf.models.mtlstm.layouts import (
    CELL_CANDIDATE,
    FORGET_GATE,
    HIDDEN,
    INPUT_GATE,
    OUTPUT_GATE,
    CellLayout,
    cell_layout,
)
from mtlstm_hf.models.mtlstm.naive import cell_step

from .adapter import base_model

if TYPE_CHECKING:
    from mtlstm_hf.models.mtlstm.layers import MTLSTMLayer

__all__ = [
    "CellStep",
    "LayerStep",
    "LSTMLinearization",
    "Linearization",
    "Segment",
    "StepFunction",
    "as_step_function",
    "compute_dtype",
    "model_layer_steps",
    "unroll_layer_steps",
]

LayerStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""One layer, one step, one sequence: ``(state (S,), input (I,)) -> new state (S,)``, plain torch ops
(differentiated with :func:`torch.func.jacfwd`, batched with :func:`torch.func.vmap`); the first
``output_size`` entries of the new state are what the layer feeds upward."""


def _given(state_tangents: torch.Tensor | None) -> torch.Tensor:
    """``state_tangents``, where a step needs them: ``TypeError`` for None (as torch raised for it)."""
    if state_tangents is None:
        raise TypeError("state_tangents is None where the step needs them (no input tangents of its own)")
    return state_tangents


class Linearization:
    """One step of one layer, linearised for ``B`` rows: pushes tangent columns through the step.

    Holds both Jacobians: ``A = d state_t / d state_{t-1}`` ``(B, S, S)`` and
    ``B_x = d state_t / d input_t`` ``(B, S, I)``.
    """

    def __init__(self, state_jacobian: torch.Tensor, input_jacobian: torch.Tensor) -> None:
        self.state_jacobian = state_jacobian
        self._input_jacobian = input_jacobian

    def tangent(self, state_tangents: torch.Tensor | None, input_tangents: torch.Tensor | None) -> torch.Tensor:
        """``(B, S, M)``: ``A state_tangents`` on the first ``M_s`` columns plus ``B_x input_tangents``.

        Args:
            state_tangents: ``(B, S, M_s)`` or None (zero).
            input_tangents: ``(B, I, M)`` with ``M >= M_s``, or None (zero; then ``M = M_s``). The
                columns past ``M_s`` are sources newer than the previous state (zero state tangent).
        """
        if input_tangents is None:
            return torch.bmm(self.state_jacobian, _given(state_tangents))
        result = torch.bmm(self._input_jacobian, input_tangents)
        if state_tangents is not None and state_tangents.shape[-1]:
            result[..., : state_tangents.shape[-1]] += torch.bmm(self.state_jacobian, state_tangents)
        return result

    def input_jacobian(self) -> torch.Tensor:
        """``B_x = d state_t / d input_t`` ``(B, S, I)``."""
        return self._input_jacobian


class LSTMLinearization(Linearization):
    """The standard LSTM step (``naive.cell_step`` of ``"lstm"``) linearised in closed form.

    With the step's gates ``i, f, g (= c~), o``, the cells ``c_{t-1}``, ``c_t`` and
    ``a_i = g i (1 - i)``, ``a_f = c_{t-1} f (1 - f)``, ``a_g = i (1 - g^2)``,
    ``a_o = tanh(c_t) o (1 - o)``, ``k = o (1 - tanh^2 c_t)``, and ``W_*`` the gate blocks of
    ``W_hh`` (for state tangents) or ``W_ih`` (for input tangents)::

        d c_t = f * d c_{t-1} + (a_i W_i + a_f W_f + a_g W_g) d z
        d h_t = a_o W_o d z + k * d c_t                           (d z = d h_{t-1} or d x_t)

    A tangent column costs one ``(2H x K)`` product instead of ``(2H x 2H)`` with the full Jacobian.

    Args:
        weight_ih: ``(4H, I)``, weight_hh: ``(4H, H)``, rows ``i, f, g, o``.
        gates: ``{"input_gate", "forget_gate", "cell_candidate", "output_gate", "cell"}`` at the
            step, each ``(B, H)``; previous_cell: ``c_{t-1}`` ``(B, H)``.
    """

    def __init__(
        self,
        weight_ih: torch.Tensor,
        weight_hh: torch.Tensor,
        gates: dict[str, torch.Tensor],
        previous_cell: torch.Tensor,
    ) -> None:
        input_gate, forget_gate = gates[INPUT_GATE], gates[FORGET_GATE]
        candidate, output_gate = gates[CELL_CANDIDATE], gates[OUTPUT_GATE]
        cell_tanh = torch.tanh(gates["cell"])
        self._scales = (
            (candidate * input_gate * (1 - input_gate))[..., None],  # a_i
            (previous_cell * forget_gate * (1 - forget_gate))[..., None],  # a_f
            (input_gate * (1 - candidate * candidate))[..., None],  # a_g
            (cell_tanh * output_gate * (1 - output_gate))[..., None],  # a_o
        )
        self._forget = forget_gate[..., None]
        self._k = (output_gate * (1 - cell_tanh * cell_tanh))[..., None]
        self._weights = {"hidden": weight_hh, "input": weight_ih}
        self._size = input_gate.shape[-1]
        self._products: dict[str, torch.Tensor] = {}

    def _product(self, which: str) -> torch.Tensor:
        """``P = [a_o W_o ; a_i W_i + a_f W_f + a_g W_g]`` ``(B, 2H, K)`` for ``W = weight_hh`` (``"hidden"``)
        or ``weight_ih`` (``"input"``): ``P dz`` gives ``[a_o W_o dz ; d c_t - f dc]``."""
        if which not in self._products:
            weight = self._weights[which]
            size = self._size
            blocks = weight.view(4, size, weight.shape[1])[:, None]  # (4, 1, H, K): i, f, g, o
            a_i, a_f, a_g, a_o = self._scales
            product = weight.new_empty(a_i.shape[0], 2 * size, weight.shape[1])
            torch.mul(blocks[3], a_o, out=product[:, :size])
            cell = product[:, size:]
            torch.mul(blocks[0], a_i, out=cell)
            cell.addcmul_(blocks[1], a_f).addcmul_(blocks[2], a_g)
            self._products[which] = product
        return self._products[which]

    def tangent(self, state_tangents: torch.Tensor | None, input_tangents: torch.Tensor | None) -> torch.Tensor:
        size = self._size
        known = 0 if state_tangents is None else state_tangents.shape[-1]
        if input_tangents is None:
            result = torch.bmm(self._product("hidden"), _given(state_tangents)[:, :size])
        else:
            result = torch.bmm(self._product("input"), input_tangents)
            if known == result.shape[-1]:
                result.baddbmm_(self._product("hidden"), _given(state_tangents)[:, :size])
            elif known:  # (known > 0: state_tangents given)
                result[..., :known] += torch.bmm(self._product("hidden"), _given(state_tangents)[:, :size])
        cell = result[:, size:]
        if known:
            cell[..., :known].addcmul_(self._forget, _given(state_tangents)[:, size:])
        result[:, :size].addcmul_(self._k, cell)
        return result

    def input_jacobian(self) -> torch.Tensor:
        jacobian = self._product("input").clone()
        jacobian[:, : self._size].addcmul_(self._k, jacobian[:, self._size :])
        return jacobian


class Segment:
    """One layer's forward over a segment of ``L`` steps, and its linearisation at each step.

    Attributes:
        states: ``(B, L, S)`` the state after every step.

    :meth:`linearize` differentiates ``step`` with :func:`torch.func.jacfwd` at the step's
    previous state and input (subclasses may do it in closed form).
    """

    def __init__(
        self, step: LayerStep, initial_state: torch.Tensor, inputs: torch.Tensor, states: torch.Tensor
    ) -> None:
        self.states = states
        self.inputs = inputs
        self.previous = torch.cat([initial_state[:, None], states[:, :-1]], dim=1)
        self._jacobians = vmap(jacfwd(step, argnums=(0, 1)))

    def linearize(self, step: int) -> Linearization:
        """The :class:`Linearization` of step ``step`` (0-based within the segment)."""
        state_jacobian, input_jacobian = self._jacobians(self.previous[:, step], self.inputs[:, step])
        return Linearization(state_jacobian, input_jacobian)


class _LSTMSegment(Segment):
    """A standard-LSTM segment: closed-form linearisation from the gates of the forward."""

    def __init__(self, cell: CellStep, initial_state: torch.Tensor, inputs: torch.Tensor, trace: dict) -> None:
        super().__init__(cell, initial_state, inputs, cell.flat_state(trace[HIDDEN], trace["cell"]))
        self._cell = cell
        assert cell.weight_hh is not None  # an "lstm" layer has one (gates_and_cells checked its shape)
        self._weight_hh = cell.weight_hh
        self._trace = trace
        size = cell.hidden_size
        self._previous_cell = self.previous[..., size:]

    def linearize(self, step: int) -> Linearization:
        gates = {
            key: self._trace[key][:, step] for key in (INPUT_GATE, FORGET_GATE, CELL_CANDIDATE, OUTPUT_GATE, "cell")
        }
        return LSTMLinearization(self._cell.weight_ih, self._weight_hh, gates, self._previous_cell[:, step])


class StepFunction:
    """A per-step callable (:data:`LayerStep`) with what the accumulator needs: a forward over a
    segment (a loop of the batched step) and per-step Jacobians (:func:`torch.func.jacfwd`).

    Args:
        step: ``(state (S,), input (I,)) -> new state (S,)`` in plain torch ops.
    """

    def __init__(self, step: LayerStep) -> None:
        self._step = step

    def __call__(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self._step(state, inputs)

    def segment(self, initial_state: torch.Tensor, inputs: torch.Tensor) -> Segment:
        """Run the step over ``inputs (B, L, I)`` from ``initial_state (B, S)``."""
        batched = vmap(self._step)
        state, states = initial_state, []
        for step in range(inputs.shape[1]):
            state = batched(state, inputs[:, step])
            states.append(state)
        stacked = (
            torch.stack(states, 1) if states else initial_state.new_zeros(inputs.shape[0], 0, initial_state.shape[-1])
        )
        return Segment(self._step, initial_state, inputs, stacked)


@dataclass(frozen=True, eq=False)
class CellStep(StepFunction):
    """One layer of an MTLSTM as a per-step function of its flat state: ``naive.cell_step``.

    The flat state is ``[h (H,), c (H,)]`` (``[h]`` for a cell type without memory cell), batched
    or not: ``(..., S)`` with ``S = 2H`` or ``H``; the first ``H`` entries (``h_t``) go up.

    Attributes:
        layout: the layer's :class:`~mtlstm_hf.models.mtlstm.cells.CellLayout`.
        weight_ih: ``(G*H, I)``; weight_hh: ``(G'*H, H)`` raw recurrent weight (eval: no
            DropConnect) or None; bias: ``(G''*H,)`` the concatenated gate biases; all detached,
            in the compute dtype.
    """

    layout: CellLayout
    weight_ih: torch.Tensor
    weight_hh: torch.Tensor | None
    bias: torch.Tensor

    @property
    def hidden_size(self) -> int:
        return self.weight_ih.shape[0] // len(self.layout.input_gate_rows)

    @property
    def has_cell(self) -> bool:
        return self.layout.has_cell

    @property
    def state_size(self) -> int:
        return self.hidden_size * (2 if self.has_cell else 1)

    def flat_state(self, hidden: torch.Tensor, cell: torch.Tensor | None) -> torch.Tensor:
        """``[h, c]`` (or ``[h]``) along the last dimension."""
        if not self.has_cell:
            return hidden
        if cell is None:  # (TypeError, as torch.cat raised for it)
            raise TypeError(f"{self.layout.cell_type} has a memory cell: flat_state needs it")
        return torch.cat([hidden, cell], -1)

    def __call__(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        size = self.hidden_size
        previous_cell = state[..., size:] if self.has_cell else None
        step = cell_step(
            self.layout, inputs, state[..., :size], previous_cell, self.weight_ih, self.weight_hh, self.bias
        )
        return self.flat_state(step[HIDDEN], step.get("cell"))

    def segment(self, initial_state: torch.Tensor, inputs: torch.Tensor) -> Segment:
        """The forward over ``inputs (B, L, I)`` by :func:`mtlstm_hf.analysis.gates.gates_and_cells`."""
        size = self.hidden_size
        initial_cell = initial_state[..., size:] if self.has_cell else None
        trace = gates_and_cells(
            self.layout.cell_type,
            inputs,
            initial_state[..., :size],
            initial_cell,
            self.weight_ih,
            self.weight_hh,
            self.bias,
        )
        if self.layout.cell_type == "lstm":
            return _LSTMSegment(self, initial_state, inputs, trace)
        hidden = trace[HIDDEN]
        assert hidden is not None  # gates_and_cells gives every cell type's hidden states
        return Segment(self, initial_state, inputs, self.flat_state(hidden, trace["cell"]))


def compute_dtype(model: torch.nn.Module, dtype: torch.dtype | None = None) -> torch.dtype:
    """``dtype``, or float64 for a float64 model and float32 otherwise (half precision would round
    the tangents of long delays away)."""
    if dtype is not None:
        return dtype
    embeddings: Any = base_model(model).embeddings  # an nn.Embedding (torch's Module typing says Tensor | Module)
    weight = embeddings.weight
    return torch.float64 if weight.dtype == torch.float64 else torch.float32


def model_layer_steps(
    model: torch.nn.Module, num_layers: int | None = None, dtype: torch.dtype | None = None
) -> tuple[list[CellStep], list[int], list[bool]]:
    """The :class:`CellStep` of each of the model's first ``num_layers`` layers, from its weights.

    Eval semantics: the raw recurrent weight (no DropConnect), no dropout anywhere. Every cell type
    of ``layouts.CELL_TYPES`` is supported.

    Args:
        model: an ``MTLSTMForCausalLM`` or ``MTLSTMModel``.
        num_layers: how many layers from the bottom (default all).
        dtype: compute dtype (default :func:`compute_dtype`).

    Returns:
        ``(layer_steps, output_sizes, has_cell)``: per layer its step, its hidden size ``H_l`` (the
        output fed upward) and whether its state holds a memory cell.
    """
    model_layers = cast("Sequence[MTLSTMLayer]", base_model(model).layers)  # (an nn.ModuleList of them)
    layers = list(model_layers)[: len(model_layers) if num_layers is None else num_layers]
    dtype = compute_dtype(model, dtype)
    steps = []
    for layer in layers:
        weight_hh = getattr(layer, "weight_hh", None)
        steps.append(
            CellStep(
                cell_layout(layer.cell_type),
                layer.weight_ih.detach().to(dtype),
                None if weight_hh is None else weight_hh.detach().to(dtype),
                layer.gate_biases.concatenated(dtype).detach(),
            )
        )
    return steps, [step.hidden_size for step in steps], [step.has_cell for step in steps]


def unroll_layer_steps(
    layer_steps: Sequence[LayerStep],
    output_sizes: Sequence[int],
    initial_states: Sequence[torch.Tensor],
    inputs: torch.Tensor,
) -> list[torch.Tensor]:
    """Run a stack of step functions over a sequence (no gradients): the plain forward.

    Args:
        layer_steps: per layer a :class:`StepFunction` (e.g. from :func:`model_layer_steps`) or a
            plain :data:`LayerStep`.
        output_sizes: per layer the number of leading state entries fed upward.
        initial_states: per layer ``(B, S_l)``.
        inputs: ``(B, T, E)``.

    Returns:
        Per layer the states after every step, ``(B, T, S_l)``.
    """
    states = []
    layer_input = inputs
    with torch.no_grad():
        for step, initial, size in zip(layer_steps, initial_states, output_sizes):
            segment = as_step_function(step).segment(initial, layer_input)
            states.append(segment.states)
            layer_input = segment.states[..., :size]
    return states


def as_step_function(step: LayerStep | StepFunction) -> StepFunction:
    """``step`` itself when it is a :class:`StepFunction`, else wrapped in one."""
    return step if isinstance(step, StepFunction) else StepFunction(step)
