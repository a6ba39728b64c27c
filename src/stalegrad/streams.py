"""Seeds and random streams, in one place for every engine, the replay and the real runtime.

Layout (the same in the fast simulator, the event engine and a real run, so that they draw the same numbers):

* a run has one root ``numpy.random.SeedSequence(seed)``, spawned per worker by index;
* worker ``i``'s root has four children, by role: :data:`COMPUTE`, :data:`UPLINK`, :data:`DOWNLINK`,
  :data:`MINIBATCH`;
* a worker restarted in a real run (incarnation ``r > 0``) uses ``SeedSequence(seed, spawn_key=(i, 4 + r))``
  instead, independent of every stream used before.

``SeedSequence.spawn(k)[j]`` does not depend on ``k``, so engines that use only the first three roles draw exactly
what a real run draws.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import SpecError, invalid

__all__ = [
    "COMPUTE",
    "DOWNLINK",
    "MINIBATCH",
    "UPLINK",
    "Draws",
    "all_worker_seeds",
    "check_draws",
    "derive_seed",
    "resolve_seed",
    "worker_seeds",
]

#: The children of a worker's seed sequence, by role.
COMPUTE, UPLINK, DOWNLINK, MINIBATCH = 0, 1, 2, 3
_ROLES = 4


def resolve_seed(seed: int | None) -> int:
    """The seed actually used: ``seed`` itself, or fresh entropy (recorded so the run can be repeated)."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise invalid("seed", seed, "an integer >= 0")
    return int(seed)


def derive_seed(seed: int, *key: int) -> int:
    """An independent seed for part ``key`` of a larger experiment (replication, grid point), from ``seed``.

    >>> derive_seed(1, 0) == derive_seed(1, 0) != derive_seed(1, 1)
    True
    """
    state = np.random.SeedSequence(entropy=seed, spawn_key=tuple(key)).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


def worker_seeds(seed: int, n: int, index: int, incarnation: int = 0) -> list[np.random.SeedSequence]:
    """The seed sequences of worker ``index`` of ``n``, indexed by role (:data:`COMPUTE` ... :data:`MINIBATCH`).

    >>> a = worker_seeds(7, 4, 2)[COMPUTE].generate_state(1)
    >>> b = np.random.SeedSequence(7).spawn(4)[2].spawn(3)[0].generate_state(1)
    >>> bool((a == b).all())
    True
    """
    if incarnation == 0:
        root = np.random.SeedSequence(seed).spawn(n)[index]
    else:
        root = np.random.SeedSequence(seed, spawn_key=(index, _ROLES + incarnation))
    return root.spawn(_ROLES)


def all_worker_seeds(seed: int, n: int) -> list[list[np.random.SeedSequence]]:
    """:func:`worker_seeds` of every worker of a run (first incarnations), spawning the root once."""
    return [root.spawn(_ROLES) for root in np.random.SeedSequence(seed).spawn(n)]


def check_draws(x: np.ndarray, parameter: str) -> np.ndarray:
    """``x`` itself when every value is a finite time ``>= 0``; else a :class:`SpecError` naming the first bad one."""
    low = x.min() if x.size else 0.0
    if not (math.isfinite(low) and low >= 0 and np.isfinite(x).all()):
        bad = x[~np.isfinite(x) | (x < 0)][0]
        raise SpecError(f"{parameter} drew {float(bad)!r}: times must be finite and >= 0")
    return x


class Draws:
    """Draws of one model (a fixed number of seconds, or a scipy-like distribution) from one stream, a block at a
    time, each checked to be a finite time ``>= 0``.

    >>> Draws(0.5, np.random.SeedSequence(0), "uplink").next()
    0.5
    """

    def __init__(self, model: Any, seq: np.random.SeedSequence, parameter: str, block: int = 256) -> None:
        self.fixed = float(model) if isinstance(model, (int, float)) else None
        self.model, self.parameter, self.block = model, parameter, block
        self.rng = np.random.default_rng(seq)
        self.buf: list[float] = []
        self.pos = 0

    def next(self) -> float:
        if self.fixed is not None:
            return self.fixed
        if self.pos == len(self.buf):
            x = np.asarray(self.model.rvs(size=self.block, random_state=self.rng), dtype=float)
            self.buf = check_draws(x, self.parameter).tolist()
            self.pos = 0
        self.pos += 1
        return self.buf[self.pos - 1]
