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
from ..runtime.measured import full_set, measured_system
from ..sim import simulate_summary
from ..spec import System
from ..theory import predict
from ..trace import Summary

__all__ = ["Comparison", "compare", "measured_system", "simulate_measured"]

#: With lost workers, the fewest updates made by every worker for a comparison on them alone.
_SHORTEST = 20


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
    wasted_compute: float = 0.0  # measured: the fraction of the compute time never applied
    wasted_compute_predicted: float | None = None  # the event engine's, for the protocols that waste any
    lost_workers: tuple[int, ...] = ()  # workers lost during the run (the caveat names them)
    compared: tuple[int, int] | None = None  # with lost workers: the updates compared, every worker running

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["compute_means"] = list(self.compute_means)
        d["lost_workers"] = list(self.lost_workers)
        d["compared"] = list(self.compared) if self.compared is not None else None
        return d


def compare(result: Any, *, warmup: int | None = None, batches: int = 32) -> Comparison:
    """Compare a :class:`~stalegrad.runtime.RunResult`'s staleness with the prediction from its measured times.

    Under the paper's protocol (every worker, no bound) the prediction is the exact limit of the measured system.
    Under any other the round times of a run are censored (abandoned rounds are not rows), so the prediction is
    :func:`protocol_prediction` of the injected compute times with the measured mean uplink (Ray's latency and the
    master's load lengthen it) under the run's protocol; with nothing injected, of the measured times."""
    trace = result.trace
    n, K = trace.system.n, trace.system.K
    lost, restarted = tuple(getattr(result, "lost", ())), tuple(getattr(result, "restarted", ()))
    window = full_set(trace.columns, lost, restarted, trace.updates)
    note = ""
    if window is not None:  # the prediction is for n workers: compare the stretch where n ran
        first, last = window
        workers = ", ".join(f"worker {w} at update {v}" for w, v in lost)
        back = "restarted" if len(restarted) >= len(lost) else "not restarted"
        if last - first + 1 >= _SHORTEST and warmup is None:
            note = f"lost {workers} ({back}): compared on updates {first}..{last}, while all {n} workers ran; "
            warmup = first - 1 + (last - first + 1) // 10
            trace = trace.head(last)
        else:
            note = f"lost {workers} ({back}): the whole run compared, as if all {n} workers ran throughout; "
            window = None
    est = steady_state(trace, warmup=warmup, batches=min(batches, max(2, trace.updates - (warmup or 0))))
    system = measured_system(trace.columns, result.downlink, K, n)
    conf = trace.system
    if _paper(conf):
        pred = predict(system)
        exact, rate_exact, wasted = pred.staleness_exact, pred.update_rate_exact, None
    else:  # the injected compute times with the measured uplink, or the measured times, under the run's protocol
        if result.time_unit is not None:
            up = system.uplink if isinstance(conf.uplink, float) else conf.uplink  # a law: kept
            other = _with_protocol(conf, conf, up, conf.downlink)
        else:
            other = _with_protocol(system, conf, system.uplink, system.downlink)
        exact, rate_exact, wasted, why = protocol_prediction(other)
        note += why + " (the injected compute times and the measured mean uplink); "
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
        staleness_exact=exact,
        staleness_paper=pred.staleness_paper if _paper(conf) else math.nan,
        staleness_exact_configured=configured,
        staleness_rel_diff=(est.mean - exact) / exact if exact else 0.0 if est.mean == exact else math.nan,
        staleness_z=(est.mean - exact) / se if ok else (0.0 if est.mean == exact else math.nan),
        update_rate=est.update_rate,
        update_rate_exact=rate_exact,
        uplink=float(system.uplink),
        downlink=float(system.downlink),
        uplink_extra=up_extra,
        downlink_extra=down_extra,
        compute_means=system.means,
        warmup_updates=est.warmup,
        caveat=note + "measured times are resampled (an empirical law); delays are their measured means"
        if _paper(conf)
        else note.rstrip("; "),
        wasted_compute=float(trace.meta.get("wasted_compute", 0.0)),
        wasted_compute_predicted=wasted,
        lost_workers=tuple(sorted({int(w) for w, _ in lost})),
        compared=window,
    )


def simulate_measured(result: Any, updates: int, seed: int) -> tuple[System, Summary]:
    """The system a run measured (:func:`measured_system`) and ``updates`` simulated updates of it (streamed).
    Under another protocol than the paper's, the system its prediction is made for (see :func:`compare`)."""
    trace = result.trace
    system = measured_system(trace.columns, result.downlink, trace.system.K, trace.system.n)
    conf = trace.system
    if not _paper(conf):
        if result.time_unit is not None:
            up = system.uplink if isinstance(conf.uplink, float) else conf.uplink
            system = _with_protocol(conf, conf, up, conf.downlink)
        else:
            system = _with_protocol(system, conf, system.uplink, system.downlink)
    return system, simulate_summary(system, updates, seed=seed)


#: Updates of the event engine behind a prediction the theory has no closed form for.
PREDICTION_UPDATES = 20_000


def protocol_prediction(system: System, seed: int = 0) -> tuple[float, float, float, str]:
    """The long-run mean staleness, update rate and wasted compute of ``system`` under its protocol: the theory's
    closed forms where it has them, else the event engine's estimates over :data:`PREDICTION_UPDATES` updates
    (the wasted compute always the engine's); and a note saying which."""
    from ..sim.events import simulate_events

    theory = predict(system)
    trace = simulate_events(system, PREDICTION_UPDATES, seed=seed)
    est = steady_state(trace)
    staleness, rate = theory.staleness_exact, theory.update_rate_exact
    simulated = [name for name, v in (("staleness", staleness), ("update rate", rate)) if not math.isfinite(v)]
    staleness = staleness if math.isfinite(staleness) else est.mean
    rate = rate if math.isfinite(rate) else est.update_rate
    where = f"the event engine's over {PREDICTION_UPDATES} updates" if simulated else "the theory's"
    what = f"{system.protocol}: predicted {' and '.join(simulated) or 'staleness and update rate'} are {where}"
    return staleness, rate, est.wasted_compute, what + ", wasted compute the engine's"


def _paper(system: System) -> bool:
    """The paper's protocol with every worker and no bound: the exact limit from the measured times applies."""
    return system.protocol == "k-batch-async" and system.staleness_bound is None and system.workers is None


def _with_protocol(times: System, conf: System, uplink: Any, downlink: Any) -> System:
    """The compute times of ``times`` and these delays under the run's protocol (``conf``'s bound, subset,
    threshold and cutoffs)."""
    return System(
        n=times.n,
        K=times.K,
        compute=list(times.compute),
        uplink=uplink,
        downlink=downlink,
        protocol=conf.protocol,
        staleness_bound=conf.staleness_bound,
        workers=list(conf.workers) if conf.workers is not None else None,
        delay_threshold=conf.delay_threshold,
        cutoffs=list(conf.cutoffs) if conf.cutoffs is not None else None,
    )


def _mean(delay: Any) -> float:
    return delay if isinstance(delay, float) else float(delay.mean())
