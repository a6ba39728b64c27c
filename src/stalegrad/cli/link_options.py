"""Communication time from model size: ``--model-bytes``, ``--bandwidth`` and ``--latency`` give a fixed delay
per direction, ``latency + model_bytes / bandwidth`` seconds, on every command that takes delays (and on ``fit``,
whose output's delays they set)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import click

from ..errors import invalid

__all__ = ["link_delay", "link_delay_options", "link_options"]


def link_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--model-bytes, --bandwidth, --latency as they are (for ``fit``, whose output's delays they set)."""
    f = click.option(
        "--latency",
        default=None,
        metavar="SECONDS",
        help="Fixed time of every message, seconds; with --model-bytes and --bandwidth the delay per direction is "
        "latency + bytes / bandwidth.",
    )(f)
    f = click.option(
        "--bandwidth",
        default=None,
        metavar="BYTES/S",
        help="Link bandwidth, bytes per second (with --model-bytes).",
    )(f)
    f = click.option(
        "--model-bytes",
        "model_bytes",
        default=None,
        metavar="BYTES",
        help="Size of a gradient and of a model version on the wire, bytes (with --bandwidth): both directions "
        "take latency + bytes / bandwidth.",
    )(f)
    return f


def _number(parameter: str, text: str | None, *, positive: bool) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise invalid(parameter, text, f"a finite number {'> 0' if positive else '>= 0'}")
    return value


def link_delay(model_bytes: str | None, bandwidth: str | None, latency: str | None) -> float | None:
    """The delay per direction ``latency + model_bytes / bandwidth`` (seconds), or ``None`` when none is given.

    >>> link_delay("4e8", "1.25e9", "0.001")
    0.321
    """
    nbytes = _number("--model-bytes", model_bytes, positive=False)
    rate = _number("--bandwidth", bandwidth, positive=True)
    lat = _number("--latency", latency, positive=False)
    if (nbytes is None) != (rate is None):
        given, missing = ("--model-bytes", "--bandwidth") if rate is None else ("--bandwidth", "--model-bytes")
        raise invalid(given, model_bytes if rate is None else bandwidth, f"given with {missing} (both, or neither)")
    if nbytes is None and lat is None:
        return None
    return (lat or 0.0) + (0.0 if nbytes is None or rate is None else nbytes / rate)


def link_delay_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--model-bytes, --bandwidth, --latency turned into --uplink and --downlink (both ``latency + bytes /
    bandwidth``), after --system's values: they override a system file's delays and refuse an explicit --uplink,
    --downlink or --tc."""

    @functools.wraps(f)
    def wrapper(
        *args: Any,
        model_bytes: str | None = None,
        bandwidth: str | None = None,
        latency: str | None = None,
        **options: Any,
    ) -> Any:
        delay = link_delay(model_bytes, bandwidth, latency)
        if delay is not None:
            from click.core import ParameterSource

            ctx = click.get_current_context()
            link = "--model-bytes" if model_bytes is not None else "--latency"
            for name in ("uplink", "downlink", "tc"):
                if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT):
                    raise invalid(
                        f"--{name}", options[name], f"left out when {link} is given (both set the delays; give one)"
                    )
            options["uplink"] = options["downlink"] = repr(delay)
            options["tc"] = "0"
        return f(*args, **options)

    return link_options(wrapper)
