"""The compiled engine of the protocols that stop or abandon rounds: ringmaster and mindflayer.

:mod:`stalegrad.sim.events` is the reference; :mod:`._heap_kernel` runs its events, in its order, with its
handlers, in numba, and gives the identical Trace (row for row, bit for bit) with the same ``trace.meta`` counts,
or streams its :class:`~stalegrad.trace.Summary` (mode 1) in memory that does not grow with the run.
:func:`stalegrad.sim.compiled.simulate_compiled` sends these protocols here; the other protocols keep their
specialised loops (:mod:`._events_kernel`). Idle workers are left out of the kernel, which runs the active ones
(:meth:`~stalegrad.spec.System.active_system`) on their own random streams (:class:`~.feeds.Feeds`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec import System
from ..trace import COLUMNS, Summary, Trace
from .events import RULES, work_meta
from .feeds import Feed, Feeds

__all__ = ["simulate_heap", "simulate_heap_summary", "warm_heap"]

Progress = Callable[[int, int], None]
PROGRESS_EVENTS = 1 << 16
_KERNEL_COLUMNS = ("worker", "round", "start", "sent", "arrive", "version", "update", "staleness", "dropped")


class _HeapRun:
    """One run: the kernel's arrays, the streams, and the loop that answers the kernel's requests."""

    def __init__(
        self,
        system: System,
        updates: int,
        seed: int,
        mode: int = 0,
        warm: int = 0,
        batches: int = 1,
        transient: int = 0,
    ) -> None:
        from . import _heap_kernel as k

        self.k, self.full, self.seed, self.updates = k, system, seed, updates
        small = system.active_system()
        n, K = small.n, small.K
        rules = RULES[system.protocol]
        par = np.zeros(k.NPAR, dtype=np.int64)
        par[k.N], par[k.KK], par[k.U] = n, K, updates
        par[k.WAITS], par[k.CANCELS], par[k.CURONLY] = rules.waits, rules.cancels, rules.current_only
        par[k.TOCONTRIB], par[k.STOPS], par[k.CUTS] = rules.to_contributors, rules.stops, rules.cutoffs
        bound = small.staleness_bound
        if small.delay_threshold is not None:  # ringmaster drops a gradient of delay >= R
            bound = small.delay_threshold - 1
            par[k.RR] = small.delay_threshold
        par[k.BOUND] = -1 if bound is None else bound
        par[k.RBITS] = k.KIND_SHIFT - max(1, (n - 1).bit_length())
        uprand, downrand = not isinstance(small.uplink, float), not isinstance(small.downlink, float)
        par[k.UPRAND], par[k.DOWNRAND] = uprand, downrand
        par[k.MODE], par[k.WARM], par[k.NB], par[k.SPAN] = mode, warm, batches, max(updates - warm, 1)
        fpar = np.array([0.0 if uprand else small.uplink, 0.0 if downrand else small.downlink])
        self.cut = np.array(small.cutoffs if small.cutoffs is not None else [np.inf] * n, dtype=np.float64)
        self.par, self.fpar = par, fpar
        self.ist = np.zeros(k.NIST, dtype=np.int64)
        self.ist[k.LIMIT] = np.iinfo(np.int64).max
        self.fst = np.zeros(k.NFST)
        self.wi = np.zeros((n, k.NWI), dtype=np.int64)
        self.wf = np.zeros((n, k.NWF))
        self.feeds = Feeds(system, seed, updates * K)
        sizes = self.feeds.sizes
        self.coff = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.C = np.zeros(int(sizes.sum()))
        self.L = self.feeds.max_chunk
        self.UB = np.zeros(n * self.L if uprand else 1)
        self.DB = np.zeros(n * self.L if downrand else 1)
        self.wi[:, k.UPOS] = self.wi[:, k.UEND] = np.arange(n) * self.L
        self.wi[:, k.DPOS] = self.wi[:, k.DEND] = np.arange(n) * self.L
        for i in range(n):
            self._refill(self.feeds.compute[i], self.C, int(self.coff[i]), i, k.CPOS, k.CEND)
        self.batch = np.zeros(K, dtype=np.int64)
        cap = 4 * n + 64
        self.heap = [np.zeros(cap), np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap), np.zeros(cap),
                     np.zeros(cap, np.int64)]  # fmt: skip
        rows = min(updates, 1000) * max(n, K) + 64 if mode == 0 else 0
        self.cols = {c: np.empty(rows, dtype=dt) for c, dt in COLUMNS.items()}
        self.times = np.empty(updates if mode == 0 else 0)
        # the Summary's statistics (mode 1): hist, batch sums and counts, per-worker sums and counts, transient
        self.stats = [np.zeros(64 if mode else 0, np.int64), np.zeros(batches if mode else 0),
                      np.zeros(batches if mode else 0, np.int64), np.zeros(n if mode else 0),
                      np.zeros(n if mode else 0, np.int64), np.zeros(transient)]  # fmt: skip

    def _refill(self, feed: Feed, buf: np.ndarray, off: int, i: int, pos: int, end: int) -> None:
        x = feed.take()
        buf[off : off + x.size] = x
        self.wi[i, pos] = off
        self.wi[i, end] = off + x.size

    def run(self, progress: Progress | None) -> None:
        try:
            self._run(progress)
        finally:
            self.feeds.close()

    def _run(self, progress: Progress | None) -> None:
        from ._heap_kernel import advance_heap

        kernel: Any = advance_heap  # numba's dispatcher: argument types are checked when it compiles
        k = self.k
        total = self.updates * self.full.K
        while True:
            if progress is not None:
                self.ist[k.LIMIT] = self.ist[k.EVENTS] + PROGRESS_EVENTS
            outputs = tuple(self.cols[c] for c in _KERNEL_COLUMNS)
            head = (self.par, self.fpar, self.cut, self.ist, self.fst, self.wi, self.wf, self.C, self.UB, self.DB)
            status = int(kernel(*head, self.batch, *self.heap, *outputs, self.times, *self.stats))
            if status == k.DONE:
                break
            if status == k.PAUSE:
                assert progress is not None
                progress(int(self.ist[k.V]) * self.full.K, total)
            elif status == k.REFILL_COMPUTE:
                i = int(self.ist[k.WHO])
                self._refill(self.feeds.compute[i], self.C, int(self.coff[i]), i, k.CPOS, k.CEND)
            elif status == k.REFILL_UP:
                i = int(self.ist[k.WHO])
                self._refill(self.feeds.up[i], self.UB, i * self.L, i, k.UPOS, k.UEND)
            elif status == k.REFILL_DOWN:
                i = int(self.ist[k.WHO])
                self._refill(self.feeds.down[i], self.DB, i * self.L, i, k.DPOS, k.DEND)
            elif status == k.GROW_ROWS:
                size, ver = len(self.cols["worker"]), int(self.ist[k.V])
                new = max(2 * size, int(size / max(ver, 1) * self.updates * 1.02) + 1024)
                for name, col in self.cols.items():
                    grown = np.empty(new, dtype=col.dtype)
                    grown[:size] = col
                    self.cols[name] = grown
            elif status == k.GROW_HIST:
                hist = self.stats[0]
                self.stats[0] = np.zeros(max(2 * hist.size, int(self.ist[k.NEED])), dtype=np.int64)
                self.stats[0][: hist.size] = hist
            elif status == k.GROW_HEAP:
                self.heap = [np.concatenate((a, np.zeros_like(a))) for a in self.heap]
            else:  # pragma: no cover - the kernel returns only the codes above
                raise RuntimeError(f"unexpected kernel status {status}")
        if progress is not None:
            progress(int(self.ist[k.V]) * self.full.K, total)

    def meta(self) -> dict[str, Any]:
        k = self.k
        compute = sum(float(c) for c in self.wf[:, k.COMPUTE])  # in worker order, as the reference sums
        cancelled = sum(float(c) for c in self.wf[:, k.CANCEL])
        work = work_meta(compute, cancelled, float(self.fst[k.DROPT]))
        return {"engine": "compiled", "events": int(self.ist[k.EVENTS]), **work}

    def trace(self) -> Trace:
        from ..subsets import to_full

        rows = int(self.ist[self.k.ROWS])
        cols = {c: a[:rows].copy() for c, a in self.cols.items()}
        to_full(self.full, cols)
        return Trace(cols, self.times[: int(self.ist[self.k.V])].copy(), self.full, self.seed, self.meta())

    def summary(self, warmup: int) -> Summary:
        k = self.k
        hist, bsum, bcnt, wsum, wcnt, trsum = self.stats
        spread = np.zeros(self.full.n), np.zeros(self.full.n, dtype=np.int64)
        active = list(self.full.active)
        spread[0][active], spread[1][active] = wsum, wcnt
        return Summary(
            system=self.full,
            seed=self.seed,
            updates=int(self.ist[k.V]),
            warmup=warmup,
            gradients=int(self.ist[k.GRAD]),
            hist=hist,
            batch_sum=bsum,
            batch_count=bcnt,
            worker_sum=spread[0],
            worker_count=spread[1],
            transient_sum=trsum,
            t_warmup=float(self.fst[k.T_WARM]) if warmup > 0 else 0.0,
            t_end=float(self.fst[k.T_END]),
            max_staleness=int(self.ist[k.MAXTAU]),
            dropped=int(self.ist[k.DROPPED]),
            wasted_compute=float(self.meta()["wasted_compute"]),
        )


_COMPILE_SECONDS: list[float] = []


def warm_heap() -> float:
    """Compile the kernel (or load it from numba's cache) with a tiny run; the seconds that took (0 after the first
    call in a process)."""
    if _COMPILE_SECONDS:
        return 0.0
    from ..distributions import deterministic

    t0 = time.perf_counter()
    simulate_heap(System(n=2, K=1, compute=deterministic(1.0), protocol="ringmaster", delay_threshold=1), 2, seed=0)
    _COMPILE_SECONDS.append(time.perf_counter() - t0)
    return _COMPILE_SECONDS[0]


def simulate_heap(system: System, updates: int, *, seed: int, progress: Progress | None = None) -> Trace:
    """Simulate ``updates`` updates of ringmaster or mindflayer in numba: the reference engine's Trace."""
    t0 = time.perf_counter()
    run = _HeapRun(system, updates, seed)
    run.run(progress)
    trace = run.trace()
    trace.meta["seconds"] = time.perf_counter() - t0
    return trace


def simulate_heap_summary(
    system: System,
    updates: int,
    *,
    seed: int,
    warmup: int,
    batches: int,
    transient: int,
    progress: Progress | None = None,
) -> Summary:
    """The :class:`~stalegrad.trace.Summary` of :func:`simulate_heap`'s Trace, streamed in bounded memory."""
    run = _HeapRun(system, updates, seed, mode=1, warm=warmup, batches=batches, transient=transient)
    run.run(progress)
    return run.summary(warmup)
