"""The system a real run measured: each worker's measured compute times as an empirical law, mean delays.

A round runs from the instant the previous gradient was sent to the instant this one is sent (``sent - start`` of
every row); the uplink is ``arrive - sent``, the downlink from version made to version reached. Comparing a run
with its prediction is not the runtime's business: :mod:`stalegrad.experiments.measured` does it.
"""

from __future__ import annotations

import numpy as np

from ..distributions import Empirical
from ..errors import StalegradError
from ..spec import System

__all__ = ["measured_system"]


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
