"""Benchmark of the stationary staleness distribution (``stalegrad.theory.staleness_distribution``; ``make bench``).

Speed (best of 3, wall time):

* the whole pmf for the paper's Figure 1 grid: 11 systems, n = 10..20, K = 10, Tc = 1, compute times
  ``1 + Exp(rate=2/3)`` (scipy ``expon(loc=1, scale=1.5)``) -- target under 2 s for all 11;
* 64 workers in 4 classes (gamma, lognormal, Weibull, shifted exponential; 16 each), K = 16, Tc = 1 -- target
  under 5 s;
* baseline, measured in the same run: simulating 1e6 gradients of the same systems (``simulate_summary``, numba
  compiled beforehand), whose histogram is only good to about 1e-3 in total variation.

Accuracy (``--accuracy``, on by default): per system of the test suite, the total-variation distance between the
predicted pmf and ``R`` pooled simulations, beside the simulation's own noise level (the mean distance of an exact
pmf, from the replicates' spread), and the reported error estimate and truncation of the prediction.

A MISS is reported, not an error. ``--quick`` uses small simulations (smoke test); ``--json PATH`` also writes
the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, cpu_model, versions
from stalegrad.sim import simulate_summary
from stalegrad.spec import System
from stalegrad.theory import staleness_distribution

FIG1_TARGET = 2.0
CLASSES_TARGET = 5.0
PAPER = scipy.stats.expon(loc=1, scale=1.5)

ACCURACY = {
    "gamma": System(n=8, K=4, tc=1.5, compute=scipy.stats.gamma(a=2, scale=1)),
    "lognormal": System(n=10, K=5, tc=3, compute=scipy.stats.lognorm(s=0.8, scale=1.5)),
    "Weibull, asymmetric delays": System(n=8, K=3, uplink=0.1, downlink=1.9, compute=scipy.stats.weibull_min(c=1.5)),
    "uniform": System(n=6, K=2, tc=0.5, compute=scipy.stats.uniform(loc=1, scale=2)),
    "shifted exp., Tc above the shift": System(n=12, K=6, tc=2, compute=PAPER),
    "shifted exp., Tc below the shift": System(n=16, K=10, tc=0.5, compute=PAPER),
    "heterogeneous classes": System(
        n=6, K=3, tc=1, compute=[scipy.stats.expon(loc=0.5, scale=0.5)] * 4 + [scipy.stats.gamma(a=3, scale=1)] * 2
    ),
    "K > n": System(n=4, K=10, tc=0.7, compute=scipy.stats.gamma(a=2, scale=1)),
    "exponential (closed form)": System(n=5, K=2, tc=0.3, compute=scipy.stats.expon(scale=1)),
    "heavy tail: lognormal s=1.5": System(n=8, K=4, tc=1, compute=scipy.stats.lognorm(s=1.5, scale=1.0)),
}


def fig1_systems() -> list[System]:
    return [System(n=n, K=10, tc=1, compute=PAPER) for n in range(10, 21)]


def classes_system() -> System:
    models = [
        scipy.stats.gamma(a=2, scale=0.5),
        scipy.stats.lognorm(s=0.5, scale=1.5),
        scipy.stats.weibull_min(c=1.5, scale=2),
        scipy.stats.expon(loc=0.5, scale=2.5),
    ]
    return System(n=64, K=16, tc=1, compute=[m for m in models for _ in range(16)])


def accuracy(system: System, gradients: int, replicates: int) -> dict[str, Any]:
    d = staleness_distribution(system)
    hists = [simulate_summary(system, gradients // system.K, seed=7000 + r).hist for r in range(replicates)]
    size = max(max(len(h) for h in hists), d.pmf.size)
    P = np.array([np.pad(h.astype(float), (0, size - len(h))) for h in hists])
    P /= P.sum(axis=1, keepdims=True)
    pred = np.pad(d.pmf, (0, size - d.pmf.size))
    se = P.std(axis=0, ddof=1) / math.sqrt(replicates)
    pooled_cdf = np.cumsum(P.mean(axis=0))
    return {
        "tv": 0.5 * float(np.abs(pred - P.mean(axis=0)).sum()),
        "noise": 0.5 * math.sqrt(2 / math.pi) * float(se.sum()),
        "gradients": gradients * replicates,
        "error_estimate": d.error_estimate,
        "truncation": d.truncation,
        "method": d.method,
        "quantiles_predicted": [d.quantile(q) for q in (0.5, 0.95, 0.99)],
        "quantiles_simulated": [int(np.argmax(pooled_cdf >= q)) for q in (0.5, 0.95, 0.99)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small simulations (smoke test)")
    parser.add_argument("--no-accuracy", action="store_true", help="speed only")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON to PATH")
    args = parser.parse_args(argv)
    reps = 1 if args.quick else 3
    vers = versions("numpy", "scipy", "numba")
    print(f"stalegrad staleness-distribution benchmark{' (--quick)' if args.quick else ''}")
    print(f"machine : {cpu_model()}; " + ", ".join(f"{k} {v}" for k, v in vers.items()))

    fig1, big = fig1_systems(), classes_system()
    simulate_summary(fig1[0], 1000, seed=0)  # compile the simulator before timing it
    t_fig1, dists = best_of(reps, lambda: [staleness_distribution(s) for s in fig1])
    t_big, d_big = best_of(reps, lambda: staleness_distribution(big))
    sim_grads = 10**5 if args.quick else 10**6
    t_sim_fig1, _ = best_of(reps, lambda: [simulate_summary(s, sim_grads // s.K, seed=1) for s in fig1])
    t_sim_big, _ = best_of(reps, lambda: simulate_summary(big, sim_grads // big.K, seed=1))

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    print()
    print(f"{'':44s}{'pmf (s)':>9s}{'sim 1e6 (s)':>13s}{'pmf/sim':>9s}  target")
    print(
        f"{'Figure 1 grid, 11 systems (n = 10..20)':44s}{t_fig1:9.3f}{t_sim_fig1:13.3f}{t_fig1 / t_sim_fig1:9.2f}"
        f"  < {FIG1_TARGET:g} s {verdict(t_fig1 < FIG1_TARGET)}"
    )
    print(
        f"{'64 workers in 4 classes':44s}{t_big:9.3f}{t_sim_big:13.3f}{t_big / t_sim_big:9.2f}"
        f"  < {CLASSES_TARGET:g} s {verdict(t_big < CLASSES_TARGET)}"
    )
    worst = max(d.error_estimate for d in dists)
    print(
        f"  error estimates: Figure 1 grid <= {worst:.1e}, 64 workers {d_big.error_estimate:.1e} (total variation); "
        f"truncation {max(d.truncation for d in dists):.1e}, {d_big.truncation:.1e}"
    )
    out: dict[str, Any] = {
        "versions": vers,
        "fig1_seconds": t_fig1,
        "fig1_simulation_seconds": t_sim_fig1,
        "classes_seconds": t_big,
        "classes_simulation_seconds": t_sim_big,
        "simulation_gradients": sim_grads,
        "fig1_error_estimate_max": worst,
        "classes_error_estimate": d_big.error_estimate,
        "targets": {"fig1_seconds": FIG1_TARGET, "classes_seconds": CLASSES_TARGET},
    }

    if not args.no_accuracy:
        grads, R = (10**5, 4) if args.quick else (2 * 10**6, 8)
        print()
        print(f"accuracy against the simulator ({R} x {grads:.0e} gradients per system, 10% warm-up each)")
        print(f"{'':36s}{'TV':>9s}{'noise':>9s}{'est. err':>10s}{'trunc.':>9s}  p50/p95/p99 pred | sim")
        out["accuracy"] = {}
        for name, system in ACCURACY.items():
            a = accuracy(system, grads, R)
            out["accuracy"][name] = a
            qp = "/".join(map(str, a["quantiles_predicted"]))
            qs = "/".join(map(str, a["quantiles_simulated"]))
            print(
                f"{name:36s}{a['tv']:9.1e}{a['noise']:9.1e}{a['error_estimate']:10.1e}{a['truncation']:9.1e}  "
                f"{qp} | {qs}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, allow_nan=False))
        print(f"wrote {args.json}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
