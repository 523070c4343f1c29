"""The library training loop: AWD-LSTM recipe (or AdamW) on ``accelerate``, exactly resumable.

What one optimizer step does (Merity et al. 2018, as in Mahto et al. 2021's reference code):

1. take the next ``gradient_accumulation_steps`` BPTT windows ``(B, L)`` of this process's rows
   of the training stream (AWD ``batchify`` + variable window lengths);
2. forward each window from the carried recurrent state (detached: truncated BPTT) with
   ``shift_labels`` (targets already aligned); the model adds AR/TAR to ``loss`` in training
   mode; backward ``loss / windows`` (gradients all-reduced across processes on the last one);
3. clip the global gradient norm (0.25); a non-finite norm or loss stops training here,
   before the parameters change, with :class:`NonFiniteLossError`;
4. SGD (or AdamW) step with the learning rate scaled by ``mean(L) / bptt``;
5. when averaged SGD is active, update the running average of the parameters.

After each epoch: validation loss with the state carried over the whole stream
(:func:`mtlstm_hf.evaluation.token_log_probs`), the non-monotone trigger, the best model saved
with ``save_pretrained``, and a checkpoint.

**NT-ASGD.** Instead of swapping in ``torch.optim.ASGD(t0=0, lambd=0)`` as AWD does, the SGD
optimizer keeps running and the loop keeps an explicit running mean of the parameters over the
steps after the switch: ``avg_n = avg_{n-1} + (p_n - avg_{n-1}) / n``. With ``lambd=0`` ASGD's
parameter update *is* plain SGD, so this is the same algorithm, minus two quirks of
``torch.optim.ASGD``: it applies the previous step's learning rate (its ``eta`` lags by one
step, which breaks the per-window ``seq_len / bptt`` scaling) and its average restarts at the
second step (``mu`` is 1 for the first two steps). Evaluation and the saved best model use the
averaged parameters, as in AWD.

**Processes.** Every process runs this same code. The global batch is the ``batch_size`` rows of
the stream; process ``r`` of ``P`` takes rows ``[r B/P, (r+1) B/P)``, and all processes draw the
same window lengths (same seed). Each process's loss is the mean over its rows; gradients are
averaged by DDP, so the update equals one process on all ``B`` rows (AR/TAR are means too)
up to the floating-point order of the all-reduce sum. Dropout masks are drawn per process, so
with dropout the runs are statistically, not bitwise, equivalent.

**Exact resume.** Checkpoints are taken only between optimizer steps and hold everything the
next step depends on: parameters, optimizer and RNG states (``accelerator.save_state``), the
window iterator's position and RNG, the carried recurrent state of every process, the
averaged-SGD averages, the schedule, counters and the validation history.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from safetensors import safe_open
from transformers.dynamic_module_utils import custom_object_save

from ..data import (
    BPTTIterator,
    batchify,
    build_word_tokenizer,
    check_vocabulary_fingerprint,
    get_word_convention,
    load_corpus,
    sample_corpus_dir,
    split_to_stream,
    vocabulary_fingerprint,
)
from ..data.corpus import get_split
from ..evaluation import token_log_probs
from ..evaluation.checkpoint import load_model_strictly
from ..models.mtlstm import MTLSTMConfig, MTLSTMForCausalLM, MTLSTMState
from ..progress import no_transformers_progress_bar
from ..progress import progress as progress_bar
from . import checkpoint as ckpt
from .config import MODEL_PRESETS, TrainingConfig
from .tracking import JSONLinesTracker, tensorboard_available, trackio_available

StepCallback = Callable[["LanguageModelTrainer"], "bool | None"]
"""Called on every process after each optimizer step; returning True asks the run to stop
(checkpoint, then return with status ``"stopped"``), like SIGINT does."""


class NonFiniteLossError(RuntimeError):
    """The training loss or gradient norm became NaN or infinite; the parameters were not updated."""


@dataclass
class TrainingProgress:
    """Counters and history of a run (JSON in every checkpoint's ``training_state.json``).

    Attributes:
        epoch: completed epochs.
        global_step: optimizer steps taken.
        tokens_seen: target tokens trained on, all processes together.
        val_history: epoch-end validation losses (nats/token), the non-monotone trigger's input.
        best_val_loss / best_val_step: the best validation loss and when (``best_model/``).
        last_val_loss: the latest validation loss.
        asgd_active / asgd_start_step / asgd_num_averaged: averaged-SGD state.
        train_seconds: wall time spent training, summed over resumed sessions.
    """

    epoch: int = 0
    global_step: int = 0
    tokens_seen: int = 0
    val_history: list[float] = field(default_factory=list)
    best_val_loss: float | None = None
    best_val_step: int | None = None
    last_val_loss: float | None = None
    last_val_step: int | None = None
    asgd_active: bool = False
    asgd_start_step: int | None = None
    asgd_num_averaged: int = 0
    train_seconds: float = 0.0


@dataclass
class TrainingResult:
    """What :func:`train` returns.

    Attributes:
        status: ``completed`` (all epochs), ``max_steps``, ``time_limit``, ``interrupted``
            (SIGINT/SIGTERM) or ``stopped`` (a callback asked).
        best_val_perplexity / last_val_perplexity / test_perplexity: ``exp`` of the mean
            token cross-entropy (``None`` when not evaluated).
        best_model_dir: loadable with ``AutoModelForCausalLM.from_pretrained`` (``None`` if
            no evaluation happened yet).
        last_checkpoint: resume from here (or from ``output_dir``).
        planned_steps: optimizer steps the budget of epochs / ``max_steps`` asks for (a
            ``time_limit`` or ``interrupted`` run did fewer: ``progress.global_step``).
        eval_batch_size: rows of the validation and test evaluations (each row scored from
            a zero state; ``mtlstm-eval`` defaults to 1 row, the state carried throughout).
    """

    status: str
    progress: TrainingProgress
    output_dir: Path
    best_model_dir: Path | None
    last_checkpoint: Path | None
    best_val_perplexity: float | None
    last_val_perplexity: float | None
    test_perplexity: float | None
    planned_steps: int | None = None
    eval_batch_size: int | None = None


class PhaseTimer:
    """Wall time of the phases of optimizer steps, in seconds, for benchmarks.

    Phases: ``forward`` (model call and loss), ``backward``, ``optimizer`` (clipping, step,
    zero_grad, parameter averaging); ``step`` is the whole optimizer step as the loop sees it,
    from fetching the windows to the end of its bookkeeping. ``overhead_fraction`` is the part
    of step time outside the three phases: fetching windows, counters, the stop check,
    logging, the progress bar, callbacks. The first ``warmup_steps`` steps are not counted.
    """

    PHASES: tuple[str, ...] = ("forward", "backward", "optimizer")

    def __init__(self, warmup_steps: int = 0) -> None:
        self.warmup_steps = warmup_steps
        self.seconds: dict[str, float] = dict.fromkeys(self.PHASES + ("step",), 0.0)
        self.steps = 0  # counted steps
        self.tokens = 0  # global target tokens of the counted steps
        self._seen = 0
        self._current: dict[str, float] = dict.fromkeys(self.PHASES, 0.0)

    def add(self, phase: str, seconds: float) -> None:
        self._current[phase] += seconds

    def end_step(self, step_seconds: float, tokens: int) -> None:
        if self._seen >= self.warmup_steps:
            for phase, seconds in self._current.items():
                self.seconds[phase] += seconds
            self.seconds["step"] += step_seconds
            self.steps += 1
            self.tokens += tokens
        self._seen += 1
        self._current = dict.fromkeys(self.PHASES, 0.0)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds["step"] if self.seconds["step"] else 0.0

    @property
    def overhead_fraction(self) -> float:
        step = self.seconds["step"]
        return 0.0 if step == 0 else (step - sum(self.seconds[p] for p in self.PHASES)) / step


def perplexity(loss: float | None) -> float | None:
    """``exp(loss)`` for a mean cross-entropy in nats (``inf`` on overflow)."""
    if loss is None:
        return None
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def nonmonotone_trigger(history: Sequence[float], val_loss: float, nonmono: int) -> bool:
    """AWD-LSTM's non-monotone trigger for the switch to averaged SGD (Merity et al. 2018).

    True when there are more than ``nonmono`` earlier checks and ``val_loss`` is worse than the
    best of them all except the last ``nonmono``: the loss has not beaten that old best within
    ``nonmono`` checks. (``len(history) > nonmono and val_loss > min(history[:-nonmono])``.)

    Args:
        history: earlier validation losses, oldest first (not including ``val_loss``).
        val_loss: the new validation loss.
        nonmono: the window, ``>= 1``.
    """
    return len(history) > nonmono and val_loss > min(history[:-nonmono])


def make_accelerator(config: TrainingConfig, **kwargs: Any) -> Accelerator:
    """The ``Accelerator`` for a run: device, mixed precision and trackers from ``config``.

    Launch several processes with ``torchrun --nproc_per_node N`` or ``accelerate launch
    --multi_gpu --num_processes N``; on CPU add ``cpu=True`` (``--cpu``) or
    ``ACCELERATE_USE_CPU=1`` so that they form a gloo process group.
    """
    output_dir = Path(config.output_dir)
    trackers: list[Any] = []
    if config.tracker != "none":
        trackers.append(JSONLinesTracker("mtlstm_training", output_dir / ckpt.LOGS_DIRNAME))
    for name, available in (("tensorboard", tensorboard_available), ("trackio", trackio_available)):
        if config.tracker == name and not available():
            raise ValueError(
                f"tracker={name!r} needs the {name} package: pip install {name}, or use tracker='jsonl'."
            )
    if config.tracker in ("auto", "tensorboard") and tensorboard_available():
        trackers.append("tensorboard")
    if config.tracker == "trackio":
        from accelerate.tracking import TrackioTracker

        trackers.append(TrackioTracker("mtlstm_training"))
    project = ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / ckpt.LOGS_DIRNAME))
    return Accelerator(
        cpu=config.cpu,
        mixed_precision=config.mixed_precision,
        log_with=trackers or None,
        project_config=project,
        **kwargs,
    )


_MODEL_CONFIG_FIELDS = frozenset(inspect.signature(MTLSTMConfig.__init__).parameters) - {"self", "kwargs"}


def build_model_config(config: TrainingConfig, tokenizer: Any) -> MTLSTMConfig:
    """The preset's architecture + ``model_overrides``, with the tokenizer's vocabulary size
    and special tokens."""
    unknown = sorted(set(config.model_overrides) - _MODEL_CONFIG_FIELDS)
    if unknown:
        raise ValueError(f"model_overrides: unknown MTLSTMConfig field(s) {unknown}; allowed: {sorted(_MODEL_CONFIG_FIELDS)}.")
    fields = copy.deepcopy(MODEL_PRESETS[config.preset])
    fields.update(copy.deepcopy(config.model_overrides))
    fields.update(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        vocab_fingerprint=vocabulary_fingerprint(tokenizer),
    )
    return MTLSTMConfig(**fields)


def _rows_of_process(total_rows: int, num_processes: int, process_index: int, field_name: str) -> slice:
    """The contiguous block of rows process ``process_index`` owns."""
    if total_rows % num_processes:
        raise ValueError(
            f"{field_name}={total_rows} must be divisible by the number of processes ({num_processes}), "
            "so that every process gets the same rows of the global batch."
        )
    per_process = total_rows // num_processes
    return slice(process_index * per_process, (process_index + 1) * per_process)


def _load_tokenizer(path: str | Path, what: str) -> Any:
    from transformers import AutoTokenizer

    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: tokenizer folder {str(path)!r} does not exist.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as error:
        raise ValueError(f"{what}: no loadable tokenizer in {str(path)!r} ({error}).") from None
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{what}: the tokenizer in {str(path)!r} has no eos_token; it ends every corpus line.")
    return tokenizer


@contextlib.contextmanager
def _quiet_logger(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Raise a logger's level for a moment (expected, repeated warnings of a dependency)."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


class LanguageModelTrainer:
    """Trains an :class:`~mtlstm_hf.MTLSTMForCausalLM` on a token stream; see the module docstring.

    Construction loads and checks everything (data, tokenizer, model, checkpoint to resume)
    and writes nothing, so bad input fails before any file exists. :meth:`run` trains.

    Args:
        config: the run's settings.
        accelerator: default :func:`make_accelerator(config) <make_accelerator>`. Either way,
            call ``trainer.accelerator.end_training()`` when done (closes the trackers, ends
            the process group); :func:`train` does it for the accelerator it makes.
        callbacks: see :data:`StepCallback`.
        phase_timer: collect per-phase step times (benchmarks).
    """

    def __init__(
        self,
        config: TrainingConfig,
        accelerator: Accelerator | None = None,
        callbacks: Sequence[StepCallback] = (),
        phase_timer: PhaseTimer | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.accelerator = make_accelerator(config) if accelerator is None else accelerator
        self.callbacks = list(callbacks)
        self.phase_timer = phase_timer
        self.output_dir = Path(config.output_dir).expanduser()
        self.checkpoints_dir = self.output_dir / ckpt.CHECKPOINTS_DIRNAME
        self.best_model_dir = self.output_dir / ckpt.BEST_MODEL_DIRNAME
        self.progress = TrainingProgress()
        self.carried_state: MTLSTMState | None = None
        self.asgd_averages: list[torch.Tensor] | None = None
        self.last_checkpoint: Path | None = None
        self.test_loss: float | None = None
        self._stop_signal: int | None = None
        self._dirty = True  # progress not yet in a checkpoint
        self.last_grad_norm = math.nan
        self._previous_handlers: dict[int, Any] = {}

        resume_dir = self._check_resume_and_output()
        self._load_data_and_tokenizer(resume_dir)
        self._build_model_and_optimizer(resume_dir)
        if resume_dir is not None:
            self._load_checkpoint(resume_dir)

    # --- setup (no writes) ------------------------------------------------------------------

    def _check_resume_and_output(self) -> Path | None:
        config = self.config
        if config.resume_from is not None:
            resume_dir = ckpt.resolve_checkpoint(config.resume_from)
            saved = TrainingConfig.from_json_file(resume_dir / ckpt.TRAINING_CONFIG_FILENAME)
            mismatches = config.resume_mismatches(saved)
            if mismatches:
                details = ", ".join(f"{name}: {getattr(saved, name)!r} -> {getattr(config, name)!r}" for name in mismatches)
                raise ValueError(
                    f"resume_from: the checkpoint was trained with different settings ({details}); "
                    "these change the training trajectory, so resuming with them is refused."
                )
            state = ckpt.read_checkpoint_state(resume_dir)
            if state.get("num_processes") != self.accelerator.num_processes:
                raise ValueError(
                    f"resume_from: the checkpoint was written by {state.get('num_processes')} process(es); "
                    f"resume with the same number (this run has {self.accelerator.num_processes})."
                )
            return resume_dir
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise ValueError(f"output_dir: {str(self.output_dir)!r} exists and is not a folder.")
        if ckpt.has_training_run(self.output_dir) and not config.overwrite_output_dir:
            raise ValueError(
                f"output_dir: {str(self.output_dir)!r} already holds a training run; resume it with "
                f"resume_from={str(self.output_dir)!r} (--resume), or set overwrite_output_dir=True "
                "(--overwrite-output-dir), or choose another output_dir."
            )
        return None

    def _load_data_and_tokenizer(self, resume_dir: Path | None) -> None:
        config, accelerator = self.config, self.accelerator
        source = config.data if config.data is not None else str(sample_corpus_dir())
        with accelerator.main_process_first():  # a Hub dataset is downloaded once
            corpus = load_corpus(source, config.dataset_config_name, text_column=config.text_column)
        for split in ("train", "validation"):
            if split not in corpus:
                raise ValueError(f"data: the corpus {source!r} has no {split!r} split (it has {list(corpus)}).")

        if resume_dir is not None:
            self.tokenizer = _load_tokenizer(resume_dir, "resume_from")
        elif config.tokenizer is not None:
            self.tokenizer = _load_tokenizer(config.tokenizer, "tokenizer")
        elif config.init_from is not None and (Path(config.init_from) / "tokenizer_config.json").is_file():
            self.tokenizer = _load_tokenizer(config.init_from, "init_from")
        else:
            try:
                self.tokenizer = build_word_tokenizer(
                    get_split(corpus, "train"), max_vocab_size=config.max_vocab_size, convention=config.tokenizer_convention
                )
            except ValueError as error:
                raise ValueError(f"tokenizer_convention: {error}") from None
        convention = get_word_convention(self.tokenizer)
        if config.tokenizer_convention not in ("auto", convention):
            raise ValueError(
                f"tokenizer_convention={config.tokenizer_convention!r}, but the loaded tokenizer uses {convention!r}; "
                "a loaded tokenizer keeps its convention (leave tokenizer_convention at 'auto')."
            )
        accelerator.print(f"tokenizer: {len(self.tokenizer)} words, word convention {convention!r}")

        train_stream = split_to_stream(corpus, "train", self.tokenizer)
        if not bool((train_stream != self.tokenizer.eos_token_id).any()):
            raise ValueError(
                f"data: the training split of {source!r} has no words ({train_stream.numel()} tokens, all line "
                "ends: only empty lines); there is nothing to learn from."
            )
        valid_stream = split_to_stream(corpus, "validation", self.tokenizer)
        self.test_stream = (
            split_to_stream(corpus, "test", self.tokenizer) if config.evaluate_test and "test" in corpus else None
        )
        num_processes, rank = accelerator.num_processes, accelerator.process_index

        # Training rows: AWD batchify over the whole stream, then this process's block of rows.
        if config.batch_size > train_stream.numel():
            raise ValueError(
                f"batch_size={config.batch_size} is larger than the training stream ({train_stream.numel()} tokens); "
                "every row needs tokens: lower --batch-size."
            )
        global_rows = batchify(train_stream, config.batch_size)
        # On the training device once, so that windows are slices there (no copy per step).
        self.local_rows = global_rows[_rows_of_process(config.batch_size, num_processes, rank, "batch_size")].to(
            accelerator.device
        )
        row_length = global_rows.shape[1]
        if row_length < 2 or config.bptt > row_length - 1:
            raise ValueError(
                f"bptt={config.bptt} is longer than the data: with batch_size={config.batch_size} each row of the "
                f"training stream ({train_stream.numel()} tokens) has {row_length} tokens, so at most "
                f"{max(row_length - 1, 0)} (input, target) steps; lower --bptt or --batch-size."
            )
        self.iterator = BPTTIterator(
            self.local_rows,
            config.bptt,
            variable_length=config.variable_bptt,
            generator=random.Random(config.seed),  # same seed on every process: same window lengths
        )
        self.valid_stream = self._eval_part(valid_stream, "validation")
        if self.test_stream is not None:
            self.test_stream = self._eval_part(self.test_stream, "test")

    def _eval_part(self, stream: torch.Tensor, split: str) -> torch.Tensor:
        """This process's contiguous share of an evaluation stream: the pieces of
        ``token_log_probs(stream, eval_batch_size)`` it scores (see :meth:`evaluate`)."""
        rows, num_processes = self.config.eval_batch_size, self.accelerator.num_processes
        piece = stream.numel() // rows
        if piece < 2:
            raise ValueError(
                f"eval_batch_size={rows} is too large for the {split} stream ({stream.numel()} tokens): "
                "each row needs at least 2 tokens; lower --eval-batch-size."
            )
        block = _rows_of_process(rows, num_processes, self.accelerator.process_index, "eval_batch_size")
        return stream[block.start * piece : block.stop * piece]

    def _build_model_and_optimizer(self, resume_dir: Path | None) -> None:
        config, accelerator = self.config, self.accelerator
        set_seed(config.seed)  # model initialisation; a resumed run restores every RNG afterwards
        if resume_dir is not None:
            model_config = MTLSTMConfig.from_pretrained(str(resume_dir))
            model = MTLSTMForCausalLM(model_config)
        elif config.init_from is not None:
            init_dir = Path(config.init_from).expanduser()
            if not (init_dir / "config.json").is_file():
                raise FileNotFoundError(f"init_from: {str(init_dir)!r} is not a saved model folder (no config.json).")
            model = load_model_strictly(init_dir, MTLSTMForCausalLM)
        else:
            model = MTLSTMForCausalLM(build_model_config(config, self.tokenizer))
        check_vocabulary_fingerprint(model.config.vocab_fingerprint, self.tokenizer, "init_from" if config.init_from else "resume_from")
        if len(self.tokenizer) != model.config.vocab_size:
            raise ValueError(
                f"tokenizer: its vocabulary has {len(self.tokenizer)} entries but the model's vocab_size is "
                f"{model.config.vocab_size}; use the tokenizer the model was trained with."
            )
        self._require_precision_support(model)
        model.train()
        # Dropout from here on: one stream per process, or rows on different processes would
        # share masks (the model itself is the same everywhere: DDP broadcasts rank 0's weights).
        set_seed(config.seed + accelerator.process_index)
        parameters = [p for p in model.parameters() if p.requires_grad]
        lr = config.effective_learning_rate
        if config.optimizer == "awd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(parameters, lr=lr, weight_decay=config.weight_decay)
        else:
            optimizer = torch.optim.AdamW(
                parameters,
                lr=lr,
                betas=(config.adam_beta1, config.adam_beta2),
                eps=config.adam_epsilon,
                weight_decay=config.weight_decay,
            )
        self.scheduler = None
        if config.optimizer == "adamw":
            from transformers import get_scheduler

            # Not passed to accelerator.prepare: its wrapper steps the schedule once per process,
            # which would make the schedule depend on the number of processes.
            self.scheduler = get_scheduler(
                config.lr_scheduler,
                optimizer,
                num_warmup_steps=config.warmup_steps,
                num_training_steps=self.planned_steps(),
            )
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.unwrapped_model: MTLSTMForCausalLM = accelerator.unwrap_model(self.model)
        self.named_trainable = [(n, p) for n, p in self.unwrapped_model.named_parameters() if p.requires_grad]

    def _require_precision_support(self, model: MTLSTMForCausalLM) -> None:
        """Before training, run one token through the model under this run's autocast, so a
        precision this machine cannot run (bf16 LSTM on a CPU without native bf16) stops the
        run with :class:`UnsupportedPrecisionError` and nothing written. No dropout, no RNG."""
        if self.config.mixed_precision == "no" or self.accelerator.device.type != "cpu":
            return
        model.eval()
        with torch.no_grad(), self.accelerator.autocast():
            model(torch.zeros(1, 1, dtype=torch.long, device=self.accelerator.device), use_cache=False)

    def planned_steps(self) -> int:
        """Optimizer steps of the whole run: ``max_steps`` or epochs x (nominal) steps per epoch."""
        per_epoch = math.ceil(self.iterator.nominal_num_windows / self.config.gradient_accumulation_steps)
        total = self.config.epochs * per_epoch
        return min(total, self.config.max_steps) if self.config.max_steps is not None else total

    # --- checkpoints ----------------------------------------------------------------------------

    def _verify_checkpoint_weights(self, checkpoint_dir: Path) -> None:
        """Refuse a checkpoint whose weights file is unreadable or does not hold exactly this
        model's tensors (accelerate's loader would skip what is missing)."""
        path = checkpoint_dir / "model.safetensors"
        try:
            with safe_open(str(path), framework="pt") as weights:
                shapes = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}
        except Exception as error:  # truncated, empty, not safetensors, unreadable
            raise ValueError(
                f"resume_from: {str(path)!r} cannot be read ({str(error).strip() or type(error).__name__}); "
                "the checkpoint is damaged: resume from another one, or start again."
            ) from None
        expected = {name: tuple(t.shape) for name, t in self.unwrapped_model.state_dict().items()}
        tied = set(self.unwrapped_model._tied_weights_keys or ()) if self.unwrapped_model.config.tie_word_embeddings else set()
        missing = sorted(set(expected) - set(shapes) - tied)
        unexpected = sorted(set(shapes) - set(expected))
        wrong = sorted(name for name in set(shapes) & set(expected) if shapes[name] != expected[name])
        if missing or unexpected or wrong:
            raise ValueError(
                f"resume_from: {str(path)!r} does not hold exactly the model's tensors (missing {missing}, "
                f"unexpected {unexpected}, wrong shape {wrong}); the checkpoint is damaged."
            )

    def _load_checkpoint(self, checkpoint_dir: Path) -> None:
        accelerator = self.accelerator
        self._verify_checkpoint_weights(checkpoint_dir)
        rank_file = checkpoint_dir / ckpt.RANK_STATE_FILENAME.format(rank=accelerator.process_index)
        try:
            shared = torch.load(checkpoint_dir / ckpt.TRAINER_STATE_FILENAME, map_location="cpu", weights_only=True)
            per_rank = torch.load(rank_file, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(
                f"resume_from: the training state in {str(checkpoint_dir)!r} cannot be read "
                f"({str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}); "
                "the checkpoint is damaged: resume from another one, or start again."
            ) from None
        state = ckpt.read_checkpoint_state(checkpoint_dir)
        self.progress = TrainingProgress(**state["progress"])
        self.iterator.load_state_dict(shared["iterator"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(shared["scheduler"])
        if shared["asgd_averages"] is not None:
            by_name = shared["asgd_averages"]
            self.asgd_averages = [by_name[name].to(param.device) for name, param in self.named_trainable]
        carried = per_rank["carried_state"]
        if carried is not None:
            device = accelerator.device
            self.carried_state = MTLSTMState(
                [h.to(device) for h in carried["hidden"]], [c.to(device) for c in carried["cell"]], carried["seen_tokens"]
            )
        # Last: parameters, optimizer and every RNG exactly as they were after that step.
        accelerator.load_state(str(checkpoint_dir))
        self.last_checkpoint = checkpoint_dir
        self._dirty = False

    def save_checkpoint(self) -> Path:
        """Write a complete, atomically published checkpoint (all processes call this).

        Raises:
            OutputWriteError: writing failed (disk full, unwritable folder, torch's writer
                failing); the message names the checkpoint and the cause. The unfinished
                folder is removed and ``LATEST`` still names the previous complete checkpoint,
                which ``resume_from`` continues from.
        """
        self._checkpoint_being_written = self.checkpoints_dir
        try:
            return self._write_checkpoint()
        except Exception as error:
            target = self._checkpoint_being_written
            found = ckpt.write_failure_cause(error, target)
            if found is None:
                raise
            cause, number = found
            if self.accelerator.is_main_process:
                ckpt.remove_stale_temporaries(self.checkpoints_dir)  # frees the space the failed write took
            previous = (
                f"the previous checkpoint {self.last_checkpoint} is still the latest: fix the cause, then continue "
                f"with resume_from={str(self.output_dir)!r} (mtlstm-train --resume {self.output_dir})"
                if self.last_checkpoint is not None
                else "no earlier checkpoint exists, so the run must start again"
            )
            raise ckpt.OutputWriteError(
                f"writing the checkpoint {target} failed: {cause}; {previous}", path=target, error_number=number
            ) from error

    def _write_checkpoint(self) -> Path:
        accelerator = self.accelerator
        now = time.monotonic()
        self.progress.train_seconds += now - self._clock
        self._clock = now
        name = ""
        if accelerator.is_main_process:
            self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(self.checkpoints_dir)
            name = ckpt.new_checkpoint_name(self.checkpoints_dir, self.progress.global_step)
            self._checkpoint_being_written = self.checkpoints_dir / name
            (self.checkpoints_dir / (name + ckpt.TMP_SUFFIX)).mkdir()
        name = self._broadcast_string(name)
        self._checkpoint_being_written = self.checkpoints_dir / name
        tmp_dir = self.checkpoints_dir / (name + ckpt.TMP_SUFFIX)
        accelerator.wait_for_everyone()
        with _quiet_logger("accelerate.utils.other"):  # "Removed shared tensor": the tied lm_head, expected
            accelerator.save_state(str(tmp_dir))
        carried = None
        if self.carried_state is not None:
            carried = {
                "hidden": [h.detach().cpu() for h in self.carried_state.hidden],
                "cell": [c.detach().cpu() for c in self.carried_state.cell],
                "seen_tokens": self.carried_state.seen_tokens,
            }
        torch.save(
            {"carried_state": carried, "iterator_position": self.iterator.position},
            tmp_dir / ckpt.RANK_STATE_FILENAME.format(rank=accelerator.process_index),
        )
        accelerator.wait_for_everyone()
        final = self.checkpoints_dir / name
        if accelerator.is_main_process:
            averages = None
            if self.asgd_averages is not None:
                averages = {n: a.detach().cpu() for (n, _), a in zip(self.named_trainable, self.asgd_averages)}
            torch.save(
                {
                    "iterator": self.iterator.state_dict(),
                    "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                    "asgd_averages": averages,
                },
                tmp_dir / ckpt.TRAINER_STATE_FILENAME,
            )
            # The modelling files too, as save_pretrained copies them (this also writes the model
            # class into the config's auto_map): every folder a run writes loads with
            # AutoModelForCausalLM, with the package or with trust_remote_code=True.
            custom_object_save(self.unwrapped_model, str(tmp_dir), config=self.unwrapped_model.config)
            self.unwrapped_model.config.save_pretrained(str(tmp_dir))
            self.tokenizer.save_pretrained(str(tmp_dir))
            self.config.to_json_file(tmp_dir / ckpt.TRAINING_CONFIG_FILENAME)
            ckpt.write_json_atomic(  # written last: its presence marks the folder complete
                tmp_dir / ckpt.STATE_FILENAME,
                {
                    "format": ckpt.CHECKPOINT_FORMAT,
                    "num_processes": accelerator.num_processes,
                    "progress": asdict(self.progress),
                },
            )
            final = ckpt.publish_checkpoint(tmp_dir, name, self.config.keep_checkpoints)
        accelerator.wait_for_everyone()
        self.last_checkpoint = final
        self._dirty = False
        return final

    def _broadcast_string(self, text: str) -> str:
        if self.accelerator.num_processes == 1:
            return text
        from accelerate.utils import broadcast_object_list

        box = [text]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def save_best_model(self) -> None:
        """``save_pretrained`` the current (averaged, under ASGD) weights + tokenizer + configs.

        Raises:
            OutputWriteError: writing failed; ``best_model/`` keeps the previous best model.
        """
        if self.accelerator.is_main_process:
            metrics = {
                "val_loss": self.progress.last_val_loss,
                "val_perplexity": perplexity(self.progress.last_val_loss),
                "global_step": self.progress.global_step,
                "epoch": self.progress.epoch,
                "asgd_active": self.progress.asgd_active,
            }

            def build(folder: Path) -> None:
                with self.averaged_weights(), no_transformers_progress_bar():
                    self.unwrapped_model.save_pretrained(str(folder))
                self.tokenizer.save_pretrained(str(folder))
                self.config.to_json_file(folder / ckpt.TRAINING_CONFIG_FILENAME)
                ckpt.write_json_atomic(folder / "training_metrics.json", metrics)

            try:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                ckpt.replace_directory(build, self.best_model_dir)
            except Exception as error:
                found = ckpt.write_failure_cause(error, self.best_model_dir)
                if found is None:
                    raise
                raise ckpt.OutputWriteError(
                    f"writing the best model {self.best_model_dir} failed: {found[0]}; the folder keeps the previous "
                    "best model (if any) and the last checkpoint is unchanged",
                    path=self.best_model_dir,
                    error_number=found[1],
                ) from error
        self.accelerator.wait_for_everyone()

    # --- evaluation -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Temporarily load the averaged-SGD parameters (no-op before the switch)."""
        if self.asgd_averages is None:
            yield
            return
        with torch.no_grad():
            backup = [p.detach().clone() for _, p in self.named_trainable]
            for (_, param), average in zip(self.named_trainable, self.asgd_averages):
                param.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for (_, param), saved in zip(self.named_trainable, backup):
                    param.copy_(saved)

    def evaluate(self, stream: torch.Tensor | None = None, model: torch.nn.Module | None = None) -> float:
        """Mean next-token cross-entropy (nats) over an evaluation stream, state carried.

        Each process scores its share of the ``eval_batch_size`` rows (contiguous pieces of
        the stream, AWD ``batchify``); the sums are added across processes, so the result is
        the same as one process scoring every row.

        Args:
            stream: this process's part (``self.valid_stream`` by default).
            model: default the model being trained, with the averaged weights under ASGD.
        """
        stream = self.valid_stream if stream is None else stream
        rows = self.config.eval_batch_size // self.accelerator.num_processes
        weights = self.averaged_weights() if model is None else contextlib.nullcontext()
        with weights, self.accelerator.autocast():
            log_probs = token_log_probs(
                self.unwrapped_model if model is None else model, stream, batch_size=rows, window=self.config.bptt
            )
        totals = torch.tensor([-log_probs.double().sum().item(), float(log_probs.numel())], dtype=torch.float64)
        totals = self._sum_across_processes(totals)
        return float(totals[0] / totals[1])

    def _sum_across_processes(self, values: torch.Tensor) -> torch.Tensor:
        if self.accelerator.num_processes == 1:
            return values
        return self.accelerator.reduce(values.to(self.accelerator.device), reduction="sum").cpu()

    # --- training -------------------------------------------------------------------------------

    def _next_windows(self) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], bool]:
        """Up to ``gradient_accumulation_steps`` windows, and whether the epoch ended."""
        windows = []
        for _ in range(self.config.gradient_accumulation_steps):
            try:
                windows.append(next(self.iterator))
            except StopIteration:  # the iterator rewound to position 0 for the next epoch
                return windows, True
        if self.iterator.position >= self.local_rows.shape[1] - 1:
            # That was the epoch's last window: let the iterator rewind now (this reads no
            # random numbers), so that a checkpoint taken at the epoch end resumes at position 0.
            for _ in self.iterator:
                raise AssertionError("the BPTT iterator yielded a window past the end of the data")
            return windows, True
        return windows, False

    def _optimizer_step(self, windows: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Forward/backward the windows, clip, step; returns this process's mean LM loss (nats)."""
        accelerator, config, timer = self.accelerator, self.config, self.phase_timer
        device = accelerator.device
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        lm_loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        num_windows = len(windows)
        for index, (inputs, targets) in enumerate(windows):
            last = index == num_windows - 1
            # Gradients are all-reduced only on the last window of the step.
            sync = contextlib.nullcontext() if last else accelerator.no_sync(self.model)
            with sync:
                start = time.perf_counter() if timer else 0.0
                output = self.model(
                    input_ids=inputs.to(device),
                    shift_labels=targets.to(device),
                    cache=self.carried_state,
                    use_cache=True,
                )
                loss = output.loss / num_windows
                if timer:
                    timer.add("forward", time.perf_counter() - start)
                    start = time.perf_counter()
                accelerator.backward(loss)
                if timer:
                    timer.add("backward", time.perf_counter() - start)
            self.carried_state = output.cache.detach()  # truncated BPTT: keep the state, drop the graph
            loss_sum += output.loss.detach().double()
            lm_loss_sum += output.lm_loss.detach().double()

        start = time.perf_counter() if timer else 0.0
        max_norm = config.clip_grad_norm if config.clip_grad_norm is not None else math.inf
        grad_norm = float(accelerator.clip_grad_norm_(self.model.parameters(), max_norm))
        local_loss = float(loss_sum) / num_windows
        # The gradient norm is computed from all-reduced gradients, so every process takes the
        # same decision from it; a NaN loss on any process makes it NaN. One process alone
        # may also look at its own loss.
        finite = math.isfinite(grad_norm) and (accelerator.num_processes > 1 or math.isfinite(local_loss))
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"non-finite training loss at optimizer step {self.progress.global_step + 1} "
                f"(epoch {self.progress.epoch + 1}): loss={local_loss}, gradient norm={grad_norm}. "
                "Training stopped before updating the parameters; the last good checkpoint is "
                f"{str(self.last_checkpoint) if self.last_checkpoint else '(none written yet)'}. "
                "Lower the learning rate or enable gradient clipping."
            )

        # AWD: the learning rate follows the window length (seq_len / bptt).
        scale = 1.0
        if config.scale_lr_by_seq_len:
            scale = sum(inputs.shape[1] for inputs, _ in windows) / (num_windows * config.bptt)
        base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        for group, base in zip(self.optimizer.param_groups, base_lrs):
            group["lr"] = base * scale
        self.optimizer.step()
        for group, base in zip(self.optimizer.param_groups, base_lrs):
            group["lr"] = base
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        if self.progress.asgd_active:
            self._update_average()
        if timer:
            timer.add("optimizer", time.perf_counter() - start)
        self.last_grad_norm = grad_norm
        return float(lm_loss_sum) / num_windows

    def start_averaging(self) -> None:
        """Switch to averaged SGD: from the next optimizer step on, keep the running mean of the
        parameters (used for evaluation and the saved model). The non-monotone trigger calls this;
        it can also be called from a callback to force the switch."""
        if self.config.optimizer != "awd":
            raise ValueError(f"optimizer: averaged SGD applies to 'awd' only, this run uses {self.config.optimizer!r}.")
        if self.progress.asgd_active:
            return
        self.progress.asgd_active = True
        self.progress.asgd_start_step = self.progress.global_step
        self.accelerator.print(
            f"Switching to averaged SGD at step {self.progress.global_step} (epoch {self.progress.epoch})."
        )

    @torch.no_grad()
    def _update_average(self) -> None:
        """Running mean of the parameters over the steps since the ASGD switch."""
        count = self.progress.asgd_num_averaged + 1
        if self.asgd_averages is None or count == 1:
            self.asgd_averages = [p.detach().clone() for _, p in self.named_trainable]
        else:
            for (_, param), average in zip(self.named_trainable, self.asgd_averages):
                average.lerp_(param, 1.0 / count)  # avg + (p - avg) / n
        self.progress.asgd_num_averaged = count

    def _stop_requested(self, callback_stop: bool, local_loss: float) -> tuple[str | None, float]:
        """The reason to stop now (the same on every process), and the mean loss over processes."""
        config, progress = self.config, self.progress
        timed_out = config.max_minutes is not None and (time.monotonic() - self._session_start) > 60 * config.max_minutes
        flags = [local_loss, float(self._stop_signal is not None), float(callback_stop), float(timed_out)]
        if self.accelerator.num_processes > 1:
            values = self._sum_across_processes(torch.tensor(flags, dtype=torch.float64))
            flags = [float(values[0]) / self.accelerator.num_processes] + [float(v > 0) for v in values[1:]]
        mean_loss = flags[0]
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(f"non-finite training loss {mean_loss} at step {progress.global_step}.")
        if flags[1]:
            return "interrupted", mean_loss
        if flags[2]:
            return "stopped", mean_loss
        if config.max_steps is not None and progress.global_step >= config.max_steps:
            return "max_steps", mean_loss
        if flags[3]:
            return "time_limit", mean_loss
        return None, mean_loss

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None:
            raise KeyboardInterrupt  # a second signal: stop at once (the last checkpoint stays good)
        self._stop_signal = signum
        print(
            f"\nReceived {signal.Signals(signum).name}: saving a checkpoint after this step, then stopping "
            "(send it again to abort without saving).",
            file=sys.stderr,
            flush=True,
        )

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _start_output(self) -> None:
        config, accelerator = self.config, self.accelerator
        if accelerator.is_main_process:
            if config.resume_from is None and config.overwrite_output_dir:
                import shutil

                for name in (ckpt.CHECKPOINTS_DIRNAME, ckpt.BEST_MODEL_DIRNAME, ckpt.LOGS_DIRNAME):
                    shutil.rmtree(self.output_dir / name, ignore_errors=True)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ckpt.write_json_atomic(self.output_dir / ckpt.TRAINING_CONFIG_FILENAME, config.to_dict())
        accelerator.wait_for_everyone()
        flat = {
            key: (value if isinstance(value, (bool, int, float, str)) or value is None else str(value))
            for key, value in config.to_dict().items()
        }
        accelerator.init_trackers("mtlstm_training", config=flat)
        # Said at the start: a launcher that silently runs one process (e.g. `accelerate launch
        # --cpu`, which ignores --num_processes) is visible here and in training_state.json.
        accelerator.print(
            f"processes: {accelerator.num_processes} on {accelerator.device.type} "
            f"({config.batch_size // accelerator.num_processes} of the {config.batch_size} rows each)"
        )

    def run(self) -> TrainingResult:
        """Train until the epochs, ``max_steps`` or ``max_minutes`` run out, or a stop request.

        Raises:
            NonFiniteLossError: the loss or gradient became NaN/inf (no checkpoint is written
                after the last good one).
            OutputWriteError: writing into the run folder failed (disk full, read-only or
                unwritable folder); the last complete checkpoint stays the latest.
        """
        config, progress = self.config, self.progress

        def run_folder_error(error: OSError) -> ckpt.OutputWriteError:
            return ckpt.OutputWriteError(
                f"the run folder {self.output_dir} could not be written: {ckpt.write_failure_cause(error, self.output_dir)[0]}",
                path=self.output_dir,
                error_number=error.errno,
            )

        try:
            if self.accelerator.is_main_process:
                # A crash between the two renames that replace best_model/ left it in .best_model.old:
                # move it back before anything reads or replaces it.
                ckpt.repair_interrupted_replacement(self.best_model_dir, clean_up=True)
            self._start_output()
        except OSError as error:
            raise run_folder_error(error) from error
        self._session_start = self._clock = time.monotonic()
        self._install_signal_handlers()
        status: str | None = None
        self._steps_since_eval = 0
        try:
            if config.max_steps is not None and progress.global_step >= config.max_steps:
                status = "max_steps"  # a resumed run that has nothing left to do
            while status is None and progress.epoch < config.epochs:
                status, epoch_done = self._run_epoch()
                if epoch_done:
                    progress.epoch += 1
                    self._end_of_epoch()
                    self.save_checkpoint()
            status = status or "completed"
            finished = status in ("completed", "max_steps", "time_limit")
            if finished and self._steps_since_eval > 0:
                # A final score of the last weights (not an input of the non-monotone trigger).
                self._validate(feeds_trigger=False)
            if self._dirty or self.last_checkpoint is None:
                self.save_checkpoint()
            if finished and self.test_stream is not None and self.best_model_dir.is_dir():
                # Scored with the saved best model: what a user of best_model/ gets.
                with no_transformers_progress_bar():
                    best = MTLSTMForCausalLM.from_pretrained(str(self.best_model_dir)).to(self.accelerator.device)
                self.test_loss = self.evaluate(self.test_stream, model=best)
                self.accelerator.log(
                    {"test/loss": self.test_loss, "test/perplexity": perplexity(self.test_loss)}, step=progress.global_step
                )
        except OSError as error:
            if isinstance(error, ckpt.OutputWriteError):
                raise
            raise run_folder_error(error) from error  # e.g. the metrics log on a full disk
        finally:
            self._restore_signal_handlers()
        return TrainingResult(
            status=status,
            progress=progress,
            output_dir=self.output_dir,
            best_model_dir=self.best_model_dir if self.best_model_dir.is_dir() else None,
            last_checkpoint=self.last_checkpoint,
            best_val_perplexity=perplexity(progress.best_val_loss),
            last_val_perplexity=perplexity(progress.last_val_loss),
            test_perplexity=perplexity(self.test_loss),
            planned_steps=self.planned_steps(),
            eval_batch_size=config.eval_batch_size,
        )

    def _run_epoch(self) -> tuple[str | None, bool]:
        """Optimizer steps until the epoch ends or a stop is requested.

        Returns:
            ``(stop reason or None, whether the epoch's data is used up)``.
        """
        config, accelerator, progress = self.config, self.accelerator, self.progress
        if self.iterator.position == 0:
            self.carried_state = None  # AWD: every epoch starts from the zero state
        bar = progress_bar(
            total=math.ceil(self.iterator.nominal_num_windows / config.gradient_accumulation_steps),
            desc=f"epoch {progress.epoch + 1}/{config.epochs}",
            unit="step",
            disable=not (config.progress_bar and accelerator.is_local_main_process),
            leave=False,
        )
        meter = _TrainingMeter()
        status: str | None = None
        epoch_done = False
        try:
            while status is None and not epoch_done:
                step_start = time.perf_counter()
                windows, epoch_done = self._next_windows()
                if not windows:
                    break
                loss = self._optimizer_step(windows)
                progress.global_step += 1
                self._steps_since_eval += 1
                self._dirty = True
                tokens = sum(inputs.shape[1] for inputs, _ in windows) * config.batch_size  # all rows, all processes
                progress.tokens_seen += tokens
                callback_stop = False
                for callback in self.callbacks:
                    callback_stop = bool(callback(self)) or callback_stop
                status, mean_loss = self._stop_requested(callback_stop, loss)
                meter.add(mean_loss, tokens)
                if bar.total is not None and bar.n + 1 >= bar.total and not epoch_done:
                    bar.total = bar.n + 2  # variable-length windows: the count was an estimate
                bar.update(1)
                if progress.global_step % config.log_every_steps == 0 or status is not None or epoch_done:
                    fraction = 1.0 if epoch_done else self.iterator.position / self.local_rows.shape[1]
                    metrics = meter.flush(self.optimizer.param_groups[0]["lr"], self.last_grad_norm, progress.epoch + fraction)
                    accelerator.log(metrics, step=progress.global_step)
                    bar.set_postfix(
                        loss=f"{metrics['train/loss']:.3f}",
                        ppl=f"{metrics['train/perplexity']:.1f}",
                        tok_s=f"{metrics['train/tokens_per_second']:.0f}",
                    )
                if self.phase_timer is not None:
                    self.phase_timer.end_step(time.perf_counter() - step_start, tokens)
                periodic = config.save_every_steps is not None and progress.global_step % config.save_every_steps == 0
                if periodic and status is None and not epoch_done:  # the epoch end / exit save anyway
                    self.save_checkpoint()
        finally:
            bar.close()
        return status, epoch_done

    def _validate(self, feeds_trigger: bool) -> float:
        """Validation loss; at epoch ends it also feeds the non-monotone trigger. Saves the best model."""
        config, progress = self.config, self.progress
        val_loss = self.evaluate()
        if feeds_trigger:
            if (
                config.optimizer == "awd"
                and config.use_asgd
                and not progress.asgd_active
                and nonmonotone_trigger(progress.val_history, val_loss, config.nonmono)
            ):
                self.start_averaging()
            progress.val_history.append(val_loss)
        progress.last_val_loss, progress.last_val_step = val_loss, progress.global_step
        self._steps_since_eval = 0
        self._dirty = True
        if progress.best_val_loss is None or val_loss < progress.best_val_loss:
            progress.best_val_loss, progress.best_val_step = val_loss, progress.global_step
            self.save_best_model()
        self.accelerator.log(
            {"eval/loss": val_loss, "eval/perplexity": perplexity(val_loss), "epoch": progress.epoch,
             "asgd_active": int(progress.asgd_active)},
            step=progress.global_step,
        )
        return val_loss

    def _end_of_epoch(self) -> None:
        val_loss = self._validate(feeds_trigger=True)
        self.accelerator.print(
            f"epoch {self.progress.epoch}: step {self.progress.global_step}, validation loss {val_loss:.4f}, "
            f"perplexity {perplexity(val_loss):.2f}"
        )


class _TrainingMeter:
    """Mean training loss and tokens per second since the last log line."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.start, self.loss_sum, self.steps, self.tokens = time.perf_counter(), 0.0, 0, 0

    def add(self, loss: float, tokens: int) -> None:
        self.loss_sum += loss
        self.steps += 1
        self.tokens += tokens

    def flush(self, learning_rate: float, grad_norm: float, epoch: float) -> dict[str, float]:
        loss = self.loss_sum / max(self.steps, 1)
        metrics = {
            "train/loss": loss,
            "train/perplexity": perplexity(loss),
            "train/tokens_per_second": self.tokens / max(time.perf_counter() - self.start, 1e-9),
            "train/learning_rate": learning_rate,
            "train/grad_norm": grad_norm,
            "epoch": epoch,
        }
        self._reset()
        return metrics


def train(
    config: TrainingConfig,
    *,
    accelerator: Accelerator | None = None,
    callbacks: Sequence[StepCallback] = (),
    phase_timer: PhaseTimer | None = None,
) -> TrainingResult:
    """Train a multi-timescale LSTM LM as ``config`` says; see :class:`LanguageModelTrainer`.

    When ``accelerator`` is ``None`` one is made with :func:`make_accelerator` and finished
    (trackers closed, process group destroyed) before returning, even on error.
    """
    owns = accelerator is None
    accelerator = make_accelerator(config) if owns else accelerator
    trainer = None
    try:
        trainer = LanguageModelTrainer(config, accelerator=accelerator, callbacks=callbacks, phase_timer=phase_timer)
        return trainer.run()
    finally:
        if owns:
            # Release the DDP wrapper (and its gloo state) before the process group goes away:
            # a DDP reducer freed after destroy_process_group can hang or abort at exit.
            del trainer
            if accelerator.num_processes > 1:
                accelerator.free_memory()  # drops the prepared objects, then gc.collect()
            accelerator.end_training()
