"""A sweep: the product of systems, minibatch sizes, policies and steps, times replications, each point simulated
and (with a problem) replayed to a target error; points run in parallel processes, each written to disk when done,
so an interrupted sweep goes on where it stopped.

Replication ``r`` of every point uses the timeline seed ``derive_seed(root, r, 0)`` and the minibatch seed
``derive_seed(root, r, 1)`` (common random numbers, as ``train`` and ``advise``): two points differ only by their
configuration, and a point's row does not depend on which other points the sweep has or on the order they ran.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..spec import System
from ..streams import derive_seed
from .vocabulary import shared_row

__all__ = ["SweepPoint", "read_done", "run_sweep", "sweep_points", "write_sweep"]


@dataclass(frozen=True)
class SweepPoint:
    """One configuration and replication of a sweep."""

    system: System
    b: int
    policy: str
    step: float
    replication: int

    def key(self, root: int, updates: int, target: float | None) -> str:
        """A name for the point's file: a digest of everything its row depends on."""
        text = json.dumps([self.system.to_dict(), self.b, self.policy, self.step, self.replication, root, updates,
                           target], sort_keys=True, default=str)  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def sweep_points(
    systems: Sequence[System], bs: Sequence[int], policies: Sequence[str], steps: Sequence[float], seeds: int
) -> list[SweepPoint]:
    """Every configuration (systems x b x policies x steps) times ``seeds`` replications, replications innermost."""
    return [
        SweepPoint(system, b, policy, step, r)
        for system, b, policy, step in itertools.product(systems, bs, policies, steps)
        for r in range(seeds)
    ]


_PROBLEM: Any = None


def _set_problem(problem: Any) -> None:  # a worker process's initializer: the problem once per process
    global _PROBLEM
    _PROBLEM = problem


def run_point_row(point: SweepPoint, *, updates: int, root: int, target: float | None, problem: Any = None) -> dict:
    """The row of one point: the shared vocabulary of the simulated system beside its theory, and, with a problem,
    its time to ``target`` and final error."""
    from ..analysis import steady_state
    from ..sim import simulate
    from ..theory import predict
    from ..train import replay

    problem = problem if problem is not None else _PROBLEM
    s = point.system
    cutoffs = None if s.cutoffs is None else [point.b * c for c in s.cutoffs]  # as train: b times the work
    system = s.replace(compute=[_scaled(m, point.b) for m in s.compute], cutoffs=cutoffs)
    trace = simulate(system, updates, seed=derive_seed(root, point.replication, 0))
    est = steady_state(trace)
    row = shared_row(system, seed=root, estimate=est, prediction=predict(system))
    applied = trace["staleness"][trace["update"] > 0]
    row.update(
        replication=point.replication,
        cutoffs=None if s.cutoffs is None else list(s.cutoffs),
        b=point.b,
        policy=point.policy,
        step=point.step,
        updates=trace.updates,
        staleness_p95=float(np.percentile(applied, 95)) if applied.size else None,
        dropped=int(np.sum(trace["update"] < 0)),
    )
    if problem is not None:
        res = replay(trace, problem, b=point.b, step=point.step, policy=point.policy,
                     seed=derive_seed(root, point.replication, 1))  # fmt: skip
        goal = target if target is not None else 0.01 * float(res.errors[0])
        hit = res.time_to(goal)
        row.update(
            target=goal,
            time_to_target=hit,
            final_error=res.final_error if math.isfinite(res.final_error) else None,
            diverged=res.diverged_at is not None,
            **{k: float(v[-1]) for k, v in res.metrics.items()},
        )
    return row


def _scaled(model: Any, b: int) -> Any:
    from ..distributions import scaled

    return model if b == 1 else scaled(model, b)


def _row_task(args: tuple[SweepPoint, int, int, float | None]) -> dict:
    point, updates, root, target = args
    return run_point_row(point, updates=updates, root=root, target=target)


def read_done(folder: Path) -> dict[str, dict]:
    """The rows of the points already done in ``folder/points`` (by key)."""
    done = {}
    for path in sorted((folder / "points").glob("*.json")):
        try:
            done[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a file cut by a crash: the point is run again
    return done


def run_sweep(
    points: Sequence[SweepPoint],
    folder: str | Path,
    *,
    updates: int,
    root: int,
    target: float | None = None,
    problem: Any = None,
    jobs: int = 1,
    address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict], int]:
    """Run every point not yet done in ``folder`` (each row written to ``folder/points/KEY.json`` as it finishes),
    in ``jobs`` local processes, or as Ray tasks on the cluster at ``address`` (``"auto"`` or ``HOST:PORT``: every
    node needs stalegrad installed); returns every point's row in the sweep's order and how many were run now."""
    from ..artefacts import write_json

    folder = Path(folder)
    (folder / "points").mkdir(parents=True, exist_ok=True)  # the CLI checked the folder's parent beforehand
    keys = [p.key(root, updates, target) for p in points]
    done = read_done(folder)
    todo = [(p, k) for p, k in zip(points, keys, strict=True) if k not in done]
    total, count = len(points), len(points) - len(todo)
    if progress:
        progress(count, total)
    rows = (
        _ray_rows(todo, updates, root, target, problem, address)
        if address is not None
        else _rows(todo, updates, root, target, problem, jobs)
    )
    for key, row in rows:
        write_json(folder / "points" / f"{key}.json", row)
        done[key] = row
        count += 1
        if progress:
            progress(count, total)
    return [done[k] for k in keys], len(todo)


def _rows(todo: list[tuple[SweepPoint, str]], updates: int, root: int, target: float | None, problem: Any,
          jobs: int) -> Iterator[tuple[str, dict]]:  # fmt: skip
    if jobs <= 1 or len(todo) <= 1:
        for point, key in todo:
            yield key, run_point_row(point, updates=updates, root=root, target=target, problem=problem)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_set_problem, initargs=(problem,)) as pool:
        futures = {pool.submit(_row_task, (p, updates, root, target)): key for p, key in todo}
        try:
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _ray_row(point: SweepPoint, updates: int, root: int, target: float | None, problem: Any) -> dict:
    return run_point_row(point, updates=updates, root=root, target=target, problem=problem)


def _ray_rows(todo: list[tuple[SweepPoint, str]], updates: int, root: int, target: float | None, problem: Any,
              address: str) -> Iterator[tuple[str, dict]]:  # fmt: skip
    """The rows as Ray tasks (one CPU each) on the cluster at ``address``, as they finish; the driver only joins
    the cluster (it starts nothing there) and leaves it when done or stopped."""
    import logging

    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False, logging_level=logging.WARNING)
    pending: dict[Any, str] = {}
    try:
        ref = ray.put(problem)
        task = ray.remote(num_cpus=1)(_ray_row)
        pending = {task.remote(p, updates, root, target, ref): key for p, key in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for done in ready:
                yield pending.pop(done), ray.get(done)
    finally:
        for left in pending:
            ray.cancel(left)
        ray.shutdown()


def write_sweep(rows: list[dict], folder: str | Path, meta: dict[str, Any]) -> Path:
    """``folder/sweep.parquet``: one row per point (the shared keys as columns), the metadata in the schema."""
    import io

    from ..artefacts import dumps, write_text
    from ..trace_io import pyarrow_modules

    pa, pq = pyarrow_modules()
    flat = [{k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()} for r in rows]
    table = pa.Table.from_pylist(flat).replace_schema_metadata({"stalegrad": dumps(meta)})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return write_text(Path(folder) / "sweep.parquet", buf.getvalue())
