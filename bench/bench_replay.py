"""Benchmark of the SGD replay (run by ``make bench``).

Sequential replay of 1e5 updates, K = 1, b = 1, least squares with d = 100 (2000 samples), along a simulated
trace of n = 10 workers (exponential compute, Tc = 0):

* baseline: a naive replay that stores every version in a list and loops over the gradients calling
  ``problem.gradient`` (best of 2);
* ``stalegrad.train.replay`` with the compiled engine (warmed up so compilation is excluded; best of 3) and the
  Python engine (best of 2);
* memory: the peak of Python allocations (tracemalloc) during the compiled replay of traces of 1e4, 1e5 and 1e6
  updates, beside the ring of ``max staleness + 1`` versions and the naive baseline's list of versions.

All runs record the error at 100 points. Target: the compiled replay at least 5x the naive baseline's updates
per second. A MISS is reported, not an error. ``--quick`` uses small sizes (its ratios are not meaningful);
``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of
from stalegrad.sim import simulate
from stalegrad.spec import System
from stalegrad.train import LinearRegression, replay

TARGET = 5.0
FULL = {"updates": 100_000, "memory": (10_000, 100_000, 1_000_000)}
QUICK = {"updates": 5_000, "memory": (1_000, 5_000)}
RECORD = 100


def naive_replay(trace: Any, problem: Any, b: int, step: float, seed: int, record: int) -> list[float]:
    """Every version kept; one gradient at a time at ``versions[version]``; mean of each update's gradients."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    versions = [problem.init()]
    every = max(1, -(-trace.updates // record))
    errors = [problem.error(versions[0])]
    upd, ver = trace["update"], trace["version"]
    grads: list[np.ndarray] = []
    for r in range(len(trace)):
        grads.append(problem.gradient(versions[ver[r]], b, rng))
        if r + 1 == len(trace) or upd[r + 1] != upd[r]:
            versions.append(versions[-1] - step * np.mean(grads, axis=0))
            grads = []
            if upd[r] % every == 0:
                errors.append(problem.error(versions[-1]))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    size = QUICK if args.quick else FULL
    U = size["updates"]
    problem = LinearRegression(dim=100, samples=2000, noise=0.5, seed=0)
    system = System(n=10, K=1, tc=0.0, compute=scipy.stats.expon(scale=1.0))
    trace = simulate(system, U, seed=1)
    step = 0.002
    replay(trace.head(100), problem, b=1, step=step, seed=1)  # compile (cached) before timing

    t_fast, fast = best_of(3, lambda: replay(trace, problem, b=1, step=step, seed=1, record=RECORD))
    t_py, py = best_of(2, lambda: replay(trace, problem, b=1, step=step, seed=1, record=RECORD, engine="python"))
    t_naive, naive = best_of(2, lambda: naive_replay(trace, problem, 1, step, 1, RECORD))
    np.testing.assert_allclose(fast.errors[-1], naive[-1], rtol=1e-6)  # the same algorithm, the same draws
    np.testing.assert_allclose(fast.errors, py.errors, rtol=1e-9)

    memory = []
    for updates in size["memory"]:
        tr = simulate(system, updates, seed=2)
        tracemalloc.start()
        res = replay(tr, problem, b=1, step=step, seed=1, record=RECORD)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        memory.append(
            {
                "updates": updates,
                "staleness_max": res.staleness_max,
                "ring_bytes": res.ring * problem.dim * 8,
                "peak_bytes": peak,
                "naive_versions_bytes": (updates + 1) * problem.dim * 8,
            }
        )
        del tr

    ratio = t_naive / t_fast
    out = {
        "updates": U,
        "dim": problem.dim,
        "b": 1,
        "K": 1,
        "n": system.n,
        "seconds": {"compiled": t_fast, "python": t_py, "naive": t_naive},
        "updates_per_second": {"compiled": U / t_fast, "python": U / t_py, "naive": U / t_naive},
        "speedup_compiled_vs_naive": ratio,
        "speedup_python_vs_naive": t_naive / t_py,
        "target": TARGET,
        "memory": memory,
    }
    print(f"replay of {U} updates, K=1, b=1, least squares d=100 (n=10, Tc=0, exponential compute)")
    for name in ("compiled", "python", "naive"):
        print(f"  {name:9s} {out['seconds'][name]:8.3f} s  {out['updates_per_second'][name]:12.0f} updates/s")
    verdict = "OK" if ratio >= TARGET else "MISS"
    print(f"  compiled / naive: {ratio:.1f}x (target >= {TARGET:g}x) {verdict}; python / naive: {t_naive / t_py:.1f}x")
    print("memory (peak of Python allocations during the compiled replay):")
    for m in memory:
        print(
            f"  {m['updates']:>9d} updates: max staleness {m['staleness_max']:3d}, "
            f"ring {m['ring_bytes'] / 1e3:7.1f} kB, peak {m['peak_bytes'] / 1e6:6.2f} MB "
            f"(naive keeps {m['naive_versions_bytes'] / 1e6:8.1f} MB of versions)"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
