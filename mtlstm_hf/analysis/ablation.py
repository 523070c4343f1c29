"""Unit ablation and routing: which units (timescales) does each kind of word rely on?

Mahto et al. (ICLR 2021, Sec. 5) zero the output of 50-unit chunks of
layer 2, ordered by assigned timescale, and report per word-frequency bin the perplexity ratio
``ppl(ablated) / ppl(intact)``; long-timescale units matter most for rare words.

What "ablating units U of layer l" means here, precisely:

* The sequence output of layer ``l`` that goes **up** (to layer ``l + 1``, or to the output
  dropout and softmax for the last layer) has its columns ``U`` set to 0 at every step. The
  model's ``hidden_states[l + 1]`` (``output_hidden_states=True``) shows the zeroed columns.
* The layer's **own recurrence is untouched**: ``h_{t-1}`` in its gates, its cell, and the state
  it returns in ``cache`` (which the next window continues from) stay un-ablated.
  This is what the paper's reference code does (``model_ablation.py`` zeroes the input of the
  next layer after the ablated layer ran).
* No weight is changed: :class:`UnitAblation` registers forward hooks on the layer modules and
  removes them on exit (or :meth:`UnitAblation.remove`); nested ablations combine (union).

Layer arguments (``layer``, the keys of ``units``) are 0-based indices into ``model.model.layers``;
the report entries returned by :func:`routing_report` carry the layer *number* (from 1, as the paper
and ``report.json``).

Routing reports (:func:`routing_report`, :func:`word_class_routing_report`) score a stream intact
and with each chunk ablated. Rather than one full evaluation per chunk, :func:`ablation_log_probs`
makes **one** pass over the stream (state carried, eval mode, windows as
:func:`mtlstm_hf.evaluation.token_log_probs`): the layers up to the ablated one run once, and
the layers above it and the softmax layer run on the ablated layer's output repeated once per
chunk (plus once intact), each row group with its own ablation mask. The targets are then binned
by frequency (the bins of :func:`mtlstm_hf.evaluation.binned_perplexity`) or by a user-supplied word
class (:func:`mtlstm_hf.evaluation.class_binned_perplexity`); the result is a JSON-ready dict with the per-bin ratio of
every chunk (plot with :func:`mtlstm_hf.analysis.figures.plot_routing_heatmap`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch

from mtlstm_hf.evaluation import DEFAULT_BIN_EDGES, bin_labels, target_positions
from mtlstm_hf.evaluation.binned import check_log_probs, perplexities_by_bin, target_bins
from mtlstm_hf.evaluation.perplexity import token_rows, windows
from mtlstm_hf.models.mtlstm.checks import check_positive_int
from mtlstm_hf.models.mtlstm.layouts import layer_number
from mtlstm_hf.progress import open_progress

from .adapter import (
    base_model,
    eval_mode,
    register_ablation,
    resolve_layers,
    unregister_ablation,
)

if TYPE_CHECKING:
    from mtlstm_hf.models.mtlstm.layers import MTLSTMLayer

__all__ = [
    "UnitAblation",
    "ablate_units",
    "ablation_log_probs",
    "checked_indices",
    "resolve_chunks",
    "routing_from_log_probs",
    "routing_report",
    "timescale_chunks",
    "units_by_timescale",
    "word_class_table",
    "word_class_routing_report",
]


def checked_indices(
    values: Any, count: int, where: str, what: str = "unit", extent: str = "the layer's hidden size"
) -> torch.Tensor:
    """Validated ``(K,)`` int64 sorted unique indices into ``count`` units or channels (a bool mask
    of length ``count`` accepted): the one check of the ablations' index arguments.

    Args:
        values: a tensor, a sequence of ints or a bool mask.
        count: how many there are (``H``).
        where: the place named first in a message (``"layer 2"``).
        what: ``"unit"`` or ``"channel"``; ``extent``: what ``count`` is, in words.

    Raises:
        ValueError: a mask of another length, non-integer indices or indices outside ``[0, count)``.
    """
    if isinstance(values, torch.Tensor):
        indices = values.detach().cpu()
    else:
        indices = torch.as_tensor(values if isinstance(values, (list, tuple)) else list(values))
    if indices.dtype == torch.bool:
        if indices.shape != (count,):
            raise ValueError(f"{where}: a boolean {what} mask must have shape ({count},), got {tuple(indices.shape)}.")
        return indices.nonzero().reshape(-1)
    if indices.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    if indices.is_floating_point() or indices.is_complex():
        raise ValueError(f"{where}: {what} indices must be integers, got dtype {indices.dtype}.")
    indices = indices.reshape(-1).long()
    if int(indices.min()) < 0 or int(indices.max()) >= count:
        raise ValueError(
            f"{where}: {what} indices must lie in [0, {count}) ({extent}), "
            f"got values from {int(indices.min())} to {int(indices.max())}."
        )
    return torch.unique(indices)


def _unit_indices(units: Any, hidden_size: int, layer: int) -> torch.Tensor:
    """Validated ``(K,)`` int64 unit indices of the layer at 0-based ``layer`` (:func:`checked_indices`)."""
    return checked_indices(units, hidden_size, f"layer {layer_number(layer)}")  # messages number layers from 1


class UnitAblation:
    """Zero the output of chosen units for the layers above, without touching any weight.

    Use as a context manager (``with UnitAblation(model, {1: range(50)}): ...``) or call
    :meth:`apply` / :meth:`remove`. See the module docstring for the exact semantics.

    Args:
        model: ``MTLSTMForCausalLM`` or ``MTLSTMModel``.
        units: ``{layer index: unit indices}`` (a sequence/tensor of ints or a ``(H,)`` bool
            mask; negative layer indices count from the top; an empty set is allowed, a no-op).
    """

    def __init__(self, model: torch.nn.Module, units: Mapping[int, Any]) -> None:
        if not isinstance(units, Mapping):
            raise ValueError(f"units must be a mapping {{layer index: unit indices}}, got {type(units).__name__}.")
        base: Any = base_model(model)  # the model's own modules (torch's Module typing says Tensor | Module)
        self.model = model
        self.units: dict[int, torch.Tensor] = {}
        for layer, indices in units.items():
            (index,) = resolve_layers(model, [layer])
            selected = _unit_indices(indices, base.layers[index].hidden_size, index)
            previous = self.units.get(index)
            self.units[index] = selected if previous is None else torch.unique(torch.cat([previous, selected]))
        self._handles: list[Any] = []
        self._registered: list[tuple[torch.nn.Module, torch.Tensor]] = []

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def apply(self) -> UnitAblation:
        """Register the hooks (idempotent)."""
        if self.active:
            return self
        base: Any = base_model(self.model)  # the model's own modules (torch's Module typing says Tensor | Module)
        for index, indices in self.units.items():
            if indices.numel() == 0:
                continue
            layer = base.layers[index]

            def zero_units(module: torch.nn.Module, args: Any, output: Any, indices: torch.Tensor = indices) -> Any:
                # output = (sequence outputs (B, T, H), final hidden, final cell): only the
                # sequence that goes up is zeroed; the returned state (own recurrence) is kept.
                outputs, final_hidden, final_cell = output
                return outputs.index_fill(-1, indices.to(outputs.device), 0.0), final_hidden, final_cell

            self._handles.append(layer.register_forward_hook(zero_units))
            register_ablation(layer, indices)
            self._registered.append((layer, indices))
        return self

    def remove(self) -> None:
        """Remove the hooks: the model computes exactly as before."""
        for handle in self._handles:
            handle.remove()
        for layer, indices in self._registered:
            unregister_ablation(layer, indices)
        self._handles, self._registered = [], []

    def __enter__(self) -> UnitAblation:
        return self.apply()

    def __exit__(self, *exc_info: Any) -> None:
        self.remove()


def ablate_units(model: torch.nn.Module, units: Mapping[int, Any]) -> UnitAblation:
    """``with ablate_units(model, {layer: units}): ...``; see :class:`UnitAblation`."""
    return UnitAblation(model, units)


# ---------------------------------------------------------------------------
# Choosing units by timescale
# ---------------------------------------------------------------------------


def _timescale_vector(timescales: Any) -> torch.Tensor:
    values = torch.as_tensor(timescales, dtype=torch.float64).detach().cpu()
    if values.dim() != 1 or values.numel() == 0:
        raise ValueError(f"timescales must be a non-empty 1-D tensor (H,), got shape {tuple(values.shape)}.")
    if bool(values.isnan().any()) or bool((values < 0).any()):
        raise ValueError("timescales must be >= 0 (inf allowed), without NaN.")
    return values


def units_by_timescale(timescales: Any, low: float = 0.0, high: float = math.inf) -> torch.Tensor:
    """Indices of the units with ``low <= T <= high`` (tokens; ``high = inf`` includes ``T = inf``).

    Args:
        timescales: ``(H,)`` per-unit timescales, assigned (``model.assigned_timescales()[l]``)
            or estimated (:func:`mtlstm_hf.analysis.timescales.estimate_timescales`).

    Returns:
        ``(K,)`` int64, ascending unit indices.
    """
    values = _timescale_vector(timescales)
    if not low <= high:
        raise ValueError(f"need low <= high, got low={low}, high={high}.")
    return ((values >= low) & (values <= high)).nonzero().reshape(-1)


def timescale_chunks(timescales: Any, chunk_size: int = 50, descending: bool = True) -> list[torch.Tensor]:
    """Units ordered by timescale, cut into consecutive chunks of ``chunk_size`` (the paper's 50).

    Args:
        timescales: ``(H,)`` per-unit timescales.
        chunk_size: units per chunk; the last chunk holds the remainder.
        descending: longest timescales first (the order of the paper's layer-2 units, chunk 1 =
            the longest); ties keep unit order.

    Returns:
        ``ceil(H / chunk_size)`` int64 index tensors that partition ``range(H)``.
    """
    values = _timescale_vector(timescales)
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    order = torch.sort(values, descending=descending, stable=True).indices
    return list(order.split(chunk_size))


# ---------------------------------------------------------------------------
# Word classes
# ---------------------------------------------------------------------------


def word_class_table(
    word_classes: Mapping[str, str],
    vocab: Mapping[str, int] | Any,
    vocab_size: int | None = None,
    other_label: str | None = "other",
) -> tuple[torch.Tensor, list[str]]:
    """Class index of every vocabulary id from a ``{word: class}`` map (e.g. part of speech).

    Args:
        word_classes: ``{word: class name}``; words absent from the vocabulary are ignored.
        vocab: ``{word: id}`` or a tokenizer (its ``get_vocab()``).
        vocab_size: ``V`` (default ``max id + 1``).
        other_label: class of vocabulary words missing from the map; ``None`` leaves them out
            (class -1: not scored in :func:`mtlstm_hf.evaluation.class_binned_perplexity`).

    Returns:
        ``(classes (V,) int64, labels)``: labels in first-appearance order of the map, then
        ``other_label`` when some word falls there.
    """
    if not isinstance(word_classes, Mapping) or not word_classes:
        raise ValueError("word_classes must be a non-empty mapping {word: class name}.")
    table = vocab.get_vocab() if hasattr(vocab, "get_vocab") else dict(vocab)
    size = int(vocab_size) if vocab_size is not None else max(table.values()) + 1
    labels = list(dict.fromkeys(str(name) for name in word_classes.values()))
    index_of = {label: position for position, label in enumerate(labels)}
    classes = torch.full((size,), -1, dtype=torch.long)
    known = 0
    for word, name in word_classes.items():
        token = table.get(word)
        if token is not None and 0 <= token < size:
            classes[token] = index_of[str(name)]
            known += 1
    if known == 0:
        raise ValueError("none of the words of word_classes is in the vocabulary.")
    if other_label is not None and bool((classes == -1).any()):
        if other_label in index_of:
            raise ValueError(f"other_label {other_label!r} is also one of the classes; choose another.")
        classes[classes == -1] = len(labels)
        labels.append(other_label)
    return classes, labels


# ---------------------------------------------------------------------------
# Routing reports: every chunk in one batched pass
# ---------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def _chunk_summary(indices: torch.Tensor, timescales: torch.Tensor | None) -> dict[str, Any]:
    summary: dict[str, Any] = {"units": indices.tolist(), "n_units": int(indices.numel())}
    if timescales is not None and indices.numel():
        values = timescales[indices]
        finite = values[torch.isfinite(values) & (values > 0)]
        summary.update(
            timescale_min=float(values.min()),
            timescale_max=float(values.max()),
            timescale_geometric_mean=float(finite.log().mean().exp()) if finite.numel() else math.nan,
        )
    return summary


def ablation_log_probs(
    model: torch.nn.Module,
    stream: torch.Tensor,
    layer: int,
    chunks: Sequence[Any],
    *,
    batch_size: int = 1,
    window: int = 70,
    progress: Any = False,
) -> torch.Tensor:
    """Log-probabilities of every target with nothing ablated and with each chunk ablated, in one pass.

    Equivalent to ``token_log_probs(model, stream, batch_size, window)`` once intact and once inside
    ``ablate_units(model, {layer: chunk})`` per chunk (the slow reference, which the tests compare
    with), but computed in one pass over the stream:

    * the layers up to ``layer`` do not depend on the ablation: they run once, on the stream's ``B``
      rows (state carried across windows);
    * the output of ``layer`` that goes up is repeated ``K + 1`` times, row group ``k`` with chunk
      ``k``'s units zeroed (group 0: none), and the layers above and the softmax layer run on the
      ``(K + 1) B`` rows, each group with its own carried state.

    Rows are independent, so every number is that of a separate evaluation up to floating-point
    summation order. Eval semantics (no dropout, raw recurrent weights); the training flag is restored.

    Args:
        model: ``MTLSTMForCausalLM``.
        stream: ``(N,)`` token ids.
        layer: 0-based index into ``model.model.layers`` (negative counts from the top).
        chunks: ``K`` unit sets of that layer (int sequences/tensors or ``(H,)`` bool masks).
        batch_size: ``B`` contiguous rows per evaluation (see ``token_log_probs``).
        window: tokens per forward call (memory only).
        progress: True for a progress bar over windows, or an object with ``total`` and ``update(n)``
            (see :func:`mtlstm_hf.analysis.report.run_analyses`).

    Memory: the logits of one window, ``(K + 1) * B * window * V`` floats.

    Returns:
        ``(K + 1, M)`` float32, row 0 intact, row ``k`` with chunk ``k - 1`` ablated; columns aligned
        with ``stream[target_positions(N, B)]`` (``M = B * (N // B - 1)``).

    Raises:
        ValueError: bad layer or unit indices, no chunk, a stream too short for ``batch_size``, a
            model without an output layer.
    """
    (layer,) = resolve_layers(model, [layer])
    base: Any = base_model(model)  # the model's own modules (torch's Module typing says Tensor | Module)
    hidden_size = base.layers[layer].hidden_size
    unit_chunks = [_unit_indices(chunk, hidden_size, layer) for chunk in chunks]
    if not unit_chunks:
        raise ValueError("give at least one chunk of units.")
    language_model: Any = model  # duck-typed: get_output_embeddings / get_input_embeddings of a PreTrainedModel
    head = language_model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output layer: pass the language model (MTLSTMForCausalLM).")
    rows = token_rows(stream, batch_size, min_row_length=2)  # the rows token_log_probs scores
    spans = windows(rows.shape[1], window)  # and its windows
    groups = len(unit_chunks) + 1
    device = base.embeddings.weight.device
    rows = rows.to(device)
    keep = torch.ones(groups, hidden_size, dtype=torch.bool)
    for group, indices in enumerate(unit_chunks, start=1):
        keep[group, indices] = False
    # Group-major rows: row g * B + b is stream row b under group g's ablation.
    keep = keep.repeat_interleave(batch_size, 0)[:, None, :].to(device)
    embeddings = language_model.get_input_embeddings()
    dtype = embeddings.weight.dtype

    def zero_state(rows_count: int, module: MTLSTMLayer) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.zeros(rows_count, module.hidden_size, dtype=dtype, device=device),
            torch.zeros(rows_count, module.cell_size, dtype=dtype, device=device),
        )

    # Eval semantics, as the model's forward in eval mode: embedding lookup, the layers one after the
    # other (no dropout between them or before the softmax layer), each carrying its own state.
    lower = [(module, zero_state(batch_size, module)) for module in list(base.layers)[: layer + 1]]
    upper = [(module, zero_state(groups * batch_size, module)) for module in list(base.layers)[layer + 1 :]]
    log_probs: list[torch.Tensor] = []
    with eval_mode(model):
        with open_progress(progress, total=len(spans), desc="ablation", unit="window") as bar:
            for start, stop in spans:
                outputs = embeddings(rows[:, start:stop])
                for position, (module, state) in enumerate(lower):  # once: the ablation changes nothing here
                    outputs, hidden, cell = module(outputs, *state)
                    lower[position] = (module, (hidden, cell))
                # What `layer` passes up, once per row group, with the group's chunk zeroed.
                outputs = outputs.repeat(groups, 1, 1)
                outputs = torch.where(keep, outputs, torch.zeros((), dtype=outputs.dtype, device=device))
                for position, (module, state) in enumerate(upper):
                    outputs, hidden, cell = module(outputs, *state)
                    upper[position] = (module, (hidden, cell))
                # (rows * steps, H) in one matrix product with the bias fused; float32 at least:
                # log_softmax of half-precision logits loses digits that add up.
                logits = head(outputs.reshape(-1, outputs.shape[-1]))
                logp = torch.log_softmax(logits.float(), dim=-1)
                targets = rows[:, start + 1 : stop + 1].repeat(groups, 1)
                picked = logp.gather(-1, targets.reshape(-1, 1)).reshape(targets.shape)
                log_probs.append(picked.cpu())
                bar.update(1)
    # (groups * B, piece - 1) -> per group the row-major flatten = the order of target_positions.
    return torch.cat(log_probs, dim=1).reshape(groups, batch_size * (rows.shape[1] - 1))


def resolve_chunks(
    model: torch.nn.Module, layer: int, chunks: Sequence[Any] | None, chunk_size: int, timescales: Any
) -> tuple[list[torch.Tensor], torch.Tensor | None, str]:
    """The unit chunks a routing report ablates one at a time, and how they were ordered.

    Args:
        model: ``MTLSTMForCausalLM``; layer: 0-based index (already resolved) of the ablated layer.
        chunks: explicit unit sets (int sequences/tensors or ``(H,)`` bool masks), or None.
        chunk_size: units per chunk when the chunks are cut here.
        timescales: ``(H,)`` timescales ordering the units (longest first), or None: the layer's
            assigned timescales, else unit order.

    Returns:
        ``(unit chunks, timescales ordering them or None, order name)``, the order ``"given"``
        (explicit chunks), ``"timescale"``, ``"assigned"`` or ``"index"``.

    Raises:
        ValueError: bad unit indices, a bad ``chunk_size``, timescales of another length, no chunk.
    """
    base: Any = base_model(model)  # the model's own modules (torch's Module typing says Tensor | Module)
    hidden_size = base.layers[layer].hidden_size
    ordering = None
    order = "given"
    if timescales is not None:
        ordering, order = _timescale_vector(timescales), "timescale"
        if ordering.numel() != hidden_size:
            raise ValueError(f"timescales has {ordering.numel()} entries but layer {layer} has {hidden_size} units.")
    elif hasattr(model, "assigned_timescales") and cast(Any, model).assigned_timescales()[layer] is not None:
        ordering, order = _timescale_vector(cast(Any, model).assigned_timescales()[layer]), "assigned"
    if chunks is not None:
        unit_chunks = [_unit_indices(chunk, hidden_size, layer) for chunk in chunks]
        order = "given"
    elif ordering is None:
        unit_chunks, order = (
            list(torch.arange(hidden_size).split(check_positive_int(chunk_size, "chunk_size"))),
            "index",
        )
    else:
        unit_chunks = timescale_chunks(ordering, chunk_size)
    if not unit_chunks:
        raise ValueError("give at least one chunk of units.")
    return unit_chunks, ordering, order


def routing_from_log_probs(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    class_of_token: torch.Tensor,
    column_labels: Sequence[str],
    allow_excluded: bool,
    layer: int,
    unit_chunks: Sequence[torch.Tensor],
    ordering: torch.Tensor | None,
    order: str,
    chunk_size: int | None,
    batch_size: int,
    window: int,
) -> dict[str, Any]:
    """The routing dict of :func:`routing_report` from the log-probabilities of :func:`ablation_log_probs`.

    Args:
        log_probs: ``(K + 1, M)`` row 0 intact, row ``k`` with ``unit_chunks[k - 1]`` ablated.
        targets: ``(M,)`` the target ids, aligned with the columns.
        class_of_token: ``(V,)`` bin or class per vocabulary id (-1: not scored, with
            ``allow_excluded``); column_labels: the bin/class names.
        layer: 0-based index of the ablated layer (reported as its number, from 1).
        unit_chunks, ordering, order: from :func:`resolve_chunks`.
        chunk_size, batch_size, window: recorded in the report.

    Returns:
        The report entry described in :func:`routing_report`. Per-bin perplexities come from
        :func:`mtlstm_hf.evaluation.perplexities_by_bin`.

    Raises:
        ValueError: malformed log-probabilities, classes out of range, no target with a class.
    """
    nll = -check_log_probs(log_probs, "ablation log-probabilities", rows=True)
    target_classes = target_bins(targets, class_of_token, len(column_labels), allow_excluded=allow_excluded)
    scored = target_classes >= 0
    if not bool(scored.any()):
        raise ValueError("no target token has a class (all are -1).")
    intact, *ablated = perplexities_by_bin(nll[:, scored], target_classes[scored], list(column_labels))
    chunk_results = []
    for indices, result in zip(unit_chunks, ablated):
        ratios = {
            label: _ratio(result["bins"][label]["perplexity"], intact["bins"][label]["perplexity"])
            for label in column_labels
        }
        ratios["overall"] = _ratio(result["perplexity"], intact["perplexity"])
        chunk_results.append(
            {
                **_chunk_summary(indices, ordering),
                "perplexity": result["perplexity"],
                "bins": {label: result["bins"][label]["perplexity"] for label in column_labels},
                "ratio": ratios,
            }
        )
    columns = [*column_labels, "overall"]
    report = {
        "layer": layer_number(layer),
        "labels": list(column_labels),
        "columns": columns,
        "order": order,
        "chunk_size": chunk_size,
        "batch_size": int(batch_size),
        "window": int(window),
        "intact": {
            "perplexity": intact["perplexity"],
            "n_tokens": intact["n_tokens"],
            "bins": {
                label: {key: intact["bins"][label][key] for key in ("perplexity", "n_tokens")}
                for label in column_labels
            },
        },
        "chunks": chunk_results,
        "ratio_matrix": [[chunk["ratio"][column] for column in columns] for chunk in chunk_results],
    }
    if allow_excluded:
        report["n_excluded"] = int((~scored).sum())
    return report


def routing_report(
    model: torch.nn.Module,
    stream: torch.Tensor,
    layer: int,
    bin_of_token: torch.Tensor,
    labels: Sequence[str] | None = None,
    *,
    edges: Sequence[int] = DEFAULT_BIN_EDGES,
    chunks: Sequence[Any] | None = None,
    chunk_size: int = 50,
    timescales: Any = None,
    batch_size: int = 1,
    window: int = 70,
    progress: Any = False,
) -> dict[str, Any]:
    """Per-bin perplexity ratio ``ppl(chunk ablated) / ppl(intact)`` for every chunk of one layer.

    All chunks are scored in one batched pass (:func:`ablation_log_probs`); the numbers are those of
    one full evaluation per chunk under :func:`ablate_units` (the tests check this against that loop).

    Args:
        model: the language model (``MTLSTMForCausalLM``).
        stream: ``(N,)`` token ids (scored like :func:`mtlstm_hf.evaluation.token_log_probs`).
        layer: 0-based index into ``model.model.layers`` of the layer whose units are ablated (the
            paper's layer 2 is index 1).
        bin_of_token: ``(V,)`` bin/class index per vocabulary id.
        labels: class labels (any number of classes; -1 entries are not scored, ``n_excluded``).
            ``None`` means frequency bins: ``bin_of_token`` from
            :func:`mtlstm_hf.evaluation.frequency_bin_of_token` with ``edges``, labels ``bin_labels(edges)``.
        edges: frequency bin thresholds (only with ``labels=None``).
        chunks: explicit unit sets to ablate one at a time; default: :func:`timescale_chunks` of
            ``timescales`` with ``chunk_size``.
        chunk_size: units per chunk (paper: 50).
        timescales: ``(H,)`` timescales ordering the units (assigned or estimated); default the
            layer's assigned timescales, else unit order.
        batch_size, window: scoring settings (see ``token_log_probs``); ``batch_size=1`` is the
            paper's setting.
        progress: see :func:`ablation_log_probs`.

    Returns:
        A report entry (the layout of ``report.json``, so ``"layer"`` is the layer *number*, counted
        from 1): ``{"layer", "labels", "columns" (labels + "overall"), "order" ("given",
        "timescale", "assigned", "index"), "chunk_size", "batch_size", "window", "intact":
        {"perplexity", "n_tokens", "bins": {label: {"perplexity", "n_tokens"}}}, "chunks":
        [{"units", "n_units", "timescale_min", "timescale_max", "timescale_geometric_mean",
        "perplexity", "bins": {label: ppl}, "ratio": {label or "overall": ratio}}], "ratio_matrix":
        (chunks x columns) list of lists}`` (+ ``"n_excluded"`` with ``labels``); NaN where a bin is empty.
    """
    (layer,) = resolve_layers(model, [layer])
    unit_chunks, ordering, order = resolve_chunks(model, layer, chunks, chunk_size, timescales)
    stream = torch.as_tensor(stream)
    frequency = labels is None
    column_labels = bin_labels(edges) if labels is None else list(labels)  # (labels is None: frequency)
    log_probs = ablation_log_probs(
        model, stream, layer, unit_chunks, batch_size=batch_size, window=window, progress=progress
    )
    targets = stream[target_positions(stream.numel(), batch_size)]
    return routing_from_log_probs(
        log_probs,
        targets,
        bin_of_token,
        column_labels,
        not frequency,
        layer,
        unit_chunks,
        ordering,
        order,
        int(chunk_size) if chunks is None else None,
        batch_size,
        window,
    )


def word_class_routing_report(
    model: torch.nn.Module,
    tokenizer: Any,
    stream: torch.Tensor,
    layer: int,
    word_classes: Mapping[str, str],
    other_label: str | None = "other",
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`routing_report` with classes from a ``{word: class}`` map (e.g. part of speech).

    ``layer`` is a 0-based index into ``model.model.layers``; ``tokenizer`` gives the word -> id
    table (``get_vocab()``); see :func:`word_class_table` for ``other_label``. Other keyword
    arguments go to :func:`routing_report`.
    """
    base: Any = base_model(model)  # the model's own modules (torch's Module typing says Tensor | Module)
    vocab_size = base.embeddings.num_embeddings
    classes, labels = word_class_table(word_classes, tokenizer, vocab_size, other_label)
    return routing_report(model, stream, layer, classes, labels, **kwargs)
