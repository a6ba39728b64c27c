"""What a simulation will cost before it runs: gradients, seconds on this kind of machine, and memory.

The command line refuses a run whose estimate exceeds :data:`LIMIT_SECONDS` (or whose Trace would not fit in
:data:`LIMIT_BYTES`) unless the user confirms it (``--yes``), with the estimate in the message: a typo such as
``--updates 1e14`` then costs a second, not an afternoon. The speeds are conservative figures from ``make bench``
on a 2-core machine (the fast path streams 4-8e7 gradients/s, the compiled event engine 0.8-1.8e7, and
2e6 or more for ringmaster and mindflayer, whose stops and abandons are events more; the Python reference engine
about 2e5).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec import System
from .fast import fast_path_refusal

__all__ = ["LIMIT_BYTES", "LIMIT_SECONDS", "Work", "estimate"]

#: Gradients per second assumed for the estimate, per engine (conservative).
SPEED = {"fast": 2e7, "fast-trace": 1e7, "compiled": 4e6, "compiled-trace": 2e6, "compiled-stops": 5e5, "events": 1.5e5}
#: Bytes a Trace row takes in memory.
ROW_BYTES = 61
#: A run estimated above these asks for confirmation.
LIMIT_SECONDS = 600.0
LIMIT_BYTES = 8 * 2**30


@dataclass(frozen=True)
class Work:
    """The estimate: gradients simulated, seconds, bytes of Trace kept, and the engine it assumes."""

    gradients: float
    seconds: float
    bytes: float
    engine: str

    def too_large(self) -> str | None:
        """Why the run exceeds the limits, with the estimate (``None`` if it does not)."""
        if self.seconds > LIMIT_SECONDS:
            return (
                f"about {self.gradients:.3g} gradients, an estimated {_duration(self.seconds)} ({self.engine} engine)"
            )
        if self.bytes > LIMIT_BYTES:
            return f"a Trace of about {self.bytes / 2**30:.3g} GiB ({self.gradients:.3g} rows) to keep in memory"
        return None


def estimate(system: System, updates: float, *, keep_trace: bool = False) -> Work:
    """The cost of simulating ``updates`` updates of ``system`` (``keep_trace``: every row kept).

    >>> from stalegrad.distributions import deterministic
    >>> estimate(System(n=4, K=2, compute=deterministic(1)), 10**14).too_large() is not None
    True
    """
    gradients = float(updates) * system.K
    if fast_path_refusal(system) is None:
        engine = "fast"
    else:
        from .compiled import compiled_refusal

        engine = "events" if compiled_refusal(system) else "compiled"
        if engine == "compiled" and system.protocol in ("ringmaster", "mindflayer"):
            engine = "compiled-stops"  # their stops and abandons are events more
    engine = f"{engine}-trace" if keep_trace and engine not in ("events", "compiled-stops") else engine
    return Work(gradients, gradients / SPEED[engine], gradients * ROW_BYTES if keep_trace else 0.0, engine)


def describe_seconds(seconds: float) -> str:
    """``seconds`` in the largest unit that fits: ``'2.5 hours'``."""
    return _duration(seconds)


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"
