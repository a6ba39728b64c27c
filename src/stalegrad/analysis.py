"""Estimates from simulated (or measured) runs: steady-state staleness with a confidence interval, quantiles,
per-worker means, the update rate, and the transient over replications (the paper's Figure 2).

Everything here consumes a :class:`~stalegrad.trace.Summary` (a Trace is first reduced with
:meth:`Summary.from_trace`), so a streamed run and a kept Trace give the same estimates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import invalid
from .trace import Summary, Trace

__all__ = ["Estimate", "Transient", "quantile", "steady_state", "transient"]


@dataclass(frozen=True)
class Estimate:
    """Steady-state staleness of one run, after the warm-up.

    ``ci95`` is the half-width of a 95% confidence interval for the long-run mean from ``batches`` batch means
    (Student t with ``batches - 1`` degrees of freedom).
    """

    mean: float
    ci95: float
    batches: int
    warmup: int
    updates: int
    gradients: int  # gradients in the estimate (after the warm-up)
    update_rate: float  # updates per second after the warm-up
    p50: int
    p95: int
    p99: int
    max: int
    worker_means: tuple[float, ...]
    dropped_fraction: float = 0.0  # of the gradients that reached the master
    wasted_compute: float = 0.0  # of the compute time: never applied (cancelled, abandoned, dropped)

    def covers(self, value: float, rel: float = 0.0) -> bool:
        """True when ``value`` lies within the 95% CI, or within ``rel`` relative distance of the mean."""
        return abs(value - self.mean) <= max(self.ci95, rel * abs(self.mean))

    def to_dict(self) -> dict[str, Any]:
        return {
            "staleness_mean": self.mean,
            "staleness_ci95": self.ci95,
            "staleness_p50": self.p50,
            "staleness_p95": self.p95,
            "staleness_p99": self.p99,
            "staleness_max": self.max,
            "update_rate": self.update_rate,
            "warmup_updates": self.warmup,
            "updates": self.updates,
            "batches": self.batches,
            "gradients_in_estimate": self.gradients,
            "worker_means": list(self.worker_means),
            "dropped_fraction": self.dropped_fraction,
            "wasted_compute": self.wasted_compute,
        }


def _t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (scipy.special, lighter than scipy.stats)."""
    import scipy.special

    return float(scipy.special.stdtrit(df, 0.975))


def steady_state(run: Summary | Trace, *, warmup: int | None = None, batches: int = 32) -> Estimate:
    """Mean staleness after the warm-up, with a batch-means 95% confidence interval.

    ``warmup`` and ``batches`` apply when ``run`` is a Trace (a Summary already fixed them).
    """
    if isinstance(run, Trace):
        run = Summary.from_trace(run, run.updates // 10 if warmup is None else warmup, batches)
    counts = run.batch_count
    used = counts > 0
    means = run.batch_sum[used] / counts[used]
    total = int(counts.sum())
    mean = float(run.batch_sum.sum() / total) if total else math.nan
    nb = int(used.sum())
    ci = float(_t975(nb - 1) * means.std(ddof=1) / math.sqrt(nb)) if nb >= 2 else math.inf
    span = run.t_end - run.t_warmup
    rate = (run.updates - run.warmup) / span if span > 0 else math.inf
    with np.errstate(invalid="ignore", divide="ignore"):
        wm = np.where(run.worker_count > 0, run.worker_sum / np.maximum(run.worker_count, 1), np.nan)
    return Estimate(
        mean=mean,
        ci95=ci,
        batches=nb,
        warmup=run.warmup,
        updates=run.updates,
        gradients=total,
        update_rate=rate,
        p50=quantile(run.hist, 0.50),
        p95=quantile(run.hist, 0.95),
        p99=quantile(run.hist, 0.99),
        max=int(np.flatnonzero(run.hist)[-1]) if run.hist.any() else 0,
        worker_means=tuple(float(x) for x in wm),
        dropped_fraction=run.dropped / (run.gradients + run.dropped) if run.gradients + run.dropped else 0.0,
        wasted_compute=run.wasted_compute,
    )


def quantile(hist: np.ndarray, q: float) -> int:
    """Smallest staleness ``t`` with ``P(tau <= t) >= q`` in a histogram (``hist[t]`` = count of ``t``)."""
    total = hist.sum()
    if total == 0:
        return 0
    return int(np.searchsorted(np.cumsum(hist), q * total, side="left"))


@dataclass(frozen=True)
class Transient:
    """Mean staleness per update index over independent replications, with a 95% confidence band."""

    mean: np.ndarray  # mean[u-1] for update u
    ci95: np.ndarray
    replications: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "ci95": self.ci95.tolist(), "replications": self.replications}


def transient(runs: Sequence[Trace | Summary], updates: int) -> Transient:
    """Average, over replications, of the mean staleness of the gradients applied in each of the first updates."""
    rows = []
    for run in runs:
        if isinstance(run, Trace):
            upd, tau = run["update"], run["staleness"]
            keep = (upd >= 1) & (upd <= updates)
            sums = np.bincount(upd[keep] - 1, weights=tau[keep], minlength=updates)
            counts = np.bincount(upd[keep] - 1, minlength=updates)
        else:
            sums = run.transient_sum[:updates]
            counts = np.full(sums.size, run.system.K)
        if sums.size < updates:
            raise invalid("updates", updates, f"at most the {sums.size} updates of every replication")
        rows.append(sums / counts)
    data = np.array(rows)
    R = data.shape[0]
    mean = data.mean(axis=0)
    ci = _t975(R - 1) * data.std(axis=0, ddof=1) / math.sqrt(R) if R >= 2 else np.full(updates, np.inf)
    return Transient(mean, ci, R)
