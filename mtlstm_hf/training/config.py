"""Training configuration: one validated dataclass, and the model presets the trainer knows.

Every field of :class:`TrainingConfig` is checked in one place,
:meth:`TrainingConfig.validate` (called by ``__post_init__``); a bad value raises
``ValueError`` naming the field and its allowed values. Checks that need the data (window
longer than the stream, batch larger than the stream, tokenizer/model mismatch) happen when
the trainer loads the data, before anything is written to disk.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models.mtlstm.presets import PRESETS as MODEL_CONFIG_PRESETS

OPTIMIZERS: tuple[str, ...] = ("awd", "adamw")
"""``awd``: SGD + non-monotonically triggered averaging (NT-ASGD, Merity et al. 2018);
``adamw``: AdamW with a ``transformers.get_scheduler`` learning-rate schedule."""

LR_SCHEDULERS: tuple[str, ...] = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
)
"""Schedules of ``transformers.get_scheduler`` that need no extra arguments (AdamW only)."""

MIXED_PRECISION: tuple[str, ...] = ("no", "bf16")
"""``accelerate`` mixed precision modes supported here (fp16 does not run on CPU)."""

TRACKERS: tuple[str, ...] = ("auto", "jsonl", "tensorboard", "trackio", "none")
"""``auto``: TensorBoard when installed, plus always the JSON-lines log; ``jsonl``: only the
JSON-lines log ``<output_dir>/logs/metrics.jsonl``; ``tensorboard`` and ``trackio``: that
tracker (through ``accelerate``; the package must be installed) plus the JSON-lines log;
``none``."""

DEFAULT_LEARNING_RATES: dict[str, float] = {"awd": 30.0, "adamw": 1e-3}

MODEL_PRESETS: dict[str, dict[str, Any]] = MODEL_CONFIG_PRESETS
"""Model architectures by name, for :attr:`TrainingConfig.preset`. Each is a dict of
:class:`~mtlstm_hf.MTLSTMConfig` fields; ``vocab_size`` and the special token ids come from
the tokenizer."""

RESUME_OVERRIDABLE_FIELDS: frozenset[str] = frozenset(
    {
        "epochs",
        "max_steps",
        "max_minutes",
        "output_dir",
        "resume_from",
        "save_every_steps",
        "keep_checkpoints",
        "log_every_steps",
        "progress_bar",
        "tracker",
        "evaluate_test",
        "overwrite_output_dir",
    }
)
"""Fields that may differ between a checkpoint's run and the run resuming it (budget, logging,
where to write). Every other field changes the training trajectory, so a mismatch is refused."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class TrainingConfig:
    """Everything that defines a training run of :func:`mtlstm_hf.training.train`.

    Data:
        data: a local corpus folder (``train.txt``/``valid.txt``/``test.txt`` or WikiText /
            PTB file names) or a Hub dataset id; ``None`` = the embedded WikiText-2 sample.
        dataset_config_name: Hub dataset configuration (e.g. ``wikitext-2-v1``).
        text_column: Hub dataset text column (default ``text``, else ``sentence``).
        tokenizer: folder of an existing tokenizer to use; ``None`` = build a word-level
            tokenizer from the training split (or reuse ``init_from``'s tokenizer).
        max_vocab_size: cap of the built word-level vocabulary (special tokens included).
        tokenizer_convention: how raw text becomes words in the built tokenizer: ``auto``
            (detected from the training text), or one of :data:`mtlstm_hf.data.CONVENTIONS`
            (``wikitext``, ``ptb``, ``whitespace``); see :mod:`mtlstm_hf.data.tokenizer`. A
            loaded tokenizer (``tokenizer``, ``init_from``, a resumed run) keeps its own, and
            an explicit different value is refused.

    Model:
        preset: a key of :data:`MODEL_PRESETS` (``small``, ``small-baseline``, ``tiny``,
            ``paper``, ``paper-baseline``, ``paper-wikitext2``, ...).
        model_overrides: :class:`~mtlstm_hf.MTLSTMConfig` fields replacing the preset's.
        init_from: a saved model folder to start from instead of a fresh initialisation
            (``preset``/``model_overrides`` are then ignored).

    Optimisation (AWD-LSTM recipe, Merity et al. 2018; Mahto et al. 2021 defaults):
        optimizer: ``awd`` (SGD, switching to averaged SGD by the non-monotone trigger) or
            ``adamw`` (AdamW + ``lr_scheduler``).
        learning_rate: ``None`` = 30 for ``awd``, 1e-3 for ``adamw``.
        weight_decay: L2 (``awd``, added to the gradient) / decoupled decay (``adamw``), on
            every trainable tensor (frozen timescale biases are buffers, never decayed).
        clip_grad_norm: max global L2 norm of the gradient (``None`` = no clipping).
        nonmono: the averaging starts when the validation loss is worse than the best of all
            checks except the last ``nonmono`` ones (AWD's ``nonmono``), ``>= 1``.
        use_asgd: allow the switch to averaged SGD (``awd`` only).
        lr_scheduler, warmup_steps: the AdamW schedule (``transformers.get_scheduler``); the
            schedule length is ``epochs * windows per epoch`` or ``max_steps`` when set.
        adam_beta1, adam_beta2, adam_epsilon: AdamW constants.
        scale_lr_by_seq_len: multiply the step's learning rate by ``seq_len / bptt`` (AWD, for
            variable-length windows; with accumulation the mean window length of the step).
        gradient_accumulation_steps: consecutive BPTT windows per optimizer step.
        mixed_precision: ``no`` or ``bf16`` (``accelerate`` autocast; parameters stay fp32).

    Batching:
        batch_size: global number of contiguous rows of the training stream (AWD
            ``batchify``); split evenly over processes, so it must divide by their number.
        eval_batch_size: rows of the validation/test streams (also split over processes).
        bptt: nominal BPTT window length in tokens.
        variable_bptt: AWD's random window lengths (``bptt`` w.p. 0.95 else ``bptt/2``, plus
            N(0, 5) noise, at least 5, at most ``bptt + 40``).

    Budget:
        epochs: passes over the training stream.
        max_steps: stop after this many optimizer steps (``None`` = no limit).
        max_minutes: stop after this many minutes of wall time (``None`` = no limit).

    Output:
        output_dir: run folder: ``best_model/`` (loadable with ``from_pretrained``),
            ``checkpoints/`` (resumable training state), ``logs/``.
        overwrite_output_dir: replace an earlier run in ``output_dir`` (else refuse).
        resume_from: a run folder, its ``checkpoints/`` folder or one checkpoint to resume.
        save_every_steps: also checkpoint every N optimizer steps (``None`` = only at epoch
            ends, on interruption and at the end).
        keep_checkpoints: how many complete checkpoints to keep (>= 1).
        log_every_steps: training metrics every N optimizer steps.
        tracker: see :data:`TRACKERS`.
        progress_bar: show progress (main process only): a bar on a terminal, plain lines in a log.
        evaluate_test: score the best model on the test split at the end (when there is one).
        seed: seeds model initialisation, dropout and the window lengths.
        cpu: force CPU even when an accelerator is available.
    """

    # data
    data: str | None = None
    dataset_config_name: str | None = None
    text_column: str | None = None
    tokenizer: str | None = None
    max_vocab_size: int | None = None
    tokenizer_convention: str = "auto"
    # model
    preset: str = "small"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    # optimisation
    optimizer: str = "awd"
    learning_rate: float | None = None
    weight_decay: float = 1.2e-6
    clip_grad_norm: float | None = 0.25
    nonmono: int = 5
    use_asgd: bool = True
    lr_scheduler: str = "linear"
    warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    scale_lr_by_seq_len: bool = True
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    # batching
    batch_size: int = 20
    eval_batch_size: int = 10
    bptt: int = 70
    variable_bptt: bool = True
    # budget
    epochs: int = 1000
    max_steps: int | None = None
    max_minutes: float | None = None
    # output
    output_dir: str = "outputs/mtlstm-small"
    overwrite_output_dir: bool = False
    resume_from: str | None = None
    save_every_steps: int | None = None
    keep_checkpoints: int = 1
    log_every_steps: int = 10
    tracker: str = "auto"
    progress_bar: bool = True
    evaluate_test: bool = True
    seed: int = 1882
    cpu: bool = False

    def __post_init__(self) -> None:
        self.validate()

    @property
    def effective_learning_rate(self) -> float:
        """``learning_rate``, or the optimizer's default when it is ``None``."""
        return DEFAULT_LEARNING_RATES[self.optimizer] if self.learning_rate is None else float(self.learning_rate)

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: naming the field and its allowed values.
        """

        def positive_int(name: str, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if not _is_int(value) or value <= 0:
                extra = " or None" if allow_none else ""
                raise ValueError(f"{name} must be a positive integer{extra}, got {value!r}.")

        def choice(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}.")

        def boolean(name: str) -> None:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")

        def optional_string(name: str) -> None:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name} must be None or a non-empty string, got {value!r}.")

        for name in ("data", "dataset_config_name", "text_column", "tokenizer", "init_from", "resume_from"):
            optional_string(name)
        if not isinstance(self.output_dir, str) or not self.output_dir.strip():
            raise ValueError(f"output_dir must be a non-empty path string, got {self.output_dir!r}.")
        positive_int("max_vocab_size", allow_none=True)
        if not isinstance(self.tokenizer_convention, str) or not self.tokenizer_convention:
            # The allowed names are checked where the tokenizer is built (mtlstm_hf.data), before
            # anything is written; importing them here would slow every command line down.
            raise ValueError(f"tokenizer_convention must be a convention name, got {self.tokenizer_convention!r}.")
        if self.max_vocab_size is not None and self.max_vocab_size < 2:
            raise ValueError(f"max_vocab_size must be None or >= 2 (for <unk> and <eos>), got {self.max_vocab_size!r}.")
        choice("preset", tuple(MODEL_PRESETS))
        if not isinstance(self.model_overrides, dict):
            raise ValueError(f"model_overrides must be a dict of MTLSTMConfig fields, got {self.model_overrides!r}.")
        if "vocab_size" in self.model_overrides:
            raise ValueError("model_overrides may not set vocab_size: it always comes from the tokenizer.")
        choice("optimizer", OPTIMIZERS)
        if self.learning_rate is not None and (
            not _is_number(self.learning_rate) or not self.learning_rate > 0 or math.isinf(self.learning_rate)
        ):
            raise ValueError(f"learning_rate must be None or a finite number > 0, got {self.learning_rate!r}.")
        if not _is_number(self.weight_decay) or not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}.")
        if self.clip_grad_norm is not None and (
            not _is_number(self.clip_grad_norm) or not self.clip_grad_norm > 0 or math.isinf(self.clip_grad_norm)
        ):
            raise ValueError(f"clip_grad_norm must be None or a finite number > 0, got {self.clip_grad_norm!r}.")
        positive_int("nonmono")
        boolean("use_asgd")
        choice("lr_scheduler", LR_SCHEDULERS)
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}.")
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < 1:
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}.")
        if not _is_number(self.adam_epsilon) or not self.adam_epsilon > 0:
            raise ValueError(f"adam_epsilon must be a number > 0, got {self.adam_epsilon!r}.")
        boolean("scale_lr_by_seq_len")
        positive_int("gradient_accumulation_steps")
        choice("mixed_precision", MIXED_PRECISION)
        positive_int("batch_size")
        positive_int("eval_batch_size")
        positive_int("bptt")
        boolean("variable_bptt")
        positive_int("epochs")
        positive_int("max_steps", allow_none=True)
        if self.max_minutes is not None and (
            not _is_number(self.max_minutes) or not self.max_minutes > 0 or math.isinf(self.max_minutes)
        ):
            raise ValueError(f"max_minutes must be None or a finite number > 0, got {self.max_minutes!r}.")
        boolean("overwrite_output_dir")
        positive_int("save_every_steps", allow_none=True)
        positive_int("keep_checkpoints")
        positive_int("log_every_steps")
        choice("tracker", TRACKERS)
        for name in ("progress_bar", "evaluate_test", "cpu"):
            boolean(name)
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}.")

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable field values."""
        return copy.deepcopy(dataclasses.asdict(self))

    def to_json_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainingConfig":
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainingConfig field(s) {unknown}; allowed fields: {sorted(known)}.")
        return cls(**values)

    @classmethod
    def from_json_file(cls, path: str | Path) -> "TrainingConfig":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def replace(self, **changes: Any) -> "TrainingConfig":
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def resume_mismatches(self, saved: "TrainingConfig") -> list[str]:
        """Fields that differ from the checkpoint's config and would change the trajectory."""
        mine, theirs = self.to_dict(), saved.to_dict()
        return sorted(
            name
            for name in mine
            if name not in RESUME_OVERRIDABLE_FIELDS and mine[name] != theirs[name]
        )
