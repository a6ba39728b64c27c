"""The compiled loop of the protocol that stops rounds (ringmaster), imported lazily by
:mod:`stalegrad.sim.heap_engine`.

It is :mod:`stalegrad.sim.events` line for line, on arrays: one binary heap of events ordered by
``(time, key, sequence)`` where the key packs ``(kind, worker, round)`` as in :mod:`._events_kernel`
(``kind << 61 | worker << rbits | round``; a version reaching a worker has the version as its round), so events come
in the reference's order, the sequence number deciding only between two identical sends. An event carries two
floats and an integer: a finish, its compute time; an arrival, the round's start, send time and version. A
cancelled round's finish stays in the heap and is ignored when it comes (and counted, as the reference counts it).

Before it takes an event the loop checks what the event will need (a compute time, a delay, room for rows or heap
entries) and, if something is missing, returns a status with nothing changed; the caller supplies it and calls
again. So every stream is read in the reference's order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

DONE, PAUSE, REFILL_COMPUTE, REFILL_UP, REFILL_DOWN, GROW_ROWS, GROW_HEAP, GROW_HIST = range(8)
FINISH, ARRIVE, REACH = 0, 1, 2
KIND_SHIFT = 61
APPLIED, STALE, LATE = 0, 1, 2  # as stalegrad.trace

# par
N, KK, U, WAITS, CANCELS, CURONLY, TOCONTRIB, STOPS, BOUND, RR, RBITS, UPRAND, DOWNRAND = range(13)
MODE, WARM, NB, SPAN = range(13, 17)  # mode 0: rows; mode 1: the Summary's statistics (as _events_kernel)
NPAR = 17
UPFIX, DOWNFIX = range(2)  # fpar
# ist
V, BC, EVENTS, ROWS, WHO, HN, SEQ, STARTED, GRAD, DROPPED, MAXTAU, LIMIT, EMPTY, NEED = range(14)
NIST = 14
NOW, DROPT, T_WARM, T_END = range(4)  # fst
NFST = 4
# per-worker ints (wi) and floats (wf)
REACHED, RND, USED, BUSY, STOPPED, CPOS, CEND, UPOS, UEND, DPOS, DEND = range(11)
NWI = 11
START, COMPUTE, CANCEL = range(3)
NWF = 3


@njit(cache=True, nogil=True, inline="always")
def _before(t1, k1, s1, t2, k2, s2):
    return (t1 < t2) | ((t1 == t2) & ((k1 < k2) | ((k1 == k2) & (s1 < s2))))


@njit(cache=True, nogil=True, inline="always")
def _push(ist, ht, hk, hs, ha, hb, hv, t, k, a, b, v):
    """Add an event to the heap (sifted up as in :mod:`heapq`)."""
    s = ist[SEQ]
    ist[SEQ] = s + 1
    j = ist[HN]
    ist[HN] = j + 1
    while j > 0:
        p = (j - 1) >> 1
        if _before(t, k, s, ht[p], hk[p], hs[p]):
            ht[j], hk[j], hs[j], ha[j], hb[j], hv[j] = ht[p], hk[p], hs[p], ha[p], hb[p], hv[p]
            j = p
        else:
            break
    ht[j], hk[j], hs[j], ha[j], hb[j], hv[j] = t, k, s, a, b, v


@njit(cache=True, nogil=True, inline="always")
def _pop(ist, ht, hk, hs, ha, hb, hv):
    """Remove the first event (its fields were read from index 0 before)."""
    n = ist[HN] - 1
    ist[HN] = n
    if n == 0:
        return
    t, k, s, a, b, v = ht[n], hk[n], hs[n], ha[n], hb[n], hv[n]
    j = 0
    c = 1
    while c < n:
        if c + 1 < n and _before(ht[c + 1], hk[c + 1], hs[c + 1], ht[c], hk[c], hs[c]):
            c += 1
        if not _before(ht[c], hk[c], hs[c], t, k, s):
            break
        ht[j], hk[j], hs[j], ha[j], hb[j], hv[j] = ht[c], hk[c], hs[c], ha[c], hb[c], hv[c]
        j = c
        c = 2 * j + 1
    ht[j], hk[j], hs[j], ha[j], hb[j], hv[j] = t, k, s, a, b, v


@njit(cache=True, nogil=True, inline="always")
def _start(i, version, now, rbits, wi, wf, C, ist, ht, hk, hs, ha, hb, hv):
    """Worker ``i`` starts a round now on ``version`` (a compute time is known to be there)."""
    c = wi[i, CPOS]
    x = C[c]
    wi[i, CPOS] = c + 1
    r = wi[i, RND] + 1
    wi[i, RND] = r
    wf[i, START] = now
    wi[i, USED] = version
    wi[i, BUSY] = 1
    key = (np.int64(FINISH) << KIND_SHIFT) | (np.int64(i) << rbits) | r
    _push(ist, ht, hk, hs, ha, hb, hv, now + x, key, x, 0.0, 0)


@njit(cache=True, nogil=True, inline="always")
def _send(i, version, now, rbits, downrand, downfix, wi, DB, ist, ht, hk, hs, ha, hb, hv):
    if downrand:
        d = DB[wi[i, DPOS]]
        wi[i, DPOS] += 1
    else:
        d = downfix
    key = (np.int64(REACH) << KIND_SHIFT) | (np.int64(i) << rbits) | version
    _push(ist, ht, hk, hs, ha, hb, hv, now + d, key, 0.0, 0.0, 0)


@njit(cache=True, nogil=True, _nrt=False)  # no reference counting (it allocates nothing), as _events_kernel
def advance_heap(par, fpar, ist, fst, wi, wf, C, UB, DB, batch, ht, hk, hs, ha, hb, hv,
                 o_worker, o_round, o_start, o_sent, o_arrive, o_version, o_update, o_tau, o_dropped,
                 o_times, hist, bsum, bcnt, wsum, wcnt, trsum):  # fmt: skip
    n, K, updates = par[N], par[KK], par[U]
    waits, cancels, curonly = par[WAITS] != 0, par[CANCELS] != 0, par[CURONLY] != 0
    tocontrib, stops = par[TOCONTRIB] != 0, par[STOPS] != 0
    bound, R, rbits = par[BOUND], par[RR], par[RBITS]
    uprand, downrand = par[UPRAND] != 0, par[DOWNRAND] != 0
    upfix, downfix = fpar[UPFIX], fpar[DOWNFIX]
    mode, warm, nb, span = par[MODE], par[WARM], par[NB], par[SPAN]
    ntr = trsum.shape[0]
    rmask = (np.int64(1) << rbits) - 1
    wmask = (np.int64(1) << (KIND_SHIFT - rbits)) - 1
    cap = ht.shape[0]
    if ist[STARTED] == 0:  # every active worker starts its first round at time 0, on version 0
        for i in range(n):
            _start(i, 0, 0.0, rbits, wi, wf, C, ist, ht, hk, hs, ha, hb, hv)
        ist[STARTED] = 1
    while ist[V] < updates:
        if ist[HN] == 0:
            ist[EMPTY] = 1
            return DONE
        if ist[HN] + 2 * n + 2 > cap:
            return GROW_HEAP
        if ist[EVENTS] >= ist[LIMIT]:
            return PAUSE
        t, key, a, b, v = ht[0], hk[0], ha[0], hb[0], hv[0]
        kind = key >> KIND_SHIFT
        i = (key >> rbits) & wmask
        r = key & rmask
        ver = ist[V]
        reason = APPLIED
        tau = np.int64(0)
        reached = np.int64(0)
        busy = False
        starts = False
        # ------------------------------------------------------------------ what the event needs, first
        if kind == FINISH:
            live = r == wi[i, RND] and wi[i, BUSY] != 0
            if live and uprand and wi[i, UPOS] == wi[i, UEND]:
                ist[WHO] = i
                return REFILL_UP
            if live and not waits and wi[i, CPOS] == wi[i, CEND]:
                ist[WHO] = i
                return REFILL_COMPUTE
        elif kind == ARRIVE:
            if mode == 0 and ist[ROWS] >= o_worker.shape[0]:
                return GROW_ROWS
            tau = ver - v
            if curonly and v < ver:
                reason = LATE
            elif bound >= 0 and tau > bound:
                reason = STALE
            else:
                reason = APPLIED
            if mode == 1 and reason == APPLIED and ver + 1 > warm and tau >= hist.shape[0]:
                ist[NEED] = tau + 1
                return GROW_HIST
            if downrand and reason != APPLIED and waits and not curonly and wi[i, DPOS] == wi[i, DEND]:
                ist[WHO] = i
                return REFILL_DOWN
            if downrand and reason == APPLIED and ist[BC] + 1 == K:
                for k in range(n):
                    need = 0
                    if tocontrib:
                        for j in range(ist[BC]):
                            if batch[j] == k:
                                need += 1
                        if k == i:
                            need += 1
                    else:
                        need = 1
                    if stops and wi[k, BUSY] != 0 and ver + 1 - wi[k, USED] >= R and wi[k, STOPPED] != wi[k, RND]:
                        need += 1
                    if wi[k, DEND] - wi[k, DPOS] < need:
                        ist[WHO] = k
                        return REFILL_DOWN
        else:  # REACH
            reached = max(wi[i, REACHED], r)
            busy = wi[i, BUSY] != 0
            starts = (not busy and waits) or (
                busy and ((cancels and wi[i, USED] < reached) or (stops and reached - wi[i, USED] >= R))
            )
            if starts and wi[i, CPOS] == wi[i, CEND]:
                ist[WHO] = i
                return REFILL_COMPUTE
        # ------------------------------------------------------------------ the event
        _pop(ist, ht, hk, hs, ha, hb, hv)
        ist[EVENTS] += 1
        now = t
        fst[NOW] = now
        if kind == FINISH:
            if r != wi[i, RND] or wi[i, BUSY] == 0:
                continue  # the round was cancelled
            st = wf[i, START]
            sent = st + a
            wf[i, COMPUTE] += a
            if uprand:
                d = UB[wi[i, UPOS]]
                wi[i, UPOS] += 1
            else:
                d = upfix
            ka = (np.int64(ARRIVE) << KIND_SHIFT) | (np.int64(i) << rbits) | r
            _push(ist, ht, hk, hs, ha, hb, hv, sent + d, ka, st, sent, wi[i, USED])
            wi[i, BUSY] = 0
            if not waits:
                _start(i, wi[i, REACHED], now, rbits, wi, wf, C, ist, ht, hk, hs, ha, hb, hv)
        elif kind == ARRIVE:
            row = ist[ROWS]
            ist[ROWS] = row + 1
            if mode == 0:
                o_worker[row] = i
                o_round[row] = r
                o_start[row] = a
                o_sent[row] = b
                o_arrive[row] = now
                o_version[row] = v
                o_update[row] = ver + 1 if reason == APPLIED else -1
                o_tau[row] = tau
                o_dropped[row] = reason
            elif reason == APPLIED:  # the Summary's statistics of update ver + 1 (as Summary.from_trace)
                if ver + 1 <= ntr:
                    trsum[ver] += tau
                if ver + 1 > warm:
                    bidx = (ver - warm) * nb // span
                    hist[tau] += 1
                    bsum[bidx] += tau
                    bcnt[bidx] += 1
                    wsum[i] += tau
                    wcnt[i] += 1
            if reason != APPLIED:
                ist[DROPPED] += 1
                fst[DROPT] += b - a
                if waits and not curonly:  # a dropped worker must not wait forever
                    _send(i, ver, now, rbits, downrand, downfix, wi, DB, ist, ht, hk, hs, ha, hb, hv)
                continue
            ist[GRAD] += 1
            if tau > ist[MAXTAU]:
                ist[MAXTAU] = tau
            batch[ist[BC]] = i
            ist[BC] += 1
            if ist[BC] < K:
                continue
            ver += 1
            ist[V] = ver
            ist[BC] = 0
            if mode == 0:
                o_times[ver - 1] = now
            if ver == warm:
                fst[T_WARM] = now
            fst[T_END] = now
            for j in range(K if tocontrib else n):
                k = batch[j] if tocontrib else j
                _send(k, ver, now, rbits, downrand, downfix, wi, DB, ist, ht, hk, hs, ha, hb, hv)
            if stops:  # the new version to every round whose delay has reached R, once a round
                for k in range(n):
                    if wi[k, BUSY] != 0 and ver - wi[k, USED] >= R and wi[k, STOPPED] != wi[k, RND]:
                        wi[k, STOPPED] = wi[k, RND]
                        _send(k, ver, now, rbits, downrand, downfix, wi, DB, ist, ht, hk, hs, ha, hb, hv)
        else:  # REACH: version r reaches worker i
            wi[i, REACHED] = reached
            if starts:
                if busy:  # cancelled or stopped: its finish is ignored when it comes
                    wf[i, CANCEL] += now - wf[i, START]
                _start(i, reached, now, rbits, wi, wf, C, ist, ht, hk, hs, ha, hb, hv)
    return DONE
