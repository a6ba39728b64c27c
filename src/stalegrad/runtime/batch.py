"""The master's K-batch of gradients and the update it makes, in place: ``w_u = w_{u-1} - lr (g_1 + ... + g_K) / K``.

The gradients of a batch are *held* (references: a large one is a zero-copy view of the object store) and added
only when the batch is complete, in one pass that reads ``w`` and the gradients and writes ``w`` in place (a
compiled loop, :mod:`stalegrad.runtime._batch_kernel`): an update costs about the memory traffic of summing its
gradients into ``w``, against five passes and two fresh arrays for ``w - (lr / K) * (g_1 + ... + g_K)`` in numpy.
At most :data:`HOLD` gradients are held: the ones before are first folded into an accumulator, so a large ``K``
never pins ``K`` gradients.

The arithmetic is numpy's, element by element and in the same order -- ``s = ((0 + g_1) + g_2) + ...``, then
``w - (lr / K) * s`` -- with no fused multiply-add and no reordering (numba without ``fastmath``): the result is
the same to the bit as ``w - (lr / K) * batch`` with ``batch = zeros; batch += g_j`` (tested), and SGD replayed
along a run's Trace gives the run's ``w`` exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["HOLD", "Batch"]

#: The most gradients a batch holds before it folds them into its accumulator.
HOLD = 4


def _frozen(grad: Any, dim: int) -> np.ndarray:
    """``grad`` as a read-only, contiguous, one-dimensional float64 array of ``dim`` elements that nobody changes:
    a read-only float64 array (a gradient read zero-copy from the object store) is held as it is; a writable one
    the caller passed is copied (the caller may change it; a small gradient travels inside the call and is one)."""
    g = np.ascontiguousarray(grad, dtype=np.float64).reshape(-1)
    if g.shape[0] != dim:
        raise ValueError(f"a gradient of {g.shape[0]} elements for a w of {dim}")
    if g.flags.writeable:  # the loops take one array type: read-only, as the object store's
        if isinstance(grad, np.ndarray) and np.may_share_memory(g, grad):
            g = g.copy()
        g.flags.writeable = False
    return g


class Batch:
    """The gradients taken since the last update, and the update they make (:meth:`apply`).

    >>> w = np.zeros(3)
    >>> b = Batch(3)
    >>> b.add(np.array([1.0, 2.0, 3.0])); b.add(np.array([3.0, 2.0, 1.0])); len(b)
    2
    >>> b.apply(w, 0.5 / 2); w.tolist(), len(b)
    ([-1.0, -1.0, -1.0], 0)
    """

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)
        self._held: list[np.ndarray] = []
        self._tags: list[Any] = []  # the caller's tag of each gradient held (None: untagged)
        self._count = 0
        self._acc: np.ndarray | None = None  # allocated when first needed (K > HOLD)
        self._folded = False  # whether the accumulator holds the first gradients of this batch

    def __len__(self) -> int:
        return self._count

    def add(self, grad: Any, tag: Any = None) -> None:
        """Hold one more gradient (a reference, not a copy, when it is read-only: from the object store or a
        shared-memory slot); ``tag`` names it (:meth:`holding`: the tags of the gradients still held)."""
        self._held.append(_frozen(grad, self.dim))
        self._tags.append(tag)
        self._count += 1
        if len(self._held) > HOLD:
            self._fold(len(self._held) - 1)

    def holding(self) -> list[Any]:
        """The tags of the gradients held (not yet added to ``w`` or folded into the accumulator)."""
        return [t for t in self._tags if t is not None]

    def release(self) -> None:
        """Fold every gradient held into the accumulator (the same bits at the update), so that none is held: the
        buffers they lie in may be reused."""
        if self._held:
            self._fold(len(self._held))

    def _fold(self, count: int) -> None:
        """Fold the first ``count`` gradients held into the accumulator (left to right: numpy's order)."""
        from ._batch_kernel import fold

        if self._acc is None:
            self._acc = np.empty(self.dim)
        fold(self._acc, self._folded, tuple(self._held[:count]))
        self._folded = True
        del self._held[:count], self._tags[:count]

    def apply(self, w: np.ndarray, c: float) -> None:
        """``w -= c * (g_1 + ... + g_k)`` in place (``c = lr / K``), then start an empty batch."""
        if self._count == 0:
            raise ValueError("an update of an empty batch")
        from ._batch_kernel import step

        acc = self._acc if self._acc is not None else w  # (not read when nothing was folded)
        if self._held:
            step(w.reshape(-1), acc, self._folded, tuple(self._held), float(c))
        else:  # every gradient folded (released): w - c * s in numpy, the same operations
            np.multiply(acc, float(c), out=acc)
            np.subtract(w.reshape(-1), acc, out=w.reshape(-1))
        self.clear()

    @staticmethod
    def prepare(K: int) -> None:
        """Compile (or load from numba's cache) the loops a batch of ``K`` gradients runs, on a tiny batch: the
        master does it before its run starts, so that its first update does not pay for it."""
        batch, w = Batch(1), np.zeros(1)
        for _ in range(K):
            batch.add(np.zeros(1))
        batch.apply(w, 1.0)

    def clear(self) -> None:
        """Forget the gradients held (they are released)."""
        self._held.clear()
        self._tags.clear()
        self._count = 0
        self._folded = False
