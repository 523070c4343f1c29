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
from ..files import write_text_atomic
from . import output
from .corpora import write_smoke_corpus
from .experiments import LM_CONFIG_KEYS, Experiment, experiment_named, format_seconds
from .markdown import render_report
from .scales import check_scale
from .settings import ReproduceSettings


@dataclass
class Prepared:
    """A checked run: everything :func:`run` needs (``definition``: the experiment called
    ``experiment``, :data:`.experiments.EXPERIMENTS`)."""

    experiment: str
    definition: Experiment
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
    definition = experiment_named(experiment)
    scale_name = check_scale(settings.scale)
    settings = definition.check_settings(settings)
    check_threads(settings.threads)
    if isinstance(settings.processes, bool) or not isinstance(settings.processes, int) or settings.processes < 1:
        raise ValueError(f"--processes must be an integer >= 1, got {settings.processes!r}.")
    if settings.processes > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            f"--processes {settings.processes} under torchrun / accelerate launch (WORLD_SIZE="
            f"{os.environ['WORLD_SIZE']}): choose one, a launcher for data parallelism within each run, or "
            "--processes for one run per process."
        )
    if not definition.data_parallel and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            f"{experiment} under torchrun / accelerate launch (WORLD_SIZE={os.environ['WORLD_SIZE']}): its runs are not "
            "data-parallel; use one process with --processes N for N runs at once."
        )
    if settings.device is not None:
        from ..devices import resolve_device

        resolve_device(settings.device)  # a device this machine lacks: exit 3 before anything is trained
    if settings.output_dir is None:  # (mtlstm-reproduce requires it; TypeError as Path(None) raised)
        raise TypeError("prepare needs settings.output_dir, the folder of the runs")
    output_dir = Path(settings.output_dir).expanduser()
    scale = definition.scale(scale_name)
    inputs = definition.inputs(settings, scale, output_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        definition.check_processes(world, scale, settings)
    seeds = check_seeds(settings.seeds if settings.seeds is not None else scale["seeds"])
    exit_codes.check_output_dir(output_dir, "--output-dir")
    continuing = output.check_configuration(output_dir, inputs.configuration)
    return Prepared(
        experiment=experiment, definition=definition, settings=settings, scale=scale, seeds=seeds,
        configuration=inputs.configuration, output_dir=output_dir, corpus_dir=inputs.corpus_dir,
        standard_corpus=inputs.standard_corpus, data_description=inputs.data_description, continuing=continuing,
        command=command, notes=inputs.notes, arguments=list(arguments),
    )  # fmt: skip


def _finish(prepared: Prepared, report: dict[str, Any], log: Callable[[str], None]) -> None:
    """Summary, claims, figures and REPORT.md from the report; then save it."""
    definition = prepared.definition
    report.update(
        command=prepared.command, scale_settings=prepared.scale, data_description=prepared.data_description,
        standard_corpus=prepared.standard_corpus,
    )  # fmt: skip
    report["summary"] = output.jsonable(definition.summarise(report))
    report["claims"] = definition.claims(prepared, report["summary"])
    drawn, skipped = definition.draw_figures(report, prepared.output_dir / output.FIGURES_DIRNAME)
    report["figures"], report["figures_skipped"] = drawn, skipped
    output.save_report(prepared.output_dir, report)
    final = output.jsonable(report)
    write_text_atomic(
        prepared.output_dir / output.MARKDOWN_FILENAME,
        render_report(final, definition.tables(final), definition.states_claims),
    )
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
    from .workers import run_phase, share_from_environment, visible_gpus

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
        for phase in prepared.definition.phases:
            code = run_phase(
                phase, prepared.settings.processes, prepared.arguments, log, visible_gpus(prepared.settings.device)
            )
            if code != 0:
                raise WorkerFailed(code, phase)
        report = prepared.definition.collect(prepared)
    else:
        finish = (lambda report: _finish(prepared, report, log)) if main else None
        report = prepared.definition.run(prepared, log, finish, share)  # this process's part of the work
    if main:
        report["seconds"] = report.get("seconds", 0.0) + (time.perf_counter() - started)
        _finish(prepared, report, log)
        log(
            f"report: {prepared.output_dir / output.MARKDOWN_FILENAME} ({format_seconds(time.perf_counter() - started)})"
        )
    return report


def _on_this_process_device(prepared: Prepared, share: Any) -> Prepared:
    """``prepared`` with the device this process uses: a worker given one GPU (``--device cuda:N``
    pinned it with ``CUDA_VISIBLE_DEVICES``) sees it as ``cuda``; a single process given ``cuda:N``
    makes it the current device, so that training (accelerate's ``cuda``) runs there too."""
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


def _log_expected_time(prepared: Prepared, log: Callable[[str], None]) -> None:
    """At the paper scale, the training time still to come, from a few steps measured now."""
    log(prepared.definition.expected_time(prepared))


def log_to_stderr(message: str) -> None:
    print(f"mtlstm-reproduce: {message}", file=sys.stderr, flush=True)


__all__ = ["LM_CONFIG_KEYS", "Prepared", "WorkerFailed", "check_seeds", "log_to_stderr", "prepare", "run"]
