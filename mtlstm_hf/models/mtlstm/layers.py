"""Torch modules of the multi-timescale LSTM: one recurrent layer and AWD-LSTM dropouts.

These are plain ``nn.Module``s with no Hugging Face dependency; the HF wrapper in
:mod:`modeling_mtlstm` stacks them. This file travels to the Hub with the model, so it
imports only torch and its own folder.

Regularisation follows AWD-LSTM (Merity et al. 2018), with the reference code's defect
fixed: DropConnect on the recurrent weights is applied functionally to the raw weight at
every forward, so gradients reach the raw weight (the reference wrapper re-creates the
dropped matrix as a fresh ``Parameter`` and the raw recurrent weights never train).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .kernel_variants import sequence_function
from .layouts import cell_layout
from .timescales import forget_bias_from_timescale, is_drawn, realize_timescales
from .validation import DROP_CONNECT_LEVELS, drop_connect_levels  # the realisable DropConnect probabilities


def recurrence_precision(device_type: str) -> contextlib.AbstractContextManager:
    """The precision policy of the recurrences: autocast off, so that they run in the dtype of the
    layer's weights (float32 unless the whole model was converted), whatever autocast is on.

    Why: a unit with timescale ``T`` forgets ``1/T`` of its cell per step; the long-timescale units
    of the paper's layer 2 (``T`` up to 3.6e5) need that step resolved, which half precision
    cannot do (``sigmoid(b_f)`` rounds to 1 for tens of units, and a cell kept in float16 stops
    decaying for ``T >~ 4,000``). CUDA autocast would also run the cuDNN LSTM in float16 even under
    bfloat16 autocast (its wrapper hard-codes half), and it returns half outputs, which gave the
    next layer weights of mixed dtypes ("Weight scalar types do not match."). The recurrence of a
    small-batch LSTM is latency-bound, so half precision buys little there; the output layer and
    the loss, where it pays, stay under autocast. Returns a null context when autocast is off
    (or unknown for the device type).
    """
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def locked_dropout(inputs: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
    """Variational ("locked") dropout: one mask per sequence, shared over all time steps.

    Args:
        inputs: ``(B, T, D)``.
        probability: drop probability in ``[0, 1)``.
        training: apply only when True (identity in eval).

    Returns:
        ``(B, T, D)``, kept units scaled by ``1 / (1 - p)`` (Gal & Ghahramani 2016).
    """
    if not training or probability == 0.0:
        return inputs
    keep = 1.0 - probability
    mask = inputs.new_empty(inputs.shape[0], 1, inputs.shape[2]).bernoulli_(keep) / keep
    return inputs * mask


def embedding_dropout(
    input_ids: torch.Tensor, embeddings: torch.Tensor, vocab_size: int, probability: float, training: bool
) -> torch.Tensor:
    """Word-level dropout on looked-up embeddings: whole rows (words) of the embedding matrix are
    dropped, so every occurrence of a dropped word in the batch embeds to zero (Gal & Ghahramani
    2016, AWD-LSTM's ``dropoute``).

    One Bernoulli draw per vocabulary row, kept rows scaled by ``1 / (1 - p)``. The row mask
    is applied to the looked-up ``(B, T, E)`` embeddings rather than to the ``(V, E)``
    matrix: the same values and gradients, without a masked copy of the whole matrix (and
    of its gradient) every training step, and whatever module did the lookup (e.g. an
    embedding wrapped by PEFT) is used as it is.

    Args:
        input_ids: ``(B, T)`` token ids in ``[0, V)``.
        embeddings: ``(B, T, E)``, the embeddings of ``input_ids``.
        vocab_size: ``V``.

    Returns:
        ``(B, T, E)`` embeddings.
    """
    if not training or probability == 0.0:
        return embeddings
    keep = 1.0 - probability
    row_mask = embeddings.new_empty(vocab_size, 1).bernoulli_(keep) / keep
    return embeddings * F.embedding(input_ids, row_mask)


def drop_connect(weight: torch.Tensor, probability: float, training: bool, levels: int | None = None) -> torch.Tensor:
    """DropConnect (Wan et al. 2013): zero each weight with ``probability``, scale the rest.

    Returns ``weight * mask / (1 - p')``, a differentiable function of ``weight`` (the
    gradient reaches the raw weight through the mask), identity in eval. ``p'`` is
    ``probability`` rounded to a multiple of ``2**-16`` (``validation.drop_connect_levels``;
    ``levels``, when given, is its precomputed value), and
    the scale uses that realised keep probability, so the dropped matrix is unbiased.

    Each weight's decision reads one 16-bit field of a full-range 64-bit draw: one
    generator call per four weights. On CPU, where torch's generator is sequential, this
    halves the cost of the mask compared with ``rand_like(weight) >= p`` (see
    BENCHMARKS.md); the mask is drawn every forward for the ~5M-entry recurrent matrices.
    """
    if not training or probability == 0.0:
        return weight
    # A layer passes the levels it computed once from the validated config (no check per call).
    dropped_levels = drop_connect_levels(probability) if levels is None else levels
    count = weight.numel()
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=weight.device)
    words.random_(torch.iinfo(torch.int64).min, None)  # all 64 bits uniform
    fields = words.view(torch.int16)[:count].view(weight.shape)  # uniform in [-2**15, 2**15)
    # The comparison writes 1 (keep) / 0 (drop) straight into a mask of the weight's dtype:
    # no bool intermediate, one pass fewer over the matrix.
    mask = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device)
    torch.ge(fields, dropped_levels - DROP_CONNECT_LEVELS // 2, out=mask)
    scale = DROP_CONNECT_LEVELS / (DROP_CONNECT_LEVELS - dropped_levels)
    return weight * mask.mul_(scale)


def ar_penalty(
    dropped_output: torch.Tensor,
    alpha: float,
    valid: torch.Tensor | None = None,
    denominator: torch.Tensor | None = None,
) -> torch.Tensor:
    """Activation regularisation (AR, Merity et al. 2017): ``alpha * mean(h^2)`` of the dropped-out
    last-layer output ``(B, T, H)``; ``alpha`` is ``config.activation_regularization``.

    * Without ``denominator``: the mean over every step, or with ``valid (B, T)`` (the attention
      mask) over the kept steps only (padded steps are not part of the sequence), as AWD-LSTM.
    * With ``denominator`` (the number of targets of a whole accumulated batch, transformers'
      ``num_items_in_batch``): per target, like the cross-entropy: the sum over the steps in
      ``valid`` (then the steps that predict a target) of each step's mean over units, divided by
      ``denominator``. Micro-batches' terms add up to the whole batch's, whatever the split.

    Returns a 0-d tensor."""
    if denominator is not None:
        per_step = dropped_output.pow(2).mean(-1)
        if valid is not None:
            per_step = per_step * valid.to(per_step.dtype)
        return alpha * per_step.sum() / denominator
    if valid is None:
        return alpha * dropped_output.pow(2).mean()
    weights = valid.to(dropped_output.dtype)[:, :, None]
    count = weights.sum() * dropped_output.shape[-1]
    return alpha * (dropped_output.pow(2) * weights).sum() / count.clamp(min=1)


def tar_penalty(
    raw_output: torch.Tensor,
    beta: float,
    valid: torch.Tensor | None = None,
    counted: torch.Tensor | None = None,
    denominator: torch.Tensor | None = None,
) -> torch.Tensor:
    """Temporal activation regularisation (TAR, Merity et al. 2017): ``beta * mean((h_t -
    h_{t-1})^2)`` of the raw last-layer output ``(B, T, H)``; ``beta`` is
    ``config.temporal_activation_regularization``.

    * Without ``denominator``: the mean over every pair of consecutive steps, or with ``valid
      (B, T)`` (the attention mask) over the pairs of kept steps only, as AWD-LSTM.
    * With ``denominator`` (see :func:`ar_penalty`): the pairs whose later step is in ``counted``
      (the steps that predict a target) and earlier step in ``valid``, the sum of each pair's mean
      over units divided by ``denominator``; micro-batches add up to the whole batch.

    Returns a 0-d tensor (0 for a single step)."""
    if raw_output.shape[1] < 2:
        return raw_output.new_zeros(())
    squares = (raw_output[:, 1:] - raw_output[:, :-1]).pow(2)
    if denominator is not None:
        per_pair = squares.mean(-1)
        if counted is not None:
            per_pair = per_pair * counted[:, 1:].to(per_pair.dtype)
        if valid is not None:
            per_pair = per_pair * valid[:, :-1].to(per_pair.dtype)
        return beta * per_pair.sum() / denominator
    if valid is None:
        return beta * squares.mean()
    pairs = (valid[:, 1:] & valid[:, :-1]).to(raw_output.dtype)[:, :, None]
    count = pairs.sum() * raw_output.shape[-1]
    return beta * (squares * pairs).sum() / count.clamp(min=1)


def timescale_gate_biases(forget_timescales: torch.Tensor) -> dict[str, torch.Tensor]:
    """The forget- and input-gate biases that impose per-unit timescales ``T (H,)`` (tokens):
    ``b_f = forget_bias_from_timescale(T)`` and ``b_i = -b_f`` (Mahto et al. 2021, Sec. 3; chrono
    convention), each ``(H,)`` float32, keyed by gate name."""
    forget_bias = forget_bias_from_timescale(forget_timescales).to(torch.float32)
    return {"forget_gate": forget_bias, "input_gate": -forget_bias}


OWN_RATE_MARK = "in_timescale_rate_group"
"""Attribute set on a bias parameter placed in the own-rate group of ``timescale_learning_rate``
(by ``mtlstm_hf.training.optimizer_groups.parameter_groups``); :func:`warn_if_own_rate_unset`
reads it."""


def warn_if_own_rate_unset(model: nn.Module, rate: float) -> None:
    """Warn once per model when ``config.timescale_learning_rate`` is set but a trainable forget- or
    input-gate bias of a layer with a schedule is in no own-rate group: an optimiser built from
    ``model.parameters()`` (or the ``Trainer``'s default) trains it at the optimiser's rate instead."""
    if getattr(model, "_own_rate_checked", False):
        return
    object.__setattr__(model, "_own_rate_checked", True)  # a plain flag, not a module attribute
    unset = [
        f"{module_name}.{name}"
        for module_name, module in model.named_modules()
        if isinstance(module, GateBiases) and module.timescale_schedule["type"] != "none"
        for name, parameter in module.named_parameters(recurse=False)
        if parameter.requires_grad
        and name.removesuffix(RECURRENT_SIDE) in ("forget_gate", "input_gate")
        and not getattr(parameter, OWN_RATE_MARK, False)
    ]
    if unset:
        warnings.warn(
            f"timescale_learning_rate={rate!r} is set, but {len(unset)} timescale "
            f"bias(es) (e.g. {unset[0]}) are in no own-rate optimiser group: they train at the optimiser's rate. "
            "Build the optimiser from mtlstm_hf.training.parameter_groups(model, weight_decay), or give the Trainer "
            "optimizer_cls_and_kwargs=mtlstm_hf.training.trainer_optimizer_cls_and_kwargs(model, args) "
            "(mtlstm-train does).",
            UserWarning,
            stacklevel=3,
        )


RECURRENT_SIDE = "_hh"
"""Suffix of a trained gate's second bias vector: ``<gate>`` is the input side (PyTorch's
``bias_ih`` block), ``<gate>_hh`` the recurrent side (``bias_hh``)."""


class GateBiases(nn.Module):
    """The per-gate bias vectors of one LSTM layer, each ``(H,)``.

    A gate that trains has two vectors, as PyTorch's ``nn.LSTM`` has ``bias_ih`` and ``bias_hh``:
    ``<gate>`` (the input side) and ``<gate>_hh`` (the recurrent side), both parameters. Their
    sum is the gate's bias; each receives the same gradient, so an optimiser step moves the sum
    twice as far as it would move one vector, and gradient clipping and weight decay count both,
    exactly as for ``nn.LSTM`` (and AWD-LSTM, the reference code, fastai). A gate whose bias is
    frozen (e.g. the forget and input gates of a layer with imposed timescales) has one buffer
    ``<gate>``, so it is not in ``model.parameters()``, no optimiser sees it and weight decay
    cannot move it (its recurrent side is zero).

    A model folder of the earlier format has one vector ``<gate>`` per trained gate: it loads as
    the input side with a zero recurrent side, the same function (:meth:`_add_missing_recurrent_sides`
    for ``load_state_dict``; ``from_pretrained`` through the model's ``_init_weights``).
    The model keeps this module in float32 (``_keep_in_fp32_modules_strict``) so a bf16
    load does not round the timescales away.
    """

    def __init__(
        self,
        hidden_size: int,
        gate_names: tuple[str, ...],
        frozen_gates: tuple[str, ...],
        layer_index: int = 0,
        forget_timescales: torch.Tensor | None = None,
        timescale_schedule: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.gate_names = gate_names
        self.frozen_gates = frozen_gates
        self.layer_index = layer_index  # the layer's position, for messages and assigned_timescales()
        # What the model computed for this layer (the schedule and, unless it draws them, its
        # timescales): kept, not looked up again in the configuration. Plain floats, not a tensor:
        # model.to(dtype) must not round them (they are the exact values the biases come from).
        self.timescale_schedule = timescale_schedule if timescale_schedule is not None else {"type": "none"}
        self._assigned = None if forget_timescales is None else tuple(forget_timescales.double().tolist())
        for gate in gate_names:
            if gate in frozen_gates:
                self.register_buffer(gate, torch.zeros(hidden_size, dtype=torch.float32), persistent=True)
            else:
                self.register_parameter(gate, nn.Parameter(torch.zeros(hidden_size, dtype=torch.float32)))
                self.register_parameter(
                    gate + RECURRENT_SIDE, nn.Parameter(torch.zeros(hidden_size, dtype=torch.float32))
                )
        if forget_timescales is not None and not any(getattr(self, gate).is_meta for gate in frozen_gates):
            # Frozen timescale biases are a function of the configuration, not an initialisation:
            # set in construction, so that a model built with transformers' initialisation skipped
            # (no_init_weights, as in from_pretrained) has them too. The model's _init_weights sets
            # them again (a model built on the meta device gets them there).
            with torch.device("cpu"):
                values = timescale_gate_biases(forget_timescales)
            for gate, value in values.items():
                if gate in frozen_gates:
                    with torch.no_grad():
                        getattr(self, gate).copy_(value)
        self._register_load_state_dict_pre_hook(self._add_missing_recurrent_sides)

    @property
    def assigned_timescales(self) -> torch.Tensor | None:
        """The timescales ``(H,)`` the model assigned this layer (float64, CPU), or ``None``."""
        return None if self._assigned is None else torch.tensor(self._assigned, dtype=torch.float64, device="cpu")

    def timescales_to_set(self) -> torch.Tensor | None:
        """The timescales ``(H,)`` the weight initialisation gives this layer's forget/input biases:
        the ones the model assigned, or a fresh draw for a schedule that draws them (chrono, with
        the global generator, in the order of the initialisation); ``None`` without a schedule."""
        if self._assigned is not None or not is_drawn(self.timescale_schedule):
            return self.assigned_timescales
        return realize_timescales(self.timescale_schedule, len(getattr(self, self.gate_names[0])))

    @property
    def trained_gates(self) -> tuple[str, ...]:
        return tuple(gate for gate in self.gate_names if gate not in self.frozen_gates)

    def input_side(self, dtype: torch.dtype) -> torch.Tensor:
        """``<gate>`` of every gate, stacked in gate order, ``(len(gate_names) * H,)``: the fused
        kernel's first bias (frozen gates: their whole bias)."""
        return torch.cat([getattr(self, gate) for gate in self.gate_names]).to(dtype)

    def recurrent_side(self, dtype: torch.dtype) -> torch.Tensor:
        """``<gate>_hh`` of every gate (zeros for frozen gates), stacked: the fused kernel's second bias.

        Multiplied by 1 so that its gradient is a tensor of its own: oneDNN's LSTM backward hands
        one tensor to both biases, and the views that ``cat``'s backward makes of it would then be
        the ``.grad`` of both ``<gate>`` and ``<gate>_hh`` at once (the same memory), so that an
        in-place gradient clip or a second accumulated window would count it twice.
        """
        return torch.cat([self._recurrent(gate) for gate in self.gate_names]).to(dtype) * 1.0

    def _recurrent(self, gate: str) -> torch.Tensor:
        if gate in self.frozen_gates:
            return torch.zeros_like(getattr(self, gate))
        return getattr(self, gate + RECURRENT_SIDE)

    def effective(self, gate: str) -> torch.Tensor:
        """The bias ``gate`` adds to its pre-activation, ``(H,)``: ``<gate> + <gate>_hh`` for a
        trained gate, ``<gate>`` for a frozen one."""
        if gate in self.frozen_gates:
            return getattr(self, gate)
        return getattr(self, gate) + getattr(self, gate + RECURRENT_SIDE)

    def concatenated(self, dtype: torch.dtype) -> torch.Tensor:
        """Every gate's effective bias (:meth:`effective`) stacked in gate order,
        ``(len(gate_names) * H,)``, cast to ``dtype``: what a kernel with one bias vector takes."""
        return (self.input_side(torch.float32) + self.recurrent_side(torch.float32)).to(dtype)

    def _add_missing_recurrent_sides(self, state_dict, prefix, *args) -> None:  # noqa: ANN001 (torch hook signature)
        """A state dict of the one-vector layout (no ``<gate>_hh`` at all): zero recurrent sides."""
        trained = self.trained_gates
        if any(prefix + gate + RECURRENT_SIDE in state_dict for gate in trained):
            return
        for gate in trained:
            if prefix + gate in state_dict:
                state_dict[prefix + gate + RECURRENT_SIDE] = torch.zeros_like(state_dict[prefix + gate])


EAGER_RECURRENCE = (
    "mtlstm_hf's compile policy: each layer's recurrence runs eagerly on PyTorch's fused LSTM kernel (one graph "
    "break per layer), so torch.compile(model, fullgraph=True) cannot make one graph; compile without fullgraph"
)
"""Why a compiled model breaks its graph at each recurrence (shown by ``fullgraph=True``'s error)."""


def _run_eagerly(function):  # noqa: ANN001, ANN202
    """``torch.compiler.disable`` with the reason shown in compile errors (torch >= 2.7 takes one)."""
    try:
        return torch.compiler.disable(function, reason=EAGER_RECURRENCE)
    except TypeError:
        return torch.compiler.disable(function)


@_run_eagerly
def _recurrence(
    layer: MTLSTMLayer,
    inputs: torch.Tensor,
    initial_hidden: torch.Tensor,
    initial_cell: torch.Tensor,
    lengths: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:meth:`MTLSTMLayer.forward`: DropConnect, then the layer's kernel, in the weights' dtype.

    Always run eagerly, never compiled (the compile policy): traced by ``torch.compile``, PyTorch
    replaces the fused LSTM with a Python loop over time steps (no cuDNN, no oneDNN), which
    compiles for tens of seconds per sequence length and then runs slower than the kernel it
    replaced; the padded path's ``pack_padded_sequence`` cannot be traced at all. So a compiled
    model breaks its graph once per layer here and compiles what pays around the recurrences
    (embedding and dropouts, the output layer, the loss). ``torch.export`` (``strict=False``)
    traces through it as an ordinary function.
    """
    dtype = layer.weight_ih.dtype
    cell = initial_cell.to(dtype) if layer.layout.has_cell else None
    with recurrence_precision(inputs.device.type):  # in the weights' dtype, never autocast's
        outputs, final_hidden, final_cell = layer.sequence(
            inputs.to(dtype),
            initial_hidden.to(dtype),
            cell,
            layer.weight_ih,
            layer.recurrent_weight(),
            layer.gate_biases.concatenated(dtype),
            lengths,
        )
    return outputs, final_hidden, initial_cell if final_cell is None else final_cell


class MTLSTMLayer(nn.Module):
    """One recurrent layer (standard LSTM or a Levy et al. 2018 variant) whose forget/input
    biases may carry fixed timescales.

    Parameters (``E`` = input size, ``H`` = hidden size; row blocks per ``cells.cell_layout``):
    ``weight_ih (n_x H, E)``, ``weight_hh (n_h H, H)`` (the *raw* recurrent weight;
    DropConnect is applied to a copy at each training forward; ``None`` for
    ``lstm-srnn-hidden``), and ``gate_biases`` (one ``(H,)`` vector per biased block).
    For the standard cell ``n_x = n_h = 4`` (rows i, f, g, o) and the sequence runs on
    PyTorch's fused LSTM kernel.

    Args:
        input_size: ``E``.
        hidden_size: ``H``.
        cell_type: one of ``layouts.CELL_TYPES``.
        weight_drop: DropConnect probability on ``weight_hh`` in training.
        frozen_gates: names of bias blocks that are fixed buffers.
        layer_index: position in the stack (for messages).
        forget_timescales: ``(H,)`` timescales (tokens) the model computed for this layer from its
            schedule; they set the frozen forget/input biases in construction
            (:func:`timescale_gate_biases`) and again in the model's weight initialisation. ``None``
            without a schedule, or for one that draws its timescales (chrono: drawn in the
            initialisation).
        timescale_schedule: the layer's normalised schedule (``config.timescale_schedules[i]``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        cell_type: str = "lstm",
        weight_drop: float = 0.0,
        frozen_gates: tuple[str, ...] = (),
        layer_index: int = 0,
        forget_timescales: torch.Tensor | None = None,
        timescale_schedule: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.layout = cell_layout(cell_type)
        self.cell_type = cell_type
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.weight_drop = weight_drop
        self.drop_connect_levels = drop_connect_levels(weight_drop)
        # The kernel is chosen once here: the forward neither dispatches on the name nor re-checks shapes.
        self.sequence = sequence_function(cell_type)
        self.layer_index = layer_index
        rows_x, rows_h = len(self.layout.input_gate_rows), len(self.layout.recurrent_gate_rows)
        self.weight_ih = nn.Parameter(torch.empty(rows_x * hidden_size, input_size))
        if rows_h:
            self.weight_hh = nn.Parameter(torch.empty(rows_h * hidden_size, hidden_size))
        else:
            self.register_parameter("weight_hh", None)
        self.gate_biases = GateBiases(
            hidden_size, self.layout.bias_gates, frozen_gates, layer_index, forget_timescales, timescale_schedule
        )

    @property
    def cell_size(self) -> int:
        """Width of the memory cell state: ``H``, or 0 for cell-less ``lstm-gates``."""
        return self.hidden_size if self.layout.has_cell else 0

    def extra_repr(self) -> str:
        frozen = ",".join(self.gate_biases.frozen_gates) or "none"
        return (
            f"{self.input_size}, {self.hidden_size}, cell_type={self.cell_type}, "
            f"weight_drop={self.weight_drop}, frozen_biases={frozen}"
        )

    def recurrent_weight(self) -> torch.Tensor | None:
        """``weight_hh`` after DropConnect: a differentiable function of the raw weight."""
        if self.weight_hh is None:
            return None
        return drop_connect(self.weight_hh, self.weight_drop, self.training, self.drop_connect_levels)

    def forward(
        self,
        inputs: torch.Tensor,
        initial_hidden: torch.Tensor,
        initial_cell: torch.Tensor,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the layer over ``inputs (B, T, E)`` with its cell type's kernel (``variants.sequence_function``),
        in the dtype of the layer's weights with autocast off (:func:`recurrence_precision`).

        Args:
            initial_hidden: ``(B, H)``; initial_cell: ``(B, cell_size)``.

        Returns:
            ``(outputs (B, T, H), final_hidden (B, H), final_cell (B, cell_size))``.
        """
        return _recurrence(self, inputs, initial_hidden, initial_cell, lengths)

    @torch.no_grad()
    def initial_values(self, forget_timescales: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Initial values for every tensor of the layer (used by the model's ``_init_weights``).

        Weights and biases follow ``nn.LSTM``'s default, ``U(-1/sqrt(H), 1/sqrt(H))``: a trained
        gate's two vectors one draw each, a frozen gate's one vector the sum of two draws (the
        same random numbers in the same order either way). With ``forget_timescales (H,)`` given,
        ``b_f = forget_bias_from_timescale(T)`` and ``b_i = -b_f`` (Mahto et al. 2021, Sec. 3;
        chrono convention), on the input side of a trained gate (the recurrent side 0).
        """
        bound = 1.0 / math.sqrt(self.hidden_size)

        def draw(*shape: int) -> torch.Tensor:
            return torch.empty(*shape, dtype=torch.float32).uniform_(-bound, bound)

        values = {"weight_ih": draw(*self.weight_ih.shape)}
        if self.weight_hh is not None:
            values["weight_hh"] = draw(*self.weight_hh.shape)
        frozen = self.gate_biases.frozen_gates
        for gate in self.layout.bias_gates:
            first, second = draw(self.hidden_size), draw(self.hidden_size)
            if gate in frozen:
                values[f"gate_biases.{gate}"] = first + second
            else:
                values[f"gate_biases.{gate}"], values[f"gate_biases.{gate}{RECURRENT_SIDE}"] = first, second
        if forget_timescales is not None:
            for gate, value in timescale_gate_biases(forget_timescales).items():
                values[f"gate_biases.{gate}"] = value
                if gate not in frozen:
                    values[f"gate_biases.{gate}{RECURRENT_SIDE}"] = torch.zeros(self.hidden_size)
        return values
