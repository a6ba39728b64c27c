"""Maximum-likelihood fit of one sample of compute times, possibly right-censored, and the choice of its law.

A sample is the times of one worker (or of a class of workers, pooled); a *censored* record is work that was
cancelled or cut off after that many seconds, so its true time is larger (the k-sync family cancels stragglers:
the finished times alone are biased fast). The log-likelihood of a law with density ``f`` and survival ``S`` is

    l = sum_{finished} log f(x_j) + sum_{censored} log S(c_j)

and each candidate family is fitted by maximising it with ``scipy.stats`` (``rv_continuous.fit``, with
``scipy.stats.CensoredData`` when some records are censored):

* ``expon`` (scale), ``shifted_expon`` (``expon`` with a location: the paper's ``alpha + Exp(lambda)``);
* ``gamma``, ``lognorm``, ``weibull_min``, each with a location shift ``loc`` (the least time a round takes).

For the three shifted families the location is profiled: the likelihood with ``loc`` fixed is maximised by scipy
(in closed form or by its optimiser), and ``loc`` by ``scipy.optimize.minimize_scalar`` over
``[0, x(1) - (x(2) - x(1))]`` (``x(1) < x(2)`` the two least distinct finished times). The upper bound keeps the
likelihood bounded: for shapes below 1 it grows without limit as ``loc`` reaches the least time (Cheng & Amin
1983, "Estimating parameters in continuous univariate distributions with a shifted origin").

How a sample's law is chosen among these (AIC, a goodness-of-fit test, the empirical fallback) is
:mod:`.choice`; the :class:`~.sample.Sample` is :mod:`.sample`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import scipy.stats

from ..distributions import Empirical
from ..errors import SpecError
from ..syntax import describe
from .sample import Sample

__all__ = ["FAMILIES", "MIN_FINISHED", "Law", "Sample", "empirical_law", "fit_family", "loglik"]

#: The candidate families, with their scipy generator and their shape parameter (None: no shape).
FAMILIES: dict[str, tuple[str, str | None]] = {
    "expon": ("expon", None),
    "shifted_expon": ("expon", None),
    "gamma": ("gamma", "a"),
    "lognorm": ("lognorm", "s"),
    "weibull_min": ("weibull_min", "c"),
}
#: Parameters of each family (for AIC and BIC).
PARAMETERS = {"expon": 1, "shifted_expon": 2, "gamma": 3, "lognorm": 3, "weibull_min": 3}
#: Records at least: fewer finished times than this cannot be fitted.
MIN_FINISHED = 10
#: Significant digits of the fitted parameters (the law is the one written in the system file).
DIGITS = 6
#: Quantiles kept by the empirical law (enough for the resampling to follow the sample's shape).
EMPIRICAL_POINTS = 1000


@dataclass(frozen=True, eq=False)
class Law:
    """A fitted law: its family, the frozen distribution, and the fit statistics (``None`` for the empirical)."""

    family: str
    model: Any
    params: int | None
    loglik: float | None
    aic: float | None
    bic: float | None

    @property
    def text(self) -> str:
        """The ``--compute`` text form (read back by :func:`stalegrad.syntax.parse_model`)."""
        return describe(self.model)

    def mean(self) -> float:
        return float(self.model.mean())

    def quantile(self, q: float) -> float:
        return float(self.model.ppf(q))


def _round(x: float, down: bool = False) -> float:
    """``x`` to :data:`DIGITS` significant digits (not above ``x`` with ``down``: a location stays below the data).

    >>> _round(1.00043000001), _round(2.0004999, down=True), _round(2.0004999)
    (1.00043, 2.00049, 2.0005)
    """
    if x == 0 or not math.isfinite(x):
        return float(x)
    r = float(f"{x:.{DIGITS}g}")
    if down and r > x:
        r = float(f"{r - 10.0 ** (math.floor(math.log10(abs(x))) - DIGITS + 1):.{DIGITS}g}")
    return r


def _make(family: str, shape: float | None, loc: float, scale: float) -> Any:
    gen_name, shape_name = FAMILIES[family]
    kw: dict[str, float] = {}
    if shape_name is not None and shape is not None:
        kw[shape_name] = _round(shape)
    if family != "expon":
        kw["loc"] = _round(max(loc, 0.0), down=True)
    kw["scale"] = _round(scale)
    return getattr(scipy.stats, gen_name)(**kw)


def loglik(model: Any, sample: Sample) -> float:
    """``sum log f(finished) + sum log S(censored)``."""
    return _loglik(model.logpdf, model.logsf, sample)


def _loglik(logpdf: Any, logsf: Any, sample: Sample, *params: float) -> float:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        total = float(np.sum(logpdf(sample.finished, *params)))
        if sample.n_censored:
            total += float(np.sum(logsf(sample.cut, *params)))
    return total if math.isfinite(total) else -math.inf


def _law(family: str, model: Any, sample: Sample) -> Law:
    k = PARAMETERS[family]
    ll = loglik(model, sample)
    return Law(family, model, k, ll, 2 * k - 2 * ll, k * math.log(sample.n) - 2 * ll)


def _loc_cap(sample: Sample) -> float:
    """Largest location allowed: ``x(1) - (x(2) - x(1))`` over distinct finished times, and at least 0."""
    distinct = np.unique(sample.finished)
    return max(0.0, float(2 * distinct[0] - distinct[1]))


def _check_fittable(sample: Sample) -> None:
    finished = sample.finished
    if finished.size < MIN_FINISHED:
        raise SpecError(f"a fit needs at least {MIN_FINISHED} finished times, got {finished.size}")
    if np.unique(finished).size < 2:
        value = float(finished[0])
        raise SpecError(
            f"every finished time is {value!r}: that is a fixed time, not a law to fit "
            f"(use deterministic(value={value!r}))"
        )


def _fit_fixed_loc(gen: Any, data: Any, loc: float, start: tuple[float, ...] | None) -> tuple[float, ...]:
    """scipy's maximum-likelihood shape and scale with the location held at ``loc``.

    An uncensored Weibull is fitted as the Gumbel law of ``log(x - loc)`` (``c = 1/scale``, ``scale = exp(loc)``
    of the Gumbel): maximum likelihood is invariant under the change of variable, and scipy fits the Gumbel law
    by solving its likelihood equations, ten times faster than its general optimiser.
    """
    if gen is scipy.stats.weibull_min and isinstance(data, np.ndarray):
        g_loc, g_scale = scipy.stats.gumbel_l.fit(np.log(data - loc))
        return (1.0 / g_scale, loc, math.exp(g_loc))
    if start is None:
        return tuple(gen.fit(data, floc=loc))
    return tuple(gen.fit(data, start[0], floc=loc, scale=start[-1]))


def fit_family(family: str, sample: Sample, start: Law | None = None) -> Law:
    """The maximum-likelihood law of ``family`` for ``sample`` (see the module docstring).

    ``start``: a law of the same family near the answer, for a sample drawn from it (a bootstrap refit): one run
    of scipy's optimiser from there replaces the search.

    >>> rng = np.random.default_rng(1)
    >>> law = fit_family("shifted_expon", Sample.of(1 + rng.exponential(2.0, size=2000)))
    >>> law.text.startswith("expon(loc=1.0"), round(law.mean(), 1)
    (True, 3.0)
    """
    if family not in FAMILIES:
        raise SpecError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    _check_fittable(sample)
    gen = getattr(scipy.stats, FAMILIES[family][0])
    data = sample.data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if family == "expon":
            _, scale = gen.fit(data, floc=0.0)
            return _law(family, _make(family, None, 0.0, scale), sample)
        if family == "shifted_expon":  # the location's maximum-likelihood value is the least finished time
            loc = float(sample.finished.min())
            _, scale = gen.fit(data, floc=loc)
            return _law(family, _make(family, None, loc, scale), sample)
        return _fit_shifted(family, gen, data, sample, start)


def _fit_shifted(family: str, gen: Any, data: Any, sample: Sample, start: Law | None) -> Law:
    """Profile likelihood over the location (scipy fits shape and scale at each location); with censored records,
    scipy's optimiser from the profile fits of the times taken as finished and of the finished times alone."""
    cap = _loc_cap(sample)
    if start is not None:
        return _refit_near(family, gen, data, sample, start, cap)
    if sample.n_censored:
        as_finished = Sample(sample.times, np.zeros(sample.n, dtype=bool))
        finished_only = Sample(sample.finished, np.zeros(sample.finished.size, dtype=bool))
        starts = [_fit_shifted(family, gen, s.times, s, None) for s in (as_finished, finished_only)]
        return max((_refit_near(family, gen, data, sample, s, cap) for s in starts), key=_by_loglik)
    fits: dict[float, tuple[float, float]] = {}  # location -> (shape, scale)
    values: dict[float, float] = {}  # location -> negative log-likelihood
    warm: list[tuple[float, ...]] = []  # censored fits (scipy's optimiser) start from the previous solution

    def negll(loc: float) -> float:
        loc = float(min(max(loc, 0.0), cap))
        if loc not in values:
            try:
                shape, _, scale = _fit_fixed_loc(gen, data, loc, warm[-1] if warm and sample.n_censored else None)
            except (ValueError, FloatingPointError, RuntimeError):
                values[loc] = math.inf
                return math.inf
            fits[loc] = (shape, scale)
            warm.append((shape, loc, scale))
            values[loc] = -_loglik(gen.logpdf, gen.logsf, sample, shape, loc, scale)
        return values[loc]

    if cap > 0:
        grid = np.linspace(0.0, cap, 9)
        j = int(np.argmin([negll(g) for g in grid]))
        lo, hi = float(grid[max(j - 1, 0)]), float(grid[min(j + 1, grid.size - 1)])
        res = scipy.optimize.minimize_scalar(negll, bounds=(lo, hi), method="bounded", options={"xatol": cap * 1e-4})
        negll(float(res.x))
    else:
        negll(0.0)
    if not fits:
        raise SpecError(f"{family} could not be fitted to this sample")
    best_loc = min(fits, key=values.__getitem__)
    shape, scale = fits[best_loc]
    return _law(family, _make(family, shape, best_loc, scale), sample)


def _by_loglik(law: Law) -> float:
    return law.loglik if law.loglik is not None else -math.inf


def _refit_near(family: str, gen: Any, data: Any, sample: Sample, start: Law, cap: float) -> Law:
    """Maximum likelihood from ``start`` (a law near the answer): scipy's SLSQP over ``(log shape, loc,
    log scale)`` with ``loc`` in ``[0, cap]``. It needs a few dozen evaluations of the likelihood where the
    Nelder–Mead search of ``rv_continuous.fit`` needs hundreds (the bootstrap refits every sample it draws), and
    unlike L-BFGS-B it does not slow down when BLAS runs several threads on a busy machine."""
    kw = start.model.kwds
    shape0, loc0, scale0 = float(kw[FAMILIES[family][1] or ""]), float(kw.get("loc", 0.0)), float(kw["scale"])
    loc0 = min(max(loc0, 0.0), cap)

    def negll(theta: np.ndarray) -> float:
        value = -_loglik(gen.logpdf, gen.logsf, sample, math.exp(theta[0]), theta[1], math.exp(theta[2]))
        return value if math.isfinite(value) else 1e300

    x0 = np.array([math.log(shape0), loc0, math.log(scale0)])
    res = scipy.optimize.minimize(negll, x0, method="SLSQP", bounds=[(-10, 10), (0.0, cap), (-30, 30)])
    best = res.x if res.fun <= negll(x0) else x0
    return _law(family, _make(family, math.exp(best[0]), float(best[1]), math.exp(best[2])), sample)


def empirical_law(sample: Sample, points: int = EMPIRICAL_POINTS) -> Law | None:
    """The empirical law: ``points`` quantiles of the Kaplan–Meier estimate (``None`` if it never reaches 1,
    that is when the largest time is censored: the tail beyond it is unknown)."""
    q, p = sample.ecdf()
    if p.size == 0 or p[-1] < 1 - 1e-12:
        return None
    m = min(points, sample.finished.size)
    probs = (np.arange(m) + 0.5) / m
    idx = np.minimum(np.searchsorted(p, probs, side="left"), q.size - 1)
    values = [_round(float(v)) for v in q[idx]]
    return Law("empirical", Empirical(values), None, None, None, None)
