"""The experiments of ``mtlstm-reproduce`` as objects, and their registry :data:`EXPERIMENTS`.

Each experiment is one :class:`Experiment`: what its scales are, which inputs it reads and how
they define its runs (:meth:`~Experiment.inputs`), how its runs are trained and analysed into an
output folder (:meth:`~Experiment.run`, :meth:`~Experiment.collect`), and what it makes of the
report (:meth:`~Experiment.summarise`, :meth:`~Experiment.claims`, :meth:`~Experiment.draw_figures`,
:meth:`~Experiment.tables`, :meth:`~Experiment.expected_time`). :mod:`.cli` and :mod:`.experiment`
look the experiment up once by its name and call these; nothing else asks which experiment it is.

- :class:`LanguageModelExperiment`: ``lm-ptb`` and ``lm-wikitext2`` (:mod:`.lm`), one object
  each, their corpus and presets in :data:`.scales.LM_EXPERIMENTS`;
- :class:`Dyck2Experiment`: ``dyck2`` (:mod:`.dyck`, :mod:`.dyck_runs`);
- :class:`PriorSweepExperiment`: ``prior-sweep`` (:mod:`.prior_sweep`), the baseline and one model per
  timescale prior with lm-ptb's recipe and scales.

A new experiment is a subclass (its training and analyses in a module of its own), its scales
in :mod:`.scales`, its claims in :mod:`.claims` and one entry in :data:`EXPERIMENTS`.

Imports no torch (``mtlstm-reproduce --help`` lists the names from here); what an experiment
needs to train is imported when it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import output
from .claims import dyck_claims, lm_claims
from .corpora import SMOKE_CORPUS_DIRNAME, corpus_digests, locate_corpus, matches_reference
from .markdown import dyck_tables, lm_tables, prior_sweep_tables
from .scales import ARMS, DEFAULT_RECIPE, LM_EXPERIMENTS, RECIPES, dyck_scale, lm_scale
from .settings import ReproduceSettings
from .workers import PHASES

LM_CONFIG_KEYS: tuple[str, ...] = (
    "model_overrides", "epochs", "batch_size", "bptt", "eval_batch_size", "n_resamples", "chunk_size", "presets",
    "reference_presets", "generated_corpus",
)  # fmt: skip
"""The scale settings that define language-model runs (recorded; the descriptions are not)."""

Log = Callable[[str], None]


@dataclass
class Inputs:
    """What :meth:`Experiment.inputs` finds: the configuration that defines the runs (recorded in
    ``reproduce_config.json``), the corpus folder (``None``: generated data), whether it is the
    standard copy, how the data are described in the report, and notes for the log."""

    configuration: dict[str, Any]
    corpus_dir: Path | None = None
    standard_corpus: bool = True
    data_description: str = ""
    notes: list[str] = field(default_factory=list)


def format_seconds(seconds: float) -> str:
    """``1 h 05 min`` or ``3 min 07 s``."""
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


class Experiment:
    """One experiment of ``mtlstm-reproduce`` (subclasses implement every method).

    Attributes:
        name: the command's positional argument.
        phases: the phases of ``--processes`` (:data:`.workers.PHASES`) it has.
        data_parallel: whether a ``torchrun`` start may split each run's rows.
        states_claims: whether it checks claims of the paper (``REPORT.md``'s claims section).
    """

    name: str
    phases: tuple[str, ...] = PHASES
    data_parallel: bool = True
    states_claims: bool = True

    def check_settings(self, settings: ReproduceSettings) -> ReproduceSettings:
        """``settings`` with this experiment's defaults filled in; ``ValueError`` for a setting it refuses."""
        raise NotImplementedError

    def scale(self, scale: str) -> dict[str, Any]:
        """The sizes of this experiment at ``scale`` (:mod:`.scales`, a copy)."""
        raise NotImplementedError

    def inputs(self, settings: ReproduceSettings, scale: dict[str, Any], output_dir: Path) -> Inputs:
        """Check the inputs (reads only) and say what defines the runs."""
        raise NotImplementedError

    def check_processes(self, world: int, scale: dict[str, Any], settings: ReproduceSettings) -> None:
        """``ValueError`` when ``world`` processes of a ``torchrun`` start cannot share its runs."""

    def run(self, prepared: Any, log: Log, finish: Callable[[dict[str, Any]], None] | None, share: Any) -> dict:
        """Train and analyse this process's share (everything, or a worker's); the report."""
        raise NotImplementedError

    def collect(self, prepared: Any) -> dict[str, Any]:
        """The report merged from what the workers left in the output folder."""
        raise NotImplementedError

    def summarise(self, report: Mapping[str, Any]) -> dict[str, Any]:
        """The numbers over seeds (:mod:`.summary`)."""
        raise NotImplementedError

    def claims(self, prepared: Any, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The paper's claims with our numbers and verdicts (:mod:`.claims`)."""
        raise NotImplementedError

    def draw_figures(self, report: Mapping[str, Any], folder: Path) -> tuple[list[str], str | None]:
        """The figures into ``folder``: ``(file names, reason none were drawn or None)`` (:mod:`.figures`)."""
        raise NotImplementedError

    def tables(self, report: Mapping[str, Any]) -> list[str]:
        """The Markdown lines of its tables in ``REPORT.md`` (:mod:`.markdown`)."""
        raise NotImplementedError

    def expected_time(self, prepared: Any) -> str:
        """The training time still to come, measured now over a few steps (a log line)."""
        raise NotImplementedError


class LanguageModelExperiment(Experiment):
    """``lm-ptb`` / ``lm-wikitext2``: baseline vs multi-timescale language model (:mod:`.lm`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def check_settings(self, settings: ReproduceSettings) -> ReproduceSettings:
        """The recipe: ``library`` when not given, else one of :data:`.scales.RECIPES`."""
        if settings.recipe is None:
            return dataclasses.replace(settings, recipe=DEFAULT_RECIPE)
        if settings.recipe not in RECIPES:
            raise ValueError(f"--recipe must be one of {', '.join(RECIPES)}, got {settings.recipe!r}.")
        return settings

    def scale(self, scale: str) -> dict[str, Any]:
        return lm_scale(self.name, scale)

    def inputs(self, settings: ReproduceSettings, scale: dict[str, Any], output_dir: Path) -> Inputs:
        configuration = {
            "experiment": self.name, "scale": settings.scale, "recipe": settings.recipe,
            "scale_settings": {key: scale[key] for key in LM_CONFIG_KEYS},
        }  # fmt: skip
        if scale["generated_corpus"]:
            corpus_dir = output_dir / SMOKE_CORPUS_DIRNAME
            configuration["data"] = {
                "corpus": "generated",
                "generator": "mtlstm_hf.reproduce.corpora.write_smoke_corpus(seed=0)",
            }
            notes = []
            if settings.data is not None:
                notes.append("--data is not used at the smoke scale (it generates its corpus)")
            return Inputs(configuration, corpus_dir, False, f"a generated corpus ({corpus_dir}), not {scale['corpus']}",
                          notes)  # fmt: skip
        corpus_dir = locate_corpus(settings.data, scale["corpus"])
        digests = corpus_digests(corpus_dir)
        standard = matches_reference(digests, scale["corpus"])
        configuration["data"] = {"corpus": scale["corpus"], "files": digests}
        description = f"{scale['corpus']} in {corpus_dir} (" + (
            "the standard files, SHA-256 checked)"
            if standard
            else "NOT the standard files: SHA-256 differs, reported values are not comparable)"
        )
        return Inputs(configuration, corpus_dir, standard, description)

    def check_processes(self, world: int, scale: dict[str, Any], settings: ReproduceSettings) -> None:
        """The processes must divide the training and the evaluation batch (each run's rows are split)."""
        batches = {name: scale[name] for name in ("batch_size", "eval_batch_size")}
        if any(value % world for value in batches.values()):
            valid = [
                n for n in range(1, max(batches.values()) + 1) if all(value % n == 0 for value in batches.values())
            ]
            raise ValueError(
                f"{world} processes (torchrun / accelerate launch) split each run's rows, so they must divide the "
                f"batch ({batches['batch_size']}) and the evaluation batch ({batches['eval_batch_size']}) of "
                f"{self.name} at scale {settings.scale}: use {', '.join(map(str, valid))} processes, or one process "
                "with --processes N for N runs at once."
            )

    def plan(self, prepared: Any, log: Log, **arms: Any) -> Any:
        """The :class:`.lm.LMPlan` of a prepared run (``arms``: its ``arms``, ``arm_overrides``, ``stages``)."""
        from .lm import LMPlan

        return LMPlan(
            experiment=self.name, scale=prepared.settings.scale, recipe=prepared.settings.recipe,
            settings=prepared.scale, seeds=prepared.seeds, corpus_dir=prepared.corpus_dir,
            output_dir=prepared.output_dir, progress=prepared.settings.progress_bar, device=prepared.settings.device,
            log=log, **arms,
        )  # fmt: skip

    def run(self, prepared: Any, log: Log, finish: Callable[[dict[str, Any]], None] | None, share: Any) -> dict:
        from .lm import run_lm_experiment

        return run_lm_experiment(self.plan(prepared, log), prepared.configuration, finish, share)

    def collect(self, prepared: Any) -> dict[str, Any]:
        from .lm import collect_report

        return collect_report(self.plan(prepared, print), prepared.configuration)

    def summarise(self, report: Mapping[str, Any]) -> dict[str, Any]:
        from .summary import lm_summary

        return lm_summary(report)

    def claims(self, prepared: Any, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
        return lm_claims(self.name, prepared.settings.scale, summary, prepared.standard_corpus)

    def draw_figures(self, report: Mapping[str, Any], folder: Path) -> tuple[list[str], str | None]:
        from .figures import draw_lm_figures

        return draw_lm_figures(report, folder)

    def tables(self, report: Mapping[str, Any]) -> list[str]:
        return lm_tables(report)

    def expected_time(self, prepared: Any) -> str:
        from .lm import expected_training_seconds

        processes = prepared.settings.processes
        per = f", {processes} at a time" if processes > 1 else ""
        estimate = expected_training_seconds(self.plan(prepared, print))
        return (
            f"expected training time: {format_seconds(estimate['seconds'] / processes)} ({estimate['runs_left']} runs{per} x "
            f"{prepared.scale['epochs']} epochs x {estimate['tokens_per_epoch']:,} tokens at "
            f"{estimate['tokens_per_second']:,.0f} tokens/s, measured now over a few steps; validation and the "
            "analyses come on top)"
        )


class Dyck2Experiment(Experiment):
    """``dyck2``: the Dyck-2 task of section 5 (:mod:`.dyck`), trained seed by seed into the output
    folder (:mod:`.dyck_runs`); one setup (no recipe), no analysis phase, not data-parallel."""

    name = "dyck2"
    phases = PHASES[:1]
    data_parallel = False

    def check_settings(self, settings: ReproduceSettings) -> ReproduceSettings:
        """dyck2 has one setup, so a recipe given for it is refused rather than ignored."""
        if settings.recipe is not None:
            raise ValueError(
                f"--recipe {settings.recipe} applies to the language-model experiments (lm-ptb, lm-wikitext2); "
                "dyck2 has one setup (the paper's section 5): leave --recipe out."
            )
        return settings

    def scale(self, scale: str) -> dict[str, Any]:
        return dyck_scale(scale)

    def inputs(self, settings: ReproduceSettings, scale: dict[str, Any], output_dir: Path) -> Inputs:
        configuration = {"experiment": self.name, "scale": settings.scale, "dyck_settings": scale["settings"]}
        description = (
            "Dyck-2 words generated from the paper's grammar (mtlstm_hf.data.dyck.generate_dyck2, data seed 0)"
        )
        notes = ["--data is not used by dyck2 (it generates its data)"] if settings.data is not None else []
        return Inputs(configuration, None, True, description, notes)

    def run(self, prepared: Any, log: Log, finish: Callable[[dict[str, Any]], None] | None, share: Any) -> dict:
        from .dyck_runs import run_dyck

        return run_dyck(
            prepared.output_dir, prepared.scale["settings"], prepared.seeds, prepared.configuration, log, finish,
            share, prepared.settings.device,
        )  # fmt: skip

    def collect(self, prepared: Any) -> dict[str, Any]:
        from .dyck_runs import collect_dyck_report

        return collect_dyck_report(
            prepared.output_dir, prepared.scale["settings"], prepared.seeds, prepared.configuration
        )

    def summarise(self, report: Mapping[str, Any]) -> dict[str, Any]:
        from .summary import dyck_summary

        runs = [run for arm_runs in report["runs"].values() for run in arm_runs.values()]
        return dyck_summary(runs, report["span_edges"])

    def claims(self, prepared: Any, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
        from .dyck import PAPER_ACCURACY

        return dyck_claims(prepared.settings.scale, summary, PAPER_ACCURACY)

    def draw_figures(self, report: Mapping[str, Any], folder: Path) -> tuple[list[str], str | None]:
        from .figures import draw_dyck_figures

        return draw_dyck_figures(report, folder)

    def tables(self, report: Mapping[str, Any]) -> list[str]:
        return dyck_tables(report)

    def expected_time(self, prepared: Any) -> str:
        from .dyck import dyck_data
        from .dyck_runs import dyck_settings, expected_dyck_seconds

        processes = prepared.settings.processes
        per = f", {processes} at a time" if processes > 1 else ""
        settings = dyck_settings(prepared.scale["settings"])
        left = sum(output.finished_run(output.run_dir(prepared.output_dir, arm, seed)) is None
                   for arm in ARMS for seed in prepared.seeds)  # fmt: skip
        estimate = expected_dyck_seconds(settings, dyck_data(settings), left, device=prepared.settings.device)
        return (
            f"expected training time: {format_seconds(estimate['seconds'] / processes)} at most ({left} runs{per} x "
            f"{settings.epochs} epochs x {estimate['steps_per_epoch']} steps at {estimate['seconds_per_step']:.3f} s/step, "
            "measured now; runs stop earlier once the validation loss is below the threshold)"
        )


class PriorSweepExperiment(LanguageModelExperiment):
    """``prior-sweep``: the baseline and one multi-timescale model per timescale prior, lm-ptb's recipe
    and scales (:mod:`.prior_sweep`); the library recipe only, no claim of the paper."""

    states_claims = False

    def __init__(self) -> None:
        super().__init__("prior-sweep")

    def check_settings(self, settings: ReproduceSettings) -> ReproduceSettings:
        """The library recipe only (the reference recipe is the paper's two models)."""
        if settings.recipe not in (None, DEFAULT_RECIPE):
            raise ValueError(
                f"--recipe {settings.recipe} applies to lm-ptb and lm-wikitext2; prior-sweep trains every prior with "
                f"the library recipe: leave --recipe out (or give {DEFAULT_RECIPE})."
            )
        return dataclasses.replace(settings, recipe=DEFAULT_RECIPE)

    def scale(self, scale: str) -> dict[str, Any]:
        from .prior_sweep import sweep_scale

        return sweep_scale(scale)

    def inputs(self, settings: ReproduceSettings, scale: dict[str, Any], output_dir: Path) -> Inputs:
        """As lm-ptb's, recording every prior's schedule."""
        from .prior_sweep import arm_overrides, prior_layer_range

        found = super().inputs(settings, scale, output_dir)
        found.configuration["priors"] = arm_overrides(scale)
        found.configuration["prior_layer_units"] = prior_layer_range(scale)[2]
        return found

    def plan(self, prepared: Any, log: Log, **arms: Any) -> Any:
        from .prior_sweep import SWEEP_ARMS, SWEEP_STAGES, arm_overrides

        return super().plan(
            prepared, log, arms=SWEEP_ARMS, arm_overrides=arm_overrides(prepared.scale), stages=SWEEP_STAGES
        )

    def summarise(self, report: Mapping[str, Any]) -> dict[str, Any]:
        from .prior_sweep import PRIORS, realised_ranges
        from .summary import prior_sweep_summary

        summary = prior_sweep_summary(report, list(PRIORS))
        configuration = report.get("configuration", {})
        if "priors" in configuration:
            summary["schedules"] = realised_ranges(configuration["priors"], configuration["prior_layer_units"])
        return summary

    def claims(self, prepared: Any, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
        return []  # which prior is best is a question of this library's, not a claim of the paper

    def draw_figures(self, report: Mapping[str, Any], folder: Path) -> tuple[list[str], str | None]:
        from .figures import draw_prior_sweep_figures

        return draw_prior_sweep_figures(report, folder)

    def tables(self, report: Mapping[str, Any]) -> list[str]:
        return prior_sweep_tables(report)


EXPERIMENTS: dict[str, Experiment] = {
    experiment.name: experiment
    for experiment in (
        *(LanguageModelExperiment(name) for name in LM_EXPERIMENTS),
        Dyck2Experiment(),
        PriorSweepExperiment(),
    )
}
"""Every experiment of ``mtlstm-reproduce`` by name (the command's choices, in this order)."""


def experiment_named(name: str) -> Experiment:
    """The experiment called ``name``, else ``ValueError`` naming them."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}.")
    return EXPERIMENTS[name]


__all__ = [
    "EXPERIMENTS",
    "Dyck2Experiment",
    "Experiment",
    "Inputs",
    "LM_CONFIG_KEYS",
    "LanguageModelExperiment",
    "PriorSweepExperiment",
    "experiment_named",
    "format_seconds",
]
