"""What every benchmark prints about the machine it ran on (imported by the scripts here)."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_averages() -> str:
    """The 1, 5 and 15-minute load averages (the cores may be shared with other jobs)."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"
