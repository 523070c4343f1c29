"""Cell variants of Levy et al. (2018): fast paths vs slow references, scan, gates, weighted sum."""

from __future__ import annotations

import builtins

import pytest
import torch

from mtlstm_hf.analysis.gates import (
    gates_and_cells,
    reconstruct_cells,
    weighted_sum_log_weights,
    weighted_sum_norms,
    weighted_sum_span,
)
from mtlstm_hf.models.mtlstm.kernel_scan import linear_scan
from mtlstm_hf.models.mtlstm.layouts import CELL_TYPES, cell_layout
from mtlstm_hf.models.mtlstm.naive import parameter_shapes, reference_sequence, reference_trace, variant_sequence

BATCH, STEPS, INPUT, HIDDEN = 4, 9, 6, 5
LENGTHS = torch.tensor([9, 0, 4, 7])  # includes an empty row and a full row
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}


def make_case(cell_type: str, seed: int = 0) -> dict[str, torch.Tensor | None]:
    """Random float32 inputs, non-zero initial states and parameters for ``cell_type``."""
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    shapes = parameter_shapes(cell_layout(cell_type), INPUT, HIDDEN)
    return {
        "inputs": draw(BATCH, STEPS, INPUT),
        "initial_hidden": draw(BATCH, HIDDEN, scale=0.5),
        "initial_cell": draw(BATCH, HIDDEN),
        "weight_ih": draw(*shapes["weight_ih"], scale=0.6),
        "weight_hh": None if shapes["weight_hh"] is None else draw(*shapes["weight_hh"], scale=0.6),
        "bias": draw(*shapes["bias"], scale=0.5),
    }


def as_leaves(case: dict[str, torch.Tensor | None], dtype: torch.dtype) -> dict[str, torch.Tensor | None]:
    return {name: None if value is None else value.detach().to(dtype).requires_grad_() for name, value in case.items()}


def outputs_and_gradients(function, cell_type, case, lengths):  # noqa: ANN001, ANN201
    """Run ``function`` and differentiate a generic scalar of all its outputs w.r.t. every leaf."""
    outputs, final_hidden, final_cell = function(cell_type, **case, lengths=lengths)
    generator = torch.Generator().manual_seed(1)
    loss = (outputs * torch.randn(outputs.shape, generator=generator).to(outputs.dtype)).sum()
    loss = loss + (final_hidden * torch.randn(final_hidden.shape, generator=generator).to(outputs.dtype)).sum()
    if final_cell is not None:
        loss = loss + (final_cell * torch.randn(final_cell.shape, generator=generator).to(outputs.dtype)).sum()
    leaves = {name: value for name, value in case.items() if value is not None}
    gradients = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True, materialize_grads=True)
    return (outputs, final_hidden, final_cell), dict(zip(leaves, gradients))


# --- catalogue ---------------------------------------------------------------------------


def test_unknown_cell_type_names_field_and_allowed_values() -> None:
    with pytest.raises(ValueError) as error:
        cell_layout("gru")
    message = str(error.value)
    assert "cell_type" in message and "'gru'" in message
    for name in CELL_TYPES:
        assert repr(name) in message
    with pytest.raises(ValueError, match="cell_type"):
        variant_sequence("lstm-srnn-in", **make_case("lstm"))


def test_parameter_layouts() -> None:
    expected = {
        "lstm": ((4 * HIDDEN, INPUT), (4 * HIDDEN, HIDDEN), (4 * HIDDEN,)),
        "lstm-srnn": ((4 * HIDDEN, INPUT), (3 * HIDDEN, HIDDEN), (3 * HIDDEN,)),
        "lstm-srnn-out": ((3 * HIDDEN, INPUT), (2 * HIDDEN, HIDDEN), (2 * HIDDEN,)),
        "lstm-srnn-hidden": ((4 * HIDDEN, INPUT), None, (3 * HIDDEN,)),
        "lstm-gates": ((HIDDEN, INPUT), (HIDDEN, HIDDEN), (HIDDEN,)),
    }
    for cell_type, (weight_ih, weight_hh, bias) in expected.items():
        shapes = parameter_shapes(cell_layout(cell_type), INPUT, HIDDEN)
        assert (shapes["weight_ih"], shapes["weight_hh"], shapes["bias"]) == (weight_ih, weight_hh, bias)
    assert cell_layout("lstm-srnn-out").has_output_gate is False
    assert cell_layout("lstm-gates").has_cell is False


def test_wrong_parameter_shape_is_rejected() -> None:
    case = make_case("lstm-srnn")
    case["weight_hh"] = torch.zeros(4 * HIDDEN, HIDDEN)  # lstm layout, not lstm-srnn
    with pytest.raises(ValueError, match="weight_hh"):
        variant_sequence("lstm-srnn", **case)


def test_reference_follows_the_written_equations() -> None:
    """Two steps of every cell written out by hand, independently of the shared helpers."""
    sig, tanh = torch.sigmoid, torch.tanh
    for cell_type in CELL_TYPES:
        case = {k: None if v is None else v.double() for k, v in make_case(cell_type, seed=3).items()}
        x, h, c = case["inputs"][:, :2], case["initial_hidden"], case["initial_cell"]
        w_ih, w_hh, b = case["weight_ih"], case["weight_hh"], case["bias"]
        n = HIDDEN
        expected = []
        for t in range(2):
            xt = x[:, t]
            if cell_type == "lstm":
                p = xt @ w_ih.T + h @ w_hh.T + b
                i, f, g, o = sig(p[:, :n]), sig(p[:, n : 2 * n]), tanh(p[:, 2 * n : 3 * n]), sig(p[:, 3 * n :])
            elif cell_type in ("lstm-srnn", "lstm-srnn-out"):
                px, ph = xt @ w_ih.T, h @ w_hh.T + b
                i, f = sig(px[:, :n] + ph[:, :n]), sig(px[:, n : 2 * n] + ph[:, n : 2 * n])
                g = px[:, 2 * n : 3 * n]
                o = sig(px[:, 3 * n :] + ph[:, 2 * n :]) if cell_type == "lstm-srnn" else None
            elif cell_type == "lstm-srnn-hidden":
                px = xt @ w_ih.T
                i, f, g = sig(px[:, :n] + b[:n]), sig(px[:, n : 2 * n] + b[n : 2 * n]), px[:, 2 * n : 3 * n]
                o = sig(px[:, 3 * n :] + b[2 * n :])
            if cell_type == "lstm-gates":
                h = tanh(xt @ w_ih.T + h @ w_hh.T + b)
            else:
                c = f * c + i * g
                h = tanh(c) if o is None else o * tanh(c)
            expected.append(h)
        outputs, final_hidden, final_cell = reference_sequence(
            cell_type, x, case["initial_hidden"], case["initial_cell"], w_ih, w_hh, b
        )
        torch.testing.assert_close(outputs, torch.stack(expected, 1))
        torch.testing.assert_close(final_hidden, h)
        if cell_type == "lstm-gates":
            assert final_cell is None
        else:
            torch.testing.assert_close(final_cell, c)


# --- fast sequences vs reference -----------------------------------------------------------


@pytest.mark.parametrize("use_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_fast_sequence_matches_reference(cell_type: str, use_lengths: bool) -> None:
    case = make_case(cell_type)
    lengths = LENGTHS if use_lengths else None
    fast_values, fast_grads = outputs_and_gradients(
        variant_sequence, cell_type, as_leaves(case, torch.float32), lengths
    )
    ref_values, ref_grads = outputs_and_gradients(
        reference_sequence, cell_type, as_leaves(case, torch.float64), lengths
    )
    for fast, ref in zip(fast_values, ref_values):
        if ref is None:
            assert fast is None
        else:
            assert fast.dtype == torch.float32
            torch.testing.assert_close(fast.double(), ref, **TOLERANCE)
    assert fast_grads.keys() == ref_grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(fast_grads[name].double(), ref_grads[name], **TOLERANCE, msg=name)
    if use_lengths:
        outputs = fast_values[0]
        assert torch.all(outputs[1] == 0) and torch.all(outputs[2, 4:] == 0)
        torch.testing.assert_close(fast_values[1][1], case["initial_hidden"][1])  # empty row untouched
    # No-grad (inference) path gives the same values.
    with torch.no_grad():
        again = variant_sequence(cell_type, **case, lengths=lengths)
    for fast, value in zip(fast_values, again):
        if value is not None:
            torch.testing.assert_close(value, fast.detach())


# --- scan ----------------------------------------------------------------------------------


def loop_scan(forget: torch.Tensor, update: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """``c_t = f_t c_{t-1} + u_t`` one step at a time (the oracle)."""
    state, states = initial, []
    for forget_t, update_t in zip(forget.unbind(1), update.unbind(1)):
        state = forget_t * state + update_t
        states.append(state)
    return torch.stack(states, 1)


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 8, 17, 64])
def test_scan_matches_loop_and_gradcheck(steps: int) -> None:
    generator = torch.Generator().manual_seed(steps)
    forget = torch.rand(2, steps, 3, generator=generator, dtype=torch.float64).requires_grad_()
    update = torch.randn(2, steps, 3, generator=generator, dtype=torch.float64).requires_grad_()
    initial = torch.randn(2, 3, generator=generator, dtype=torch.float64).requires_grad_()
    torch.testing.assert_close(linear_scan(forget, update, initial), loop_scan(forget, update, initial))
    assert torch.autograd.gradcheck(linear_scan, (forget, update, initial))


def scan_regime(name: str, shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Forget gates close to 1, close to 0, or a mix including exact 0 and 1 (float32)."""
    if name == "near_one":
        return 1 - torch.rand(shape, generator=generator) * 1e-7
    if name == "near_zero":
        return torch.rand(shape, generator=generator) * 1e-12
    mixed = torch.rand(shape, generator=generator)
    mixed[..., 0] = 0.0
    mixed[..., 1] = 1.0
    mixed[..., 2] = 1 - 1e-7
    return mixed


@pytest.mark.parametrize("regime", ["near_one", "near_zero", "mixed"])
def test_scan_is_stable_over_4096_steps(regime: str) -> None:
    generator = torch.Generator().manual_seed(7)
    shape = (2, 4096, 4)
    forget = scan_regime(regime, shape, generator).requires_grad_()
    update = torch.randn(shape, generator=generator).requires_grad_()
    initial = torch.randn(2, 4, generator=generator).requires_grad_()
    cells = linear_scan(forget, update, initial)
    direct = torch.randn(shape, generator=generator)
    grads = torch.autograd.grad((cells * direct).sum(), (forget, update, initial))

    exact = [value.detach().double().requires_grad_() for value in (forget, update, initial)]
    exact_cells = loop_scan(*exact)
    exact_grads = torch.autograd.grad((exact_cells * direct.double()).sum(), exact)
    assert torch.isfinite(cells).all()
    # float32 rounding relative to the magnitude of the states (up to ~sqrt(4096) * |u|).
    scale = exact_cells.abs().max().item()
    torch.testing.assert_close(cells.double(), exact_cells, atol=1e-6 * scale, rtol=1e-5)
    for grad, exact_grad in zip(grads, exact_grads):
        assert torch.isfinite(grad).all()
        grad_scale = exact_grad.abs().max().item()
        torch.testing.assert_close(grad.double(), exact_grad, atol=1e-6 * grad_scale, rtol=1e-5)


# --- gates and cells ------------------------------------------------------------------------


@pytest.mark.parametrize("use_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_gates_and_cells_match_reference(cell_type: str, use_lengths: bool) -> None:
    case = make_case(cell_type, seed=5)
    lengths = LENGTHS if use_lengths else None
    with torch.no_grad():
        trace = gates_and_cells(cell_type, **case, lengths=lengths)
        expected = reference_trace(
            cell_type, **{k: None if v is None else v.double() for k, v in case.items()}, lengths=lengths
        )
        outputs = variant_sequence(cell_type, **case, lengths=lengths)[0]
        given = gates_and_cells(cell_type, **case, lengths=lengths, hidden_outputs=outputs)
    assert (
        trace.keys()
        == expected.keys()
        == {"input_gate", "forget_gate", "output_gate", "cell_candidate", "cell", "hidden"}
    )
    for key, value in expected.items():
        if value is None:
            assert trace[key] is None and given[key] is None, key
        else:
            assert trace[key].shape == (BATCH, STEPS, HIDDEN)
            torch.testing.assert_close(trace[key].double(), value, **TOLERANCE, msg=key)
            torch.testing.assert_close(given[key].double(), value, **TOLERANCE, msg=key)


def test_gates_and_cells_do_not_run_the_reference_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard cell's extraction is batched: the per-step helpers are never called per step."""
    import mtlstm_hf.analysis.gates as gates_module

    calls = []
    original = gates_module.gate_preactivations
    monkeypatch.setattr(gates_module, "gate_preactivations", lambda *a: calls.append(1) or original(*a))
    gates_and_cells("lstm", **make_case("lstm"))
    assert len(calls) == 1


# --- weighted sum ---------------------------------------------------------------------------


def test_log_weights_follow_the_cumsum_definition() -> None:
    generator = torch.Generator().manual_seed(11)
    input_gate = torch.rand(2, 6, 3, generator=generator, dtype=torch.float64)
    forget_gate = torch.rand(2, 6, 3, generator=generator, dtype=torch.float64)
    log_weights, log_initial = weighted_sum_log_weights(input_gate, forget_gate)
    cumulative = forget_gate.log().cumsum(1)  # F
    for t in range(6):
        for j in range(6):
            if j > t:
                assert torch.all(log_weights[:, t, j] == float("-inf"))
            else:
                expected = input_gate[:, j].log() + cumulative[:, t] - cumulative[:, j]
                torch.testing.assert_close(log_weights[:, t, j], expected)
    torch.testing.assert_close(log_initial, cumulative)


@pytest.mark.parametrize("cell_type", ["lstm", "lstm-srnn", "lstm-srnn-out", "lstm-srnn-hidden"])
def test_weighted_sum_reconstructs_cells(cell_type: str) -> None:
    case = make_case(cell_type, seed=9)
    with torch.no_grad():
        trace = gates_and_cells(cell_type, **case)
        assert (trace["cell_candidate"] < 0).any()  # signed content: no log of the candidate
        log_weights, log_initial = weighted_sum_log_weights(trace["input_gate"], trace["forget_gate"])
        rebuilt = reconstruct_cells(log_weights, log_initial, trace["cell_candidate"], case["initial_cell"])
        torch.testing.assert_close(rebuilt, trace["cell"], **TOLERANCE)
        # A span [start, end) of the sequence: its initial cell is c_{start-1}.
        for start, end in [(0, 4), (3, 9), (5, 6)]:
            span = weighted_sum_span(trace, start, end, case["initial_cell"])
            rebuilt = reconstruct_cells(
                span["log_weights"], span["log_initial_weight"], span["cell_candidate"], span["initial_cell"]
            )
            torch.testing.assert_close(rebuilt, trace["cell"][:, start:end], **TOLERANCE)
            assert span["log_weights"].shape == (BATCH, end - start, end - start, HIDDEN)


def test_weighted_sum_with_closed_forget_gate_has_no_nan() -> None:
    """A forget gate of exactly 0 (b_f = -inf) cuts the sum: weights before it become 0."""
    generator = torch.Generator().manual_seed(2)
    input_gate = torch.rand(1, 5, 2, generator=generator)
    forget_gate = torch.rand(1, 5, 2, generator=generator)
    forget_gate[:, 2] = 0.0
    candidate = torch.randn(1, 5, 2, generator=generator)
    initial = torch.randn(1, 2, generator=generator)
    log_weights, log_initial = weighted_sum_log_weights(input_gate, forget_gate)
    assert not torch.isnan(log_weights).any() and not torch.isnan(log_initial).any()
    assert torch.all(log_weights[:, 2:, :2] == float("-inf"))
    cells = linear_scan(forget_gate, input_gate * candidate, initial)
    torch.testing.assert_close(reconstruct_cells(log_weights, log_initial, candidate, initial), cells, **TOLERANCE)
    norms = weighted_sum_norms(log_weights)
    assert norms.shape == (1, 5, 5) and torch.all(norms[:, 0, 1:] == 0)


# --- heat map -------------------------------------------------------------------------------


def test_heatmap_renders_with_token_labels() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from mtlstm_hf.analysis.figures import plot_weighted_sum_heatmap

    tokens = ["the", "cat", "sat", "on", "the", "mat"]
    trace = gates_and_cells("lstm", **make_case("lstm"))
    log_weights, _ = weighted_sum_log_weights(trace["input_gate"][:, :6], trace["forget_gate"][:, :6])
    figure, axes = plot_weighted_sum_heatmap(log_weights[0], tokens, title="LSTM")
    figure.canvas.draw()
    assert [label.get_text() for label in axes.get_xticklabels()] == tokens
    assert [label.get_text() for label in axes.get_yticklabels()] == tokens
    image = axes.get_images()[0].get_array()
    expected = weighted_sum_norms(log_weights[0].detach().double()).T  # rows = context word j
    assert image.shape == (6, 6)
    drawn = torch.as_tensor(image.filled(float("nan")))
    torch.testing.assert_close(drawn.triu(), expected.triu())  # j <= t: the past and present
    future = torch.ones(6, 6, dtype=torch.bool).tril(-1)  # j > t: left blank
    assert torch.isnan(drawn[future]).all()

    # Drawing into an existing Axes returns that Axes' figure.
    import matplotlib.pyplot as pyplot

    own_figure, own_axes = pyplot.subplots()
    assert plot_weighted_sum_heatmap(log_weights[0], tokens, ax=own_axes, colorbar=False) == (own_figure, own_axes)
    pyplot.close("all")


def test_heatmap_without_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtlstm_hf.analysis.figures import plot_weighted_sum_heatmap

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):  # noqa: ANN001, ANN202
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"needs matplotlib: pip install matplotlib \(a dependency of mtlstm_hf\)"):
        plot_weighted_sum_heatmap(torch.zeros(2, 2, 3), ["a", "b"])
