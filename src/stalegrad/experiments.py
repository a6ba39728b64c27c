"""The paper's experiments (Al-Lawati & Draper, Section 4), composed from theory, simulation and analysis.

* ``fig1`` -- mean staleness against n = 10..20 (K = 10, Tc = 1, shifted exponential alpha = 1, lambda = 2/3):
  simulation with 95% CIs, the paper's Theorem 2 and the exact limit.
* ``fig2`` -- the transient: mean staleness of each of the first 50 updates (n = 10, K = 5), over replications.
* ``section4`` -- the two cases with equal update rate and per-update minibatch: Case 1 (K = 10, mean compute 2)
  and Case 2 (K = 1, mean compute 20), n = 10, Tc = 0; staleness 1 and 10.
* ``fig3`` -- the same two cases training a linear regression by SGD replayed along their simulated timelines:
  error against time over seeds (Case 1 learns faster in the same time).

:func:`reproduce` runs any of them and writes CSV, PNG and JSON files with their metadata.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from .analysis import Estimate, Transient, steady_state, transient
from .artefacts import metadata, write_csv, write_figure, write_json
from .distributions import shifted_exponential
from .errors import invalid
from .sim import simulate, simulate_summary
from .spec import System
from .streams import derive_seed, resolve_seed
from .theory import Prediction, predict
from .trace import Summary, Trace

__all__ = ["TARGETS", "Fig3", "Point", "fig1", "fig2", "fig3", "reproduce", "run_point", "section4"]

#: What ``reproduce`` knows, in the order ``all`` runs them.
TARGETS = ("fig1", "fig2", "section4", "fig3")

#: Progress callback: (what, done, total).
Report = Callable[[str, int, int], None]


def paper_compute() -> Any:
    """The paper's compute-time model: shifted exponential with alpha = 1, lambda = 2/3 (mean 2.5)."""
    return shifted_exponential(alpha=1.0, rate=2.0 / 3.0)


@dataclass(frozen=True)
class Point:
    """One simulated system beside its theory."""

    label: str
    system: System
    seed: int
    prediction: Prediction
    estimate: Estimate
    seconds: float
    summary: Summary | None = None
    trace: Trace | None = None  # kept only when asked for

    def row(self) -> dict[str, Any]:
        e, p = self.estimate, self.prediction
        return {
            "label": self.label,
            "n": self.system.n,
            "K": self.system.K,
            "tc": self.system.tc,
            "seed": self.seed,
            "staleness_mean": e.mean,
            "staleness_ci95": e.ci95,
            "staleness_paper": p.staleness_paper,
            "staleness_exact": p.staleness_exact,
            "exact_in_ci": e.covers(p.staleness_exact),
            "paper_in_ci": e.covers(p.staleness_paper),
            "update_rate": e.update_rate,
            "update_rate_theory": p.update_rate,
            "staleness_p95": e.p95,
            "warmup_updates": e.warmup,
            "updates": e.updates,
            "gradients": e.updates * self.system.K,
            "seconds": self.seconds,
        }


def run_point(
    system: System,
    updates: int,
    seed: int,
    label: str = "",
    *,
    warmup: int | None = None,
    batches: int = 32,
    progress: Callable[[int, int], None] | None = None,
    keep_trace: bool = False,
) -> Point:
    """Simulate ``system`` and put the estimate beside the theory: streamed, or keeping the whole Trace (the
    same numbers: the Summary of a Trace equals the streamed one)."""
    t0 = time.perf_counter()
    trace = None
    if keep_trace:
        trace = simulate(system, updates, seed=seed, progress=progress)
        warm = updates // 10 if warmup is None else warmup
        summary = Summary.from_trace(trace, warm, batches)
    else:
        summary = simulate_summary(system, updates, seed=seed, warmup=warmup, batches=batches, progress=progress)
    seconds = time.perf_counter() - t0
    return Point(label, system, seed, predict(system), steady_state(summary), seconds, summary, trace)


def _report(progress: Report | None, what: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(what, done, total)


def fig1(
    updates: int = 400_000, seed: int = 1, ns: Sequence[int] = range(10, 21), progress: Report | None = None
) -> list[Point]:
    """Figure 1: K = 10, Tc = 1, the paper's shifted exponential, n = 10..20."""
    compute = paper_compute()
    points = []
    for k, n in enumerate(ns):
        system = System(n=n, K=10, tc=1.0, compute=compute)
        points.append(
            run_point(system, updates, derive_seed(seed, 1, k), f"n={n}", progress=_report(progress, f"fig1 n={n}"))
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
        run_point(system, updates, derive_seed(seed, 3, k), label, progress=_report(progress, label))
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
    from .distributions import scaled

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
    from .train import LinearRegression, replay
    from .train.curves import band

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
                "staleness_case1": one.mean_staleness,
                "staleness_case2": two.mean_staleness,
                "ordering_holds": t1 is not None and (t2 is None or t1 < t2) and l1 < l2,
            }
        )
    return Fig3([c[0] for c in cases], [c[2] for c in cases], [band(case, grid) for case in runs], target, rows)


# ------------------------------------------------------------------------------------------------ writing files


def plot_points(points: Sequence[Point], path: str | Path, root_seed: int) -> Path:
    """One simulated system: its staleness histogram with both limits marked. A sweep: mean staleness against
    the position in the sweep (labelled by what varies), with CI bars, the paper's and the exact limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import staleness_histogram, staleness_vs_n

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    single = points[0].summary if len(points) == 1 else None
    if single is not None:
        p = points[0]
        staleness_histogram(np.trim_zeros(single.hist, "b"), title=_describe(p.system), ax=ax)
        ax.axvline(
            p.prediction.staleness_exact, color="tab:blue", label=f"exact mean {p.prediction.staleness_exact:.3f}"
        )
        ax.axvline(
            p.prediction.staleness_paper,
            color="tab:red",
            ls="--",
            label=f"paper mean {p.prediction.staleness_paper:.3f}",
        )
        ax.axvline(p.estimate.mean, color="black", ls=":", label=f"simulated mean {p.estimate.mean:.3f}")
        ax.legend()
    else:
        varies = [k for k in ("n", "K", "tc") if len({getattr(p.system, k) for p in points}) > 1]
        key = varies[0] if len(varies) == 1 else None
        xs = [getattr(p.system, key) for p in points] if key else list(range(1, len(points) + 1))
        staleness_vs_n(
            xs,
            [p.estimate.mean for p in points],
            [p.estimate.ci95 for p in points],
            [p.prediction.staleness_paper for p in points],
            [p.prediction.staleness_exact for p in points],
            ax=ax,
        )
        ax.set_xlabel(key or "system in the sweep")
    meta = metadata(root_seed, {f"{k}": p.system for k, p in enumerate(points)}, rows=[p.row() for p in points])
    out = write_figure(fig, path, meta)
    plt.close(fig)
    return out


def plot_protocols(points: Sequence[Point], path: str | Path, root_seed: int) -> Path:
    """Protocols side by side: update rate (simulated, theory where known) and staleness (mean with 95% CI, p95),
    with the wasted and dropped fractions written on the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p.system.protocol for p in points]
    x = np.arange(len(points))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax1.bar(x, [p.estimate.update_rate for p in points], color="tab:blue", label="simulated")
    ax1.plot(x, [p.prediction.update_rate for p in points], "k_", ms=28, mew=2, label="theory")
    for k, p in enumerate(points):
        ax1.annotate(
            f"wasted {100 * p.estimate.wasted_fraction:.0f}%\ndropped {100 * p.estimate.dropped_fraction:.0f}%",
            (k, p.estimate.update_rate),
            ha="center",
            va="bottom",
            fontsize="x-small",
        )
    ax1.set_ylabel("updates per second")
    ax1.legend(fontsize="small")
    ax2.bar(
        x,
        [p.estimate.mean for p in points],
        yerr=[p.estimate.ci95 for p in points],
        color="tab:orange",
        capsize=3,
        label="mean (95% CI)",
    )
    ax2.plot(x, [p.estimate.p95 for p in points], "kv", label="95th percentile")
    ax2.plot(x, [p.prediction.staleness_exact for p in points], "k_", ms=28, mew=2, label="exact limit")
    ax2.set_ylabel("staleness τ")
    ax2.legend(fontsize="small")
    for ax in (ax1, ax2):
        ax.set_xticks(x, names, rotation=20)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(_describe(points[0].system).replace(f"n = {points[0].system.n}, K", f"n = {points[0].system.n}, K"))
    meta = metadata(root_seed, {p.system.protocol: p.system for p in points}, rows=[p.row() for p in points])
    out = write_figure(fig, path, meta)
    plt.close(fig)
    return out


def _describe(system: System) -> str:
    return f"n = {system.n}, K = {system.K}, Tc = {system.tc:g}, {' + '.join(system.to_dict()['compute'])}"


#: Run sizes: the full reproduction and a quick one (for smoke tests).
SIZES = {
    False: {
        "fig1_updates": 1_000_000,
        "fig2_replications": 5000,
        "section4_updates": 1_000_000,
        "fig3_updates": 1000,
        "fig3_seeds": 5,
    },
    True: {
        "fig1_updates": 20_000,
        "fig2_replications": 100,
        "section4_updates": 10_000,
        "fig3_updates": 300,
        "fig3_seeds": 3,
    },
}

_POINT_COLUMNS = [
    "label",
    "n",
    "K",
    "tc",
    "seed",
    "staleness_mean",
    "staleness_ci95",
    "staleness_paper",
    "staleness_exact",
    "exact_in_ci",
    "paper_in_ci",
    "update_rate",
    "update_rate_theory",
    "staleness_p95",
    "warmup_updates",
    "updates",
    "gradients",
    "seconds",
]


def reproduce(
    targets: Sequence[str],
    out: str | Path,
    *,
    seed: int | None = 1,
    quick: bool = False,
    progress: Report | None = None,
) -> dict[str, Any]:
    """Run the named targets (``fig1``, ``fig2``, ``section4`` or ``all``), write their files into ``out``,
    and return what was found (also written as ``out/summary.json``)."""
    wanted: list[str] = []
    for t in targets:
        for name in TARGETS if t == "all" else [t]:
            if name not in TARGETS:
                raise invalid("target", t, f"one of {', '.join(TARGETS)} or all")
            if name not in wanted:
                wanted.append(name)
    seed = resolve_seed(seed)
    sizes = SIZES[quick]
    out = Path(out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import residuals_vs_n, staleness_vs_n, transient_curve

    found: dict[str, Any] = {"seed": seed, "quick": quick}
    if "fig1" in wanted:
        points = fig1(sizes["fig1_updates"], seed, progress=progress)
        rows = [p.row() for p in points]
        meta = metadata(seed, {"n=10": points[0].system}, target="fig1", sizes=sizes, note="n varies 10..20")
        write_csv(out / "fig1.csv", _POINT_COLUMNS, [[r[c] for c in _POINT_COLUMNS] for r in rows], meta)
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6.4, 6.4), sharex=True, height_ratios=(2, 1))
        columns = [
            [r["n"] for r in rows],
            [r["staleness_mean"] for r in rows],
            [r["staleness_ci95"] for r in rows],
            [r["staleness_paper"] for r in rows],
            [r["staleness_exact"] for r in rows],
        ]
        staleness_vs_n(*columns, title="K = 10, Tc = 1, X = 1 + Exp(2/3)", ax=ax)
        residuals_vs_n(*columns, ax=ax2)
        ax.set_xlabel("")
        write_figure(fig, out / "fig1.png", {**meta, "rows": rows})
        plt.close(fig)
        found["fig1"] = rows
    if "fig2" in wanted:
        system, tr, pred = fig2(sizes["fig2_replications"], 50, seed, progress=progress)
        meta = metadata(seed, {"fig2": system}, target="fig2", sizes=sizes)
        write_csv(
            out / "fig2.csv",
            ["update", "staleness_mean", "staleness_ci95", "staleness_paper", "staleness_exact"],
            [
                [u + 1, m, c, pred.staleness_paper, pred.staleness_exact]
                for u, (m, c) in enumerate(zip(tr.mean, tr.ci95, strict=True))
            ],
            meta,
        )
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        transient_curve(
            tr, paper=pred.staleness_paper, exact=pred.staleness_exact, title="n = 10, K = 5, Tc = 1", ax=ax
        )
        write_figure(fig, out / "fig2.png", {**meta, "transient": tr.to_dict(), "theory": pred.to_dict()})
        plt.close(fig)
        late = tr.mean[25:]
        found["fig2"] = {
            "replications": tr.replications,
            "first_updates": tr.mean[:3].tolist(),
            "mean_updates_26_50": float(late.mean()),
            "staleness_paper": pred.staleness_paper,
            "staleness_exact": pred.staleness_exact,
        }
    if "section4" in wanted:
        points = section4(sizes["section4_updates"], seed, progress=progress)
        rows = [p.row() for p in points]
        meta = metadata(seed, {p.label: p.system for p in points}, target="section4", sizes=sizes)
        write_csv(out / "section4.csv", _POINT_COLUMNS, [[r[c] for c in _POINT_COLUMNS] for r in rows], meta)
        found["section4"] = rows
    if "fig3" in wanted:
        found["fig3"] = _write_fig3(fig3(sizes["fig3_updates"], sizes["fig3_seeds"], seed, progress), out, seed, sizes)
    write_json(out / "summary.json", {"metadata": metadata(seed, target=wanted), **found})
    return found


def _write_fig3(result: Fig3, out: Path, seed: int, sizes: dict[str, Any]) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import error_vs_time

    summary = result.summary()
    meta = metadata(seed, dict(zip(result.labels, result.systems, strict=True)), target="fig3", sizes=sizes, **summary)
    header, columns = ["time"], [result.bands[0].grid]
    for k, b in enumerate(result.bands, start=1):
        header += [f"case{k}_error_geomean", f"case{k}_error_lo95", f"case{k}_error_hi95"]
        columns += [b.mean, b.lo, b.hi]
        header += [f"case{k}_error_seed{r}" for r in range(b.seeds)]
        columns += list(b.errors)
    write_csv(out / "fig3.csv", header, np.column_stack(columns).tolist(), meta)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k, (label, b, color) in enumerate(zip(result.labels, result.bands, ("tab:blue", "tab:red"), strict=False)):
        tau = np.mean([r[f"staleness_case{k + 1}"] for r in result.rows])
        error_vs_time(b.grid, b.mean, lo=b.lo, hi=b.hi, label=f"{label}, mean τ = {tau:.2f}", color=color, ax=ax)
    ax.axhline(result.target, color="gray", ls=":", lw=1, label=f"target ({FIG3_TARGET:g} x initial error)")
    p = FIG3_PROBLEM
    ax.set_title(
        f"least squares d = {p['dim']}, {p['samples']} samples, noise {p['noise']}, step {FIG3_STEP}; "
        f"n = 10, Tc = 0; {result.bands[0].seeds} seeds",
        fontsize="small",
    )
    ax.legend(fontsize="small")
    write_figure(
        fig,
        out / "fig3.png",
        {**meta, "bands": {lab: b.to_dict() for lab, b in zip(result.labels, result.bands, strict=True)}},
    )
    plt.close(fig)
    return summary


def plot_run(result: Any, comparison: Any, path: str | Path, *, updates: int = 100_000, seed: int = 1) -> Path:
    """A real run (:func:`stalegrad.runtime.run`) in one figure: left, its staleness distribution (after the
    warm-up) beside that of a simulation of the system it *measured* (each worker's measured compute times as an
    empirical law, the mean measured delays; ``updates`` updates), with the run's mean and the exact and paper
    limits; right, its training error against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import error_vs_time, staleness_histogram
    from .runtime.measured import measured_system

    trace = result.trace
    system = measured_system(trace.columns, result.downlink, trace.system.K, trace.system.n)
    sim = simulate_summary(system, updates, seed=seed)
    keep = trace["update"] > comparison.warmup
    real = np.bincount(trace["staleness"][keep], minlength=1)
    width = max(real.size, np.trim_zeros(sim.hist, "b").size)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    staleness_histogram(np.pad(real, (0, width - real.size)), ax=left)
    left.patches[0].set_label(f"run ({int(real.sum())} gradients)")
    simulated = np.pad(sim.hist, (0, max(0, width - sim.hist.size)))[:width]
    left.step(np.arange(width), simulated / simulated.sum(), where="mid", color="black", lw=1.2,
              label=f"simulated, measured system ({updates} updates)")  # fmt: skip
    left.axvline(comparison.measured, color="black", ls=":", label=f"run mean {comparison.measured:.3f}")
    left.axvline(comparison.predicted, color="tab:blue", label=f"exact (measured) {comparison.predicted:.3f}")
    left.axvline(comparison.predicted_paper, color="tab:red", ls="--", label=f"paper {comparison.predicted_paper:.3f}")
    left.set_title(f"staleness, n = {trace.system.n}, K = {trace.system.K}")
    left.legend(fontsize=8, loc="upper right")
    errors = np.asarray(result.errors)
    unit = "time units" if result.time_unit is not None else "s"
    if errors.size:
        error_vs_time(errors[:, 1], errors[:, 2], label="real run", ax=right)
    right.set_xlabel(f"time ({unit})")
    right.set_title("training error")
    meta = metadata(seed, {"measured": system}, run=comparison.to_dict())
    out = write_figure(fig, path, meta)
    plt.close(fig)
    return out
