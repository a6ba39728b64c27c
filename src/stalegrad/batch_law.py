"""Compute time against batch size: a law whose location and scale are affine functions of the batch size ``b``.

    X(b) = loc(b) + scale(b) * Z,    loc(b) = loc_0 + loc_1 b,    scale(b) = scale_0 + scale_1 b,

with ``Z`` a standard law of a scipy.stats family (its shape held fixed). The mean is affine in ``b`` too,

    E[X(b)] = overhead + b * per_sample,   overhead = loc_0 + scale_0 E[Z],   per_sample = loc_1 + scale_1 E[Z],

so a fixed cost per round (start-up, the optimizer step) is not multiplied by ``b`` as :func:`stalegrad.scaled`
multiplies the whole draw (the paper's assumption, ``mu_b = b mu_1``, which is the special case
``loc_0 = scale_0 = 0``). The text form is the ``--compute`` syntax with ``b`` in ``loc`` and ``scale``::

    gamma(a=2.9, loc=0.2 + 0.01*b, scale=0.05 + 0.002*b)

``stalegrad fit`` fits it from records at several batch sizes (:mod:`stalegrad.fit.batch`) and ``train --b`` uses it.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any

from .errors import SpecError, invalid
from .syntax import make_model

__all__ = ["BatchLaw", "parse_batch_law", "per_worker"]

_SHAPE = "a law like 'gamma(a=2, loc=0.2 + 0.01*b, scale=0.05 + 0.002*b)'"


@dataclass(frozen=True)
class BatchLaw:
    """A scipy.stats family with fixed shape and a location and scale affine in the batch size ``b``.

    >>> law = BatchLaw("gamma", {"a": 2.0}, (0.2, 0.01), (0.05, 0.002))
    >>> round(float(law.at(10).mean()), 6), round(law.overhead, 6), round(law.per_sample, 6)
    (0.44, 0.3, 0.014)
    >>> parse_batch_law(law.text)[1] == law
    True
    """

    family: str
    shape: dict[str, float]
    loc: tuple[float, float]  # at b = 0, per unit of b
    scale: tuple[float, float]

    def __post_init__(self) -> None:
        for name, (c0, c1) in (("loc", self.loc), ("scale", self.scale)):
            if not all(math.isfinite(c) and c >= 0 for c in (c0, c1)):
                raise invalid(f"{self.text}: {name}", f"{c0!r} + {c1!r}*b", "an overhead and a per-sample part >= 0")
        if not (self.scale[0] > 0 or self.scale[1] > 0):
            raise invalid(f"{self.text}: scale", "0", "> 0 at every b >= 1")
        self.at(1)  # the shape is checked by scipy

    def at(self, b: float) -> Any:
        """The frozen law at batch size ``b`` (> 0)."""
        if not (isinstance(b, (int, float)) and math.isfinite(b) and b > 0):
            raise invalid("b", b, "a batch size > 0")
        kwargs = {**self.shape, "loc": self.loc[0] + self.loc[1] * b, "scale": self.scale[0] + self.scale[1] * b}
        return make_model(self.family, [], kwargs, self.text, "compute-batch")

    def _standard_mean(self) -> float:
        return float(make_model(self.family, [], dict(self.shape), self.text, "compute-batch").mean())

    @property
    def overhead(self) -> float:
        """Mean compute time at ``b = 0``: ``loc_0 + scale_0 E[Z]``."""
        return self.loc[0] + self.scale[0] * self._standard_mean()

    @property
    def per_sample(self) -> float:
        """Mean compute time per unit of ``b``: ``loc_1 + scale_1 E[Z]``."""
        return self.loc[1] + self.scale[1] * self._standard_mean()

    def mean(self, b: float) -> float:
        return self.overhead + b * self.per_sample

    @property
    def text(self) -> str:
        def affine(c: tuple[float, float]) -> str:
            return f"{c[0]!r} + {c[1]!r}*b"

        parts = [f"{k}={v!r}" for k, v in self.shape.items()]
        if self.loc != (0.0, 0.0):
            parts.append(f"loc={affine(self.loc)}")
        parts.append(f"scale={affine(self.scale)}")
        return f"{self.family}({', '.join(parts)})"


def _affine(node: ast.AST, text: str, parameter: str) -> tuple[float, float]:
    """``c0 + c1*b`` from an expression of numbers and ``b`` (sums, products by numbers, division by numbers)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return (float(node.value), 0.0)
    if isinstance(node, ast.Name) and node.id == "b":
        return (0.0, 1.0)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        c0, c1 = _affine(node.operand, text, parameter)
        return (-c0, -c1) if isinstance(node.op, ast.USub) else (c0, c1)
    if isinstance(node, ast.BinOp):
        left, right = _affine(node.left, text, parameter), _affine(node.right, text, parameter)
        if isinstance(node.op, ast.Add):
            return (left[0] + right[0], left[1] + right[1])
        if isinstance(node.op, ast.Sub):
            return (left[0] - right[0], left[1] - right[1])
        if isinstance(node.op, ast.Mult) and (left[1] == 0 or right[1] == 0):
            return (left[0] * right[0], left[0] * right[1] + left[1] * right[0])
        if isinstance(node.op, ast.Div) and right[1] == 0 and right[0] != 0:
            return (left[0] / right[0], left[1] / right[0])
    raise SpecError(f"{parameter} {text!r}: {ast.unparse(node)!r} is not a number or affine in b (like 0.2 + 0.01*b)")


def parse_batch_law(text: str, parameter: str = "--compute-batch") -> tuple[int, BatchLaw]:
    """``"[COUNT*]FAMILY(SHAPE=..., loc=L0 + L1*b, scale=S0 + S1*b)"`` into ``(count, BatchLaw)``."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise invalid(parameter, text, _SHAPE) from None
    count = 1
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and isinstance(node.right, ast.Call):
        if not (isinstance(node.left, ast.Constant) and type(node.left.value) is int and node.left.value >= 1):
            raise invalid(f"{parameter} count", ast.unparse(node.left), "an integer >= 1")
        count, node = node.left.value, node.right
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args):
        raise invalid(parameter, text, _SHAPE + " (keyword arguments only)")
    shape: dict[str, float] = {}
    loc, scale = (0.0, 0.0), None
    for kw in node.keywords:
        c = _affine(kw.value, text, parameter)
        if kw.arg == "loc":
            loc = c
        elif kw.arg == "scale":
            scale = c
        elif c[1] != 0 or kw.arg is None:
            raise SpecError(f"{parameter} {text!r}: only loc and scale may depend on b, not {kw.arg}")
        else:
            shape[kw.arg] = c[0]
    if scale is None:
        raise invalid(parameter, text, _SHAPE + " (with a scale)")
    try:
        return count, BatchLaw(node.func.id, shape, loc, scale)
    except SpecError as exc:
        raise SpecError(f"{parameter} {text!r}: {exc}") from None


def per_worker(laws: list[tuple[int, BatchLaw]], n: int, parameter: str = "--compute-batch") -> list[BatchLaw]:
    """One law per worker: the counts of ``laws`` must add up to ``n``; one law without a count is every worker's.

    >>> law = BatchLaw("expon", {}, (1.0, 0.0), (0.0, 0.5))
    >>> len(per_worker([(1, law)], 4)), len(per_worker([(3, law), (1, law)], 4))
    (4, 4)
    """
    if len(laws) == 1 and laws[0][0] == 1:
        return [laws[0][1]] * n
    total = sum(count for count, _ in laws)
    if total != n:
        raise invalid(f"{parameter} counts", total, f"laws for exactly n = {n} workers (counts adding up to {n})")
    return [law for count, law in laws for _ in range(count)]
