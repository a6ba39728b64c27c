"""A candidate configuration of the advisor and its replays with common random numbers.

A candidate is a worker subset (indices into the cluster, fastest first), ``K``, a minibatch ``b``, a base step,
the protocol and the step-size policy (and ringmaster's threshold or mindflayer's cutoff quantile).
:func:`evaluate` replays candidates on numbered replications: replication ``r`` uses the timeline seed
``derive_seed(root, r, 0)`` and the minibatch seed ``derive_seed(root, r, 1)`` in every candidate (as ``train``
does), so two candidates differ only by their configuration, and the steps of one configuration are replayed along
the *same* simulated timelines. A replay stops at the target (:func:`stalegrad.train.replay`'s ``stop_below``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..batch_law import BatchLaw
from ..distributions import scaled
from ..sim import simulate
from ..spec import System
from ..streams import derive_seed
from ..theory import predict
from ..train import replay
from .protocols import cutoffs_at

__all__ = ["MAX_TIMELINE", "Candidate", "Scored", "evaluate", "timeline"]


@dataclass(frozen=True)
class Candidate:
    """One configuration to try: ``workers`` (indices into the cluster, fastest first), ``K``, ``b``, ``step``,
    the protocol and policy, ringmaster's ``delay_threshold`` ``R`` and mindflayer's ``cutoff_quantile`` (each
    worker's cutoff is that quantile of its compute-time law at ``b``, :func:`.protocols.cutoffs_at`)."""

    workers: tuple[int, ...]
    K: int
    b: int
    step: float
    protocol: str = "k-batch-async"
    policy: str = "constant"
    delay_threshold: int | None = None
    cutoff_quantile: float | None = None

    def laws(self, cluster: System, batch_laws: Sequence[BatchLaw] | None = None) -> list[Any]:
        """The compute-time law of each of the candidate's workers at its minibatch ``b``: the worker's law of
        ``b`` when ``batch_laws`` (one per cluster worker) are given, else ``b`` times a draw of its law."""
        if batch_laws is not None:
            return [batch_laws[i].at(self.b) for i in self.workers]
        return [scaled(cluster.compute[i], self.b) for i in self.workers]

    def system(self, cluster: System, batch_laws: Sequence[BatchLaw] | None = None) -> System:
        """The system the candidate runs: its workers' laws at ``b`` (:meth:`laws`), the cluster's delays."""
        laws = self.laws(cluster, batch_laws)
        return System(
            n=len(self.workers),
            K=self.K,
            compute=laws,
            uplink=[cluster.uplink_of(i) for i in self.workers],  # one repeated delay is that delay
            downlink=[cluster.downlink_of(i) for i in self.workers],
            protocol=self.protocol,
            delay_threshold=self.delay_threshold,
            cutoffs=None if self.cutoff_quantile is None else cutoffs_at(laws, self.cutoff_quantile),
        )

    @property
    def config(self) -> tuple[Any, ...]:
        """What the simulated timeline depends on (the step and policy do not)."""
        return (self.workers, self.K, self.b, self.protocol, self.delay_threshold, self.cutoff_quantile)


@dataclass
class Scored:
    """A candidate's replays: per replication the time to target (``inf``: not reached by the horizon), the error
    at the horizon, the mean staleness, the measured update rate and 95th percentile of staleness."""

    candidate: Candidate
    times: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    staleness: list[float] = field(default_factory=list)
    staleness_p95: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    diverged: list[bool] = field(default_factory=list)
    wasted: list[float] = field(default_factory=list)

    @property
    def time_to_target(self) -> float:
        return float(np.median(self.times)) if self.times else math.inf

    @property
    def key(self) -> tuple[float, float]:
        """Rank: the median time to target, then the median error at the horizon."""
        return (self.time_to_target, float(np.median(self.errors)) if self.errors else math.inf)


def evaluate(
    cluster: System,
    problem: Any,
    candidates: Sequence[Candidate],
    *,
    replications: range,
    horizon: float,
    target: float,
    root: int,
    scored: dict[Candidate, Scored] | None = None,
    batch_laws: Sequence[BatchLaw] | None = None,
) -> dict[Candidate, Scored]:
    """Replay each candidate for the given replications up to ``horizon`` (seconds of the timeline); the steps of
    one configuration share its simulated timelines. Results accumulate in ``scored`` (replications already
    done are not redone)."""
    scored = {} if scored is None else scored
    by_config: dict[Any, list[Candidate]] = {}
    for c in candidates:
        by_config.setdefault(c.config, []).append(c)
    for group in by_config.values():
        system = group[0].system(cluster, batch_laws)
        rate = predict(system).update_rate_exact
        for r in replications:
            todo = [c for c in group if len(scored.setdefault(c, Scored(c)).times) <= r]
            if not todo:
                continue
            trace = timeline(system, horizon, derive_seed(root, r, 0), rate)
            tau = trace["staleness"][trace["update"] > 0]
            p95 = float(np.percentile(tau, 95)) if tau.size else math.nan
            span = float(trace.update_times[-1]) if trace.updates else math.nan
            for c in todo:
                res = replay(trace, problem, b=c.b, step=c.step, policy=c.policy, seed=derive_seed(root, r, 1),
                             record=500, stop_below=target)  # fmt: skip
                s = scored[c]
                hit = res.time_to(target)
                bad = res.diverged_at is not None
                s.times.append(math.inf if hit is None or bad or hit > horizon else hit)
                s.errors.append(float(res.error_at([horizon])[0]) if not bad else math.inf)
                s.staleness.append(res.staleness_mean)
                s.staleness_p95.append(p95)
                s.rates.append(trace.updates / span if span > 0 else math.nan)
                s.diverged.append(bad)
                s.wasted.append(float(trace.meta.get("wasted_compute", 0.0)))
    return scored


#: The most updates a candidate's timeline may take to reach the horizon.
MAX_TIMELINE = 2_000_000


def timeline(system: System, horizon: float, seed: int, rate: float | None = None) -> Any:
    """A simulated trace of ``system`` whose last update is at or past ``horizon`` (seconds): as many updates as
    the exact ``rate`` gives with a margin, or -- without a rate (ringmaster, random delays) or when the draw
    falls short -- more, from the rate measured on the last try; at most :data:`MAX_TIMELINE` updates."""
    known = rate is not None and math.isfinite(rate) and rate > 0
    updates = max(20, math.ceil(1.2 * horizon * rate) + 10) if known else 2000  # type: ignore[operator]
    while True:
        trace = simulate(system, updates, seed=seed)
        span = float(trace.update_times[-1]) if trace.updates else 0.0
        if span >= horizon or updates >= MAX_TIMELINE:
            return trace
        grow = 1.25 * horizon / span if span > 0 else 4.0
        updates = min(MAX_TIMELINE, max(updates + 10, math.ceil(updates * min(grow, 8.0))))
