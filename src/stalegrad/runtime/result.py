"""What a real run returns (:class:`RunResult`) or raises (:class:`RuntimeFailure`, :class:`RunInterrupted`), and
its files (:func:`write_run`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StalegradError
from ..trace import Trace

__all__ = ["RunInterrupted", "RunResult", "RuntimeFailure", "write_run"]


class RuntimeFailure(StalegradError):
    """A real run could not go on (every worker died, the master died, Ray could not start)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; the message says where its final checkpoint is (if it checkpoints)."""


@dataclass(frozen=True, eq=False)
class RunResult:
    """What a real run recorded.

    ``trace`` times are in time units from the start of the run; ``errors`` has one row per recorded version:
    ``(version, time, error)``; ``downlink`` holds every measured downlink delay (time units), ``dropped`` the
    gradients that reached the master and were not applied, by reason; ``latency`` Ray's own call latency measured
    before the run (milliseconds).
    """

    trace: Trace  # the whole run's, a resumed one's included (as are dropped, lost and restarted)
    errors: np.ndarray
    w: np.ndarray
    downlink: np.ndarray
    dropped: dict[str, int]
    latency: dict[str, float]
    time_unit: float | None
    seconds: float
    lost: tuple[tuple[int, int], ...] = ()  # (worker, version at which its death was seen)
    restarted: tuple[tuple[int, int], ...] = ()  # (worker, version at which it was restarted)
    meta: dict[str, Any] = field(default_factory=dict)
    received: int = 0  # gradients that reached the master, the whole run's: len(trace) + sum(dropped) of them


def write_run(result: RunResult, folder: str | Path, **extra: Any) -> list[Path]:
    """Write a run's ``trace.csv`` (one row per gradient applied, the Trace columns) and ``errors.csv`` (``version,
    time, error``) into ``folder``; returns their paths.

    Each file's metadata line records the seed, ``extra`` and, when times were injected, the configured system
    (then :func:`~stalegrad.trace_io.read_trace` loads ``trace.csv`` back as a Trace). With nothing injected the
    system is the one measured, an empirical law of every measured time: that is the trace itself, not recorded
    twice.
    """
    from ..artefacts import metadata, write_csv
    from ..trace import COLUMNS

    folder = Path(folder)
    trace = result.trace
    systems = {"trace": trace.system} if result.time_unit is not None else None
    meta = metadata(trace.seed, systems, engine=trace.meta.get("engine"), **extra)
    cols = trace.columns
    names = list(COLUMNS)
    rows = zip(*(cols[k].tolist() for k in names), strict=True)
    return [
        write_csv(folder / "trace.csv", names, rows, meta),
        write_csv(folder / "errors.csv", ["version", "time", "error"], result.errors.tolist(), meta),
    ]
