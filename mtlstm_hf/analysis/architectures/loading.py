"""Loading a model folder (or a Hub id) of any architecture the analyses read.

:func:`load_recurrent_checkpoint` loads a transformers causal LM of a registered architecture
(:mod:`.registry`) with its own tokenizer (``AutoTokenizer`` of the folder); an MTLSTM folder is
left to :func:`mtlstm_hf.model_folder.load_checkpoint` (its stricter checks). :func:`local_folder`
turns a Hub id into a downloaded snapshot. Loading runs no code from the folder
(``trust_remote_code=False``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mtlstm_hf.files import PathOrStr
from mtlstm_hf.input_files import read_config_json

from .registry import architecture_of

__all__ = ["HUB_ID", "checkpoint_model_type", "load_recurrent_checkpoint", "local_folder"]

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""What a Hub model id (``owner/name``) looks like."""

# What the analyses need of a Hub repository: configuration, weights, tokenizer.
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]


def local_folder(checkpoint: PathOrStr) -> Path:
    """The local folder of ``checkpoint``: itself when it is a folder, else (an ``owner/name`` Hub
    id) a snapshot of the repository's configuration, safetensors weights and tokenizer files
    (``huggingface_hub.snapshot_download``, the Hub cache).

    Raises:
        FileNotFoundError: neither a folder nor something that looks like a Hub id.
        OSError: the download failed (offline, no such repository).
    """
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        return path
    text = str(checkpoint)
    if path.exists() or not HUB_ID.match(text):
        what = "is not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(f"checkpoint {text!r} {what} (give a model folder or a Hub id owner/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, allow_patterns=_HUB_FILES))
    except Exception as error:  # offline, unknown repository, ...: one kind of failure for the caller
        raise OSError(f"cannot download the Hub model {text!r}: {error}") from error


def checkpoint_model_type(folder: PathOrStr) -> Any:
    """``model_type`` of ``folder/config.json`` (None when the file or the field is missing).

    Raises:
        ValueError: ``config.json`` is not a JSON object (:func:`mtlstm_hf.input_files.read_config_json`).
    """
    config = read_config_json(folder, "checkpoint")
    return None if config is None else config.get("model_type")


def load_recurrent_checkpoint(folder: PathOrStr, device: Any = None) -> tuple[Any, Any] | None:
    """Model (eval mode) and tokenizer of a folder of a registered non-MTLSTM architecture, or None
    for an MTLSTM folder (and for a folder without ``config.json``: the MTLSTM loader names what is
    missing).

    Raises:
        ValueError: a ``model_type`` no adapter reads (the message names the supported ones); a
            tokenizer without an end-of-sequence token (the corpus is one token stream, one
            ``eos`` after each line); weights that do not load.
        FileNotFoundError: no tokenizer files.
    """
    folder = Path(folder)
    model_type = checkpoint_model_type(folder)
    if model_type is None or model_type == "mtlstm":
        return None
    try:
        entry = architecture_of(model_type)
    except ValueError as error:  # named as every command names a model folder it refuses
        raise ValueError(
            f"checkpoint: {str(folder)!r} has model_type={model_type!r}, which {str(error).removeprefix('the ')}"
        ) from None
    import transformers
    from transformers import AutoTokenizer

    from mtlstm_hf.devices import resolve_device

    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise FileNotFoundError(
            f"{str(folder)!r} has no tokenizer (tokenizer.json / tokenizer_config.json); the analyses tokenize the "
            "corpus with the model's own tokenizer: save it beside the model"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"the tokenizer of {str(folder)!r} has no eos_token; the corpus becomes one token stream with an eos "
            "token after each line"
        )
    model_class = getattr(transformers, entry.model_class)
    try:
        model = model_class.from_pretrained(folder, trust_remote_code=False)
    except Exception as error:  # safetensors, size and config errors share no base class
        raise ValueError(f"{str(folder)!r}: the {entry.display_name} weights cannot be loaded: {error}") from error
    return model.to(resolve_device(device)).eval(), tokenizer
