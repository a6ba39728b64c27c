"""The choice of a sample's law: every family of :mod:`.laws` fitted, the least AIC, its goodness of fit, and the
empirical law when the test rejects it (:func:`fit_sample`).

The law is chosen by AIC ``= 2k - 2l`` (BIC ``= k ln N - 2l`` is reported too; ``k`` parameters, ``N`` records).
Goodness of fit is a parametric bootstrap of the Kolmogorov–Smirnov distance between the Kaplan–Meier estimate
(the empirical CDF when nothing is censored) and the fitted CDF, refitting every bootstrap sample; censored
bootstrap samples are cut off at times drawn from the Kaplan–Meier estimate of the censoring times. When the best
law is rejected at the level, the empirical law (quantiles of the Kaplan–Meier estimate) replaces it, if the
estimate reaches 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SpecError, invalid
from .laws import FAMILIES, Law, _check_fittable, empirical_law, fit_family
from .sample import Sample

__all__ = ["GoodnessOfFit", "SampleFit", "check_gof_samples", "fit_sample", "goodness_of_fit"]


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
