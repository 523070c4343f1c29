"""Atomic checkpoints of a training run, and the layout of a run folder.

Run folder (``TrainingConfig.output_dir``)::

    training_config.json          the run's TrainingConfig
    best_model/                   save_pretrained(): model + tokenizer + training_config.json
    checkpoints/LATEST            name of the newest complete checkpoint (one line)
    checkpoints/step-00000120/    accelerate.save_state() + our own state, see below
    logs/metrics.jsonl            metrics (JSON lines), logs/<tensorboard files>

A checkpoint folder holds ``accelerator.save_state`` output (``model.safetensors``,
``optimizer.bin``, ``random_states_<rank>.pkl``), ``trainer_state.pt`` (window iterator
position and RNG, learning-rate schedule, averaged-SGD averages), ``rank_state_<rank>.pt``
(the carried recurrent state of each process's rows), the model ``config.json``, the
tokenizer, ``training_config.json`` and, written last, ``training_state.json`` (format
marker, counters, validation history).

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
import errno
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHECKPOINT_FORMAT = "mtlstm_hf.training.checkpoint/1"
"""Value of ``format`` in ``training_state.json``: how we recognise our own checkpoints."""

CHECKPOINTS_DIRNAME = "checkpoints"
BEST_MODEL_DIRNAME = "best_model"
LOGS_DIRNAME = "logs"
LATEST_FILENAME = "LATEST"
STATE_FILENAME = "training_state.json"
TRAINER_STATE_FILENAME = "trainer_state.pt"
RANK_STATE_FILENAME = "rank_state_{rank}.pt"
TRAINING_CONFIG_FILENAME = "training_config.json"
TMP_SUFFIX = ".tmp"
_CHECKPOINT_NAME = re.compile(r"^step-(\d{8})(?:-(\d+))?$")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file so that readers see the old or the new content, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a failed write (disk full) leaves no partial file behind
        raise


def write_json_atomic(path: str | Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def _aside(path: Path) -> Path:
    """Where :func:`replace_directory` moves the previous folder while it swaps in the new one."""
    return path.with_name(f".{path.name}.old")


def repair_interrupted_replacement(path: str | os.PathLike, *, clean_up: bool = False) -> bool:
    """Undo a folder replacement that a crash interrupted (see :func:`replace_directory`).

    When ``path`` does not exist but ``.NAME.old`` beside it does, a crash came between the
    two renames of a replacement and the last complete copy is the one moved aside: it is
    moved back. Readers of a model folder call this before reading it (a reader that finds
    nothing to repair changes nothing).

    Args:
        path: the folder, e.g. ``run/best_model``.
        clean_up: also delete what only the writer of the folder may delete: a stale
            ``.NAME.old`` next to a complete ``NAME`` (a crash after the second rename) and
            an unfinished ``.NAME.tmp`` build. A training run does this when it starts.

    Returns:
        Whether the folder was moved back.
    """
    path = Path(path).expanduser()
    aside = _aside(path)
    restored = False
    if aside.is_dir() and not os.path.lexists(path):
        try:
            os.replace(aside, path)
            restored = True
        except FileNotFoundError:
            if not path.is_dir():  # not another process restoring it at the same moment
                raise
    if clean_up:
        if aside.is_dir() and path.is_dir():
            shutil.rmtree(aside, ignore_errors=True)
        tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
    return restored


def replace_directory(build: Callable[[Path], None], destination: str | Path) -> Path:
    """Build a folder with ``build(tmp_path)`` and move it to ``destination`` in one piece.

    If ``build`` raises, the temporary folder is removed and ``destination`` is untouched.
    A folder already at ``destination`` is moved aside (``.NAME.old``), replaced, then
    deleted; a folder left aside by a crash between those two renames is moved back first
    (:func:`repair_interrupted_replacement`). A reader that moves the old folder back while
    this call is between its two renames does not make it fail: it moves it aside again.
    """
    destination = Path(destination)
    tmp = destination.with_name(f".{destination.name}{TMP_SUFFIX}")
    aside = _aside(destination)
    repair_interrupted_replacement(destination, clean_up=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for attempt in range(3):
        if destination.exists():
            os.replace(destination, aside)
        try:
            os.replace(tmp, destination)
            break
        except OSError as error:
            # A reader restored the old folder in between (ENOTEMPTY / EEXIST): move it aside again.
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == 2:
                raise
    shutil.rmtree(aside, ignore_errors=True)
    return destination


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


_OS_ERROR_NUMBER = re.compile(r"\(os error (\d+)\)")


def write_failure_cause(error: BaseException, path: str | os.PathLike) -> tuple[str, int | None] | None:
    """``(cause, errno)`` when ``error`` is a failure to write files, else ``None``.

    Recognised: ``OSError`` (``errno.ENOSPC`` etc.), torch's ``RuntimeError`` from its zip
    writer (``[enforce fail at inline_container.cc:...]``, which loses the errno: the cause
    then says how much space is left at ``path``) and safetensors' ``SafetensorError``
    (``I/O error: ... (os error 28)``).
    """
    if isinstance(error, OSError):
        cause = error.strerror or str(error) or type(error).__name__
        if error.filename is not None:
            cause = f"{os.fsdecode(error.filename)}: {cause}"
        return cause, error.errno
    text = str(error)
    if isinstance(error, RuntimeError) and ("inline_container.cc" in text or "PytorchStreamWriter" in text):
        place = Path(path)
        while not place.exists() and place != place.parent:
            place = place.parent
        try:
            free = f"{shutil.disk_usage(place).free / 2**20:.1f} MiB free there now"
        except OSError:
            free = "free space unknown"
        first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        return f"torch could not write the file ({first}): the disk is probably full ({free})", None
    if type(error).__name__ == "SafetensorError" and "I/O error" in text:
        match = _OS_ERROR_NUMBER.search(text)
        if match:
            number = int(match.group(1))
            return os.strerror(number), number
        return text.strip().splitlines()[0], None
    return None


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
    """The checkpoint named in ``LATEST``, or ``None`` when there is no ``LATEST``."""
    pointer = checkpoints_dir / LATEST_FILENAME
    if not pointer.is_file():
        return None
    return checkpoints_dir / pointer.read_text(encoding="utf-8").strip()


def has_training_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` already holds a run of this trainer (checkpoints or a best model)."""
    run_dir = Path(run_dir)
    best = run_dir / BEST_MODEL_DIRNAME
    return (run_dir / CHECKPOINTS_DIRNAME / LATEST_FILENAME).is_file() or any(
        (folder / TRAINING_CONFIG_FILENAME).is_file() for folder in (best, _aside(best))  # aside: an interrupted replacement
    )


def resolve_checkpoint(path: str | Path) -> Path:
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
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"resume_from: {str(candidate)!r} was not written by this trainer "
            f"(format {state.get('format') if isinstance(state, dict) else None!r}, expected {CHECKPOINT_FORMAT!r})."
        )
    required = [TRAINER_STATE_FILENAME, TRAINING_CONFIG_FILENAME, "config.json", "optimizer.bin"]
    missing = [name for name in required if not (candidate / name).is_file()]
    if not ((candidate / "model.safetensors").is_file() or (candidate / "pytorch_model.bin").is_file()):
        missing.append("model.safetensors")
    if missing:
        raise ValueError(f"resume_from: checkpoint {str(candidate)!r} is incomplete: missing {missing}.")
    return candidate


def read_checkpoint_state(checkpoint_dir: Path) -> dict[str, Any]:
    """The ``training_state.json`` of a checkpoint."""
    return json.loads((checkpoint_dir / STATE_FILENAME).read_text(encoding="utf-8"))


def training_corpus(model_dir: str | Path) -> tuple[str | None, str | None] | None:
    """The corpus a saved model was trained on, read from its ``training_config.json``.

    Every folder a run writes (``best_model/``, ``checkpoints/step-N/``) carries the run's
    :class:`~mtlstm_hf.training.TrainingConfig`; evaluation and analysis commands use this to
    default their ``--data`` to the training corpus.

    Returns:
        ``(data, dataset_config_name)`` as the run had them (``data`` is ``None`` for the
        embedded WikiText-2 sample, :func:`mtlstm_hf.data.sample_corpus_dir`), or ``None``
        when the folder has no readable ``training_config.json`` (a model not saved by
        ``mtlstm-train``).
    """
    path = Path(model_dir) / TRAINING_CONFIG_FILENAME
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict):
        return None
    return saved.get("data"), saved.get("dataset_config_name")


def recorded_corpus(checkpoint: str | Path) -> tuple[str, str | None]:
    """The corpus to evaluate or analyse a model on when none is given: the one ``mtlstm-train``
    recorded for it.

    ``training_config.json`` is looked for in the model folder, then in its run folder (the
    parent of ``best_model/``, the grandparent of ``checkpoints/step-N/``); see
    :func:`training_corpus`. A run on the embedded WikiText-2 sample (``data`` null) gives the
    sample's folder (:func:`mtlstm_hf.data.sample_corpus_dir`).

    Returns:
        ``(data, dataset_config_name)``.

    Raises:
        ValueError: nothing records what the model was trained on; the message says what to
            pass as ``--data``.
    """
    from ..data import sample_corpus_dir

    folder = Path(checkpoint).expanduser()
    candidates = [folder]
    if folder.name == BEST_MODEL_DIRNAME:
        candidates.append(folder.parent)
    if folder.parent.name == CHECKPOINTS_DIRNAME:
        candidates.append(folder.parent.parent)
    for candidate in candidates:
        corpus = training_corpus(candidate)
        if corpus is not None:
            data, data_config = corpus
            return (str(sample_corpus_dir()) if data is None else str(data)), data_config
    raise ValueError(
        f"--data is needed: no training_config.json in {str(folder)!r} (or its run folder) says what it was "
        "trained on. Pass a corpus folder with train/valid/test.txt (e.g. ../shared/data/wikitext-2) or a "
        f"Hub dataset id; the WikiText-2 sample shipped with the package is {sample_corpus_dir()}."
    )
