"""The output folder of ``mtlstm-reproduce``: the configuration it was made with, the per-run
completion records, and ``report.json`` written atomically after every stage.

Layout::

    reproduce_config.json      what defines the runs (experiment, scale, recipe, sizes, data digests)
    report.json                every number, stage by stage (a rerun continues from it)
    REPORT.md                  one table per claim of the paper
    figures/                   PNG figures
    runs/<arm>-seed<seed>/     one training run each (language models: mtlstm-train's run folder;
                               Dyck-2: run.json + predictions.npz)
    runs/<...>/reproduce_run.json   written when the run finished: a rerun skips it
    stages/seed<seed>-<stage>.json  one analysis of one seed (language models), as it finished

A folder made with another configuration is refused (:func:`check_configuration`) before
anything is trained or written, since mixing its runs into a report would be wrong. Seeds are
not part of the configuration: every seed's runs are independent, so more seeds can be added.
Imports no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..evaluation.json_values import to_json_compatible as jsonable  # strict JSON for report.json
from ..files import write_text_atomic

CONFIG_FILENAME = "reproduce_config.json"
REPORT_FILENAME = "report.json"
MARKDOWN_FILENAME = "REPORT.md"
FIGURES_DIRNAME = "figures"
RUNS_DIRNAME = "runs"
RUN_RECORD_FILENAME = "reproduce_run.json"
STAGES_DIRNAME = "stages"
REPORT_FORMAT = "mtlstm_hf.reproduce/1"


class ConfigurationMismatch(ValueError):
    """The output folder holds runs made with another configuration (exit code 2)."""


def write_json(path: str | Path, value: Any) -> None:
    """Write ``value`` (through :func:`jsonable`) to ``path`` atomically (old or new content, never a mix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(jsonable(value), indent=2, allow_nan=False) + "\n")


MOVE_AWAY = "move it away to start that part again"
"""What to do about a damaged file whose absence makes the command redo its part (a stage)."""


def read_json(path: str | Path, remedy: str = MOVE_AWAY) -> Any:
    """The JSON in ``path``, or ``None`` when there is no such file.

    Args:
        remedy: what to do about a damaged file, said in the error: what, followed, lets the
            same command run (each file's caller knows what its absence means).

    Raises:
        ValueError: the file is not valid JSON (naming it, with ``remedy``).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error}); {remedy}.") from None


def _configuration_remedy(output_dir: Path) -> str:
    """What to do when ``reproduce_config.json`` cannot be used: without it the runs in
    ``output_dir`` cannot be matched to a configuration, so moving it away does not help."""
    return (
        f"it records what defines the runs in {str(output_dir)!r}, so they cannot be continued without it: "
        "restore it from a copy, or choose another --output-dir (or delete the folder to start again)"
    )


def redo_run_remedy(folder: str | Path) -> str:
    """What to do about a damaged record of a finished run: train that run again."""
    return f"delete the run's folder {str(folder)!r} to train that run again"


def _differences(recorded: Any, wanted: Any, prefix: str = "") -> list[str]:
    if isinstance(recorded, dict) and isinstance(wanted, dict):
        found = []
        for key in sorted(set(recorded) | set(wanted)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in recorded or key not in wanted:
                found.append(f"{name}: {recorded.get(key, '(absent)')!r} -> {wanted.get(key, '(absent)')!r}")
            else:
                found.extend(_differences(recorded[key], wanted[key], name))
        return found
    return [] if recorded == wanted else [f"{prefix}: {recorded!r} -> {wanted!r}"]


def check_configuration(output_dir: str | Path, configuration: dict[str, Any]) -> bool:
    """Whether ``output_dir`` already holds runs of ``configuration`` (True), is new or empty
    (False); reads only.

    Raises:
        ConfigurationMismatch: it holds runs or a report of another configuration (the differences
            named), or runs without a recorded configuration.
        NotADirectoryError: ``output_dir`` is a file.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"--output-dir: {str(output_dir)!r} is a file; a folder is needed.")
    recorded = read_json(output_dir / CONFIG_FILENAME, _configuration_remedy(output_dir))
    if recorded is not None and not isinstance(recorded, dict):
        raise ConfigurationMismatch(
            f"{str(output_dir / CONFIG_FILENAME)!r} does not hold a JSON object of settings; "
            f"{_configuration_remedy(output_dir)}."
        )
    if recorded is None:
        if (output_dir / RUNS_DIRNAME).exists() or (output_dir / REPORT_FILENAME).exists():
            raise ConfigurationMismatch(
                f"--output-dir: {str(output_dir)!r} holds runs or a report but no {CONFIG_FILENAME}, so it cannot be "
                "told whether they match this configuration; choose another --output-dir."
            )
        return False
    wanted = jsonable(configuration)
    differences = _differences(recorded, wanted)
    if differences:
        shown = "; ".join(differences[:6]) + ("; ..." if len(differences) > 6 else "")
        raise ConfigurationMismatch(
            f"--output-dir: {str(output_dir)!r} holds runs of another configuration ({shown}); nothing was changed. "
            "Choose another --output-dir, or rerun with the settings recorded in "
            f"{CONFIG_FILENAME} to continue those runs."
        )
    return True


def record_configuration(output_dir: str | Path, configuration: dict[str, Any]) -> None:
    """Write ``reproduce_config.json`` (after :func:`check_configuration` passed)."""
    write_json(Path(output_dir) / CONFIG_FILENAME, configuration)


def run_dir(output_dir: str | Path, arm: str, seed: int) -> Path:
    """The folder of one run: ``runs/<arm>-seed<seed>``."""
    return Path(output_dir) / RUNS_DIRNAME / f"{arm}-seed{seed}"


def finished_run(folder: str | Path) -> dict[str, Any] | None:
    """The completion record of a finished run, or ``None`` while it is not finished.

    Raises:
        ValueError: the record is not valid JSON (naming it; the remedy: train the run again).
    """
    record = read_json(Path(folder) / RUN_RECORD_FILENAME, redo_run_remedy(folder))
    return record if isinstance(record, dict) and record.get("status") == "completed" else None


def mark_finished(folder: str | Path, record: dict[str, Any]) -> None:
    """Record that the run in ``folder`` finished (``status`` completed), with ``record``'s summary."""
    write_json(Path(folder) / RUN_RECORD_FILENAME, {**record, "status": "completed"})


def stage_file(output_dir: str | Path, seed: int, stage: str) -> Path:
    """Where one analysis stage of one seed is kept: ``stages/seed<seed>-<stage>.json``."""
    return Path(output_dir) / STAGES_DIRNAME / f"seed{seed}-{stage}.json"


def finished_stage(output_dir: str | Path, seed: int, stage: str) -> dict[str, Any] | None:
    """``{"result": ..., "seconds": ...}`` of a finished stage, or ``None``."""
    record = read_json(stage_file(output_dir, seed, stage))
    return record if isinstance(record, dict) and "result" in record else None


def write_stage(output_dir: str | Path, seed: int, stage: str, result: Any, seconds: float) -> None:
    """Keep a finished stage (atomically: a stage file is complete or absent)."""
    write_json(stage_file(output_dir, seed, stage), {"result": result, "seconds": seconds})


def load_report(output_dir: str | Path) -> dict[str, Any]:
    """``report.json`` of ``output_dir`` (an empty dict when there is none).

    Raises:
        ValueError: it is not valid JSON or not an object (naming it; the remedy: move it away,
            it is made again from the runs and stages).
    """
    remedy = f"{MOVE_AWAY} (it is made again from {RUNS_DIRNAME}/ and {STAGES_DIRNAME}/)"
    report = read_json(Path(output_dir) / REPORT_FILENAME, remedy)
    if report is not None and not isinstance(report, dict):
        raise ValueError(f"{str(Path(output_dir) / REPORT_FILENAME)!r} does not hold a JSON object; {remedy}.")
    return report or {}


def save_report(output_dir: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report.json`` atomically; returns its path."""
    path = Path(output_dir) / REPORT_FILENAME
    write_json(path, report)
    return path


__all__ = [
    "CONFIG_FILENAME",
    "ConfigurationMismatch",
    "FIGURES_DIRNAME",
    "MARKDOWN_FILENAME",
    "MOVE_AWAY",
    "REPORT_FILENAME",
    "REPORT_FORMAT",
    "RUNS_DIRNAME",
    "RUN_RECORD_FILENAME",
    "STAGES_DIRNAME",
    "check_configuration",
    "finished_run",
    "finished_stage",
    "jsonable",
    "load_report",
    "mark_finished",
    "read_json",
    "record_configuration",
    "redo_run_remedy",
    "run_dir",
    "save_report",
    "stage_file",
    "write_json",
    "write_stage",
]
