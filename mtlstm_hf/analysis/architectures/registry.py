"""Which architectures the analyses read, and the adapter of each: plain Python, no torch.

One :class:`Architecture` record per ``config.model_type`` in :data:`ARCHITECTURE_REGISTRY`: the
transformers causal-LM class it covers and the import path of its adapter class (a
:class:`~.base.RecurrentAdapter`, imported on first use). A new architecture is one module with
its adapter plus one :func:`register_architecture` call::

    register_architecture(Architecture("my_ssm", "MySsmForCausalLM", "my_package.my_ssm:MySsmAdapter", "My SSM"))

:func:`adapter_for` picks the adapter of a loaded model (by ``config.model_type``); a model of
another architecture is refused with the list of the supported ones.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ARCHITECTURE_REGISTRY",
    "Architecture",
    "adapter_for",
    "architecture_of",
    "register_architecture",
    "supported_architectures",
    "unregister_architecture",
]


@dataclass(frozen=True)
class Architecture:
    """One architecture the analyses read.

    Attributes:
        model_type: ``config.model_type`` (the registry's key).
        model_class: the transformers (or mtlstm_hf) causal-LM class name.
        adapter: ``"package.module:ClassName"`` of its :class:`~.base.RecurrentAdapter`.
        display_name: the architecture in words.
        package: the module that defines :attr:`model_class` (``"transformers"``).
    """

    model_type: str
    model_class: str
    adapter: str
    display_name: str
    package: str = "transformers"

    def adapter_class(self) -> Any:
        """The adapter class (imports its module)."""
        module, _, name = self.adapter.partition(":")
        return getattr(importlib.import_module(module), name)

    def installed(self) -> bool:
        """Whether :attr:`package` (the installed transformers) has :attr:`model_class`."""
        try:
            return hasattr(importlib.import_module(self.package), self.model_class)
        except ImportError:
            return False


ARCHITECTURE_REGISTRY: dict[str, Architecture] = {}
"""Every registered architecture by ``model_type``, in the order of registration."""


def register_architecture(entry: Architecture) -> Architecture:
    """Add an architecture; return it.

    Raises:
        TypeError: ``entry`` is not an :class:`Architecture`.
        ValueError: its ``model_type`` is taken, or ``adapter`` is not ``"module:Class"``.
    """
    if not isinstance(entry, Architecture):
        raise TypeError(f"register_architecture takes an Architecture record, got {type(entry).__name__}.")
    if entry.model_type in ARCHITECTURE_REGISTRY:
        raise ValueError(f"an architecture with model_type {entry.model_type!r} is already registered.")
    module, colon, name = entry.adapter.partition(":")
    if not (module and colon and name.isidentifier()):
        raise ValueError(f"adapter must be 'package.module:ClassName', got {entry.adapter!r}.")
    ARCHITECTURE_REGISTRY[entry.model_type] = entry
    return entry


def unregister_architecture(model_type: str) -> Architecture:
    """Remove the architecture of ``model_type``; return its record.

    Raises:
        KeyError: none is registered under that name.
    """
    if model_type not in ARCHITECTURE_REGISTRY:
        raise KeyError(f"no architecture {model_type!r} is registered; registered: {', '.join(ARCHITECTURE_REGISTRY)}.")
    return ARCHITECTURE_REGISTRY.pop(model_type)


def supported_architectures(installed_only: bool = True) -> list[str]:
    """``"ClassName (model_type)"`` of every registered architecture (by default only those the
    installed transformers has)."""
    return [
        f"{entry.model_class} ({entry.model_type})"
        for entry in ARCHITECTURE_REGISTRY.values()
        if not installed_only or entry.installed()
    ]


def architecture_of(model_type: Any, model_class: str | None = None) -> Architecture:
    """The record of ``model_type`` (a ``config.model_type``).

    Raises:
        ValueError: no registered architecture has it, or its class is not in the installed
            transformers; the message names the supported ones.
    """
    entry = ARCHITECTURE_REGISTRY.get(model_type) if isinstance(model_type, str) else None
    what = f"model_type {model_type!r}" + (f" ({model_class})" if model_class else "")
    if entry is None:
        raise ValueError(
            f"the analyses do not read {what}; supported architectures: {', '.join(supported_architectures())}."
        )
    if not entry.installed():
        raise ValueError(
            f"{what} needs {entry.package}.{entry.model_class}, which the installed {entry.package} lacks; "
            f"supported here: {', '.join(supported_architectures())}."
        )
    return entry


def adapter_for(model: Any) -> Any:
    """The :class:`~.base.RecurrentAdapter` of a loaded model, chosen by ``model.config.model_type``.

    Raises:
        ValueError: an architecture no adapter reads (the message names the supported ones), or a
            model of that type without the expected causal-LM layout.
    """
    config = getattr(model, "config", None)
    entry = architecture_of(getattr(config, "model_type", None), type(model).__name__)
    if entry.model_type != "mtlstm" and type(model).__name__ != entry.model_class:
        raise ValueError(
            f"the {entry.display_name} analyses read {entry.model_class} (the language model with its output "
            f"layer), got {type(model).__name__}."
        )
    return entry.adapter_class()(model)


for _entry in (
    Architecture("mtlstm", "MTLSTMForCausalLM", f"{__package__}.mtlstm:MTLSTMAdapter", "MTLSTM", "mtlstm_hf"),
    Architecture("mamba", "MambaForCausalLM", f"{__package__}.mamba:MambaAdapter", "Mamba"),
    Architecture("mamba2", "Mamba2ForCausalLM", f"{__package__}.mamba2:Mamba2Adapter", "Mamba2"),
    Architecture("rwkv", "RwkvForCausalLM", f"{__package__}.rwkv:RwkvAdapter", "RWKV"),
    Architecture(
        "recurrent_gemma",
        "RecurrentGemmaForCausalLM",
        f"{__package__}.recurrent_gemma:RecurrentGemmaAdapter",
        "RecurrentGemma (RG-LRU)",
    ),
    Architecture("xlstm", "xLSTMForCausalLM", f"{__package__}.xlstm:XlstmAdapter", "xLSTM"),
):
    register_architecture(_entry)
del _entry
