"""Progress reporting: a bar on a terminal, plain periodic lines (no control codes) elsewhere."""

import io

from tqdm import tqdm

from mtlstm_hf.progress import PlainProgress, format_duration, progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_are_periodic_with_elapsed_and_estimated_total_time():
    clock, stream = FakeClock(), io.StringIO()
    bar = PlainProgress(range(10), desc="ablation", unit="chunk", stream=stream, interval=30.0, clock=clock)
    seen = []
    for item in bar:
        seen.append(item)
        clock.now += 12.0  # each item takes 12 s: lines after items 1, 4 (36 s later), 7, and at the end
    assert seen == list(range(10))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "ablation: 1/10 chunk (10%), 12s elapsed, ~2m00s in all",
        "ablation: 4/10 chunk (40%), 48s elapsed, ~2m00s in all",
        "ablation: 7/10 chunk (70%), 1m24s elapsed, ~2m00s in all",
        "ablation: 10/10 chunk (100%), 2m00s elapsed",
    ]
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_plain_progress_without_total_update_postfix_and_disable():
    clock, stream = FakeClock(), io.StringIO()
    bar = PlainProgress(desc="epoch 1/3", unit="step", stream=stream, interval=5.0, clock=clock)
    bar.set_postfix(loss="4.100")
    bar.update(3)
    clock.now += 1.0
    bar.close()
    bar.close()  # idempotent
    assert stream.getvalue().splitlines() == [
        "epoch 1/3: 3 step, 0.0s elapsed [loss=4.100]",
        "epoch 1/3: 3 step, 1.0s elapsed [loss=4.100]",
    ]
    quiet = io.StringIO()
    with PlainProgress(total=2, stream=quiet, disable=True) as silent:
        silent.update(2)
    assert quiet.getvalue() == ""


def test_progress_chooses_a_bar_only_on_a_terminal():
    assert isinstance(progress(total=3, stream=io.StringIO()), PlainProgress)
    terminal = Terminal()
    bar = progress(total=3, desc="x", stream=terminal)
    assert isinstance(bar, tqdm)
    bar.update(3)
    bar.close()
    assert "\r" in terminal.getvalue()


def test_format_duration():
    assert [format_duration(s) for s in (4.25, 59, 75.3, 3725)] == ["4.2s", "59s", "1m15s", "1h02m05s"]
