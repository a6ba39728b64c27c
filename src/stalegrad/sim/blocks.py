"""Compute times drawn in blocks, per worker, from the streams of :mod:`stalegrad.streams`.

Every engine draws compute times through :class:`ComputeStreams`, in the same blocks, so that two engines given
the same system, run length and seed see the same numbers and can be compared row for row.
"""

from __future__ import annotations

import numpy as np

from ..spec import System
from ..streams import COMPUTE, all_worker_seeds, check_draws

__all__ = ["MAX_BLOCK", "ComputeStreams", "block_sizes"]

MAX_BLOCK = 1 << 16


def block_sizes(system: System, gradients: int) -> np.ndarray:
    """How many compute times each worker draws at a time: about its share of ``gradients``, capped.

    A short run draws little; a long run draws :data:`MAX_BLOCK` at a time and stays in bounded memory.
    """
    inv = np.zeros(system.n)
    for i in system.active:  # idle workers draw nothing: the least
        inv[i] = 1.0 / system.means[i]
    share = gradients * inv / inv.sum()
    return np.clip(np.ceil(share * 1.1 + 4.0 * np.sqrt(share) + 16), 16, MAX_BLOCK).astype(np.int64)


class ComputeStreams:
    """Per-worker compute-time draws: worker ``i`` uses its :data:`~stalegrad.streams.COMPUTE` stream."""

    def __init__(self, system: System, seed: int, gradients: int) -> None:
        self.system = system
        self.seed = seed
        self.rngs = [np.random.default_rng(seqs[COMPUTE]) for seqs in all_worker_seeds(seed, system.n)]
        self.sizes = block_sizes(system, gradients)

    def draw(self, i: int) -> np.ndarray:
        """The next block of compute times of worker ``i`` (float64, all finite and ``>= 0``)."""
        model = self.system.compute[i]
        x = np.ascontiguousarray(model.rvs(size=int(self.sizes[i]), random_state=self.rngs[i]), dtype=np.float64)
        return check_draws(x, f"compute[{i}]")
