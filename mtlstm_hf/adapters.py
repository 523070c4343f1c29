"""LoRA adapters (PEFT) of an MTLSTM model that reload as trained, and only onto their vocabulary.

PEFT 0.21 saves an adapter of tied embeddings (``ensure_weight_tying=True``, ``target_modules``
naming the embedding and ``lm_head``) with ``lm_head`` left out of ``target_modules`` in
``adapter_config.json``; ``PeftModel.from_pretrained`` then builds no adapter for the output
layer, ignores its saved tensors and gives other logits than the trained model (GPT-2 the
same: a PEFT limitation, not this model's). And nothing in an adapter folder says which
vocabulary its base had: an adapter of the recurrent weights loads onto a base with other
words without a word.

:func:`save_adapter` writes what PEFT writes with ``target_modules`` naming every module that
holds an adapter (the reload then ties the pair again and is bit for bit the trained model),
plus ``mtlstm_adapter.json`` (the base's ``vocab_size`` and ``vocab_fingerprint``) and the
SHA-256 of the adapter weights (:mod:`mtlstm_hf.weight_digests`). :func:`load_adapter` checks
those before ``PeftModel.from_pretrained``. Merging (``merge_and_unload``) a tied pair adds the
delta twice in PEFT 0.21: untie the output layer before training an adapter you will merge.

``peft`` is imported only when these functions run (``pip install peft``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from .files import write_json_atomic
from .weight_digests import record_weight_digests, verify_weight_digests

__all__ = ["ADAPTER_RECORD", "load_adapter", "save_adapter"]

ADAPTER_RECORD = "mtlstm_adapter.json"
"""The base model's vocabulary, saved beside the adapter by :func:`save_adapter`."""
_CONFIG = "adapter_config.json"


def _peft() -> Any:
    try:
        import peft
    except ImportError:  # pragma: no cover - peft is a dev dependency
        raise ImportError("LoRA adapters need the peft package: pip install peft") from None
    return peft


def _adapter_folder(folder: Path, name: str) -> Path:
    """Where ``save_pretrained`` puts an adapter: the folder itself for ``default``, else ``folder/name``."""
    return folder if name == "default" else folder / name


def _wrapped_modules(peft_model: Any, adapter: str) -> list[str]:
    """Names (in the base model) of the modules that hold an adapter ``adapter``; PEFT's
    ``target_parameters`` wrappers (the recurrent layers' weights) are set by that field instead."""
    from peft.tuners.lora.layer import ParamWrapper
    from peft.tuners.tuners_utils import BaseTunerLayer

    names = []
    for name, module in peft_model.get_base_model().named_modules():
        if isinstance(module, BaseTunerLayer) and not isinstance(module, ParamWrapper):
            held = set(getattr(module, "lora_A", {})) | set(getattr(module, "lora_embedding_A", {}))
            if adapter in held:
                names.append(name)
    return sorted(names)


def save_adapter(peft_model: Any, folder: str | Path) -> None:
    """``peft_model.save_pretrained(folder)``, made to reload as trained and onto its vocabulary only.

    Args:
        peft_model: a ``peft.PeftModel`` whose base is an ``MTLSTMForCausalLM``.
        folder: where to write (as ``save_pretrained``; may already hold the same adapter, e.g.
            saved by the ``Trainer``).

    Raises:
        TypeError: ``peft_model`` is not a ``PeftModel``.
        OSError: the folder cannot be written.
    """
    peft = _peft()
    if not isinstance(peft_model, peft.PeftModel):
        raise TypeError(f"save_adapter needs a peft.PeftModel, got {type(peft_model).__name__}")
    folder = Path(folder)
    peft_model.save_pretrained(str(folder))
    for name in peft_model.peft_config:
        path = _adapter_folder(folder, name) / _CONFIG
        config = json.loads(path.read_text(encoding="utf-8"))
        wrapped = _wrapped_modules(peft_model, name)
        if wrapped and isinstance(config.get("target_modules"), (list, str)):
            config["target_modules"] = wrapped
            write_json_atomic(path, config)
        base = peft_model.get_base_model().config
        record = {"vocab_size": base.vocab_size, "vocab_fingerprint": getattr(base, "vocab_fingerprint", None)}
        write_json_atomic(_adapter_folder(folder, name) / ADAPTER_RECORD, record)
        record_weight_digests(_adapter_folder(folder, name))


def load_adapter(base_model: Any, folder: str | Path, **kwargs: Any) -> Any:
    """``peft.PeftModel.from_pretrained(base_model, folder, **kwargs)`` after checking the folder.

    Checks: the adapter weights are the files that were written (``weights_sha256.json``, when
    there is one) and readable (a truncated ``adapter_model.safetensors`` is named); the base has
    the vocabulary the adapter was trained on (``mtlstm_adapter.json`` of :func:`save_adapter`:
    ``vocab_size`` and ``vocab_fingerprint``). An adapter saved by PEFT alone has no record: it
    loads with a warning that its vocabulary cannot be checked.

    Returns:
        The ``PeftModel``.

    Raises:
        FileNotFoundError: ``folder`` has no ``adapter_config.json``.
        ValueError: naming the file: weights damaged or truncated, a damaged record, or a base of
            another vocabulary (both sizes / fingerprints shown).
    """
    peft = _peft()
    folder = Path(folder)
    if not (folder / _CONFIG).is_file():
        raise FileNotFoundError(
            f"adapter {str(folder)!r} has no {_CONFIG} (save it with save_adapter or PEFT's save_pretrained)"
        )
    verify_weight_digests(folder)
    weights = folder / "adapter_model.safetensors"
    if weights.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(weights), framework="pt") as handle:
                list(handle.keys())
        except Exception as error:  # safetensors' errors share no base class
            raise ValueError(
                f"{str(weights)!r} is not a readable safetensors file ({str(error).strip() or type(error).__name__}): it is truncated or damaged"
            ) from None
    record_path = folder / ADAPTER_RECORD
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            saved = (record["vocab_size"], record["vocab_fingerprint"])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(
                f"{str(record_path)!r} is damaged ({error}); delete it to load the adapter unchecked"
            ) from None
        base = base_model.config
        current = (base.vocab_size, getattr(base, "vocab_fingerprint", None))
        same_fingerprint = None in (saved[1], current[1]) or saved[1] == current[1]
        if saved[0] != current[0] or not same_fingerprint:
            raise ValueError(
                f"adapter {str(folder)!r} was trained on a base with vocab_size {saved[0]} and vocab_fingerprint "
                f"{saved[1]!r}; this base has vocab_size {current[0]} and vocab_fingerprint {current[1]!r}: its words "
                "are other words. Load it onto the model it was trained from"
            )
    else:
        warnings.warn(
            f"adapter {str(folder)!r} has no {ADAPTER_RECORD} (saved by PEFT alone): whether the base has the "
            "vocabulary it was trained on cannot be checked",
            stacklevel=2,
        )
    return peft.PeftModel.from_pretrained(base_model, str(folder), **kwargs)
