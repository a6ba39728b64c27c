"""Which workers compute, and mindflayer's cutoffs: the text and sequence forms, validated once.

The optimal-time theory of Tyurin & Richtarik (NeurIPS 2023) says that with heterogeneous workers the best methods
use only the fastest ``m*`` of them; a :class:`~stalegrad.spec.System` therefore names its active workers and the
others sit idle (they compute nothing).

>>> resolve_workers("fastest:2", [3.0, 1.0, 2.0, 1.0])
(1, 3)
>>> resolve_workers("0, 2", [1.0, 1.0, 1.0]), resolve_workers("all", [1.0, 1.0])
((0, 2), None)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from .errors import invalid

__all__ = ["resolve_cutoffs", "resolve_workers", "to_full"]


def _allowed(n: int) -> str:
    return f"'all', 'fastest:M' with M from 1 to n = {n}, or distinct worker indices from 0 to {n - 1} ('0,2,5')"


def resolve_workers(value: Any, means: Sequence[float]) -> tuple[int, ...] | None:
    """The active workers as a sorted tuple of indices, or ``None`` when every worker computes.

    ``"fastest:M"`` takes the ``M`` smallest mean compute times, ties broken by the lower index.
    """
    n = len(means)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text == "all":
            return None
        if text.startswith("fastest:"):
            count = text[len("fastest:") :].strip()
            if not count.isdigit() or not 1 <= int(count) <= n:
                raise invalid("workers", value, _allowed(n))
            order = sorted(range(n), key=lambda i: (means[i], i))
            return _normal(tuple(sorted(order[: int(count)])), n)
        parts = [p.strip() for p in text.split(",")]
        if not parts or not all(p.isdigit() for p in parts):
            raise invalid("workers", value, _allowed(n))
        value = [int(p) for p in parts]
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise invalid("workers", value, _allowed(n))
    indices = []
    for i in value:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= int(i) < n:
            raise invalid("workers", list(value), _allowed(n))
        indices.append(int(i))
    if not indices or len(set(indices)) != len(indices):
        raise invalid("workers", list(value), _allowed(n))
    return _normal(tuple(sorted(indices)), n)


def _normal(active: tuple[int, ...], n: int) -> tuple[int, ...] | None:
    return None if len(active) == n else active


def resolve_cutoffs(value: Any, n: int) -> tuple[float, ...]:
    """Mindflayer's cutoff of each worker: one number of seconds for all, or ``n`` of them (``"1,2,3"`` too).

    >>> resolve_cutoffs(2, 3), resolve_cutoffs("1, 2", 2)
    ((2.0, 2.0, 2.0), (1.0, 2.0))
    """
    allowed = f"a finite number of seconds > 0, or n = {n} of them"
    if isinstance(value, str):
        try:
            value = [float(p) for p in value.split(",")]
        except ValueError:
            raise invalid("cutoffs", value, allowed) from None
        if len(value) == 1:
            value = value[0]
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = [value] * n
    if not isinstance(value, Sequence) or len(value) != n:
        raise invalid("cutoffs", value, allowed)
    out = []
    for c in value:
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not (math.isfinite(c) and float(c) > 0):
            raise invalid("cutoffs", list(value), allowed)
        out.append(float(c))
    return tuple(out)


def to_full(system: Any, cols: dict[str, Any]) -> None:
    """Renumber the ``worker`` column of rows made on ``system.active_system()`` as the workers of ``system``."""
    if system.workers is not None:
        import numpy as np

        cols["worker"] = np.asarray(system.workers, dtype=cols["worker"].dtype)[cols["worker"]]
