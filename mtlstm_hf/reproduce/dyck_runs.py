"""The Dyck-2 experiment (:mod:`.dyck`) run seed by seed into an output folder, so that a stopped
``mtlstm-reproduce dyck2`` continues where it stopped.

Each (arm, seed) is one :func:`~mtlstm_hf.reproduce.dyck.run_dyck_seed` call; its summary goes to
``runs/<arm>-seed<seed>/run.json`` and its per-word predictions to ``predictions.npz``
(``correct``: per test word; ``bits``: the predicted bits of all test words concatenated,
``lengths``: the word lengths), then the completion record. A finished run is skipped. A run
stopped in the middle starts again from its first epoch (a run is minutes at the cpu scale; the
Dyck loop keeps no checkpoint). The data are generated once from the settings (deterministic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_path
from . import output
from .scales import ARMS
from .workers import EVERYTHING, Share

RUN_FILENAME = "run.json"
PREDICTIONS_FILENAME = "predictions.npz"


def dyck_settings(values: dict[str, Any]) -> Any:
    """:class:`~mtlstm_hf.reproduce.dyck.DyckSettings` from a scale's ``settings`` fields."""
    from .dyck import DyckSettings

    return DyckSettings(**values)


def load_run(folder: str | Path) -> dict[str, Any]:
    """The summary of a finished run (``run.json``).

    Raises:
        ValueError: it is missing although the run is recorded finished, or is not valid JSON
            (naming it; the remedy: train the run again).
    """
    summary = output.read_json(Path(folder) / RUN_FILENAME, output.redo_run_remedy(folder))
    if not isinstance(summary, dict):
        raise ValueError(
            f"{str(Path(folder) / RUN_FILENAME)!r} is missing or not a JSON object although the run is recorded "
            f"finished; {output.redo_run_remedy(folder)}."
        )
    return summary


def load_predictions(folder: str | Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(correct (N,) bool, per word (len, 2) bool predicted bits)`` of a finished run."""
    with np.load(Path(folder) / PREDICTIONS_FILENAME) as saved:
        correct, bits, lengths = saved["correct"], saved["bits"], saved["lengths"]
    return correct, np.split(bits, np.cumsum(lengths)[:-1]) if len(lengths) else []


def train_dyck_run(
    output_dir: str | Path,
    arm: str,
    seed: int,
    data: Any,
    settings: Any,
    log: Callable[[str], None] = print,
    device: str | None = None,
) -> dict[str, Any]:
    """Train and evaluate one (arm, seed) on ``device`` (default: CUDA when available), or return
    the summary of the finished run."""
    from .dyck import run_dyck_seed

    folder = output.run_dir(output_dir, arm, seed)
    if output.finished_run(folder) is not None:
        log(f"{arm} seed {seed}: finished before, skipped ({folder})")
        return load_run(folder)
    log(f"{arm} seed {seed}: training ({settings.epochs} epochs, {settings.hidden_size} units)")
    run = run_dyck_seed(arm, seed, data, settings, log, device)
    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(bits) for bits in run.predictions], dtype=np.int64)
    bits = np.concatenate(run.predictions).astype(bool) if run.predictions else np.zeros((0, 2), dtype=bool)
    with atomic_path(folder / PREDICTIONS_FILENAME) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, correct=run.correct, bits=bits, lengths=lengths)
    summary = run.summary()
    output.write_json(folder / RUN_FILENAME, summary)
    output.mark_finished(folder, {"arm": arm, "seed": seed, "accuracy": run.accuracy, "seconds": run.seconds})
    return output.jsonable(summary)


def run_dyck(
    output_dir: str | Path,
    settings_values: dict[str, Any],
    seeds: list[int],
    configuration: dict[str, Any],
    log: Callable[[str], None] = print,
    on_update: Callable[[dict[str, Any]], None] | None = None,
    share: Share = EVERYTHING,
    device: str | None = None,
) -> dict[str, Any]:
    """Every arm of every seed of ``share`` (seed by seed), ``report.json`` after each run; returns
    the report (:func:`collect_dyck_report`). ``on_update(report)`` is called after each seed. A
    worker of ``--processes`` trains its share and writes no report."""
    from .dyck import dyck_data

    settings = dyck_settings(settings_values)
    data = dyck_data(settings)
    tasks = share.mine([(arm, seed) for seed in seeds for arm in ARMS])
    for position, (arm, seed) in enumerate(tasks):
        train_dyck_run(output_dir, arm, seed, data, settings, log, device)
        if share.is_worker:
            continue
        report = collect_dyck_report(output_dir, settings_values, seeds, configuration)
        output.save_report(output_dir, report)
        last_of_seed = position == len(tasks) - 1 or tasks[position + 1][1] != seed
        if on_update is not None and last_of_seed:
            on_update(report)
    return collect_dyck_report(output_dir, settings_values, seeds, configuration)


def collect_dyck_report(
    output_dir: str | Path, settings_values: dict[str, Any], seeds: list[int], configuration: dict[str, Any]
) -> dict[str, Any]:
    """``report.json``'s content from the output folder: the settings, the data's description and
    the summary (``run.json``) of every finished run of these or earlier seeds."""
    from .dyck import dyck_data, span_bin_edges

    settings = dyck_settings(settings_values)
    data = dyck_data(settings)
    report = output.load_report(output_dir)
    report.update(
        format=output.REPORT_FORMAT, experiment="dyck2", scale=configuration["scale"], configuration=configuration
    )
    report["settings"] = output.jsonable(asdict(settings))
    report["span_edges"] = span_bin_edges(settings.max_length, settings.num_span_bins).tolist()
    report["data"] = {
        "seed": data.seed,
        "sizes": dict(data.sizes),
        "max_length": data.max_length,
        "num_draws": data.num_draws,
    }
    report.setdefault("runs", {arm: {} for arm in ARMS})
    known = {int(seed) for arm in ARMS for seed in report["runs"].get(arm, {})} | set(seeds)
    for seed in sorted(known):
        for arm in ARMS:
            folder = output.run_dir(output_dir, arm, seed)
            if output.finished_run(folder) is not None:
                report["runs"].setdefault(arm, {})[str(seed)] = output.jsonable(load_run(folder))
    report["seeds"] = sorted(known)
    return report


def expected_dyck_seconds(
    settings: Any, data: Any, runs_left: int, steps: int = 5, device: str | None = None
) -> dict[str, Any]:
    """Time ``steps`` training steps of the multi-timescale arm (after one uncounted step) on the first
    training words and extrapolate to ``runs_left`` runs of ``settings.epochs`` epochs (an upper bound
    when ``stop_below_validation_loss`` ends runs early; validation passes not counted)."""
    import math
    import time

    import torch

    from ..devices import resolve_device
    from .dyck import EncodedWords, batch_loss, build_dyck_model

    torch_device: torch.device = resolve_device(device)
    words = EncodedWords(data["train"][: settings.batch_size * (steps + 1)])
    model = build_dyck_model("multi_timescale", 0, settings, torch_device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate)
    seconds = 0.0
    for step in range(steps + 1):
        rows = list(range(step * settings.batch_size, min((step + 1) * settings.batch_size, len(words))))
        if not rows:
            break
        started = time.perf_counter()
        loss = batch_loss(model, words.batch(rows, device=torch_device), settings.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)
        if step > 0:
            seconds += time.perf_counter() - started
    per_step = seconds / max(steps, 1)
    steps_per_epoch = math.ceil(settings.num_train / settings.batch_size)
    return {
        "seconds_per_step": per_step,
        "steps_per_epoch": steps_per_epoch,
        "runs_left": runs_left,
        "seconds": runs_left * settings.epochs * steps_per_epoch * per_step,
    }


__all__ = [
    "PREDICTIONS_FILENAME",
    "RUN_FILENAME",
    "collect_dyck_report",
    "dyck_settings",
    "expected_dyck_seconds",
    "load_predictions",
    "load_run",
    "run_dyck",
    "train_dyck_run",
]
