"""The random numbers a compiled event loop reads: each worker's compute times and delays, in chunks, exactly as the
reference event engine draws them, the next chunk drawn ahead in a background thread.

The reference (:mod:`stalegrad.sim.events`) draws compute times in the blocks of
:class:`~stalegrad.sim.blocks.ComputeStreams` and each worker's uplink and downlink delays in the blocks of 256 of
:class:`~stalegrad.streams.Draws`, from the worker's own streams. A :class:`DelayStream` gives the same delays many
blocks at a time: by one call when the model draws each number in turn from the generator (one call of ``m * 256``
then gives the numbers of ``m`` calls of 256, see :func:`draws_in_sequence`), else by ``m`` calls. Chunks start at
one block and double up to a cap, so a short run draws little.

Workers have their own streams, so drawing a chunk early, in another thread, changes no number. A chunk that the
reference would reject (a negative or infinite time) raises the reference's error when, and only when, the run
reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.stats

from ..distributions import Deterministic, Empirical, Scaled
from ..spec import System
from ..streams import DOWNLINK, UPLINK, all_worker_seeds, check_draws
from .blocks import ComputeStreams

__all__ = ["DELAY_BLOCK", "DelayStream", "Feed", "Feeds", "draws_in_sequence"]

#: the reference's delay block (:class:`~stalegrad.streams.Draws`)
DELAY_BLOCK = 256
#: chunks are drawn ahead while all the buffers of a run fit in this many bytes (as the fast path's rows)
PREFETCH_BYTES = 1 << 28

#: scipy.stats families whose ``rvs`` transforms one generator call number by number (``_rvs``, then
#: ``vals * scale + loc``): expon (standard_exponential), gamma and erlang (standard_gamma), lognorm
#: (exp of standard_normal), norm and halfnorm (standard_normal), uniform (uniform); weibull_min, pareto and lomax
#: use scipy's default ``_rvs``, the closed-form ppf of one uniform per number.
_SEQUENTIAL_FAMILIES = frozenset(
    {"expon", "gamma", "erlang", "lognorm", "norm", "halfnorm", "uniform", "weibull_min", "pareto", "lomax"}
)


def draws_in_sequence(model: Any) -> bool:
    """True when ``model.rvs(size=a + b)`` draws the same numbers as ``rvs(size=a)`` then ``rvs(size=b)`` from one
    generator (each number is a function of the next ones the generator gives, in turn).

    >>> draws_in_sequence(scipy.stats.expon(scale=2)), draws_in_sequence(scipy.stats.truncnorm(0, 1))
    (True, False)
    """
    if isinstance(model, (Deterministic, Empirical)):  # Empirical: one bounded 64-bit integer per number
        return True
    if isinstance(model, Scaled):
        return draws_in_sequence(model.base)
    dist = getattr(model, "dist", None)
    return isinstance(dist, scipy.stats.rv_continuous) and getattr(dist, "name", None) in _SEQUENTIAL_FAMILIES


class DelayStream:
    """One worker's delays in one direction: the numbers :class:`~stalegrad.streams.Draws` gives, in chunks of
    1, 2, 4, ... up to ``max_blocks`` of its blocks."""

    def __init__(self, model: Any, seq: np.random.SeedSequence, parameter: str, max_blocks: int) -> None:
        self.model, self.parameter, self.max_blocks = model, parameter, max_blocks
        self.rng = np.random.default_rng(seq)
        self.together = draws_in_sequence(model)
        self.blocks = 1
        self.bad: np.ndarray | None = None  # a block the reference rejects, raised when the run reaches it

    def draw(self) -> np.ndarray:
        if self.bad is not None:
            check_draws(self.bad, self.parameter)
        blocks, self.blocks = self.blocks, min(2 * self.blocks, self.max_blocks)
        if self.together:
            x = np.asarray(self.model.rvs(size=DELAY_BLOCK * blocks, random_state=self.rng), dtype=float)
        else:
            parts = [self.model.rvs(size=DELAY_BLOCK, random_state=self.rng) for _ in range(blocks)]
            x = np.concatenate([np.asarray(p, dtype=float) for p in parts])
        if not (x.size == 0 or (x.min() >= 0 and x.max() < np.inf)):  # (a NaN fails both comparisons)
            ok = np.isfinite(x) & (x >= 0)
            first = int(np.argmin(ok)) // DELAY_BLOCK * DELAY_BLOCK
            self.bad = x[first : first + DELAY_BLOCK].copy()
            x = x[:first]
            if x.size == 0:
                check_draws(self.bad, self.parameter)
        return x


Submit = Callable[[Callable[[], np.ndarray]], "Future[np.ndarray]"]


class Feed:
    """The chunks of one stream, in order; from the ``ahead``-th chunk on, the next one is drawn in the background
    by ``submit`` (its error, if any, raised when it is asked for)."""

    def __init__(self, draw: Callable[[], np.ndarray], submit: Submit | None, ahead: int) -> None:
        self.draw, self.submit, self.ahead = draw, submit, ahead
        self.taken = 0
        self.next: Future[np.ndarray] | None = None

    def take(self) -> np.ndarray:
        if self.next is not None:
            x, self.next = self.next.result(), None
        else:
            x = self.draw()
        self.taken += 1
        if self.submit is not None and self.taken >= self.ahead:
            self.next = self.submit(self.draw)
        return x


class Feeds:
    """Every stream a run reads: ``compute[j]``, and ``up[j]``, ``down[j]`` for random or per-worker delays (empty
    lists for one fixed delay), for the ``j``-th active worker (``system.active[j]``: idle workers draw nothing,
    and an active worker draws from its own streams whatever its place). ``sizes[j]`` is its block of compute times.
    :meth:`close` stops drawing ahead."""

    def __init__(self, system: System, seed: int, gradients: int, *, ahead: bool = True) -> None:
        active = system.active
        n = len(active)
        self.streams = ComputeStreams(system, seed, gradients)
        self.sizes = self.streams.sizes[list(active)]
        self.max_chunk = DELAY_BLOCK * int(np.clip((1 << 20) // (n * DELAY_BLOCK), 1, 256))
        # per-worker delays (tuples) are read from feeds too, a worker's fixed delay as a constant stream; the active
        # workers decide, as in the engines (System.active_system: the same delay for all of them is one delay)
        small = system.active_system()
        uprand = not isinstance(small.uplink, float)
        downrand = not isinstance(small.downlink, float)
        # a chunk drawn ahead per stream doubles the memory of the buffers: only up to PREFETCH_BYTES
        streams = int(self.sizes.sum()) + self.max_chunk * n * (uprand + downrand)
        self.pool: ThreadPoolExecutor | None = None  # started when a stream first draws ahead
        submit = self._submit if ahead and 8 * streams <= PREFETCH_BYTES else None
        every = all_worker_seeds(seed, system.n) if uprand or downrand else []
        seqs = [every[i] for i in active] if every else []
        blocks = self.max_chunk // DELAY_BLOCK
        # a stream that needs a second chunk (a third for delays, whose chunks start small) is read ahead
        self.compute = [Feed(self._compute(i), submit, 2) for i in active]

        def delays(of: Callable[[int], Any], role: int, name: str) -> list[Feed]:
            models = [of(i) for i in active]
            models = [Deterministic(m) if isinstance(m, float) else m for m in models]
            return [
                Feed(DelayStream(m, s[role], name, blocks).draw, submit, 3) for m, s in zip(models, seqs, strict=True)
            ]

        self.up = delays(system.uplink_of, UPLINK, "uplink") if uprand else []
        self.down = delays(system.downlink_of, DOWNLINK, "downlink") if downrand else []

    def _compute(self, i: int) -> Callable[[], np.ndarray]:
        return lambda: self.streams.draw(i)

    def _submit(self, draw: Callable[[], np.ndarray]) -> Future[np.ndarray]:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stalegrad-feed")
        return self.pool.submit(draw)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
