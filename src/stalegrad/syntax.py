"""The text form of compute-time and delay models, as the CLI and system files write them.

``"expon(loc=1, scale=1.5)"``, ``"3*gamma(a=2, scale=1)"`` (a count of workers), ``"shifted_exponential(alpha=1,
rate=2/3)"``, ``"empirical(path=times.csv)"``: :func:`parse_model` reads it, :func:`describe` writes it.
Arguments are literals (numbers, strings, arithmetic on numbers such as ``2/3``); nothing is evaluated.
"""

from __future__ import annotations

import ast
import math
import operator
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .distributions import Scaled, ShiftedExponential, deterministic, empirical, scipy_kind, shifted_exponential
from .errors import SpecError, invalid

__all__ = ["describe", "make_model", "parse_model"]


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


_SHAPE = "a model like 'expon(loc=1, scale=1.5)' or '3*deterministic(value=2)'"


def _constant(node: ast.AST, text: str, parameter: str) -> Any:
    """Evaluate a literal: a number, a string, or arithmetic on numbers (``2/3``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _constant(node.operand, text, parameter)
        if isinstance(value, (int, float)):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        left, right = _constant(node.left, text, parameter), _constant(node.right, text, parameter)
        if isinstance(left, (int, float)) and isinstance(right, (int, float)):
            try:
                return _ARITH[type(node.op)](left, right)
            except (ZeroDivisionError, OverflowError):
                pass
    if isinstance(node, ast.Name):  # bare words as strings: empirical(path=times.csv) is not valid Python
        return node.id
    if isinstance(node, (ast.List, ast.Tuple)):  # a list of numbers: empirical(values=[1.5, 2.0]), as describe writes
        items = [_constant(item, text, parameter) for item in node.elts]
        if all(isinstance(v, (int, float)) for v in items):
            return items
    raise SpecError(f"{parameter} model {text!r}: arguments must be numbers or strings, got {ast.unparse(node)!r}")


def parse_model(text: str, parameter: str = "compute") -> tuple[int, Any]:
    """Parse ``"[COUNT*]NAME(ARG=VALUE, ...)"`` into ``(count, frozen distribution)``; errors name ``parameter``.

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
            raise invalid(f"{parameter} count", head, f"an integer >= 1 before '*' (in {original!r})")
        count = int(head)
    if "(" not in text:  # a bare name: expon
        text = text + "()"
    # path=times.csv is not a Python expression; quote bare paths before parsing
    tree: ast.AST
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError):
        tree = _parse_with_quoted_strings(text, original, parameter)
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name):
        raise invalid(parameter, original, _SHAPE)
    name = tree.func.id
    args = [_constant(a, original, parameter) for a in tree.args]
    kwargs = {k.arg: _constant(k.value, original, parameter) for k in tree.keywords if k.arg is not None}
    return count, make_model(name, args, kwargs, original, parameter)


def _parse_with_quoted_strings(text: str, original: str, parameter: str) -> ast.AST:
    """Retry parsing with every ``key=value`` value that is not a number put in quotes."""
    head, _, rest = text.partition("(")
    if not rest.endswith(")"):
        raise invalid(parameter, original, _SHAPE)
    body = rest[:-1]
    parts = []
    for item in body.split(","):
        key, eq, value = item.partition("=")
        value = value.strip()
        if eq and value and value[0] not in "'\"" and not _is_number_expr(value, parameter):
            value = repr(value)
        parts.append(f"{key.strip()}={value}" if eq else item.strip())
    try:
        return ast.parse(f"{head}({', '.join(parts)})", mode="eval").body
    except (SyntaxError, ValueError):
        raise invalid(parameter, original, _SHAPE) from None


def _is_number_expr(value: str, parameter: str) -> bool:
    try:
        node = ast.parse(value, mode="eval").body
        return isinstance(_constant(node, value, parameter), (int, float))
    except (SyntaxError, ValueError, SpecError):
        return False


#: Arguments of this package's own models that are text, not numbers.
_TEXT_ARGS = {"path", "column"}


def make_model(
    name: str, args: list[Any], kwargs: dict[str, Any], text: str | None = None, parameter: str = "compute"
) -> Any:
    """Build a frozen distribution from a name and its arguments, with a clear error if that is impossible."""
    text = text or name
    for key, value in [*((f"argument {k + 1}", v) for k, v in enumerate(args)), *kwargs.items()]:
        if key in _TEXT_ARGS and name in _OWN:
            continue
        if key == "values" and name == "empirical" and isinstance(value, list):
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value):
                raise SpecError(f"{parameter} model {text!r}: values must be finite numbers")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SpecError(f"{parameter} model {text!r}: {key} must be a finite number, got {value!r}")
    if name == "expon" and not args and set(kwargs) <= {"loc", "scale"} and kwargs.get("loc", 0) >= 0:
        if kwargs.get("scale", 1) <= 0:
            raise SpecError(f"{parameter} model {text!r}: the parameters are outside the law's domain")
        return ShiftedExponential(float(kwargs.get("loc", 0.0)), float(kwargs.get("scale", 1.0)))
    if name in _OWN:
        try:
            model = _OWN[name](*args, **kwargs)
        except TypeError as exc:
            raise SpecError(f"{parameter} model {text!r}: {exc}") from None
        except SpecError as exc:
            raise SpecError(f"{parameter} model {text!r}: {exc}") from None
    else:
        import scipy.stats

        gen = getattr(scipy.stats, name, None)
        if not isinstance(gen, (scipy.stats.rv_continuous, scipy.stats.rv_discrete)):
            raise invalid(
                f"{parameter} model name",
                name,
                "shifted_exponential, deterministic, empirical or a scipy.stats distribution (expon, gamma, ...)",
            )
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = gen(*args, **kwargs)
                mean = float(model.mean())
        except (TypeError, ValueError, OverflowError) as exc:
            raise SpecError(f"{parameter} model {text!r}: {exc}") from None
        if not math.isfinite(mean):
            raise SpecError(
                f"{parameter} model {text!r}: the parameters are outside the law's domain or its mean is not finite"
            )
    return model


def describe(model: Any) -> str:
    """A text form of a model that :func:`parse_model` reads back, for metadata and tables.

    >>> describe(shifted_exponential(alpha=1, rate=0.5))
    'expon(loc=1.0, scale=2.0)'
    """
    if isinstance(model, Scaled):
        return f"scaled({describe(model.base)}, factor={model.factor!r})"
    gen: Any = getattr(model, "dist", None)
    if scipy_kind(model) is not None:
        if gen.name == "expon":  # one spelling for scipy's and ours (ShiftedExponential), so both read back alike
            _, loc, scale = gen._parse_args(*getattr(model, "args", ()), **getattr(model, "kwds", {}))
            return repr(ShiftedExponential(float(loc), float(scale))) if loc >= 0 and scale > 0 else repr(model)
        parts = [repr(a) for a in getattr(model, "args", ())]
        parts += [f"{k}={v!r}" for k, v in getattr(model, "kwds", {}).items()]
        return f"{gen.name}({', '.join(parts)})"
    return repr(model)
