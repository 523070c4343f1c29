"""State gradients: how strongly an LSTM's state remembers each direction of embedding space.

Verwimp, Van hamme, Wambacq, "State gradients for analyzing memory in LSTM language models",
Computer Speech & Language 61 (2020).

The state gradient of a recurrent network is the ``H x E`` Jacobian::

    G(t, tau) = d s_t / d x_{t-tau}                         tau = 0 .. D-1

with ``s_t`` the cell state ``c_t`` (default) or hidden state ``h_t`` of one layer and ``x`` the
input embedding. It is computed in eval mode (no dropout) inside segments of ``segment_length``
tokens: each segment starts from the state the previous one ended in, but *detached*, so a
delay that reaches back across a segment start is not counted. The signed matrices are summed
per delay and per class of the *source* word ``w_{t-tau}`` (a frequency bin, a part of speech,
...), with a count per ``(delay, class)``; averages, SVDs and memory measures are computed from
those sums (:class:`~.state_gradient_result.StateGradientResult`). No individual matrix is stored.

How it is computed (and why it is fast). Each layer is a per-step function of its flat state
``[h_l, c_l]`` built from ``naive.cell_step``, the one step of every cell type
(:mod:`.state_gradient_steps`). Per segment the forward runs first (batched); then, per step, each
layer's linearisation ``A = d state_t / d state_{t-1}``, ``B = d state_t / d input_t`` pushes the
tangents ``J(t, j) = d state_t / d x_j`` of the ``D`` most recent source positions ``j`` forward
all at once,

    J(t, j) = A_t J(t-1, j)  (+ B_t J^{below}(t, j) for upper layers),     J(t, t) = B_t,

one batched matmul per layer and step over ``D * E`` tangent columns, instead of one backward
pass per output component and time step. Only live sources (the sampled positions ``j`` within
``D - 1`` steps) have tangents; steps without one are skipped.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from mtlstm_hf.evaluation import DEFAULT_BIN_EDGES, bin_labels, frequency_bin_of_token, token_counts
from mtlstm_hf.evaluation.binned import as_integers
from mtlstm_hf.evaluation.perplexity import token_rows
from mtlstm_hf.models.mtlstm.checks import check_positive_int
from mtlstm_hf.models.mtlstm.layouts import layer_number
from mtlstm_hf.progress import open_progress

from .adapter import base_model, resolve_layers
from .state_gradient_result import StateGradientResult
from .state_gradient_steps import LayerStep, StepFunction, as_step_function, compute_dtype, model_layer_steps

__all__ = [
    "STATE_KINDS",
    "StateGradientAccumulator",
    "accumulate_state_gradients",
    "frequency_classes",
    "matrix_count",
    "source_positions",
    "state_gradients",
]

STATE_KINDS: tuple[str, ...] = ("cell", "hidden")
"""What ``s_t`` may be: the memory cell ``c_t`` or the hidden state ``h_t``."""


# ---------------------------------------------------------------------------
# The accumulator (generic over the stack of step functions)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Readout:
    layer_index: int
    rows: slice


class StateGradientAccumulator:
    """Running sums of ``G(t, tau) = d s_t / d x_{t-tau}`` for a stack of step functions.

    Feed it segments with :meth:`run_segment`; each segment starts without tangents (the carried
    state is treated as a constant: "detached"). Works for any stack of per-step
    functions, e.g. a linear recurrence ``h_t = W h_{t-1} + U x_t`` for which
    ``G(t, tau) = W^tau U`` exactly. Each segment runs forward first, layer by layer (the model's
    layers in one batched call each); the tangents are then pushed through the linearisation of
    every step that has a live source (closed form for the standard LSTM, :func:`torch.func.jacfwd`
    otherwise: :mod:`.state_gradient_steps`).

    Args:
        layer_steps: per layer a :class:`~.state_gradient_steps.StepFunction` (the model's layers:
            :func:`~.state_gradient_steps.model_layer_steps`) or a plain per-step callable
            :data:`~.state_gradient_steps.LayerStep`; layer 0 reads the ``(E,)`` input.
        output_sizes: per layer, how many leading state entries feed the layer above.
        readouts: per result, ``(layer, rows)``: the state entries ``s_t = state_layer[rows]``
            (``layer`` is a 0-based index into ``layer_steps``).
        num_classes: ``C``, the number of source-word classes.
        max_delay: ``D``; delays ``0 .. D-1``.
        input_size: ``E``.
        state_sizes: per layer ``S_l`` (the flat state length).
        dtype, device: of the tangents (sums are float64).
    """

    def __init__(
        self,
        layer_steps: Sequence[LayerStep | StepFunction],
        output_sizes: Sequence[int],
        readouts: Sequence[tuple[int, slice]],
        num_classes: int,
        max_delay: int,
        input_size: int,
        state_sizes: Sequence[int],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if not readouts:
            raise ValueError("give at least one readout (layer, rows).")
        self.readouts = [_Readout(int(layer), rows) for layer, rows in readouts]
        depth = max(readout.layer_index for readout in self.readouts) + 1
        if depth > len(layer_steps):
            raise ValueError(f"a readout asks for layer {depth - 1} of a {len(layer_steps)}-layer stack.")
        # Layers above the highest readout cannot influence it (no feedback): skip them.
        self.output_sizes = list(output_sizes)[:depth]
        self.state_sizes = list(state_sizes)[:depth]
        self.num_classes = num_classes
        self.max_delay = max_delay
        self.input_size = input_size
        self.dtype = dtype
        self.device = device
        self._steps = [as_step_function(step) for step in layer_steps[:depth]]
        self.sums = []
        for readout in self.readouts:
            rows = len(range(self.state_sizes[readout.layer_index])[readout.rows])
            self.sums.append(torch.zeros(max_delay * num_classes, rows, input_size, dtype=torch.float64, device=device))
        self.counts = torch.zeros(max_delay * num_classes, dtype=torch.int64, device=device)

    def run_segment(
        self,
        states: Sequence[torch.Tensor],
        inputs: torch.Tensor,
        source_classes: torch.Tensor,
        sources: torch.Tensor | None = None,
        progress: Any = None,
    ) -> list[torch.Tensor]:
        """Process one segment and return the states after it (for the next segment).

        Only the tangents of *active* sources are propagated: positions ``j`` of ``sources`` within
        ``D - 1`` steps before the current one. A step with no active source advances the state only.

        Args:
            states: per layer ``(B, S_l)``, the carried state (treated as a constant).
            inputs: ``(B, L, E)`` the input embeddings of the segment.
            source_classes: ``(B, L)`` int64 class of each position as a *source* word, in
                ``[0, C)``, or -1 to leave its gradients out of the sums.
            sources: ``(L,)`` bool, the positions used as sources (None: all). A position whose
                class is -1 in every row is never a source.
            progress: an object with ``update(n)``, advanced by the number of ``G(t, tau)`` matrices
                (per row) computed at each step.

        Returns:
            Per computed layer, the state ``(B, S_l)`` after the last step.
        """
        length = inputs.shape[1]
        width = self.input_size
        wanted = (source_classes >= 0).any(0)
        if sources is not None:
            wanted &= sources.to(wanted.device)
        wanted_list = wanted.tolist()
        with torch.no_grad():
            # The forward of the whole segment, layer by layer.
            segments = []
            layer_input = inputs.to(self.dtype)
            for index, step_function in enumerate(self._steps):
                segment = step_function.segment(states[index].to(self.dtype), layer_input)
                segments.append(segment)
                layer_input = segment.states[..., : self.output_sizes[index]]
            # The tangents of the live sources, through the steps that have one.
            active: list[int] = []  # source positions whose tangents are alive, oldest first
            # None until the first source; from then on every layer's, each step (hence the casts below).
            tangents: list[torch.Tensor | None] = [None] * len(segments)
            for step in range(length):
                while active and step - active[0] >= self.max_delay:  # the oldest reached delay D
                    active.pop(0)
                    tangents = [tangent[:, :, width:] for tangent in cast(list[torch.Tensor], tangents)]
                new_source = wanted_list[step]
                if not active and not new_source:
                    continue
                below: torch.Tensor | None = None
                for index, segment in enumerate(segments):
                    linear = segment.linearize(step)
                    previous = tangents[index] if active else None
                    if index == 0:
                        tangent = None if previous is None else linear.tangent(previous, None)
                        if new_source:
                            seed = linear.input_jacobian()
                            tangent = seed.clone() if tangent is None else torch.cat([tangent, seed], dim=-1)
                        assert tangent is not None  # a source is active (previous) or new (seed): see the continue
                    else:
                        assert below is not None  # the tangent of layer index - 1, set just before
                        tangent = linear.tangent(previous, below[:, : self.output_sizes[index - 1]])
                    tangents[index] = below = tangent
                if new_source:
                    active.append(step)
                self._accumulate(cast(list[torch.Tensor], tangents), step, active, source_classes)
                if progress is not None:
                    progress.update(len(active))
        if length == 0:
            return [state.to(self.dtype) for state in states[: len(segments)]]
        return [segment.states[:, -1] for segment in segments]

    def _accumulate(
        self, tangents: list[torch.Tensor], step: int, active: list[int], source_classes: torch.Tensor
    ) -> None:
        """Add ``J(step, j)`` of every active source ``j`` to ``sums[tau = step - j, class(w_j)]``."""
        positions = torch.tensor(active, device=source_classes.device)
        classes = source_classes[:, positions]  # (B, A)
        keep = classes >= 0
        flat_index = ((step - positions)[None, :] * self.num_classes + classes)[keep]
        if flat_index.numel() == 0:
            return
        # index_put_(accumulate=True) rather than index_add_: same result, and index_add_ on CPU
        # stalls badly (tens of ms per call) when its worker threads compete for busy cores.
        self.counts.index_put_((flat_index,), torch.ones_like(flat_index), accumulate=True)
        for readout, sums in zip(self.readouts, self.sums):
            tangent = tangents[readout.layer_index]
            selected = tangent.view(tangent.shape[0], tangent.shape[1], len(active), self.input_size)[:, readout.rows]
            contributions = selected.permute(0, 2, 1, 3)[keep]  # (kept, H, E)
            sums.index_put_((flat_index,), contributions.to(torch.float64), accumulate=True)

    def results(
        self, layers: Sequence[int | None] | None = None, state: str = "custom", class_labels: list[str] | None = None
    ) -> list[StateGradientResult]:
        """One :class:`StateGradientResult` per readout (copies of the running sums)."""
        layers = layers if layers is not None else [None] * len(self.readouts)
        counts = self.counts.view(self.max_delay, self.num_classes).clone()
        return [
            StateGradientResult(
                sums.view(self.max_delay, self.num_classes, *sums.shape[1:]).clone(),
                counts.clone(),
                layer,
                state,
                class_labels,
            )
            for sums, layer in zip(self.sums, layers)
        ]


def _check_schedule(num_steps: int | None, max_delay: int, segment_length: int) -> None:
    """Validate ``max_delay`` and ``segment_length`` (and, unless None, the row length ``num_steps``)."""
    for name, value in (("max_delay", max_delay), ("segment_length", segment_length)):
        check_positive_int(value, name)
    if segment_length < max_delay:
        raise ValueError(
            f"segment_length ({segment_length}) must be >= max_delay ({max_delay}): delays reaching across a "
            "segment start are never counted (the carried state is detached)."
        )
    if num_steps is not None and num_steps < max_delay:
        raise ValueError(
            f"the token stream is too short: {num_steps} tokens per batch row, but max_delay={max_delay} needs at "
            "least that many (use a longer stream, a smaller batch_size or a smaller max_delay)."
        )


def source_positions(row_length: int, positions: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """The source positions (offsets within each batch row) whose state gradients are computed.

    Args:
        row_length: ``n``, tokens per batch row.
        positions: None: every position; an int ``K``: ``K`` evenly spaced positions
            ``floor(k n / K)``, ``k = 0 .. K-1`` (every position when ``K >= n``); or explicit offsets.

    Returns:
        ``(P,)`` int64, sorted and distinct, in ``[0, n)``.

    Raises:
        ValueError: ``K < 1``, or explicit offsets outside ``[0, n)`` or not integers.
    """
    if positions is None:
        return torch.arange(row_length)
    if isinstance(positions, numbers.Integral) and not isinstance(positions, bool):
        count = int(positions)
        if count < 1:
            raise ValueError(
                f"positions must be a positive number of source positions (or None = all), got {positions}."
            )
        if count >= row_length:
            return torch.arange(row_length)
        return torch.arange(count) * row_length // count
    offsets = torch.as_tensor(positions)
    if offsets.dim() != 1 or offsets.is_floating_point() or offsets.dtype == torch.bool or offsets.numel() == 0:
        raise ValueError(f"positions must be an int, None, or a non-empty 1-D sequence of ints, got {positions!r}.")
    if int(offsets.min()) < 0 or int(offsets.max()) >= row_length:
        raise ValueError(
            f"positions must lie in [0, {row_length}) (offsets within a batch row), got values from "
            f"{int(offsets.min())} to {int(offsets.max())}."
        )
    return torch.unique(offsets.long())


def matrix_count(sources: torch.Tensor, row_length: int, max_delay: int, segment_length: int) -> int:
    """How many ``G(t, tau)`` matrices one row gives for the source positions ``sources (P,)``: each
    source ``j`` counts the delays ``tau < max_delay`` with ``j + tau`` inside its segment and the row."""
    ends = torch.clamp((sources // segment_length + 1) * segment_length, max=row_length)
    return int(torch.clamp(ends - sources, max=max_delay).sum())


def accumulate_state_gradients(
    layer_steps: Sequence[LayerStep | StepFunction],
    initial_states: Sequence[torch.Tensor],
    inputs: torch.Tensor,
    source_classes: torch.Tensor | None = None,
    num_classes: int | None = None,
    max_delay: int = 50,
    segment_length: int = 200,
    readouts: Sequence[tuple[int, slice]] | None = None,
    output_sizes: Sequence[int] | None = None,
    positions: int | Sequence[int] | torch.Tensor | None = None,
) -> list[StateGradientResult]:
    """State-gradient sums for an arbitrary stack of step functions on given input vectors.

    The core of :func:`state_gradients`, usable with any recurrence, e.g. the linear test
    oracle ``h_t = W h_{t-1} + U x_t`` (``G(t, tau) = W^tau U``).

    Args:
        layer_steps: per layer a :class:`~.state_gradient_steps.StepFunction` or a plain per-step
            callable ``(state (S,), input (I,)) -> new state (S,)``.
        initial_states: per layer ``(B, S_l)``, the state before the first segment.
        inputs: ``(B, N, E)`` input vectors; each row is an independent stream.
        source_classes: ``(B, N)`` class of each position as source word (-1 = leave out);
            default one class.
        num_classes: ``C`` (default ``max(source_classes) + 1``).
        max_delay: ``D``.
        segment_length: tokens per segment; delays crossing a segment start are not counted.
        readouts: per result ``(layer, rows)``; default the whole state of the last layer.
        output_sizes: per layer the number of leading state entries fed upward (default all).
        positions: source positions (offsets in each row), see :func:`source_positions`; None = all.

    Returns:
        One :class:`StateGradientResult` per readout.
    """
    batch, num_steps, input_size = inputs.shape
    _check_schedule(num_steps, max_delay, segment_length)
    if source_classes is None:
        source_classes = torch.zeros(batch, num_steps, dtype=torch.int64, device=inputs.device)
    if source_classes.shape != (batch, num_steps):
        raise ValueError(f"source_classes must be (B, N) = {(batch, num_steps)}, got {tuple(source_classes.shape)}.")
    source_classes = source_classes.long()
    num_classes = _check_num_classes(source_classes, num_classes)
    is_source = torch.zeros(num_steps, dtype=torch.bool)
    is_source[source_positions(num_steps, positions)] = True
    state_sizes = [state.shape[-1] for state in initial_states]
    readouts = readouts if readouts is not None else [(len(layer_steps) - 1, slice(None))]
    output_sizes = output_sizes if output_sizes is not None else state_sizes
    accumulator = StateGradientAccumulator(
        layer_steps,
        output_sizes,
        readouts,
        num_classes,
        max_delay,
        input_size,
        state_sizes,
        dtype=inputs.dtype,
        device=inputs.device,
    )
    states = list(initial_states)
    for start in range(0, num_steps, segment_length):
        stop = min(start + segment_length, num_steps)
        states = accumulator.run_segment(
            states, inputs[:, start:stop], source_classes[:, start:stop], is_source[start:stop]
        )
    return accumulator.results()


def _check_num_classes(classes: torch.Tensor, num_classes: int | None) -> int:
    """Validate class ids (>= -1) against ``num_classes`` (default ``max + 1``)."""
    if classes.numel() and int(classes.min()) < -1:
        raise ValueError(f"class ids must be >= 0 (or -1 = leave out), got {int(classes.min())}.")
    largest = int(classes.max()) if classes.numel() else -1
    if num_classes is None:
        return max(largest + 1, 1)
    if num_classes < 1 or largest >= num_classes:
        raise ValueError(f"num_classes={num_classes} but class ids go up to {largest}.")
    return num_classes


# ---------------------------------------------------------------------------
# Model-level API
# ---------------------------------------------------------------------------


def frequency_classes(
    counting_streams: torch.Tensor | Sequence[torch.Tensor], vocab_size: int, edges: Sequence[int] = DEFAULT_BIN_EDGES
) -> tuple[torch.Tensor, list[str]]:
    """Frequency-bin class of every vocabulary id (0 = most frequent bin) and the bin labels.

    Uses :mod:`mtlstm_hf.evaluation.frequency` (same bins as the per-bin perplexity): count words in
    ``counting_streams`` (train only recommended), bin by ``edges``. Pass the result as
    ``token_classes=..., class_labels=...`` to :func:`state_gradients`.

    Returns:
        ``(classes (V,) int64, labels)``.
    """
    return frequency_bin_of_token(token_counts(counting_streams, vocab_size), edges), bin_labels(edges)


def _class_table(
    token_classes: torch.Tensor | Sequence[int] | Mapping[int, int] | None, vocab_size: int
) -> torch.Tensor:
    """``(V,)`` int64 class per token id (-1 = leave out); None -> one class for every word."""
    if token_classes is None:
        return torch.zeros(vocab_size, dtype=torch.int64)
    if isinstance(token_classes, Mapping):
        # int(2.7) would be 2 and int(True) 1: the ids and classes must be integers as given.
        items = list(token_classes.items())
        pairs = (
            as_integers(items, "token_classes", "integer token ids and classes").reshape(-1, 2).tolist()
            if items
            else []
        )
        table = torch.full((vocab_size,), -1, dtype=torch.int64)
        for token, token_class in pairs:
            if not 0 <= token < vocab_size:
                raise ValueError(f"token_classes maps token id {token}, outside [0, {vocab_size}).")
            table[token] = token_class
        return table
    table = as_integers(token_classes, "token_classes", f"integer classes, a tensor (V,) = ({vocab_size},)")
    if table.dim() != 1 or table.shape[0] != vocab_size:
        raise ValueError(
            f"token_classes must be an integer tensor (V,) = ({vocab_size},) or a {{token id: class}} map, "
            f"got {table.dtype} of shape {tuple(table.shape)}."
        )
    return table.cpu()


def state_gradients(
    model: torch.nn.Module,
    token_stream: torch.Tensor,
    max_delay: int = 50,
    segment_length: int = 200,
    layer: int | Sequence[int] = -1,
    state: str = "cell",
    token_classes: torch.Tensor | Sequence[int] | Mapping[int, int] | None = None,
    num_classes: int | None = None,
    class_labels: Sequence[str] | None = None,
    batch_size: int = 1,
    dtype: torch.dtype | None = None,
    progress: Any = False,
    positions: int | Sequence[int] | torch.Tensor | None = None,
) -> StateGradientResult | list[StateGradientResult]:
    """Average state gradients ``G(t, tau) = d s_t / d x_{t-tau}`` of an MTLSTM over a token stream.

    Eval semantics whatever ``model.training`` says: raw recurrent weights, no dropout. The
    stream is cut into ``batch_size`` contiguous rows (the last ``N mod B`` tokens are dropped),
    each row into segments of ``segment_length`` tokens; the first segment starts from the zero
    state, each later one from the previous segment's final state, detached. ``G(t, tau)`` is
    summed for every ``t`` and ``tau < max_delay`` with ``t - tau`` in ``t``'s segment, into the
    class of the source word ``w_{t-tau}``, for the source positions ``t - tau`` chosen by
    ``positions`` (all by default).

    Args:
        model: ``MTLSTMForCausalLM`` or ``MTLSTMModel``.
        token_stream: ``(N,)`` token ids in ``[0, V)``.
        max_delay: ``D``, delays ``0 .. D-1`` (paper: 50).
        segment_length: tokens per segment (paper: 200); must be ``>= max_delay``.
        layer: 0-based index into ``model.model.layers`` of the layer whose state is differentiated
            (default ``-1``, the last). A sequence of indices returns one result per layer from a
            single pass (e.g. ``range(num_layers)`` for every layer).
        state: ``"cell"`` (``c_t``, default, as in the paper) or ``"hidden"`` (``h_t``).
        token_classes: class of each vocabulary id as source word: a ``(V,)`` int tensor, a
            ``{token id: class}`` map (ids not in it are left out), or None (one class). -1
            leaves a word out. For frequency bins use :func:`frequency_classes`.
        num_classes: ``C`` (default ``max class + 1``).
        class_labels: names of the classes (kept in the result, used by the plots).
        batch_size: rows processed in parallel.
        dtype: compute dtype of the tangents (default float32; sums are float64).
        progress: True for a progress bar (units: ``G(t, tau)`` matrices per row), or an object
            with ``total`` and ``update(n)`` (see :func:`mtlstm_hf.analysis.report.run_analyses`).
        positions: which source positions ``j = t - tau`` (offsets within each row) to use:
            None = all; an int ``K`` = ``K`` evenly spaced positions ``floor(k n / K)``; or explicit
            offsets (see :func:`source_positions`). Each chosen source contributes every delay
            that stays in its segment; the averages are then over those sources only.

    Every cell type works (the step is ``naive.cell_step``; :mod:`.state_gradient_steps`). Cost: per
    segment one forward of each layer (batched); ``B`` times, per chosen source and delay, one
    ``(2 H_l x H_l) x (H_l x E)`` matmul per layer (standard LSTM, closed-form linearisation;
    ``(S_l x S_l)`` with the ``jacfwd`` Jacobians of other cell types) plus the input matmul of the
    layers above the first, and per step with a live source the linearisation of each layer. Memory: the
    tangents ``B * S_l * D * E`` per layer at most (dtype) and the sums ``D * C * H * E`` float64
    per result. Only layers up to the highest requested one are computed.

    Returns:
        A :class:`StateGradientResult` (``sums (D, C, H, E)``, ``counts (D, C)``), or a list of
        them when ``layer`` is a sequence.

    Raises:
        ValueError: stream shorter than ``max_delay`` per row, ``segment_length < max_delay``,
            no such layer, ids outside the vocabulary, unknown ``state``, a cell-less layer with
            ``state="cell"``, malformed classes.
    """
    base: Any = base_model(model)  # the model's own modules (torch's Module typing says Tensor | Module)
    requested = [layer] if isinstance(layer, int) else list(layer)
    if not requested:
        raise ValueError("layer must be a 0-based layer index or a non-empty sequence of them.")
    layer_indices = [resolve_layers(model, [value])[0] for value in requested]  # duplicates kept: one result each
    if state not in STATE_KINDS:
        raise ValueError(f"state must be one of {STATE_KINDS}, got {state!r}.")

    vocab_size = base.embeddings.num_embeddings
    _check_schedule(None, max_delay, segment_length)
    rows = token_rows(token_stream, batch_size, min_row_length=max_delay, vocab_size=vocab_size, name="token_stream")
    class_table = _class_table(token_classes, vocab_size)
    num_classes = _check_num_classes(class_table, num_classes)
    if class_labels is not None and len(class_labels) != num_classes:
        raise ValueError(f"got {len(class_labels)} class_labels for {num_classes} classes.")

    sources = source_positions(rows.shape[1], positions)
    is_source = torch.zeros(rows.shape[1], dtype=torch.bool)
    is_source[sources] = True
    is_source &= (class_table[rows] >= 0).any(0)  # a position no row counts is never a source
    depth = max(layer_indices) + 1
    steps, output_sizes, has_cell = model_layer_steps(model, depth, dtype)
    readouts = []
    for index in layer_indices:
        if state == "cell" and not has_cell[index]:
            raise ValueError(
                f"layer index {index} (layer {layer_number(index)}) has no memory cell; use state='hidden'."
            )
        size = output_sizes[index]
        readouts.append((index, slice(size, 2 * size) if state == "cell" else slice(0, size)))

    weight = base.embeddings.weight.detach()
    dtype = compute_dtype(model, dtype)
    device = weight.device
    state_sizes = [size * (2 if cell else 1) for size, cell in zip(output_sizes, has_cell)]
    accumulator = StateGradientAccumulator(
        steps,
        output_sizes,
        readouts,
        num_classes,
        max_delay,
        weight.shape[1],
        state_sizes,
        dtype=dtype,
        device=device,
    )
    states = [torch.zeros(batch_size, size, dtype=dtype, device=device) for size in state_sizes]
    total = matrix_count(is_source.nonzero().reshape(-1), rows.shape[1], max_delay, segment_length)
    with open_progress(progress, total=total, desc="state gradients", unit="G") as bar:
        for start in range(0, rows.shape[1], segment_length):
            segment = rows[:, start : start + segment_length]
            # Embed one segment at a time: the whole stream's embeddings need not fit in memory.
            inputs = weight[segment.to(device)].to(dtype)
            states = accumulator.run_segment(
                states, inputs, class_table[segment].to(device), is_source[start : start + segment_length], bar
            )
    labels = list(class_labels) if class_labels is not None else None
    results = accumulator.results(layer_indices, state, labels)
    return results[0] if isinstance(layer, int) else results
