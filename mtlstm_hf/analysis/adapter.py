"""The one adapter every analysis uses to reach an MTLSTM: its base model, its layers, its token rows.

* :func:`base_model`: the module holding ``embeddings`` and ``layers`` (an ``MTLSTMModel``, or the
  one inside ``MTLSTMForCausalLM``);
* :func:`resolve_layers`, :func:`layers_with_forget_gate`, :func:`forget_gate_layers`: validated 0-based layer indices (into
  ``model.model.layers``; reports number layers from 1);
* :func:`eval_mode`: eval semantics (no dropout, raw recurrent weights) under ``torch.no_grad``,
  the training flag restored afterwards;
* the stream cut into rows is :mod:`mtlstm_hf.evaluation.perplexity`'s ``token_rows``
  (the one home of the walk in windows: ``token_rows`` and ``windows``, used by
  ``token_log_probs``, the traces and the ablation);
* :func:`active_ablation`: which output units of a layer are zeroed right now by
  :class:`~mtlstm_hf.analysis.ablation.UnitAblation` (the traces need to know; the ablation
  registers and unregisters itself here, so neither module imports the other).
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch

from mtlstm_hf.models.mtlstm.layouts import layer_number

if TYPE_CHECKING:
    from mtlstm_hf.models.mtlstm.layers import MTLSTMLayer

__all__ = [
    "active_ablation",
    "base_model",
    "eval_mode",
    "forget_gate_layers",
    "layers_with_forget_gate",
    "model_device_dtype",
    "register_ablation",
    "resolve_layers",
    "unregister_ablation",
]


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module holding ``embeddings`` and ``layers`` (an ``MTLSTMModel``, or the one inside a causal LM).

    Raises:
        ValueError: ``model`` has neither.
    """
    base = getattr(model, "base_model", model)
    if not hasattr(base, "layers") or not hasattr(base, "embeddings"):
        raise ValueError(
            f"expected an MTLSTMForCausalLM or MTLSTMModel (with .layers and .embeddings), got {type(model).__name__}."
        )
    return base


def _layers(model: torch.nn.Module) -> Sequence[MTLSTMLayer]:
    """``base_model(model).layers``, typed: an ``nn.ModuleList`` of ``MTLSTMLayer``."""
    return cast("Sequence[MTLSTMLayer]", base_model(model).layers)


def model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of the model's input embedding matrix."""
    embeddings: Any = base_model(model).embeddings  # an nn.Embedding (torch's Module typing says Tensor | Module)
    weight = embeddings.weight
    return weight.device, weight.dtype


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode under ``torch.no_grad`` and restore its training flag on exit."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def deprecated_layer_attribute() -> property:
    """The ``layer`` attribute of a result that holds ``layer_index``: its old name, read with a
    ``DeprecationWarning`` until the next minor version (``layer`` names the 1-based number in
    reports, :func:`mtlstm_hf.models.mtlstm.layouts.layer_number`)."""

    def read(self: Any) -> int | None:
        warnings.warn(
            f"{type(self).__name__}.layer is now layer_index (0-based); 'layer' names the 1-based number in reports.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.layer_index

    return property(read)


def resolve_layers(model: torch.nn.Module, layers: int | Sequence[int] | None) -> list[int]:
    """Validated 0-based indices into ``model.model.layers``, duplicates removed, order kept.

    Args:
        layers: an index, a sequence of them (negative ints count from the top), or ``None`` for
            every layer.

    Raises:
        ValueError: an index outside ``[-L, L)`` or not an int; an empty sequence.
    """
    num_layers = len(_layers(model))
    # (int, Integral): an int is an Integral; naming it lets the type checker see the else branch has none.
    requested = (
        range(num_layers) if layers is None else ([layers] if isinstance(layers, (int, numbers.Integral)) else layers)
    )
    resolved: list[int] = []
    for value in requested:
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or not -num_layers <= int(value) < num_layers
        ):
            raise ValueError(
                f"layer must be a 0-based layer index in [{-num_layers}, {num_layers}) for this {num_layers}-layer model, "
                f"got {value!r}."
            )
        resolved.append(int(value) % num_layers)
    if not resolved:
        raise ValueError("give at least one layer.")
    return list(dict.fromkeys(resolved))


def layers_with_forget_gate(model: torch.nn.Module) -> list[int]:
    """0-based indices of the layers with input and forget gates (a weighted-sum memory cell):
    every cell type but ``lstm-gates``. May be empty."""
    return [index for index, layer in enumerate(_layers(model)) if layer.layout.has_forget_gate]


def forget_gate_layers(
    model: torch.nn.Module, layers: int | Sequence[int] | None, lacking: str, consequence: str
) -> list[int]:
    """0-based indices of the layers an analysis of the forget gate (timescales, weighted sums) runs on.

    Args:
        layers: requested indices (see :func:`resolve_layers`), or ``None``: every layer with input
            and forget gates (all cell types but ``lstm-gates``, whose layers have neither).
        lacking: what such a layer lacks, for the error message (e.g. ``"no forget gate"``).
        consequence: why that matters (e.g. ``"timescales T = -1/ln f are undefined there"``).

    Raises:
        ValueError: ``layers=None`` and no layer has a forget gate ("this model has no layer with a
            forget gate ..."); a requested layer has none ("layer indices [1] (layers [2]) have
            {lacking} ...").
    """
    model_layers = _layers(model)
    cell_types = [layer.cell_type for layer in model_layers]
    if layers is None:
        indices = layers_with_forget_gate(model)
        if not indices:
            raise ValueError(
                f"this model has no layer with a forget gate ({lacking} anywhere; cell types {cell_types}); "
                f"{consequence}."
            )
        return indices
    indices = resolve_layers(model, layers)
    missing = [index for index in indices if not model_layers[index].layout.has_forget_gate]
    if missing:
        raise ValueError(
            f"layer indices {missing} (layers {[layer_number(index) for index in missing]}) have {lacking} (cell type "
            f"{[cell_types[index] for index in missing]}); {consequence}."
        )
    return indices


# Layer module -> unit-index tensors currently zeroed by live ablations (weak: a deleted model
# leaves nothing behind).
_ACTIVE: weakref.WeakKeyDictionary[torch.nn.Module, list[torch.Tensor]] = weakref.WeakKeyDictionary()


def active_ablation(layer: torch.nn.Module) -> torch.Tensor | None:
    """Sorted unit indices of ``layer`` whose output is currently zeroed, or None."""
    entries = _ACTIVE.get(layer)
    if not entries:
        return None
    return torch.unique(torch.cat(entries))


def register_ablation(layer: torch.nn.Module, indices: torch.Tensor) -> None:
    """Record that ``indices`` of ``layer``'s output are zeroed (by a live ablation hook)."""
    _ACTIVE.setdefault(layer, []).append(indices)


def unregister_ablation(layer: torch.nn.Module, indices: torch.Tensor) -> None:
    """Forget the entry :func:`register_ablation` made with this very ``indices`` tensor."""
    entries = _ACTIVE.get(layer, [])
    for position, entry in enumerate(entries):
        if entry is indices:
            del entries[position]
            break
    if not entries:
        _ACTIVE.pop(layer, None)
