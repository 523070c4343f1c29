"""Tests for mtlstm_hf/models/mtlstm/timescales.py (pure timescale math) and the schedule rules
it shares with the configuration (``validation.normalize_schedule``)."""

from __future__ import annotations

import ast
import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from mtlstm_hf.analysis import power_law as pl
from mtlstm_hf.models.mtlstm import timescales as ts

TIMESCALES_PATH = Path(ts.__file__)

INF = math.inf
PAPER_ALPHAS = (0.56, 1.4, 1.5, 2.2)


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected) / np.abs(expected)))


# ---------------------------------------------------------------------------
# Module hygiene
# ---------------------------------------------------------------------------


def test_imports_only_stdlib_torch_and_the_torch_free_rules() -> None:
    tree = ast.parse(TIMESCALES_PATH.read_text())
    allowed = set(sys.stdlib_module_names) | {"torch", "__future__"}
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or "").split(".")[0] if node.level == 0 else "." + node.module)
    assert "torch" in imported
    assert imported - allowed == {".validation", ".checks"}, f"unexpected imports: {sorted(imported - allowed)}"


def test_public_constants() -> None:
    assert ts.SCHEDULE_TYPES == (
        "none",
        "fixed",
        "inverse_gamma",
        "chrono",
        "explicit",
        "log_uniform",
        "ring",
        "geometric",
        "powerlaw_spacing",
        "uniform_gate",
    )
    assert ts.INVERSE_GAMMA_GRIDS == ("endpoint_free", "reference")


# ---------------------------------------------------------------------------
# Timescale <-> bias <-> gate
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("timescale", "bias", "gate"), [(3.0, 0.9273, 0.7165), (4.0, 1.2587, 0.7788)])
def test_paper_example_values(timescale: float, bias: float, gate: float) -> None:
    assert ts.forget_bias_from_timescale(timescale).item() == pytest.approx(bias, abs=5e-5)
    assert ts.forget_gate_from_timescale(timescale).item() == pytest.approx(gate, abs=5e-5)
    assert torch.sigmoid(ts.forget_bias_from_timescale(timescale)).item() == pytest.approx(gate, abs=5e-5)


def test_outputs_are_float64_and_keep_shape() -> None:
    timescales = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float32)
    for function in (ts.forget_bias_from_timescale, ts.forget_gate_from_timescale, ts.timescale_from_forget_bias):
        result = function(timescales)
        assert result.dtype == torch.float64 and result.shape == (2, 2)
    assert ts.forget_bias_from_timescale(3.0).shape == ()


def test_edge_values_zero_and_infinity() -> None:
    timescales = torch.tensor([0.0, INF], dtype=torch.float64)
    assert ts.forget_bias_from_timescale(timescales).tolist() == [-INF, INF]
    assert ts.forget_gate_from_timescale(timescales).tolist() == [0.0, 1.0]
    assert ts.timescale_from_forget_bias(torch.tensor([-INF, INF])).tolist() == [0.0, INF]
    assert ts.timescale_from_forget_gate(torch.tensor([0.0, 1.0])).tolist() == [0.0, INF]
    # sigmoid(0) = 1/2 -> T = 1 / ln 2
    assert ts.timescale_from_forget_bias(0.0).item() == pytest.approx(1.0 / math.log(2.0), rel=1e-15)


def test_round_trips_over_many_magnitudes() -> None:
    timescales = torch.logspace(-3, 8, 200, dtype=torch.float64)
    biases = ts.forget_bias_from_timescale(timescales)
    torch.testing.assert_close(ts.timescale_from_forget_bias(biases), timescales, rtol=1e-12, atol=0)
    gates = ts.forget_gate_from_timescale(timescales)
    # gate -> timescale loses precision as f -> 1 (ln f ~ f - 1) and f = exp(-1/T)
    # underflows to 0 for T < 1/745, so compare on 0.01 <= T < 1e6 only.
    moderate = (timescales >= 0.01) & (timescales < 1e6)
    torch.testing.assert_close(ts.timescale_from_forget_gate(gates)[moderate], timescales[moderate], rtol=1e-9, atol=0)
    torch.testing.assert_close(torch.sigmoid(biases), gates, rtol=1e-14, atol=1e-300)

    biases = torch.linspace(-30.0, 30.0, 301, dtype=torch.float64)
    torch.testing.assert_close(
        ts.forget_bias_from_timescale(ts.timescale_from_forget_bias(biases)), biases, rtol=1e-12, atol=1e-12
    )


def test_bias_formula_matches_naive_expression_where_that_is_safe() -> None:
    timescales = torch.linspace(0.5, 500.0, 100, dtype=torch.float64)
    naive = -torch.log(torch.exp(1.0 / timescales) - 1.0)
    torch.testing.assert_close(ts.forget_bias_from_timescale(timescales), naive, rtol=1e-10, atol=1e-12)


def test_tiny_timescale_does_not_overflow() -> None:
    # exp(1/T) overflows for T < 1/710; the stable form gives ~ -1/T.
    assert ts.forget_bias_from_timescale(1e-4).item() == pytest.approx(-1e4, rel=1e-15)


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_negative_or_nan_timescale_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="timescale"):
        ts.forget_bias_from_timescale(torch.tensor([1.0, bad]))
    with pytest.raises(ValueError, match="timescale"):
        ts.forget_gate_from_timescale(bad)


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_forget_gate_outside_unit_interval_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="forget_gate"):
        ts.timescale_from_forget_gate(bad)


# ---------------------------------------------------------------------------
# Inverse gamma
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", PAPER_ALPHAS)
@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_pdf_and_sf_match_scipy(alpha: float, beta: float) -> None:
    t = np.logspace(-3, 6, 400)
    distribution = scipy.stats.invgamma(a=alpha, scale=beta)
    pdf = pl.inverse_gamma_pdf(torch.from_numpy(t), alpha, beta).numpy()
    sf = pl.inverse_gamma_sf(torch.from_numpy(t), alpha, beta).numpy()
    np.testing.assert_allclose(pdf, distribution.pdf(t), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(sf, distribution.sf(t), rtol=1e-10, atol=1e-300)


def test_pdf_and_sf_edges() -> None:
    t = torch.tensor([-1.0, 0.0, INF], dtype=torch.float64)
    assert pl.inverse_gamma_pdf(t, 0.56, 1.0).tolist() == [0.0, 0.0, 0.0]
    assert pl.inverse_gamma_sf(t, 0.56, 1.0).tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("alpha", PAPER_ALPHAS)
@pytest.mark.parametrize("hidden_size", [1150, 256])
def test_isf_matches_scipy_on_paper_grids(alpha: float, hidden_size: int) -> None:
    endpoint_free = np.linspace(0.0, 1.0, hidden_size + 2)[1:-1]
    reference_interior = np.linspace(0.0, 1.0, hidden_size + 1)[1:-1]
    extremes = np.array([1.0 / 1151, 1e-12, 1e-100, 0.5, 1.0 - 1.0 / 1151, 1.0 - 1e-9, 1.0 - 2.0**-40])
    for q in (endpoint_free, reference_interior, extremes):
        expected = scipy.stats.invgamma.isf(q, a=alpha, scale=1.0)
        actual = ts.inverse_gamma_isf(torch.from_numpy(q), alpha, 1.0).numpy()
        assert _relative_error(actual, expected) < 1e-6


@pytest.mark.parametrize("beta", [0.1, 3.0, 1000.0])
def test_isf_scales_with_beta(beta: float) -> None:
    q = np.linspace(0.0, 1.0, 52)[1:-1]
    expected = scipy.stats.invgamma.isf(q, a=0.56, scale=beta)
    assert _relative_error(ts.inverse_gamma_isf(torch.from_numpy(q), 0.56, beta).numpy(), expected) < 1e-6


def test_isf_is_the_inverse_of_sf() -> None:
    q = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
    torch.testing.assert_close(
        pl.inverse_gamma_sf(ts.inverse_gamma_isf(q, 1.4, 2.0), 1.4, 2.0), q, rtol=1e-10, atol=1e-13
    )


def test_isf_edges() -> None:
    q = torch.tensor([0.0, 1.0, -0.5, 1.5, math.nan], dtype=torch.float64)
    result = ts.inverse_gamma_isf(q, 0.56, 1.0)
    assert result[0].item() == INF and result[1].item() == 0.0
    assert torch.isnan(result[2:]).all()


@pytest.mark.parametrize("function", ["inverse_gamma_pdf", "inverse_gamma_sf", "inverse_gamma_isf", "power_law_decay"])
@pytest.mark.parametrize(
    ("alpha", "beta", "name"), [(0.0, 1.0, "alpha"), (1.0, -1.0, "beta"), (True, 1.0, "alpha"), (1.0, INF, "beta")]
)
def test_distribution_parameters_are_validated(function: str, alpha: float, beta: float, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        getattr(ts if function == "inverse_gamma_isf" else pl, function)(0.5, alpha, beta)


# ---------------------------------------------------------------------------
# Power law
# ---------------------------------------------------------------------------


def test_power_law_check_values() -> None:
    decay = pl.power_law_decay(torch.tensor([0.0, 1.0, 10.0, 100.0]), 0.56, 1.0)
    assert decay.tolist() == pytest.approx([1.0, 0.6783, 0.2611, 0.0754], abs=5e-5)


def test_population_of_exponentials_decays_as_power_law() -> None:
    # The mean of exp(-t/T_i) over the endpoint-free quantile grid is a quadrature
    # of E[exp(-t/T)] = (1 + t/beta)^-alpha. The tail mass missing near q = 0
    # (the longest timescales) makes the error grow with t and shrink like ~1/H.
    # Measured relative errors (alpha=0.56, beta=1), t = 1, 10, 100, 1000:
    #   H=1150:  2.3e-4, 8.0e-4, 4.9e-3, 2.0e-2
    #   H=10000: 2.6e-5, 9.1e-5, 5.6e-4, 2.3e-3
    # Tolerances are 1.5x those; the finer grid must also be >5x better.
    delays = torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=torch.float64)
    expected = pl.power_law_decay(delays, 0.56, 1.0)
    tolerances = {
        1150: torch.tensor([3.5e-4, 1.2e-3, 7.5e-3, 3.0e-2], dtype=torch.float64),
        10000: torch.tensor([4.0e-5, 1.4e-4, 8.5e-4, 3.5e-3], dtype=torch.float64),
    }
    errors = {}
    for hidden_size, tolerance in tolerances.items():
        timescales = ts.realize_timescales({"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0}, hidden_size)
        mean_decay = torch.exp(-delays[:, None] / timescales[None, :]).mean(dim=1)
        errors[hidden_size] = (mean_decay / expected - 1.0).abs()
        assert (errors[hidden_size] < tolerance).all(), (hidden_size, errors[hidden_size])
    assert (errors[10000] * 5.0 < errors[1150]).all()


# ---------------------------------------------------------------------------
# Schedules: realisation
# ---------------------------------------------------------------------------


def test_none_schedule() -> None:
    for spec in (None, "none", {"type": "none"}):
        assert ts.normalize_schedule(spec, 10) == {"type": "none"}
        assert ts.realize_timescales(spec, 10) is None


def test_fixed_schedule_even_split_paper_layer_one() -> None:
    timescales = ts.realize_timescales({"type": "fixed", "values": [3, 4]}, 1150)
    assert timescales.dtype == torch.float64 and timescales.shape == (1150,)
    assert (timescales[:575] == 3.0).all() and (timescales[575:] == 4.0).all()


def test_fixed_schedule_uneven_split_matches_numpy_array_split() -> None:
    timescales = ts.realize_timescales({"type": "fixed", "values": [1, 2, 3]}, 10)
    expected = np.concatenate(
        [np.full(len(part), value) for part, value in zip(np.array_split(np.arange(10), 3), [1, 2, 3])]
    )
    assert timescales.tolist() == expected.tolist()  # group sizes 4, 3, 3
    assert ts.realize_timescales({"type": "fixed", "values": [5]}, 3).tolist() == [5.0, 5.0, 5.0]
    assert ts.realize_timescales({"type": "fixed", "values": [1, INF]}, 2).tolist() == [1.0, INF]


def test_inverse_gamma_reference_grid_reproduces_reference_code() -> None:
    spec = {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0, "grid": "reference"}
    timescales = ts.realize_timescales(spec, 1150).numpy()
    expected = scipy.stats.invgamma.isf(np.linspace(0, 1, 1151), a=0.56, scale=1)[1:]
    assert timescales.shape == (1150,)
    assert timescales[-1] == 0.0 == expected[-1]  # the quirk: last unit T = 0, b_f = -inf
    assert ts.forget_bias_from_timescale(timescales[-1]).item() == -INF
    assert _relative_error(timescales[:-1], expected[:-1]) < 1e-6
    assert 3.5e5 < timescales[0] < 3.7e5 and 3.4 < np.median(timescales) < 3.8
    assert (np.diff(timescales) < 0).all()


@pytest.mark.parametrize("alpha", PAPER_ALPHAS)
def test_inverse_gamma_endpoint_free_grid(alpha: float) -> None:
    timescales = ts.realize_timescales({"type": "inverse_gamma", "alpha": alpha, "beta": 1.0}, 1150).numpy()
    expected = scipy.stats.invgamma.isf(np.linspace(0, 1, 1152)[1:-1], a=alpha, scale=1)
    assert _relative_error(timescales, expected) < 1e-6
    assert np.isfinite(timescales).all() and (timescales > 0).all() and (np.diff(timescales) < 0).all()


def test_chrono_range_and_reproducibility() -> None:
    spec = {"type": "chrono", "max_timescale": 70.0}
    first = ts.realize_timescales(spec, 1000, generator=torch.Generator().manual_seed(0))
    second = ts.realize_timescales(spec, 1000, generator=torch.Generator().manual_seed(0))
    other = ts.realize_timescales(spec, 1000, generator=torch.Generator().manual_seed(1))
    assert first.dtype == torch.float64 and first.shape == (1000,)
    assert torch.equal(first, second) and not torch.equal(first, other)
    biases = ts.forget_bias_from_timescale(first)
    # b_f = log u with u in [1, T_max - 1]
    assert biases.min() >= -1e-12 and biases.max() <= math.log(69.0) + 1e-12
    # the timescale implied by b_f = log u is 1 / ln(1 + 1/u): from 1/ln 2 to about T_max - 1/2
    assert first.min() >= 1.0 / math.log(2.0) - 1e-9 and first.max() <= 1.0 / math.log(1.0 + 1.0 / 69.0) + 1e-9
    # samples spread over the range in u = exp(b_f)
    u = biases.exp()
    assert u.min() < 2.0 and u.max() > 68.0 and abs(u.mean().item() - 35.0) < 2.0


def test_explicit_schedule() -> None:
    values = [1.0, 2.5, INF]
    assert ts.realize_timescales({"type": "explicit", "timescales": values}, 3).tolist() == values
    from_tensor = ts.normalize_schedule({"type": "explicit", "timescales": torch.tensor([1.0, 2.0])}, 2)
    assert from_tensor == {"type": "explicit", "timescales": [1.0, 2.0]}


def test_explicit_schedule_accepts_a_zero_timescale_and_the_model_forgets_at_once() -> None:
    """T = 0 (the reference grid's last unit, b_f = -inf) is allowed in explicit schedules only;
    the model then has f = 0 and i = 1 for that unit, and no NaN anywhere."""
    schedule = ts.normalize_schedule({"type": "explicit", "timescales": [0, 3.0, INF, 0.5]}, 4)
    assert schedule == {"type": "explicit", "timescales": [0.0, 3.0, INF, 0.5]}
    assert ts.realize_timescales(schedule, 4).tolist() == [0.0, 3.0, INF, 0.5]
    from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM

    torch.manual_seed(0)
    config = MTLSTMConfig(
        vocab_size=7,
        embedding_size=4,
        hidden_sizes=[4, 4],
        timescale_schedules=[schedule, None],
        frozen_biases="all",
        **{
            name: 0.0
            for name in ("embedding_dropout", "input_dropout", "hidden_dropout", "output_dropout", "weight_drop")
        },
    )
    model = MTLSTMForCausalLM(config).eval()
    biases = model.model.layers[0].gate_biases
    assert biases.forget_gate[0].item() == -INF and biases.input_gate[0].item() == INF
    assert model.assigned_timescales()[0].tolist()[0] == 0.0
    from mtlstm_hf.analysis.gates import layer_gates_and_cells

    ids = torch.randint(0, 7, (2, 6))
    with torch.no_grad():
        out = model(ids)
        layer = model.model.layers[0]
        trace = layer_gates_and_cells(layer, model.model.embeddings(ids), *(torch.zeros(2, 4) for _ in range(2)))
    assert bool(torch.isfinite(out.logits).all())
    assert bool((trace["forget_gate"][..., 0] == 0).all()) and bool((trace["input_gate"][..., 0] == 1).all())
    # the cell of the T = 0 unit is its candidate alone: nothing is carried from the step before
    torch.testing.assert_close(trace["cell"][..., 0], trace["cell_candidate"][..., 0], rtol=0, atol=0)


# ---------------------------------------------------------------------------
# Schedules: normalisation and validation
# ---------------------------------------------------------------------------


def test_normalize_schedule_canonical_forms_are_json_and_idempotent() -> None:
    specs = [
        ({"type": "fixed", "values": (3, 4)}, {"type": "fixed", "values": [3.0, 4.0]}),
        (
            {"type": "inverse_gamma", "alpha": 0.56, "beta": 1},
            {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0, "grid": "endpoint_free"},
        ),
        (
            {"type": "inverse_gamma", "alpha": 1, "beta": 2.0, "grid": "reference"},
            {"type": "inverse_gamma", "alpha": 1.0, "beta": 2.0, "grid": "reference"},
        ),
        ({"type": "chrono", "max_timescale": 70}, {"type": "chrono", "max_timescale": 70.0}),
        ({"type": "explicit", "timescales": [1, 2, 3, 4]}, {"type": "explicit", "timescales": [1.0, 2.0, 3.0, 4.0]}),
    ]
    for spec, expected in specs:
        original = copy.deepcopy(spec)
        normalized = ts.normalize_schedule(spec, 4)
        assert normalized == expected
        assert spec == original  # input not mutated
        assert ts.normalize_schedule(normalized, 4) == normalized
        assert json.loads(json.dumps(normalized)) == normalized
        assert all(
            type(v) is float for key, v in normalized.items() if key not in ("type", "grid") and not isinstance(v, list)
        )


def test_normalize_returns_new_lists() -> None:
    values = [3.0, 4.0]
    normalized = ts.normalize_schedule({"type": "fixed", "values": values}, 4)
    normalized["values"].append(5.0)
    assert values == [3.0, 4.0]


FIELD = "timescale_schedules[1]"

BAD_SCHEDULES = [
    # (spec, hidden_size, regex that must appear in the message)
    ("fixed", 4, r"timescale_schedules\[1\].*'none'"),
    (42, 4, r"timescale_schedules\[1\]"),
    ({"values": [3]}, 4, r"timescale_schedules\[1\]\.type is missing.*inverse_gamma"),
    (
        {"type": "gamma"},
        4,
        r"timescale_schedules\[1\]\.type must be one of.*'none', 'fixed', 'inverse_gamma', 'chrono', 'explicit'",
    ),
    ({"type": None}, 4, r"timescale_schedules\[1\]\.type must be one of"),
    ({"type": "none", "alpha": 1.0}, 4, r"timescale_schedules\[1\] has unknown key.*'alpha'"),
    ({"type": "fixed", "values": [3], "beta": 1}, 4, r"timescale_schedules\[1\] has unknown key.*'beta'"),
    ({"type": "fixed"}, 4, r"timescale_schedules\[1\]\.values is missing"),
    ({"type": "fixed", "values": []}, 4, r"timescale_schedules\[1\]\.values must be a non-empty"),
    ({"type": "fixed", "values": 3}, 4, r"timescale_schedules\[1\]\.values must be a list"),
    ({"type": "fixed", "values": "34"}, 4, r"timescale_schedules\[1\]\.values must be a list"),
    ({"type": "fixed", "values": [3, 0]}, 4, r"timescale_schedules\[1\]\.values\[1\] must be > 0"),
    ({"type": "fixed", "values": [3, -4]}, 4, r"timescale_schedules\[1\]\.values\[1\] must be > 0"),
    ({"type": "fixed", "values": [math.nan]}, 4, r"timescale_schedules\[1\]\.values\[0\] must be > 0"),
    ({"type": "fixed", "values": [True, 4]}, 4, r"timescale_schedules\[1\]\.values\[0\] must be a number"),
    ({"type": "fixed", "values": ["3"]}, 4, r"timescale_schedules\[1\]\.values\[0\] must be a number"),
    ({"type": "fixed", "values": [1, 2, 3]}, 2, r"timescale_schedules\[1\]\.values has 3 entries but hidden_size is 2"),
    ({"type": "inverse_gamma", "beta": 1.0}, 4, r"timescale_schedules\[1\]\.alpha is missing"),
    ({"type": "inverse_gamma", "alpha": 1.0}, 4, r"timescale_schedules\[1\]\.beta is missing"),
    (
        {"type": "inverse_gamma", "alpha": 0.0, "beta": 1.0},
        4,
        r"timescale_schedules\[1\]\.alpha must be a positive finite",
    ),
    (
        {"type": "inverse_gamma", "alpha": -0.5, "beta": 1.0},
        4,
        r"timescale_schedules\[1\]\.alpha must be a positive finite",
    ),
    (
        {"type": "inverse_gamma", "alpha": INF, "beta": 1.0},
        4,
        r"timescale_schedules\[1\]\.alpha must be a positive finite",
    ),
    (
        {"type": "inverse_gamma", "alpha": True, "beta": 1.0},
        4,
        r"timescale_schedules\[1\]\.alpha must be a positive finite",
    ),
    (
        {"type": "inverse_gamma", "alpha": 0.5, "beta": 0},
        4,
        r"timescale_schedules\[1\]\.beta must be a positive finite",
    ),
    (
        {"type": "inverse_gamma", "alpha": 0.5, "beta": False},
        4,
        r"timescale_schedules\[1\]\.beta must be a positive finite",
    ),
    (
        {"type": "inverse_gamma", "alpha": 0.5, "beta": 1.0, "grid": "linspace"},
        4,
        r"timescale_schedules\[1\]\.grid must be one of \['endpoint_free', 'reference'\]",
    ),
    (
        {"type": "inverse_gamma", "alpha": 0.5, "beta": 1.0, "scale": 1.0},
        4,
        r"timescale_schedules\[1\] has unknown key.*'scale'",
    ),
    ({"type": "chrono"}, 4, r"timescale_schedules\[1\]\.max_timescale is missing"),
    (
        {"type": "chrono", "max_timescale": 2.0},
        4,
        r"timescale_schedules\[1\]\.max_timescale must be a finite number > 2",
    ),
    (
        {"type": "chrono", "max_timescale": -5},
        4,
        r"timescale_schedules\[1\]\.max_timescale must be a finite number > 2",
    ),
    (
        {"type": "chrono", "max_timescale": INF},
        4,
        r"timescale_schedules\[1\]\.max_timescale must be a finite number > 2",
    ),
    (
        {"type": "chrono", "max_timescale": True},
        4,
        r"timescale_schedules\[1\]\.max_timescale must be a finite number > 2",
    ),
    ({"type": "explicit"}, 4, r"timescale_schedules\[1\]\.timescales is missing"),
    (
        {"type": "explicit", "timescales": [1.0, 2.0]},
        4,
        r"timescale_schedules\[1\]\.timescales must have exactly hidden_size=4",
    ),
    ({"type": "explicit", "timescales": [1.0, -1.0]}, 2, r"timescale_schedules\[1\]\.timescales\[1\] must be >= 0"),
    ({"type": "explicit", "timescales": [1.0, math.nan]}, 2, r"timescale_schedules\[1\]\.timescales\[1\] must be >= 0"),
    ({"type": "fixed", "values": [3.0, 0.0]}, 4, r"timescale_schedules\[1\]\.values\[1\] must be > 0"),
    ({"type": "explicit", "timescales": [1.0, None]}, 2, r"timescale_schedules\[1\]\.timescales\[1\] must be a number"),
    ({"type": "explicit", "timescales": torch.ones(2, 2)}, 4, r"timescale_schedules\[1\]\.timescales must be a 1-D"),
]


@pytest.mark.parametrize(("spec", "hidden_size", "pattern"), BAD_SCHEDULES)
def test_invalid_schedules_raise_value_error_naming_the_field(spec: object, hidden_size: int, pattern: str) -> None:
    original = copy.deepcopy(spec)
    with pytest.raises(ValueError, match=pattern):
        ts.normalize_schedule(spec, hidden_size, field=FIELD)
    if isinstance(spec, dict):
        assert spec.keys() == original.keys()  # not mutated


def test_default_field_name_and_realize_validates() -> None:
    with pytest.raises(ValueError, match=r"timescale_schedules\.type must be one of"):
        ts.normalize_schedule({"type": "bogus"}, 4)
    with pytest.raises(ValueError, match=r"schedule\.alpha must be a positive finite"):
        ts.realize_timescales({"type": "inverse_gamma", "alpha": -1.0, "beta": 1.0}, 4)


@pytest.mark.parametrize("hidden_size", [0, -3, 2.5, True])
def test_invalid_hidden_size(hidden_size: object) -> None:
    with pytest.raises(ValueError, match=r"hidden_size \(for timescale_schedules\) must be a positive integer, got"):
        ts.normalize_schedule(None, hidden_size)
