"""Writing a tokenizer folder without the keys of the session that loaded it.

``tokenizer.save_pretrained`` of a tokenizer that ``from_pretrained`` loaded writes how it was
loaded into ``tokenizer_config.json`` (transformers 5: ``is_local``, ``local_files_only``). Those
keys describe one machine's loading call, not the tokenizer: a folder written by a training run
given ``--tokenizer`` or ``init_from`` would carry them to the Hub, where ``is_local: true`` is
false. :func:`save_tokenizer` is the one way this library writes a tokenizer folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["LOADING_KEYS", "save_tokenizer", "without_loading_keys"]

LOADING_KEYS: frozenset[str] = frozenset({"is_local", "local_files_only", "_commit_hash"})
"""Keys of ``tokenizer_config.json`` that record a loading call, never a tokenizer setting."""

TOKENIZER_CONFIG_FILENAME = "tokenizer_config.json"


def without_loading_keys(folder: str | Path) -> None:
    """Remove :data:`LOADING_KEYS` from ``folder/tokenizer_config.json`` (when there are any).

    The file is rewritten as transformers writes it (2-space indent, sorted keys, UTF-8, final
    newline), so a file saved without those keys is byte for byte what this gives.
    """
    path = Path(folder) / TOKENIZER_CONFIG_FILENAME
    config: Any = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(config, dict) and LOADING_KEYS & set(config):
        kept = {key: value for key, value in config.items() if key not in LOADING_KEYS}
        path.write_text(json.dumps(kept, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def save_tokenizer(tokenizer: Any, folder: str | Path) -> None:
    """``tokenizer.save_pretrained(folder)`` without the loading keys (:data:`LOADING_KEYS`).

    Raises:
        OSError: as ``save_pretrained`` (the folder cannot be written).
    """
    tokenizer.save_pretrained(str(folder))
    without_loading_keys(folder)
