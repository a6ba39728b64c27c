"""The paper's experiments (Al-Lawati & Draper, Section 4), composed from theory, simulation and analysis.

* ``fig1`` -- mean staleness against n = 10..20 (K = 10, Tc = 1, shifted exponential alpha = 1, lambda = 2/3):
  simulation with 95% CIs, the paper's Theorem 2 and the exact limit.
* ``fig2`` -- the transient: mean staleness of each of the first 50 updates (n = 10, K = 5), over replications.
* ``section4`` -- the two cases with equal update rate and per-update minibatch: Case 1 (K = 10, mean compute 2)
  and Case 2 (K = 1, mean compute 20), n = 10, Tc = 0; staleness 1 and 10.
* ``fig3`` -- the same two cases training a linear regression by SGD replayed along their simulated timelines:
  error against time over seeds (Case 1 learns faster in the same time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from ..analysis import Transient, transient
from ..distributions import scaled, shifted_exponential
from ..sim import simulate
from ..spec import System
from ..streams import derive_seed
from ..theory import Prediction, predict
from .points import Point, Report, report_for, run_point

__all__ = ["FIG3_PROBLEM", "FIG3_STEP", "FIG3_TARGET", "Fig3", "fig1", "fig2", "fig3", "paper_compute", "section4"]


def paper_compute() -> Any:
    """The paper's compute-time model: shifted exponential with alpha = 1, lambda = 2/3 (mean 2.5)."""
    return shifted_exponential(alpha=1.0, rate=2.0 / 3.0)


def fig1(
    updates: int = 400_000, seed: int = 1, ns: Sequence[int] = range(10, 21), progress: Report | None = None
) -> list[Point]:
    """Figure 1: K = 10, Tc = 1, the paper's shifted exponential, n = 10..20."""
    compute = paper_compute()
    points = []
    for k, n in enumerate(ns):
        system = System(n=n, K=10, tc=1.0, compute=compute)
        points.append(
            run_point(system, updates, derive_seed(seed, 1, k), f"n={n}", progress=report_for(progress, f"fig1 n={n}"))
        )
    return points


def fig2_system() -> System:
    return System(n=10, K=5, tc=1.0, compute=paper_compute())


def fig2(
    replications: int = 2000, updates: int = 50, seed: int = 1, progress: Report | None = None
) -> tuple[System, Transient, Prediction]:
    """Figure 2: mean staleness of each of the first ``updates`` updates, n = 10, K = 5, over replications."""
    system = fig2_system()
    runs = []
    for r in range(replications):
        runs.append(simulate(system, updates, seed=derive_seed(seed, 2, r)))
        if progress is not None and ((r + 1) % 50 == 0 or r + 1 == replications):
            progress("fig2 replications", r + 1, replications)
    return system, transient(runs, updates), predict(system)


def section4_systems() -> list[tuple[str, System]]:
    """Case 1: b = 1, K = 10, mean compute 2; Case 2: b = 10, K = 1, mean compute 20 (exponential), n = 10, Tc = 0."""
    return [
        ("case 1 (b=1, K=10, mu=2)", System(n=10, K=10, tc=0.0, compute=scipy.stats.expon(scale=2.0))),
        ("case 2 (b=10, K=1, mu=20)", System(n=10, K=1, tc=0.0, compute=scipy.stats.expon(scale=20.0))),
    ]


def section4(updates: int = 200_000, seed: int = 1, progress: Report | None = None) -> list[Point]:
    """The paper's Section 4 comparison: equal update rates, staleness 1 against 10."""
    return [
        run_point(system, updates, derive_seed(seed, 3, k), label, progress=report_for(progress, label))
        for k, (label, system) in enumerate(section4_systems())
    ]


#: Figure 3's training problem and step (the paper does not give them): least squares, 20 unknowns, 2000 samples,
#: noise 0.5, constant step 0.1, gradients of an update averaged (both cases then take 10 samples per update).
FIG3_PROBLEM: dict[str, Any] = {"dim": 20, "samples": 2000, "noise": 0.5, "seed": 0}
FIG3_STEP = 0.1
#: the target error of "time to target": this fraction of the initial error
FIG3_TARGET = 0.01


def fig3_cases() -> list[tuple[str, int, System]]:
    """Section 4's cases with compute time linked to the minibatch: per-sample time ``Exp(mean 2)`` scaled by
    ``b`` (Case 1: b = 1, K = 10, mean 2; Case 2: b = 10, K = 1, mean 20), n = 10, Tc = 0."""
    per_sample = scipy.stats.expon(scale=2.0)
    return [
        ("case 1 (b=1, K=10, μ=2)", 1, System(n=10, K=10, tc=0.0, compute=scaled(per_sample, 1))),
        ("case 2 (b=10, K=1, μ=20)", 10, System(n=10, K=1, tc=0.0, compute=scaled(per_sample, 10))),
    ]


@dataclass(frozen=True)
class Fig3:
    """Figure 3: per case, the replays over seeds and their band on a common time grid; per seed, the margins."""

    labels: list[str]
    systems: list[System]
    bands: list[Any]  # stalegrad.train.curves.Band, one per case
    target: float
    rows: list[dict[str, Any]]  # one per seed

    def summary(self) -> dict[str, Any]:
        time_ratio = [r["time_ratio"] for r in self.rows]
        late_ratio = [r["late_error_ratio"] for r in self.rows]
        return {
            "seeds": len(self.rows),
            "ordering_holds": sum(r["ordering_holds"] for r in self.rows),
            "target_error": self.target,
            "time_ratio_min": min(time_ratio),
            "time_ratio_geomean": float(np.exp(np.mean(np.log(time_ratio)))),
            "late_error_ratio_min": min(late_ratio),
            "late_error_ratio_geomean": float(np.exp(np.mean(np.log(late_ratio)))),
            "fraction_below_min": min(r["fraction_below"] for r in self.rows),
            "horizon": float(self.bands[0].grid[-1]),
            "problem": FIG3_PROBLEM,
            "step": FIG3_STEP,
            "rows": self.rows,
        }


def fig3(updates: int = 1000, seeds: int = 5, seed: int = 1, progress: Report | None = None) -> Fig3:
    """Figure 3: Case 1 against Case 2 training :data:`FIG3_PROBLEM` for ``updates`` updates, over ``seeds``
    seeds (each seed: a simulated timeline and minibatches per case).

    Per seed, on the grid ``[0, T]`` with ``T`` the earliest last-update time of the seed's two runs: the time
    each case first reaches :data:`FIG3_TARGET` times the initial error, the geometric mean error over the last
    tenth of ``[0, T]``, and the fraction of the grid where Case 1's error is below Case 2's. The ordering holds
    when Case 1 reaches the target sooner *and* ends lower.
    """
    from ..train import LinearRegression, replay
    from ..train.curves import band

    problem = LinearRegression(**FIG3_PROBLEM)
    cases = fig3_cases()
    runs: list[list[Any]] = [[] for _ in cases]
    for r in range(seeds):
        for c, (_, b, system) in enumerate(cases):
            trace = simulate(system, updates, seed=derive_seed(seed, 4, r, c, 0))
            runs[c].append(replay(trace, problem, b=b, step=FIG3_STEP, seed=derive_seed(seed, 4, r, c, 1)))
        if progress is not None:
            progress("fig3 seeds", r + 1, seeds)
    horizon = min(float(res.times[-1]) for case in runs for res in case)
    grid = np.linspace(0.0, horizon, 401)
    late = grid >= 0.9 * horizon
    target = FIG3_TARGET * float(runs[0][0].errors[0])
    rows = []
    for r in range(seeds):
        one, two = runs[0][r], runs[1][r]
        e1, e2 = one.error_at(grid), two.error_at(grid)
        t1, t2 = one.time_to(target), two.time_to(target)
        l1 = float(np.exp(np.mean(np.log(e1[late]))))
        l2 = float(np.exp(np.mean(np.log(e2[late]))))
        rows.append(
            {
                "seed_index": r,
                "time_to_target_case1": t1,
                "time_to_target_case2": t2,
                "time_ratio": (t2 if t2 is not None else math.inf) / t1 if t1 else math.nan,
                "late_error_case1": l1,
                "late_error_case2": l2,
                "late_error_ratio": l2 / l1,
                "fraction_below": float(np.mean(e1[1:] < e2[1:])),
                "staleness_case1": one.staleness_mean,
                "staleness_case2": two.staleness_mean,
                "ordering_holds": t1 is not None and (t2 is None or t1 < t2) and l1 < l2,
            }
        )
    return Fig3([c[0] for c in cases], [c[2] for c in cases], [band(case, grid) for case in runs], target, rows)
