"""Real asynchronous K-batch training on Ray: a master actor and ``n`` worker actors (DESIGN.md, "Runtime").

Ray is imported only when a run starts (``pip install 'stalegrad[ray]'``).
"""

from __future__ import annotations

from .measured import measured_system
from .run import RunInterrupted, RunResult, RuntimeFailure, ray_session, run, start_local

__all__ = [
    "RunInterrupted",
    "RunResult",
    "RuntimeFailure",
    "measured_system",
    "ray_session",
    "run",
    "start_local",
]
