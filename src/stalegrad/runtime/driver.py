"""The driver of a real run: creates the master and the workers, watches them, checkpoints, stops, collects.

A :class:`Driver` carries out a :class:`~stalegrad.runtime.plan.RunPlan` in the Ray instance of the process
(:func:`~stalegrad.runtime.session.ray_session`)::

    driver = Driver(plan)
    driver.start()                  # the actors, Ray's latency, the clock's origin; cleans up after itself
    try:
        while not driver.poll():    # about every plan.poll seconds: deaths, restarts, faults, checkpoints
            pass
        result = driver.stop()      # stop the workers, collect a RunResult
    finally:
        driver.close()              # kill every actor, stopped or not

Reliability (DESIGN.md, "Runtime reliability"): the master is never restarted and its methods never retried; a
worker that dies is detected (its ``run`` call ends), the master stops broadcasting to it and the run goes on with
the others -- and with ``restart_workers`` a new incarnation of the worker is created, registers and continues from
above the last round the master took from it, so no gradient is applied twice.

Checkpoints (``checkpoint_every = N > 0``): the master notes a snapshot right after every ``N``-th update (and the
last); the driver fetches the newest one each time it polls and writes it (:mod:`stalegrad.runtime.checkpoint`: the
part, then the manifest) -- so at most one checkpoint per poll, at the newest multiple of ``N`` reached (with fast
updates, multiples in between are skipped); then one at the last update, and after a failure or Ctrl-C one of the
state at the last update made (:meth:`Driver.final_checkpoint`). The master counts from the last checkpoint
*written*: a snapshot handed out and never written is covered by the next one, so no row is lost.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..trace import Trace
from .plan import RunPlan
from .result import RunResult, RuntimeFailure

__all__ = ["Driver", "Progress"]

#: A progress callback: receives the master's status (:meth:`~stalegrad.runtime.master.Master.status`).
Progress = Callable[[dict[str, Any]], None]


class Driver:
    """One real run carried out on Ray: :meth:`start`, :meth:`poll` until it returns True, :meth:`stop` (the
    result), and :meth:`close` in every case. ``progress`` receives the master's status after every poll;
    ``address`` is the Ray node's, recorded in the result."""

    def __init__(self, plan: RunPlan, progress: Progress | None = None, address: str | None = None) -> None:
        self.plan = plan
        self.progress = progress
        self.address = address
        self.master: Any = None
        self.workers: dict[int, Any] = {}
        self.runs: dict[Any, int] = {}  # each live worker's ``run`` call -> the worker
        self.incarnation = list(plan.incarnations)
        counts = plan.counts  # the whole run's: a resumed one goes on
        self.lost = [(int(w), int(v)) for w, v in counts["lost"]]  # (worker, version at which its death was seen)
        self.restarted = [(int(w), int(v)) for w, v in counts["restarted"]]
        self.written: dict[str, Any] | None = plan.resumed.manifest if plan.resumed is not None else None
        self.status: dict[str, Any] = {}  # the master's, as of the last poll
        self.latency: dict[str, float] = {}
        self.t0 = 0.0  # the run's origin, on the master's clock (real seconds)
        self.seconds: float | None = None  # from the start to the last update
        self.done = False
        self._kill = {i: at for i, at in enumerate(plan.kill) if at is not None}
        self._began = 0.0
        self._finished: Any = None  # the master's wait_done call
        self._worker_class: Any = None
        self.token: str | None = None  # the run's shared-memory segments (shm.py), if it may use them

    # ------------------------------------------------------------------------------------------------ the run

    def start(self) -> None:
        """Create the master and the workers, measure Ray's latency, start the clock and the workers' loops.
        On any failure, kill every actor made so far and re-raise."""
        import ray

        from . import master as master_module
        from . import shm
        from . import worker as worker_module

        p = self.plan
        remote_master = ray.remote(**master_module.ACTOR_OPTIONS)(master_module.Master)
        self._worker_class = ray.remote(**worker_module.ACTOR_OPTIONS)(worker_module.Worker)
        shm.reap()  # what killed runs left
        self.token = shm.token() if p.shared_memory else None
        try:
            self.master = remote_master.remote(
                p.problem,
                p.system,
                p.lr,
                p.updates,
                p.seed,
                p.time_unit,
                p.error_every,
                p.checkpoint_every,
                p.state,
                self.token,
            )
            self.workers = {i: self._new_worker(i) for i in p.system.active}  # idle ones (--workers): no actor
            ray.get([self.master.__ray_ready__.remote(), *(w.__ray_ready__.remote() for w in self.workers.values())])
            ray.get([w.prepare.remote() for w in self.workers.values()])  # shared memory mapped, outside the clock
            self.latency = _latency(self.master)
            self.t0 = ray.get(self.master.ping.remote())[0]  # every time of the run is on the master's clock
            self._began = time.perf_counter()
            ray.get(self.master.start.remote(self.t0))
            self.runs = {w.run.remote(): i for i, w in self.workers.items()}
        except BaseException:
            self.close()
            raise

    def poll(self) -> bool:
        """Wait up to ``plan.poll`` seconds for the run's last update or a worker's death; then see to the dead
        (detach, restart), the faults to inject, the periodic checkpoint and progress. True once the run has all
        its updates. Raises :class:`RuntimeFailure` when every worker is dead."""
        import ray

        if self._finished is None:
            self._finished = self.master.wait_done.options(concurrency_group="control").remote()
            self.status = ray.get(self.master.status.remote())
        ready, _ = ray.wait([self._finished, *self.runs], num_returns=1, timeout=self.plan.poll)
        if self._finished in ready:
            ray.get(self._finished)  # the master's death ends this call too: raises RayActorError then
            self.seconds = time.perf_counter() - self._began
            self.done = True
            return True
        for ref in ready:  # a worker's run ended before the run did: it died
            self._lost(self.runs.pop(ref))
        if not self.runs:
            at = self.status["version"]
            raise RuntimeFailure(f"every worker died (lost: {self.lost}); the run stopped at update {at}")
        self.status = ray.get(self.master.status.remote())
        for i, at in list(self._kill.items()):
            if self.status["version"] >= at:
                ray.kill(self.workers[i], no_restart=True)
                del self._kill[i]
        if self.plan.checkpoint_every:
            self.save()
        if self.progress is not None:
            self.progress(self.status)
        return False

    def stop(self) -> RunResult:
        """Stop the workers and collect the run. After :meth:`poll` said it is done, the run has all its updates;
        called earlier, it holds the updates made so far, and the gradients taken or travelling but never applied
        count as ``interrupted``."""
        import ray

        from .checkpoint import write_counts

        p = self.plan
        if self.seconds is None:
            self.seconds = time.perf_counter() - self._began
        if p.checkpoint_every and self.done:
            self.save()  # the last update's
        if self.progress is not None:
            self.progress(ray.get(self.master.status.remote()))
        _stop_workers(self.workers, self.runs, p.stop_timeout)
        out = ray.get(self.master.result.remote())
        if p.checkpoint_every and not self.done:
            self.save(final=True)  # the state the result ends with
        dropped = _add(p.counts["dropped"], out["dropped"])
        if p.checkpoint_every and self.written is not None:  # the drops after the last update count too
            final: dict[str, Any] = {"dropped": dropped, "lost": self.lost, "restarted": self.restarted}
            final["work"] = self._work(out["work"])  # the whole session's, as received
            final["received"] = self._received_before() + int(out["received"])
            self.written = self._write(write_counts, p.checkpoint_dir, self.written, final)
        return self._result(out, dropped)

    def close(self) -> None:
        """Kill every actor of the run, stopped or not (already dead, or Ray going down: nothing to do), and remove
        its shared-memory segments: the master is asked to, and what is left on this node (the master killed, or
        dead) is removed by name (:func:`~stalegrad.runtime.shm.unlink_all`)."""
        import ray

        from . import shm

        if self.token is not None and self.master is not None:
            with contextlib.suppress(Exception):
                ray.get(self.master.release.remote(), timeout=5.0)
        for handle in [*self.workers.values(), self.master]:
            if handle is None:
                continue
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
        if self.token is not None:
            shm.unlink_all(self.token)

    def _new_worker(self, i: int) -> Any:
        p = self.plan
        return self._worker_class.remote(
            i, self.master, p.problem, p.system, p.seed, p.batch, p.time_unit, self.incarnation[i], p.clock_skew[i]
        )

    def _lost(self, i: int) -> None:
        """Worker ``i`` died: the master stops broadcasting to it; restart it as a new incarnation if asked."""
        import ray

        version = self.status["version"]
        self.lost.append((i, version))
        ray.get(self.master.detach.remote(i))
        if self.plan.restart_workers:
            self.incarnation[i] += 1
            self.workers[i] = self._new_worker(i)
            self.runs[self.workers[i].run.remote()] = i
            self.restarted.append((i, version))

    # ------------------------------------------------------------------------------------------- checkpoints

    def save(self, final: bool = False) -> None:
        """Write the master's newest snapshot, if there is one not written yet (``final``: first have it note one
        of the state at its last update, the run being stopped)."""
        import ray

        from .checkpoint import write_checkpoint, write_counts

        p = self.plan
        last = int(self.written["version"]) if self.written is not None else 0  # none written: the first version
        snap = ray.get(self.master.checkpoint.remote(last, final))
        if snap is None:
            return
        counts: dict[str, Any] = {"dropped": _add(p.counts["dropped"], snap["dropped"])}
        counts |= {"lost": self.lost, "restarted": self.restarted, "work": self._work(snap["work"])}
        if "received" in snap:  # a final one: the count identity holds for what it holds
            counts["received"] = self._received_before() + int(snap["received"])
        if "w" not in snap:  # nothing newer than the checkpoint written: its counts at the stop
            if self.written is not None:
                self.written = self._write(write_counts, p.checkpoint_dir, self.written, counts)
            return
        part = _in_units(snap, self.t0, p.unit, p.base)
        self.written = self._write(
            write_checkpoint,
            p.checkpoint_dir,
            self.written,
            version=snap["version"],
            time=float(part["update_times"][-1]),
            w=snap["w"],
            columns=part["columns"],
            update_times=part["update_times"],
            errors=part["errors"],
            downlink=part["downlink"],
            watermarks=snap["watermarks"],
            above=snap["above"],
            incarnations=list(self.incarnation),
            args=p.args,
            checkpoint_every=p.checkpoint_every,
            target=p.updates,
            counts=counts,
        )

    def final_checkpoint(self, save: bool = True) -> str:
        """After a failure or Ctrl-C: write the state at the last update made, if it is not written yet (``save``;
        the master must be alive for that); say where the run's last checkpoint is and how to continue it (or why
        there is none). Never raises."""
        folder = self.plan.checkpoint_dir
        failed = ""
        try:
            if save and self.master is not None:
                self.save(final=True)
        except Exception as exc:  # the master is gone too, or the disk failed: the last checkpoint written stands
            failed = f" (the final one could not be written: {_first_line(exc)})"
        if self.written is None:
            return f"no checkpoint written in '{folder}'{failed}"
        return (
            f"checkpoint at update {self.written['version']} in '{folder}'{failed} (continue with: "
            f"stalegrad run --resume {folder})"
        )

    def master_died(self) -> str:
        """What to say when the master died (the driver's calls to it raised ``RayActorError``): what died, when,
        and the last checkpoint with the command that resumes it."""
        at = self.status.get("version", self.plan.resumed.version if self.plan.resumed is not None else 0)
        what = f"the master actor died (the run was at update {at} of {self.plan.updates})"
        if not self.plan.checkpoint_every:
            return f"{what}; no checkpoint to resume from (the run wrote none)"
        return f"{what}; {self.final_checkpoint(save=False)}"

    def _write(self, write: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return write(*args, **kwargs)
        except OSError as exc:
            raise RuntimeFailure(f"could not write the checkpoint in '{self.plan.checkpoint_dir}': {exc}") from None

    # ------------------------------------------------------------------------------------------------ result

    def _result(self, out: Mapping[str, Any], dropped: dict[str, int]) -> RunResult:
        """The run's RunResult from the master's record (a resumed run's: the checkpoint's rows, then these)."""
        import ray

        p = self.plan
        new = _in_units(out, self.t0, p.unit, p.base)
        cols, update_times, errors, downlink = new["columns"], new["update_times"], new["errors"], new["downlink"]
        ckpt = p.resumed
        if ckpt is not None:
            cols = {k: np.concatenate([ckpt.columns[k], cols[k]]) for k in cols}
            update_times = np.concatenate([ckpt.update_times, update_times])
            errors = np.concatenate([ckpt.errors, errors])
            downlink = np.concatenate([ckpt.downlink, downlink])
        work = self._work(out["work"])  # the whole run's (a resumed one: up to its checkpoint, then this session)
        dropped_time = float(np.sum((cols["sent"] - cols["start"])[cols["dropped"] != 0]))
        meta = {
            "engine": "ray",
            **_work_meta(work["compute"], work["cancelled"], dropped_time),
            "time_unit": p.time_unit,
            "lr": p.lr,
            "batch": p.batch,
            "problem": repr(p.problem),
            "ray": ray.__version__,
            "address": self.address,
            "configured": p.system.to_dict() if p.time_unit is not None else None,
            "resumed_from": ckpt.version if ckpt is not None else None,
            # the workers that exchanged w and gradients through shared memory; versions that went through the
            # object store because the ring was full; gradients copied out of busy slots (stalegrad.runtime.shm)
            "datapath": out["datapath"],
            "checkpoint": str(p.checkpoint_dir) if p.checkpoint_every else None,
            "clocks": {str(i): c for i, c in out["clocks"].items()},  # per worker: offset to the master's, rtt, node
            "master_node": out["node"],
        }
        system = p.system
        if p.time_unit is None:
            from .measured import measured_system

            system = measured_system(cols, downlink, system.K, system.n)
        return RunResult(
            trace=Trace(cols, update_times, system, p.seed, meta),
            errors=errors,
            w=out["w"],
            downlink=downlink,
            dropped=dropped,
            latency=self.latency,
            time_unit=p.time_unit,
            seconds=float(self.seconds or 0.0),
            lost=tuple(self.lost),
            restarted=tuple(self.restarted),
            meta=meta,
            received=self._received_before() + int(out["received"]),
        )

    def _work(self, mine: Mapping[str, float]) -> dict[str, float]:
        """The whole run's compute and abandoned time (time units): the checkpoint's, then this session's
        (``mine``, the master's real seconds)."""
        before = self.plan.counts.get("work") or {}
        return {k: float(before.get(k, 0.0)) + float(mine[k]) / self.plan.unit for k in mine}

    def _received_before(self) -> int:
        """Gradients a resumed run's earlier sessions received, as their checkpoint accounts for them: its rows
        and its drops (what the stopped run received after its last checkpoint is forgotten with it)."""
        ckpt = self.plan.resumed
        if ckpt is None:
            return 0
        return len(ckpt.columns["worker"]) + sum(int(v) for v in self.plan.counts["dropped"].values())


def _work_meta(compute: float, cancelled: float, dropped: float) -> dict[str, float]:
    """What the run's compute time went to, as the event engine reports it (``wasted_compute``: the fraction of
    it spent on rounds abandoned and on gradients dropped). The whole run's, for a resumed one too."""
    from ..sim.events import work_meta

    return work_meta(compute, cancelled, dropped)


def _first_line(exc: BaseException) -> str:
    """An exception in a few words: Ray's are many lines long; a dead actor's say only that."""
    import ray

    if isinstance(exc, ray.exceptions.RayActorError):
        return "the master actor is dead"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    if runs:
        ray.wait(list(runs), num_returns=len(runs), timeout=timeout)
