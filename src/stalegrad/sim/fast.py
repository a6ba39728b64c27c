"""The fast simulator of the K-batch-async protocol (the paper's): exact, vectorised by a numba kernel.

Workers never wait, so each worker's arrival times are a cumulative sum of its compute times plus the uplink
delay, independent of the master. The kernel merges the ``n`` arrival streams in one pass and computes, for every
gradient, the version its round used and the update that applied it. Compute times are drawn in blocks per
worker (:class:`~stalegrad.sim.streams.ComputeStreams`), so a long run keeps bounded memory.

:func:`simulate` returns a :class:`~stalegrad.trace.Trace`; :func:`simulate_summary` streams a
:class:`~stalegrad.trace.Summary` (for runs of 1e9 gradients and more).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import SpecError, invalid
from ..spec import System
from ..trace import COLUMNS, Summary, Trace
from .streams import ComputeStreams, resolve_seed

__all__ = ["check_run", "simulate", "simulate_summary"]

Progress = Callable[[int, int], None]


def check_run(system: System, updates: int) -> None:
    """Validate what every engine of this protocol needs."""
    if not isinstance(system, System):
        raise invalid("system", type(system).__name__, "a stalegrad.System")
    if isinstance(updates, bool) or not isinstance(updates, (int, np.integer)) or updates < 1:
        raise invalid("updates", updates, "an integer >= 1")
    if system.protocol != "k-batch-async":
        raise invalid("protocol", system.protocol, "k-batch-async for the fast simulator")
    if not system.deterministic_delays:
        raise SpecError(
            "uplink and downlink must be fixed times for the fast simulator, got "
            f"uplink={system.to_dict()['uplink']!r}, downlink={system.to_dict()['downlink']!r}"
        )


class _Run:
    """State shared by the trace and summary modes: worker blocks, pointers, update times, the loser tree."""

    def __init__(self, system: System, updates: int, seed: int, t_capacity: int) -> None:
        from ._kernel import PAD, WIN, build_tree

        n = system.n
        self.system = system
        self.total = updates * system.K
        self.streams = ComputeStreams(system, seed, self.total)
        self.up = float(system.uplink)
        self.down = float(system.downlink)
        self.xlen = self.streams.sizes.copy()
        # rows padded by an odd number of cache lines: power-of-two strides would alias in the caches
        self.X = np.zeros((n, int(self.xlen.max()) + 24))
        for i in range(n):
            self.X[i, : self.xlen[i]] = self.streams.draw(i)
        self.cur_start = np.zeros(n)
        self.cur_sent = self.cur_start + self.X[:, 0]
        self.cur_arr = self.cur_sent + self.up
        self.nxt_sent = self.cur_sent + self.X[:, 1]
        self.nxt_arr = self.nxt_sent + self.up
        self.pos = np.ones(n, dtype=np.int64)
        self.rnd = np.ones(n, dtype=np.int64)
        self.vptr = np.zeros(n, dtype=np.int64)
        self.T = np.full(t_capacity + PAD, np.inf)
        self.ist = np.array([0, 0, 1, -1, 0, 0], dtype=np.int64)
        self.fst = np.zeros(2)
        m = 1 << max(n - 1, 1).bit_length()
        self.lkey = np.zeros(m)
        self.lidx = np.zeros(m, dtype=np.int64)
        self.ist[WIN] = build_tree(self.cur_arr, self.lkey, self.lidx)

    def refill(self) -> None:
        """Give the worker that ran out its next block (the kernel computes its next round from it)."""
        from ._kernel import WHO

        i = int(self.ist[WHO])
        self.X[i, : self.xlen[i]] = self.streams.draw(i)

    def call(
        self, mode: int, outputs: tuple[np.ndarray, ...], stats: tuple[np.ndarray, ...], nb: int, warm: int, U: int
    ) -> int:
        from ._kernel import advance

        return int(
            advance(
                self.X, self.xlen, self.pos, self.cur_start, self.cur_sent, self.cur_arr, self.nxt_sent,
                self.nxt_arr, self.rnd, self.vptr, self.T, self.lkey, self.lidx, self.ist, self.fst, self.up,
                self.down, self.system.K, self.total, mode,
                *outputs, *stats, nb, warm, U,
            )
        )


_EMPTY_F = np.zeros(0)
_EMPTY_I = np.zeros(0, dtype=np.int64)


def simulate(
    system: System,
    updates: int,
    *,
    seed: int | None = None,
    engine: str = "numba",
    progress: Progress | None = None,
) -> Trace:
    """Simulate ``updates`` updates and return every gradient as a Trace (``updates * K`` rows).

    ``engine="numpy"`` runs the plain numpy implementation (:mod:`stalegrad.sim.reference`), which gives the
    identical Trace and exists to check the compiled one.

    >>> from stalegrad.distributions import shifted_exponential
    >>> system = System(n=10, K=5, tc=0, compute=shifted_exponential(alpha=1, rate=2/3))
    >>> trace = simulate(system, updates=2, seed=0)
    >>> trace["staleness"].tolist()  # the paper's example: tau = 0, then tau = 1
    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    """
    check_run(system, updates)
    seed = resolve_seed(seed)
    if engine == "numpy":
        from .reference import simulate_numpy

        return simulate_numpy(system, updates, seed=seed)
    if engine != "numba":
        raise invalid("engine", engine, "'numba' or 'numpy'")
    run = _Run(system, updates, seed, t_capacity=updates)
    total = run.total
    cols = {k: np.empty(total, dtype=dt) for k, dt in COLUMNS.items()}
    outputs = tuple(cols[k] for k in COLUMNS)
    stats = (_EMPTY_I, _EMPTY_F, _EMPTY_I, _EMPTY_F, _EMPTY_I, _EMPTY_F)
    _loop(run, 0, outputs, stats, 1, 0, updates, progress, None)
    return Trace(cols, run.T[:updates].copy(), system, seed, {"engine": "fast"})


def simulate_summary(
    system: System,
    updates: int,
    *,
    seed: int | None = None,
    warmup: int | None = None,
    batches: int = 32,
    transient: int = 0,
    progress: Progress | None = None,
) -> Summary:
    """Simulate ``updates`` updates keeping only streamed statistics (bounded memory for any run length).

    ``warmup`` updates are left out of the steady-state statistics (default: a tenth of the run); ``batches``
    batch means give the confidence interval; ``transient`` keeps the staleness of the first updates.
    """
    check_run(system, updates)
    seed = resolve_seed(seed)
    warm = updates // 10 if warmup is None else warmup
    if isinstance(warm, bool) or not isinstance(warm, (int, np.integer)) or not 0 <= warm < updates:
        raise invalid("warmup", warmup, f"an integer from 0 to updates-1 = {updates - 1}")
    if isinstance(batches, bool) or not isinstance(batches, (int, np.integer)) or not 2 <= batches <= updates - warm:
        raise invalid("batches", batches, f"an integer from 2 to updates-warmup = {updates - warm}")
    if isinstance(transient, bool) or not isinstance(transient, (int, np.integer)) or transient < 0:
        raise invalid("transient", transient, "an integer >= 0")
    transient = min(int(transient), updates)
    n = system.n
    run = _Run(system, updates, seed, t_capacity=int(min(updates, 4 * run_block(system) + 1024)))
    hist = np.zeros(64, dtype=np.int64)
    bsum, bcnt = np.zeros(batches), np.zeros(batches, dtype=np.int64)
    wsum, wcnt = np.zeros(n), np.zeros(n, dtype=np.int64)
    trsum = np.zeros(transient)
    outputs = (np.zeros(0, np.int32), _EMPTY_I, _EMPTY_F, _EMPTY_F, _EMPTY_F, _EMPTY_I, _EMPTY_I, _EMPTY_I)
    stats = [hist, bsum, bcnt, wsum, wcnt, trsum]
    _loop(run, 1, outputs, stats, batches, warm, updates, progress, stats)
    hist = stats[0]
    return Summary(
        system=system,
        seed=seed,
        updates=updates,
        warmup=warm,
        gradients=int(run.ist[0]),
        hist=hist,
        batch_sum=bsum,
        batch_count=bcnt,
        worker_sum=wsum,
        worker_count=wcnt,
        transient_sum=trsum,
        t_warmup=float(run.fst[0]),
        t_end=float(run.fst[1]),
        max_staleness=int(run.ist[4]),
    )


def run_block(system: System) -> int:
    """Updates produced while every worker uses one full block of compute times (sizes the update buffer)."""
    from .streams import MAX_BLOCK

    return MAX_BLOCK * system.n // system.K + 1


def _loop(
    run: _Run,
    mode: int,
    outputs: tuple[np.ndarray, ...],
    stats: Any,
    nb: int,
    warm: int,
    U: int,
    progress: Progress | None,
    growable: list[np.ndarray] | None,
) -> None:
    from ._kernel import DONE, GROW_HIST, GROW_T, NUPD, REFILL, TBASE

    while True:
        status = run.call(mode, outputs, tuple(stats), nb, warm, U)
        if progress is not None:
            progress(int(run.ist[0]), run.total)
        if status == DONE:
            return
        if status == REFILL:
            run.refill()
        elif status == GROW_HIST and growable is not None:
            growable[0] = np.concatenate([growable[0], np.zeros_like(growable[0])])
        elif status == GROW_T:  # drop update times no worker needs any more; grow if still half full
            base, nupd = int(run.ist[TBASE]), int(run.ist[NUPD])
            new_base = int(run.vptr.min()) + 1
            keep = run.T[new_base - base : nupd - base + 1].copy()
            size = run.T.size * 2 if keep.size > run.T.size // 2 else run.T.size
            run.T = np.full(size, np.inf)
            run.T[: keep.size] = keep
            run.ist[TBASE] = new_base
        else:  # pragma: no cover - the kernel returns only the codes above
            raise RuntimeError(f"unexpected kernel status {status}")
