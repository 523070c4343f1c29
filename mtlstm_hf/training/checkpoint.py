"""Atomic checkpoints of a training run, and the layout of a run folder.

Run folder (``TrainingSettings.output_dir``)::

    training_config.json          the run's TrainingSettings
    best_model/                   save_pretrained(): model + tokenizer + training_config.json
    checkpoints/LATEST            name of the newest complete checkpoint (one line)
    checkpoints/step-00000120/    accelerate.save_state() + our own state, see below
    logs/metrics.jsonl            metrics (JSON lines), logs/<tensorboard files>

A checkpoint folder holds ``accelerator.save_state`` output: ``model.safetensors``,
``optimizer.bin``, ``random_states_<rank>.pkl`` and the objects registered with
``accelerator.register_for_checkpointing`` (``custom_checkpoint_<i>.pkl``: the window
iterator's position and RNG, the averaged-SGD model, the learning-rate schedule); next to it
``rank_state_<rank>.pt``, the one thing accelerate cannot hold (each process's carried
recurrent state), the model ``config.json`` and modelling files, the tokenizer,
``training_config.json`` and, written last, ``training_state.json`` (format marker, number of
processes, counters, validation history). What each file holds is listed, field by field, in one
record: :class:`~mtlstm_hf.training.state.TrainerState`, which the functions here take.

Atomicity: everything is written into ``<name>.tmp`` next to the final folder, which is then
renamed (``os.replace``: atomic on one file system) and only then named in ``LATEST`` (a
file replaced atomically). Older checkpoints are deleted after that. So a crash at any
moment leaves ``LATEST`` naming a complete checkpoint, never a half-written one; stale
``.tmp`` folders are removed by the next save. ``best_model/`` is replaced by two renames
(the old folder is moved aside to ``.best_model.old``, the new one moved in, the old one
deleted). A crash between the two renames leaves the last good copy only in
``.best_model.old``: :func:`repair_interrupted_replacement` moves it back, and it is called by
:func:`replace_directory`, when a run starts or resumes, and by the commands that read a
model folder (``mtlstm-eval``, ``mtlstm-analyze``, ``mtlstm-push``).

Write failures (disk full, read-only or unwritable folder, torch's ``enforce fail at
inline_container.cc``) while saving become :class:`OutputWriteError` (an ``OSError``) naming
the folder and the cause; the temporary folder is removed and ``LATEST`` keeps naming the
previous complete checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import (  # noqa: F401 (re-exported: the run folder's names and file helpers live in mtlstm_hf.files)
    BEST_MODEL_DIRNAME,
    CHECKPOINTS_DIRNAME,
    LOGS_DIRNAME,
    TMP_SUFFIX,
    TRAINING_CONFIG_FILENAME,
    TRAINING_METRICS_FILENAME,
    aside_path,
    recorded_corpus,
    repair_interrupted_replacement,
    replace_directory,
    training_corpus,
    write_failure_cause,
    write_json_atomic,
    write_text_atomic,
)
from ..weight_digests import WeightDigestError, record_weight_digests, verify_weight_digests

if TYPE_CHECKING:
    from .state import TrainerState

CHECKPOINT_FORMAT = "mtlstm_hf.training.checkpoint/3"
"""Value of ``format`` in ``training_state.json``: how we recognise our own checkpoints."""

LATEST_FILENAME = "LATEST"
STATE_FILENAME = "training_state.json"
RANK_STATE_FILENAME = "rank_state_{rank}.pt"
_CHECKPOINT_NAME = re.compile(r"^step-(\d{8})(?:-(\d+))?$")


class OutputWriteError(OSError):
    """Writing into the run folder failed: disk full, read-only or unwritable folder, a file
    where a folder is needed, torch's file writer failing. Nothing complete was lost: a
    checkpoint that failed is removed and ``LATEST`` names the previous one, a best model that
    failed leaves the previous ``best_model/`` in place.

    Attributes:
        errno: the operating system's error number when known (``errno.ENOSPC``, ...), else ``None``.
        path: the folder (or file) that was being written.
    """

    def __init__(self, message: str, *, path: str | os.PathLike, error_number: int | None = None) -> None:
        super().__init__(message)
        self.errno = error_number
        self.path = Path(path)


def checkpoint_sort_key(name: str) -> tuple[int, int] | None:
    """``(step, index)`` of a checkpoint folder name ``step-XXXXXXXX[-k]``; ``None`` otherwise."""
    match = _CHECKPOINT_NAME.match(name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def new_checkpoint_name(checkpoints_dir: Path, global_step: int) -> str:
    """``step-<global_step>``, with ``-1``, ``-2``, ... when that step was saved already
    (e.g. a periodic checkpoint and then the epoch-end one at the same step)."""
    base = f"step-{global_step:08d}"
    name, index = base, 0
    while (checkpoints_dir / name).exists():
        index += 1
        name = f"{base}-{index}"
    return name


def complete_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Complete checkpoint folders (with ``training_state.json``), oldest first."""
    if not checkpoints_dir.is_dir():
        return []
    found = []
    for child in checkpoints_dir.iterdir():
        key = checkpoint_sort_key(child.name)
        if key is not None and child.is_dir() and (child / STATE_FILENAME).is_file():
            found.append((key, child))
    return [path for _, path in sorted(found)]


def remove_stale_temporaries(checkpoints_dir: Path) -> None:
    """Delete ``*.tmp`` folders a crash or an interrupted save left behind."""
    if checkpoints_dir.is_dir():
        for child in checkpoints_dir.iterdir():
            if child.name.endswith(TMP_SUFFIX) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)


def publish_checkpoint(tmp_dir: Path, final_name: str, keep: int) -> Path:
    """Move a finished ``tmp_dir`` into place, point ``LATEST`` at it, prune older ones.

    Args:
        tmp_dir: ``<checkpoints_dir>/<final_name>.tmp`` with every file written.
        final_name: from :func:`new_checkpoint_name`.
        keep: number of complete checkpoints to keep (the new one included), ``>= 1``.
    """
    checkpoints_dir = tmp_dir.parent
    final = checkpoints_dir / final_name
    os.replace(tmp_dir, final)
    write_text_atomic(checkpoints_dir / LATEST_FILENAME, final_name + "\n")
    for old in complete_checkpoints(checkpoints_dir)[:-keep]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The checkpoint named in ``LATEST``, or ``None`` when there is no ``LATEST``.

    ``LATEST`` holds a checkpoint's *name* (``step-XXXXXXXX``), a folder beside it: never a path,
    so that a resume cannot be led into another run's folder.

    Raises:
        ValueError: ``LATEST`` holds anything but a checkpoint name.
    """
    pointer = checkpoints_dir / LATEST_FILENAME
    if not pointer.is_file():
        return None
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        name = "<not text>"
    if checkpoint_sort_key(name) is None:
        raise ValueError(
            f"resume_from: {str(pointer)!r} holds {name[:80]!r}, not the name of a checkpoint in that folder "
            "(step-XXXXXXXX); it is damaged or was edited: resume from a checkpoint folder itself "
            f"({str(checkpoints_dir)}/step-...)."
        )
    return checkpoints_dir / name


def has_training_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` already holds a run of this trainer (checkpoints or a best model)."""
    run_dir = Path(run_dir)
    best = run_dir / BEST_MODEL_DIRNAME
    return (run_dir / CHECKPOINTS_DIRNAME / LATEST_FILENAME).is_file() or any(
        (folder / TRAINING_CONFIG_FILENAME).is_file()
        for folder in (best, aside_path(best))  # aside: an interrupted replacement
    )


def resolve_resume_checkpoint(path: str | Path) -> Path:
    """Find the checkpoint to resume from and check that it is one of ours.

    Args:
        path: a run folder (uses ``checkpoints/LATEST``), a ``checkpoints/`` folder (uses
            ``LATEST``) or one checkpoint folder.

    Returns:
        The checkpoint folder.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a run/checkpoint of this trainer, or is incomplete.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"resume_from: {str(path)!r} does not exist.")
    if not path.is_dir():
        raise ValueError(f"resume_from: {str(path)!r} is a file; give a run folder or a checkpoint folder.")
    candidate: Path | None
    if (path / CHECKPOINTS_DIRNAME / LATEST_FILENAME).is_file():
        candidate = latest_checkpoint(path / CHECKPOINTS_DIRNAME)
    elif (path / LATEST_FILENAME).is_file():
        candidate = latest_checkpoint(path)
    elif (path / STATE_FILENAME).is_file():
        candidate = path
    else:
        raise ValueError(
            f"resume_from: {str(path)!r} is not an mtlstm_hf training run or checkpoint "
            f"(no {CHECKPOINTS_DIRNAME}/{LATEST_FILENAME}, {LATEST_FILENAME} or {STATE_FILENAME} in it)."
        )
    assert candidate is not None
    state_file = candidate / STATE_FILENAME
    if not state_file.is_file():
        raise ValueError(f"resume_from: checkpoint {str(candidate)!r} is missing or incomplete (no {STATE_FILENAME}).")
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"resume_from: {str(state_file)!r} is not valid JSON ({error}).") from None
    found_format = state.get("format") if isinstance(state, dict) else None
    if (
        isinstance(found_format, str)
        and found_format.startswith("mtlstm_hf.training.checkpoint/")
        and found_format != CHECKPOINT_FORMAT
    ):
        raise ValueError(
            f"resume_from: {str(candidate)!r} was written by another version of mtlstm_hf (checkpoint format "
            f"{found_format!r}, this version reads {CHECKPOINT_FORMAT!r}); finish the run with that version, or "
            "start a new run (init_from= its best_model/ keeps the weights)."
        )
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"resume_from: {str(candidate)!r} was not written by this trainer "
            f"(format {state.get('format') if isinstance(state, dict) else None!r}, expected {CHECKPOINT_FORMAT!r})."
        )
    required = [TRAINING_CONFIG_FILENAME, "config.json", "optimizer.bin", "custom_checkpoint_0.pkl"]
    missing = [name for name in required if not (candidate / name).is_file()]
    if not ((candidate / "model.safetensors").is_file() or (candidate / "pytorch_model.bin").is_file()):
        missing.append("model.safetensors")
    if missing:
        raise ValueError(f"resume_from: checkpoint {str(candidate)!r} is incomplete: missing {missing}.")
    return candidate


def _progress_problem(name: str, annotation: str, value: Any) -> str | None:
    """Why ``value`` cannot be the :class:`TrainingProgress` field ``name`` of type ``annotation``
    (the dataclass's annotation text), or None."""
    optional = annotation.endswith("| None")
    kind = annotation.replace("| None", "").strip()
    if value is None:
        return None if optional else "null"

    def number(item: Any) -> bool:
        return isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item)

    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return None if ok else "not an integer >= 0"
    if kind == "float":
        return None if number(value) else "not a finite number"
    if kind == "bool":
        return None if isinstance(value, bool) else "not true or false"
    if kind == "list[float]":
        return (
            None if isinstance(value, list) and all(number(item) for item in value) else "not a list of finite numbers"
        )
    return f"of a type this reader does not know ({annotation})"


def read_checkpoint_state(checkpoint_dir: Path) -> dict[str, Any]:
    """The ``training_state.json`` of a checkpoint, checked: the format, the process count and every
    counter an exact resume needs (:class:`~mtlstm_hf.training.state.TrainingProgress`).

    Raises:
        ValueError: naming the file, the field and the value (not JSON, a field missing, of the
            wrong type or negative, an unknown field).
    """
    from dataclasses import fields

    from .state import TrainingProgress

    path = checkpoint_dir / STATE_FILENAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"resume_from: {str(path)!r} is not valid JSON ({error}); the checkpoint is damaged."
        ) from None
    problems = []
    if not isinstance(state, dict):
        raise ValueError(
            f"resume_from: {str(path)!r} holds {type(state).__name__}, not a JSON object; the checkpoint is damaged."
        )
    processes = state.get("num_processes")
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        problems.append(f"num_processes is {processes!r} (an integer >= 1)")
    progress = state.get("progress")
    if not isinstance(progress, dict):
        problems.append(f"progress is {progress!r} (an object of the run's counters)")
    else:
        known = {field.name: str(field.type) for field in fields(TrainingProgress)}
        for name, annotation in known.items():
            if name not in progress:
                problems.append(f"progress.{name} is missing")
            elif (why := _progress_problem(name, annotation, progress[name])) is not None:
                problems.append(f"progress.{name} is {progress[name]!r}: {why}")
        problems += [f"progress.{name} is not a field of this version" for name in sorted(set(progress) - set(known))]
    if problems:
        raise ValueError(
            f"resume_from: {str(path)!r} cannot restore the run exactly ({'; '.join(problems[:6])}); the checkpoint is "
            "damaged or was edited: resume from another checkpoint of the run."
        )
    return state


def verify_resume_files(checkpoint_dir: Path, process_index: int, registered: int, scaler: bool) -> None:
    """Read every file ``accelerator.load_state`` will read for this process, without running code
    (``torch.load(weights_only=True)`` with accelerate's own allowances for NumPy's random state),
    before it reads them: accelerate unpickles the registered objects' files with code execution
    and silently skips a random-state file it cannot read (the resume would not be exact).

    Args:
        registered: the number of objects registered for checkpointing (``custom_checkpoint_<i>.pkl``).
        scaler: whether a gradient scaler's ``scaler.pt`` is expected (fp16).

    Raises:
        ValueError: naming the file: missing, unreadable without running code, damaged, or not
            holding what it should.
    """
    from accelerate.utils import load

    expected = {
        "optimizer.bin": ("state", "param_groups"),
        f"random_states_{process_index}.pkl": ("random_state", "numpy_random_seed", "torch_manual_seed"),
        **{f"custom_checkpoint_{index}.pkl": () for index in range(registered)},
        **({"scaler.pt": ()} if scaler else {}),
    }
    for name, keys in expected.items():
        path = checkpoint_dir / name
        if not path.is_file():
            raise ValueError(
                f"resume_from: {str(path)!r} is missing, and an exact resume needs it; resume from another checkpoint."
            )
        try:
            value = load(str(path), map_location="cpu", weights_only=True)
        except Exception as error:  # pickle's, torch's and zipfile's errors share no base class
            text = str(error).strip()
            reason = text.splitlines()[0] if text else type(error).__name__
            if "Unsupported global" in text or "weights_only" in text:
                reason = "it holds Python objects that only running code could rebuild"
            raise ValueError(
                f"resume_from: {str(path)!r} cannot be read without running code or is damaged ({reason}); "
                "nothing was run: resume from another checkpoint."
            ) from None
        if not isinstance(value, dict) or any(key not in value for key in keys):
            raise ValueError(
                f"resume_from: {str(path)!r} does not hold {', '.join(keys) or 'a state dict'}; the checkpoint is damaged."
            )


# --------------------------------------------------------------------------- a run's state


def verify_checkpoint_weights(model: Any, checkpoint_dir: Path) -> None:
    """Refuse a checkpoint whose weights file is unreadable or does not hold exactly ``model``'s
    tensors (accelerate's loader would skip what is missing).

    Raises:
        ValueError: naming the file and what is missing, unexpected or of the wrong shape.
    """
    from safetensors import safe_open

    path = checkpoint_dir / "model.safetensors"
    try:
        with safe_open(str(path), framework="pt") as weights:
            shapes = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except Exception as error:  # truncated, empty, not safetensors, unreadable
        raise ValueError(
            f"resume_from: {str(path)!r} cannot be read ({str(error).strip() or type(error).__name__}); "
            "the checkpoint is damaged: resume from another one, or start again."
        ) from None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    tied = set(model._tied_weights_keys or ()) if model.config.tie_word_embeddings else set()
    missing = sorted(set(expected) - set(shapes) - tied)
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(name for name in set(shapes) & set(expected) if shapes[name] != expected[name])
    if missing or unexpected or wrong:
        raise ValueError(
            f"resume_from: {str(path)!r} does not hold exactly the model's tensors (missing {missing}, "
            f"unexpected {unexpected}, wrong shape {wrong}); the checkpoint is damaged."
        )


def restore_from_checkpoint(state: TrainerState, checkpoint_dir: Path) -> None:
    """Restore ``state`` (a run's :class:`~mtlstm_hf.training.state.TrainerState`, whose
    ``checkpointed_objects`` are registered with its accelerator) to the moment ``checkpoint_dir``
    was written: ``progress``, this process's ``carried_state``, then, through
    ``accelerator.load_state``, the parameters, optimizer, scaler, registered objects and every
    RNG; ``last_checkpoint`` becomes ``checkpoint_dir``.

    Raises:
        ValueError: the checkpoint's files cannot be read (without running code), are not the files
            that were written (``weights_sha256.json``: :mod:`mtlstm_hf.weight_digests`) or do
            not fit the model (:func:`verify_checkpoint_weights`, :func:`verify_resume_files`).
    """
    import torch

    from ..models.mtlstm import MTLSTMState
    from .state import TrainingProgress

    accelerator = state.accelerator
    try:
        verify_weight_digests(checkpoint_dir)  # a damaged file can stay readable: checked against its record
    except WeightDigestError as error:
        raise ValueError(f"resume_from: {error}; or resume from another checkpoint.") from None
    verify_checkpoint_weights(state.unwrapped_model, checkpoint_dir)
    verify_resume_files(
        checkpoint_dir, accelerator.process_index, len(state.checkpointed_objects), state.scaler is not None
    )
    try:
        carried = torch.load(
            checkpoint_dir / RANK_STATE_FILENAME.format(rank=accelerator.process_index),
            map_location="cpu",
            weights_only=True,
        )["carried_state"]
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"resume_from: the carried state in {str(checkpoint_dir)!r} cannot be read ({message}); "
            "the checkpoint is damaged: resume from another one, or start again."
        ) from None
    state.progress = TrainingProgress(**read_checkpoint_state(checkpoint_dir)["progress"])
    if carried is not None:
        device = accelerator.device
        state.carried_state = MTLSTMState(
            [h.to(device) for h in carried["hidden"]], [c.to(device) for c in carried["cell"]], carried["seen_tokens"]
        )
    accelerator.load_state(str(checkpoint_dir))
    state.last_checkpoint = checkpoint_dir


def save_checkpoint(state: TrainerState) -> Path:
    """Write a complete, atomically published checkpoint of ``state`` (a run's
    :class:`~mtlstm_hf.training.state.TrainerState`; all processes call this) and make it
    ``state.last_checkpoint``.

    Raises:
        OutputWriteError: writing failed (disk full, unwritable folder, torch's writer
            failing); the message names the checkpoint and the cause. The unfinished
            folder is removed and ``LATEST`` still names the previous complete checkpoint,
            which ``resume_from`` continues from.
    """
    checkpoints_dir = state.output_dir / CHECKPOINTS_DIRNAME
    being_written = [checkpoints_dir]
    try:
        return _write_checkpoint(state, checkpoints_dir, being_written)
    except Exception as error:
        target = being_written[-1]
        found = write_failure_cause(error, target)
        if found is None:
            raise
        cause, number = found
        if state.accelerator.is_main_process:
            remove_stale_temporaries(checkpoints_dir)  # frees the space the failed write took
        previous = (
            f"the previous checkpoint {state.last_checkpoint} is still the latest: fix the cause, then continue "
            f"with resume_from={str(state.output_dir)!r} (mtlstm-train --resume {state.output_dir})"
            if state.last_checkpoint is not None
            else "no earlier checkpoint exists, so the run must start again"
        )
        raise OutputWriteError(
            f"writing the checkpoint {target} failed: {cause}; {previous}", path=target, error_number=number
        ) from error


def _write_checkpoint(state: TrainerState, checkpoints_dir: Path, being_written: list[Path]) -> Path:
    import torch
    from transformers.dynamic_module_utils import custom_object_save

    accelerator, progress = state.accelerator, state.progress
    name = ""
    if accelerator.is_main_process:
        checkpoints_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(checkpoints_dir)
        name = new_checkpoint_name(checkpoints_dir, progress.global_step)
        being_written.append(checkpoints_dir / name)
        (checkpoints_dir / (name + TMP_SUFFIX)).mkdir()
    name = broadcast_string(accelerator, name)
    being_written.append(checkpoints_dir / name)
    tmp_dir = checkpoints_dir / (name + TMP_SUFFIX)
    accelerator.wait_for_everyone()
    with quiet_logger("accelerate.utils.other"):  # "Removed shared tensor": the tied lm_head, expected
        accelerator.save_state(str(tmp_dir))
    carried_state = state.carried_state
    carried = None if carried_state is None else {
        "hidden": [h.detach().cpu() for h in carried_state.hidden],
        "cell": [c.detach().cpu() for c in carried_state.cell],
        "seen_tokens": carried_state.seen_tokens,
    }  # fmt: skip
    torch.save({"carried_state": carried}, tmp_dir / RANK_STATE_FILENAME.format(rank=accelerator.process_index))
    accelerator.wait_for_everyone()
    final = checkpoints_dir / name
    if accelerator.is_main_process:
        record_weight_digests(tmp_dir)  # every process's files are written: the weights, optimizer, RNG states
        # The modelling files too, as save_pretrained copies them (this also writes the model
        # class into the config's auto_map): every folder a run writes loads with
        # AutoModelForCausalLM, with the package or with trust_remote_code=True.
        model = state.unwrapped_model
        custom_object_save(model, str(tmp_dir), config=model.config)
        model.config.save_pretrained(str(tmp_dir))
        from ..data.tokenizer_files import save_tokenizer  # the data package imports torch: not at start-up

        save_tokenizer(state.tokenizer, tmp_dir)
        state.config.to_json_file(tmp_dir / TRAINING_CONFIG_FILENAME)
        from dataclasses import asdict

        write_json_atomic(  # written last: its presence marks the folder complete
            tmp_dir / STATE_FILENAME,
            {"format": CHECKPOINT_FORMAT, "num_processes": accelerator.num_processes, "progress": asdict(progress)},
        )
        final = publish_checkpoint(tmp_dir, name, state.config.keep_checkpoints)
    accelerator.wait_for_everyone()
    state.last_checkpoint = final
    return final


def save_best_model(state: TrainerState, model: Any, metrics: dict[str, Any]) -> None:
    """``save_pretrained`` ``model`` (the weights being evaluated: averaged under ASGD) with the
    tokenizer, ``training_config.json`` and ``training_metrics.json`` into ``best_model/``,
    replacing it all or nothing (main process; all processes call this).

    Raises:
        OutputWriteError: writing failed; ``best_model/`` keeps the previous best model.
    """
    from ..data.tokenizer_files import save_tokenizer
    from ..progress import no_transformers_progress_bar

    destination = state.output_dir / BEST_MODEL_DIRNAME
    if state.accelerator.is_main_process:

        def build(folder: Path) -> None:
            with no_transformers_progress_bar():
                model.save_pretrained(str(folder))
            record_weight_digests(folder)
            save_tokenizer(state.tokenizer, folder)
            state.config.to_json_file(folder / TRAINING_CONFIG_FILENAME)
            write_json_atomic(folder / TRAINING_METRICS_FILENAME, metrics)

        try:
            state.output_dir.mkdir(parents=True, exist_ok=True)
            replace_directory(build, destination)
        except Exception as error:
            found = write_failure_cause(error, destination)
            if found is None:
                raise
            raise OutputWriteError(
                f"writing the best model {destination} failed: {found[0]}; the folder keeps the previous "
                "best model (if any) and the last checkpoint is unchanged",
                path=destination,
                error_number=found[1],
            ) from error
    state.accelerator.wait_for_everyone()


def broadcast_string(accelerator: Any, text: str) -> str:
    """``text`` as process 0 has it, on every process."""
    if accelerator.num_processes == 1:
        return text
    from accelerate.utils import broadcast_object_list

    box = [text]
    broadcast_object_list(box, from_process=0)
    return box[0]


@contextlib.contextmanager
def quiet_logger(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Raise a logger's level for a moment (expected, repeated warnings of a dependency)."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def start_run_folder(state: TrainerState) -> None:
    """Prepare the run folder before the first step (main process; all processes call this):
    move back a ``best_model/`` a crash left aside, clear an overwritten run's outputs, write
    ``training_config.json``; then start the trackers and say how many processes train."""
    config, accelerator = state.config, state.accelerator
    if accelerator.is_main_process:
        # A crash between the two renames that replace best_model/ left it in .best_model.old:
        # move it back before anything reads or replaces it.
        repair_interrupted_replacement(state.output_dir / BEST_MODEL_DIRNAME, clean_up=True)
        if config.resume_from is None and config.overwrite_output_dir:
            for name in (CHECKPOINTS_DIRNAME, BEST_MODEL_DIRNAME, LOGS_DIRNAME):
                shutil.rmtree(state.output_dir / name, ignore_errors=True)
        state.output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(state.output_dir / TRAINING_CONFIG_FILENAME, config.to_dict())
        if config.resume_from is not None:
            from .tracking import METRICS_FILENAME, drop_records_after

            # The steps after the resumed checkpoint are taken (and logged) again.
            drop_records_after(state.output_dir / LOGS_DIRNAME / METRICS_FILENAME, state.progress.global_step)
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


def run_folder_error(error: OSError, output_dir: Path) -> OutputWriteError:
    """``error`` (a failed write into the run folder, e.g. the metrics log on a full disk) as an
    :class:`OutputWriteError` naming the folder; an ``OutputWriteError`` is returned as it is."""
    if isinstance(error, OutputWriteError):
        return error
    found = write_failure_cause(error, output_dir)
    cause = found[0] if found is not None else str(error)
    return OutputWriteError(
        f"the run folder {output_dir} could not be written: {cause}", path=output_dir, error_number=error.errno
    )


def resolve_checkpoint(path: str | Path) -> Path:
    """Deprecated name of :func:`resolve_resume_checkpoint` (``mtlstm_hf.model_folder.resolve_checkpoint``
    is another function: a model folder or a loaded pair); goes in the next minor version."""
    import warnings

    warnings.warn(
        "mtlstm_hf.training.resolve_checkpoint is now resolve_resume_checkpoint; the old name goes in the next "
        "minor version.",
        DeprecationWarning,
        stacklevel=2,
    )
    return resolve_resume_checkpoint(path)
