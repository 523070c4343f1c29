"""Progress reporting for long commands: a tqdm bar on a terminal, plain periodic lines elsewhere.

A tqdm bar redraws itself with carriage returns and cursor-control codes; written to a log
file or a CI console those become one unreadable line per update. :func:`progress` gives a
tqdm bar when the stream is a terminal and otherwise a :class:`PlainProgress`, which writes
one ordinary line at most every ``interval`` seconds (and one at the end) with the count,
the elapsed time and, when the total is known, the estimated total time.

Both answer the same small interface: iteration, ``update(n)``, ``set_postfix(**values)``,
``set_postfix_str(text)``, ``close()``, the attributes ``n`` and ``total`` (``total`` may be
reassigned), and use as a context manager.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

PLAIN_INTERVAL_SECONDS = 30.0
"""Seconds between two lines of :class:`PlainProgress` (the first and last lines are always written)."""


def format_duration(seconds: float) -> str:
    """``75.3`` -> ``'1m15s'``; ``3725`` -> ``'1h02m05s'``; ``4.2`` -> ``'4.2s'``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class PlainProgress:
    """Progress as plain lines: ``desc: 40/100 chunk (40%), 1m10s elapsed, ~2m55s in all [loss=4.1]``.

    Args:
        iterable: what to iterate over (optional; use :meth:`update` without it).
        total: expected number of items (``len(iterable)`` when it has one).
        desc: what is progressing, first on every line.
        unit: name of one item.
        stream: where to write (default ``sys.stderr``).
        interval: minimum seconds between two lines.
        disable: write nothing (iteration still works).
        clock: time source (seconds), for tests.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        stream: TextIO | None = None,
        interval: float = PLAIN_INTERVAL_SECONDS,
        disable: bool = False,
        clock: Any = time.monotonic,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream
        self.interval = interval
        self.disable = disable
        self.clock = clock
        self.n = 0
        self.postfix = ""
        self._start = clock()
        self._last_line: float | None = None
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("PlainProgress without an iterable: call update() instead of iterating.")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **values: Any) -> None:
        items = dict(ordered_dict or {}, **values)
        self.postfix = ", ".join(f"{key}={value}" for key, value in items.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = str(text)

    def update(self, n: float = 1) -> None:
        self.n += n
        now = self.clock()
        if self._last_line is None or now - self._last_line >= self.interval:
            self._write(now)

    def line(self, now: float | None = None) -> str:
        """The line describing the current progress."""
        now = self.clock() if now is None else now
        elapsed = now - self._start
        count = f"{self.n:g}"
        if self.total:
            count += f"/{self.total:g} {self.unit} ({100.0 * self.n / self.total:.0f}%)"
        else:
            count += f" {self.unit}"
        text = f"{self.desc}: {count}, {format_duration(elapsed)} elapsed"
        if self.total and 0 < self.n < self.total:
            text += f", ~{format_duration(elapsed * self.total / self.n)} in all"
        if self.postfix:
            text += f" [{self.postfix}]"
        return text

    def _write(self, now: float) -> None:
        self._last_line = now
        if self.disable:
            return
        stream = self.stream if self.stream is not None else sys.stderr
        print(self.line(now), file=stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        now = self.clock()
        if self._last_line != now:
            self._write(now)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
    stream: TextIO | None = None,
) -> Any:
    """A tqdm bar when ``stream`` (default ``sys.stderr``) is a terminal, else a :class:`PlainProgress`.

    Both show the estimated total time when ``total`` is known. ``leave`` applies to the bar
    only (plain lines always stay).
    """
    stream = stream if stream is not None else sys.stderr
    if _is_terminal(stream):
        from tqdm import tqdm

        return tqdm(
            iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave, file=stream, dynamic_ncols=True
        )
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, stream=stream, disable=disable)


@contextlib.contextmanager
def no_transformers_progress_bar() -> Iterator[None]:
    """Silence transformers' own bars ("Loading weights", "Writing model shards") inside a
    block: our commands report their own progress, and those bars would write cursor-control
    codes into logs."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
