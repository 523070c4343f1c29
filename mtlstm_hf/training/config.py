"""Training configuration: one validated dataclass, and the model presets the trainer knows.

Every field of :class:`TrainingSettings` is checked in one place,
:meth:`TrainingSettings.validate` (called by ``__post_init__``); a bad value raises
``ValueError`` naming the field and its allowed values. Checks that need the data (window
longer than the stream, batch larger than the stream, tokenizer/model mismatch) happen when
the trainer loads the data, before anything is written to disk.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..command_line import check_seed, setting
from ..devices import FLOAT32_PRECISIONS
from ..lazy import deprecated_names
from ..models.mtlstm.checks import check_positive_int, is_plain_integer, is_plain_number
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

MIXED_PRECISION: tuple[str, ...] = ("no", "bf16", "fp16")
"""``accelerate`` mixed precision modes: ``bf16`` (GPUs with bfloat16, CPUs with native bfloat16
instructions) and ``fp16`` (CUDA only, with a gradient scaler). Either runs the output layer and
the loss under autocast; the recurrences always run in float32 (the timescales need it)."""

TRACKERS: tuple[str, ...] = ("auto", "jsonl", "tensorboard", "trackio", "none")
"""``auto``: TensorBoard when installed, plus always the JSON-lines log; ``jsonl``: only the
JSON-lines log ``<output_dir>/logs/metrics.jsonl``; ``tensorboard`` and ``trackio``: that
tracker (through ``accelerate``; the package must be installed) plus the JSON-lines log;
``none``."""

DEFAULT_LEARNING_RATES: dict[str, float] = {"awd": 30.0, "adamw": 1e-3}
"""The learning rate of each optimizer when ``learning_rate`` is ``None``."""

OPTIMIZER_ONLY_FIELDS: dict[str, frozenset[str]] = {
    "awd": frozenset({"nonmono", "use_asgd", "replay_reference_loop"}),
    "adamw": frozenset({"lr_scheduler", "warmup_steps", "adam_beta1", "adam_beta2", "adam_epsilon"}),
}
"""Fields that only one optimizer reads (``build_optimizer``): a run with the other one ignores them."""

BOOKKEEPING_FIELDS: frozenset[str] = frozenset(
    {"output_dir", "overwrite_output_dir", "resume_from", "save_every_steps", "save_every_epochs",
     "keep_checkpoints", "log_every_steps", "tracker", "progress_bar", "cpu", "evaluate_test"}
)  # fmt: skip
"""Fields about where a run writes and how it logs, not about the model it trains (published
model cards leave them out)."""

MODEL_PRESETS: dict[str, dict[str, Any]] = MODEL_CONFIG_PRESETS
"""Model architectures by name, for :attr:`TrainingSettings.preset`. Each is a dict of
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
        "save_every_epochs",
        "keep_checkpoints",
        "log_every_steps",
        "progress_bar",
        "tracker",
        "evaluate_test",
        "overwrite_output_dir",
        "cpu",  # where a run goes on: a resumed run on another device is not bit for bit the same
    }
)
"""Fields that may differ between a checkpoint's run and the run resuming it (budget, logging,
where to write). Every other field changes the training trajectory, so a mismatch is refused."""


@dataclass
class TrainingSettings:
    """Everything that defines a training run of :func:`mtlstm_hf.training.train`.

    Each field's meaning is its ``help`` (``mtlstm-train --help`` prints the same text), grouped
    as data, model, optimisation (the AWD-LSTM recipe, Merity et al. 2018, with Mahto et al.
    2021's defaults), batching, budget and output. Every field is validated by
    :meth:`validate` (called on construction): a bad value raises ``ValueError`` naming it.
    """

    # data
    data: str | None = setting(
        None,
        help="corpus folder (train/valid/test.txt, wiki.*.tokens, ptb.*.txt) or Hub dataset id; default: the embedded WikiText-2 sample",
    )
    dataset_config_name: str | None = setting(
        None, aliases=["--dataset-config"], help="Hub dataset configuration, e.g. wikitext-2-v1"
    )
    text_column: str | None = setting(None, help="Hub dataset text column (default text, else sentence)")
    tokenizer: str | None = setting(
        None,
        help="folder of a saved tokenizer to use instead of building a word-level one from the training split (or reusing init_from's)",
    )
    max_vocab_size: int | None = setting(
        None, help="cap of the built word-level vocabulary, special tokens included (>= 2; default: no cap)"
    )
    tokenizer_convention: str = setting(
        "auto",
        help="how raw text becomes words in the built tokenizer: auto (detected from the training text), wikitext, ptb or whitespace (mtlstm_hf.data.CONVENTIONS); a loaded tokenizer keeps its own",
    )
    # model
    preset: str = setting(
        "small", choices=sorted(MODEL_CONFIG_PRESETS), help="architecture (MTLSTMConfig.from_preset names)"
    )
    model_overrides: dict[str, Any] | str | None = setting(
        None,
        help="JSON object of MTLSTMConfig fields replacing the preset's, e.g. '{\"weight_drop\": 0.5}' (vocab_size always comes from the tokenizer)",
    )
    init_from: str | None = setting(
        None,
        help="start from this saved model folder instead of a fresh initialisation (preset and model_overrides are then ignored)",
    )
    freeze_recurrent_weights: bool = setting(
        False,
        help="keep every layer's recurrent weight (weight_hh) at its initial value, as the reference code's weight-drop wrapper does by cutting its gradient: reruns the published condition (off: the recurrent weights train)",
    )
    replay_reference_loop: bool = setting(
        False,
        help="train as the reference code's loop (AWD-LSTM's main.py) does, step for step, in the three details where it differs from this library's: (1) the learning rate of the last, shorter window of an epoch is scaled by the window length it drew, not the one it used; (2) when one target is left at the end of an epoch it is dropped, not trained as a one-token window; (3) after the switch to averaged SGD (torch.optim.ASGD(t0=0, lambd=0) there) each step but the first uses the previous step's learning rate and the average leaves out the first iterate after the switch. With freeze_recurrent_weights it reruns the published training; off: this library's loop (the mean of every iterate since the switch, each window's own learning rate). Needs optimizer awd and gradient_accumulation_steps 1",
    )
    # optimisation
    optimizer: str = setting(
        "awd",
        choices=OPTIMIZERS,
        help="awd: SGD switching to averaged SGD by the non-monotone trigger (NT-ASGD); adamw: AdamW with lr_scheduler",
    )
    learning_rate: float | None = setting(
        None, aliases=["--lr"], help="learning rate (default 30 for awd, 1e-3 for adamw)"
    )
    weight_decay: float = setting(
        1.2e-6,
        help="L2 added to the gradient (awd) or decoupled decay (adamw) on every trainable tensor (frozen timescale biases are buffers, never decayed)",
    )
    clip_grad_norm: float | None = setting(
        0.25, aliases=["--clip"], help="max global L2 norm of the gradient; 0 or none: no clipping"
    )
    nonmono: int = setting(
        5,
        help="averaging starts when the validation loss is worse than the best of all checks except the last nonmono ones (AWD's nonmono), >= 1",
    )
    use_asgd: bool = setting(True, help="allow the switch to averaged SGD (awd only)")
    lr_scheduler: str = setting(
        "linear",
        choices=LR_SCHEDULERS,
        help="AdamW schedule (transformers.get_scheduler), over epochs x windows per epoch or max_steps",
    )
    warmup_steps: int = setting(0, help="AdamW warm-up steps")
    adam_beta1: float = setting(0.9, help="AdamW beta1, in [0, 1)")
    adam_beta2: float = setting(0.999, help="AdamW beta2, in [0, 1)")
    adam_epsilon: float = setting(1e-8, help="AdamW epsilon, > 0")
    scale_lr_by_seq_len: bool = setting(
        True,
        help="multiply the step's learning rate by seq_len / bptt (AWD, for variable-length windows; with accumulation the mean window length of the step)",
    )
    gradient_accumulation_steps: int = setting(1, help="consecutive BPTT windows per optimizer step")
    mixed_precision: str = setting(
        "no",
        choices=MIXED_PRECISION,
        help="no (float32); bf16: the output layer and loss under bfloat16 autocast (a GPU with bf16, or a CPU with native bf16: AVX512_BF16/AMX; else exit 3); fp16: float16 autocast with a gradient scaler, CUDA only. The recurrences always run in float32 and the parameters stay float32",
    )
    matmul_precision: str = setting(
        "highest",
        choices=FLOAT32_PRECISIONS,
        help="CUDA float32 matrix products: highest (full float32) or high (TensorFloat-32 in the output layer and the cuDNN LSTM: faster on Ampere and later GPUs, about 1e-3 relative error per product); no effect on CPUs",
    )
    # batching
    batch_size: int = setting(
        20, help="global number of contiguous rows of the training stream (AWD batchify), split evenly over processes"
    )
    eval_batch_size: int = setting(10, help="rows of the validation/test streams (also split over processes)")
    bptt: int = setting(70, help="nominal BPTT window length in tokens")
    variable_bptt: bool = setting(
        True,
        help="AWD's random window lengths (bptt w.p. 0.95 else bptt/2, plus N(0, 5) noise, at least 5, at most bptt + 40)",
    )
    # budget
    epochs: int = setting(
        1000, help="passes over the training stream (the library's default is 1000, the paper's budget)"
    )
    max_steps: int | None = setting(
        None,
        help="stop after this many optimizer steps (0 on the command line: no limit, e.g. to lift a resumed run's)",
    )
    max_minutes: float | None = setting(
        None, help="also stop after this many minutes of wall time (the result then depends on the machine's speed)"
    )
    # output
    output_dir: str = setting(
        "outputs/mtlstm-small",
        help="run folder: best_model/ (loadable with from_pretrained), checkpoints/ (resumable training state), logs/",
    )
    overwrite_output_dir: bool = setting(False, help="replace an earlier run in output_dir")
    resume_from: str | None = setting(
        None,
        aliases=["--resume"],
        help="a run folder, its checkpoints/ folder or one checkpoint to resume; its settings are reused, options given override budget and logging ones",
    )
    save_every_steps: int | None = setting(
        None, aliases=["--save-every"], help="also checkpoint every N optimizer steps"
    )
    save_every_epochs: int = setting(
        1,
        help="checkpoint at every Nth epoch end (and always on interruption and at the end of the run); a crash loses at most the work since the last one. A paper-scale checkpoint is about 200 MB: on a GPU, where an epoch takes seconds, checkpoint every 10 or more",
    )
    keep_checkpoints: int = setting(1, help="complete checkpoints to keep (>= 1)")
    log_every_steps: int = setting(10, aliases=["--log-every"], help="training metrics every N optimizer steps")
    tracker: str = setting(
        "auto",
        choices=TRACKERS,
        help="metrics: auto (TensorBoard if installed + JSON lines), jsonl, tensorboard, trackio (each with the JSON lines), none",
    )
    progress_bar: bool = setting(
        True, help="show progress (main process only): a bar on a terminal, plain lines in a log"
    )
    evaluate_test: bool = setting(True, help="score the best model on the test split at the end (when there is one)")
    seed: int = setting(
        1882, help="seeds model initialisation, dropout and the window lengths (an integer from 0 to 2**32 - 1)"
    )
    cpu: bool = setting(
        False, help="run on CPU even when an accelerator is available (needed for several CPU processes: gloo)"
    )

    def __post_init__(self) -> None:
        if isinstance(self.data, str) and self.data and Path(self.data).expanduser().exists():
            # A local corpus is recorded by its absolute path: a relative one ("data/penn") read from
            # another folder (mtlstm-eval's default corpus, mtlstm-push's card) would name nothing,
            # or pass for a Hub dataset id.
            self.data = str(Path(self.data).expanduser().resolve())
        if self.model_overrides is None:
            self.model_overrides = {}
        elif isinstance(self.model_overrides, str):  # from a command line
            try:
                self.model_overrides = json.loads(self.model_overrides)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"model_overrides must be a JSON object of MTLSTMConfig fields, got invalid JSON ({error})."
                ) from None
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
            check_positive_int(value, name, " or None" if allow_none else "", plain=True)

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
            not is_plain_number(self.learning_rate) or not self.learning_rate > 0 or math.isinf(self.learning_rate)
        ):
            raise ValueError(f"learning_rate must be None or a finite number > 0, got {self.learning_rate!r}.")
        if not is_plain_number(self.weight_decay) or not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}.")
        if self.clip_grad_norm is not None and (
            not is_plain_number(self.clip_grad_norm) or not self.clip_grad_norm > 0 or math.isinf(self.clip_grad_norm)
        ):
            raise ValueError(f"clip_grad_norm must be None or a finite number > 0, got {self.clip_grad_norm!r}.")
        positive_int("nonmono")
        boolean("use_asgd")
        choice("lr_scheduler", LR_SCHEDULERS)
        if not is_plain_integer(self.warmup_steps) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}.")
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            if not is_plain_number(value) or not 0 <= value < 1:
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}.")
        if not is_plain_number(self.adam_epsilon) or not self.adam_epsilon > 0:
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
            not is_plain_number(self.max_minutes) or not self.max_minutes > 0 or math.isinf(self.max_minutes)
        ):
            raise ValueError(f"max_minutes must be None or a finite number > 0, got {self.max_minutes!r}.")
        boolean("overwrite_output_dir")
        positive_int("save_every_steps", allow_none=True)
        positive_int("save_every_epochs")
        if self.matmul_precision not in FLOAT32_PRECISIONS:
            raise ValueError(
                f"matmul_precision must be one of {list(FLOAT32_PRECISIONS)}, got {self.matmul_precision!r}."
            )
        positive_int("keep_checkpoints")
        positive_int("log_every_steps")
        choice("tracker", TRACKERS)
        for name in ("progress_bar", "evaluate_test", "cpu", "freeze_recurrent_weights", "replay_reference_loop"):
            boolean(name)
        if self.replay_reference_loop and (self.optimizer != "awd" or self.gradient_accumulation_steps != 1):
            raise ValueError(
                "replay_reference_loop replays AWD-LSTM's loop: it needs optimizer='awd' and gradient_accumulation_steps=1, "
                f"got optimizer={self.optimizer!r} and gradient_accumulation_steps={self.gradient_accumulation_steps!r}."
            )
        check_seed(self.seed)

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable field values."""
        return copy.deepcopy(dataclasses.asdict(self))

    def to_json_file(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON, atomically (:func:`mtlstm_hf.files.write_json_atomic`)."""
        from ..files import write_json_atomic

        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingSettings:
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainingSettings field(s) {unknown}; allowed fields: {sorted(known)}.")
        return cls(**values)

    @classmethod
    def from_json_file(cls, path: str | Path) -> TrainingSettings:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def replace(self, **changes: Any) -> TrainingSettings:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def resume_mismatches(self, saved: TrainingSettings) -> list[str]:
        """Fields that differ from the checkpoint's config and would change the trajectory."""
        mine, theirs = self.to_dict(), saved.to_dict()
        return sorted(name for name in mine if name not in RESUME_OVERRIDABLE_FIELDS and mine[name] != theirs[name])


__getattr__ = deprecated_names(__name__, {"TrainingConfig": "TrainingSettings"})  # the old class name, one version
