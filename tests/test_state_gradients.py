"""State gradients (Verwimp et al. 2020): oracles for every cell type, counts, normalisation invariance, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_model

from mtlstm_hf.analysis.state_gradient_result import StateGradientResult, embedding_whitening
from mtlstm_hf.analysis.state_gradient_steps import (
    CellStep,
    LSTMLinearization,
    model_layer_steps,
    unroll_layer_steps,
)
from mtlstm_hf.analysis.state_gradients import (
    accumulate_state_gradients,
    frequency_classes,
    source_positions,
    state_gradients,
)
from mtlstm_hf.models.mtlstm.layouts import CELL_TYPES, cell_layout
from mtlstm_hf.models.mtlstm.naive import cell_step, reference_trace

VOCAB = 37  # tiny_model's vocabulary


def _distinct_stream(length: int, seed: int = 0) -> torch.Tensor:
    """``length <= 37`` distinct token ids: with ``token_classes = id`` every class is one position."""
    return torch.randperm(VOCAB, generator=torch.Generator().manual_seed(seed))[:length]


def _expected_counts(token_classes: torch.Tensor, stream: torch.Tensor, delays: int, segment: int, classes: int):
    """Slow count of (t, tau) pairs inside one segment, by the class of the source word."""
    counts = torch.zeros(delays, classes, dtype=torch.int64)
    for t in range(len(stream)):
        for tau in range(delays):
            source = t - tau
            if source >= 0 and source // segment == t // segment and token_classes[stream[source]] >= 0:
                counts[tau, token_classes[stream[source]]] += 1
    return counts


# ---------------------------------------------------------------------------
# Oracles
# ---------------------------------------------------------------------------


def test_linear_recurrence_gives_matrix_powers():
    """h_t = W h_{t-1} + U x_t  =>  G(t, tau) = W^tau U exactly, per position and on average."""
    generator = torch.Generator().manual_seed(3)
    hidden, features, length, delays, segment = 4, 3, 23, 6, 10
    recurrent = torch.randn(hidden, hidden, generator=generator, dtype=torch.float64)
    recurrent = 0.8 * recurrent / torch.linalg.matrix_norm(recurrent, ord=2)
    input_weight = torch.randn(hidden, features, generator=generator, dtype=torch.float64)
    inputs = torch.randn(1, length, features, generator=generator, dtype=torch.float64)

    def linear_step(state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return recurrent @ state + input_weight @ x

    initial = [torch.randn(1, hidden, generator=generator, dtype=torch.float64)]
    powers = [torch.linalg.matrix_power(recurrent, tau) @ input_weight for tau in range(delays)]
    # One class per position: sums[tau, j] is the single matrix G(j + tau, tau).
    (per_position,) = accumulate_state_gradients(
        [linear_step], initial, inputs, torch.arange(length)[None], max_delay=delays, segment_length=segment
    )
    for tau in range(delays):
        for source in range(length):
            same_segment = source + tau < length and (source % segment) + tau < segment
            expected = powers[tau] if same_segment else torch.zeros(hidden, features, dtype=torch.float64)
            torch.testing.assert_close(per_position.sums[tau, source], expected, rtol=0, atol=1e-12)
            assert per_position.counts[tau, source] == int(same_segment)

    (pooled,) = accumulate_state_gradients([linear_step], initial, inputs, max_delay=delays, segment_length=segment)
    torch.testing.assert_close(pooled.mean()[:, 0], torch.stack(powers), rtol=0, atol=1e-12)


def test_linear_recurrence_with_sampled_source_positions():
    """Only the chosen sources contribute, each with every delay inside its segment: W^tau U."""
    generator = torch.Generator().manual_seed(5)
    hidden, features, length, delays, segment = 3, 2, 25, 4, 10
    recurrent = torch.randn(hidden, hidden, generator=generator, dtype=torch.float64)
    recurrent = 0.9 * recurrent / torch.linalg.matrix_norm(recurrent, ord=2)
    input_weight = torch.randn(hidden, features, generator=generator, dtype=torch.float64)
    inputs = torch.randn(1, length, features, generator=generator, dtype=torch.float64)

    def linear_step(state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return recurrent @ state + input_weight @ x

    chosen = [0, 1, 8, 9, 13, 24]  # neighbours (two live tangents), segment ends, the last token
    (result,) = accumulate_state_gradients(
        [linear_step],
        [torch.zeros(1, hidden, dtype=torch.float64)],
        inputs,
        torch.arange(length)[None],
        max_delay=delays,
        segment_length=segment,
        positions=chosen,
    )
    for source in range(length):
        for tau in range(delays):
            counted = source in chosen and source + tau < length and (source % segment) + tau < segment
            expected = (
                torch.linalg.matrix_power(recurrent, tau) @ input_weight
                if counted
                else torch.zeros(hidden, features, dtype=torch.float64)
            )
            torch.testing.assert_close(result.sums[tau, source], expected, rtol=0, atol=1e-12)
            assert result.counts[tau, source] == int(counted)


def test_lstm_closed_form_linearization_matches_jacfwd_of_cell_step():
    """The closed-form LSTM tangents equal the Jacobians torch.func.jacfwd computes from naive.cell_step."""
    generator = torch.Generator().manual_seed(7)
    batch, hidden, inputs_size = 3, 5, 4

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    layout = cell_layout("lstm")
    step = CellStep(layout, rand(4 * hidden, inputs_size), rand(4 * hidden, hidden), rand(4 * hidden))
    state, inputs = rand(batch, 2 * hidden), rand(batch, inputs_size)
    state_jacobian, input_jacobian = torch.func.vmap(torch.func.jacfwd(step, argnums=(0, 1)))(state, inputs)
    assert state_jacobian.shape == (batch, 2 * hidden, 2 * hidden) and input_jacobian.shape == (
        batch,
        2 * hidden,
        inputs_size,
    )
    gates = cell_step(layout, inputs, state[:, :hidden], state[:, hidden:], step.weight_ih, step.weight_hh, step.bias)
    linear = LSTMLinearization(step.weight_ih, step.weight_hh, gates, state[:, hidden:])
    torch.testing.assert_close(step(state, inputs), torch.cat([gates["hidden"], gates["cell"]], -1))
    torch.testing.assert_close(linear.input_jacobian(), input_jacobian, rtol=0, atol=1e-12)
    state_tangents, input_tangents = rand(batch, 2 * hidden, 6), rand(batch, inputs_size, 9)
    torch.testing.assert_close(
        linear.tangent(state_tangents, None), state_jacobian @ state_tangents, rtol=0, atol=1e-12
    )
    # Input tangents with 3 more columns (new sources): the state part only reaches the first 6.
    expected = input_jacobian @ input_tangents
    expected[..., :6] += state_jacobian @ state_tangents
    torch.testing.assert_close(linear.tangent(state_tangents, input_tangents), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        linear.tangent(state_tangents, input_tangents[..., :6]), expected[..., :6], rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        linear.tangent(None, input_tangents), input_jacobian @ input_tangents, rtol=0, atol=1e-12
    )


def _reference_states(model, embeddings, initial):
    """Per layer ``(hidden (T, H), cell (T, H) or None)`` of one row, by the slow per-step loop
    ``ops.naive.reference_trace`` on the model's weights (differentiable in ``embeddings (T, E)``)."""
    layer_input, states = embeddings[None], []
    for layer, (hidden, cell) in zip(model.model.layers, initial):
        trace = reference_trace(
            layer.cell_type,
            layer_input,
            hidden,
            cell,
            layer.weight_ih,
            layer.weight_hh,
            layer.gate_biases.concatenated(layer_input.dtype),
        )
        states.append((trace["hidden"][0], None if trace["cell"] is None else trace["cell"][0]))
        layer_input = trace["hidden"]
    return states


@pytest.mark.parametrize("state", ["cell", "hidden"])
@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_every_cell_type_matches_autograd_through_the_reference_loop(cell_type, state):
    """For every cell type (layer 1 of that type under a standard LSTM, and the reverse), G(t, tau)
    in the second segment (carried, detached state) equals the reverse-mode Jacobian of the slow
    reference loop ops.naive.reference_trace; a cell-less layer refuses state='cell'."""
    delays, segment = 4, 9
    stream = _distinct_stream(2 * segment)
    for cell_types in ([cell_type, "lstm"], ["lstm", cell_type]):
        model = tiny_model(cell_types=cell_types, timescale_schedules=[None, None]).double()
        has_cell = [cell_layout(name).has_cell for name in cell_types]
        layers = [index for index in range(2) if has_cell[index] or state == "hidden"]
        if state == "cell" and not all(has_cell):
            with pytest.raises(ValueError, match="no memory cell"):
                state_gradients(model, stream, max_delay=delays, segment_length=segment, layer=[0, 1], state=state)
        results = state_gradients(
            model,
            stream,
            max_delay=delays,
            segment_length=segment,
            layer=layers,
            state=state,
            token_classes=torch.arange(VOCAB),
        )
        embeddings = model.model.embeddings.weight.detach()[stream]
        zeros = [(torch.zeros(1, 10 if index == 0 else 6, dtype=torch.float64),) * 2 for index in range(2)]
        with torch.no_grad():
            first = _reference_states(model, embeddings[:segment], zeros)
        carried = [
            (hidden[-1:], cell[-1:] if cell is not None else torch.zeros_like(hidden[-1:])) for hidden, cell in first
        ]
        for result, layer in zip(results, layers):
            assert result.layer_index == layer and result.state == state

            def state_at(inputs: torch.Tensor, t: int, layer: int = layer) -> torch.Tensor:
                hidden, cell = _reference_states(model, inputs, carried)[layer]
                return (cell if state == "cell" else hidden)[t]

            for t in (0, 3, segment - 1):
                jacobian = torch.autograd.functional.jacobian(
                    lambda inputs, t=t: state_at(inputs, t), embeddings[segment:]
                )  # (H, segment, E)
                for tau in range(min(delays, t + 1)):
                    torch.testing.assert_close(
                        result.sums[tau, stream[segment + t - tau]], jacobian[:, t - tau], rtol=0, atol=1e-10
                    )
            # Every counted matrix is one of those: no delay across the segment start.
            assert int(result.counts.sum()) == 2 * sum(min(delays, segment - j) for j in range(segment))


def test_source_positions():
    assert source_positions(10, 4).tolist() == [0, 2, 5, 7]  # floor(k * 10 / 4)
    assert source_positions(5, None).tolist() == [0, 1, 2, 3, 4]
    assert source_positions(5, 9).tolist() == [0, 1, 2, 3, 4]  # K >= n: every position
    assert source_positions(7, [6, 2, 2]).tolist() == [2, 6]
    for bad, match in ((0, "positive"), ([7], r"\[0, 7\)"), ([1.5], "int")):
        with pytest.raises(ValueError, match=match):
            source_positions(7, bad)


def test_sampled_positions_are_the_full_sums_restricted_to_those_sources():
    """With one class per position, each class's sum is one source's gradients: the sampled run
    must reproduce the full run's for the chosen sources exactly and leave the others empty."""
    model = tiny_model().double()
    stream = _distinct_stream(37, seed=3)
    classes = torch.arange(VOCAB)
    full = state_gradients(model, stream, max_delay=6, segment_length=15, layer=[0, 1], token_classes=classes)
    sampled = state_gradients(
        model, stream, max_delay=6, segment_length=15, layer=[0, 1], token_classes=classes, positions=5
    )
    chosen = source_positions(37, 5).tolist()
    assert chosen == [0, 7, 14, 22, 29]
    chosen_classes = stream[chosen]
    other = torch.ones(VOCAB, dtype=torch.bool)
    other[chosen_classes] = False
    for whole, part in zip(full, sampled):
        torch.testing.assert_close(part.sums[:, chosen_classes], whole.sums[:, chosen_classes], rtol=0, atol=1e-12)
        torch.testing.assert_close(part.counts[:, chosen_classes], whole.counts[:, chosen_classes])
        assert not part.sums[:, other].any() and not part.counts[:, other].any()
    # Source 14 sits at the end of its segment: only delay 0 is counted for it.
    assert sampled[0].counts[:, stream[14]].tolist() == [1, 0, 0, 0, 0, 0]


def test_progress_counts_every_matrix_once():
    """The progress total (what the run-wide time estimate is built on) is the number of G(t, tau)."""

    class Recorder:
        total = None

        def __init__(self):
            self.updates = []

        def update(self, n=1):
            self.updates.append(n)

    model = tiny_model()
    stream = torch.randint(0, VOCAB, (47,), generator=torch.Generator().manual_seed(2))
    for positions in (None, 9):
        recorder = Recorder()
        result = state_gradients(model, stream, max_delay=7, segment_length=20, positions=positions, progress=recorder)
        assert recorder.total == sum(recorder.updates) == int(result.counts.sum())


def test_step_function_matches_model_forward():
    """The plain-torch stack step reproduces the fused-kernel forward (every layer's h, final c)."""
    model = tiny_model()
    input_ids = torch.randint(0, VOCAB, (2, 15))
    steps, output_sizes, has_cell = model_layer_steps(model)
    assert has_cell == [True, True] and output_sizes == [10, 6]
    initial = [torch.zeros(2, 2 * size) for size in output_sizes]
    embeddings = model.model.embeddings.weight.detach()[input_ids]
    unrolled = unroll_layer_steps(steps, output_sizes, initial, embeddings)
    with torch.no_grad():
        out = model.model(input_ids, output_hidden_states=True, use_cache=True)
    for index, size in enumerate(output_sizes):
        torch.testing.assert_close(unrolled[index][..., :size], out.hidden_states[index + 1], rtol=0, atol=1e-5)
        torch.testing.assert_close(unrolled[index][:, -1, size:], out.cache.cell[index], rtol=0, atol=1e-5)


@pytest.mark.parametrize("state", ["cell", "hidden"])
def test_model_state_gradients_match_autograd_jacobian(state, device):
    """G(t, tau) from forward-mode tangents equals the reverse-mode Jacobian of the model's own
    forward (fused kernel, inputs_embeds), in the second segment (carried, detached state). The
    Jacobian is autograd through the eval-mode model: on CUDA it needs cuDNN's training kernel."""
    model = tiny_model().to(device)
    delays, segment = 5, 12
    stream = _distinct_stream(30)
    results = state_gradients(
        model,
        stream,
        max_delay=delays,
        segment_length=segment,
        layer=[0, 1],
        state=state,
        token_classes=torch.arange(VOCAB),
    )
    embeddings = model.model.embeddings.weight.detach()[stream][None]
    with torch.no_grad():
        carried = model.model(inputs_embeds=embeddings[:, :segment], use_cache=True).cache
    for layer, result in enumerate(results):
        assert result.layer_index == layer and result.state == state
        for t in (segment, segment + 3, 2 * segment - 1):

            def state_at_t(inputs: torch.Tensor, layer: int = layer) -> torch.Tensor:
                new = model.model(inputs_embeds=inputs[None], cache=carried, use_cache=True).cache
                return (new.cell if state == "cell" else new.hidden)[layer][0]

            jacobian = torch.autograd.functional.jacobian(state_at_t, embeddings[0, segment : t + 1])  # (H, L, E)
            for tau in range(min(delays, t - segment + 1)):
                source = t - tau
                torch.testing.assert_close(
                    result.sums[tau, stream[source]].float().cpu(),
                    jacobian[:, source - segment].cpu(),
                    rtol=0,
                    atol=1e-5,
                )


def test_singular_values_and_relative_memory_invariant_to_rotated_whitening():
    """sigma(G D) = sigma(G D Q) and |G D Q (DQ)^-1 d| = |G d| for orthogonal Q."""
    model = tiny_model()
    result = state_gradients(model, torch.randint(0, VOCAB, (60,)), max_delay=4, segment_length=20)
    embeddings = model.get_input_embeddings().weight.detach()
    whitening = embedding_whitening(embeddings)
    centered = embeddings.double() - embeddings.double().mean(0)
    torch.testing.assert_close(whitening @ whitening.T, centered.T @ centered / (VOCAB - 1))
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    direction = embeddings[3] - embeddings[5]
    torch.testing.assert_close(result.singular_values(5, whitening), result.singular_values(5, whitening @ rotation))
    torch.testing.assert_close(
        result.relative_memory(direction, whitening), result.relative_memory(direction, whitening @ rotation)
    )
    relative = result.relative_memory(torch.stack([direction, embeddings[0]]), whitening)
    assert relative.shape == (4, 1, 2) and bool(((relative >= 0) & (relative <= 1 + 1e-9)).all())
    assert result.memory(3, whitening).shape == (4, 1)


def test_relative_memory_hand_example():
    """G = diag(2, 1): sigma = (2, 1); e1 is fully remembered, e2 half; whitening diag(1, 2) equalises them."""
    gradient = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64))
    result = StateGradientResult(gradient[None, None], torch.ones(1, 1, dtype=torch.int64))
    torch.testing.assert_close(result.singular_values(2)[0, 0], torch.tensor([2.0, 1.0], dtype=torch.float64))
    assert result.relative_memory(torch.tensor([1.0, 0.0])).item() == pytest.approx(1.0)
    assert result.relative_memory(torch.tensor([0.0, 3.0])).item() == pytest.approx(0.5)
    whitening = torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert result.relative_memory(torch.tensor([0.0, 1.0]), whitening).item() == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# Counting, classes, batching, layers
# ---------------------------------------------------------------------------


def test_counts_per_delay_and_class_skip_segment_starts():
    model = tiny_model()
    stream = torch.randint(0, VOCAB, (47,), generator=torch.Generator().manual_seed(1))
    classes, labels = frequency_classes(stream, VOCAB, edges=(2, 3))
    result = state_gradients(
        model, stream, max_delay=7, segment_length=20, token_classes=classes, num_classes=3, class_labels=labels
    )
    assert result.class_labels == labels and result.sums.shape == (7, 3, 6, 6)
    torch.testing.assert_close(result.counts, _expected_counts(classes, stream, 7, 20, 3))
    # Unmapped ids of a {token: class} map are left out.
    mapping = {int(token): 0 for token in range(0, VOCAB, 2)}
    partial = state_gradients(model, stream, max_delay=7, segment_length=20, token_classes=mapping)
    table = torch.tensor([0 if token % 2 == 0 else -1 for token in range(VOCAB)])
    torch.testing.assert_close(partial.counts, _expected_counts(table, stream, 7, 20, 1))
    pooled = result.pooled()
    assert pooled.class_labels == ["all"]
    torch.testing.assert_close(pooled.counts[:, 0], result.counts.sum(1))
    # A class nobody belongs to has no average: NaN, also in the SVD summaries.
    with_empty_class = state_gradients(
        model, stream, max_delay=7, segment_length=20, token_classes=classes, num_classes=4
    )
    assert bool(torch.isnan(with_empty_class.mean()[:, 3]).all())
    assert bool(torch.isnan(with_empty_class.singular_values(2)[:, 3]).all())
    torch.testing.assert_close(with_empty_class.sums[:, :3], result.sums)


def test_batch_rows_equal_separate_runs():
    """batch_size=2 processes two contiguous halves in parallel: sums add up."""
    model = tiny_model()
    stream = torch.randint(0, VOCAB, (41,))  # the odd last token is dropped
    together = state_gradients(model, stream, max_delay=4, segment_length=8, batch_size=2, layer=0)
    halves = [
        state_gradients(model, stream[start : start + 20], max_delay=4, segment_length=8, layer=0) for start in (0, 20)
    ]
    torch.testing.assert_close(together.sums, halves[0].sums + halves[1].sums)
    torch.testing.assert_close(together.counts, halves[0].counts + halves[1].counts)


def test_layer_selection_and_summary_hook():
    model = tiny_model()
    stream = torch.randint(0, VOCAB, (30,))
    last = state_gradients(model, stream, max_delay=3, segment_length=10)
    both = state_gradients(model, stream, max_delay=3, segment_length=10, layer=[0, -1], progress=True)
    assert isinstance(both, list) and both[1].layer_index == 1 and both[0].sums.shape == (3, 1, 10, 6)
    torch.testing.assert_close(last.sums, both[1].sums)
    average = last.summarize(lambda g: torch.linalg.svdvals(g).mean(-1))
    assert average.shape == (3, 1)
    torch.testing.assert_close(average, last.singular_values(6).mean(-1))


# ---------------------------------------------------------------------------
# Errors and plots
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"token_stream": torch.arange(4)}, "too short"),
        ({"segment_length": 3}, "segment_length"),
        ({"layer": 2}, "layer"),
        ({"token_stream": torch.tensor([0, 1, 2, 40, 3, 4, 5])}, r"\[0, 37\)"),
        ({"state": "gate"}, "state"),
        ({"token_classes": torch.zeros(5, dtype=torch.long)}, "token_classes"),
        ({"token_classes": {99: 0}}, "outside"),
        ({"class_labels": ["a", "b"]}, "class_labels"),
        ({"batch_size": 0}, "batch_size"),
        ({"token_stream": torch.arange(10.0)}, "integer"),
    ],
)
def test_clear_errors(kwargs, match):
    arguments = {"token_stream": torch.arange(30), "max_delay": 5, "segment_length": 10} | kwargs
    with pytest.raises(ValueError, match=match):
        state_gradients(tiny_model(), **arguments)


def test_result_measure_errors():
    result = StateGradientResult(torch.zeros(2, 1, 3, 2, dtype=torch.float64), torch.ones(2, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="k must"):
        result.singular_values(3)
    with pytest.raises(ValueError, match="direction"):
        result.relative_memory(torch.ones(3))
    with pytest.raises(ValueError, match="whitening"):
        result.normalized(torch.eye(3))
    with pytest.raises(ValueError, match="positive definite"):
        embedding_whitening(torch.ones(5, 2))


def test_state_gradient_figures_draw_the_memory_per_layer_and_class():
    """Each curve is the memory of its layer and class (swapping layers or classes fails); a class
    with no source word (an empty frequency bin) gets no curve and no panel; layers differ in
    colour, line style and marker."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtlstm_hf.analysis.figures import plot_state_gradient_layers, plot_state_gradient_memory

    model = tiny_model()
    stream = torch.randint(0, VOCAB, (40,), generator=torch.Generator().manual_seed(6))
    classes, labels = frequency_classes(stream, VOCAB, edges=(2, 1000))  # ">=1K" can have no word here
    results = state_gradients(
        model, stream, max_delay=6, segment_length=20, layer=[0, 1], token_classes=classes, class_labels=labels
    )
    assert labels[0] == ">=1K" and not results[0].counts[:, 0].any()
    whitening = embedding_whitening(model.get_input_embeddings().weight)
    figure = plot_state_gradient_layers(results, k=3, whitening=whitening)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["all source words", f"source word: {labels[1]}", f"source word: {labels[2]}"]
    assert "no source words in: >=1K" in figure._suptitle.get_text()
    expected = [
        [result.pooled().memory(3, whitening)[:, 0] for result in results],
        [result.memory(3, whitening)[:, 1] for result in results],
        [result.memory(3, whitening)[:, 2] for result in results],
    ]
    for ax, curves in zip(figure.axes, expected):
        assert [line.get_label() for line in ax.lines] == ["layer 1, cell state", "layer 2, cell state"]
        for line, curve in zip(ax.lines, curves):
            np.testing.assert_allclose(line.get_xdata(), np.arange(1, 6))
            np.testing.assert_allclose(line.get_ydata(), curve[1:].numpy())
        first, second = ax.lines
        assert first.get_color() != second.get_color() and first.get_linestyle() != second.get_linestyle()
        assert first.get_marker() != second.get_marker()
    plt.close(figure)

    single = plot_state_gradient_memory(results[1], k=3, whitening=whitening)
    lines = single.axes[0].lines
    assert [line.get_label() for line in lines] == labels[1:]
    memory = results[1].memory(3, whitening)
    for line, index in zip(lines, (1, 2)):
        np.testing.assert_allclose(line.get_ydata(), memory[1:, index].numpy())
    assert "layer 2" in single.axes[0].get_title() and "no source words in: >=1K" in single.axes[0].get_title()
    plt.close(single)
    linear = plot_state_gradient_memory(results[0].pooled(), k=3, measure=0, log_delay=False)
    np.testing.assert_allclose(
        linear.axes[0].lines[0].get_ydata(), results[0].pooled().singular_values(3)[:, 0, 0].numpy()
    )
    plt.close(linear)
    with pytest.raises(ValueError, match="measure"):
        plot_state_gradient_memory(results[0], k=3, measure=5)
