"""Lazy package attributes (PEP 562), so that importing a package costs only what is used.

The command-line tools live in subpackages (``mtlstm_hf.training.cli``, ...); Python imports
every parent package first, so a package ``__init__`` that imported torch and transformers
eagerly would make ``mtlstm-train --help`` take seconds. Each package ``__init__`` instead
names its public attributes and the module defining each; the module is imported the first
time the attribute is read (``from mtlstm_hf.training import train`` works as an ordinary import).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package ``package``.

    Args:
        package: the package's ``__name__``.
        exports: public name -> module that defines it, relative to the package (``".loop"``).

    Returns:
        Functions to assign to the package's ``__getattr__`` and ``__dir__``. A name read
        once is cached in the package's namespace. An unknown name raises ``AttributeError``
        (what ``from package import name`` turns into ``ImportError``).
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__


def deprecated_names(module: str, renamed: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that gives each old name in ``renamed`` (old -> new) the object now
    called new, with a ``DeprecationWarning`` naming both; the old names go in the next minor version.

    Raises:
        AttributeError: any other name, as a module without it would.
    """

    def __getattr__(name: str) -> Any:
        if name not in renamed:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        import warnings

        warnings.warn(
            f"{name} is now {renamed[name]}; the old name goes in the next minor version.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(sys.modules[module], renamed[name])

    return __getattr__
