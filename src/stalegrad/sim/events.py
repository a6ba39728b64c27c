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
3. versions reach workers. A worker that waits (k-async, k-sync, sync, ringmaster) starts its next round on the
   version that just reached it; a worker computing on an older version under a cancelling protocol (k-sync,
   k-batch-sync, sync, rennala, mindflayer) abandons that round (its time is counted as wasted) and starts over on
   the new version; under ringmaster it does so only when the version is ``R`` or more ahead of its round's.

The protocols of 2023-2025 add two rules. Ringmaster ASGD (Maranjyan, Tyurin & Richtarik, ICML 2025, Algorithm 5,
"with calculation stops") is k-async with ``K = 1`` whose master drops a gradient of delay ``>= R`` on arrival and,
at each update, sends the new version to every worker whose round in progress has reached delay ``R`` (once per
round): the *stop*, which abandons the round when it reaches the worker. MindFlayer SGD (Maranjyan, Shaikh Omar &
Richtarik, UAI 2025) is rennala whose worker ``i`` abandons a round still computing ``cutoffs[i]`` seconds after it
started (an event of the finish kind at that instant) and starts over. Idle workers (``System.workers``) start no
round and are sent no version.

Random streams (:mod:`stalegrad.streams`): worker ``i`` draws compute times, uplink delays (one per gradient) and
downlink delays (one per version it is sent) from its own compute, uplink and downlink streams, with its own
delay laws when the system has per-worker delays (``System.uplink_of(i)``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import numpy as np

from ..rules import RULES
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


class _Worker:
    __slots__ = ("block", "busy", "cancelled", "compute", "down", "pos", "reached", "rnd", "start", "stopped", "up",
                 "used", "xs")  # fmt: skip

    def __init__(self) -> None:
        self.reached = 0  # newest version that has reached the worker
        self.rnd = 0  # rounds started
        self.start = 0.0
        self.used = 0  # version of the current round
        self.busy = False
        self.xs: list[float] = []  # current block of compute times
        self.pos = 0
        self.compute = 0.0  # compute time spent on rounds that finished
        self.cancelled = 0.0  # compute time spent on rounds that were cancelled (or abandoned)
        self.stopped = 0  # (ringmaster) the round a stop was sent for


class _Run:
    """One simulation: the loop, the workers, the master's state and the rows recorded so far."""

    def __init__(self, system: System, updates: int, seed: int) -> None:
        n = system.n
        self.system, self.updates, self.K = system, updates, system.K
        self.rules = RULES[system.protocol]
        self.bound = system.staleness_bound
        self.R = system.delay_threshold
        if self.R is not None:  # ringmaster drops a gradient of delay >= R
            self.bound = self.R - 1
        self.cut = system.cutoffs
        self.active = system.active
        self.loop = EventLoop()
        self.streams = ComputeStreams(system, seed, updates * system.K)
        seqs = all_worker_seeds(seed, n)
        self.up = [Draws(system.uplink_of(i), s[UPLINK], "uplink").next for i, s in enumerate(seqs)]
        self.down = [Draws(system.downlink_of(i), s[DOWNLINK], "downlink").next for i, s in enumerate(seqs)]
        self.workers = [_Worker() for _ in range(n)]
        self.version = 0  # the master's: updates applied so far
        self.batch: list[int] = []  # workers whose gradients are in the update being gathered
        self.update_times: list[float] = []
        self.rows: dict[str, list[Any]] = {k: [] for k in COLUMNS}
        self.dropped_time = 0.0  # compute time of the gradients dropped (sent - start, in arrival order)

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
        if self.cut is not None and x > self.cut[i]:  # mindflayer: abandoned at the cutoff
            self.loop.schedule(w.start + self.cut[i], FINISH, i, w.rnd, self.abandon, i, w.rnd)
            return
        self.loop.schedule(w.start + x, FINISH, i, w.rnd, self.finish, i, w.rnd, x)

    def abandon(self, i: int, rnd: int) -> None:
        """Worker ``i`` gives up round ``rnd`` at its cutoff (unless it was cancelled) and starts over."""
        w = self.workers[i]
        if rnd != w.rnd or not w.busy:
            return
        w.cancelled += self.loop.now - w.start
        w.busy = False
        self.start(i, w.reached)

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
            self.dropped_time += sent - start
            if self.rules.waits and not self.rules.current_only:
                self.send(i, self.version)  # k-async: a dropped worker must not wait forever
            return
        self.batch.append(i)
        if len(self.batch) == self.K:
            self.version += 1
            self.update_times.append(self.loop.now)
            recipients = self.batch if self.rules.to_contributors else self.active
            for k in recipients:
                self.send(k, self.version)
            self.batch = []
            if self.rules.stops:
                self.stop_stale()

    def stop_stale(self) -> None:
        """Ringmaster: the new version goes to every worker whose round in progress has delay >= R, once a round."""
        assert self.R is not None
        for k in self.active:
            w = self.workers[k]
            if w.busy and self.version - w.used >= self.R and w.stopped != w.rnd:
                w.stopped = w.rnd
                self.send(k, self.version)

    def send(self, i: int, version: int) -> None:
        self.loop.schedule(self.loop.now + self.down[i](), REACH, i, version, self.reach, i, version)

    def reach(self, i: int, version: int) -> None:
        """``version`` reaches worker ``i``."""
        w = self.workers[i]
        w.reached = max(w.reached, version)
        if not w.busy:
            if self.rules.waits:
                self.start(i, w.reached)
        elif (self.rules.cancels and w.used < w.reached) or (
            self.rules.stops and self.R is not None and w.reached - w.used >= self.R
        ):
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
        for i in self.active:
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
        meta = {"engine": "events", "events": self.loop.events, **work_meta(compute, cancelled, self.dropped_time)}
        return Trace(cols, np.asarray(self.update_times), self.system, self.streams.seed, meta)


def work_meta(compute: float, cancelled: float, dropped: float) -> dict[str, float]:
    """What a run's compute time went to: ``compute_time`` (rounds finished), ``cancelled_time`` (rounds cancelled,
    stopped or abandoned), ``dropped_time`` (the gradients dropped) and ``wasted_compute``, the fraction of all
    compute time spent on work never applied, ``(cancelled + dropped) / (compute + cancelled)``."""
    total = compute + cancelled
    return {
        "compute_time": compute,
        "cancelled_time": cancelled,
        "dropped_time": dropped,
        "wasted_compute": (cancelled + dropped) / total if total > 0 else 0.0,
    }


def simulate_events(
    system: System, updates: int, *, seed: int, progress: Callable[[int, int], None] | None = None
) -> Trace:
    """Simulate ``updates`` updates of any protocol with the event engine (see the module docstring).

    The Trace has a row for every gradient that reached the master up to the last update (dropped ones with
    ``update == -1`` and their reason); ``trace.meta`` holds the number of events and the wasted (cancelled)
    compute time.
    """
    return _Run(system, updates, seed).run(progress)
