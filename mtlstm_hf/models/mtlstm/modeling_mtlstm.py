"""Hugging Face wrapper of the multi-timescale LSTM language model (Mahto et al., ICLR 2021).

A thin layer over :mod:`layers` (torch modules) and the ``kernel_*`` modules (pure functions):
embedding -> stacked :class:`MTLSTMLayer` with AWD-LSTM dropouts -> tied softmax. The
recurrent state travels as ``cache`` (:class:`MTLSTMState`), which is what ``generate()``
needs for greedy, sampling and beam search with a cache.

transformers 5.24 renamed the cache argument and output field from ``past_key_values`` to
``cache``. The models here take either name as input and always return ``cache`` (on
transformers >= 5.24 ``output.past_key_values`` still reads it); generation works on
transformers 5.0 onwards (see ``_update_model_kwargs_for_generation``).

This file travels to the Hub (``trust_remote_code=True``) together with the files it
imports with ``from .x import y``; it may import only torch, transformers and them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    GenerationMixin,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.generation import utils as generation_utils
from transformers.modeling_outputs import TokenClassifierOutput
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.utils import ModelOutput, logging

from .configuration_mtlstm import MTLSTMConfig
from .kernel_lstm import compact_kept_steps, restore_alignment
from .layers import (
    RECURRENT_SIDE,
    GateBiases,
    MTLSTMLayer,
    ar_penalty,
    embedding_dropout,
    locked_dropout,
    tar_penalty,
    timescale_gate_biases,
    warn_if_own_rate_unset,
)
from .layouts import layer_number
from .state import NO_ROLLBACK, MTLSTMState
from .stop_strings import WordStopStringsMixin
from .timescales import is_drawn, realize_timescales, timescale_from_forget_bias

logger = logging.get_logger(__name__)

# The key under which this transformers' generate() keeps the cache between steps:
# "past_key_values" up to 5.23, "cache" from 5.24.
GENERATE_CACHE_KWARG: str = getattr(generation_utils, "ALL_CACHE_NAMES", ["cache"])[0]


def resolve_cache_argument(cache: Any, past_key_values: Any) -> Any:
    """The state given as ``cache`` (transformers >= 5.24 name) or ``past_key_values`` (older name).

    Raises:
        ValueError: if both are given.
    """
    if cache is not None and past_key_values is not None:
        raise ValueError("Give the recurrent state as cache or as past_key_values (its older name), not both.")
    return past_key_values if cache is None else cache


def _require_tensors(**values: Any) -> None:
    """Raise ``TypeError`` naming the argument when a given value is not a tensor (e.g. a list)."""
    for name, value in values.items():
        if value is not None and not isinstance(value, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor, got {type(value).__name__}; e.g. torch.tensor([[...]]) "
                f"(a tokenizer gives tensors with return_tensors='pt')."
            )


def _steps_with_a_target(labels: torch.Tensor | None, shift_labels: torch.Tensor | None) -> torch.Tensor:
    """``(B, T)`` bool: the steps whose output predicts a target (``shift_labels[t]``, or
    ``labels[t + 1]``, not ``-100``; the last step of ``labels`` predicts nothing)."""
    if shift_labels is not None:
        return shift_labels != -100
    assert labels is not None  # the caller has one of the two
    return nn.functional.pad(labels[:, 1:] != -100, (0, 1), value=False)


def next_token_loss(
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    shift_labels: torch.Tensor | None = None,
    num_items_in_batch: torch.Tensor | int | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The next-token cross-entropy with label smoothing (``F.cross_entropy(label_smoothing=)``):
    the target of step ``t`` is ``shift_labels[t]`` or else ``labels[t + 1]``; ``-100`` is
    ignored. A mean over the targets, or with ``num_items_in_batch`` (the Trainer's count of
    targets over an accumulated batch) their sum divided by it, as transformers' ``ForCausalLMLoss``
    (which this equals for ``label_smoothing=0``). ``logits (B, T, V)``; returns a 0-d float32 tensor."""
    if shift_labels is None:
        assert labels is not None, "give labels or shift_labels"
        shift_labels = nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
    loss = nn.functional.cross_entropy(
        logits.float().flatten(0, 1), shift_labels.flatten().to(logits.device), ignore_index=-100,
        reduction="mean" if num_items_in_batch is None else "sum", label_smoothing=label_smoothing,
    )  # fmt: skip
    if num_items_in_batch is None:
        return loss
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch


def warn_if_no_target(kept: torch.Tensor | bool, why: str) -> None:
    """Warn when ``kept`` (a bool tensor of which entries have a target, or whether any has: a
    caller that read it already) holds no True: a mean loss over no entries is NaN (0 / 0). ``why`` says how that comes about for the caller's labels. The one
    home of this check, for every head of the model (a read-back from the device; skipped while
    compiling)."""
    if torch.compiler.is_compiling():
        return
    if not (kept if isinstance(kept, bool) else bool(kept.any())):
        logger.warning(
            f"No position has a target ({why}): the loss is NaN. Skip such a batch rather than step an optimiser on it."
        )


def _check_labels(labels: torch.Tensor | None, shift_labels: torch.Tensor | None, vocab_size: int) -> None:
    """The causal LM's label checks, in one read of the device (skipped while compiling):

    * a label that is neither ``-100`` nor a token id in ``[0, vocab_size)`` is refused
      (cross-entropy would fail with an IndexError on the CPU and a device-side assert on CUDA);
    * no position with a target warns (:func:`warn_if_no_target`): token ``t`` predicts
      ``shift_labels[t]`` or ``labels[t + 1]``.

    Raises:
        ValueError: naming the tensor and up to five of the values outside the range.
    """
    if torch.compiler.is_compiling() or (labels is None and shift_labels is None):
        return
    given = [
        (name, values) for name, values in (("labels", labels), ("shift_labels", shift_labels)) if values is not None
    ]
    outside = [(values != -100) & ((values < 0) | (values >= vocab_size)) for _, values in given]
    targets = shift_labels if shift_labels is not None else labels[:, 1:]  # type: ignore[index]  # one is given
    *any_outside, has_target = torch.stack([mask.any() for mask in outside] + [(targets != -100).any()]).tolist()
    for (name, values), mask, bad in zip(given, outside, any_outside):
        if bad:
            raise ValueError(
                f"{name} must be token ids in [0, {vocab_size}) or -100 (ignored), got {values[mask].unique()[:5].tolist()}."
            )
    warn_if_no_target(has_target, "every label is -100, or each sequence has a single token, which predicts nothing")


# Keywords generate() hands to prepare_inputs_for_generation that forward has no use for.
_GENERATION_ONLY_KWARGS = frozenset({"cache_position", "position_ids", "next_sequence_length", "is_first_iteration"})


class _StateOutput(ModelOutput):
    """Base of the outputs below: their ``cache`` field is also readable as ``past_key_values``."""

    if TYPE_CHECKING:  # each subclass's field (for type checkers only: no field here at run time)
        cache: MTLSTMState | None

    @property
    def past_key_values(self) -> MTLSTMState | None:
        """The older name of ``cache`` (transformers < 5.24 and earlier mtlstm_hf code)."""
        return self.cache


@dataclass
class MTLSTMModelOutput(_StateOutput):
    """Output of :class:`MTLSTMModel`.

    Attributes:
        last_hidden_state: ``(B, T, H_L)`` raw output of the last layer (no output dropout).
        cache: the recurrent state after the last valid step of each row (``None`` when
            ``use_cache=False``); also readable as ``past_key_values``.
        hidden_states: with ``output_hidden_states``, ``L + 1`` tensors: the embedding fed to
            layer 1 ``(B, T, E)`` and each layer's raw output ``(B, T, H_l)``.
    """

    last_hidden_state: torch.Tensor | None = None
    cache: MTLSTMState | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class MTLSTMCausalLMOutput(_StateOutput):
    """Output of :class:`MTLSTMForCausalLM`.

    Attributes:
        loss: training objective: mean token cross-entropy, plus AR/TAR penalties in
            training mode when the config enables them.
        logits: ``(B, T, V)`` next-token scores.
        cache, hidden_states: as in :class:`MTLSTMModelOutput` (``cache`` also readable as
            ``past_key_values``).
        lm_loss: the cross-entropy alone (what perplexity is computed from).
        ar_loss, tar_loss: the activation and temporal activation regularisation terms as added
            to ``loss`` (``None`` when not computed: eval mode, or the coefficient 0).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: MTLSTMState | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    lm_loss: torch.Tensor | None = None
    ar_loss: torch.Tensor | None = None
    tar_loss: torch.Tensor | None = None


def _left_out_by_an_older_checkpoint(tensors: dict[str, torch.Tensor], name: str) -> bool:
    """Whether ``name`` is a trained gate's recurrent side (``<gate>_hh``) that a loaded checkpoint
    left out while it held the input side: the checkpoint predates the two bias vectors, its one
    vector (loaded as the input side) is the whole bias, so this side is zero: the same function,
    bit for bit."""
    if not name.endswith(RECURRENT_SIDE) or name.rsplit(".", 1)[-1] == "weight_hh":  # the recurrent weight is no bias
        return False
    input_side = tensors.get(name[: -len(RECURRENT_SIDE)])
    return getattr(input_side, "_is_hf_initialized", False) and not getattr(tensors[name], "_is_hf_initialized", False)


def _timescales_set_by_the_config(schedule: dict[str, Any], hidden_size: int) -> torch.Tensor | None:
    """A layer's imposed timescales ``(H,)`` where the configuration alone fixes them, computed once
    per layer when the model is built, float64 on the CPU (whatever the default device: a model
    built on the meta device gets them in its weight initialisation); ``None`` for no schedule and
    for one that draws them (chrono: drawn with the weights, in ``_init_weights``)."""
    if schedule["type"] == "none" or is_drawn(schedule):
        return None
    with torch.device("cpu"):
        return realize_timescales(schedule, hidden_size)


class MTLSTMPreTrainedModel(PreTrainedModel):
    """Weight initialisation and shared class attributes of the MTLSTM models."""

    config_class = MTLSTMConfig
    config: MTLSTMConfig
    base_model_prefix = "model"
    _no_split_modules = ["MTLSTMLayer"]
    # Timescale biases must survive a bf16 load exactly (they are tiny; the weights go bf16).
    _keep_in_fp32_modules_strict = ["gate_biases"]
    # A checkpoint of the earlier format (one bias vector per gate) has no recurrent sides: not reported as missing
    # (they are zero, see _left_out_by_an_older_checkpoint); load_model_strictly checks the rest.
    _keys_to_ignore_on_load_missing = [r"gate_biases\.\w+_hh$"]
    _is_stateful = True
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        init_range = self.config.embedding_init_range
        if isinstance(module, MTLSTMLayer):
            timescales = module.gate_biases.timescales_to_set()  # computed by the model, per layer
            tensors = dict(module.named_parameters()) | dict(module.named_buffers())
            for name, value in module.initial_values(timescales).items():
                init.copy_(
                    tensors[name], torch.zeros_like(value) if _left_out_by_an_older_checkpoint(tensors, name) else value
                )
        elif isinstance(module, GateBiases):
            # transformers may skip the layer (its weights were loaded) and reach this module alone.
            tensors = dict(module.named_parameters())
            for name, tensor in tensors.items():
                if _left_out_by_an_older_checkpoint(tensors, name):
                    init.zeros_(tensor)
            # The frozen, timescale-defined biases are buffers: set here too, so that a model
            # whose other tensors were loaded still gets them.
            timescales = module.timescales_to_set() if hasattr(module, "forget_gate") else None
            if timescales is not None:
                for gate, value in timescale_gate_biases(timescales).items():
                    init.copy_(getattr(module, gate), value)
                    if gate not in module.frozen_gates:
                        init.zeros_(getattr(module, gate + RECURRENT_SIDE))
        elif isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -init_range, init_range)
        elif isinstance(module, nn.Linear):
            # The output layer: AWD-LSTM starts its decoder bias at zero.
            init.uniform_(module.weight, -init_range, init_range)
            if module.bias is not None:
                init.zeros_(module.bias)

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """``PreTrainedModel.from_pretrained``, then a warning naming every layer whose saved frozen
        timescale biases disagree with ``config.timescale_schedules`` (:meth:`timescale_mismatches`):
        the saved biases are the ones the model computes with; the config is not changed."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        for mismatch in model.timescale_mismatches():
            logger.warning(mismatch + " The saved biases are used; correct config.json or save the model again.")
        return loaded

    def timescale_mismatches(self) -> list[str]:
        """One sentence per layer whose frozen forget/input biases are not the ones its schedule in
        ``config.timescale_schedules`` gives (a folder whose ``config.json`` was edited after saving,
        or whose weights belong to another configuration); empty when they agree. Layers whose
        schedule draws its timescales (chrono) or whose biases train are not checked."""
        found = []
        for module in self.base_model.modules():
            if not isinstance(module, GateBiases) or "forget_gate" not in module.frozen_gates:
                continue
            schedule, expected = module.timescale_schedule, module.assigned_timescales
            if expected is None or module.forget_gate.is_meta:
                continue
            for gate, value in timescale_gate_biases(expected).items():
                saved = getattr(module, gate).detach().cpu()
                if not torch.equal(saved, value):
                    forget_gate: torch.Tensor = module.forget_gate  # type: ignore[assignment]  # a buffer
                    held = timescale_from_forget_bias(forget_gate.detach().double().cpu())
                    found.append(
                        f"Layer {layer_number(module.layer_index)}: config.timescale_schedules[{module.layer_index}] = {schedule} gives "
                        f"timescales from {float(expected.min()):.4g} to {float(expected.max()):.4g} tokens, but the saved "
                        f"frozen {gate} biases are others (their timescales from {float(held.min()):.4g} to "
                        f"{float(held.max()):.4g})."
                    )
                    break
        return found

    def assigned_timescales(self) -> list[torch.Tensor | None]:
        """Per layer, the timescales ``T = -1 / ln sigmoid(b_f)`` (in tokens) implied by the current
        forget biases, ``(H_l,)`` float64; ``None`` for layers with no timescale schedule.

        These are the *assigned* timescales (Mahto et al. 2021, Sec. 3); timescales a trained
        network actually uses are estimated from its gates by the analysis tools.
        """
        # Found by type, not by attribute path: a layer may be wrapped (e.g. by PEFT's LoRA).
        forget_biases = {
            module.layer_index: module.effective("forget_gate")
            for module in self.base_model.modules()
            if isinstance(module, GateBiases) and hasattr(module, "forget_gate")
        }
        return [
            None
            if schedule["type"] == "none"
            else timescale_from_forget_bias(forget_biases[index].detach().double().cpu())
            for index, schedule in enumerate(self.config.timescale_schedules)
        ]


class MTLSTMModel(MTLSTMPreTrainedModel):
    """Embedding and stacked multi-timescale LSTM layers, returning the last layer's output."""

    def __init__(self, config: MTLSTMConfig) -> None:
        super().__init__(config)
        config.validate_mtlstm_fields()
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size)
        input_sizes = [config.embedding_size] + config.hidden_sizes[:-1]
        self.layers = nn.ModuleList(
            MTLSTMLayer(
                input_size,
                hidden_size,
                cell_type=config.cell_types[index],
                weight_drop=config.weight_drop,
                frozen_gates=config.frozen_gates(index),
                layer_index=index,
                forget_timescales=_timescales_set_by_the_config(config.timescale_schedules[index], hidden_size),
                timescale_schedule=config.timescale_schedules[index],
            )
            for index, (input_size, hidden_size) in enumerate(zip(input_sizes, config.hidden_sizes))
        )
        # Read once here: a layer may later be wrapped (e.g. by PEFT) by a module without these attributes.
        self.cell_sizes: list[int] = [layer.cell_size for layer in self.layers]  # type: ignore[misc]
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings = value  # type: ignore[assignment]  # an nn.Embedding (or a PEFT wrapper of one)

    def check_input_ids(self, input_ids: torch.Tensor) -> None:
        """Raise ``ValueError`` unless every id of ``input_ids`` (any shape) lies in ``[0, vocab_size)``,
        naming the range found and any special token id of the config outside the vocabulary.

        One read of the device (the smallest and largest id together). Tracing cannot branch on
        values, so compiled, exported and traced (ONNX) graphs leave the check out (an
        out-of-range id then fails inside the embedding lookup; on CUDA as a device-side assert).
        """
        if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
            return
        vocab_size = self.config.vocab_size  # not the module's attributes: a wrapper may lack them
        low, high = torch.stack(torch.aminmax(input_ids)).tolist()
        if low < 0 or high >= vocab_size:
            special = [
                f"{name}={value}"
                for name in ("pad_token_id", "bos_token_id", "eos_token_id")
                if (value := getattr(self.config, name, None)) is not None and not 0 <= value < vocab_size
            ]
            note = f" (outside the vocabulary: config.{', config.'.join(special)})" if special else ""
            raise ValueError(
                f"input_ids must lie in [0, {vocab_size}) (the vocabulary size), got values from {low} to {high}{note}."
            )

    def _embed(self, input_ids: torch.LongTensor, check_values: bool = True) -> torch.Tensor:
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"input_ids must be an integer tensor, got dtype {input_ids.dtype}.")
        if check_values:
            self.check_input_ids(input_ids)
        # The module is called (not its weight read), so a wrapped embedding (e.g. PEFT's LoRA) is used.
        return embedding_dropout(
            input_ids, self.embeddings(input_ids), self.config.vocab_size, self.config.embedding_dropout, self.training
        )

    def _initial_state(self, cache: Any, batch_size: int, inputs: torch.Tensor) -> MTLSTMState:
        if isinstance(cache, Cache) and cache.get_seq_length() == 0:
            cache = None  # an empty foreign cache (e.g. generate()'s DynamicCache) means "no state"
        cell_sizes = self.cell_sizes
        if cache is None:
            return MTLSTMState.zeros(
                batch_size, self.config.hidden_sizes, cell_sizes, device=inputs.device, dtype=inputs.dtype
            )
        if not isinstance(cache, MTLSTMState):
            raise ValueError(
                f"cache (past_key_values) must be an MTLSTMState returned by this model, got {type(cache).__name__}."
            )
        if cache.hidden_sizes != self.config.hidden_sizes or cache.cell_sizes != cell_sizes:
            raise ValueError(
                f"cache (past_key_values) has hidden/cell sizes {cache.hidden_sizes}/{cache.cell_sizes}, "
                f"but this model's layers have {self.config.hidden_sizes}/{cell_sizes}: the state comes from another model."
            )
        if cache.batch_size != batch_size:
            raise ValueError(
                f"cache (past_key_values) holds {cache.batch_size} sequences but the input has batch size "
                f"{batch_size}; they must match (select rows with state.select(...))."
            )
        if cache.hidden[0].device != inputs.device:
            raise ValueError(
                f"cache (past_key_values) is on {cache.hidden[0].device} but the input is on {inputs.device}; "
                f"move it first (state.to(device))."
            )
        return cache.to(dtype=inputs.dtype)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        cache: MTLSTMState | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: MTLSTMState | None = None,
        check_values: bool = True,
        **kwargs: Any,
    ) -> MTLSTMModelOutput | tuple:
        """Run the stack over a chunk of tokens, continuing from ``cache``.

        Args:
            input_ids: ``(B, T)`` token ids in ``[0, V)``; or give ``inputs_embeds (B, T, E)``
                (then no word-level embedding dropout applies).
            attention_mask: ``(B, T)``, 1 for tokens and 0 for padding, zeros anywhere (left or
                right padding, or masked steps inside): a masked step leaves the state untouched
                and gives a zero output, so each row reads the sequence of its kept steps.
            cache: the state returned by a previous call (``None`` = zeros).
            use_cache: return the new state (default ``config.use_cache``).
            output_hidden_states: also return every layer's output.
            return_dict: return a :class:`MTLSTMModelOutput` (default) or a tuple.
            past_key_values: the older name of ``cache`` (give one of them).
            check_values: check that ``input_ids`` lie in the vocabulary (:meth:`check_input_ids`)
                and that ``attention_mask`` holds only 0 and 1, with a clear error. Each check reads
                the tensors back from the device (on a GPU, a synchronisation per call); a caller
                that checked its token stream once, as the library's trainer does, passes False.
        """
        cache = resolve_cache_argument(cache, past_key_values)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Give exactly one of input_ids (B, T) and inputs_embeds (B, T, E).")
        _require_tensors(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        if use_cache is not None and not isinstance(use_cache, bool):
            raise ValueError(f"use_cache must be True, False or None, got {use_cache!r}.")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must have shape (batch, sequence), got {tuple(input_ids.shape)}.")
            batch_size, num_steps = input_ids.shape
        else:
            assert inputs_embeds is not None  # exactly one of the two, checked above
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.embedding_size:
                raise ValueError(
                    f"inputs_embeds must have shape (batch, sequence, {self.config.embedding_size}), "
                    f"got {tuple(inputs_embeds.shape)}."
                )
            batch_size, num_steps = inputs_embeds.shape[:2]
            weight_dtype = self.layers[0].weight_ih.dtype  # the first layer reads them
            if inputs_embeds.dtype != weight_dtype and not torch.is_autocast_enabled(inputs_embeds.device.type):
                raise ValueError(
                    f"inputs_embeds has dtype {inputs_embeds.dtype} but the model's weights are {weight_dtype}; "
                    f"convert them first (inputs_embeds.to({weight_dtype})) or run under torch.autocast."
                )
        if num_steps == 0 or batch_size == 0:
            raise ValueError(
                f"The input is empty (batch {batch_size}, sequence length {num_steps}); give at least one token."
            )

        if (
            self.training
            and self.config.timescale_learning_rate is not None
            and torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
        ):
            warn_if_own_rate_unset(
                self, self.config.timescale_learning_rate
            )  # once: an optimiser that ignores the rate is not silent
        embeddings = self._embed(input_ids, check_values) if input_ids is not None else inputs_embeds
        assert embeddings is not None
        embeddings = locked_dropout(embeddings, self.config.input_dropout, self.training)
        state = self._initial_state(cache, batch_size, embeddings)

        lengths = scatter_index = gather_index = None
        if attention_mask is not None:
            if attention_mask.shape != (batch_size, num_steps):
                raise ValueError(
                    f"attention_mask must have shape {(batch_size, num_steps)} like the input, got {tuple(attention_mask.shape)}."
                )
            if torch.compiler.is_compiling():
                everything = False  # no value read in a compiled graph: compact (an all-ones mask compacts to itself)
            elif check_values and attention_mask.dtype != torch.bool:
                # One read of the device for both questions: only 0 and 1? all 1 (nothing to skip)?
                binary, everything = torch.stack(
                    [((attention_mask == 0) | (attention_mask == 1)).all(), (attention_mask == 1).all()]
                ).tolist()
                if not binary:
                    raise ValueError(
                        f"attention_mask must contain only 0 (padding) and 1 (token), got values "
                        f"{sorted(set(attention_mask.unique().tolist()) - {0, 1})[:5]}."
                    )
            else:
                everything = bool(attention_mask.all())
            if not everything:
                gather_index, lengths, scatter_index = compact_kept_steps(attention_mask)
                embeddings = embeddings.gather(1, gather_index[:, :, None].expand_as(embeddings))

        def in_input_alignment(tensor: torch.Tensor) -> torch.Tensor:
            return tensor if lengths is None else restore_alignment(tensor, lengths, scatter_index)  # type: ignore[arg-type]  # set with lengths

        def on_the_path(compact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """``(aligned, compact)`` for a returned hidden state: with masked steps the compact
            tensor the next layer reads is taken back from the input-aligned one, so that the
            returned tensor lies on the computation's path (its ``retain_grad()`` gets the
            gradient, as for a model without padding). Equal values: masked steps are read by
            no recurrence."""
            if lengths is None:
                return compact, compact
            aligned = restore_alignment(compact, lengths, scatter_index)  # type: ignore[arg-type]  # set with lengths
            return aligned, aligned.gather(1, gather_index[:, :, None].expand_as(aligned))  # type: ignore[index]

        all_hidden_states: list[torch.Tensor] = []
        if output_hidden_states:
            aligned, embeddings = on_the_path(embeddings)
            all_hidden_states.append(aligned)
        layer_input = embeddings
        final_hidden, final_cell = [], []
        last_index = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            layer_output, hidden, cell = layer(layer_input, state.hidden[index], state.cell[index], lengths)
            final_hidden.append(hidden)
            final_cell.append(cell)
            if output_hidden_states and index != last_index:
                aligned, layer_output = on_the_path(layer_output)
                all_hidden_states.append(aligned)
            elif output_hidden_states:
                all_hidden_states.append(in_input_alignment(layer_output))
            layer_input = layer_output
            if index != last_index:
                layer_input = locked_dropout(layer_output, self.config.hidden_dropout, self.training)

        last_hidden_state = all_hidden_states[-1] if output_hidden_states else in_input_alignment(layer_input)
        new_state = MTLSTMState(final_hidden, final_cell, state.seen_tokens + num_steps) if use_cache else None
        hidden_states = tuple(all_hidden_states) if output_hidden_states else None
        output = MTLSTMModelOutput(last_hidden_state=last_hidden_state, cache=new_state, hidden_states=hidden_states)
        # The tuple form is the output's own to_tuple(): the same fields in the same order.
        return output if return_dict else output.to_tuple()


class MTLSTMForCausalLM(WordStopStringsMixin, MTLSTMPreTrainedModel, GenerationMixin):
    """:class:`MTLSTMModel` with a (tied) softmax output layer; trains with ``labels`` and generates."""

    _tied_weights_keys = {"lm_head.weight": "model.embeddings.weight"}

    def __init__(self, config: MTLSTMConfig) -> None:
        super().__init__(config)
        self.model = MTLSTMModel(config)
        self.lm_head = nn.Linear(config.hidden_sizes[-1], config.vocab_size, bias=True)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embeddings = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`GenerationMixin.generate`, refusing at once to serve as the draft model of another
        model's assisted decoding (``ValueError``: the draft state would have to be rolled back,
        see :data:`state.NO_ROLLBACK`). As the main model, transformers refuses assisted decoding
        and prompt lookup itself (the model is stateful)."""
        given = kwargs.get("generation_config", args[1] if len(args) > 1 else None)
        generation_config = given if given is not None else self.generation_config
        if getattr(generation_config, "is_assistant", False):
            raise ValueError(NO_ROLLBACK)
        return super().generate(*args, **kwargs)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The state is our own object; generate() must not create a key/value cache.
        return False

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        cache: MTLSTMState | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        past_key_values: MTLSTMState | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Feed only what the state has not consumed yet (everything without a state).

        The state's ``seen_tokens`` is a position in the sequence generated so far:

        * a prompt given as ``input_ids`` (alone or with its ``inputs_embeds``): the sequence is
          ``input_ids``; the tokens after the state's position are fed (a prefilled ``cache`` of a
          prefix works);
        * a prompt given as ``inputs_embeds`` alone (``input_ids`` then holds only the tokens this
          call generated): the sequence is the embeddings followed by those tokens, and the
          positions after the state's are fed: the whole prompt without a state, only the new
          embeddings when continuing from a returned ``cache`` with the embeddings of the whole
          sequence (as transformers' models take them), then each step the newest token.

        Every other keyword (``output_hidden_states``, ``logits_to_keep``, custom ones) is passed
        on to ``forward``, as transformers' own implementation does.

        Raises:
            ValueError: if the state has consumed every position given (nothing left to feed).
        """
        cache = resolve_cache_argument(cache, past_key_values)
        has_state = isinstance(cache, MTLSTMState)
        model_inputs: dict[str, Any] = {"use_cache": use_cache, "cache": cache if has_state else None}
        consumed = cache.get_seq_length() if has_state else 0
        generated = input_ids.shape[1]
        # An ids prompt leaves the state one token short of input_ids; after an embeddings prompt
        # it has read every embedding besides the tokens in input_ids.
        prompt_is_embeds = inputs_embeds is not None and (generated == 0 or (has_state and consumed >= generated))
        if prompt_is_embeds:
            assert inputs_embeds is not None
            prompt = inputs_embeds.shape[1]
            fed = prompt + generated - consumed
            if fed <= 0:
                raise ValueError(
                    f"The cache has read {consumed} positions but inputs_embeds ({prompt}) and the generated tokens "
                    f"({generated}) hold {prompt + generated}: nothing is left to feed. To continue from a cache, pass "
                    f"the embeddings of the whole sequence (those the cache has read, then the new ones)."
                )
            if consumed >= prompt:
                model_inputs["input_ids"] = input_ids[:, consumed - prompt :]
            elif generated == 0:
                model_inputs["inputs_embeds"] = inputs_embeds[:, consumed:]
            else:  # part of the prompt and the generated tokens (not a path generate() takes)
                model_inputs["inputs_embeds"] = torch.cat(
                    [inputs_embeds[:, consumed:], self.get_input_embeddings()(input_ids).to(inputs_embeds.dtype)], dim=1
                )
        elif not has_state and inputs_embeds is not None and inputs_embeds.shape[1] == generated:
            model_inputs["inputs_embeds"] = inputs_embeds  # ids and their embeddings: the embeddings
            fed = generated
        else:
            fed = generated - consumed
            if fed <= 0:
                raise ValueError(
                    f"The cache has read {consumed} tokens but input_ids holds {generated}: nothing is left to feed. "
                    f"To continue from a cache, pass the whole sequence (the tokens the cache has read, then the new ones)."
                )
            model_inputs["input_ids"] = input_ids[:, consumed:]
        if attention_mask is not None:
            model_inputs["attention_mask"] = attention_mask[:, attention_mask.shape[1] - fed :]
        for key, value in kwargs.items():
            if key not in model_inputs and key not in _GENERATION_ONLY_KWARGS:
                model_inputs[key] = value
        return model_inputs

    def _update_model_kwargs_for_generation(
        self, outputs: ModelOutput, model_kwargs: dict[str, Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        model_kwargs = super()._update_model_kwargs_for_generation(outputs, model_kwargs, *args, **kwargs)
        # transformers < 5.24 looks for an output named past_key_values and would silently lose
        # the state (re-reading the whole sequence every step); hand it over under its key, and
        # drop a state the caller gave under the other name: it is consumed now.
        cache = getattr(outputs, "cache", None)  # our outputs' field (a ModelOutput to transformers)
        if cache is not None:
            for name in ("cache", "past_key_values"):
                model_kwargs.pop(name, None)
            model_kwargs[GENERATE_CACHE_KWARG] = cache
        return model_kwargs

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        cache: MTLSTMState | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int = 0,
        past_key_values: MTLSTMState | None = None,
        check_values: bool = True,
        **kwargs: Any,
    ) -> MTLSTMCausalLMOutput | tuple:
        """Next-token logits, and the loss when ``labels`` are given.

        ``labels (B, T)`` follow the transformers convention: they are shifted inside the
        loss (token ``t`` predicts ``labels[t + 1]``), ``-100`` is ignored. Training code
        whose targets are already aligned (AWD-style windows) passes ``shift_labels`` instead.
        ``logits_to_keep=k`` computes logits for the last ``k`` steps only (0 = all).
        The cross-entropy is smoothed by ``config.label_smoothing`` (0: none).
        In training mode the loss adds ``activation_regularization * mean(dropped^2)`` and
        ``temporal_activation_regularization * mean((h_t - h_{t-1})^2)`` (Merity et al. 2018): means
        over the kept steps (AWD-LSTM), or, given transformers' ``num_items_in_batch`` (the Trainer's
        count of targets over an accumulated batch), sums over the steps that predict a target divided
        by it, as the cross-entropy, so that any split into micro-batches gives the whole batch's
        update (:func:`layers.ar_penalty`). Called for a Trainer step without labels (its label
        smoother), the model warns once that AR/TAR are in no loss.
        ``check_values=False`` skips the checks that read tensors back from the device (token ids
        in the vocabulary, a 0/1 mask, the warning when no position has a target): see
        :meth:`MTLSTMModel.forward`.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, int) or logits_to_keep < 0:
            raise ValueError(f"logits_to_keep must be an integer >= 0 (0 = every position), got {logits_to_keep!r}.")
        _require_tensors(labels=labels)
        batch_shape = input_ids if input_ids is not None else inputs_embeds
        if labels is not None and batch_shape is not None and labels.shape != batch_shape.shape[:2]:
            raise ValueError(
                f"labels must have the input's shape (batch, sequence) = {tuple(batch_shape.shape[:2])}, "
                f"got {tuple(labels.shape)}."
            )
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            cache=cache,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            check_values=check_values,
        )
        raw_output = outputs.last_hidden_state
        dropped_output = locked_dropout(raw_output, self.config.output_dropout, self.training)
        kept = slice(-logits_to_keep, None) if logits_to_keep else slice(None)
        logits = self.lm_head(dropped_output[:, kept])

        loss = lm_loss = ar_loss = tar_loss = None
        shift_labels = kwargs.get("shift_labels")
        if shift_labels is not None:
            shift_labels = kwargs["shift_labels"] = shift_labels.contiguous()  # the loss views it flat
        if labels is not None or shift_labels is not None:
            if check_values:
                _check_labels(labels, shift_labels, logits.shape[-1])
            total = kwargs.get("num_items_in_batch")  # the Trainer's count of targets over all micro-batches
            if self.config.label_smoothing:
                lm_loss = next_token_loss(logits, labels, shift_labels, total, self.config.label_smoothing)
            else:  # transformers' loss (a model's loss_type chooses it)
                lm_loss = self.loss_function(logits, labels, vocab_size=logits.shape[-1], **kwargs)
            loss = lm_loss
            # AR/TAR: as AWD-LSTM, means over the (kept) steps; under the Trainer (num_items_in_batch)
            # per target like the cross-entropy, so that any split into micro-batches adds up to the
            # whole batch's penalties (see ar_penalty).
            valid = None if attention_mask is None else attention_mask.bool()  # padding is not regularised
            counted = None
            if total is not None and self.training:
                counted = _steps_with_a_target(labels, shift_labels)
                counted = counted if valid is None else counted & valid
                total = total.to(logits.device) if torch.is_tensor(total) else total
            if self.training and self.config.activation_regularization > 0:
                ar_loss = ar_penalty(
                    dropped_output, self.config.activation_regularization, valid if total is None else counted, total
                )
                loss = loss + ar_loss
            if self.training and self.config.temporal_activation_regularization > 0:
                tar_loss = tar_penalty(
                    raw_output, self.config.temporal_activation_regularization, valid, counted, total
                )
                loss = loss + tar_loss
        elif (
            self.training
            and kwargs.get("num_items_in_batch") is not None
            and (self.config.activation_regularization > 0 or self.config.temporal_activation_regularization > 0)
        ):
            # A count of targets but no labels: the Trainer computes the loss itself (its label
            # smoother, or a compute_loss_func) and AR/TAR, which only the model can compute, are lost.
            logger.warning_once(
                "MTLSTMForCausalLM was called for a training step without labels (transformers' Trainer does so when "
                "TrainingArguments.label_smoothing_factor > 0 or with a compute_loss_func): the activation regularisation "
                "(AR/TAR, config.activation_regularization / temporal_activation_regularization), which only the model "
                "can compute, is in no loss. For label smoothing set config.label_smoothing instead (the model's loss "
                "then smooths the cross-entropy and adds AR/TAR)."
            )

        output = MTLSTMCausalLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            lm_loss=lm_loss,
            ar_loss=ar_loss,
            tar_loss=tar_loss,
        )
        # The tuple form is the output's own to_tuple() (lm_loss included), as transformers'
        # models return it: the same fields in the same order, None fields left out.
        return output if return_dict else output.to_tuple()


class MTLSTMForTokenClassification(MTLSTMPreTrainedModel):
    """:class:`MTLSTMModel` with a linear head: ``config.num_labels`` scores for every position.

    Follows transformers' ``...ForTokenClassification`` models (e.g. ``BertForTokenClassification``):
    the head reads the last layer's output (after locked output dropout, ``config.output_dropout``)
    and the loss depends on ``config.problem_type``:

    * ``"single_label_classification"``: ``labels (B, T)`` integer class ids, mean cross-entropy
      over the positions whose label is not ``-100``;
    * ``"multi_label_classification"``: ``labels (B, T, num_labels)`` with values in ``[0, 1]``,
      mean binary cross-entropy with logits over the kept entries (an entry equal to ``-100`` is
      left out), as the multi-label sequence classifiers of transformers do per sequence;
    * ``None``: integer labels mean single-label, floating-point labels multi-label.

    Positions where ``attention_mask`` is 0 are left out of the loss in both cases. Used for the
    Dyck-2 task of Mahto et al. (2021, section 5; ``mtlstm_hf.reproduce.dyck``).
    """

    def __init__(self, config: MTLSTMConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = MTLSTMModel(config)
        self.classifier = nn.Linear(config.hidden_sizes[-1], config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        check_values: bool = True,
        **kwargs: Any,
    ) -> TokenClassifierOutput | tuple:
        """Per-position scores, and the loss when ``labels`` are given.

        Args:
            input_ids, attention_mask, inputs_embeds, output_hidden_states: as :class:`MTLSTMModel`
                (each row starts from the zero state).
            labels: see the class docstring; ``(B, T)`` or ``(B, T, num_labels)``.
            check_values: check the values of ``input_ids``, ``attention_mask`` and ``labels``
                and warn when no entry has a target (the loss is then NaN); ``False`` skips these
                reads from the device (see :meth:`MTLSTMModel.forward`).

        Returns:
            ``TokenClassifierOutput`` with ``logits (B, T, num_labels)`` (before any sigmoid or
            softmax), ``loss`` (0-d, or ``None`` without labels) and ``hidden_states``.

        Raises:
            ValueError: labels of the wrong shape or values for the problem type (class ids outside
                ``[0, num_labels)``, multi-label targets outside ``[0, 1]``; ``-100`` is always
                allowed), or a ``problem_type`` other than ``None``, ``single_label_classification``,
                ``multi_label_classification``.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        _require_tensors(labels=labels)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            use_cache=False,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            check_values=check_values,
        )
        dropped_output = locked_dropout(outputs.last_hidden_state, self.config.output_dropout, self.training)
        logits = self.classifier(dropped_output)

        loss = None
        if labels is not None:
            problem_type = self.config.problem_type
            if problem_type is None:
                floating = labels.is_floating_point()
                problem_type = "multi_label_classification" if floating else "single_label_classification"
            if problem_type == "multi_label_classification":
                loss = _multi_label_loss(logits, labels, attention_mask, check_values)
            elif problem_type == "single_label_classification":
                loss = _single_label_loss(logits, labels, attention_mask, check_values)
            else:
                raise ValueError(
                    f"config.problem_type must be None, 'single_label_classification' or "
                    f"'multi_label_classification' for MTLSTMForTokenClassification, got {problem_type!r}."
                )

        output = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


_NO_TARGET_FOR_A_TOKEN = "every label is -100, or attention_mask is 0 at every labelled position"


def _values_outside(values: torch.Tensor, allowed: torch.Tensor) -> list[Any]:
    """Up to five distinct entries of ``values`` where ``allowed`` is False, smallest first (one
    read of the device)."""
    return values[~allowed].unique()[:5].tolist()


def _multi_label_loss(
    logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None, check_values: bool
) -> torch.Tensor:
    """Mean binary cross-entropy with logits over the entries whose label is not ``-100`` and whose
    position ``attention_mask`` keeps.

    Raises:
        ValueError: ``labels`` not of ``logits``' shape, or (``check_values``) a label outside ``[0, 1]``.
    """
    if labels.shape != logits.shape:
        raise ValueError(
            f"labels must have shape (batch, sequence, num_labels) = {tuple(logits.shape)} for "
            f"multi_label_classification, got {tuple(labels.shape)}."
        )
    kept = labels != -100
    if check_values and not torch.compiler.is_compiling():
        in_range = (labels >= 0) & (labels <= 1)  # NaN is in no range
        if not bool((in_range | ~kept).all()):
            raise ValueError(
                f"labels for multi_label_classification must lie in [0, 1] (-100 leaves an entry out), got values "
                f"{_values_outside(labels, in_range | ~kept)}."
            )
    if attention_mask is not None:
        kept = kept & attention_mask.bool()[:, :, None]
    if check_values:
        warn_if_no_target(kept, _NO_TARGET_FOR_A_TOKEN)
    return nn.functional.binary_cross_entropy_with_logits(logits[kept], labels[kept].to(logits.dtype))


def _single_label_loss(
    logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None, check_values: bool
) -> torch.Tensor:
    """Mean cross-entropy over the positions whose label is not ``-100`` and that ``attention_mask`` keeps.

    Raises:
        ValueError: ``labels`` not integer class ids of ``logits``' first two dimensions, or
            (``check_values``) a class id outside ``[0, num_labels)``.
    """
    num_labels = logits.shape[-1]
    if labels.shape != logits.shape[:2] or labels.is_floating_point():
        raise ValueError(
            f"labels must be integer class ids of shape (batch, sequence) = {tuple(logits.shape[:2])} "
            f"for single_label_classification, got {labels.dtype} {tuple(labels.shape)}."
        )
    if check_values and not torch.compiler.is_compiling():
        allowed = ((labels >= 0) & (labels < num_labels)) | (labels == -100)
        if not bool(allowed.all()):
            raise ValueError(
                f"labels for single_label_classification must be class ids in [0, {num_labels}) (config.num_labels) "
                f"or -100 (no target), got values {_values_outside(labels, allowed)}."
            )
    if attention_mask is not None:
        labels = labels.masked_fill(~attention_mask.bool(), -100)
    if check_values:
        warn_if_no_target(labels != -100, _NO_TARGET_FOR_A_TOKEN)
    return nn.functional.cross_entropy(logits.reshape(-1, num_labels), labels.reshape(-1), ignore_index=-100)


# save_pretrained / push_to_hub copy these files so that checkpoints load with
# trust_remote_code=True where mtlstm_hf is not installed.
MTLSTMConfig.register_for_auto_class()
MTLSTMModel.register_for_auto_class("AutoModel")
MTLSTMForCausalLM.register_for_auto_class("AutoModelForCausalLM")
MTLSTMForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")

# transformers' Trainer shifts the labels for its label smoother only for the causal LMs named in
# this table (a registered model is not): listed, TrainingArguments(label_smoothing_factor=...)
# compares step t's logits with token t + 1, as for GPT-2, and not with token t.
MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.setdefault(MTLSTMConfig.model_type, MTLSTMForCausalLM.__name__)

if __name__.startswith("mtlstm_hf."):
    # Imported from the installed package (not as remote code): AutoConfig / AutoModel /
    # AutoModelForCausalLM resolve model_type "mtlstm" to these classes.
    AutoConfig.register(MTLSTMConfig.model_type, MTLSTMConfig, exist_ok=True)
    AutoModel.register(MTLSTMConfig, MTLSTMModel, exist_ok=True)
    AutoModelForCausalLM.register(MTLSTMConfig, MTLSTMForCausalLM, exist_ok=True)
    AutoModelForTokenClassification.register(MTLSTMConfig, MTLSTMForTokenClassification, exist_ok=True)

__all__ = [
    "MTLSTMCausalLMOutput",
    "MTLSTMForCausalLM",
    "MTLSTMForTokenClassification",
    "MTLSTMModel",
    "MTLSTMModelOutput",
    "MTLSTMPreTrainedModel",
]
