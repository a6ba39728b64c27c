"""The streamed loop of k-async with fixed delays, compiled with numba (imported lazily by
:mod:`stalegrad.sim.waiting`).

Under k-async a worker sends its gradient and waits for a version, which the master sends it only when that
gradient is taken into an update (or dropped, by a staleness bound): each worker has exactly one round in flight,
and with fixed delays its next gradient arrives at ``((r + x) + uplink)``, where ``r`` is when the version it waits
for reaches it and ``x`` its next compute time. So the events that matter are the arrivals, one per worker: a
winner tree over the workers gives them in the reference's order (time, then worker), and the rest (finishes, a
version reaching a worker) needs no event of its own. Nothing else changes: the staleness statistics of the
Summary (mode 1 of :mod:`._events_kernel`), the compute time of each worker's rounds in order, the compute time of
the dropped gradients in arrival order.

One case is not this simple: a round that a version starts and that arrives at the very instant the version
reaches the worker (a zero compute time and a zero uplink delay) is taken by the reference after every other
gradient arriving then. The loop returns :data:`DEGENERATE` when it meets one, and the caller runs the event loop.

The loop never stops in the middle of an event: before it takes an arrival it checks that every worker it would
restart has a compute time left (and the histogram room for the staleness), else it returns a status with nothing
changed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# statuses returned to the caller (as in _events_kernel)
DONE, PAUSE, REFILL_COMPUTE, REFILL_UP, REFILL_DOWN, GROW_ROWS = range(6)
GROW_HIST = 10
DEGENERATE = 22  # an arrival at the instant its round started: the event loop's order is needed

# integer state (ist)
V, EVENTS, ROWS, WHO, NEED, MAXTAU, GRAD, DROPPED, LIMIT, STARTED, BC = range(11)
NIST = 11
# float state (fst): time of update `warm`, of the last update, the last arrival; compute time of the dropped
T_WARM, T_END, NOW, DROPT = range(4)
NFST = 4
# parameters (par)
N, KK, U, BOUND, WARM, NB, SPAN = range(7)
NPAR = 7
UPFIX, DOWNFIX = range(2)  # float parameters (fpar)
# per-worker integer state (wi): its compute times C[CPOS:CEND]; the version of its round; UPOS..DEND unused
CPOS, CEND, UPOS, UEND, DPOS, DEND, USED = range(7)
NWI = 7
# per-worker float state (wf): compute time of its rounds finished, cancelled (none); its round: start, length
COMPUTE, CANCEL, START, X = range(4)
NWF = 4
INF_BITS = 0x7FF0000000000000  # +inf as int64 bits


@njit(cache=True, nogil=True, inline="always")
def _replay(hti, hw, m, i, t, h):
    """Worker ``i``'s next arrival is now at ``t`` (int64 bits; ``INF_BITS`` while it waits): carry it up the winner
    tree (node ``j``: the first arrival below it, ``hti[j], hw[j]``; leaf ``m + i``), without branches."""
    j = m + i
    hti[j] = t
    hw[j] = h
    while j > 1:
        ts = hti[j ^ 1]
        hs = hw[j ^ 1]
        first = (t < ts) | ((t == ts) & (h < hs))
        t = t if first else ts
        h = h if first else hs
        j >>= 1
        hti[j] = t
        hw[j] = h


@njit(cache=True, nogil=True, _nrt=False)
def advance_waiting(
    par: np.ndarray,
    fpar: np.ndarray,
    ist: np.ndarray,
    fst: np.ndarray,
    wi: np.ndarray,
    wf: np.ndarray,
    C: np.ndarray,
    ht: np.ndarray,
    hti: np.ndarray,
    hw: np.ndarray,
    batch: np.ndarray,
    hist: np.ndarray,
    bsum: np.ndarray,
    bcnt: np.ndarray,
    wsum: np.ndarray,
    wcnt: np.ndarray,
    trsum: np.ndarray,
) -> int:
    """Take arrivals until ``par[U]`` updates (DONE), the progress limit (PAUSE), a request, or a case for the event
    loop (DEGENERATE). State between calls: ``ist``, ``fst``, ``wi``, ``wf``, the tree and ``batch``."""
    n = par[N]
    K = par[KK]
    updates = par[U]
    bound = par[BOUND]
    warm = par[WARM]
    nb = par[NB]
    span = par[SPAN]
    up = fpar[UPFIX]
    down = fpar[DOWNFIX]
    m = ht.shape[0] // 2
    ntr = trsum.shape[0]
    ver = ist[V]
    if ist[STARTED] == 0:  # every worker starts a round at time 0 on version 0
        for i in range(n):
            if wi[i, CPOS] == wi[i, CEND]:
                ist[WHO] = i
                return REFILL_COMPUTE
        for i in range(n):
            x = C[wi[i, CPOS]]
            wi[i, CPOS] += 1
            wf[i, START] = 0.0
            wf[i, X] = x
            wi[i, USED] = 0
            ht[0] = (0.0 + x) + up  # (all of them start before any event: no order to keep here)
            _replay(hti, hw, m, i, hti[0], i)
        ist[STARTED] = 1
    while ver < updates:
        if ist[EVENTS] >= ist[LIMIT]:
            return PAUSE
        i = hw[1]
        now = ht[1]
        tau = ver - wi[i, USED]
        bc = ist[BC]
        dropped = bound >= 0 and tau > bound
        # what this arrival needs: a compute time for each worker it restarts; room for its staleness
        if dropped:
            if wi[i, CPOS] == wi[i, CEND]:
                ist[WHO] = i
                return REFILL_COMPUTE
        else:
            if ver + 1 > warm and tau >= hist.shape[0]:
                ist[NEED] = tau + 1
                return GROW_HIST
            if bc + 1 == K:
                for j in range(bc):
                    w = batch[j]
                    if wi[w, CPOS] == wi[w, CEND]:
                        ist[WHO] = w
                        return REFILL_COMPUTE
                if wi[i, CPOS] == wi[i, CEND]:
                    ist[WHO] = i
                    return REFILL_COMPUTE
        ist[EVENTS] += 1
        fst[NOW] = now
        st = wf[i, START]
        x = wf[i, X]
        wf[i, COMPUTE] += x  # (it finished by now)
        if dropped:  # the master sends it its version, which restarts it
            ist[DROPPED] += 1
            fst[DROPT] += (st + x) - st
            r = now + down
            c = wi[i, CPOS]
            x = C[c]
            wi[i, CPOS] = c + 1
            wf[i, START] = r
            wf[i, X] = x
            wi[i, USED] = ver
            a = (r + x) + up
            if a == r:
                return DEGENERATE
            ht[0] = a
            _replay(hti, hw, m, i, hti[0], i)
            continue
        upd = ver + 1
        ist[GRAD] += 1
        if tau > ist[MAXTAU]:
            ist[MAXTAU] = tau
        if upd <= ntr:
            trsum[upd - 1] += tau
        if upd > warm:
            bidx = (ver - warm) * nb // span if ver >= warm else 0
            hist[tau] += 1
            bsum[bidx] += tau
            bcnt[bidx] += 1
            wsum[i] += tau
            wcnt[i] += 1
        batch[bc] = i
        bc += 1
        _replay(hti, hw, m, i, INF_BITS, i)  # it waits for the update
        if bc < K:
            ist[BC] = bc
            continue
        ist[BC] = 0
        ver += 1
        ist[V] = ver
        if ver == warm:
            fst[T_WARM] = now
        fst[T_END] = now
        if ver == updates:  # the run stops with this arrival: nobody restarts
            break
        r = now + down
        for j in range(K):  # the new version restarts the contributors
            w = batch[j]
            c = wi[w, CPOS]
            x = C[c]
            wi[w, CPOS] = c + 1
            wf[w, START] = r
            wf[w, X] = x
            wi[w, USED] = ver
            a = (r + x) + up
            if a == r:
                return DEGENERATE
            ht[0] = a
            _replay(hti, hw, m, w, hti[0], w)
    if ver < updates:
        return DONE
    # the run stops at the last update: the rounds finished by then count (one each, in flight)
    end = fst[T_END]
    if ist[STARTED] == 1:
        for i in range(n):
            if hti[m + i] != INF_BITS and wf[i, START] + wf[i, X] <= end:
                wf[i, COMPUTE] += wf[i, X]
        ist[STARTED] = 2
    return DONE
