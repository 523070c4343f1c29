"""Timescales from activity: how fast each unit forgets a swapped context (Chien, Zhang & Honey,
"Mapping the timescale organization of neural language models", ICLR 2021).

The same segment ``S`` is fed after two different contexts: its own preceding text ``A`` and a
context ``B`` taken from elsewhere in the stream. A unit that integrates over a long window
keeps telling the two runs apart for long into ``S``; a short-timescale unit converges within a
few tokens. Per unit ``u`` and position ``t = 0, 1, ...`` of ``S``::

    D_u(t) = mean over samples of | h_u(t | A, S) - h_u(t | B, S) |

and the unit's *context-swap timescale* is ``tau_u = -1 / slope`` of the least-squares line
through ``log D_u(t)`` over the positions where ``D_u(t) > floor * D_u(0)`` (the measure of the
paper is the time to converge; the exponential fit gives it in the units of the gate-derived
``T = -1/ln f``). A linear unit ``h_t = a h_{t-1} + x_t`` has ``D(t) = a^(t+1) |h_A - h_B|``
exactly, so ``tau = -1/ln a`` (the test's oracle).

The measure needs nothing of the model but its hidden states: :func:`hidden_state_activations`
reads them from any ``transformers`` causal LM that returns ``hidden_states`` (this library's
model, GPT-2, Mamba, RWKV, ...), so the gate-derived timescales of a model with a forget gate can
be compared with the functional ones (Mahto et al. report layer-1 units assigned ``T = 3 | 4``
estimated at medians 0.66 | 1.09).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mtlstm_hf.models.mtlstm.checks import check_positive_int, is_number

__all__ = [
    "ContextSwapResult",
    "context_swap_timescales",
    "convergence_timescales",
    "hidden_state_activations",
    "rank_correlation",
]

Activations = Callable[[torch.Tensor], Sequence[torch.Tensor]]
"""``(batch, length) token ids -> one (batch, length, units) tensor per layer``."""


@dataclass(frozen=True)
class ContextSwapResult:
    """The context-swap measurement of one model.

    Attributes:
        differences: per layer, ``(segment_length, units)`` float64: ``D_u(t)``, the mean absolute
            difference of unit ``u``'s activation at segment position ``t`` between the two contexts.
        timescales: per layer, ``(units,)`` float64 tokens: ``tau_u`` (``inf``: no convergence
            within the segment; ``nan``: the unit never told the contexts apart, ``D_u(0) = 0``).
        context_length, segment_length, samples: the measurement's sizes.
    """

    differences: list[torch.Tensor]
    timescales: list[torch.Tensor]
    context_length: int
    segment_length: int
    samples: int


def convergence_timescales(differences: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """``tau_u = -1 / slope`` of the least-squares line through ``log D_u(t)``, per unit.

    Args:
        differences: ``(T, units)``, ``D_u(t) >= 0`` at segment positions ``t = 0..T-1``.
        floor: only positions with ``D_u(t) > floor * D_u(0)`` enter the fit (where the difference
            has not yet sunk into rounding noise); in ``(0, 1)``.

    Returns:
        ``(units,)`` float64 tokens: ``nan`` where ``D_u(0) = 0`` or fewer than two positions
        qualify, ``inf`` where the fitted slope is ``>= 0`` (no convergence).

    Raises:
        ValueError: ``differences`` is not 2-D with at least two positions, or ``floor`` is outside ``(0, 1)``.
    """
    if differences.dim() != 2 or differences.shape[0] < 2:
        raise ValueError(f"differences must be (positions >= 2, units), got shape {tuple(differences.shape)}.")
    if not (is_number(floor) and 0.0 < floor < 1.0):
        raise ValueError(f"floor must be a number in (0, 1), got {floor!r}.")
    values = differences.double()
    start = values[0]
    usable = (values > floor * start) & (start > 0)
    positions = torch.arange(values.shape[0], dtype=torch.float64)[:, None].expand_as(values)
    logs = torch.where(usable, torch.log(values.clamp(min=torch.finfo(torch.float64).tiny)), 0.0)
    count = usable.sum(0).double()
    weight = usable.double()
    mean_t = (positions * weight).sum(0) / count.clamp(min=1)
    mean_log = (logs * weight).sum(0) / count.clamp(min=1)
    centred = (positions - mean_t) * weight
    variance = (centred * (positions - mean_t)).sum(0)
    slope = (centred * (logs - mean_log)).sum(0) / variance.clamp(min=torch.finfo(torch.float64).tiny)
    timescales = torch.where(slope < 0, -1.0 / slope, torch.full_like(slope, math.inf))
    return torch.where(count >= 2, timescales, torch.full_like(slope, math.nan))


def hidden_state_activations(model: Any) -> Activations:
    """The activations of every layer of a causal LM: ``model(ids, output_hidden_states=True)
    .hidden_states[1:]`` (index 0 is the embedding), each ``(batch, length, units)``, under
    ``torch.no_grad`` in the model's current mode, the ids moved to the model's device.

    Raises:
        ValueError: (when called) the model takes no ``output_hidden_states`` or returns no ``hidden_states``.
    """

    def activations(ids: torch.Tensor) -> Sequence[torch.Tensor]:
        device = next((p.device for p in model.parameters()), ids.device)  # the ids go where the model is
        try:
            with torch.no_grad():
                output = model(input_ids=ids.to(device), output_hidden_states=True, use_cache=False)
        except TypeError as error:
            raise ValueError(
                f"{type(model).__name__} cannot be called as model(input_ids=..., output_hidden_states=True, "
                f"use_cache=False) ({error}): the context-swap timescales need every layer's activations."
            ) from error
        states = getattr(output, "hidden_states", None)
        if not states or len(states) < 2:
            raise ValueError(
                f"{type(model).__name__} returned no hidden_states with output_hidden_states=True: the "
                "context-swap timescales need every layer's activations."
            )
        return states[1:]

    return activations


def _disjoint_context(
    length: int, start: int, context_length: int, segment_length: int, generator: torch.Generator
) -> int:
    """Where context ``B`` of the segment at ``start`` ends: a position ``p`` drawn uniformly among
    those whose context ``[p - C, p)`` of the stream (``length`` tokens) shares no token with
    ``[start - C, start + S)``.

    Raises:
        ValueError: no such position (the stream is too short for the sizes).
    """
    before = max(0, start - 2 * context_length + 1)  # p in [C, start - C]
    after = max(0, length - (start + context_length + segment_length) + 1)  # p in [start + S + C, length]
    if before + after == 0:
        raise ValueError(
            f"the stream ({length} tokens) has no context of {context_length} tokens disjoint from the one and the "
            f"segment ({segment_length} tokens) at position {start}: allowed: a longer stream, or smaller "
            "context_length / segment_length."
        )
    pick = int(torch.randint(before + after, (1,), generator=generator))
    return context_length + pick if pick < before else start + segment_length + context_length + (pick - before)


def context_swap_timescales(
    activations: Activations,
    stream: torch.Tensor,
    context_length: int = 100,
    segment_length: int = 50,
    samples: int = 32,
    batch_size: int = 16,
    seed: int = 0,
    floor: float = 1e-3,
) -> ContextSwapResult:
    """Measure every unit's context-swap timescale on a token stream.

    ``samples`` segments ``S`` start at positions drawn without replacement (generator seeded
    with ``seed``) from ``[context_length, N - segment_length]``; context ``A`` is the
    ``context_length`` tokens before ``S``, context ``B`` the ``context_length`` tokens before a
    position drawn (same generator) among those whose context shares no token with ``A`` or ``S``.
    Rows ``[A, S]`` and ``[B, S]`` are run from a zero state, in batches of ``batch_size`` pairs.
    A timescale longer than ``segment_length`` is an extrapolation of the fit beyond the segment.

    Args:
        activations: ``ids (batch, length) -> per layer (batch, length, units)``, e.g.
            :func:`hidden_state_activations` of a model.
        stream: ``(N,)`` token ids, ``N >= context_length + segment_length + samples - 1`` (and long
            enough that every segment finds a disjoint context elsewhere).
        context_length, segment_length, samples, batch_size: positive integers
            (``segment_length >= 2``, ``samples >= 2``).
        seed: the draw of the segments.
        floor: see :func:`convergence_timescales`.

    Raises:
        ValueError: naming the argument, its value and what is allowed (a stream too short for the
            sizes; a model that returns no hidden states).
    """
    context_length = check_positive_int(context_length, "context_length")
    segment_length = check_positive_int(segment_length, "segment_length")
    samples = check_positive_int(samples, "samples")
    batch_size = check_positive_int(batch_size, "batch_size")
    if segment_length < 2 or samples < 2:
        raise ValueError(
            f"segment_length and samples must be >= 2 (a slope needs two positions, a swap two samples), "
            f"got segment_length={segment_length}, samples={samples}."
        )
    stream = torch.as_tensor(stream)
    if stream.dim() != 1:
        raise ValueError(f"stream must be a 1-D tensor of token ids, got shape {tuple(stream.shape)}.")
    starts_available = stream.numel() - segment_length - context_length + 1
    if starts_available < samples:
        raise ValueError(
            f"stream has {stream.numel()} tokens: {samples} segments of {segment_length} tokens after "
            f"{context_length} tokens of context need at least {context_length + segment_length + samples - 1}; "
            "allowed: a longer stream or smaller context_length / segment_length / samples."
        )
    generator = torch.Generator().manual_seed(seed)
    starts = (context_length + torch.randperm(starts_available, generator=generator)[:samples]).tolist()
    borrowed_ends = [
        _disjoint_context(stream.numel(), start, context_length, segment_length, generator) for start in starts
    ]
    sums: list[torch.Tensor] | None = None
    for first in range(0, samples, batch_size):
        chosen = torch.arange(first, min(first + batch_size, samples))
        rows_a, rows_b = [], []
        for index in chosen.tolist():
            start = starts[index]
            segment = stream[start : start + segment_length]
            borrowed = borrowed_ends[index]
            rows_a.append(torch.cat([stream[start - context_length : start], segment]))
            rows_b.append(torch.cat([stream[borrowed - context_length : borrowed], segment]))
        ids = torch.stack(rows_a + rows_b)
        layers = activations(ids)
        half = len(rows_a)
        parts = [
            (layer[:half, context_length:].double() - layer[half:, context_length:].double()).abs().sum(0).cpu()
            for layer in layers
        ]
        sums = parts if sums is None else [total + part for total, part in zip(sums, parts)]
    assert sums is not None  # samples >= 2: at least one batch
    differences = [total / samples for total in sums]
    return ContextSwapResult(
        differences=differences,
        timescales=[convergence_timescales(difference, floor) for difference in differences],
        context_length=context_length,
        segment_length=segment_length,
        samples=samples,
    )


def rank_correlation(
    measured: torch.Tensor, assigned: torch.Tensor, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Spearman's rank correlation between measured and assigned timescales of the same units,
    with a paired bootstrap (over units) percentile interval (``scipy.stats``).

    Units with a ``nan`` in either are left out; ``inf`` ranks above every finite value.

    Returns:
        ``{"spearman": rho, "interval": [low, high], "confidence": confidence, "units": n}``
        (``rho`` and the interval ``nan`` with fewer than 3 units or a constant side; the interval
        ``nan`` where too many resamples hold one value only).
    """
    from scipy import stats

    measured, assigned = measured.double().reshape(-1), assigned.double().reshape(-1)
    keep = ~(torch.isnan(measured) | torch.isnan(assigned))
    x, y = measured[keep].numpy(), assigned[keep].numpy()
    result: dict[str, Any] = {"spearman": math.nan, "interval": [math.nan, math.nan], "confidence": confidence}
    result["units"] = int(keep.sum())
    if result["units"] < 3 or len(set(x.tolist())) < 2 or len(set(y.tolist())) < 2:
        return result

    def statistic(a: Any, b: Any) -> float:
        return float(stats.spearmanr(a, b).statistic)

    result["spearman"] = statistic(x, y)
    seeded = {"rng": seed} if "rng" in inspect.signature(stats.bootstrap).parameters else {"random_state": seed}
    with warnings.catch_warnings():
        # A resample of few units can hold one value only: its rho is nan (scipy warns); with too
        # many such resamples the interval is nan, which the result then says.
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        interval = stats.bootstrap(
            (x, y),
            statistic,
            paired=True,
            vectorized=False,
            n_resamples=resamples,
            confidence_level=confidence,
            method="percentile",
            **seeded,  # scipy >= 1.15 names it rng
        ).confidence_interval
    result["interval"] = [float(interval.low), float(interval.high)]
    return result
