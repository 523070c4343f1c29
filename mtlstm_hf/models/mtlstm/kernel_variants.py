"""Fast whole-sequence kernels for every cell type of ``layouts.py`` (Levy et al. 2018 ablations;
their equations, one step at a time, are the naive references in ``naive.py``).

:func:`sequence_function` picks a cell type's kernel; each has the contract of
``kernel_lstm.lstm_sequence`` (batch-first, right-aligned padding via ``lengths``, padded steps
leave the state untouched and output 0):

* ``lstm``: ``kernel_lstm.lstm_sequence`` (PyTorch's fused kernel);
* ``lstm-gates``: PyTorch's fused tanh RNN (``torch.rnn_tanh``);
* ``lstm-srnn-hidden``: no loop over time at all: every gate in one matmul, then the memory
  cell with the parallel ``kernel_scan.linear_scan``;
* ``lstm-srnn`` / ``lstm-srnn-out``: the gates still read ``h_{t-1}``, so one sequential loop
  remains, written as an ``autograd.Function`` with a hand-written backward
  (:class:`_GatedLinearCellLoop`). Why: with plain autograd every step records ~8 nodes and,
  worse, accumulates a ``(3H, H)`` weight gradient per step (1024 full-matrix additions for a
  1024-step sequence); the hand-written backward keeps per-step work to one matmul plus a few
  element-wise ops and computes the weight gradient in one large matmul at the end.

Only torch is imported: this file travels to the Hub with the model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch.nn import functional as F

from .kernel_lstm import lstm_sequence, run_packed, training_kernel
from .kernel_scan import linear_scan
from .layouts import CELL_CANDIDATE, CellLayout, cell_layout


def hidden_from_cell(layout: CellLayout, cell: torch.Tensor, output_gate: torch.Tensor | None) -> torch.Tensor:
    """The output layer: ``h_t = o_t * tanh(c_t)``, or ``tanh(c_t)`` without output gate."""
    if output_gate is None:
        return torch.tanh(cell)
    return output_gate * torch.tanh(cell)


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


SequenceFunction = Callable[..., tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]]
"""``f(inputs, initial_hidden, initial_cell, weight_ih, weight_hh, bias, lengths, bias_hh=None) ->
(outputs, final_hidden, final_cell or None)``: one cell type's whole-sequence kernel."""


def sequence_function(cell_type: str) -> SequenceFunction:
    """The fast whole-sequence kernel of ``cell_type``, chosen once (a layer binds it at
    construction, so the forward pass neither dispatches on the name nor re-checks shapes).

    Raises:
        ValueError: unknown ``cell_type``.
    """
    layout = cell_layout(cell_type)
    if cell_type == "lstm":
        return lstm_sequence
    if cell_type == "lstm-gates":
        return _tanh_rnn_without_cell
    if not layout.recurrent_gate_rows:
        return _summing_biases(functools.partial(_input_gated_sequence, layout))
    return _summing_biases(functools.partial(_recurrent_gated_sequence, layout))


def _summing_biases(kernel: Callable) -> SequenceFunction:
    """A kernel with one bias vector as a :data:`SequenceFunction`: ``bias + bias_hh`` is its bias
    (each of the two receives the same gradient, as in PyTorch's fused kernels). A partial of a
    module-level function, so that a layer holding it can be pickled."""
    return functools.partial(_with_summed_biases, kernel)


def _with_summed_biases(
    kernel, inputs, initial_hidden, initial_cell, weight_ih, weight_hh, bias, lengths=None, bias_hh=None
):  # noqa: ANN001, ANN202
    total = bias if bias_hh is None else bias + bias_hh
    return kernel(inputs, initial_hidden, initial_cell, weight_ih, weight_hh, total, lengths)


def _tanh_rnn_without_cell(
    inputs, initial_hidden, initial_cell, weight_ih, weight_hh, bias, lengths=None, bias_hh=None
):  # noqa: ANN001, ANN202
    outputs, final_hidden = tanh_rnn_sequence(inputs, initial_hidden, weight_ih, weight_hh, bias, lengths, bias_hh)
    return outputs, final_hidden, None


def tanh_rnn_sequence(
    inputs: torch.Tensor,
    initial_hidden: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias: torch.Tensor,
    lengths: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_t = tanh(W_x x_t + W_h h_{t-1} + b)`` on PyTorch's fused kernel (``lstm-gates``).

    Args:
        inputs: ``(B, T, E)``; initial_hidden: ``(B, H)``; weight_ih: ``(H, E)``;
        weight_hh: ``(H, H)``; bias: ``(H,)`` (``bias_ih``); lengths: optional ``(B,)``;
        bias_hh: optional ``(H,)``, the second bias (default zeros): ``b = bias + bias_hh``.

    Returns:
        ``(outputs (B, T, H), final_hidden (B, H))`` with the padding contract of
        ``kernel_lstm.lstm_sequence``.
    """
    # Same calling convention as torch.lstm in kernel_lstm.lstm_sequence.
    weights = [weight_ih, weight_hh, bias, torch.zeros_like(bias) if bias_hh is None else bias_hh]
    train = training_kernel()  # cuDNN's backward needs the training kernel whenever autograd records
    if lengths is None:
        outputs, final_hidden = torch.rnn_tanh(
            inputs, initial_hidden.unsqueeze(0), weights, True, 1, 0.0, train, False, True
        )
        return outputs, final_hidden.squeeze(0)
    outputs, (final_hidden,) = run_packed(
        lambda data, batch_sizes, hx: torch.rnn_tanh(data, batch_sizes, hx[0], weights, True, 1, 0.0, train, False),
        inputs,
        lengths,
        (initial_hidden,),
        weight_hh.shape[1],
    )
    return outputs, final_hidden


def _gated_input_projection(
    layout: CellLayout, inputs: torch.Tensor, weight_ih: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """All input projections in one matmul, columns reordered to ``bias_gates + (c~,)``.

    For the S-RNN-free cells the bias covers exactly the gates and the linear candidate
    ``c~ = W_cx x`` has no bias, so putting the gates first makes the gate block (and, for
    ``lstm-srnn``/``-out``, the block that gets ``W_h h_{t-1}`` added) one contiguous slice.

    Returns:
        ``inputs.shape[:-1] + ((G + 1) H,)`` with ``G = len(layout.bias_gates)``.
    """
    hidden_size = bias.shape[0] // len(layout.bias_gates)
    blocks = dict(zip(layout.input_gate_rows, weight_ih.split(hidden_size)))
    weight = torch.cat([blocks[name] for name in (*layout.bias_gates, CELL_CANDIDATE)])
    return F.linear(inputs, weight, torch.cat([bias, bias.new_zeros(hidden_size)]))


def _input_gated_sequence(
    layout: CellLayout,
    inputs: torch.Tensor,
    initial_hidden: torch.Tensor,
    initial_cell: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: None,
    bias: torch.Tensor,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``lstm-srnn-hidden``: gates from ``x_t`` in one matmul, the cell by parallel scan.

    ``c_t = f_t c_{t-1} + i_t c~_t`` with ``i, f, o = sigmoid(W x_t + b)``, ``c~_t = W_cx x_t``;
    a padded step gets ``f = 1, i = 0`` so the scan carries the state through it untouched.
    """
    hidden_size = initial_hidden.shape[1]
    projection = _gated_input_projection(layout, inputs, weight_ih, bias)
    gates = torch.sigmoid(projection[..., : 3 * hidden_size])  # i, f, o (bias_gates order)
    input_gate, forget_gate, output_gate = gates.split(hidden_size, -1)
    update = input_gate * projection[..., 3 * hidden_size :]
    valid = None
    if lengths is not None:
        valid = (torch.arange(inputs.shape[1], device=inputs.device) < lengths.to(inputs.device)[:, None])[..., None]
        forget_gate = torch.where(valid, forget_gate, 1.0)
        update = torch.where(valid, update, 0.0)
    cells = linear_scan(forget_gate, update, initial_cell)
    outputs = hidden_from_cell(layout, cells, output_gate)
    if valid is not None:
        outputs = torch.where(valid, outputs, 0.0)
    final_cell = cells[:, -1] if inputs.shape[1] else initial_cell
    return outputs, last_valid_step(outputs, initial_hidden, lengths), final_cell


def _recurrent_gated_sequence(
    layout: CellLayout,
    inputs: torch.Tensor,
    initial_hidden: torch.Tensor,
    initial_cell: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias: torch.Tensor,
    lengths: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``lstm-srnn`` / ``lstm-srnn-out``: input projections batched, gates looped.

    Rows are processed in decreasing length order (like a packed sequence), so the rows still
    active at step ``t`` are a prefix of the batch and padded steps cost nothing.
    """
    order = unsort = None
    if lengths is not None:
        lengths = lengths.to(inputs.device)
        order = torch.argsort(lengths, descending=True, stable=True)
        unsort = torch.argsort(order)
        inputs, initial_hidden, initial_cell = inputs[order], initial_hidden[order], initial_cell[order]
        lengths = lengths[order]
    # Time-major so that each step's slices are contiguous.
    projection = _gated_input_projection(layout, inputs.transpose(0, 1), weight_ih, bias)
    outputs, final_hidden, final_cell = _GatedLinearCellLoop.apply(
        projection, weight_hh, initial_hidden, initial_cell, lengths, layout.has_output_gate
    )
    outputs = outputs.transpose(0, 1)
    if order is not None:
        outputs, final_hidden, final_cell = outputs[unsort], final_hidden[unsort], final_cell[unsort]
    return outputs.contiguous(), final_hidden, final_cell


class _GatedLinearCellLoop(torch.autograd.Function):
    """Sequential core of ``lstm-srnn`` / ``lstm-srnn-out`` with a hand-written backward.

    Forward, per step ``t`` over the active rows (``G = 3`` gates i, f, o, or ``G = 2`` without
    output gate)::

        [i, f, (o)] = sigmoid(P_t[:, :G H] + h_{t-1} W_hh^T)     # P = input projection (+ bias)
        c_t = f c_{t-1} + i c~_t,   c~_t = P_t[:, G H:]
        h_t = o tanh(c_t)   or   tanh(c_t)

    Backward, with ``dh_t``/``dc_t`` the total adjoints (``k = tanh(c_t)``)::

        dh_t = dL/dh_t (output) + dA_{t+1} W_hh                    # dA = d pre-activation
        dc_t = f_{t+1} dc_{t+1} + dh_t * o (1 - k^2)
        dA_t = [dc_t c~_t i(1-i), dc_t c_{t-1} f(1-f), dh_t k o(1-o)],  dc~_t = dc_t i
        dW_hh = sum_t dA_t^T h_{t-1}     (one matmul over all steps)

    Tensors are time-major: ``projection (T, B, (G+1) H)``; ``lengths (B,)`` sorted in
    decreasing order (or None: all rows, all steps), so ``batch_sizes[t]`` leading rows are
    active at step ``t``.
    """

    @staticmethod
    def forward(ctx, projection, weight_hh, initial_hidden, initial_cell, lengths, has_output_gate):  # noqa: ANN001, ANN205
        total_steps, batch_size, _ = projection.shape
        batch_sizes = None
        if lengths is not None:
            steps = torch.arange(total_steps, device=lengths.device)
            batch_sizes = (lengths[None, :] > steps[:, None]).sum(1).tolist()
        hidden_size = initial_hidden.shape[1]
        gate_width = weight_hh.shape[0]
        # With padding, never-written slots must be finite zeros: they enter batched products.
        allocate = torch.empty if batch_sizes is None else torch.zeros
        options = {"dtype": projection.dtype, "device": projection.device}
        gates = allocate(total_steps, batch_size, gate_width, **options)
        cells = allocate(total_steps, batch_size, hidden_size, **options)
        tanh_cells = allocate(total_steps, batch_size, hidden_size, **options) if has_output_gate else None
        outputs = torch.zeros(total_steps, batch_size, hidden_size, **options)
        recurrent_weight = weight_hh.t()
        for step in range(total_steps):
            rows = batch_size if batch_sizes is None else batch_sizes[step]
            if rows == 0:
                break
            # Rows active now were active at the previous step too (sorted by length).
            previous_hidden = initial_hidden[:rows] if step == 0 else outputs[step - 1, :rows]
            previous_cell = initial_cell[:rows] if step == 0 else cells[step - 1, :rows]
            step_gates = gates[step, :rows]
            torch.addmm(projection[step, :rows, :gate_width], previous_hidden, recurrent_weight, out=step_gates)
            step_gates.sigmoid_()
            cell = cells[step, :rows]
            torch.mul(step_gates[:, hidden_size : 2 * hidden_size], previous_cell, out=cell)
            cell.addcmul_(step_gates[:, :hidden_size], projection[step, :rows, gate_width:])
            if has_output_gate:
                torch.tanh(cell, out=tanh_cells[step, :rows])
                torch.mul(step_gates[:, 2 * hidden_size :], tanh_cells[step, :rows], out=outputs[step, :rows])
            else:
                torch.tanh(cell, out=outputs[step, :rows])
        # Clones: a custom Function must not return views of its other outputs.
        final_hidden = last_valid_step(outputs.transpose(0, 1), initial_hidden, lengths).clone()
        final_cell = last_valid_step(cells.transpose(0, 1), initial_cell, lengths).clone()
        ctx.save_for_backward(projection, weight_hh, initial_hidden, initial_cell, gates, cells, tanh_cells, outputs)
        ctx.batch_sizes = batch_sizes
        ctx.has_output_gate = has_output_gate
        return outputs, final_hidden, final_cell

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_outputs, grad_final_hidden, grad_final_cell):  # noqa: ANN001, ANN205
        projection, weight_hh, initial_hidden, initial_cell, gates, cells, tanh_cells, outputs = ctx.saved_tensors
        batch_sizes, has_output_gate = ctx.batch_sizes, ctx.has_output_gate
        total_steps, batch_size, _ = projection.shape
        hidden_size = initial_hidden.shape[1]
        gate_width = weight_hh.shape[0]
        input_gate = gates[..., :hidden_size]
        forget_gate = gates[..., hidden_size : 2 * hidden_size]
        candidate = projection[..., gate_width:]
        previous_cells = torch.cat([initial_cell[None], cells[:-1]])
        # Step-local factors, computed for all steps at once (element-wise, batched over time).
        input_factor = candidate * input_gate * (1 - input_gate)  # dA_i / dc_t
        forget_factor = previous_cells * forget_gate * (1 - forget_gate)  # dA_f / dc_t
        if has_output_gate:
            output_gate = gates[..., 2 * hidden_size :]
            cell_factor = output_gate * (1 - tanh_cells * tanh_cells)  # dc_t / dh_t
            output_factor = tanh_cells * output_gate * (1 - output_gate)  # dA_o / dh_t
        else:
            cell_factor = 1 - outputs * outputs
        grad_projection = torch.zeros_like(projection)
        grad_cells = torch.zeros_like(cells)  # total adjoint dc_t
        hidden_carry = grad_final_hidden.clone()  # adjoint flowing into h_t from step t+1
        cell_carry = grad_final_cell.clone()  # adjoint flowing into c_t from step t+1
        grad_hidden = torch.empty_like(initial_hidden)
        for step in range(total_steps - 1, -1, -1):
            rows = batch_size if batch_sizes is None else batch_sizes[step]
            if rows == 0:
                continue
            hidden_adjoint = torch.add(grad_outputs[step, :rows], hidden_carry[:rows], out=grad_hidden[:rows])
            cell_adjoint = torch.addcmul(
                cell_carry[:rows], hidden_adjoint, cell_factor[step, :rows], out=grad_cells[step, :rows]
            )
            step_grad = grad_projection[step, :rows]
            torch.mul(cell_adjoint, input_factor[step, :rows], out=step_grad[:, :hidden_size])
            torch.mul(cell_adjoint, forget_factor[step, :rows], out=step_grad[:, hidden_size : 2 * hidden_size])
            if has_output_gate:
                torch.mul(hidden_adjoint, output_factor[step, :rows], out=step_grad[:, 2 * hidden_size : gate_width])
            torch.mul(cell_adjoint, forget_gate[step, :rows], out=cell_carry[:rows])
            torch.mm(step_grad[:, :gate_width], weight_hh, out=hidden_carry[:rows])
        torch.mul(grad_cells, input_gate, out=grad_projection[..., gate_width:])
        grad_weight_hh = None
        if ctx.needs_input_grad[1]:
            previous_hidden = torch.cat([initial_hidden[None], outputs[:-1]]).reshape(-1, hidden_size)
            gate_grads = grad_projection.reshape(-1, grad_projection.shape[-1])[:, :gate_width]
            grad_weight_hh = gate_grads.t() @ previous_hidden
        return grad_projection, grad_weight_hh, hidden_carry, cell_carry, None, None
