"""k-batch-async with any delays, streamed in chunks: the compiled event engine's Summary, faster
(:func:`chunks_summary`).

Under k-batch-async without a staleness bound workers never wait and nothing is cancelled or dropped, so the order
in which gradients arrive does not depend on the master: it can be merged a chunk at a time, as the fast path does
for fixed delays, and the versions found afterwards (:mod:`._chunks_kernel` says how, with random uplink and
downlink delays, per-worker delays and subsets of workers). :func:`stalegrad.sim.compiled.simulate_compiled_summary`
uses this loop for such systems: the same random numbers, the same Summary bit for bit (the property tests compare
it with the event loop's). The Trace (every row) still comes from the event loop.
"""

from __future__ import annotations

import numpy as np

from ..rules import RULES
from ..spec import System
from ..trace import Summary
from .feeds import Feed
from .kernel_run import KernelRun, Progress, compile_once

__all__ = ["ChunkRun", "chunks_summary", "ready", "runs_in_chunks"]

#: rounds a worker's row draws at a time; a row starts with room for four times as many
ROUNDS = 256


def runs_in_chunks(system: System) -> bool:
    """True for k-batch-async without a staleness bound: workers never wait, nothing is cancelled or dropped."""
    rules = RULES[system.protocol]
    return (
        not rules.waits
        and not rules.cancels
        and not rules.current_only
        and not rules.to_contributors
        and not rules.stops
        and not rules.cutoffs
        and system.staleness_bound is None
    )


class ChunkRun(KernelRun):
    """One streamed run of :func:`~._chunks_kernel.advance_chunks`: its arrays, and the answers to its requests
    (a longer row for a worker; room for the update times; every worker's next downlink delays)."""

    def __init__(self, system: System, updates: int, seed: int, warm: int, batches: int, transient: int) -> None:
        from . import _chunks_kernel as k

        super().__init__(k, system, updates, seed, mode=1, warm=warm, batches=batches, transient=transient)
        small = self.system
        n = small.n
        par = np.zeros(k.NPAR, dtype=np.int64)
        par[k.N], par[k.KK], par[k.U] = n, small.K, updates
        par[k.WARM], par[k.NB], par[k.SPAN] = warm, batches, max(updates - warm, 1)
        par[k.UPRAND], par[k.DOWNRAND], par[k.G] = self.uprand, self.downrand, ROUNDS
        self.par = par
        up = 0.0 if self.uprand else float(small.uplink)  # type: ignore[arg-type]
        down = 0.0 if self.downrand else float(small.downlink)  # type: ignore[arg-type]
        self.fpar = np.array([up, down])
        self.rcap = 4 * ROUNDS
        self.ra, self.rs = np.zeros(n * self.rcap), np.zeros(n * self.rcap)
        self.hd = np.arange(n, dtype=np.int64) * self.rcap  # each row empty
        self.tl = self.hd.copy()
        self.lm = self.hd - 1
        self.nxk, self.vp = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        self.ncol = n if self.downrand else 1
        # room for the update times of a few thousand updates (up to 16 MB): the kernel asks for more rarely
        self.M = np.full((min(4096, max(64, (1 << 21) // self.ncol)) + k.PAD) * self.ncol, np.inf)
        self.ist[k.TBASE], self.ist[k.GEN] = 1, 0
        # every worker takes a downlink delay at each update: their chunks (of one size) side by side, a row an
        # update, put together where they are drawn (in the background once drawing ahead)
        draws = [feed.draw for feed in self.feeds.down]
        submit = self.feeds.down[0].submit if draws else None
        self.down_rows = Feed(lambda: np.stack([draw() for draw in draws], axis=1).ravel(), submit, 3)
        self.DB = np.zeros(1)  # (the per-worker buffers are not used)
        m = 1 << max(n - 1, 1).bit_length()  # a loser tree over the workers (padded: +inf, never first)
        self.tree = tuple(np.zeros(s, dtype=np.int64) for s in (m, m, 2 * m, 2 * m))
        self.chunk = (np.zeros(k.CHUNK, dtype=np.int64), np.zeros(k.CHUNK, dtype=np.int64), np.zeros(k.CHUNK),
                      np.zeros(k.CHUNK, dtype=np.int64))  # fmt: skip

    def call(self) -> int:
        from ._chunks_kernel import advance_chunks

        head = (self.par, self.fpar, self.ist, self.fst, self.wi, self.wf, self.C, self.UB, self.DB)
        rows = (self.ra, self.ra.view(np.int64), self.rs, self.hd, self.lm, self.tl, self.nxk, self.vp, self.M)
        return int(advance_chunks(*head, *rows, *self.tree, *self.chunk, *self.stats))

    def other(self, status: int) -> None:
        k = self.k
        if status == k.GROW_ROW:  # every row twice as long (each keeps its place in its own)
            n, old = self.system.n, self.rcap
            new = 2 * old
            shift = np.arange(n, dtype=np.int64) * (new - old)
            for name in ("ra", "rs"):
                grown = np.zeros(n * new)
                grown.reshape(n, new)[:, :old] = getattr(self, name).reshape(n, old)
                setattr(self, name, grown)
            self.hd += shift
            self.lm += shift
            self.tl += shift
            self.rcap = new
        elif status == k.GROW_T:
            self._grow_t()
        elif status == k.REFILL_DOWNS:  # every worker's next downlink delays, a row an update
            self.DB = self.down_rows.take()
            self.ist[k.DP], self.ist[k.DE] = 0, self.DB.size // self.system.n
        else:  # pragma: no cover - the kernel returns only the codes above
            super().other(status)

    def _grow_t(self) -> None:
        """Room for ``NEED`` more updates: ``M`` twice as long (or more), its rows kept (the kernel asks only after
        dropping the versions no round still to come can use)."""
        k = self.k
        rows = (int(self.ist[k.V]) - int(self.ist[k.TBASE]) + 1) * self.ncol
        size = self.M.size
        while rows + (int(self.ist[k.NEED]) + k.PAD + 1) * self.ncol > size:
            size *= 2
        grown = np.full(max(size, 2 * self.M.size), np.inf)
        grown[:rows] = self.M[:rows]
        self.M = grown


def chunks_summary(
    system: System, updates: int, *, seed: int, warmup: int, batches: int, transient: int,
    progress: Progress | None = None,
) -> Summary:  # fmt: skip
    """The Summary of the compiled event engine's run of ``system`` (which :func:`runs_in_chunks`), in chunks."""
    ready()
    run = ChunkRun(system, updates, seed, warmup, batches, transient)
    run.run(progress)
    return run.summary(warmup)


def ready() -> None:
    """Compile the loop (or load it from numba's cache) once per process, as the event loops are."""
    compile_once(lambda system: ChunkRun(system, 2, 0, 0, 2, 0), "k-batch-async")
