"""What every compiled event loop needs from Python: its random streams, its outputs, and the loop that answers its
requests (:class:`KernelRun`).

A compiled kernel (:mod:`._events_kernel`) runs until it needs something (a chunk of draws,
room for rows or for its histogram), or is done, or has taken its share of events between two progress reports; it
returns a status code with nothing changed, and :meth:`KernelRun.run` supplies what it asked for and calls again.
The statuses every kernel shares (:data:`COMMON`) are answered here; a subclass builds the kernel's own arrays,
calls it (:meth:`KernelRun.call`) and answers its own statuses (:meth:`KernelRun.other`). Idle workers are left
out of the kernel, which runs the active ones (:meth:`~stalegrad.spec.System.active_system`) numbered
``0 .. M-1``, each on its own random streams (:class:`~.feeds.Feeds`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

from ..spec import System
from ..subsets import to_full
from ..trace import COLUMNS, Summary, Trace
from .events import work_meta
from .feeds import Feed, Feeds

__all__ = ["KERNEL_COLUMNS", "PROGRESS_EVENTS", "KernelRun", "Progress", "compile_once", "keeping_cmov"]

Progress = Callable[[int, int], None]

#: the Trace columns the kernels write, in their argument order
KERNEL_COLUMNS = ("worker", "round", "start", "sent", "arrive", "version", "update", "staleness", "dropped")
#: events between two progress reports (as the reference engine)
PROGRESS_EVENTS = 1 << 16


@contextmanager
def keeping_cmov() -> Iterator[None]:
    """Compile (or load from numba's cache) inside this block: with LLVM's conversion of conditional moves into
    branches off (:data:`~._events_kernel.KEEP_CMOV`), as every compiled loop is, and restored after."""
    import llvmlite.binding as llvm

    from ._events_kernel import KEEP_CMOV

    llvm.set_option("", KEEP_CMOV)
    try:
        yield
    finally:
        llvm.set_option("", KEEP_CMOV.replace("false", "true"))


_COMPILED: set[str] = set()


def compile_once(make: Callable[[System], KernelRun], protocol: str, **options: Any) -> None:
    """Compile a loop (or load it from numba's cache) once per process with ``make``'s run of a tiny system of
    ``protocol`` (and ``options``), inside :func:`keeping_cmov`: a build without that option would stay in numba's
    cache."""
    if protocol in _COMPILED:
        return
    from ..distributions import deterministic

    with keeping_cmov():
        make(System(n=2, K=1, compute=deterministic(1.0), protocol=protocol, **options)).run(None)
    _COMPILED.add(protocol)


class KernelRun:
    """One run of a compiled kernel (module ``k``, which names its statuses and state indices the same way): the
    per-worker state, the compute times and delays, the rows (mode 0) or the Summary's statistics (mode 1)."""

    def __init__(
        self,
        k: ModuleType,
        system: System,
        updates: int,
        seed: int,
        mode: int,
        warm: int = 0,
        batches: int = 1,
        transient: int = 0,
        rows: int | None = None,
        ahead: bool = True,
    ) -> None:
        self.k, self.full, self.updates, self.seed, self.mode = k, system, updates, seed, mode
        self.system = small = system.active_system()
        n, K = small.n, small.K
        self.uprand = not isinstance(small.uplink, float)
        self.downrand = not isinstance(small.downlink, float)
        self.ist = np.zeros(k.NIST, dtype=np.int64)
        self.ist[k.LIMIT] = np.iinfo(np.int64).max
        self.fst = np.zeros(k.NFST)
        self.wi = np.zeros((n, k.NWI), dtype=np.int64)
        self.wf = np.zeros((n, k.NWF))

        # compute times: worker i's block at C[coff[i]:coff[i] + sizes[i]]; its delays at UB, DB[i * L:(i + 1) * L]
        self.feeds = Feeds(system, seed, updates * K, ahead=ahead)
        sizes = self.feeds.sizes
        self.coff = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.C = np.zeros(int(sizes.sum()))
        self.L = self.feeds.max_chunk
        self.UB = np.zeros(n * self.L if self.uprand else 1)
        self.DB = np.zeros(n * self.L if self.downrand else 1)
        self.wi[:, k.UPOS] = self.wi[:, k.UEND] = np.arange(n) * self.L
        self.wi[:, k.DPOS] = self.wi[:, k.DEND] = np.arange(n) * self.L
        for i in range(n):
            self._refill(self.feeds.compute[i], self.C, int(self.coff[i]), i, k.CPOS, k.CEND)

        if mode == 0:  # room for the rows (GROW_ROWS asks for more)
            room = min(updates, 1000) * max(n, K) + 64 if rows is None else rows
            self.cols = {c: np.empty(room, dtype=dt) for c, dt in COLUMNS.items()}
            self.times = np.empty(updates)
            i8, f8 = np.zeros(0, dtype=np.int64), np.zeros(0)
            self.stats = [i8, f8, i8, f8, i8, f8]  # the Summary's arrays, unused
        else:
            self.cols = {c: np.empty(0, dtype=dt) for c, dt in COLUMNS.items()}
            self.times = np.empty(0)
            # hist, batch sums and counts, per-worker sums and counts, transient sums
            self.stats = [np.zeros(64, dtype=np.int64), np.zeros(batches), np.zeros(batches, dtype=np.int64),
                          np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(transient)]  # fmt: skip

    # ------------------------------------------------------------------------------------------ to override

    def call(self) -> int:
        """Call the kernel with this run's arrays; its status."""
        raise NotImplementedError

    def other(self, status: int) -> None:
        """Answer a status of this kernel's own (the common ones are answered by :meth:`run`)."""
        raise RuntimeError(f"unexpected kernel status {status}")

    def refilled_down(self) -> None:
        """After a worker's downlink delays were refilled (for a kernel that keeps a summary of those buffers)."""

    def finish(self) -> None:
        """After the kernel is done: count what it does differently from the reference (nothing by default)."""

    def compute_times(self) -> list[float]:
        """Each active worker's compute time (rounds finished), in worker order as the reference sums them."""
        return [float(c) for c in self.wf[:, self.k.COMPUTE]]

    # ------------------------------------------------------------------------------------------- running

    def _refill(self, feed: Feed, buf: np.ndarray, off: int, i: int, pos: int, end: int) -> None:
        x = feed.take()
        buf[off : off + x.size] = x
        self.wi[i, pos] = off
        self.wi[i, end] = off + x.size

    def outputs(self) -> tuple[np.ndarray, ...]:
        """The kernel's output arrays, in its argument order: the row columns, the update times, the statistics."""
        return (*(self.cols[c] for c in KERNEL_COLUMNS), self.times, *self.stats)

    def run(self, progress: Progress | None) -> None:
        try:
            self._run(progress)
        finally:
            self.feeds.close()

    def _run(self, progress: Progress | None) -> None:
        k = self.k
        total = self.updates * self.system.K
        if progress is not None:  # a report every PROGRESS_EVENTS events (not reset by the other requests)
            self.ist[k.LIMIT] = self.ist[k.EVENTS] + PROGRESS_EVENTS
        while True:
            status = self.call()
            if status == k.DONE:
                break
            if status == k.PAUSE:
                assert progress is not None
                progress(int(self.ist[k.V]) * self.system.K, total)
                self.ist[k.LIMIT] = self.ist[k.EVENTS] + PROGRESS_EVENTS
            elif status == k.REFILL_COMPUTE:
                i = int(self.ist[k.WHO])
                self._refill(self.feeds.compute[i], self.C, int(self.coff[i]), i, k.CPOS, k.CEND)
            elif status == k.REFILL_UP:
                i = int(self.ist[k.WHO])
                self._refill(self.feeds.up[i], self.UB, i * self.L, i, k.UPOS, k.UEND)
            elif status == k.REFILL_DOWN:
                i = int(self.ist[k.WHO])
                self._refill(self.feeds.down[i], self.DB, i * self.L, i, k.DPOS, k.DEND)
                self.refilled_down()
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
            else:
                self.other(status)
        self.finish()
        if progress is not None:
            progress(int(self.ist[k.V]) * self.system.K, total)

    # ------------------------------------------------------------------------------------------- results

    def meta(self) -> dict[str, Any]:
        k = self.k
        cancelled = sum(float(c) for c in self.wf[:, k.CANCEL])
        work = work_meta(sum(self.compute_times()), cancelled, float(self.fst[k.DROPT]))
        return {"engine": "compiled", "events": int(self.ist[k.EVENTS]), **work}

    def trace(self) -> Trace:
        rows = int(self.ist[self.k.ROWS])
        # the rows, in place unless that keeps more than a quarter of the columns unused
        cols = {c: a[:rows] if 4 * rows >= 3 * a.size else a[:rows].copy() for c, a in self.cols.items()}
        to_full(self.full, cols)
        return Trace(cols, self.times[: int(self.ist[self.k.V])], self.full, self.seed, self.meta())

    def summary(self, warmup: int) -> Summary:
        k = self.k
        hist, bsum, bcnt, wsum, wcnt, trsum = self.stats
        active = list(self.full.active)  # per worker of the whole system (idle ones: zeros)
        worker_sum, worker_count = np.zeros(self.full.n), np.zeros(self.full.n, dtype=np.int64)
        worker_sum[active], worker_count[active] = wsum, wcnt
        return Summary(
            system=self.full,
            seed=self.seed,
            updates=int(self.ist[k.V]),
            warmup=warmup,
            gradients=int(self.ist[k.GRAD]),
            hist=hist,
            batch_sum=bsum,
            batch_count=bcnt,
            worker_sum=worker_sum,
            worker_count=worker_count,
            transient_sum=trsum,
            t_warmup=float(self.fst[k.T_WARM]) if warmup > 0 else 0.0,
            t_end=float(self.fst[k.T_END]),
            max_staleness=int(self.ist[k.MAXTAU]),
            dropped=int(self.ist[k.DROPPED]),
            wasted_compute=float(self.meta()["wasted_compute"]),
        )
