"""The streamed loop of ringmaster with fixed delays, compiled with numba (imported lazily by
:mod:`stalegrad.sim.ring`).

Ringmaster is k-async with ``K = 1`` whose master drops a gradient of delay ``>= R`` and, at each update, sends the
new version to every worker whose round in progress has delay ``>= R`` (once a round): the *stop*, which abandons
the round when it reaches the worker (:mod:`.events`). With fixed delays each worker's gradients reach the master in
the order it sent them, and the versions sent to it reach it in the order they were sent, so each worker keeps two
queues (gradients in flight, versions in flight) and the events left are their heads: a winner tree over the
workers gives them in the reference's order (time, then arrivals before versions, then worker). Two events of the
reference need no event here:

* a *finish* changes only its worker: the gradient of the round in progress is taken as arriving at its finish +
  uplink unless a version reaching the worker first abandons the round; a version reaching the worker, or the
  round's arrival, finishes it first when its finish time has come (a finish comes before anything else at its
  instant);
* the *version a gradient's arrival sends back*, when nothing else is travelling to or from that worker: the worker
  is idle until it comes, so its next round starts then, for sure. It is started at once (its start in the future:
  the stops look only at rounds started before now, and finished after).

The stops: a lower bound of the versions of the rounds not stopped yet (``key``, per worker) says when an update
must look for rounds to stop. A round that starts and arrives at one instant (zero compute time and uplink delay)
needs the reference's order: the loop returns :data:`DEGENERATE` and the caller runs the event loop. Before it takes
an event the loop checks what it will need (a compute time, room in the histogram and the queues), else returns a
status with nothing changed. It keeps the Summary's statistics (mode 1 of :mod:`._events_kernel`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# statuses returned to the caller (as in _events_kernel)
DONE, PAUSE, REFILL_COMPUTE, REFILL_UP, REFILL_DOWN, GROW_ROWS = range(6)
GROW_HIST = 10
DEGENERATE = 22  # a round that starts and arrives at one instant: the event loop's order is needed
GROW_QUEUE = 25  # a worker's queue is almost full: every queue twice as long

# integer state (ist); FULL: some queue has fewer than two free places; SLB: at most the version of every round in
# progress not stopped yet (no stop to look for while an update is fewer than R versions ahead of it)
V, EVENTS, ROWS, WHO, NEED, MAXTAU, GRAD, DROPPED, LIMIT, STARTED, FULL, SLB = range(12)
NIST = 12
# float state (fst): time of update `warm`, of the last update, the last event; compute time of the dropped
T_WARM, T_END, NOW, DROPT = range(4)
NFST = 4
N, U, RR, WARM, NB, SPAN = range(6)  # parameters (par)
NPAR = 6
UPFIX, DOWNFIX = range(2)  # float parameters (fpar)
# per-worker integer state (wi): its compute times C[CPOS:CEND] (UPOS..DEND unused); its round in progress (BUSY,
# its version USED, STOPPED once a stop was sent for it); the newest version that reached it; its queues' heads and
# lengths (GH, GN: gradients in flight; RH, RN: versions travelling to it)
CPOS, CEND, UPOS, UEND, DPOS, DEND, BUSY, USED, STOPPED, REACHED, GH, GN, RH, RN = range(14)
NWI = 14
# per-worker float state (wf): compute time of its rounds finished, abandoned; its round: start, length
COMPUTE, CANCEL, START, X = range(4)
NWF = 4
# columns of the gradients in flight (gf): arrival, start, sent
GARR, GSTART, GSENT = range(3)
ARRIVE, REACH = 1, 2  # kinds, in the order they are taken at one instant
KIND_SHIFT = 32
WMASK = (1 << KIND_SHIFT) - 1
NONE = np.iinfo(np.int64).max  # key of a worker with no round to stop
INF_BITS = 0x7FF0000000000000  # +inf as int64 bits


@njit(cache=True, nogil=True, inline="always")
def _replay(hti, hw, m, i, t, h):
    """Worker ``i``'s first event is now at ``t`` (int64 bits), ``h = kind << 32 | i``: carry it up the winner tree
    (node ``j``: the first event below it, ``hti[j], hw[j]``; leaf ``m + i``), without branches."""
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


@njit(cache=True, nogil=True, inline="always")
def _first(i, wi, wf, gf, rt, gcap, rcap, up, ht, hti, hw, m):
    """Worker ``i``'s first event into the tree: the arrival of its first gradient in flight (or of its round in
    progress), or the first version to reach it; an arrival first at a tie."""
    a = np.inf
    if wi[i, GN] > 0:
        a = gf[i * gcap + wi[i, GH], GARR]
    elif wi[i, BUSY] != 0:
        a = (wf[i, START] + wf[i, X]) + up
    r = np.inf
    if wi[i, RN] > 0:
        r = rt[i * rcap + wi[i, RH]]
    if a <= r:
        ht[0] = a
        h = (np.int64(ARRIVE) << KIND_SHIFT) | i
    else:
        ht[0] = r
        h = (np.int64(REACH) << KIND_SHIFT) | i
    _replay(hti, hw, m, i, hti[0], h)


@njit(cache=True, nogil=True, inline="always")
def _push_reach(k, t, v, wi, rt, rv, rcap, ist):
    """Version ``v`` sent to worker ``k``, reaching it at ``t``: at the end of its queue."""
    e = k * rcap + ((wi[k, RH] + wi[k, RN]) & (rcap - 1))
    rt[e] = t
    rv[e] = v
    wi[k, RN] += 1
    if wi[k, RN] > rcap - 2:
        ist[FULL] = 1


@njit(cache=True, nogil=True, _nrt=False)
def advance_ring(
    par: np.ndarray,
    fpar: np.ndarray,
    ist: np.ndarray,
    fst: np.ndarray,
    wi: np.ndarray,
    wf: np.ndarray,
    C: np.ndarray,
    key: np.ndarray,  # per worker: the version of its round in progress while it may be stopped, else NONE
    gf: np.ndarray,  # per worker (i * gcap ...): a ring of its gradients in flight (GARR, GSTART, GSENT)
    gv: np.ndarray,  # ... their versions
    rt: np.ndarray,  # per worker (i * rcap ...): a ring of the versions travelling to it: reach time
    rv: np.ndarray,  # ... version
    ht: np.ndarray,
    hti: np.ndarray,
    hw: np.ndarray,
    hist: np.ndarray,
    bsum: np.ndarray,
    bcnt: np.ndarray,
    wsum: np.ndarray,
    wcnt: np.ndarray,
    trsum: np.ndarray,
) -> int:
    """Take events until ``par[U]`` updates (DONE), the progress limit (PAUSE), a request, or a case for the event
    loop (DEGENERATE). State between calls: ``ist``, ``fst``, ``wi``, ``wf``, ``key``, the queues and the tree."""
    n = par[N]
    updates = par[U]
    R = par[RR]
    warm = par[WARM]
    nb = par[NB]
    span = par[SPAN]
    up = fpar[UPFIX]
    down = fpar[DOWNFIX]
    m = ht.shape[0] // 2
    gcap = gf.shape[0] // n
    rcap = rt.shape[0] // n
    ntr = trsum.shape[0]
    ver = ist[V]
    slb = ist[SLB]
    if ist[STARTED] == 0:  # every worker starts a round at time 0 on version 0
        for i in range(n):
            if wi[i, CPOS] == wi[i, CEND]:
                ist[WHO] = i
                return REFILL_COMPUTE
        for i in range(n):
            if C[wi[i, CPOS]] + up == 0.0:
                return DEGENERATE
        for i in range(n):
            x = C[wi[i, CPOS]]
            wi[i, CPOS] += 1
            wf[i, START] = 0.0
            wf[i, X] = x
            wi[i, USED] = 0
            wi[i, BUSY] = 1
            key[i] = 0
            _first(i, wi, wf, gf, rt, gcap, rcap, up, ht, hti, hw, m)
        slb = 0
        ist[STARTED] = 1
    status = DONE
    while ver < updates:
        if ist[FULL] != 0:
            status = GROW_QUEUE
            break
        if ist[EVENTS] >= ist[LIMIT]:
            status = PAUSE
            break
        h = hw[1]
        i = h & WMASK
        now = ht[1]
        if (h >> KIND_SHIFT) == ARRIVE:
            inflight = wi[i, GN] > 0
            if inflight:
                g = i * gcap + wi[i, GH]
                st = gf[g, GSTART]
                sent = gf[g, GSENT]
                used = gv[g]
            else:  # the round in progress, finished by now
                st = wf[i, START]
                sent = st + wf[i, X]
                used = wi[i, USED]
            tau = ver - used
            drop = tau >= R
            last = not drop and ver + 1 == updates
            eager = not inflight and wi[i, RN] == 0 and not last  # the version sent back starts its next round
            if not drop and ver + 1 > warm and tau >= hist.shape[0]:
                ist[NEED] = tau + 1
                status = GROW_HIST
                break
            if eager:
                if wi[i, CPOS] == wi[i, CEND]:
                    ist[WHO] = i
                    status = REFILL_COMPUTE
                    break
                back = now + down
                if (back + C[wi[i, CPOS]]) + up == back:
                    status = DEGENERATE
                    break
            ist[EVENTS] += 1
            fst[NOW] = now
            if inflight:
                wi[i, GH] = (wi[i, GH] + 1) & (gcap - 1)
                wi[i, GN] -= 1
            else:
                wf[i, COMPUTE] += wf[i, X]
                wi[i, BUSY] = 0
                key[i] = NONE
            if drop:
                ist[DROPPED] += 1
                fst[DROPT] += sent - st
            else:
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
                ver = upd
                if ver == warm:
                    fst[T_WARM] = now
                fst[T_END] = now
                if last:  # the run stops with this arrival
                    break
            if eager:  # its next round starts when the version reaches it, on that version
                back = now + down
                wi[i, REACHED] = max(wi[i, REACHED], ver)
                c = wi[i, CPOS]
                wi[i, CPOS] = c + 1
                wf[i, START] = back
                wf[i, X] = C[c]
                wi[i, USED] = wi[i, REACHED]
                wi[i, BUSY] = 1
                wi[i, STOPPED] = 0
                key[i] = wi[i, REACHED]
                slb = min(slb, wi[i, REACHED])
            else:
                _push_reach(i, now + down, ver, wi, rt, rv, rcap, ist)
            if not drop and ver - slb >= R:  # the rounds this update stops, in worker order
                low = NONE
                for k in range(n):
                    kk = key[k]
                    if kk == NONE:
                        continue
                    if wf[k, START] + wf[k, X] <= now:  # finished by now: never stopped
                        key[k] = NONE
                        continue
                    if ver - kk >= R and wf[k, START] < now:
                        wi[k, STOPPED] = 1
                        key[k] = NONE
                        _push_reach(k, now + down, ver, wi, rt, rv, rcap, ist)
                        if k != i:
                            _first(k, wi, wf, gf, rt, gcap, rcap, up, ht, hti, hw, m)
                    else:
                        low = min(low, kk)
                slb = low
            _first(i, wi, wf, gf, rt, gcap, rcap, up, ht, hti, hw, m)
        else:  # a version reaches worker i
            e = i * rcap + wi[i, RH]
            v = rv[e]
            busy = wi[i, BUSY] != 0
            fin = busy and wf[i, START] + wf[i, X] <= now  # its round finished first
            reached = max(wi[i, REACHED], v)
            starts = (not busy or fin) or reached - wi[i, USED] >= R
            if starts:
                if wi[i, CPOS] == wi[i, CEND]:
                    ist[WHO] = i
                    status = REFILL_COMPUTE
                    break
                if (now + C[wi[i, CPOS]]) + up == now:
                    status = DEGENERATE
                    break
            ist[EVENTS] += 1
            fst[NOW] = now
            wi[i, RH] = (wi[i, RH] + 1) & (rcap - 1)
            wi[i, RN] -= 1
            if fin:  # its gradient is on its way
                st = wf[i, START]
                sent = st + wf[i, X]
                g = i * gcap + ((wi[i, GH] + wi[i, GN]) & (gcap - 1))
                gf[g, GARR] = sent + up
                gf[g, GSTART] = st
                gf[g, GSENT] = sent
                gv[g] = wi[i, USED]
                wi[i, GN] += 1
                if wi[i, GN] > gcap - 2:
                    ist[FULL] = 1
                wf[i, COMPUTE] += wf[i, X]
                wi[i, BUSY] = 0
                key[i] = NONE
            elif busy and starts:  # abandoned
                wf[i, CANCEL] += now - wf[i, START]
            wi[i, REACHED] = reached
            if starts:
                c = wi[i, CPOS]
                wi[i, CPOS] = c + 1
                wf[i, START] = now
                wf[i, X] = C[c]
                wi[i, USED] = reached
                wi[i, BUSY] = 1
                wi[i, STOPPED] = 0
                key[i] = reached
                slb = min(slb, reached)
            _first(i, wi, wf, gf, rt, gcap, rcap, up, ht, hti, hw, m)
    ist[V] = ver
    ist[SLB] = slb
    if ver < updates:
        return status
    # the run stops at the last update: the rounds finished by then count
    if ist[STARTED] == 1:
        end = fst[T_END]
        for i in range(n):
            if wi[i, BUSY] != 0 and wf[i, START] + wf[i, X] <= end:
                wf[i, COMPUTE] += wf[i, X]
        ist[STARTED] = 2
    return DONE
