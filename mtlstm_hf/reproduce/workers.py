"""One run per process: ``mtlstm-reproduce --processes N`` spreads the independent (arm, seed) runs,
and then the per-seed analyses, over N worker processes.

Why: the paper's experiments are many small runs (6 for PTB, 40 for Dyck-2), and the cuDNN step at
these sizes is latency-bound, so splitting one run's 20 rows over GPUs (data parallelism) buys
almost nothing, while N runs at once go N times faster. Each worker is this command again, in a
fresh process, with ``MTLSTM_REPRODUCE_WORKER=k/N/phase`` in its environment: it prepares as the
parent did (the same checks), takes every N-th task of the phase (round robin from ``k``), and
writes only into its runs' folders and stage files (:mod:`.output`). The parent starts the
workers of one phase, passes their output on line by line (prefixed ``[k]``), waits for all, and
only then starts the next phase; at the end it merges the report. Everything stays resumable:
a rerun of the same command skips what any worker finished. Each worker runs in its own session;
a Ctrl-C, SIGTERM or SIGHUP to this process is passed to every worker once (each saves its
checkpoint and stops), and the command then stops as interrupted (exit 130).

Devices: with CUDA, worker ``k`` sees one GPU (``CUDA_VISIBLE_DEVICES``, round robin over the
GPUs this process may use); on CPUs each worker uses the scale's threads (1 at the ``cpu``
scale), so ``--processes 2`` on two cores runs two runs at once.

Phases: ``train`` (the runs) and ``analyse`` (language models: the stages of each seed, which need
both arms of that seed); Dyck-2 has only ``train``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

WORKER_VARIABLE = "MTLSTM_REPRODUCE_WORKER"
PHASES: tuple[str, ...] = ("train", "analyse")

T = TypeVar("T")


@dataclass(frozen=True)
class Share:
    """The part of the work one process does: every ``count``-th task from ``index`` of each phase,
    in ``phase`` only (``None``: every phase, as a single process does)."""

    index: int = 0
    count: int = 1
    phase: str | None = None

    def mine(self, tasks: Sequence[T]) -> list[T]:
        """This process's tasks, in order."""
        return [task for position, task in enumerate(tasks) if position % self.count == self.index]

    def does(self, phase: str) -> bool:
        """Whether this process works in ``phase``."""
        return self.phase is None or self.phase == phase

    @property
    def is_worker(self) -> bool:
        return self.count > 1


EVERYTHING = Share()
"""A single process: all tasks of all phases."""


def share_from_environment() -> Share:
    """This process's share: :data:`EVERYTHING`, or what ``MTLSTM_REPRODUCE_WORKER=k/N/phase`` says.

    Raises:
        ValueError: a malformed value.
    """
    value = os.environ.get(WORKER_VARIABLE)
    if not value:
        return EVERYTHING
    try:
        index, count, phase = value.split("/")
        share = Share(int(index), int(count), phase)
    except ValueError:
        share = None
    if share is None or not 0 <= share.index < share.count or share.phase not in PHASES:
        raise ValueError(
            f"{WORKER_VARIABLE}={value!r}: expected INDEX/COUNT/PHASE with 0 <= INDEX < COUNT, PHASE in {PHASES}."
        )
    return share


def visible_gpus(device: str | None = None) -> list[str]:
    """The GPUs the workers take turns on, as ``CUDA_VISIBLE_DEVICES`` entries: every CUDA device
    this process may use for ``device`` None or ``cuda``, the one named by ``cuda:N``, none for
    another device or without CUDA."""
    import torch

    if not torch.cuda.is_available() or (device is not None and not device.startswith("cuda")):
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        gpus = [entry.strip() for entry in listed.split(",") if entry.strip()][: torch.cuda.device_count()]
    else:
        gpus = [str(index) for index in range(torch.cuda.device_count())]
    if device is not None and ":" in device:
        return [gpus[torch.device(device).index]]
    return gpus


def run_phase(
    phase: str, count: int, arguments: Sequence[str], log: Callable[[str], None], gpus: Sequence[str] = ()
) -> int:
    """Run ``count`` workers of ``phase`` (``mtlstm-reproduce ARGUMENTS`` each, with its share in the
    environment and one GPU when there are GPUs), pass their output on, wait for all of them.

    Returns:
        0 when every worker succeeded, else the first non-zero exit code in worker order (130 if
        any was interrupted, so that an interruption is reported as one).
    """
    log(f"{phase}: {count} worker processes" + (f" on GPUs {', '.join(gpus[:count])}" if gpus else ""))
    workers = []
    for index in range(count):
        environment = dict(os.environ, **{WORKER_VARIABLE: f"{index}/{count}/{phase}"})
        if gpus:
            environment["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        # Its own session: a signal reaches a worker once, from this process (below), not also from the terminal.
        process = subprocess.Popen(
            [sys.executable, "-m", "mtlstm_hf.reproduce.cli", *arguments],
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True,
        )  # fmt: skip
        reader = threading.Thread(target=_pass_on, args=(process, f"[{index}] "), daemon=True)
        reader.start()
        workers.append((process, reader))
    codes = []
    forwarded: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        # Ctrl-C, SIGTERM or SIGHUP: each worker gets it (once), saves its checkpoint and stops (a second
        # one stops it at once, as for one process); this process waits for them, then stops as interrupted.
        forwarded.append(signum)
        for process, _ in workers:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, forward)
    try:
        for process, reader in workers:
            codes.append(process.wait())
            reader.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if forwarded:
        raise KeyboardInterrupt(f"stopped by {signal.Signals(forwarded[0]).name}")
    if 130 in codes:
        return 130
    return next((code for code in codes if code != 0), 0)


_output_lock = threading.Lock()


def _pass_on(process: Any, prefix: str) -> None:
    """Pass a worker's output on, line by line; if this process's own output is gone (a closed
    pipe), keep reading, so that the worker never blocks or dies on a full pipe."""
    for line in process.stdout:
        with _output_lock:
            try:
                sys.stderr.write(prefix + line)
                sys.stderr.flush()
            except (BrokenPipeError, OSError):
                pass


__all__ = ["EVERYTHING", "PHASES", "Share", "WORKER_VARIABLE", "run_phase", "share_from_environment", "visible_gpus"]
