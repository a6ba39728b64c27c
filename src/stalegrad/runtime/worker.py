"""A worker of a real run: computes gradients round after round, never waiting, on the newest version it has.

Round ``j`` of worker ``i`` (DESIGN.md, "The system"):

1. it starts at the instant round ``j - 1`` was sent, and uses the newest version that *reached* the worker
   strictly before that instant -- the master names it in its reply to round ``j - 1``'s gradient
   (:class:`~stalegrad.runtime.master.Master`) and sends it if it is new (a large ``w`` by object reference);
2. it computes a real gradient of the problem on that version (a minibatch drawn from the worker's own stream);
3. with injected times, it then sleeps until ``start + X * time_unit`` (``X`` drawn from its compute-time model:
   the round takes ``X`` time units unless the real work takes longer), and sends the gradient with
   ``deliver_at = sent + uplink * time_unit`` (the master takes it then, or when it arrives if later).

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

__all__ = ["ACTOR_OPTIONS", "Worker"]

#: How :class:`Worker` is made a Ray actor: never restarted by Ray (the driver restarts it, as a new incarnation),
#: its calls never retried, two threads (so that :meth:`Worker.stop` is taken while :meth:`Worker.run` loops), and
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
        self._stop = threading.Event()
        self.skew = float(clock_skew)
        self.offset = 0.0  # add to this worker's clock to read the master's
        self.rtt = 0.0  # the round trip of the ping the offset is taken from (0: same node, not estimated)

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

        clock = {"offset": self.offset, "rtt": self.rtt, "node": node}
        info = ray.get(self.master.register.remote(self.index, self.incarnation, clock))
        rnd = int(info["round"])
        version, ref = int(info["version"]), info["refs"][0]
        have = -1
        w: Any = None
        start = now()
        unit = self.unit or 0.0
        stop = self._stop
        submit = self.master.submit.options(enable_task_events=False)  # the hot path: no event per call
        while not stop.is_set():
            if have != version:  # the master sends a small w itself, a large one's object reference
                w = ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref
                have = version
            grad = self.problem.gradient(w, self.batch, self.rng)
            if self.compute is not None:
                wait = start + self.compute.next() * unit - now()
                if wait > 0 and stop.wait(wait):
                    break
            sent = now()
            up = self.uplink.next() * unit if self.uplink is not None else 0.0
            new, refs = ray.get(submit.remote(self.index, rnd, start, sent, version, grad, sent + up))
            if refs is not None:
                version, ref = int(new), refs[0]
            self.rounds += 1
            rnd += 1
            start = sent
        return {"index": self.index, "rounds": self.rounds}

    def stop(self) -> None:
        """Ask the loop to end after the current round."""
        self._stop.set()
