"""Compute-time and delay models: scipy.stats frozen distributions, plus the few that scipy lacks.

Any object with ``rvs(size=, random_state=)``, ``mean()``, ``cdf()`` and ``support()`` works as a model
(scipy.stats conventions). This module adds what scipy does not have:

* :class:`ShiftedExponential` -- the paper's ``alpha + Exp(lambda)``, scipy's ``expon(loc, scale)`` with the same
  draws, but without importing scipy.stats (a second of start-up): :func:`shifted_exponential`, and the text
  ``expon(loc=.., scale=..)``, give it;
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

from .errors import SpecError, invalid

__all__ = [
    "ComputeModel",
    "Deterministic",
    "Empirical",
    "Scaled",
    "ShiftedExponential",
    "deterministic",
    "empirical",
    "scaled",
    "scipy_kind",
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


class ShiftedExponential:
    """``X = loc + Exp(mean scale)``: scipy's ``expon(loc=loc, scale=scale)``, the same draws from the same
    generator (``loc + scale * standard_exponential``), and the frozen-distribution methods in closed form.

    >>> m = ShiftedExponential(1.0, 1.5)
    >>> float(m.mean()), float(m.cdf(1.0)), m.support()
    (2.5, 0.0, (1.0, inf))
    """

    name = "expon"

    def __init__(self, loc: float = 0.0, scale: float = 1.0) -> None:
        if not (isinstance(loc, (int, float)) and math.isfinite(loc) and loc >= 0):
            raise invalid("loc", loc, "a finite number >= 0")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise invalid("scale", scale, "a finite number > 0")
        self.loc, self.scale = float(loc), float(scale)

    def rvs(self, size: int | tuple[int, ...] = 1, random_state: Any = None) -> np.ndarray:
        rng = random_state
        if not isinstance(rng, (np.random.Generator, np.random.RandomState)):
            rng = np.random.RandomState(rng) if rng is not None else np.random.mtrand._rand
        return rng.standard_exponential(size) * self.scale + self.loc

    def mean(self) -> float:
        return self.loc + self.scale

    def var(self) -> float:
        return self.scale**2

    def std(self) -> float:
        return self.scale

    def cdf(self, x: Any) -> Any:
        return -np.expm1(-np.maximum(np.asarray(x, dtype=float) - self.loc, 0.0) / self.scale)

    def sf(self, x: Any) -> Any:
        return np.exp(-np.maximum(np.asarray(x, dtype=float) - self.loc, 0.0) / self.scale)

    def pdf(self, x: Any) -> Any:
        z = np.asarray(x, dtype=float) - self.loc
        return np.where(z >= 0, np.exp(-np.maximum(z, 0.0) / self.scale) / self.scale, 0.0)

    def ppf(self, q: Any) -> Any:
        return self.loc - self.scale * np.log1p(-np.asarray(q, dtype=float))

    def median(self) -> float:
        return self.loc + self.scale * math.log(2.0)

    def support(self) -> tuple[float, float]:
        return (self.loc, math.inf)

    def __repr__(self) -> str:
        return f"expon(loc={self.loc!r}, scale={self.scale!r})"


def shifted_exponential(alpha: float, rate: float) -> ShiftedExponential:
    """The paper's compute-time model: ``X = alpha + Exp(rate)``, mean ``alpha + 1/rate``.

    >>> float(shifted_exponential(alpha=1, rate=2 / 3).mean())
    2.5
    """
    if not (math.isfinite(alpha) and alpha >= 0):
        raise invalid("alpha", alpha, "a finite number >= 0")
    if not (math.isfinite(rate) and rate > 0):
        raise invalid("rate", rate, "a finite number > 0")
    return ShiftedExponential(float(alpha), 1.0 / float(rate))


def scipy_kind(model: Any) -> str | None:
    """``"continuous"`` or ``"discrete"`` for a scipy.stats frozen distribution, else ``None`` (scipy.stats is
    only imported when the model is one of its own, which means it is imported already)."""
    gen = getattr(model, "dist", None)
    if gen is None or not type(gen).__module__.startswith("scipy."):
        return None
    import scipy.stats

    if isinstance(gen, scipy.stats.rv_continuous):
        return "continuous"
    return "discrete" if isinstance(gen, scipy.stats.rv_discrete) else None


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
        self.column: int | str | None = None

    @classmethod
    def from_file(cls, path: str | Path, column: int | str | None = None) -> Empirical:
        """Read measured times: one per line, or one column of a CSV (``column``: its 0-based index or its header
        name; required when the file has several columns). Comment lines (``#``) and a header are skipped."""
        import csv

        p = Path(path)
        if not p.is_file():
            raise invalid("empirical path", str(path), "an existing file of measured times")
        rows = [r for r in csv.reader(p.read_text().splitlines()) if r and not r[0].lstrip().startswith("#")]
        width = max((len(r) for r in rows), default=0)
        index = column
        if column is None:
            if width > 1:
                raise SpecError(
                    f"empirical path {str(path)!r} has {width} columns: say which holds the times with column= "
                    "(a 0-based index or a header name)"
                )
            index = 0
        elif isinstance(column, str) and not column.isdigit():
            header = [h.strip() for h in rows[0]] if rows else []
            if column not in header:
                raise invalid("empirical column", column, f"one of the header names of {path}: {header}")
            index = header.index(column)
        index = int(index)  # type: ignore[arg-type]
        if not 0 <= index < max(width, 1):
            raise invalid("empirical column", column, f"from 0 to {width - 1} for {path}")
        values = []
        for r in rows:
            try:
                values.append(float(r[index]))
            except (ValueError, IndexError):
                continue
        model = cls(values, path=str(path))
        model.column = column
        return model

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
            column = "" if self.column is None else f", column={self.column!r}"
            return f"empirical(path={self.path!r}{column})"
        return f"empirical(values={self.values.tolist()!r})"


def deterministic(value: float) -> Deterministic:
    """A point mass at ``value``."""
    return Deterministic(value)


def empirical(path: str | None = None, values: Any = None, column: int | str | None = None) -> Empirical:
    """Measured times, from a file (``path``, and the ``column`` of a CSV with several) or an array (``values``)."""
    if (path is None) == (values is None):
        raise SpecError("empirical needs exactly one of path= or values=")
    if path is not None:
        return Empirical.from_file(path, column)
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
    if isinstance(model, ShiftedExponential):
        return ShiftedExponential(model.loc * factor, model.scale * factor)
    gen: Any = getattr(model, "dist", None)
    if scipy_kind(model) == "continuous":
        shapes, loc, scale = gen._parse_args(*getattr(model, "args", ()), **getattr(model, "kwds", {}))
        return gen(*shapes, loc=loc * factor, scale=scale * factor)
    if isinstance(model, Deterministic):
        return Deterministic(model.value * factor)
    if isinstance(model, Empirical):
        return Empirical(model.values * factor)
    if isinstance(model, Scaled):
        return Scaled(model.base, model.factor * factor)
    return Scaled(model, factor)
