"""One ``mtlstm-reproduce`` run from its settings: check every input before anything is trained or
written (:func:`prepare`), then train, analyse and write ``report.json``, ``REPORT.md`` and the
figures (:func:`run`).

Checks, each a one-line error: the experiment and scale exist; ``--recipe`` is given for language
models only; ``--device`` exists on this machine; the language-model corpus is in ``--data``
(where it comes from is said otherwise) and is UTF-8 text; the seeds are distinct integers in
``[0, 2**32)``; the output folder is a writable folder and holds no runs of another configuration
(what defines the runs is recorded in ``reproduce_config.json``: the experiment, scale, recipe,
sizes and the data's SHA-256; seeds are not part of it, so seeds can be added).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import exit_codes
from ..command_line import apply_threads, check_seed, check_threads
from . import output
from .corpora import SMOKE_CORPUS_DIRNAME, corpus_digests, locate_corpus, matches_reference, write_smoke_corpus
from .scales import DEFAULT_RECIPE, RECIPES, check_experiment, check_scale, dyck_scale, lm_scale
from .settings import ReproduceSettings

LM_CONFIG_KEYS: tuple[str, ...] = (
    "model_overrides", "epochs", "batch_size", "bptt", "eval_batch_size", "n_resamples", "chunk_size", "presets",
    "reference_presets", "generated_corpus",
)  # fmt: skip
"""The scale settings that define language-model runs (recorded; the descriptions are not)."""


@dataclass
class Prepared:
    """A checked run: everything :func:`run` needs."""

    experiment: str
    settings: ReproduceSettings
    scale: dict[str, Any]
    seeds: list[int]
    configuration: dict[str, Any]
    output_dir: Path
    corpus_dir: Path | None
    standard_corpus: bool
    data_description: str
    continuing: bool
    command: str
    notes: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)


def check_seeds(seeds: Sequence[Any]) -> list[int]:
    """``seeds`` as a list of distinct seeds (:func:`~mtlstm_hf.command_line.check_seed`: integers
    in ``[0, 2**32)``).

    Raises:
        ValueError: naming ``--seeds``: no seed, a repeated one, or one that is not such an integer.
    """
    values = list(seeds)
    if not values or len(set(values)) != len(values):
        raise ValueError(f"--seeds must be distinct integers from 0 to 2**32 - 1 (at least one), got {values!r}.")
    for seed in values:
        check_seed(seed, "each of --seeds")
    return values


def _with_recipe(experiment: str, settings: ReproduceSettings) -> ReproduceSettings:
    """``settings`` with the recipe of a language-model experiment filled in (``library`` when not
    given); dyck2 has one setup, so a recipe given for it is refused rather than ignored.

    Raises:
        ValueError: naming ``--recipe``: an unknown recipe, or any recipe for dyck2.
    """
    if experiment == "dyck2":
        if settings.recipe is not None:
            raise ValueError(
                f"--recipe {settings.recipe} applies to the language-model experiments (lm-ptb, lm-wikitext2); "
                "dyck2 has one setup (the paper's section 5): leave --recipe out."
            )
        return settings
    if settings.recipe is None:
        return dataclasses.replace(settings, recipe=DEFAULT_RECIPE)
    if settings.recipe not in RECIPES:
        raise ValueError(f"--recipe must be one of {', '.join(RECIPES)}, got {settings.recipe!r}.")
    return settings


def prepare(experiment: str, settings: ReproduceSettings, command: str = "", arguments: Sequence[str] = ()) -> Prepared:
    """Check the inputs and work out the configuration; reads only.

    Raises:
        ValueError: unknown experiment, scale or recipe (or a recipe for dyck2); bad seeds; a
            device name torch does not know; a corpus file that is not UTF-8 text; an output folder
            of another configuration (:class:`~.output.ConfigurationMismatch`).
        UnavailableDeviceError: ``--device`` names a device this machine lacks (exit code 3).
        FileNotFoundError: the corpus is not in ``--data``.
        OSError: the output folder cannot be written.
    """
    check_experiment(experiment)
    check_scale(settings.scale)
    settings = _with_recipe(experiment, settings)
    check_threads(settings.threads)
    if isinstance(settings.processes, bool) or not isinstance(settings.processes, int) or settings.processes < 1:
        raise ValueError(f"--processes must be an integer >= 1, got {settings.processes!r}.")
    if settings.processes > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            f"--processes {settings.processes} under torchrun / accelerate launch (WORLD_SIZE="
            f"{os.environ['WORLD_SIZE']}): choose one, a launcher for data parallelism within each run, or "
            "--processes for one run per process."
        )
    if experiment == "dyck2" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            f"dyck2 under torchrun / accelerate launch (WORLD_SIZE={os.environ['WORLD_SIZE']}): its runs are not "
            "data-parallel; use one process with --processes N for N runs at once."
        )
    if settings.device is not None:
        from ..devices import resolve_device

        resolve_device(settings.device)  # a device this machine lacks: exit 3 before anything is trained
    output_dir = Path(settings.output_dir).expanduser()
    notes: list[str] = []
    corpus_dir: Path | None = None
    standard = False
    if experiment == "dyck2":
        scale = dyck_scale(settings.scale)
        configuration: dict[str, Any] = {
            "experiment": experiment,
            "scale": settings.scale,
            "dyck_settings": scale["settings"],
        }
        description = (
            "Dyck-2 words generated from the paper's grammar (mtlstm_hf.data.dyck.generate_dyck2, data seed 0)"
        )
        if settings.data is not None:
            notes.append("--data is not used by dyck2 (it generates its data)")
        standard = True
    else:
        scale = lm_scale(experiment, settings.scale)
        configuration = {
            "experiment": experiment, "scale": settings.scale, "recipe": settings.recipe,
            "scale_settings": {key: scale[key] for key in LM_CONFIG_KEYS},
        }  # fmt: skip
        if scale["generated_corpus"]:
            corpus_dir = output_dir / SMOKE_CORPUS_DIRNAME
            configuration["data"] = {
                "corpus": "generated",
                "generator": "mtlstm_hf.reproduce.corpora.write_smoke_corpus(seed=0)",
            }
            description = f"a generated corpus ({corpus_dir}), not {scale['corpus']}"
            if settings.data is not None:
                notes.append("--data is not used at the smoke scale (it generates its corpus)")
        else:
            corpus_dir = locate_corpus(settings.data, scale["corpus"])
            digests = corpus_digests(corpus_dir)
            standard = matches_reference(digests, scale["corpus"])
            configuration["data"] = {"corpus": scale["corpus"], "files": digests}
            description = f"{scale['corpus']} in {corpus_dir} (" + (
                "the standard files, SHA-256 checked)"
                if standard
                else "NOT the standard files: SHA-256 differs, reported values are not comparable)"
            )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and experiment != "dyck2":
        batches = {name: scale[name] for name in ("batch_size", "eval_batch_size")}
        if any(value % world for value in batches.values()):
            valid = [
                n for n in range(1, max(batches.values()) + 1) if all(value % n == 0 for value in batches.values())
            ]
            raise ValueError(
                f"{world} processes (torchrun / accelerate launch) split each run's rows, so they must divide the "
                f"batch ({batches['batch_size']}) and the evaluation batch ({batches['eval_batch_size']}) of "
                f"{experiment} at scale {settings.scale}: use {', '.join(map(str, valid))} processes, or one process "
                "with --processes N for N runs at once."
            )
    seeds = check_seeds(settings.seeds if settings.seeds is not None else scale["seeds"])
    exit_codes.check_output_dir(output_dir, "--output-dir")
    continuing = output.check_configuration(output_dir, configuration)
    return Prepared(
        experiment=experiment, settings=settings, scale=scale, seeds=seeds, configuration=configuration,
        output_dir=output_dir, corpus_dir=corpus_dir, standard_corpus=standard, data_description=description,
        continuing=continuing, command=command, notes=notes, arguments=list(arguments),
    )  # fmt: skip


def _format_seconds(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def _finish(prepared: Prepared, report: dict[str, Any], log: Callable[[str], None]) -> None:
    """Summary, claims, figures and REPORT.md from the report; then save it."""
    from .claims import dyck_claims, lm_claims
    from .figures import draw_dyck_figures, draw_lm_figures
    from .markdown import render_report
    from .summary import dyck_summary, lm_summary

    report.update(
        command=prepared.command, scale_settings=prepared.scale, data_description=prepared.data_description,
        standard_corpus=prepared.standard_corpus,
    )  # fmt: skip
    if prepared.experiment == "dyck2":
        from .dyck import PAPER_ACCURACY

        runs = [run for arm_runs in report["runs"].values() for run in arm_runs.values()]
        report["summary"] = output.jsonable(dyck_summary(runs, report["span_edges"]))
        report["claims"] = dyck_claims(prepared.settings.scale, report["summary"], PAPER_ACCURACY)
        drawn, skipped = draw_dyck_figures(report, prepared.output_dir / output.FIGURES_DIRNAME)
    else:
        report["summary"] = output.jsonable(lm_summary(report))
        report["claims"] = lm_claims(
            prepared.experiment, prepared.settings.scale, report["summary"], prepared.standard_corpus
        )
        drawn, skipped = draw_lm_figures(report, prepared.output_dir / output.FIGURES_DIRNAME)
    report["figures"], report["figures_skipped"] = drawn, skipped
    output.save_report(prepared.output_dir, report)
    from ..files import write_text_atomic

    write_text_atomic(prepared.output_dir / output.MARKDOWN_FILENAME, render_report(output.jsonable(report)))
    if skipped:
        log(f"figures skipped: {skipped}")


def run(prepared: Prepared, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and analyse as prepared; returns the final report (also in ``report.json``).

    With ``--processes N`` the work goes to N worker processes phase by phase (:mod:`.workers`)
    and this process merges their results; a worker (``MTLSTM_REPRODUCE_WORKER`` set) does its
    share and returns what it sees (it writes no report).

    Raises:
        mtlstm_hf.reproduce.lm.RunInterrupted: a training run was stopped by a signal.
        WorkerFailed: a worker process failed (its exit code is the command's).
    """
    from .lm import is_main_process
    from .workers import PHASES, run_phase, share_from_environment, visible_gpus

    started = time.perf_counter()
    share = share_from_environment()
    prepared = _on_this_process_device(prepared, share)
    for note in prepared.notes if not share.is_worker else ():
        log(f"note: {note}")
    threads = prepared.settings.threads if prepared.settings.threads is not None else prepared.scale.get("threads")
    if threads is not None:
        apply_threads(threads)
        if not share.is_worker:
            log(f"torch threads: {threads}" + (" per process" if prepared.settings.processes > 1 else ""))
    main = is_main_process() and not share.is_worker
    if main:
        prepared.output_dir.mkdir(parents=True, exist_ok=True)
        output.record_configuration(prepared.output_dir, prepared.configuration)
        log(
            f"{prepared.experiment} at scale {prepared.settings.scale}, seeds {prepared.seeds}, into {prepared.output_dir}"
            + (" (continuing)" if prepared.continuing else "")
        )
        if prepared.scale.get("generated_corpus") and prepared.corpus_dir is not None:
            write_smoke_corpus(prepared.corpus_dir)  # before any worker reads it
    if prepared.settings.scale == "paper" and not share.is_worker:
        # Every process of a torchrun start measures (the probe trains data-parallel); the main one says it.
        _log_expected_time(prepared, log if main else (lambda message: None))
    if prepared.settings.processes > 1 and not share.is_worker:
        phases = PHASES[:1] if prepared.experiment == "dyck2" else PHASES
        for phase in phases:
            code = run_phase(
                phase, prepared.settings.processes, prepared.arguments, log, visible_gpus(prepared.settings.device)
            )
            if code != 0:
                raise WorkerFailed(code, phase)
        report = _collect(prepared)
    else:
        finish = (lambda report: _finish(prepared, report, log)) if main else None
        report = _run_here(prepared, log, finish, share)
    if main:
        report["seconds"] = report.get("seconds", 0.0) + (time.perf_counter() - started)
        _finish(prepared, report, log)
        log(
            f"report: {prepared.output_dir / output.MARKDOWN_FILENAME} ({_format_seconds(time.perf_counter() - started)})"
        )
    return report


def _on_this_process_device(prepared: Prepared, share: Any) -> Prepared:
    """``prepared`` with the device this process uses: a worker given one GPU (``--device cuda:N``
    pinned it with ``CUDA_VISIBLE_DEVICES``) sees it as ``cuda``; a single process given ``cuda:N``
    makes it the current device, so that training (accelerate's ``cuda``) runs there too."""
    import dataclasses

    device = prepared.settings.device
    if device is None or not device.startswith("cuda:"):
        return prepared
    if share.is_worker:
        return dataclasses.replace(prepared, settings=dataclasses.replace(prepared.settings, device="cuda"))
    import torch

    torch.cuda.set_device(torch.device(device))
    return prepared


class WorkerFailed(RuntimeError):
    """A worker process of ``--processes`` failed; ``exit_code`` is its exit code (what it printed
    came before, prefixed with its number)."""

    def __init__(self, exit_code: int, phase: str) -> None:
        super().__init__(
            f"a worker process of the {phase} phase failed (exit code {exit_code}, its message above); "
            "finished runs and stages are kept: rerun the same command to continue"
        )
        self.exit_code = exit_code


def _plan(prepared: Prepared, log: Callable[[str], None]) -> Any:
    from .lm import LMPlan

    return LMPlan(
        experiment=prepared.experiment, scale=prepared.settings.scale, recipe=prepared.settings.recipe,
        settings=prepared.scale, seeds=prepared.seeds, corpus_dir=prepared.corpus_dir,
        output_dir=prepared.output_dir, progress=prepared.settings.progress_bar, device=prepared.settings.device,
        log=log,
    )  # fmt: skip


def _run_here(prepared: Prepared, log: Callable[[str], None], finish: Any, share: Any) -> dict[str, Any]:
    """This process's part of the work (everything, or a worker's share)."""
    if prepared.experiment == "dyck2":
        from .dyck_runs import run_dyck

        return run_dyck(
            prepared.output_dir, prepared.scale["settings"], prepared.seeds, prepared.configuration, log, finish,
            share, prepared.settings.device,
        )  # fmt: skip
    from .lm import run_lm_experiment

    return run_lm_experiment(_plan(prepared, log), prepared.configuration, finish, share)


def _collect(prepared: Prepared) -> dict[str, Any]:
    """The report merged from what the workers left in the output folder."""
    if prepared.experiment == "dyck2":
        from .dyck_runs import collect_dyck_report

        return collect_dyck_report(
            prepared.output_dir, prepared.scale["settings"], prepared.seeds, prepared.configuration
        )
    from .lm import collect_report

    return collect_report(_plan(prepared, print), prepared.configuration)


def _log_expected_time(prepared: Prepared, log: Callable[[str], None]) -> None:
    """At the paper scale, the training time still to come, from a few steps measured now."""
    processes = prepared.settings.processes
    per = f", {processes} at a time" if processes > 1 else ""
    if prepared.experiment == "dyck2":
        from .dyck import dyck_data
        from .dyck_runs import dyck_settings, expected_dyck_seconds

        settings = dyck_settings(prepared.scale["settings"])
        data = dyck_data(settings)
        left = sum(output.finished_run(output.run_dir(prepared.output_dir, arm, seed)) is None
                   for arm in ("baseline", "multi_timescale") for seed in prepared.seeds)  # fmt: skip
        estimate = expected_dyck_seconds(settings, data, left, device=prepared.settings.device)
        log(
            f"expected training time: {_format_seconds(estimate['seconds'] / processes)} at most ({left} runs{per} x "
            f"{settings.epochs} epochs x {estimate['steps_per_epoch']} steps at {estimate['seconds_per_step']:.3f} s/step, "
            "measured now; runs stop earlier once the validation loss is below the threshold)"
        )
        return
    from .lm import expected_training_seconds

    estimate = expected_training_seconds(_plan(prepared, log))
    log(
        f"expected training time: {_format_seconds(estimate['seconds'] / processes)} ({estimate['runs_left']} runs{per} x "
        f"{prepared.scale['epochs']} epochs x {estimate['tokens_per_epoch']:,} tokens at "
        f"{estimate['tokens_per_second']:,.0f} tokens/s, measured now over a few steps; validation and the "
        "analyses come on top)"
    )


def log_to_stderr(message: str) -> None:
    print(f"mtlstm-reproduce: {message}", file=sys.stderr, flush=True)


__all__ = ["LM_CONFIG_KEYS", "Prepared", "WorkerFailed", "check_seeds", "log_to_stderr", "prepare", "run"]
