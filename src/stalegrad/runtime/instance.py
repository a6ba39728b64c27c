"""The processes of a local Ray instance a run started: marked when they start, stopped when the run ends, and
reaped by a later run when the one that started them was killed.

``ray.init`` starts a head node's processes (GCS, raylet, log monitor, ...) as children of the driver, and the
raylet starts the actors' processes and two agents (``DashboardAgent``, ``RuntimeEnvAgent``). When the driver is
killed (SIGKILL), or a second Ctrl-C cuts ``ray.shutdown`` short, the agents outlive it for minutes, re-parented
to ``init``. So every process of an instance a run starts carries a mark in its environment --
:data:`MARK` ``= "<pid>:<start time>:<token>"`` of the process that started it, inherited by everything Ray starts
from there -- and

* :meth:`OwnProcesses.stop` (after ``ray.shutdown``) waits a moment for the marked processes to end and kills
  what is left, so that nothing the run started survives it;
* :func:`reap_orphans` (before a new local instance starts) kills the marked processes whose owner is gone (no
  process with that pid and start time).

Processes without the mark (another user's Ray, another session's, a cluster joined with ``--address``) and
processes whose owner still runs are never touched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from typing import Any

__all__ = ["MARK", "OwnProcesses", "marked", "reap_orphans"]

#: The environment variable that marks a process as part of a run's own Ray instance.
MARK = "STALEGRAD_RAY_OWNER"


def _psutil() -> Any:
    import importlib

    import ray  # noqa: F401 - Ray ships psutil in its thirdparty_files, which importing Ray puts on the path

    return importlib.import_module("psutil")


def _owner_alive(mark: str) -> bool:
    """Whether the process that made ``mark`` still runs (same pid, same start time)."""
    psutil = _psutil()
    try:
        pid, started, _ = mark.split(":", 2)
        proc = psutil.Process(int(pid))
        return f"{proc.create_time():.3f}" == started and proc.status() != psutil.STATUS_ZOMBIE
    except (ValueError, psutil.Error):
        return False


def marked(value: str | None = None) -> list[tuple[Any, str]]:
    """The live processes (psutil) that carry the mark ``value`` (``None``: any mark), with their marks; this
    process excluded, and processes whose environment cannot be read (another user's)."""
    psutil = _psutil()
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            mark = proc.environ().get(MARK)
            if mark is None or (value is not None and mark != value):
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:  # dead, only not reaped by its parent: nothing to stop
                continue
        except (psutil.Error, OSError):
            continue
        found.append((proc, mark))
    return found


def _kill(procs: list[Any], wait: float) -> list[Any]:
    """Terminate, wait up to ``wait`` seconds, then kill what is left; returns the processes that were running."""
    psutil = _psutil()
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=wait)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=wait)
    return procs


def reap_orphans() -> int:
    """Stop the processes left by runs whose driver is gone (killed); returns how many there were."""
    orphans = [proc for proc, mark in marked() if not _owner_alive(mark)]
    return len(_kill(orphans, wait=2.0)) if orphans else 0


class OwnProcesses:
    """The mark of the instance this process is about to start (:meth:`env`), and :meth:`stop` for after it."""

    def __init__(self) -> None:
        psutil = _psutil()
        me = psutil.Process(os.getpid())
        self.value = f"{os.getpid()}:{me.create_time():.3f}:{secrets.token_hex(4)}"

    def env(self) -> dict[str, str]:
        """What to add to the environment while the instance starts."""
        return {MARK: self.value}

    def stop(self, grace: float = 5.0) -> int:
        """After ``ray.shutdown``: wait up to ``grace`` seconds for the instance's processes to end, then terminate
        (and kill) what is left; returns how many had to be stopped."""
        deadline = time.monotonic() + grace
        left = [proc for proc, _ in marked(self.value)]
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [proc for proc, _ in marked(self.value)]
        return len(_kill(left, wait=2.0)) if left else 0
