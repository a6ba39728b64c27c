"""The compiled engine of the protocols that stop or abandon rounds: ringmaster and mindflayer.

:mod:`stalegrad.sim.events` is the reference; :mod:`._heap_kernel` runs its events, in its order, with its
handlers, in numba, and gives the identical Trace (row for row, bit for bit) with the same ``trace.meta`` counts,
or streams its :class:`~stalegrad.trace.Summary` (mode 1) in memory that does not grow with the run.
:func:`stalegrad.sim.compiled.simulate_compiled` sends these protocols here; the other protocols keep their
specialised loops (:mod:`._events_kernel`). The streams, the rows and the loop answering the kernel's requests are
:class:`~.kernel_run.KernelRun`'s, shared with that engine.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..spec import System
from ..trace import Summary, Trace
from .events import RULES
from .kernel_run import KernelRun, Progress

__all__ = ["simulate_heap", "simulate_heap_summary", "warm_heap"]


class _HeapRun(KernelRun):
    """One run of :mod:`._heap_kernel`: its parameters, its heap of events, and room for that heap to grow."""

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

        super().__init__(k, system, updates, seed, mode, warm, batches, transient)
        small = self.system
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
        par[k.UPRAND], par[k.DOWNRAND] = self.uprand, self.downrand
        par[k.MODE], par[k.WARM], par[k.NB], par[k.SPAN] = mode, warm, batches, max(updates - warm, 1)
        self.par = par
        self.fpar = np.array([0.0 if self.uprand else small.uplink, 0.0 if self.downrand else small.downlink])
        self.cut = np.array(small.cutoffs if small.cutoffs is not None else [np.inf] * n, dtype=np.float64)
        self.batch = np.zeros(K, dtype=np.int64)
        cap = 4 * n + 64
        self.heap = [np.zeros(cap), np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap), np.zeros(cap),
                     np.zeros(cap, np.int64)]  # fmt: skip

    def call(self) -> int:
        from ._heap_kernel import advance_heap

        kernel: Any = advance_heap  # numba's dispatcher: argument types are checked when it compiles
        head = (self.par, self.fpar, self.cut, self.ist, self.fst, self.wi, self.wf, self.C, self.UB, self.DB)
        return int(kernel(*head, self.batch, *self.heap, *self.outputs()))

    def other(self, status: int) -> None:
        if status == self.k.GROW_HEAP:
            self.heap = [np.concatenate((a, np.zeros_like(a))) for a in self.heap]
        else:  # pragma: no cover - the kernel returns only the codes above
            super().other(status)


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
