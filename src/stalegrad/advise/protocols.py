"""The optimal-time protocols' own parameters as advisor candidates: Ringmaster ASGD's delay threshold ``R`` and
MindFlayer SGD's cutoffs, each screened by theory before anything is replayed.

**Ringmaster ASGD** (Maranjyan, Tyurin & Richtárik, ICML 2025): asynchronous SGD (``K = 1``) whose rounds that
see ``R`` updates are stopped and restarted on the newest version. Their analysis needs ``O((R + S) L Delta /
epsilon)`` updates (``S = sigma^2 / epsilon``), and any ``R`` consecutive updates take at most ``2 t(R)`` with
``t(R) = min_m (m + R) / sum_{i<=m} 1/mu_(i)`` (the workers sorted by mean compute time), so the time to the
target is proportional to

    T(R) = (1 + S / R) t(R),

which is least near ``R = S`` (their choice ``R = max(1, ceil(S))``, with which ``T`` is within a factor 2 of
Rennala's optimal time). The advisor tries ``R`` in 1, 2, 4, ... up to twice the workers used and ``ceil(S)``;
with a known noise ratio it keeps the :data:`RINGMASTER_KEEP` values of least ``T(R)`` for replay (all of them
without one).

**MindFlayer SGD** (Maranjyan, Shaikh Omar & Richtárik, UAI 2025): rennala whose workers abandon a round at a
cutoff and restart it. Worker ``i``'s cutoff is the quantile ``q`` of its own compute-time law (the law of the
candidate's minibatch), ``q`` in :data:`CUTOFF_QUANTILES`. An update is ``S`` fresh gradients whatever the cutoffs,
so the cutoffs change only the update rate: the advisor keeps, per worker subset, ``S`` and ``b``, the ``q`` of the
highest rate (the exact rate of :func:`stalegrad.theory.predict` where it is known -- fixed delays -- else the rate
of a short simulation) and replays that one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "CUTOFF_QUANTILES",
    "RINGMASTER_KEEP",
    "cutoffs_at",
    "ringmaster_thresholds",
    "ringmaster_time",
]

#: Quantiles of each worker's compute-time law tried as mindflayer's cutoffs.
CUTOFF_QUANTILES = (0.5, 0.75, 0.9, 0.99)
#: Ringmaster thresholds kept for replay per worker subset when the noise ratio is known.
RINGMASTER_KEEP = 3


def ringmaster_time(means: Sequence[float], R: int, noise_ratio: float) -> float:
    """``T(R) = (1 + S/R) min_m (m + R) / sum_{i<=m} 1/mu_(i)`` (module docstring), up to the common constant.

    >>> round(ringmaster_time([1.0, 1.0, 10.0], 2, 2.0), 6)   # m = 2: (2 + 2) / 2, times 2
    4.0
    """
    inv = np.cumsum(1.0 / np.sort(np.asarray(means, dtype=float)))
    m = np.arange(1, inv.size + 1)
    return float((1.0 + noise_ratio / R) * np.min((m + R) / inv))


def ringmaster_thresholds(means: Sequence[float], noise_ratio: float | None, keep: int = RINGMASTER_KEEP) -> list[int]:
    """The thresholds ``R`` to replay for workers with these mean compute times: powers of two up to twice their
    number, and ``ceil(S)`` (at most that bound); the ``keep`` of least :func:`ringmaster_time` when ``S`` is known.

    >>> ringmaster_thresholds([1.0] * 4, None)
    [1, 2, 4, 8]
    >>> ringmaster_thresholds([1.0] * 4, 3.0, keep=2)
    [3, 4]
    """
    top = 2 * len(means)
    grid = {2**k for k in range(top.bit_length()) if 2**k <= top}
    if noise_ratio is None:
        return sorted(grid)
    grid.add(min(top, max(1, math.ceil(noise_ratio))))
    best = sorted(grid, key=lambda R: (ringmaster_time(means, R, noise_ratio), R))[:keep]
    return sorted(best)


def cutoffs_at(laws: Sequence[Any], quantile: float) -> tuple[float, ...]:
    """Each law's ``quantile`` (its cutoff in seconds), at least a little above its lowest time so that a round
    can finish.

    >>> from stalegrad.distributions import shifted_exponential
    >>> [round(c, 6) for c in cutoffs_at([shifted_exponential(alpha=1, rate=1)], 0.5)]
    [1.693147]
    """
    out = []
    for law in laws:
        c = float(np.asarray(law.ppf(quantile)))
        low = float(law.support()[0])
        out.append(c if c > low else low + max(1e-9, 1e-6 * abs(low)))
    return tuple(out)
