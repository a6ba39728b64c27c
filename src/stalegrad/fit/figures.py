"""Figures of a fit: per class, the empirical CDF (Kaplan–Meier when records are censored) with the fitted CDF,
a Q–Q panel and, with records at several batch sizes, the compute time against the batch size. Axes-level functions
take ``ax=None`` and return the axes; matplotlib is imported inside."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .batch import BatchFit
from .choice import SampleFit

__all__ = ["batch_panel", "cdf_panel", "fit_figure", "qq_panel"]

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


def _km_quantile(sample: Any, q: float) -> float:
    """The Kaplan–Meier ``q``-quantile (NaN where censoring leaves the estimate below ``q``)."""
    times, p = sample.ecdf()
    at = int(np.searchsorted(p, q - 1e-12))
    return float(times[at]) if at < times.size else float("nan")


def batch_panel(batch: BatchFit, *, reference: int | None = None, ax: Any = None) -> Any:
    """Compute time against the batch size: per size measured, the Kaplan–Meier median and p95 and the mean with its
    95% interval (sizes without censored records); the fitted law's mean, median and p95 as lines; and, dashed, the
    mean the paper's scaling (the whole draw times ``b``) gives from the ``reference`` size."""
    from ..plots import figure

    ax = ax if ax is not None else figure()[1]
    law = batch.law
    sizes = np.array(sorted(batch.samples), dtype=float)
    if sizes.size:
        bs = np.linspace(1.0, sizes.max() * 1.15, 80)  # a linear axis from 0: the fitted mean is a line
        ax.plot(bs, law.overhead + bs * law.per_sample, color="tab:red", lw=1.5, label="fitted mean")
        ax.plot(bs, [float(law.at(b).median()) for b in bs], color="tab:red", lw=0.8, ls="--", label="fitted median")
        ax.plot(bs, [float(law.at(b).ppf(0.95)) for b in bs], color="tab:red", lw=0.8, ls=":", label="fitted p95")
        for b in sizes:
            s = batch.samples[int(b)]
            med, p95 = _km_quantile(s, 0.5), _km_quantile(s, 0.95)
            ax.plot([b], [med], "v", color="black", ms=4)
            ax.plot([b], [p95], "^", color="black", ms=4)
            if s.n_censored == 0 and s.n > 1:
                mean, se = float(s.times.mean()), float(s.times.std(ddof=1)) / np.sqrt(s.n)
                ax.errorbar([b], [mean], yerr=[1.96 * se], fmt="o", color="tab:blue", ms=4, capsize=3)
        ax.plot([], [], "o", color="tab:blue", ms=4, label="measured mean (95% CI)")
        ax.plot([], [], "v", color="black", ms=4, label="measured median")
        ax.plot([], [], "^", color="black", ms=4, label="measured p95")
        if reference is not None and reference in batch.samples:
            m_ref = law.overhead + reference * law.per_sample
            ax.plot(bs, m_ref * bs / reference, color="grey", lw=0.8, ls="-.", label=f"b x mean at b = {reference}")
        ax.set_xlim(0, sizes.max() * 1.15)
        ax.set_ylim(bottom=0)
    ax.set_xlabel("batch size b")
    ax.set_ylabel("compute time (s)")
    overhead = f"{law.overhead:.3g} (SE {batch.overhead_se:.2g})"
    per_sample = f"{law.per_sample:.3g} (SE {batch.per_sample_se:.2g})"
    ax.set_title(f"mean {overhead} + b {per_sample} s", fontsize=9, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return ax


def fit_figure(classes: Sequence[Any], *, title: str | None = None, reference: int | None = None) -> Any:
    """One row per class (at most :data:`MAX_ROWS`): CDF panel and Q–Q panel, and the compute time against the
    batch size when a class has a law of ``b`` (``reference``: the batch size of the CDF panels).
    ``classes``: WorkerClass values."""
    from ..plots import figure

    rows = list(classes)[:MAX_ROWS]
    cols = 3 if any(c.batch is not None for c in rows) else 2
    fig, axes = figure(len(rows), cols, figsize=(5.0 * cols, 3.2 * len(rows) + 0.4), squeeze=False)
    for row, c in zip(axes, rows, strict=True):
        if cols == 3:
            if c.batch is None:
                row[2].set_axis_off()
            else:
                batch_panel(c.batch, reference=reference, ax=row[2])
        f = c.fit
        gof = "" if f.gof is None else f", GoF p = {f.gof.p_value:.2g}"
        workers = ", ".join(c.workers) if len(c.workers) <= 6 else f"{', '.join(c.workers[:5])}, … ({len(c.workers)})"
        at = f" at b = {reference}" if reference is not None and c.batch is not None else ""
        head = f"class {c.index} [{workers}]: {f.sample.n} records{at}, {f.sample.n_censored} censored{gof}"
        head += f"\n{f.law.text}"
        cdf_panel(f, title=head if len(head) < 160 else head[:157] + "…", ax=row[0])
        qq_panel(f, ax=row[1])
    if title:
        fig.suptitle(title, fontsize=10)
    if len(classes) > MAX_ROWS:
        fig.text(0.01, 0.005, f"first {MAX_ROWS} of {len(classes)} classes drawn", fontsize=8)
    fig.tight_layout()
    return fig
