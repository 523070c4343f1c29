"""Parallel (log-depth) scan of the first-order linear recurrence ``c_t = f_t * c_{t-1} + u_t``.

This is the only recurrence left in the LSTM - S-RNN - HIDDEN cell (Levy et al. 2018): once
the gates come from ``x_t`` alone, the memory cell is a linear recurrence with time-varying
element-wise coefficients, which a scan evaluates without a Python loop over time.

Algorithm: odd-even (cyclic) reduction, the recursive form of Blelloch's work-efficient scan.
Each step is the affine map ``c -> f * c + u``; composing two consecutive steps gives another
affine map::

    c_{2k+1} = (f_{2k+1} f_{2k}) c_{2k-1} + (f_{2k+1} u_{2k} + u_{2k+1})

so the odd positions solve a recurrence of half the length (recursively), and the even
positions follow from one element-wise step each. Depth ``O(log T)`` Python-level operations,
``O(B T H)`` work (about three full passes over the data).

Why this form and not cumulative products in log space: it never divides and never takes a
logarithm. Products of forget gates underflow gracefully to 0 (which is their true limit), so
gates of exactly 0 (the ``b_f = -inf`` unit of the multi-timescale init), 1e-12 or 1 - 1e-7 over
thousands of steps are all fine; every output is a sum of non-negatively weighted terms, with
rounding error growing like ``log T``. The closed form ``P_t * cumsum(u / P)`` divides by
products that underflow after a few steps of small ``f``.

Gradients use a hand-written backward (:class:`_LinearScan`): the adjoint of a linear recurrence
is the same recurrence run backwards, ``lambda_t = g_t + f_{t+1} lambda_{t+1}``, so the backward
costs one more scan and saves only ``f``, ``c`` and the initial state (autograd through the
recursion would save every intermediate level).

Only torch is imported: this file travels to the Hub with the model.
"""

from __future__ import annotations

import torch


def _scan_into(output: torch.Tensor, forget: torch.Tensor, update: torch.Tensor, initial: torch.Tensor) -> None:
    """Write ``c_t = forget_t * c_{t-1} + update_t`` (``c_{-1} = initial``) into ``output``.

    All of ``output``, ``forget``, ``update`` are ``(B, T, H)`` (possibly strided views along
    time); ``initial`` is ``(B, H)``. No autograd: called under ``torch.no_grad``.
    """
    total_steps = forget.shape[1]
    if total_steps == 0:
        return
    if total_steps == 1:
        torch.addcmul(update[:, 0], forget[:, 0], initial, out=output[:, 0])
        return
    paired = 2 * (total_steps // 2)
    forget_even, forget_odd = forget[:, 0:paired:2], forget[:, 1:paired:2]
    update_even, update_odd = update[:, 0:paired:2], update[:, 1:paired:2]
    # Compose steps (2k, 2k+1) into one affine map; its scan yields the odd positions.
    pair_forget = forget_odd * forget_even
    pair_update = torch.addcmul(update_odd, forget_odd, update_even)
    odd_output = output[:, 1:paired:2]
    _scan_into(odd_output, pair_forget, pair_update, initial)
    # Even positions: one step from the preceding odd position (or the initial state).
    torch.addcmul(update[:, 0], forget[:, 0], initial, out=output[:, 0])
    if paired > 2:
        torch.addcmul(update_even[:, 1:], forget_even[:, 1:], odd_output[:, :-1], out=output[:, 2:paired:2])
    if paired < total_steps:  # odd length: the last step follows the last odd position
        torch.addcmul(update[:, -1], forget[:, -1], output[:, -2], out=output[:, -1])


def _scan(forget: torch.Tensor, update: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """Untracked scan returning a fresh contiguous ``(B, T, H)`` tensor."""
    output = torch.empty(torch.broadcast_shapes(forget.shape, update.shape), dtype=update.dtype, device=update.device)
    _scan_into(output, forget, update, initial)
    return output


class _LinearScan(torch.autograd.Function):
    """``c = linear_scan(f, u, c_{-1})`` with the reverse scan as hand-written backward.

    With ``g_t = dL/dc_t`` (direct gradient of the outputs) the total adjoint is
    ``lambda_t = g_t + f_{t+1} lambda_{t+1}`` and::

        dL/du_t = lambda_t,   dL/df_t = lambda_t * c_{t-1},   dL/dc_{-1} = f_0 * lambda_0
    """

    @staticmethod
    def forward(forget: torch.Tensor, update: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
        return _scan(forget, update, initial)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # noqa: ANN001 (autograd signature)
        forget, _, initial = inputs
        ctx.save_for_backward(forget, initial, output)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: torch.Tensor):  # noqa: ANN001, ANN205
        forget, initial, cells = ctx.saved_tensors
        # Reverse scan as a forward scan in flipped time: step s = T-1-t multiplies the adjoint
        # of step t+1 by f_{t+1}; the first flipped step has nothing after it (initial 0).
        flipped_forget = torch.zeros_like(forget)
        flipped_forget[:, 1:] = forget[:, 1:].flip(1)
        flipped_adjoint = _scan(flipped_forget, grad_output.flip(1), torch.zeros_like(initial))
        adjoint = flipped_adjoint.flip(1)
        grad_forget = grad_update = grad_initial = None
        if ctx.needs_input_grad[0]:
            grad_forget = torch.empty_like(adjoint)
            torch.mul(adjoint[:, 1:], cells[:, :-1], out=grad_forget[:, 1:])
            torch.mul(adjoint[:, 0], initial, out=grad_forget[:, 0])
        if ctx.needs_input_grad[1]:
            grad_update = adjoint
        if ctx.needs_input_grad[2]:
            grad_initial = forget[:, 0] * adjoint[:, 0]
        return grad_forget, grad_update, grad_initial


def linear_scan(forget: torch.Tensor, update: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """All states of ``c_t = forget_t * c_{t-1} + update_t`` with ``c_{-1} = initial``.

    Log-depth odd-even reduction (see the module docstring): no Python loop over time, no
    division, no logarithm; stable for any gates in ``[0, 1]`` over any length.
    Differentiable with respect to all three arguments (first order).

    Args:
        forget: ``(B, T, H)`` multiplicative coefficients (forget gates, usually in [0, 1]).
        update: ``(B, T, H)`` additive terms (``i_t * c~_t`` for an LSTM cell).
        initial: ``(B, H)`` state before the first step.

    Returns:
        ``(B, T, H)``: ``c_0 .. c_{T-1}``.
    """
    if forget.shape != update.shape or forget.dim() != 3:
        raise ValueError(
            f"linear_scan: forget and update must both be (B, T, H); got {tuple(forget.shape)} "
            f"and {tuple(update.shape)}."
        )
    if initial.shape != (forget.shape[0], forget.shape[2]):
        raise ValueError(
            f"linear_scan: initial must be (B, H) = {(forget.shape[0], forget.shape[2])}; got {tuple(initial.shape)}."
        )
    if forget.shape[1] == 0:
        return update.new_zeros(update.shape)
    return _LinearScan.apply(forget, update, initial)
