"""The advisor's Pareto figure: time to target against the number of workers used."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..artefacts import metadata, write_figure
from ..plots import describe_system, figure

__all__ = ["advice_figure", "plot_advice"]


def advice_figure(advice: Any) -> Any:
    """Every finalist (median time to target with its 95% interval) against the workers it uses, by protocol and
    ``K`` -- filled when validated (times on the fresh replications), hollow otherwise (the halving's replications,
    optimistic); the Pareto front (fewest workers for a time), the recommendation and the naive choice marked."""
    rows = _best_step(advice.rows())
    naive = advice.row(advice.result.naive, None)
    fig, ax = figure(figsize=(7.2, 4.6))
    several = len({r["protocol"] for r in rows}) > 1
    Ks = sorted({(r["protocol"], r["K"]) for r in rows})
    markers = "osD^v<>p"
    for k, (protocol, K) in enumerate(Ks):
        mine = [r for r in rows if (r["protocol"], r["K"]) == (protocol, K) and r["time_to_target"] is not None]
        if not mine:
            continue
        x = np.array([r["n"] for r in mine], dtype=float) + 0.08 * (k - (len(Ks) - 1) / 2)
        y = np.array([r["time_to_target"] for r in mine])
        lo = np.array([r["time_to_target_ci95"][0] or math.nan for r in mine])
        hi = np.array([r["time_to_target_ci95"][1] or math.nan for r in mine])
        bars = ax.errorbar(
            x, y, yerr=[np.nan_to_num(y - lo), np.nan_to_num(hi - y)], fmt=markers[k % len(markers)], ms=5,
            capsize=3, alpha=0.8, label=f"{protocol} K = {K}" if several else f"K = {K}",
        )  # fmt: skip
        line = bars.lines[0]  # hollow: not validated, times on the halving's replications (optimistic)
        line.set_markerfacecolor("none")
        solid = [r["validated"] for r in mine]
        if any(solid):
            ax.plot(x[solid], y[solid], markers[k % len(markers)], ms=5, color=line.get_color(), alpha=0.8)
    front = _pareto([(r["n"], r["time_to_target"]) for r in rows if r["time_to_target"] is not None])
    if front:
        ax.step(*zip(*front, strict=True), where="post", color="gray", lw=1, ls="--", label="Pareto front")
    best = rows[0]
    if best["time_to_target"] is not None:
        text = f"recommended: {_protocol(best)}{best['n']} workers, K = {best['K']}, step {best['step']:.3g}"
        ax.plot(best["n"], best["time_to_target"], "*", color="gold", mec="black", ms=16, zorder=5, label=text)
    if naive["time_to_target"] is not None:
        ax.plot(naive["n"], naive["time_to_target"], "X", color="tab:red", ms=10, zorder=4,
                label=f"naive: every worker, K = 1, step {naive['step']:.3g}")  # fmt: skip
    ax.set_xlabel("workers used (the fastest)")
    ax.set_ylabel("time to target (median, 95% interval)\nfilled: validated; hollow: halving only")
    c = advice.cluster
    cluster = (
        describe_system(c) if c.identical
        else f"{c.n} workers, mean compute times {min(c.means):.3g} to {max(c.means):.3g}, Tc = {c.tc:g}"
    )  # fmt: skip
    ax.set_title(f"advise: {advice.problem} to error {advice.target:.3g} (each point: its best step)\n{cluster}",
                 fontsize="small")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    return fig


def _protocol(row: dict[str, Any]) -> str:
    """The recommendation's protocol with its own parameter, when it is not the paper's."""
    if row["protocol"] == "k-batch-async":
        return ""
    own = f" R = {row['delay_threshold']}" if row["delay_threshold"] is not None else ""
    own += f" q = {row['cutoff_quantile']:g}" if row["cutoff_quantile"] is not None else ""
    return f"{row['protocol']}{own}, "


def _best_step(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The best-ranked row of each (protocol, workers, K, b): one point per configuration, at its best step (and
    ringmaster's best threshold)."""
    seen: set[Any] = set()
    out = []
    for r in rows:
        key = (r["protocol"], tuple(r["workers"]), r["K"], r["b"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _pareto(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The points no other beats on both workers and time, by workers."""
    front: list[tuple[int, float]] = []
    for n, t in sorted(points):
        if not front or t < front[-1][1]:
            front.append((n, t))
    return front


def plot_advice(advice: Any, path: str | Path) -> Path:
    meta = metadata(advice.result.root, {"cluster": advice.cluster}, advice=advice.to_dict(advice.problem))
    return write_figure(advice_figure(advice), path, meta)
