"""Recurrences of one LSTM layer over a whole sequence, as pure torch functions.

No ``nn.Module`` and no Hugging Face code lives here: these are the operations the
layers in :mod:`layers` compose. This file travels to the Hub with the model, so it
imports only torch.

Conventions used throughout:

* tensors are batch-first: inputs ``(B, T, E)``, outputs ``(B, T, H)``, states ``(B, H)``;
* gate order inside stacked weights is PyTorch's ``i, f, g, o`` (input gate, forget gate,
  cell candidate ``c~``, output gate);
* padding is handled *right-aligned*: row ``b`` holds ``lengths[b]`` valid steps at the
  start and padding after them. Padded steps leave the state untouched and produce
  zero outputs. :func:`compact_kept_steps` / :func:`restore_alignment` convert any
  ``attention_mask`` (left or right padding, or masked steps anywhere) to and from that
  layout: the kept steps of each row are moved to its front, in order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def lstm_sequence(
    inputs: torch.Tensor,
    initial_hidden: torch.Tensor,
    initial_cell: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias: torch.Tensor,
    lengths: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the standard LSTM over a sequence on PyTorch's fused kernel.

    Implements (Hochreiter & Schmidhuber 1997; Mahto et al. 2021, eq. 1)::

        i_t = sigmoid(W_ii x_t + W_hi h_{t-1} + b_i)
        f_t = sigmoid(W_if x_t + W_hf h_{t-1} + b_f)
        g_t = tanh   (W_ig x_t + W_hg h_{t-1} + b_g)      # c~_t
        o_t = sigmoid(W_io x_t + W_ho h_{t-1} + b_o)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    The weights are passed in every call (not owned by a module) so that callers can
    compose them first, e.g. DropConnect on ``weight_hh`` that stays differentiable with
    respect to the raw weight.

    Args:
        inputs: ``(B, T, E)``.
        initial_hidden, initial_cell: ``(B, H)``.
        weight_ih: ``(4H, E)``, rows ``i, f, g, o``.
        weight_hh: ``(4H, H)``, rows ``i, f, g, o``.
        bias: ``(4H,)`` PyTorch's ``bias_ih`` (with ``bias_hh=None``: the whole bias).
        lengths: optional ``(B,)`` number of valid leading steps per row (right-aligned
            padding). ``None`` means every step is valid (the fast, unpacked path).
        bias_hh: ``(4H,)`` PyTorch's ``bias_hh``, the second bias the kernel adds (default: zeros).

    Returns:
        ``(outputs (B, T, H), final_hidden (B, H), final_cell (B, H))``; with ``lengths``
        the final state of row ``b`` is the state after its last valid step (the initial
        state when ``lengths[b] == 0``) and outputs at padded steps are zero.
    """
    if inputs.device.type == "cpu" and inputs.dtype == torch.float32 and torch.is_autocast_enabled("cpu"):
        require_cpu_autocast_lstm()  # a clear error instead of oneDNN's, on CPUs without native bf16
    # The fused op takes PyTorch's two bias vectors.
    weights = [weight_ih, weight_hh, bias, torch.zeros_like(bias) if bias_hh is None else bias_hh]
    train = training_kernel()
    if lengths is None:
        hx = (initial_hidden.unsqueeze(0), initial_cell.unsqueeze(0))
        outputs, final_hidden, final_cell = torch.lstm(inputs, hx, weights, True, 1, 0.0, train, False, True)
        return outputs, final_hidden.squeeze(0), final_cell.squeeze(0)

    outputs, (final_hidden, final_cell) = run_packed(
        lambda data, batch_sizes, hx: torch.lstm(data, batch_sizes, hx, weights, True, 1, 0.0, train, False),
        inputs,
        lengths,
        (initial_hidden, initial_cell),
        weight_hh.shape[1],
    )
    return outputs, final_hidden, final_cell


def run_packed(
    recurrence: Callable[..., tuple[torch.Tensor, ...]],
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    initial_states: tuple[torch.Tensor, ...],
    output_size: int,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Run one of PyTorch's fused recurrences on packed rows: the padding contract of every kernel.

    Rows with no valid step are left out (their state carried through, their outputs 0); the
    others are packed (``pack_padded_sequence`` sorts them by length, and their initial states
    follow that order), run, and put back in the caller's row order.

    Args:
        recurrence: ``(packed data, batch_sizes, hx) -> (packed outputs, *final states (1, B', H))``,
            e.g. ``torch.lstm`` / ``torch.rnn_tanh`` with their weights bound; ``hx`` is the tuple of
            sorted initial states ``(1, B', H)`` (one element for ``rnn_tanh``: pass ``hx[0]``).
        inputs: ``(B, T, E)``; lengths: ``(B,)`` valid leading steps per row.
        initial_states: each ``(B, H)``; output_size: ``H`` of the outputs.

    Returns:
        ``(outputs (B, T, H), final states, each (B, H))``.
    """
    batch_size, total_steps, _ = inputs.shape
    outputs = inputs.new_zeros(batch_size, total_steps, output_size)
    active_rows = torch.nonzero(lengths > 0).flatten()
    if active_rows.numel() == 0:
        return outputs, initial_states  # nothing valid in this chunk: the state is carried through
    packed = pack_padded_sequence(
        inputs[active_rows], lengths[active_rows].cpu(), batch_first=True, enforce_sorted=False
    )
    hx = tuple(state[active_rows][packed.sorted_indices].unsqueeze(0) for state in initial_states)
    packed_outputs, *finals = recurrence(packed.data, packed.batch_sizes, hx)
    active_outputs, _ = pad_packed_sequence(
        packed._replace(data=packed_outputs), batch_first=True, total_length=total_steps
    )
    outputs = outputs.index_copy(0, active_rows, active_outputs)
    return outputs, tuple(
        state.index_copy(0, active_rows, final.squeeze(0)[packed.unsorted_indices])
        for state, final in zip(initial_states, finals)
    )


def training_kernel() -> bool:
    """The ``train`` argument of the fused recurrent ops (``torch.lstm``, ``torch.rnn_tanh``):
    whether autograd is recording, not whether the module is in training mode.

    The flag selects the kernel, not dropout (every call here has dropout 0): on CUDA, cuDNN's
    inference kernel keeps nothing for a backward pass, and ``backward()`` through it raises
    "cudnn RNN backward can only be called in training mode" (pytorch/pytorch#5878). A model in
    eval mode still needs the training kernel when gradients flow through it (state-gradient
    Jacobians, attributions, fine-tuning with dropout off), and a model in training mode needs no
    saved state under ``torch.no_grad()``. On the CPU both kernels give bit-identical results.
    """
    return torch.is_grad_enabled()


class UnsupportedPrecisionError(RuntimeError):
    """The requested precision cannot run on this machine (e.g. bf16 autocast of an LSTM on a
    CPU without native bf16 instructions). The message names the limitation and the fix."""


@functools.cache
def cpu_autocast_lstm_supported(dtype: torch.dtype) -> bool:
    """Whether PyTorch's fused LSTM runs under ``torch.autocast("cpu", dtype)`` on this CPU.

    Under CPU autocast a float32 LSTM goes to oneDNN's mixed-precision kernel, which needs
    native instructions for ``dtype`` (AVX512_BF16 or AMX for bfloat16); on older CPUs, e.g.
    an AMD EPYC without AVX-512 or any CPU with ``ONEDNN_MAX_CPU_ISA=AVX2``, oneDNN
    "could not create a primitive descriptor". The probe runs a one-unit, one-step LSTM
    under autocast once per process and dtype (microseconds). A model that is entirely in
    ``dtype``, without autocast, does not need this (PyTorch has a kernel for it).
    """
    zeros = torch.zeros(1, 1, 1)
    weights = [torch.zeros(4, 1), torch.zeros(4, 1), torch.zeros(4), torch.zeros(4)]
    try:
        with torch.autocast("cpu", dtype=dtype):
            torch.lstm(zeros, (zeros, zeros), weights, True, 1, 0.0, False, False, True)
    except RuntimeError:
        return False
    return True


def require_cpu_autocast_lstm(dtype: torch.dtype | None = None) -> None:
    """Raise :class:`UnsupportedPrecisionError` unless the fused LSTM runs under CPU autocast.

    Args:
        dtype: the autocast dtype (default: the one CPU autocast is set to now).

    Raises:
        UnsupportedPrecisionError: naming the CPU limitation and the fix, instead of
            oneDNN's "could not create a primitive descriptor" from inside the kernel.
    """
    dtype = torch.get_autocast_dtype("cpu") if dtype is None else dtype
    if cpu_autocast_lstm_supported(dtype):
        return
    name = str(dtype).removeprefix("torch.")
    raise UnsupportedPrecisionError(
        f"This CPU cannot run an LSTM under {name} autocast: PyTorch's oneDNN kernel needs native "
        f"{name} instructions (AVX512_BF16 or AMX for bfloat16), which this processor lacks "
        f"(or ONEDNN_MAX_CPU_ISA restricts them). Run in float32 instead: mtlstm-train "
        f"--mixed-precision no, or no torch.autocast('cpu', {name}) around the model; "
        f"mixed precision needs a CPU with native {name} support or a GPU."
    )


def compact_kept_steps(
    attention_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move each row's kept steps (mask 1) to the front, in order: the layout the recurrences take.

    The mask may hold zeros anywhere (left or right padding, or holes): a masked step leaves
    the state untouched, exactly as padding does, so a row is the sequence of its kept steps.

    Args:
        attention_mask: ``(B, T)``, 1 (or True) for steps to read, 0 for steps to skip (any
            other value is read as 1; the model checks the values before calling this).

    Returns:
        ``(gather_index (B, T), lengths (B,), scatter_index (B, T))``: ``x.gather(1,
        gather_index)`` moves the kept steps of each row to its first ``lengths[b]`` positions
        (the rest is filler, read by no recurrence), and ``scatter_index[b, t]`` is the compact
        position of original step ``t`` (see :func:`restore_alignment`).
    """
    mask = attention_mask.bool()
    # A stable sort on "is masked" keeps the kept steps first, in their original order.
    gather_index = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(gather_index)
    scatter_index = torch.empty_like(gather_index).scatter_(1, gather_index, positions)
    return gather_index, mask.sum(dim=1), scatter_index


def restore_alignment(compact: torch.Tensor, lengths: torch.Tensor, scatter_index: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`compact_kept_steps` for a ``(B, T, H)`` tensor: masked steps become zero."""
    restored = compact.gather(1, scatter_index[:, :, None].expand_as(compact))
    kept = scatter_index < lengths[:, None]
    return restored * kept[:, :, None].to(restored.dtype)
