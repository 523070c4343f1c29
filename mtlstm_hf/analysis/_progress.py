"""Progress of the analyses: an analysis's own bar, or its share of one bar for the whole run.

Every analysis function takes ``progress``: ``False`` (nothing), ``True`` (its own bar from
:func:`mtlstm_hf.progress.progress`: a tqdm bar on a terminal, plain periodic lines with the
estimated total time in logs), or an object with a settable ``total`` and ``update(n)`` into which
it reports its own work units (windows, steps). :class:`Share` is that object for
:func:`~mtlstm_hf.analysis.report.run_analyses`: one analysis's part of a run-wide bar, whose
total covers every selected analysis, so the estimate of the total time covers the whole run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["Meter", "Share", "open_progress"]


class _Silent:
    total: float | None = None
    n: float = 0

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass


class Meter:
    """Fractional amounts in, whole steps out: the bar shows integer counts that add up exactly."""

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
    """``budget`` units of a run-wide bar, handed out in proportion to an analysis's own progress.

    The analysis sets ``total`` (its own units, e.g. windows) and calls ``update(n)``; the bar
    advances by ``budget * n / total``, never beyond ``budget``. :meth:`finish` advances the rest
    (an analysis that stopped early or was skipped still accounts for its part). ``bar``: anything
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
        self._advance_to(self.budget)

    def part(self, fraction: float) -> "Share":
        """A share of ``fraction`` of what is left of this one (for an analysis with several phases)."""
        budget = fraction * (self.budget - self._given)
        self._given += budget  # reserved: the part advances the bar itself
        return Share(self.bar, budget)


@contextlib.contextmanager
def open_progress(progress: Any, total: float, desc: str, unit: str) -> Iterator[Any]:
    """The progress object for ``total`` units of one analysis (see the module docstring)."""
    if progress is True:
        from mtlstm_hf.progress import progress as make_bar

        bar = make_bar(total=total, desc=desc, unit=unit, leave=False)
        try:
            yield bar
        finally:
            bar.close()
    elif progress is False or progress is None:
        yield _Silent()
    else:
        progress.total = total
        yield progress
