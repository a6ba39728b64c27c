"""Benchmark of the fast simulator against two baselines (run by ``make bench``).

System: n=16 workers, K=10, Tc=1, compute times ``1 + Exp(rate=2/3)`` (the paper's shifted exponential), 1e7
gradients = 1e6 updates.

* baseline (b): drawing the 1e7 compute times with numpy alone (best of 5) -- a floor no simulator can beat;
* ``stalegrad.sim.simulate_summary`` (streamed statistics; warmed up so numba compilation is excluded, best of 3)
  and ``stalegrad.sim.simulate`` (full trace, best of 2);
* baseline (a): the straightforward SimPy model in ``bench/simpy_model.py`` on 2e5 gradients (best of 2),
  extrapolated linearly to 1e7 gradients (its cost per gradient does not depend on the run length).

Targets: speedup vs SimPy >= 300x, simulator time / draw time <= 3x. A MISS is reported, not an error: the script
exits 0 whenever it ran. ``--quick`` uses small sizes (a smoke test; its ratios are not meaningful) and
``--json PATH`` also writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, cpu_model, versions
from simpy_model import simulate_simpy
from stalegrad.artefacts import write_json
from stalegrad.distributions import shifted_exponential
from stalegrad.sim import simulate, simulate_summary
from stalegrad.spec import System

SPEEDUP_TARGET = 300.0  # SimPy time / stalegrad time, at least
DRAW_TARGET = 3.0  # stalegrad time / draw time, at most

FULL = {"gradients": 10**7, "simpy_gradients": 2 * 10**5, "draw_reps": 5, "summary_reps": 3, "trace_reps": 2}
QUICK = {"gradients": 10**5, "simpy_gradients": 5 * 10**3, "draw_reps": 2, "summary_reps": 2, "trace_reps": 1}
SIMPY_REPS = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test; ratios not meaningful)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON to PATH")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL

    system = System(n=16, K=10, tc=1, compute=shifted_exponential(alpha=1, rate=2 / 3))
    G = sizes["gradients"]
    updates = G // system.K
    Gs = sizes["simpy_gradients"]
    cpus = os.cpu_count()
    machine = {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": cpus}
    vers = versions("numpy", "numba", "scipy", "simpy", "stalegrad")

    print(f"stalegrad simulator benchmark{' (--quick: small sizes, ratios not meaningful)' if args.quick else ''}")
    print(f"machine : {machine['platform']}, {machine['cpu']}, {cpus} CPUs")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    print(f"system  : {system}")
    print(f"run     : {G:.0e} gradients = {updates:.0e} updates; SimPy on {Gs:.0e} gradients, extrapolated")
    print(flush=True)

    # baseline (b): the compute times alone
    def draw() -> np.ndarray:
        rng = np.random.default_rng(1)
        return 1 + rng.standard_exponential(G) * 1.5

    t_draw, _ = best_of(sizes["draw_reps"], draw)

    # stalegrad, warmed up (numba compilation excluded)
    simulate_summary(system, 1000, seed=1)
    simulate(system, 1000, seed=1)
    t_sum, summary = best_of(sizes["summary_reps"], lambda: simulate_summary(system, updates, seed=1))
    t_trace, trace = best_of(sizes["trace_reps"], lambda: simulate(system, updates, seed=1))
    assert summary.gradients == G and len(trace) == G, (summary.gradients, len(trace))
    tau_fast = float(trace["staleness"].mean())
    del trace

    # baseline (a): SimPy, extrapolated linearly to G gradients
    t_simpy_run, simpy_out = best_of(SIMPY_REPS, lambda: simulate_simpy(system, Gs, seed=1))
    tau_simpy = float(simpy_out["staleness"].mean())
    simpy_rate = Gs / t_simpy_run
    t_simpy = G / simpy_rate

    # the reference event engine on the SimPy run's size (the same model, any protocol; clarity first)
    t_events_run, events_trace = best_of(SIMPY_REPS, lambda: simulate(system, Gs // system.K, seed=1, engine="events"))
    events_rate = Gs / t_events_run
    events_per_second = events_trace.meta["events"] / t_events_run
    t_events = G / events_rate

    rows = [
        ("numpy draw of the compute times (b)", t_draw, f"best of {sizes['draw_reps']}"),
        ("stalegrad simulate_summary", t_sum, f"best of {sizes['summary_reps']}, warm"),
        ("stalegrad simulate (trace)", t_trace, f"best of {sizes['trace_reps']}, warm"),
        ("SimPy model (a)", t_simpy, f"extrapolated from {Gs:.0e} gradients in {t_simpy_run:.2f} s, best of 2"),
        (
            "stalegrad event engine",
            t_events,
            f"extrapolated from {Gs:.0e} gradients in {t_events_run:.2f} s, best of 2; "
            f"{events_per_second:.3e} events/s",
        ),
    ]
    print(f"{'':38s}{'seconds':>10s}{'gradients/s':>14s}  note")
    for name, t, note in rows:
        print(f"{name:38s}{t:10.3f}{G / t:14.3e}  {note}")
    print()
    print(f"mean staleness: stalegrad {tau_fast:.4f} ({G:.0e} gradients), SimPy {tau_simpy:.4f} ({Gs:.0e} gradients)")
    print()

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    ratios = {
        "speedup_summary_vs_simpy": t_simpy / t_sum,
        "speedup_trace_vs_simpy": t_simpy / t_trace,
        "summary_over_draw": t_sum / t_draw,
        "trace_over_draw": t_trace / t_draw,
        "events_vs_simpy": events_rate / simpy_rate,
    }
    checks = {
        "speedup_summary_vs_simpy": ratios["speedup_summary_vs_simpy"] >= SPEEDUP_TARGET,
        "speedup_trace_vs_simpy": ratios["speedup_trace_vs_simpy"] >= SPEEDUP_TARGET,
        "summary_over_draw": ratios["summary_over_draw"] <= DRAW_TARGET,
        "trace_over_draw": ratios["trace_over_draw"] <= DRAW_TARGET,
        "events_vs_simpy": ratios["events_vs_simpy"] >= 1.0,
    }
    print(
        f"ratio speedup vs SimPy, simulate_summary : {ratios['speedup_summary_vs_simpy']:8.1f}x  "
        f"(target >= {SPEEDUP_TARGET:g}x)  {verdict(checks['speedup_summary_vs_simpy'])}"
    )
    print(
        f"ratio speedup vs SimPy, simulate (trace) : {ratios['speedup_trace_vs_simpy']:8.1f}x  "
        f"(target >= {SPEEDUP_TARGET:g}x)  {verdict(checks['speedup_trace_vs_simpy'])}"
    )
    print(
        f"ratio time / draw time, simulate_summary : {ratios['summary_over_draw']:8.2f}x  "
        f"(target <= {DRAW_TARGET:g}x)  {verdict(checks['summary_over_draw'])}"
    )
    print(
        f"ratio time / draw time, simulate (trace) : {ratios['trace_over_draw']:8.2f}x  "
        f"(target <= {DRAW_TARGET:g}x)  {verdict(checks['trace_over_draw'])}"
    )
    print(
        f"ratio event engine / SimPy, gradients/s  : {ratios['events_vs_simpy']:8.2f}x  "
        f"(target >= 1x)  {verdict(checks['events_vs_simpy'])}"
    )
    if args.quick:
        print("(--quick: sizes too small for the targets to be meaningful)")

    if args.json:
        write_json(
            args.json,
            {
                "quick": args.quick,
                "machine": machine,
                "versions": vers,
                "system": system.to_dict(),
                "gradients": G,
                "updates": updates,
                "simpy_gradients": Gs,
                "seconds": {
                    "draw": t_draw,
                    "simulate_summary": t_sum,
                    "simulate_trace": t_trace,
                    "simpy_measured": t_simpy_run,
                    "simpy_extrapolated": t_simpy,
                },
                "gradients_per_second": {
                    "draw": G / t_draw,
                    "simulate_summary": G / t_sum,
                    "simulate_trace": G / t_trace,
                    "simpy": simpy_rate,
                    "event_engine": events_rate,
                },
                "event_engine_events_per_second": events_per_second,
                "mean_staleness": {"stalegrad": tau_fast, "simpy": tau_simpy},
                "ratios": ratios,
                "targets": {"speedup_vs_simpy_min": SPEEDUP_TARGET, "time_over_draw_max": DRAW_TARGET},
                "pass": checks,
            },
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
