"""Exit codes of the ``mtlstm-*`` commands, and one-line messages for I/O failures.

Every command uses the same codes:

====  ==========================================================================================
code  meaning
====  ==========================================================================================
0     done
1     ``mtlstm-train`` only: the training loss became NaN or infinite (the last good checkpoint
      is kept)
2     bad input: arguments, data, checkpoint or configuration (fix the input and run again)
3     this machine cannot run the requested setting (e.g. ``--mixed-precision bf16`` on a CPU
      without native bf16)
4     I/O failure: disk full, permission denied, read-only file system, a file where a folder is
      needed or the reverse, network unreachable or the Hub / a Hub dataset offline (nothing
      already written is lost; fix the cause and run again, ``mtlstm-train --resume``)
130   interrupted (Ctrl-C / SIGTERM)
====  ==========================================================================================

Bad input and I/O failures are told apart by the exception: :func:`is_io_failure` is true
for an ``OSError`` other than ``FileNotFoundError`` / ``FileExistsError`` (a missing input or
an output that must not be overwritten, which the user names: bad input), so also for
``ConnectionError`` / ``TimeoutError`` (network, offline mode). :func:`describe_io_failure`
turns one into a single line naming the path and the cause, with what to do.

This module imports nothing heavy: the commands use it before loading torch.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = [
    "BAD_INPUT",
    "INTERRUPTED",
    "IO_FAILURE",
    "NON_FINITE_LOSS",
    "OK",
    "UNSUPPORTED_SETTING",
    "check_output_dir",
    "check_output_file",
    "describe_io_failure",
    "epilog",
    "fail",
    "hub_dataset_hint",
    "is_io_failure",
    "one_line",
    "report_failure",
]

OK = 0
NON_FINITE_LOSS = 1
BAD_INPUT = 2
UNSUPPORTED_SETTING = 3
IO_FAILURE = 4
INTERRUPTED = 130


def epilog(*, non_finite_loss: bool = False) -> str:
    """The ``Exit codes: ...`` line of a command's ``--help`` (``non_finite_loss``: list code 1)."""
    codes = ["0 done"]
    if non_finite_loss:
        codes.append("1 non-finite loss (the last good checkpoint is kept)")
    codes += [
        "2 bad input (arguments, data, checkpoint, config)",
        "3 this machine cannot run the requested setting (e.g. bf16 on a CPU without native bf16)",
        "4 I/O failure (disk full, permission denied, read-only file system, a file where a folder "
        "is needed or the reverse, network or offline Hub)",
        "130 interrupted",
    ]
    return "Exit codes: " + ", ".join(codes) + "."


def is_io_failure(error: BaseException) -> bool:
    """Whether ``error`` is an I/O failure (exit code 4) rather than bad input (2)."""
    return isinstance(error, OSError) and not isinstance(error, (FileNotFoundError, FileExistsError))


def one_line(text: str) -> str:
    """``text`` on one line (line breaks of multi-line library messages become spaces)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


_HINTS = {
    errno.ENOSPC: "free some space (or choose a location on another disk) and run again",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another location",
    errno.EFBIG: "the file is larger than this file system or a limit (ulimit -f) allows",
    errno.EROFS: "that file system is mounted read-only: choose a writable location",
    errno.EACCES: "this user may not write there: change the permissions or choose another location",
    errno.EPERM: "the operation is not permitted there: change the permissions or choose another location",
    errno.ENOTDIR: "a file stands where a folder is needed: choose another path",
    errno.EISDIR: "a folder stands where a file is needed: choose another path",
    errno.EIO: "the device reported an I/O error: check the disk",
}


def describe_io_failure(error: BaseException) -> str:
    """One line: the path(s) of ``error``, its cause and, for common causes, what to do.

    An ``OSError`` raised by the operating system carries ``filename`` and ``strerror``
    (``[Errno 28] No space left on device: 'x'`` becomes ``x: No space left on device; free
    some space ...``); other exceptions give their text.
    """
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
        if error.filename is not None:
            target = os.fsdecode(error.filename)
            if error.filename2 is not None:
                target += f" -> {os.fsdecode(error.filename2)}"
            text = f"{target}: {text}"
    else:
        text = str(error) or type(error).__name__
    hint = _HINTS.get(getattr(error, "errno", None))  # type: ignore[arg-type]  # None: no hint
    if hint is None and isinstance(error, (ConnectionError, TimeoutError)):
        hint = "the network or the Hub could not be reached: check the connection, or work from local files"
    return one_line(f"{text}; {hint}" if hint else text)


def hub_dataset_hint(data: str) -> str:
    """What to do when the Hub dataset ``data`` cannot be loaded (no network, offline mode)."""
    return (
        f"the Hub dataset {data!r} could not be loaded: a Hub dataset id needs network access "
        "(with HF_DATASETS_OFFLINE and HF_HUB_OFFLINE unset) unless it is already in the datasets cache; "
        "or give a local corpus folder (train.txt, valid.txt, test.txt)"
    )


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


def _check_creatable(folder: Path, option: str) -> None:
    """``folder`` exists as a writable folder, or can be created: its nearest existing
    ancestor is a writable folder."""
    existing = _first_existing(folder)
    if not existing.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"{option}: this is a file, so the folder {str(folder)!r} cannot be created there",
            str(existing),
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "the folder" if existing == folder else f"cannot create {str(folder)!r} there: the folder"
        raise PermissionError(
            errno.EACCES, f"{option}: {what} is not writable (read-only or no permission)", str(existing)
        )


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Check, before any work, that an output file can be written at ``path``.

    Raises:
        IsADirectoryError: ``path`` is a folder.
        NotADirectoryError: a part of the path above it is a file.
        PermissionError: its folder (or the nearest existing one above) is not writable.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{option}: this is a folder; give a file name", str(path))
    _check_creatable(path.parent if str(path.parent) else Path("."), option)
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, f"{option}: the file exists and is not writable", str(path))
    return path


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """Check, before any work, that ``path`` is, or can be created as, a writable folder.

    Raises:
        NotADirectoryError: ``path`` or a part of the path above it is a file.
        PermissionError: the folder (or the nearest existing one above) is not writable.
    """
    path = Path(path).expanduser()
    if os.path.lexists(path) and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{option}: this is a file; a folder is needed", str(path))
    _check_creatable(path, option)
    return path


def fail(prog: str, message: str, code: int) -> int:
    """Print ``PROG: error: MESSAGE`` on one line to stderr; return ``code``."""
    import sys

    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return code


def report_failure(prog: str, error: BaseException, data: str | None = None, interrupted: str = "interrupted") -> int:
    """One line for an expected failure of a command, and its exit code.

    An exception may declare its own code as the class attribute ``exit_code`` (e.g. a device
    or precision this machine lacks: :data:`UNSUPPORTED_SETTING`). Otherwise: an I/O failure
    (:func:`is_io_failure`) is :data:`IO_FAILURE`, with the Hub-dataset hint for a network
    failure when ``data`` (the ``--data`` value) is given; another ``OSError`` (a missing file)
    or a ``ValueError`` is :data:`BAD_INPUT`; ``KeyboardInterrupt`` is :data:`INTERRUPTED`
    (``interrupted`` is the message).

    Raises:
        BaseException: ``error`` itself when it is none of these (a bug: keep the traceback).
    """
    declared = getattr(type(error), "exit_code", None)
    if isinstance(declared, int):
        return fail(prog, str(error), declared)
    if isinstance(error, KeyboardInterrupt):
        return fail(prog, interrupted, INTERRUPTED)
    if isinstance(error, OSError):
        if not is_io_failure(error):  # a missing folder or file: bad input
            return fail(prog, str(error), BAD_INPUT)
        message = describe_io_failure(error)
        if isinstance(error, (ConnectionError, TimeoutError)) and data is not None:
            message = f"--data: {hub_dataset_hint(data)} ({error})"
        return fail(prog, message, IO_FAILURE)
    if isinstance(error, ValueError):
        return fail(prog, str(error), BAD_INPUT)
    raise error
