"""Run the analyses of a checkpoint on a corpus and write them, one by one, into a report folder.

:func:`analyze_checkpoint` (and the ``mtlstm-analyze`` command, :mod:`.cli`) loads a checkpoint
(model + tokenizer folder), tokenizes one split of a corpus, runs the selected analyses, and
writes a folder that a later step can publish next to the model on the Hub.

Report folder layout (``FORMAT_VERSION = 2``)::

    <output-dir>/
        report.json                         everything below, machine-readable
        figures/
            timescales_layer<n>.png         sorted estimated T vs assigned and fitted InvGamma quantiles
            timescale_histograms.png        histogram of log10 T per layer, fitted density
            routing_frequency.png           ablation: ppl ratio per chunk x frequency bin
            routing_classes.png             the same per word class (only with word classes)
            state_gradients.png             state-gradient memory vs delay, one curve per layer,
                                            one panel for all source words and one per frequency bin
            memory_span.png                 mean ||w_{t-d}^t|| vs distance d, per layer
            weighted_sum_layer<n>.png       ||w_j^t|| heat map of one passage, per layer
            mutual_information.png          I(d) of the corpus, power-law fit, model decay

``<n>`` is the layer *number*, counted from 1 as in the paper. Figures exist only for the analyses
that ran.

``report.json``::

    {
      "format_version": 2,
      "library": "mtlstm_hf", "library_version": "...",
      "checkpoint": path or null, "data": description, "split": "validation", "count_splits": [...],
      "n_stream_tokens": int,            tokens of the split used (after max_tokens)
      "model": {"num_layers", "hidden_sizes", "cell_types", "timescale_schedules", "vocab_size"},
      "settings": {...},                 every AnalysisSettings field
      "fingerprints": {"model", "stream", "counting_streams"}   sha256 of the weights and token ids
      "analyses": {                      one entry per analysis that finished
        "timescales":         timescales.timescale_report(...)
        "ablation":           {"frequency": ablation.routing_report(...), "classes": ... or null}
        "state_gradients":    {"layers": [{"layer", "state", "memory" (D x C), "pooled_memory" (D),
                               "counts" (D x C)}], "class_labels", "max_delay", "segment_length",
                               "n_tokens", "positions" ("all" or K), "source_positions", "n_sources",
                               "k", "whitened"}
        "weighted_sum":       {"tokens", "passage_start", "layers": [{"layer", "norms" (T x T, [j][t],
                               null for j > t)}]}
        "memory_span":        memory_span.MemorySpan.to_dict() (estimate_memory_span)
        "mutual_information": {"distances", "mutual_information", "plugin", "num_pairs", "estimator",
                               "base", "fit", "model_decay", "model_timescales", "comparison"}
      },
      "skipped": {analysis: reason},     analyses that do not apply (e.g. no forget gate)
      "pending": [analysis, ...],        selected but not finished (empty once the run is complete)
      "figures": {name: "figures/<file>.png"},   paths relative to the folder
      "analysis_figures": {analysis: [figure names]},
      "seconds": {analysis: wall-clock seconds, figures included}
    }

Every ``"layer"`` field (and ``settings.ablation_layer``, ``memory_span.layers``) is a layer
number counted from 1. Format 1 numbered them from 0 (:func:`load_report` reads both; check
``format_version``). Non-finite numbers (NaN for an empty bin, inf for a unit whose mean forget
gate is 1) are written as ``null``.

Written as it goes: ``report.json`` is (re)written atomically (a temporary file renamed over it)
at the start and after every analysis, together with that analysis's figures, so an interrupted
run keeps every finished analysis. Run again into the same folder with the same checkpoint
weights, token streams and settings, it skips what is there (``restart=True`` / ``--restart``
redoes everything); anything different is refused with the differences named, so one report never
mixes results from different settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mtlstm_hf.analysis.gates import weighted_sum_norms
from mtlstm_hf.devices import float32_precision
from mtlstm_hf.evaluation import bin_labels, frequency_bin_of_token, target_positions, token_counts
from mtlstm_hf.files import PathOrStr
from mtlstm_hf.progress import Meter, Share

from .ablation import ablation_log_probs, resolve_chunks, routing_from_log_probs, word_class_table
from .adapter import base_model, layers_with_forget_gate, token_rows
from .memory_span import estimate_memory_span, passage_log_weights
from .settings import ANALYSES, DEFAULT_STATE_GRADIENT_POSITIONS, AnalysisSettings, option_name
from .timescales import estimate_timescales, fit_inverse_gamma, timescale_report

__all__ = [
    "ANALYSES",
    "DEFAULT_STATE_GRADIENT_POSITIONS",
    "FIGURES_DIR",
    "FORMAT_VERSION",
    "REPORT_FILE",
    "AnalysisSettings",
    "analyze_checkpoint",
    "default_ablation_layer",
    "load_report",
    "load_word_classes",
    "run_analyses",
    "write_report",
]

REPORT_FILE = "report.json"
FIGURES_DIR = "figures"
FORMAT_VERSION = 2


def default_ablation_layer(model: torch.nn.Module) -> int:
    """The layer ablated by default, as a 0-based index into ``model.model.layers``: the first with an
    inverse-gamma schedule (the paper's layer 2, index 1), else the middle layer ``L // 2`` (layer 2
    of a 3-layer AWD-LSTM)."""
    schedules = getattr(model.config, "timescale_schedules", None) or []
    for index, schedule in enumerate(schedules):
        if isinstance(schedule, Mapping) and schedule.get("type") == "inverse_gamma":
            return index
    return len(base_model(model).layers) // 2


def load_word_classes(path: PathOrStr) -> dict[str, str]:
    """Read a ``{word: class}`` map: a JSON object, or text lines ``word<whitespace>class``.

    UTF-8; a byte order mark at the start is not part of the first word.

    Raises:
        FileNotFoundError: no such file. ValueError: malformed content, not UTF-8, or a JSON key
        that is no word (empty, or holding whitespace: no text gives such a word, so it would be
        ignored silently as a word outside the vocabulary).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word-class file {str(path)!r} does not exist")
    try:
        text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        raise ValueError(f"word-class file {str(path)!r} is not UTF-8 text: {error}") from None
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{str(path)!r} is not valid JSON: {error}") from error
        if not isinstance(mapping, dict):
            raise ValueError(f"{str(path)!r} must hold a JSON object {{word: class}}.")
        odd = next((word for word in mapping if word.split() != [word]), None)
        if odd is not None:
            raise ValueError(
                f"{str(path)!r}: the key {odd!r} is no word (a word is a non-empty string without whitespace; "
                "text never gives it, so it could never be classed)"
            )
        return {str(word): str(name) for word, name in mapping.items()}
    mapping = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{str(path)!r} line {number}: expected 'word class', got {line!r}.")
        mapping[parts[0]] = parts[1]
    if not mapping:
        raise ValueError(f"{str(path)!r} holds no word classes.")
    return mapping


# ---------------------------------------------------------------------------
# The analyses (each returns a JSON-ready result and named figures)
# ---------------------------------------------------------------------------


@dataclass
class _Context:
    model: torch.nn.Module
    tokenizer: Any
    stream: torch.Tensor  # (N,) the analysed split
    counting_streams: list[torch.Tensor]
    settings: AnalysisSettings
    estimated_timescales_for_mi: bool  # the report has (or will have) the timescales analysis
    progress: Any = False  # the current analysis's share of the run-wide bar (or False)
    cache: dict[str, Any] = field(default_factory=dict)

    def bin_of_token(self) -> torch.Tensor:
        vocab_size = base_model(self.model).embeddings.num_embeddings
        return frequency_bin_of_token(token_counts(self.counting_streams, vocab_size), self.settings.bin_edges)

    def timescale_estimate(self, progress: Any = False) -> Any:
        """The timescale estimate, computed once for every analysis that needs it."""
        if "timescales" not in self.cache:
            self.cache["timescales"] = estimate_timescales(
                self.model, self.stream, self.settings.batch_size, self.settings.window, progress=progress
            )
        return self.cache["timescales"]


Figures = dict[str, Callable[[], Any]]  # name -> function drawing the figure (called only if plotting)


def _timescales(context: _Context) -> tuple[dict[str, Any], Figures]:
    from . import figures

    estimate = context.timescale_estimate(context.progress)
    result = timescale_report(estimate, context.settings.families, context.settings.include_units)
    fits = {}
    for entry in estimate.layers:
        try:
            fits[entry.layer] = fit_inverse_gamma(entry.timescales)
        except ValueError:  # too few distinct finite timescales (e.g. a two-valued fixed layer)
            fits[entry.layer] = None
    # The figures draw a fit only where inverse_gamma_fit_note finds it meaningful.
    drawings: Figures = {
        f"timescales_layer{entry.layer + 1}": (lambda entry=entry: figures.plot_timescales(entry, fits[entry.layer]))
        for entry in estimate.layers
    }
    drawings["timescale_histograms"] = lambda: figures.plot_timescale_histograms(
        estimate, {layer: fit for layer, fit in fits.items() if fit is not None}
    )
    return result, drawings


def _ablation_order(context: _Context, layer: int) -> tuple[torch.Tensor | None, str]:
    order = context.settings.ablation_order
    assigned = context.model.assigned_timescales()[layer]
    has_forget_gate = base_model(context.model).layers[layer].layout.has_forget_gate
    if order == "assigned" or (order == "auto" and assigned is not None):
        if assigned is None:
            raise ValueError(
                f"layer {layer + 1} has no assigned timescales; use ablation_order (--ablation-order) "
                "'estimated' or 'index'."
            )
        return assigned, "assigned"
    if order == "estimated" and not has_forget_gate:
        raise ValueError(
            f"layer {layer + 1} has no forget gate, so no estimated timescales; use ablation_order "
            "(--ablation-order) 'index'."
        )
    if order == "estimated" or (order == "auto" and has_forget_gate):
        return context.timescale_estimate().layer(layer).timescales, "estimated"
    return None, "index"


def _ablation_layer_index(context: _Context) -> int:
    """The 0-based index of the ablated layer (``settings.ablation_layer`` is a number from 1)."""
    number = context.settings.ablation_layer
    num_layers = len(base_model(context.model).layers)
    if number is None:
        return default_ablation_layer(context.model)
    if not 1 <= number <= num_layers:
        raise ValueError(
            f"{option_name('ablation_layer')} must be a layer number from 1 to {num_layers} for this "
            f"{num_layers}-layer model, got {number}."
        )
    return number - 1


def _ablation(context: _Context) -> tuple[dict[str, Any], Figures]:
    from . import figures

    settings = context.settings
    layer = _ablation_layer_index(context)
    ordering, order = _ablation_order(context, layer)
    hidden_size = base_model(context.model).layers[layer].hidden_size
    # Unit order: consecutive chunks of unit indices.
    explicit = list(torch.arange(hidden_size).split(settings.chunk_size)) if ordering is None else None
    unit_chunks, ordering, _ = resolve_chunks(context.model, layer, explicit, settings.chunk_size, ordering)
    # One batched pass scores every chunk; both reports (frequency, word classes) bin the same numbers.
    log_probs = ablation_log_probs(
        context.model,
        context.stream,
        layer,
        unit_chunks,
        batch_size=settings.batch_size,
        window=settings.window,
        progress=context.progress,
    )
    targets = context.stream[target_positions(context.stream.numel(), settings.batch_size)]
    common = dict(
        layer=layer,
        unit_chunks=unit_chunks,
        ordering=ordering,
        order=order,
        chunk_size=settings.chunk_size,
        batch_size=settings.batch_size,
        window=settings.window,
    )
    frequency = routing_from_log_probs(
        log_probs, targets, context.bin_of_token(), bin_labels(settings.bin_edges), False, **common
    )
    result: dict[str, Any] = {"frequency": frequency, "classes": None}
    drawings: Figures = {
        "routing_frequency": lambda: figures.plot_routing_heatmap(frequency, title="Routing by word frequency")
    }
    if settings.word_classes:
        vocab_size = base_model(context.model).embeddings.num_embeddings
        classes, labels = word_class_table(settings.word_classes, context.tokenizer, vocab_size, settings.other_label)
        by_class = routing_from_log_probs(log_probs, targets, classes, labels, True, **common)
        result["classes"] = by_class
        drawings["routing_classes"] = lambda: figures.plot_routing_heatmap(by_class, title="Routing by word class")
    return result, drawings


def _state_gradients(context: _Context) -> tuple[dict[str, Any], Figures]:
    from . import figures
    from .state_gradient_result import embedding_whitening
    from .state_gradients import frequency_classes, source_positions, state_gradients

    settings = context.settings
    base = base_model(context.model)
    vocab_size = base.embeddings.num_embeddings
    classes, labels = frequency_classes(context.counting_streams, vocab_size, settings.bin_edges)
    stream = context.stream
    try:
        whitening = embedding_whitening(base.embeddings.weight)
    except ValueError:  # rank-deficient embeddings: raw (un-normalised) gradients
        whitening = None
    cell_layers = [index for index, layer in enumerate(base.layers) if layer.layout.has_cell]
    hidden_layers = [index for index, layer in enumerate(base.layers) if not layer.layout.has_cell]
    groups = [(layers, state) for layers, state in ((cell_layers, "cell"), (hidden_layers, "hidden")) if layers]
    results = []
    for position, (layers, state) in enumerate(groups):
        share = (
            context.progress.part(1.0 / (len(groups) - position))
            if isinstance(context.progress, Share)
            else context.progress
        )
        results += state_gradients(
            context.model,
            stream,
            max_delay=settings.max_delay,
            segment_length=settings.segment_length,
            layer=layers,
            state=state,
            token_classes=classes,
            num_classes=len(labels),
            class_labels=labels,
            batch_size=settings.batch_size,
            positions=settings.state_gradient_positions,
            progress=share,
        )
        if isinstance(share, Share):
            share.finish()
    results.sort(key=lambda result: result.layer)
    k = max(1, min(settings.k, base.embeddings.embedding_dim, *(layer.hidden_size for layer in base.layers)))
    row_length = token_rows(stream, settings.batch_size).shape[1]  # the rows state_gradients used
    sources = source_positions(row_length, settings.state_gradient_positions)
    layers_out = [
        {
            "layer": result.layer + 1,
            "state": result.state,
            "memory": result.memory(k, whitening).tolist(),
            "pooled_memory": result.pooled().memory(k, whitening)[:, 0].tolist(),
            "counts": result.counts.tolist(),
        }
        for result in results
    ]
    report = {
        "layers": layers_out,
        "class_labels": labels,
        "max_delay": settings.max_delay,
        "segment_length": settings.segment_length,
        "n_tokens": int(stream.numel()),
        "batch_size": settings.batch_size,
        "positions": "all" if settings.state_gradient_positions is None else settings.state_gradient_positions,
        "n_sources": int(sources.numel()) * settings.batch_size,
        "source_positions": sources.tolist(),
        "k": k,
        "whitened": whitening is not None,
    }
    drawings: Figures = {
        "state_gradients": lambda: figures.plot_state_gradient_layers(results, k=k, whitening=whitening)
    }
    return report, drawings


def _weighted_sum(context: _Context) -> tuple[dict[str, Any], Figures]:
    from . import figures

    settings = context.settings
    start, length = settings.passage_start, settings.passage_length
    passage = context.stream[start : start + length]
    if passage.numel() < 2:
        raise ValueError(
            f"the passage [{start}, {start + length}) holds {passage.numel()} tokens of the split; need at least 2 "
            f"({option_name('passage_start')}, {option_name('passage_length')})."
        )
    tokens = context.tokenizer.convert_ids_to_tokens(passage.tolist())
    layers = []
    for layer in layers_with_forget_gate(context.model):
        log_weights = passage_log_weights(context.model, passage, layer)  # (T, T, H), [t, j]
        matrix = weighted_sum_norms(log_weights).T  # [j, t]
        future = torch.ones_like(matrix, dtype=torch.bool).tril(-1)  # j > t
        layers.append({"layer": layer + 1, "norms": matrix.masked_fill(future, math.nan).tolist()})
    if not layers:
        raise ValueError("the model has no layer with a memory cell (all 'lstm-gates').")
    drawings: Figures = {
        f"weighted_sum_layer{item['layer']}": (
            lambda index=item["layer"] - 1: figures.plot_passage_weighted_sum(context.model, passage, index, tokens)
        )
        for item in layers
    }
    return {"tokens": tokens, "passage_start": start, "layers": layers}, drawings


def _memory_span(context: _Context) -> tuple[dict[str, Any], Figures]:
    from . import figures

    settings = context.settings
    span = estimate_memory_span(
        context.model,
        context.stream,
        settings.max_distance,
        settings.batch_size,
        settings.window,
        progress=context.progress,
    )
    return span.to_dict(), {"memory_span": lambda: figures.plot_memory_span(span)}


def _model_timescales(context: _Context) -> tuple[torch.Tensor | None, str | None]:
    """Finite timescales of all layers for the model decay and where they come from: the estimated
    ones when the report has the timescales analysis (whichever run computed it), else the assigned."""
    if context.estimated_timescales_for_mi:
        try:
            pooled = context.timescale_estimate().pooled()
        except ValueError:  # no layer with a forget gate: nothing was estimated
            pooled = None
        if pooled is not None:
            return (pooled if pooled.numel() else None), "estimated"
    assigned = [values for values in context.model.assigned_timescales() if values is not None]
    if not assigned:
        return None, None
    values = torch.cat(assigned)
    values = values[torch.isfinite(values) & (values > 0)]
    return (values if values.numel() else None), "assigned"


def _mutual_information(context: _Context) -> tuple[dict[str, Any], Figures]:
    from . import figures
    from .mutual_information import compare_decay, fit_power_law, mutual_information, timescale_decay

    settings = context.settings
    max_distance = min(settings.mi_max_distance, context.stream.numel() - 2)
    if max_distance < 1:
        raise ValueError(f"the split has {context.stream.numel()} tokens; mutual information needs at least 3.")
    result = mutual_information(
        context.stream,
        max_distance=max_distance,
        num_distances=settings.mi_num_distances,
        estimator=settings.mi_estimator,
    )
    report: dict[str, Any] = {
        "distances": result.distances.tolist(),
        "mutual_information": result.mutual_information.tolist(),
        "plugin": result.plugin.tolist(),
        "num_pairs": result.num_pairs.tolist(),
        "estimator": result.estimator,
        "base": result.base,
        "fit": None,
        "model_decay": None,
        "model_timescales": None,
        "comparison": None,
    }
    fit = comparison = model_decay = None
    try:
        fit = fit_power_law(result.distances, result.mutual_information)
        report["fit"] = dataclasses.asdict(fit)
    except ValueError as error:
        report["fit"] = {"error": str(error)}
    timescales, source = _model_timescales(context)
    if timescales is not None:
        model_decay = timescale_decay(result.distances, timescales)
        report["model_decay"] = model_decay.tolist()
        report["model_timescales"] = source
        try:
            comparison = compare_decay(result, model_decay)
            report["comparison"] = {
                "data_fit": dataclasses.asdict(comparison.data_fit),
                "model_fit": dataclasses.asdict(comparison.model_fit),
                "scale": comparison.scale,
                "log_rmse": comparison.log_rmse,
                "power": comparison.power,
                "exponent_ratio": comparison.exponent_ratio,
            }
        except (ValueError, ZeroDivisionError) as error:
            report["comparison"] = {"error": str(error)}
    drawings: Figures = {
        "mutual_information": lambda: figures.plot_mutual_information(
            result, fit=fit, comparison=comparison, model_decay=model_decay
        )
    }
    return report, drawings


_RUNNERS: dict[str, Callable[[_Context], tuple[dict[str, Any], Figures]]] = {
    "timescales": _timescales,
    "ablation": _ablation,
    "state_gradients": _state_gradients,
    "weighted_sum": _weighted_sum,
    "memory_span": _memory_span,
    "mutual_information": _mutual_information,
}


# ---------------------------------------------------------------------------
# Cost model: how much of the run-wide progress bar each analysis gets
# ---------------------------------------------------------------------------

# Relative speeds of the kinds of work (per second, measured on 2 cores; only ratios matter for the
# estimate of the total time, which the bar extrapolates from the measured rate).
_GEMM_RATE = 8.0e10  # multiply-adds in large matrix products
_STEP_RATE = 8.5e10  # multiply-adds of the state-gradient tangents (per-step products and their overhead)
_EXP_RATE = 1.0e8  # exp/log work of the weighted-sum spans (memory span)
_COUNT_RATE = 2.0e7  # token pairs counted (mutual information)
_FIGURE_SECONDS = 1.0  # drawing and saving one analysis's figures
_FIXED_SECONDS = 0.5  # per analysis


def _estimated_seconds(context: _Context, name: str) -> float:
    """A rough estimate of ``name``'s time: only the proportions between analyses matter (they split
    one bar whose total time is extrapolated from the measured progress)."""
    from .state_gradients import matrix_count, source_positions

    settings = context.settings
    base = base_model(context.model)
    sizes = [layer.hidden_size for layer in base.layers]
    inputs = [base.embeddings.embedding_dim, *sizes[:-1]]
    tokens = context.stream.numel()
    recurrent = sum(4 * hidden * (hidden + size_in) for hidden, size_in in zip(sizes, inputs))
    head = base.embeddings.num_embeddings * sizes[-1]
    seconds = _FIXED_SECONDS + _FIGURE_SECONDS
    if name == "timescales":
        seconds += tokens * 2 * recurrent / _GEMM_RATE
    elif name == "ablation":
        try:
            layer = _ablation_layer_index(context)
        except ValueError:  # reported when the analysis runs
            layer = 0
        chunks = math.ceil(sizes[layer] / settings.chunk_size)
        seconds += (chunks + 1) * tokens * (recurrent + head) / _GEMM_RATE
    elif name == "state_gradients":
        row_length = max(tokens // settings.batch_size, 1)
        if row_length >= settings.max_delay:
            sources = source_positions(row_length, settings.state_gradient_positions)
            matrices = settings.batch_size * matrix_count(
                sources, row_length, settings.max_delay, settings.segment_length
            )
            per_matrix = sum(2 * hidden * (hidden + size_in) for hidden, size_in in zip(sizes, inputs))
            seconds += matrices * per_matrix * base.embeddings.embedding_dim / _STEP_RATE
    elif name == "memory_span":
        span = settings.window + settings.max_distance - 1
        seconds += tokens * sum(sizes) * span * span / settings.window / _EXP_RATE
    elif name == "weighted_sum":
        seconds += settings.passage_length**2 * sum(sizes) / _EXP_RATE
    elif name == "mutual_information":
        seconds += tokens * settings.mi_num_distances / _COUNT_RATE
    return seconds


# ---------------------------------------------------------------------------
# Running, writing, resuming
# ---------------------------------------------------------------------------


def _check_analyses(analyses: Sequence[str] | str | None) -> list[str]:
    if analyses is None:
        return list(ANALYSES)
    names = [name.strip() for name in analyses.split(",")] if isinstance(analyses, str) else list(analyses)
    unknown = [name for name in names if name not in ANALYSES]
    if unknown or not names:
        raise ValueError(f"unknown analyses {unknown}; choose from {', '.join(ANALYSES)}.")
    return [name for name in ANALYSES if name in names]  # canonical order (timescales first: others reuse it)


def _model_summary(model: torch.nn.Module) -> dict[str, Any]:
    config = model.config
    return {
        "num_layers": len(base_model(model).layers),
        "hidden_sizes": list(config.hidden_sizes),
        "cell_types": list(config.cell_types) if isinstance(config.cell_types, (list, tuple)) else config.cell_types,
        "timescale_schedules": config.timescale_schedules,
        "vocab_size": int(config.vocab_size),
    }


def _tensor_digest(tensors: Sequence[tuple[str, torch.Tensor]]) -> str:
    digest = hashlib.sha256()
    for name, tensor in tensors:
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _fingerprints(model: torch.nn.Module, stream: torch.Tensor, counting: Sequence[torch.Tensor]) -> dict[str, str]:
    """sha256 of the weights (every parameter and buffer) and of the token ids analysed and counted."""
    return {
        "model": _tensor_digest(sorted(model.state_dict().items())),
        "stream": _tensor_digest([("stream", stream.long())]),
        "counting_streams": _tensor_digest([(f"stream{index}", item.long()) for index, item in enumerate(counting)]),
    }


_IDENTITY_KEYS = ("format_version", "split", "count_splits", "fingerprints", "settings")
"""What must match for a rerun to continue a report folder instead of refusing it."""


def _figures_of(report: Mapping[str, Any], name: str) -> list[str]:
    return list((report.get("analysis_figures") or {}).get(name) or [])


def _previous_report(folder: Path, report: dict[str, Any], restart: bool) -> dict[str, Any] | None:
    """The report already in ``folder`` when it may be continued; None when there is none (or
    ``restart`` removed it and the figures it lists)."""
    path = folder / REPORT_FILE
    if not path.is_file():
        return None
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        if not restart:
            raise ValueError(
                f"{str(path)!r} is not valid JSON ({error}); pass restart=True (--restart) to replace it."
            ) from error
        previous = {}
    if restart:
        for relative in (previous.get("figures") or {}).values() if isinstance(previous, dict) else ():
            with contextlib.suppress(OSError):
                (folder / relative).unlink()
        path.unlink()
        return None
    if not isinstance(previous, dict):
        raise ValueError(
            f"{str(path)!r} is not an mtlstm analysis report; pass restart=True (--restart) to replace it."
        )
    differences = []
    for key in _IDENTITY_KEYS:
        mine, theirs = report.get(key), previous.get(key)
        if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
            for field_name in sorted(set(mine) | set(theirs)):
                if _jsonable(mine.get(field_name)) != _jsonable(theirs.get(field_name)):
                    differences.append(
                        f"{key}.{field_name}: {theirs.get(field_name)!r} there, {mine.get(field_name)!r} now"
                    )
        elif _jsonable(mine) != _jsonable(theirs):
            differences.append(f"{key}: {theirs!r} there, {mine!r} now")
    if differences:
        shown = "; ".join(differences[:6]) + ("; ..." if len(differences) > 6 else "")
        raise ValueError(
            f"{str(path)!r} holds results of another checkpoint, corpus or settings ({shown}). Rerun with "
            "restart=True (--restart) to discard it, or choose another output folder; results of different "
            "settings are never mixed in one report."
        )
    return previous


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from report.json (tuples become lists, NaN becomes null)."""
    from mtlstm_hf.evaluation.checkpoint import to_json_compatible

    return json.loads(json.dumps(to_json_compatible(value)))


def _draw(drawings: Figures, folder: Path) -> list[str]:
    """Draw and save every figure of one analysis (atomically); return their names."""
    from . import figures

    for name, draw in drawings.items():
        figures.save_figure(draw(), folder / FIGURES_DIR / f"{name}.png")
    return list(drawings)


def run_analyses(
    model: torch.nn.Module,
    tokenizer: Any,
    stream: torch.Tensor,
    counting_streams: Sequence[torch.Tensor] | torch.Tensor,
    analyses: Sequence[str] | str | None = None,
    settings: AnalysisSettings | None = None,
    output_dir: PathOrStr | None = None,
    figures: bool = True,
    progress: bool = False,
    metadata: Mapping[str, Any] | None = None,
    restart: bool = False,
) -> dict[str, Any]:
    """Run analyses on a loaded model and token stream; with ``output_dir``, write each as it finishes.

    Args:
        model: ``MTLSTMForCausalLM`` (eval mode is used; its training flag is restored).
        tokenizer: the word tokenizer (ids -> words for the passage, word classes).
        stream: ``(N,)`` token ids of the analysed split (``settings.max_tokens`` is applied here).
        counting_streams: stream(s) whose word counts define the frequency bins.
        analyses: names from :data:`ANALYSES` (list or comma-separated string; default all).
        settings: :class:`AnalysisSettings` (default values if None).
        output_dir: the report folder (see the module docstring). ``report.json`` is written
            atomically at the start and after every analysis with its figures. A report already
            there with the same weights, streams and settings is continued: its finished analyses
            are kept and not run again (an analysis without figures is run again when figures are
            wanted).
        figures: draw figures (needs matplotlib; without it they are left out with a note in
            ``skipped["figures"]``).
        progress: one progress bar for the whole run (:func:`mtlstm_hf.progress.progress`: a tqdm
            bar on a terminal, periodic plain lines with the estimated total time otherwise). Its
            total covers every analysis still to run, weighted by a rough cost estimate, and it
            advances inside each analysis.
        metadata: extra top-level entries (checkpoint, data, split, ...).
        restart: discard a report already in ``output_dir`` (and the figures it lists) instead of
            continuing it.

    Returns:
        The report dict (as written to ``report.json``, before NaN/inf become null).

    Raises:
        ValueError: a bad setting or analysis name; a report in ``output_dir`` made with another
            checkpoint, corpus or settings (without ``restart``).
    """
    settings = settings or AnalysisSettings()
    settings.validate()
    names = _check_analyses(analyses)
    num_layers = len(base_model(model).layers)
    if settings.ablation_layer is not None and settings.ablation_layer > num_layers:
        raise ValueError(
            f"{option_name('ablation_layer')} must be a layer number from 1 to {num_layers} for this "
            f"{num_layers}-layer model, got {settings.ablation_layer}."
        )
    stream = torch.as_tensor(stream).long()
    if settings.max_tokens is not None:
        stream = stream[: settings.max_tokens]
    counting = [counting_streams] if isinstance(counting_streams, torch.Tensor) else list(counting_streams)
    report: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "library": "mtlstm_hf",
        "library_version": _library_version(),
        **dict(metadata or {}),
        "n_stream_tokens": int(stream.numel()),
        "model": _model_summary(model),
        "settings": settings.to_dict(),
        "fingerprints": _fingerprints(model, stream, counting),
        "analyses": {},
        "skipped": {},
        "pending": [],
        "figures": {},
        "analysis_figures": {},
        "seconds": {},
    }
    folder = Path(output_dir) if output_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        previous = _previous_report(folder, report, restart)
        if previous is not None:
            for key in ("analyses", "skipped", "figures", "analysis_figures", "seconds"):
                report[key] = dict(previous.get(key) or {})
    if figures and folder is not None:
        from .figures import matplotlib_missing

        missing = matplotlib_missing("mtlstm-analyze figures")
        if missing is not None:
            report["skipped"]["figures"] = missing
            figures = False
    draw = figures and folder is not None

    def finished(name: str) -> bool:
        if name in report["skipped"]:
            return True
        if name not in report["analyses"]:
            return False
        wanted = _figures_of(report, name)
        return not draw or (
            bool(wanted)
            and all(item in report["figures"] and (folder / report["figures"][item]).is_file() for item in wanted)
        )

    todo = [name for name in names if not finished(name)]
    report["pending"] = list(todo)
    context = _Context(
        model,
        tokenizer,
        stream,
        counting,
        settings,
        estimated_timescales_for_mi="timescales" in names or "timescales" in report["analyses"],
    )
    if folder is not None:
        write_report(report, folder)
    bar = None
    if progress and todo:
        from mtlstm_hf.progress import progress as make_bar

        estimates = {name: _estimated_seconds(context, name) for name in todo}
        total = sum(estimates.values())
        bar = make_bar(total=1000, desc="mtlstm-analyze", unit="‰")
        meter = Meter(bar)
    try:
        for name in todo:
            share = None
            if bar is not None:
                share = Share(meter, 1000 * estimates[name] / total)
                bar.set_postfix_str(name)
            context.progress = share if share is not None else False
            started = time.perf_counter()
            report["analyses"].pop(name, None)
            report["skipped"].pop(name, None)
            try:
                with float32_precision("highest"):  # never TensorFloat-32, whatever a caller set
                    result, drawings = _RUNNERS[name](context)
            except ValueError as error:  # the analysis does not apply to this model/data: record why
                report["skipped"][name] = str(error)
            else:
                report["analyses"][name] = result
                if draw:
                    for old in _figures_of(report, name):
                        report["figures"].pop(old, None)
                    drawn = _draw(drawings, folder)
                    report["figures"].update({item: f"{FIGURES_DIR}/{item}.png" for item in drawn})
                    report["analysis_figures"][name] = drawn
            report["seconds"][name] = round(time.perf_counter() - started, 3)
            report["pending"].remove(name)
            if folder is not None:
                write_report(report, folder)
            if share is not None:
                share.finish()
    finally:
        if bar is not None:
            bar.close()
    return report


def _library_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("mtlstm_hf")
    except Exception:  # not installed as a distribution
        return None


def write_report(report: Mapping[str, Any], folder: PathOrStr) -> Path:
    """Write ``report`` as ``<folder>/report.json`` (NaN/inf as null) atomically; return the file path.

    Through :func:`mtlstm_hf.files.write_text_atomic`: a reader, or a run interrupted at any
    moment, sees the previous complete report or the new one, never a mix.
    """
    from mtlstm_hf.evaluation.checkpoint import to_json_compatible
    from mtlstm_hf.files import write_text_atomic

    path = Path(folder) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(to_json_compatible(dict(report)), indent=1, allow_nan=False) + "\n")
    return path


def load_report(folder: PathOrStr) -> dict[str, Any]:
    """Read a report folder written by :func:`run_analyses` / ``mtlstm-analyze``.

    Format 1 (layers numbered from 0) and 2 (from 1) are read as they are; check
    ``format_version`` before using ``"layer"`` fields.

    Returns:
        The ``report.json`` dict, plus ``"folder"`` (absolute path) and ``"figure_paths"``
        (``{name: absolute path}`` of the figures listed).

    Raises:
        FileNotFoundError: no folder or no ``report.json``.
        ValueError: not a report (bad JSON, no ``format_version``) or a newer format.
    """
    folder = Path(folder).expanduser().resolve()
    path = folder / REPORT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {REPORT_FILE} in {str(folder)!r} (is it an mtlstm-analyze output folder?)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not valid JSON: {error}") from error
    version = report.get("format_version") if isinstance(report, dict) else None
    if not isinstance(version, int):
        raise ValueError(f"{str(path)!r} is not an mtlstm analysis report (no format_version).")
    if version > FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} has format_version {version}; this library reads up to {FORMAT_VERSION}.")
    report["folder"] = str(folder)
    report["figure_paths"] = {name: str(folder / relative) for name, relative in report.get("figures", {}).items()}
    return report


def analyze_checkpoint(
    checkpoint: PathOrStr | tuple[Any, Any],
    data: Any = None,
    output_dir: PathOrStr | None = None,
    split: str = "validation",
    analyses: Sequence[str] | str | None = None,
    settings: AnalysisSettings | None = None,
    *,
    data_config: str | None = None,
    device: torch.device | str | None = None,
    figures: bool = True,
    progress: bool = False,
    restart: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint and a corpus, run the analyses, and (with ``output_dir``) write the report folder.

    Args:
        checkpoint: a folder with model and tokenizer (``save_pretrained``) or a loaded
            ``(model, tokenizer)`` pair.
        data: anything :func:`mtlstm_hf.data.load_corpus` accepts (folder, Hub id, DatasetDict);
            None: the corpus the checkpoint was trained on
            (:func:`mtlstm_hf.training.checkpoint.recorded_corpus`).
        output_dir: where to write ``report.json`` and ``figures/`` (None: return only).
        split: the analysed split (``"valid"``/``"validation"``, ``"test"``, ``"train"``).
        analyses, settings, figures, progress, restart: see :func:`run_analyses`.
        data_config: Hub dataset configuration. device: device for a loaded checkpoint.

    Raises:
        FileNotFoundError: no checkpoint or corpus there.
        ValueError: a bad setting, checkpoint or corpus; no ``data`` and no record of the training
            corpus; a report of other settings in ``output_dir``.
    """
    from mtlstm_hf.evaluation.checkpoint import (
        counting_corpus,
        describe_data,
        evaluation_corpus,
        resolve_checkpoint,
        split_streams,
    )
    from mtlstm_hf.files import recorded_corpus

    settings = settings or AnalysisSettings()
    settings.validate()
    names = _check_analyses(analyses)  # fail on a typo before loading anything
    if data is None:
        if isinstance(checkpoint, tuple):
            raise ValueError("data is needed with a loaded (model, tokenizer) pair: no training record to read.")
        data, recorded_config = recorded_corpus(checkpoint)
        data_config = data_config if data_config is not None else recorded_config
    model, tokenizer, checkpoint_path = resolve_checkpoint(checkpoint, device)
    corpus = evaluation_corpus(data, split, data_config)
    count_corpus, count_data = counting_corpus(corpus, settings.count_splits, checkpoint_path)
    split, count_names, streams = split_streams(corpus, tokenizer, split, settings.count_splits, count_corpus)
    description = describe_data(data)
    metadata = {
        "checkpoint": checkpoint_path,
        "data": description,
        "data_config": data_config,
        "split": split,
        "count_splits": count_names,
        **({"count_data": count_data} if count_data is not None else {}),
    }
    return run_analyses(
        model,
        tokenizer,
        streams["scored"],
        [streams[name] for name in count_names],
        names,
        settings,
        output_dir,
        figures,
        progress,
        metadata,
        restart,
    )
