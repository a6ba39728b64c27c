"""Plain numpy implementation of the fast simulator: a stable sort of all arrivals plus ``searchsorted``.

It exists to check the compiled kernel (the two must give the identical Trace) and needs memory for every row.
"""

from __future__ import annotations

import numpy as np

from ..spec import System
from ..trace import COLUMNS, Trace
from .blocks import ComputeStreams


def simulate_numpy(system: System, updates: int, *, seed: int) -> Trace:
    """The Trace of ``updates`` updates, computed with numpy only (same draws as the numba kernel)."""
    n, K = system.n, system.K
    total = updates * K
    up, down = float(system.uplink), float(system.downlink)
    streams = ComputeStreams(system, seed, total)
    blocks: list[list[np.ndarray]] = [[streams.draw(i)] for i in range(n)]
    while True:
        x = [np.concatenate(b) for b in blocks]
        sent = [np.cumsum(xi) for xi in x]
        last = np.array([s[-1] + up for s in sent])
        horizon = last.min()
        # every arrival strictly before `horizon` is known: later rounds of any worker arrive at or after it
        known = sum(int(np.count_nonzero(s + up < horizon)) for s in sent)
        if known >= total:
            break
        blocks[int(np.argmin(last))].append(streams.draw(int(np.argmin(last))))
    worker = np.concatenate([np.full(len(s), i, dtype=np.int32) for i, s in enumerate(sent)])
    rnd = np.concatenate([np.arange(1, len(s) + 1, dtype=np.int64) for s in sent])
    sent_all = np.concatenate(sent)
    start_all = np.concatenate([np.concatenate(([0.0], s[:-1])) for s in sent])
    arrive_all = sent_all + up
    order = np.lexsort((rnd, worker, arrive_all))[:total]  # by arrival, ties by worker, then round
    arrive = arrive_all[order]
    update = np.arange(total, dtype=np.int64) // K + 1
    update_times = arrive[K - 1 :: K].copy()
    start = start_all[order]
    # version v reaches the worker at update_times[v-1] + down; a round uses those that reached it strictly before
    version = np.searchsorted(update_times + down, start, side="left").astype(np.int64)
    cols = {
        "worker": worker[order],
        "round": rnd[order],
        "start": start,
        "sent": sent_all[order],
        "arrive": arrive,
        "version": version,
        "update": update,
        "staleness": update - 1 - version,
    }
    cols = {k: np.ascontiguousarray(v, dtype=COLUMNS[k]) for k, v in cols.items()}
    return Trace(cols, update_times, system, seed, {"engine": "numpy"})
