"""Timescale math for multi-timescale LSTMs (Mahto et al., ICLR 2021).

Pure functions, no ``nn.Module`` and no Hugging Face code. This file is shipped
to the Hub as remote code, so it imports only the Python standard library and
``torch``.

Units and conventions
---------------------
* A *timescale* ``T`` is measured in tokens (recurrent steps). With no new
  input an LSTM cell decays as ``c_t = f**t * c_0 = exp(-t / T) * c_0``, so a
  unit with forget-gate value ``f`` has timescale ``T = -1 / ln f``.
* Since ``f = sigmoid(b_f)``, the forget-gate bias for a timescale is
  ``b_f = -ln(exp(1 / T) - 1)`` (paper, Sec. 3). Examples: ``T = 3`` gives
  ``b_f = 0.9273`` (``f = 0.7165``); ``T = 4`` gives ``b_f = 1.2587``
  (``f = 0.7788``).
* ``T = 0`` means "forget everything at once" (``f = 0``, ``b_f = -inf``);
  ``T = inf`` means "never forget" (``f = 1``, ``b_f = +inf``).
* A population of units with ``T ~ InverseGamma(alpha, beta)`` decays on
  average as the power law ``(1 + t / beta) ** -alpha`` (paper, Sec. 3.1); that law and the
  inverse gamma's density and survival function, which the forward pass does not need, are in
  ``mtlstm_hf.analysis.power_law``.

All tensor-valued functions return ``torch.float64`` tensors with the shape
(and device) of their main input; Python scalars give 0-d tensors.

Schedules
---------
A *schedule* says how one LSTM layer's per-unit timescales are chosen; see
:func:`normalize_schedule` for the accepted specs and :func:`realize_timescales`
to turn a spec into an ``(hidden_size,)`` tensor of timescales.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .checks import check_positive_finite
from .validation import INVERSE_GAMMA_GRIDS, SCHEDULE_RULES, SCHEDULE_TYPES, ScheduleRule, normalize_schedule

__all__ = [
    "SCHEDULE_TYPES",
    "INVERSE_GAMMA_GRIDS",
    "forget_bias_from_timescale",
    "timescale_from_forget_bias",
    "forget_gate_from_timescale",
    "timescale_from_forget_gate",
    "inverse_gamma_isf",
    "normalize_schedule",
    "realize_timescales",
    "register_schedule",
    "SCHEDULE_REALIZATIONS",
]

# log(smallest positive subnormal double) is about -744.4; below that x == 0.
_LOG_X_LOWER = -800.0
# Bisection halves the bracket each step; the bracket is under ~900 wide in
# log space, so ~60-75 halvings reach float64 resolution (the loop then stops
# early). 128 is a hard cap.
_BISECTION_STEPS = 128


def as_float64(value: torch.Tensor | float | Sequence[float]) -> torch.Tensor:
    """Convert to a float64 tensor, keeping the device of an input tensor."""
    return torch.as_tensor(value, dtype=torch.float64)


# ---------------------------------------------------------------------------
# Timescale <-> forget bias <-> forget gate
# ---------------------------------------------------------------------------


def forget_bias_from_timescale(timescale: torch.Tensor | float) -> torch.Tensor:
    """Forget-gate bias that gives a unit the timescale ``T`` (in tokens).

    ``b_f = -ln(exp(1/T) - 1)`` (Mahto et al. 2021, Sec. 3), the inverse of
    ``T = -1 / ln sigmoid(b_f)``.

    Args:
        timescale: ``T >= 0`` in tokens, any shape. ``T = 0`` gives ``-inf``,
            ``T = inf`` gives ``+inf``.

    Returns:
        float64 tensor of the same shape.

    Raises:
        ValueError: if any timescale is negative or NaN.
    """
    timescale = as_float64(timescale)
    if bool(torch.any(~(timescale >= 0.0))):
        raise ValueError("timescale must be >= 0 (0 = forget at once, inf = never forget)")
    rate = 1.0 / timescale  # T=0 -> inf, T=inf -> 0
    # -log(expm1(x)) is accurate for small x (long timescales); for large x
    # expm1 overflows, so use the identity -log(expm1(x)) = -x - log1p(-exp(-x)).
    small_rate = -torch.log(torch.expm1(torch.clamp(rate, max=1.0)))
    large_rate = -rate - torch.log1p(-torch.exp(-torch.clamp(rate, min=1.0)))
    return torch.where(rate <= 1.0, small_rate, large_rate)


def _softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(x))`` without overflow, exact at ``+-inf``."""
    return torch.clamp(x, min=0.0) + torch.log1p(torch.exp(-torch.abs(x)))


def timescale_from_forget_bias(forget_bias: torch.Tensor | float) -> torch.Tensor:
    """Timescale ``T`` (in tokens) of a unit whose forget gate is ``sigmoid(b_f)``.

    ``T = -1 / ln sigmoid(b_f) = 1 / softplus(-b_f)``; the softplus form stays
    accurate for large ``b_f`` where ``sigmoid(b_f)`` rounds to 1.

    Args:
        forget_bias: ``b_f``, any shape. ``-inf`` gives 0, ``+inf`` gives inf.

    Returns:
        float64 tensor of the same shape.
    """
    forget_bias = as_float64(forget_bias)
    return 1.0 / _softplus(-forget_bias)


def forget_gate_from_timescale(timescale: torch.Tensor | float) -> torch.Tensor:
    """Constant forget-gate value ``f = exp(-1/T)`` giving timescale ``T`` (tokens).

    Args:
        timescale: ``T >= 0``, any shape (0 -> ``f = 0``, inf -> ``f = 1``).

    Returns:
        float64 tensor of the same shape, values in ``[0, 1]``.

    Raises:
        ValueError: if any timescale is negative or NaN.
    """
    timescale = as_float64(timescale)
    if bool(torch.any(~(timescale >= 0.0))):
        raise ValueError("timescale must be >= 0 (0 = forget at once, inf = never forget)")
    return torch.exp(-1.0 / timescale)


def timescale_from_forget_gate(forget_gate: torch.Tensor | float) -> torch.Tensor:
    """Timescale ``T = -1 / ln f`` (in tokens) of a unit with forget gate ``f``.

    This is also the paper's estimator for a trained LSTM when ``f`` is the
    forget gate averaged over a corpus.

    Args:
        forget_gate: ``f`` in ``[0, 1]``, any shape (1 -> inf, 0 -> 0).

    Returns:
        float64 tensor of the same shape.

    Raises:
        ValueError: if any value lies outside ``[0, 1]`` or is NaN.
    """
    forget_gate = as_float64(forget_gate)
    if bool(torch.any(~((forget_gate >= 0.0) & (forget_gate <= 1.0)))):
        raise ValueError("forget_gate must lie in [0, 1]")
    # abs() turns -log(1) = -0.0 into +0.0 so that f = 1 maps to +inf, not -inf.
    return 1.0 / torch.abs(-torch.log(forget_gate))


# ---------------------------------------------------------------------------
# Inverse gamma distribution of timescales
# ---------------------------------------------------------------------------


def _gammaincinv(alpha: float, q: torch.Tensor) -> torch.Tensor:
    """Inverse in ``x`` of the regularized lower gamma ``P(alpha, x) = q``, as log(x).

    Vectorised bisection on ``log x``: ``P(alpha, x)`` is increasing in ``x``,
    so the predicate "``P(alpha, x) < q``" is monotone and bisection converges
    to float64 resolution without derivatives or a starting guess. For
    ``q > 0.5`` the equivalent upper-tail equation ``Q(alpha, x) = 1 - q`` is
    solved instead: ``1 - q`` is exact there, while ``P`` near 1 has lost the
    digits that matter. Entries with ``q`` outside ``(0, 1)`` give meaningless
    values; the caller replaces them.
    """
    # Upper bracket: for q < 1 in float64, 1 - q >= 1.1e-16, and the gamma
    # tail Q(alpha, x) falls below that before x = alpha + 10 sqrt(alpha) + 50,
    # which is <= 2 alpha + 100.
    log_high = torch.full_like(q, math.log(2.0 * alpha + 100.0))
    log_low = torch.full_like(q, _LOG_X_LOWER)
    alpha_tensor = torch.full_like(q, alpha)
    use_upper_tail = q > 0.5
    upper_tail_target = 1.0 - q
    for step in range(_BISECTION_STEPS):
        log_mid = 0.5 * (log_low + log_high)
        # Once every midpoint rounds onto an endpoint, the brackets are adjacent
        # doubles and further halving changes nothing: stop early.
        if step % 8 == 0 and bool(torch.all((log_mid == log_low) | (log_mid == log_high))):
            break
        x_mid = torch.exp(log_mid)
        below = torch.where(
            use_upper_tail,
            torch.special.gammaincc(alpha_tensor, x_mid) > upper_tail_target,
            torch.special.gammainc(alpha_tensor, x_mid) < q,
        )
        log_low = torch.where(below, log_mid, log_low)
        log_high = torch.where(below, log_high, log_mid)
    return 0.5 * (log_low + log_high)


def inverse_gamma_isf(q: torch.Tensor | float, alpha: float, beta: float) -> torch.Tensor:
    """Inverse survival function of ``T ~ InverseGamma(alpha, scale=beta)``.

    Returns ``t`` (tokens) with ``P(T > t) = q``, i.e. ``t = beta / x`` where
    ``P(alpha, x) = q`` (``x`` = ``gammaincinv(alpha, q)``), computed by
    bisection in torch float64 (no scipy). Matches
    ``scipy.stats.invgamma.isf(q, a=alpha, scale=beta)`` to ~1e-10 relative.

    Args:
        q: tail probabilities, any shape. ``q = 0`` gives inf, ``q = 1`` gives 0,
            values outside ``[0, 1]`` (or NaN) give NaN.

    Returns:
        float64 tensor with the shape of ``q``; decreasing in ``q``.
    """
    alpha = check_positive_finite(alpha, "alpha")
    beta = check_positive_finite(beta, "beta")
    q = as_float64(q)
    log_x = _gammaincinv(alpha, q)
    # exp(log beta - log x) rather than beta / exp(log x): x may underflow.
    timescale = torch.exp(math.log(beta) - log_x)
    timescale = torch.where(q == 0.0, torch.full_like(q, math.inf), timescale)
    timescale = torch.where(q == 1.0, torch.zeros_like(q), timescale)
    outside = ~((q >= 0.0) & (q <= 1.0))
    return torch.where(outside, torch.full_like(q, math.nan), timescale)


# ---------------------------------------------------------------------------
# Schedules (validated by validation.normalize_schedule)
# ---------------------------------------------------------------------------


def _linspace_like_numpy(num: int) -> torch.Tensor:
    """``numpy.linspace(0, 1, num)`` bit for bit: ``i * (1/(num-1))``, last = 1.

    torch.linspace rounds differently in the last bit; matching numpy keeps the
    "reference" grid identical to the reference code's.
    """
    step = 1.0 / (num - 1)
    grid = torch.arange(num, dtype=torch.float64) * step
    grid[-1] = 1.0
    return grid


def _no_timescales(schedule: dict[str, Any], hidden_size: int, generator: torch.Generator | None) -> None:
    return None


def _fixed_timescales(schedule: dict[str, Any], hidden_size: int, generator: torch.Generator | None) -> torch.Tensor:
    values = schedule["values"]
    base, extra = divmod(hidden_size, len(values))
    group_sizes = torch.tensor([base + 1 if k < extra else base for k in range(len(values))])
    return torch.repeat_interleave(torch.tensor(values, dtype=torch.float64), group_sizes)


def _inverse_gamma_timescales(
    schedule: dict[str, Any], hidden_size: int, generator: torch.Generator | None
) -> torch.Tensor:
    if schedule["grid"] == "endpoint_free":
        tail_probabilities = _linspace_like_numpy(hidden_size + 2)[1:-1]
    else:
        tail_probabilities = _linspace_like_numpy(hidden_size + 1)[1:]
    return inverse_gamma_isf(tail_probabilities, schedule["alpha"], schedule["beta"])


def _chrono_timescales(schedule: dict[str, Any], hidden_size: int, generator: torch.Generator | None) -> torch.Tensor:
    uniform = torch.rand(hidden_size, generator=generator, dtype=torch.float64)
    forget_bias = torch.log(1.0 + (schedule["max_timescale"] - 2.0) * uniform)
    return timescale_from_forget_bias(forget_bias)


def _explicit_timescales(schedule: dict[str, Any], hidden_size: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.tensor(schedule["timescales"], dtype=torch.float64)


def _quantile_grid(count: int) -> torch.Tensor:
    """``q_i = i / (count + 1)``, ``i = 1..count``: the endpoint-free quantiles (numpy's rounding)."""
    return _linspace_like_numpy(count + 2)[1:-1]


def _index_grid(count: int) -> torch.Tensor:
    """``x_j = j / (count - 1)``, ``j = 0..count-1`` (``[0.]`` for one): a formula's channel index."""
    return _linspace_like_numpy(count) if count > 1 else torch.zeros(1, dtype=torch.float64)


def _log_uniform_timescales(
    schedule: dict[str, Any], hidden_size: int, generator: torch.Generator | None
) -> torch.Tensor:
    state_size = schedule["state_size"]
    low, high = math.log(schedule["dt_min"]), math.log(schedule["dt_max"])
    step = torch.exp(low + _quantile_grid(hidden_size // state_size) * (high - low))  # dt per channel
    state_index = torch.arange(1, state_size + 1, dtype=torch.float64)  # A_n = -n
    # retention exp(dt * A_n) = exp(-dt n): T = 1 / (dt n); unit c * state_size + (n - 1)
    return (1.0 / (step[:, None] * state_index[None, :])).reshape(-1)


def _ring_timescales(schedule: dict[str, Any], hidden_size: int, generator: torch.Generator | None) -> torch.Tensor:
    low, high = schedule["r_min"] ** 2, schedule["r_max"] ** 2
    squared_modulus = low + _quantile_grid(hidden_size) * (high - low)  # |lambda|^2
    # retention |lambda|^c = exp(c/2 ln |lambda|^2): T = -2 / (c ln |lambda|^2)
    return -2.0 / (schedule["exponent"] * torch.log(squared_modulus))


def _geometric_timescales(
    schedule: dict[str, Any], hidden_size: int, generator: torch.Generator | None
) -> torch.Tensor:
    count = schedule["num_timescales"]
    fraction = _index_grid(count)
    low, high = schedule["min_timescale"], schedule["max_timescale"]
    if schedule["spacing"] == "timescale":  # SITH: tau_k = tau_0 (1 + c)^k, in log space (high / low may overflow)
        values = torch.exp(math.log(low) + fraction * (math.log(high) - math.log(low)))
    else:  # RetNet: the decay rate 1 - a geometric, 1 - a = 1 - exp(-1/T)
        fast, slow = -math.expm1(-1.0 / low), -math.expm1(-1.0 / high)
        values = -1.0 / torch.log1p(-(fast * (slow / fast) ** fraction))
    base, extra = divmod(hidden_size, count)
    group_sizes = torch.tensor([base + 1 if k < extra else base for k in range(count)])
    return torch.repeat_interleave(values, group_sizes)


def _powerlaw_spacing_timescales(
    schedule: dict[str, Any], hidden_size: int, generator: torch.Generator | None
) -> torch.Tensor:
    power = schedule["exponent"] + schedule["depth_exponent"] * schedule["depth_ratio"]
    value = schedule["start"] + (schedule["end"] - schedule["start"]) * _index_grid(hidden_size) ** power
    if schedule["parametrization"] == "rwkv_decay":  # retention exp(-exp(w)): T = exp(-w)
        return torch.exp(-value)
    return timescale_from_forget_bias(value)  # sigmoid forget gate with bias b_f


def _uniform_gate_timescales(
    schedule: dict[str, Any], hidden_size: int, generator: torch.Generator | None
) -> torch.Tensor:
    d = schedule["d"]
    gate = 1.0 / d + _quantile_grid(hidden_size) * (1.0 - 2.0 / d)  # f uniform in (1/d, 1 - 1/d)
    return -1.0 / torch.log(gate)


Realization = Callable[[dict[str, Any], int, "torch.Generator | None"], "torch.Tensor | None"]
"""``(normalised spec, hidden_size, generator) -> (hidden_size,) float64 timescales`` or ``None``."""

SCHEDULE_REALIZATIONS: dict[str, Realization] = {
    "none": _no_timescales,
    "fixed": _fixed_timescales,
    "inverse_gamma": _inverse_gamma_timescales,
    "chrono": _chrono_timescales,
    "explicit": _explicit_timescales,
    "log_uniform": _log_uniform_timescales,
    "ring": _ring_timescales,
    "geometric": _geometric_timescales,
    "powerlaw_spacing": _powerlaw_spacing_timescales,
    "uniform_gate": _uniform_gate_timescales,
}
"""The torch realisation of every schedule type of ``validation.SCHEDULE_RULES`` (same keys)."""


def register_schedule(name: str, rule: ScheduleRule, realize: Realization) -> None:
    """Add a timescale schedule type: its torch-free rule and its realisation, under one name.

    A configuration can then name it (``{"type": name, ...}``); :func:`normalize_schedule` applies
    ``rule`` and :func:`realize_timescales` calls ``realize``. A saved model with such a schedule
    needs the registering module imported before it loads (the Hub's remote code does not carry it).

    Raises:
        ValueError: ``name`` is not a non-empty string, or is taken.
    """
    if not isinstance(name, str) or not name or name in SCHEDULE_RULES or name in SCHEDULE_REALIZATIONS:
        raise ValueError(
            f"schedule name must be a new non-empty string (taken: {sorted(SCHEDULE_RULES)}), got {name!r}"
        )
    SCHEDULE_RULES[name] = rule
    SCHEDULE_REALIZATIONS[name] = realize


def is_drawn(schedule: Mapping[str, Any]) -> bool:
    """Whether a normalised schedule's timescales are random draws (an initialisation, e.g. chrono)."""
    return SCHEDULE_RULES[schedule["type"]].drawn


def realize_timescales(
    schedule: Mapping[str, Any] | str | None,
    hidden_size: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor | None:
    """Per-unit timescales (tokens) of one layer, shape ``(hidden_size,)``, float64.

    The schedule is (re)validated with :func:`normalize_schedule` and realised by its entry in
    :data:`SCHEDULE_REALIZATIONS`; ``"none"`` returns ``None``.

    * ``fixed``: ``values`` repeated over consecutive groups of units
      (``numpy.array_split`` sizes).
    * ``inverse_gamma``: ``T_i = isf(q_i)`` of ``InverseGamma(alpha, scale=beta)``
      at increasing ``q_i``, so units are ordered from long to short timescales.

      - ``"endpoint_free"``: ``q = linspace(0, 1, H + 2)[1:-1]``; all timescales
        finite and > 0 (what the reference code uses for its formal-language model).
      - ``"reference"``: ``q = linspace(0, 1, H + 1)[1:]``, exactly the reference
        code's language-model layer 2. It includes ``q = 1``, so the last unit
        gets ``T = 0`` (``b_f = -inf``, ``f = 0``): that unit never remembers
        anything from the previous step. Kept for faithful reproduction.
    * ``chrono``: ``b_f = log(u)``, ``u ~ U(1, max_timescale - 1)`` drawn with
      ``generator`` (global RNG if None); returns
      ``timescale_from_forget_bias(b_f)`` so that
      ``forget_bias_from_timescale`` recovers the sampled biases.
    * ``explicit``: the given list.

    The priors of other recurrent models take deterministic quantiles ``q_i = i / (n + 1)`` of
    the distribution their source draws from (as ``inverse_gamma`` does), or the source's own
    channel index ``x_j = j / (n - 1)`` where the source is a function of it:

    * ``log_uniform`` (Mamba, S4D): ``dt_c = exp(log dt_min + q_c (log dt_max - log dt_min))``
      for ``H / N`` channels, retention ``exp(-dt_c n)`` for ``n = 1..N``: ``T = 1 / (dt_c n)``
      (unit ``c N + n - 1``). Defaults: ``T`` in [10, 1000]; ``N = 16``: [0.625, 1000].
    * ``ring`` (LRU, RG-LRU): ``|lambda|^2 = r_min^2 + q_i (r_max^2 - r_min^2)``, retention
      ``|lambda|^c``: ``T = -2 / (c ln |lambda|^2)``. Defaults [9.49, 999.5]; ``c = 8``: [1.19, 125].
    * ``geometric``: ``T_k = T_min (T_max / T_min)^(k / (K - 1))`` (SITH) or, with
      ``spacing="decay_rate"``, ``1 - a_k`` geometric between ``1 - exp(-1/T_min)`` and
      ``1 - exp(-1/T_max)`` (RetNet's ``a_h = 1 - 2^(-5-h)``); ``K`` groups as ``fixed``.
    * ``powerlaw_spacing`` (sLSTM, RWKV-4): ``v_j = start + (end - start) x_j^(p + p_depth r)``;
      ``forget_bias``: ``T = 1 / softplus(-v_j)`` ([0.143, 149] by default), ``rwkv_decay``:
      ``T = exp(-v_j)`` ([0.0498, 148]).
    * ``uniform_gate`` (Gu et al. 2020): ``f_i = 1/d + q_i (1 - 2/d)``, ``T = -1 / ln f_i``.
    """
    schedule = normalize_schedule(schedule, hidden_size, field="schedule")
    return SCHEDULE_REALIZATIONS[schedule["type"]](schedule, hidden_size, generator)
