"""Figures. Each function takes ``ax=None`` (a new figure when omitted) and returns the axes it drew on.

matplotlib is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .analysis import Transient

__all__ = ["error_vs_time", "residuals_vs_n", "staleness_histogram", "staleness_vs_n", "transient_curve"]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6.4, 4.2))
    return ax


def staleness_vs_n(
    ns: Sequence[int],
    simulated: Sequence[float],
    ci95: Sequence[float],
    paper: Sequence[float],
    exact: Sequence[float],
    *,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """The paper's Figure 1: simulated mean staleness (95% CI bars) against the paper's and the exact limit."""
    ax = _axes(ax)
    ax.plot(ns, paper, "--", color="tab:red", label="paper, Theorem 2: (n/K)(Tc+μ)/μ")
    ax.plot(ns, exact, "-", color="tab:blue", label="exact limit (renewal function)")
    ax.errorbar(ns, simulated, yerr=ci95, fmt="o", color="black", ms=4, capsize=3, label="simulation, 95% CI")
    ax.set_xlabel("number of workers n")
    ax.set_ylabel("mean staleness E[τ]")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def residuals_vs_n(
    ns: Sequence[int],
    simulated: Sequence[float],
    ci95: Sequence[float],
    paper: Sequence[float],
    exact: Sequence[float],
    *,
    ax: Any = None,
) -> Any:
    """Simulation and the paper's limit minus the exact limit: shows what Figure 1's scale hides."""
    ax = _axes(ax)
    sim = np.asarray(simulated) - np.asarray(exact)
    ax.axhline(0.0, color="tab:blue", lw=1.5, label="exact limit")
    ax.plot(ns, np.asarray(paper) - np.asarray(exact), "--", color="tab:red", label="paper - exact = Tc/(Kμ)")
    ax.errorbar(ns, sim, yerr=ci95, fmt="o", color="black", ms=4, capsize=3, label="simulation - exact, 95% CI")
    ax.set_xlabel("number of workers n")
    ax.set_ylabel("difference from exact")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def transient_curve(
    result: Transient,
    *,
    paper: float | None = None,
    exact: float | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """The paper's Figure 2: mean staleness of each update, over replications, with a 95% band and the limits."""
    ax = _axes(ax)
    u = np.arange(1, result.mean.size + 1)
    ax.fill_between(u, result.mean - result.ci95, result.mean + result.ci95, color="tab:gray", alpha=0.3, lw=0)
    ax.plot(u, result.mean, "o-", color="black", ms=3, lw=1, label=f"simulation ({result.replications} runs)")
    if paper is not None:
        ax.axhline(paper, ls="--", color="tab:red", label=f"paper limit {paper:.3f}")
    if exact is not None:
        ax.axhline(exact, ls="-", color="tab:blue", label=f"exact limit {exact:.3f}")
    ax.set_xlabel("update index")
    ax.set_ylabel("mean staleness of the update's gradients")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def staleness_histogram(hist: np.ndarray, *, title: str | None = None, ax: Any = None) -> Any:
    """Distribution of staleness (fraction of gradients per value)."""
    ax = _axes(ax)
    total = hist.sum()
    ax.bar(np.arange(hist.size), hist / total if total else hist, color="tab:blue", width=0.8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("staleness τ")
    ax.set_ylabel("fraction of gradients")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    return ax


def error_vs_time(
    times: Sequence[float] | np.ndarray,
    errors: Sequence[float] | np.ndarray,
    *,
    lo: Sequence[float] | np.ndarray | None = None,
    hi: Sequence[float] | np.ndarray | None = None,
    label: str | None = None,
    color: str | None = None,
    ax: Any = None,
) -> Any:
    """Training error against wall-clock time (log scale), as a step curve, with an optional band ``lo..hi``.
    Call it once per configuration on the same axes to compare them (the paper's Figure 3)."""
    ax = _axes(ax)
    (line,) = ax.step(times, errors, where="post", color=color, lw=1.4, label=label)
    if lo is not None and hi is not None:
        ax.fill_between(times, lo, hi, step="post", color=line.get_color(), alpha=0.25, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("wall-clock time (s)")
    ax.set_ylabel("error  F(w) − min F")
    ax.grid(alpha=0.3, which="both")
    return ax
