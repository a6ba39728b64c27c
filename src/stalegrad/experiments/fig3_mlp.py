"""Figure 3 repeated on a non-convex model: the paper's two Section 4 cases training a small MLP on the 8x8 digits
(:func:`stalegrad.train.mlp_digits`), SGD replayed along their simulated timelines.

Case 1 (b = 1, K = 10, per-gradient compute ``Exp(mean 2)``, staleness 1) and Case 2 (b = 10, K = 1, compute
``Exp(mean 20)``, staleness 10) update at the same rate with 10 samples per update (:func:`.paper.fig3_cases`);
n = 10, Tc = 0. The question is the paper's: does the less stale Case 1 still learn faster on a non-convex model?

* **Step.** The paper gives none. One constant step serves both cases, chosen before the comparison by a pilot on
  its own seeds (disjoint from the reported ones): of :data:`FIG3_MLP_STEPS`, the step with Case 2's lowest
  training loss at the horizon. The stale case gets its best step, so an advantage of Case 1 is not an artefact
  of a step too large for staleness 10. The pilot's numbers are part of the result.
* **Seeds.** Replication ``r`` draws the MLP's initial weights (shared by both cases), each case's timeline and
  each case's minibatches from seeds derived from the root seed and ``r``.
* **Measures**, per seed, on ``[0, T]`` with ``T`` the earliest last update of all runs: the time each case first
  has training loss ``<=`` :data:`FIG3_MLP_TARGET` times the initial loss; the training loss at ``T`` and its
  geometric mean over the last tenth of ``[0, T]`` (the late loss); the test accuracy at ``T``. The ordering
  holds for a seed when Case 1 reaches the target sooner *and* its late loss is lower. Over seeds: geometric-mean
  ratios Case 2 / Case 1 with 95% t-intervals (of the mean log ratio), and bands (95% t-intervals of the
  geometric mean loss, of the mean accuracy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..sim import simulate
from ..spec import System
from ..streams import derive_seed
from .paper import fig3_cases
from .points import Report

__all__ = ["FIG3_MLP_STEPS", "FIG3_MLP_TARGET", "Fig3MLP", "choose_step", "fig3_mlp", "write_fig3_mlp"]

#: the pilot's grid of constant steps
FIG3_MLP_STEPS = (0.05, 0.1, 0.2, 0.5)
#: the target of "time to target": this fraction of the initial training loss (about 2.30 = ln 10)
FIG3_MLP_TARGET = 0.1


def _runs(seed: int, key: tuple[int, ...], step: float, updates: int) -> list[Any]:
    """Both cases replayed once on the MLP initialised from ``(seed, *key, 2)``: one ReplayResult per case."""
    from ..train import mlp_digits, replay

    problem = mlp_digits(seed=derive_seed(seed, *key, 2))
    out = []
    for c, (_, b, system) in enumerate(fig3_cases()):
        trace = simulate(system, updates, seed=derive_seed(seed, *key, c, 0))
        out.append(replay(trace, problem, b=b, step=step, seed=derive_seed(seed, *key, c, 1), record=400))
    return out


def choose_step(
    updates: int, seed: int, steps: Sequence[float] = FIG3_MLP_STEPS, progress: Report | None = None
) -> tuple[float, list[dict[str, Any]]]:
    """The pilot: every step of ``steps`` on one replication with seeds of its own (key 6); the step with Case 2's
    lowest training loss at the horizon, and per step the loss at the horizon of each case."""
    pilot = []
    for k, step in enumerate(steps):
        one, two = _runs(seed, (6,), step, updates)
        horizon = min(float(one.times[-1]), float(two.times[-1]))
        pilot.append(
            {
                "step": step,
                "loss_case1": float(one.error_at([horizon])[0]),
                "loss_case2": float(two.error_at([horizon])[0]),
            }
        )
        if progress is not None:
            progress("fig3-mlp pilot steps", k + 1, len(steps))
    finite = [p for p in pilot if math.isfinite(p["loss_case2"])]
    best = min(finite or pilot, key=lambda p: p["loss_case2"] if math.isfinite(p["loss_case2"]) else math.inf)
    return float(best["step"]), pilot


@dataclass(frozen=True)
class Fig3MLP:
    """Per case the replays' bands (training loss, test accuracy) on a common grid; per seed the margins."""

    labels: list[str]
    systems: list[System]
    loss: list[Any]  # stalegrad.train.curves.Band of the training loss, one per case
    accuracy: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (mean, lo, hi) of the test accuracy, per case
    target: float
    step: float
    pilot: list[dict[str, Any]]
    rows: list[dict[str, Any]]  # one per seed

    def summary(self) -> dict[str, Any]:
        def geomean(x: list[float]) -> float | None:
            ok = [v for v in x if math.isfinite(v) and v > 0]
            return float(np.exp(np.mean(np.log(ok)))) if len(ok) == len(x) else None

        def interval(x: list[float]) -> list[float] | None:
            """95% t-interval of the geometric mean (the mean of the logs), None if a value is not finite."""
            if geomean(x) is None or len(x) < 2:
                return None
            _, lo, hi = _mean_band(np.log(np.asarray(x, dtype=float))[:, None])
            return [float(np.exp(lo[0])), float(np.exp(hi[0]))]

        time_ratio = [r["time_ratio"] for r in self.rows]
        late_ratio = [r["late_loss_ratio"] for r in self.rows]
        return {
            "seeds": len(self.rows),
            "ordering_holds": sum(r["ordering_holds"] for r in self.rows),
            "problem": "mlp-digits (64-64-64-10, d = 8970), initial weights drawn per seed",
            "step": self.step,
            "step_rule": f"of {list(FIG3_MLP_STEPS)}, Case 2's lowest loss at the horizon on a pilot seed",
            "pilot": self.pilot,
            "target_loss": self.target,
            "horizon": float(self.loss[0].grid[-1]),
            "reached_case1": sum(r["time_to_target_case1"] is not None for r in self.rows),
            "reached_case2": sum(r["time_to_target_case2"] is not None for r in self.rows),
            "time_ratio_geomean": geomean(time_ratio),
            "time_ratio_ci95": interval(time_ratio),
            "time_ratio_min": min(time_ratio),
            "time_ratio_max": max(time_ratio),
            "late_loss_ratio_geomean": geomean(late_ratio),
            "late_loss_ratio_ci95": interval(late_ratio),
            "late_loss_ratio_min": min(late_ratio),
            "late_loss_ratio_max": max(late_ratio),
            "test_accuracy_case1_mean": float(np.mean([r["test_accuracy_case1"] for r in self.rows])),
            "test_accuracy_case2_mean": float(np.mean([r["test_accuracy_case2"] for r in self.rows])),
            "rows": self.rows,
        }


def _mean_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds (rows) with a 95% Student-t interval."""
    import scipy.stats

    mean = values.mean(axis=0)
    R = values.shape[0]
    half = scipy.stats.t.ppf(0.975, R - 1) * values.std(axis=0, ddof=1) / np.sqrt(R) if R > 1 else 0 * mean
    return mean, mean - half, mean + half


def fig3_mlp(
    updates: int = 2000,
    seeds: int = 5,
    seed: int = 1,
    *,
    step: float | None = None,
    progress: Report | None = None,
) -> Fig3MLP:
    """Case 1 against Case 2 on the MLP for ``updates`` updates over ``seeds`` seeds (see the module docstring);
    ``step=None`` runs the pilot (:func:`choose_step`) first."""
    from ..train.curves import band

    pilot: list[dict[str, Any]] = []
    if step is None:
        step, pilot = choose_step(updates, seed, progress=progress)
    cases = fig3_cases()
    runs: list[list[Any]] = [[] for _ in cases]
    for r in range(seeds):
        for c, result in enumerate(_runs(seed, (5, r), step, updates)):
            runs[c].append(result)
        if progress is not None:
            progress("fig3-mlp seeds", r + 1, seeds)
    horizon = min(float(res.times[-1]) for case in runs for res in case)
    grid = np.linspace(0.0, horizon, 401)
    late = grid >= 0.9 * horizon
    target = FIG3_MLP_TARGET * float(np.mean([res.errors[0] for res in runs[0]]))
    rows = []
    for r in range(seeds):
        one, two = runs[0][r], runs[1][r]
        e1, e2 = one.error_at(grid), two.error_at(grid)
        t1, t2 = one.time_to(target), two.time_to(target)
        t1 = t1 if t1 is not None and t1 <= horizon else None
        t2 = t2 if t2 is not None and t2 <= horizon else None
        l1 = float(np.exp(np.mean(np.log(e1[late]))))
        l2 = float(np.exp(np.mean(np.log(e2[late]))))
        rows.append(
            {
                "seed_index": r,
                "time_to_target_case1": t1,
                "time_to_target_case2": t2,
                "time_ratio": (t2 if t2 is not None else math.inf) / t1 if t1 else math.nan,
                "loss_at_horizon_case1": float(e1[-1]),
                "loss_at_horizon_case2": float(e2[-1]),
                "late_loss_case1": l1,
                "late_loss_case2": l2,
                "late_loss_ratio": l2 / l1,
                "test_accuracy_case1": float(one.metric_at("test_accuracy", [horizon])[0]),
                "test_accuracy_case2": float(two.metric_at("test_accuracy", [horizon])[0]),
                "fraction_below": float(np.mean(e1[1:] < e2[1:])),
                "staleness_case1": one.staleness_mean,
                "staleness_case2": two.staleness_mean,
                "ordering_holds": t1 is not None and (t2 is None or t1 < t2) and l1 < l2,
            }
        )
    accuracy = [_mean_band(np.array([res.metric_at("test_accuracy", grid) for res in case])) for case in runs]
    return Fig3MLP(
        [c[0] for c in cases],
        [c[2] for c in cases],
        [band(case, grid) for case in runs],
        accuracy,
        target,
        step,
        pilot,
        rows,
    )


def write_fig3_mlp(result: Fig3MLP, out: Path, seed: int, sizes: dict[str, Any]) -> dict[str, Any]:
    """``fig3-mlp.csv`` (per case the loss band, the accuracy band and every seed's loss), ``fig3-mlp.png`` with
    its JSON beside; returns the summary."""
    from ..artefacts import metadata, write_csv, write_figure
    from ..plots import error_vs_time, figure

    summary = result.summary()
    meta = metadata(seed, dict(zip(result.labels, result.systems, strict=True)), target="fig3-mlp", sizes=sizes)
    meta.update(summary)
    header, columns = ["time"], [result.loss[0].grid]
    for k, (b, (am, alo, ahi)) in enumerate(zip(result.loss, result.accuracy, strict=True), start=1):
        header += [f"case{k}_loss_geomean", f"case{k}_loss_lo95", f"case{k}_loss_hi95"]
        header += [f"case{k}_test_accuracy_mean", f"case{k}_test_accuracy_lo95", f"case{k}_test_accuracy_hi95"]
        columns += [b.mean, b.lo, b.hi, am, alo, ahi]
        header += [f"case{k}_loss_seed{r}" for r in range(b.seeds)]
        columns += list(b.errors)
    write_csv(out / "fig3-mlp.csv", header, np.column_stack(columns).tolist(), meta)
    fig, (ax, ax2) = figure(1, 2, figsize=(11.5, 4.4))
    colors = ("tab:blue", "tab:red")
    for k, (label, b, acc, color) in enumerate(zip(result.labels, result.loss, result.accuracy, colors, strict=False)):
        tau = np.mean([r[f"staleness_case{k + 1}"] for r in result.rows])
        error_vs_time(b.grid, b.mean, lo=b.lo, hi=b.hi, label=f"{label}, mean τ = {tau:.2f}", color=color, ax=ax)
        error_vs_time(b.grid, acc[0], lo=acc[1], hi=acc[2], label=label, color=color, ax=ax2)
    seeds = result.loss[0].seeds
    ax.axhline(result.target, color="gray", ls=":", lw=1, label=f"target ({FIG3_MLP_TARGET:g} x initial loss)")
    ax.plot([], [], " ", label=f"bands: 95% CI of the geometric mean over {seeds} seeds")
    ax.set_ylabel("training loss (cross-entropy; no optimum subtracted)")
    ax.legend(fontsize="small")
    ax2.set_yscale("linear")
    # from a tenth of the horizon on (the first minutes, near chance, would squash the rest)
    low = min(float(a[1][len(a[1]) // 10]) for a in result.accuracy)
    ax2.set_ylim(max(0.0, math.floor(10 * low) / 10), 1.0)
    ax2.set_ylabel("test accuracy (360 held-out digits)")
    ax2.plot([], [], " ", label=f"bands: 95% CI of the mean over {seeds} seeds")
    ax2.legend(fontsize="small", loc="lower right")
    fig.suptitle(
        f"MLP 64-64-64-10 on the 8x8 digits, constant step {result.step:g}; n = 10, Tc = 0, exponential compute "
        f"times (mean 2 s per sample); {seeds} seeds",
        fontsize="small",
    )
    bands = {
        lab: {**b.to_dict(), "test_accuracy_mean": a[0].tolist(), "test_accuracy_lo95": a[1].tolist(),
              "test_accuracy_hi95": a[2].tolist()}
        for lab, b, a in zip(result.labels, result.loss, result.accuracy, strict=True)
    }  # fmt: skip
    write_figure(fig, out / "fig3-mlp.png", {**meta, "bands": bands})
    return summary
