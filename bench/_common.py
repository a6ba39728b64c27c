"""What every benchmark here shares: best-of timing and a description of the machine and versions."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any


def best_of(reps: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The shortest wall time of ``reps`` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(reps):
        out = None  # free the previous result before the next call
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(*packages: str) -> dict[str, str]:
    """Python's version and each package's (or ``not installed``)."""
    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
