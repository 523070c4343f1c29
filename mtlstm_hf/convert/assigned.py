"""Recognising assigned (imposed) timescales in the biases of a converted LSTM layer.

Mahto et al. (ICLR 2021) assign each unit of a layer a timescale ``T`` (in tokens) through
its forget-gate bias, ``b_f = -ln(exp(1/T) - 1)``, set the input-gate bias to ``b_i = -b_f``
and freeze both; the reference code (HuthLab/multi-timescale-LSTM-LMs ``model_mts.py``)
writes them into ``bias_hh_l0`` (``[-b_f, b_f]`` for the i and f blocks), zeroes those blocks
of ``bias_ih_l0`` and freezes both bias vectors of every layer but the last. Its layer 2 uses
``scipy.stats.invgamma.isf(linspace(0, 1, H + 1), a=0.56, scale=1)[1:]``, whose last unit has
``T = 0`` (``b_f = -inf``, ``b_i = +inf``).

A trained, free LSTM never has ``b_i = -b_f`` exactly in every unit, so that equality (of the
summed biases ``b_ih + b_hh``, in float32) is taken as the sign of assigned timescales. They
are read back as ``T = -1 / ln sigmoid(b_f)`` (:func:`timescale_from_forget_bias`) and stored
as an explicit per-unit schedule, chosen so that the model's own ``b_f`` of that schedule
(``forget_bias_from_timescale(T)`` rounded to float32) is the source's bias bit for bit: the
T = 0 unit is exactly 0, an infinite bias an infinite timescale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..models.mtlstm.timescales import (
    forget_bias_from_timescale,
    realize_timescales,
    timescale_from_forget_bias,
)
from .families import LSTMLayerWeights

__all__ = [
    "KNOWN_SCHEDULES",
    "LayerTimescales",
    "describe_assigned",
    "detect_layer_timescales",
    "exact_explicit_timescales",
    "reference_layout_problem",
]

KNOWN_SCHEDULES: dict[str, dict[str, Any]] = {
    "inverse gamma(alpha=0.56, beta=1), reference grid (with its T=0 unit)": {
        "type": "inverse_gamma",
        "alpha": 0.56,
        "beta": 1.0,
        "grid": "reference",
    },
    "inverse gamma(alpha=0.56, beta=1), endpoint-free grid": {
        "type": "inverse_gamma",
        "alpha": 0.56,
        "beta": 1.0,
        "grid": "endpoint_free",
    },
}
"""Schedules a layer's assigned timescales are compared with, to name them in the summary
(the paper's layer 2, on both grids). Fixed-value groups (layer 1: T=3|4) are recognised for
any values."""


@dataclass
class LayerTimescales:
    """What one layer's biases say about timescales.

    Attributes:
        schedule: ``{"type": "none"}`` or ``{"type": "explicit", "timescales": [...]}`` (tokens).
        description: ``"free"`` or how the assigned timescales were recognised, e.g.
            ``"fixed T=3|4"`` or a key of :data:`KNOWN_SCHEDULES`, else ``"explicit"``.
    """

    schedule: dict[str, Any]
    description: str

    @property
    def assigned(self) -> bool:
        return self.schedule["type"] != "none"


def _gate_biases(layer: LSTMLayerWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """``(b_i, b_f)``, each ``(H,)`` float32: the input and forget blocks of ``b_ih + b_hh``."""
    hidden = layer.hidden_size
    total = layer.summed_bias()
    return total[:hidden], total[hidden : 2 * hidden]


def _float32_bias(timescales: torch.Tensor) -> torch.Tensor:
    return forget_bias_from_timescale(timescales).to(torch.float32)


def exact_explicit_timescales(forget_bias: torch.Tensor) -> list[float]:
    """Per-unit timescales ``T >= 0`` (tokens) whose float32 forget bias is exactly ``forget_bias``.

    ``T = -1 / ln sigmoid(b_f)`` in float64; where rounding ``forget_bias_from_timescale(T)``
    to float32 does not give ``b_f`` back, ``T`` is moved by one float64 step at a time
    towards it (a few steps at most).

    Args:
        forget_bias: ``(H,)`` float32 ``b_f`` (``-inf`` gives 0, ``+inf`` gives inf).

    Returns:
        ``H`` floats, for an explicit schedule.

    Raises:
        ValueError: a bias is NaN, or no float64 timescale reproduces a bias (not expected).
    """
    if bool(torch.isnan(forget_bias).any()):
        raise ValueError("a forget-gate bias is NaN: no timescale")
    target = forget_bias.to(torch.float32)
    timescales = timescale_from_forget_bias(target.double())
    for _ in range(64):
        wrong = _float32_bias(timescales) != target
        if not bool(wrong.any()):
            return timescales.tolist()
        # b_f increases with T: step T up where the bias came out too small, down otherwise.
        direction = torch.where(_float32_bias(timescales) < target, math.inf, 0.0).double()
        timescales = torch.where(wrong, torch.nextafter(timescales, direction), timescales)
    units = torch.nonzero(_float32_bias(timescales) != target).flatten().tolist()
    raise ValueError(f"no timescale reproduces the forget-gate bias of unit(s) {units[:5]} exactly")


def describe_assigned(forget_bias: torch.Tensor) -> str:
    """Name the schedule behind assigned forget biases ``(H,)`` (float32) when it is a known one:
    ``"fixed T=3|4"`` (up to 8 values in consecutive groups), a key of :data:`KNOWN_SCHEDULES`,
    else ``"explicit"``."""
    hidden = forget_bias.shape[0]
    # Fixed values in consecutive groups (numpy.array_split sizes), e.g. the paper's layer 1.
    distinct: list[float] = []
    for value in forget_bias.tolist():
        if not distinct or distinct[-1] != value:
            distinct.append(value)
    if 1 <= len(distinct) <= 8 and len(set(distinct)) == len(distinct):
        nominal = []
        for value in distinct:
            timescale = float(timescale_from_forget_bias(torch.tensor(value, dtype=torch.float64)))
            nominal.append(float(f"{timescale:.6g}") if math.isfinite(timescale) else timescale)
        fixed = (
            realize_timescales({"type": "fixed", "values": nominal}, hidden) if all(t > 0 for t in nominal) else None
        )
        if fixed is not None and torch.equal(_float32_bias(fixed), forget_bias):
            return "fixed T=" + "|".join(f"{value:g}" for value in nominal)
    for name, schedule in KNOWN_SCHEDULES.items():
        known = realize_timescales(schedule, hidden)
        assert known is not None  # every known schedule assigns timescales (none is "none")
        if torch.equal(_float32_bias(known), forget_bias):
            return name
    return "explicit"


def detect_layer_timescales(layer: LSTMLayerWeights) -> LayerTimescales:
    """Whether ``layer``'s biases carry assigned timescales, and which.

    Assigned means: the summed input-gate bias is exactly minus the summed forget-gate bias in
    every unit (``b_i = -b_f``), not all of them zero. Then the schedule is explicit with
    :func:`exact_explicit_timescales` of ``b_f``; otherwise ``{"type": "none"}``.
    """
    input_bias, forget_bias = _gate_biases(layer)
    if torch.equal(input_bias, -forget_bias) and bool((forget_bias != 0).any()):
        timescales = exact_explicit_timescales(forget_bias)
        return LayerTimescales({"type": "explicit", "timescales": timescales}, describe_assigned(forget_bias))
    return LayerTimescales({"type": "none"}, "free")


def reference_layout_problem(layer: LSTMLayerWeights) -> str | None:
    """``None`` when ``layer``'s biases are laid out as the reference code assigns timescales
    (``bias_ih`` i and f blocks zero, ``bias_hh`` i block = minus its f block); otherwise what
    differs, for an error message."""
    hidden = layer.hidden_size
    bias_ih, bias_hh = layer.bias_ih.float(), layer.bias_hh.float()
    nonzero = int((bias_ih[: 2 * hidden] != 0).sum())
    if nonzero:
        return f"bias_ih_l0 has {nonzero} non-zero entries in its input and forget gate blocks (expected all 0)"
    differ = int((bias_hh[:hidden] != -bias_hh[hidden : 2 * hidden]).sum())
    if differ:
        return f"bias_hh_l0's input gate block differs from minus its forget gate block in {differ} of {hidden} units"
    return None
