"""Benchmark of the runtime's data path for large models: stalegrad's master against Ray's parameter-server pattern
at d = 1e4, 1e6 and 1e7 (80 MB), with the memory-traffic bound of one update measured in the same run (``make
bench``).

The problem (:class:`Quadratic`) has a gradient that costs little, ``(w - 1) (1 + 0.1 z)`` with one normal ``z``
per gradient (two passes over ``w``), so that what is measured is how ``w`` and the gradients travel: Ray's
serialisation, the object store, copies, the master's lock. It can write its gradient into a given array
(``gradient_into``, as PyTorch problems do), which the shared-memory path uses. Same Ray instance (local,
``num_cpus=2``), ``n = 4`` worker actors, ``K = 2`` gradients per update, no injected times; both are warmed up,
and runs interleave.

* stalegrad: ``stalegrad.runtime.run`` (``time_unit=None``, ``error_every=0``), updates per second over the run,
  with its same-node shared-memory data path (the default: ``w`` and the gradients in fixed buffers mapped once,
  :mod:`stalegrad.runtime.shm`) and, beside it, through Ray's object store (``shared_memory=False``, the path
  for workers on other nodes);
* Ray's parameter-server pattern (as in ``bench_runtime.py``: ``ray.wait`` for ``K`` gradients, the parameter
  server's ``apply_gradients``, new weights' reference to those ``K`` workers);
* the bound: the memory traffic one update needs on this machine, measured with numpy in the same run: adding
  ``K`` gradients into ``w`` in place (``np.add(w, g, out=w)``: the traffic of an axpy) and one copy of ``w`` (the
  version workers read); its inverse is the most updates per second any data path could reach on one core.
* where the time goes, at each size: ``ray.put`` of ``w``, ``ray.get`` of it back (zero-copy for numpy arrays), an
  actor call that carries a gradient of that size (and returns nothing), measured apart.

Targets (issue 17): stalegrad at least 1.5x Ray's pattern at every size, and within 4x of the bound at d = 1e7.
A MISS is reported, not an error. ``--quick`` uses small sizes and few updates (a smoke test; ratios not
meaningful); ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import versions
from bench_runtime import ray_parameter_server
from stalegrad.artefacts import write_json
from stalegrad.distributions import shifted_exponential
from stalegrad.spec import System

RATIO_TARGET = 1.5  # stalegrad / Ray's pattern, updates per second, at least
BOUND_TARGET = 4.0  # bound / stalegrad at the largest size, at most
LR, BATCH = 0.1, 1
N, K = 4, 2
#: (d, updates) per size
FULL = {"sizes": ((10**4, 600), (10**6, 150), (10**7, 40)), "reps": 3}
QUICK = {"sizes": ((10**3, 30), (10**5, 10)), "reps": 1}


class Quadratic:
    """``f(w) = |w - 1|^2 / (2d)``: a gradient of two passes over ``w`` (``(w - 1) (1 + 0.1 z)``, ``z`` normal)."""

    name = "quadratic"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def init(self) -> np.ndarray:
        return np.zeros(self.dim)

    def gradient(self, w: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
        g = np.subtract(w, 1.0)
        g *= 1.0 + 0.1 * rng.standard_normal()
        return g

    def gradient_into(self, w: np.ndarray, b: int, rng: np.random.Generator, out: np.ndarray) -> None:
        """:meth:`gradient` written into ``out`` (a worker's shared-memory slot: no fresh array, no copy)."""
        np.subtract(w, 1.0, out=out)
        out *= 1.0 + 0.1 * rng.standard_normal()

    def loss(self, w: np.ndarray) -> float:
        return float(np.dot(w - 1.0, w - 1.0)) / (2 * self.dim)

    def error(self, w: np.ndarray) -> float:
        return self.loss(w)

    def __repr__(self) -> str:
        return f"Quadratic(dim={self.dim})"


def bound(d: int, reps: int = 5) -> float:
    """Seconds of the memory traffic of one update: ``K`` gradients added into ``w`` in place and one copy of ``w``.

    ``np.add(w, g, out=w)`` reads ``g`` and ``w`` and writes ``w``: the traffic of an axpy (BLAS ``daxpy`` itself
    is not used: OpenBLAS's threads make it slower than one core's loop on this shared 2-core machine)."""
    w, copy = np.zeros(d), np.zeros(d)
    grads = [np.full(d, -LR / K * (j + 1)) for j in range(K)]  # (the step folded into the gradients)
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        for g in grads:
            np.add(w, g, out=w)
        np.copyto(copy, w)
        best = min(best, time.perf_counter() - t0)
    return best


class Sink:
    """An actor that takes a gradient and returns nothing (where the time of a call carrying ``d`` floats goes)."""

    def take(self, g: np.ndarray) -> None:
        return None


def parts(d: int, reps: int = 5) -> dict[str, float]:
    """Median milliseconds of ``ray.put(w)``, ``ray.get`` of it, and an actor call carrying a gradient of size d."""
    import ray

    w = np.ones(d)
    sink = ray.remote(Sink).remote()
    ray.get(sink.take.remote(np.zeros(1)))
    put, get, call = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        ref = ray.put(w)
        t1 = time.perf_counter()
        ray.get(ref)
        t2 = time.perf_counter()
        ray.get(sink.take.remote(w))
        t3 = time.perf_counter()
        put.append(t1 - t0)
        get.append(t2 - t1)
        call.append(t3 - t2)
        del ref
    ray.kill(sink)
    return {k: 1e3 * statistics.median(v) for k, v in (("put_ms", put), ("get_ms", get), ("call_ms", call))}


def stalegrad_run(problem: Quadratic, updates: int, seed: int, shared: bool = True) -> dict[str, Any]:
    from stalegrad.runtime import run

    system = System(n=N, K=K, compute=shifted_exponential(alpha=1, rate=2 / 3))  # not injected: time_unit=None
    result = run(
        system, problem, updates, time_unit=None, error_every=0, seed=seed, lr=LR, batch=BATCH, shared_memory=shared
    )
    return {
        "seconds": result.seconds,
        "updates_per_s": updates / result.seconds,
        "error": problem.error(result.w),
        "datapath": result.trace.meta["datapath"],
    }


def load() -> float:
    """The machine's load average over the last minute (other work on this shared machine)."""
    return os.getloadavg()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test; ratios not meaningful)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON to PATH")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL

    from stalegrad.runtime import start_local, stop_local

    print(f"stalegrad data-path benchmark{' (--quick: small sizes, ratios not meaningful)' if args.quick else ''}")
    print(f"machine : {platform.platform()}, {os.cpu_count()} CPUs; Ray local instance, num_cpus=2")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions("numpy", "scipy", "ray", "stalegrad").items()))
    print(f"run     : n={N} worker actors, K={K}, Quadratic (gradient: two passes over w), no injected times")
    print(flush=True)
    rows: list[dict[str, Any]] = []
    local = start_local(num_cpus=2)
    try:
        for d, updates in cfg["sizes"]:
            problem = Quadratic(d)
            load_before = load()
            stalegrad_run(problem, 3, seed=0)  # warm-up: Ray's worker processes, the first large puts
            stalegrad_run(problem, 3, seed=0, shared=False)
            ray_parameter_server(problem, N, K, 3)
            ours, store, theirs = [], [], []
            for rep in range(cfg["reps"]):  # interleaved, so that all see the same machine
                ours.append(stalegrad_run(problem, updates, seed=rep + 1))
                store.append(stalegrad_run(problem, updates, seed=rep + 1, shared=False))
                theirs.append(ray_parameter_server(problem, N, K, updates))
            row = {
                "d": d,
                "megabytes": 8 * d / 1e6,
                "updates": updates,
                "stalegrad": ours,
                "stalegrad_store": store,
                "ray_parameter_server": theirs,
                "bound_seconds": bound(d),
                **parts(d),
            }
            row["load"] = [load_before, load()]
            row["stalegrad_updates_per_s"] = max(r["updates_per_s"] for r in ours)
            row["store_updates_per_s"] = max(r["updates_per_s"] for r in store)
            row["ray_updates_per_s"] = max(r["updates_per_s"] for r in theirs)
            row["bound_updates_per_s"] = 1.0 / row["bound_seconds"]
            row["ratio"] = row["stalegrad_updates_per_s"] / row["ray_updates_per_s"]
            row["store_ratio"] = row["store_updates_per_s"] / row["ray_updates_per_s"]
            row["bound_ratio"] = row["bound_updates_per_s"] / row["stalegrad_updates_per_s"]
            rows.append(row)
            print(f"d = {d:.0e} done: stalegrad {row['stalegrad_updates_per_s']:.1f} updates/s", flush=True)
    finally:
        stop_local(local)

    print()
    head = f"{'d':>8s}{'MB':>7s}{'stalegrad u/s':>15s}{'store u/s':>11s}{'Ray PS u/s':>12s}{'ratio':>8s}"
    head += f"{'store/PS':>10s}{'bound u/s':>11s}{'bound/ours':>12s}"
    print(head + f"{'put ms':>9s}{'get ms':>9s}{'call ms':>9s}{'load':>11s}")
    for r in rows:
        print(
            f"{r['d']:8.0e}{r['megabytes']:7.2f}{r['stalegrad_updates_per_s']:15.1f}{r['store_updates_per_s']:11.1f}"
            f"{r['ray_updates_per_s']:12.1f}{r['ratio']:7.2f}x{r['store_ratio']:9.2f}x{r['bound_updates_per_s']:11.0f}"
            f"{r['bound_ratio']:11.1f}x{r['put_ms']:9.2f}{r['get_ms']:9.2f}{r['call_ms']:9.2f}"
            f"{r['load'][0]:6.1f}-{r['load'][1]:.1f}"
        )
    print("(stalegrad: the shared-memory data path; store: the same runs through Ray's object store; load: the")
    print(" machine's 1-minute load average before and after the size)")
    spilled = {f"{r['d']:.0e}": [x["datapath"]["through_store"] for x in r["stalegrad"]] for r in rows}
    print(f"versions through the object store on the shared-memory path (ring full), per run: {spilled}")
    print()
    ok_ratio = all(r["ratio"] >= RATIO_TARGET for r in rows)
    ok_bound = rows[-1]["bound_ratio"] <= BOUND_TARGET
    worst = min(r["ratio"] for r in rows)
    print(
        f"stalegrad / Ray's pattern at every size >= {RATIO_TARGET:g}x: worst {worst:.2f}x  "
        f"{'PASS' if ok_ratio else 'MISS'}"
    )
    print(
        f"bound / stalegrad at d = {rows[-1]['d']:.0e} <= {BOUND_TARGET:g}x: {rows[-1]['bound_ratio']:.1f}x  "
        f"{'PASS' if ok_bound else 'MISS'}"
    )
    errors = [f"d={r['d']:.0e} {r['stalegrad'][0]['error']:.3g} / {r['ray_parameter_server'][0]['error']:.3g}"
              for r in rows]  # fmt: skip
    print("final error, stalegrad / Ray's pattern (sanity: both train, from 0.5): " + ", ".join(errors))
    if args.quick:
        print("(--quick: ratios are not meaningful)")
    if args.json:
        write_json(
            args.json,
            {
                "quick": args.quick,
                "n": N,
                "K": K,
                "versions": versions("numpy", "scipy", "ray", "stalegrad"),
                "rows": rows,
                "targets": {"ratio": RATIO_TARGET, "bound": BOUND_TARGET},
                "pass": ok_ratio and ok_bound,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
