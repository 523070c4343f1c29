"""Unit ablation (hooks, semantics, restoration) and routing reports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import tiny_model

from mtlstm_hf.analysis import (
    UnitAblation,
    ablate_units,
    ablation_log_probs,
    active_ablation,
    layer_traces,
    routing_report,
    timescale_chunks,
    units_by_timescale,
    word_class_routing_report,
    word_class_table,
)
from mtlstm_hf.evaluation import (
    bin_labels,
    binned_perplexity,
    class_binned_perplexity,
    frequency_bin_of_token,
    target_positions,
    token_counts,
    token_log_probs,
)

pytestmark = pytest.mark.usefixtures("one_thread")

EDGES = (2, 4, 6)  # small thresholds: the short random stream fills every bin


def _stream(length: int, vocab_size: int = 37, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab_size, (length,), generator=torch.Generator().manual_seed(seed))


def _forward(model, input_ids, state=None):
    with torch.no_grad():
        return model(input_ids=input_ids, cache=state, use_cache=True, output_hidden_states=True)


def test_ablation_restores_outputs_exactly_and_never_touches_parameters():
    model = tiny_model()
    inputs = _stream(18).reshape(2, 9)
    before = _forward(model, inputs)
    parameters = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with ablate_units(model, {0: [0, 3, 7], 1: torch.tensor([5])}) as ablation:
        assert ablation.active
        assert active_ablation(model.model.layers[0]).tolist() == [0, 3, 7]
        ablated = _forward(model, inputs)
        assert not torch.equal(ablated.logits, before.logits)
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, parameters[name]), name
    after = _forward(model, inputs)
    assert torch.equal(after.logits, before.logits)
    assert all(torch.equal(a, b) for a, b in zip(after.hidden_states, before.hidden_states))
    assert active_ablation(model.model.layers[0]) is None
    assert all(not layer._forward_hooks for layer in model.model.layers)


def test_ablation_zeroes_only_what_goes_up():
    model = tiny_model()
    inputs = _stream(14).reshape(2, 7)
    units = [1, 4, 8]
    intact = _forward(model, inputs)
    with ablate_units(model, {0: units}):
        ablated = _forward(model, inputs)
    kept = [unit for unit in range(10) if unit not in units]
    torch.testing.assert_close(ablated.hidden_states[0], intact.hidden_states[0])  # below: untouched
    assert torch.all(ablated.hidden_states[1][..., units] == 0)  # zeroed columns are visible
    torch.testing.assert_close(ablated.hidden_states[1][..., kept], intact.hidden_states[1][..., kept])
    # The layer's own recurrence is un-ablated: the state it returns is the intact one.
    torch.testing.assert_close(ablated.cache.hidden[0], intact.cache.hidden[0])
    torch.testing.assert_close(ablated.cache.cell[0], intact.cache.cell[0])
    # The layer above sees the zeroed input: the oracle runs layer 1 on it by hand.
    zeroed_input = intact.hidden_states[1].clone()
    zeroed_input[..., units] = 0
    zeros = torch.zeros(2, 6)
    expected, _, _ = model.model.layers[1](zeroed_input, zeros, zeros)
    torch.testing.assert_close(ablated.hidden_states[2], expected)
    assert not torch.allclose(ablated.hidden_states[2], intact.hidden_states[2])


def test_ablation_with_the_state_carried_across_windows_equals_one_forward():
    model = tiny_model()
    inputs = _stream(12).reshape(1, 12)
    with ablate_units(model, {0: [2, 3]}):
        whole = _forward(model, inputs)
        first = _forward(model, inputs[:, :5])
        second = _forward(model, inputs[:, 5:], first.cache)
    torch.testing.assert_close(torch.cat([first.logits, second.logits], 1), whole.logits)


def test_traces_under_ablation_keep_the_layers_own_gates():
    model = tiny_model()
    inputs = _stream(10).reshape(1, 10)
    intact = layer_traces(model, inputs)
    with ablate_units(model, {0: [0, 9]}):
        ablated = layer_traces(model, inputs)
    for key in ("forget_gate", "input_gate", "cell", "hidden"):
        torch.testing.assert_close(ablated[0][key], intact[0][key])
    assert torch.all(ablated[0]["outputs"][..., [0, 9]] == 0)
    torch.testing.assert_close(ablated[1]["inputs"], ablated[0]["outputs"])
    assert not torch.allclose(ablated[1]["forget_gate"], intact[1]["forget_gate"])


def test_nested_ablations_combine_and_unwind():
    model = tiny_model()
    layer = model.model.layers[0]
    outer = UnitAblation(model, {0: [1]}).apply()
    with ablate_units(model, {-2: [2, 1]}):  # -2 is layer 0 of this 2-layer model
        assert active_ablation(layer).tolist() == [1, 2]
        assert torch.all(_forward(model, _stream(4)[None]).hidden_states[1][..., [1, 2]] == 0)
    assert active_ablation(layer).tolist() == [1]
    outer.remove()
    outer.remove()  # idempotent
    assert active_ablation(layer) is None and not layer._forward_hooks


def test_invalid_selections_raise():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        ablate_units(model, {0: [10]})
    with pytest.raises(ValueError, match="layer must be"):
        ablate_units(model, {2: [0]})
    with pytest.raises(ValueError, match="integers"):
        ablate_units(model, {0: [0.5]})
    mask = torch.zeros(6, dtype=torch.bool)
    mask[[0, 5]] = True
    assert ablate_units(model, {1: mask}).units[1].tolist() == [0, 5]


def test_unit_selection_by_timescale():
    timescales = torch.tensor([5.0, 0.0, math.inf, 2.0, 50.0, 3.0, 5.0])
    assert units_by_timescale(timescales, 3.0, 10.0).tolist() == [0, 5, 6]
    assert units_by_timescale(timescales, 40.0).tolist() == [2, 4]
    chunks = timescale_chunks(timescales, chunk_size=3)
    assert [chunk.tolist() for chunk in chunks] == [[2, 4, 0], [6, 5, 3], [1]]  # longest first, stable ties
    ascending = timescale_chunks(timescales, chunk_size=4, descending=False)
    assert torch.cat(ascending).tolist() == [1, 3, 5, 0, 6, 4, 2]
    with pytest.raises(ValueError, match="chunk_size"):
        timescale_chunks(timescales, 0)


def _bins(stream: torch.Tensor) -> torch.Tensor:
    return frequency_bin_of_token(token_counts(stream, 37), EDGES)


def test_routing_report_shape_and_no_ablation_ratio_one():
    model = tiny_model(
        hidden_sizes=[10, 6], timescale_schedules=[{"type": "inverse_gamma", "alpha": 0.56, "beta": 1.0}, None]
    )
    stream = _stream(120)
    report = routing_report(model, stream, 0, _bins(stream), edges=EDGES, chunk_size=4, window=11)
    assert report["order"] == "assigned" and report["columns"] == [*bin_labels(EDGES), "overall"]
    assert len(report["chunks"]) == 3 and [chunk["n_units"] for chunk in report["chunks"]] == [4, 4, 2]
    # The inverse-gamma units are sorted longest first already: chunks are consecutive units (the paper's order).
    assert [chunk["units"] for chunk in report["chunks"]] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert report["chunks"][0]["timescale_min"] >= report["chunks"][1]["timescale_max"]
    assert len(report["ratio_matrix"]) == 3 and all(len(row) == 5 for row in report["ratio_matrix"])
    assert report["intact"]["n_tokens"] == 119

    nothing = routing_report(model, stream, 0, _bins(stream), edges=EDGES, chunks=[[]], window=11)
    assert nothing["order"] == "given"
    assert nothing["ratio_matrix"] == [[1.0] * 5]


def test_routing_ratio_when_the_whole_top_layer_is_ablated():
    """Oracle: with every unit of the last layer zeroed, the logits are the output bias alone."""
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.bias.copy_(torch.linspace(-2.0, 2.0, 37))
    stream = _stream(90)
    report = routing_report(model, stream, 1, _bins(stream), edges=EDGES, chunks=[range(6)], window=13)
    targets = stream[target_positions(90)]
    nll = -torch.log_softmax(model.lm_head.bias.detach().double(), -1)[targets]
    bins = _bins(stream)[targets]
    for index, label in enumerate(bin_labels(EDGES)):
        expected = math.exp(float(nll[bins == index].mean()))
        assert report["chunks"][0]["bins"][label] == pytest.approx(expected, rel=1e-5)
        intact = report["intact"]["bins"][label]["perplexity"]
        assert report["chunks"][0]["ratio"][label] == pytest.approx(expected / intact, rel=1e-5)
    assert report["chunks"][0]["perplexity"] == pytest.approx(math.exp(float(nll.mean())), rel=1e-5)


def _loop_reference(model, stream, layer, chunks, bin_of_token, batch_size, window):
    """The slow reference the batched pass replaces: one full evaluation intact and one per chunk
    under ``ablate_units`` (what the reference code does), binned by the evaluation package."""
    targets = stream[target_positions(stream.numel(), batch_size)]

    def score():
        log_probs = token_log_probs(model, stream, batch_size=batch_size, window=window)
        return log_probs, binned_perplexity(log_probs, targets, bin_of_token, EDGES)

    intact = score()
    ablated = []
    for chunk in chunks:
        with ablate_units(model, {layer: chunk}):
            ablated.append(score())
    return intact, ablated


@pytest.mark.parametrize(
    ("dtype", "batch_size", "window", "layer", "tolerance"),
    [(torch.float64, 1, 11, 0, 1e-11), (torch.float64, 2, 7, 1, 1e-11), (torch.float32, 1, 16, 0, 2e-5)],
)
def test_batched_routing_equals_one_evaluation_per_chunk(dtype, batch_size, window, layer, tolerance):
    """Every per-bin perplexity and ratio of the one-pass report equals the per-chunk loop's.

    Catches masks applied to the wrong row group (a chunk's numbers would come from another
    chunk), ablation leaking into the layer's own recurrence or into the intact rows, and rows
    mixed up when the stream is cut into batch rows."""
    model = tiny_model().to(dtype)
    stream = _stream(101)  # odd: with batch_size 2 the last token is dropped
    chunks = [[0, 3, 9], [1, 2], [4, 5, 6, 7, 8], []] if layer == 0 else [[0, 5], [1, 2, 3]]
    report = routing_report(
        model, stream, layer, _bins(stream), edges=EDGES, chunks=chunks, batch_size=batch_size, window=window
    )
    (intact_log_probs, intact), ablated = _loop_reference(
        model, stream, layer, chunks, _bins(stream), batch_size, window
    )
    assert report["layer"] == layer + 1  # report entries number layers from 1
    assert report["intact"]["n_tokens"] == intact["n_tokens"]
    assert report["intact"]["perplexity"] == pytest.approx(intact["perplexity"], rel=tolerance)
    for label in bin_labels(EDGES):
        assert report["intact"]["bins"][label]["n_tokens"] == intact["bins"][label]["n_tokens"]
        assert report["intact"]["bins"][label]["perplexity"] == pytest.approx(
            intact["bins"][label]["perplexity"], rel=tolerance
        )
    for entry, (_, expected) in zip(report["chunks"], ablated, strict=True):
        assert entry["perplexity"] == pytest.approx(expected["perplexity"], rel=tolerance)
        for label in bin_labels(EDGES):
            assert entry["bins"][label] == pytest.approx(expected["bins"][label]["perplexity"], rel=tolerance)
            ratio = expected["bins"][label]["perplexity"] / intact["bins"][label]["perplexity"]
            assert entry["ratio"][label] == pytest.approx(ratio, rel=tolerance)
    # The chunks really change the numbers (otherwise the comparison above proves nothing).
    assert len({round(entry["perplexity"], 6) for entry in report["chunks"]}) == len(chunks)

    # The raw log-probabilities too: row 0 intact, row k chunk k - 1.
    log_probs = ablation_log_probs(model, stream, layer, chunks, batch_size=batch_size, window=window)
    assert log_probs.shape == (len(chunks) + 1, intact_log_probs.numel())
    torch.testing.assert_close(log_probs[0], intact_log_probs, rtol=0, atol=tolerance)
    for row, (expected_log_probs, _) in enumerate(ablated, start=1):
        torch.testing.assert_close(log_probs[row], expected_log_probs, rtol=0, atol=tolerance)


def test_batched_class_routing_equals_the_loop():
    """The word-class report from the same one-pass log-probabilities, against the per-chunk loop."""
    model = tiny_model().double()
    stream = _stream(90, seed=4)
    classes = torch.tensor([index % 3 - 1 for index in range(37)])  # -1 (left out), 0, 1
    report = routing_report(model, stream, 0, classes, ["A", "B"], chunks=[[1, 2, 3], [7]], window=13)
    targets = stream[target_positions(90)]
    excluded = int((classes[targets] == -1).sum())
    assert report["n_excluded"] == excluded > 0
    intact = class_binned_perplexity(token_log_probs(model, stream, window=13), targets, classes, ["A", "B"])
    for entry, chunk in zip(report["chunks"], [[1, 2, 3], [7]]):
        with ablate_units(model, {0: chunk}):
            expected = class_binned_perplexity(token_log_probs(model, stream, window=13), targets, classes, ["A", "B"])
        for label in ("A", "B"):
            assert entry["bins"][label] == pytest.approx(expected["bins"][label]["perplexity"], rel=1e-11)
            ratio = expected["bins"][label]["perplexity"] / intact["bins"][label]["perplexity"]
            assert entry["ratio"][label] == pytest.approx(ratio, rel=1e-11)
        assert entry["ratio"]["overall"] == pytest.approx(expected["perplexity"] / intact["perplexity"], rel=1e-11)


def test_batched_ablation_rows_are_independent_and_leave_no_hook():
    """Swapping two chunks swaps their rows and nothing else; no hook stays on the model."""
    model = tiny_model().double()
    stream = _stream(50, seed=2)
    forward = ablation_log_probs(model, stream, 0, [[0, 1], [8, 9]], window=9)
    backward = ablation_log_probs(model, stream, 0, [[8, 9], [0, 1]], window=9)
    torch.testing.assert_close(backward, forward[[0, 2, 1]], rtol=0, atol=1e-12)
    assert all(not layer._forward_hooks for layer in model.model.layers)
    with pytest.raises(ValueError, match="at least one chunk"):
        ablation_log_probs(model, stream, 0, [])
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        ablation_log_probs(model, stream, 0, [[10]])
    assert all(not layer._forward_hooks for layer in model.model.layers)


class _Vocab:
    def __init__(self, size: int) -> None:
        self.vocab = {f"w{index}": index for index in range(size)}

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)


def test_word_class_table_and_class_perplexity():
    classes, labels = word_class_table({"w0": "NOUN", "w1": "VERB", "w2": "NOUN", "zzz": "ADJ"}, _Vocab(5), 5)
    assert labels == ["NOUN", "VERB", "ADJ", "other"]
    assert classes.tolist() == [0, 1, 0, 3, 3]
    excluded, labels_without = word_class_table({"w0": "NOUN"}, _Vocab(3), other_label=None)
    assert excluded.tolist() == [0, -1, -1] and labels_without == ["NOUN"]
    with pytest.raises(ValueError, match="none of the words"):
        word_class_table({"nope": "X"}, _Vocab(3))

    log_probs = torch.log(torch.tensor([0.5, 0.25, 0.1, 0.2]))
    targets = torch.tensor([0, 1, 2, 4])
    result = class_binned_perplexity(log_probs, targets, excluded.new_tensor([0, -1, 0, -1, 1]), ["A", "B"])
    assert result["n_excluded"] == 1 and result["n_tokens"] == 3
    assert result["bins"]["A"]["perplexity"] == pytest.approx(math.sqrt(1 / (0.5 * 0.1)))
    assert result["bins"]["B"]["perplexity"] == pytest.approx(5.0)


def test_word_class_routing_report():
    """Every ratio equals an independent computation: the chunk's output columns of layer 1 zeroed
    by the test's own forward hook, one plain forward over the whole stream, and the per-class
    perplexity ``exp(mean NLL)`` summed by hand; the chunks follow the assigned timescales, longest first."""
    model = tiny_model().double()
    stream = _stream(80)
    word_classes = {f"w{index}": ("EVEN" if index % 2 == 0 else "ODD") for index in range(30)}
    report = word_class_routing_report(model, _Vocab(37), stream, 0, word_classes, chunk_size=5, window=9)
    assert report["labels"] == ["EVEN", "ODD", "other"] and report["order"] == "assigned"
    assert report["columns"] == ["EVEN", "ODD", "other", "overall"]
    timescales = model.assigned_timescales()[0].tolist()
    by_timescale = sorted(range(10), key=lambda unit: -timescales[unit])  # stable: ties keep unit order
    chunks = [by_timescale[:5], by_timescale[5:]]
    assert [chunk["units"] for chunk in report["chunks"]] == chunks
    assert timescales[chunks[0][0]] > timescales[chunks[1][0]]  # T = 4 before T = 3

    targets = stream[1:].tolist()
    label_of = ["other" if token >= 30 else ("EVEN" if token % 2 == 0 else "ODD") for token in targets]

    def perplexities(units):
        def zero_units(module, args, output):
            outputs, hidden, cell = output
            outputs = outputs.clone()
            outputs[..., units] = 0.0
            return outputs, hidden, cell

        handle = model.model.layers[0].register_forward_hook(zero_units) if units else None
        try:
            with torch.no_grad():
                logits = model(stream[None]).logits[0, :-1]
        finally:
            if handle is not None:
                handle.remove()
        nll = (-torch.log_softmax(logits, -1).gather(-1, stream[1:, None])[:, 0]).tolist()
        result = {"overall": math.exp(sum(nll) / len(nll))}
        for label in ("EVEN", "ODD", "other"):
            picked = [value for value, name in zip(nll, label_of) if name == label]
            assert picked  # every class has targets here
            result[label] = math.exp(sum(picked) / len(picked))
        return result

    intact = perplexities([])
    # The report's log-probabilities are float32 (as token_log_probs'): 1e-6.
    assert report["intact"]["perplexity"] == pytest.approx(intact["overall"], rel=1e-6)
    for row, units in zip(report["ratio_matrix"], chunks):
        ablated = perplexities(units)
        expected = [ablated[column] / intact[column] for column in report["columns"]]
        assert row == pytest.approx(expected, rel=1e-6)
        assert any(abs(value - 1.0) > 1e-4 for value in row), row  # the ablation changes something


def test_routing_heatmap_draws_the_ratios_and_leaves_empty_bins_out():
    """The image is the ratio matrix, chunk rows in report order, without the column of a bin that
    has no tokens (here >=1K: the stream is far too short); the label says which bin is missing."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from mtlstm_hf.analysis import plot_routing_heatmap

    model = tiny_model()
    stream = _stream(60)
    edges = (2, 4, 1000)
    bins = frequency_bin_of_token(token_counts(stream, 37), edges)
    report = routing_report(model, stream, 0, bins, edges=edges, chunks=[[0, 1, 2], [3, 4], [5, 6, 7, 8, 9]], window=20)
    assert report["intact"]["bins"][">=1K"]["n_tokens"] == 0 and report["columns"][0] == ">=1K"
    figure = plot_routing_heatmap(report)
    ax = figure.axes[0]
    image = np.asarray(ax.images[0].get_array(), dtype=float)
    expected = np.array([[row[index] for index in range(1, 5)] for row in report["ratio_matrix"]], dtype=float)
    np.testing.assert_allclose(image, expected)
    assert [label.get_text() for label in ax.get_xticklabels()] == report["columns"][1:]
    assert [label.get_text() for label in ax.get_yticklabels()] == [
        "chunk 1: T 3-3",
        "chunk 2: T 3-3",
        "chunk 3: T 4-4",
    ]
    assert "no tokens, not shown: >=1K" in ax.get_xlabel()
    assert "layer 1" in ax.get_ylabel()
    plt.close(figure)
