"""One simulated system beside its theory: the unit that ``simulate``, ``compare`` and the paper's figures share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..analysis import Estimate, steady_state
from ..sim import simulate, simulate_summary
from ..spec import System
from ..theory import Prediction, predict
from ..trace import Summary, Trace

__all__ = ["Point", "Report", "report_for", "run_point"]

#: Progress callback: (what, done, total).
Report = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Point:
    """One simulated system beside its theory."""

    label: str
    system: System
    seed: int
    prediction: Prediction
    estimate: Estimate
    seconds: float
    summary: Summary | None = None
    trace: Trace | None = None  # kept only when asked for

    def row(self) -> dict[str, Any]:
        e, p = self.estimate, self.prediction
        return {
            "label": self.label,
            "n": self.system.n,
            "K": self.system.K,
            "tc": self.system.tc,
            "seed": self.seed,
            "staleness_mean": e.mean,
            "staleness_ci95": e.ci95,
            "staleness_paper": p.staleness_paper,
            "staleness_exact": p.staleness_exact,
            "exact_in_ci": e.covers(p.staleness_exact),
            "paper_in_ci": e.covers(p.staleness_paper),
            "update_rate": e.update_rate,
            "update_rate_theory": p.update_rate,
            "staleness_p95": e.p95,
            "warmup_updates": e.warmup,
            "updates": e.updates,
            "gradients": e.updates * self.system.K,
            "seconds": self.seconds,
        }


def run_point(
    system: System,
    updates: int,
    seed: int,
    label: str = "",
    *,
    warmup: int | None = None,
    batches: int = 32,
    progress: Callable[[int, int], None] | None = None,
    keep_trace: bool = False,
) -> Point:
    """Simulate ``system`` and put the estimate beside the theory: streamed, or keeping the whole Trace (the
    same numbers: the Summary of a Trace equals the streamed one)."""
    t0 = time.perf_counter()
    trace = None
    if keep_trace:
        trace = simulate(system, updates, seed=seed, progress=progress)
        warm = updates // 10 if warmup is None else warmup
        summary = Summary.from_trace(trace, warm, batches)
    else:
        summary = simulate_summary(system, updates, seed=seed, warmup=warmup, batches=batches, progress=progress)
    seconds = time.perf_counter() - t0
    return Point(label, system, seed, predict(system), steady_state(summary), seconds, summary, trace)


def report_for(progress: Report | None, what: str) -> Callable[[int, int], None] | None:
    """A per-task progress callback ``(done, total)`` that reports to ``progress`` under the name ``what``."""
    if progress is None:
        return None
    return lambda done, total: progress(what, done, total)
