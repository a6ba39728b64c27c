"""Benchmark and check of ``stalegrad advise`` (``make bench``).

On three heterogeneous 16-worker clusters with a 10x or larger spread of mean compute times (one with a heavy
tail) and two problems (linreg, logreg), each to 1% of its initial error:

* the advisor's answer with the default search space (worker counts 1, 2, 4, 8, 16 and the theory's m*; K = 1,
  2, 4, 8; b = 1; ten halving steps and the steps between) -- wall time (target: under 60 s for one cluster on this
  2-core machine), configurations screened and replays made;
* an exhaustive grid over the same space (every worker count tried, K and step, the steps between included), each
  point replayed with 8 fresh seeds (a root seed the advisor never used) to choose the grid's best; then the
  best grid point, the naive choice (every worker, K = 1, its best step) and the recommendation replayed on 32
  other fresh seeds (``--measure``): the recommendation's median time to target against the best's (target:
  within 10%) and the naive's, and the paired ratios (geometric mean over the seeds of the per-seed ratio, with its
  95% interval). Choosing and measuring on one set of seeds would flatter the best of hundreds of noisy points;
* whether the advisor's predicted median lies inside the interval measured by the fresh replays.

A MISS is reported, not an error. ``--quick`` runs one cluster and one problem with fewer replications;
``--rows 2,4`` only those rows (1-6: cluster by cluster, linreg then logreg). ``--json PATH`` also writes the
numbers. The load average (``os.getloadavg``) is printed before and after each row: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_model, versions


def clusters() -> dict[str, Any]:
    from stalegrad import System
    from stalegrad.distributions import shifted_exponential

    means = np.geomspace(1.0, 10.0, 16)
    heavy = [scipy.stats.lognorm(s=1.5, scale=m * math.exp(-1.125)) for m in np.geomspace(1.0, 20.0, 16)]
    return {
        "exponential, means 1..10": System(n=16, K=1, compute=[scipy.stats.expon(scale=m) for m in means]),
        "4 fast (1 + Exp mean 1), 12 slow (10 + Exp mean 10), Tc 0.5": System(
            n=16, K=1, tc=0.5, compute=[shifted_exponential(1.0, 1.0)] * 4 + [shifted_exponential(10.0, 0.1)] * 12
        ),
        "lognormal (sigma 1.5, heavy tail), means 1..20": System(n=16, K=1, compute=heavy),
    }


def check(name: str, cluster: Any, problem: Any, replications: int, seeds: int, measure: int) -> dict[str, Any]:
    from stalegrad.advise import Candidate, advise, step_grid
    from stalegrad.advise.candidates import evaluate
    from stalegrad.advise.validation import paired_log_ratio
    from stalegrad.experiments.training import _median_interval

    target = 0.01 * problem.error(problem.init())
    t0 = time.perf_counter()
    advice = advise(cluster, problem, target, seed=1, seeds=seeds)
    seconds = time.perf_counter() - t0
    rec = advice.recommended.candidate
    horizon = advice.result.horizon
    order = tuple(int(i) for i in np.argsort(np.asarray(cluster.means), kind="stable"))
    grid = step_grid(problem, 10)
    steps = sorted({*grid, *(s * 2**-0.5 for s in grid)}, reverse=True)
    sizes = sorted({1, 2, 4, 8, 16, *(r["n"] for r in advice.rows())})
    space = [Candidate(order[:m], K, 1, s) for m in sizes for K in (1, 2, 4, 8) for s in steps]
    kw: dict[str, Any] = {"horizon": 2 * horizon, "target": target}
    t1 = time.perf_counter()
    chosen = evaluate(cluster, problem, space, root=1_000_003, replications=range(replications), **kw)
    grid_seconds = time.perf_counter() - t1
    best = min(space, key=lambda c: chosen[c].key)
    naive = min((c for c in space if len(c.workers) == 16 and c.K == 1), key=lambda c: chosen[c].key)
    three = list(dict.fromkeys([best, naive, rec]))
    scored = evaluate(cluster, problem, three, root=2_000_003, replications=range(measure), **kw)
    mine = scored[rec]
    vs_best = paired_log_ratio(mine.times, scored[best].times, 2 * horizon)
    vs_naive = paired_log_ratio(scored[naive].times, mine.times, 2 * horizon)
    lo, hi = _median_interval(mine.times)
    predicted = advice.recommended.time_to_target
    return {
        "cluster": name,
        "problem": problem.name,
        "seconds": seconds,
        "screened": advice.result.screened,
        "replays": advice.result.replays,
        "recommended": {"workers": len(rec.workers), "K": rec.K, "step": rec.step},
        "naive_recommended": rec == advice.result.naive.candidate,
        "theory_workers": advice.result.theory.m if advice.result.theory else None,
        "predicted": predicted,
        "fresh": mine.time_to_target,
        "fresh_interval": [lo, hi],
        "inside": bool(lo <= predicted <= hi),
        "best_grid": {
            "workers": len(best.workers),
            "K": best.K,
            "step": best.step,
            "time": scored[best].time_to_target,
        },
        "ratio_to_best": mine.time_to_target / scored[best].time_to_target,
        "paired_ratio_to_best": [math.exp(vs_best.mean), *(math.exp(x) for x in vs_best.ci95)],
        "paired_gain_over_naive": [math.exp(vs_naive.mean), *(math.exp(x) for x in vs_naive.ci95)],
        "measure_seeds": measure,
        "naive": {"step": naive.step, "time": scored[naive].time_to_target},
        "gain_over_naive": scored[naive].time_to_target / mine.time_to_target,
        "grid_points": len(space),
        "grid_seconds": grid_seconds,
    }


def _ci(triple: list[float]) -> str:
    return f"{triple[0]:.3f} [{triple[1]:.3f}, {triple[2]:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one cluster, one problem, fewer replications")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON to PATH")
    parser.add_argument("--measure", type=int, default=None, help="seeds of the final measurement (default 32)")
    parser.add_argument("--rows", metavar="LIST", help="only these rows, e.g. 2,4 (1-6: each cluster's linreg, logreg)")
    args = parser.parse_args()
    from stalegrad.train import LinearRegression, LogisticRegression

    print(f"stalegrad advise benchmark{' (--quick)' if args.quick else ''}")
    print(f"machine : {cpu_model()}")
    print(f"versions: {versions('numpy', 'scipy', 'numba', 'stalegrad')}")
    problems = [LinearRegression()] if args.quick else [LinearRegression(), LogisticRegression()]
    chosen = list(clusters().items())[: 1 if args.quick else 3]
    replications = 4 if args.quick else 8
    wanted = {int(x) for x in args.rows.split(",")} if args.rows else None
    results = []
    for number, ((name, cluster), problem) in enumerate(((c, p) for c in chosen for p in problems), start=1):
        if wanted is not None and number not in wanted:
            continue
        before = os.getloadavg()[0]
        measure = args.measure or (8 if args.quick else 32)
        r = check(name, cluster, problem, replications, seeds=4 if args.quick else 8, measure=measure)
        r["row"], r["load"] = number, [before, os.getloadavg()[0]]
        results.append(r)
        rec, best = r["recommended"], r["best_grid"]
        verdict = "PASS" if r["ratio_to_best"] <= 1.10 else "MISS"
        print(
            f"\n{name} / {r['problem']}: advise {r['seconds']:.1f} s ({'PASS' if r['seconds'] < 60 else 'MISS'} "
            f"< 60 s), {r['screened']} configurations screened, {r['replays']} replays; theory m* = "
            f"{r['theory_workers']}\n"
            f"  recommended {rec['workers']} workers K = {rec['K']} step {rec['step']:.4g}: predicted "
            f"{r['predicted']:.4g}, fresh seeds {r['fresh']:.4g} [{r['fresh_interval'][0]:.4g}, "
            f"{r['fresh_interval'][1]:.4g}] ({'inside' if r['inside'] else 'OUTSIDE'})\n"
            f"  exhaustive grid ({r['grid_points']} points x {replications} fresh seeds, "
            f"{r['grid_seconds']:.1f} s): best {best['workers']} workers K = {best['K']} step {best['step']:.4g}"
            f" at {best['time']:.4g} on other fresh seeds; recommended / best = {r['ratio_to_best']:.3f} "
            f"{verdict} (<= 1.10)\n"
            f"  paired over {r['measure_seeds']} seeds: recommended / best {_ci(r['paired_ratio_to_best'])}, naive / "
            f"recommended {_ci(r['paired_gain_over_naive'])}\n"
            f"  naive (16 workers, K = 1, step {r['naive']['step']:.4g}) {r['naive']['time']:.4g}: gain "
            f"{r['gain_over_naive']:.2f}x{' (the recommendation)' if r['naive_recommended'] else ''}; load "
            f"average {r['load'][0]:.1f} before, {r['load'][1]:.1f} after"
        )
    print("\n| # | cluster | problem | advise time | screened / replays | recommended | predicted -> fresh [interval] |"
          " grid's best | ratio | paired ratio | gain over naive (paired) |")  # fmt: skip
    for r in results:
        rec, best = r["recommended"], r["best_grid"]
        lo, hi = r["fresh_interval"]
        print(
            f"| {r['row']} | {r['cluster']} | {r['problem']} | {r['seconds']:.1f} s"
            f"{'' if r['seconds'] < 60 else ' MISS'} | {r['screened']} / {r['replays']} | {rec['workers']}, "
            f"K={rec['K']}{' (naive)' if r['naive_recommended'] else ''} | {r['predicted']:.4g} -> {r['fresh']:.4g} "
            f"[{lo:.4g}, {hi:.4g}]{'' if r['inside'] else ' OUTSIDE'} | {best['workers']} K={best['K']}, "
            f"{best['time']:.4g} | {r['ratio_to_best']:.3f} {'PASS' if r['ratio_to_best'] <= 1.10 else 'MISS'} | "
            f"{_ci(r['paired_ratio_to_best'])} | {r['gain_over_naive']:.2f}x ({_ci(r['paired_gain_over_naive'])}) |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
