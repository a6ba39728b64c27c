"""Figures of a fit: per class, the empirical CDF (Kaplan–Meier when records are censored) with the fitted CDF,
and a Q–Q panel. Axes-level functions take ``ax=None`` and return the axes; matplotlib is imported inside."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .laws import SampleFit

__all__ = ["cdf_panel", "fit_figure", "qq_panel"]

#: Classes drawn at most (one row each).
MAX_ROWS = 12


def cdf_panel(fit: SampleFit, *, title: str | None = None, ax: Any = None) -> Any:
    """The sample's empirical CDF (step), the chosen law's CDF and its 95th percentile."""
    from ..plots import figure

    ax = ax if ax is not None else figure()[1]
    q, p = fit.sample.ecdf()
    censored = fit.sample.n_censored > 0
    ax.step(q, p, where="post", color="black", lw=1.2, label="Kaplan–Meier" if censored else "empirical")
    law = fit.law
    hi = max(float(q.max()), law.quantile(0.995))
    xs = np.linspace(max(0.0, float(q.min()) - 0.05 * (hi - float(q.min()))), hi, 400)
    ax.plot(xs, law.model.cdf(xs), color="tab:red", lw=1.5, label=f"fitted {law.family}")
    p95 = law.quantile(0.95)
    ax.axvline(p95, color="tab:red", ls=":", lw=1, label=f"fitted p95 = {p95:.3g} s")
    if censored:
        ax.axvline(float(fit.sample.cut.max()), color="grey", ls="--", lw=0.8, label="last censoring time")
    ax.set_xlim(right=max(float(np.quantile(q, 0.999)), law.quantile(0.999)))
    ax.set_xlabel("compute time (s)")
    ax.set_ylabel("CDF")
    ax.set_ylim(0, 1.02)
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return ax


def qq_panel(fit: SampleFit, *, points: int = 2000, ax: Any = None) -> Any:
    """Observed finished times against the chosen law's quantiles at their (Kaplan–Meier) probabilities."""
    from ..plots import figure

    ax = ax if ax is not None else figure()[1]
    q, p = fit.sample.ecdf()
    before = np.concatenate([[0.0], p[:-1]])
    jumps = p > before  # finished times (censored times leave the estimate flat)
    observed, mid = q[jumps], 0.5 * (p[jumps] + before[jumps])
    if observed.size > points:
        keep = np.unique(np.linspace(0, observed.size - 1, points).round().astype(int))
        observed, mid = observed[keep], mid[keep]
    fitted = np.asarray(fit.law.model.ppf(mid), dtype=float)
    ax.plot(fitted, observed, ".", ms=2.5, color="tab:blue", alpha=0.6)
    lo = float(min(fitted.min(), observed.min()))
    hi = float(max(fitted.max(), observed.max()))
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    ax.set_xlabel(f"{fit.law.family} quantile (s)")
    ax.set_ylabel("observed time (s)")
    ax.set_title("Q–Q", fontsize=9, loc="left")
    ax.grid(alpha=0.3)
    return ax


def fit_figure(classes: Sequence[Any], *, title: str | None = None) -> Any:
    """One row per class (at most :data:`MAX_ROWS`): CDF panel and Q–Q panel. ``classes``: WorkerClass values."""
    from ..plots import figure

    rows = list(classes)[:MAX_ROWS]
    fig, axes = figure(len(rows), 2, figsize=(10.0, 3.2 * len(rows) + 0.4), squeeze=False)
    for row, c in zip(axes, rows, strict=True):
        f = c.fit
        gof = "" if f.gof is None else f", GoF p = {f.gof.p_value:.2g}"
        workers = ", ".join(c.workers) if len(c.workers) <= 6 else f"{', '.join(c.workers[:5])}, … ({len(c.workers)})"
        head = f"class {c.index} [{workers}]: {f.sample.n} records, {f.sample.n_censored} censored{gof}\n{f.law.text}"
        cdf_panel(f, title=head if len(head) < 160 else head[:157] + "…", ax=row[0])
        qq_panel(f, ax=row[1])
    if title:
        fig.suptitle(title, fontsize=10)
    if len(classes) > MAX_ROWS:
        fig.text(0.01, 0.005, f"first {MAX_ROWS} of {len(classes)} classes drawn", fontsize=8)
    fig.tight_layout()
    return fig
