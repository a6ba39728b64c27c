"""What the master records: the rounds taken from each worker (:class:`AppliedRounds`, the at-most-once
guarantee) and the rows of the gradients it took (:class:`Rows`, numpy columns)."""

from __future__ import annotations

import numpy as np

__all__ = ["AppliedRounds", "Rows"]


class AppliedRounds:
    """The rounds taken from each worker: a watermark (every round up to it taken) plus the rounds above it.

    With fixed delays a worker's gradients arrive in round order and the set above the watermark stays empty;
    with random uplink delays they may overtake each other, and a round is still taken at most once.

    >>> r = AppliedRounds(2)
    >>> r.take(0, 1), r.take(0, 3), r.take(0, 1), r.take(0, 2), r.watermark(0)
    (True, True, False, True, 3)
    """

    def __init__(self, n: int, watermarks: list[int] | None = None, above: list[list[int]] | None = None) -> None:
        self._low = list(watermarks) if watermarks is not None else [0] * n
        self._above: list[set[int]] = [set(a) for a in above] if above is not None else [set() for _ in range(n)]

    def take(self, worker: int, rnd: int) -> bool:
        """Mark round ``rnd`` of ``worker`` as taken; False if it already was."""
        if rnd <= self._low[worker] or rnd in self._above[worker]:
            return False
        above = self._above[worker]
        above.add(rnd)
        low = self._low[worker]
        while low + 1 in above:
            low += 1
            above.remove(low)
        self._low[worker] = low
        return True

    def watermark(self, worker: int) -> int:
        """Every round of ``worker`` up to this one has been taken."""
        return self._low[worker]

    def state(self) -> tuple[list[int], list[list[int]]]:
        """The watermarks and the rounds above them (what a checkpoint records)."""
        return list(self._low), [sorted(a) for a in self._above]

    def next_round(self, worker: int) -> int:
        """The first round a (re)started worker may use: above every round taken."""
        above = self._above[worker]
        return max(self._low[worker], max(above) if above else 0) + 1


class Rows:
    """The rows the master took, in numpy columns that double when full: 53 bytes a gradient (Python lists of
    numbers take about 220), so an hour at 800 updates/s with K = 2 (5.8 million gradients) holds 300 MB.

    A row taken is not applied yet (``update`` -1) until its batch is complete; a row the protocol dropped keeps
    ``update`` -1 and records its reason (``dropped``, :data:`~stalegrad.trace.DROP_REASONS`).

    >>> r = Rows(capacity=1)
    >>> r.append(0, 1, 0.0, 1.0, 1.5, 0), r.append(1, 1, 0.0, 2.0, 2.5, 0, dropped=2)
    (0, 1)
    >>> len(r), r["sent"].tolist(), r["update"].tolist(), r["dropped"].tolist()
    (2, [1.0, 2.0], [-1, -1], [0, 2])
    """

    KEYS = ("worker", "round", "start", "sent", "arrive", "version", "update", "dropped")

    def __init__(self, capacity: int = 4096) -> None:
        from ..trace import COLUMNS

        self._cols = {k: np.empty(max(1, capacity), dtype=COLUMNS[k]) for k in self.KEYS}
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: str) -> np.ndarray:
        """The column ``key`` of the rows taken (a view)."""
        return self._cols[key][: self.n]

    def append(
        self, worker: int, rnd: int, start: float, sent: float, arrive: float, version: int, dropped: int = 0
    ) -> int:
        """Add a row (its ``update`` -1: not applied yet, or dropped for the reason ``dropped``); its index."""
        i = self.n
        cols = self._cols
        if i == cols["worker"].size:
            for k, col in cols.items():
                grown = np.empty(2 * col.size, dtype=col.dtype)
                grown[:i] = col
                cols[k] = grown
        cols["worker"][i] = worker
        cols["round"][i] = rnd
        cols["start"][i] = start
        cols["sent"][i] = sent
        cols["arrive"][i] = arrive
        cols["version"][i] = version
        cols["update"][i] = -1
        cols["dropped"][i] = dropped
        self.n = i + 1
        return i

    def set_update(self, i: int, update: int) -> None:
        self._cols["update"][i] = update
