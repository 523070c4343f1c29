"""Progress reporting for long commands: a tqdm bar on a terminal, plain periodic lines elsewhere.

A tqdm bar redraws itself with carriage returns and cursor-control codes; written to a log
file or a CI console those become one unreadable line per update. :func:`progress` gives a
tqdm bar when the stream is a terminal and otherwise a :class:`PlainProgress`, which writes
one ordinary line at most every ``interval`` seconds (and one at the end) with the count,
the elapsed time and, when the total is known, the estimated total time.

Both answer the same small interface: iteration, ``update(n)``, ``set_postfix(**values)``,
``set_postfix_str(text)``, ``close()``, the attributes ``n`` and ``total`` (``total`` may be
reassigned), and use as a context manager.

Long computations (the analyses) take a ``progress`` argument: ``False`` (nothing), ``True``
(their own bar from :func:`progress`), or an object with a settable ``total`` and ``update(n)``
into which they report their own work units (windows, steps); :func:`open_progress` turns that
argument into the object to update. :class:`Share` is such an object for a run of several
computations under one bar (``mtlstm_hf.analysis.report.run_analyses``): one computation's part
of a bar whose total covers all of them, so the estimate of the total time covers the whole run;
:class:`Meter` turns the fractional amounts the shares hand out into the bar's whole steps.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = [
    "PLAIN_INTERVAL_SECONDS",
    "Meter",
    "PlainProgress",
    "Share",
    "format_duration",
    "no_transformers_progress_bar",
    "open_progress",
    "progress",
]

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
        self.n: float = 0
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


class _Silent:
    """The progress object of ``progress=False``: counts, shows nothing."""

    total: float | None = None
    n: float = 0

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass


class Meter:
    """Fractional amounts in, whole steps out: the bar shows integer counts that add up exactly.

    Args:
        bar: anything with ``update(n)`` and ``set_postfix_str(text)`` (e.g. :func:`progress`'s).
    """

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self._amount = 0.0
        self._shown = 0

    def update(self, amount: float) -> None:
        self._amount += amount
        step = int(round(self._amount)) - self._shown
        if step > 0:
            self._shown += step
            self.bar.update(step)

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.bar.set_postfix_str(text)


class Share:
    """``budget`` units of a run-wide bar, handed out in proportion to one computation's own progress.

    The computation sets ``total`` (its own units, e.g. windows) and calls ``update(n)``; the bar
    advances by ``budget * n / total``, never beyond ``budget``. :meth:`finish` advances the rest
    (a computation that stopped early or was skipped still accounts for its part). ``bar``: anything
    with ``update(amount)`` (a :class:`Meter` around the run's bar).
    """

    def __init__(self, bar: Any, budget: float) -> None:
        self.bar = bar
        self.budget = float(budget)
        self.total: float | None = None
        self.n = 0.0
        self._given = 0.0

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.total:
            self._advance_to(self.budget * min(self.n, self.total) / self.total)

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.bar.set_postfix_str(text)

    def _advance_to(self, target: float) -> None:
        step = target - self._given
        if step > 0:
            self._given = target
            self.bar.update(step)

    def finish(self) -> None:
        """Advance the bar to the end of this share."""
        self._advance_to(self.budget)

    def part(self, fraction: float) -> Share:
        """A share of ``fraction`` of what is left of this one (for a computation with several phases)."""
        budget = fraction * (self.budget - self._given)
        self._given += budget  # reserved: the part advances the bar itself
        return Share(self.bar, budget)


@contextlib.contextmanager
def open_progress(progress_argument: Any, total: float, desc: str, unit: str) -> Iterator[Any]:
    """The object to ``update(n)`` for ``total`` units of one computation.

    Args:
        progress_argument: the computation's ``progress`` argument: ``True`` (its own bar, closed
            on exit), ``False``/``None`` (a silent counter), or an object with ``total`` and
            ``update(n)`` (its ``total`` is set to ``total``).
        total, desc, unit: the amount of work, its name and the name of one unit.
    """
    if progress_argument is True:
        bar = progress(total=total, desc=desc, unit=unit, leave=False)
        try:
            yield bar
        finally:
            bar.close()
    elif progress_argument is False or progress_argument is None:
        yield _Silent()
    else:
        progress_argument.total = total
        yield progress_argument
