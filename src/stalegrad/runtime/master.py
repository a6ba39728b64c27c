"""The master of a real run: holds ``w`` and its version, applies an update after every ``K`` gradients.

Two layers (Ray Train's worker-group lesson: actors are plain classes, made remote only when created):

* :class:`MasterCore` -- the protocol, with no Ray and no clock: K-batch accumulation, at-most-once application
  keyed by ``(worker, round)`` (:class:`AppliedRounds`), one Trace row per gradient taken, the update times, and
  a count of every gradient not applied, by reason. Tested directly.
* :class:`Master` -- the actor around it (a threaded actor: one lock around the protocol): a gradient is taken
  when its uplink delay has passed (``deliver_at``, real seconds; a delivery thread holds the delayed ones); each
  worker is given the newest version that reached it (its downlink delay after the update) in the reply to its
  gradient -- a small ``w`` inside the reply, a large one put once in the object store and sent by reference.

A gradient computed on ``w_v`` and applied in update ``u`` has staleness ``tau = (u - 1) - v`` (DESIGN.md), and
``w_u = w_{u-1} - lr * (g_1 + ... + g_K) / K``.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Any

import numpy as np

__all__ = ["ACTOR_OPTIONS", "DROP_REASONS", "INLINE_BYTES", "AppliedRounds", "Master", "MasterCore", "Rows"]

#: A version of ``w`` up to this size is sent inside the master's replies; a larger one is put in the object store
#: once and its reference sent (Ray's own threshold for returning task results inline, ``max_direct_call_object_size``).
INLINE_BYTES = 100 * 1024

#: How :class:`Master` is made a Ray actor: never restarted, its calls never retried; :meth:`Master.wait_done` runs
#: in its own concurrency group (call it with ``.options(concurrency_group="control")``), the rest one at a time.
ACTOR_OPTIONS: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0, "concurrency_groups": {"control": 1}}

#: Why a gradient that reached the master was not applied.
DROP_REASONS = (
    "duplicate",  # the same (worker, round) was taken before (a retried or replayed call)
    "after_end",  # arrived after the run had all its updates (or its partial batch was left at the end)
    "bad_version",  # computed on a version the master never published (a bug or a stale worker after a resume)
    "interrupted",  # taken (or travelling) when the run was stopped early, after its last update: never applied
)


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
    """The rows the master took, in numpy columns that double when full: 52 bytes a gradient (Python lists of
    numbers take about 220), so an hour at 800 updates/s with K = 2 (5.8 million gradients) holds 300 MB.

    >>> r = Rows(capacity=1)
    >>> r.append(0, 1, 0.0, 1.0, 1.5, 0), r.append(1, 1, 0.0, 2.0, 2.5, 0)
    (0, 1)
    >>> len(r), r["sent"].tolist(), r["update"].tolist()
    (2, [1.0, 2.0], [-1, -1])
    """

    KEYS = ("worker", "round", "start", "sent", "arrive", "version", "update")

    def __init__(self, capacity: int = 4096) -> None:
        from ..trace import COLUMNS

        self._cols = {k: np.empty(max(1, capacity), dtype=COLUMNS[k]) for k in self.KEYS}
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: str) -> np.ndarray:
        """The column ``key`` of the rows taken (a view)."""
        return self._cols[key][: self.n]

    def append(self, worker: int, rnd: int, start: float, sent: float, arrive: float, version: int) -> int:
        """Add a row (its ``update`` -1: not applied yet); returns its index."""
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
        self.n = i + 1
        return i

    def set_update(self, i: int, update: int) -> None:
        self._cols["update"][i] = update


class MasterCore:
    """The K-batch protocol on plain values. Times are whatever the caller gives (the actor: real seconds)."""

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
        self._batch = np.zeros_like(self.w)
        self._pending: list[int] = []  # rows of the gradients in the current batch

    @property
    def done(self) -> bool:
        return self.version >= self.target

    @property
    def applied(self) -> int:
        """Gradients applied so far (in this run)."""
        return len(self.rows) - len(self._pending)

    def receive(
        self, worker: int, rnd: int, start: float, sent: float, arrive: float, version: int, grad: np.ndarray
    ) -> bool:
        """Take one gradient; True when it completed a batch and an update was applied (``self.version`` is new)."""
        if self.done:
            self.dropped["after_end"] += 1
            return False
        if not 0 <= version <= self.version:
            self.dropped["bad_version"] += 1
            return False
        if not self.rounds.take(worker, rnd):
            self.dropped["duplicate"] += 1
            return False
        self._pending.append(self.rows.append(worker, rnd, start, sent, arrive, version))
        self._batch += grad
        if len(self._pending) < self.K:
            return False
        self.w = self.w - (self.lr / self.K) * self._batch
        self._batch[:] = 0.0
        self.version += 1
        versions = self.rows["version"]
        for r in self._pending:
            self.rows.set_update(r, self.version)
            self.staleness_sum += self.version - 1 - int(versions[r])
        self._pending.clear()
        self.update_times.append(arrive)
        return True

    def columns(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """The Trace columns of the gradients applied (rows in the order the master took them), of the rows
        ``start:stop`` taken."""
        from ..trace import COLUMNS

        keep = self.rows["update"][start:stop] >= 1
        cols = {k: self.rows[k][start:stop][keep] for k in Rows.KEYS}  # copies (boolean indexing)
        cols["staleness"] = cols["update"] - 1 - cols["version"]
        cols["dropped"] = np.zeros(len(cols["update"]), dtype=COLUMNS["dropped"])  # rows: applied gradients only
        return {k: cols[k] for k in COLUMNS}

    def leftover(self) -> int:
        """Gradients of the partial batch at the end (taken, never applied)."""
        return len(self._pending)


class Master:
    """The master actor. A plain (threaded) Ray actor -- with asyncio actors on both sides a call costs about 1.6x as
    much (4 callers on 2 cores: 900 calls/s against 1,400-1,600 here) -- whose protocol state is guarded by one lock:
    the calls of the workers, the driver's polls and the delivery thread that takes a gradient once its uplink delay
    has passed run one at a time on it. Create it with a concurrency group ``"control"`` for :meth:`wait_done`
    (:data:`ACTOR_OPTIONS`), which blocks until the run is done.

    The broadcast: a small ``w`` (up to :data:`INLINE_BYTES`) travels inside the replies; a larger one is put once
    per version in the object store and its reference travels instead. A worker learns of the versions in the reply
    to its gradient (:meth:`submit`), which it awaits before its next round: the reply names the newest version
    that *reached* it strictly before that round started, the instant the gradient was sent. Version ``v``, made
    at real time ``T_v``, reaches worker ``i`` at ``T_v + d_{i,v} * time_unit``, ``d`` drawn from the worker's
    downlink stream (:func:`~stalegrad.streams.worker_seeds`) -- every version made before that instant is
    known to the master when the reply is made, so the rule is applied exactly, with no extra message per version.
    (A push of every version to every worker costs ``n`` actor calls per update at the master.)

    ``problem`` gives ``w_0`` and, every ``error_every`` updates, the error of the new ``w`` (0: never).

    Checkpoints: every ``checkpoint_every`` updates (and at the last), right after the update -- the K-batch
    accumulator is then empty -- the master notes a snapshot (``w``, the version, the rounds taken, how many rows,
    update times, errors and downlink delays it has recorded); :meth:`checkpoint` hands the newest one to the driver
    with everything recorded since the one before, and the driver writes it (:mod:`stalegrad.runtime.checkpoint`),
    so that no file is written while the master holds its lock. ``resume`` (``w``, ``version``, ``watermarks``,
    ``above``) starts the master from a checkpoint: the version count and the rounds taken go on.
    """

    def __init__(
        self,
        problem: Any,
        system: Any,
        lr: float,
        updates: int,
        seed: int,
        time_unit: float | None,
        error_every: int = 1,
        checkpoint_every: int = 0,
        resume: dict[str, Any] | None = None,
    ) -> None:

        self.problem = problem
        self.n = system.n
        if resume is None:
            self.core = MasterCore(system.n, system.K, problem.init(), lr, updates)
        else:
            rounds = AppliedRounds(system.n, resume["watermarks"], resume["above"])
            self.core = MasterCore(
                system.n, system.K, resume["w"], lr, updates, version=int(resume["version"]), rounds=rounds
            )
        self.resumed = resume is not None
        self.every = int(checkpoint_every)
        self._snapshot: dict[str, Any] | None = None
        # what the snapshots handed out cover, by version (the run's first version: nothing)
        self._marks = {
            self.core.version: {"version": self.core.version, "rows": 0, "updates": 0, "errors": 0, "delays": 0}
        }
        self.system = system
        self.seed = seed
        self.unit = time_unit
        self.error_every = int(error_every)
        self.errors: list[tuple[int, float, float]] = []  # (version, real time, error)
        self.t0 = time.time()
        v0 = self.core.version
        # a small w travels inside the reply (as Ray sends small task returns); a large one is put once per version
        self.inline = self.core.w.nbytes <= INLINE_BYTES
        self.refs: dict[int, Any] = {v0: self._publish(self.core.w)}
        self.made: dict[int, float] = {v0: self.t0}  # real time each version was made
        self.downlink: list[Any] = [None] * self.n  # per worker: its downlink draws (None: no delay)
        self.pending: list[list[tuple[float, int]]] = [[] for _ in range(self.n)]  # (reach, version) to come
        self.drawn = [v0] * self.n  # versions whose reach time is drawn, per worker
        self.current = [v0] * self.n  # the version each worker uses
        self.live: set[int] = set()
        self.received = [0] * self.n  # highest round received per worker (taken, or waiting for its uplink delay)
        self.arrived = 0  # gradients that reached the master (each is applied, or dropped and counted)
        self.delays: list[float] = []  # every downlink delay drawn (real seconds)
        self.clocks: dict[int, dict[str, Any]] = {}  # per worker: its clock's offset to the master's, rtt, node
        self._node: str | None = None
        self._done = threading.Event()
        self._lock = threading.Condition()  # the protocol state; the delivery thread waits on it
        self._mail: list[tuple[float, int, tuple[Any, ...]]] = []  # (deliver_at, seq, gradient): the uplink heap
        self._seq = 0
        self._closed = False
        self._courier: threading.Thread | None = None
        if time_unit is not None:
            self._courier = threading.Thread(target=self._deliver, name="stalegrad-uplink", daemon=True)
            self._courier.start()

    def start(self, t0: float) -> None:
        """Set the time origin: the first version (0, or the checkpoint's) exists from ``t0``."""
        with self._lock:
            self._start(t0)

    def _start(self, t0: float) -> None:
        self.t0 = t0
        self.made[self.core.version] = t0
        self.core.t0 = t0
        if self.error_every and not self.resumed:  # a resumed run's first version was recorded before
            self.errors.append((self.core.version, t0, float(self.problem.error(self.core.w))))

    def register(self, worker: int, incarnation: int = 0, clock: dict[str, Any] | None = None) -> dict[str, Any]:
        """A (re)started worker: its first round and the newest version (which it uses from now on). ``clock``: the
        offset of its clock to the master's and the round trip it was measured with (seconds; 0 and 0 on the
        master's node), and its node's id."""
        with self._lock:
            self.clocks[worker] = {"offset": 0.0, "rtt": 0.0, "node": None, **(clock or {})}
            return self._register(worker, incarnation)

    def _register(self, worker: int, incarnation: int) -> dict[str, Any]:
        from ..streams import DOWNLINK, Draws, worker_seeds

        inject = self.unit is not None
        seqs = worker_seeds(self.seed, self.n, worker, incarnation)
        self.downlink[worker] = Draws(self.system.downlink, seqs[DOWNLINK], "downlink") if inject else None
        v = self.core.version
        self.pending[worker] = []
        self.drawn[worker] = v
        self.current[worker] = v
        self.live.add(worker)
        # above every round taken and every round still travelling (a dead incarnation's last gradients)
        first = max(self.core.rounds.next_round(worker), self.received[worker] + 1)
        return {"round": first, "version": v, "refs": [self.refs[v]]}

    def detach(self, worker: int) -> None:
        """A worker died: its versions need no longer be kept."""
        with self._lock:
            self.live.discard(worker)
            self._prune()

    def submit(
        self, worker: int, rnd: int, start: float, sent: float, version: int, grad: np.ndarray, deliver_at: float
    ) -> tuple[int, list[Any] | None]:
        """A gradient from ``worker``, taken once its uplink delay has passed (real time ``deliver_at``).

        Returns the version the worker's next round uses (the newest that reached it strictly before ``sent``), and
        its object reference in a list if it is not the one the worker has.
        """
        with self._lock:
            self.arrived += 1
            self.received[worker] = max(self.received[worker], rnd)
            args = (worker, rnd, start, sent, version, grad)
            if deliver_at > time.time():
                self._seq += 1
                heapq.heappush(self._mail, (deliver_at, self._seq, args))
                self._lock.notify()
            else:
                self._take(*args)
            v = self._newest(worker, sent)
            if v == version:
                return v, None
            return v, [self.refs[v]]

    def _deliver(self) -> None:
        """The delivery thread: takes each delayed gradient when its ``deliver_at`` has come."""
        mail = self._mail
        with self._lock:
            while not self._closed:
                wait = mail[0][0] - time.time() if mail else None
                if wait is not None and wait <= 0:
                    self._take(*heapq.heappop(mail)[2])
                else:
                    self._lock.wait(wait)

    def _take(self, worker: int, rnd: int, start: float, sent: float, version: int, grad: np.ndarray) -> None:
        arrive = time.time()
        core = self.core
        if not core.receive(worker, rnd, start, sent, arrive, version, grad):
            return
        self.made[core.version] = arrive
        if self.error_every and core.version % self.error_every == 0:
            self.errors.append((core.version, arrive, float(self.problem.error(core.w))))
        if self.every and (core.version % self.every == 0 or core.done):
            self._snap(final=False)
        if core.done:
            self._done.set()
        self.refs[core.version] = self._publish(core.w)

    def _snap(self, final: bool) -> None:
        """Note a snapshot of the state right after the last update. ``final``: the run is being stopped, and the
        gradients taken since (a partial batch) or still travelling will never be applied: counted as
        ``interrupted``."""
        core = self.core
        rounds, above = core.rounds.state()
        dropped = dict(core.dropped)
        if final:
            dropped["interrupted"] += core.leftover() + len(self._mail)
        self._snapshot = {
            "version": core.version,
            "w": core.w.copy(),
            "rows": len(core.rows) - core.leftover(),  # the rows applied: the partial batch comes last
            "updates": len(core.update_times),
            "errors": len(self.errors),
            "delays": len(self.delays),
            "watermarks": rounds,
            "above": above,
            "dropped": dropped,
        }
        if final:  # the run stops at this state: every gradient received is one of its rows or drops
            self._snapshot["received"] = self.arrived

    def _publish(self, w: np.ndarray) -> Any:
        """What a worker is given for a version: ``w`` itself (never changed in place: each update makes a new
        array) or its object reference."""
        import ray

        return w if self.inline else ray.put(w)

    def checkpoint(self, written: int, final: bool = False) -> dict[str, Any] | None:
        """The newest snapshot, if newer than version ``written`` (the last checkpoint the driver *wrote*: the run's
        first version if none), with the rows, update times, errors and downlink delays recorded since that one (real
        seconds); ``None`` if there is none. A snapshot handed out but never written (the write failed, or Ctrl-C
        came between the two) is covered by the next.

        ``final=True`` (the driver is stopping the run early, e.g. on Ctrl-C): first note a snapshot of the state
        at the last update, if it is newer than ``written``, with the gradients received so far; if it is not, only
        the counts at the stop (``version``, ``dropped``, ``received``: no ``w``)."""
        with self._lock:
            core = self.core
            done = self._marks[written]
            if final and core.version > written:
                self._snap(final=True)
            snap = self._snapshot
            if snap is None or snap["version"] <= written:
                if final:  # no update since the checkpoint written: its counts at the stop
                    dropped = dict(core.dropped)
                    dropped["interrupted"] += core.leftover() + len(self._mail)
                    return {"version": core.version, "dropped": dropped, "received": self.arrived}
                return None
            out = {
                **snap,
                "columns": core.columns(done["rows"], snap["rows"]),
                "update_times": np.array(core.update_times[done["updates"] : snap["updates"]], dtype=np.float64),
                "errors": np.array(self.errors[done["errors"] : snap["errors"]], dtype=np.float64).reshape(-1, 3),
                "downlink": np.array(self.delays[done["delays"] : snap["delays"]], dtype=np.float64),
            }
            self._marks = {written: done, snap["version"]: {k: snap[k] for k in done}}
            return out

    def _newest(self, worker: int, before: float) -> int:
        """The newest version that reached ``worker`` strictly before real time ``before`` (draws as needed)."""
        pending = self.pending[worker]
        draws = self.downlink[worker]
        for v in range(self.drawn[worker] + 1, self.core.version + 1):
            d = draws.next() * self.unit if draws is not None else 0.0
            self.delays.append(d)
            pending.append((self.made[v] + d, v))
        self.drawn[worker] = self.core.version
        best = self.current[worker]
        for reach, v in pending:
            if reach < before and v > best:
                best = v
        if best != self.current[worker]:
            self.pending[worker] = [(r, v) for r, v in pending if v > best]
            self.current[worker] = best
            self._prune()
        return best

    def _prune(self) -> None:
        """Forget the object references no live worker can use any more (older than every worker's version)."""
        low = min((self.current[i] for i in self.live), default=self.core.version)
        for v in [v for v in self.refs if v < low]:
            del self.refs[v]

    def status(self) -> dict[str, Any]:
        """Progress: updates made, gradients applied, their staleness sum, drops, the rounds taken from each worker,
        whether the run is done."""
        with self._lock:
            return self._status()

    def _status(self) -> dict[str, Any]:
        core = self.core
        return {
            "updates": core.version - core.first,
            "version": core.version,
            "gradients": core.applied,
            "staleness_sum": core.staleness_sum,
            "dropped": dict(core.dropped),
            "rounds": [core.rounds.watermark(i) for i in range(core.n)],  # every round up to it taken, per worker
            "done": core.done,
            "time": time.time(),
        }

    def wait_done(self) -> None:
        """Returns when the run has all its updates (blocks: call it in the ``"control"`` concurrency group)."""
        self._done.wait()

    def ping(self) -> tuple[float, str]:
        """A no-op call (Ray's call latency is measured with it; workers set their clocks with it): the master's
        clock and the id of its node."""
        if self._node is None:
            import ray

            self._node = ray.get_runtime_context().get_node_id()
        return time.time(), self._node

    def result(self) -> dict[str, Any]:
        """Everything the run recorded (times in real seconds); stops the delivery thread. Called before the run is
        done (the driver stopped it early), it holds the updates made so far."""
        with self._lock:
            self._closed = True
            self._lock.notify()
            return self._result()

    def _result(self) -> dict[str, Any]:
        core = self.core
        dropped = dict(core.dropped)
        # a partial batch, and the gradients still travelling: at the end, or when the run is stopped before it
        dropped["after_end" if core.done else "interrupted"] += core.leftover() + len(self._mail)
        return {
            "columns": core.columns(),
            "update_times": np.array(core.update_times),
            "w": core.w.copy(),
            "version": core.version,
            "first": core.first,
            "dropped": dropped,
            "received": self.arrived,
            "errors": np.array(self.errors, dtype=np.float64).reshape(-1, 3),
            "downlink": np.array(self.delays),
            "t0": self.t0,
            "clocks": {i: self.clocks[i] for i in sorted(self.clocks)},
            "node": self._node,
        }
