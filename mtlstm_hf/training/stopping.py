"""When a run stops between optimizer steps: a signal (SIGINT/SIGTERM), a callback, the step
budget or the time budget, agreed on by every process."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from typing import Any

import torch

from .state import NonFiniteLossError


class StopRequests:
    """Collects reasons to stop and turns them into one decision per optimizer step.

    The first SIGINT/SIGTERM asks for a checkpoint after the current step; a second one aborts
    at once (the last checkpoint stays good). Install the handlers around the training loop
    with ``with StopRequests(...) as stops:`` (only the main thread can set them).

    Args:
        max_minutes: wall-clock budget of this session (``None``: none).
        max_steps: step budget of the whole run (``None``: none).
    """

    def __init__(self, max_minutes: float | None, max_steps: int | None) -> None:
        self.max_minutes = max_minutes
        self.max_steps = max_steps
        self.signal: int | None = None
        self._start = time.monotonic()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        self._start = time.monotonic()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt  # a second signal: stop at once (the last checkpoint stays good)
        self.signal = signum
        print(
            f"\nReceived {signal.Signals(signum).name}: saving a checkpoint after this step, then stopping "
            "(send it again to abort without saving).",
            file=sys.stderr,
            flush=True,
        )

    def decide(
        self, accelerator: Any, global_step: int, callback_stop: bool, local_loss: float
    ) -> tuple[str | None, float]:
        """The reason to stop now (the same on every process: the flags are summed across
        processes), and the mean training loss over processes.

        Returns:
            ``(reason, mean_loss)``; reason is ``interrupted``, ``stopped``, ``max_steps``,
            ``time_limit`` or ``None``.

        Raises:
            NonFiniteLossError: the mean loss is NaN or infinite.
        """
        timed_out = self.max_minutes is not None and time.monotonic() - self._start > 60 * self.max_minutes
        flags = [local_loss, float(self.signal is not None), float(callback_stop), float(timed_out)]
        if accelerator.num_processes > 1:
            summed = accelerator.reduce(
                torch.tensor(flags, dtype=torch.float64, device=accelerator.device), reduction="sum"
            )
            flags = [float(summed[0]) / accelerator.num_processes] + [float(value > 0) for value in summed[1:].cpu()]
        mean_loss = flags[0]
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(f"non-finite training loss {mean_loss} at step {global_step}.")
        if flags[1]:
            return "interrupted", mean_loss
        if flags[2]:
            return "stopped", mean_loss
        if self.max_steps is not None and global_step >= self.max_steps:
            return "max_steps", mean_loss
        if flags[3]:
            return "time_limit", mean_loss
        return None, mean_loss
