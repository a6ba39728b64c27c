"""The reference discrete-event engine: every protocol, random delays, cancellation, a staleness bound.

It is small on purpose, and obviously correct rather than fast: :class:`EventLoop` is a heap of
``(time, kind, worker, round, sequence)`` entries, as small as SimPy's core, and the protocols are a handful of
flags read by four handlers (a worker finishes a round, a gradient reaches the master, a version reaches a worker,
a round starts). For the paper's protocol with fixed delays it gives the identical Trace as the fast simulator
(same draws, same floating-point sums, same tie rules); for everything else it is the simulator.

Rules (DESIGN.md), as the order of events at one instant:

1. a worker finishes a round (and, if it does not wait, starts the next one) -- so a version reaching it at that
   very instant is *not* visible to the new round (a round uses versions that reached it strictly before);
2. gradients reach the master, in worker order, then round order;
3. versions reach workers. A worker that waits (k-async, k-sync, sync) starts its next round on the version that
   just reached it; a worker computing on an older version under a cancelling protocol (k-sync, k-batch-sync,
   sync) abandons that round (its time is counted as wasted) and starts over on the new version.

Random streams (:mod:`stalegrad.streams`): worker ``i`` draws compute times, uplink delays (one per gradient) and
downlink delays (one per version it is sent) from its own compute, uplink and downlink streams.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import System
from ..streams import DOWNLINK, UPLINK, Draws, all_worker_seeds
from ..trace import APPLIED, COLUMNS, LATE, STALE, Trace
from .blocks import ComputeStreams

__all__ = ["EventLoop", "simulate_events"]

# kinds of event, in the order they are taken at one instant
FINISH, ARRIVE, REACH = 0, 1, 2


class EventLoop:
    """A heap of events ``(time, kind, worker, round, sequence, handler, args)``; :meth:`step` takes the first.

    Ties in time are broken by kind, then worker, then round, then the order they were scheduled in, so the
    order of events is deterministic.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.events = 0
        self._queue: list[tuple[Any, ...]] = []
        self._seq = 0

    def schedule(self, time: float, kind: int, worker: int, rnd: int, handler: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._queue, (time, kind, worker, rnd, self._seq, handler, args))
        self._seq += 1

    def step(self) -> None:
        time, _, _, _, _, handler, args = heapq.heappop(self._queue)
        self.now = time
        self.events += 1
        handler(*args)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def run(self, done: Callable[[], bool]) -> None:
        while self._queue and not done():
            self.step()


@dataclass(frozen=True)
class Rules:
    """What a protocol changes: the engine's handlers read these flags and nothing else."""

    waits: bool  # after sending, a worker idles until a version reaches it
    cancels: bool  # a new version cancels a round computing on an older one
    current_only: bool  # the master takes only gradients computed on its current version
    to_contributors: bool  # a new version goes only to the workers whose gradients made it


RULES = {
    "k-batch-async": Rules(waits=False, cancels=False, current_only=False, to_contributors=False),
    "k-async": Rules(waits=True, cancels=False, current_only=False, to_contributors=True),
    "k-sync": Rules(waits=True, cancels=True, current_only=True, to_contributors=False),
    "k-batch-sync": Rules(waits=False, cancels=True, current_only=True, to_contributors=False),
    "sync": Rules(waits=True, cancels=True, current_only=True, to_contributors=False),
}


class _Worker:
    __slots__ = ("block", "busy", "cancelled", "compute", "down", "pos", "reached", "rnd", "start", "up", "used",
                 "xs")  # fmt: skip

    def __init__(self) -> None:
        self.reached = 0  # newest version that has reached the worker
        self.rnd = 0  # rounds started
        self.start = 0.0
        self.used = 0  # version of the current round
        self.busy = False
        self.xs: list[float] = []  # current block of compute times
        self.pos = 0
        self.compute = 0.0  # compute time spent on rounds that finished
        self.cancelled = 0.0  # compute time spent on rounds that were cancelled


class _Run:
    """One simulation: the loop, the workers, the master's state and the rows recorded so far."""

    def __init__(self, system: System, updates: int, seed: int) -> None:
        n = system.n
        self.system, self.updates, self.K = system, updates, system.K
        self.rules = RULES[system.protocol]
        self.bound = system.staleness_bound
        self.loop = EventLoop()
        self.streams = ComputeStreams(system, seed, updates * system.K)
        seqs = all_worker_seeds(seed, n)
        self.up = [Draws(system.uplink, s[UPLINK], "uplink").next for s in seqs]
        self.down = [Draws(system.downlink, s[DOWNLINK], "downlink").next for s in seqs]
        self.workers = [_Worker() for _ in range(n)]
        self.version = 0  # the master's: updates applied so far
        self.batch: list[int] = []  # workers whose gradients are in the update being gathered
        self.update_times: list[float] = []
        self.rows: dict[str, list[Any]] = {k: [] for k in COLUMNS}

    # ---------------------------------------------------------------------------------------------- handlers

    def start(self, i: int, version: int) -> None:
        """Worker ``i`` starts a round now, on ``version``."""
        w = self.workers[i]
        if w.pos == len(w.xs):
            w.xs, w.pos = self.streams.draw(i).tolist(), 0
        x = w.xs[w.pos]
        w.pos += 1
        w.rnd += 1
        w.start, w.used, w.busy = self.loop.now, version, True
        self.loop.schedule(w.start + x, FINISH, i, w.rnd, self.finish, i, w.rnd, x)

    def finish(self, i: int, rnd: int, x: float) -> None:
        """Worker ``i`` finishes round ``rnd`` (unless it was cancelled) and sends the gradient."""
        w = self.workers[i]
        if rnd != w.rnd or not w.busy:
            return  # the round was cancelled
        sent = w.start + x
        w.compute += x
        self.loop.schedule(sent + self.up[i](), ARRIVE, i, rnd, self.arrive, i, rnd, w.start, sent, w.used)
        w.busy = False
        if not self.rules.waits:
            self.start(i, w.reached)  # the versions that reached it strictly before now

    def arrive(self, i: int, rnd: int, start: float, sent: float, version: int) -> None:
        """A gradient reaches the master."""
        tau = self.version - version  # its staleness if it is applied in the next update
        if self.rules.current_only and version < self.version:
            reason = LATE
        elif self.bound is not None and tau > self.bound:
            reason = STALE
        else:
            reason = APPLIED
        self._record(i, rnd, start, sent, version, self.version + 1 if reason == APPLIED else -1, tau, reason)
        if reason != APPLIED:
            if self.rules.waits and not self.rules.current_only:
                self.send(i, self.version)  # k-async: a dropped worker must not wait forever
            return
        self.batch.append(i)
        if len(self.batch) == self.K:
            self.version += 1
            self.update_times.append(self.loop.now)
            recipients = self.batch if self.rules.to_contributors else range(self.system.n)
            for k in recipients:
                self.send(k, self.version)
            self.batch = []

    def send(self, i: int, version: int) -> None:
        self.loop.schedule(self.loop.now + self.down[i](), REACH, i, version, self.reach, i, version)

    def reach(self, i: int, version: int) -> None:
        """``version`` reaches worker ``i``."""
        w = self.workers[i]
        w.reached = max(w.reached, version)
        if not w.busy:
            if self.rules.waits:
                self.start(i, w.reached)
        elif self.rules.cancels and w.used < w.reached:
            w.cancelled += self.loop.now - w.start
            w.busy = False  # its pending finish is ignored
            self.start(i, w.reached)

    def _until(self, events: int) -> Callable[[], bool]:
        return lambda: self.version >= self.updates or self.loop.events >= events

    def _record(self, *values: Any) -> None:
        t = self.loop.now
        i, rnd, start, sent, version, update, tau, reason = values
        for key, value in zip(COLUMNS, (i, rnd, start, sent, t, version, update, tau, reason), strict=True):
            self.rows[key].append(value)

    # --------------------------------------------------------------------------------------------- running

    def run(self, progress: Callable[[int, int], None] | None = None) -> Trace:
        for i in range(self.system.n):
            self.start(i, 0)
        total = self.updates * self.K
        if progress is None:
            self.loop.run(lambda: self.version >= self.updates)
        else:  # report about every 2**16 events
            while self.version < self.updates and self.loop.pending:
                self.loop.run(self._until(self.loop.events + (1 << 16)))
                progress(self.version * self.K, total)
        cols = {k: np.asarray(v, dtype=COLUMNS[k]) for k, v in self.rows.items()}
        compute = sum(w.compute for w in self.workers)
        cancelled = sum(w.cancelled for w in self.workers)
        meta = {
            "engine": "events",
            "events": self.loop.events,
            "compute_time": compute,
            "cancelled_time": cancelled,
            "wasted_fraction": cancelled / (compute + cancelled) if compute + cancelled > 0 else 0.0,
        }
        return Trace(cols, np.asarray(self.update_times), self.system, self.streams.seed, meta)


def simulate_events(
    system: System, updates: int, *, seed: int, progress: Callable[[int, int], None] | None = None
) -> Trace:
    """Simulate ``updates`` updates of any protocol with the event engine (see the module docstring).

    The Trace has a row for every gradient that reached the master up to the last update (dropped ones with
    ``update == -1`` and their reason); ``trace.meta`` holds the number of events and the wasted (cancelled)
    compute time.
    """
    return _Run(system, updates, seed).run(progress)
