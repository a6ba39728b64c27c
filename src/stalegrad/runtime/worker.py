"""A worker of a real run: computes gradients round after round on the newest version it has, and applies its
protocol's rules for workers (:data:`~stalegrad.runtime.protocol.RULES`): wait for a version after sending, abandon
a round when a newer version reaches it, abandon a round at its cutoff.

Round ``j`` of worker ``i`` (DESIGN.md, "The system"):

1. it starts at the instant round ``j - 1`` was sent, and uses the newest version that *reached* the worker
   strictly before that instant -- the master names it in its reply to round ``j - 1``'s gradient
   (:class:`~stalegrad.runtime.master.Master`) and sends it if it is new (a large ``w`` by object reference);
2. it computes a real gradient of the problem on that version (a minibatch drawn from the worker's own stream);
3. with injected times, it then sleeps until ``start + X * time_unit`` (``X`` drawn from its compute-time model:
   the round takes ``X`` time units unless the real work takes longer), and sends the gradient with
   ``deliver_at = sent + uplink * time_unit`` (the master takes it then, or when it arrives if later). On the
   master's node a gradient over :data:`~stalegrad.runtime.datapath.SHARED_BYTES` is copied into one of this
   worker's gradient slots the master said is free (:mod:`stalegrad.runtime.shm`), or computed straight into it
   when the problem can (``gradient_into``), and only the slot's number sent, and ``w`` is read in place from the
   master's version ring (mapped by :meth:`Worker.prepare`); elsewhere a gradient over
   :data:`~stalegrad.runtime.datapath.INLINE_BYTES` is put in the object store (one copy) and its reference sent,
   in a list (so that Ray does not resolve it before the call), and the master reads it zero-copy; a smaller one
   travels inside the call, as its bytes (:func:`~stalegrad.runtime.datapath.pack`).

Under every protocol but k-batch-async the master tells the worker of each version it sends it
(:meth:`Worker.notify`: the version, the instant it reaches the worker, ``w``), and the worker keeps them in a
mailbox. Its compute time is a wait on that mailbox, so that it is interrupted when a version that abandons the
round reaches it before the round ends (k-sync, k-batch-sync, sync, rennala, mindflayer: any newer version;
ringmaster: one ``R`` or more ahead of the round's); at the end of a round a worker that waits (k-async, k-sync,
sync, ringmaster) sleeps until the first version sent to it reaches it. An abandoned round is never sent: its
seconds are reported to the master with the next gradient (``wasted_compute``). A round abandoned at its cutoff
(mindflayer, ``start + c_i``) restarts on the newest version that reached the worker strictly before then; one
abandoned for a version restarts on the newest that reached it by then (the engine's order of events at one
instant). Every round, finished or abandoned, draws one compute time and one minibatch, as in the engines.

Random streams (:mod:`stalegrad.streams`, the layout every engine uses): worker ``i`` draws compute times, uplink
delays, and minibatches from its own streams (downlink delays are drawn by the master from the worker's downlink
stream); a restarted worker (incarnation ``r > 0``) from fresh ones.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from ..spec import System
from ..streams import COMPUTE, MINIBATCH, UPLINK, Draws, worker_seeds
from . import shm
from .datapath import INLINE_BYTES, SHARED_BYTES, pack, unpack
from .protocol import RULES

__all__ = ["ACTOR_OPTIONS", "Worker"]

#: How :class:`Worker` is made a Ray actor: never restarted by Ray (the driver restarts it, as a new incarnation),
#: its calls never retried, two threads (so that :meth:`Worker.stop` and :meth:`Worker.notify` are taken while
#: :meth:`Worker.run` loops), and
#: spread over the cluster's nodes (Ray's default packs actors on the driver's node first; one node: no change).
ACTOR_OPTIONS: dict[str, Any] = {
    "max_restarts": 0,
    "max_task_retries": 0,
    "max_concurrency": 2,
    "scheduling_strategy": "SPREAD",
}


class Worker:
    """The worker actor (threaded, :data:`ACTOR_OPTIONS`: :meth:`stop` is handled while :meth:`run` loops or sleeps).

    ``system`` gives the injected compute times and uplink delays (in time units of ``time_unit`` seconds); with
    ``time_unit=None`` nothing is injected and a round takes what the gradient really takes.

    Clocks: the times a worker sends (``start``, ``sent``, ``deliver_at``) are read on the *master's* clock. On the
    master's node that is the same clock; on another machine the worker estimates the offset of its clock before its
    first round (Cristian's method: the master's time in the ping of least round trip, against the midpoint of that
    round trip; the error is at most half of that round trip) and adds it. ``clock_skew`` (seconds, for tests and
    demonstrations) makes this worker's clock run off by that much, as on a machine with a wrong clock; the offset
    is then estimated even on the master's node.
    """

    def __init__(
        self,
        index: int,
        master: Any,
        problem: Any,
        system: System,
        seed: int,
        batch: int,
        time_unit: float | None,
        incarnation: int = 0,
        clock_skew: float = 0.0,
    ) -> None:
        self.index = index
        self.master = master
        self.problem = problem
        self.batch = int(batch)
        self.unit = time_unit
        self.incarnation = incarnation
        seqs = worker_seeds(seed, system.n, index, incarnation)
        inject = time_unit is not None
        self.compute = Draws(system.compute[index], seqs[COMPUTE], f"compute[{index}]") if inject else None
        self.uplink = Draws(system.uplink, seqs[UPLINK], "uplink") if inject else None
        self.rng = np.random.default_rng(seqs[MINIBATCH])
        self.rounds = 0
        self.rules = RULES[system.protocol]
        self.R = system.delay_threshold
        self.cutoff = system.cutoffs[index] if system.cutoffs is not None and inject else None
        self._stop = threading.Event()
        self._mail = threading.Condition()  # guards the mailbox; notified by notify() and stop()
        self._box: list[tuple[float, int, Any]] = []  # (reach, version, w or its reference) sent, not yet used
        self._best: tuple[int, Any] = (-1, None)  # the newest version that reached this worker, and its w
        self.skew = float(clock_skew)
        self.offset = 0.0  # add to this worker's clock to read the master's
        self.rtt = 0.0  # the round trip of the ping the offset is taken from (0: same node, not estimated)
        self.ring: shm.Segment | None = None  # the master's version ring, read-only (the shared-memory path)
        self.slots: shm.Segment | None = None  # this incarnation's gradient slots
        self.free: list[int] = []  # the slots the master said are free, not used since
        self._into: Any = None  # the problem's gradient_into, if gradients are written straight into their slots

    def _clock(self) -> float:
        """This worker's own clock (skewed by ``clock_skew``)."""
        return time.time() + self.skew

    def _estimate_offset(self, pings: int = 16) -> None:
        """The master's clock minus this worker's, from the ping of least round trip (Cristian's method)."""
        import ray

        best = (math.inf, 0.0)
        for _ in range(pings):
            t0 = self._clock()
            master_time, _ = ray.get(self.master.ping.remote())
            t1 = self._clock()
            if t1 - t0 < best[0]:
                best = (t1 - t0, master_time - (t0 + t1) / 2)
        self.rtt, self.offset = best

    def prepare(self) -> None:
        """Before the run's clock starts: on the master's node, map the master's version ring and this
        incarnation's gradient slots (their pages faulted in now, once: :mod:`stalegrad.runtime.shm`)."""
        import ray

        _, master_node = ray.get(self.master.ping.remote())
        node = ray.get_runtime_context().get_node_id()
        if node == master_node:
            self._map(ray.get(self.master.share.remote(self.index, self.incarnation, node)))

    def _map(self, s: dict[str, Any] | None) -> None:
        if s is None or (self.slots is not None and self.slots.name == s["grads"]):
            return
        self.ring = shm.Segment(s["ring"], s["ring_rows"], s["dim"], writable=False)
        self.slots = shm.Segment(s["grads"], s["slots"], s["dim"])

    def run(self) -> dict[str, Any]:
        """Compute and send gradients until :meth:`stop`; returns the number of rounds sent.

        A gradient whose injected compute time is cut short by :meth:`stop` is not sent (the run is over)."""
        import ray

        _, master_node = ray.get(self.master.ping.remote())
        node = ray.get_runtime_context().get_node_id()
        if self.skew or master_node != node:
            self._estimate_offset()
        offset, skew = self.offset, self.skew

        def now() -> float:  # the master's clock
            return time.time() + skew + offset

        self.now = now
        clock = {"offset": self.offset, "rtt": self.rtt, "node": node}
        me = ray.get_runtime_context().current_actor
        info = ray.get(self.master.register.remote(self.index, self.incarnation, clock, me))
        if "shm" in info:  # on the master's node: the ring and this incarnation's slots (mapped by prepare)
            self._map(info["shm"])
            self.free = list(info["shm"]["free"])
        else:
            self.free = []
        fits = self.slots is not None and self.slots.dim == getattr(self.problem, "dim", None)
        self._into = getattr(self.problem, "gradient_into", None) if fits and self.free else None
        try:
            return self._loop(info, now)
        finally:
            for seg in (self.ring, self.slots):
                if seg is not None:
                    seg.close()

    def _loop(self, info: dict[str, Any], now: Any) -> dict[str, Any]:
        import ray

        rnd = int(info["round"])
        version, ref = int(info["version"]), info["refs"][0]
        self._best = (version, ref)
        have = -1
        w: Any = None
        start = now()
        unit = self.unit or 0.0
        stop = self._stop
        rules = self.rules
        watch = rules.cancels or rules.stops
        abandoned = 0.0  # seconds of rounds abandoned since the last gradient sent
        submit = self.master.submit.options(enable_task_events=False)  # the hot path: no event per call
        began = self.master.began.options(enable_task_events=False)
        while not stop.is_set():
            if rules.stops:
                began.remote((self.index, rnd, version, abandoned))
                abandoned = 0.0
            if have != version:  # the master sends a small w itself, a large one's object reference or ring row
                w = self._read(ref)
                have = version
            grad = self._gradient(w)
            if isinstance(ref, int) and int(self.ring.tags[ref]) != version:  # type: ignore[union-attr]
                raise RuntimeError(f"the ring's row {ref} was reused while version {version} was read")
            finishes = True
            if self.compute is not None:
                x = self.compute.next()
                if self.cutoff is not None and x > self.cutoff:  # mindflayer: abandoned at the cutoff
                    x, finishes = self.cutoff, False
                end = start + x * unit
                if watch:
                    cancel = self._await_end(end, version)
                    if stop.is_set():
                        break
                    if cancel or not finishes:  # abandon the round; start over on the newest version reached
                        if isinstance(grad, int):  # (its slot is free again)
                            self.free.insert(0, grad)
                        t = now()
                        abandoned += t - start
                        # at its cutoff: what reached it strictly before then; for a version: what reached by now
                        version, ref = self._reached(t, strict=False) if cancel else self._reached(end, strict=True)
                        rnd += 1
                        start = t
                        continue
                else:
                    wait = end - now()
                    if wait > 0 and stop.wait(wait):
                        break
            sent = now()
            up = float(self.uplink.next()) * unit if self.uplink is not None else 0.0
            msg = (self.index, self.incarnation, rnd, start, sent, version, self._send(grad, rnd), sent + up, abandoned)
            new, refs, free = ray.get(submit.remote(msg))
            if free is not None:
                self.free = list(free)
            abandoned = 0.0
            if refs is not None:
                version, ref = int(new), refs[0]
            version, ref = self._note(version, ref, sent)
            self.rounds += 1
            rnd += 1
            start = sent
            if rules.waits:  # idle until a version sent to it reaches it; that version and any before it
                if self._await_next(sent) is None:
                    break
                start = now()
                version, ref = self._reached(start, strict=False)
        return {"index": self.index, "rounds": self.rounds}

    def _read(self, ref: Any) -> Any:
        """``w`` of a version from what the master gave: itself (small), its object reference (read zero-copy), or
        the number of its row of the version ring (read in place, read-only)."""
        import ray

        if isinstance(ref, int):
            assert self.ring is not None
            return self.ring.rows[ref]
        return ray.get(ref) if isinstance(ref, ray.ObjectRef) else unpack(ref)

    def _gradient(self, w: Any) -> Any:
        """The round's gradient: written straight into a free slot (its number), on the shared-memory path when the
        problem can write it there (``gradient_into``), else an array."""
        if self._into is not None and self.free:
            slot = self.free.pop(0)
            self._into(w, self.batch, self.rng, self.slots.rows[slot])  # type: ignore[union-attr]
            return slot
        return self.problem.gradient(w, self.batch, self.rng)

    def _send(self, grad: Any, rnd: int) -> Any:
        """What carries a gradient to the master: itself (small), its object reference in a list (large), or, on
        the shared-memory path, the number of the free slot it is copied into, or was written into by the problem
        (tagged with its round after the gradient)."""
        import ray

        if isinstance(grad, int):  # written into its slot already: tagged with its round now
            self.slots.tags[grad] = rnd  # type: ignore[union-attr]
            return grad
        if not isinstance(grad, np.ndarray):
            return grad
        if grad.nbytes <= SHARED_BYTES:
            return pack(grad)
        if self.slots is not None and self.free and grad.size == self.slots.dim:
            slot = self.free.pop(0)
            np.copyto(self.slots.rows[slot], grad.reshape(-1))
            self.slots.tags[slot] = rnd
            return slot
        if grad.nbytes <= INLINE_BYTES:
            return pack(grad)
        return [ray.put(grad)]  # by reference (the master reads it)

    def notify(self, msg: tuple[int, float, Any] | list[Any]) -> None:
        """``(version, reach, w)``: the master sent this worker ``version``, which reaches it at real time ``reach``
        (master's clock); ``w`` is what the worker is given for it (:meth:`_read`). One argument, as
        :meth:`Master.submit <stalegrad.runtime.master.Master.submit>` (an object reference inside it is not
        resolved by Ray)."""
        version, reach, ref = msg
        with self._mail:
            self._box.append((reach, version, ref))
            self._mail.notify_all()

    def _note(self, version: int, ref: Any, sent: float) -> tuple[int, Any]:
        """The master's reply: ``version`` is the newest that reached this worker strictly before ``sent``."""
        with self._mail:
            if version > self._best[0]:
                self._best = (version, ref)
        return self._reached(sent, strict=True)

    def _reached(self, t: float, strict: bool) -> tuple[int, Any]:
        """The newest version that reached this worker before ``t`` (``strict``) or by ``t``, and its ``w``; the
        mail that reached it by then is used up (what reaches it later stays: it may abandon a round, or end a
        wait)."""
        with self._mail:
            later = []
            for m in self._box:
                if m[0] < t or (m[0] == t and not strict):
                    if m[1] > self._best[0]:
                        self._best = (m[1], m[2])
                else:
                    later.append(m)
            self._box = later
            return self._best

    def _await_end(self, end: float, used: int) -> bool:
        """Sleep until real time ``end`` (the round's end), unless a version that abandons the round (newer than
        ``used``; ringmaster: ``R`` or more newer) reaches this worker strictly before then: True, at that
        instant. Returns at once on :meth:`stop`."""
        R = self.R

        def abandons(v: int) -> bool:
            return v - used >= R if R is not None else v > used

        with self._mail:
            while not self._stop.is_set():
                first = min((m[0] for m in self._box if m[0] < end and abandons(m[1])), default=None)
                wait = (end if first is None else first) - self.now()
                if wait <= 0:
                    return first is not None
                self._mail.wait(wait)
        return False

    def _await_next(self, sent: float) -> float | None:
        """Idle from ``sent`` until the first version sent to this worker reaches it (at or after ``sent``): that
        instant, or None on :meth:`stop`."""
        with self._mail:
            while not self._stop.is_set():
                first = min((m[0] for m in self._box if m[0] >= sent), default=None)
                if first is None:
                    self._mail.wait(1.0)
                    continue
                wait = first - self.now()
                if wait <= 0:
                    return first
                self._mail.wait(wait)
        return None

    def stop(self) -> None:
        """Ask the loop to end after the current round."""
        self._stop.set()
        with self._mail:
            self._mail.notify_all()
