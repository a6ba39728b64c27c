"""The master of a real run: the actor that holds ``w`` and its version, around the protocol's core.

Two layers (Ray Train's worker-group lesson: actors are plain classes, made remote only when created):

* :class:`~stalegrad.runtime.protocol.MasterCore` -- the protocol, with no Ray and no clock (tested directly).
* :class:`Master` -- the actor around it (a threaded actor: one lock around the protocol): a gradient is taken
  when its uplink delay has passed (``deliver_at``, real seconds; a delivery thread holds the delayed ones); each
  worker is given the newest version that reached it (its downlink delay after the update) in the reply to its
  gradient -- a small ``w`` inside the reply, a large one in shared memory or the object store
  (:mod:`~stalegrad.runtime.datapath`).

A gradient computed on ``w_v`` and applied in update ``u`` has staleness ``tau = (u - 1) - v`` (DESIGN.md), and
``w_u = w_{u-1} - lr * (g_1 + ... + g_K) / K``.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Any

import numpy as np

from .batch import Batch
from .datapath import GRAD_SLOTS, DataPath, unpack
from .downlink import Downlink
from .protocol import MasterCore
from .rounds import AppliedRounds

__all__ = ["ACTOR_OPTIONS", "Master"]

#: How :class:`Master` is made a Ray actor: never restarted, its calls never retried; :meth:`Master.wait_done` runs
#: in its own concurrency group (call it with ``.options(concurrency_group="control")``), the rest one at a time.
ACTOR_OPTIONS: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0, "concurrency_groups": {"control": 1}}


class Master:
    """The master actor. A plain (threaded) Ray actor -- with asyncio actors on both sides a call costs about 1.6x as
    much (4 callers on 2 cores: 900 calls/s against 1,400-1,600 here) -- whose protocol state is guarded by one lock:
    the calls of the workers, the driver's polls and the delivery thread that takes a gradient once its uplink delay
    has passed run one at a time on it. Create it with a concurrency group ``"control"`` for :meth:`wait_done`
    (:data:`ACTOR_OPTIONS`), which blocks until the run is done.

    The broadcast (:mod:`~stalegrad.runtime.datapath`): a small ``w`` travels inside the replies; a larger one is
    copied once per version into a row of the version ring that workers on the master's node read in place
    (``shared``: the run's segment name; their gradients come in slots too, :meth:`submit`), or put once in the
    object store for the others (and for all without ``shared``), and its reference travels instead. A worker
    learns of the versions in the reply to its gradient (:meth:`submit`), which it awaits before its next round:
    the reply names the newest version that *reached* it strictly before that round started, the instant the
    gradient was sent (:mod:`~stalegrad.runtime.downlink`: when each version reaches each worker).
    (A push of every version to every worker costs ``n`` actor calls per update at the master.) The protocol's
    core (:class:`~stalegrad.runtime.protocol.MasterCore`) says to whom each version goes (every active worker,
    or only those whose gradients made it); the delay ``d`` is drawn when it is sent.

    Protocols whose workers wait for a version, or abandon a round when one reaches them (every protocol but
    k-batch-async), are *told* of each version sent to them: :meth:`Worker.notify
    <stalegrad.runtime.worker.Worker.notify>` with the version, the instant it reaches the worker and ``w`` (or
    its reference), one call per version and recipient; the worker applies its rules at that instant. Ringmaster's
    workers say when they start a round (:meth:`began`), so that the master knows which rounds to stop.

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
        shared: str | None = None,
    ) -> None:

        self.problem = problem
        self.n = system.n
        rules = {
            "protocol": system.protocol,
            "staleness_bound": system.staleness_bound,
            "delay_threshold": system.delay_threshold,
            "active": system.active,
        }
        if resume is None:
            self.core = MasterCore(system.n, system.K, problem.init(), lr, updates, **rules)
        else:
            rounds = AppliedRounds(system.n, resume["watermarks"], resume["above"])
            self.core = MasterCore(
                system.n, system.K, resume["w"], lr, updates, version=int(resume["version"]), rounds=rounds, **rules
            )
        Batch.prepare(system.K)  # the update's compiled loop, before the run's clock starts
        r = self.core.rules
        self.tell = r.waits or r.cancels or r.stops  # workers are told of every version sent to them
        self.handles: dict[int, Any] = {}  # the live workers' actors (to tell them)
        self.compute_time = 0.0  # real seconds of the rounds whose gradients reached the master (sent - start)
        self.cancelled_time = 0.0  # real seconds of the rounds the workers abandoned (as they report)
        self.resumed = resume is not None
        self.every = int(checkpoint_every)
        self._snapshot: dict[str, Any] | None = None
        # what the snapshots handed out cover, by version (the run's first version: nothing)
        self._marks = {
            self.core.version: {"version": self.core.version, "rows": 0, "updates": 0, "errors": 0, "delays": 0}
        }
        self.error_every = int(error_every)
        self.errors: list[tuple[int, float, float]] = []  # (version, real time, error)
        self.t0 = time.time()
        v0 = self.core.version
        # how w and the gradients travel (datapath.py): the version ring, if any, is made here
        self.data = DataPath(self.core.w, self.n, system.K, len(system.active), shared)
        self.refs: dict[int, Any] = {v0: self.data.publish(self.core.w, v0)}  # the versions a worker may be given
        self.down = Downlink(system, seed, time_unit, v0)  # the versions sent to each worker, when they reach it
        self.received = [0] * self.n  # highest round received per worker (taken, or waiting for its uplink delay)
        self.arrived = 0  # gradients that reached the master (each is applied, or dropped and counted)
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
        self.core.t0 = t0
        if self.error_every and not self.resumed:  # a resumed run's first version was recorded before
            self.errors.append((self.core.version, t0, float(self.problem.error(self.core.w))))

    def register(
        self, worker: int, incarnation: int = 0, clock: dict[str, Any] | None = None, handle: Any = None
    ) -> dict[str, Any]:
        """A (re)started worker: its first round and the newest version (which it uses from now on). ``clock``: the
        offset of its clock to the master's and the round trip it was measured with (seconds; 0 and 0 on the
        master's node), and its node's id; ``handle``: its actor, told of the versions sent to it."""
        with self._lock:
            self.clocks[worker] = {"offset": 0.0, "rtt": 0.0, "node": None, **(clock or {})}
            if handle is not None:
                self.handles[worker] = handle
            return self._register(worker, incarnation)

    def _register(self, worker: int, incarnation: int) -> dict[str, Any]:
        v = self.core.version
        self.down.join(worker, incarnation, v)
        # above every round taken and every round still travelling (a dead incarnation's last gradients)
        first = max(self.core.rounds.next_round(worker), self.received[worker] + 1)
        self.data.join(worker, self.clocks.get(worker, {}).get("node") == self._node)
        info = {"round": first, "version": v, "refs": [self.data.give(self.refs[v], worker)]}
        if worker in self.data.sharing:
            info["shm"] = {**self.data.segments(worker, incarnation), "free": self._free(worker, incarnation)}
        return info

    def share(self, worker: int, incarnation: int, node: str | None) -> dict[str, Any] | None:
        """The shared-memory segments of a worker incarnation on ``node`` (made here if new), for it to map before
        its first round; None if it does not share memory with the master (another node, a small ``w``, no
        ``/dev/shm``, or the path switched off)."""
        with self._lock:
            if self.data.ring is None or node != self._node:
                return None
            return self.data.segments(worker, incarnation)

    def detach(self, worker: int) -> None:
        """A worker died: its versions need no longer be kept."""
        with self._lock:
            self.down.leave(worker)
            self.handles.pop(worker, None)
            self.core.working.pop(worker, None)
            self._prune()

    def submit(self, msg: tuple[Any, ...] | list[Any]) -> tuple[int, list[Any] | None, list[int] | None]:
        """A gradient from a worker, in one message ``(worker, incarnation, round, start, sent, version, grad,
        deliver_at, abandoned)`` (one argument of plain numbers -- Ray serializes each argument on its own, and
        anything but plain numbers, strings and lists by pickling it: a call of eight arguments and small objects
        costs both sides about 0.15 ms more than this). It is taken once its uplink delay has passed (real time
        ``deliver_at``); ``abandoned``: the seconds of the rounds the worker abandoned since its last gradient
        (wasted). ``grad`` is the gradient itself (small), its object reference in a list (large: read zero-copy,
        read-only, before the lock is taken), or, from a worker on the master's node, the number of the slot of its
        segment it lies in (:mod:`~stalegrad.runtime.shm`): read in place, the slot busy until the gradient is
        added to ``w`` or dropped.

        Returns the newest version that reached the worker strictly before ``sent`` (the one its next round uses,
        unless it waits for a new one), what the worker is given for it in a list (:meth:`_ref`) if it is not the
        one the worker has, and, for a gradient in a slot, the worker's slots now free (at least one: see
        :meth:`_free`).
        """
        worker, incarnation, rnd, start, sent, version, grad, deliver_at, abandoned = msg
        tag = None
        g: np.ndarray
        if isinstance(grad, int):
            tag = (worker, incarnation, grad)
            g = self.data.gradient(tag, rnd)
        elif isinstance(grad, list):
            import ray

            g = np.asarray(ray.get(grad[0]))  # (zero-copy: the array itself)
        else:
            g = unpack(grad)
        with self._lock:
            self.arrived += 1
            self.received[worker] = max(self.received[worker], rnd)
            self.compute_time += sent - start
            self.cancelled_time += abandoned
            self.core.finished(worker, rnd)
            args = (worker, rnd, start, sent, version, g, tag)
            if deliver_at > time.time():
                self._seq += 1
                heapq.heappush(self._mail, (deliver_at, self._seq, args))
                self._lock.notify()
            else:
                self._take(*args)
            v = self._newest(worker, sent)
            free = self._free(worker, incarnation) if tag is not None else None
            if v == version:
                return v, None, free
            return v, [self.data.give(self.refs[v], worker)], free

    def _free(self, worker: int, incarnation: int) -> list[int]:
        """The slots of worker incarnation ``(worker, incarnation)`` that hold no gradient the master still reads:
        not in the K-batch (not yet added to ``w`` nor folded), not waiting for its uplink delay. Never none: if
        every slot is busy, the batch folds what it holds into its accumulator (the same bits at the update) and
        the waiting gradients of this worker are copied out of their slots. Called under the lock."""
        mine = (worker, incarnation)
        busy = {t[2] for t in self.core.holding() if t[:2] == mine}
        busy |= {m[2][6][2] for m in self._mail if m[2][6] is not None and m[2][6][:2] == mine}
        if len(busy) >= GRAD_SLOTS:
            self.core.release()
            for i, (at, seq, args) in enumerate(self._mail):
                if args[6] is not None and args[6][:2] == mine:  # (the heap's order is by (at, seq): unchanged)
                    g = args[5].copy()
                    g.flags.writeable = False
                    self._mail[i] = (at, seq, (*args[:5], g, None))
                    self.data.copied += 1
            busy = set()
        return [s for s in range(GRAD_SLOTS) if s not in busy]

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

    def began(self, msg: tuple[int, int, int, float] | list[Any]) -> None:
        """Ringmaster: ``(worker, round, version, abandoned)``: ``worker`` started ``round`` on ``version`` (after
        abandoning ``abandoned`` seconds of work, if it abandoned a round). One argument, as :meth:`submit`."""
        worker, rnd, version, abandoned = msg
        with self._lock:
            self.cancelled_time += abandoned
            self.core.began(worker, rnd, version)

    def _take(
        self, worker: int, rnd: int, start: float, sent: float, version: int, grad: np.ndarray, tag: Any = None
    ) -> None:
        arrive = time.time()
        core = self.core
        if not core.receive(worker, rnd, start, sent, arrive, version, grad, tag):
            self._dispatch(arrive)  # a dropped gradient's waiting worker
            return
        self.refs[core.version] = self.data.publish(core.w, core.version)
        self._dispatch(arrive)
        if self.error_every and core.version % self.error_every == 0:
            self.errors.append((core.version, arrive, float(self.problem.error(core.w))))
        if self.every and (core.version % self.every == 0 or core.done):
            self._snap(final=False)
        if core.done:
            self._done.set()

    def _dispatch(self, now: float) -> None:
        """Send the current version to the workers the protocol names (:attr:`MasterCore.outbox`): draw when it
        reaches each, and tell the worker if its protocol needs to know."""
        core = self.core
        if not core.outbox:
            return
        v = core.version
        for k in core.outbox:
            if k not in self.down.live:
                continue
            reach = self.down.send(k, v, now)
            handle = self.handles.get(k)
            if self.tell and handle is not None:
                handle.notify.options(enable_task_events=False).remote((v, reach, self.data.give(self.refs[v], k)))
        core.outbox.clear()

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
            "delays": len(self.down.delays),
            "watermarks": rounds,
            "above": above,
            "dropped": dropped,
            "work": self._work(),
        }
        if final:  # the run stops at this state: every gradient received is one of its rows or drops
            self._snapshot["received"] = self.arrived

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
                    return {"version": core.version, "dropped": dropped, "received": self.arrived, "work": self._work()}
                return None
            out = {
                **snap,
                "columns": core.columns(done["rows"], snap["rows"]),
                "update_times": np.array(core.update_times[done["updates"] : snap["updates"]], dtype=np.float64),
                "errors": np.array(self.errors[done["errors"] : snap["errors"]], dtype=np.float64).reshape(-1, 3),
                "downlink": np.array(self.down.delays[done["delays"] : snap["delays"]], dtype=np.float64),
            }
            self._marks = {written: done, snap["version"]: {k: snap[k] for k in done}}
            return out

    def _work(self) -> dict[str, float]:
        """Real seconds of this session's rounds whose gradients reached the master, and of the rounds abandoned."""
        return {"compute": self.compute_time, "cancelled": self.cancelled_time}

    def _newest(self, worker: int, before: float) -> int:
        """The newest version that reached ``worker`` strictly before real time ``before``."""
        v = self.down.newest(worker, before)
        self._prune()
        return v

    def _prune(self) -> None:
        """Forget the object references no live worker can use any more (older than every worker's version)."""
        low = self.down.oldest(default=self.core.version)
        for v in [v for v in self.refs if v < low]:
            self.data.forget(self.refs.pop(v))

    def status(self) -> dict[str, Any]:
        """Progress: updates made, gradients applied, their staleness sum, drops, the rounds taken from each worker,
        the versions of ``w`` the master keeps for its workers (``kept``), whether the run is done."""
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
            "kept": len(self.refs),  # versions a live worker may still be given (the others are released)
            "done": core.done,
            "time": time.time(),
        }

    def release(self) -> None:
        """Remove the run's shared-memory segments (at the end of the run: their memory is freed when the last
        process that maps them unmaps them or ends; the driver also removes them by name if the master is gone,
        :func:`~stalegrad.runtime.shm.unlink_all`)."""
        with self._lock:
            self.data.release()

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
            "downlink": np.array(self.down.delays),
            "t0": self.t0,
            "work": self._work(),
            "clocks": {i: self.clocks[i] for i in sorted(self.clocks)},
            "datapath": self.data.meta(),
            "node": self._node,
        }
