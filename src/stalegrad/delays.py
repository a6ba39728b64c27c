"""A delay of a System: one number of seconds or one distribution for every worker, or one per worker; checked,
grouped into runs of workers, and in text form (the system file's and the command line's).

:class:`~stalegrad.spec.System` keeps ``uplink`` and ``downlink`` as :func:`check_delays` returns them: a float
(seconds), a distribution, or a tuple of ``n`` of those when workers differ.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from .distributions import Deterministic, validate_model
from .errors import invalid
from .syntax import describe

__all__ = ["as_tuple", "check_delay", "check_delays", "delay_text", "describe_delays", "mean_delay",
           "parse_delay_text", "same_delay"]  # fmt: skip


def check_delay(name: str, value: Any) -> float | Any:
    """A delay is a number of seconds (deterministic) or a distribution of nonnegative times."""
    if isinstance(value, (str, bytes)):
        raise invalid(name, value, "a number of seconds or a distribution (not text; parse it with parse_model)")
    if isinstance(value, Deterministic):
        value = value.value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
        if not (math.isfinite(seconds) and seconds >= 0):
            raise invalid(name, value, "a finite number of seconds >= 0 or a distribution")
        return seconds
    return validate_model(value, name, allow_zero_mean=True)


def _is_delay_list(value: Any) -> bool:
    """True for a per-worker sequence of delays (a list, tuple or 1-d array), not one delay."""
    if isinstance(value, (str, bytes)):
        return False
    return isinstance(value, Sequence) or (hasattr(value, "ndim") and hasattr(value, "tolist") and value.ndim == 1)


def same_delay(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and a == b
    return a is b or describe(a) == describe(b)


def check_delays(name: str, value: Any, n: int) -> Any:
    """One delay for every worker, or a tuple of ``n`` (each checked by :func:`check_delay`). A sequence whose entries
    are all the same delay is that one delay (so the system is the same as one given once)."""
    if not _is_delay_list(value):
        return check_delay(name, value)
    values = value.tolist() if hasattr(value, "tolist") else list(value)
    if len(values) != n:
        raise invalid(name, f"{len(values)} delays", f"one delay or exactly n={n} delays (one per worker)")
    checked: dict[int, Any] = {}
    out = []
    for i, v in enumerate(values):
        if isinstance(v, numbers.Real) or id(v) not in checked:
            checked[id(v)] = check_delay(f"{name}[{i}]", v)
        out.append(checked[id(v)])
    first = out[0]
    if all(same_delay(first, d) for d in out[1:]):
        return first
    return tuple(out)


def _delay_groups(delays: tuple[Any, ...]) -> list[tuple[int, Any]]:
    """Runs of consecutive workers with the same delay, as ``(count, delay)`` pairs."""
    out: list[tuple[int, Any]] = []
    for d in delays:
        if out and same_delay(out[-1][1], d):
            out[-1] = (out[-1][0] + 1, out[-1][1])
        else:
            out.append((1, d))
    return out


def delay_text(delay: Any) -> Any:
    """One delay in a system description: seconds as a float, a distribution in the ``--compute`` text form."""
    return delay if isinstance(delay, float) else describe(delay)


def describe_delays(value: Any) -> Any:
    """A system description's delay: one (:func:`delay_text`), or per worker as counted runs in worker order
    (``["3*0.25", "1*expon(loc=0.0, scale=0.5)"]``)."""
    if not isinstance(value, tuple):
        return delay_text(value)
    return [f"{c}*{d!r}" if isinstance(d, float) else f"{c}*{describe(d)}" for c, d in _delay_groups(value)]


def as_tuple(delay: Any) -> tuple[Any, ...]:
    return delay if isinstance(delay, tuple) else (delay,)


def parse_delay_text(name: str, text: str) -> tuple[int, Any]:
    """A delay in text form with an optional count: ``"0.25"``, ``"3*0.25"``, ``"expon(scale=0.5)"`` or
    ``"2*expon(scale=0.5)"``, as ``(count, seconds or model)``.

    >>> parse_delay_text("uplink", "3*0.25")
    (3, 0.25)
    """
    import re

    from .syntax import parse_model

    match = re.fullmatch(r"\s*(?:(\d+)\s*\*)?\s*([^*]+?)\s*", text)
    if match is not None:
        try:
            seconds = float(match.group(2))
        except ValueError:
            pass
        else:
            count = int(match.group(1) or 1)
            if count < 1:
                raise invalid(name, text, "a count >= 1 before '*'")
            return count, check_delay(name, seconds)
    count, model = parse_model(text, name)
    return count, check_delay(name, model)


def mean_delay(delay: Any) -> float:
    return delay if isinstance(delay, float) else float(delay.mean())
