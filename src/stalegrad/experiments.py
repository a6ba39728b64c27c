"""The paper's experiments (Al-Lawati & Draper, Section 4), composed from theory, simulation and analysis.

* ``fig1`` -- mean staleness against n = 10..20 (K = 10, Tc = 1, shifted exponential alpha = 1, lambda = 2/3):
  simulation with 95% CIs, the paper's Theorem 2 and the exact limit.
* ``fig2`` -- the transient: mean staleness of each of the first 50 updates (n = 10, K = 5), over replications.
* ``section4`` -- the two cases with equal update rate and per-update minibatch: Case 1 (K = 10, mean compute 2)
  and Case 2 (K = 1, mean compute 20), n = 10, Tc = 0; staleness 1 and 10.

:func:`reproduce` runs any of them and writes CSV, PNG and JSON files with their metadata.
"""

from __future__ import annotations

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
from .sim.streams import derive_seed, resolve_seed
from .spec import System
from .theory import Prediction, predict
from .trace import Summary

__all__ = ["TARGETS", "Point", "fig1", "fig2", "reproduce", "run_point", "section4"]

#: What ``reproduce`` knows, in the order ``all`` runs them.
TARGETS = ("fig1", "fig2", "section4")

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
) -> Point:
    """Simulate ``system`` (streamed) and put the estimate beside the theory."""
    t0 = time.perf_counter()
    summary = simulate_summary(system, updates, seed=seed, warmup=warmup, batches=batches, progress=progress)
    seconds = time.perf_counter() - t0
    return Point(label, system, seed, predict(system), steady_state(summary), seconds, summary)


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
    False: {"fig1_updates": 1_000_000, "fig2_replications": 5000, "section4_updates": 1_000_000},
    True: {"fig1_updates": 20_000, "fig2_replications": 100, "section4_updates": 10_000},
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
    write_json(out / "summary.json", {"metadata": metadata(seed, target=wanted), **found})
    return found
