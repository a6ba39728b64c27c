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
from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec import System
from ..subsets import to_full
from ..trace import COLUMNS, Summary, Trace
from .events import RULES, work_meta
from .feeds import Feed, Feeds

__all__ = ["compiled_refusal", "simulate_compiled", "simulate_compiled_summary", "warm"]

Progress = Callable[[int, int], None]

#: the Trace columns the kernels write, in their argument order
_KERNEL_COLUMNS = ("worker", "round", "start", "sent", "arrive", "version", "update", "staleness", "dropped")
#: events between two progress reports (as the reference engine)
PROGRESS_EVENTS = 1 << 16
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
    _COMPILE_SECONDS.append(time.perf_counter() - t0)
    return _COMPILE_SECONDS[0]


class _Engine:
    """One run: the kernel's arrays, the random streams, and the loop that answers the kernel's requests."""

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

        self.k = k
        self.full = system  # idle workers: the kernel runs the active ones, numbered 0 .. M-1 (System.active_system)
        system = system.active_system()
        n, K = system.n, system.K
        self.system, self.updates, self.seed, self.mode = system, updates, seed, mode
        rules = RULES[system.protocol]
        wbits = max(1, (n - 1).bit_length())
        par = np.zeros(k.NPAR, dtype=np.int64)
        par[k.N], par[k.KK], par[k.U] = n, K, updates
        par[k.WAITS], par[k.CANCELS] = rules.waits, rules.cancels
        par[k.CURONLY], par[k.TOCONTRIB] = rules.current_only, rules.to_contributors
        par[k.BOUND] = -1 if system.staleness_bound is None else system.staleness_bound
        par[k.RBITS] = k.KIND_SHIFT - wbits
        par[k.MODE], par[k.WARM], par[k.NB], par[k.SPAN] = mode, warm, batches, max(updates - warm, 1)
        uprand = not isinstance(system.uplink, float)
        downrand = not isinstance(system.downlink, float)
        par[k.UPRAND], par[k.DOWNRAND] = uprand, downrand
        fpar = np.zeros(2)
        fpar[k.UPFIX] = 0.0 if uprand else system.uplink
        fpar[k.DOWNFIX] = 0.0 if downrand else system.downlink
        self.par, self.fpar = par, fpar
        self.ist = np.zeros(k.NIST, dtype=np.int64)
        self.ist[k.LIMIT] = np.iinfo(np.int64).max
        self.fst = np.zeros(k.NFST)
        self.wi = np.zeros((n, k.NWI), dtype=np.int64)
        self.wf = np.zeros((n, k.NWF))

        # compute times: worker i's block at C[coff[i]:coff[i] + sizes[i]]; its delays at UB, DB[i * L:(i + 1) * L]
        self.feeds = Feeds(self.full, seed, updates * K, ahead=ahead)
        sizes = self.feeds.sizes
        self.coff = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.C = np.zeros(int(sizes.sum()))
        self.L = self.feeds.max_chunk
        self.UB = np.zeros(n * self.L if self.feeds.up else 1)
        self.DB = np.zeros(n * self.L if self.feeds.down else 1)
        self.wi[:, k.UPOS] = self.wi[:, k.UEND] = np.arange(n) * self.L
        self.wi[:, k.DPOS] = self.wi[:, k.DEND] = np.arange(n) * self.L
        for i in range(n):
            self._refill(self.feeds.compute[i], self.C, int(self.coff[i]), i, k.CPOS, k.CEND)

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
            par[k.BCAST] = not downrand and system.downlink > 0
            self.bct, self.bcv = np.zeros(8), np.zeros((8, 2), dtype=np.int64)
            self.bp = np.zeros((1 << (4 * n + 15).bit_length(), 2), dtype=np.int64)
            pcap = 1 << (2 * n + 15).bit_length()  # a power of two: with a fixed uplink, the pool is a ring
            self.pf, self.pv = np.zeros((pcap, 2)), np.zeros(pcap, dtype=np.int64)
            self.pfree = np.arange(pcap, dtype=np.int64)
            self.ist[k.PFN] = pcap
            self.qti, self.qk = np.zeros(pcap, dtype=np.int64), np.zeros(pcap, dtype=np.int64)
            self.batch = np.zeros(K, dtype=np.int64)

        if mode == 0:
            # k-batch-async without a bound drops nothing: updates * K rows; otherwise room for the first updates,
            # then for the whole run at the rate of rows so far (GROW_ROWS)
            exact = system.protocol == "k-batch-async" and system.staleness_bound is None
            rows = updates * K if exact else min(updates, 1000) * max(n, K) + 64
            self.cols = {c: np.empty(rows, dtype=dt) for c, dt in COLUMNS.items()}
            self.times = np.empty(updates)
            i8, f8 = np.zeros(0, dtype=np.int64), np.zeros(0)
            self.stats = [i8, f8, i8, f8, i8, f8]  # the summary's arrays, unused
        else:
            self.cols = {c: np.empty(0, dtype=dt) for c, dt in COLUMNS.items()}
            self.times = np.empty(0)
            # hist, bsum, bcnt, wsum, wcnt, trsum
            self.stats = [
                np.zeros(64, dtype=np.int64),
                np.zeros(batches),
                np.zeros(batches, dtype=np.int64),
                np.zeros(n),
                np.zeros(n, dtype=np.int64),
                np.zeros(transient),
            ]

    # ------------------------------------------------------------------------------------------ the streams

    def _refill(self, feed: Feed, buf: np.ndarray, off: int, i: int, pos: int, end: int) -> None:
        x = feed.take()
        buf[off : off + x.size] = x
        self.wi[i, pos] = off
        self.wi[i, end] = off + x.size

    # ------------------------------------------------------------------------------------------- running

    def _call(self) -> int:
        c = self.cols
        outputs: tuple[np.ndarray, ...] = tuple(c[name] for name in _KERNEL_COLUMNS)
        outputs += (self.times, *self.stats)
        head = (self.par, self.fpar, self.ist, self.fst, self.wi, self.wf, self.C, self.UB, self.DB)
        heaps = (self.aht, self.ahk, self.ahs, self.rht, self.rhk, self.rhs)
        kernel: Any  # numba's dispatchers: argument types are checked when they compile
        if self.batch_async:
            from ._events_kernel import advance_batch_async as kernel

            tree = (self.wti, self.wk, self.lkey, self.lidx, self.aht.view(np.int64))
            return int(kernel(*head, *heaps, self.dht, *tree, self.rf, self.ri, *outputs))
        kernel = self.k.advance
        views: tuple[np.ndarray, ...] = (self.wti.view(np.float64), self.ft, self.ft.view(np.int64))
        views += (self.aht.view(np.int64), self.rht.view(np.int64))
        sends = (self.bct, self.bct.view(np.int64), self.bcv, self.bp)
        pool = (self.pf, self.pv, self.pfree, self.qti, self.qk)
        rest = (self.dht, self.dhk, self.wti, self.wk, *views, *sends, *pool, self.batch)
        return int(kernel(*head, *heaps, *rest, *outputs))

    def run(self, progress: Progress | None) -> None:
        try:
            self._run(progress)
        finally:
            self.feeds.close()

    def _run(self, progress: Progress | None) -> None:
        k = self.k
        total = self.updates * self.system.K
        step = PROGRESS_EVENTS if progress is not None else None
        while True:
            if step is not None:
                self.ist[k.LIMIT] = self.ist[k.EVENTS] + step
            status = self._call()
            if status == k.DONE:
                break
            if status == k.PAUSE:
                assert progress is not None
                progress(int(self.ist[k.V]) * self.system.K, total)
            elif status == k.REFILL_COMPUTE:
                i = int(self.ist[k.WHO])
                self._refill(self.feeds.compute[i], self.C, int(self.coff[i]), i, k.CPOS, k.CEND)
            elif status == k.REFILL_UP:
                i = int(self.ist[k.WHO])
                self._refill(self.feeds.up[i], self.UB, i * self.L, i, k.UPOS, k.UEND)
            elif status == k.REFILL_DOWN:
                i = int(self.ist[k.WHO])
                self._refill(self.feeds.down[i], self.DB, i * self.L, i, k.DPOS, k.DEND)
                self.ist[k.DMIN] = int((self.wi[:, k.DEND] - self.wi[:, k.DPOS]).min())
            elif status == k.GROW_ROWS:
                size, ver = len(self.cols["worker"]), int(self.ist[k.V])
                new = max(2 * size, int(size / max(ver, 1) * self.updates * 1.02) + 1024)
                for name, col in self.cols.items():
                    grown = np.empty(new, dtype=col.dtype)
                    grown[:size] = col
                    self.cols[name] = grown
            elif status == k.GROW_ARRIVE:
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
            elif status == k.GROW_HIST:
                hist = self.stats[0]
                self.stats[0] = np.zeros(max(2 * hist.size, int(self.ist[k.NEED])), dtype=np.int64)
                self.stats[0][: hist.size] = hist
            else:  # pragma: no cover - the kernel returns only the codes above
                raise RuntimeError(f"unexpected kernel status {status}")
        self._count_pending()
        if progress is not None:
            progress(int(self.ist[k.V]) * self.system.K, total)

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

    def _count_pending(self) -> None:
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

    def meta(self) -> dict[str, Any]:
        k = self.k
        compute = sum(self.compute)
        cancelled = sum(float(c) for c in self.wf[:, k.CANCEL])
        work = work_meta(compute, cancelled, float(self.fst[k.DROPT]))
        return {"engine": "compiled", "events": int(self.ist[k.EVENTS]), **work}

    def trace(self) -> Trace:
        rows = int(self.ist[self.k.ROWS])
        # the rows, in place unless that keeps more than a quarter of the columns unused
        cols = {c: a[:rows] if 4 * rows >= 3 * a.size else a[:rows].copy() for c, a in self.cols.items()}
        to_full(self.full, cols)
        return Trace(cols, self.times[: int(self.ist[self.k.V])], self.full, self.seed, self.meta())


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
    if uses_heap_engine(system):
        from .heap_engine import simulate_heap, warm_heap

        compile_seconds += warm_heap()
        t0 = time.perf_counter()
        trace = simulate_heap(system, updates, seed=seed, progress=progress)
        trace.meta.update(compile_seconds=compile_seconds)
        return trace
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
    if uses_heap_engine(system):
        from .heap_engine import simulate_heap_summary, warm_heap

        warm_heap()
        return simulate_heap_summary(
            system, updates, seed=seed, warmup=warmup, batches=batches, transient=transient, progress=progress
        )
    engine = _Engine(system, updates, seed, mode=1, warm=warmup, batches=batches, transient=transient)
    engine.run(progress)
    k = engine.k
    hist, bsum, bcnt, wsum, wcnt, trsum = engine.stats
    meta = engine.meta()
    if system.workers is not None:  # per worker of the whole system (idle ones: zeros)
        wsum, wcnt = _spread(wsum, system), _spread(wcnt, system)
    return Summary(
        system=system,
        seed=seed,
        updates=int(engine.ist[k.V]),
        warmup=warmup,
        gradients=int(engine.ist[k.GRAD]),
        hist=hist,
        batch_sum=bsum,
        batch_count=bcnt,
        worker_sum=wsum,
        worker_count=wcnt,
        transient_sum=trsum,
        t_warmup=float(engine.fst[k.T_WARM]) if warmup > 0 else 0.0,
        t_end=float(engine.fst[k.T_END]),
        max_staleness=int(engine.ist[k.MAXTAU]),
        dropped=int(engine.ist[k.DROPPED]),
        wasted_compute=float(meta["wasted_compute"]),
    )


def uses_heap_engine(system: System) -> bool:
    """True for the protocols that stop or abandon rounds (ringmaster, mindflayer): :mod:`.heap_engine` runs them."""
    rules = RULES[system.protocol]
    return rules.stops or rules.cutoffs


def _spread(per_active: np.ndarray, system: System) -> np.ndarray:
    out = np.zeros(system.n, dtype=per_active.dtype)
    out[list(system.active)] = per_active
    return out
