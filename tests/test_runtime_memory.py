"""The master's memory stays bounded over a long run: the versions of ``w`` no live worker can be given any more are
released, and what grows is only the record of the run (the Trace's rows, update times, downlink delays)."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from stalegrad.distributions import shifted_exponential
from stalegrad.runtime.datapath import INLINE_BYTES, unpack
from stalegrad.runtime.master import Master
from stalegrad.spec import System

PAPER = shifted_exponential(alpha=1, rate=2 / 3)


class Flat:
    """A problem of ``dim`` parameters whose gradient is a constant (the master never calls it)."""

    name = "flat"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def init(self) -> np.ndarray:
        return np.zeros(self.dim)

    def error(self, w: np.ndarray) -> float:
        return 0.0


def test_a_long_run_keeps_a_bounded_number_of_versions_and_bytes():
    """The master (no Ray: ``w`` of 96 kB travels inside its replies) driven by four workers for 3,000 updates,
    one of them ten times slower than the others (it pins the version it computes on). Each version kept is a
    96 kB copy: a master that kept every version would hold 290 MB at the end. The master keeps at most the
    versions from the slow worker's to the newest -- 31 gradients, 15.5 updates, pass in one of its rounds: 17 --
    and its traced memory between update 500 and update 3,000 grows by less than the record of those updates
    (rows and times, a few hundred kB)."""
    dim, n, K, updates = 12_000, 4, 2, 3000
    assert 8 * dim <= INLINE_BYTES
    master = Master(Flat(dim), System(n=n, K=K, compute=PAPER), 0.1, updates, seed=1, time_unit=None, error_every=0)
    master.start(time.time())
    have = [master.register(i)["version"] for i in range(n)]
    rounds = [1] * n
    grad = np.full(dim, 1e-3)
    kept, traced = [], {}
    tracemalloc.start()
    try:
        turn = 0
        while not master.status()["done"]:
            turn += 1
            for i in range(n):
                if i == n - 1 and turn % 10:  # the slow worker: one gradient in ten turns
                    continue
                now = time.time()
                v, refs, _ = master.submit((i, 0, rounds[i], now, now, have[i], grad, now, 0.0))
                rounds[i] += 1
                if refs is not None:
                    assert unpack(refs[0]).shape == (dim,) and v > have[i]  # (a small w: its bytes)
                    have[i] = v
                status = master.status()
                kept.append(status["kept"])
                for mark in (500, updates - 1):
                    if status["version"] == mark and mark not in traced:
                        traced[mark] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    result = master.result()
    assert result["version"] == updates and len(result["columns"]["worker"]) == updates * K
    assert max(kept) <= 31 // K + 2, max(kept)
    grown = traced[updates - 1] - traced[500]
    assert grown < 2e6, f"{grown / 1e6:.1f} MB more between update 500 and {updates - 1}"


@pytest.mark.slow
def test_a_long_run_with_a_large_model_keeps_few_versions_in_the_object_store(local_ray, check_trace, big_quadratic):
    """A real run with ``w`` of 1.6 MB (put in the object store once per version): over 600 updates the master
    keeps at most the versions its workers may still be given, a handful, never growing with the run."""
    from stalegrad.runtime import run

    dim, updates = 200_000, 600
    kept = []
    result = run(
        System(n=4, K=2, tc=1, compute=PAPER),
        big_quadratic(dim),
        updates,
        time_unit=0.002,
        seed=3,
        lr=0.1,
        batch=4,
        error_every=0,
        progress=lambda status: kept.append((status["version"], status["kept"])),
        poll=0.05,
    )
    check_trace(result, updates, 2)
    assert len(kept) >= 10, "sampled along the run"
    late = [k for v, k in kept if v >= updates // 2]
    assert max(k for _, k in kept) <= 12 and late, kept
    assert max(late) <= 12
