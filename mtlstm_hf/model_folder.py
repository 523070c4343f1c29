"""Loading a model folder: the one home of reading what ``save_pretrained`` wrote, for every
package (evaluation, analysis, training's ``--init-from``, the Hub tools, conversion).

* :func:`load_checkpoint`: model and word tokenizer of a folder, checked against each other;
* :func:`load_model_strictly`: the model alone, refusing anything but a complete, finite set of
  weights that matches its record (``weights_sha256.json``) and its configuration;
* :func:`resolve_checkpoint`: a folder or an already loaded ``(model, tokenizer)`` pair.

The model class is reached through ``AutoModelForCausalLM`` (this module does not import the
models package, so that evaluation stays model-independent); :func:`mtlstm_hf.register_auto_classes`
registers ``model_type="mtlstm"`` first. Loading runs no code from the folder
(``trust_remote_code=False``).
"""

from __future__ import annotations

import contextlib
import json
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.tokenization_utils_base import FULL_TOKENIZER_FILE, TOKENIZER_CONFIG_FILE
from transformers.utils import (
    CONFIG_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
)
from transformers.utils import logging as hf_logging

from . import register_auto_classes
from .data import check_vocabulary_fingerprint
from .devices import resolve_device
from .files import PathOrStr, repair_interrupted_replacement
from .input_files import read_model_config
from .progress import no_transformers_progress_bar
from .weight_digests import verify_weight_digests

__all__ = ["Checkpoint", "load_checkpoint", "load_model_strictly", "resolve_checkpoint"]

#: A checkpoint folder, or an already loaded ``(model, tokenizer)`` pair (what :func:`load_checkpoint` returns).
Checkpoint = PathOrStr | tuple[PreTrainedModel, PreTrainedTokenizerBase]

_WEIGHT_FILES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
_TOKENIZER_FILES = (FULL_TOKENIZER_FILE, TOKENIZER_CONFIG_FILE)


def _read_model_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of ``folder`` as a dict, after checking it describes an MTLSTM model
    (:func:`mtlstm_hf.input_files.read_model_config`, before transformers reads the folder)."""
    return read_model_config(folder, "checkpoint")


def load_checkpoint(
    path: PathOrStr, device: torch.device | str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the model and word tokenizer saved together in a checkpoint folder.

    Args:
        path: local folder holding ``config.json`` (``model_type="mtlstm"``), the weights
            (``model.safetensors``, ``pytorch_model.bin`` or a sharded index) and the
            tokenizer files (``tokenizer.json`` / ``tokenizer_config.json``).
        device: where to put the model (default: CUDA when available, else the CPU:
            :func:`mtlstm_hf.devices.resolve_device`).

    Returns:
        ``(model, tokenizer)``: an ``MTLSTMForCausalLM`` in eval mode and the tokenizer.

    Raises:
        FileNotFoundError: the folder does not exist, or it lacks the weights or the tokenizer.
        ValueError: the folder is not an mtlstm checkpoint (no ``config.json`` or another
            ``model_type``), or the tokenizer's vocabulary size differs from ``config.vocab_size``;
            ``device`` is not a device name.
        UnavailableDeviceError: ``device`` does not exist on this machine.
    """
    register_auto_classes()  # before the tokenizer, which reads config.json too
    folder = Path(path).expanduser()
    repair_interrupted_replacement(folder)  # a crash between the two renames of a folder replacement
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"checkpoint {str(path)!r} {what}")
    config = _read_model_config(folder)
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise FileNotFoundError(
            f"checkpoint {str(folder)!r} has no model weights (looked for {', '.join(_WEIGHT_FILES)})"
        )
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise FileNotFoundError(
            f"checkpoint {str(folder)!r} has no tokenizer (looked for {', '.join(_TOKENIZER_FILES)}); "
            "save it beside the model with tokenizer.save_pretrained(folder)"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)  # never asks to run the folder's code
    # Checked before loading the weights: a mismatched pair would index the embedding out of
    # range (or silently score with the wrong words), and the check is cheap.
    if len(tokenizer) != config.get("vocab_size"):
        raise ValueError(
            f"checkpoint {str(folder)!r}: the tokenizer has {len(tokenizer)} tokens but the model's "
            f"config.vocab_size is {config.get('vocab_size')}; they must have been saved from different runs"
        )
    check_vocabulary_fingerprint(config.get("vocab_fingerprint"), tokenizer, f"checkpoint {str(folder)!r}")  # type: ignore[arg-type]  # a word tokenizer
    device = resolve_device(device)
    model = load_model_strictly(folder).to(device)  # type: ignore[arg-type]  # transformers' stub of .to
    return model.eval(), tokenizer


@contextlib.contextmanager
def _transformers_logging(level: int) -> Iterator[None]:
    """transformers' log level set to ``level`` inside the block."""
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity(level)
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


_GATE_BIAS = re.compile(r"^(?:model\.)?layers\.(\d+)\.gate_biases\.(forget_gate|input_gate)$")


def _assigned_infinity(model: PreTrainedModel, tensors: dict[str, torch.Tensor], name: str) -> bool:
    """Whether the non-finite entries of ``name`` are assigned timescales of 0 or infinity: a forget
    or input gate bias of a layer with a timescale schedule, ``b_f = -inf`` / ``+inf`` with
    ``b_i = -b_f`` in the same unit (e.g. the last unit of the reference grid, T = 0); no NaN."""
    match = _GATE_BIAS.match(name)
    schedules = getattr(model.config, "timescale_schedules", None)
    if match is None or not schedules:
        return False
    index = int(match.group(1))
    if index >= len(schedules) or schedules[index].get("type", "none") == "none":
        return False
    prefix = name[: -len(match.group(2))]
    forget, input_ = tensors.get(prefix + "forget_gate"), tensors.get(prefix + "input_gate")
    if forget is None or input_ is None or forget.shape != input_.shape:
        return False
    infinite = torch.isinf(forget) | torch.isinf(input_)
    return not bool(torch.isnan(forget).any() or torch.isnan(input_).any()) and bool(
        (input_[infinite] == -forget[infinite]).all()
    )


def _saved_tensor_names(folder: Path) -> set[str] | None:
    """The tensor names a model folder's safetensors weights hold (one file or shards), or None
    for other formats."""
    from safetensors import safe_open

    if (folder / "model.safetensors").is_file():
        with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
            return set(weights.keys())
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}))
    return None


def _missing_recurrent_sides(model: PreTrainedModel, folder: Path) -> list[str]:
    """The trained gates' recurrent-side biases (``<gate>_hh``) a checkpoint lacks although it holds
    others: damage. A checkpoint holding none predates the two vectors and loads with zeros there
    (transformers does not report them missing, by the model's ``_keys_to_ignore_on_load_missing``)."""
    saved = _saved_tensor_names(folder)
    if saved is None:
        return []
    recurrent = {name for name in model.state_dict() if ".gate_biases." in name and name.endswith("_hh")}
    present = recurrent & saved
    return sorted(recurrent - present) if present else []


def _loading_entry(entry: Any) -> str:
    """A tensor of transformers' loading info in words: a name, or for a tensor of another shape
    (``(name, saved shape, expected shape)``) ``name saved (44, 10), expected (40, 10)``."""
    if isinstance(entry, tuple) and len(entry) == 3:
        name, saved, expected = entry
        return f"{name} saved {tuple(saved)}, expected {tuple(expected)}"
    return str(entry)


def load_model_strictly(folder: PathOrStr, model_class: Any = AutoModelForCausalLM) -> PreTrainedModel:
    """``model_class.from_pretrained(folder)`` that refuses anything but a complete, finite set of weights.

    ``from_pretrained`` alone re-initialises missing tensors at random, ignores unexpected
    ones and only warns; here each of those, a tensor of the wrong shape, a non-finite
    value and an unreadable weights file is an error. Uses the installed, registered
    classes (``trust_remote_code=False``): loading runs no code from the folder.

    Raises:
        WeightDigestError: (a ``ValueError``) a file recorded in the folder's ``weights_sha256.json``
            is missing or is not the file that was written (:mod:`mtlstm_hf.weight_digests`).
        ValueError: naming the weights file and the tensors: missing, unexpected or of
            another shape than the config implies, non-finite (NaN/inf; an infinite forget and input
            gate bias pair of a layer with a timescale schedule is an assigned T = 0 or inf), frozen
            timescale biases other than ``config.timescale_schedules`` gives, or the file is
            truncated / not a safetensors file / a pickle that cannot be read safely.
    """
    register_auto_classes()
    folder = Path(folder)
    verify_weight_digests(folder)  # a damaged file can stay finite: checked against its record first
    weights = next((folder / name for name in _WEIGHT_FILES if (folder / name).is_file()), folder)
    _read_model_config(folder)  # a config.json that is not an mtlstm one is named before transformers reads it
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except ValueError as err:  # the configuration's own checks (model type, missing fields, values)
        raise ValueError(f"{str(folder / CONFIG_NAME)!r}: {err}") from None
    try:
        # transformers' own "LOAD REPORT" would say that missing tensors were "newly initialized":
        # silenced, the error below names them instead.
        with no_transformers_progress_bar(), _transformers_logging(hf_logging.ERROR):
            # ignore_mismatched_sizes: a tensor of another shape is reported in the loading info
            # (name, saved and expected shape), and refused below, instead of an error naming nothing.
            model, info = model_class.from_pretrained(
                folder, config=config, trust_remote_code=False, output_loading_info=True, ignore_mismatched_sizes=True
            )
    except Exception as err:  # safetensors, pickle and size errors share no base class
        text = str(err).strip()
        reason = text.splitlines()[0] if text else type(err).__name__
        if "ignore_mismatched_sizes" in text:
            reason = "a tensor has another shape than the configuration implies"
        elif isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text:
            reason = (
                "it is a pickle that cannot be loaded safely (weights_only); re-save it as safetensors "
                "where it was made: model.save_pretrained(folder, safe_serialization=True)"
            )
        raise ValueError(f"{str(weights)!r}: the model weights cannot be loaded: {reason}.") from err
    problems = []
    missing_recurrent = _missing_recurrent_sides(model, folder)
    info = {**info, "missing_keys": set(info.get("missing_keys", ())) | set(missing_recurrent)}
    for key, label in (
        ("missing_keys", "missing"),
        ("unexpected_keys", "unexpected"),
        ("mismatched_keys", "of another shape than the configuration implies"),
    ):
        names = sorted(_loading_entry(entry) for entry in info.get(key, ()))
        if names:
            problems.append(f"{label}: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}")
    if problems:
        raise ValueError(
            f"{str(weights)!r} does not hold exactly the model's tensors ({'; '.join(problems)}); "
            "it is damaged or belongs to another model."
        )
    tensors = model.state_dict()
    non_finite = [
        name
        for name, tensor in tensors.items()
        if tensor.is_floating_point()
        and not bool(torch.isfinite(tensor).all())
        and not _assigned_infinity(model, tensors, name)
    ]
    if non_finite:
        raise ValueError(f"{str(weights)!r} holds non-finite values (NaN or inf) in {', '.join(non_finite[:8])}.")
    mismatches = model.timescale_mismatches() if hasattr(model, "timescale_mismatches") else []
    if mismatches:
        raise ValueError(
            f"{str(folder / CONFIG_NAME)!r} and {str(weights)!r} disagree: {' '.join(mismatches)} Correct config.json "
            "or save the model again."
        )
    return model


def resolve_checkpoint(
    checkpoint: Checkpoint, device: torch.device | str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str | None]:
    """``(model, tokenizer, path or None)`` from a checkpoint folder (:func:`load_checkpoint`) or a
    loaded ``(model, tokenizer)`` pair (used where it is; ``device`` applies to a folder only).

    Raises:
        ValueError: a tuple that is not a pair; the errors of :func:`load_checkpoint`.
        FileNotFoundError: see :func:`load_checkpoint`.
    """
    if isinstance(checkpoint, tuple):
        if len(checkpoint) != 2:
            raise ValueError(f"a loaded checkpoint must be a (model, tokenizer) pair, got {len(checkpoint)} items")
        model, tokenizer = checkpoint
        return model, tokenizer, None
    model, tokenizer = load_checkpoint(checkpoint, device=device)
    return model, tokenizer, str(checkpoint)
