"""Ringmaster with fixed delays, streamed event by event without the events that need none: the compiled event
engine's Summary, faster (:func:`ring_summary`).

Ringmaster (K = 1, a delay threshold R) with one fixed delay each way: each worker's gradients and the versions
sent to it travel in order, so two queues per worker hold everything in flight, and a worker's finish and, most of
the time, the version its gradient brings back need no event of their own (:mod:`._ring_kernel` says how).
:func:`stalegrad.sim.compiled.simulate_compiled_summary` uses this loop for such systems: the same random numbers
and the same Summary, bit for bit (the property tests compare them). A round that starts and arrives at one instant
(zero compute time and uplink delay) needs the event loop's order: the run is then done again by the event loop.
The Trace (every row) still comes from the event loop.
"""

from __future__ import annotations

import numpy as np

from ..rules import RULES
from ..spec import System
from ..trace import Summary
from .kernel_run import KernelRun, Progress, compile_once

__all__ = ["RingRun", "ready", "ring_summary", "runs_ring"]


def runs_ring(system: System) -> bool:
    """True for ringmaster (stops, K = 1) with one fixed delay each way."""
    small = system.active_system()
    return (
        RULES[system.protocol].stops
        and system.staleness_bound is None
        and isinstance(small.uplink, float)
        and isinstance(small.downlink, float)
    )


class RingRun(KernelRun):
    """One streamed run of :func:`~._ring_kernel.advance_ring`: its arrays, and longer queues when asked
    (:meth:`run` raises ``_Degenerate`` when it meets a case that needs the event loop)."""

    #: places in each worker's queues at first (a few things are ever in flight to or from one worker)
    QUEUE = 8

    def __init__(self, system: System, updates: int, seed: int, warm: int, batches: int, transient: int) -> None:
        from . import _ring_kernel as k

        super().__init__(k, system, updates, seed, mode=1, warm=warm, batches=batches, transient=transient)
        small = self.system
        n = small.n
        assert small.delay_threshold is not None and isinstance(small.uplink, float)
        assert isinstance(small.downlink, float)
        par = np.zeros(k.NPAR, dtype=np.int64)
        par[k.N], par[k.U], par[k.RR] = n, updates, small.delay_threshold
        par[k.WARM], par[k.NB], par[k.SPAN] = warm, batches, max(updates - warm, 1)
        self.par = par
        self.fpar = np.array([small.uplink, small.downlink])
        self.key = np.full(n, k.NONE, dtype=np.int64)
        self.gcap = self.rcap = self.QUEUE
        self.gf, self.gv = np.zeros((n * self.gcap, 3)), np.zeros(n * self.gcap, dtype=np.int64)
        self.rt, self.rv = np.zeros(n * self.rcap), np.zeros(n * self.rcap, dtype=np.int64)
        m = 1 << max(n - 1, 1).bit_length()  # a winner tree over the workers' first events (padded: never first)
        ht, hw = np.full(2 * m, np.inf), np.zeros(2 * m, dtype=np.int64)
        hw[m:] = (np.int64(3) << k.KIND_SHIFT) | np.arange(m)
        self.tree = (ht, ht.view(np.int64), hw)

    def call(self) -> int:
        from ._ring_kernel import advance_ring

        head = (self.par, self.fpar, self.ist, self.fst, self.wi, self.wf, self.C, self.key)
        queues = (self.gf, self.gv, self.rt, self.rv)
        return int(advance_ring(*head, *queues, *self.tree, *self.stats))

    def other(self, status: int) -> None:
        k = self.k
        if status == k.DEGENERATE:
            raise _Degenerate
        if status != k.GROW_QUEUE:  # pragma: no cover - the kernel returns only the codes above
            super().other(status)
            return
        # every queue twice as long, each worker's entries from its head moved to the start of its ring
        n = self.system.n
        gcap, rcap = 2 * self.gcap, 2 * self.rcap
        gf, gv = np.zeros((n * gcap, 3)), np.zeros(n * gcap, dtype=np.int64)
        rt, rv = np.zeros(n * rcap), np.zeros(n * rcap, dtype=np.int64)
        for i in range(n):
            at = i * self.gcap + (self.wi[i, k.GH] + np.arange(self.wi[i, k.GN])) % self.gcap
            gf[i * gcap : i * gcap + at.size], gv[i * gcap : i * gcap + at.size] = self.gf[at], self.gv[at]
            at = i * self.rcap + (self.wi[i, k.RH] + np.arange(self.wi[i, k.RN])) % self.rcap
            rt[i * rcap : i * rcap + at.size], rv[i * rcap : i * rcap + at.size] = self.rt[at], self.rv[at]
        self.wi[:, k.GH] = self.wi[:, k.RH] = 0
        self.gf, self.gv, self.rt, self.rv, self.gcap, self.rcap = gf, gv, rt, rv, gcap, rcap
        self.ist[k.FULL] = 0


class _Degenerate(Exception):
    """The run met a round that starts and arrives at one instant: the event loop must run it."""


def ring_summary(
    system: System, updates: int, *, seed: int, warmup: int, batches: int, transient: int,
    progress: Progress | None = None,
) -> Summary | None:  # fmt: skip
    """The Summary of the compiled event engine's run of ``system`` (which :func:`runs_ring`); ``None`` when the
    run needs the event loop's order (see the module docstring)."""
    ready()
    run = RingRun(system, updates, seed, warmup, batches, transient)
    try:
        run.run(progress)
    except _Degenerate:
        return None
    return run.summary(warmup)


def ready() -> None:
    """Compile the loop (or load it from numba's cache) once per process, as the event loops are."""
    compile_once(lambda system: RingRun(system, 2, 0, 0, 2, 0), "ringmaster", delay_threshold=1)
