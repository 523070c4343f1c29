"""The timescale priors of other recurrent models as schedules (``log_uniform``, ``ring``,
``geometric``, ``powerlaw_spacing``, ``uniform_gate``).

Oracles: each source's own formula, written here as the source computes it (Mamba's inverse
softplus of ``dt`` and ``A_log``, LRU's ``nu_log``, RecurrentGemma's ``recurrent_param`` and its
``-8 softplus``, RetNet's ``gamma_h``, SITH's ``tau_0 (1 + c)^k``, RWKV-4's ``decay_speed`` list,
sLSTM's ``powerlaw_blockdependent`` bias, the uniform gate's logit), and the ranges of timescales
the table in TIMESCALE-PRIORS implies for the default parameters."""

from __future__ import annotations

import math

import pytest
import torch

from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM
from mtlstm_hf.models.mtlstm.timescales import realize_timescales, timescale_from_forget_bias
from mtlstm_hf.models.mtlstm.validation import normalize_schedule

softplus = torch.nn.functional.softplus


def quantiles(count: int) -> torch.Tensor:
    return torch.arange(1, count + 1, dtype=torch.float64) / (count + 1)


def timescale_of_retention(retention: torch.Tensor) -> torch.Tensor:
    return -1.0 / torch.log(retention)


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=0.0)


def test_log_uniform_is_mambas_step_size_and_state_index():
    dt_min, dt_max, state_size, hidden = 1e-3, 1e-1, 16, 64
    # mamba: dt = exp(u (log dt_max - log dt_min) + log dt_min); dt_proj.bias = dt + log(-expm1(-dt));
    # A_log = log(arange(1, N + 1)); forward: dt = softplus(bias), A = -exp(A_log), retention exp(dt A)
    dt = torch.exp(quantiles(hidden // state_size) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    bias = dt + torch.log(-torch.expm1(-dt))
    a = -torch.exp(torch.log(torch.arange(1, state_size + 1, dtype=torch.float64)))
    retention = torch.exp(softplus(bias)[:, None] * a[None, :])
    expected = timescale_of_retention(retention).reshape(-1)
    spec = {"type": "log_uniform", "dt_min": dt_min, "dt_max": dt_max, "state_size": state_size}
    close(realize_timescales(spec, hidden), expected)


@pytest.mark.parametrize("exponent", [1.0, 8.0])
def test_ring_is_the_lru_and_the_rg_lru(exponent):
    hidden, r_min, r_max = 50, 0.9, 0.999
    u = r_min**2 + quantiles(hidden) * (r_max**2 - r_min**2)
    if exponent == 1.0:  # LRU: nu_log = log(-0.5 log u), |lambda| = exp(-exp(nu_log))
        retention = torch.exp(-torch.exp(torch.log(-0.5 * torch.log(u))))
    else:  # RG-LRU: recurrent_param = log(exp(-0.5 log u) - 1); a_t = exp(-8 r_t softplus(param)), r_t = 1
        param = torch.log(torch.exp(-0.5 * torch.log(u)) - 1.0)
        retention = torch.exp(-8.0 * 1.0 * softplus(param))
    spec = {"type": "ring", "r_min": r_min, "r_max": r_max, "exponent": exponent}
    close(realize_timescales(spec, hidden), timescale_of_retention(retention))


def test_geometric_decay_rates_are_retnets_heads():
    heads = 8
    gamma = 1.0 - 2.0 ** (-5.0 - torch.arange(heads, dtype=torch.float64))  # RetNet's gamma_h
    expected = timescale_of_retention(gamma)
    spec = {
        "type": "geometric",
        "min_timescale": float(expected[0]),
        "max_timescale": float(expected[-1]),
        "num_timescales": heads,
        "spacing": "decay_rate",
    }
    realized = realize_timescales(spec, 4 * heads)
    close(realized, expected.repeat_interleave(4))
    assert realized[0] == pytest.approx(31.4974, abs=1e-4) and realized[-1] == pytest.approx(4095.5, abs=1e-4)


def test_geometric_timescales_are_sith():
    tau_0, c, count = 1.5, 0.4, 7
    expected = tau_0 * (1.0 + c) ** torch.arange(count, dtype=torch.float64)
    spec = {"type": "geometric", "min_timescale": tau_0, "max_timescale": float(expected[-1])}
    close(realize_timescales(spec, count), expected)
    grouped = realize_timescales({**spec, "num_timescales": 3}, 10)  # groups of 4, 3, 3 units (array_split)
    assert grouped.tolist() == pytest.approx([tau_0] * 4 + [tau_0 * 1.4**3] * 3 + [tau_0 * 1.4**6] * 3)


@pytest.mark.parametrize("depth_ratio", [0.0, 0.5, 1.0])
def test_powerlaw_spacing_is_rwkv4s_time_decay(depth_ratio):
    hidden = 24
    # transformers' RwkvSelfAttention init: decay_speed[h] = -5 + 8 (h / (H - 1)) ** (0.7 + 1.3 ratio_0_to_1);
    # the kernel uses exp(-exp(time_decay)) per step
    decay_speed = torch.tensor(
        [-5 + 8 * (h / (hidden - 1)) ** (0.7 + 1.3 * depth_ratio) for h in range(hidden)], dtype=torch.float64
    )
    expected = timescale_of_retention(torch.exp(-torch.exp(decay_speed)))
    spec = {"type": "powerlaw_spacing", "parametrization": "rwkv_decay", "depth_ratio": depth_ratio}
    close(realize_timescales(spec, hidden), expected)


@pytest.mark.parametrize("depth_ratio", [0.0, 1.0])
def test_powerlaw_spacing_is_slstms_forget_bias(depth_ratio):
    hidden = 24
    # xlstm sLSTM "powerlaw_blockdependent": b_f[j] = 5 - 12 (j / (d - 1)) ** (0.3 + 1.3 ratio); f = sigmoid(b_f)
    bias = torch.tensor([5 - 12 * (j / (hidden - 1)) ** (0.3 + 1.3 * depth_ratio) for j in range(hidden)])
    expected = timescale_of_retention(torch.sigmoid(bias.double()))
    close(realize_timescales({"type": "powerlaw_spacing", "depth_ratio": depth_ratio}, hidden), expected)


def test_uniform_gate_is_the_logit_of_uniform_gates():
    hidden, d = 30, 30
    u = 1.0 / d + quantiles(hidden) * (1.0 - 2.0 / d)
    forget_bias = torch.log(u) - torch.log1p(-u)  # UGI: b_f = logit(u)
    close(realize_timescales({"type": "uniform_gate"}, hidden), timescale_of_retention(torch.sigmoid(forget_bias)))


@pytest.mark.parametrize(
    ("spec", "low", "high"),
    [
        ({"type": "log_uniform"}, 1 / 0.1, 1 / 1e-3),  # 1 / dt
        ({"type": "log_uniform", "state_size": 16}, 1 / (0.1 * 16), 1 / 1e-3),  # Mamba: 0.625 to 1000
        ({"type": "ring"}, -1 / math.log(0.9), -1 / math.log(0.999)),  # LRU: 9.49 to 999.5
        ({"type": "ring", "exponent": 8}, -1 / (8 * math.log(0.9)), -1 / (8 * math.log(0.999))),  # RG-LRU: 1.19 to 125
        (
            {"type": "powerlaw_spacing", "parametrization": "rwkv_decay"},
            math.exp(-3),
            math.exp(5),
        ),  # RWKV-4: 0.05 to 148
        ({"type": "powerlaw_spacing"}, 1 / math.log1p(math.exp(7)), 1 / math.log1p(math.exp(-5))),  # sLSTM: 0.14 to 149
        ({"type": "uniform_gate", "d": 100}, -1 / math.log(0.01), -1 / math.log(0.99)),  # about 0.2 to d
    ],
)
def test_default_parameters_span_the_tables_range(spec, low, high):
    """The realised timescales lie in the range the source implies and reach its ends (an index
    grid hits them; a quantile grid approaches them as the layer grows: within 2% at 10,000 units)."""
    realized = realize_timescales(spec, 10_000)
    assert low * (1 - 1e-9) <= float(realized.min()) <= float(realized.max()) <= high * (1 + 1e-9)
    assert float(realized.min()) == pytest.approx(low, rel=2e-2)
    assert float(realized.max()) == pytest.approx(high, rel=2e-2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "log_uniform", "dt_min": 0.2, "dt_max": 0.1}, r"dt_min must be <= .*dt_max, got 0.2 > 0.1"),
        ({"type": "log_uniform", "dt_min": -1}, r"dt_min must be a positive finite number, got -1"),
        ({"type": "log_uniform", "state_size": 5}, r"state_size must divide hidden_size=16 .* got 5"),
        ({"type": "ring", "r_max": 1.0}, r"r_max must be a number in \(0, 1\), got 1.0"),
        ({"type": "ring", "r_min": 0.99, "r_max": 0.9}, r"r_min must be <= .*r_max"),
        ({"type": "ring", "exponent": 0}, r"exponent must be a positive finite number, got 0"),
        ({"type": "geometric", "min_timescale": 2}, r"max_timescale is missing"),
        ({"type": "geometric", "min_timescale": 2, "max_timescale": 8, "num_timescales": 17}, r"<= hidden_size=16"),
        ({"type": "geometric", "min_timescale": 2, "max_timescale": 8, "spacing": "log"}, r"spacing must be one of"),
        (
            {"type": "geometric", "min_timescale": 2, "max_timescale": math.inf},
            r"max_timescale must be a positive finite",
        ),
        (
            {"type": "powerlaw_spacing", "parametrization": "mamba"},
            r"parametrization must be one of \['forget_bias', 'rwkv_decay'\]",
        ),
        ({"type": "powerlaw_spacing", "depth_ratio": 1.5}, r"depth_ratio must be a number in \[0, 1\], got 1.5"),
        ({"type": "powerlaw_spacing", "start": math.nan}, r"start must be a finite number"),
        ({"type": "uniform_gate", "d": 1}, r"d must be an integer >= 2"),
        ({"type": "uniform_gate", "d": True}, r"d must be an integer >= 2"),
        (
            {"type": "geometric", "min_timescale": 2, "max_timescale": 8, "num_timescales": 1},
            r"places min_timescale only",
        ),
        ({"type": "ring", "radius": 0.9}, r"unknown key\(s\) \['radius'\]"),
    ],
)
def test_out_of_range_parameters_name_the_field_and_the_allowed_range(spec, message):
    with pytest.raises(ValueError, match=message) as error:
        normalize_schedule(spec, 16, field="timescale_schedules[0]")
    assert "timescale_schedules[0]" in str(error.value)


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "log_uniform", "state_size": 4},
        {"type": "ring", "exponent": 8},
        {"type": "geometric", "min_timescale": 2, "max_timescale": 300, "num_timescales": 4, "spacing": "decay_rate"},
        {"type": "powerlaw_spacing", "depth_ratio": 0.5},
        {"type": "uniform_gate"},
    ],
)
def test_a_model_gets_each_prior_as_frozen_gate_biases_and_saves_it(spec, tmp_path):
    """Oracle: the forget bias of every unit gives back the realised timescale (b_f = -ln(exp(1/T) - 1)),
    ``b_i = -b_f``, and the normalised spec survives a save and a reload (config.json)."""
    config = MTLSTMConfig(vocab_size=20, embedding_size=8, hidden_sizes=[16, 8], timescale_schedules=[spec, None])
    model = MTLSTMForCausalLM(config)
    biases = model.model.layers[0].gate_biases
    expected = realize_timescales(spec, 16)
    torch.testing.assert_close(timescale_from_forget_bias(biases.forget_gate), expected, rtol=1e-5, atol=0.0)
    assert torch.equal(biases.input_gate, -biases.forget_gate)
    assert config.timescale_schedules[0] == normalize_schedule(spec, 16)
    model.save_pretrained(tmp_path)
    reloaded = MTLSTMForCausalLM.from_pretrained(tmp_path)
    assert reloaded.config.timescale_schedules == config.timescale_schedules
    assert torch.equal(reloaded.model.layers[0].gate_biases.forget_gate, biases.forget_gate)


def test_defaults_that_do_not_fit_a_tiny_layer_say_they_are_defaults():
    with pytest.raises(ValueError, match=r"d must be an integer >= 2 .* got 1 \(default: hidden_size=1\)"):
        normalize_schedule({"type": "uniform_gate"}, 1)
    with pytest.raises(ValueError, match=r"num_timescales is 1 \(default: hidden_size=1\)"):
        normalize_schedule({"type": "geometric", "min_timescale": 2, "max_timescale": 8}, 1)
    assert realize_timescales({"type": "geometric", "min_timescale": 2, "max_timescale": 2}, 1).tolist() == [2.0]


def test_a_geometric_span_beyond_the_float_range_stays_finite():
    realized = realize_timescales({"type": "geometric", "min_timescale": 1e-300, "max_timescale": 1e300}, 3)
    assert torch.isfinite(realized).all()
    assert realized.tolist() == pytest.approx([1e-300, 1.0, 1e300], rel=1e-9)
