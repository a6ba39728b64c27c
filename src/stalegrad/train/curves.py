"""Error-versus-time curves over seeds: put replays on one time grid, average in log scale, with a band.

Errors of SGD spread over orders of magnitude, so seeds are averaged as ``log10`` (a geometric mean) and the
band is the 95% Student-t interval of that mean: ``mean +- t_{0.975, R-1} * sd / sqrt(R)`` over ``R`` seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import invalid
from .replay import ReplayResult

__all__ = ["Band", "band"]


@dataclass(frozen=True)
class Band:
    """Per-seed errors on a time grid, their geometric mean and a 95% band (``lo``, ``hi``; equal to the mean
    for a single seed)."""

    grid: np.ndarray
    errors: np.ndarray  # (seeds, grid points)
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def seeds(self) -> int:
        return int(self.errors.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.grid.tolist(),
            "error_geomean": self.mean.tolist(),
            "error_lo95": self.lo.tolist(),
            "error_hi95": self.hi.tolist(),
            "seeds": self.seeds,
        }


def band(results: Sequence[ReplayResult], grid: Any) -> Band:
    """The errors of ``results`` (one per seed) at the times of ``grid`` (the newest version at each time),
    averaged in log scale with a 95% t-interval band.

    >>> import numpy as np
    >>> from stalegrad.train.replay import ReplayResult
    >>> r = ReplayResult(np.array([0, 1]), np.array([0.0, 2.0]), np.array([1.0, 0.01]), np.zeros(1), 1, 0, 0, 0.0, 1)
    >>> band([r, r], [1.0, 3.0]).mean.tolist()
    [1.0, 0.01]
    """
    import scipy.stats

    if not results:
        raise invalid("results", "an empty list", "at least one ReplayResult")
    grid = np.asarray(grid, dtype=float)
    errors = np.array([r.error_at(grid) for r in results])
    logs = np.log10(np.maximum(errors, np.finfo(float).tiny))
    mean = logs.mean(axis=0)
    R = len(results)
    half = scipy.stats.t.ppf(0.975, R - 1) * logs.std(axis=0, ddof=1) / np.sqrt(R) if R > 1 else np.zeros_like(mean)
    return Band(grid, errors, 10**mean, 10 ** (mean - half), 10 ** (mean + half))
