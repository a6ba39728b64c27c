"""Figures. Each function takes ``ax=None`` (a new figure when omitted) and returns the axes it drew on.

matplotlib is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .analysis import Transient

__all__ = [
    "describe_system",
    "error_vs_time",
    "figure",
    "protocols_figure",
    "residuals_vs_n",
    "staleness_histogram",
    "staleness_vs_n",
    "sweep_figure",
    "train_figure",
    "transient_curve",
]


def figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (6.4, 4.2), **kw: Any) -> Any:
    """A new figure and its axes (``Figure.subplots``), outside pyplot: no backend is chosen or switched, and
    nothing is left open in pyplot's list of figures."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def _axes(ax: Any) -> Any:
    return ax if ax is not None else figure()[1]


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
    """Simulation minus the exact limit at a scale where the 95% CI bars show; the paper's limit, when it lies
    off that scale, is an arrow with its distance written on it (what Figure 1's scale hides)."""
    ax = _axes(ax)
    sim = np.asarray(simulated) - np.asarray(exact)
    gap = np.asarray(paper) - np.asarray(exact)
    half = max(4.0 * float(np.max(ci95)), 1.3 * float(np.max(np.abs(sim) + np.asarray(ci95))))
    ax.axhline(0.0, color="tab:blue", lw=1.5, label="exact limit")
    ax.errorbar(ns, sim, yerr=ci95, fmt="o", color="black", ms=4, capsize=3, label="simulation - exact, 95% CI")
    if np.all(np.abs(gap) <= half):
        ax.plot(ns, gap, "--", color="tab:red", label="paper - exact")
    else:
        mid = float(np.mean(ns))
        ax.annotate(
            f"paper - exact = {float(np.mean(gap)):+.3f}  (Tc/(Kμ); off this scale)",
            xy=(mid, 0.97 * half * np.sign(np.mean(gap))),
            xytext=(mid, 0.55 * half * np.sign(np.mean(gap))),
            ha="center",
            color="tab:red",
            fontsize="small",
            arrowprops={"arrowstyle": "->", "color": "tab:red"},
        )
    ax.set_ylim(-half, half)
    ax.set_xlabel("number of workers n")
    ax.set_ylabel("difference from exact")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
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

    def draw(a: Any, legend: bool) -> None:
        a.fill_between(u, result.mean - result.ci95, result.mean + result.ci95, color="tab:orange", alpha=0.45,
                       lw=0, label="95% CI of the mean" if legend else None)  # fmt: skip
        a.plot(u, result.mean, "o-", color="black", ms=3, lw=1,
               label=f"simulation ({result.replications} runs)" if legend else None)  # fmt: skip
        if paper is not None:
            a.axhline(paper, ls="--", color="tab:red", label=f"paper limit {paper:.3f}" if legend else None)
        if exact is not None:
            a.axhline(exact, ls="-", color="tab:blue", label=f"exact limit {exact:.3f}" if legend else None)
        a.grid(alpha=0.3)

    draw(ax, True)
    ax.set_xlabel("update index")
    ax.set_ylabel("mean staleness of the update's gradients")
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right")
    if result.mean.size > 12:  # the steady part, zoomed: the band and the gap between the limits show
        zoom = ax.inset_axes((0.35, 0.42, 0.6, 0.3))
        draw(zoom, False)
        late = result.mean[10:]
        values = [*late, *(v for v in (paper, exact) if v is not None)]
        pad = 2.0 * float(np.max(result.ci95[10:]))
        zoom.set_xlim(10.5, result.mean.size + 0.5)
        zoom.set_ylim(min(values) - pad, max(values) + pad)
        zoom.tick_params(labelsize="x-small")
        zoom.set_title("updates 11 onwards, zoomed", fontsize="x-small")
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


# ------------------------------------------------------------------------------------------- whole figures


def protocols_figure(points: Sequence[Any]) -> Any:
    """Protocols side by side, three panels: update rate (simulated, theory where known), staleness (mean with its
    95% CI written on the bar, the 95th percentile, the exact limit), and the work lost (wasted compute time,
    dropped gradients)."""
    names = [_protocol_label(p.system, points[0].system.K) for p in points]
    x = np.arange(len(points))
    fig, (ax1, ax2, ax3) = figure(1, 3, figsize=(13.5, 4.6), gridspec_kw={"wspace": 0.3})
    ax1.bar(x, [p.estimate.update_rate for p in points], color="tab:blue", label="simulated")
    theory = [p.prediction.update_rate_exact for p in points]
    ax1.plot(x, theory, "k_", ms=26, mew=2, label="theory (where known)")
    ax1.set_ylabel("updates per second")
    ax1.legend(fontsize="small", loc="upper right")
    means = [p.estimate.mean for p in points]
    cis = [p.estimate.ci95 for p in points]
    ax2.bar(x, means, yerr=cis, color="tab:orange", ecolor="black", capsize=4, label="mean ± 95% CI")
    for k, (m, c) in enumerate(zip(means, cis, strict=True)):
        ax2.annotate(f"{m:.3f}\n± {c:.3f}", (k, m), xytext=(0, 4), textcoords="offset points", ha="center",
                     va="bottom", fontsize="x-small")  # fmt: skip
    ax2.plot(x, [p.estimate.p95 for p in points], "kv", label="95th percentile")
    ax2.plot(x, [p.prediction.staleness_exact for p in points], "_", color="tab:blue", ms=26, mew=2,
             label="exact limit (where known)")  # fmt: skip
    top = max([*means, *(p.estimate.p95 for p in points)])
    ax2.set_ylim(0, 1.25 * top + 0.5)
    ax2.set_ylabel("staleness τ")
    ax2.legend(fontsize="small", loc="upper right")
    width = 0.38
    ax3.bar(x - width / 2, [100 * p.estimate.wasted_compute for p in points], width, color="tab:gray",
            label="compute time wasted (never applied)")  # fmt: skip
    ax3.bar(x + width / 2, [100 * p.estimate.dropped_fraction for p in points], width, color="tab:red",
            label="gradients dropped")  # fmt: skip
    ax3.set_ylabel("percent")
    ax3.set_ylim(0, 100)
    ax3.legend(fontsize="small", loc="upper right")
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(describe_system(points[0].system))
    return fig


def train_figure(
    labels: Sequence[str],
    bands: Sequence[Any],
    staleness: Sequence[float],
    diverged: Sequence[bool],
    target: float,
    title: str | None = None,
) -> Any:
    """Training curves of several configurations up to a common horizon: per configuration the geometric mean of
    the error over seeds with its 95% band (one :class:`~stalegrad.train.curves.Band` each), the target error, and
    diverged configurations marked in the legend."""
    fig, ax = figure(figsize=(7.5, 4.6))
    top = 0.0
    for label, b, tau, bad in zip(labels, bands, staleness, diverged, strict=True):
        text = (
            f"{label}, mean τ = {tau:.2f}"
            + (" (diverged)" if bad else "")
            + (f", {b.seeds} seeds" if b.seeds > 1 else "")
        )
        error_vs_time(
            b.grid, b.mean, lo=b.lo if b.seeds > 1 else None, hi=b.hi if b.seeds > 1 else None, label=text, ax=ax
        )
        if np.isfinite(b.mean[0]):
            top = max(top, float(b.mean[0]))
    ax.axhline(target, color="gray", ls=":", lw=1, label=f"target {target:.3g}")
    if top > 0:
        ax.set_ylim(top=10 * top)
    ax.set_xlim(0, float(bands[0].grid[-1]))
    if title:
        ax.set_title(title, fontsize="small")
    ax.legend(fontsize="x-small")
    return fig


def _protocol_label(system: Any, K: int) -> str:
    """A protocol's name, with what differs from the figure's system: ``ringmaster (K=1, R=4)``."""
    extra = [f"K={system.K}"] if system.K != K else []
    if system.delay_threshold is not None:
        extra.append(f"R={system.delay_threshold}")
    if system.cutoffs is not None:
        cuts = sorted(set(system.cutoffs))
        extra.append(f"cutoff {cuts[0]:g}" if len(cuts) == 1 else f"cutoffs {cuts[0]:g}..{cuts[-1]:g}")
    return system.protocol + (f" ({', '.join(extra)})" if extra else "")


def describe_system(system: Any) -> str:
    """A one-line title for a system in words a reader knows: n, K, Tc and its compute-time laws."""
    groups = system.groups()
    n = f"n = {system.n}" + (
        "" if system.workers is None else f" (workers {','.join(map(str, system.workers))} compute)"
    )
    tc = f"Tc = {system.tc:g}"
    if system.per_worker_delays:
        tcs = [system.tcs[i] for i in system.active]
        tc = f"Tc_i = {min(tcs):g}..{max(tcs):g}"
    if len(groups) == 1:
        return f"{n}, K = {system.K}, {tc}, compute time {describe_law(groups[0][1])}"
    if len(groups) > 3:
        means = system.means
        return (f"{n}, K = {system.K}, {tc}, {len(groups)} compute-time laws, means "
                f"{min(means):.3g} to {max(means):.3g}")  # fmt: skip
    laws = [f"{count} with {describe_law(model)}" for count, model in groups]
    return f"{n}, K = {system.K}, {tc}, compute times: {'; '.join(laws)}"


def describe_law(model: Any) -> str:
    """A compute-time law in words: ``1 + Exp(mean 1.5)``, ``fixed 2``, ``Gamma(a=2, scale=1)``.

    >>> from stalegrad.distributions import ShiftedExponential
    >>> describe_law(ShiftedExponential(1.0, 1.5))
    '1 + Exp(mean 1.5)'
    """
    from .distributions import Deterministic, Empirical, Scaled, ShiftedExponential
    from .syntax import describe

    if isinstance(model, ShiftedExponential):
        exp = f"Exp(mean {model.scale:.4g})"
        return exp if model.loc == 0 else f"{model.loc:.4g} + {exp}"
    if isinstance(model, Deterministic):
        return f"fixed {model.value:.4g}"
    if isinstance(model, Empirical):
        return f"measured times (mean {model.mean():.4g})"
    if isinstance(model, Scaled):
        return f"{model.factor:g} x {describe_law(model.base)}"
    if getattr(getattr(model, "dist", None), "name", None) == "expon":  # scipy's expon(loc, scale): as ours
        loc = float(model.support()[0])
        return describe_law(ShiftedExponential(loc, float(model.mean()) - loc))
    text = describe(model)
    name, _, rest = text.partition("(")
    return f"{name.capitalize()}({rest}"


def sweep_figure(rows: Sequence[dict[str, Any]], value: str, axes_keys: Sequence[str]) -> Any:
    """A sweep's heatmap: the median of ``value`` over replications for each pair of the two ``axes_keys``
    (one key: a line with the interquartile range; more than two: the least over the others), the medians written
    in the cells; blank where the median is missing (``time_to_target``: most replications never reached it)."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for r in rows:
        v = r.get(value)
        groups.setdefault(tuple(r[k] for k in axes_keys), []).append(math.inf if v is None else float(v))
    med = {k: float(np.median(v)) for k, v in groups.items()}  # a replication that never reached it counts last
    med = {k: v if math.isfinite(v) else math.nan for k, v in med.items()}
    label = value.replace("_", " ")
    if len(axes_keys) == 1:
        fig, ax = figure(figsize=(6.4, 4.4))
        xs = sorted(med, key=lambda k: k[0])
        lo = [_finite_or_nan(np.percentile(groups[k], 25)) for k in xs]
        hi = [_finite_or_nan(np.percentile(groups[k], 75)) for k in xs]
        x = np.arange(len(xs))
        ax.plot(x, [med[k] for k in xs], "o-", label="median over replications")
        ax.fill_between(x, lo, hi, alpha=0.25, label="interquartile range")
        ax.set_xticks(x, [str(k[0]) for k in xs])
        ax.set_xlabel(axes_keys[0])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        return fig
    xk, yk = axes_keys[:2]
    xs = sorted({k[0] for k in med}, key=_order)
    ys = sorted({k[1] for k in med}, key=_order)
    grid = np.full((len(ys), len(xs)), math.nan)
    for (a, b, *_rest), v in med.items():
        cell = grid[ys.index(b), xs.index(a)]
        grid[ys.index(b), xs.index(a)] = v if math.isnan(cell) else min(cell, v)  # the least over the other keys
    fig, ax = figure(figsize=(1.0 + 0.9 * len(xs) + 2.0, 1.0 + 0.55 * len(ys) + 1.2))
    im = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap="viridis_r")
    low, high = float(np.nanmin(grid)), float(np.nanmax(grid))
    for i in range(len(ys)):
        for j in range(len(xs)):
            if np.isfinite(grid[i, j]):
                light = (grid[i, j] - low) <= 0.5 * (high - low)  # viridis reversed: small values are yellow
                ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=8,
                        color="black" if light else "white")  # fmt: skip
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel(xk)
    ax.set_ylabel(yk)
    ax.set_title(f"{label}: blank where most replications have none", fontsize="small")
    fig.colorbar(im, ax=ax, label=f"{label} (median; least over the other options)")
    return fig


def _finite_or_nan(x: Any) -> float:
    return float(x) if np.isfinite(x) else math.nan


def _order(x: Any) -> tuple[int, Any]:
    return (0, x) if isinstance(x, (int, float)) else (1, str(x))
