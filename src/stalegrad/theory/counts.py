"""Renewal-count laws of a compute-time law on a uniform time grid: how many rounds a worker completes in a window.

For i.i.d. compute times ``X ~ F`` (mean ``mu``) with partial sums ``S_j`` and convolution powers ``F^{*j}``:

* the ordinary count ``N^o(t) = #{j >= 1 : S_j <= t}`` (a worker seen from one of its own round starts):

      P(N^o(t) = j) = F^{*j}(t) - F^{*(j+1)}(t);

* the equilibrium count ``N^eq(t)``: the rounds that a *stationary* worker -- one observed at a time that has
  nothing to do with it -- completes in a window of length ``t``. Its first interval has the equilibrium law
  ``F_e(x) = (1/mu) integral_0^x (1 - F)``, so ``P(N^eq(t) >= m) = (F_e * F^{*(m-1)})(t)``, that is

      P(N^eq(t) >= m) = (1/mu) integral_0^t P(N^o(u) = m - 1) du        (m >= 1).

  (Cox, *Renewal Theory*, 1962, ch. 3 and 4.)

The convolution powers are computed on the grid ``t_k = k h`` by the product-trapezoid Stieltjes rule with the
exact increments of ``F`` (``F^{*(m+1)}(t_k) = sum_j [F(t_{j+1}) - F(t_j)] (F^{*m}(t_k - t_j) + F^{*m}(t_k -
t_{j+1})) / 2``, one FFT product per power), the equilibrium tails by the cumulative trapezoid rule: both are
``O(h^2)``, which :mod:`stalegrad.theory.arrivals` removes by Richardson extrapolation. Exponential times have the
closed forms ``N^o(t) ~ N^eq(t) ~ Poisson(t / mu)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CountLaws", "count_laws"]

#: convolution powers stop once ``F^{*m}`` at the end of the grid is below this (the count's remaining mass)
POWER_FLOOR = 1e-14


@dataclass(frozen=True)
class CountLaws:
    """The count laws of one compute-time law (mean ``mean``) on the grid ``t_k = k * step``.

    ``ordinary[j, k] = P(N^o(t_k) = j)``; ``integral[j, k]`` is its integral over ``[0, t_k]`` (cumulative
    trapezoid), from which :meth:`equilibrium` reads the equilibrium count at any window. Rows stop where the
    remaining mass at the end of the grid is below :data:`POWER_FLOOR`.
    """

    step: float
    mean: float
    ordinary: np.ndarray
    integral: np.ndarray

    @property
    def points(self) -> int:
        return int(self.ordinary.shape[1])

    def equilibrium(self, columns: np.ndarray, delta: float) -> np.ndarray:
        """``P(N^eq(w) = m)`` for the windows ``w = k * step + delta``, ``k`` in ``columns``, ``0 <= delta < step``:
        rows ``k``, columns ``m``. A window between grid points adds the partial cell by the trapezoid rule on
        the linear interpolant (an ``O(step^3)`` term)."""
        cum = self.integral[:, columns]
        if delta > 0:
            p0, p1 = self.ordinary[:, columns], self.ordinary[:, columns + 1]
            cum = cum + delta * p0 + (0.5 * delta * delta / self.step) * (p1 - p0)
        at_least = np.vstack([np.ones((1, cum.shape[1])), cum / self.mean])  # P(N^eq >= m), m = 0, 1, ...
        pmf = at_least[:-1] - at_least[1:]
        pmf[-1] += at_least[-1]  # the last row keeps P(N^eq >= last) rather than losing it
        return pmf.T


def count_laws(model: Any, mean: float, step: float, points: int) -> CountLaws:
    """Count laws of ``model`` (mean ``mean``) on ``points`` grid points of ``step``.

    >>> import scipy.stats
    >>> laws = count_laws(scipy.stats.expon(scale=2.0), 2.0, 0.01, 301)  # N(3) ~ Poisson(1.5) for both counts
    >>> bool(abs(laws.ordinary[1, 300] - 1.5 * np.exp(-1.5)) < 1e-5)
    True
    >>> eq = laws.equilibrium(np.array([300]), 0.0)[0]
    >>> bool(abs(eq @ np.arange(eq.size) - 1.5) < 1e-9)  # E N^eq(t) = t / mu on any grid
    True
    """
    t = np.arange(points) * step
    cdf = np.clip(np.asarray(model.cdf(t), dtype=float), 0.0, 1.0)
    powers = _convolution_powers(cdf, points)
    ordinary = powers[:-1] - powers[1:]
    integral = np.zeros_like(ordinary)
    np.cumsum(0.5 * step * (ordinary[:, 1:] + ordinary[:, :-1]), axis=1, out=integral[:, 1:])
    return CountLaws(step, float(mean), ordinary, integral)


def _convolution_powers(cdf: np.ndarray, points: int) -> np.ndarray:
    """Rows ``F^{*0} = 1, F^{*1} = F, F^{*2}, ...`` on the grid, until the last row is below the floor at the end.

    ``F^{*(m+1)}(t_k) = F(0) F^{*m}(t_k) + sum_{j<k} d_j B_m[k-1-j]`` with ``d_j = F(t_{j+1}) - F(t_j)`` and
    ``B_m[r] = (F^{*m}(t_{r+1}) + F^{*m}(t_r)) / 2``: the product-trapezoid rule, one convolution by FFT.
    """
    atom = float(cdf[0])
    if atom >= 1.0:
        raise ArithmeticError("compute time is 0 with probability 1: the counts are infinite")
    d = np.diff(cdf)
    size = 1 << (2 * points - 1).bit_length()
    d_hat = np.fft.rfft(d, size)
    rows = [np.ones(points), cdf.copy()]
    while rows[-1][-1] > POWER_FLOOR:
        prev = rows[-1]
        mid = 0.5 * (prev[1:] + prev[:-1])
        conv = np.fft.irfft(d_hat * np.fft.rfft(mid, size), size)[: points - 1]
        nxt = atom * prev
        nxt[1:] += conv
        rows.append(nxt)
        if len(rows) > 100_000:
            raise ArithmeticError("the counts do not converge on this grid (compute times too close to 0)")
    rows.append(np.zeros(points))
    return np.vstack(rows)
