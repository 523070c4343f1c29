"""Run the analyses of a checkpoint on a corpus and write them, one by one, into a report folder.

:func:`analyze_checkpoint` (and the ``mtlstm-analyze`` command, :mod:`.cli`) loads a checkpoint
(model + tokenizer folder), tokenizes one split of a corpus, runs the selected analyses, and
writes a folder that a later step can publish next to the model on the Hub.

The analyses are those of :data:`.registry.ANALYSIS_REGISTRY`, in its order: each is a module
(the built-in ones in :mod:`.runs`) giving its section of ``report.json``, its figures and a cost
estimate from an :class:`.context.AnalysisContext`. This module only orchestrates: it builds the
context, runs what is selected and not yet done, and writes, resumes and reads the report.

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
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mtlstm_hf.devices import float32_precision
from mtlstm_hf.files import PathOrStr
from mtlstm_hf.progress import Meter, Share

from .context import AnalysisContext
from .registry import ANALYSIS_REGISTRY, Figures
from .runs.ablation import default_ablation_layer
from .settings import ANALYSES, DEFAULT_STATE_GRADIENT_POSITIONS, AnalysisSettings, option_name

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
# Cost model: how much of the run-wide progress bar each analysis gets
# ---------------------------------------------------------------------------

_FIGURE_SECONDS = 1.0  # drawing and saving one analysis's figures
_FIXED_SECONDS = 0.5  # per analysis


def _estimated_seconds(context: AnalysisContext, name: str) -> float:
    """A rough estimate of ``name``'s time: only the proportions between analyses matter (they split
    one bar whose total time is extrapolated from the measured progress). Each analysis estimates
    its own work (:mod:`.registry`); the rates are in :mod:`.context`."""
    seconds = _FIXED_SECONDS + _FIGURE_SECONDS
    seconds += ANALYSIS_REGISTRY[name].cost(context)
    return seconds


# ---------------------------------------------------------------------------
# Running, writing, resuming
# ---------------------------------------------------------------------------


def _check_analyses(analyses: Sequence[str] | str | None) -> list[str]:
    """The selected names in the order they run (the registry's: timescales first, others reuse it)."""
    registered = list(ANALYSIS_REGISTRY)
    if analyses is None:
        return registered
    names = [name.strip() for name in analyses.split(",")] if isinstance(analyses, str) else list(analyses)
    unknown = [name for name in names if name not in registered]
    if unknown or not names:
        raise ValueError(f"unknown analyses {unknown}; choose from {', '.join(registered)}.")
    return [name for name in registered if name in names]


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
        model: ``MTLSTMForCausalLM``, or a causal LM of another architecture an adapter reads
            (:mod:`.architectures`: Mamba, Mamba2, RWKV, RecurrentGemma, xLSTM; eval mode is used,
            its training flag is restored). An analysis that does not apply to the architecture is
            recorded under ``report["skipped"]`` with the reason.
        tokenizer: the model's tokenizer (ids -> words for the passage, word classes).
        stream: ``(N,)`` token ids of the analysed split (``settings.max_tokens`` is applied here).
        counting_streams: stream(s) whose word counts define the frequency bins.
        analyses: names of registered analyses (:data:`.registry.ANALYSIS_REGISTRY`, which holds
            :data:`ANALYSES`; a list or a comma-separated string; default all). They run in the
            registry's order.
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
        ValueError: a bad setting or analysis name; a model of an architecture no adapter reads (the
            message names the supported ones); a report in ``output_dir`` made with another
            checkpoint, corpus or settings (without ``restart``).
    """
    settings = settings or AnalysisSettings()
    settings.validate()
    names = _check_analyses(analyses)
    from .architectures.registry import adapter_for

    architecture = adapter_for(model)  # refuses an architecture no adapter reads, naming those that do
    num_layers = architecture.num_layers
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
        "model": architecture.summary(),
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
    context = AnalysisContext(
        model,
        tokenizer,
        stream,
        counting,
        settings,
        estimated_timescales_for_mi="timescales" in names or "timescales" in report["analyses"],
    )
    context.architecture = architecture
    if folder is not None:
        write_report(report, folder)
    bar = None
    if progress and todo:
        from mtlstm_hf.progress import progress as make_bar

        estimates = {
            name: 0.0 if architecture.not_applicable(name) else _estimated_seconds(context, name) for name in todo
        }
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
            reason = architecture.not_applicable(name)
            try:
                if reason is not None:
                    raise ValueError(reason)
                with float32_precision("highest"):  # never TensorFloat-32, whatever a caller set
                    result, drawings = ANALYSIS_REGISTRY[name].runner()(context)
            except ValueError as error:  # the analysis does not apply to this model/data: record why
                report["skipped"][name] = str(error)
            else:
                report["analyses"][name] = result
                if draw and folder is not None:
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
        checkpoint: a folder with model and tokenizer (``save_pretrained``), a Hub model id
            (``owner/name``, downloaded: :func:`.architectures.loading.local_folder`), or a loaded
            ``(model, tokenizer)`` pair. The model is an MTLSTM or a transformers causal LM of an
            architecture an adapter reads (:mod:`.architectures`; loaded with its own tokenizer by
            :func:`.architectures.loading.load_recurrent_checkpoint`).
        data: anything :func:`mtlstm_hf.data.load_corpus` accepts (folder, Hub id, DatasetDict);
            None: the corpus the checkpoint was trained on
            (:func:`mtlstm_hf.training.checkpoint.recorded_corpus`).
        output_dir: where to write ``report.json`` and ``figures/`` (None: return only).
        split: the analysed split (``"valid"``/``"validation"``, ``"test"``, ``"train"``).
        analyses, settings, figures, progress, restart: see :func:`run_analyses`.
        data_config: Hub dataset configuration. device: device for a loaded checkpoint.

    Raises:
        FileNotFoundError: no checkpoint or corpus there.
        OSError: a Hub id that cannot be downloaded.
        ValueError: a bad setting, checkpoint or corpus; an architecture no adapter reads (the
            message names the supported ones); no ``data`` and no record of the training corpus; a
            report of other settings in ``output_dir``.
    """
    from mtlstm_hf.evaluation.checkpoint import (
        counting_corpus,
        describe_data,
        evaluation_corpus,
        resolve_checkpoint,
        split_streams,
    )
    from mtlstm_hf.files import corpus_to_use

    from .architectures.loading import load_recurrent_checkpoint, local_folder

    settings = settings or AnalysisSettings()
    settings.validate()
    names = _check_analyses(analyses)  # fail on a typo before loading anything
    folder = None if isinstance(checkpoint, tuple) else local_folder(checkpoint)  # a Hub id is downloaded
    # The folder as given when it is one (the report names it so), else the downloaded snapshot.
    source: Any = checkpoint if folder is None or Path(checkpoint).expanduser().is_dir() else folder  # type: ignore[arg-type]
    if data is None:
        if folder is None:
            raise ValueError("data is needed with a loaded (model, tokenizer) pair: no training record to read.")
        data, data_config, _ = corpus_to_use(data, data_config, source)
    loaded = None if folder is None else load_recurrent_checkpoint(folder, device)  # None: an MTLSTM folder
    if loaded is None:
        model, tokenizer, checkpoint_path = resolve_checkpoint(source, device)
    else:
        (model, tokenizer), checkpoint_path = loaded, str(checkpoint)
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
