"""A real run, in one call: :func:`run` checks its arguments (:class:`~stalegrad.runtime.plan.RunPlan`, before Ray
starts), starts or joins Ray (:func:`~stalegrad.runtime.session.ray_session`) and has a
:class:`~stalegrad.runtime.driver.Driver` carry it out.

The result's :class:`~stalegrad.trace.Trace` holds one row per gradient applied, with its real times in time units
(seconds / ``time_unit``; seconds when nothing is injected) measured from the start of the run: the same analysis
and theory comparison as for a simulation (:mod:`stalegrad.experiments.measured`).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..spec import System
from .driver import Driver, Progress
from .plan import RunPlan
from .result import RunInterrupted, RunResult, RuntimeFailure
from .session import ray_session

__all__ = ["carry_out", "ctrl_c_once", "run"]


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
    shared_memory: bool = True,
) -> RunResult:
    """Train ``problem`` with ``system.n`` worker actors and a master actor on Ray until ``updates`` updates.

    ``system.protocol`` is carried out with the event engine's rules (:mod:`stalegrad.runtime.protocol`), its
    staleness bound, ringmaster's threshold and mindflayer's cutoffs (in time units: they need ``time_unit``);
    only ``system.active`` workers start an actor. The Trace holds every gradient applied and every one the
    protocol dropped (``update = -1``, with its reason); ``trace.meta["wasted_compute"]`` is the fraction of the
    compute time spent on rounds abandoned and gradients dropped.

    ``system`` gives ``n``, ``K`` and, when ``time_unit`` (seconds) is given, the compute times and delays that are
    injected (in time units). ``lr`` is the step size and ``batch`` the minibatch of each gradient; ``error_every``:
    record the error of every that many versions (0: never). ``address``: join that Ray cluster (``"auto"`` or
    ``HOST:PORT``) instead of starting a local instance. ``restart_workers``: a worker that dies is restarted and
    goes on above the last round the master took from it. ``kill`` maps a worker to the update at which the
    driver kills it, ``clock_skew`` a worker to an offset of its clock (seconds; as on a machine with a wrong
    clock, which the worker measures and corrects) -- fault injection, for tests and demonstrations.
    ``progress`` receives the master's status about every ``poll`` seconds; at the end the workers are given
    ``stop_timeout`` seconds to stop before they are killed.

    ``checkpoint_dir`` and ``checkpoint_every = N``: write checkpoints there (a folder that holds none yet). The
    driver polls the master about every ``poll`` seconds and writes at most one checkpoint per poll, at the newest
    multiple of ``N`` reached by then (when more than ``N`` updates pass between two polls, the multiples in
    between are skipped: every checkpoint is at a multiple of ``N``, not every multiple has one); then one at the
    last update, and on Ctrl-C or a failure one of the state at the last update made (:class:`RunInterrupted`
    says where). ``resume``: a checkpoint folder to continue, up to ``updates`` updates in all; same system,
    problem, step, minibatch, time unit and seed (checked; the seed defaults to the checkpoint's); checkpoints go
    on into the same folder (every ``checkpoint_every`` updates, by default the checkpoint's own period); the
    version count, the rounds taken and the clock go on, every worker draws from a fresh incarnation of its random
    streams, and the returned Trace is the whole run's -- updates ``1..updates`` exactly once. Whatever the stopped
    run did after its last checkpoint is lost, not duplicated.

    ``shared_memory``: a ``w`` over 16 kB and its gradients travel between the master and the workers on
    its node through fixed shared-memory buffers (:mod:`stalegrad.runtime.shm`), and through Ray's object store
    for workers on other nodes; ``False``: through the object store for every worker.

    Every argument is checked before Ray starts (:meth:`RunPlan.build`).
    """
    plan = RunPlan.build(
        system,
        problem,
        updates,
        time_unit=time_unit,
        lr=lr,
        batch=batch,
        seed=seed,
        address=address,
        restart_workers=restart_workers,
        error_every=error_every,
        poll=poll,
        stop_timeout=stop_timeout,
        kill=kill,
        clock_skew=clock_skew,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        shared_memory=shared_memory,
    )
    return carry_out(plan, progress)


def carry_out(plan: RunPlan, progress: Progress | None = None) -> RunResult:
    """Carry out a checked plan: in this process's Ray instance, or one started (or joined) for it and shut down
    after. Ctrl-C raises :class:`RunInterrupted`; a failure that stops the run (every worker dead, the master
    dead) :class:`RuntimeFailure`; with checkpoints, either message says where the last checkpoint is and the
    command that continues it.

    The first Ctrl-C stops the run; until the final checkpoint is written and Ray is shut down (every process of
    a local instance stopped), a second one is noted on stderr and changes nothing (:func:`ctrl_c_once`).
    """
    import ray

    with ctrl_c_once(), ray_session(plan.address) as info:
        driver = Driver(plan, progress, address=info["address"])
        try:
            driver.start()
            while not driver.poll():
                pass
            return driver.stop()
        except ray.exceptions.RayActorError:  # the driver calls only the master: it died
            raise RuntimeFailure(driver.master_died()) from None
        except BaseException as exc:  # Ctrl-C, every worker dead, a progress callback's error: checkpoint, re-raise
            if not plan.checkpoint_every:
                if isinstance(exc, KeyboardInterrupt):
                    raise RunInterrupted("interrupted (the run wrote no checkpoint)") from None
                raise
            where = driver.final_checkpoint()
            if isinstance(exc, KeyboardInterrupt):
                raise RunInterrupted(f"interrupted; {where}") from None
            if isinstance(exc, RuntimeFailure):
                raise RuntimeFailure(f"{exc}; {where}") from None
            exc.add_note(where)
            raise
        finally:
            driver.close()


@contextmanager
def ctrl_c_once() -> Iterator[None]:
    """The first Ctrl-C (SIGINT) raises KeyboardInterrupt; later ones, until the block ends, are noted on stderr
    and ignored, so that the run's final checkpoint and Ray's shutdown are never cut short (a cut shutdown leaves
    Ray's agents running). Only in the main thread, and only where Ctrl-C raises KeyboardInterrupt (Python's
    default); elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    seen = [0]

    def handler(signum: int, frame: Any) -> None:
        seen[0] += 1
        if seen[0] == 1:
            raise KeyboardInterrupt
        if seen[0] == 2:
            sys.stderr.write("Ctrl-C again: noted; the final checkpoint is written and Ray stopped first (seconds)\n")
            sys.stderr.flush()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
