"""The compiled event engine: every protocol of :mod:`stalegrad.sim.events`, the identical Trace, tens of times
faster.

The reference engine (:mod:`stalegrad.sim.events`) is a heap of events read by four handlers. Here the same events,
in the same order, with the same handlers, run in numba (:mod:`stalegrad.sim._events_kernel`): every protocol,
random delays, staleness bounds and cancellation, and the Trace of the reference row for row, bit for bit, with the
same ``trace.meta`` counts (events, compute and cancelled time, wasted fraction). :func:`simulate_compiled_summary`
streams the :class:`~stalegrad.trace.Summary` of that Trace instead of keeping rows, in memory that does not grow
with the run. The random numbers are the reference's, from the same streams in the same order
(:mod:`stalegrad.sim.feeds`).

The kernel runs until it needs something (a chunk of draws, more room) or is done; :class:`_Engine` supplies it and
calls again. Compilation (or loading numba's cache) happens once per process, in :func:`warm`, and is left out of
``trace.meta["seconds"]``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..spec import System
from ..trace import Summary, Trace
from .chunks import chunks_summary, runs_in_chunks
from .chunks import ready as chunks_ready
from .epochs import epochs_summary, runs_in_epochs
from .epochs import ready as epochs_ready
from .events import RULES
from .kernel_run import KernelRun, Progress
from .ring import ready as ring_ready
from .ring import ring_summary, runs_ring
from .waiting import ready as waiting_ready
from .waiting import runs_waiting, waiting_summary

__all__ = ["compiled_refusal", "event_loop_summary", "simulate_compiled", "simulate_compiled_summary", "warm"]

#: workers above this do not fit the event key (``worker`` and ``round`` share 61 bits)
MAX_WORKERS = 1 << 20


def compiled_refusal(system: System) -> str | None:
    """Why the compiled engine cannot run ``system`` (``None`` if it can)."""
    if system.n > MAX_WORKERS:
        return f"n must be at most {MAX_WORKERS} for the compiled event engine, got {system.n}"
    return None


_COMPILE_SECONDS: list[float] = []


def warm() -> float:
    """Compile the kernels (or load them from numba's cache) with tiny runs; return the seconds that took (0 after
    the first call in a process)."""
    if _COMPILE_SECONDS:
        return 0.0
    import llvmlite.binding as llvm

    from ..distributions import deterministic
    from ._events_kernel import KEEP_CMOV

    t0 = time.perf_counter()
    llvm.set_option("", KEEP_CMOV)  # only while the kernels compile (or load from the cache)
    try:
        for protocol in ("k-batch-async", "k-sync"):  # the two kernels, in both modes
            tiny = System(n=2, K=1, compute=deterministic(1.0), protocol=protocol)
            _Engine(tiny, 2, 0, mode=0).run(None)
            _Engine(tiny, 2, 0, mode=1, warm=0, batches=2, transient=0).run(None)
    finally:
        llvm.set_option("", KEEP_CMOV.replace("false", "true"))
    epochs_ready()  # the streamed loops without events
    waiting_ready()
    chunks_ready()
    ring_ready()
    _COMPILE_SECONDS.append(time.perf_counter() - t0)
    return _COMPILE_SECONDS[0]


class _Engine(KernelRun):
    """One run of :mod:`._events_kernel`: its arrays, and the answers to its own requests (room to grow)."""

    def __init__(
        self,
        system: System,
        updates: int,
        seed: int,
        mode: int,
        warm: int = 0,
        batches: int = 1,
        transient: int = 0,
        ahead: bool = True,
    ) -> None:
        from . import _events_kernel as k

        small = system.active_system()
        n, K = small.n, small.K
        # k-batch-async without a bound drops nothing: updates * K rows (otherwise the default room, then grown)
        exact = small.protocol == "k-batch-async" and small.staleness_bound is None
        rows = updates * K if exact else None
        super().__init__(k, system, updates, seed, mode, warm, batches, transient, rows=rows, ahead=ahead)
        rules = RULES[small.protocol]
        wbits = max(1, (n - 1).bit_length())
        par = np.zeros(k.NPAR, dtype=np.int64)
        par[k.N], par[k.KK], par[k.U] = n, K, updates
        par[k.WAITS], par[k.CANCELS] = rules.waits, rules.cancels
        par[k.CURONLY], par[k.TOCONTRIB] = rules.current_only, rules.to_contributors
        bound = small.staleness_bound
        if small.delay_threshold is not None:  # ringmaster drops a gradient of delay >= R, and stops rounds there
            bound = small.delay_threshold - 1
            par[k.RR] = small.delay_threshold
        par[k.BOUND] = -1 if bound is None else bound
        par[k.STOPS] = rules.stops
        par[k.RBITS] = k.KIND_SHIFT - wbits
        par[k.MODE], par[k.WARM], par[k.NB], par[k.SPAN] = mode, warm, batches, max(updates - warm, 1)
        par[k.UPRAND], par[k.DOWNRAND] = self.uprand, self.downrand
        par[k.CUTS] = rules.cutoffs
        self.wf[:, k.CUT] = np.inf if small.cutoffs is None else small.cutoffs
        fpar = np.zeros(2)
        fpar[k.UPFIX] = 0.0 if self.uprand else small.uplink
        fpar[k.DOWNFIX] = 0.0 if self.downrand else small.downlink
        self.par, self.fpar = par, fpar

        # workers that neither wait nor cancel (k-batch-async) run on their own loop (advance_batch_async)
        self.batch_async = not rules.waits and not rules.cancels
        self.acap = self.rcap = 8  # entries per worker in its heaps of gradients in flight and versions travelling
        self.aht, self.ahk, self.ahs = np.zeros(n * 8), np.zeros(n * 8, dtype=np.int64), np.zeros(n * 8, dtype=np.int64)
        self.rht, self.rhk, self.rhs = np.zeros(n * 8), np.zeros(n * 8, dtype=np.int64), np.zeros(n * 8, dtype=np.int64)
        m = 1 << max(n - 1, 1).bit_length()
        self.wk = np.zeros(2 * m, dtype=np.int64)
        self.dht, self.dhk = np.zeros(4 * n + 16), np.zeros(4 * n + 16, dtype=np.int64)
        self.wti = np.zeros(2 * m, dtype=np.int64)  # the tree's times, as int64 bits
        self.ft = np.zeros(n)
        if self.batch_async:  # rings of rounds in flight, by round number; a loser tree
            self.lkey, self.lidx = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
            self.rf, self.ri = np.zeros((n * 8, 3)), np.zeros((n * 8, 2), dtype=np.int64)
        else:  # a pool of gradients in flight; the update's contributors; versions sent to all with a fixed delay
            par[k.BCAST] = not self.downrand and small.downlink > 0
            self.bct, self.bcv = np.zeros(8), np.zeros((8, 2), dtype=np.int64)
            self.bp = np.zeros((1 << (4 * n + 15).bit_length(), 2), dtype=np.int64)
            pcap = 1 << (2 * n + 15).bit_length()  # a power of two: with a fixed uplink, the pool is a ring
            self.pf, self.pv = np.zeros((pcap, 2)), np.zeros(pcap, dtype=np.int64)
            self.pfree = np.arange(pcap, dtype=np.int64)
            self.ist[k.PFN] = pcap
            self.qti, self.qk = np.zeros(pcap, dtype=np.int64), np.zeros(pcap, dtype=np.int64)
            self.batch = np.zeros(K, dtype=np.int64)

    def call(self) -> int:
        head = (self.par, self.fpar, self.ist, self.fst, self.wi, self.wf, self.C, self.UB, self.DB)
        heaps = (self.aht, self.ahk, self.ahs, self.rht, self.rhk, self.rhs)
        kernel: Any  # numba's dispatchers: argument types are checked when they compile
        if self.batch_async:
            from ._events_kernel import advance_batch_async as kernel

            tree = (self.wti, self.wk, self.lkey, self.lidx, self.aht.view(np.int64))
            return int(kernel(*head, *heaps, self.dht, *tree, self.rf, self.ri, *self.outputs()))
        kernel = self.k.advance
        views: tuple[np.ndarray, ...] = (self.wti.view(np.float64), self.ft, self.ft.view(np.int64))
        views += (self.aht.view(np.int64), self.rht.view(np.int64))
        sends = (self.bct, self.bct.view(np.int64), self.bcv, self.bp)
        pool = (self.pf, self.pv, self.pfree, self.qti, self.qk)
        rest = (self.dht, self.dhk, self.wti, self.wk, *views, *sends, *pool, self.batch)
        return int(kernel(*head, *heaps, *rest, *self.outputs()))

    def refilled_down(self) -> None:
        k = self.k
        self.ist[k.DMIN] = int((self.wi[:, k.DEND] - self.wi[:, k.DPOS]).min())

    def other(self, status: int) -> None:
        k = self.k
        if status == k.GROW_ARRIVE:
            self._grow_arrivals()
        elif status == k.GROW_REACH:
            self._grow_reaches()
        elif status == k.GROW_DEAD:
            size = max(2 * self.dht.size, int(self.ist[k.NEED]) + 1)
            self.dht = np.concatenate((self.dht, np.zeros(size - self.dht.size)))
            self.dhk = np.concatenate((self.dhk, np.zeros(size - self.dhk.size, dtype=np.int64)))
        elif status == k.GROW_POOL:
            size = self.pv.size
            self.pf = np.concatenate((self.pf, np.zeros((size, 2))))
            self.pv = np.concatenate((self.pv, np.zeros(size, dtype=np.int64)))
            self.pfree = np.concatenate((np.arange(size, 2 * size, dtype=np.int64), self.pfree))
            self.ist[k.PFN] = size
        elif status == k.GROW_BCAST:
            self._grow_sends()
        elif status == k.GROW_QUEUE:  # a ring, unrolled from its head
            at = (int(self.ist[k.QH]) + np.arange(self.pv.size)) % self.pv.size
            self.pf = np.concatenate((self.pf[at], np.zeros_like(self.pf)))
            self.pv = np.concatenate((self.pv[at], np.zeros_like(self.pv)))
            self.qti = np.concatenate((self.qti[at], np.zeros_like(self.qti)))
            self.qk = np.concatenate((self.qk[at], np.zeros_like(self.qk)))
            self.ist[k.QH] = 0
        else:  # pragma: no cover - the kernel returns only the codes above
            super().other(status)

    def _widen(self, a: np.ndarray, cap: int) -> np.ndarray:
        """Per-worker heaps of ``cap`` entries each, widened to ``2 * cap``."""
        wide = np.zeros((self.system.n, 2 * cap), dtype=a.dtype)
        wide[:, :cap] = a.reshape(self.system.n, cap)
        return wide.ravel()

    def _grow_arrivals(self) -> None:
        """Double the room for each worker's gradients in flight (and, for k-batch-async, its ring of rounds)."""
        n, cap = self.system.n, self.acap
        self.aht, self.ahk, self.ahs = (self._widen(a, cap) for a in (self.aht, self.ahk, self.ahs))
        self.acap = 2 * cap
        if self.batch_async:
            from ._events_kernel import RROUND

            rf, ri = np.zeros((n * 2 * cap, 3)), np.zeros((n * 2 * cap, 2), dtype=np.int64)
            busy = np.flatnonzero(self.ri[:, RROUND])
            where = busy // cap * 2 * cap + (self.ri[busy, RROUND] & (2 * cap - 1))
            rf[where], ri[where] = self.rf[busy], self.ri[busy]
            self.rf, self.ri = rf, ri

    def _grow_reaches(self) -> None:
        """Double the room for each worker's versions travelling (k-batch-async: rings, unrolled from the head)."""
        n, cap = self.system.n, self.rcap
        if self.batch_async:
            k = self.k
            rht, rhk = np.zeros(n * 2 * cap), np.zeros(n * 2 * cap, dtype=np.int64)
            for i in range(n):
                at = i * cap + (int(self.wi[i, k.RH]) + np.arange(int(self.wi[i, k.RN]))) % cap
                rht[i * 2 * cap : i * 2 * cap + at.size] = self.rht[at]
                rhk[i * 2 * cap : i * 2 * cap + at.size] = self.rhk[at]
            self.rht, self.rhk, self.rhs = rht, rhk, np.zeros(n * 2 * cap, dtype=np.int64)
            self.wi[:, k.RH] = 0
            self.ist[k.RFULL] = 0
        else:
            self.rht, self.rhk, self.rhs = (self._widen(a, cap) for a in (self.rht, self.rhk, self.rhs))
        self.rcap = 2 * cap

    def _grow_sends(self) -> None:
        """Double the rings of sends and of their (worker, version) pairs (pairs are kept by absolute index)."""
        k = self.k
        at = (int(self.ist[k.BH]) + np.arange(self.bct.size)) % self.bct.size
        self.bct = np.concatenate((self.bct[at], np.zeros(self.bct.size)))
        self.bcv = np.concatenate((self.bcv[at], np.zeros_like(self.bcv)))
        self.ist[k.BH] = 0  # (BT, BK: unchanged)
        live = np.arange(int(self.ist[k.BP]), int(self.ist[k.PT]))
        bp = np.zeros((2 * len(self.bp), 2), dtype=np.int64)
        bp[live % len(bp)] = self.bp[live % len(self.bp)]
        self.bp = bp

    def finish(self) -> None:
        """Count what the reference does by the last update and this loop does not, or does ahead of it: the
        finishes of cancelled rounds and, for k-batch-async, the versions that reached workers (events here only
        when a round reads them) and the finishes taken ahead; fix the compute time to the reference's."""
        k = self.k
        n = self.system.n
        end = np.inf if self.ist[k.EMPTY] else float(self.fst[k.NOW])
        if not self.batch_async:
            self.ist[k.EVENTS] += int(np.count_nonzero(self.dht[: int(self.ist[k.DN])] <= end))
            self.ist[k.DN] = 0
            self.compute = [float(c) for c in self.wf[:, k.COMPUTE]]
            return
        from ._events_kernel import RROUND, RSENT, RXPRE

        pending = int(np.count_nonzero(self.dht[: int(self.ist[k.DN])] < end))  # versions overtaken on the way
        self.compute = []
        for i in range(n):
            at = i * self.rcap + (int(self.wi[i, k.RH]) + np.arange(int(self.wi[i, k.RN]))) % self.rcap
            pending += int(np.count_nonzero(self.rht[at] < end))
            ring = slice(i * self.acap, (i + 1) * self.acap)
            rounds, sent = self.ri[ring, RROUND], self.rf[ring, RSENT]
            ahead = (rounds != 0) & (sent > end)  # finished here, not by the reference
            pending -= int(np.count_nonzero(ahead))
            where = np.flatnonzero(ahead)
            if where.size:  # the worker's compute time before the first of them
                self.compute.append(float(self.rf[ring, RXPRE][where[np.argmin(rounds[where])]]))
            else:
                self.compute.append(float(self.wf[i, k.COMPUTE]))
        self.ist[k.EVENTS] += pending

    def compute_times(self) -> list[float]:
        return self.compute


def simulate_compiled(system: System, updates: int, *, seed: int, progress: Progress | None = None) -> Trace:
    """Simulate ``updates`` updates of any protocol with the compiled event engine: the reference's Trace.

    ``trace.meta`` also holds ``seconds`` (the run, without compilation) and ``compile_seconds`` (compiling the
    kernel or loading it from numba's cache, in the first run of a process).

    >>> from stalegrad.distributions import shifted_exponential
    >>> system = System(n=4, K=2, tc=1, compute=shifted_exponential(alpha=1, rate=2/3), protocol="k-sync")
    >>> trace = simulate_compiled(system, 100, seed=1)
    >>> from stalegrad.sim.events import simulate_events
    >>> trace.equals(simulate_events(system, 100, seed=1))
    True
    """
    compile_seconds = warm()
    t0 = time.perf_counter()
    engine = _Engine(system, updates, seed, mode=0)
    engine.run(progress)
    trace = engine.trace()
    trace.meta.update(seconds=time.perf_counter() - t0, compile_seconds=compile_seconds)
    return trace


def simulate_compiled_summary(
    system: System,
    updates: int,
    *,
    seed: int,
    warmup: int,
    batches: int,
    transient: int,
    progress: Progress | None = None,
) -> Summary:
    """The :class:`~stalegrad.trace.Summary` of :func:`simulate_compiled`'s Trace, streamed in bounded memory
    (arguments checked by :func:`stalegrad.sim.simulate_summary`)."""
    warm()
    if runs_in_epochs(system):  # the synchronous family with fixed delays: epoch by epoch, the same Summary
        return epochs_summary(
            system, updates, seed=seed, warmup=warmup, batches=batches, transient=transient, progress=progress
        )
    if runs_in_chunks(system):  # k-batch-async without a bound, any delays: in chunks, the same Summary
        return chunks_summary(
            system, updates, seed=seed, warmup=warmup, batches=batches, transient=transient, progress=progress
        )
    if runs_ring(system):  # ringmaster with fixed delays: fewer events, the same Summary
        summary = ring_summary(
            system, updates, seed=seed, warmup=warmup, batches=batches, transient=transient, progress=progress
        )
        if summary is not None:
            return summary
    if runs_waiting(system):  # k-async with fixed delays: arrival by arrival, the same Summary
        summary = waiting_summary(
            system, updates, seed=seed, warmup=warmup, batches=batches, transient=transient, progress=progress
        )
        if summary is not None:
            return summary
    return event_loop_summary(
        system, updates, seed=seed, warmup=warmup, batches=batches, transient=transient, progress=progress
    )


def event_loop_summary(
    system: System, updates: int, *, seed: int, warmup: int, batches: int, transient: int,
    progress: Progress | None = None,
) -> Summary:  # fmt: skip
    """The Summary of the event loop itself, never of the streamed loops that give the same numbers faster (what
    they are checked against)."""
    warm()
    engine = _Engine(system, updates, seed, mode=1, warm=warmup, batches=batches, transient=transient)
    engine.run(progress)
    return engine.summary(warmup)
