"""Metric tracking through ``accelerate`` trackers: a JSON-lines tracker that needs no extra package.

``accelerator.log(values, step=...)`` reaches every tracker of the ``Accelerator``; this one
appends ``{"step": ..., "time": ..., **values}`` as one JSON object per line, so a run can be
plotted with nothing but the standard library. TensorBoard is added when it is installed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path
from typing import Any, TextIO

from accelerate.tracking import GeneralTracker

from ..files import BEST_MODEL_DIRNAME, LOGS_DIRNAME, TRAINING_METRICS_FILENAME, write_text_atomic
from .state import perplexity

METRICS_FILENAME = "metrics.jsonl"


def tensorboard_available() -> bool:
    """Whether ``accelerate``'s TensorBoard tracker can run (``tensorboard`` or ``tensorboardX``)."""
    return any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))


def trackio_available() -> bool:
    """Whether ``accelerate``'s Trackio tracker can run (the ``trackio`` package is installed)."""
    return importlib.util.find_spec("trackio") is not None


def _json_safe(value: Any) -> Any:
    """Numbers, strings, bools, None; tensors and other objects become numbers or strings."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # strict JSON has no NaN/Infinity
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def drop_records_after(path: Path, step: int) -> int:
    """Remove the records of steps after ``step`` from a metrics file (a resume redoes those steps
    and logs them again); lines without a step (the configuration) stay. Rewritten atomically.

    Returns:
        The number of records removed (0 when the file does not exist).
    """
    if not path.is_file():
        return 0
    kept, removed = [], 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash: not a record of a finished step
            removed += 1
            continue
        logged = record.get("step") if isinstance(record, dict) else None
        if isinstance(logged, int) and logged > step:
            removed += 1
            continue
        kept.append(line if line.endswith("\n") else line + "\n")
    if removed:
        write_text_atomic(path, "".join(kept))
    return removed


class JSONLinesTracker(GeneralTracker):
    """Append logged metrics to ``<logging_dir>/metrics.jsonl`` (main process only).

    The file is opened lazily in append mode, so a resumed run continues the same log, and
    flushed after each line, so it is readable while training runs.

    Args:
        run_name: stored in the first (``"config"``) line.
        logging_dir: folder of the log file (created on first write).
    """

    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | Path) -> None:
        super().__init__()
        self.run_name = run_name
        self.path = Path(logging_dir) / METRICS_FILENAME
        self._handle: TextIO | None = None

    @property
    def tracker(self) -> Path:
        return self.path

    def _write(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        self._write(
            {
                "event": "config",
                "run_name": self.run_name,
                "time": time.time(),
                "config": {key: _json_safe(value) for key, value in values.items()},
            }
        )

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        record = {"step": step, "time": time.time()}
        record.update({key: _json_safe(value) for key, value in values.items()})
        self._write(record)

    def finish(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file, in order."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class TrainingMeter:
    """Mean training loss and tokens per second since the last :meth:`flush` (one log line)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.start, self.loss_sum, self.steps, self.tokens = time.perf_counter(), 0.0, 0, 0

    def add(self, loss: float, tokens: int) -> None:
        self.loss_sum += loss
        self.steps += 1
        self.tokens += tokens

    def flush(self, learning_rate: float, grad_norm: float, epoch: float) -> dict[str, float]:
        """The ``train/*`` metrics of the steps since the last flush; starts a new period."""
        loss = self.loss_sum / max(self.steps, 1)
        metrics = {
            "train/loss": loss,
            "train/perplexity": perplexity(loss),
            "train/tokens_per_second": self.tokens / max(time.perf_counter() - self.start, 1e-9),
            "train/learning_rate": learning_rate,
            "train/grad_norm": grad_norm,
            "epoch": epoch,
        }
        self._reset()
        return metrics


def logged_test_perplexity(best_model_dir: str | Path) -> float | None:
    """The test perplexity that the end of a training run measured for the weights in ``best_model_dir``.

    ``best_model/`` records its validation (``training_metrics.json``) but not the test score the
    run took of it at the end (``evaluate_test``); that is in the run's log,
    ``<run>/logs/metrics.jsonl`` (``test/perplexity``). The logged test belongs to these weights
    when the log also holds their validation (an ``eval/loss`` record at their ``global_step`` with
    their ``val_loss``) at or before the test's step: a later best model (a resumed run that saved
    one and stopped before its test) or a folder copied elsewhere gets ``None``.

    Args:
        best_model_dir: a ``best_model/`` folder inside a run folder.

    Returns:
        The perplexity, or ``None`` when it cannot be attributed to these weights (no run log
        beside the folder, no test in it, another best model's test, an unreadable file).
    """
    folder = Path(best_model_dir)
    log = folder.parent / LOGS_DIRNAME / METRICS_FILENAME
    if folder.name != BEST_MODEL_DIRNAME or not log.is_file():
        return None
    try:
        saved = json.loads((folder / TRAINING_METRICS_FILENAME).read_text(encoding="utf-8"))
        records = read_metrics(log)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(saved, dict) or not all(isinstance(record, dict) for record in records):
        return None
    step, val_loss = saved.get("global_step"), saved.get("val_loss")
    tests = [record for record in records if isinstance(record.get("test/perplexity"), (int, float))]
    if not tests or not isinstance(step, int) or not isinstance(val_loss, (int, float)):
        return None
    test = tests[-1]
    validated = any(record.get("step") == step and record.get("eval/loss") == val_loss for record in records)
    if not validated or not isinstance(test.get("step"), int) or test["step"] < step:
        return None
    return float(test["test/perplexity"])
