"""Closed-form staleness theory for the K-batch-async protocol (pure functions of a :class:`System`).

* Update rate (Al-Lawati & Draper, Lemma 1, general form): ``sum_i (1/mu_i) / K``.
* The paper's Theorem 2: ``E[tau] -> (n/K) (Tc + mu) / mu`` -- exact only for exponential compute times.
* The exact limit (DESIGN.md): for a gradient of worker ``i``,

      E[tau_i] = ( 1 + m_i(Tc_i) + (Tc_i + mu_i) * sum_{k != i} 1/mu_k ) / K
      E[tau]   = sum_i (1/mu_i) E[tau_i] / sum_i (1/mu_i)

  where ``m_i`` is the renewal function of worker ``i``'s compute time, ``m(t) = sum_{k>=1} P(S_k <= t)``, and
  ``Tc_i = U_i + D_i`` worker ``i``'s own round trip (per-worker delays, ``System.tcs``; ``Tc`` when every worker
  has the same delays). Worker ``i``'s window opens ``D_i`` before its round starts and closes ``U_i`` after it
  ends; the other workers' own delays only shift their (stationary) arrival streams, so they do not enter.

The exact limit holds for deterministic delays (any split of ``Tc`` between uplink and downlink) and
non-lattice compute times (renewal theory's stationary phases). Lattice compute times -- deterministic,
integer-valued, resampled measurements -- can keep workers in lockstep, so that arrivals coincide and the limit
depends on the tie order: :func:`predict` then says so in ``caveat`` (simulate: the simulator is the referee).
With random delays the means are used and the value is an approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import System, require_system
from .renewal import renewal_function

__all__ = [
    "Prediction",
    "predict",
    "renewal_function",
    "staleness_exact",
    "staleness_exact_per_worker",
    "staleness_paper",
    "update_rate",
]


SYNC_PROTOCOLS = ("k-sync", "k-batch-sync", "sync", "rennala", "mindflayer")


def update_rate(system: System) -> float:
    """Long-run updates per second: ``sum_i (1/mu_i) / K`` for the paper's protocol (Lemma 1: ``n / (K mu)``);
    the other protocols' closed forms are in :mod:`stalegrad.rates`. NaN where none is known (simulate)."""
    if system.protocol == "k-batch-async":
        if system.staleness_bound is not None:
            return math.nan  # dropped gradients slow the updates by an amount no formula here gives
        return sum(1.0 / mu for mu in system.means) / system.K
    from .rates import protocol_update_rate

    rate = protocol_update_rate(system)
    return math.nan if rate is None else rate


def staleness_paper(system: System) -> float:
    """The paper's Theorem 2, ``(n/K) (Tc + mu) / mu``.

    For heterogeneous workers this is its natural generalisation (the exact limit when every compute time is
    exponential): ``(1/K) sum_i (Tc + mu_i) (sum_k 1/mu_k) / mu_i / sum_i (1/mu_i)``.
    """
    if system.protocol != "k-batch-async" or system.staleness_bound is not None:
        return math.nan  # the paper's theorem is about its own protocol
    inv = np.array([1.0 / mu for mu in system.means])
    mus = np.array(system.means)
    per_worker = (np.array(system.tcs) + mus) * inv.sum() / system.K
    return float(np.dot(inv, per_worker) / inv.sum())


def staleness_exact_per_worker(system: System) -> tuple[float, ...]:
    """Exact limit of the mean staleness of each worker's gradients, ``E[tau_i]`` (see module docstring).

    0 for the synchronous protocols (every gradient is on the current version); NaN where no limit is known.
    """
    if system.protocol in SYNC_PROTOCOLS:
        return (0.0,) * system.n
    if system.protocol == "ringmaster":
        from .optimal import _fixed, ringmaster_regime

        taus = _fixed(system.compute)
        assert system.delay_threshold is not None
        if system.tc == 0 and taus is not None and ringmaster_regime(taus, system.delay_threshold):
            total = sum(1.0 / t for t in taus)  # k-async with K = 1: worker i takes part in tau_i^-1 / total
            return tuple(tau * total - 1.0 for tau in taus)
        return (math.nan,) * system.n
    if system.protocol == "k-async" and system.staleness_bound is None:
        # a worker computes on the version it helped make, and its gradient joins the update after its next
        # participation: staleness = (updates between its participations) - 1. Worker i takes part in a fraction
        # p_i of the updates (sum p_i = K), so its mean is 1/p_i - 1, and over all gradients (n - K)/K.
        same = system.identical and not system.per_worker_delays
        return (system.n / system.K - 1.0,) * system.n if same else (math.nan,) * system.n
    if system.protocol != "k-batch-async" or system.staleness_bound is not None:
        return (math.nan,) * system.n
    mus = system.means
    inv_total = sum(1.0 / mu for mu in mus)
    cache: dict[tuple[int, float], float] = {}
    out = []
    for model, mu, tc in zip(system.compute, mus, system.tcs, strict=True):
        if (id(model), tc) not in cache:
            cache[id(model), tc] = renewal_function(model, tc)
        m = cache[id(model), tc]
        out.append((1.0 + m + (tc + mu) * (inv_total - 1.0 / mu)) / system.K)
    return tuple(out)


def staleness_exact(system: System) -> float:
    """Exact limit of the mean staleness over all gradients (rate-weighted mean of ``E[tau_i]``); for k-async
    without a bound ``n/K - 1``, whatever the compute times and delays."""
    if system.protocol == "k-async" and system.staleness_bound is None:
        return system.n / system.K - 1.0
    inv = np.array([1.0 / mu for mu in system.means])
    return float(np.dot(inv, staleness_exact_per_worker(system)) / inv.sum())


@dataclass(frozen=True)
class Prediction:
    """Every closed-form number for one system."""

    update_rate_exact: float
    staleness_paper: float
    staleness_exact: float
    staleness_exact_per_worker: tuple[float, ...]
    staleness_gap: float  # staleness_paper - staleness_exact
    caveat: str | None = None  # why the exact limit may not hold for this system

    def to_dict(self) -> dict[str, Any]:
        return {
            "update_rate_exact": self.update_rate_exact,
            "staleness_paper": self.staleness_paper,
            "staleness_exact": self.staleness_exact,
            "staleness_exact_per_worker": list(self.staleness_exact_per_worker),
            "staleness_gap": self.staleness_gap,
            "caveat": self.caveat,
        }


def predict(system: System) -> Prediction:
    """All theory values for ``system``.

    >>> from stalegrad.distributions import shifted_exponential
    >>> p = predict(System(n=10, K=10, tc=1, compute=shifted_exponential(alpha=1, rate=2/3)))
    >>> round(p.staleness_paper, 6), round(p.staleness_exact, 6)
    (1.4, 1.36)
    """
    require_system(system)
    if system.workers is not None:  # the idle workers change nothing: the active ones' theory, NaN for the others
        small = predict(system.active_system())
        spread = [math.nan] * system.n
        for j, i in enumerate(system.active):
            spread[i] = small.staleness_exact_per_worker[j]
        note = f"workers {list(system.active)} compute, the others are idle"
        caveat_ = note if small.caveat is None else f"{small.caveat}; {note}"
        return Prediction(small.update_rate_exact, small.staleness_paper, small.staleness_exact, tuple(spread),
                          small.staleness_gap, caveat_)  # fmt: skip
    paper = staleness_paper(system)
    per = staleness_exact_per_worker(system)
    exact = staleness_exact(system)
    return Prediction(update_rate(system), paper, exact, per, paper - exact, caveat(system))


def caveat(system: System) -> str | None:
    """Why a value may be missing or inexact: the protocol, lattice compute times, random delays."""
    notes = []
    if system.protocol == "k-async" and math.isnan(update_rate(system)):
        notes.append("k-async: update rate in closed form only for identical exponential times and Tc = 0")
    elif system.protocol == "k-batch-sync" and math.isnan(update_rate(system)):
        notes.append("k-batch-sync: update rate in closed form only for exponential compute times")
    elif system.protocol == "ringmaster" and math.isnan(update_rate(system)):
        notes.append(
            "ringmaster: rate and staleness in closed form only for fixed compute times, Tc = 0 and no round that "
            "can see R updates; simulate"
        )
    if system.staleness_bound is not None:
        notes.append("a staleness bound drops gradients: no closed form for the rate or staleness; simulate")
    if system.protocol in SYNC_PROTOCOLS:
        if not system.deterministic_delays:
            notes.append(f"{system.protocol} with random delays: no closed-form update rate; simulate")
        elif system.per_worker_delays:
            notes.append(f"{system.protocol} with per-worker delays: no closed-form update rate; simulate")
        return "; ".join(notes) or None
    lattice = [i for i, m in enumerate(system.compute) if is_lattice(m)]
    if lattice:
        notes.append(
            f"lattice compute times (workers {lattice[0]}..{lattice[-1]}): workers can stay in lockstep and "
            "arrivals coincide, so the exact limit (which assumes non-lattice times) may be off; simulate"
        )
    if not all(isinstance(system.downlink_of(i), float) for i in range(system.n)):
        notes.append(
            "random downlink: the exact limit (with the mean round trip) overstates staleness, since a newer "
            "version can overtake an older one; simulate"
        )
    elif not all(isinstance(system.uplink_of(i), float) for i in range(system.n)):
        notes.append("random uplink: the exact limit uses its mean (held within the CI in our tests)")
    return "; ".join(notes) or None


def is_lattice(model: Any) -> bool:
    """True for compute times concentrated on a grid: deterministic, integer-valued, or resampled measurements."""
    from ..distributions import Deterministic, Empirical, Scaled, scipy_kind

    if isinstance(model, Scaled):
        return is_lattice(model.base)
    return isinstance(model, (Deterministic, Empirical)) or scipy_kind(model) == "discrete"
