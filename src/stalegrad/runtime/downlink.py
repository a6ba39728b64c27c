"""The master's downlink: which versions of ``w`` it has sent to each worker and when each reaches the worker.

Version ``v``, sent at real time ``T`` to worker ``i``, reaches it at ``T + d * time_unit``, ``d`` drawn from the
worker's downlink stream (:func:`~stalegrad.streams.worker_seeds`: a restarted worker, incarnation ``r``, draws from
fresh ones) when the version is sent; without injected times (``time_unit=None``) it reaches the worker at once. A
worker's next round uses the newest version that reached it strictly before the round started (DESIGN.md): every
version made before that instant is known to the master when it answers the gradient sent then, so the rule is
applied exactly (:meth:`Downlink.newest`), with no message per version. No Ray here (tested directly).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Downlink"]


class Downlink:
    """The versions sent to each of ``n`` workers (``system.downlink``: the delays' model; ``seed``: the run's) and
    the one each worker uses; ``v0``: the first version, which every worker has. :attr:`delays` lists every delay
    drawn, in real seconds, in the order drawn."""

    def __init__(self, system: Any, seed: int, time_unit: float | None, v0: int) -> None:
        self.system, self.seed, self.unit = system, seed, time_unit
        n = system.n
        self.draws: list[Any] = [None] * n  # per worker: its downlink draws (None: no delay)
        self.pending: list[list[tuple[float, int]]] = [[] for _ in range(n)]  # (reach, version) sent, not yet used
        self.current = [v0] * n  # the version each worker uses
        self.live: set[int] = set()
        self.delays: list[float] = []  # every downlink delay drawn (real seconds)

    def join(self, worker: int, incarnation: int, version: int) -> None:
        """A (re)started worker, given ``version`` (the newest) as it starts: its own downlink stream from now on."""
        from ..streams import DOWNLINK, Draws, worker_seeds

        if self.unit is not None:
            seqs = worker_seeds(self.seed, self.system.n, worker, incarnation)
            self.draws[worker] = Draws(self.system.downlink, seqs[DOWNLINK], "downlink")
        self.pending[worker] = []
        self.current[worker] = version
        self.live.add(worker)

    def leave(self, worker: int) -> None:
        """A worker died: it is given nothing more."""
        self.live.discard(worker)

    def send(self, worker: int, version: int, now: float) -> float:
        """Send ``version`` to ``worker`` at real time ``now``: returns when it reaches the worker."""
        draws = self.draws[worker]
        d = draws.next() * self.unit if draws is not None else 0.0
        self.delays.append(d)
        self.pending[worker].append((now + d, version))
        return now + d

    def newest(self, worker: int, before: float) -> int:
        """The newest version that reached ``worker`` strictly before real time ``before`` (which it uses from
        then on: the older ones sent to it are forgotten)."""
        pending = self.pending[worker]
        best = self.current[worker]
        for reach, v in pending:
            if reach < before and v > best:
                best = v
        if best != self.current[worker]:
            self.pending[worker] = [(r, v) for r, v in pending if v > best]
            self.current[worker] = best
        return best

    def oldest(self, default: int) -> int:
        """The oldest version a live worker uses (``default`` if none is live): no live worker can be given an
        older one."""
        return min((self.current[i] for i in self.live), default=default)
