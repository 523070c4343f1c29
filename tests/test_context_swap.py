"""Timescales from activity (``mtlstm_hf.analysis.context_swap``, Chien, Zhang & Honey 2021):
the same segment after two contexts; how fast each unit's two runs converge.

Oracles: a linear unit ``h_t = a h_{t-1} + x_t`` (measured timescale ``-1/ln a`` exactly); our
model's assigned timescales (longer assigned, slower convergence: a rank correlation whose
bootstrap interval excludes 0); the measure on models that are not ours (GPT-2 and Mamba built
from small configs: any causal LM that returns hidden states); and the report written to disk."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import corpus_and_saved_model

from mtlstm_hf import MTLSTMConfig, MTLSTMForCausalLM
from mtlstm_hf.analysis.context_swap import (
    context_swap_timescales,
    convergence_timescales,
    hidden_state_activations,
    rank_correlation,
)

pytestmark = pytest.mark.usefixtures("one_thread")

RETENTIONS = torch.tensor([0.3, 0.5, 0.9, 0.97, 0.995], dtype=torch.float64)


def linear_units(ids: torch.Tensor) -> list[torch.Tensor]:
    """Five linear units driven by one random scalar per token (float64)."""
    inputs = torch.randn(64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))[ids]
    state = torch.zeros(ids.shape[0], RETENTIONS.numel(), dtype=torch.float64)
    steps = []
    for t in range(ids.shape[1]):
        state = RETENTIONS * state + inputs[:, t, None]
        steps.append(state)
    return [torch.stack(steps, 1)]


def stream(n=4000, vocab=64, seed=0):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


def test_a_linear_unit_measures_minus_one_over_log_a():
    result = context_swap_timescales(linear_units, stream(), context_length=30, segment_length=80, samples=12)
    expected = -1.0 / torch.log(RETENTIONS)
    torch.testing.assert_close(result.timescales[0], expected, rtol=1e-6, atol=0.0)
    assert result.differences[0].shape == (80, 5)


def test_the_convergence_fit_on_edge_cases():
    t = torch.arange(10, dtype=torch.float64)[:, None]
    curves = torch.cat([torch.exp(-t / 4.0), torch.zeros_like(t), torch.ones_like(t), torch.exp(-t / 4.0) * 0], 1)
    curves[0, 3] = 1.0  # one position above the floor only
    measured = convergence_timescales(curves)
    assert measured[0] == pytest.approx(4.0, rel=1e-9)
    assert math.isnan(measured[1]) and measured[2] == math.inf and math.isnan(measured[3])
    with pytest.raises(ValueError, match=r"floor must be a number in \(0, 1\), got 1.5"):
        convergence_timescales(curves, floor=1.5)
    with pytest.raises(ValueError, match=r"positions >= 2"):
        convergence_timescales(curves[:1])


def test_longer_assigned_timescales_converge_more_slowly_in_our_model():
    torch.manual_seed(0)
    config = MTLSTMConfig(
        vocab_size=200,
        embedding_size=32,
        hidden_sizes=[64, 64, 32],
        timescale_schedules=[
            {"type": "fixed", "values": [3, 4]},
            {"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0},
            None,
        ],
    )
    model = MTLSTMForCausalLM(config).eval()
    result = context_swap_timescales(
        hidden_state_activations(model), stream(5000, 200), context_length=60, segment_length=40, samples=32
    )
    assigned = model.assigned_timescales()
    correlation = rank_correlation(result.timescales[1], assigned[1])
    assert correlation["units"] == 64 and correlation["interval"][0] > 0.0, correlation
    assert correlation["interval"][0] <= correlation["spearman"] <= correlation["interval"][1]


def test_the_rank_correlation_agrees_with_scipy_and_its_interval_is_seeded():
    from scipy import stats

    x = torch.tensor([1.0, 5.0, 2.0, math.inf, 4.0, math.nan, 7.0])
    y = torch.tensor([2.0, 4.0, 1.0, 9.0, 5.0, 3.0, 6.0])
    result = rank_correlation(x, y, resamples=200)
    keep = ~torch.isnan(x)
    assert result["spearman"] == pytest.approx(stats.spearmanr(x[keep].numpy(), y[keep].numpy()).statistic)
    assert result["units"] == 6 and result == rank_correlation(x, y, resamples=200)
    assert math.isnan(rank_correlation(x[:2], y[:2])["spearman"])


@pytest.mark.parametrize("architecture", ["gpt2", "mamba"])
def test_any_causal_lm_with_hidden_states_is_measured(architecture):
    import transformers

    if architecture == "gpt2":
        config = transformers.GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=256)
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.MambaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, state_size=4)
        model = transformers.MambaForCausalLM(config)
    torch.manual_seed(0)
    model.eval()
    result = context_swap_timescales(
        hidden_state_activations(model), stream(), context_length=20, segment_length=12, samples=4, batch_size=2
    )
    assert len(result.timescales) == 2 and all(t.shape == (16,) for t in result.timescales)
    assert all(bool((t[~torch.isnan(t)] > 0).all()) for t in result.timescales)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"context_length": 0}, r"context_length must be a positive integer, got 0"),
        ({"segment_length": 1}, r"segment_length and samples must be >= 2"),
        (
            {"samples": 4000},
            r"stream has 4000 tokens: 4000 segments of 50 tokens after 100 tokens of context need at least 4149",
        ),
    ],
)
def test_bad_sizes_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        context_swap_timescales(linear_units, stream(), **arguments)


def test_a_model_without_hidden_states_is_named():
    class Plain(torch.nn.Module):
        def forward(self, input_ids, **kwargs):
            return {"logits": torch.zeros(*input_ids.shape, 3)}

    with pytest.raises(ValueError, match="Plain returned no hidden_states"):
        context_swap_timescales(hidden_state_activations(Plain()), stream(), samples=8)


def test_the_analysis_writes_its_section_and_figure(tmp_path):
    from mtlstm_hf.analysis.report import analyze_checkpoint
    from mtlstm_hf.analysis.settings import AnalysisSettings

    corpus, model_dir = corpus_and_saved_model(tmp_path)
    settings = AnalysisSettings(swap_context_length=10, swap_segment_length=8, swap_samples=4, batch_size=2)
    out = tmp_path / "report"
    analyze_checkpoint(
        model_dir, data=str(corpus), split="valid", analyses="context_swap", settings=settings, output_dir=out
    )
    report = json.loads((out / "report.json").read_text())
    section = report["analyses"]["context_swap"]
    assert [layer["layer"] for layer in section["layers"]] == [1, 2]
    assert section["layers"][0]["assigned_rank_correlation"]["units"] == 10
    assert "assigned_rank_correlation" not in section["layers"][1]  # layer 2 has no schedule
    assert len(section["layers"][0]["timescales"]) == 10
    assert (out / "figures" / "context_swap_timescales.png").stat().st_size > 0


def test_the_swapped_context_shares_no_token_with_the_context_or_the_segment():
    """Record the rows the measure builds (positions as token ids) and check each B context."""
    rows = []

    def recording(ids):
        rows.append(ids.clone())
        return linear_units(ids % 64)

    positions = torch.arange(400)
    context_swap_timescales(recording, positions, context_length=20, segment_length=10, samples=12, batch_size=5)
    for batch in rows:
        half = batch.shape[0] // 2
        for row_a, row_b in zip(batch[:half], batch[half:]):
            assert torch.equal(row_a[20:], row_b[20:])  # the same segment
            assert not set(row_b[:20].tolist()) & set(row_a.tolist())  # B is disjoint from A and S
    with pytest.raises(ValueError, match=r"the stream \(40 tokens\) has no context of 20 tokens disjoint"):
        context_swap_timescales(recording, torch.arange(40), context_length=20, segment_length=10, samples=3)


def test_a_stream_that_is_not_one_dimensional_is_refused():
    with pytest.raises(ValueError, match=r"stream must be a 1-D tensor of token ids, got shape \(2, 2000\)"):
        context_swap_timescales(linear_units, stream().reshape(2, 2000))
