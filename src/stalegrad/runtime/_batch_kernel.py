"""The master's update loops, compiled with numba (``cache=True``; imported by :mod:`stalegrad.runtime.batch` when a
batch is first applied). Plain loops with no ``fastmath``: numpy's operations in numpy's order, to the bit."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def fold(acc: np.ndarray, started: bool, grads: tuple[np.ndarray, ...]) -> None:
    """``acc = (acc if started else 0) + g_1 + g_2 + ...``, element by element, left to right."""
    for i in range(acc.shape[0]):
        s = acc[i] if started else 0.0
        for g in grads:
            s += g[i]
        acc[i] = s


@njit(cache=True)
def step(w: np.ndarray, acc: np.ndarray, started: bool, grads: tuple[np.ndarray, ...], c: float) -> None:
    """``w = w - c * ((acc if started else 0) + g_1 + g_2 + ...)`` in place, in one pass."""
    for i in range(w.shape[0]):
        s = acc[i] if started else 0.0
        for g in grads:
            s += g[i]
        w[i] = w[i] - c * s
