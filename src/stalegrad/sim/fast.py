"""The fast simulator of the K-batch-async protocol (the paper's): exact, vectorised by a numba kernel.

Workers never wait, so each worker's arrival times are a cumulative sum of its compute times plus the uplink
delay, independent of the master. The kernel merges the ``n`` arrival streams in one pass and computes, for every
gradient, the version its round used and the update that applied it. Compute times are drawn in blocks per
worker (:class:`~stalegrad.sim.blocks.ComputeStreams`), so a long run keeps bounded memory.

:func:`simulate` returns a :class:`~stalegrad.trace.Trace`; :func:`simulate_summary` streams a
:class:`~stalegrad.trace.Summary` (for runs of 1e9 gradients and more).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import SpecError, invalid
from ..spec import System
from ..streams import resolve_seed
from ..trace import Summary, Trace

__all__ = ["check_run", "simulate", "simulate_summary"]

Progress = Callable[[int, int], None]


#: The largest ratio between the longest time scale of a system (round trip or mean compute time) and the shortest
#: mean compute time that a simulation resolves (float64 has 16 digits; the sums of a long run need the rest).
MAX_TIME_SPREAD = 1e9


def check_run(system: System, updates: int) -> None:
    """Validate what every engine needs."""
    if not isinstance(system, System):
        raise invalid("system", type(system).__name__, "a stalegrad.System")
    if isinstance(updates, bool) or not isinstance(updates, (int, np.integer)) or updates < 1:
        raise invalid("updates", updates, "an integer >= 1")
    means = system.means
    longest = max(max(system.tcs), max(means))
    if not longest <= MAX_TIME_SPREAD * min(means):
        raise invalid(
            "tc and the mean compute times",
            f"from {min(means):g} to {longest:g}",
            f"within a factor {MAX_TIME_SPREAD:g} of each other (beyond it, float64 times cannot keep the order "
            "of the gradients)",
        )


def fast_path_refusal(system: System) -> str | None:
    """Why the fast simulator cannot run ``system`` (``None`` if it can): it covers the paper's protocol with
    fixed delays and no staleness bound, where workers never wait; the event engine covers the rest."""
    if system.protocol != "k-batch-async":
        return f"protocol must be k-batch-async for the fast simulator, got {system.protocol!r}"
    if not system.deterministic_delays:
        d = system.to_dict()
        return f"uplink and downlink must be fixed times for the fast simulator, got {d['uplink']!r}, {d['downlink']!r}"
    if system.per_worker_delays:
        return "delays must be one for every worker for the fast simulator, got per-worker delays"
    if system.staleness_bound is not None:
        return f"staleness_bound must be None for the fast simulator, got {system.staleness_bound}"
    if system.workers is not None:
        return f"workers must be all for the fast simulator, got {list(system.workers)}"
    return None


ENGINES = ("auto", "numba", "numpy", "compiled", "events")

#: Up to this many gradients, a process that has not loaded numba yet simulates with the numpy twin (identical
#: Trace): loading the compiled kernel costs more (about a second) than the whole run.
SMALL_RUN = 500_000


#: Up to this many gradients, a process that has not loaded numba yet runs an event-engine system on the Python
#: reference engine (identical Trace, about 2e5 gradients/s).
SMALL_EVENTS_RUN = 50_000


def numpy_is_quicker(system: System, updates: int) -> bool:
    """True when the numpy twin finishes a run of the fast path sooner than numba would load."""
    import sys

    return "numba" not in sys.modules and updates * system.K <= SMALL_RUN and system.n <= 1024


def _auto_engine(system: System, updates: int) -> str:
    """The fastest exact engine for this run, counting the second it takes to load numba in a fresh process:
    the fast path where it applies, else the compiled event engine (the numpy twin or the Python reference for
    a short run while numba is not loaded)."""
    import sys

    if fast_path_refusal(system) is None:
        return "numpy" if numpy_is_quicker(system, updates) else "numba"
    if "numba" not in sys.modules and updates * system.K <= SMALL_EVENTS_RUN:
        return "events"
    return _event_engine(system)


def load_kernel() -> float:
    """Load (or compile, the first time on this machine) the fast simulator's kernel; return the seconds it took
    (0 when it was loaded already), so that a run's reported ``seconds`` measure the simulation alone."""
    import time

    t0 = time.perf_counter()
    if "stalegrad.sim._kernel" in __import__("sys").modules and _KERNEL_READY:
        return 0.0
    from ..distributions import Deterministic
    from .fast_run import simulate_summary_numba

    tiny = System(n=2, K=1, compute=Deterministic(1.0), tc=0.5)
    simulate(tiny, 2, seed=0, engine="numba")
    simulate_summary_numba(tiny, 4, seed=0, warmup=1, batches=2)
    globals()["_KERNEL_READY"] = True
    return time.perf_counter() - t0


_KERNEL_READY = False


def prepare(system: System, updates: int) -> float:
    """Load what a run of ``system`` will need before it is timed; return the seconds that took."""
    engine = _auto_engine(system, updates)
    if engine == "compiled":
        from .compiled import warm

        return warm()
    return load_kernel() if engine == "numba" else 0.0


def simulate(
    system: System,
    updates: int,
    *,
    seed: int | None = None,
    engine: str = "auto",
    progress: Progress | None = None,
) -> Trace:
    """Simulate until ``updates`` updates and return every gradient that reached the master as a Trace.

    Engines: ``"numba"`` (the fast simulator), ``"numpy"`` (its plain numpy twin, which gives the identical Trace
    and exists to check it), ``"events"`` (the reference event engine, :mod:`stalegrad.sim.events`: every protocol,
    random delays, a staleness bound), ``"compiled"`` (the same events compiled, :mod:`stalegrad.sim.compiled`: the
    identical Trace, tens of times faster), and ``"auto"``: the fastest that applies (the fast simulator, else the
    compiled event engine).

    >>> from stalegrad.distributions import shifted_exponential
    >>> system = System(n=10, K=5, tc=0, compute=shifted_exponential(alpha=1, rate=2/3))
    >>> trace = simulate(system, updates=2, seed=0)
    >>> trace["staleness"].tolist()  # the paper's example: tau = 0, then tau = 1
    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    """
    check_run(system, updates)
    seed = resolve_seed(seed)
    if engine not in ENGINES:
        raise invalid("engine", engine, f"one of {', '.join(ENGINES)}")
    refusal = fast_path_refusal(system)
    if engine == "auto":
        engine = _auto_engine(system, updates)
    if engine == "events":
        from .events import simulate_events

        return simulate_events(system, updates, seed=seed, progress=progress)
    if engine == "compiled":
        from .compiled import compiled_refusal, simulate_compiled

        why = compiled_refusal(system)
        if why:
            raise SpecError(why)
        return simulate_compiled(system, updates, seed=seed, progress=progress)
    if refusal:
        raise SpecError(refusal)
    if engine == "numpy":
        from .reference import simulate_numpy

        return simulate_numpy(system, updates, seed=seed)
    from .fast_run import simulate_numba

    return simulate_numba(system, updates, seed=seed, progress=progress)


def simulate_summary(
    system: System,
    updates: int,
    *,
    seed: int | None = None,
    warmup: int | None = None,
    batches: int = 32,
    transient: int = 0,
    progress: Progress | None = None,
) -> Summary:
    """Simulate ``updates`` updates keeping only streamed statistics (bounded memory for any run length).

    ``warmup`` updates are left out of the steady-state statistics (default: a tenth of the run); ``batches``
    batch means give the confidence interval; ``transient`` keeps the staleness of the first updates.
    """
    check_run(system, updates)
    seed = resolve_seed(seed)
    warm = updates // 10 if warmup is None else warmup
    if isinstance(warm, bool) or not isinstance(warm, (int, np.integer)) or not 0 <= warm < updates:
        raise invalid("warmup", warmup, f"an integer from 0 to updates-1 = {updates - 1}")
    if isinstance(batches, bool) or not isinstance(batches, (int, np.integer)) or not 2 <= batches <= updates - warm:
        raise invalid("batches", batches, f"an integer from 2 to updates-warmup = {updates - warm}")
    if isinstance(transient, bool) or not isinstance(transient, (int, np.integer)) or transient < 0:
        raise invalid("transient", transient, "an integer >= 0")
    transient = min(int(transient), updates)
    engine = _auto_engine(system, updates)
    if engine == "compiled":  # the compiled event engine streams
        from .compiled import simulate_compiled_summary

        return simulate_compiled_summary(
            system, updates, seed=seed, warmup=warm, batches=batches, transient=transient, progress=progress
        )
    if engine != "numba":  # the reference engine or, for a short run, the numpy twin: the same statistics
        trace = simulate(system, updates, seed=seed, engine=engine, progress=progress)
        return Summary.from_trace(trace, warm, batches, transient)
    from .fast_run import simulate_summary_numba

    return simulate_summary_numba(system, updates, seed=seed, warmup=warm, batches=batches, transient=transient,
                                  progress=progress)  # fmt: skip


def _event_engine(system: System) -> str:
    """The event engine for a system the fast simulator cannot run: the compiled one unless it refuses."""
    from .compiled import compiled_refusal

    return "events" if compiled_refusal(system) else "compiled"
