"""Real distributed training on Ray under any protocol of the engines: a master actor and ``n`` worker actors
(DESIGN.md, "Runtime"; the protocols' rules: :mod:`stalegrad.runtime.protocol`).

:func:`run` does it in one call: its arguments are checked first (:class:`~.plan.RunPlan`), then Ray is started or
joined (:func:`ray_session`) and a :class:`~.driver.Driver` carries the run out. Ray is imported only when a run
starts (``pip install 'stalegrad[ray]'``).
"""

from __future__ import annotations

from .measured import measured_system
from .result import RunInterrupted, RunResult, RuntimeFailure, write_run
from .run import run
from .session import ray_session, start_local, stop_local

__all__ = [
    "RunInterrupted",
    "RunResult",
    "RuntimeFailure",
    "measured_system",
    "ray_session",
    "run",
    "start_local",
    "stop_local",
    "write_run",
]
