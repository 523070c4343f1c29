"""Everything a run needs before its first step, built and checked without writing anything:
the accelerator, the resume checks, the data (tokenizer, this process's rows, the window
iterator, the evaluation streams), the model, and the optimizer with its schedule.

Bad input raises ``ValueError`` / ``FileNotFoundError`` naming the setting, so a run that
cannot train fails before any file exists.
"""

from __future__ import annotations

import copy
import inspect
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration

from ..data import (
    BPTTIterator,
    batchify,
    build_word_tokenizer,
    check_vocabulary_fingerprint,
    get_split,
    get_word_convention,
    load_corpus,
    sample_corpus_dir,
    split_to_stream,
    vocabulary_fingerprint,
)
from ..input_files import read_model_config
from ..model_folder import load_model_strictly
from ..models.mtlstm import MTLSTMConfig, MTLSTMForCausalLM
from . import checkpoint as ckpt
from .config import MODEL_PRESETS, TrainingSettings
from .optimizer_groups import parameter_groups
from .tracking import JSONLinesTracker, tensorboard_available, trackio_available


def make_accelerator(config: TrainingSettings, **kwargs: Any) -> Accelerator:
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
            raise ValueError(f"tracker={name!r} needs the {name} package: pip install {name}, or use tracker='jsonl'.")
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


MODEL_CONFIG_FIELDS = frozenset(inspect.signature(MTLSTMConfig.__init__).parameters) - {"self", "kwargs"}


def build_model_config(config: TrainingSettings, tokenizer: Any) -> MTLSTMConfig:
    """The preset's architecture + ``model_overrides``, with the tokenizer's vocabulary size
    and special tokens."""
    overrides = config.model_overrides
    if not isinstance(overrides, dict):  # a dict once TrainingSettings is made; set to something else since
        raise ValueError(f"model_overrides must be a dict of MTLSTMConfig fields, got {overrides!r}.")
    unknown = sorted(set(overrides) - MODEL_CONFIG_FIELDS)
    if unknown:
        raise ValueError(
            f"model_overrides: unknown MTLSTMConfig field(s) {unknown}; allowed: {sorted(MODEL_CONFIG_FIELDS)}."
        )
    fields = copy.deepcopy(MODEL_PRESETS[config.preset])
    fields.update(copy.deepcopy(overrides))
    fields.update(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        vocab_fingerprint=vocabulary_fingerprint(tokenizer),
    )
    return MTLSTMConfig(**fields)


def rows_of_process(total_rows: int, num_processes: int, process_index: int, field_name: str) -> slice:
    """The contiguous block of rows process ``process_index`` owns.

    Raises:
        ValueError: ``total_rows`` is not divisible by ``num_processes`` (naming ``field_name``).
    """
    if total_rows % num_processes:
        raise ValueError(
            f"{field_name}={total_rows} must be divisible by the number of processes ({num_processes}), "
            "so that every process gets the same rows of the global batch."
        )
    per_process = total_rows // num_processes
    return slice(process_index * per_process, (process_index + 1) * per_process)


def load_tokenizer(path: str | Path, what: str) -> Any:
    """``AutoTokenizer.from_pretrained(path)`` without running code from the folder
    (``trust_remote_code=False``: a ``config.json`` there that points to code is refused, never
    asked about), refusing a missing folder or a tokenizer without ``<eos>`` (it ends every corpus
    line); errors name the setting ``what``."""
    from transformers import AutoTokenizer

    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: tokenizer folder {str(path)!r} does not exist.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{what}: no loadable tokenizer in {str(path)!r} ({error}).") from None
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{what}: the tokenizer in {str(path)!r} has no eos_token; it ends every corpus line.")
    return tokenizer


def check_init_from(config: TrainingSettings) -> None:
    """Refuse an ``init_from`` that is not an mtlstm model folder before anything reads it
    (:func:`~mtlstm_hf.input_files.read_model_config`: its ``config.json`` is a JSON object with
    ``model_type`` ``"mtlstm"``; another model type is named), so that neither its tokenizer nor
    its weights are loaded, and no code of the folder runs.

    Raises:
        FileNotFoundError: no such folder. ValueError: naming ``init_from`` and the file.
    """
    if config.init_from is not None:
        read_model_config(config.init_from, "init_from")


def check_resume_and_output(config: TrainingSettings, num_processes: int) -> Path | None:
    """The checkpoint to resume from (``None`` for a new run), after refusing a resume with
    settings that change the trajectory or another number of processes, and a new run into a
    folder that holds one."""
    output_dir = Path(config.output_dir).expanduser()
    if config.resume_from is not None:
        resume_dir = ckpt.resolve_resume_checkpoint(config.resume_from)
        read_model_config(resume_dir, "resume_from")  # before its tokenizer and model are read
        saved = TrainingSettings.from_json_file(resume_dir / ckpt.TRAINING_CONFIG_FILENAME)
        mismatches = config.resume_mismatches(saved)
        if mismatches:
            details = ", ".join(f"{name}: {getattr(saved, name)!r} -> {getattr(config, name)!r}" for name in mismatches)
            raise ValueError(
                f"resume_from: the checkpoint was trained with different settings ({details}); "
                "these change the training trajectory, so resuming with them is refused."
            )
        state = ckpt.read_checkpoint_state(resume_dir)
        if state.get("num_processes") != num_processes:
            raise ValueError(
                f"resume_from: the checkpoint was written by {state.get('num_processes')} process(es); "
                f"resume with the same number (this run has {num_processes})."
            )
        # A resume writes into the run folder its checkpoint belongs to, or into a folder that holds
        # no run: never over another run (a copied checkpoint resumed into a folder reused since).
        own_run = resume_dir.parent.parent if resume_dir.parent.name == ckpt.CHECKPOINTS_DIRNAME else None
        if (own_run is None or own_run.resolve() != output_dir.resolve()) and ckpt.has_training_run(output_dir):
            raise ValueError(
                f"resume_from: the checkpoint {str(resume_dir)!r} is not one of the run in output_dir {str(output_dir)!r}, "
                "which holds another run; resuming would write over it. Give a new output_dir (--output-dir) to "
                "continue the checkpoint there, or resume that run's own checkpoints."
            )
        return resume_dir
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir: {str(output_dir)!r} exists and is not a folder.")
    if ckpt.has_training_run(output_dir) and not config.overwrite_output_dir:
        raise ValueError(
            f"output_dir: {str(output_dir)!r} already holds a training run; resume it with "
            f"resume_from={str(output_dir)!r} (--resume), or set overwrite_output_dir=True "
            "(--overwrite-output-dir), or choose another output_dir."
        )
    return None


@dataclass
class TrainingData:
    """The data of one process.

    Attributes:
        tokenizer: the word tokenizer (built from the training split, or loaded).
        rows: ``(B / P, N)`` this process's rows of the AWD-batchified training stream, on the
            training device (windows are slices of it).
        iterator: the BPTT windows over ``rows`` (same seed on every process: same lengths).
        valid_part / test_part: this process's contiguous share of the evaluation streams
            (``test_part`` ``None`` when not evaluated).
    """

    tokenizer: Any
    rows: torch.Tensor
    iterator: BPTTIterator
    valid_part: torch.Tensor
    test_part: torch.Tensor | None


def choose_tokenizer(config: TrainingSettings, corpus: Any, resume_dir: Path | None) -> Any:
    """The checkpoint's tokenizer, ``config.tokenizer``, ``init_from``'s, or one built from the
    training split, in that order; its word convention must match ``tokenizer_convention``."""
    if resume_dir is not None:
        tokenizer = load_tokenizer(resume_dir, "resume_from")
    elif config.tokenizer is not None:
        tokenizer = load_tokenizer(config.tokenizer, "tokenizer")
    elif config.init_from is not None and (Path(config.init_from) / "tokenizer_config.json").is_file():
        tokenizer = load_tokenizer(config.init_from, "init_from")
    else:
        try:
            tokenizer = build_word_tokenizer(
                get_split(corpus, "train"), max_vocab_size=config.max_vocab_size, convention=config.tokenizer_convention
            )
        except ValueError as error:
            raise ValueError(f"tokenizer_convention: {error}") from None
    convention = get_word_convention(tokenizer)
    if config.tokenizer_convention not in ("auto", convention):
        raise ValueError(
            f"tokenizer_convention={config.tokenizer_convention!r}, but the loaded tokenizer uses {convention!r}; "
            "a loaded tokenizer keeps its convention (leave tokenizer_convention at 'auto')."
        )
    return tokenizer


def evaluation_part(stream: torch.Tensor, rows: int, num_processes: int, rank: int, split: str) -> torch.Tensor:
    """This process's contiguous share of an evaluation stream: the pieces of
    ``token_log_probs(stream, rows)`` it scores."""
    piece = stream.numel() // rows
    if piece < 2:
        raise ValueError(
            f"eval_batch_size={rows} is too large for the {split} stream ({stream.numel()} tokens): "
            "each row needs at least 2 tokens; lower --eval-batch-size."
        )
    block = rows_of_process(rows, num_processes, rank, "eval_batch_size")
    return stream[block.start * piece : block.stop * piece]


def prepare_data(config: TrainingSettings, accelerator: Accelerator, resume_dir: Path | None) -> TrainingData:
    """Load the corpus, choose the tokenizer, and cut this process's share of every split."""
    source = config.data if config.data is not None else str(sample_corpus_dir())
    with accelerator.main_process_first():  # a Hub dataset is downloaded once
        corpus = load_corpus(source, config.dataset_config_name, text_column=config.text_column)
    for split in ("train", "validation"):
        if split not in corpus:
            raise ValueError(f"data: the corpus {source!r} has no {split!r} split (it has {list(corpus)}).")
    tokenizer = choose_tokenizer(config, corpus, resume_dir)
    accelerator.print(f"tokenizer: {len(tokenizer)} words, word convention {get_word_convention(tokenizer)!r}")

    train_stream = split_to_stream(corpus, "train", tokenizer)
    if not bool((train_stream != tokenizer.eos_token_id).any()):
        raise ValueError(
            f"data: the training split of {source!r} has no words ({train_stream.numel()} tokens, all line "
            "ends: only empty lines); there is nothing to learn from."
        )
    if config.batch_size > train_stream.numel():
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the training stream ({train_stream.numel()} tokens); "
            "every row needs tokens: lower --batch-size."
        )
    num_processes, rank = accelerator.num_processes, accelerator.process_index
    global_rows = batchify(train_stream, config.batch_size)  # AWD batchify, then this process's rows
    rows = global_rows[rows_of_process(config.batch_size, num_processes, rank, "batch_size")].to(accelerator.device)
    row_length = global_rows.shape[1]
    if row_length < 2 or config.bptt > row_length - 1:
        raise ValueError(
            f"bptt={config.bptt} is longer than the data: with batch_size={config.batch_size} each row of the "
            f"training stream ({train_stream.numel()} tokens) has {row_length} tokens, so at most "
            f"{max(row_length - 1, 0)} (input, target) steps; lower --bptt or --batch-size."
        )
    # The same seed on every process: the same window lengths.
    iterator = BPTTIterator(
        rows, config.bptt, variable_length=config.variable_bptt, generator=random.Random(config.seed),
        drop_single_target=config.replay_reference_loop,
    )  # fmt: skip
    splits = {"validation": split_to_stream(corpus, "validation", tokenizer)}
    if config.evaluate_test and "test" in corpus:
        splits["test"] = split_to_stream(corpus, "test", tokenizer)
    parts = {
        split: evaluation_part(stream, config.eval_batch_size, num_processes, rank, split)
        for split, stream in splits.items()
    }
    return TrainingData(tokenizer, rows, iterator, parts["validation"], parts.get("test"))


def build_model(config: TrainingSettings, tokenizer: Any, resume_dir: Path | None) -> MTLSTMForCausalLM:
    """A new model from the preset, the checkpoint's architecture (its weights are loaded with
    the rest of the checkpoint), or ``init_from``'s weights; checked against the tokenizer."""
    if resume_dir is not None:
        model = MTLSTMForCausalLM(MTLSTMConfig.from_pretrained(str(resume_dir)))
    elif config.init_from is not None:
        check_init_from(config)
        model = load_model_strictly(Path(config.init_from).expanduser(), MTLSTMForCausalLM)
    else:
        model = MTLSTMForCausalLM(build_model_config(config, tokenizer))
    if config.freeze_recurrent_weights:  # the reference's published condition (see TrainingSettings)
        for layer in model.model.layers:
            if layer.weight_hh is not None:
                layer.weight_hh.requires_grad_(False)
    check_vocabulary_fingerprint(
        model.config.vocab_fingerprint, tokenizer, "init_from" if config.init_from else "resume_from"
    )
    if len(tokenizer) != model.config.vocab_size:
        raise ValueError(
            f"tokenizer: its vocabulary has {len(tokenizer)} entries but the model's vocab_size is "
            f"{model.config.vocab_size}; use the tokenizer the model was trained with."
        )
    return model


def planned_steps(config: TrainingSettings, iterator: BPTTIterator) -> int:
    """Optimizer steps of the whole run: ``max_steps`` or epochs x (nominal) steps per epoch."""
    per_epoch = math.ceil(iterator.nominal_num_windows / config.gradient_accumulation_steps)
    total = config.epochs * per_epoch
    return min(total, config.max_steps) if config.max_steps is not None else total


def build_optimizer(
    config: TrainingSettings, model: torch.nn.Module, planned_steps: int
) -> tuple[torch.optim.Optimizer, Any]:
    """SGD (AWD) or AdamW over the trainable parameters (:func:`parameter_groups`: the timescale
    biases in a group of their own when the model sets ``timescale_learning_rate``), and AdamW's ``transformers`` schedule
    (``None`` for SGD). The schedule is not passed to ``accelerator.prepare``: its wrapper steps
    the schedule once per process, which would make it depend on the number of processes."""
    parameters = parameter_groups(model, config.weight_decay)  # timescale biases at their own rate, if set
    lr = config.effective_learning_rate
    if config.optimizer == "awd":
        return torch.optim.SGD(parameters, lr=lr, weight_decay=config.weight_decay), None
    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(
        parameters, lr=lr, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    scheduler = get_scheduler(
        config.lr_scheduler, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=planned_steps
    )
    return optimizer, scheduler


def require_precision_support(model: MTLSTMForCausalLM, config: TrainingSettings, accelerator: Accelerator) -> None:
    """Refuse, before anything is written, a mixed precision this device cannot run, then run one
    token through the model under the run's autocast (no dropout, no RNG), so that anything else
    the precision breaks stops the run here too.

    * ``fp16`` needs CUDA: its gradient scaler is what makes float16 gradients safe, and
      ``accelerate`` has none on a CPU;
    * ``bf16`` needs a GPU with bfloat16 (Ampere or later) or a CPU with native bfloat16
      instructions (AVX512_BF16 or AMX): elsewhere it would be emulated, slower than float32.

    Raises:
        UnsupportedPrecisionError: naming the setting, the device's limitation and the fix.
    """
    from ..models.mtlstm import UnsupportedPrecisionError
    from ..models.mtlstm.kernel_lstm import cpu_autocast_lstm_supported

    precision, device = config.mixed_precision, accelerator.device
    if precision == "no":
        return
    fix = "--mixed-precision no (float32)"
    if precision == "fp16" and device.type != "cuda":
        raise UnsupportedPrecisionError(
            f"mixed_precision='fp16' needs a CUDA GPU (its gradient scaler keeps float16 gradients from underflowing; "
            f"accelerate has none on {device.type}); use {fix}, or bf16 on a CPU with native bfloat16."
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UnsupportedPrecisionError(
            f"mixed_precision='bf16': {torch.cuda.get_device_name(device)} has no bfloat16 support (it needs "
            f"an Ampere or later GPU); use --mixed-precision fp16 (with a gradient scaler) or {fix}."
        )
    if precision == "bf16" and device.type == "cpu" and not cpu_autocast_lstm_supported(torch.bfloat16):
        raise UnsupportedPrecisionError(
            "mixed_precision='bf16': this CPU has no native bfloat16 instructions (AVX512_BF16 or AMX, or "
            f"ONEDNN_MAX_CPU_ISA restricts them), so bfloat16 would be emulated, slower than float32; use {fix}, "
            "or a CPU with native bfloat16 or a GPU."
        )
    model.eval()
    with torch.no_grad(), accelerator.autocast():
        model(torch.zeros(1, 1, dtype=torch.long, device=device), use_cache=False)


def check_token_streams(model: MTLSTMForCausalLM, streams: dict[str, torch.Tensor | None]) -> None:
    """Check once that every token id of the run's streams lies in the model's vocabulary, so
    that the training steps can skip the per-call check (each would read the device).

    Raises:
        ValueError: naming the stream and the ids outside ``[0, vocab_size)``.
    """
    for name, stream in streams.items():
        if stream is not None and stream.numel():
            try:
                model.model.check_input_ids(stream)
            except ValueError as error:
                raise ValueError(f"the {name} stream: {error}") from None


def finish_accelerator(accelerator: Accelerator) -> None:
    """End a run's use of ``accelerator``: close its trackers (the metrics log) and release the
    objects it prepared (the DDP wrapper first, while the process group still exists).

    The process group of a multi-process start is left up: ``accelerate`` keeps one per process
    (its ``PartialState``), and a run that destroyed it would leave every later run of the same
    process without one ("Default process group has not been initialized"). End it with
    :func:`end_processes` when the process is done.
    """
    accelerator.free_memory()  # drops the prepared objects, then gc.collect()
    for tracker in accelerator.trackers:
        tracker.finish()


def end_processes() -> None:
    """Destroy the process group of a multi-process start, if there is one (the commands call this
    once, at exit; nothing can train in this process with several processes afterwards)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        from accelerate import PartialState

        PartialState().destroy_process_group()
