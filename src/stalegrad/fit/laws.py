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

The law is chosen by AIC ``= 2k - 2l`` (BIC ``= k ln N - 2l`` is reported too; ``k`` parameters, ``N`` records).
Goodness of fit is a parametric bootstrap of the Kolmogorov–Smirnov distance between the Kaplan–Meier estimate
(the empirical CDF when nothing is censored) and the fitted CDF, refitting every bootstrap sample; censored
bootstrap samples are cut off at times drawn from the Kaplan–Meier estimate of the censoring times. When the best
law is rejected at the level, the empirical law (quantiles of the Kaplan–Meier estimate) replaces it, if the
estimate reaches 1.
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
from ..errors import SpecError, invalid
from ..syntax import describe

__all__ = [
    "FAMILIES",
    "GoodnessOfFit",
    "Law",
    "Sample",
    "SampleFit",
    "empirical_law",
    "fit_family",
    "fit_sample",
    "goodness_of_fit",
]

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


@dataclass(frozen=True)
class GoodnessOfFit:
    """A parametric-bootstrap goodness-of-fit test: the KS distance, its p-value, the bootstrap size."""

    statistic: float
    p_value: float
    samples: int
    records: int  # records the test used (a seeded subsample of large samples)

    def to_dict(self) -> dict[str, Any]:
        return {"test": "bootstrap Kolmogorov-Smirnov (refitted)", **self.__dict__}


@dataclass(frozen=True, eq=False)
class SampleFit:
    """Every candidate's fit (best AIC first), the chosen law and its goodness of fit."""

    sample: Sample
    candidates: tuple[Law, ...]
    law: Law  # the chosen one: the best AIC, or the empirical law when that one was rejected
    gof: GoodnessOfFit | None
    level: float

    @property
    def best(self) -> Law:
        """The parametric law with the least AIC."""
        return self.candidates[0]

    @property
    def fallback(self) -> bool:
        """True when the empirical law replaced a rejected parametric law."""
        return self.law is not self.best

    @property
    def rejected(self) -> bool:
        return self.gof is not None and self.gof.p_value <= self.level


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


def _ks(model: Any, sample: Sample) -> float:
    """Kolmogorov–Smirnov distance between the Kaplan–Meier estimate and the model's CDF, up to the last time."""
    q, p = sample.ecdf()
    F = np.asarray(model.cdf(q), dtype=float)
    left = np.concatenate([[0.0], p[:-1]])
    return float(max(np.max(np.abs(F - p)), np.max(np.abs(F - left))))


def _censoring_draws(sample: Sample) -> tuple[np.ndarray, np.ndarray] | None:
    """Kaplan–Meier estimate of the censoring times (the roles of finished and censored swapped)."""
    if not sample.n_censored:
        return None
    swapped = Sample(sample.times, ~sample.censored)
    return swapped.ecdf()


def goodness_of_fit(
    law: Law, sample: Sample, *, samples: int = 99, rng: Any = None, max_records: int = 2000
) -> GoodnessOfFit:
    """Parametric-bootstrap p-value of the KS distance between the data and the fitted law of ``law.family``.

    Each of ``samples`` bootstrap samples is drawn from the fitted law (cut off at censoring times drawn from the
    Kaplan–Meier estimate of the observed ones), refitted, and its distance computed; the p-value is
    ``(1 + #{D* >= D}) / (1 + samples)``. Samples above ``max_records`` are tested on a seeded subsample (the test
    is then of the family, fitted on the subsample): with many thousands of records, it rejects for misfits
    too small to matter.
    """
    rng = np.random.default_rng(rng)
    used = sample.subsample(max_records, rng)
    fitted = law if used is sample else fit_family(law.family, used)
    observed = _ks(fitted.model, used)
    cens = _censoring_draws(used)
    exceed = 0
    for _ in range(samples):
        x = np.asarray(fitted.model.rvs(size=used.n, random_state=rng), dtype=float)
        cut = np.zeros(used.n, dtype=bool)
        if cens is not None:
            q, p = cens
            j = np.searchsorted(p, rng.random(used.n), side="left")
            c = np.where(j < q.size, q[np.minimum(j, q.size - 1)], np.inf)
            cut = c < x
            x = np.where(cut, c, x)
        boot = Sample(np.maximum(x, np.finfo(float).tiny), cut)
        try:
            refit = fit_family(law.family, boot, start=fitted)
        except SpecError:  # too few finished times in this draw: count it as at least as far
            exceed += 1
            continue
        exceed += _ks(refit.model, boot) >= observed
    return GoodnessOfFit(observed, (1 + exceed) / (1 + samples), samples, used.n)


def check_gof_samples(samples: int, level: float, parameter: str = "gof_samples") -> int:
    """Bootstrap samples: 0 (no test), or enough for the least p-value, ``1 / (samples + 1)``, to reach ``level``."""
    least = math.ceil(1.0 / level - 1.0 - 1e-9)
    if isinstance(samples, bool) or not isinstance(samples, int) or (samples != 0 and samples < least):
        raise invalid(
            parameter, samples, f"0 or an integer >= {least} (fewer bootstrap samples cannot reject at {level})"
        )
    return samples


def fit_sample(
    sample: Sample,
    *,
    families: tuple[str, ...] = tuple(FAMILIES),
    gof_samples: int = 99,
    level: float = 0.01,
    rng: Any = None,
) -> SampleFit:
    """Fit every family, choose by AIC, test the choice (``gof_samples = 0``: no test) and fall back to the
    empirical law if it is rejected at ``level``.

    >>> rng = np.random.default_rng(2)
    >>> fit = fit_sample(Sample.of(0.5 + rng.gamma(3.0, 0.5, size=3000)), gof_samples=0)
    >>> fit.law.family, round(fit.law.mean(), 2)
    ('gamma', 2.0)
    """
    check_gof_samples(gof_samples, level)
    _check_fittable(sample)
    laws = sorted((fit_family(f, sample) for f in families), key=lambda law: law.aic)  # type: ignore[arg-type,return-value]
    best = laws[0]
    gof = goodness_of_fit(best, sample, samples=gof_samples, rng=rng) if gof_samples > 0 else None
    chosen = best
    if gof is not None and gof.p_value <= level:
        chosen = empirical_law(sample) or best
    return SampleFit(sample, tuple(laws), chosen, gof, level)
