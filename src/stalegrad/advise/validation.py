"""The advisor's validation rung: the final choice made on replications the successive halving did not see.

Successive halving keeps the best of hundreds of candidates on a few replications, so the survivors' medians keep
some of their luck (the winner's curse: a candidate that was fast on those replications is not as fast on others).
The finalists -- the best few of the last rung, one step per configuration -- and the naive choice (every worker,
k-batch-async with ``K = 1``, its best constant step) are therefore replayed again on *fresh* replications (with
common random numbers: replication ``r`` shares its timeline and minibatch seeds in every candidate, and no
replication of the halving is reused), and each finalist ``c`` is compared with the naive choice replication by
replication, by the paired log ratio of the times to target

    d_r = log(T_c,r / T_naive,r),

its mean and a Student-t 95% interval. A time not reached by the horizon counts as the horizon: that shrinks the
finalist's advantage when the naive choice did not reach the target, and its handicap when it did not, both in the
naive choice's favour. A finalist is recommended only when it beats the naive choice convincingly -- the interval's
upper end is below 0 -- and among those, the one of least mean; otherwise the naive choice is. The prediction (the
median time to target and its interval) is the fresh replications' own: the halving's luck is not in it (the
choice among the few finalists on these replications keeps a little).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

__all__ = ["Paired", "choose", "paired_log_ratio"]

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class Paired:
    """A candidate against the naive choice on the same replications: the mean over replications of
    ``log(T / T_naive)`` (``< 0``: faster) and its Student-t 95% interval."""

    mean: float
    ci95: tuple[float, float]

    @property
    def convincing(self) -> bool:
        """The whole interval is below 0: faster than the naive choice beyond the replications' noise."""
        return self.ci95[1] < 0.0


def paired_log_ratio(times: Sequence[float], naive_times: Sequence[float], horizon: float) -> Paired:
    """``d_r = log(min(T_r, H) / min(T_naive,r, H))`` over the replications (a time not reached, ``inf``, counts as
    the horizon ``H``): the mean and its Student-t 95% interval (the mean itself, twice, when the ``d_r`` are all
    equal; NaN with one replication).

    >>> p = paired_log_ratio([8.0, 9.0, 10.0], [10.0, 10.0, 12.0], horizon=20.0)
    >>> round(p.mean, 4), p.convincing
    (-0.1703, True)
    >>> math.isclose(paired_log_ratio([8.0, math.inf], [10, 10], 20.0).mean, (math.log(0.8) + math.log(2.0)) / 2)
    True
    """
    import scipy.stats

    a = np.minimum(np.asarray(times, dtype=float), horizon)
    b = np.minimum(np.asarray(naive_times, dtype=float), horizon)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired times need the same replications, got {a.shape} and {b.shape}")
    d = np.log(a) - np.log(b)
    mean = float(d.mean())
    if d.size < 2:
        return Paired(mean, (math.nan, math.nan))
    sd = float(d.std(ddof=1))
    half = float(scipy.stats.t.ppf(0.975, d.size - 1)) * sd / math.sqrt(d.size) if sd > 0 else 0.0
    return Paired(mean, (mean - half, mean + half))


def choose(times: Mapping[Key, Sequence[float]], naive: Key, horizon: float) -> tuple[list[Key], dict[Key, Paired]]:
    """The validation rung's order (module docstring): the recommendation first -- the finalist of least mean
    paired log ratio among those that beat ``naive`` convincingly, else ``naive`` -- then the others by their mean
    (ties: by median time). ``times``: per candidate (``naive`` among them) the times to target on the fresh
    replications, the same replications in the same order for every candidate.

    >>> order, paired = choose({"a": [9.0, 9.5, 9.0], "b": [5.0, 20.0, 8.0], "naive": [10, 10, 10]}, "naive", 30.0)
    >>> order, paired["a"].convincing, paired["b"].convincing
    (['a', 'b', 'naive'], True, False)
    >>> choose({"b": [5.0, 20.0, 8.0], "naive": [10, 10, 10]}, "naive", 30.0)[0]
    ['naive', 'b']
    """
    if naive not in times:
        raise ValueError(f"the naive choice {naive!r} has no validation times")
    paired = {k: paired_log_ratio(t, times[naive], horizon) for k, t in times.items()}

    def rank(k: Key) -> tuple[float, float]:
        return (paired[k].mean, float(np.median(np.asarray(times[k], dtype=float))))

    order = sorted(times, key=rank)
    winners = [k for k in order if k != naive and paired[k].convincing]
    best = winners[0] if winners else naive
    return [best, *(k for k in order if k != best)], paired
