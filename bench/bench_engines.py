"""Benchmark of the compiled event engine against the reference event engine and the fast path (``make bench``).

System: n = 16 workers, K = 10, Tc = 1 (0.5 each way), compute times ``1 + Exp(rate=2/3)``, 1e7 gradients, for
every protocol (sync has K = n = 16), and the paper's protocol with random delays (``expon(scale=0.5)`` each way,
and on the uplink only). In one run, on the same machine:

* the fast path (``stalegrad.sim.simulate_summary`` and ``simulate`` of the paper's protocol with fixed delays,
  warmed up, best of ``reps``): the baseline of the ratios;
* the compiled event engine, streamed (``simulate_compiled_summary``, best of ``reps``) and keeping the Trace
  (``simulate_compiled``, once), warmed up: compilation (or loading numba's cache) is excluded and reported apart;
* the reference event engine (``simulate_events``) on 2e5 gradients, extrapolated linearly;
* memory: the peak of Python allocations (tracemalloc, which sees numpy's buffers) of a streamed run of 1e7 and of
  1e8 gradients.

The protocols of 2023-2025 run too: rennala on the fastest 8 workers, ringmaster (K = 1, R = 16) and mindflayer
(cutoff 3 s). The streamed run takes the loop ``simulate_compiled_summary`` picks (the ``loop`` column): the
synchronous family with fixed delays epoch by epoch (``stalegrad.sim.epochs``), k-async with fixed delays arrival by
arrival (``stalegrad.sim.waiting``), k-batch-async without a staleness bound in chunks (``stalegrad.sim.chunks``),
ringmaster with fixed delays with fewer events (``stalegrad.sim.ring``), everything else event by event; the Trace
always comes from the event loop.

Targets: every protocol streamed at >= 1e7 gradients/s, >= 50x the reference engine and within 5x of the fast
path's streamed run (time ratio <= 5); the paper's protocol with random delays within 3x; memory of the 1e8
run <= 1.5x that of the 1e7 run. A MISS is reported, not an error: the script exits 0 whenever it ran. ``--quick``
uses small sizes (a smoke test; its ratios are not meaningful) and ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import scipy.stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, cpu_model, versions
from stalegrad.artefacts import write_json
from stalegrad.distributions import shifted_exponential
from stalegrad.sim import simulate, simulate_summary
from stalegrad.sim.chunks import runs_in_chunks
from stalegrad.sim.compiled import simulate_compiled, simulate_compiled_summary, warm
from stalegrad.sim.epochs import runs_in_epochs
from stalegrad.sim.events import simulate_events
from stalegrad.sim.ring import runs_ring
from stalegrad.sim.waiting import runs_waiting
from stalegrad.spec import System

RATE_TARGET = 1e7  # compiled, streamed: gradients per second, at least
PYTHON_TARGET = 50.0  # compiled / reference engine, gradients per second, at least
FAST_TARGET = 5.0  # compiled time / fast path time (both streamed), at most
FAST_TARGET_RANDOM = 3.0  # the same for the paper's protocol with random delays
MEMORY_TARGET = 1.5  # peak of the 10x longer streamed run / peak of the shorter, at most

FULL = {"gradients": 10**7, "python_gradients": 2 * 10**5, "reps": 2, "memory": (10**7, 10**8)}
QUICK = {"gradients": 10**5, "python_gradients": 5 * 10**3, "reps": 1, "memory": (10**5, 10**6)}


def systems() -> dict[str, System]:
    model = shifted_exponential(alpha=1, rate=2 / 3)
    base = System(n=16, K=10, tc=1, compute=model)
    expon = scipy.stats.expon(scale=0.5)
    return {
        "k-batch-async": base,
        "k-batch-async, random delays": base.replace(uplink=expon, downlink=expon),
        "k-batch-async, random uplink": base.replace(uplink=expon),
        "k-async": base.replace(protocol="k-async"),
        "k-sync": base.replace(protocol="k-sync"),
        "k-batch-sync": base.replace(protocol="k-batch-sync"),
        "sync (K = 16)": base.replace(protocol="sync", K=16),
        "rennala (fastest 8)": base.replace(protocol="rennala", workers="fastest:8"),
        "ringmaster (R = 16)": base.replace(protocol="ringmaster", K=1, delay_threshold=16),
        "mindflayer (cutoff 3)": base.replace(protocol="mindflayer", cutoffs=3.0),
    }


def peak_memory(system: System, gradients: int) -> int:
    """Peak of Python allocations (bytes) during a streamed compiled run of ``gradients`` gradients."""
    updates = gradients // system.K
    tracemalloc.start()
    simulate_compiled_summary(system, updates, seed=1, warmup=updates // 10, batches=32, transient=0)
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test; ratios not meaningful)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON to PATH")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    G, Gp, reps = sizes["gradients"], sizes["python_gradients"], sizes["reps"]
    machine = {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count()}
    vers = versions("numpy", "numba", "scipy", "stalegrad")
    print(f"stalegrad event engines benchmark{' (--quick: small sizes, ratios not meaningful)' if args.quick else ''}")
    print(f"machine : {machine['platform']}, {machine['cpu']}, {machine['cpu_count']} CPUs")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    print(f"run     : {G:.0e} gradients per protocol; the reference engine on {Gp:.0e}, extrapolated")

    t0 = time.perf_counter()
    compile_seconds = warm()
    print(f"compile : {compile_seconds:.2f} s to compile the kernels or load them from numba's cache (excluded)")
    print(flush=True)

    cases = systems()
    fast_system = cases["k-batch-async"]
    simulate_summary(fast_system, 1000, seed=1)  # the fast path, warmed up
    simulate(fast_system, 1000, seed=1)
    t_fast_sum, _ = best_of(reps, lambda: simulate_summary(fast_system, G // fast_system.K, seed=1))
    t_fast_trace, _ = best_of(1, lambda: simulate(fast_system, G // fast_system.K, seed=1))

    rows: dict[str, dict[str, Any]] = {}
    header = f"{'':30s}{'streamed g/s':>14s}{'trace g/s':>12s}{'reference g/s':>15s}{'x reference':>13s}"
    print(header + f"{'time / fast':>13s}{'loop':>9s}  verdict")
    for name, system in cases.items():
        U = G // system.K
        g = U * system.K
        t_sum, _ = best_of(reps, lambda s=system, u=U: simulate_compiled_summary(
            s, u, seed=1, warmup=u // 10, batches=32, transient=0))  # fmt: skip
        t_trace, trace = best_of(1, lambda s=system, u=U: simulate_compiled(s, u, seed=1))
        assert trace.updates == U, (name, trace.updates)
        del trace
        Up = max(Gp // system.K, 1)
        t_py, _ = best_of(1, lambda s=system, u=Up: simulate_events(s, u, seed=1))
        rate, rate_py = g / t_sum, Up * system.K / t_py
        over_fast = t_sum / t_fast_sum * (G / g)  # time per gradient, compiled over fast
        limit = FAST_TARGET_RANDOM if "random" in name else FAST_TARGET
        ok = rate >= RATE_TARGET and rate / rate_py >= PYTHON_TARGET and over_fast <= limit
        loops = {"epochs": runs_in_epochs, "waiting": runs_waiting, "chunks": runs_in_chunks, "ring": runs_ring}
        loop = next((label for label, runs in loops.items() if runs(system)), "events")
        rows[name] = {
            "system": system.to_dict(),
            "loop": loop,
            "gradients": g,
            "seconds_streamed": t_sum,
            "seconds_trace": t_trace,
            "gradients_per_second_streamed": rate,
            "gradients_per_second_trace": g / t_trace,
            "reference_gradients_per_second": rate_py,
            "speedup_vs_reference": rate / rate_py,
            "time_over_fast_path": over_fast,
            "time_over_fast_path_max": limit,
            "pass": ok,
        }
        print(
            f"{name:30s}{rate:14.3e}{g / t_trace:12.3e}{rate_py:15.3e}{rate / rate_py:12.0f}x"
            f"{over_fast:12.2f}x{loop:>9s}  {'PASS' if ok else 'MISS'}",
            flush=True,
        )
    print(f"{'fast path (k-batch-async)':30s}{G / t_fast_sum:14.3e}{G / t_fast_trace:12.3e}")
    print()

    memory: dict[str, dict[str, Any]] = {}
    short, long = sizes["memory"]
    for name in ("k-batch-async, random delays", "k-sync", "k-async"):
        system = cases[name]
        small, large = peak_memory(system, short), peak_memory(system, long)
        memory[name] = {"gradients": [short, long], "peak_bytes": [small, large], "ratio": large / small}
        ok = large / small <= MEMORY_TARGET
        print(
            f"memory, {name}: peak {small / 2**20:.1f} MiB for {short:.0e} gradients, {large / 2**20:.1f} MiB for "
            f"{long:.0e}: ratio {large / small:.2f}x (target <= {MEMORY_TARGET}x)  {'PASS' if ok else 'MISS'}",
            flush=True,
        )
    print(
        f"targets: streamed >= {RATE_TARGET:.0e} gradients/s, >= {PYTHON_TARGET:g}x the reference engine, time <= "
        f"{FAST_TARGET:g}x the fast path's streamed run (<= {FAST_TARGET_RANDOM:g}x with random delays)"
    )
    print(f"(benchmark took {time.perf_counter() - t0:.0f} s)")
    if args.quick:
        print("(--quick: sizes too small for the targets to be meaningful)")
    if args.json:
        write_json(
            args.json,
            {
                "quick": args.quick,
                "machine": machine,
                "versions": vers,
                "gradients": G,
                "compile_seconds": compile_seconds,
                "fast_path": {
                    "seconds_streamed": t_fast_sum,
                    "seconds_trace": t_fast_trace,
                    "gradients_per_second_streamed": G / t_fast_sum,
                    "gradients_per_second_trace": G / t_fast_trace,
                },
                "protocols": rows,
                "memory": memory,
                "targets": {
                    "gradients_per_second_min": RATE_TARGET,
                    "speedup_vs_reference_min": PYTHON_TARGET,
                    "time_over_fast_path_max": FAST_TARGET,
                    "time_over_fast_path_random_max": FAST_TARGET_RANDOM,
                    "memory_ratio_max": MEMORY_TARGET,
                },
            },
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
