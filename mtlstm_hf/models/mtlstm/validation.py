"""Torch-free rules for configuration fields: timescale schedule specs and realisable
DropConnect probabilities.

The configuration validates its fields with these rules, and the modules that use the values
(``timescales.realize_timescales``, ``layers.MTLSTMLayer``) apply the same ones, so each rule
is written once. This file imports only the standard library (the configuration file, a leaf,
imports only this file, the cell catalogue ``layouts.py`` and the plain-data ``presets.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .checks import check_positive_finite, check_positive_int, is_integer, is_number

INVERSE_GAMMA_GRIDS: tuple[str, ...] = ("endpoint_free", "reference")


def _timescale_value(value: Any, field: str, allow_zero: bool = False) -> float:
    """Validate one timescale: a number in ``(0, inf]`` (inf = never forget), or ``[0, inf]``
    with ``allow_zero`` (0 = forget at once)."""
    bound = ">= 0" if allow_zero else "> 0"
    if not is_number(value):
        raise ValueError(f"{field} must be a number {bound} (float('inf') allowed), got {value!r}")
    value = float(value)
    if not (value >= 0.0 if allow_zero else value > 0.0):  # also rejects NaN
        raise ValueError(f"{field} must be {bound} (float('inf') allowed), got {value!r}")
    return value


def _number_list(value: Any, field: str) -> list[Any]:
    """Accept a list/tuple (or 1-D tensor) of entries; return a new list."""
    if hasattr(value, "dim") and hasattr(value, "tolist"):  # a tensor (this file does not import torch)
        if value.dim() != 1:
            raise ValueError(f"{field} must be a 1-D list of numbers, got a tensor of shape {tuple(value.shape)}")
        return value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{field} must be a list of numbers, got {value!r}")
    return list(value)


def normalize_schedule(
    schedule: Mapping[str, Any] | str | None, hidden_size: int, field: str = "timescale_schedules"
) -> dict[str, Any]:
    """Validate one layer's timescale schedule and return its canonical form.

    Accepted specs (timescales in tokens):

    * ``None``, ``"none"`` or ``{"type": "none"}``: no assigned timescales
      (ordinary trainable init) -> ``{"type": "none"}``.
    * ``{"type": "fixed", "values": [3, 4]}``: the units are split into
      ``len(values)`` consecutive groups, group ``k`` gets ``values[k]``; when
      ``hidden_size`` is not divisible, the first groups get one unit more
      (like ``numpy.array_split``). Paper layer 1 is ``[3, 4]``. At most
      ``hidden_size`` values.
    * ``{"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0, "grid": "endpoint_free"}``:
      deterministic quantiles of ``InverseGamma(alpha, scale=beta)`` (paper
      layer 2); ``grid`` is optional, one of :data:`INVERSE_GAMMA_GRIDS`,
      default ``"endpoint_free"`` (see ``timescales.realize_timescales``).
    * ``{"type": "chrono", "max_timescale": 70.0}``: chrono initialisation
      (Tallec & Ollivier 2018), ``b_f ~ log U(1, max_timescale - 1)``;
      ``max_timescale`` must be finite and > 2.
    * ``{"type": "explicit", "timescales": [...]}``: exactly ``hidden_size``
      timescales.

    The priors of other recurrent models (every key optional unless said; defaults are the
    source's; see ``timescales.realize_timescales`` for the formulas):

    * ``{"type": "log_uniform", "dt_min": 1e-3, "dt_max": 0.1, "state_size": 1}``: Mamba/S4D,
      step size ``dt`` log-uniform, ``state_size`` units per channel with ``A_n = -n``
      (Mamba: 16); ``0 < dt_min <= dt_max``, ``state_size`` divides ``hidden_size``.
    * ``{"type": "ring", "r_min": 0.9, "r_max": 0.999, "exponent": 1.0}``: LRU, ``|lambda|^2``
      uniform on ``[r_min^2, r_max^2]``, per-step retention ``|lambda|^exponent`` (RG-LRU: 8);
      ``0 < r_min <= r_max < 1``.
    * ``{"type": "geometric", "min_timescale": ..., "max_timescale": ..., "num_timescales": H,
      "spacing": "timescale"}`` (both bounds required): SITH (``spacing="timescale"``) or RetNet
      (``"decay_rate"``: ``1 - a`` geometric); ``num_timescales <= hidden_size`` groups of units.
    * ``{"type": "powerlaw_spacing", "parametrization": "forget_bias", "start", "end",
      "exponent", "depth_exponent", "depth_ratio": 0.0}``: xLSTM's sLSTM (``forget_bias``) or
      RWKV-4 (``rwkv_decay``), see :data:`POWERLAW_PARAMETRIZATIONS`; ``depth_ratio`` in [0, 1].
    * ``{"type": "uniform_gate", "d": hidden_size}``: uniform gate initialisation (Gu et al.
      2020), forget gates uniform in ``(1/d, 1 - 1/d)``; ``d >= 2``.

    Fixed timescales must be > 0; ``float('inf')`` is allowed and means "never
    forget" (``f = 1``, ``b_f = +inf``; Python's ``json`` writes it as
    ``Infinity``). Explicit timescales must be >= 0: exactly ``0`` is allowed
    there and means "forget at once" (``f = 0``, ``b_f = -inf``, ``b_i = +inf``),
    the last unit of the reference code's layer 2 (``"reference"`` grid), so
    that a converted reference checkpoint (``mtlstm-convert``) carries its
    timescales exactly. ``alpha``, ``beta`` must be positive and finite.
    Booleans are rejected where numbers are expected. The input is not mutated.

    Args:
        schedule: the spec.
        hidden_size: number of units of the layer (positive int).
        field: name used in error messages, e.g. ``"timescale_schedules[1]"``.

    Returns:
        A new JSON-serialisable dict with ``"type"`` and the type's keys, all
        numbers as floats. Normalising a normalised schedule returns it unchanged.

    Raises:
        ValueError: naming the offending field and the allowed values.
    """
    hidden_size = check_positive_int(hidden_size, f"hidden_size (for {field})")

    if schedule is None:
        return {"type": "none"}
    if isinstance(schedule, str):
        if schedule == "none":
            return {"type": "none"}
        raise ValueError(
            f"{field} must be None, 'none' or a dict with a 'type' in {list(SCHEDULE_RULES)}, got {schedule!r}"
        )
    if not isinstance(schedule, Mapping):
        raise ValueError(
            f"{field} must be None, 'none' or a dict with a 'type' in {list(SCHEDULE_RULES)}, got {schedule!r}"
        )

    if "type" not in schedule:
        raise ValueError(f"{field}.type is missing; allowed types: {list(SCHEDULE_RULES)}")
    schedule_type = schedule["type"]
    if not isinstance(schedule_type, str) or schedule_type not in SCHEDULE_RULES:
        raise ValueError(f"{field}.type must be one of {list(SCHEDULE_RULES)}, got {schedule_type!r}")

    rule = SCHEDULE_RULES[schedule_type]
    required, optional = rule.required, rule.optional
    allowed = set(required) | set(optional) | {"type"}
    unknown = sorted(str(key) for key in schedule if key not in allowed)
    if unknown:
        raise ValueError(
            f"{field} has unknown key(s) {unknown} for type {schedule_type!r}; allowed keys: {sorted(allowed)}"
        )
    for key in required:
        if key not in schedule:
            raise ValueError(f"{field}.{key} is missing; type {schedule_type!r} requires keys {list(required)}")

    return SCHEDULE_RULES[schedule_type].normalize(schedule, hidden_size, field)


# ---------------------------------------------------------------------------
# The schedule table: one entry per schedule type (its torch realisation is the entry of the same
# name in ``timescales.SCHEDULE_REALIZATIONS``; ``timescales.register_schedule`` adds to both)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleRule:
    """The torch-free rules of one timescale schedule type.

    Attributes:
        required, optional: the keys a spec of this type takes besides ``"type"``.
        normalize: ``(spec, hidden_size, field) -> canonical spec`` (a new JSON-serialisable dict
            with ``"type"``); raises ``ValueError`` naming ``field.<key>``, the value and what is
            allowed. Called after the keys were checked against ``required``/``optional``.
        drawn: the timescales are random draws (an initialisation, e.g. chrono), not a function of
            the spec: they are set with the weights, and a loaded model keeps its own.
        distribution: the family whose quantiles the schedule places (``"inverse_gamma"``), or
            ``None`` (the timescales follow no distribution: fixed values, draws, a list).
    """

    required: tuple[str, ...]
    optional: tuple[str, ...]
    normalize: Callable[[Mapping[str, Any], int, str], dict[str, Any]]
    drawn: bool = False
    distribution: str | None = None


def _none_schedule(schedule: Mapping[str, Any], hidden_size: int, field: str) -> dict[str, Any]:
    return {"type": "none"}


def _fixed_schedule(schedule: Mapping[str, Any], hidden_size: int, field: str) -> dict[str, Any]:
    values = _number_list(schedule["values"], f"{field}.values")
    if not values:
        raise ValueError(f"{field}.values must be a non-empty list of timescales > 0")
    if len(values) > hidden_size:
        raise ValueError(
            f"{field}.values has {len(values)} entries but hidden_size is {hidden_size}; "
            "at most one value per unit is allowed"
        )
    return {"type": "fixed", "values": [_timescale_value(v, f"{field}.values[{i}]") for i, v in enumerate(values)]}


def _inverse_gamma_schedule(schedule: Mapping[str, Any], hidden_size: int, field: str) -> dict[str, Any]:
    alpha = check_positive_finite(schedule["alpha"], f"{field}.alpha")
    beta = check_positive_finite(schedule["beta"], f"{field}.beta")
    grid = schedule.get("grid", "endpoint_free")
    if not isinstance(grid, str) or grid not in INVERSE_GAMMA_GRIDS:
        raise ValueError(f"{field}.grid must be one of {list(INVERSE_GAMMA_GRIDS)}, got {grid!r}")
    return {"type": "inverse_gamma", "alpha": alpha, "beta": beta, "grid": grid}


def _chrono_schedule(schedule: Mapping[str, Any], hidden_size: int, field: str) -> dict[str, Any]:
    max_timescale = schedule["max_timescale"]
    if not is_number(max_timescale) or not (math.isfinite(float(max_timescale)) and float(max_timescale) > 2.0):
        raise ValueError(
            f"{field}.max_timescale must be a finite number > 2 so that U(1, max_timescale - 1) "
            f"is non-empty, got {max_timescale!r}"
        )
    return {"type": "chrono", "max_timescale": float(max_timescale)}


def _explicit_schedule(schedule: Mapping[str, Any], hidden_size: int, field: str) -> dict[str, Any]:
    timescales = _number_list(schedule["timescales"], f"{field}.timescales")
    if len(timescales) != hidden_size:
        raise ValueError(
            f"{field}.timescales must have exactly hidden_size={hidden_size} entries, got {len(timescales)}"
        )
    return {
        "type": "explicit",
        "timescales": [
            _timescale_value(v, f"{field}.timescales[{i}]", allow_zero=True) for i, v in enumerate(timescales)
        ],
    }


# The timescale priors of modern recurrent models (``TIMESCALE-PRIORS``: Mamba/S4D, LRU/RG-LRU,
# RetNet/SITH, RWKV-4/sLSTM, uniform gate initialisation). Each realises deterministic quantiles
# (or the index grid) of its source formula, so a layer's timescales are a function of the spec.


def _number_in(value: Any, field: str, low: float, high: float, *, low_open: bool, high_open: bool) -> float:
    """``value`` as a float in the interval ``(low|[low, high)|high]``; else ``ValueError`` naming it."""
    allowed = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    number = float(value) if is_number(value) else math.nan
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (above and below):  # NaN and non-numbers fail both
        raise ValueError(f"{field} must be a number in {allowed}, got {value!r}")
    return number


def _ordered_pair(
    schedule: Mapping[str, Any], low_key: str, high_key: str, field: str, defaults: tuple[float, float]
) -> tuple[float, float]:
    low = check_positive_finite(schedule.get(low_key, defaults[0]), f"{field}.{low_key}")
    high = check_positive_finite(schedule.get(high_key, defaults[1]), f"{field}.{high_key}")
    if low > high:
        raise ValueError(f"{field}.{low_key} must be <= {field}.{high_key}, got {low!r} > {high!r}")
    return low, high


def _log_uniform_schedule(schedule: Mapping[str, Any], hidden_size: int, field: str) -> dict[str, Any]:
    dt_min, dt_max = _ordered_pair(schedule, "dt_min", "dt_max", field, (1e-3, 1e-1))
    state_size = check_positive_int(schedule.get("state_size", 1), f"{field}.state_size")
    if hidden_size % state_size:
        raise ValueError(
            f"{field}.state_size must divide hidden_size={hidden_size} (each channel has state_size units "
            f"with A_n = -n), got {state_size!r}"
        )
    return {"type": "log_uniform", "dt_min": dt_min, "dt_max": dt_max, "state_size": state_size}


def _ring_schedule(schedule: Mapping[str, Any], hidden_size: int, field: str) -> dict[str, Any]:
    r_min = _number_in(schedule.get("r_min", 0.9), f"{field}.r_min", 0.0, 1.0, low_open=True, high_open=True)
    r_max = _number_in(schedule.get("r_max", 0.999), f"{field}.r_max", 0.0, 1.0, low_open=True, high_open=True)
    if r_min > r_max:
        raise ValueError(f"{field}.r_min must be <= {field}.r_max, got {r_min!r} > {r_max!r}")
    exponent = check_positive_finite(schedule.get("exponent", 1.0), f"{field}.exponent")
    return {"type": "ring", "r_min": r_min, "r_max": r_max, "exponent": exponent}


GEOMETRIC_SPACINGS: tuple[str, ...] = ("timescale", "decay_rate")
"""What a ``geometric`` schedule spaces geometrically: the timescales (SITH) or the decay rates
``1 - a`` (RetNet)."""


def _geometric_schedule(schedule: Mapping[str, Any], hidden_size: int, field: str) -> dict[str, Any]:
    low, high = _ordered_pair(schedule, "min_timescale", "max_timescale", field, (math.nan, math.nan))
    count = check_positive_int(schedule.get("num_timescales", hidden_size), f"{field}.num_timescales")
    if count > hidden_size:
        raise ValueError(f"{field}.num_timescales must be <= hidden_size={hidden_size}, got {count!r}")
    if count == 1 and low != high:
        raise ValueError(
            f"{field}.num_timescales is 1 (default: hidden_size={hidden_size}), which places min_timescale only; "
            f"allowed: num_timescales >= 2, or min_timescale == max_timescale, got {low!r} and {high!r}"
        )
    spacing = schedule.get("spacing", "timescale")
    if not isinstance(spacing, str) or spacing not in GEOMETRIC_SPACINGS:
        raise ValueError(f"{field}.spacing must be one of {list(GEOMETRIC_SPACINGS)}, got {spacing!r}")
    return {
        "type": "geometric",
        "min_timescale": low,
        "max_timescale": high,
        "num_timescales": count,
        "spacing": spacing,
    }


POWERLAW_PARAMETRIZATIONS: dict[str, dict[str, float]] = {
    "forget_bias": {"start": 5.0, "end": -7.0, "exponent": 0.3, "depth_exponent": 1.3},
    "rwkv_decay": {"start": -5.0, "end": 3.0, "exponent": 0.7, "depth_exponent": 1.3},
}
"""What a ``powerlaw_spacing`` schedule spaces over the channels, with its source's defaults:
``forget_bias`` is xLSTM's sLSTM ``b_f = 5 - 12 x^(0.3 + 1.3 r)`` (timescale ``1/softplus(-b_f)``),
``rwkv_decay`` is RWKV-4's ``w = -5 + 8 x^(0.7 + 1.3 r)`` (retention ``exp(-exp(w))``, timescale
``exp(-w)``); ``x = j / (H - 1)`` over the channels, ``r`` the layer's depth ratio in [0, 1]."""


def _powerlaw_spacing_schedule(schedule: Mapping[str, Any], hidden_size: int, field: str) -> dict[str, Any]:
    parametrization = schedule.get("parametrization", "forget_bias")
    if not isinstance(parametrization, str) or parametrization not in POWERLAW_PARAMETRIZATIONS:
        raise ValueError(
            f"{field}.parametrization must be one of {list(POWERLAW_PARAMETRIZATIONS)}, got {parametrization!r}"
        )
    defaults = POWERLAW_PARAMETRIZATIONS[parametrization]
    values = {}
    for key in ("start", "end"):
        value = schedule.get(key, defaults[key])
        if not is_number(value) or not math.isfinite(float(value)):
            raise ValueError(f"{field}.{key} must be a finite number, got {value!r}")
        values[key] = float(value)
    exponent = check_positive_finite(schedule.get("exponent", defaults["exponent"]), f"{field}.exponent")
    depth_exponent = _number_in(
        schedule.get("depth_exponent", defaults["depth_exponent"]),
        f"{field}.depth_exponent",
        0.0,
        math.inf,
        low_open=False,
        high_open=True,
    )
    depth_ratio = _number_in(
        schedule.get("depth_ratio", 0.0), f"{field}.depth_ratio", 0.0, 1.0, low_open=False, high_open=False
    )
    return {
        "type": "powerlaw_spacing",
        "parametrization": parametrization,
        **values,
        "exponent": exponent,
        "depth_exponent": depth_exponent,
        "depth_ratio": depth_ratio,
    }


def _uniform_gate_schedule(schedule: Mapping[str, Any], hidden_size: int, field: str) -> dict[str, Any]:
    d = schedule.get("d", hidden_size)
    if not is_integer(d) or d < 2:
        given = "" if "d" in schedule else f" (default: hidden_size={hidden_size})"
        raise ValueError(f"{field}.d must be an integer >= 2 (gates uniform in (1/d, 1 - 1/d)), got {d!r}{given}")
    return {"type": "uniform_gate", "d": int(d)}


SCHEDULE_RULES: dict[str, ScheduleRule] = {
    "none": ScheduleRule((), (), _none_schedule),
    "fixed": ScheduleRule(("values",), (), _fixed_schedule),
    "inverse_gamma": ScheduleRule(("alpha", "beta"), ("grid",), _inverse_gamma_schedule, distribution="inverse_gamma"),
    "chrono": ScheduleRule(("max_timescale",), (), _chrono_schedule, drawn=True),
    "explicit": ScheduleRule(("timescales",), (), _explicit_schedule),
    "log_uniform": ScheduleRule((), ("dt_min", "dt_max", "state_size"), _log_uniform_schedule),
    "ring": ScheduleRule((), ("r_min", "r_max", "exponent"), _ring_schedule),
    "geometric": ScheduleRule(("min_timescale", "max_timescale"), ("num_timescales", "spacing"), _geometric_schedule),
    "powerlaw_spacing": ScheduleRule(
        (),
        ("parametrization", "start", "end", "exponent", "depth_exponent", "depth_ratio"),
        _powerlaw_spacing_schedule,
    ),
    "uniform_gate": ScheduleRule((), ("d",), _uniform_gate_schedule),
}
"""Every timescale schedule type by name (``"type"`` of a spec). Its realisation in torch is the
entry of the same name in ``timescales.SCHEDULE_REALIZATIONS``."""

SCHEDULE_TYPES: tuple[str, ...] = tuple(SCHEDULE_RULES)
"""The schedule types of :data:`SCHEDULE_RULES` at import (``list(SCHEDULE_RULES)`` includes
types registered later)."""


DROP_CONNECT_LEVELS = 1 << 16
"""DropConnect decides each weight with a uniform 16-bit integer: probabilities are realised
in steps of ``2**-16`` (0.5, 0.25, ... exactly; 0.2 as 0.199997)."""


def drop_connect_levels(probability: float, field: str = "weight_drop") -> int:
    """How many of the ``2**16`` equally likely 16-bit values drop a weight: ``round(p * 2**16)``.

    Raises:
        ValueError: naming ``field``, if ``probability`` is outside ``[0, 1)`` or is non-zero
            but rounds to no level or to all of them (``p < 2**-17`` or ``p > 1 - 2**-17``),
            which would silently drop nothing or everything.
    """
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"{field} must be a probability in [0, 1), got {probability!r}.")
    levels = round(probability * DROP_CONNECT_LEVELS)
    if probability > 0.0 and not 0 < levels < DROP_CONNECT_LEVELS:
        raise ValueError(
            f"{field} is realised in steps of 2**-16: it must be 0 or in [1.6e-5, 0.99998] "
            f"(1 to {DROP_CONNECT_LEVELS - 1} steps), got {probability!r}."
        )
    return levels
