"""Checks of the model's assumption: each worker's rounds are independent and identically distributed.

Two tests on each worker's series of times, in the order they were measured:

* **drift** -- Mann–Kendall's test of a monotone trend, Kendall's tau between the round index and the time
  (``scipy.stats.kendalltau``; it needs no law: Mann 1945), with the variance of Hamed & Rao (1998) for
  autocorrelated series, so that bursts are not taken for drift;
* **bursts** -- the Ljung–Box statistic of the ranks' autocorrelations ``r_k`` at lags ``1..h``,
  ``Q = N (N + 2) sum_k r_k^2 / (N - k)``, chi-squared with ``h`` degrees of freedom under independence
  (Ljung & Box 1978); run on the ranks, so a heavy tail does not decide it, less their least-squares line, so a
  drift is not taken for bursts. Positive autocorrelation is a worker that is slow (or fast) for stretches.

Each test is at the level divided by the number of workers (Bonferroni), so a cluster of i.i.d. workers raises a
warning with probability at most about twice the level. Censored times enter as observed (a lower bound): heavy
censoring makes both tests weaker. The prediction is still made; the warning goes beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.stats

from .laws import Sample

__all__ = ["Finding", "check_series", "check_workers"]

#: Series shorter than this are not tested.
MIN_ROUNDS = 20


@dataclass(frozen=True)
class Finding:
    """A worker whose series breaks the i.i.d. assumption: what was found, the test's p-value, one line."""

    worker: str
    kind: str  # "drift" or "bursts"
    statistic: float
    p_value: float
    message: str

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _median_of(x: np.ndarray, part: slice) -> float:
    return float(np.median(x[part]))


def check_series(worker: str, sample: Sample, level: float) -> list[Finding]:
    """The drift and burst tests of one worker's series at ``level`` (already corrected for many workers).

    >>> rng = np.random.default_rng(0)
    >>> x = rng.gamma(2.0, 1.0, size=300) * 1.01 ** np.arange(300)
    >>> [f.kind for f in check_series("w0", Sample.of(x), 0.01)]
    ['drift']
    """
    x = sample.times
    n = x.size
    if n < MIN_ROUNDS:
        return []
    found = []
    index = np.arange(n, dtype=float)
    ranks = scipy.stats.rankdata(x)
    slope, intercept = _slope(index, ranks)
    resid = ranks - (intercept + slope * index)  # the series without its trend
    tau, p_trend = _trend_test(index, ranks, resid)
    if p_trend <= level:
        tenth = max(n // 10, 1)
        first, last = _median_of(x, slice(0, tenth)), _median_of(x, slice(n - tenth, n))
        change = (last / first) ** (1.0 / max(n - tenth, 1)) - 1.0
        found.append(
            Finding(
                worker,
                "drift",
                float(tau),
                float(p_trend),
                f"worker {worker} drifts: median {first:.4g} s in its first tenth of rounds, {last:.4g} s in its "
                f"last ({100 * change:+.2g}% a round; Kendall tau {tau:.2f}, p = {p_trend:.1e})",
            )
        )
    lags = min(10, n // 5)
    q, p_burst, r1 = _ljung_box(scipy.stats.rankdata(resid), lags)
    if p_burst <= level and r1 > 0:
        found.append(
            Finding(
                worker,
                "bursts",
                q,
                p_burst,
                f"worker {worker} is slow in bursts: its times are correlated from round to round (lag-1 rank "
                f"autocorrelation {r1:.2f}; Ljung-Box p = {p_burst:.1e} over {lags} lags)",
            )
        )
    return found


def _slope(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares line of the ranks (ranks are bounded, so no time pulls it far)."""
    lr = scipy.stats.linregress(t, y)
    return float(lr.slope), float(lr.intercept)


def _autocorrelation(x: np.ndarray, k: int) -> float:
    d = x - x.mean()
    denom = float(d @ d)
    return float(d[k:] @ d[:-k]) / denom if denom > 0 else 0.0


def _trend_test(t: np.ndarray, ranks: np.ndarray, resid: np.ndarray) -> tuple[float, float]:
    """Mann–Kendall's tau and its p-value with Hamed & Rao's (1998) variance for autocorrelated series:
    ``Var(S) * (1 + 2 / (n (n-1) (n-2)) sum_k (n-k)(n-k-1)(n-k-2) rho_k)``, over the lags ``k`` whose rank
    autocorrelation ``rho_k`` of the detrended series is significant at 5% (never below the i.i.d. variance)."""
    n = t.size
    tau = float(scipy.stats.kendalltau(t, ranks)[0])
    if not np.isfinite(tau):
        return 0.0, 1.0
    var_tau = 2.0 * (2 * n + 5) / (9.0 * n * (n - 1))
    r = scipy.stats.rankdata(resid)
    d = r - r.mean()
    acf = np.fft.irfft(np.abs(np.fft.rfft(d, 2 * n)) ** 2)[1 : n - 2] / float(d @ d)  # lags 1 .. n-3
    k = np.arange(1, n - 2, dtype=float)
    significant = np.abs(acf) > 1.96 / math.sqrt(n)
    weights = (n - k) * (n - k - 1) * (n - k - 2)
    eta = max(1.0, 1.0 + 2.0 / (n * (n - 1) * (n - 2)) * float(np.sum((weights * acf)[significant])))
    return tau, float(2 * scipy.stats.norm.sf(abs(tau) / math.sqrt(var_tau * eta)))


def _ljung_box(x: np.ndarray, lags: int) -> tuple[float, float, float]:
    """Ljung–Box ``Q`` over lags ``1..lags``, its chi-squared p-value, and the lag-1 autocorrelation."""
    n = x.size
    r = np.array([_autocorrelation(x, k) for k in range(1, lags + 1)])
    q = float(n * (n + 2) * np.sum(r**2 / (n - np.arange(1, lags + 1))))
    return q, float(scipy.stats.chi2.sf(q, lags)), float(r[0])


def check_workers(samples: dict[str, Sample], level: float) -> list[Finding]:
    """Every worker's findings, each test at ``level / (number of workers)``."""
    if not samples:
        return []
    each = level / len(samples)
    return [f for worker, s in samples.items() for f in check_series(worker, s, each)]
