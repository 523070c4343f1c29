"""The analyses ``mtlstm-analyze`` and :func:`~.report.run_analyses` know: one :class:`Analysis`
record each, in :data:`ANALYSIS_REGISTRY`, in the order they run. Plain Python, no torch.

An analysis is a module with two functions of an :class:`~.context.AnalysisContext` (the model,
the token streams, the settings; the built-in ones are in :mod:`.runs`)::

    def run(context) -> tuple[dict, dict[str, Callable[[], Figure]]]:
        ...  # its section of report.json (JSON-ready) and its figures: name -> function drawing it

    def estimated_seconds(context) -> float:
        ...  # a rough cost, only its proportion to the others' matters (the run-wide progress bar)

plus one registration: ``register_analysis(Analysis("name", settings_fields, "package.module"))``.
The record names the module (imported on the first run, so the command line's ``--help`` imports
no torch) or holds the two functions themselves. :func:`~.report.run_analyses` runs every
registered analysis selected, writes each section under ``report["analyses"][name]`` with its
figures, and resumes an interrupted run; an analysis that raises ``ValueError`` (it does not apply
to this model or data) is recorded under ``report["skipped"][name]`` with the message.

Settings: an analysis reads fields of :class:`~.settings.AnalysisSettings` and names them in
``settings_fields``. A run into an existing report folder is continued only when *every* setting
is the same (``report["settings"]``), so new settings are new fields of that dataclass (the
command line makes an option of each).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ANALYSIS_REGISTRY",
    "BUILTIN_ANALYSES",
    "Analysis",
    "register_analysis",
    "unregister_analysis",
]

Figures = dict[str, Callable[[], Any]]
"""An analysis's figures: name (the file ``figures/<name>.png``) -> function drawing it (called
only when figures are written)."""


@dataclass(frozen=True)
class Analysis:
    """One analysis: its name, the settings it reads, and where its two functions are.

    Attributes:
        name: the name in ``--analyses``, ``report["analyses"]`` and the messages (an identifier).
        settings_fields: the :class:`~.settings.AnalysisSettings` fields it reads (documentation of
            what its section depends on; a report is continued only when every setting matches).
        module: import path of the module defining ``run(context)`` and
            ``estimated_seconds(context)``, imported on first use. Or None, with ``run`` given.
        run: ``run(context) -> (section, figures)``, instead of the module's.
        estimated_seconds: ``estimated_seconds(context) -> float``, instead of the module's; with
            neither, the analysis costs only the fixed share every analysis gets.
    """

    name: str
    settings_fields: tuple[str, ...] = ()
    module: str | None = None
    run: Callable[[Any], tuple[dict[str, Any], Figures]] | None = None
    estimated_seconds: Callable[[Any], float] | None = None

    def runner(self) -> Callable[[Any], tuple[dict[str, Any], Figures]]:
        """The function computing this analysis's report section and figures."""
        if self.run is not None:
            return self.run
        if self.module is None:
            raise ValueError(f"analysis {self.name!r} has neither a run function nor a module")
        return importlib.import_module(self.module).run

    def cost(self, context: Any) -> float:
        """This analysis's own estimated seconds on ``context`` (0.0 when it gives no estimate)."""
        estimate = self.estimated_seconds
        if estimate is None and self.module is not None:
            estimate = getattr(importlib.import_module(self.module), "estimated_seconds", None)
        return 0.0 if estimate is None else float(estimate(context))


ANALYSIS_REGISTRY: dict[str, Analysis] = {}
"""Every registered analysis by name, in the order they run (the order of registration)."""


def register_analysis(analysis: Analysis) -> Analysis:
    """Add ``analysis`` after those registered; return it.

    Raises:
        TypeError: ``analysis`` is not an :class:`Analysis`.
        ValueError: the name is taken or is not an identifier, a settings field is no name, or
            the record has neither a module nor a ``run`` function.
    """
    if not isinstance(analysis, Analysis):
        raise TypeError(f"register_analysis takes an Analysis record, got {type(analysis).__name__}.")
    if not (isinstance(analysis.name, str) and analysis.name.isidentifier()):
        raise ValueError(f"an analysis name must be an identifier (e.g. my_analysis), got {analysis.name!r}.")
    if analysis.name in ANALYSIS_REGISTRY:
        raise ValueError(f"an analysis named {analysis.name!r} is already registered.")
    if isinstance(analysis.settings_fields, str) or not all(
        isinstance(name, str) and name.isidentifier() for name in analysis.settings_fields
    ):
        raise ValueError(
            f"settings_fields of {analysis.name!r} must be a tuple of AnalysisSettings field names, "
            f"got {analysis.settings_fields!r}."
        )
    if analysis.module is None and analysis.run is None:
        raise ValueError(f"the analysis {analysis.name!r} needs a module or a run function.")
    ANALYSIS_REGISTRY[analysis.name] = analysis
    return analysis


def unregister_analysis(name: str) -> Analysis:
    """Remove the analysis ``name`` (registered by :func:`register_analysis`); return its record.

    Raises:
        KeyError: no analysis of that name.
    """
    if name not in ANALYSIS_REGISTRY:
        raise KeyError(f"no analysis {name!r} is registered; registered: {', '.join(ANALYSIS_REGISTRY)}.")
    return ANALYSIS_REGISTRY.pop(name)


# The built-in analyses, in the order they run (timescales first: ablation and mutual information
# reuse its estimate). Each module is mtlstm_hf.analysis.runs.<name>.
for _name, _fields in (
    ("timescales", ("batch_size", "window", "families", "include_units")),
    (
        "ablation",
        (
            "batch_size",
            "window",
            "bin_edges",
            "ablation_layer",
            "chunk_size",
            "ablation_order",
            "word_classes",
            "other_label",
        ),
    ),
    ("state_gradients", ("batch_size", "bin_edges", "max_delay", "segment_length", "state_gradient_positions", "k")),
    ("weighted_sum", ("passage_start", "passage_length")),
    ("memory_span", ("batch_size", "window", "max_distance")),
    ("mutual_information", ("batch_size", "window", "mi_max_distance", "mi_num_distances", "mi_estimator")),
    ("context_swap", ("batch_size", "swap_context_length", "swap_segment_length", "swap_samples", "include_units")),
):
    register_analysis(Analysis(_name, _fields, f"{__package__}.runs.{_name}"))
del _name, _fields

BUILTIN_ANALYSES: tuple[str, ...] = tuple(ANALYSIS_REGISTRY)
"""The names of the analyses that come with the package, in the order they run
(``mtlstm_hf.analysis.settings.ANALYSES``)."""
