"""The renewal function ``m(t)`` of a compute-time law: the expected number of partial sums of i.i.d. compute times
that are ``<= t``. It is the exact limit's correction to the paper's ``Tc / mu`` (:mod:`stalegrad.theory.limits`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..distributions import Deterministic, Empirical, Scaled, ShiftedExponential, scipy_kind
from ..errors import invalid

__all__ = ["is_exponential", "renewal_function"]


def renewal_function(model: Any, t: float) -> float:
    """Renewal function ``m(t) = E[#{k >= 1 : X_1 + ... + X_k <= t}]`` of a compute-time model.

    Closed forms for deterministic (``floor(t / value)``), exponential and shifted exponential times (a finite sum
    of gamma CDFs); ``m_{cX}(t) = m_X(t / c)`` for a scaled model; exact for integer-valued scipy distributions and
    for small empirical samples; a model with its own ``renewal(t)`` method is asked; otherwise computed
    numerically on a lattice (rounded masses, series inversion by FFT, Richardson extrapolation), accurate to
    about 1e-6 relative for distributions with a density.

    >>> from stalegrad.distributions import shifted_exponential
    >>> renewal_function(shifted_exponential(alpha=1, rate=2/3), 1.0)
    0.0
    >>> from stalegrad.distributions import ShiftedExponential
    >>> round(renewal_function(ShiftedExponential(0.0, 2.0), 3.0), 12)
    1.5
    """
    t = float(t)
    if t < 0:
        return 0.0
    if isinstance(model, Deterministic):
        return math.inf if model.value == 0 else float(math.floor(t / model.value))
    if isinstance(model, Scaled):
        return renewal_function(model.base, t / model.factor)
    if isinstance(model, Empirical):
        value = _renewal_empirical(model.values, t)
        if value is not None:
            return value
    own = getattr(model, "renewal", None)  # a user's model may know its own renewal function
    if callable(own):
        value = own(t)
        if value is not None:
            return float(value)
    gen = getattr(model, "dist", None)
    kind = scipy_kind(model)
    if kind == "discrete":
        if t > MAX_LATTICE_STEPS:
            raise invalid("t", t, f"at most {MAX_LATTICE_STEPS:g} for integer-valued compute times (simulate instead)")
        return _renewal_integer(model, t)
    mu = float(model.mean())
    if t > ASYMPTOTIC * mu:
        return _renewal_asymptotic(model, mu, t)
    if isinstance(model, ShiftedExponential) or (kind == "continuous" and getattr(gen, "name", "") == "expon"):
        alpha = float(model.support()[0])
        return _renewal_shifted_exponential(alpha, mu - alpha, t)
    return _renewal_lattice(model, t)


#: Beyond ``t = ASYMPTOTIC * mu`` the renewal function is its two-term asymptote (Smith's key renewal theorem).
ASYMPTOTIC = 1e5
#: The largest ``t`` (in lattice steps) for which an integer-valued renewal function is computed exactly.
MAX_LATTICE_STEPS = 1e7


def _renewal_asymptotic(model: Any, mu: float, t: float) -> float:
    """``m(t) = t/mu + (sigma^2 - mu^2) / (2 mu^2) + o(1)`` for non-lattice times with a finite variance; the
    remainder is negligible this far out (``t > 1e5 mu``). An infinite variance has no such asymptote."""
    var = float(model.var())
    if not math.isfinite(var):
        raise invalid("t", t, f"at most {ASYMPTOTIC:g} x the mean compute time for a law with infinite variance")
    return t / mu + (var - mu * mu) / (2.0 * mu * mu)


def _renewal_shifted_exponential(alpha: float, scale: float, t: float) -> float:
    """``m(t) = sum_{k=1}^{floor(t/alpha)} P(Gamma(k, scale) <= t - k alpha)``; ``t/scale`` when ``alpha = 0``."""
    if alpha == 0:
        return t / scale
    kmax = math.floor(t / alpha)
    # terms beyond many standard deviations of the gamma sum vanish: bound the sum for tiny alpha
    bound = t / scale + 40.0 * math.sqrt(t / scale + 1.0) + 50.0
    kmax = int(min(kmax, bound))
    if kmax < 1:
        return 0.0
    k = np.arange(1, kmax + 1)
    return float(_gamma_cdf_integer(k, (t - k * alpha) / scale).sum())


def _gamma_cdf_integer(k: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``P(Gamma(k, 1) <= y)`` for integer shapes ``k >= 1``, as the Poisson tail ``P(Poisson(y) >= k)``.

    Summed in log space: the upper tail directly when ``y < k`` (its terms fall geometrically from ``j = k``),
    else one minus the lower tail; nothing overflows, and a small probability keeps its relative precision.

    >>> float(_gamma_cdf_integer(np.array([1]), np.array([1.0]))[0])  # 1 - e^-1
    0.6321205588285577
    """
    out = np.zeros(k.size)
    for i, (kk, yy) in enumerate(zip(k.tolist(), y.tolist(), strict=True)):
        if yy <= 0:
            continue
        if yy < kk:
            j = np.arange(kk, kk + 60 + int(40 * math.sqrt(kk)), dtype=float)
            out[i] = _sum_exp(-yy + j * math.log(yy) - _log_factorial(j))
        else:
            j = np.arange(kk, dtype=float)
            out[i] = max(0.0, 1.0 - _sum_exp(-yy + j * math.log(yy) - _log_factorial(j)))
    return out


def _log_factorial(j: np.ndarray) -> np.ndarray:
    return np.array([math.lgamma(x + 1.0) for x in j.tolist()])


def _sum_exp(logs: np.ndarray) -> float:
    top = float(logs.max())
    return math.exp(top) * float(np.exp(logs - top).sum())


def _renewal_integer(model: Any, t: float) -> float:
    """Exact renewal function of an integer-valued distribution (discrete renewal equation on the integers)."""
    J = math.floor(t)
    low = int(max(model.support()[0], 0))
    if J < 0 or low > J:
        return 0.0
    f = np.asarray(model.pmf(np.arange(0, J + 1)), dtype=float)
    return float(_renewal_masses(f).sum())


def _renewal_lattice(model: Any, t: float) -> float:
    mu = float(model.mean())
    if t == 0:
        return float(model.cdf(0.0))
    spread = float(model.std()) if math.isfinite(float(model.std())) else mu
    scale = min(mu, spread) if spread > 0 else mu
    J = int(min(max(256, math.ceil(400.0 * t / scale)), 1 << 19))
    coarse = _lattice_estimate(model, t, J)
    fine = _lattice_estimate(model, t, 2 * J)
    return max(0.0, (4.0 * fine - coarse) / 3.0)


def _lattice_estimate(model: Any, t: float, J: int) -> float:
    """``m(t) = F(t) + E[sum_k F(t - S_k)]``, the renewal measure of the ``S_k`` from compute times rounded to
    the nearest multiple of ``h = t/J`` and ``F`` exact (so the last renewal before ``t`` is not rounded)."""
    h = t / J
    edges = (np.arange(J + 1) + 0.5) * h
    cdf = np.asarray(model.cdf(edges), dtype=float)
    f = np.empty(J + 1)
    f[0] = cdf[0]
    f[1:] = np.diff(cdf)
    u = _renewal_masses(f)
    tail = np.asarray(model.cdf(t - np.arange(J + 1) * h), dtype=float)
    return float(model.cdf(t) + np.dot(u, tail))


def _renewal_masses(f: np.ndarray) -> np.ndarray:
    """Renewal masses ``U = f / (1 - f)`` as a power series in the lattice index (``U = 1/(1-f) - 1``).

    Newton's iteration for the reciprocal of a power series, ``g <- g (2 - a g)``, with FFT products.
    """
    n = f.size
    a = -np.asarray(f, dtype=float)
    a[0] += 1.0
    if a[0] <= 0:
        raise ArithmeticError("compute time is 0 with probability 1: the renewal function is infinite")
    g = np.array([1.0 / a[0]])
    m = 1
    while m < n:
        m2 = min(2 * m, n)
        ag = _multiply(a[:m2], g, m2)
        ag = -ag
        ag[0] += 2.0
        g = _multiply(g, ag, m2)
        m = m2
    g[0] -= 1.0
    return g


def _multiply(x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """First ``size`` coefficients of the product of two power series."""
    full = x.size + y.size - 1
    nfft = 1 << (full - 1).bit_length()
    prod = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(y, nfft), nfft)[:size]
    if prod.size < size:
        prod = np.concatenate([prod, np.zeros(size - prod.size)])
    return prod


def _renewal_empirical(values: np.ndarray, t: float) -> float | None:
    """Exact renewal function ``m(t) = sum_k P(S_k <= t)`` when it is cheap to enumerate, else ``None``.

    ``P(S_k <= t)`` is computed by conditioning on the first ``k - 1`` draws; that costs ``M**(k-1)`` for
    ``M`` distinct values, so it is used only while that stays below about a million.
    """
    if t < 0:
        return 0.0
    vals, counts = np.unique(values, return_counts=True)
    probs = counts / counts.sum()
    positive = vals[vals > 0]
    if positive.size == 0 or (probs[0] > 0.5 and vals[0] == 0):
        return None
    kmax = math.floor(t / positive[0]) if vals[0] > 0 else None
    if kmax is None or kmax == 0:
        return None if kmax is None else 0.0
    if vals.size ** (kmax - 1) > 1_000_000:
        return None
    total = 0.0
    # partial sums of k-1 draws as (value, probability) arrays, pruned to those <= t
    sums, weights = np.zeros(1), np.ones(1)
    cdf_at = np.cumsum(probs)
    for _ in range(kmax):
        idx = np.searchsorted(vals, t - sums, side="right") - 1
        pk = np.where(idx >= 0, cdf_at[np.clip(idx, 0, None)], 0.0)
        total += float(np.dot(weights, pk))
        new_sums = (sums[:, None] + vals[None, :]).ravel()
        new_weights = (weights[:, None] * probs[None, :]).ravel()
        keep = new_sums <= t
        sums, weights = new_sums[keep], new_weights[keep]
        if sums.size == 0:
            break
    return total


def is_exponential(model: Any) -> bool:
    """True for an exponential law with ``loc = 0`` (memoryless compute times): scipy's ``expon`` or ours."""
    if isinstance(model, ShiftedExponential):
        return model.loc == 0.0
    gen = getattr(model, "dist", None)
    named = getattr(gen, "name", "") == "expon"
    return scipy_kind(model) == "continuous" and named and float(model.support()[0]) == 0.0
