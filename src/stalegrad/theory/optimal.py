"""Update rates of the optimal-time protocols of 2023-2025: rennala, mindflayer, ringmaster.

**Rennala SGD** (Tyurin & Richtarik, NeurIPS 2023). At every update all active workers are cancelled and restart
together (they are sent the new version at once; with fixed delays it reaches them all ``Tc/2`` later), so update
periods are i.i.d. and equal ``Tc + T_S``, where ``T_S`` is the first time the workers, each computing rounds back
to back from 0, have finished ``S = K`` rounds together:

    T_S = min{ t : sum_i N_i(t) >= S },      N_i(t) = #{ j : X_i1 + ... + X_ij <= t }.

For fixed compute times ``tau_i`` this is the smallest ``t`` with ``sum_i floor(t / tau_i) >= S``
(:func:`collect_time`), and the paper's bound (their time complexity; ``tau`` sorted increasingly)

    T_S <= min_m (S + m) / sum_{i<=m} 1/tau_(i)       (:func:`rennala_bound`, which also gives the best m)

follows from ``floor(x) > x - 1``. For random times ``E[T_S] = integral_0^inf P(sum_i N_i(t) < S) dt``, computed
from the renewal-count laws of :mod:`.counts` (:func:`mean_collect_time`; exponential times: ``S / sum_i
lambda_i``). The rate is ``1 / (Tc + E[T_S])``.

**MindFlayer SGD** (Maranjyan, Shaikh Omar & Richtarik, UAI 2025) is rennala whose worker ``i`` abandons a round at
its cutoff ``c_i``: its gradients come as a renewal process whose gaps are ``c_i`` per failed attempt plus one
successful time, ``Y_i = G c_i + (X_i | X_i <= c_i)`` with ``G`` geometric (failure probability ``1 - p_i``,
``p_i = P(X_i <= c_i)``), so ``P(Y_i <= t) = sum_{g >= 0} (1 - p_i)^g F_i(min(t - g c_i, c_i))`` and
``E[Y_i] = E[min(X_i, c_i)] / p_i``: the same formula with ``Y_i`` in place of ``X_i``.

**Ringmaster ASGD** (Maranjyan, Tyurin & Richtarik, ICML 2025) with ``K = 1``, ``Tc = 0`` and fixed compute times
stops and drops nothing when no round can see ``R`` updates: worker ``i``'s round sees at most
``D_i = sum_{k != i} (floor(tau_i / tau_k) + 1)`` of them (other workers' finishes within ``tau_i``). If every
``D_i <= R - 1`` every worker computes back to back: the rate is ``sum_i 1/tau_i`` and the mean staleness, as for
k-async with ``K = 1``, ``M - 1`` over ``M`` active workers (worker ``i``: ``tau_i sum_k 1/tau_k - 1``). Beyond
that regime no closed form is given here (simulate).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..distributions import Deterministic
from ..spec import System
from .counts import count_laws

__all__ = [
    "collect_time",
    "cutoff_law",
    "mean_collect_time",
    "optimal_protocol_rate",
    "rennala_bound",
    "ringmaster_regime",
]


def collect_time(taus: Sequence[float], S: int) -> float:
    """The smallest ``t`` with ``sum_i floor(t / tau_i) >= S``: the time fixed-time workers take to finish ``S``
    rounds together, starting together (merging their finish times).

    >>> collect_time([1.0, 2.0, 4.0], 4), collect_time([1.0, 2.0, 4.0], 5)
    (3.0, 4.0)
    """
    heap = [(tau, tau, i) for i, tau in enumerate(taus)]
    heapq.heapify(heap)
    t = 0.0
    for _ in range(S):
        t, tau, i = heapq.heappop(heap)
        heapq.heappush(heap, (t + tau, tau, i))
    return t


def rennala_bound(taus: Sequence[float], S: int) -> tuple[float, int]:
    """Tyurin & Richtarik's ``min_m (S + m) / sum_{i<=m} 1/tau_(i)`` (``tau`` sorted increasingly) and the ``m`` that
    attains it (the smallest): an upper bound of :func:`collect_time` and the number of fastest workers to use.

    >>> rennala_bound([1.0, 1.0, 100.0], 4)
    (3.0, 2)
    """
    inv = np.cumsum(1.0 / np.sort(np.asarray(taus, dtype=float)))
    m = np.arange(1, inv.size + 1)
    values = (S + m) / inv
    best = int(np.argmin(values))
    return float(values[best]), best + 1


class CutoffLaw:
    """The gap between two gradients of a worker that abandons rounds at ``cutoff``: ``G c + (X | X <= c)``."""

    def __init__(self, model: Any, cutoff: float) -> None:
        import scipy.integrate

        self.model, self.c = model, float(cutoff)
        self.p = float(model.cdf(self.c))
        if not self.p > 0:
            raise ArithmeticError("the worker never finishes a round within its cutoff")
        lo = float(model.support()[0])
        kept, _ = scipy.integrate.quad(lambda x: 1.0 - float(model.cdf(x)), max(lo, 0.0), self.c, limit=200)
        self._mean = (max(lo, 0.0) + kept) / self.p  # E[min(X, c)] / p

    def mean(self) -> float:
        return self._mean

    def cdf(self, t: Any) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        out = np.zeros_like(t)
        q = 1.0 - self.p
        g = 0
        while True:
            u = t - g * self.c
            if not (u >= 0).any() or q**g < 1e-17:
                return out
            out += np.where(u >= 0, q**g * np.asarray(self.model.cdf(np.minimum(np.maximum(u, 0.0), self.c))), 0.0)
            g += 1


def cutoff_law(model: Any, cutoff: float) -> CutoffLaw:
    """The law of the gaps between a mindflayer worker's gradients (module docstring)."""
    return CutoffLaw(model, cutoff)


def mean_collect_time(models: Sequence[Any], S: int, points: int = 2048) -> float:
    """``E[T_S] = integral_0^inf P(sum_i N_i(t) < S) dt`` for workers with independent random times (``models``,
    each with ``cdf`` and ``mean``), from their renewal-count laws on a grid (:func:`.counts.count_laws`), with
    Richardson extrapolation over two grids (the rules are ``O(h^2)``)."""
    rate = sum(1.0 / float(m.mean()) for m in models)
    end = 4.0 * (S + len(models)) / rate + max(float(m.mean()) for m in models)
    while _below(models, S, end, 256)[-1] > 1e-12:
        end *= 2.0
    coarse = _integral(_below(models, S, end, points), end)
    fine = _integral(_below(models, S, end, 2 * points - 1), end)
    return (4.0 * fine - coarse) / 3.0


def _below(models: Sequence[Any], S: int, end: float, points: int) -> np.ndarray:
    """``P(sum_i N_i(t_k) < S)`` on ``points`` grid points from 0 to ``end``."""
    step = end / (points - 1)
    dist = np.zeros((S, points))
    dist[0] = 1.0
    cache: dict[int, np.ndarray] = {}
    for model in models:
        if id(model) not in cache:
            laws = count_laws(model, float(model.mean()), step, points).ordinary
            rows = np.zeros((S, points))
            rows[: min(S, laws.shape[0])] = laws[:S]
            cache[id(model)] = rows
        pmf = cache[id(model)]
        new = np.zeros_like(dist)
        for j in range(S):
            new[j] = np.einsum("ak,ak->k", dist[: j + 1], pmf[j::-1])
        dist = new
    return np.clip(dist.sum(axis=0), 0.0, 1.0)


def _integral(values: np.ndarray, end: float) -> float:
    step = end / (values.size - 1)
    return float(step * (values.sum() - 0.5 * (values[0] + values[-1])))


def ringmaster_regime(taus: Sequence[float], R: int) -> bool:
    """True when no round of fixed-time workers (``Tc = 0``) can see ``R`` updates: every
    ``sum_{k != i} (floor(tau_i / tau_k) + 1) <= R - 1``."""
    return all(
        sum(math.floor(ti / tk) + 1 for k, tk in enumerate(taus) if k != i) <= R - 1 for i, ti in enumerate(taus)
    )


def _fixed(models: Sequence[Any]) -> list[float] | None:
    return [m.value for m in models] if all(isinstance(m, Deterministic) for m in models) else None


def optimal_protocol_rate(system: System) -> float | None:
    """Long-run updates per second of rennala, mindflayer or ringmaster where the module docstring gives one
    (``None`` elsewhere: random delays, ringmaster outside its regime)."""
    from .renewal import is_exponential

    small = system.active_system()
    models, tc, S = list(small.compute), small.tc, small.K
    if system.protocol == "ringmaster":
        taus = _fixed(models)
        assert small.delay_threshold is not None
        if tc == 0 and taus is not None and ringmaster_regime(taus, small.delay_threshold):
            return sum(1.0 / tau for tau in taus)
        return None
    if not small.deterministic_delays or small.per_worker_delays:
        return None  # the workers restart at different times after each update
    if system.protocol == "mindflayer":
        assert small.cutoffs is not None
        pairs = [(m, c) for m, c in zip(models, small.cutoffs, strict=True) if float(m.cdf(c)) > 0]
        taus = _fixed([m for m, _ in pairs])
        if taus is not None:
            return 1.0 / (collect_time(taus, S) + tc)
        models = [cutoff_law(m, c) for m, c in pairs]
    taus = _fixed(models)
    if taus is not None:
        return 1.0 / (collect_time(taus, S) + tc)
    if all(is_exponential(m) for m in models):
        return 1.0 / (S / sum(1.0 / float(m.mean()) for m in models) + tc)
    return 1.0 / (mean_collect_time(models, S) + tc)
