"""One simulated system beside its theory: the unit that ``simulate``, ``compare`` and the paper's figures share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..analysis import Estimate, steady_state
from ..sim import prepare, simulate, simulate_summary
from ..spec import ASYNC_PROTOCOLS, DUTTA_PROTOCOLS, System
from ..streams import derive_seed, resolve_seed
from ..theory import Prediction, predict
from ..trace import Summary, Trace
from .vocabulary import shared_row, staleness_law

__all__ = ["Point", "Report", "compare_protocols", "for_protocol", "report_for", "run_point", "simulate_points"]

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
    compile_seconds: float = 0.0  # loading (or compiling) the engine, before the timed run
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def row(self) -> dict[str, Any]:
        """The shared vocabulary (:mod:`.vocabulary`) and everything else this point knows, in one flat dict."""
        e, p = self.estimate, self.prediction
        row = {"label": self.label, **shared_row(self.system, seed=self.seed, estimate=e, prediction=p)}
        row.update(e.to_dict())
        row.update(
            staleness_exact_per_worker=list(p.staleness_exact_per_worker),
            staleness_gap=p.staleness_gap,
            exact_in_ci=e.covers(p.staleness_exact),
            paper_in_ci=e.covers(p.staleness_paper),
            gradients=e.updates * self.system.K,
            seconds=self.seconds,
            compile_seconds=self.compile_seconds,
            caveat=p.caveat,
            system=self.system.to_dict(),
        )
        if self.summary is not None:
            row["staleness_histogram"] = self.summary.hist[: e.max + 1].tolist()
        law = self.law()
        row.update({f"{k}_exact": law[k] for k in ("staleness_p50", "staleness_p95", "staleness_p99")})
        row["staleness_pmf_exact"] = law["staleness_pmf"]
        return row

    def law(self) -> dict[str, Any]:
        """The predicted staleness distribution's keys (:func:`.vocabulary.staleness_law`), computed once."""
        if "law" not in self._cache:
            self._cache["law"] = staleness_law(self.system)
        return self._cache["law"]


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
    compile_seconds = prepare(system, updates)
    t0 = time.perf_counter()
    trace = None
    if keep_trace:
        trace = simulate(system, updates, seed=seed, progress=progress)
        warm = updates // 10 if warmup is None else warmup
        summary = Summary.from_trace(trace, warm, batches)
    else:
        summary = simulate_summary(system, updates, seed=seed, warmup=warmup, batches=batches, progress=progress)
    seconds = time.perf_counter() - t0
    return Point(label, system, seed, predict(system), steady_state(summary), seconds, summary, trace, compile_seconds)


def report_for(progress: Report | None, what: str) -> Callable[[int, int], None] | None:
    """A per-task progress callback ``(done, total)`` that reports to ``progress`` under the name ``what``."""
    if progress is None:
        return None
    return lambda done, total: progress(what, done, total)


def simulate_points(
    systems: list[System],
    updates: int,
    seed: int | None,
    *,
    warmup: int | None = None,
    batches: int = 32,
    keep_trace: bool = False,
    progress: Report | None = None,
) -> tuple[list[Point], int]:
    """Simulate every system of a sweep beside its theory; return the points and the root seed used.

    One system runs on ``seed`` itself; the systems of a sweep on seeds derived from it by position.
    """
    root = resolve_seed(seed)
    points = []
    for k, system in enumerate(systems):
        point_seed = root if len(systems) == 1 else derive_seed(root, k)
        what = f"{system.protocol} n={system.n} K={system.K}"
        points.append(
            run_point(
                system, updates, point_seed, warmup=warmup, batches=batches, progress=report_for(progress, what),
                keep_trace=keep_trace,
            )
        )  # fmt: skip
    return points, root


def for_protocol(system: System, protocol: str, *, delay_threshold: int | None = None, cutoffs: Any = None) -> System:
    """``system`` run under ``protocol``: ``sync`` takes every active worker's gradient (K = n), ``ringmaster``
    updates on each gradient (K = 1) with ``delay_threshold``, ``mindflayer`` takes ``cutoffs``, and a staleness
    bound applies to the asynchronous protocols only."""
    K = {"sync": len(system.active), "ringmaster": 1}.get(protocol, system.K)
    return system.replace(
        protocol=protocol,
        K=K,
        staleness_bound=system.staleness_bound if protocol in ASYNC_PROTOCOLS else None,
        delay_threshold=delay_threshold if protocol == "ringmaster" else None,
        cutoffs=cutoffs if protocol == "mindflayer" else None,
    )


def compare_protocols(
    system: System,
    updates: int,
    seed: int | None,
    protocols: tuple[str, ...] = DUTTA_PROTOCOLS,
    *,
    delay_threshold: int | None = None,
    cutoffs: Any = None,
    **options: Any,
) -> tuple[list[Point], int]:
    """The same system under each protocol (:func:`for_protocol`, with ringmaster's ``delay_threshold`` and
    mindflayer's ``cutoffs``), each simulated with the same seed (common random numbers: the same compute times
    and delays); ``options`` as :func:`run_point`'s."""
    root = resolve_seed(seed)
    extra = {"delay_threshold": delay_threshold, "cutoffs": cutoffs}
    points = [simulate_points([for_protocol(system, p, **extra)], updates, root, **options)[0][0] for p in protocols]
    return points, root
