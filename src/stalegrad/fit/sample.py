"""One sample of measured times, possibly right-censored: what every fit in :mod:`stalegrad.fit` reads.

A *censored* record is work that was cancelled or cut off after that many seconds, so its true time is larger (the
k-sync family cancels stragglers: the finished times alone are biased fast). :meth:`Sample.data` is what scipy's
``rv_continuous.fit`` takes (``scipy.stats.CensoredData`` when some records are censored) and :meth:`Sample.ecdf`
the Kaplan–Meier estimate (``scipy.stats.ecdf``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from ..errors import SpecError

__all__ = ["Sample"]


@dataclass(frozen=True, eq=False)
class Sample:
    """Observed times (seconds, > 0) in the order they were measured, and which of them were cut off.

    >>> s = Sample.of([1.0, 2.0, 3.0], censored=[False, False, True])
    >>> s.n, s.n_censored, s.finished.tolist()
    (3, 1, [1.0, 2.0])
    """

    times: np.ndarray
    censored: np.ndarray

    @classmethod
    def of(cls, times: Any, censored: Any = None) -> Sample:
        t = np.asarray(times, dtype=float).ravel()
        c = np.zeros(t.size, dtype=bool) if censored is None else np.asarray(censored, dtype=bool).ravel()
        if c.size != t.size:
            raise SpecError(f"censored flags must be one per time: {c.size} flags for {t.size} times")
        if t.size and not (np.all(np.isfinite(t)) and t.min() > 0):
            bad = float(t[~(np.isfinite(t) & (t > 0))][0])
            raise SpecError(f"compute times must be finite numbers of seconds > 0, got {bad!r}")
        return cls(t, c)

    @property
    def n(self) -> int:
        return int(self.times.size)

    @property
    def n_censored(self) -> int:
        return int(self.censored.sum())

    @property
    def finished(self) -> np.ndarray:
        return self.times[~self.censored]

    @property
    def cut(self) -> np.ndarray:
        return self.times[self.censored]

    def data(self) -> Any:
        """What ``rv_continuous.fit`` takes: the times, or ``CensoredData`` when some are censored."""
        if not self.censored.any():
            return self.times
        return scipy.stats.CensoredData(uncensored=self.finished, right=self.cut)

    def ecdf(self) -> tuple[np.ndarray, np.ndarray]:
        """Kaplan–Meier estimate (the empirical CDF if nothing is censored): its times and CDF values."""
        res = scipy.stats.ecdf(self.data())
        return np.asarray(res.cdf.quantiles, dtype=float), np.asarray(res.cdf.probabilities, dtype=float)

    def pooled(self, *others: Sample) -> Sample:
        return Sample(
            np.concatenate([self.times, *(o.times for o in others)]),
            np.concatenate([self.censored, *(o.censored for o in others)]),
        )

    def subsample(self, size: int, rng: np.random.Generator) -> Sample:
        if self.n <= size:
            return self
        keep = np.sort(rng.choice(self.n, size=size, replace=False))
        return Sample(self.times[keep], self.censored[keep])
