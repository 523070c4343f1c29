"""mtlstm_hf: multi-timescale LSTM language models for Hugging Face transformers.

``import mtlstm_hf`` registers the model with the Auto classes, so ``AutoConfig`` /
``AutoModel`` / ``AutoModelForCausalLM`` resolve ``model_type="mtlstm"`` (the registration
happens when ``models/mtlstm/modeling_mtlstm.py`` is imported as part of this package).

The command-line tools (``mtlstm-train`` ...) live in subpackages, and Python imports this
package first; they must answer ``--help`` without importing torch (seconds), so when this process was
started as one of them the model is not imported here but by whatever needs it. Every other
attribute below is imported on first use (:mod:`mtlstm_hf.lazy`).
"""

from __future__ import annotations

import os
import sys

from .lazy import lazy_exports

COMMANDS: tuple[str, ...] = (
    "mtlstm-train",
    "mtlstm-eval",
    "mtlstm-analyze",
    "mtlstm-push",
    "mtlstm-demo",
    "mtlstm-convert",
    "mtlstm-reproduce",
)
"""The console scripts of this package (``[project.scripts]`` of ``pyproject.toml``)."""

_EXPORTS = {
    name: ".models.mtlstm"
    for name in (
        "PRESETS",
        "REGULARIZATION_OFF",
        "MTLSTMCausalLMOutput",
        "MTLSTMConfig",
        "MTLSTMForCausalLM",
        "MTLSTMForTokenClassification",
        "MTLSTMModel",
        "MTLSTMModelOutput",
        "MTLSTMPreTrainedModel",
        "MTLSTMState",
    )
}
_EXPORTS["WordStopStringCriteria"] = ".models.mtlstm.stop_strings"  # stop strings for word tokenizers, any model
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__version__ = "0.2.0"

__all__ = sorted([*_EXPORTS, "__version__", "register_auto_classes"])


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel`` / ``AutoModelForCausalLM`` resolve ``model_type="mtlstm"``
    to this package's classes (idempotent). ``import mtlstm_hf`` does it, except in the
    command-line tools, whose code that loads models through the Auto classes calls this."""
    from .models.mtlstm import modeling_mtlstm  # noqa: F401  (registers on import)


def _started_as_command() -> bool:
    argv = getattr(sys, "argv", None) or [""]
    name = os.path.basename(str(argv[0]))
    return name.removesuffix(".exe").removesuffix("-script.py") in COMMANDS


if not _started_as_command():
    register_auto_classes()
