"""The compiled event loop for protocols whose workers never wait and never cancel (k-batch-async).

Such a worker's rounds follow each other whatever the master does, so its finishes need not wait their turn: a
worker's finishes are taken ahead, in round order, as long as they come no later than its first gradient in flight
(a finish at the same time as an arrival comes first in the reference too), and only arrivals go through the
tournament tree. The one thing a finish reads from the rest of the system, the newest version that reached the
worker strictly before the next round starts, is found later, when the master takes one of the worker's gradients:
every version that can reach the worker before a round that started by then has been sent by then. Versions are
found in round order (the reach times they read are consumed from the worker's heap of versions in time order).

Each worker keeps its rounds in flight in a ring indexed by round number (start, send time, version, and the
worker's compute time before the round, so that the compute time of the rounds the reference finished is exact
when the run stops with finishes taken ahead).

Counting as the reference does: finishes taken ahead that the reference would not have taken by the last update
(send time after it) are subtracted by the caller, the versions that reached workers before the last update are
added; see :meth:`stalegrad.sim.compiled._Engine.count_pending`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._events_kernel import (
    AN,
    APPLIED,
    ARRIVE,
    BC,
    BOUND,
    COMPUTE,
    CPOS,
    DN,
    DONE,
    DOWNFIX,
    DOWNRAND,
    DPOS,
    DEND,
    DROPPED,
    EVENTS,
    FT,
    GRAD,
    GROW_ARRIVE,
    GROW_DEAD,
    GROW_HIST,
    GROW_REACH,
    GROW_ROWS,
    INF_BITS,
    KIND_SHIFT,
    KK,
    LIMIT,
    MAXTAU,
    MODE,
    N,
    NB,
    NEED,
    NOW,
    PAUSE,
    PEND,
    PENDEND,
    NR,
    RH,
    RBITS,
    REACHED,
    REFILL_COMPUTE,
    REFILL_DOWN,
    REFILL_UP,
    RN,
    RND,
    ROWS,
    SPAN,
    STALE,
    START,
    STARTED,
    T_END,
    T_WARM,
    U,
    UEND,
    UPFIX,
    UPOS,
    UPRAND,
    V,
    VNEXT,
    WARM,
    WHO,
    CEND,
    X,
    _hpop,
    _hpush,
    _replay,
)

# ring columns: floats (rf) and ints (ri)
RSTART, RSENT, RXPRE = range(3)
RVER, RROUND = range(2)


@njit(cache=True, nogil=True, _nrt=False)  # no reference counting in the loop (see _events_kernel)
def advance_batch_async(
    par: np.ndarray,
    fpar: np.ndarray,
    ist: np.ndarray,
    fst: np.ndarray,
    wi: np.ndarray,
    wf: np.ndarray,
    C: np.ndarray,
    UB: np.ndarray,
    DB: np.ndarray,
    aht: np.ndarray,  # per-worker heaps of gradients in flight (worker i: i * acap ...): arrival time
    ahk: np.ndarray,  # ... key
    ahs: np.ndarray,  # ... (unused)
    rht: np.ndarray,  # per-worker queues of the versions that may still be the newest to reach the worker before
    rhk: np.ndarray,  # a round starts (worker i: a ring at i * rcap, head RH, length RN): reach time and version
    rhs: np.ndarray,  # (unused)
    dht: np.ndarray,  # reach times of versions overtaken on the way (left out of the queues), not yet counted
    wt: np.ndarray,  # winner tree over the workers' first arrivals: int64 bit patterns of the times (root at 1,
    wk: np.ndarray,  # leaves at m + i; times are >= 0, so the bit patterns order as the floats) and keys
    wtf: np.ndarray,  # wt seen as floats
    ahti: np.ndarray,  # aht seen as int64 bit patterns
    rf: np.ndarray,  # per-worker rings of rounds in flight (worker i, round r: i * acap + r % acap): floats
    ri: np.ndarray,  # ... ints: version (-1 until found), round number (0: free)
    o_worker: np.ndarray,
    o_round: np.ndarray,
    o_start: np.ndarray,
    o_sent: np.ndarray,
    o_arrive: np.ndarray,
    o_version: np.ndarray,
    o_update: np.ndarray,
    o_tau: np.ndarray,
    o_dropped: np.ndarray,
    o_times: np.ndarray,
    hist: np.ndarray,
    bsum: np.ndarray,
    bcnt: np.ndarray,
    wsum: np.ndarray,
    wcnt: np.ndarray,
    trsum: np.ndarray,
) -> int:
    n = par[N]
    K = par[KK]
    updates = par[U]
    bound = par[BOUND]
    rbits = par[RBITS]
    mode = par[MODE]
    warm = par[WARM]
    nb = par[NB]
    span = par[SPAN]
    uprand = par[UPRAND] != 0
    downrand = par[DOWNRAND] != 0
    upfix = fpar[UPFIX]
    downfix = fpar[DOWNFIX]
    rmask = (np.int64(1) << rbits) - 1
    wmask = (np.int64(1) << (KIND_SHIFT - rbits)) - 1
    karr = np.int64(ARRIVE) << KIND_SHIFT
    m = wt.shape[0] // 2
    acap = aht.shape[0] // n
    amask = acap - 1
    rcap = rht.shape[0] // n
    rmask2 = rcap - 1
    dcap = dht.shape[0]
    ntr = trsum.shape[0]
    rcount = o_worker.shape[0]

    ver = ist[V]
    bc = ist[BC]
    events = ist[EVENTS]
    rows = ist[ROWS]
    maxtau = ist[MAXTAU]
    grad = ist[GRAD]
    dropped = ist[DROPPED]
    limit = ist[LIMIT]
    dn = ist[DN]
    nr = ist[NR]
    now = fst[NOW]
    status = DONE

    if ist[STARTED] == 0:  # every worker starts its first round at time 0, on version 0; all need their finishes
        for j in range(2 * m):
            wt[j] = INF_BITS
            wk[j] = np.iinfo(np.int64).max
        for i in range(n):
            c = wi[i, CPOS]
            x = C[c]
            wi[i, CPOS] = c + 1
            wi[i, RND] = 1
            wi[i, VNEXT] = 1
            wf[i, START] = 0.0
            wf[i, X] = x
            wf[i, FT] = 0.0 + x
        ist[STARTED] = 1
        ist[PEND] = 0
        ist[PENDEND] = n  # workers from PEND to PENDEND - 1 need their finishes taken

    while ver < updates:
        # take ahead the finishes of the workers that need it (the last arrival's worker, or all at the start)
        while ist[PEND] < ist[PENDEND]:
            i = ist[PEND]
            b = i * acap
            while wi[i, AN] == 0 or wf[i, FT] <= aht[b]:
                r = wi[i, RND]
                q = b + (r & amask)
                if ri[q, RROUND] != 0:
                    status = GROW_ARRIVE
                    break
                if uprand and wi[i, UPOS] == wi[i, UEND]:
                    ist[WHO] = i
                    status = REFILL_UP
                    break
                if wi[i, CPOS] == wi[i, CEND]:
                    ist[WHO] = i
                    status = REFILL_COMPUTE
                    break
                events += 1
                st = wf[i, START]
                x = wf[i, X]
                sent = st + x
                rf[q, RSTART] = st
                rf[q, RSENT] = sent
                rf[q, RXPRE] = wf[i, COMPUTE]
                ri[q, RVER] = -1
                ri[q, RROUND] = r
                wf[i, COMPUTE] += x
                if uprand:
                    u = wi[i, UPOS]
                    d = UB[u]
                    wi[i, UPOS] = u + 1
                else:
                    d = upfix
                an = wi[i, AN]
                _hpush(aht, ahk, ahs, b, an, sent + d, karr | (np.int64(i) << rbits) | r, 0)
                wi[i, AN] = an + 1
                c = wi[i, CPOS]
                x = C[c]
                wi[i, CPOS] = c + 1
                wi[i, RND] = r + 1
                wf[i, START] = sent
                wf[i, X] = x
                wf[i, FT] = sent + x
            if status != DONE:
                break
            _replay(wt, wk, m, i, ahti[b], ahk[b])
            ist[PEND] += 1
        if status != DONE:
            break
        if events >= limit:
            status = PAUSE
            break

        t = wtf[1]
        key = wk[1]
        i = (key >> rbits) & wmask
        r = key & rmask
        b = i * acap
        q = b + (r & amask)

        # the versions of the worker's rounds up to this one: those that reached it strictly before each started
        vn = wi[i, VNEXT]
        if vn <= r:
            reached = wi[i, REACHED]
            rb = i * rcap
            rh = wi[i, RH]
            rn = wi[i, RN]
            while vn <= r:
                qq = b + (vn & amask)
                st = rf[qq, RSTART]
                while rn > 0 and rht[rb + rh] < st:  # versions in the queue: increasing times and versions
                    reached = rhk[rb + rh]
                    rh = (rh + 1) & rmask2
                    rn -= 1
                    events += 1
                ri[qq, RVER] = reached
                vn += 1
            nr -= wi[i, RN] - rn
            wi[i, RH] = rh
            wi[i, RN] = rn
            wi[i, REACHED] = reached
            wi[i, VNEXT] = vn

        v = ri[q, RVER]
        tau = ver - v
        applied = not (bound >= 0 and tau > bound)
        if mode == 0 and rows >= rcount:
            status = GROW_ROWS
            break
        if applied:
            if mode == 1 and ver + 1 > warm and tau >= hist.shape[0]:
                ist[NEED] = tau + 1
                status = GROW_HIST
                break
            if bc + 1 == K:  # the update: every worker needs a downlink delay and room for the version
                if dn + nr > dcap:  # versions overtaken: count those reached by now, keep the others
                    keep = 0
                    for j in range(dn):
                        if dht[j] < t:
                            events += 1
                        else:
                            dht[keep] = dht[j]
                            keep += 1
                    dn = keep
                    if dn + nr > dcap:
                        ist[NEED] = dn + nr
                        status = GROW_DEAD
                        break
                missing = -1
                for k in range(n):
                    if wi[k, RN] == rcap:
                        status = GROW_REACH
                        break
                    if downrand and wi[k, DPOS] == wi[k, DEND]:
                        missing = k
                        break
                if status != DONE:
                    break
                if missing >= 0:
                    ist[WHO] = missing
                    status = REFILL_DOWN
                    break
        events += 1
        now = t
        _hpop(aht, ahk, ahk, b, wi[i, AN])
        wi[i, AN] -= 1
        ri[q, RROUND] = 0
        st = rf[q, RSTART]
        sent = rf[q, RSENT]
        if applied:
            upd = ver + 1
            grad += 1
            if tau > maxtau:
                maxtau = tau
        else:
            upd = -1
            dropped += 1
        if mode == 0:
            o_worker[rows] = i
            o_round[rows] = r
            o_start[rows] = st
            o_sent[rows] = sent
            o_arrive[rows] = now
            o_version[rows] = v
            o_update[rows] = upd
            o_tau[rows] = tau
            o_dropped[rows] = APPLIED if applied else STALE
        elif applied:
            if upd <= ntr:
                trsum[upd - 1] += tau
            if upd > warm:
                bb = (upd - warm - 1) * nb // span
                hist[tau] += 1
                bsum[bb] += tau
                bcnt[bb] += 1
                wsum[i] += tau
                wcnt[i] += 1
        rows += 1
        if applied:
            bc += 1
            if bc == K:
                ver += 1
                bc = 0
                if mode == 0:
                    o_times[ver - 1] = now
                if ver == warm:
                    fst[T_WARM] = now
                fst[T_END] = now
                for k in range(n):
                    if downrand:
                        dp = wi[k, DPOS]
                        d = DB[dp]
                        wi[k, DPOS] = dp + 1
                    else:
                        d = downfix
                    tr = now + d
                    rb = k * rcap
                    rh = wi[k, RH]
                    rn = wi[k, RN]
                    # a version that reaches the worker no earlier than this newer one never is its newest
                    while rn > 0 and rht[rb + ((rh + rn - 1) & rmask2)] >= tr:
                        rn -= 1
                        dht[dn] = rht[rb + ((rh + rn) & rmask2)]
                        dn += 1
                        nr -= 1
                    e = rb + ((rh + rn) & rmask2)
                    rht[e] = tr
                    rhk[e] = ver
                    wi[k, RN] = rn + 1
                    nr += 1
        ist[PEND] = i
        ist[PENDEND] = i + 1

    ist[V] = ver
    ist[BC] = bc
    ist[DN] = dn
    ist[NR] = nr
    ist[EVENTS] = events
    ist[ROWS] = rows
    ist[MAXTAU] = maxtau
    ist[GRAD] = grad
    ist[DROPPED] = dropped
    fst[NOW] = now
    return status
