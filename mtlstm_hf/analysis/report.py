"""Run the analyses of a checkpoint on a corpus and write them as a report folder.

:func:`analyze_checkpoint` (and the ``mtlstm-analyze`` command, :mod:`.cli`) loads a checkpoint
(model + tokenizer folder), tokenizes one split of a corpus, runs the selected analyses, and
writes a folder that a later step can publish next to the model on the Hub.

Report folder layout (``FORMAT_VERSION = 1``)::

    <output-dir>/
        report.json                         everything below, machine-readable
        figures/
            timescales_layer<l>.png         sorted estimated T vs assigned and fitted InvGamma quantiles
            timescale_histograms.png        histogram of log10 T per layer, fitted density
            routing_frequency.png           ablation: ppl ratio per chunk x frequency bin
            routing_classes.png             the same per word class (only with word classes)
            memory_span.png                 mean ||w_{t-d}^t|| vs distance d, per layer
            weighted_sum_layer<l>.png       ||w_j^t|| heat map of one passage, per layer
            state_gradients_layer<l>.png    state-gradient memory vs delay per frequency class
            mutual_information.png          I(d) of the corpus, power-law fit, model decay

Figures exist only for the analyses that ran (and only with matplotlib installed).

``report.json``::

    {
      "format_version": 1,
      "library": "mtlstm_hf", "library_version": "...",
      "checkpoint": path or null, "data": description, "split": "validation",
      "n_stream_tokens": int,            tokens of the split used (after --max-tokens)
      "model": {"num_layers", "hidden_sizes", "cell_types", "timescale_schedules", "vocab_size"},
      "settings": {...},                 every AnalysisSettings field
      "analyses": {                      one entry per analysis that ran
        "timescales":         timescales.timescale_report(...)
        "ablation":           {"frequency": ablation.routing_report(...), "classes": ... or null}
        "state_gradients":    {"layers": [{"layer", "state", "memory" (D x C), "pooled_memory" (D),
                               "counts" (D x C)}], "class_labels", "max_delay", "segment_length",
                               "n_tokens", "k", "whitened"}
        "weighted_sum":       {"tokens", "layers": [{"layer", "norms" (T x T, [j][t], null for j > t)}]}
        "memory_span":        memory_span.MemorySpan.to_dict() (estimate_memory_span)
        "mutual_information": {"distances", "mutual_information", "plugin", "estimator", "base",
                               "fit", "model_decay", "comparison"}
      },
      "skipped": {analysis: reason},     analyses that did not apply (e.g. no forget gate)
      "figures": {name: "figures/<file>.png"}    paths relative to the folder
    }

Non-finite numbers (NaN for an empty bin, inf for a unit whose mean forget gate is 1) are written
as ``null``. :func:`load_report` reads the folder back (with absolute figure paths added).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import torch

from mtlstm_hf.evaluation.checkpoint import load_checkpoint, to_json_compatible
from mtlstm_hf.evaluation.frequency import DEFAULT_BIN_EDGES, frequency_bin_of_token, token_counts
from mtlstm_hf.models.mtlstm.gates import weighted_sum_norms

from .ablation import routing_report, word_class_table
from .memory_span import estimate_memory_span, layers_with_memory_cell, passage_log_weights
from .timescales import DISTRIBUTION_FAMILIES, estimate_timescales, fit_inverse_gamma, timescale_report
from .traces import base_model

__all__ = [
    "ANALYSES",
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

ANALYSES: tuple[str, ...] = (
    "timescales",
    "ablation",
    "state_gradients",
    "weighted_sum",
    "memory_span",
    "mutual_information",
)
"""Analyses :func:`run_analyses` knows, in the order they run."""

REPORT_FILE = "report.json"
FIGURES_DIR = "figures"
FORMAT_VERSION = 1

PathOrStr = Union[str, os.PathLike]


@dataclass
class AnalysisSettings:
    """Settings of every analysis (defaults follow the papers where they say something).

    Streaming (timescales, ablation, memory span): ``batch_size`` (1 = state carried over the
    whole split, the paper's setting), ``window`` (tokens per forward; memory only),
    ``max_tokens`` (use the first N tokens of the split; None = all).
    Frequency bins: ``count_splits`` (word counts from train by default), ``bin_edges``.
    Ablation: ``ablation_layer`` (None: :func:`default_ablation_layer`), ``chunk_size`` (50),
    ``ablation_order`` (``"auto"``: assigned timescales if the layer has a schedule, else
    estimated, else unit order; or ``"assigned"``, ``"estimated"``, ``"index"``),
    ``word_classes`` (``{word: class}`` for the class routing report), ``other_label``.
    Timescales: ``families`` fitted.
    State gradients (Verwimp et al.): ``max_delay`` (50), ``segment_length`` (200),
    ``state_gradient_tokens`` (tokens used: the analysis is the most expensive), ``k`` singular values.
    Weighted sum: ``passage_start``, ``passage_length``. Memory span: ``max_distance``.
    Mutual information: ``mi_max_distance``, ``mi_num_distances``, ``mi_estimator``.
    ``include_units``: per-unit lists (forget gates, timescales) in the JSON.
    """

    batch_size: int = 1
    window: int = 70
    max_tokens: int | None = None
    count_splits: tuple[str, ...] = ("train",)
    bin_edges: tuple[int, ...] = tuple(DEFAULT_BIN_EDGES)
    ablation_layer: int | None = None
    chunk_size: int = 50
    ablation_order: str = "auto"
    word_classes: dict[str, str] | None = None
    other_label: str | None = "other"
    families: tuple[str, ...] = DISTRIBUTION_FAMILIES
    max_delay: int = 50
    segment_length: int = 200
    state_gradient_tokens: int = 1000
    k: int = 5
    passage_start: int = 0
    passage_length: int = 30
    max_distance: int = 100
    mi_max_distance: int = 1000
    mi_num_distances: int = 30
    mi_estimator: str = "grassberger"
    include_units: bool = True

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["word_classes"] = None if self.word_classes is None else f"<{len(self.word_classes)} words>"
        return values


def default_ablation_layer(model: torch.nn.Module) -> int:
    """The layer ablated by default: the first with an inverse-gamma schedule (the paper's layer 2),
    else the middle layer ``L // 2`` (layer 2 of a 3-layer AWD-LSTM)."""
    schedules = getattr(model.config, "timescale_schedules", None) or []
    for index, schedule in enumerate(schedules):
        if isinstance(schedule, Mapping) and schedule.get("type") == "inverse_gamma":
            return index
    return len(base_model(model).layers) // 2


def load_word_classes(path: PathOrStr) -> dict[str, str]:
    """Read a ``{word: class}`` map: a JSON object, or text lines ``word<whitespace>class``.

    Raises:
        FileNotFoundError: no such file. ValueError: malformed content.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word-class file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{str(path)!r} is not valid JSON: {error}") from error
        if not isinstance(mapping, dict):
            raise ValueError(f"{str(path)!r} must hold a JSON object {{word: class}}.")
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
    figures: bool
    progress: bool
    cache: dict[str, Any] = field(default_factory=dict)

    def bin_of_token(self) -> torch.Tensor:
        vocab_size = base_model(self.model).embeddings.num_embeddings
        return frequency_bin_of_token(token_counts(self.counting_streams, vocab_size), self.settings.bin_edges)

    def timescale_estimate(self) -> Any:
        """The timescale estimate, computed once for every analysis that needs it."""
        if "timescales" not in self.cache:
            self.cache["timescales"] = estimate_timescales(
                self.model, self.stream, self.settings.batch_size, self.settings.window, progress=self.progress
            )
        return self.cache["timescales"]


Figures = dict[str, Callable[[], Any]]  # name -> function drawing the figure (called only if plotting)


def _timescales(context: _Context) -> tuple[dict[str, Any], Figures]:
    from . import figures as plots

    estimate = context.timescale_estimate()
    result = timescale_report(estimate, context.settings.families, context.settings.include_units)
    fits = {}
    for entry in estimate.layers:
        try:
            fits[entry.layer] = fit_inverse_gamma(entry.timescales)
        except ValueError:  # too few distinct finite timescales (e.g. a two-valued fixed layer)
            fits[entry.layer] = None
    drawings: Figures = {
        f"timescales_layer{entry.layer}": (lambda entry=entry: plots.plot_timescales(entry, fits[entry.layer]))
        for entry in estimate.layers
    }
    drawings["timescale_histograms"] = lambda: plots.plot_timescale_histograms(
        estimate, {layer: fit for layer, fit in fits.items() if fit is not None}
    )
    return result, drawings


def _ablation_order(context: _Context, layer: int) -> tuple[torch.Tensor | None, str]:
    order = context.settings.ablation_order
    if order not in ("auto", "assigned", "estimated", "index"):
        raise ValueError(f"ablation_order must be 'auto', 'assigned', 'estimated' or 'index', got {order!r}.")
    assigned = context.model.assigned_timescales()[layer]
    has_forget_gate = base_model(context.model).layers[layer].layout.has_forget_gate
    if order == "assigned" or (order == "auto" and assigned is not None):
        if assigned is None:
            raise ValueError(f"layer {layer} has no assigned timescales; use ablation_order 'estimated' or 'index'.")
        return assigned, "assigned"
    if order == "estimated" and not has_forget_gate:
        raise ValueError(f"layer {layer} has no forget gate, so no estimated timescales; use ablation_order 'index'.")
    if order == "estimated" or (order == "auto" and has_forget_gate):
        return context.timescale_estimate().layer(layer).timescales, "estimated"
    return None, "index"


def _ablation(context: _Context) -> tuple[dict[str, Any], Figures]:
    from . import figures as plots

    settings = context.settings
    layer = settings.ablation_layer if settings.ablation_layer is not None else default_ablation_layer(context.model)
    num_layers = len(base_model(context.model).layers)
    if not -num_layers <= layer < num_layers:
        raise ValueError(f"ablation_layer must lie in [{-num_layers}, {num_layers}), got {layer}.")
    layer %= num_layers
    ordering, order = _ablation_order(context, layer)
    hidden_size = base_model(context.model).layers[layer].hidden_size
    common = dict(
        chunk_size=settings.chunk_size,
        timescales=ordering,
        # Unit order: consecutive chunks of unit indices.
        chunks=list(torch.arange(hidden_size).split(settings.chunk_size)) if ordering is None else None,
        batch_size=settings.batch_size,
        window=settings.window,
        progress=context.progress,
    )
    frequency = routing_report(
        context.model, context.stream, layer, context.bin_of_token(), edges=settings.bin_edges, **common
    )
    frequency.update(order=order, chunk_size=settings.chunk_size)
    result: dict[str, Any] = {"frequency": frequency, "classes": None}
    drawings: Figures = {
        "routing_frequency": lambda: plots.plot_routing_heatmap(frequency, title="Routing by word frequency")
    }
    if settings.word_classes:
        vocab_size = base_model(context.model).embeddings.num_embeddings
        classes, labels = word_class_table(settings.word_classes, context.tokenizer, vocab_size, settings.other_label)
        by_class = routing_report(context.model, context.stream, layer, classes, labels, **common)
        by_class.update(order=order, chunk_size=settings.chunk_size)
        result["classes"] = by_class
        drawings["routing_classes"] = lambda: plots.plot_routing_heatmap(by_class, title="Routing by word class")
    return result, drawings


def _state_gradients(context: _Context) -> tuple[dict[str, Any], Figures]:
    from .plots import plot_state_gradient_memory
    from .state_gradients import embedding_whitening, frequency_classes, state_gradients

    settings = context.settings
    base = base_model(context.model)
    vocab_size = base.embeddings.num_embeddings
    classes, labels = frequency_classes(context.counting_streams, vocab_size, settings.bin_edges)
    stream = context.stream[: settings.state_gradient_tokens]
    try:
        whitening = embedding_whitening(base.embeddings.weight)
    except ValueError:  # rank-deficient embeddings: raw (un-normalised) gradients
        whitening = None
    cell_layers = [index for index, layer in enumerate(base.layers) if layer.layout.has_cell]
    hidden_layers = [index for index, layer in enumerate(base.layers) if not layer.layout.has_cell]
    results = []
    for layers, state in ((cell_layers, "cell"), (hidden_layers, "hidden")):
        if layers:
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
                progress=context.progress,
            )
    results.sort(key=lambda result: result.layer)
    k = max(1, min(settings.k, base.embeddings.embedding_dim, *(layer.hidden_size for layer in base.layers)))
    layers_out = [
        {
            "layer": result.layer,
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
        "k": k,
        "whitened": whitening is not None,
    }
    drawings: Figures = {
        f"state_gradients_layer{result.layer}": (
            lambda result=result: plot_state_gradient_memory(result, k=k, whitening=whitening)
        )
        for result in results
    }
    return report, drawings


def _weighted_sum(context: _Context) -> tuple[dict[str, Any], Figures]:
    from . import figures as plots

    settings = context.settings
    start, length = settings.passage_start, settings.passage_length
    passage = context.stream[start : start + length]
    if passage.numel() < 2:
        raise ValueError(
            f"the passage [{start}, {start + length}) holds {passage.numel()} tokens of the split; need at least 2."
        )
    tokens = context.tokenizer.convert_ids_to_tokens(passage.tolist())
    layers = []
    for layer in layers_with_memory_cell(context.model):
        log_weights = passage_log_weights(context.model, passage, layer)  # (T, T, H), [t, j]
        matrix = weighted_sum_norms(log_weights).T  # [j, t]
        future = torch.ones_like(matrix, dtype=torch.bool).tril(-1)  # j > t
        layers.append({"layer": layer, "norms": matrix.masked_fill(future, math.nan).tolist()})
    if not layers:
        raise ValueError("the model has no layer with a memory cell (all 'lstm-gates').")
    drawings: Figures = {
        f"weighted_sum_layer{item['layer']}": (
            lambda layer=item["layer"]: plots.plot_passage_weighted_sum(context.model, passage, layer, tokens)
        )
        for item in layers
    }
    return {"tokens": tokens, "passage_start": start, "layers": layers}, drawings


def _memory_span(context: _Context) -> tuple[dict[str, Any], Figures]:
    from . import figures as plots

    settings = context.settings
    span = estimate_memory_span(
        context.model,
        context.stream,
        settings.max_distance,
        settings.batch_size,
        settings.window,
        progress=context.progress,
    )
    return span.to_dict(), {"memory_span": lambda: plots.plot_memory_span(span)}


def _model_timescales(context: _Context) -> torch.Tensor | None:
    """Finite timescales of all layers for the model decay: estimated if already computed, else assigned."""
    if "timescales" in context.cache:
        pooled = context.cache["timescales"].pooled()
        return pooled if pooled.numel() else None
    assigned = [values for values in context.model.assigned_timescales() if values is not None]
    if not assigned:
        return None
    values = torch.cat(assigned)
    values = values[torch.isfinite(values) & (values > 0)]
    return values if values.numel() else None


def _mutual_information(context: _Context) -> tuple[dict[str, Any], Figures]:
    from .mutual_information import compare_decay, fit_power_law, mutual_information, timescale_decay
    from .plots import plot_mutual_information

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
    timescales = _model_timescales(context)
    if timescales is not None:
        model_decay = timescale_decay(result.distances, timescales)
        report["model_decay"] = model_decay.tolist()
        report["model_timescales"] = "estimated" if "timescales" in context.cache else "assigned"
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
        "mutual_information": lambda: plot_mutual_information(
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
) -> dict[str, Any]:
    """Run analyses on a loaded model and token stream; optionally write the report folder.

    Args:
        model: ``MTLSTMForCausalLM`` (eval mode is used; its training flag is restored).
        tokenizer: the word tokenizer (ids -> words for the passage, word classes).
        stream: ``(N,)`` token ids of the analysed split (``settings.max_tokens`` is applied here).
        counting_streams: stream(s) whose word counts define the frequency bins.
        analyses: names from :data:`ANALYSES` (list or comma-separated string; default all).
        settings: :class:`AnalysisSettings` (default values if None).
        output_dir: write ``report.json`` and ``figures/`` there (see the module docstring).
        figures: draw figures (needs matplotlib; without it they are skipped with a note in
            ``skipped["figures"]``).
        progress: tqdm progress bars.
        metadata: extra top-level entries (checkpoint, data, split, ...).

    Returns:
        The report dict (as written to ``report.json``, before NaN/inf become null).
    """
    settings = settings or AnalysisSettings()
    names = _check_analyses(analyses)
    stream = torch.as_tensor(stream).long()
    if settings.max_tokens is not None:
        stream = stream[: settings.max_tokens]
    counting = [counting_streams] if isinstance(counting_streams, torch.Tensor) else list(counting_streams)
    context = _Context(model, tokenizer, stream, counting, settings, figures, progress)
    report: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "library": "mtlstm_hf",
        "library_version": _library_version(),
        **dict(metadata or {}),
        "n_stream_tokens": int(stream.numel()),
        "model": _model_summary(model),
        "settings": settings.to_dict(),
        "analyses": {},
        "skipped": {},
        "figures": {},
    }
    drawings: Figures = {}
    iterator: Any = names
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(names, desc="mtlstm-analyze", unit="analysis")
    for name in iterator:
        if progress:
            iterator.set_postfix_str(name)
        try:
            result, named_figures = _RUNNERS[name](context)
        except ValueError as error:  # the analysis does not apply to this model/data: record why
            report["skipped"][name] = str(error)
            continue
        report["analyses"][name] = result
        drawings.update(named_figures)
    if output_dir is not None:
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        if figures and drawings:
            report["figures"] = _draw(drawings, folder, report["skipped"])
        write_report(report, folder)
    return report


def _draw(drawings: Figures, folder: Path, skipped: dict[str, str]) -> dict[str, str]:
    """Draw and save every figure; return ``{name: relative path}``."""
    from . import figures as plots

    try:
        plots.pyplot("mtlstm-analyze figures")
    except ImportError as error:
        skipped["figures"] = str(error)
        return {}
    written = {}
    for name, draw in drawings.items():
        relative = f"{FIGURES_DIR}/{name}.png"
        plots.save_figure(draw(), folder / relative)
        written[name] = relative
    return written


def _library_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("mtlstm_hf")
    except Exception:  # not installed as a distribution
        return None


def write_report(report: Mapping[str, Any], folder: PathOrStr) -> Path:
    """Write ``report`` as ``<folder>/report.json`` (NaN/inf as null); return the file path."""
    path = Path(folder) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_json_compatible(dict(report)), indent=1, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def load_report(folder: PathOrStr) -> dict[str, Any]:
    """Read a report folder written by :func:`run_analyses` / ``mtlstm-analyze``.

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
    data: Any,
    output_dir: PathOrStr | None = None,
    split: str = "validation",
    analyses: Sequence[str] | str | None = None,
    settings: AnalysisSettings | None = None,
    *,
    data_config: str | None = None,
    device: torch.device | str | None = None,
    figures: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint and a corpus, run the analyses, and (with ``output_dir``) write the report folder.

    Args:
        checkpoint: a folder with model and tokenizer (``save_pretrained``) or a loaded
            ``(model, tokenizer)`` pair.
        data: anything :func:`mtlstm_hf.data.load_corpus` accepts (folder, Hub id, DatasetDict).
        output_dir: where to write ``report.json`` and ``figures/`` (None: return only).
        split: the analysed split (``"valid"``/``"validation"``, ``"test"``, ``"train"``).
        analyses, settings, figures, progress: see :func:`run_analyses`.
        data_config: Hub dataset configuration. device: device for a loaded checkpoint.
    """
    from mtlstm_hf.data import canonical_split, load_corpus, split_to_stream

    settings = settings or AnalysisSettings()
    names = _check_analyses(analyses)  # fail on a typo before loading anything
    if isinstance(checkpoint, tuple):
        model, tokenizer = checkpoint
        checkpoint_path = None
    else:
        model, tokenizer = load_checkpoint(checkpoint, device=device)
        checkpoint_path = str(checkpoint)
    corpus = load_corpus(data, data_config)
    split = canonical_split(split)
    count_names = list(dict.fromkeys(canonical_split(name) for name in settings.count_splits))
    streams = {name: split_to_stream(corpus, name, tokenizer) for name in dict.fromkeys([split, *count_names])}
    if hasattr(data, "column_names"):  # a loaded DatasetDict
        description = f"<{type(data).__name__}>"
    elif isinstance(data, Mapping):
        description = json.dumps({str(key): str(value) for key, value in data.items()})
    else:
        description = str(data) if isinstance(data, (str, os.PathLike)) else f"<{type(data).__name__}>"
    metadata = {
        "checkpoint": checkpoint_path,
        "data": description,
        "split": split,
        "count_splits": count_names,
    }
    return run_analyses(
        model,
        tokenizer,
        streams[split],
        [streams[name] for name in count_names],
        names,
        settings,
        output_dir,
        figures,
        progress,
        metadata,
    )
