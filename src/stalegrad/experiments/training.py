"""Training compared fairly: SGD replayed along the timelines of several configurations, with common random numbers.

A configuration is a system (or a saved Trace), a minibatch size ``b`` and a step-size policy. Replication ``r``
of *every* configuration uses the same two seeds, derived from the root seed and ``r`` only: the timeline's (so
the systems' workers draw from the same random streams) and the minibatches' (so the replays draw the same
samples). A configuration's result therefore does not depend on its position in the sweep, and two identical
configurations give identical results.

Each configuration is cut at a common ``horizon`` (by default the earliest last-update time over all
configurations and replications), so the errors compared are errors at the same wall-clock time. Over ``seeds``
replications the time to target and the error at the horizon are reported as medians with a distribution-free
95% confidence interval (order statistics; ``scipy.stats.quantile_test``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import steady_state
from ..batch_law import BatchLaw, per_worker
from ..distributions import scaled
from ..errors import invalid
from ..sim import simulate
from ..spec import System
from ..streams import derive_seed, resolve_seed
from ..theory import predict
from ..trace import Trace
from ..train import ReplayResult, replay
from ..train.curves import Band, band
from .points import Report, report_for
from .vocabulary import shared_row

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainSweep",
    "configurations",
    "estimate_seconds",
    "train_sweep",
    "write_train",
]


@dataclass(frozen=True)
class TrainConfig:
    """One configuration: a system (simulated) or a saved trace (replayed as it is), ``b`` and a policy."""

    label: str
    system: System
    b: int
    policy: str
    trace: Trace | None = None  # a saved trace: replayed as it is, the system only describes it


@dataclass(frozen=True, eq=False)
class TrainResult:
    """A configuration's replays, one per seed, and what they share (the theory of its system)."""

    config: TrainConfig
    runs: list[ReplayResult]
    traces: list[Trace]

    def times_to(self, target: float, horizon: float) -> list[float]:
        """Per seed, the first time the error is ``<= target`` within the horizon (``inf``: not reached)."""
        out = []
        for r in self.runs:
            t = r.time_to(target)
            out.append(math.inf if t is None or t > horizon else t)
        return out

    def errors_at(self, horizon: float) -> list[float]:
        """Per seed, the error of the newest version at the horizon."""
        return [float(r.error_at([horizon])[0]) for r in self.runs]

    @property
    def diverged(self) -> list[int | None]:
        """Per seed, the update where the replay diverged (``None``: it did not)."""
        return [r.diverged_at for r in self.runs]


@dataclass(frozen=True, eq=False)
class TrainSweep:
    """Every configuration's result, and the common horizon, target and seeds they were compared at."""

    results: list[TrainResult]
    target: float
    horizon: float
    seed: int
    step: float

    def rows(self) -> list[dict[str, Any]]:
        """One row per configuration in the shared vocabulary (the staleness of replication 0's trace), plus the
        medians over seeds of the time to target and the error at the horizon, with their 95% intervals."""
        rows = []
        for res in self.results:
            c = res.config
            trace = res.traces[0]
            est = steady_state(trace, warmup=trace.updates // 10, batches=min(32, max(2, trace.updates // 2)))
            times = res.times_to(self.target, self.horizon)
            errors = res.errors_at(self.horizon)
            diverged = [d for d in res.diverged if d is not None]
            row = shared_row(c.system, seed=self.seed, estimate=est, prediction=predict(c.system))
            row.update(
                label=c.label,
                b=c.b,
                policy=c.policy,
                step=self.step,
                seeds=len(res.runs),
                target=self.target,
                horizon=self.horizon,
                time_to_target=_finite(_median(times)),
                time_to_target_ci95=[_finite(x) for x in _median_interval(times)],
                reached=sum(math.isfinite(t) for t in times),
                initial_error=float(res.runs[0].errors[0]),
                final_error=_median(errors),
                final_error_ci95=_median_interval(errors),
                diverged=bool(diverged),
                diverged_at_update=min(diverged) if diverged else None,
                diverged_seeds=len(diverged),
                updates=int(res.runs[0].updates[-1]),
                staleness_p95=est.p95,
                system=c.system.to_dict(),
            )
            # [torch problems] the problem's own metrics (test_accuracy, test_loss) at the horizon, median over seeds
            for name in res.runs[0].metrics:
                values = [float(r.metric_at(name, [self.horizon])[0]) for r in res.runs]
                row[name], row[f"{name}_ci95"] = _median(values), _median_interval(values)
            rows.append(row)
        return rows

    def bands(self) -> list[Band]:
        """Per configuration, the error over seeds on a common grid up to the horizon (geometric mean, 95%)."""
        grid = np.linspace(0.0, self.horizon, 400)
        return [band(res.runs, grid) for res in self.results]


def configurations(
    sources: Sequence[System | tuple[str, Trace]],
    bs: Sequence[int],
    policies: Sequence[str],
    *,
    scale_compute: bool = True,
    suffix: str = "",
    batch_laws: Sequence[tuple[int, BatchLaw]] | None = None,
) -> list[TrainConfig]:
    """The product of sources, minibatch sizes and policies, labelled. With ``scale_compute`` a system's compute
    time grows with ``b`` (``scaled(model, b)``: the paper's assumption that time is linear in the work).

    ``batch_laws``: compute time as a function of ``b`` (``(count, law)`` pairs, counts adding up to each system's
    ``n``; see :mod:`stalegrad.batch_law`): a system's worker ``i`` then takes ``law_i.at(b)``, and
    ``scale_compute`` is not used."""
    protocols = {s.protocol for s in sources if isinstance(s, System)}
    out = []
    for source, b, policy in itertools.product(sources, bs, policies):
        if isinstance(source, System):
            if batch_laws:  # (mindflayer's cutoffs stay as given: seconds)
                system = source.replace(compute=[law.at(b) for law in per_worker(list(batch_laws), source.n)])
            elif scale_compute:  # mindflayer's cutoffs scale with the work too
                cutoffs = None if source.cutoffs is None else [b * c for c in source.cutoffs]
                system = source.replace(compute=[scaled(m, b) for m in source.compute], cutoffs=cutoffs)
            else:
                system = source
            label = f"n={system.n} K={system.K} b={b} tc={system.tc:g} {policy}{suffix}"
            if system.workers is not None:
                label = label.replace(" K=", f" workers={','.join(map(str, system.workers))} K=", 1)
            if system.delay_threshold is not None:
                label = label.replace(" b=", f" R={system.delay_threshold} b=", 1)
            if system.protocol != "k-batch-async" or len(protocols) > 1:
                label = f"{system.protocol} {label}"
            out.append(TrainConfig(label, system, b, policy))
        else:
            name, trace = source
            out.append(TrainConfig(f"{name} b={b} {policy}{suffix}", trace.system, b, policy, trace))
    return out


#: Gradients replayed per second by the compiled kernel of the linear problems (conservative, ``make bench``).
COMPILED_SPEED = 1e6


def estimate_seconds(configs: Sequence[TrainConfig], problem: Any, updates: int, seeds: int) -> float:
    """The work of :func:`train_sweep` in seconds, before it runs: each configuration's simulation
    (:func:`stalegrad.sim.cost.estimate`) and its replayed gradients. A problem with a compiled kernel (the linear
    models) replays at :data:`COMPILED_SPEED`; any other (a PyTorch model, your own) is timed here, on a few
    gradients per minibatch size, since its cost per gradient spans orders of magnitude."""
    from ..sim.cost import estimate

    compiled = callable(getattr(problem, "linear_model", None))
    per_gradient: dict[int, float] = {}
    seconds = 0.0
    for c in configs:
        if c.b not in per_gradient:
            per_gradient[c.b] = 1.0 / COMPILED_SPEED if compiled else gradient_seconds(problem, c.b)
        gradients = (c.trace.updates if c.trace is not None else updates) * c.system.K
        sim = 0.0 if c.trace is not None else estimate(c.system, updates, keep_trace=True).seconds
        seconds += seeds * (sim + gradients * per_gradient[c.b])
    return seconds


def gradient_seconds(problem: Any, b: int, calls: int = 3) -> float:
    """Seconds one ``problem.gradient`` of minibatch ``b`` takes here (the median of ``calls``, after one more)."""
    import time

    rng = np.random.default_rng(0)
    w = problem.init()
    problem.gradient(w, b, rng)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        problem.gradient(w, b, rng)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def train_sweep(
    configs: Sequence[TrainConfig],
    problem: Any,
    *,
    updates: int = 2000,
    step: float = 0.1,
    correction: Callable[..., Any] | None = None,
    aggregate: str = "mean",
    seeds: int = 1,
    seed: int | None = None,
    target: float | None = None,
    horizon: float | None = None,
    progress: Report | None = None,
) -> TrainSweep:
    """Replay every configuration ``seeds`` times with common random numbers (see the module docstring).

    ``target`` defaults to 1% of the initial error; ``horizon`` to the earliest last-update time over all
    configurations and seeds.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise invalid("seeds", seeds, "an integer >= 1")
    if target is not None and not (math.isfinite(target) and target > 0):
        raise invalid("target", target, "a finite error > 0")
    if horizon is not None and not (math.isfinite(horizon) and horizon > 0):
        raise invalid("horizon", horizon, "a finite number of seconds > 0")
    if not configs:
        raise invalid("configs", "none", "at least one configuration")
    root = resolve_seed(seed)
    results = []
    for c in configs:
        runs, traces = [], []
        for r in range(seeds):
            trace = c.trace if c.trace is not None else simulate(c.system, updates, seed=derive_seed(root, r, 0))
            what = c.label if seeds == 1 else f"{c.label} (seed {r + 1}/{seeds})"
            runs.append(
                replay(
                    trace, problem, b=c.b, step=step, policy=c.policy, correction=correction, aggregate=aggregate,
                    seed=derive_seed(root, r, 1), progress=report_for(progress, what),
                )
            )  # fmt: skip
            traces.append(trace)
        results.append(TrainResult(c, runs, traces))
    goal = target if target is not None else 0.01 * float(results[0].runs[0].errors[0])
    end = min(float(run.times[-1]) for res in results for run in res.runs)
    return TrainSweep(results, goal, horizon if horizon is not None else end, root, step)


def write_train(sweep: TrainSweep, out: str | Path, title: str | None = None) -> list[Path]:
    """``train.csv`` (every seed's error against time), ``train.png`` (the bands to the common horizon) with
    ``train.json`` beside it, in the folder ``out``."""
    from ..artefacts import metadata, write_csv, write_figure
    from ..plots import train_figure

    out = Path(out)
    rows = sweep.rows()
    systems = {res.config.label: res.config.system for res in sweep.results}
    meta = metadata(sweep.seed, systems, target_error=sweep.target, horizon=sweep.horizon, rows=rows)
    table = [
        [res.config.label, r, int(u), float(t), float(e)]
        for res in sweep.results
        for r, run in enumerate(res.runs)
        for u, t, e in zip(run.updates, run.times, run.errors, strict=True)
    ]
    csv = write_csv(out / "train.csv", ["label", "replication", "update", "time", "error"], table, meta)
    fig = train_figure(
        [row["label"] for row in rows],
        sweep.bands(),
        [row["staleness_mean"] for row in rows],
        [row["diverged"] for row in rows],
        sweep.target,
        title,
    )
    return [csv, write_figure(fig, out / "train.png", meta)]


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def _median_interval(values: Sequence[float]) -> list[float]:
    """A distribution-free 95% confidence interval for the median (order statistics); with fewer than six values
    no order statistics reach 95%, and the interval is the range of the values."""
    import scipy.stats

    x = np.asarray(values, dtype=float)
    if x.size < 6 or not np.isfinite(x).all():
        return [float(np.min(x)), float(np.max(x))]
    ci = scipy.stats.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(0.95)
    return [float(ci.low), float(ci.high)]


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
