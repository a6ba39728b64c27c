"""Update rates of the protocols other than the paper's, where a closed form exists (Dutta et al. 2018,
"Slow and stale gradients can win the race: error-runtime trade-offs in distributed SGD").

Each function returns the long-run updates per second, or ``None`` when no closed form is known here (the event
engine then measures it). Delays must be fixed for the synchronous protocols (every update waits for one uplink
and one downlink, ``Tc``); with random or per-worker delays the workers restart at different times and no form
is given.

* k-sync and sync: ``1 / (E[X_(K:n)] + Tc)`` -- each update waits for the K-th fastest of n fresh rounds.
* k-batch-sync: ``1 / (K / sum_i lambda_i + Tc)`` for exponential compute times (the n workers together finish
  rounds as a Poisson process of rate ``sum_i lambda_i``, restarted at every update).
* k-async with ``Tc = 0`` and exponential times of one rate: ``1 / (mu (H_n - H_{n-K}))`` -- after an update the
  workers that wait, one more with each arrival, leave ``n, n-1, ..., n-K+1`` computing; memorylessness makes
  the others' remaining times fresh.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import invalid
from ..spec import System
from .renewal import is_exponential

__all__ = ["is_exponential", "order_statistic_mean", "protocol_update_rate"]


def order_statistic_mean(models: tuple[Any, ...], K: int) -> float:
    """``E[X_(K:n)]``, the mean of the K-th smallest of independent times (one model per worker).

    ``E[X_(K)] = integral_0^inf P(fewer than K of the n times are <= x) dx``; the probability is a Poisson-binomial
    tail, computed exactly at each ``x``.

    >>> from stalegrad.distributions import ShiftedExponential
    >>> e = ShiftedExponential(0.0, 1.0)
    >>> round(order_statistic_mean((e,) * 4, 2), 10)   # (1/4 + 1/3)
    0.5833333333
    """
    n = len(models)
    if not 1 <= K <= n:
        raise invalid("K", K, f"an integer between 1 and n = {n}")

    def tail(x: float) -> float:
        # dist[j] = P(exactly j of the workers so far are done by x), j < K
        dist = np.zeros(K + 1)
        dist[0] = 1.0
        for m in models:
            p = float(m.cdf(x))
            dist[1:] = dist[1:] * (1 - p) + dist[:-1] * p
            dist[0] *= 1 - p
        return float(dist[:K].sum())

    lows = [float(m.support()[0]) for m in models]
    highs = [float(m.ppf(1 - 1e-13)) for m in models]
    lo, hi = min(lows), max(highs)
    points = sorted({*lows, *(float(m.mean()) for m in models)} - {lo})
    import scipy.integrate

    value, _ = scipy.integrate.quad(tail, lo, hi, points=[p for p in points if lo < p < hi] or None, limit=400)
    return lo + value


def protocol_update_rate(system: System) -> float | None:
    """Updates per second of ``system``'s protocol where a closed form is known here, else ``None``."""
    tc, n, K = system.tc, system.n, system.K
    if system.protocol in ("k-sync", "k-batch-sync", "sync") and not system.deterministic_delays:
        return None  # workers restart at different times after each update
    if system.protocol in ("k-sync", "k-batch-sync", "sync") and system.per_worker_delays:
        return None  # likewise: each worker restarts its own downlink after the update
    if system.protocol in ("k-sync", "sync"):
        return 1.0 / (order_statistic_mean(system.compute, K) + tc)
    if system.protocol == "k-batch-sync":
        if all(is_exponential(m) for m in system.compute):
            total = sum(1.0 / float(m.mean()) for m in system.compute)
            return 1.0 / (K / total + tc)
        return None
    if system.protocol == "k-async":
        means = set(system.means)
        same = tc == 0 and not system.per_worker_delays and len(means) == 1
        if same and all(is_exponential(m) for m in system.compute):
            mu = means.pop()
            return 1.0 / (mu * sum(1.0 / (n - j) for j in range(K)))
        return None
    if system.protocol in ("rennala", "mindflayer", "ringmaster"):
        from .optimal import optimal_protocol_rate

        return optimal_protocol_rate(system)
    raise invalid("protocol", system.protocol, "a protocol with an update-rate rule")
