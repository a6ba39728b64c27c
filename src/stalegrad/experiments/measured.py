"""Measured staleness of a real run beside the exact prediction computed from its *measured* times.

It sits above the runtime and the theory (the runtime only runs; this compares).

The measured system has, for each worker, the empirical distribution of its measured compute times (a round runs
from the instant the previous gradient was sent to the instant this one is sent, so ``sent - start`` of every
row), and fixed delays equal to the measured means (``arrive - sent`` for the uplink; version made to version
reached for the downlink). :func:`compare` puts the run's steady-state staleness (95% CI from batch means) beside
:func:`~stalegrad.theory.predict` of that system.

The exact limit needs only ``Tc``, the means ``mu_i`` and the renewal functions ``m_i(Tc)``: of these, only
``m_i`` depends on the shape of the compute-time law, and the empirical law gives it exactly when few partial sums
fit in ``Tc`` (else numerically). ``predict`` marks empirical models as lattice ones; the measured times are
continuous, so that caveat is about the resampling, not the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..analysis import steady_state
from ..runtime.measured import measured_system
from ..sim import simulate_summary
from ..spec import System
from ..theory import predict
from ..trace import Summary

__all__ = ["Comparison", "compare", "measured_system", "simulate_measured"]


@dataclass(frozen=True)
class Comparison:
    """Measured steady-state staleness against the exact prediction from measured times (and the configured one).

    The field names are the shared vocabulary's (``docs/vocabulary.md``): ``staleness_mean`` is the run's,
    ``staleness_exact`` the exact limit of the system the run measured."""

    staleness_mean: float  # measured, after the warm-up
    staleness_ci95: float
    staleness_max: int
    staleness_exact: float  # exact limit of the measured system
    staleness_paper: float  # the paper's Theorem 2 for the measured system
    staleness_exact_configured: float | None  # exact limit of the configured system (injected times), if any
    staleness_rel_diff: float  # (staleness_mean - staleness_exact) / staleness_exact
    staleness_z: float  # (staleness_mean - staleness_exact) / standard error of staleness_mean
    update_rate: float  # measured, updates per time unit
    update_rate_exact: float  # of the measured system
    uplink: float  # measured mean delays and their excess over the injected ones (time units)
    downlink: float
    uplink_extra: float | None
    downlink_extra: float | None
    compute_means: tuple[float, ...]
    warmup_updates: int
    caveat: str | None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["compute_means"] = list(self.compute_means)
        return d


def compare(result: Any, *, warmup: int | None = None, batches: int = 32) -> Comparison:
    """Compare a :class:`~stalegrad.runtime.RunResult`'s staleness with the prediction from its measured times."""
    trace = result.trace
    n, K = trace.system.n, trace.system.K
    est = steady_state(trace, warmup=warmup, batches=min(batches, max(2, trace.updates - (warmup or 0))))
    system = measured_system(trace.columns, result.downlink, K, n)
    pred = predict(system)
    configured = None
    up_extra = down_extra = None
    if result.time_unit is not None:
        conf = trace.system
        configured = predict(conf).staleness_exact
        up_extra = system.uplink - _mean(conf.uplink)
        down_extra = system.downlink - _mean(conf.downlink)
    import scipy.stats

    ok = est.batches >= 2 and math.isfinite(est.ci95) and est.ci95 > 0
    se = est.ci95 / float(scipy.stats.t.ppf(0.975, est.batches - 1)) if ok else math.nan
    return Comparison(
        staleness_mean=est.mean,
        staleness_ci95=est.ci95,
        staleness_max=est.max,
        staleness_exact=pred.staleness_exact,
        staleness_paper=pred.staleness_paper,
        staleness_exact_configured=configured,
        staleness_rel_diff=(est.mean - pred.staleness_exact) / pred.staleness_exact,
        staleness_z=(est.mean - pred.staleness_exact) / se if ok else math.nan,
        update_rate=est.update_rate,
        update_rate_exact=pred.update_rate_exact,
        uplink=float(system.uplink),
        downlink=float(system.downlink),
        uplink_extra=up_extra,
        downlink_extra=down_extra,
        compute_means=system.means,
        warmup_updates=est.warmup,
        caveat="measured times are resampled (an empirical law); delays are their measured means",
    )


def simulate_measured(result: Any, updates: int, seed: int) -> tuple[System, Summary]:
    """The system a run measured (:func:`measured_system`) and ``updates`` simulated updates of it (streamed)."""
    trace = result.trace
    system = measured_system(trace.columns, result.downlink, trace.system.K, trace.system.n)
    return system, simulate_summary(system, updates, seed=seed)


def _mean(delay: Any) -> float:
    return delay if isinstance(delay, float) else float(delay.mean())
