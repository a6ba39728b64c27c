"""Benchmark of the real runtime on Ray against Ray's own parameter-server pattern (run by ``make bench``).

Same Ray instance (local, ``num_cpus=2``), same problem (least squares, d = 20, 2000 samples, minibatch 16), same
``n`` worker actors and ``K`` gradients per update, no injected delays: every round takes what the real gradient
and Ray's messaging take.

* ``stalegrad.runtime.run`` (``time_unit=None``, ``error_every=0``): the master actor takes every gradient, records
  its Trace row (worker, round, times, version, update, staleness), applies an update after every ``K``; workers
  never wait. Updates per second over the run (actor start-up excluded), best of ``reps``.
* baseline: Ray's parameter-server pattern (Ray's docs, "Parameter Server", asynchronous version, with ``K``
  gradients per update): a driver loop ``ray.wait(num_returns=K)`` over ``compute_gradients`` tasks of ``n``
  worker actors, then ``ps.apply_gradients.remote(*ready)`` on a parameter-server actor, and each of those ``K``
  workers is given the new weights' reference for its next gradient. It records nothing. Best of ``reps``.

Both are warmed up (one short run each: Ray's worker processes exist before timing). Ray's per-call latency (a
no-op actor call, and a put then get of a small array) is measured as stalegrad's run measures it. Target: stalegrad
at least 1x the baseline's updates per second. A MISS is reported, not an error. ``--quick`` uses small sizes (a
smoke test); ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import versions
from stalegrad.artefacts import write_json
from stalegrad.distributions import shifted_exponential
from stalegrad.spec import System
from stalegrad.train import LinearRegression

TARGET = 1.0
FULL = {"updates": 2000, "reps": 3, "warmup": 100}
QUICK = {"updates": 100, "reps": 1, "warmup": 20}
LR, BATCH = 0.05, 16


class ParameterServer:
    """Ray's parameter-server actor: holds the weights, applies gradients, hands the weights out."""

    def __init__(self, w0: np.ndarray, lr: float) -> None:
        self.w = np.array(w0, dtype=np.float64)
        self.lr = lr

    def apply_gradients(self, *gradients: np.ndarray) -> np.ndarray:
        self.w = self.w - self.lr * np.mean(gradients, axis=0)
        return self.w

    def get_weights(self) -> np.ndarray:
        return self.w


class DataWorker:
    """Ray's data worker: the gradient of a minibatch at the weights it is given."""

    def __init__(self, problem: Any, batch: int, seed: int) -> None:
        self.problem = problem
        self.batch = batch
        self.rng = np.random.default_rng(seed)

    def compute_gradients(self, weights: np.ndarray) -> np.ndarray:
        return self.problem.gradient(weights, self.batch, self.rng)


def ray_parameter_server(problem: Any, n: int, K: int, updates: int) -> dict[str, float]:
    """The baseline: a driver loop with ``ray.wait`` over the workers' gradients; ``K`` of them per update."""
    import ray

    ps = ray.remote(ParameterServer).remote(problem.init(), LR)
    workers = [ray.remote(DataWorker).remote(problem, BATCH, i) for i in range(n)]
    ray.get([ps.__ray_ready__.remote(), *(w.__ray_ready__.remote() for w in workers)])
    t0 = time.perf_counter()
    weights = ps.get_weights.remote()
    pending = {w.compute_gradients.remote(weights): w for w in workers}
    for _ in range(updates):
        ready, _ = ray.wait(list(pending), num_returns=K)
        weights = ps.apply_gradients.remote(*ready)
        for ref in ready:
            worker = pending.pop(ref)
            pending[worker.compute_gradients.remote(weights)] = worker
    w = ray.get(weights)
    seconds = time.perf_counter() - t0
    for handle in [ps, *workers]:
        ray.kill(handle)
    return {"seconds": seconds, "updates_per_s": updates / seconds, "error": float(problem.error(w))}


def stalegrad_run(problem: Any, n: int, K: int, updates: int, seed: int) -> dict[str, Any]:
    from stalegrad.runtime import run

    system = System(n=n, K=K, compute=shifted_exponential(alpha=1, rate=2 / 3))  # not injected: time_unit=None
    result = run(system, problem, updates, time_unit=None, error_every=0, seed=seed, lr=LR, batch=BATCH)
    return {
        "seconds": result.seconds,
        "updates_per_s": updates / result.seconds,
        "mean_staleness": float(result.trace["staleness"].mean()),
        "rows": len(result.trace),
        "latency": result.latency,
        "error": float(problem.error(result.w)),
    }


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return max(runs, key=lambda r: r["updates_per_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test; ratios not meaningful)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON to PATH")
    parser.add_argument("--n", type=int, default=4, help="worker actors (default 4)")
    parser.add_argument("--K", type=int, default=2, help="gradients per update (default 2; at most n)")
    args = parser.parse_args(argv)
    if not 1 <= args.K <= args.n:
        parser.error(f"--K must be an integer from 1 to --n = {args.n}, got {args.K}")
    sizes = QUICK if args.quick else FULL

    from stalegrad.runtime import start_local, stop_local

    problem = LinearRegression()
    U = sizes["updates"]
    print(f"stalegrad runtime benchmark{' (--quick: small sizes, ratios not meaningful)' if args.quick else ''}")
    print(f"machine : {platform.platform()}, {os.cpu_count()} CPUs; Ray local instance, num_cpus=2")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions("numpy", "ray", "stalegrad").items()))
    print(f"run     : n={args.n} workers, K={args.K}, {problem!r}, minibatch {BATCH}, {U} updates, no injected times")
    print(flush=True)
    local = start_local(num_cpus=2)
    try:
        stalegrad_run(problem, args.n, args.K, sizes["warmup"], seed=0)  # warm-up: Ray's worker processes
        ray_parameter_server(problem, args.n, args.K, sizes["warmup"])
        ours, theirs = [], []
        for rep in range(sizes["reps"]):  # interleaved, so that both see the same machine
            ours.append(stalegrad_run(problem, args.n, args.K, U, seed=rep + 1))
            theirs.append(ray_parameter_server(problem, args.n, args.K, U))
    finally:
        stop_local(local)
    a, b = best(ours), best(theirs)
    lat = a["latency"]
    ratio = a["updates_per_s"] / b["updates_per_s"]
    print(f"{'':44s}{'seconds':>9s}{'updates/s':>11s}  note")
    print(
        f"{'stalegrad master (records staleness)':44s}{a['seconds']:9.3f}{a['updates_per_s']:11.1f}  best of "
        f"{len(ours)}: {[round(r['updates_per_s'], 1) for r in ours]}; {a['rows']} Trace rows, mean staleness "
        f"{a['mean_staleness']:.3f}"
    )
    print(
        f"{'Ray parameter server (ray.wait, K per update)':44s}{b['seconds']:9.3f}{b['updates_per_s']:11.1f}  best of "
        f"{len(theirs)}: {[round(r['updates_per_s'], 1) for r in theirs]}; records nothing"
    )
    print()
    print(
        f"Ray per-call latency: no-op actor call {lat['call_ms_median']:.3f} ms median (p90 {lat['call_ms_p90']:.3f}), "
        f"put+get of 8 kB {lat['put_get_ms_median']:.3f} ms median"
    )
    print(f"final error (sanity: both train): stalegrad {a['error']:.3g}, Ray parameter server {b['error']:.3g}")
    ok = ratio >= TARGET
    print(
        f"ratio stalegrad / Ray parameter server, updates/s: {ratio:.2f}x  (target >= {TARGET:g}x)  "
        f"{'PASS' if ok else 'MISS'}"
    )
    if args.quick:
        print("(--quick: ratios are not meaningful)")
    if args.json:
        write_json(
            args.json,
            {
                "quick": args.quick,
                "n": args.n,
                "K": args.K,
                "updates": U,
                "versions": versions("numpy", "ray", "stalegrad"),
                "stalegrad": ours,
                "ray_parameter_server": theirs,
                "latency_ms": lat,
                "ratio": ratio,
                "target": TARGET,
                "pass": ok,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
