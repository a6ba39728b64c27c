"""The system a real run measured: each worker's measured compute times as an empirical law, mean delays.

A round runs from the instant the previous gradient was sent to the instant this one is sent (``sent - start`` of
every row); the uplink is ``arrive - sent``, the downlink from version made to version reached. Comparing a run
with its prediction is not the runtime's business: :mod:`stalegrad.experiments.measured` does it. When workers were
lost, :func:`full_set` says which updates were made with every worker running.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..distributions import Empirical
from ..errors import StalegradError
from ..spec import System

__all__ = ["full_set", "measured_system"]


def measured_system(columns: dict[str, np.ndarray], downlink: np.ndarray, K: int, n: int) -> System:
    """The System a run really was: empirical compute times per worker, mean measured delays.

    A worker with no row (it died before its first gradient was applied) gets the pooled times of the others.
    """
    x = columns["sent"] - columns["start"]
    pooled = Empirical(x) if x.size else None
    models = []
    for i in range(n):
        mine = x[columns["worker"] == i]
        model = Empirical(mine) if mine.size and mine.mean() > 0 else pooled
        if model is None:
            raise StalegradError("no gradient was applied: nothing was measured")
        models.append(model)
    up = float(np.mean(columns["arrive"] - columns["sent"])) if x.size else 0.0
    down = float(np.mean(downlink)) if downlink.size else 0.0
    return System(n=n, K=K, compute=models, uplink=max(up, 0.0), downlink=max(down, 0.0))


def full_set(
    columns: dict[str, np.ndarray],
    lost: Sequence[tuple[int, int]],
    restarted: Sequence[tuple[int, int]],
    updates: int,
) -> tuple[int, int] | None:
    """The longest stretch of updates ``(first, last)`` made while every worker ran, when workers were lost
    (``lost``: ``(worker, version at which its death was seen)``); ``None`` when none was.

    Before the first loss: up to the update that applied the last gradient the lost worker sent before it died
    (its rows applied by the update its death was seen at). After the losses, when every lost worker was
    restarted: from the update that applied the first gradient of the last one back (a row of the worker on a
    version after its death was seen). The longer of the two.
    """
    if not lost:
        return None
    worker, update, version = columns["worker"], columns["update"], columns["version"]
    before = updates
    after = 1
    for w, seen in lost:
        mine = worker == w
        old = update[mine & (update <= seen)]
        before = min(before, int(old.max()) if old.size else 0)
        new = update[mine & (version > seen)]
        after = max(after, int(new.min()) if new.size else updates + 1)
    if len(restarted) < len(lost):
        after = updates + 1
    return (1, before) if before >= updates - after + 1 else (after, updates)
