"""The protocol of a real run on plain values, with no Ray and no clock: its rules (:data:`RULES`) and the
master's side of them (:class:`MasterCore`).

The rules are the event engines' (:mod:`stalegrad.rules`, docs/model.md), the same table: whether a worker
waits for a version after sending, whether a new version cancels a round computing on an older one, whether the
master takes only gradients of its current version, to whom a new version goes, ringmaster's stops and
mindflayer's cutoffs. :class:`MasterCore` decides what the master decides -- take, drop (and why) or apply a
gradient, when to update, to whom the new version goes (:attr:`MasterCore.outbox`), which rounds ringmaster
stops -- and the actor (:class:`~stalegrad.runtime.master.Master`) only carries the decisions out (draws the
downlink delays, tells the workers); the worker (:class:`~stalegrad.runtime.worker.Worker`) applies the worker's
rules (wait, abandon).

K-batch accumulation, at-most-once application keyed by ``(worker, round)``
(:class:`~stalegrad.runtime.rounds.AppliedRounds`), one row per gradient taken (a gradient the protocol drops is
a row with ``update = -1`` and its reason, as in the engines), the update times, and a count of every other
gradient not applied, by reason. A gradient computed on ``w_v`` and applied in update ``u`` has staleness
``tau = (u - 1) - v`` (DESIGN.md), and ``w_u = w_{u-1} - lr * (g_1 + ... + g_K) / K``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..rules import RULES, Rules
from .batch import Batch
from .rounds import AppliedRounds, Rows

__all__ = ["DROP_REASONS", "RULES", "MasterCore", "Rules"]

#: Why a gradient that reached the master was not applied, besides the protocol's own drops (which are rows).
DROP_REASONS = (
    "duplicate",  # the same (worker, round) was taken before (a retried or replayed call)
    "after_end",  # arrived after the run had all its updates (or its partial batch was left at the end)
    "bad_version",  # computed on a version the master never published (a bug or a stale worker after a resume)
    "interrupted",  # taken (or travelling) when the run was stopped early, after its last update: never applied
)

# the codes of the Trace's ``dropped`` column (stalegrad.trace_columns), without importing the Trace here
_APPLIED, _STALE, _LATE = 0, 1, 2


class MasterCore:
    """The master's side of a protocol on plain values. Times are whatever the caller gives (the actor: real
    seconds).

    ``protocol`` names its :data:`RULES`; ``staleness_bound`` drops a gradient whose staleness would exceed it
    (asynchronous protocols); ``delay_threshold`` is ringmaster's ``R`` (a gradient of delay ``>= R`` dropped,
    a round whose delay reaches ``R`` stopped); ``active`` the workers that compute (``None``: all ``n``).
    After each :meth:`receive`, :attr:`outbox` holds the workers to send the current version to (in order, each
    once); the caller sends it and clears the list. ``w`` is updated in place (:class:`~stalegrad.runtime.batch.Batch`:
    the gradients of a batch are held until it is complete): a caller that keeps a version keeps a copy.
    """

    def __init__(
        self,
        n: int,
        K: int,
        w0: np.ndarray,
        lr: float,
        updates: int,
        *,
        version: int = 0,
        t0: float = 0.0,
        rounds: AppliedRounds | None = None,
        protocol: str = "k-batch-async",
        staleness_bound: int | None = None,
        delay_threshold: int | None = None,
        active: Sequence[int] | None = None,
    ) -> None:
        self.n = n
        self.K = K
        self.lr = float(lr)
        self.target = int(updates)  # the run stops after this update
        self.w = np.array(w0, dtype=np.float64)
        self.version = int(version)
        self.rounds = rounds if rounds is not None else AppliedRounds(n)
        self.rows = Rows()
        self.update_times: list[float] = []  # update_times[u - 1 - first] = time of update u
        self.first = self.version  # updates before this one were made by an earlier run (resume)
        self.t0 = t0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.staleness_sum = 0
        self.rules = RULES[protocol]
        self.R = delay_threshold
        self.bound = delay_threshold - 1 if delay_threshold is not None else staleness_bound
        self.active = tuple(range(n)) if active is None else tuple(int(i) for i in active)
        self.outbox: list[int] = []  # the workers the current version is to be sent to
        self.working: dict[int, tuple[int, int]] = {}  # ringmaster: worker -> (round, version) it computes
        self._stopped: dict[int, int] = {}  # ringmaster: worker -> the round a stop was sent for
        self._drop_tau: dict[int, int] = {}  # row dropped by the protocol -> its staleness when it arrived
        self._applied = 0
        self._mark = 0  # rows taken up to the last update (those after it: the partial batch, later drops)
        self._batch = Batch(self.w.size)  # the gradients of the current batch (held, added at the update)
        self._pending: list[int] = []  # rows of the gradients in the current batch

    @property
    def done(self) -> bool:
        return self.version >= self.target

    @property
    def applied(self) -> int:
        """Gradients applied so far (in this run)."""
        return self._applied

    def receive(
        self,
        worker: int,
        rnd: int,
        start: float,
        sent: float,
        arrive: float,
        version: int,
        grad: np.ndarray,
        tag: Any = None,
    ) -> bool:
        """Take one gradient; True when it completed a batch and an update was applied (``self.version`` is new).

        A gradient the protocol drops -- computed on a superseded version under a synchronous protocol, or of
        staleness above the bound -- is a row with ``update = -1`` and its reason; under k-async and ringmaster
        its worker, which waits, is sent the current version. ``tag`` names the gradient while the batch holds it
        (:meth:`holding`)."""
        if self.done:
            self.dropped["after_end"] += 1
            return False
        if not 0 <= version <= self.version:
            self.dropped["bad_version"] += 1
            return False
        if not self.rounds.take(worker, rnd):
            self.dropped["duplicate"] += 1
            return False
        tau = self.version - version  # its staleness if the next update applies it
        rules = self.rules
        reason = _APPLIED
        if rules.current_only and version < self.version:
            reason = _LATE
        elif self.bound is not None and tau > self.bound:
            reason = _STALE
        row = self.rows.append(worker, rnd, start, sent, arrive, version, reason)
        if reason != _APPLIED:
            self._drop_tau[row] = tau
            if rules.waits and not rules.current_only:
                self._send(worker)  # a dropped worker must not wait forever
            return False
        self._pending.append(row)
        self._batch.add(grad, tag)
        if len(self._pending) < self.K:
            return False
        self._batch.apply(self.w, self.lr / self.K)  # in place: w -= (lr / K) * (g_1 + ... + g_K)
        self.version += 1
        self._applied += len(self._pending)
        rows = self.rows
        versions, workers = rows["version"], rows["worker"]
        for r in self._pending:
            rows.set_update(r, self.version)
            self.staleness_sum += self.version - 1 - int(versions[r])
        recipients = [int(workers[r]) for r in self._pending] if rules.to_contributors else self.active
        self._pending.clear()
        self._mark = len(rows)
        self.update_times.append(arrive)
        for k in recipients:
            self._send(k)
        if rules.stops:
            self._stop_stale()
        return True

    def holding(self) -> list[Any]:
        """The tags of the gradients the current batch holds (read in place: their buffers must not change)."""
        return self._batch.holding()

    def release(self) -> None:
        """Hold no gradient any more: fold those held into the batch's accumulator (the update's bits unchanged)."""
        self._batch.release()

    def _send(self, worker: int) -> None:
        if worker not in self.outbox:
            self.outbox.append(worker)

    def _stop_stale(self) -> None:
        """Ringmaster: the new version goes to every worker whose round in progress has delay >= R, once a
        round (its worker then abandons the round)."""
        assert self.R is not None
        for k, (rnd, used) in self.working.items():
            if self.version - used >= self.R and self._stopped.get(k) != rnd:
                self._stopped[k] = rnd
                self._send(k)

    def began(self, worker: int, rnd: int, version: int) -> None:
        """Ringmaster: ``worker`` started round ``rnd`` on ``version`` (it computes until :meth:`finished`)."""
        self.working[worker] = (rnd, version)

    def finished(self, worker: int, rnd: int) -> None:
        """Ringmaster: ``worker`` sent round ``rnd``'s gradient: it computes no longer."""
        if self.working.get(worker, (None,))[0] == rnd:
            del self.working[worker]

    def columns(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """The Trace columns of the rows ``start:stop`` taken (by default up to the last update): the gradients
        applied and those the protocol dropped, in the order the master took them."""
        from ..trace import COLUMNS

        stop = self._mark if stop is None else min(stop, self._mark)
        rows = self.rows
        keep = (rows["update"][start:stop] >= 1) | (rows["dropped"][start:stop] != _APPLIED)
        cols = {k: rows[k][start:stop][keep] for k in Rows.KEYS}  # copies (boolean indexing)
        tau = cols["update"] - 1 - cols["version"]
        taken = np.flatnonzero(keep) + start
        for j in np.flatnonzero(cols["dropped"] != _APPLIED):
            tau[j] = self._drop_tau[int(taken[j])]
        cols["staleness"] = tau
        return {k: cols[k].astype(COLUMNS[k], copy=False) for k in COLUMNS}

    def leftover(self) -> int:
        """Gradients taken since the last update (the partial batch, and drops after it): never in the Trace."""
        return len(self.rows) - self._mark
