"""The replay's compiled loop for linear models (numba, ``cache=True``; imported only when used).

Same state and the same steps as :func:`stalegrad.train.replay._span_python`, with the gradient of a
:class:`~stalegrad.train.problems.LinearModel` written out (squares or logistic loss, l2 term).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# ist: state kept between calls
PEND, COUNT, LAST, RECORDED = 0, 1, 2, 3


@njit(cache=True)
def finalize(ring: np.ndarray, acc: np.ndarray, u: int, count: int, mean: bool) -> None:
    """``w_u = w_{u-1} - acc / count`` (mean of the gradients) or ``- acc`` (their sum), into the ring."""
    S = ring.shape[0]
    src = (u - 1) % S
    dst = u % S
    scale = 1.0 / count if mean else 1.0
    for k in range(ring.shape[1]):
        ring[dst, k] = ring[src, k] - acc[k] * scale


@njit(cache=True)
def span(
    X: np.ndarray,
    y: np.ndarray,
    logistic: bool,
    l2: float,
    ring: np.ndarray,
    acc: np.ndarray,
    g: np.ndarray,
    ist: np.ndarray,
    upd: np.ndarray,
    ver: np.ndarray,
    steps: np.ndarray,
    idx: np.ndarray,
    pos: int,
    every: int,
    last_update: int,
    mean: bool,
) -> int:
    """Apply rows ``pos..`` of a block; return early (the next row) after finalising an update to record."""
    S = ring.shape[0]
    d = ring.shape[1]
    full = idx.shape[1] == 0
    nb = X.shape[0] if full else idx.shape[1]
    pend = ist[PEND]
    count = ist[COUNT]
    last = ist[LAST]
    ist[RECORDED] = -1
    i = pos
    while i < upd.size:
        u = upd[i]
        if u != pend:
            if count > 0:
                finalize(ring, acc, pend, count, mean)
                last = pend
                count = 0
                if pend % every == 0 or pend == last_update:
                    ist[PEND] = pend
                    ist[COUNT] = 0
                    ist[LAST] = last
                    ist[RECORDED] = pend
                    return i
            while last < u - 1:  # updates that applied no gradient leave w unchanged
                ring[(last + 1) % S, :] = ring[last % S, :]
                last += 1
            pend = u
            acc[:] = 0.0
        w = ring[ver[i] % S]
        g[:] = 0.0
        for s in range(nb):
            j = s if full else idx[i, s]
            z = 0.0
            for k in range(d):
                z += X[j, k] * w[k]
            r = 0.5 * (1.0 + math.tanh(0.5 * z)) - y[j] if logistic else z - y[j]
            for k in range(d):
                g[k] += r * X[j, k]
        step = steps[i]
        for k in range(d):
            acc[k] += step * (g[k] / nb + l2 * w[k])
        count += 1
        i += 1
    ist[PEND] = pend
    ist[COUNT] = count
    ist[LAST] = last
    return i
