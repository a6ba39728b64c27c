"""Random streams for a run: one root ``SeedSequence``, spawned per worker by index.

Every engine draws compute times through :class:`ComputeStreams`, in the same blocks, so that two engines given
the same system, run length and seed see the same numbers and can be compared row for row.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import SpecError, invalid
from ..spec import System

__all__ = ["MAX_BLOCK", "ComputeStreams", "block_sizes", "derive_seed", "resolve_seed"]

MAX_BLOCK = 1 << 16


def resolve_seed(seed: int | None) -> int:
    """The seed actually used: ``seed`` itself, or fresh entropy (recorded so the run can be repeated)."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise invalid("seed", seed, "an integer >= 0")
    return int(seed)


def block_sizes(system: System, gradients: int) -> np.ndarray:
    """How many compute times each worker draws at a time: about its share of ``gradients``, capped.

    A short run draws little; a long run draws :data:`MAX_BLOCK` at a time and stays in bounded memory.
    """
    inv = np.array([1.0 / mu for mu in system.means])
    share = gradients * inv / inv.sum()
    return np.clip(np.ceil(share * 1.1 + 4.0 * np.sqrt(share) + 16), 16, MAX_BLOCK).astype(np.int64)


class ComputeStreams:
    """Per-worker compute-time draws: worker ``i`` uses ``SeedSequence(seed).spawn(n)[i].spawn(3)[0]``.

    (The other two children of each worker are reserved for random uplink and downlink delays.)
    """

    def __init__(self, system: System, seed: int, gradients: int) -> None:
        self.system = system
        self.seed = seed
        workers = np.random.SeedSequence(seed).spawn(system.n)
        self.rngs = [np.random.default_rng(w.spawn(3)[0]) for w in workers]
        self.sizes = block_sizes(system, gradients)

    def draw(self, i: int) -> np.ndarray:
        """The next block of compute times of worker ``i`` (float64, all finite and ``>= 0``)."""
        model = self.system.compute[i]
        x = np.ascontiguousarray(model.rvs(size=int(self.sizes[i]), random_state=self.rngs[i]), dtype=np.float64)
        low = x.min()
        if not (math.isfinite(low) and low >= 0 and np.isfinite(x).all()):
            bad = x[~np.isfinite(x) | (x < 0)][0]
            raise SpecError(f"compute[{i}] drew {bad!r}: compute times must be finite and >= 0")
        return x


def derive_seed(seed: int, *key: int) -> int:
    """An independent seed for part ``key`` of a larger experiment (replication, grid point), from ``seed``.

    >>> derive_seed(1, 0) == derive_seed(1, 0) != derive_seed(1, 1)
    True
    """
    state = np.random.SeedSequence(entropy=seed, spawn_key=tuple(key)).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])
