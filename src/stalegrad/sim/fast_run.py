"""The fast simulator's runs on its numba kernel (:mod:`._kernel`): the per-worker rows of send times, drawn a
block at a time (the next block drawn ahead in a background thread), the update times, the loser tree, and the loop
that answers the kernel's requests; a Trace (:func:`simulate_numba`) or a streamed Summary
(:func:`simulate_summary_numba`). :mod:`.fast` checks the arguments and picks the engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec import System
from ..trace import COLUMNS, Summary, Trace
from .blocks import ComputeStreams

__all__ = ["run_block", "simulate_numba", "simulate_summary_numba"]

Progress = Callable[[int, int], None]


_KERNEL_COLUMNS = ("worker", "round", "start", "sent", "arrive", "version", "update", "staleness")
_EMPTY_F = np.zeros(0)
_EMPTY_I = np.zeros(0, dtype=np.int64)


class _Run:
    """State shared by the trace and summary modes: worker blocks, pointers, update times, the loser tree.

    Each worker's block of compute times is turned into a row of send times (:func:`~._kernel.fill_row`). When the
    rows of all workers fit twice in :data:`PREFETCH_BYTES`, each worker has two rows: while the kernel reads one,
    a background thread draws the worker's next block into the other (workers have their own random streams, so
    this changes no number). Otherwise a block is drawn when the kernel asks for it.
    """

    #: the rows of send times are doubled (the next block drawn ahead, in a background thread) up to this size
    PREFETCH_BYTES = 1 << 28

    def __init__(self, system: System, updates: int, seed: int, t_capacity: int) -> None:
        from ._kernel import CHUNK, KEY, NSTATE, PAD, TBASE, WHO, WIDE, WIN, build_tree

        n = system.n
        self.system = system
        self.total = updates * system.K
        self.streams = ComputeStreams(system, seed, self.total)
        self.up = float(system.uplink)
        self.down = float(system.downlink)
        # a row: start and send time of the pending round, then the block's send times; rows of an odd number of
        # cache lines (power-of-two strides would alias in the caches)
        lines = (int(self.streams.sizes.max()) + 2 + 7) // 8
        self.width = 8 * (lines + 1 - lines % 2)
        double = 2 * n * self.width * 8 <= self.PREFETCH_BYTES
        self.S = np.zeros((2 if double else 1) * n * self.width)
        self.buf = np.zeros(n, dtype=np.int64)  # which of its rows each worker is using
        self.cur = np.zeros(n, dtype=np.uint64)
        self.lim = np.zeros(n, dtype=np.uint64)
        self.rb = np.zeros(n, dtype=np.int64)
        # rounds a worker is expected to need at most (as in block_sizes): no block is drawn ahead beyond them
        inv = np.array([1.0 / mu for mu in system.means])
        share = self.total * inv / inv.sum()
        self.expect = share + 4.0 * np.sqrt(share) + 16
        self.pool: Any = None
        self.ahead: dict[int, Any] = {}
        if double and bool((self.streams.sizes < self.expect).any()):
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stalegrad-draw")
        # the first blocks: the background thread draws the second half of the workers' meanwhile
        first = {w: self.pool.submit(self._fill, w, 0, 0.0, 0.0) for w in range(n // 2, n)} if self.pool else {}
        try:
            sizes = [first[w].result() if w in first else self._fill(w, 0, 0.0, 0.0) for w in range(n)]
        except BaseException:
            self.close()
            raise
        for w in range(n):
            self._install(w, 0, sizes[w])
            self.cur[w] += 1  # the first round of the run has no carried round before it
        sent = self.S[self.cur.astype(np.int64)]
        self.nxtf = self.S[self.cur.astype(np.int64) + 1] + self.up
        self.vptr = np.zeros(n, dtype=np.int64)
        self.T = np.full(t_capacity + PAD, np.inf)
        self.ist = np.zeros(NSTATE, dtype=np.int64)
        self.ist[TBASE] = 1
        self.ist[WHO] = -1
        # a worker's version pointer moves n/K updates per round on average (whatever the compute times): past a
        # few, the kernel counts update times by blocks of 8 first
        self.ist[WIDE] = n > 3 * system.K
        self.fst = np.zeros(2)
        m = 1 << max(n - 1, 1).bit_length()
        self.lkey = np.zeros(m, dtype=np.int64)
        self.lidx = np.zeros(m, dtype=np.uint64)
        keys = (sent + self.up).view(np.int64)  # arrival times >= 0: their bit patterns order the same way
        self.ist[WIN] = build_tree(keys, self.lkey, self.lidx)
        self.ist[KEY] = keys[self.ist[WIN]]
        self.wb = np.zeros(CHUNK, dtype=np.uint64)
        self.cb = np.zeros(CHUNK, dtype=np.uint64)
        self.abf = np.zeros(CHUNK)

    def _offset(self, w: int, buf: int) -> int:
        return (buf * self.system.n + w) * self.width

    def _fill(self, w: int, buf: int, start: float, sent: float) -> int:
        """Draw worker ``w``'s next block into its row ``buf``; return the block length."""
        from ._kernel import fill_row

        x = self.streams.draw(w)
        fill_row(self.S, self._offset(w, buf), start, sent, x)
        return x.size

    def _install(self, w: int, buf: int, size: int) -> None:
        """Point worker ``w`` at its row ``buf`` (whose index 1 is its pending round) and draw ahead if useful."""
        off = self._offset(w, buf)
        rnd = 0 if self.lim[w] == 0 else int(self.rb[w]) + int(self.lim[w])  # round number of the pending round
        self.buf[w] = buf
        self.cur[w] = off + 1
        self.lim[w] = off + 1 + size
        self.rb[w] = rnd - (off + 1)
        if self.pool is not None and rnd + size < self.expect[w]:
            last = int(self.lim[w])
            start, sent = float(self.S[last - 1]), float(self.S[last])
            self.ahead[w] = self.pool.submit(self._fill, w, 1 - buf, start, sent)

    def refill(self) -> None:
        """Give the worker that ran out its next block (the kernel computes its next round from it)."""
        from ._kernel import WHO

        w = int(self.ist[WHO])
        if w in self.ahead:
            size = self.ahead.pop(w).result()
            self._install(w, 1 - int(self.buf[w]), size)
        else:
            last = int(self.lim[w])
            start, sent = float(self.S[last - 1]), float(self.S[last])
            buf = (1 - int(self.buf[w])) if self.S.size > self.system.n * self.width else 0
            self._install(w, buf, self._fill(w, buf, start, sent))

    def close(self) -> None:
        """Stop drawing ahead (blocks drawn ahead and not needed are dropped)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def call(
        self, mode: int, outputs: tuple[np.ndarray, ...], stats: tuple[np.ndarray, ...], nb: int, warm: int, U: int
    ) -> int:
        from ._kernel import advance

        kernel: Any = advance  # numba's dispatcher: argument types are checked when it compiles
        return int(
            kernel(
                self.S,
                self.cur,
                self.lim,
                self.rb,
                self.nxtf,
                self.vptr,
                self.T,
                self.lkey,
                self.lidx,
                self.ist,
                self.fst,
                self.wb,
                self.cb,
                self.abf,
                self.up,
                self.down,
                self.system.K,
                self.total,
                mode,
                *outputs,
                *stats,
                nb,
                warm,
                U,
            )
        )


#: the columns the kernel writes, in its argument order


def simulate_numba(system: System, updates: int, *, seed: int, progress: Progress | None = None) -> Trace:
    """:func:`~.fast.simulate` on the compiled kernel (``engine="numba"``), arguments checked already."""
    run = _Run(system, updates, seed, t_capacity=updates)
    total = run.total
    cols = {k: np.empty(total, dtype=dt) for k, dt in COLUMNS.items()}
    cols["dropped"][:] = 0  # this protocol drops nothing
    outputs = tuple(cols[k] for k in _KERNEL_COLUMNS)
    stats = (_EMPTY_I, _EMPTY_F, _EMPTY_I, _EMPTY_F, _EMPTY_I, _EMPTY_F)
    _loop(run, 0, outputs, stats, 1, 0, updates, progress, None)
    K = system.K
    return Trace(cols, cols["arrive"][K - 1 :: K].copy(), system, seed, {"engine": "fast"})


def simulate_summary_numba(
    system: System,
    updates: int,
    *,
    seed: int,
    warmup: int,
    batches: int,
    transient: int = 0,
    progress: Progress | None = None,
) -> Summary:
    """:func:`simulate_summary` on the compiled kernel, arguments checked already."""
    warm = warmup
    n = system.n
    run = _Run(system, updates, seed, t_capacity=int(min(updates, 4 * run_block(system) + 1024)))
    hist = np.zeros(64, dtype=np.int64)
    bsum, bcnt = np.zeros(batches), np.zeros(batches, dtype=np.int64)
    wsum, wcnt = np.zeros(n), np.zeros(n, dtype=np.int64)
    trsum = np.zeros(transient)
    outputs = (np.zeros(0, np.int32), _EMPTY_I, _EMPTY_F, _EMPTY_F, _EMPTY_F, _EMPTY_I, _EMPTY_I, _EMPTY_I)
    stats: list[np.ndarray] = [hist, bsum, bcnt, wsum, wcnt, trsum]
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
    from .blocks import MAX_BLOCK

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
    from ._kernel import DONE, GROW_HIST, GROW_T, NEED, NUPD, PAD, REFILL, TBASE

    args = list(stats)
    # the kernel sums staleness per worker in integers (exact; converted at the end); both modes pass the same
    # types, so the kernel is compiled once
    args[3] = np.zeros(run.system.n if mode == 1 else 0, dtype=np.int64)
    try:
        while True:
            status = run.call(mode, outputs, tuple(args), nb, warm, U)
            if progress is not None:
                progress(int(run.ist[0]), run.total)
            if status == DONE:
                break
            if status == REFILL:
                run.refill()
            elif status == GROW_HIST and growable is not None:
                old = args[0]
                args[0] = np.zeros(max(2 * old.size, int(run.ist[NEED])), dtype=old.dtype)
                args[0][: old.size] = old
                growable[0] = args[0]
            elif status == GROW_T:  # drop update times no worker needs any more; grow if still half full
                base, nupd, need = int(run.ist[TBASE]), int(run.ist[NUPD]), int(run.ist[NEED])
                new_base = int(run.vptr.min()) + 1
                keep = run.T[new_base - base : nupd - base + 1].copy()
                size = run.T.size * 2 if keep.size > run.T.size // 2 else run.T.size
                while keep.size + need + PAD + 1 > size:
                    size *= 2
                run.T = np.full(size, np.inf)
                run.T[: keep.size] = keep
                run.ist[TBASE] = new_base
            else:  # pragma: no cover - the kernel returns only the codes above
                raise RuntimeError(f"unexpected kernel status {status}")
    finally:
        run.close()
    if mode == 1:
        stats[3] += args[3]
