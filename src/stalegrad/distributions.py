"""Compute-time and delay models: scipy.stats frozen distributions, plus the few that scipy lacks.

Any object with ``rvs(size=, random_state=)``, ``mean()``, ``cdf()`` and ``support()`` works as a model
(scipy.stats conventions). This module adds what scipy does not have:

* :func:`shifted_exponential` -- the paper's ``alpha + Exp(lambda)`` (a scipy ``expon`` with ``loc=alpha``);
* :class:`Deterministic` -- a point mass;
* :class:`Empirical` -- resampling of measured times (from an array or a file).

and :func:`parse_model`, the text form used by the CLI: ``"expon(loc=1, scale=1.5)"``,
``"3*gamma(a=2, scale=1)"``, ``"shifted_exponential(alpha=1, rate=2/3)"``, ``"empirical(path=times.csv)"``.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from .errors import SpecError, invalid

__all__ = [
    "Deterministic",
    "Empirical",
    "describe",
    "deterministic",
    "empirical",
    "parse_model",
    "scaled",
    "shifted_exponential",
    "validate_model",
]


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

    def renewal(self, t: float) -> float:
        """Renewal function ``m(t) = floor(t / value)`` (number of partial sums ``<= t``)."""
        if t < 0:
            return 0.0
        if self.value == 0:
            return math.inf
        return float(math.floor(t / self.value))

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

    def renewal(self, t: float) -> float | None:
        """Exact renewal function ``m(t) = sum_k P(S_k <= t)`` when it is cheap to enumerate, else ``None``.

        ``P(S_k <= t)`` is computed by conditioning on the first ``k - 1`` draws; that costs ``M**(k-1)`` for
        ``M`` distinct values, so it is used only while that stays below about a million.
        """
        if t < 0:
            return 0.0
        vals, counts = np.unique(self.values, return_counts=True)
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


_OWN: dict[str, Callable[..., Any]] = {
    "shifted_exponential": shifted_exponential,
    "deterministic": deterministic,
    "empirical": empirical,
}

_ARITH = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


def _constant(node: ast.AST, text: str) -> Any:
    """Evaluate a literal: a number, a string, or arithmetic on numbers (``2/3``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _constant(node.operand, text)
        if isinstance(value, (int, float)):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        left, right = _constant(node.left, text), _constant(node.right, text)
        if isinstance(left, (int, float)) and isinstance(right, (int, float)):
            try:
                return _ARITH[type(node.op)](left, right)
            except ZeroDivisionError:
                pass
    if isinstance(node, ast.Name):  # bare words as strings: empirical(path=times.csv) is not valid Python
        return node.id
    raise SpecError(f"compute model {text!r}: arguments must be numbers or strings, got {ast.unparse(node)!r}")


def parse_model(text: str) -> tuple[int, Any]:
    """Parse ``"[COUNT*]NAME(ARG=VALUE, ...)"`` into ``(count, frozen distribution)``.

    ``NAME`` is ``shifted_exponential``, ``deterministic``, ``empirical`` or any scipy.stats distribution.

    >>> count, dist = parse_model("3*expon(loc=1, scale=1.5)")
    >>> count, float(dist.mean())
    (3, 2.5)
    """
    original = text
    text = text.strip()
    count = 1
    star = text.find("*")
    paren = text.find("(")
    if star != -1 and (paren == -1 or star < paren):
        head, text = text[:star].strip(), text[star + 1 :].strip()
        if not head.isdigit() or int(head) < 1:
            raise invalid("compute count", head, f"an integer >= 1 before '*' (in {original!r})")
        count = int(head)
    if "(" not in text:  # a bare name: expon
        text = text + "()"
    # path=times.csv is not a Python expression; quote bare paths before parsing
    tree: ast.AST
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        tree = _parse_with_quoted_strings(text, original)
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name):
        raise invalid("compute", original, "a model like 'expon(loc=1, scale=1.5)' or '3*deterministic(value=2)'")
    name = tree.func.id
    args = [_constant(a, original) for a in tree.args]
    kwargs = {k.arg: _constant(k.value, original) for k in tree.keywords if k.arg is not None}
    return count, make_model(name, args, kwargs, original)


def _parse_with_quoted_strings(text: str, original: str) -> ast.AST:
    """Retry parsing with every ``key=value`` value that is not a number put in quotes."""
    head, _, rest = text.partition("(")
    if not rest.endswith(")"):
        raise invalid("compute", original, "a model like 'expon(loc=1, scale=1.5)' or '3*deterministic(value=2)'")
    body = rest[:-1]
    parts = []
    for item in body.split(","):
        key, eq, value = item.partition("=")
        value = value.strip()
        if eq and value and value[0] not in "'\"" and not _is_number_expr(value):
            value = repr(value)
        parts.append(f"{key.strip()}={value}" if eq else item.strip())
    try:
        return ast.parse(f"{head}({', '.join(parts)})", mode="eval").body
    except SyntaxError:
        raise invalid(
            "compute", original, "a model like 'expon(loc=1, scale=1.5)' or '3*deterministic(value=2)'"
        ) from None


def _is_number_expr(value: str) -> bool:
    try:
        node = ast.parse(value, mode="eval").body
        return isinstance(_constant(node, value), (int, float))
    except (SyntaxError, SpecError):
        return False


def make_model(name: str, args: list[Any], kwargs: dict[str, Any], text: str | None = None) -> Any:
    """Build a frozen distribution from a name and its arguments, with a clear error if that is impossible."""
    text = text or name
    if name in _OWN:
        try:
            model = _OWN[name](*args, **kwargs)
        except TypeError as exc:
            raise SpecError(f"compute model {text!r}: {exc}") from None
    else:
        gen = getattr(scipy.stats, name, None)
        if not isinstance(gen, (scipy.stats.rv_continuous, scipy.stats.rv_discrete)):
            raise invalid(
                "compute model name",
                name,
                "shifted_exponential, deterministic, empirical or a scipy.stats distribution (expon, gamma, ...)",
            )
        try:
            model = gen(*args, **kwargs)
            mean = float(model.mean())
        except (TypeError, ValueError) as exc:
            raise SpecError(f"compute model {text!r}: {exc}") from None
        if not math.isfinite(mean):
            raise SpecError(f"compute model {text!r}: parameters are invalid or the mean is not finite (mean={mean})")
    return model


def validate_model(model: Any, parameter: str, *, allow_zero_mean: bool = False) -> Any:
    """Check that ``model`` behaves like a frozen distribution of nonnegative times with a finite mean."""
    for method in ("rvs", "mean", "cdf", "support"):
        if not callable(getattr(model, method, None)):
            raise invalid(parameter, model, f"a scipy.stats-like distribution (it has no .{method}())")
    mean = float(model.mean())
    low = float(model.support()[0])
    if not math.isfinite(mean) or mean < 0 or (mean == 0 and not allow_zero_mean):
        raise invalid(f"{parameter} mean", mean, "finite and > 0" if not allow_zero_mean else "finite and >= 0")
    if low < 0:
        raise invalid(f"{parameter} support", f"starts at {low}", "times >= 0 (support starting at 0 or later)")
    return model


def describe(model: Any) -> str:
    """A text form of a model that :func:`parse_model` reads back, for metadata and tables.

    >>> describe(shifted_exponential(alpha=1, rate=0.5))
    'expon(loc=1.0, scale=2.0)'
    """
    gen = getattr(model, "dist", None)
    if isinstance(gen, (scipy.stats.rv_continuous, scipy.stats.rv_discrete)):
        parts = [repr(a) for a in getattr(model, "args", ())]
        parts += [f"{k}={v!r}" for k, v in getattr(model, "kwds", {}).items()]
        return f"{gen.name}({', '.join(parts)})"
    return repr(model)


# ------------------------------------------------------------------------------------ compute time linked to load


class Scaled:
    """``factor * X`` for a model ``X`` that cannot be rescaled in place (the scipy.stats frozen methods).

    The renewal function is that of ``X`` at ``t / factor``: ``m_{cX}(t) = m_X(t / c)``.
    """

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

    def renewal(self, t: float) -> float:
        """``m(t) = m_base(t / factor)``."""
        from .theory import renewal_function

        return renewal_function(self.base, t / self.factor)

    def __repr__(self) -> str:
        return f"scaled({describe(self.base)}, factor={self.factor!r})"


def scaled(model: Any, factor: float) -> Any:
    """The compute time of ``factor`` times the work: ``factor * X`` (the paper's Section 4 assumption that compute
    time grows linearly with the minibatch size ``b``, so ``mu_b = b * mu_1``).

    A scipy.stats continuous model is rescaled in place (``loc`` and ``scale`` multiplied), deterministic and
    empirical models are multiplied through; anything else is wrapped in :class:`Scaled` (a frozen-distribution
    view whose renewal function is ``m(t / factor)``), so the theory works on all of them.

    >>> describe(scaled(shifted_exponential(alpha=1, rate=1 / 2), 10))
    'expon(loc=10.0, scale=20.0)'
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
