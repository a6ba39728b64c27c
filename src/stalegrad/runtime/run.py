"""The driver of a real run: start (or join) Ray, create the master and the workers, watch, stop, collect.

:func:`run` returns a :class:`RunResult` whose :class:`~stalegrad.trace.Trace` holds one row per gradient applied,
with its real times in time units (seconds / ``time_unit``; seconds when nothing is injected) measured from the
start of the run: the same analysis and theory comparison as for a simulation (:mod:`stalegrad.experiments.measured`).

Reliability (DESIGN.md, "Runtime reliability"): the master is never restarted and its methods never retried; a
worker that dies is detected (its ``run`` call fails), the master stops broadcasting to it and the run goes on with
the others -- and with ``restart_workers=True`` a new incarnation of the worker is created, registers and continues
from above the last round the master took from it, so no gradient is applied twice. Start-up cleans up after
itself on failure; shutdown asks the workers to stop, waits, then kills.

Checkpoints (``checkpoint_dir``, ``checkpoint_every``): the master notes a snapshot right after every
``checkpoint_every``-th update and after the last; the driver fetches it as it polls and writes it
(:mod:`stalegrad.runtime.checkpoint`: the part, then the manifest). ``resume=DIR`` continues the run of a checkpoint:
same system, problem, step, minibatch, time unit and seed (checked); the version count, the rounds taken and the
clock go on, every worker starts a fresh incarnation of its random streams, and the result's Trace is the
checkpoint's rows followed by the new ones -- updates ``1..updates`` exactly once. Whatever the stopped run did
after its last checkpoint is lost, not duplicated.
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StalegradError, invalid
from ..spec import System
from ..trace import Trace

__all__ = ["RunInterrupted", "RunResult", "RuntimeFailure", "ray_session", "run", "start_local"]

Progress = Callable[[dict[str, Any]], None]


class RuntimeFailure(StalegradError):
    """A real run could not go on (every worker died, the master died, Ray could not start)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; the message says where its final checkpoint is (if it checkpoints)."""


@dataclass(frozen=True, eq=False)
class RunResult:
    """What a real run recorded.

    ``trace`` times are in time units from the start of the run; ``errors`` has one row per recorded version:
    ``(version, time, error)``; ``downlink`` holds every measured downlink delay (time units), ``dropped`` the
    gradients that reached the master and were not applied, by reason; ``latency`` Ray's own call latency measured
    before the run (milliseconds).
    """

    trace: Trace  # the whole run's, a resumed one's included (as are dropped, lost and restarted)
    errors: np.ndarray
    w: np.ndarray
    downlink: np.ndarray
    dropped: dict[str, int]
    latency: dict[str, float]
    time_unit: float | None
    seconds: float
    lost: tuple[tuple[int, int], ...] = ()  # (worker, version at which its death was seen)
    restarted: tuple[tuple[int, int], ...] = ()  # (worker, version at which it was restarted)
    meta: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------- Ray itself


def start_local(num_cpus: int | None = None) -> dict[str, Any]:
    """Start a local Ray instance: dashboard off, every port on loopback only (DESIGN.md).

    Ray binds to the machine's address unless told that it is not a cluster; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    is how it is told (its name notwithstanding, it applies on Linux too). Returns Ray's node address.
    """
    import ray

    # loopback only; and the actors at normal priority (Ray starts workers at niceness 15, so that any other
    # process on the machine delays them: the injected times would then be jittered by unrelated load)
    settings = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_worker_niceness": "0"}
    old = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # read when ray is imported: set it for an imported ray too
    except (ImportError, AttributeError):  # pragma: no cover - a Ray without the switch: its default applies
        pass
    try:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            configure_logging=False,
            logging_level=logging.WARNING,
        )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"address": ray.util.get_node_ip_address(), "started": True}


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[dict[str, Any]]:
    """Use the Ray instance of this process if there is one; else start a local one (``address=None``) or join
    ``address`` (``"auto"`` or ``HOST:PORT``), and shut it down at the end."""
    import ray

    if ray.is_initialized():
        yield {"address": ray.util.get_node_ip_address(), "started": False}
        return
    if address is None:
        info = start_local(num_cpus)
    else:
        try:
            ray.init(address=address, configure_logging=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise RuntimeFailure(f"could not join the Ray cluster at --address {address!r}: {exc}") from None
        info = {"address": address, "started": True}
    try:
        yield info
    finally:
        ray.shutdown()


# ------------------------------------------------------------------------------------------------------ validation


def _check(
    system: System,
    problem: Any,
    updates: int,
    time_unit: float | None,
    lr: float,
    batch: int,
    kill: Mapping[int, int],
    checkpoint_every: int,
) -> None:
    from ..train.problems import Problem

    if not isinstance(system, System):
        raise invalid("system", type(system).__name__, "a stalegrad.System")
    if system.protocol != "k-batch-async":
        raise invalid("protocol", system.protocol, "k-batch-async for a real run")
    if not isinstance(problem, Problem):
        raise invalid("problem", type(problem).__name__, "a stalegrad.train.Problem (init, gradient, loss, error)")
    if isinstance(updates, bool) or not isinstance(updates, numbers.Integral) or updates < 1:
        raise invalid("updates", updates, "an integer >= 1")
    if time_unit is not None and (
        isinstance(time_unit, bool)
        or not isinstance(time_unit, numbers.Real)
        or not (math.isfinite(time_unit) and time_unit > 0)
    ):
        raise invalid("time_unit", time_unit, "a number of seconds > 0, or None (inject nothing)")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0):
        raise invalid("lr", lr, "a finite number > 0")
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
        raise invalid("batch", batch, "an integer >= 1")
    for worker, at in kill.items():
        if not (isinstance(worker, int) and 0 <= worker < system.n and isinstance(at, int) and 0 <= at < updates):
            raise invalid("kill", {worker: at}, f"{{worker in 0..{system.n - 1}: update in 0..{updates - 1}}}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, numbers.Integral) or checkpoint_every < 0:
        raise invalid("checkpoint_every", checkpoint_every, "an integer >= 0 (0: no checkpoint)")


# -------------------------------------------------------------------------------------------------------- the run


def run(
    system: System,
    problem: Any,
    updates: int,
    *,
    time_unit: float | None = None,
    lr: float = 0.05,
    batch: int = 16,
    seed: int | None = None,
    address: str | None = None,
    restart_workers: bool = False,
    error_every: int = 1,
    progress: Progress | None = None,
    poll: float = 0.1,
    stop_timeout: float = 10.0,
    kill: Mapping[int, int] | None = None,
    clock_skew: Mapping[int, float] | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: str | Path | None = None,
) -> RunResult:
    """Train ``problem`` with ``system.n`` worker actors and a master actor on Ray until ``updates`` updates.

    ``system`` gives ``n``, ``K`` and, when ``time_unit`` (seconds) is given, the compute times and delays that are
    injected (in time units). ``lr`` is the step size and ``batch`` the minibatch of each gradient. ``kill`` maps a
    worker to the update at which the driver kills it, ``clock_skew`` a worker to an offset of its clock (seconds;
    as on a machine with a wrong clock, which the worker measures and corrects) -- fault injection, for tests and
    demonstrations.
    ``progress`` receives the master's status about every ``poll`` seconds.

    ``checkpoint_dir`` and ``checkpoint_every``: write a checkpoint there every that many updates and at the end
    (a folder that holds none yet). ``resume``: a checkpoint folder to continue, up to ``updates`` updates in all;
    the seed defaults to the checkpoint's, checkpoints go on into the same folder (every ``checkpoint_every``
    updates, by default the checkpoint's own period), and the returned Trace is the whole run's.
    """
    import ray

    from ..streams import resolve_seed
    from . import master as master_module
    from . import worker as worker_module
    from .checkpoint import has_checkpoint, load_checkpoint, run_args, write_checkpoint, write_counts

    kill = dict(kill or {})
    skews = dict(clock_skew or {})
    for worker, skew in skews.items():
        if not (isinstance(worker, int) and 0 <= worker < system.n and isinstance(skew, numbers.Real)):
            raise invalid("clock_skew", {worker: skew}, f"{{worker in 0..{system.n - 1}: seconds}}")
    ckpt = load_checkpoint(resume) if resume is not None else None  # fails fast, before Ray starts
    if checkpoint_every is None:
        checkpoint_every = int(ckpt.manifest.get("checkpoint_every", 0)) if ckpt is not None else 0
    _check(system, problem, updates, time_unit, lr, batch, kill, checkpoint_every)
    if ckpt is not None:
        seed = ckpt.args["seed"] if seed is None else seed
    seed = resolve_seed(seed)
    args = run_args(system, problem, lr, batch, time_unit, seed)
    if ckpt is not None:
        for name, given, theirs in ckpt.mismatches(args):
            raise invalid(name, given, f"{theirs!r} (the checkpoint's, in '{resume}') to resume it")
        if updates <= ckpt.version:
            raise invalid("updates", updates, f"an integer > {ckpt.version} (the checkpoint's version) to resume it")
        if checkpoint_dir is None:
            checkpoint_dir = ckpt.folder
        elif Path(checkpoint_dir).resolve() != ckpt.folder.resolve():
            raise invalid("checkpoint_dir", str(checkpoint_dir), f"the resumed folder '{resume}' (or None)")
    if checkpoint_every and checkpoint_dir is None:
        raise invalid("checkpoint_every", checkpoint_every, "0 unless checkpoint_dir is given")
    if checkpoint_every and ckpt is None and has_checkpoint(checkpoint_dir):  # type: ignore[arg-type]
        raise invalid(
            "checkpoint_dir", str(checkpoint_dir), "a folder without a checkpoint (resume=... continues that one)"
        )
    n = system.n
    unit = time_unit or 1.0
    base = ckpt.time if ckpt is not None else 0.0  # the clock goes on from the checkpoint's last update
    written: dict[str, Any] | None = ckpt.manifest if ckpt is not None else None
    counts = ckpt.counts if ckpt is not None else {"dropped": {}, "lost": [], "restarted": []}
    state = None
    if ckpt is not None:
        state = {"w": ckpt.w, "version": ckpt.version, "watermarks": ckpt.watermarks, "above": ckpt.above}
    with ray_session(address, None) as info:
        remote_master = ray.remote(**master_module.ACTOR_OPTIONS)(master_module.Master)
        remote_worker = ray.remote(**worker_module.ACTOR_OPTIONS)(worker_module.Worker)
        master: Any = None
        workers: dict[int, Any] = {}
        # a resumed run's workers draw from fresh streams: never a draw of the run it continues
        incarnation = {i: (ckpt.incarnations[i] + 1 if ckpt is not None else 0) for i in range(n)}

        def new_worker(i: int) -> Any:
            return remote_worker.remote(
                i, master, problem, system, seed, batch, time_unit, incarnation[i], float(skews.get(i, 0.0))
            )

        try:
            master = remote_master.remote(
                problem, system, lr, updates, seed, time_unit, error_every, checkpoint_every, state
            )
            workers = {i: new_worker(i) for i in range(n)}
            ray.get([master.__ray_ready__.remote(), *(w.__ray_ready__.remote() for w in workers.values())])
            latency = _latency(master)
            t0 = ray.get(master.ping.remote())[0]  # every time of the run is on the master's clock
            began = time.perf_counter()
            ray.get(master.start.remote(t0))
            runs = {w.run.remote(): i for i, w in workers.items()}
        except BaseException:
            _kill_all(master, workers)
            raise
        lost = [(int(w), int(v)) for w, v in counts["lost"]]  # the whole run's: a resumed one goes on
        restarted = [(int(w), int(v)) for w, v in counts["restarted"]]

        def save(final: bool = False) -> None:
            """Write the master's newest snapshot, if there is one not written yet (``final``: one of the state at
            its last update, the run being stopped)."""
            nonlocal written
            last = int(written["version"]) if written is not None else 0  # none written: the run's first version
            snap = ray.get(master.checkpoint.remote(last, final))
            if snap is None:
                return
            part = _in_units(snap, t0, unit, base)
            try:
                written = write_checkpoint(
                    checkpoint_dir,  # type: ignore[arg-type]
                    written,
                    version=snap["version"],
                    time=float(part["update_times"][-1]),
                    w=snap["w"],
                    columns=part["columns"],
                    update_times=part["update_times"],
                    errors=part["errors"],
                    downlink=part["downlink"],
                    watermarks=snap["watermarks"],
                    above=snap["above"],
                    incarnations=[incarnation[i] for i in range(n)],
                    args=args,
                    checkpoint_every=checkpoint_every,
                    target=updates,
                    counts={"dropped": _add(counts["dropped"], snap["dropped"]), "lost": lost, "restarted": restarted},
                )
            except OSError as exc:
                raise RuntimeFailure(f"could not write the checkpoint in '{checkpoint_dir}': {exc}") from None

        try:
            done = master.wait_done.options(concurrency_group="control").remote()
            status = ray.get(master.status.remote())
            while True:
                ready, _ = ray.wait([done, *runs], num_returns=1, timeout=poll)
                if done in ready:
                    break
                for ref in ready:  # a worker's run ended before the run did: it died
                    i = runs.pop(ref)
                    lost.append((i, status["version"]))
                    ray.get(master.detach.remote(i))
                    if restart_workers:
                        incarnation[i] += 1
                        workers[i] = new_worker(i)
                        runs[workers[i].run.remote()] = i
                        restarted.append((i, status["version"]))
                if not runs:
                    at = status["version"]
                    raise RuntimeFailure(f"every worker died (lost: {lost}); the run stopped at update {at}")
                status = ray.get(master.status.remote())
                for i, at in list(kill.items()):
                    if status["version"] >= at:
                        ray.kill(workers[i], no_restart=True)
                        del kill[i]
                if checkpoint_every:
                    save()
                if progress is not None:
                    progress(status)
            seconds = time.perf_counter() - began
            if checkpoint_every:
                save()  # the last update's
            if progress is not None:
                progress(ray.get(master.status.remote()))
            _stop_workers(workers, runs, stop_timeout)
            out = ray.get(master.result.remote())
            dropped = _add(counts["dropped"], out["dropped"])
            if checkpoint_every and written is not None:  # the drops after the last update count too
                final = {"dropped": dropped, "lost": lost, "restarted": restarted}
                try:
                    written = write_counts(checkpoint_dir, written, final)  # type: ignore[arg-type]
                except OSError as exc:
                    raise RuntimeFailure(f"could not write the checkpoint in '{checkpoint_dir}': {exc}") from None
        except ray.exceptions.RayActorError as exc:
            raise RuntimeFailure(f"the master died: {exc}") from None
        except BaseException as exc:  # Ctrl-C, every worker dead, a progress callback's error: checkpoint, re-raise
            if not checkpoint_every:
                raise
            where = f"no checkpoint written in '{checkpoint_dir}'"
            try:
                save(final=True)
                if written is not None:
                    where = (
                        f"checkpoint at update {written['version']} in '{checkpoint_dir}' (continue with: "
                        f"stalegrad run --resume {checkpoint_dir})"
                    )
            except Exception as failed:  # the master is gone too, or the disk failed: say so, raise the first error
                where = f"the final checkpoint could not be written ({failed}); {where}"
            if isinstance(exc, KeyboardInterrupt):
                raise RunInterrupted(f"interrupted; {where}") from None
            if isinstance(exc, RuntimeFailure):
                raise RuntimeFailure(f"{exc}; {where}") from None
            exc.add_note(where)
            raise
        finally:
            _kill_all(master, workers)
    new = _in_units(out, t0, unit, base)
    cols, update_times, errors, downlink = new["columns"], new["update_times"], new["errors"], new["downlink"]
    if ckpt is not None:  # the whole run: the checkpoint's rows, then this session's
        cols = {k: np.concatenate([ckpt.columns[k], cols[k]]) for k in cols}
        update_times = np.concatenate([ckpt.update_times, update_times])
        errors = np.concatenate([ckpt.errors, errors])
        downlink = np.concatenate([ckpt.downlink, downlink])
    meta = {
        "engine": "ray",
        "time_unit": time_unit,
        "lr": lr,
        "batch": batch,
        "problem": repr(problem),
        "ray": ray.__version__,
        "address": info["address"],
        "configured": system.to_dict() if time_unit is not None else None,
        "resumed_from": ckpt.version if ckpt is not None else None,
        "checkpoint": str(checkpoint_dir) if checkpoint_every else None,
        "clocks": {str(i): c for i, c in out["clocks"].items()},  # per worker: offset to the master's, rtt (s), node
        "master_node": out["node"],
    }
    trace_system = system
    if time_unit is None:
        from .measured import measured_system

        trace_system = measured_system(cols, downlink, system.K, n)
    trace = Trace(cols, update_times, trace_system, seed, meta)
    return RunResult(
        trace=trace,
        errors=errors,
        w=out["w"],
        downlink=downlink,
        dropped=dropped,
        latency=latency,
        time_unit=time_unit,
        seconds=seconds,
        lost=tuple(lost),
        restarted=tuple(restarted),
        meta=meta,
    )


def _add(base: Mapping[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """Counts by reason, summed (a resumed run's and the checkpoint's)."""
    return {k: int(base.get(k, 0)) + int(more.get(k, 0)) for k in {**base, **more}}


def _in_units(out: Mapping[str, Any], t0: float, unit: float, base: float) -> dict[str, Any]:
    """Real seconds of the master to time units on the run's clock (``base`` at ``t0``)."""
    cols = dict(out["columns"])
    for k in ("start", "sent", "arrive"):
        cols[k] = (cols[k] - t0) / unit + base
    errors = np.array(out["errors"], dtype=np.float64).reshape(-1, 3)
    errors[:, 1] = (errors[:, 1] - t0) / unit + base
    return {
        "columns": cols,
        "update_times": (np.asarray(out["update_times"]) - t0) / unit + base,
        "errors": errors,
        "downlink": np.asarray(out["downlink"]) / unit,
    }


def _latency(master: Any, calls: int = 50) -> dict[str, float]:
    """Ray's own latency before the run: a no-op actor call, and a put then get of a small array (ms)."""
    import ray

    ray.get(master.ping.remote())
    call = []
    for _ in range(calls):
        t = time.perf_counter()
        ray.get(master.ping.remote())
        call.append((time.perf_counter() - t) * 1e3)
    put = []
    w = np.zeros(1024)
    for _ in range(calls):
        t = time.perf_counter()
        ray.get(ray.put(w))
        put.append((time.perf_counter() - t) * 1e3)
    return {
        "call_ms_median": statistics.median(call),
        "call_ms_p90": float(np.percentile(call, 90)),
        "put_get_ms_median": statistics.median(put),
    }


def _stop_workers(workers: dict[int, Any], runs: dict[Any, int], timeout: float) -> None:
    """Ask every running worker to stop and wait up to ``timeout`` seconds for their runs to end (the caller then
    kills every actor, stopped or not)."""
    import ray

    for i in runs.values():
        workers[i].stop.remote()
    ray.wait(list(runs), num_returns=len(runs), timeout=timeout)


def _kill_all(master: Any, workers: dict[int, Any]) -> None:
    import ray

    for handle in [*workers.values(), master]:
        if handle is None:
            continue
        with contextlib.suppress(Exception):  # already dead, or Ray is going down
            ray.kill(handle, no_restart=True)
