"""What every architecture adapter gives the analyses, and the work they share.

An adapter (:class:`RecurrentAdapter`) wraps one loaded causal language model and answers:

* **which recurrences exist**: :meth:`RecurrentAdapter.layers`, one :class:`RecurrentLayer` per
  layer with a recurrence (its 0-based index into the model's own list of layers, its *units*:
  the scalar recurrences ``s_t = a_t s_{t-1} + ...`` whose per-step retention ``a_t`` the
  timescale estimate averages, and its *channels*: what an ablation zeroes, each holding one or
  more units);
* **how much each unit keeps per step**: :meth:`RecurrentAdapter.window_retentions`, ``a_t`` of
  every unit for a window of token ids, the state carried from the previous window. The adapters
  read ``a_t`` from the model's own parameters and from the inputs of its own modules, captured
  by forward hooks while the model runs its ordinary forward (nothing is re-implemented but the
  one formula of ``a_t`` in each architecture's transformers source);
* **what zeroing channels does**: :meth:`RecurrentAdapter.ablate`, a context manager that zeroes
  channels of one layer where they enter the layer's output projection (forward pre-hooks; the
  layer's own recurrence and the state it carries stay intact, as the MTLSTM ablation leaves the
  recurrence of the ablated layer intact).

The shared work, on top of those three (one path for every architecture):

* :meth:`RecurrentAdapter.estimate_timescales`: ``T = -1 / ln mean_t(a_t)`` per unit over a token
  stream (eval mode, the stream cut into rows by :func:`mtlstm_hf.evaluation.perplexity.token_rows`,
  walked in windows, state carried), with
  :func:`mtlstm_hf.models.mtlstm.timescales.timescale_from_forget_gate`; the result is the
  :class:`~mtlstm_hf.analysis.timescales.TimescaleEstimate` the MTLSTM analyses produce, so the
  fits, reports and figures of :mod:`mtlstm_hf.analysis.timescales` apply unchanged;
* :meth:`RecurrentAdapter.ablation_log_probs`: the log-probability of every target, intact and with
  each chunk of channels zeroed (the routing report's input), all chunks in one pass over the
  stream with the rows repeated once per chunk (each row group with its own mask and state).

A unit whose mean retention is exactly 0 or 1 gets ``T = 0`` / ``inf`` and is left out of the fits
(:mod:`mtlstm_hf.analysis.timescales`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mtlstm_hf.evaluation.perplexity import token_rows, windows
from mtlstm_hf.models.mtlstm.layouts import layer_number
from mtlstm_hf.models.mtlstm.timescales import timescale_from_forget_gate
from mtlstm_hf.progress import open_progress

from ..adapter import eval_mode
from ..timescales import LayerTimescales, TimescaleEstimate
from ..traces import TraceMoments

__all__ = [
    "ChannelAblation",
    "RecurrentAdapter",
    "RecurrentLayer",
    "RetentionSink",
    "channel_columns",
]

RetentionSink = Callable[[int, torch.Tensor], None]
"""``sink(layer_index, retention)``: what a retention hook hands over, ``retention`` ``(B, T, U)``
float64 for the layer at that 0-based index."""

# Largest (row groups x rows x window x vocabulary) logits one forward of the ablation pass holds.
_MAX_LOGIT_FLOATS = 2**25


@dataclass(frozen=True)
class RecurrentLayer:
    """One layer with a recurrence.

    Attributes:
        index: 0-based index into the model's own list of layers (reports number it from 1:
            :func:`mtlstm_hf.models.mtlstm.layouts.layer_number`).
        units: ``U``, scalar recurrences with a retention (what the timescale estimate averages).
        channels: ``C``, the channels an ablation zeroes.
        channel_width: columns of the output projection's input per channel (``1``, or a head's
            width).
        unit_channel: ``(U,)`` int64, the channel of every unit.
        kind: the recurrence in words (e.g. ``"selective SSM state (channel x state)"``).
    """

    index: int
    units: int
    channels: int
    channel_width: int
    unit_channel: torch.Tensor
    kind: str


def channel_columns(channels: torch.Tensor, width: int) -> torch.Tensor:
    """Column indices of ``channels`` when channel ``c`` occupies columns ``[c w, (c + 1) w)``.

    Args:
        channels: ``(K,)`` int64 channel indices. width: ``w`` columns per channel.

    Returns:
        ``(K w,)`` int64.
    """
    if width == 1:
        return channels
    return (channels[:, None] * width + torch.arange(width)[None, :]).reshape(-1)


class ChannelAblation:
    """Zero channels of one layer where they enter its output projection (forward pre-hooks).

    The columns of the projection's input that belong to the channels are set to 0, for every row
    (``channels`` a set) or per row (``keep`` a ``(rows, columns)`` bool mask: False is zeroed, the
    rows of every call must be that many). No weight is touched; nested ablations combine. Use as
    a context manager, or call :meth:`apply` / :meth:`remove`.

    Args:
        module: the output projection (an ``nn.Linear`` whose input is ``(B, T, columns)``).
        columns: ``(K,)`` int64 columns to zero, or None with ``keep``.
        keep: ``(rows, columns)`` bool, or None with ``columns``.
    """

    def __init__(self, module: torch.nn.Module, columns: torch.Tensor | None = None, keep: torch.Tensor | None = None):
        if (columns is None) == (keep is None):
            raise ValueError("give exactly one of columns (a set, every row) and keep (a per-row mask).")
        self.module = module
        self.columns = columns
        self.keep = keep
        self._handle: Any = None

    def _hook(self, module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        inputs, *rest = args
        if self.columns is not None:
            return (inputs.index_fill(-1, self.columns.to(inputs.device), 0.0), *rest)
        keep = self.keep.to(inputs.device)  # type: ignore[union-attr]  # one of the two is set
        if keep.shape[0] != inputs.shape[0]:
            raise ValueError(f"the ablation mask has {keep.shape[0]} rows but the forward has {inputs.shape[0]}.")
        keep = keep.reshape(keep.shape[0], *([1] * (inputs.dim() - 2)), keep.shape[-1])
        return (torch.where(keep, inputs, torch.zeros((), dtype=inputs.dtype, device=inputs.device)), *rest)

    def apply(self) -> ChannelAblation:
        """Register the pre-hook (idempotent)."""
        if self._handle is None:
            self._handle = self.module.register_forward_pre_hook(self._hook)
        return self

    def remove(self) -> None:
        """Remove the pre-hook: the model computes exactly as before."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> ChannelAblation:
        return self.apply()

    def __exit__(self, *exc_info: Any) -> None:
        self.remove()


class RecurrentAdapter:
    """An architecture adapter: the recurrences of one loaded model, their retentions and ablations.

    Subclasses set the class attributes and implement :meth:`layers`, :meth:`_forward`,
    :meth:`_retention_hooks` and :meth:`_output_projection` (see the architecture modules); the
    rest is shared.

    Class attributes:
        architecture: the ``config.model_type`` handled (the registry's key).
        display_name: the architecture in words.
        retention_formula: ``a_t`` of one unit in the notation of the transformers source.
        source: the transformers file the formula follows.
        analyses: the built-in analyses that apply (others are skipped with :meth:`not_applicable`'s reason).

    Args:
        model: the loaded causal LM.

    Raises:
        ValueError: ``model`` is not of this architecture.
    """

    architecture: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    retention_formula: ClassVar[str] = ""
    source: ClassVar[str] = ""
    analyses: ClassVar[tuple[str, ...]] = ("timescales", "ablation", "mutual_information", "context_swap")
    native: ClassVar[bool] = False

    def __init__(self, model: torch.nn.Module) -> None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type != self.architecture:
            raise ValueError(
                f"{type(self).__name__} adapts model_type {self.architecture!r}, got {type(model).__name__} "
                f"(model_type {model_type!r})."
            )
        self.model: Any = model  # its submodules are read by name: torch's Module typing says Tensor | Module

    # ------------------------------------------------------------------ structure

    def layers(self) -> list[RecurrentLayer]:
        """The layers with a recurrence, bottom first."""
        raise NotImplementedError

    @property
    def num_layers(self) -> int:
        """Layers of the model (with or without a recurrence), the range of layer numbers."""
        return int(self.model.config.num_hidden_layers)

    def layer(self, index: int) -> RecurrentLayer:
        """The recurrent layer at 0-based index ``index`` (into the model's own layers).

        Raises:
            ValueError: that layer has no recurrence or does not exist (the message names those that do).
        """
        for entry in self.layers():
            if entry.index == index:
                return entry
        numbers = [layer_number(entry.index) for entry in self.layers()]
        raise ValueError(
            f"layer {layer_number(index)} of this {self.num_layers}-layer {self.display_name} model has no recurrence "
            f"with a retention; layers with one: {numbers}."
        )

    def channel_count(self, index: int) -> int:
        """Channels of the layer at 0-based index ``index`` (what an ablation chooses from).

        Raises:
            ValueError: that layer has no recurrence.
        """
        return self.layer(index).channels

    @property
    def vocab_size(self) -> int:
        """Rows of the input embedding matrix (token ids lie in ``[0, vocab_size)``)."""
        return int(self.model.get_input_embeddings().num_embeddings)

    @property
    def hidden_size(self) -> int:
        """Width of the residual stream (the input of the output layer)."""
        return int(self.model.config.hidden_size)

    def cell_type(self, layer: RecurrentLayer) -> str:
        """The label of a layer's units in reports and figure titles."""
        return f"{self.architecture}: {layer.kind}"

    def assigned_timescales(self, index: int) -> torch.Tensor | None:
        """Timescales assigned to the units of a layer by a schedule: None (only an MTLSTM has them)."""
        return None

    def default_ablation_layer(self) -> int:
        """0-based index of the layer ablated by default: the middle recurrent layer."""
        layers = self.layers()
        return layers[len(layers) // 2].index

    def not_applicable(self, analysis: str) -> str | None:
        """Why a built-in analysis does not apply to this architecture, or None when it does."""
        from ..registry import BUILTIN_ANALYSES

        if analysis in self.analyses or analysis not in BUILTIN_ANALYSES:
            return None
        needs = _NEEDS.get(analysis, "an MTLSTM")
        return (
            f"{analysis} needs {needs}; {self.display_name} ({self.architecture}) has none. "
            f"Analyses of this architecture: {', '.join(self.analyses)}."
        )

    def summary(self) -> dict[str, Any]:
        """The ``model`` entry of ``report.json``."""
        layers = self.layers()
        return {
            "architecture": self.architecture,
            "model_class": type(self.model).__name__,
            "num_layers": self.num_layers,
            "recurrent_layers": [layer_number(layer.index) for layer in layers],
            "units": [layer.units for layer in layers],
            "channels": [layer.channels for layer in layers],
            "kinds": [layer.kind for layer in layers],
            "retention": self.retention_formula,
            "source": self.source,
            "vocab_size": self.vocab_size,
        }

    def forward_multiply_adds(self) -> float:
        """Multiply-adds of one token's forward, output layer included (a cost estimate: every
        parameter once, the input embedding excluded unless the output layer shares it)."""
        embedding = self.model.get_input_embeddings().weight
        head = self.model.get_output_embeddings()
        total = sum(parameter.numel() for parameter in self.model.parameters()) - embedding.numel()
        if head is not None and head.weight is embedding:
            total += embedding.numel()
        return float(total)

    # ------------------------------------------------------------------ per architecture

    def _forward(self, input_ids: torch.Tensor, state: Any, logits: bool) -> tuple[torch.Tensor | None, Any]:
        """One forward of ``input_ids (B, T)`` from ``state`` (None: the zero state).

        Returns:
            ``(logits (B, T, V) or None, state after the window)``; ``logits=False`` may skip the
            output layer.

        The default is transformers' state-space layout (Mamba2, xLSTM): the causal LM with
        ``cache=``, or its ``backbone`` alone without the output layer.
        """
        if logits:
            output = self.model(input_ids, cache=state, use_cache=True)
            return output.logits, output.cache
        output = self.model.backbone(input_ids, cache=state, use_cache=True)
        return None, output.cache

    def _retention_hooks(self, indices: Sequence[int], sink: RetentionSink) -> list[Any]:
        """Register hooks that hand ``(B, T, U)`` float64 retentions of the layers ``indices`` to
        ``sink`` during a forward; return their handles."""
        raise NotImplementedError

    def _output_projection(self, index: int) -> torch.nn.Module:
        """The module whose input holds the channels of layer ``index`` (``(B, T, C w)``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared

    def _layer_indices(self, layers: int | Sequence[int] | None) -> list[int]:
        if layers is None:
            return [layer.index for layer in self.layers()]
        requested = [layers] if isinstance(layers, int) else list(layers)
        if not requested:
            raise ValueError("give at least one layer.")
        return list(dict.fromkeys(self.layer(int(index)).index for index in requested))

    def window_retentions(
        self, input_ids: torch.Tensor, state: Any = None, layers: int | Sequence[int] | None = None
    ) -> tuple[list[torch.Tensor], Any]:
        """Per-step retention of every unit of ``layers`` for one window, state carried.

        Args:
            input_ids: ``(B, T)`` token ids.
            state: what the previous call returned (None: the zero state).
            layers: 0-based layer indices (default: every recurrent layer).

        Returns:
            ``([(B, T, U) float64 per layer], state after the window)``.

        Raises:
            ValueError: a layer without a recurrence; ids not ``(B, T)``.
        """
        input_ids = torch.as_tensor(input_ids)
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, sequence), got {tuple(input_ids.shape)}.")
        indices = self._layer_indices(layers)
        captured: dict[int, list[torch.Tensor]] = {index: [] for index in indices}
        handles = self._retention_hooks(indices, lambda index, value: captured[index].append(value))
        try:
            with eval_mode(self.model):
                _, state = self._forward(input_ids.to(self._device()), state, logits=False)
        finally:
            for handle in handles:
                handle.remove()
        return [torch.cat(captured[index], dim=1) for index in indices], state

    def _device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def retention_moments(
        self,
        stream: torch.Tensor,
        batch_size: int = 1,
        window: int = 70,
        layers: int | Sequence[int] | None = None,
        max_tokens: int | None = None,
        progress: Any = False,
    ) -> TraceMoments:
        """Per-unit sums and sums of squares of the retention over a stream (key ``"retention"``).

        The stream is cut into ``batch_size`` rows (:func:`mtlstm_hf.evaluation.perplexity.token_rows`)
        walked in windows of ``window`` tokens, the state carried (``window`` bounds memory only).

        Returns:
            :class:`mtlstm_hf.analysis.traces.TraceMoments` (float64 sums, ``num_tokens = B n``).

        Raises:
            ValueError: a layer without a recurrence; a stream too short for ``batch_size``.
        """
        rows = token_rows(stream, batch_size, max_tokens, 1, self.vocab_size)
        indices = self._layer_indices(layers)
        by_index = {layer.index: layer for layer in self.layers()}
        moments = TraceMoments(
            indices,
            [{} for _ in indices],
            [{} for _ in indices],
            cell_types=[self.cell_type(by_index[index]) for index in indices],
        )
        position_of = {index: position for position, index in enumerate(indices)}

        def accumulate(index: int, value: torch.Tensor) -> None:
            flat = value.detach().double().reshape(-1, value.shape[-1])
            sums, squares = moments.sums[position_of[index]], moments.squares[position_of[index]]
            sums["retention"] = sums.get("retention", 0.0) + flat.sum(0).cpu()
            squares["retention"] = squares.get("retention", 0.0) + flat.pow(2).sum(0).cpu()

        spans = windows(rows.shape[1], window, targets=False)
        state = None
        handles = self._retention_hooks(indices, accumulate)
        try:
            with (
                eval_mode(self.model),
                open_progress(progress, total=len(spans), desc="retention", unit="window") as bar,
            ):
                device = self._device()
                for start, stop in spans:
                    _, state = self._forward(rows[:, start:stop].to(device), state, logits=False)
                    moments.num_tokens += rows.shape[0] * (stop - start)
                    bar.update(1)
        finally:
            for handle in handles:
                handle.remove()
        return moments

    def estimate_timescales(
        self,
        stream: torch.Tensor,
        batch_size: int = 1,
        window: int = 70,
        layers: int | Sequence[int] | None = None,
        max_tokens: int | None = None,
        progress: Any = False,
    ) -> TimescaleEstimate:
        """Timescales ``T = -1 / ln mean(a)`` of every unit, the mean over every token of the stream.

        Arguments as :meth:`retention_moments`. ``LayerTimescales.mean_forget_gate`` holds the mean
        retention (the forget gate of an LSTM), ``forget_gate_std`` its standard deviation over the
        tokens, ``cell_type`` the layer's kind (:meth:`cell_type`); no unit has assigned timescales.

        Raises:
            ValueError: see :meth:`retention_moments`.
        """
        moments = self.retention_moments(stream, batch_size, window, layers, max_tokens, progress)
        means, stds = moments.mean("retention"), moments.std("retention")
        entries = []
        for position, index in enumerate(moments.layers):
            mean = means[position]
            assert mean is not None  # every layer hands its retention over
            mean = mean.clamp(0.0, 1.0)  # a float sum can leave [0, 1] by a rounding step
            entries.append(
                LayerTimescales(
                    layer_index=index,
                    cell_type=moments.cell_types[position],
                    mean_forget_gate=mean,
                    forget_gate_std=stds[position],  # type: ignore[arg-type]  # present with the mean
                    timescales=timescale_from_forget_gate(mean),
                    assigned=self.assigned_timescales(index),
                    num_tokens=moments.num_tokens,
                    schedule=None,
                )
            )
        return TimescaleEstimate(entries, moments.num_tokens, int(batch_size), int(window))

    def channel_timescales(self, entry: LayerTimescales) -> torch.Tensor:
        """``(C,)`` timescale of every channel of a layer: the longest of its units' (its slowest
        state; the unit's own where a channel is one unit)."""
        layer = self.layer(entry.layer_index)
        values = entry.timescales.double()
        if layer.units == layer.channels:
            return values.clone()
        result = torch.zeros(layer.channels, dtype=torch.float64)
        return result.scatter_reduce(0, layer.unit_channel, values, reduce="amax", include_self=False)

    def ablate(self, layer: int, channels: Any) -> ChannelAblation:
        """``with adapter.ablate(layer, channels): ...`` zeroes the channels of the layer at
        0-based index ``layer`` where they enter its output projection (:meth:`_output_projection`).

        Args:
            channels: int indices or a ``(C,)`` bool mask.

        Raises:
            ValueError: a layer without a recurrence, indices outside ``[0, C)``.
        """
        entry = self.layer(layer)
        indices = _channel_indices(channels, entry.channels, entry.index)
        return ChannelAblation(
            self._output_projection(entry.index), columns=channel_columns(indices, entry.channel_width)
        )

    def ablation_log_probs(
        self,
        stream: torch.Tensor,
        layer: int,
        chunks: Sequence[Any],
        *,
        batch_size: int = 1,
        window: int = 70,
        progress: Any = False,
    ) -> torch.Tensor:
        """Log-probability of every target intact and with each chunk of channels zeroed.

        The result equals one evaluation per chunk under :meth:`ablate` (and one intact), the rows
        of :func:`mtlstm_hf.evaluation.perplexity.token_rows` walked in windows with the state
        carried as :func:`mtlstm_hf.evaluation.token_log_probs` walks them; here the ``B`` rows are
        repeated once per chunk (plus once intact), each row group with its chunk zeroed and its
        own state, so that one pass over the stream scores every chunk (row groups in blocks whose
        logits stay within 2^25 floats).

        Args:
            stream: ``(N,)`` token ids. layer: 0-based index of the ablated layer.
            chunks: ``K`` channel sets (int sequences or ``(C,)`` bool masks).
            batch_size, window: as :func:`mtlstm_hf.evaluation.token_log_probs`.
            progress: True for a progress bar over windows, or an object with ``update(n)``.

        Returns:
            ``(K + 1, M)`` float32, row 0 intact, row ``k`` with chunk ``k - 1`` zeroed; columns
            aligned with ``stream[target_positions(N, B)]``.

        Raises:
            ValueError: a layer without a recurrence, bad channel indices, no chunk, a stream too short.
        """
        entry = self.layer(layer)
        masks = [_channel_indices(chunk, entry.channels, entry.index) for chunk in chunks]
        if not masks:
            raise ValueError("give at least one chunk of channels.")
        rows = token_rows(stream, batch_size, min_row_length=2, vocab_size=self.vocab_size)
        spans = windows(rows.shape[1], window)
        groups = len(masks) + 1
        columns = entry.channels * entry.channel_width
        keep = torch.ones(groups, columns, dtype=torch.bool)
        for group, indices in enumerate(masks, start=1):
            keep[group, channel_columns(indices, entry.channel_width)] = False
        per_group = max(1, _MAX_LOGIT_FLOATS // (batch_size * max(1, min(window, rows.shape[1])) * self.vocab_size))
        blocks = [list(range(start, min(start + per_group, groups))) for start in range(0, groups, per_group)]
        device = self._device()
        results = []
        with (
            eval_mode(self.model),
            open_progress(progress, total=len(spans) * len(blocks), desc="ablation", unit="window") as bar,
        ):
            for block in blocks:
                block_keep = keep[block].repeat_interleave(batch_size, 0)  # group-major rows
                block_rows = rows.repeat(len(block), 1).to(device)
                pieces = []
                state = None
                with ChannelAblation(self._output_projection(entry.index), keep=block_keep):
                    for start, stop in spans:
                        logits, state = self._forward(block_rows[:, start:stop], state, logits=True)
                        assert logits is not None
                        logp = torch.log_softmax(logits.float(), dim=-1)
                        targets = block_rows[:, start + 1 : stop + 1]
                        pieces.append(logp.gather(-1, targets[..., None])[..., 0].cpu())
                        bar.update(1)
                results.append(torch.cat(pieces, dim=1).reshape(len(block), -1))
        return torch.cat(results, dim=0)


_NEEDS = {
    "state_gradients": "each layer's step as a function of its state (mtlstm_hf.models.mtlstm.naive.cell_step)",
    "weighted_sum": "an LSTM memory cell c_t = sum_j w_j^t (gates.weighted_sum_log_weights)",
    "memory_span": "an LSTM memory cell c_t = sum_j w_j^t (gates.weighted_sum_log_weights)",
}


def _channel_indices(channels: Any, count: int, index: int) -> torch.Tensor:
    """Validated ``(K,)`` int64 sorted channel indices of a layer with ``count`` channels."""
    from ..ablation import checked_indices

    return checked_indices(channels, count, f"layer {layer_number(index)}", "channel", "the layer's channels")
