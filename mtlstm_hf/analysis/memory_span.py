"""Memory span of each layer: weighted-sum mass as a function of distance.

Levy et al. (ACL 2018, Sec. 3) unroll the LSTM cell into an element-wise
weighted sum of earlier content::

    c_t = sum_{j <= t} w_j^t * c~_j,        w_j^t = i_j * prod_{k=j+1..t} f_k        (H,)

The mass that word ``j`` still holds in the memory at ``t`` is ``||w_j^t||_2`` (norm over the
layer's ``H`` units). Averaged over all positions ``t`` of a corpus at a fixed distance
``d = t - j``, it is the layer's memory profile::

    m(d) = mean_{b, t} ||w_{t-d}^t||_2        d = 0 .. D-1

A layer with long timescales keeps ``m(d)`` high for larger ``d``. :func:`estimate_memory_span` computes
it over a token stream (eval mode, state carried) from the gates of :func:`~.traces.stream_traces`
with :func:`mtlstm_hf.analysis.gates.weighted_sum_log_weights` (log space: no underflow)
and :func:`~mtlstm_hf.analysis.gates.weighted_sum_norms`. Pairs ``(j, t)`` that straddle two
windows are counted: each window is analysed together with the last ``D - 1`` steps of gates
before it. Only the first ``D - 1`` positions of each batch row lack some distances (their
``counts`` are lower). Memory is ``O(B (L + D)^2 h)`` per block of ``h`` units (``L`` = window),
blocks chosen automatically.

:func:`passage_log_weights` gives the full ``(T, T, H)`` log weights of one short passage, for the
heat map of :func:`mtlstm_hf.analysis.figures.plot_weighted_sum_heatmap`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch

from mtlstm_hf.analysis.gates import weighted_sum_log_weights, weighted_sum_norms
from mtlstm_hf.models.mtlstm.checks import check_positive_int
from mtlstm_hf.models.mtlstm.layouts import layer_number

from .adapter import base_model, forget_gate_layers
from .traces import layer_traces, stream_traces

if TYPE_CHECKING:
    from mtlstm_hf.models.mtlstm.layers import MTLSTMLayer

__all__ = ["MemorySpan", "estimate_memory_span", "passage_log_weights"]

# Upper bound on the elements of one (B, S, S, h) block of log weights (float64: 32 MB).
_BLOCK_ELEMENTS = 4_000_000


def _checked_layers(model: torch.nn.Module, layers: int | Sequence[int] | None) -> list[int]:
    return forget_gate_layers(model, layers, "no memory cell / gates", "the weighted-sum view does not apply")


@dataclass
class MemorySpan:
    """Mean weighted-sum mass per distance and layer.

    Attributes:
        layers: analysed layers, 0-based indices into ``model.model.layers`` (rows of the tensors).
        distances: ``(D,)`` int64, ``0 .. D-1`` tokens.
        mean_norm: ``(L, D)`` float64, ``m(d)`` per layer.
        counts: ``(L, D)`` int64, ``(b, t)`` pairs averaged at each distance.
        num_units: hidden size per layer.
    """

    layers: list[int]
    distances: torch.Tensor
    mean_norm: torch.Tensor
    counts: torch.Tensor
    num_units: list[int]

    def summary(self) -> list[dict[str, Any]]:
        """Per layer (report rows: ``"layer"`` is the layer *number*, from 1): ``m(0)``;
        ``half_mass_distance``, the first ``d`` with ``m(d) <= m(0) / 2`` (None if beyond ``D - 1``);
        ``mean_distance = sum_d d m(d) / sum_d m(d)`` over ``d < D``."""
        rows = []
        for position, layer in enumerate(self.layers):
            profile = self.mean_norm[position]
            below = (profile <= 0.5 * profile[0]).nonzero()
            total = float(profile.sum())
            rows.append(
                {
                    "layer": layer_number(layer),
                    "mass_at_0": float(profile[0]),
                    "half_mass_distance": int(below[0]) if below.numel() else None,
                    "mean_distance": (
                        float((self.distances.double() * profile).sum()) / total if total > 0 else math.nan
                    ),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Report entry: ``{"layers" (layer numbers, from 1), "distances", "mean_norm", "counts",
        "num_units", "summary"}``."""
        return {
            "layers": [layer_number(layer) for layer in self.layers],
            "distances": self.distances.tolist(),
            "mean_norm": self.mean_norm.tolist(),
            "counts": self.counts.tolist(),
            "num_units": list(self.num_units),
            "summary": self.summary(),
        }


def _span_norms(input_gate: torch.Tensor, forget_gate: torch.Tensor) -> torch.Tensor:
    """``||w_j^t||_2`` ``(B, S, S)`` of a span, computed in blocks of units (sum of squared block norms)."""
    batch, steps, units = input_gate.shape
    block = max(1, min(units, _BLOCK_ELEMENTS // max(1, batch * steps * steps)))
    squared = input_gate.new_zeros(batch, steps, steps)
    for start in range(0, units, block):
        unit_slice = slice(start, start + block)
        log_weights, _ = weighted_sum_log_weights(input_gate[..., unit_slice], forget_gate[..., unit_slice])
        squared += weighted_sum_norms(log_weights).pow(2)
    return squared.sqrt()


def estimate_memory_span(
    model: torch.nn.Module,
    stream: torch.Tensor,
    max_distance: int = 100,
    batch_size: int = 1,
    window: int = 70,
    layers: int | Sequence[int] | None = None,
    max_tokens: int | None = None,
    progress: bool = False,
) -> MemorySpan:
    """``m(d) = mean ||w_{t-d}^t||_2`` for ``d < max_distance`` per layer, over a token stream.

    Args:
        model: ``MTLSTMForCausalLM`` or ``MTLSTMModel``.
        stream: ``(N,)`` token ids (cut into ``batch_size`` contiguous rows, state carried).
        max_distance: ``D``; distances ``0 .. D-1``.
        batch_size, window, max_tokens, progress: as in :func:`~.traces.stream_traces` (``progress``
            may also be an object with ``total`` and ``update(n)``, advanced once per window).
        layers: 0-based indices into ``model.model.layers``; default every layer with a memory cell.

    Raises:
        ValueError: a requested layer without memory cell (``lstm-gates``); a row shorter than
            ``max_distance`` tokens (the data is too short for the requested distances).
    """
    max_distance = check_positive_int(max_distance, "max_distance")
    layer_indices = _checked_layers(model, layers)
    base = base_model(model)
    sums = torch.zeros(len(layer_indices), max_distance, dtype=torch.float64)
    counts = torch.zeros(len(layer_indices), max_distance, dtype=torch.int64)
    history: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(layer_indices)
    distances = torch.arange(max_distance)
    chunks = stream_traces(
        model, stream, batch_size, window, layer_indices, max_tokens, min_row_length=max_distance, progress=progress
    )
    for chunk in chunks:
        for position, trace in enumerate(chunk.layers):
            # float64: squared norms of long-distance weights stay representable.
            input_gate, forget_gate = trace["input_gate"].double(), trace["forget_gate"].double()
            kept = history[position]
            if kept is not None:
                input_gate = torch.cat([kept[0], input_gate], 1)
                forget_gate = torch.cat([kept[1], forget_gate], 1)
            span_length, new_steps = input_gate.shape[1], trace["input_gate"].shape[1]
            norms = _span_norms(input_gate, forget_gate)  # (B, S, S), [t, j]
            # Positions on the device of the gates; the sums and counts stay on the host.
            current = torch.arange(span_length - new_steps, span_length, device=norms.device)[
                :, None
            ]  # new positions t
            source = current - distances.to(norms.device)[None, :]  # j = t - d, (new_steps, D)
            valid = source >= 0
            picked = norms[:, current, source.clamp(min=0)]  # (B, new_steps, D)
            sums[position] += (picked * valid).sum((0, 1)).cpu()
            counts[position] += valid.sum(0).cpu() * norms.shape[0]
            keep = max_distance - 1
            history[position] = (input_gate[:, -keep:], forget_gate[:, -keep:]) if keep else None
    mean_norm = sums / counts.clamp(min=1)
    model_layers = cast("Sequence[MTLSTMLayer]", base.layers)  # (an nn.ModuleList of them)
    sizes = [model_layers[index].hidden_size for index in layer_indices]
    return MemorySpan(layer_indices, distances, mean_norm, counts, sizes)


def passage_log_weights(model: torch.nn.Module, input_ids: torch.Tensor, layer: int, cache: Any = None) -> torch.Tensor:
    """Log weights ``log w_j^t`` ``(T, T, H)`` of one passage in one layer (``-inf`` for ``j > t``).

    Args:
        input_ids: ``(T,)`` or ``(1, T)`` token ids of a short passage (memory ``O(T^2 H)``).
        layer: 0-based index into ``model.model.layers`` of a layer with a memory cell.
        cache: state before the passage (None = zeros).

    Returns:
        ``(T, T, H)``, indexed ``[t, j, unit]``: feed to
        :func:`mtlstm_hf.analysis.figures.plot_weighted_sum_heatmap`.
    """
    (layer,) = _checked_layers(model, [layer])
    ids = torch.as_tensor(input_ids)
    ids = ids[None] if ids.dim() == 1 else ids
    if ids.dim() != 2 or ids.shape[0] != 1:
        raise ValueError(f"input_ids must be one passage, (T,) or (1, T); got {tuple(ids.shape)}.")
    (trace,) = layer_traces(model, ids, cache, [layer])
    log_weights, _ = weighted_sum_log_weights(trace["input_gate"].double(), trace["forget_gate"].double())
    return log_weights[0]
