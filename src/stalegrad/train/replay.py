"""SGD replayed along a Trace: every gradient evaluated on the exact stale version the trace says, applied in the
update the trace says, at the time the trace says.

For update ``u`` (1-based) the trace's rows ``j`` with ``update == u`` are applied together::

    w_u = w_{u-1} - (1/|u|) * sum_{j in u} eta(base, tau_j, n) * c(g_j(w_{v_j}), w_{u-1}, w_{v_j})

``g_j`` is the problem's minibatch gradient (``b`` samples) at the version ``v_j`` the gradient was computed on,
``tau_j = (u - 1) - v_j`` its staleness, ``eta`` the step-size policy and ``c`` an optional correction
(:mod:`stalegrad.train.policies`). ``aggregate="mean"`` divides by the number of gradients in the update (the
paper's K-batch update averages its ``K`` gradients: with ``b = 1, K = 10`` and ``b = 10, K = 1`` an update
uses 10 samples either way); ``aggregate="sum"`` does not (``w_{u} = w_{u-1} - sum``, the synchronous update
written in the paper's introduction). Dropped rows (``update == -1``) are skipped and counted.

Only the versions a later gradient can still need are kept: a ring of ``max staleness + 1`` vectors, so memory
is bounded by the largest staleness in the trace, not by its length. The trace is read in blocks of rows.

``stop_below`` ends the replay early: at the first recorded update whose error is at or below it, or that has
diverged (the curve then ends there; a search for the time to a target needs no more).

Minibatches come from one ``numpy.random.Generator`` seeded by ``SeedSequence(seed)``: same trace, same seed,
same curve. Two engines give the same algorithm: ``"python"`` calls ``problem.gradient`` (any problem, any
correction); ``"numba"`` runs compiled code for problems that describe themselves as a
:class:`~stalegrad.train.problems.LinearModel` and draws each block's minibatch indices at once
(``rng.integers(0, samples, size=(rows, b))``). numpy's integer stream does not depend on how draws are grouped,
so both engines see the same minibatches and agree to rounding (tested).

A problem with a ``metrics(w)`` method (a dict of numbers with the same keys every time, e.g. the test accuracy
of a :class:`~stalegrad.train.torch_problems.TorchProblem`) has them recorded beside the error, at the same
updates (:attr:`ReplayResult.metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SpecError, invalid
from ..trace import Trace
from .policies import Correction, StepSize, get_policy
from .problems import Problem

__all__ = ["ENGINES", "ReplayResult", "replay"]

ENGINES = ("auto", "numba", "python")

#: A run has diverged when its error is not finite or grows past this factor of its initial error.
DIVERGED = 1e6

#: rows read from the trace at a time (fewer when ``b`` is large: at most about 2**20 minibatch indices)
BLOCK = 1 << 14

PEND, COUNT, LAST, RECORDED = 0, 1, 2, 3


@dataclass(frozen=True, eq=False)
class ReplayResult:
    """An error-versus-time curve: the error at ``w_0`` (update 0, time 0) and after recorded updates."""

    updates: np.ndarray  # recorded update indices, 0 first
    times: np.ndarray  # time of each recorded update (trace.update_times[u - 1]; 0 for w_0)
    errors: np.ndarray  # problem.error(w_u)
    w: np.ndarray  # the final parameter
    gradients: int  # gradients applied
    dropped: int  # rows with update == -1, skipped
    staleness_max: int
    staleness_mean: float
    ring: int  # versions kept in memory (max staleness + 1)
    meta: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # problem.metrics(w_u) at the recorded updates

    def metric_at(self, name: str, times: Any) -> np.ndarray:
        """A metric of the problem (e.g. ``test_accuracy``) of the newest version at each time (as :meth:`error_at`)."""
        k = np.searchsorted(self.times, np.asarray(times, dtype=float), side="right") - 1
        return self.metrics[name][np.clip(k, 0, None)]

    @property
    def final_error(self) -> float:
        return float(self.errors[-1])

    @property
    def diverged_at(self) -> int | None:
        """The first recorded update whose error is not finite or above :data:`DIVERGED` times the initial one
        (``None``: the run did not diverge)."""
        bad = ~np.isfinite(self.errors) | (self.errors > DIVERGED * self.errors[0])
        hit = np.flatnonzero(bad)
        return int(self.updates[hit[0]]) if hit.size else None

    def time_to(self, target: float) -> float | None:
        """The first recorded time at which the error is ``<= target`` (``None`` if it never is)."""
        hit = np.flatnonzero(self.errors <= target)
        return float(self.times[hit[0]]) if hit.size else None

    def error_at(self, times: Any) -> np.ndarray:
        """The error of the newest version at each time (a step function: the last update at or before it)."""
        k = np.searchsorted(self.times, np.asarray(times, dtype=float), side="right") - 1
        return self.errors[np.clip(k, 0, None)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "final_error": self.final_error,
            "initial_error": float(self.errors[0]),
            "updates": int(self.updates[-1]),
            "time": float(self.times[-1]),
            "gradients": self.gradients,
            "dropped": self.dropped,
            "staleness_max": self.staleness_max,
            "staleness_mean": self.staleness_mean,
            "diverged": self.diverged_at is not None,
            "diverged_at_update": self.diverged_at,
            "ring": self.ring,
            **{name: float(values[-1]) for name, values in self.metrics.items()},
            **self.meta,
        }


def _blocks(trace: Trace, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """The applied rows of the trace, block by block: (update, version, staleness, rows dropped in the block)."""
    upd_all, ver_all, tau_all = trace["update"], trace["version"], trace["staleness"]
    U = trace.updates
    for a in range(0, len(trace), size):
        upd = upd_all[a : a + size]
        keep = upd >= 1
        dropped = int(upd.size - keep.sum())
        if dropped and not np.all(upd[~keep] == -1):
            bad = upd[~keep & (upd != -1)][0]
            raise invalid("trace update", int(bad), f"-1 (dropped) or an update from 1 to {U}")
        if dropped:
            upd, ver, tau = upd[keep], ver_all[a : a + size][keep], tau_all[a : a + size][keep]
        else:
            ver, tau = ver_all[a : a + size], tau_all[a : a + size]
        if upd.size and (upd.max() > U or ver.min() < 0 or np.any(tau != upd - 1 - ver)):
            raise SpecError(
                f"trace rows {a}..{a + size - 1} are inconsistent: updates must be <= {U}, versions >= 0 and "
                "staleness = (update - 1) - version"
            )
        yield upd, ver, tau, dropped


def replay(
    trace: Trace,
    problem: Problem,
    *,
    b: int = 1,
    step: float = 0.05,
    policy: str | StepSize = "constant",
    correction: Correction | None = None,
    aggregate: str = "mean",
    seed: int | None = None,
    record: int = 500,
    engine: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    stop_below: float | None = None,
) -> ReplayResult:
    """Replay SGD on ``problem`` along ``trace`` and record the error against time (see the module docstring).

    ``b`` is the minibatch of each gradient, ``step`` the base step and ``policy`` the step-size policy (a
    name in :data:`~stalegrad.train.policies.POLICIES` or a function), ``correction`` e.g.
    :func:`~stalegrad.train.policies.delay_compensation`. About ``record`` points are recorded, evenly spaced
    in updates, plus ``w_0`` and the last update. ``stop_below``: stop after the first recorded update whose error
    is ``<= stop_below`` or has diverged (:attr:`ReplayResult.diverged_at`); ``gradients`` then counts those
    applied until there, ``staleness_*`` stay the whole trace's.

    >>> from stalegrad import System, simulate
    >>> from stalegrad.train import LinearRegression
    >>> import scipy.stats
    >>> trace = simulate(System(n=4, K=2, compute=scipy.stats.expon(scale=1.0)), updates=200, seed=1)
    >>> result = replay(trace, LinearRegression(dim=5, samples=100), b=4, step=0.1, seed=1)
    >>> bool(result.final_error < 0.05 * result.errors[0])
    True
    """
    from ..streams import resolve_seed

    if not isinstance(trace, Trace):
        raise invalid("trace", type(trace).__name__, "a stalegrad Trace")
    for method in ("init", "gradient", "loss", "error"):
        if not callable(getattr(problem, method, None)):
            raise invalid("problem", problem, f"a Problem (it has no .{method}())")
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
        raise invalid("b", b, "an integer >= 1")
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not (math.isfinite(step) and step > 0):
        raise invalid("step", step, "a finite number > 0")
    policy_fn = get_policy(policy)
    if aggregate not in ("mean", "sum"):
        raise invalid("aggregate", aggregate, "'mean' or 'sum'")
    if isinstance(record, bool) or not isinstance(record, (int, np.integer)) or record < 1:
        raise invalid("record", record, "an integer >= 1")
    if engine not in ENGINES:
        raise invalid("engine", engine, f"one of {', '.join(ENGINES)}")
    if stop_below is not None and (
        isinstance(stop_below, bool) or not isinstance(stop_below, (int, float)) or math.isnan(stop_below)
    ):
        raise invalid("stop_below", stop_below, "an error (a number) or None")
    linear = getattr(problem, "linear_model", None)
    if engine == "auto":
        engine = "numba" if callable(linear) and correction is None else "python"
    if engine == "numba" and not callable(linear):
        raise invalid("engine", "numba", "'python' for a problem without .linear_model()")
    if engine == "numba" and correction is not None:
        raise invalid("engine", "numba", "'python' when a correction is given")
    seed = resolve_seed(seed)
    rng = np.random.default_rng(np.random.SeedSequence(seed))

    w0 = np.array(problem.init(), dtype=float)
    if w0.ndim != 1:
        raise invalid("problem.init()", f"an array of shape {w0.shape}", "a 1-d array")
    U = trace.updates
    n = trace.system.n
    block = max(1, min(BLOCK, (1 << 20) // b))
    # first pass: the largest staleness sizes the ring; also checks every row
    max_tau, tau_sum, applied, dropped = 0, 0, 0, 0
    for upd, _, tau, drop in _blocks(trace, block):
        dropped += drop
        if upd.size:
            max_tau = max(max_tau, int(tau.max()))
            tau_sum += int(tau.sum())
            applied += upd.size
    S = max_tau + 1
    ring = np.empty((S, w0.size))
    ring[0] = w0
    acc = np.zeros(w0.size)
    ist = np.zeros(4, dtype=np.int64)  # pending update, gradients in it, last version written, update recorded
    every = max(1, math.ceil(U / record))
    rec_u = [0]
    rec_t = [0.0]
    rec_e = [float(problem.error(w0))]
    measure = getattr(problem, "metrics", None)  # optional: a problem's own measures beside the error
    rec_m: dict[str, list[float]] = {}

    def note(w: np.ndarray) -> None:
        for name, value in (measure(w) if callable(measure) else {}).items():
            rec_m.setdefault(name, []).append(float(value))

    note(w0)

    def keep(u: int) -> bool:
        """Record update ``u``; True when the replay should stop there (``stop_below``)."""
        rec_u.append(u)
        rec_t.append(float(trace.update_times[u - 1]))
        e = float(problem.error(ring[u % S]))
        rec_e.append(e)
        note(ring[u % S])
        return stop_below is not None and (e <= stop_below or not e <= DIVERGED * rec_e[0])

    if engine == "numba":
        from ._kernel import span

        model = linear()  # type: ignore[misc]
        X = np.ascontiguousarray(model.X, dtype=np.float64)
        y = np.ascontiguousarray(model.y, dtype=np.float64)
        g = np.zeros(w0.size)
        kernel: Any = span  # numba's dispatcher: argument types are checked when it compiles

        def draw(rows: int) -> np.ndarray:
            if b >= X.shape[0]:  # full gradients: nothing drawn
                return np.zeros((rows, 0), dtype=np.int64)
            return rng.integers(0, X.shape[0], size=(rows, b))

        def run(upd: np.ndarray, ver: np.ndarray, steps: np.ndarray, idx: Any, pos: int) -> int:
            logistic = model.loss == "logistic"
            args = (ring, acc, g, ist, upd, ver, steps, idx, pos, every, U, aggregate == "mean")
            return int(kernel(X, y, logistic, float(model.l2), *args))

    else:

        def draw(rows: int) -> np.ndarray:
            return np.zeros((0, 0), dtype=np.int64)

        def run(upd: np.ndarray, ver: np.ndarray, steps: np.ndarray, idx: Any, pos: int) -> int:
            return _span_python(problem, b, rng, correction, ring, acc, ist, upd, ver, steps, pos, every, U, aggregate)

    end = U  # the last update replayed
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported by its error, inf or NaN
        stopped = _drive(trace, block, policy, policy_fn, step, n, draw, run, keep, ist, applied, progress)
        if stopped:
            end = rec_u[-1]
            upd_all = trace["update"]
            applied = int(np.count_nonzero((upd_all >= 1) & (upd_all <= end)))
        else:
            last = int(ist[LAST])
            if ist[COUNT] > 0:  # the last update of the trace
                _finalize(ring, acc, int(ist[PEND]), int(ist[COUNT]), aggregate)
                last = int(ist[PEND])
            while last < U:  # updates at the end that applied no gradient
                ring[(last + 1) % S] = ring[last % S]
                last += 1
            if U > 0 and rec_u[-1] != U:
                keep(U)
    meta = {
        "problem": repr(problem),
        "b": int(b),
        "step": float(step),
        "policy": policy if isinstance(policy, str) else getattr(policy, "__name__", repr(policy)),
        "correction": None if correction is None else getattr(correction, "__qualname__", repr(correction)),
        "aggregate": aggregate,
        "seed": seed,
        "engine": engine,
        "system": trace.system.to_dict(),
        "trace_seed": trace.seed,
        "stopped_at_update": end if end < U else None,
    }
    return ReplayResult(
        updates=np.array(rec_u, dtype=np.int64),
        times=np.array(rec_t),
        errors=np.array(rec_e),
        w=ring[end % S].copy() if end else w0,
        gradients=applied,
        dropped=dropped,
        staleness_max=max_tau,
        staleness_mean=tau_sum / applied if applied else 0.0,
        ring=S,
        meta=meta,
        metrics={name: np.array(values) for name, values in rec_m.items()},
    )


def _finalize(ring: np.ndarray, acc: np.ndarray, u: int, count: int, aggregate: str) -> None:
    S = ring.shape[0]
    ring[u % S] = ring[(u - 1) % S] - (acc * (1.0 / count) if aggregate == "mean" else acc)


def _span_python(
    problem: Problem,
    b: int,
    rng: np.random.Generator,
    correction: Correction | None,
    ring: np.ndarray,
    acc: np.ndarray,
    ist: np.ndarray,
    upd: np.ndarray,
    ver: np.ndarray,
    steps: np.ndarray,
    pos: int,
    every: int,
    last_update: int,
    aggregate: str,
) -> int:
    """The replay loop in Python (any problem, any correction); the state and steps of ``_kernel.span``."""
    S = ring.shape[0]
    pend, count, last = int(ist[PEND]), int(ist[COUNT]), int(ist[LAST])
    ist[RECORDED] = -1
    for i in range(pos, upd.size):
        u = int(upd[i])
        if u != pend:
            if count > 0:
                _finalize(ring, acc, pend, count, aggregate)
                last, count = pend, 0
                if pend % every == 0 or pend == last_update:
                    ist[PEND], ist[COUNT], ist[LAST], ist[RECORDED] = pend, 0, last, pend
                    return i
            while last < u - 1:  # updates that applied no gradient leave w unchanged
                ring[(last + 1) % S] = ring[last % S]
                last += 1
            pend = u
            acc[:] = 0.0
        w = ring[int(ver[i]) % S]
        w.flags.writeable = False
        try:
            grad = np.asarray(problem.gradient(w, b, rng), dtype=float)
            if correction is not None:
                grad = correction(grad, ring[(u - 1) % S], w)
        finally:
            w.flags.writeable = True
        if grad.shape != acc.shape:
            raise invalid("problem.gradient()", f"an array of shape {grad.shape}", f"shape {acc.shape}")
        acc += steps[i] * grad
        count += 1
    ist[PEND], ist[COUNT], ist[LAST] = pend, count, last
    return upd.size


def _drive(
    trace: Trace,
    block: int,
    policy: Any,
    policy_fn: StepSize,
    step: float,
    n: int,
    draw: Callable[[int], np.ndarray],
    run: Callable[..., int],
    keep: Callable[[int], bool],
    ist: np.ndarray,
    applied: int,
    progress: Callable[[int, int], None] | None,
) -> bool:
    """Feed the trace block by block to the engine's ``run``, recording where it stops; True when ``keep`` asked
    to stop (the rest of the trace is not replayed)."""
    done = 0
    for upd, ver, tau, _ in _blocks(trace, block):
        if upd.size == 0:
            continue
        if upd[0] < ist[PEND] or np.any(upd[1:] < upd[:-1]):
            raise SpecError("trace rows must be in the order the master took them (updates nondecreasing)")
        steps = np.asarray(policy_fn(float(step), tau, n), dtype=float)
        if steps.shape != upd.shape or not np.all(np.isfinite(steps)) or steps.min() < 0:
            raise invalid("policy", policy, "a function returning one finite step >= 0 per gradient")
        idx = draw(upd.size)
        pos = 0
        while pos < upd.size:
            pos = run(upd, ver, steps, idx, pos)
            if ist[RECORDED] > 0 and keep(int(ist[RECORDED])):
                return True
        done += upd.size
        if progress is not None:
            progress(done, applied)
    return False
