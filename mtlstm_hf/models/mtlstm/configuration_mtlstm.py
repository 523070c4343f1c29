"""Configuration of the multi-timescale LSTM language model (``model_type="mtlstm"``).

Every field is checked in one place, :meth:`MTLSTMConfig.validate_mtlstm_fields`, which
``__init__`` and the model's constructor call; a bad value raises ``ValueError`` naming
the field and the allowed values. This file travels to the Hub with the model. It is a leaf, as
transformers' configuration files are: besides transformers it imports only the torch-free
catalogue of cell layouts (``layouts.py``), the field rules (``validation.py``) and the presets
(``presets.py``), none of which imports torch or another file of the model.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
from typing import TYPE_CHECKING, Any

from transformers import PretrainedConfig

# A leaf: only torch-free catalogues and rules, no layer, cell or timescale code.
from .checks import check_positive_int, is_plain_integer, is_plain_number
from .layouts import CELL_TYPES, cell_layout
from .presets import DROPOUT_FIELDS, PRESETS
from .validation import SCHEDULE_RULES, drop_connect_levels, normalize_schedule

FROZEN_BIAS_CHOICES: tuple[str, ...] = ("forget_input", "all", "none")
"""Which gate biases of a layer with imposed timescales are frozen:
``forget_input`` (the forget and input gates, default), ``all`` (every gate of the layer,
as the reference code does), ``none`` (timescales only initialise the biases)."""


ARCHITECTURE_FIELDS: tuple[str, ...] = (
    "vocab_size",
    "embedding_size",
    "hidden_sizes",
    "tie_word_embeddings",
    "cell_types",
    "timescale_schedules",
    "frozen_biases",
)
"""Fields a saved ``config.json`` must contain (:meth:`MTLSTMConfig.from_dict`)."""


# Keywords any transformers config may carry (PretrainedConfig's own, and the special-token and
# encoder-decoder ones transformers' common config tests pass): never taken for a misspelling.
_TRANSFORMERS_CONFIG_KEYWORDS: frozenset[str] = frozenset(
    {
        "sep_token_id",
        "decoder_start_token_id",
        "is_decoder",
        "add_cross_attention",
        "cross_attention_hidden_size",
        "tie_encoder_decoder",
        "tokenizer_class",
        "prefix",
        "task_specific_params",
        "finetuning_task",
        "output_attentions",
        "torchscript",
        "pruned_heads",
        "num_labels",
        "auto_map",
        "transformers_version",
    }
)

# transformers' standard names that MTLSTMConfig derives from hidden_sizes (read-only).
DERIVED_FIELDS: tuple[str, ...] = ("hidden_size", "num_hidden_layers")


class DerivedFieldError(AttributeError, NotImplementedError, ValueError):
    """Setting ``hidden_size`` or ``num_hidden_layers``, which are derived from ``hidden_sizes``.

    An ``AttributeError`` (a property without setter), a ``NotImplementedError`` (what
    transformers' common config tests accept for read-only standard properties) and a
    ``ValueError`` (like every other refused configuration value)."""


def _derived_field_error(name: str, value: Any) -> DerivedFieldError:
    meaning = "the width of the last layer, hidden_sizes[-1]" if name == "hidden_size" else "len(hidden_sizes)"
    return DerivedFieldError(
        f"MTLSTMConfig.{name} is {meaning} and cannot be set (got {value!r}); give hidden_sizes, one width "
        f"per layer, instead (e.g. hidden_sizes=[1150, 1150, 400])."
    )


def _reject_misspelled_fields(extra: dict[str, Any]) -> None:
    """Raise for a keyword that is not a field but is close to one (``hiden_sizes``), and for the
    derived ``hidden_size`` / ``num_hidden_layers``.

    Other extra keywords pass, as ``PretrainedConfig`` allows (transformers itself writes
    keys such as ``architectures``, ``auto_map`` or ``transformers_version``).
    """
    for name in DERIVED_FIELDS:
        if name in extra:
            raise _derived_field_error(name, extra[name])
    fields = [name for name in inspect.signature(MTLSTMConfig.__init__).parameters if name not in ("self", "kwargs")]
    known = _TRANSFORMERS_CONFIG_KEYWORDS | set(inspect.signature(PretrainedConfig.__init__).parameters)
    for key in extra:
        if key in known:
            continue
        close = difflib.get_close_matches(key, fields, n=1, cutoff=0.8)
        if close:
            raise ValueError(
                f"MTLSTMConfig got an unknown field {key!r}; did you mean {close[0]!r}? "
                f"(an unknown field would be ignored and the default used)."
            )


class MTLSTMConfig(PretrainedConfig):
    """Configuration of :class:`MTLSTMModel` / :class:`MTLSTMForCausalLM`.

    The defaults are the paper's network and PTB dropouts (Mahto et al., ICLR 2021: 3
    layers 1150/1150/400, embedding 400, tied output weights) with no timescales imposed,
    i.e. the AWD-LSTM baseline. ``MTLSTMConfig.from_preset("paper")`` adds the
    multi-timescale schedule: layer 1 half T=3 / half T=4, layer 2 inverse gamma(0.56, 1)
    quantiles, layer 3 free.

    Args:
        vocab_size: number of token ids ``V`` (> 0).
        embedding_size: word embedding width ``E`` (> 0).
        hidden_sizes: one hidden size per LSTM layer (each > 0); the number of layers is its length.
        tie_word_embeddings: share the output projection with the embedding; needs
            ``hidden_sizes[-1] == embedding_size``.
        embedding_dropout: probability of dropping a whole word from the embedding matrix
            (AWD ``dropoute``), in ``[0, 1)``.
        input_dropout: locked dropout on the embedding output (AWD ``dropouti``), ``[0, 1)``.
        hidden_dropout: locked dropout between LSTM layers (AWD ``dropouth``), ``[0, 1)``.
        output_dropout: locked dropout on the last layer's output (AWD ``dropout``), ``[0, 1)``.
        weight_drop: DropConnect on the recurrent weights (AWD ``wdrop``), ``[0, 1)``, realised
            in steps of ``2**-16`` (``validation.drop_connect_levels``).
        activation_regularization: AR coefficient (alpha, >= 0) on the dropped last-layer
            output, added to the training loss.
        temporal_activation_regularization: TAR coefficient (beta, >= 0) on the raw
            last-layer output, added to the training loss.
        label_smoothing: the share ``epsilon`` in ``[0, 1)`` of each target's probability spread
            over the whole vocabulary in the training cross-entropy (Szegedy et al. 2016; torch's
            ``F.cross_entropy(label_smoothing=)``); 0 (default) is the plain cross-entropy. Use
            this rather than ``TrainingArguments.label_smoothing_factor``: the Trainer then calls
            the model without labels, so AR/TAR would be left out of the loss.
        cell_types: the recurrent cell, one name for every layer or a list with one per
            layer: ``lstm`` (standard), ``lstm-srnn``, ``lstm-srnn-out``, ``lstm-srnn-hidden``,
            ``lstm-gates`` (Levy et al. 2018; see ``naive.py``). Stored as a list.
        timescale_schedules: one schedule per layer (``None`` = no timescales anywhere);
            each is a type name or dict with ``type`` in ``none``, ``fixed``,
            ``inverse_gamma``, ``chrono``, ``explicit``, or a prior of another recurrent model:
            ``log_uniform`` (Mamba), ``ring`` (LRU, RG-LRU), ``geometric`` (RetNet, SITH),
            ``powerlaw_spacing`` (RWKV-4, sLSTM), ``uniform_gate`` (see
            ``validation.normalize_schedule``).
            Stored normalised (dicts) so ``config.json`` is explicit.
        frozen_biases: which biases of layers with a schedule are fixed: one of
            ``forget_input`` (default), ``all`` (reference code), ``none``. A schedule's timescales
            are thus frozen (``forget_input``/``all``: buffers no optimiser sees), or only an
            initialisation of trainable forget/input biases (``none``).
        timescale_learning_rate: with ``frozen_biases="none"``, train the forget- and input-gate
            biases of the layers with a schedule at this learning rate and without weight decay
            (the S4 pattern of its own rate for the timescale parameters); ``None`` (default): at
            the optimiser's rate like every weight. A finite number >= 0; the rate follows the
            same schedule (warm-up, decay) as the main one. Honoured by ``mtlstm-train`` and, through
            ``mtlstm_hf.training.trainer_optimizer_cls_and_kwargs``, by the ``Trainer`` (with or
            without a PEFT adapter); see ``mtlstm_hf.training.optimizer_groups``.
        embedding_init_range: embedding weights start ``U(-r, r)`` (AWD uses 0.1), > 0.
        vocab_fingerprint: ``"sha256:<hex>"`` of the id -> word table of the tokenizer the
            model was trained with (``mtlstm_hf.data.vocabulary_fingerprint``), checked
            wherever the model meets a tokenizer; ``None`` = unknown (not checked).
        pad_token_id, bos_token_id, eos_token_id: special token ids, ``None`` or ``>= 0`` (an id
            outside ``[0, V)``, e.g. after shrinking the vocabulary, is refused when fed).
        use_cache: return the recurrent state (``cache``) by default.
    """

    model_type = "mtlstm"
    # Trainer.predict / evaluate return the logits alone (the state and the bare cross-entropy
    # are not predictions), as for GPT-2.
    keys_to_ignore_at_inference = ["cache", "past_key_values", "lm_loss"]

    if TYPE_CHECKING:  # the fields once validated (for type checkers only: no class attributes at run time)
        hidden_sizes: list[int]
        cell_types: list[str]
        timescale_schedules: list[dict[str, Any]]
        num_labels: int

    def __init__(
        self,
        vocab_size: int = 10000,
        embedding_size: int = 400,
        hidden_sizes: list[int] | tuple[int, ...] = (1150, 1150, 400),
        tie_word_embeddings: bool = True,
        embedding_dropout: float = 0.1,
        input_dropout: float = 0.4,
        hidden_dropout: float = 0.25,
        output_dropout: float = 0.4,
        weight_drop: float = 0.5,
        activation_regularization: float = 2.0,
        temporal_activation_regularization: float = 1.0,
        label_smoothing: float = 0.0,
        cell_types: str | list[str] = "lstm",
        timescale_schedules: list[Any] | None = None,
        frozen_biases: str = "forget_input",
        timescale_learning_rate: float | None = None,
        embedding_init_range: float = 0.1,
        vocab_fingerprint: str | None = None,
        pad_token_id: int | None = None,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        use_cache: bool = True,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_sizes = list(hidden_sizes) if isinstance(hidden_sizes, (list, tuple)) else hidden_sizes
        self.embedding_dropout = embedding_dropout
        self.input_dropout = input_dropout
        self.hidden_dropout = hidden_dropout
        self.output_dropout = output_dropout
        self.weight_drop = weight_drop
        self.activation_regularization = activation_regularization
        self.temporal_activation_regularization = temporal_activation_regularization
        self.label_smoothing = label_smoothing
        # As given; validate_mtlstm_fields (below) normalises them to the lists the annotations say.
        self.cell_types = cell_types  # type: ignore[assignment]
        self.timescale_schedules = timescale_schedules  # type: ignore[assignment]
        self.frozen_biases = frozen_biases
        self.timescale_learning_rate = timescale_learning_rate
        self.embedding_init_range = embedding_init_range
        self.vocab_fingerprint = vocab_fingerprint
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.use_cache = use_cache
        self.tie_word_embeddings = tie_word_embeddings
        _reject_misspelled_fields(kwargs)
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)  # type: ignore[call-arg]  # read from **kwargs
        self.validate_mtlstm_fields()

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        """Build from a saved ``config.json`` (what ``from_pretrained`` calls).

        Raises:
            ValueError: if the dict is another model type's (e.g. a GPT-2 folder loaded into
                these classes), or lacks a field that defines the architecture
                (:data:`ARCHITECTURE_FIELDS`): loading it would silently build a network of
                the default shape or a standard LSTM instead of the saved one.
        """
        model_type = config_dict.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ValueError(
                f"this configuration has model_type={model_type!r}, not {cls.model_type!r}: it belongs to another "
                f"kind of model; load it with its own classes (e.g. AutoModelForCausalLM), not with MTLSTM classes."
            )
        missing = [field for field in ARCHITECTURE_FIELDS if field not in config_dict and field not in kwargs]
        if missing:
            raise ValueError(
                f"this mtlstm configuration lacks {missing}, which define the network's shape and timescales; "
                f"a config.json written by save_pretrained has them all (the defaults would silently build "
                f"another model)."
            )
        return super().from_dict(config_dict, **kwargs)

    @property
    def num_layers(self) -> int:
        return len(self.hidden_sizes)

    @property
    def num_hidden_layers(self) -> int:
        """Number of recurrent layers, ``len(hidden_sizes)`` (transformers' standard name; read-only:
        setting it raises :class:`DerivedFieldError`)."""
        return len(self.hidden_sizes)

    @num_hidden_layers.setter
    def num_hidden_layers(self, value: Any) -> None:
        raise _derived_field_error("num_hidden_layers", value)

    @property
    def hidden_size(self) -> int:
        """Width of the last recurrent layer, ``hidden_sizes[-1]`` (transformers' standard name;
        read-only: setting it raises :class:`DerivedFieldError`): the last dimension of
        ``last_hidden_state`` and what the output layer reads (equal to ``embedding_size`` when the
        weights are tied). The other layers' widths are in ``hidden_sizes``."""
        return self.hidden_sizes[-1]

    @hidden_size.setter
    def hidden_size(self, value: Any) -> None:
        raise _derived_field_error("hidden_size", value)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> MTLSTMConfig:
        """A named configuration (keys of :data:`PRESETS`), with field overrides.

        ``paper`` is the paper's architecture with the PTB dropouts, and differs from the
        reference code (HuthLab/multi-timescale-LSTM-LMs) in three ways, each a choice:

        1. layer 2's inverse-gamma grid is endpoint-free, so every unit has a finite
           timescale > 0; the reference's grid includes ``q = 1``, giving its last unit
           ``T = 0`` (it forgets at every step), an artefact rather than a design;
        2. only the forget and input biases of layers 1-2 are frozen (the timescales); the
           reference freezes all four gate biases there, leaving the cell and output biases
           at their random initialisation;
        3. for an odd layer-1 size, our fixed split gives ``T = 3`` to the first
           ``ceil(H/2)`` units, the reference to the first ``floor(H/2)`` (no difference at
           the paper's 1150).

        ``paper-reference`` and ``paper-wikitext2-reference`` are the reference exactly at the
        paper's sizes (grid ``"reference"``, ``frozen_biases="all"``). A fourth difference
        is in training, not the model: the reference's weight-drop wrapper cuts the gradient
        of the recurrent weights, so they never train; ``TrainingSettings.freeze_recurrent_weights``
        reproduces that condition. ``paper-baseline`` is the network without timescales; the
        ``-wikitext2`` variants use the WikiText-2 vocabulary size and dropouts. ``small``
        (the ``mtlstm-train`` default, CPU-sized), ``small-baseline`` and ``tiny`` (smoke
        tests) keep the class's default vocabulary size unless overridden.
        """
        if name not in PRESETS:
            raise ValueError(f"preset: unknown name {name!r}; allowed values: {sorted(PRESETS)}.")
        return cls(**{**copy.deepcopy(PRESETS[name]), **overrides})

    def validate_architecture(self) -> None:  # hook of transformers' own ``config.validate()``
        super().validate_architecture()
        self.validate_mtlstm_fields()

    def validate_mtlstm_fields(self) -> None:
        """Check every field; normalise ``hidden_sizes`` and ``timescale_schedules``.

        Raises:
            ValueError: naming the field and its allowed values.
        """
        for field in ("vocab_size", "embedding_size"):
            check_positive_int(getattr(self, field), field, plain=True)  # written to config.json
        sizes = self.hidden_sizes
        if not isinstance(sizes, list) or not sizes:
            raise ValueError(f"hidden_sizes must be a non-empty list of positive integers, got {sizes!r}.")
        for index, size in enumerate(sizes):
            check_positive_int(size, f"hidden_sizes[{index}]", plain=True)
        for field in DROPOUT_FIELDS:
            value = getattr(self, field)
            if not is_plain_number(value) or not 0.0 <= value < 1.0:
                raise ValueError(f"{field} must be a probability in [0, 1), got {value!r}.")
        drop_connect_levels(self.weight_drop, "weight_drop")
        for field in ("activation_regularization", "temporal_activation_regularization"):
            value = getattr(self, field)
            if not is_plain_number(value) or not value >= 0.0 or math.isinf(value):
                raise ValueError(f"{field} must be a finite number >= 0, got {value!r}.")
        if not is_plain_number(self.label_smoothing) or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be a number in [0, 1) (0 = none), got {self.label_smoothing!r}.")
        if not is_plain_number(self.embedding_init_range) or not 0 < self.embedding_init_range < math.inf:
            raise ValueError(f"embedding_init_range must be a finite number > 0, got {self.embedding_init_range!r}.")
        if self.vocab_fingerprint is not None and not (
            isinstance(self.vocab_fingerprint, str) and self.vocab_fingerprint.startswith("sha256:")
        ):
            raise ValueError(f"vocab_fingerprint must be None or 'sha256:<hex>', got {self.vocab_fingerprint!r}.")
        if not isinstance(self.tie_word_embeddings, bool):
            raise ValueError(f"tie_word_embeddings must be True or False, got {self.tie_word_embeddings!r}.")
        if self.tie_word_embeddings and sizes[-1] != self.embedding_size:
            raise ValueError(
                f"tie_word_embeddings=True needs hidden_sizes[-1] == embedding_size, got "
                f"hidden_sizes[-1]={sizes[-1]} and embedding_size={self.embedding_size}; "
                "allowed: make them equal or set tie_word_embeddings=False."
            )
        if self.frozen_biases not in FROZEN_BIAS_CHOICES:
            raise ValueError(f"frozen_biases must be one of {list(FROZEN_BIAS_CHOICES)}, got {self.frozen_biases!r}.")
        for field in ("pad_token_id", "bos_token_id", "eos_token_id"):
            # Not bounded by vocab_size: resize_token_embeddings may shrink the vocabulary below a
            # special id (as for transformers' own models); the model names such an id when it is
            # fed (MTLSTMModel's input check).
            value = getattr(self, field, None)
            if value is not None and (not is_plain_integer(value) or value < 0):
                raise ValueError(f"{field} must be None or an integer >= 0, got {value!r}.")
        schedules = self.timescale_schedules
        if schedules is None:
            schedules = ["none"] * len(sizes)
        if isinstance(schedules, (str, dict)) or not isinstance(schedules, (list, tuple)):
            raise ValueError(
                "timescale_schedules must be None or a list with one schedule per layer "
                f"(a type in {list(SCHEDULE_RULES)} or a dict with 'type'), got {schedules!r}."
            )
        if len(schedules) != len(sizes):
            raise ValueError(
                f"timescale_schedules must have one entry per layer ({len(sizes)} = len(hidden_sizes)), "
                f"got {len(schedules)}."
            )
        self.timescale_schedules = [
            normalize_schedule(schedule, size, field=f"timescale_schedules[{index}]")
            for index, (schedule, size) in enumerate(zip(schedules, sizes))
        ]
        cell_types = self.cell_types
        if isinstance(cell_types, str):
            cell_types = [cell_types] * len(sizes)
        if not isinstance(cell_types, (list, tuple)) or len(cell_types) != len(sizes):
            raise ValueError(
                f"cell_types must be one name or a list with one per layer ({len(sizes)} = len(hidden_sizes)) "
                f"from {list(CELL_TYPES)}, got {cell_types!r}."
            )
        for index, cell_type in enumerate(cell_types):
            if cell_type not in CELL_TYPES:
                raise ValueError(f"cell_types[{index}] must be one of {list(CELL_TYPES)}, got {cell_type!r}.")
            if not cell_layout(cell_type).has_forget_gate and self.timescale_schedules[index]["type"] != "none":
                raise ValueError(
                    f"timescale_schedules[{index}] must be 'none' because cell_types[{index}]={cell_type!r} has no "
                    "forget gate to carry a timescale; allowed: 'none', or a cell type with a forget gate "
                    f"({[c for c in CELL_TYPES if cell_layout(c).has_forget_gate]})."
                )
        self.cell_types = list(cell_types)
        self._validate_timescale_learning_rate()

    def _validate_timescale_learning_rate(self) -> None:
        rate = self.timescale_learning_rate
        if rate is None:
            return
        if not is_plain_number(rate) or not 0.0 <= rate < math.inf:
            raise ValueError(
                f"timescale_learning_rate must be None or a Python int or float, finite and >= 0 (it is written to "
                f"config.json), got {rate!r}."
            )
        if self.frozen_biases != "none":
            raise ValueError(
                f"timescale_learning_rate={rate!r} needs frozen_biases='none' (with frozen_biases="
                f"{self.frozen_biases!r} the timescale biases are fixed buffers that no optimiser trains); "
                "allowed: frozen_biases='none', or timescale_learning_rate=None."
            )
        if all(schedule["type"] == "none" for schedule in self.timescale_schedules):
            raise ValueError(
                f"timescale_learning_rate={rate!r} is set but no layer has a timescale schedule "
                "(timescale_schedules are all 'none'); allowed: None, or give a layer a schedule."
            )

    def frozen_gates(self, layer_index: int) -> tuple[str, ...]:
        """Names of the gate biases of layer ``layer_index`` that are fixed buffers."""
        schedules = self.timescale_schedules
        if schedules[layer_index]["type"] == "none" or self.frozen_biases == "none":
            return ()
        if self.frozen_biases == "all":
            return cell_layout(self.cell_types[layer_index]).bias_gates
        return ("input_gate", "forget_gate")
