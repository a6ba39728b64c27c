"""Baseline (a) of the benchmark: a straightforward, idiomatic SimPy model of the K-batch-async system.

This is what a competent SimPy user would write for the paper's protocol (DESIGN.md, "The system"), not an
optimised model: one process per worker, one process per gradient in flight on the uplink, a ``Store`` as the
master's inbox, one process per broadcast on the downlink.

Ties: SimPy processes events at the same instant in scheduling order, so same-instant arrivals are taken in the
order their uplink processes resumed (not necessarily worker order), and a version that reaches a worker at the
very instant a round starts may or may not be seen. With continuous compute times ties have probability zero,
and the model then follows the same conventions as :func:`stalegrad.sim.simulate`.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import simpy

BLOCK = 1024  # compute times drawn per worker at a time


def simulate_simpy(system: Any, gradients: int, seed: int) -> dict[str, np.ndarray]:
    """Simulate until ``ceil(gradients / K)`` updates are applied; one row per applied gradient, in arrival order.

    Returns numpy arrays ``worker``, ``round`` (1-based), ``version``, ``update`` and
    ``staleness = (update - 1) - version``.
    """
    n, K = system.n, system.K
    up, down = float(system.uplink), float(system.downlink)
    updates = -(-gradients // K)
    rngs = [np.random.default_rng(w.spawn(3)[0]) for w in np.random.SeedSequence(seed).spawn(n)]

    env = simpy.Environment()
    inbox = simpy.Store(env)
    newest = [0] * n  # newest version that has reached each worker
    rows: list[tuple[int, int, int, int]] = []  # (worker, round, version, update)
    done = env.event()

    def compute_times(i: int) -> Any:
        while True:
            yield from system.compute[i].rvs(size=BLOCK, random_state=rngs[i]).tolist()

    def uplink(msg: tuple[int, int, int]) -> Any:
        yield env.timeout(up)
        yield inbox.put(msg)

    def downlink(version: int) -> Any:
        yield env.timeout(down)
        for i in range(n):
            newest[i] = max(newest[i], version)

    def worker(i: int) -> Any:
        times = compute_times(i)
        for j in itertools.count(1):
            version = newest[i]  # read at the start of the round
            yield env.timeout(next(times))
            env.process(uplink((i, j, version)))

    def master() -> Any:
        for u in range(1, updates + 1):
            batch = []
            for _ in range(K):
                batch.append((yield inbox.get()))
            rows.extend((i, j, v, u) for i, j, v in batch)
            env.process(downlink(u))
        done.succeed()

    for i in range(n):
        env.process(worker(i))
    env.process(master())
    env.run(until=done)

    worker_, round_, version, update = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    return {
        "worker": worker_,
        "round": round_,
        "version": version,
        "update": update,
        "staleness": (update - 1) - version,
    }
