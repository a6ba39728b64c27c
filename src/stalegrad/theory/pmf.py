"""The stationary staleness distribution of k-batch-async with fixed delays and non-lattice compute times.

A round of worker ``i`` that starts at ``s`` uses the version made of the ``N0`` gradients that reached the master
before ``s - D`` (downlink ``D``); its gradient arrives at ``s + X + U`` (compute ``X ~ F_i``, uplink ``U``). With
``A'_i`` the arrivals in between, ahead of it (:mod:`stalegrad.theory.arrivals`), and ``Phi = N0 mod K`` the
batch phase, the gradient is applied in update ``ceil((N0 + A'_i + 1) / K)``, so

    tau = floor((Phi + A'_i) / K).

In the limit ``Phi`` is uniform on ``{0, ..., K-1}`` and independent of ``A'_i`` (non-lattice compute times), so

    P(tau_i = k) = sum_a P(A'_i = a) (K - |a - k K|)^+ / K,      P(tau = k) = sum_i (lambda_i / Lambda) P(tau_i = k),

and ``E[tau_i] = E[A'_i] / K``, the exact limit of :mod:`stalegrad.theory.limits`. The derivation and its
caveats: ``docs/staleness-distribution.md``. Closed form for exponential compute times; a numerical method with a
reported error estimate for any other non-lattice law; refused, with the reason, for lattice compute times,
random delays, the other protocols and a staleness bound (simulate those). Per-worker fixed delays: each worker's
window has its own round trip ``Tc_i = U_i + D_i`` (the classes are split by it; one computation per round trip).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StalegradError, invalid
from ..spec import System
from ..syntax import describe
from .arrivals import (
    STEPS_PER_SCALE,
    arrivals_by_round_trip,
    arrivals_closed_form,
    arrivals_numerical,
    worker_classes,
)
from .limits import is_lattice
from .renewal import is_exponential

__all__ = ["ClassStaleness", "StalenessDistribution", "distribution_refusal", "staleness_distribution"]

METHODS = ("auto", "closed form", "numerical")


@dataclass(frozen=True, eq=False)
class ClassStaleness:
    """The staleness law of the gradients of one worker class (the workers with one compute-time model)."""

    workers: tuple[int, ...]
    model: str
    share: float  # the fraction of all gradients that come from this class, sum of lambda_i / Lambda
    pmf: np.ndarray
    mean: float


@dataclass(frozen=True, eq=False)
class StalenessDistribution:
    """The stationary law of the staleness over all gradients (``pmf[k] = P(tau = k)``) and per worker class.

    ``pmf`` misses ``truncation`` of the mass: the compute-time tail cut to keep the grid finite (that mass lies at
    staleness values in or beyond the support). :meth:`tail` counts it as stale (an upper bound), so
    :meth:`quantile` and :meth:`smallest_bound` are never too small. ``error_estimate`` is the estimated error of
    ``pmf`` in total variation (0 for the closed form, up to rounding).
    """

    pmf: np.ndarray
    per_class: tuple[ClassStaleness, ...]
    truncation: float
    error_estimate: float
    method: str
    step: float | None = None  # the finest grid step of the numerical method

    def mean(self) -> float:
        """``sum_k k P(tau = k)`` (without the truncated mass)."""
        return _mean(self.pmf)

    def cdf(self, s: int) -> float:
        """``P(tau <= s)`` (low by at most ``truncation``)."""
        return float(self.pmf[: max(int(s) + 1, 0)].sum())

    def tail(self, s: int) -> float:
        """``P(tau > s)``, the truncated mass counted as stale (high by at most ``truncation``)."""
        return max(0.0, 1.0 - self.cdf(s))

    def quantile(self, q: float) -> int:
        """The smallest ``s`` with ``P(tau <= s) >= q``, ``0 <= q <= 1``.

        >>> from stalegrad.distributions import shifted_exponential
        >>> d = staleness_distribution(System(n=16, K=10, tc=1, compute=shifted_exponential(alpha=1, rate=2/3)))
        >>> d.quantile(0.5), d.quantile(0.95), d.quantile(0.99)
        (2, 4, 6)
        """
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 <= q <= 1.0:
            raise invalid("q", q, "a probability from 0 to 1")
        reach = np.flatnonzero(np.cumsum(self.pmf) >= q * (1.0 - 1e-15))
        if reach.size == 0:
            raise StalegradError(
                f"the {q} quantile is beyond the computed support: {self.truncation:.3g} of the mass was cut with "
                "the compute-time tail (simulate, or ask for a lower quantile)"
            )
        return int(reach[0])

    def dropped_by_bound(self, S: int) -> float:
        """The fraction of gradients staler than ``S``, ``P(tau > S)``: what a staleness bound ``S`` would drop of
        this system's gradients. With the bound in place, dropped gradients do not count towards ``K``, the updates
        slow down and slightly fewer are dropped, so this is an upper estimate (docs/staleness-distribution.md).

        >>> from stalegrad.distributions import shifted_exponential
        >>> d = staleness_distribution(System(n=16, K=10, tc=1, compute=shifted_exponential(alpha=1, rate=2/3)))
        >>> round(d.dropped_by_bound(4), 4)
        0.0326
        """
        if isinstance(S, bool) or not isinstance(S, (int, np.integer)) or S < 0:
            raise invalid("S", S, "an integer >= 0")
        return self.tail(int(S))

    def smallest_bound(self, p: float) -> int:
        """The smallest staleness bound ``S`` that would drop at most a fraction ``p`` of the gradients.

        >>> from stalegrad.distributions import shifted_exponential
        >>> d = staleness_distribution(System(n=16, K=10, tc=1, compute=shifted_exponential(alpha=1, rate=2/3)))
        >>> S = d.smallest_bound(0.01)
        >>> S, d.dropped_by_bound(S) <= 0.01 < d.dropped_by_bound(S - 1)
        (6, True)
        """
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise invalid("p", p, "a fraction from 0 to 1 (1 excluded)")
        return self.quantile(1.0 - p)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (all finite; a quantile beyond the computed support is ``None``)."""

        def q(level: float) -> int | None:
            try:
                return self.quantile(level)
            except StalegradError:
                return None

        return {
            "staleness_pmf": self.pmf.tolist(),
            "staleness_mean": self.mean(),
            "staleness_p50": q(0.5),
            "staleness_p95": q(0.95),
            "staleness_p99": q(0.99),
            "truncation": self.truncation,
            "error_estimate": self.error_estimate,
            "method": self.method,
            "per_class": [
                {"workers": list(c.workers), "model": c.model, "share": c.share, "mean": c.mean, "pmf": c.pmf.tolist()}
                for c in self.per_class
            ],
        }


#: The longest round trip, in mean compute times of the fastest worker, whose distribution is computed.
MAX_WINDOW = 1e4


def distribution_refusal(system: System) -> tuple[str, Any, str] | None:
    """Why the staleness distribution of ``system`` cannot be predicted, as ``(parameter, value, allowed)`` for
    :func:`stalegrad.errors.invalid`; ``None`` when it can."""
    if system.protocol != "k-batch-async":
        return ("protocol", system.protocol, "k-batch-async for the staleness distribution (simulate the others)")
    if system.staleness_bound is not None:
        return (
            "staleness_bound",
            system.staleness_bound,
            "None for the staleness distribution (dropped gradients do not count towards K; simulate)",
        )
    if not system.deterministic_delays:
        d = system.to_dict()
        return (
            "uplink and downlink",
            f"{d['uplink']}, {d['downlink']}",
            "fixed times for the staleness distribution (a random delay makes the window random and versions can "
            "overtake each other; simulate)",
        )
    if not max(system.tcs) <= MAX_WINDOW * min(system.means):
        return (
            "tc",
            max(system.tcs),
            f"at most {MAX_WINDOW:g} x the shortest mean compute time for the staleness distribution (its grid "
            "would not fit; simulate)",
        )
    for i, model in enumerate(system.compute):
        if is_lattice(model):
            return (
                f"compute[{i}]",
                describe(model),
                "a non-lattice law for the staleness distribution (lattice times can lock the workers' phases, so "
                "the batch phase is not uniform; simulate)",
            )
    return None


def staleness_distribution(
    system: System, *, tol: float = 1e-10, method: str = "auto", steps_per_scale: int = STEPS_PER_SCALE
) -> StalenessDistribution:
    """The stationary staleness distribution of ``system`` over all gradients and per worker class.

    ``method``: ``"closed form"`` (exponential compute times only), ``"numerical"`` (any non-lattice law) or
    ``"auto"`` (the closed form where it exists). ``tol``: the compute-time tail mass left off (more when a heavy
    tail does not fit the grid: see ``truncation``). ``steps_per_scale``: grid steps per time scale of the
    coarsest of the numerical method's three grids (the error falls as its square or faster; ``error_estimate``).

    >>> import scipy.stats
    >>> d = staleness_distribution(System(n=4, K=2, tc=0, compute=scipy.stats.expon(scale=1)))
    >>> d.method, round(float(d.pmf[0]), 6), round(d.mean(), 6)  # P(tau = 0) = 1 - (1 - q^K) / (K p)
    ('closed form', 0.125, 2.0)
    """
    if not isinstance(system, System):
        raise invalid("system", type(system).__name__, "a stalegrad.System")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 1e-14 <= tol <= 1e-2:
        raise invalid("tol", tol, "a number from 1e-14 to 1e-2")
    if method not in METHODS:
        raise invalid("method", method, f"one of {', '.join(repr(m) for m in METHODS)}")
    if isinstance(steps_per_scale, bool) or not isinstance(steps_per_scale, int) or not 4 <= steps_per_scale <= 1024:
        raise invalid("steps_per_scale", steps_per_scale, "an integer from 4 to 1024")
    refusal = distribution_refusal(system)
    if refusal is not None:
        raise invalid(*refusal)
    classes = worker_classes(system)
    exponential = all(is_exponential(c.model) for c in classes)
    if method == "closed form" and not exponential:
        raise invalid("method", method, "'numerical' or 'auto' for non-exponential compute times")
    if method == "numerical" or not exponential:
        arrivals = arrivals_by_round_trip(classes, arrivals_numerical, float(tol), steps_per_scale)
    else:
        arrivals = arrivals_by_round_trip(classes, arrivals_closed_form, float(tol))
    per_class = []
    total = np.zeros(1)
    for c, law in zip(classes, arrivals.laws, strict=True):
        pmf = _batch(law, system.K)
        label = describe(c.model) + (f", Tc = {c.tc:g}" if system.per_worker_delays else "")
        per_class.append(ClassStaleness(c.workers, label, c.share, pmf, _mean(pmf)))
        size = max(total.size, pmf.size)
        total = _pad(total, size) + c.share * _pad(pmf, size)
    return StalenessDistribution(
        pmf=_trim(total),
        per_class=tuple(per_class),
        truncation=float(sum(c.share * t for c, t in zip(classes, arrivals.cut, strict=True))),
        error_estimate=arrivals.error,
        method="numerical" if arrivals.step is not None else "closed form",
        step=arrivals.step,
    )


def _batch(arrivals: np.ndarray, K: int) -> np.ndarray:
    """``P(tau = k) = sum_a P(A' = a) (K - |a - k K|)^+ / K``: a uniform batch phase added, in blocks of ``K``
    (entry ``k K + K - 1`` of the convolution with the triangle of half-width ``K``)."""
    tri = (K - np.abs(np.arange(-(K - 1), K))) / K
    if arrivals.size * K <= 4_000_000:
        conv = np.convolve(arrivals, tri)
    else:
        size = arrivals.size + tri.size - 1
        conv = np.maximum(np.fft.irfft(np.fft.rfft(arrivals, 2 * size) * np.fft.rfft(tri, 2 * size), 2 * size), 0)
        conv = conv[:size]
    return _trim(conv[K - 1 :: K])


def _mean(pmf: np.ndarray) -> float:
    return float(np.dot(np.arange(pmf.size), pmf))


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([a, np.zeros(size - a.size)]) if a.size < size else a


def _trim(pmf: np.ndarray) -> np.ndarray:
    """Without its trailing zeros (at least one entry)."""
    nz = np.flatnonzero(pmf > 0)
    return pmf[: (nz[-1] + 1 if nz.size else 1)].copy()
