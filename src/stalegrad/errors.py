"""The package's exceptions: one root class, so callers can catch everything stalegrad raises on purpose."""

from __future__ import annotations


class StalegradError(Exception):
    """Root of every error stalegrad raises on purpose."""


class SpecError(StalegradError, ValueError):
    """A user input is invalid. The message names the parameter, the value and what is allowed."""


def invalid(parameter: str, value: object, allowed: str) -> SpecError:
    """Build the one-line message used for every bad input: ``K must be an integer >= 1, got 0``."""
    item = getattr(value, "item", None)  # a numpy scalar reads as the number it is: 0.0, not np.float64(0.0)
    if callable(item) and getattr(value, "shape", None) == ():
        value = item()
    return SpecError(f"{parameter} must be {allowed}, got {value!r}")
