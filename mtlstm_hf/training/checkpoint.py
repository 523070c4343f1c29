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
(the old folder is moved aside, the new one moved in, the old one deleted);
:func:`replace_directory` repairs the one window in between on the next call.
"""

from __future__ import annotations

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
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def replace_directory(build: Callable[[Path], None], destination: str | Path) -> Path:
    """Build a folder with ``build(tmp_path)`` and move it to ``destination`` in one piece.

    If ``build`` raises, the temporary folder is removed and ``destination`` is untouched.
    A folder already at ``destination`` is moved aside, replaced, then deleted; a folder
    left aside by a crash between those two renames is moved back first.
    """
    destination = Path(destination)
    tmp = destination.with_name(f".{destination.name}{TMP_SUFFIX}")
    aside = destination.with_name(f".{destination.name}.old")
    if aside.exists():
        if destination.exists():
            shutil.rmtree(aside)
        else:
            os.replace(aside, destination)  # a crash left the last good copy aside: restore it
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if destination.exists():
        os.replace(destination, aside)
        os.replace(tmp, destination)
        shutil.rmtree(aside)
    else:
        os.replace(tmp, destination)
    return destination


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
    return (run_dir / CHECKPOINTS_DIRNAME / LATEST_FILENAME).is_file() or (
        run_dir / BEST_MODEL_DIRNAME / TRAINING_CONFIG_FILENAME
    ).is_file()


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
