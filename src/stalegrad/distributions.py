"""Compute-time and delay models: scipy.stats frozen distributions, plus the few that scipy lacks.

Any object with ``rvs(size=, random_state=)``, ``mean()``, ``cdf()`` and ``support()`` works as a model
(scipy.stats conventions). This module adds what scipy does not have:

* :func:`shifted_exponential` -- the paper's ``alpha + Exp(lambda)`` (a scipy ``expon`` with ``loc=alpha``);
* :class:`Deterministic` -- a point mass;
* :class:`Empirical` -- resampling of measured times (from an array or a file).

and :func:`scaled`, the compute time of ``factor`` times the work. Models are plain data: the theory about them
(renewal functions, rates, limits) lives in :mod:`stalegrad.theory`, their text form in :mod:`stalegrad.syntax`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.stats

from .errors import SpecError, invalid

__all__ = [
    "ComputeModel",
    "Deterministic",
    "Empirical",
    "Scaled",
    "deterministic",
    "empirical",
    "scaled",
    "shifted_exponential",
    "validate_model",
]


@runtime_checkable
class ComputeModel(Protocol):
    """What the package needs of a compute-time or delay model: the scipy.stats frozen-distribution methods."""

    def rvs(self, size: Any = ..., random_state: Any = ...) -> Any: ...

    def mean(self) -> Any: ...

    def cdf(self, x: Any) -> Any: ...

    def support(self) -> Any: ...


def shifted_exponential(alpha: float, rate: float) -> Any:
    """The paper's compute-time model: ``X = alpha + Exp(rate)``, mean ``alpha + 1/rate``.

    Returned as the scipy frozen distribution ``expon(loc=alpha, scale=1/rate)``.

    >>> float(shifted_exponential(alpha=1, rate=2 / 3).mean())
    2.5
    """
    if not (math.isfinite(alpha) and alpha >= 0):
        raise invalid("alpha", alpha, "a finite number >= 0")
    if not (math.isfinite(rate) and rate > 0):
        raise invalid("rate", rate, "a finite number > 0")
    return scipy.stats.expon(loc=float(alpha), scale=1.0 / float(rate))


class Deterministic:
    """A point mass at ``value`` with the scipy.stats frozen-distribution methods.

    >>> Deterministic(2.0).rvs(size=3, random_state=0)
    array([2., 2., 2.])
    """

    name = "deterministic"

    def __init__(self, value: float) -> None:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise invalid("value", value, "a finite number >= 0")
        self.value = float(value)

    def rvs(self, size: int | tuple[int, ...] = 1, random_state: Any = None) -> np.ndarray:
        return np.full(size, self.value)

    def mean(self) -> float:
        return self.value

    def var(self) -> float:
        return 0.0

    def std(self) -> float:
        return 0.0

    def cdf(self, x: Any) -> Any:
        return np.where(np.asarray(x) >= self.value, 1.0, 0.0)

    def ppf(self, q: Any) -> Any:
        return np.full(np.shape(q), self.value)

    def support(self) -> tuple[float, float]:
        return (self.value, self.value)

    def __repr__(self) -> str:
        return f"deterministic(value={self.value!r})"


class Empirical:
    """Resampling of measured times: each draw is one of ``values`` chosen uniformly, with replacement."""

    name = "empirical"

    def __init__(self, values: Any, path: str | None = None) -> None:
        arr = np.asarray(values, dtype=float).ravel()
        where = f" in {path}" if path else ""
        if arr.size == 0:
            raise SpecError(f"empirical times{where} must hold at least one number, got none")
        if not np.all(np.isfinite(arr)) or arr.min() < 0:
            bad = arr[~np.isfinite(arr) | (arr < 0)][0]
            raise invalid(f"empirical times{where}", float(bad), "finite numbers >= 0")
        if arr.mean() <= 0:
            raise SpecError(f"empirical times{where} must have a mean > 0, got {arr.mean()!r}")
        self.values = np.sort(arr)
        self.path = path

    @classmethod
    def from_file(cls, path: str | Path) -> Empirical:
        """Read one time per line (or the first column of a CSV); lines that are not numbers are skipped."""
        p = Path(path)
        if not p.is_file():
            raise invalid("empirical path", str(path), "an existing file of measured times")
        values = []
        for line in p.read_text().splitlines():
            field = line.split(",")[0].strip()
            if not field or field.startswith("#"):
                continue
            try:
                values.append(float(field))
            except ValueError:
                continue
        return cls(values, path=str(path))

    def rvs(self, size: int | tuple[int, ...] = 1, random_state: Any = None) -> np.ndarray:
        rng = np.random.default_rng(random_state)
        return self.values[rng.integers(0, self.values.size, size=size)]

    def mean(self) -> float:
        return float(self.values.mean())

    def var(self) -> float:
        return float(self.values.var())

    def std(self) -> float:
        return float(self.values.std())

    def cdf(self, x: Any) -> Any:
        return np.searchsorted(self.values, np.asarray(x), side="right") / self.values.size

    def ppf(self, q: Any) -> Any:
        idx = np.clip(np.ceil(np.asarray(q) * self.values.size).astype(int) - 1, 0, self.values.size - 1)
        return self.values[idx]

    def support(self) -> tuple[float, float]:
        return (float(self.values[0]), float(self.values[-1]))

    def __repr__(self) -> str:
        if self.path:
            return f"empirical(path={self.path!r})"
        return f"empirical(values={self.values.tolist()!r})"


def deterministic(value: float) -> Deterministic:
    """A point mass at ``value``."""
    return Deterministic(value)


def empirical(path: str | None = None, values: Any = None) -> Empirical:
    """Measured times, from a file (``path``) or an array (``values``)."""
    if (path is None) == (values is None):
        raise SpecError("empirical needs exactly one of path= or values=")
    if path is not None:
        return Empirical.from_file(path)
    return Empirical(values)


def validate_model(model: Any, parameter: str, *, allow_zero_mean: bool = False) -> Any:
    """Check that ``model`` behaves like a frozen distribution of nonnegative times with a finite mean: it has the
    scipy.stats methods, its mean is finite and ``> 0`` (``>= 0`` with ``allow_zero_mean``, as for a delay), and its
    support is an interval of times ``0 <= low <= high`` (``high`` may be infinite). Its draws are checked where
    they are drawn (:func:`stalegrad.streams.check_draws`).

    >>> validate_model(float("nan"), "uplink")
    Traceback (most recent call last):
    ...
    stalegrad.errors.SpecError: uplink must be a scipy.stats-like distribution (it has no .rvs()), got nan
    """
    for method in ("rvs", "mean", "cdf", "support"):
        if not callable(getattr(model, method, None)):
            raise invalid(parameter, model, f"a scipy.stats-like distribution (it has no .{method}())")
    try:
        mean = float(model.mean())
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise SpecError(f"{parameter} mean must be a number, but .mean() failed: {exc}") from None
    try:
        low, high = (float(x) for x in model.support())
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise SpecError(
            f"{parameter} support must be a pair of numbers (low, high), but .support() failed: {exc}"
        ) from None
    if not math.isfinite(mean) or mean < 0 or (mean == 0 and not allow_zero_mean):
        raise invalid(f"{parameter} mean", mean, "finite and > 0" if not allow_zero_mean else "finite and >= 0")
    if low < 0:
        raise invalid(f"{parameter} support", f"starts at {low}", "times >= 0 (support starting at 0 or later)")
    if not (math.isfinite(low) and low <= high):  # NaN fails every comparison
        raise invalid(f"{parameter} support", (low, high), "an interval (low, high) of times, 0 <= low <= high")
    return model


# ------------------------------------------------------------------------------------ compute time linked to load


class Scaled:
    """``factor * X`` for a model ``X`` that cannot be rescaled in place (the scipy.stats frozen methods)."""

    def __init__(self, base: Any, factor: float) -> None:
        self.base = base
        self.factor = float(factor)

    def rvs(self, size: int | tuple[int, ...] = 1, random_state: Any = None) -> np.ndarray:
        return self.factor * np.asarray(self.base.rvs(size=size, random_state=random_state), dtype=float)

    def mean(self) -> float:
        return self.factor * float(self.base.mean())

    def var(self) -> float:
        return self.factor**2 * float(self.base.var())

    def std(self) -> float:
        return self.factor * float(self.base.std())

    def cdf(self, x: Any) -> Any:
        return self.base.cdf(np.asarray(x, dtype=float) / self.factor)

    def ppf(self, q: Any) -> Any:
        return self.factor * np.asarray(self.base.ppf(q), dtype=float)

    def support(self) -> tuple[float, float]:
        low, high = self.base.support()
        return (self.factor * float(low), self.factor * float(high))

    def __repr__(self) -> str:
        return f"scaled({self.base!r}, factor={self.factor!r})"


def scaled(model: Any, factor: float) -> Any:
    """The compute time of ``factor`` times the work: ``factor * X`` (the paper's Section 4 assumption that compute
    time grows linearly with the minibatch size ``b``, so ``mu_b = b * mu_1``).

    A scipy.stats continuous model is rescaled in place (``loc`` and ``scale`` multiplied), deterministic and
    empirical models are multiplied through; anything else is wrapped in :class:`Scaled` (a frozen-distribution
    view whose renewal function is ``m(t / factor)``), so the theory works on all of them.

    >>> s = scaled(shifted_exponential(alpha=1, rate=1 / 2), 10)
    >>> float(s.support()[0]), float(s.mean())
    (10.0, 30.0)
    >>> float(scaled(deterministic(2), 3).mean())
    6.0
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.integer, np.floating)):
        raise invalid("factor", factor, "a finite number > 0")
    if not (math.isfinite(factor) and factor > 0):
        raise invalid("factor", factor, "a finite number > 0")
    factor = float(factor)
    if factor == 1.0:
        return model
    gen = getattr(model, "dist", None)
    if isinstance(gen, scipy.stats.rv_continuous):
        shapes, loc, scale = gen._parse_args(*getattr(model, "args", ()), **getattr(model, "kwds", {}))
        return gen(*shapes, loc=loc * factor, scale=scale * factor)
    if isinstance(model, Deterministic):
        return Deterministic(model.value * factor)
    if isinstance(model, Empirical):
        return Empirical(model.values * factor)
    if isinstance(model, Scaled):
        return Scaled(model.base, model.factor * factor)
    return Scaled(model, factor)
