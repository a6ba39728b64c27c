"""k-async with fixed delays, streamed arrival by arrival: the compiled event engine's Summary, faster
(:func:`waiting_summary`).

Under k-async each worker has one round in flight (it waits for the version its gradient goes into), so with fixed
delays the only events that matter are the arrivals, one per worker (:mod:`._waiting_kernel` says how they are
taken). :func:`stalegrad.sim.compiled.simulate_compiled_summary` uses this loop for such systems: the same random
numbers and the same Summary, bit for bit (the property tests compare them). A round that starts and arrives at one
instant (zero compute time and uplink delay) needs the event loop's order: the run is then done again by the event
loop. The Trace (every row) still comes from the event loop.
"""

from __future__ import annotations

import numpy as np

from ..rules import RULES
from ..spec import System
from ..trace import Summary
from .kernel_run import KernelRun, Progress, compile_once

__all__ = ["WaitingRun", "ready", "runs_waiting", "waiting_summary"]


def runs_waiting(system: System) -> bool:
    """True for k-async (workers wait for the version their gradient goes into; nothing is cancelled or stopped)
    with one fixed delay each way."""
    rules = RULES[system.protocol]
    small = system.active_system()
    return (
        rules.waits
        and rules.to_contributors
        and not rules.cancels
        and not rules.stops
        and isinstance(small.uplink, float)
        and isinstance(small.downlink, float)
    )


class WaitingRun(KernelRun):
    """One streamed run of :func:`~._waiting_kernel.advance_waiting`: its arrays (:meth:`run` raises ``_Degenerate``
    when it meets a case that needs the event loop)."""

    def __init__(self, system: System, updates: int, seed: int, warm: int, batches: int, transient: int) -> None:
        from . import _waiting_kernel as k

        super().__init__(k, system, updates, seed, mode=1, warm=warm, batches=batches, transient=transient)
        small = self.system
        n = small.n
        par = np.zeros(k.NPAR, dtype=np.int64)
        par[k.N], par[k.KK], par[k.U] = n, small.K, updates
        par[k.BOUND] = -1 if small.staleness_bound is None else small.staleness_bound
        par[k.WARM], par[k.NB], par[k.SPAN] = warm, batches, max(updates - warm, 1)
        self.par = par
        assert isinstance(small.uplink, float) and isinstance(small.downlink, float)
        self.fpar = np.array([small.uplink, small.downlink])
        m = 1 << max(n - 1, 1).bit_length()  # a winner tree over the workers' next arrivals (padded: never first)
        ht, hw = np.full(2 * m, np.inf), np.zeros(2 * m, dtype=np.int64)
        hw[m:] = np.arange(m)
        self.tree = (ht, ht.view(np.int64), hw)
        self.batch = np.zeros(small.K, dtype=np.int64)

    def call(self) -> int:
        from ._waiting_kernel import advance_waiting

        head = (self.par, self.fpar, self.ist, self.fst, self.wi, self.wf, self.C)
        return int(advance_waiting(*head, *self.tree, self.batch, *self.stats))

    def other(self, status: int) -> None:
        if status == self.k.DEGENERATE:
            raise _Degenerate
        super().other(status)  # pragma: no cover - the kernel returns only the codes above


class _Degenerate(Exception):
    """The run met a round that starts and arrives at one instant: the event loop must run it."""


def waiting_summary(
    system: System, updates: int, *, seed: int, warmup: int, batches: int, transient: int,
    progress: Progress | None = None,
) -> Summary | None:  # fmt: skip
    """The Summary of the compiled event engine's run of ``system`` (which :func:`runs_waiting`), arrival by
    arrival; ``None`` when the run needs the event loop's order (see the module docstring)."""
    ready()
    run = WaitingRun(system, updates, seed, warmup, batches, transient)
    try:
        run.run(progress)
    except _Degenerate:
        return None
    return run.summary(warmup)


def ready() -> None:
    """Compile the loop (or load it from numba's cache) once per process, as the event loops are."""
    compile_once(lambda system: WaitingRun(system, 2, 0, 0, 2, 0), "k-async")
