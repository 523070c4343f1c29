"""A model folder's ``config.json``, read and checked before transformers reads it.

``AutoConfig.from_pretrained`` of one without ``model_type`` but with an ``auto_map`` (every
folder ``save_pretrained`` writes for this model has one, for remote code) asks on the terminal
whether to run the folder's code; one that is not a JSON object fails with an ``AttributeError``;
another model's (GPT-2's) reaches code that expects an mtlstm configuration.
:func:`read_model_config` is the one check of a model folder's ``config.json`` that the commands
make before transformers reads it (``mtlstm-train --init-from`` and ``--resume``; the checkpoints
of ``mtlstm-eval``, ``mtlstm-analyze`` and ``mtlstm-push`` through
:func:`mtlstm_hf.model_folder.load_checkpoint`): one line naming the file, what it holds and what is
expected, and nothing from the folder runs. A folder holding a PEFT adapter instead of a model is
named as such. Imports no torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "ADAPTER_CONFIG_NAME",
    "CONFIG_NAME",
    "MODEL_TYPE",
    "json_type_name",
    "read_config_json",
    "read_model_config",
]

MODEL_TYPE = "mtlstm"
"""``model_type`` of this library's configuration (``MTLSTMConfig.model_type``)."""

CONFIG_NAME = "config.json"
ADAPTER_CONFIG_NAME = "adapter_config.json"
"""The file PEFT's ``save_pretrained`` writes beside ``adapter_model.safetensors``."""

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def json_type_name(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (``[1, 2]``: "an array")."""
    return _JSON_TYPES.get(type(value), "a number")


def _no_config(folder: Path, what: str) -> str:
    """Why ``folder`` (without ``config.json``) is not a model folder."""
    if (folder / ADAPTER_CONFIG_NAME).is_file():
        return (
            f"{what}: {str(folder)!r} holds a PEFT adapter ({ADAPTER_CONFIG_NAME}), not a model: load it onto its "
            "base model with mtlstm_hf.adapters.load_adapter(base_model, folder) and give the merged model "
            "(merge_and_unload(), then save_pretrained; examples/finetune_lora.py --merge writes one)."
        )
    return (
        f"{what}: {str(folder)!r} is not an {MODEL_TYPE} checkpoint: it has no {CONFIG_NAME} "
        "(expected a folder written by model.save_pretrained)."
    )


def read_config_json(folder: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any] | None:
    """The ``config.json`` of ``folder`` as a dict, whatever its model type; ``None`` when the folder
    has none.

    Raises:
        FileNotFoundError: ``folder`` does not exist or is not a folder.
        ValueError: one line naming the file (first word ``what``): not UTF-8 JSON, not a JSON object.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"{what}: {str(folder)!r} {state}.")
    path = folder / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{what}: {str(path)!r} is not valid JSON ({error}); expected the {CONFIG_NAME} of model.save_pretrained."
        ) from None
    if not isinstance(config, dict):
        raise ValueError(
            f"{what}: {str(path)!r} must hold a JSON object (the model's configuration), got {json_type_name(config)}."
        )
    return config


def read_model_config(folder: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """The ``config.json`` of ``folder`` as a dict, after checking it describes an mtlstm model.

    Args:
        folder: a model folder (``model.save_pretrained``).
        what: what the folder is, the first word of every message (the setting, e.g. ``"init_from"``).

    Returns:
        The parsed configuration (``model_type == "mtlstm"``).

    Raises:
        FileNotFoundError: ``folder`` does not exist or is not a folder.
        ValueError: one line naming the file: no ``config.json`` (a PEFT adapter folder said so),
            not UTF-8 JSON, not a JSON object, no ``model_type``, or another ``model_type`` than
            ``"mtlstm"`` (both named).
    """
    config = read_config_json(folder, what)
    folder = Path(folder).expanduser()
    path = folder / CONFIG_NAME
    if config is None:
        raise ValueError(_no_config(folder, what))
    if "model_type" not in config:
        raise ValueError(
            f"{what}: {str(path)!r} has no model_type; expected {MODEL_TYPE!r} (the {CONFIG_NAME} of an mtlstm model's "
            "save_pretrained)."
        )
    if config["model_type"] != MODEL_TYPE:
        raise ValueError(
            f"{what}: {str(folder)!r} is not an {MODEL_TYPE} checkpoint: {str(path)!r} has "
            f"model_type={config['model_type']!r}, expected {MODEL_TYPE!r}."
        )
    return config
