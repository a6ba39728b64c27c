"""Compute time against batch size: the maximum-likelihood :class:`~stalegrad.batch_law.BatchLaw` of records
measured at several batch sizes.

The family's shape is shared by every batch size; its location and scale are affine in ``b``
(``loc_0 + loc_1 b``, ``scale_0 + scale_1 b``, every coefficient >= 0). The joint log-likelihood (censored records
counted by their survival, as in :mod:`.laws`) is maximised by ``scipy.optimize.minimize`` (SLSQP, with the
location at each batch size kept below that size's least times as :mod:`.laws` keeps it, which bounds the
likelihood), from the least-squares lines through the per-size fits of :func:`.laws.fit_family`. Times are in
units of their median and batch sizes in units of the largest, so that the coefficients are of order one.

Standard errors come from the observed information (the Hessian of the log-likelihood, by
``scipy.differentiate.hessian``) over the coefficients not held at a bound; where a location constraint binds
(the shifted exponential: its location is the least time, estimated to O(1/N)), the location is held fixed. The
overhead's and the per-sample mean's errors follow by the delta method.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.differentiate
import scipy.optimize
import scipy.stats

from ..batch_law import BatchLaw
from ..errors import SpecError
from .laws import FAMILIES, Sample, _loc_cap, _loglik, _round, fit_family

__all__ = ["BatchFit", "fit_batch_law"]


@dataclass(frozen=True, eq=False)
class BatchFit:
    """A fitted :class:`BatchLaw`, the standard errors of its mean's overhead and per-sample time, the data."""

    law: BatchLaw
    family: str  # the candidate family (``shifted_expon`` and ``expon`` both give scipy's expon)
    overhead_se: float
    per_sample_se: float
    sizes: tuple[int, ...]
    records: tuple[int, ...]  # per size
    loglik: float
    samples: dict[int, Sample] = field(default_factory=dict, repr=False)  # the data, per size (for the figure)

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law.text,
            "family": self.family,
            "overhead": self.law.overhead,
            "overhead_se": self.overhead_se,
            "per_sample": self.law.per_sample,
            "per_sample_se": self.per_sample_se,
            "sizes": list(self.sizes),
            "records": list(self.records),
            "loglik": self.loglik,
            "method": "maximum likelihood, loc and scale affine in b (SLSQP); SE from the observed information",
        }


def fit_batch_law(samples: dict[int, Sample], family: str) -> BatchFit:
    """Fit ``family`` with location and scale affine in the batch size to ``samples`` (batch size -> times).

    >>> rng = np.random.default_rng(3)
    >>> data = {b: Sample.of(0.5 + 0.01 * b + rng.exponential(0.1 + 0.002 * b, 2000)) for b in (8, 32, 128)}
    >>> fit = fit_batch_law(data, "shifted_expon")
    >>> round(fit.law.overhead, 2), round(fit.law.per_sample, 3)
    (0.6, 0.012)
    """
    if family not in FAMILIES:
        raise SpecError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    sizes = sorted(samples)
    if len(sizes) < 2:
        raise SpecError(f"compute time against batch size needs records at 2 batch sizes or more, got {sizes}")
    gen_name, shape_name = FAMILIES[family]
    gen = getattr(scipy.stats, gen_name)
    unit = float(np.median(np.concatenate([samples[b].times for b in sizes])))
    bunit = float(max(sizes))
    data = [Sample(samples[b].times / unit, samples[b].censored) for b in sizes]
    beta = np.array(sizes, dtype=float) / bunit
    shifted = family != "expon"
    caps = np.array([float(s.finished.min()) if family == "shifted_expon" else _loc_cap(s) for s in data])

    def unpack(theta: np.ndarray) -> tuple[float | None, np.ndarray, np.ndarray]:
        shape = math.exp(theta[0]) if shape_name else None
        k = 1 if shape_name else 0
        locs = theta[k] + theta[k + 1] * beta if shifted else np.zeros(beta.size)
        scales = theta[-2] + theta[-1] * beta
        return shape, locs, scales

    def negll(theta: np.ndarray) -> float:
        shape, locs, scales = unpack(theta)
        if np.any(scales <= 0):
            return 1e300
        shapes = () if shape is None else (shape,)
        total = sum(
            _loglik(gen.logpdf, gen.logsf, s, *shapes, loc, sc) for s, loc, sc in zip(data, locs, scales, strict=True)
        )
        return -total if math.isfinite(total) else 1e300

    per_size = [fit_family(family, s) for s in data]
    x0 = _start(per_size, beta, caps, shape_name, shifted)
    k = 1 if shape_name else 0
    bounds = ([(-10.0, 10.0)] if shape_name else []) + [(0.0, None)] * (4 if shifted else 2)
    cons = [{"type": "ineq", "fun": lambda t: unpack(t)[2] - 1e-9}]
    if shifted:
        cons.append({"type": "ineq", "fun": lambda t: caps - (t[k] + t[k + 1] * beta)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = scipy.optimize.minimize(
            negll, x0, method="SLSQP", bounds=bounds, constraints=cons, options={"maxiter": 500, "ftol": 1e-12}
        )
    theta = res.x if res.fun <= negll(x0) else x0
    shape, _, _ = unpack(theta)
    # back to seconds and batch sizes: loc(b) = unit * (l0 + l1 b / bunit)
    coef = np.array(theta[k:], dtype=float) * unit
    coef[1::2] /= bunit
    lo = (max(coef[0], 0.0), max(coef[1], 0.0)) if shifted else (0.0, 0.0)
    sc = (max(coef[-2], 0.0), max(coef[-1], 0.0))
    shape_kw = {} if shape_name is None or shape is None else {shape_name: _round(shape)}
    law = BatchLaw(
        gen_name, shape_kw, (_round(lo[0], down=True), _round(lo[1], down=True)), (_round(sc[0]), _round(sc[1]))
    )
    se = _standard_errors(negll, theta, bounds, cons, shape_name, shifted, gen, unit, bunit)
    records = tuple(s.n for s in data)
    loglik = -float(negll(theta))
    return BatchFit(law, family, se[0], se[1], tuple(int(b) for b in sizes), records, loglik, dict(samples))


def _start(
    per_size: list[Any], beta: np.ndarray, caps: np.ndarray, shape_name: str | None, shifted: bool
) -> np.ndarray:
    """Least-squares lines through the per-size fits, clipped to the constraints."""
    kws = [law.model.kwds for law in per_size]
    x: list[float] = []
    if shape_name:
        x.append(float(np.mean([math.log(kw[shape_name]) for kw in kws])))
    if shifted:
        l1, l0 = np.polyfit(beta, [kw.get("loc", 0.0) for kw in kws], 1)
        l0, l1 = max(l0, 0.0), max(l1, 0.0)
        worst = float(np.max((l0 + l1 * beta) / caps)) if np.all(caps > 0) else math.inf
        if worst > 0.99:
            l0, l1 = (l0 * 0.99 / worst, l1 * 0.99 / worst) if math.isfinite(worst) else (0.0, 0.0)
        x += [l0, l1]
    s1, s0 = np.polyfit(beta, [kw["scale"] for kw in kws], 1)
    s0, s1 = max(s0, 0.0), max(s1, 0.0)
    if s0 + s1 * beta.min() <= 0:
        s0 = float(np.mean([kw["scale"] for kw in kws]))
    return np.array([*x, s0, s1])


def _standard_errors(
    negll: Any, theta: np.ndarray, bounds: list[Any], cons: list[Any], shape_name: str | None, shifted: bool,
    gen: Any, unit: float, bunit: float,
) -> tuple[float, float]:  # fmt: skip
    """Delta-method standard errors of (overhead, per_sample) from the observed information over the free
    coefficients (not at a bound of 0; the locations held fixed where a location constraint binds)."""
    k = 1 if shape_name else 0
    free = np.ones(theta.size, dtype=bool)
    tol = 1e-9
    for j, (low, _) in enumerate(bounds):
        if low == 0.0 and theta[j] <= tol:
            free[j] = False
    slack = float(np.min(cons[1]["fun"](theta))) if shifted else math.inf
    if slack <= 1e-3:  # times are in units of their median: a location within 0.1% of it of the least time
        free[k : k + 2] = False
    idx = np.flatnonzero(free)

    step = np.maximum(np.abs(theta) * 1e-2, 1e-4)
    if shifted:  # a location step stays inside the constraint (the least time of each batch size)
        step[k : k + 2] = np.minimum(step[k : k + 2], slack / 4)
    step = step[idx]

    def f_free(z: np.ndarray) -> Any:  # theta[idx] + step * z: every coordinate of order one
        def one(v: np.ndarray) -> float:
            t = theta.copy()
            t[idx] = theta[idx] + step * v
            return negll(t)

        return np.apply_along_axis(one, 0, np.asarray(z, dtype=float))

    def mean_coefs(t: np.ndarray) -> np.ndarray:
        ez = float(gen.mean(math.exp(t[0]))) if shape_name else 1.0
        l0, l1 = (t[k], t[k + 1]) if shifted else (0.0, 0.0)
        return np.array([(l0 + t[-2] * ez) * unit, (l1 + t[-1] * ez) * unit / bunit])

    try:
        hess_z = scipy.differentiate.hessian(f_free, np.zeros(idx.size), initial_step=0.5, order=2, maxiter=2).ddf
        cov = np.linalg.inv(hess_z / np.outer(step, step))
        grad = np.empty((2, idx.size))
        for j, i in enumerate(idx):
            h = step[j]
            up, down = theta.copy(), theta.copy()
            up[i] += h
            down[i] -= h
            grad[:, j] = (mean_coefs(up) - mean_coefs(down)) / (2 * h)
        var = np.einsum("ij,jk,ik->i", grad, cov, grad)
    except (np.linalg.LinAlgError, ValueError):
        return (math.nan, math.nan)
    return tuple(float(math.sqrt(v)) if v >= 0 else math.nan for v in var)  # type: ignore[return-value]
