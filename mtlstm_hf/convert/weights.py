"""Reading a checkpoint's tensors safely: a ``state_dict`` file or safetensors, never arbitrary objects.

The original tools save whole pickled objects: salesforce/awd-lstm-lm and
HuthLab/multi-timescale-LSTM-LMs ``torch.save([model, criterion, optimizer], f)``, PyTorch's
``word_language_model`` example ``torch.save(model, f)``. Unpickling those runs code of the
classes they name, so it is refused here; :data:`.sources.EXPORT_HINTS` gives, per source, the one line
that turns such a file into a ``state_dict`` file in the original's own environment.

Accepted (:func:`read_state_dict`):

* a safetensors file (recognised by its header, whatever its name);
* a file written by ``torch.save(model.state_dict(), f)``, read with
  ``torch.load(weights_only=True)`` (plain containers, tensors and numbers only; torch's
  legacy and zip formats), possibly nested under ``"model"`` or ``"state_dict"`` (fastai's
  ``learn.save`` writes ``{"model": ..., "opt": ...}``);
* keys with a leading ``module.`` (a model wrapped in ``DataParallel``) are stripped.
"""

from __future__ import annotations

import pickle
import re
import struct
from collections.abc import Mapping
from pathlib import Path

import torch

from mtlstm_hf.files import PathOrStr

from .sources import EXPORT_HINTS

__all__ = ["FullPickleError", "read_state_dict"]


_SAFETENSORS_MAX_HEADER = 100 * 2**20
_GLOBAL_NAME = re.compile(r"GLOBAL ([\w.]+)")
_NESTED_KEYS = ("model", "state_dict", "model_state_dict")


class FullPickleError(ValueError):
    """The file holds pickled Python objects (a whole model), not a ``state_dict``: refused
    because unpickling them would run the code of the classes they name."""


def _is_safetensors(path: Path) -> bool:
    """Whether ``path`` starts like a safetensors file: an 8-byte little-endian header length
    followed by a JSON object."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= _SAFETENSORS_MAX_HEADER and head[8:9] == b"{"


def _full_pickle_message(path: Path, error: BaseException, family: str | None) -> str:
    match = _GLOBAL_NAME.search(str(error))
    found = f"it names the Python object {match.group(1)!r}" if match else "it holds Python objects"
    hint = EXPORT_HINTS.get(family or "", "torch.save(model.state_dict(), 'MODEL.state_dict.pt')")
    return (
        f"{str(path)!r} is a full pickle, not a state_dict ({found}); unpickling it would run code, so it is "
        f"not read. Export its weights once where the model was made: {hint} -- then convert the new file"
    )


def _raise_if_unreadable(path: Path) -> None:
    """Read ``path`` to its end, raising the ``OSError`` of a disk or permission failure.

    torch's zip reader seeks past the end of a truncated file and reports ``OSError(EINVAL,
    "Invalid argument")``: a damaged file, not a failing disk. A file that reads to its end
    is therefore taken as damaged (the caller says so naming it) whatever ``OSError`` torch gave.
    """
    with open(path, "rb") as handle:
        while handle.read(1 << 24):
            pass


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """The ``name -> tensor`` mapping inside what ``torch.load`` returned."""
    if isinstance(loaded, Mapping):
        for key in _NESTED_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                loaded = inner
                break
    if not isinstance(loaded, Mapping) or not loaded:
        what = type(loaded).__name__ if not isinstance(loaded, Mapping) else "an empty mapping"
        raise ValueError(
            f"{str(path)!r} holds {what}, not a state_dict (a mapping from parameter names to tensors, "
            "as written by torch.save(model.state_dict(), f))"
        )
    not_tensors = [str(key) for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"{str(path)!r} is not a state_dict: the entries {not_tensors[:5]} are not tensors "
            "(expected parameter names mapped to tensors)"
        )
    return {str(key): value for key, value in loaded.items()}


def read_state_dict(path: PathOrStr, family: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, read without unpickling arbitrary objects.

    Args:
        path: a safetensors file or a ``torch.save(state_dict)`` file (see the module docstring).
        family: the source family (only used to name the export command in the error for a
            full pickle; :data:`.sources.EXPORT_HINTS`).

    Returns:
        ``{name: tensor}`` on the CPU, keys as saved except a leading ``module.`` (DataParallel).

    Raises:
        FileNotFoundError: ``path`` does not exist or is a folder.
        FullPickleError: the file is a pickle of whole objects (e.g. ``torch.save([model,
            criterion, optimizer])``); the message gives the one-line export to a ``state_dict``.
        ValueError: the file is neither format, is damaged (truncated: torch's own ``OSError``
            "Invalid argument" included), or holds something other than a mapping from names to
            tensors; the message names the file.
        OSError: the file cannot be read (permission denied, a failing disk).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder; give the weights file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"WEIGHTS {str(path)!r} {what}")
    if _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            if isinstance(error, OSError) and error.errno is not None:
                _raise_if_unreadable(path)
            raise ValueError(f"{str(path)!r} looks like a safetensors file but cannot be read: {error}") from None
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            if "Weights only load failed" in str(error) or "GLOBAL" in str(error):
                raise FullPickleError(_full_pickle_message(path, error, family)) from None
            raise ValueError(f"{str(path)!r} is not a readable torch or safetensors file: {error}") from None
        except (RuntimeError, EOFError, ValueError, OSError, struct.error) as error:
            if isinstance(error, OSError) and error.errno is not None:
                _raise_if_unreadable(path)  # the disk's own failure stays an I/O error (exit 4)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if isinstance(error, (OSError, EOFError)):
                first = f"truncated or damaged: {first}"
            raise ValueError(
                f"{str(path)!r} is not a readable torch or safetensors file ({first}); expected a state_dict "
                "written by torch.save(model.state_dict(), f), or safetensors"
            ) from None
        tensors = _unwrap(loaded, path)
    prefix = "module."
    if tensors and all(key.startswith(prefix) for key in tensors):
        tensors = {key[len(prefix) :]: value for key, value in tensors.items()}
    return tensors
