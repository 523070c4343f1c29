"""SHA-256 digests of the weight files of every folder this library writes, checked when it reads one.

A weights file damaged after it was written (a flipped block on disk, a bad copy) can stay
loadable and finite: nothing in the tensors tells. So each model folder this library writes
(``best_model/`` of a training run, each training checkpoint, ``mtlstm-convert``'s output, the
demo) gets ``weights_sha256.json``, the SHA-256 of its binary files (``*.safetensors``,
``*.bin``, ``*.pt``, ``*.pkl``), written while the folder is built; the library's readers
(:func:`mtlstm_hf.model_folder.load_model_strictly`, so ``mtlstm-eval``, ``mtlstm-analyze``,
``mtlstm-push`` and ``init_from``; a training resume) check them first. A folder without the record
(written by ``save_pretrained`` alone, downloaded from the Hub) is read without the check.

This module imports nothing heavy.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from .files import write_text_atomic

__all__ = [
    "DIGESTS_FILENAME",
    "RECORDED_SUFFIXES",
    "WeightDigestError",
    "file_sha256",
    "record_weight_digests",
    "verify_weight_digests",
]

DIGESTS_FILENAME = "weights_sha256.json"
"""The record, beside the files it covers."""
RECORDED_SUFFIXES: tuple[str, ...] = (".safetensors", ".bin", ".pt", ".pkl")
"""Files of a folder whose digest is recorded: weights, optimizer and random states."""
FORMAT = "mtlstm_hf.weights_sha256/1"
_HEX = re.compile(r"^[0-9a-f]{64}$")


class WeightDigestError(ValueError):
    """A recorded file is missing or is not the file that was written (or the record is damaged)."""


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as 64 lowercase hex digits (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_weight_digests(folder: str | Path) -> dict[str, str]:
    """Write ``folder/weights_sha256.json`` with the SHA-256 of each regular file of ``folder``
    whose suffix is in :data:`RECORDED_SUFFIXES` (symbolic links are not recorded).

    Call it when the folder is complete, before it is published (the writers build folders under
    a temporary name and rename them). Returns ``{file name: digest}``.

    Raises:
        OSError: a file cannot be read, or the record cannot be written.
    """
    folder = Path(folder)
    files = sorted(
        path
        for path in folder.iterdir()
        if path.suffix in RECORDED_SUFFIXES and path.is_file() and not path.is_symlink()
    )
    digests = {path.name: file_sha256(path) for path in files}
    text = json.dumps({"format": FORMAT, "sha256": digests}, indent=2, sort_keys=True) + "\n"
    write_text_atomic(folder / DIGESTS_FILENAME, text)  # a cut write never leaves a half record
    return digests


def _recorded(path: Path) -> dict[str, str]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightDigestError(f"{str(path)!r} is damaged ({error}); delete it to read the folder unchecked") from None
    digests = record.get("sha256") if isinstance(record, dict) and record.get("format") == FORMAT else None
    if not isinstance(digests, dict) or not all(
        isinstance(name, str) and "/" not in name and "\\" not in name and name not in ("", ".", "..")
        and isinstance(value, str) and _HEX.match(value)
        for name, value in digests.items()
    ):  # fmt: skip
        raise WeightDigestError(
            f"{str(path)!r} is not a weight digest record of this library (format {FORMAT!r}, file names with "
            "64-digit SHA-256 hex digests); delete it to read the folder unchecked"
        )
    return digests


def verify_weight_digests(folder: str | Path) -> bool:
    """Check each file recorded in ``folder/weights_sha256.json`` against its digest.

    Returns:
        ``True`` when the record was found and every file matched; ``False`` when the folder
        has no record (nothing to check).

    Raises:
        WeightDigestError: (a ``ValueError``) naming the file: recorded but missing, or with
            another SHA-256 than the one recorded when the folder was written (both shown); or
            a damaged record.
        OSError: a recorded file cannot be read.
    """
    folder = Path(folder)
    path = folder / DIGESTS_FILENAME
    if not path.is_file():
        return False
    for name, expected in _recorded(path).items():
        file = folder / name
        if not file.is_file():
            raise WeightDigestError(
                f"{str(file)!r} is recorded in {DIGESTS_FILENAME} but missing; restore it from a copy"
            )
        actual = file_sha256(file)
        if actual != expected:
            raise WeightDigestError(
                f"{str(file)!r} is not the file that was written: its SHA-256 is {actual}, {DIGESTS_FILENAME} recorded "
                f"{expected} when the folder was written (the file was damaged or changed since). Restore it from a "
                f"copy; if you replaced it on purpose, delete {DIGESTS_FILENAME}"
            )
    return True
