"""Files and folders written so that a crash never leaves a half-written one, and the names of a run folder.

One home for every write of the library that must not be seen half done:

* :func:`atomic_path` (a temporary ``.NAME.tmp`` beside the target, renamed over it when the
  writer succeeded, removed when it failed), :func:`write_text_atomic` and
  :func:`write_json_atomic` (flushed to disk before the rename);
* :func:`replace_directory` (a folder built under a temporary name and swapped in one piece)
  and :func:`repair_interrupted_replacement` (what every reader calls first);
* :func:`write_failure_cause` (what a failed write of torch, safetensors or the OS means);
* the names inside a training run folder (``best_model/``, ``checkpoints/``, ``logs/``,
  ``training_config.json``) and :func:`recorded_corpus`, the corpus a saved model was trained on.

Imports nothing heavy (the commands use it before loading torch).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PathOrStr = str | os.PathLike
"""A file or folder path as the library's functions accept it."""

__all__ = [
    "BEST_MODEL_DIRNAME",
    "CHECKPOINTS_DIRNAME",
    "LOGS_DIRNAME",
    "TMP_SUFFIX",
    "TRAINING_CONFIG_FILENAME",
    "TRAINING_METRICS_FILENAME",
    "aside_path",
    "atomic_path",
    "recorded_corpus",
    "corpus_to_use",
    "repair_interrupted_replacement",
    "replace_directory",
    "temporary_path",
    "training_corpus",
    "write_failure_cause",
    "write_json_atomic",
    "write_text_atomic",
]

CHECKPOINTS_DIRNAME = "checkpoints"
BEST_MODEL_DIRNAME = "best_model"
LOGS_DIRNAME = "logs"
TRAINING_CONFIG_FILENAME = "training_config.json"
"""The run's ``TrainingSettings``, in the run folder and in every model folder it writes."""
TRAINING_METRICS_FILENAME = "training_metrics.json"
"""The validation of the weights in ``best_model/`` (step, loss, perplexity)."""
TMP_SUFFIX = ".tmp"


def temporary_path(path: str | Path) -> Path:
    """Where a write of ``path`` goes before it is renamed over it: ``.NAME.tmp`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it is renamed over ``path``
    (readers see the old file or the new one, never a mix), on failure removed.

    Example::

        with atomic_path(folder / "figure.png") as temporary:
            figure.savefig(temporary, format="png")
    """
    path = Path(path)
    temporary = temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()  # a failed write (disk full) leaves no partial file behind


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file (UTF-8) so that readers see the old or the new content, never a mix;
    flushed to disk before the rename.

    Raises:
        OSError: the file cannot be written (nothing is left behind).
    """
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_json_atomic(path: str | Path, value: Any) -> None:
    """:func:`write_text_atomic` of ``value`` as JSON (2-space indent, sorted keys, final newline)."""
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def aside_path(path: Path) -> Path:
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
    aside = aside_path(path)
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

    Raises:
        ValueError: ``destination`` is a symbolic link (replacing it would replace the link, not
            write into the folder it names); nothing is written.
    """
    destination = Path(destination)
    if destination.is_symlink():
        raise ValueError(
            f"{str(destination)!r} is a symbolic link (to {os.readlink(destination)!r}); nothing was written: give the "
            "folder itself."
        )
    tmp = destination.with_name(f".{destination.name}{TMP_SUFFIX}")
    aside = aside_path(destination)
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


_OS_ERROR_NUMBER = re.compile(r"\(os error (\d+)\)")


def write_failure_cause(error: BaseException, path: str | os.PathLike) -> tuple[str, int | None] | None:
    """``(cause, errno)`` when ``error`` is a failure to write files, else ``None``.

    Recognised: ``OSError`` (``errno.ENOSPC`` etc.), torch's ``RuntimeError`` from its zip
    writer (``[enforce fail at inline_container.cc:...]``, or ``basic_ios::clear: iostream
    error`` when the stream fails before the first record; both lose the errno: the cause
    then says how much space is left at ``path``) and safetensors' ``SafetensorError``
    (``I/O error: ... (os error 28)``).
    """
    if isinstance(error, OSError):
        cause = error.strerror or str(error) or type(error).__name__
        if error.filename is not None:
            cause = f"{os.fsdecode(error.filename)}: {cause}"
        return cause, error.errno
    text = str(error)
    torch_writer = ("inline_container.cc", "PytorchStreamWriter", "basic_ios::clear")
    if isinstance(error, RuntimeError) and any(mark in text for mark in torch_writer):
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


def training_corpus(model_dir: str | Path) -> tuple[str | None, str | None] | None:
    """The corpus a saved model was trained on, read from its ``training_config.json``.

    Every folder a run writes (``best_model/``, ``checkpoints/step-N/``) carries the run's
    :class:`~mtlstm_hf.training.TrainingSettings`; evaluation and analysis commands use this to
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


def recorded_corpus(checkpoint: PathOrStr) -> tuple[str, str | None]:
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
    from .data import sample_corpus_dir  # the data package imports torch: only when needed

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


def corpus_to_use(
    data: PathOrStr | None, dataset_config_name: str | None, checkpoint: PathOrStr
) -> tuple[str, str | None, bool]:
    """The corpus a command scores or analyses a model on: ``data`` as given, or without it the one
    recorded for the model (:func:`recorded_corpus`); a configuration given wins over the recorded one.

    Returns:
        ``(data, dataset_config_name, recorded)``; ``recorded`` says the corpus was looked up.

    Raises:
        ValueError: ``data`` is None and nothing records what the model was trained on.
    """
    if data is not None:
        return str(data), dataset_config_name, False
    recorded, recorded_config = recorded_corpus(checkpoint)
    return recorded, dataset_config_name if dataset_config_name is not None else recorded_config, True
