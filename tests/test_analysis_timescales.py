"""Traces, timescale estimation and fits, memory span: oracles on small synthetic models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_model
from scipy import special, stats

from mtlstm_hf.analysis import (
    LayerTimescales,
    TimescaleEstimate,
    compare_with_assigned,
    estimate_memory_span,
    estimate_timescales,
    fit_inverse_gamma,
    fit_timescale_distribution,
    inverse_gamma_fit_note,
    layer_traces,
    passage_log_weights,
    stream_traces,
    timescale_report,
    trace_moments,
)
from mtlstm_hf.analysis.gates import weighted_sum_log_weights, weighted_sum_norms
from mtlstm_hf.evaluation.checkpoint import to_json_compatible
from mtlstm_hf.models.mtlstm.naive import TRACE_KEYS, reference_trace

pytestmark = pytest.mark.usefixtures("one_thread")


def _stream(length: int, vocab_size: int = 37, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab_size, (length,), generator=torch.Generator().manual_seed(seed))


def _freeze_gate_rows(model, gates=("forget_gate",)) -> None:
    """Zero the weight rows of ``gates`` in every layer: their pre-activation is then the bias alone."""
    with torch.no_grad():
        for layer in model.model.layers:
            size = layer.hidden_size
            for matrix, rows in (
                (layer.weight_ih, layer.layout.input_gate_rows),
                (layer.weight_hh, layer.layout.recurrent_gate_rows),
            ):
                for gate in gates:
                    if gate in rows:
                        block = rows.index(gate)
                        matrix[block * size : (block + 1) * size] = 0.0


# ---------------------------------------------------------------------------
# Traces
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cell_types", [["lstm", "lstm"], ["lstm-srnn", "lstm-srnn-out"]])
def test_layer_traces_match_the_reference_loop_from_a_carried_state(cell_types):
    model = tiny_model(cell_types=cell_types)
    first, second = _stream(16).reshape(2, 8).split([3, 5], dim=1)
    state = model(input_ids=first, use_cache=True).cache
    traces = layer_traces(model, second, state)
    hidden_states = model(input_ids=second, cache=state, output_hidden_states=True).hidden_states
    for index, (trace, layer) in enumerate(zip(traces, model.model.layers)):
        assert trace["layer"] == index and trace["cell_type"] == cell_types[index]
        torch.testing.assert_close(trace["inputs"], hidden_states[index])
        torch.testing.assert_close(trace["outputs"], hidden_states[index + 1])
        reference = reference_trace(
            layer.cell_type,
            hidden_states[index],
            state.hidden[index],
            state.cell[index],
            layer.weight_ih,
            layer.weight_hh,
            layer.gate_biases.concatenated(torch.float32),
        )
        for key in TRACE_KEYS:
            if reference[key] is None:
                assert trace[key] is None
            else:
                torch.testing.assert_close(trace[key], reference[key], atol=1e-6, rtol=1e-5)


def test_stream_traces_carry_the_state_like_one_forward():
    model = tiny_model()
    stream = _stream(41)  # 2 rows of 20, one token dropped
    chunks = list(stream_traces(model, stream, batch_size=2, window=6))
    assert [chunk.start for chunk in chunks] == [0, 6, 12, 18]
    whole = layer_traces(model, stream[:40].reshape(2, 20))
    for index in range(2):
        for key in ("forget_gate", "cell", "hidden"):
            joined = torch.cat([chunk.layers[index][key] for chunk in chunks], dim=1)
            torch.testing.assert_close(joined, whole[index][key], atol=1e-6, rtol=1e-5)


def test_trace_moments_are_the_mean_and_std_over_all_tokens():
    model = tiny_model()
    stream = _stream(30)
    moments = trace_moments(model, stream, ("forget_gate", "input_gate"), batch_size=3, window=4)
    whole = layer_traces(model, stream.reshape(3, 10))
    assert moments.num_tokens == 30
    for position, trace in enumerate(whole):
        values = trace["forget_gate"].double().reshape(-1, trace["forget_gate"].shape[-1])
        torch.testing.assert_close(moments.mean("forget_gate")[position], values.mean(0))
        torch.testing.assert_close(
            moments.std("forget_gate")[position], values.std(0, unbiased=False), atol=1e-7, rtol=1e-6
        )


def test_traces_leave_the_training_flag_as_it_was():
    model = tiny_model(hidden_dropout=0.5).train()
    traces = layer_traces(model, _stream(10).reshape(1, 10))
    assert model.training
    # eval semantics: no dropout between layers, so layer 2's input is layer 1's output
    torch.testing.assert_close(traces[1]["inputs"], traces[0]["outputs"])


# ---------------------------------------------------------------------------
# Timescale estimation
# ---------------------------------------------------------------------------


def _scheduled_model():
    """Layer 0: reference inverse-gamma grid (last unit T = 0); layer 1: explicit, first unit T = inf."""
    model = tiny_model(
        hidden_sizes=[10, 6],
        timescale_schedules=[
            {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0, "grid": "reference"},
            {"type": "explicit", "timescales": [math.inf, 2.0, 5.0, 10.0, 50.0, 1000.0]},
        ],
    ).double()
    _freeze_gate_rows(model)
    return model


def test_constant_forget_gate_gives_the_assigned_timescale_exactly():
    model = tiny_model(hidden_sizes=[6], timescale_schedules=[{"type": "fixed", "values": [3.0, 4.0]}]).double()
    _freeze_gate_rows(model)
    estimate = estimate_timescales(model, _stream(60), batch_size=2, window=7)
    (layer,) = estimate.layers
    assert estimate.num_tokens == 60 and layer.num_tokens == 60
    torch.testing.assert_close(
        layer.timescales, torch.tensor([3.0, 3, 3, 4, 4, 4], dtype=torch.float64), rtol=1e-6, atol=0
    )
    torch.testing.assert_close(layer.timescales, layer.assigned, rtol=1e-12, atol=0)
    torch.testing.assert_close(layer.forget_gate_std, torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)


def test_degenerate_units_are_reported_not_fitted():
    model = _scheduled_model()
    estimate = estimate_timescales(model, _stream(50), window=9)
    first, second = estimate.layers
    assert first.timescales[-1] == 0 and first.assigned[-1] == 0  # reference grid quirk: b_f = -inf
    assert math.isinf(second.timescales[0]) and math.isinf(second.assigned[0])  # f = 1: never forget
    assert first.degenerate.tolist() == [False] * 9 + [True]
    assert second.degenerate.tolist() == [True] + [False] * 5
    finite = ~first.degenerate
    torch.testing.assert_close(first.timescales[finite], first.assigned[finite], rtol=1e-10, atol=0)
    summary = second.summary()
    assert (summary["n_finite"], summary["n_zero"], summary["n_infinite"]) == (5, 0, 1)

    comparison = compare_with_assigned(second.timescales, second.assigned)
    assert comparison["n_excluded"] == 1
    assert comparison["log_pearson"] == pytest.approx(1.0) and comparison["spearman"] == pytest.approx(1.0)
    assert comparison["ratio"]["geometric_mean"] == pytest.approx(1.0) and comparison["fraction_within_2x"] == 1.0

    report = timescale_report(estimate)
    assert report["layers"][1]["fits"]["inverse_gamma"]["num_samples"] == 5
    assert report["pooled"]["fits"]["inverse_gamma"]["num_samples"] == 14
    text = json.dumps(to_json_compatible(report), allow_nan=False)  # strict JSON: inf -> null
    assert json.loads(text)["layers"][1]["timescales"][0] is None


def test_layers_without_forget_gate_raise_clearly():
    gates_only = tiny_model(cell_types="lstm-gates", timescale_schedules=[None, None])
    with pytest.raises(ValueError, match="no layer with a forget gate"):
        estimate_timescales(gates_only, _stream(20))
    mixed = tiny_model(cell_types=["lstm", "lstm-gates"], timescale_schedules=[None, None])
    with pytest.raises(ValueError, match=r"layer indices \[1\] \(layers \[2\]\) have no forget gate"):
        estimate_timescales(mixed, _stream(20), layers=[1])
    estimate = estimate_timescales(mixed, _stream(20))
    assert [entry.layer_index for entry in estimate.layers] == [0]
    assert estimate.layers[0].assigned is None


def test_data_too_short_raises():
    model = tiny_model()
    with pytest.raises(ValueError, match="too short"):
        estimate_timescales(model, _stream(20), batch_size=2, min_tokens=11)
    with pytest.raises(ValueError, match="too short"):
        estimate_timescales(model, _stream(3), batch_size=4)
    with pytest.raises(ValueError, match="too short"):
        estimate_memory_span(model, _stream(20), max_distance=21)


# ---------------------------------------------------------------------------
# Distribution fits
# ---------------------------------------------------------------------------


def test_inverse_gamma_fit_recovers_alpha_and_beta():
    alpha, beta, count = 2.2, 1.5, 20_000
    samples = stats.invgamma.rvs(a=alpha, scale=beta, size=count, random_state=np.random.default_rng(0))
    fit = fit_inverse_gamma(torch.from_numpy(samples))
    # 1/T ~ Gamma(alpha, rate=beta): asymptotic MLE standard errors from the Fisher information.
    denominator = count * (alpha * special.polygamma(1, alpha) - 1.0)
    se_alpha = math.sqrt(alpha / denominator)
    se_beta = math.sqrt(special.polygamma(1, alpha) * beta**2 / denominator)
    assert abs(fit.parameters["alpha"] - alpha) < 5 * se_alpha
    assert abs(fit.parameters["beta"] - beta) < 5 * se_beta
    # It is the maximum: scipy's generic fit cannot do better.
    a, _, scale = stats.invgamma.fit(samples, floc=0)
    assert fit.log_likelihood >= np.sum(stats.invgamma.logpdf(samples, a, scale=scale)) - 1e-6
    assert fit.aic == pytest.approx(4 - 2 * fit.log_likelihood)
    assert fit.ks_pvalue > 1e-3 and fit.num_samples == count

    fits = fit_timescale_distribution(samples)
    assert list(fits) == ["inverse_gamma", "lognormal", "exponential", "gamma"]
    assert min(fits, key=lambda family: fits[family].aic) == "inverse_gamma"
    assert fits["exponential"].ks_statistic > fits["inverse_gamma"].ks_statistic


def test_fits_leave_out_zero_and_infinite_timescales_and_reject_degenerate_input():
    values = torch.tensor([0.0, math.inf, 1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    assert fit_inverse_gamma(values).num_samples == 4
    with pytest.raises(ValueError, match="at least 3"):
        fit_inverse_gamma(torch.tensor([0.0, 1.0, math.inf, 2.0]))
    with pytest.raises(ValueError, match="equal"):
        fit_inverse_gamma(torch.full((5,), 3.0))
    with pytest.raises(ValueError, match="families"):
        fit_timescale_distribution(values, ["weibull"])


def test_comparison_of_scaled_timescales():
    assigned = torch.tensor([1.0, 3.0, 10.0, 30.0, 100.0])
    comparison = compare_with_assigned(3.0 * assigned, assigned)
    assert comparison["log_pearson"] == pytest.approx(1.0)
    assert comparison["ratio"]["median"] == pytest.approx(3.0) and comparison["ratio"][
        "geometric_mean"
    ] == pytest.approx(3.0)
    assert comparison["fraction_within_2x"] == 0.0 and comparison["n_excluded"] == 0


# ---------------------------------------------------------------------------
# Memory span
# ---------------------------------------------------------------------------


def test_memory_span_of_constant_gates_is_the_closed_form():
    model = tiny_model().double()
    _freeze_gate_rows(model, ("input_gate", "forget_gate"))
    with torch.no_grad():  # give the free layer 1 some non-trivial constant gates too (the input side holds all)
        model.model.layers[1].gate_biases.input_gate.copy_(torch.linspace(-1, 1, 6))
        model.model.layers[1].gate_biases.forget_gate.copy_(torch.linspace(0, 3, 6))
        model.model.layers[1].gate_biases.input_gate_hh.zero_()
        model.model.layers[1].gate_biases.forget_gate_hh.zero_()
    max_distance, batch_size, row_length = 12, 2, 25
    span = estimate_memory_span(model, _stream(batch_size * row_length), max_distance, batch_size=batch_size, window=5)
    distances = torch.arange(max_distance, dtype=torch.float64)
    for position, layer in enumerate(model.model.layers):
        input_gate = torch.sigmoid(layer.gate_biases.input_gate.double())
        forget_gate = torch.sigmoid(layer.gate_biases.forget_gate.double())
        expected = (input_gate[None] * forget_gate[None] ** distances[:, None]).norm(dim=1)  # ||i f^d||
        torch.testing.assert_close(span.mean_norm[position], expected, rtol=1e-10, atol=1e-14)
        assert span.counts[position].tolist() == [batch_size * (row_length - d) for d in range(max_distance)]


def test_memory_span_across_windows_equals_the_full_weighted_sum():
    # float64: windowed and full forwards then agree to ~1e-16, so 1e-9 tests the bookkeeping
    # (in float32, GEMMs of other shapes round gates differently by an ulp, machine-dependently).
    model = tiny_model().double()
    stream, max_distance = _stream(23), 9
    span = estimate_memory_span(model, stream, max_distance, window=4)
    traces = layer_traces(model, stream[None])
    for position, trace in enumerate(traces):
        log_weights, _ = weighted_sum_log_weights(trace["input_gate"].double(), trace["forget_gate"].double())
        norms = weighted_sum_norms(log_weights)[0]  # (T, T): [t, j]
        expected = torch.stack([torch.diagonal(norms, -d).mean() for d in range(max_distance)])
        torch.testing.assert_close(span.mean_norm[position], expected, rtol=1e-9, atol=1e-12)
    summary = span.summary()
    assert [row["layer"] for row in summary] == [1, 2]  # report rows number layers from 1
    assert span.layers == [0, 1] and span.to_dict()["layers"] == [1, 2]
    assert json.dumps(to_json_compatible(span.to_dict()), allow_nan=False)


def test_passage_log_weights_and_layer_checks():
    model = tiny_model(cell_types=["lstm", "lstm-gates"], timescale_schedules=[None, None])
    log_weights = passage_log_weights(model, _stream(7), 0)
    assert log_weights.shape == (7, 7, 10) and torch.isinf(log_weights[0, 1]).all()
    with pytest.raises(ValueError, match="no memory cell"):
        passage_log_weights(model, _stream(7), 1)
    with pytest.raises(ValueError, match="no memory cell"):
        estimate_memory_span(model, _stream(30), 5, layers=[1])


def _hand_layer(timescales, schedule=None, assigned=None, layer=1) -> LayerTimescales:
    values = torch.tensor(timescales, dtype=torch.float64)
    return LayerTimescales(
        layer_index=layer,
        cell_type="lstm",
        mean_forget_gate=torch.exp(-1 / values),
        forget_gate_std=torch.zeros_like(values),
        timescales=values,
        assigned=None if assigned is None else torch.tensor(assigned, dtype=torch.float64),
        num_tokens=100,
        schedule=schedule,
    )


def test_inverse_gamma_fit_note():
    spread = [0.7, 1.3, 2.0, 4.0, 9.0, 30.0, 200.0]
    assert inverse_gamma_fit_note(spread, {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0}) is None
    assert inverse_gamma_fit_note(spread, None) is None  # a free layer with spread: the fit is a question worth asking
    assert "T = 3|4" in inverse_gamma_fit_note(spread, {"type": "fixed", "values": [3.0, 4.0]})
    # 90th / 10th percentile just below and above the threshold of 2
    narrow = torch.linspace(3.0, 3.0 * 1.9, 101)
    assert "no timescale spread" in inverse_gamma_fit_note(narrow.tolist())
    wide = torch.linspace(3.0, 3.0 * 2.6, 101)  # percentiles 3.48 and 7.32: ratio 2.1
    assert inverse_gamma_fit_note(wide.tolist()) is None
    assert "only 2 finite" in inverse_gamma_fit_note([2.0, 5.0, math.inf, 0.0])


def test_timescale_figure_draws_the_data_and_the_fit_quantiles():
    """The curves are the sorted data and scipy's inverse-gamma quantiles of the fit: swapping alpha
    and beta, or reversing the order, would fail."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from mtlstm_hf.analysis import plot_timescales

    values = stats.invgamma.rvs(a=1.7, scale=6.0, size=40, random_state=np.random.default_rng(0))
    layer = _hand_layer(
        [*values, math.inf, 0.0],
        {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0},
        assigned=np.linspace(1.0, 80.0, 42),
    )
    fit = fit_inverse_gamma(layer.timescales)
    alpha, beta = fit.parameters["alpha"], fit.parameters["beta"]
    assert abs(alpha - beta) > 1.0  # otherwise a swap would go unnoticed
    figure = plot_timescales(layer, fit)
    estimated, assigned, fitted = figure.axes[0].lines
    np.testing.assert_allclose(estimated.get_ydata(), np.sort(values)[::-1], rtol=1e-12)
    np.testing.assert_allclose(estimated.get_xdata(), np.arange(40))
    np.testing.assert_allclose(assigned.get_ydata(), np.linspace(1.0, 80.0, 42)[::-1], rtol=1e-12)
    np.testing.assert_allclose(
        fitted.get_ydata(), stats.invgamma.isf((np.arange(40) + 0.5) / 40, a=alpha, scale=beta), rtol=1e-6
    )
    assert "2 units at 0 or infinity not shown" in estimated.get_label()
    assert fitted.get_label() == f"inverse-gamma fit, shape alpha {alpha:.3g}, scale beta {beta:.3g}"
    assert figure.axes[0].get_title() == "Layer 2: timescales of its units"  # index 1 is layer 2
    plt.close(figure)


def test_no_fit_is_drawn_where_it_means_nothing():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from mtlstm_hf.analysis import plot_timescale_histograms, plot_timescales

    fixed = _hand_layer(np.linspace(1.5, 9.0, 20), {"type": "fixed", "values": [3.0, 4.0]}, layer=0)
    flat = _hand_layer(np.linspace(3.0, 3.5, 20), None, layer=2)
    for layer in (fixed, flat):
        figure = plot_timescales(layer, fit_inverse_gamma(layer.timescales))
        lines = figure.axes[0].lines
        assert [line.get_label().split(",")[0] for line in lines if len(line.get_xdata())] == ["estimated"]
        assert any(line.get_label().startswith("no inverse-gamma fit: ") for line in lines)
        plt.close(figure)
    estimate = TimescaleEstimate([fixed, flat], 100, 1, 70)
    figure = plot_timescale_histograms(
        estimate, {0: fit_inverse_gamma(fixed.timescales), 2: fit_inverse_gamma(flat.timescales)}
    )
    for ax in figure.axes:
        assert [line for line in ax.lines if len(line.get_xdata())] == []  # no density anywhere
    assert [ax.get_title() for ax in figure.axes] == ["layer 1 (lstm)", "layer 3 (lstm)"]
    plt.close(figure)


def test_timescale_histogram_bars_and_density():
    """Bar heights are numpy's histogram of log10 T; the curve is scipy's density of log10 T in counts."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from mtlstm_hf.analysis import plot_timescale_histograms

    values = stats.invgamma.rvs(a=0.9, scale=3.0, size=60, random_state=np.random.default_rng(1))
    layer = _hand_layer(values, {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0}, layer=1)
    fit = fit_inverse_gamma(layer.timescales)
    figure = plot_timescale_histograms(TimescaleEstimate([layer], 100, 1, 70), {1: fit})
    ax = figure.axes[0]
    counts, edges = np.histogram(np.log10(values), bins=30)  # min(40, max(5, 60 // 2)) bins
    np.testing.assert_allclose([patch.get_height() for patch in ax.patches], counts)
    (density,) = ax.lines
    grid = density.get_xdata()
    width = edges[1] - edges[0]
    expected = (
        stats.invgamma.pdf(10**grid, a=fit.parameters["alpha"], scale=fit.parameters["beta"])
        * 10**grid
        * np.log(10)
        * 60
        * width
    )
    np.testing.assert_allclose(density.get_ydata(), expected, rtol=1e-6)
    plt.close(figure)


def test_memory_span_figure_has_one_distinct_curve_per_layer():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from mtlstm_hf.analysis import plot_memory_span, plot_passage_weighted_sum

    model = _scheduled_model()
    span = estimate_memory_span(model, _stream(30), 5)
    figure = plot_memory_span(span, log_distance=True)
    lines = figure.axes[0].lines
    assert [line.get_label() for line in lines] == ["layer 1", "layer 2"]
    for position, line in enumerate(lines):
        np.testing.assert_allclose(line.get_xdata(), np.arange(1, 5))
        np.testing.assert_allclose(line.get_ydata(), span.mean_norm[position, 1:].numpy())
    styles = {(line.get_color(), line.get_linestyle(), line.get_marker()) for line in lines}
    assert (
        len({style[0] for style in styles})
        == len({style[1] for style in styles})
        == len({style[2] for style in styles})
        == 2
    )
    heat = plot_passage_weighted_sum(model, _stream(6), 1, tokens=list("abcdef"))
    assert heat.axes[0].get_title() == "Layer 2: weighted-sum weights of the memory cell"
    norms = weighted_sum_norms(passage_log_weights(model, _stream(6), 1).double()).T.numpy()
    image = heat.axes[0].images[0].get_array()
    np.testing.assert_allclose(
        np.asarray(image.filled(np.nan)), np.where(np.tril(np.ones((6, 6)), -1) > 0, np.nan, norms)
    )
    plt.close(figure)
    plt.close(heat)


def test_a_layer_is_its_index_in_python_and_its_number_in_reports():
    """One conversion (layouts.layer_number / layer_index_of) and one name each: ``layer_index``
    (0-based) on Python objects, ``layer`` (from 1) in report entries; the old attribute name
    still reads the index for one version, with a DeprecationWarning."""
    import warnings

    from mtlstm_hf.models.mtlstm.layouts import layer_index_of, layer_number

    assert [layer_number(i) for i in range(3)] == [1, 2, 3] and layer_index_of(2) == 1
    model = tiny_model()
    estimate = estimate_timescales(model, torch.randint(0, model.config.vocab_size, (40,)), layers=[1])
    entry = estimate.layers[0]
    assert entry.layer_index == 1 and timescale_report(estimate)["layers"][0]["layer"] == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert entry.layer == 1
    assert [w.category for w in caught] == [DeprecationWarning]
