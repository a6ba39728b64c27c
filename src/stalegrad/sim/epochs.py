"""The synchronous family with fixed delays, streamed epoch by epoch: the compiled event engine's Summary, several
times faster (:func:`epochs_summary`).

Under k-sync, sync, k-batch-sync, rennala and mindflayer with one fixed delay each way, every worker starts over on
each new version at the same instant, so the run is a sequence of independent epochs, one per update
(:mod:`._epochs_kernel` says how one is taken). :func:`stalegrad.sim.compiled.simulate_compiled_summary` uses this
loop for such systems: the same random numbers, the same Summary (its statistics, times and wasted compute, bit for
bit; the property tests compare them), without going event by event. The Trace (every row) still comes from the
event loop.
"""

from __future__ import annotations

import numpy as np

from ..rules import RULES
from ..spec import System
from ..trace import Summary
from .kernel_run import KernelRun, Progress, compile_once

__all__ = ["EpochRun", "epochs_summary", "ready", "runs_in_epochs"]


def runs_in_epochs(system: System) -> bool:
    """True when every worker starts over on each version at one instant: a protocol that cancels, takes only
    current gradients and sends each version to every worker, with one fixed delay each way."""
    rules = RULES[system.protocol]
    small = system.active_system()
    return (
        rules.cancels
        and rules.current_only
        and not rules.to_contributors
        and not rules.stops
        and isinstance(small.uplink, float)
        and isinstance(small.downlink, float)
    )


class EpochRun(KernelRun):
    """One streamed run of :func:`~._epochs_kernel.advance_epochs`: its arrays, and the answers to its requests
    (a worker's compute times appended to the rest of its epoch; a larger buffer of late arrivals)."""

    def __init__(self, system: System, updates: int, seed: int, warm: int, batches: int, transient: int) -> None:
        from . import _epochs_kernel as k

        super().__init__(k, system, updates, seed, mode=1, warm=warm, batches=batches, transient=transient)
        small = self.system
        n = small.n
        rules = RULES[small.protocol]
        par = np.zeros(k.NPAR, dtype=np.int64)
        par[k.N], par[k.KK], par[k.U] = n, small.K, updates
        par[k.WAITS], par[k.CUTS] = rules.waits, rules.cutoffs
        par[k.WARM], par[k.NB], par[k.SPAN] = warm, batches, max(updates - warm, 1)
        self.par = par
        assert isinstance(small.uplink, float) and isinstance(small.downlink, float)
        self.fpar = np.array([small.uplink, small.downlink])
        self.wf[:, k.CUT] = np.inf if small.cutoffs is None else small.cutoffs
        # each worker's compute times in a region of twice its block: an epoch that runs out keeps its rest
        self.cap = 2 * self.feeds.sizes.astype(np.int64)
        self._regions(self.cap)
        m = 1 << max(n - 1, 1).bit_length()  # a winner tree over the workers' next events (padded: +inf, never first)
        ht, hw = np.full(2 * m, np.inf), np.full(2 * m, 2 * n, dtype=np.int64)
        hw[m:] += np.arange(m)
        self.heap = (ht, ht.view(np.int64), hw)
        self.scratch = (np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n),
                        np.zeros(n, dtype=np.int64))  # fmt: skip
        self.late = (np.zeros(4 * n + 16), np.zeros(4 * n + 16, dtype=np.int64), np.zeros(4 * n + 16))

    def _regions(self, cap: np.ndarray) -> None:
        """Move each worker's compute times still to be read to the start of its own region of ``cap[i]``."""
        k = self.k
        off = np.concatenate(([0], np.cumsum(cap)[:-1])).astype(np.int64)
        C = np.zeros(int(cap.sum()))
        for i in range(self.system.n):
            rest = self.C[self.wi[i, k.CPOS] : self.wi[i, k.CEND]]
            C[off[i] : off[i] + rest.size] = rest
            self.wi[i, k.CPOS], self.wi[i, k.CEND] = off[i], off[i] + rest.size
        self.C, self.coff, self.cap = C, off, cap

    def call(self) -> int:
        from ._epochs_kernel import advance_epochs

        head = (self.par, self.fpar, self.ist, self.fst, self.wi, self.wf, self.C)
        return int(advance_epochs(*head, *self.heap, *self.scratch, *self.late, *self.stats))

    def other(self, status: int) -> None:
        k = self.k
        if status == k.REFILL_KEEP:  # the worker's rest, then its next chunk
            i = int(self.ist[k.WHO])
            pos, end = int(self.wi[i, k.CPOS]), int(self.wi[i, k.CEND])
            x = self.feeds.compute[i].take()
            if end - pos + x.size > self.cap[i]:
                cap = self.cap.copy()
                cap[i] = 2 * (end - pos + x.size)
                self._regions(cap)
                pos, end = int(self.wi[i, k.CPOS]), int(self.wi[i, k.CEND])
            off = int(self.coff[i])
            self.C[off : off + end - pos] = self.C[pos:end]
            self.C[off + end - pos : off + end - pos + x.size] = x
            self.wi[i, k.CPOS], self.wi[i, k.CEND] = off, off + end - pos + x.size
        elif status == k.GROW_LATE:
            size = int(self.ist[k.NEED])
            self.late = (np.zeros(size), np.zeros(size, dtype=np.int64), np.zeros(size))
        else:  # pragma: no cover - the kernel returns only the codes above
            super().other(status)


def epochs_summary(
    system: System, updates: int, *, seed: int, warmup: int, batches: int, transient: int,
    progress: Progress | None = None,
) -> Summary:  # fmt: skip
    """The Summary of the compiled event engine's run of ``system`` (which :func:`runs_in_epochs`), epoch by epoch."""
    ready()
    run = EpochRun(system, updates, seed, warmup, batches, transient)
    run.run(progress)
    return run.summary(warmup)


def ready() -> None:
    """Compile the loop (or load it from numba's cache) once per process, as the event loops are."""
    compile_once(lambda system: EpochRun(system, 2, 0, 0, 2, 0), "k-sync")
