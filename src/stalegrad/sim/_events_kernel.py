"""The event engine's loop, compiled with numba (imported lazily by :mod:`stalegrad.sim.compiled`).

The same events, handlers and tie rules as :mod:`stalegrad.sim.events`, on arrays:

* the heap is three parallel arrays (time, key, slot), a binary heap ordered by ``(time, key)``. The key packs
  ``(kind, worker, round)`` into one int64 (``kind << 61 | worker << rbits | round``), so ``(time, key)`` orders
  events exactly as the reference's ``(time, kind, worker, round, sequence)`` tuples: no two events ever share
  ``(kind, worker, round)`` (a worker's rounds are numbered once; a worker is sent each version at most once), so
  the sequence number never decides;
* a gradient in flight keeps its start, send time and version in a pool slot (a free list of slots);
* each worker's compute times, uplink and downlink delays come in buffers the caller fills.

The loop never runs out of anything in the middle of an event: before it takes the first event it checks what the
event will need (a compute time, a delay, room for a row, the heap, the pool, the histogram) and, if something is
missing, returns a status code with nothing changed; the caller supplies it and calls again. So the draws are
taken from each stream in exactly the reference's order, and a block is drawn only when the reference draws it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# statuses returned to the caller
DONE, PAUSE, REFILL_COMPUTE, REFILL_UP, REFILL_DOWN, GROW_ROWS, GROW_HEAP, GROW_POOL, GROW_HIST = range(9)

# kinds of event, in the order they are taken at one instant (as in events.py)
FINISH, ARRIVE, REACH = 0, 1, 2
KIND_SHIFT = 61

# integer state (ist)
V, BC, HN, PFN, EVENTS, ROWS, WHO, NEED, MAXTAU, GRAD, DROPPED, LIMIT, STARTED = range(13)
NIST = 13
# float state (fst)
T_WARM, T_END = range(2)
NFST = 2
# parameters (par)
N, KK, U, WAITS, CANCELS, CURONLY, TOCONTRIB, BOUND, RBITS, MODE, WARM, NB, SPAN, UPRAND, DOWNRAND = range(15)
NPAR = 15
# float parameters (fpar)
UPFIX, DOWNFIX = range(2)
# per-worker integer state (wi columns)
REACHED, RND, USED, BUSY, CPOS, CEND, UPOS, UEND, DPOS, DEND = range(10)
NWI = 10
# per-worker float state (wf columns)
START, X, COMPUTE, CANCEL = range(4)
NWF = 4
# pool columns (pf: start, sent)
PSTART, PSENT = range(2)

APPLIED, STALE, LATE = 0, 1, 2  # as stalegrad.trace


@njit(cache=True, nogil=True, inline="always")
def _less(t1, k1, t2, k2):
    return t1 < t2 or (t1 == t2 and k1 < k2)


@njit(cache=True, nogil=True, inline="always")
def _push(ht, hk, hs, hn, t, k, s):
    """Add ``(t, k, s)`` to the heap of ``hn`` entries; return the new size."""
    j = hn
    while j > 0:
        p = (j - 1) >> 1
        if _less(t, k, ht[p], hk[p]):
            ht[j] = ht[p]
            hk[j] = hk[p]
            hs[j] = hs[p]
            j = p
        else:
            break
    ht[j] = t
    hk[j] = k
    hs[j] = s
    return hn + 1


@njit(cache=True, nogil=True, inline="always")
def _sift(ht, hk, hs, hn, t, k, s):
    """Put ``(t, k, s)`` in place of the root of a heap of ``hn`` entries (Floyd: the hole goes down along the
    smaller children to a leaf, then the entry climbs back up, as in :mod:`heapq`)."""
    j = 0
    c = 1
    while c < hn:
        if c + 1 < hn and _less(ht[c + 1], hk[c + 1], ht[c], hk[c]):
            c += 1
        ht[j] = ht[c]
        hk[j] = hk[c]
        hs[j] = hs[c]
        j = c
        c = 2 * j + 1
    while j > 0:
        p = (j - 1) >> 1
        if _less(t, k, ht[p], hk[p]):
            ht[j] = ht[p]
            hk[j] = hk[p]
            hs[j] = hs[p]
            j = p
        else:
            break
    ht[j] = t
    hk[j] = k
    hs[j] = s


@njit(cache=True, nogil=True, inline="always")
def _pop(ht, hk, hs, hn):
    """Remove the root; return the new size."""
    hn -= 1
    if hn > 0:
        _sift(ht, hk, hs, hn, ht[hn], hk[hn], hs[hn])
    return hn


@njit(cache=True, nogil=True)
def advance(
    par: np.ndarray,  # int parameters (N, KK, ... above)
    fpar: np.ndarray,  # fixed uplink and downlink delays (when not random)
    ist: np.ndarray,  # integer state (V, BC, ... above)
    fst: np.ndarray,  # float state
    wi: np.ndarray,  # per-worker integer state (n, NWI)
    wf: np.ndarray,  # per-worker float state (n, NWF)
    C: np.ndarray,  # compute times: worker i reads C[wi[i, CPOS]:wi[i, CEND]]
    UB: np.ndarray,  # uplink delays, likewise (UPOS, UEND)
    DB: np.ndarray,  # downlink delays, likewise (DPOS, DEND)
    ht: np.ndarray,  # heap: times
    hk: np.ndarray,  # heap: keys (kind, worker, round)
    hs: np.ndarray,  # heap: pool slot of an arrival
    pf: np.ndarray,  # pool: (start, sent) of each gradient in flight
    pv: np.ndarray,  # pool: version of each gradient in flight
    pfree: np.ndarray,  # free slots (a stack of ist[PFN])
    batch: np.ndarray,  # workers whose gradients are in the update being gathered
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
    waits = par[WAITS] != 0
    cancels = par[CANCELS] != 0
    curonly = par[CURONLY] != 0
    tocontrib = par[TOCONTRIB] != 0
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
    kfin = np.int64(FINISH) << KIND_SHIFT
    karr = np.int64(ARRIVE) << KIND_SHIFT
    kreach = np.int64(REACH) << KIND_SHIFT
    hcap = ht.shape[0]
    ntr = trsum.shape[0]
    rcap = o_worker.shape[0]

    ver = ist[V]
    bc = ist[BC]
    hn = ist[HN]
    pfn = ist[PFN]
    events = ist[EVENTS]
    rows = ist[ROWS]
    maxtau = ist[MAXTAU]
    grad = ist[GRAD]
    dropped = ist[DROPPED]
    limit = ist[LIMIT]
    status = DONE

    if ist[STARTED] == 0:  # every worker starts its first round at time 0, on version 0
        if hn + n > hcap:
            ist[NEED] = n
            return GROW_HEAP
        for i in range(n):
            c = wi[i, CPOS]
            x = C[c]
            wi[i, CPOS] = c + 1
            wi[i, RND] = 1
            wf[i, START] = 0.0
            wf[i, X] = x
            wi[i, USED] = 0
            wi[i, BUSY] = 1
            hn = _push(ht, hk, hs, hn, 0.0 + x, kfin | (np.int64(i) << rbits) | 1, 0)
        ist[STARTED] = 1

    while ver < updates and hn > 0:
        if events >= limit:
            status = PAUSE
            break
        if hn + n + 2 > hcap:
            ist[NEED] = n + 2
            status = GROW_HEAP
            break
        now = ht[0]
        key = hk[0]
        kind = key >> KIND_SHIFT
        i = (key >> rbits) & wmask
        r = key & rmask

        if kind == FINISH:
            if r != wi[i, RND] or wi[i, BUSY] == 0:  # the round was cancelled
                hn = _pop(ht, hk, hs, hn)
                events += 1
                continue
            if uprand and wi[i, UPOS] == wi[i, UEND]:
                ist[WHO] = i
                status = REFILL_UP
                break
            if not waits and wi[i, CPOS] == wi[i, CEND]:
                ist[WHO] = i
                status = REFILL_COMPUTE
                break
            if pfn == 0:
                status = GROW_POOL
                break
            events += 1
            st = wf[i, START]
            x = wf[i, X]
            sent = st + x
            wf[i, COMPUTE] += x
            if uprand:
                u = wi[i, UPOS]
                d = UB[u]
                wi[i, UPOS] = u + 1
            else:
                d = upfix
            pfn -= 1
            slot = pfree[pfn]
            pf[slot, PSTART] = st
            pf[slot, PSENT] = sent
            pv[slot] = wi[i, USED]
            wi[i, BUSY] = 0
            # the arrival takes the finish's place at the root
            _sift(ht, hk, hs, hn, sent + d, karr | (np.int64(i) << rbits) | r, slot)
            if not waits:  # start the next round on the versions that reached it strictly before now
                c = wi[i, CPOS]
                x = C[c]
                wi[i, CPOS] = c + 1
                rn = wi[i, RND] + 1
                wi[i, RND] = rn
                wf[i, START] = now
                wf[i, X] = x
                wi[i, USED] = wi[i, REACHED]
                wi[i, BUSY] = 1
                hn = _push(ht, hk, hs, hn, now + x, kfin | (np.int64(i) << rbits) | rn, 0)

        elif kind == ARRIVE:
            slot = hs[0]
            v = pv[slot]
            tau = ver - v
            if curonly and v < ver:
                reason = LATE
            elif bound >= 0 and tau > bound:
                reason = STALE
            else:
                reason = APPLIED
            if mode == 0 and rows >= rcap:
                status = GROW_ROWS
                break
            if reason == APPLIED:
                upd = ver + 1
                if mode == 1 and upd > warm and tau >= hist.shape[0]:
                    ist[NEED] = tau + 1
                    status = GROW_HIST
                    break
                if bc + 1 == K and downrand:
                    missing = -1
                    if tocontrib:
                        for j in range(bc):
                            if wi[batch[j], DPOS] == wi[batch[j], DEND]:
                                missing = batch[j]
                                break
                        if missing < 0 and wi[i, DPOS] == wi[i, DEND]:
                            missing = i
                    else:
                        for k in range(n):
                            if wi[k, DPOS] == wi[k, DEND]:
                                missing = k
                                break
                    if missing >= 0:
                        ist[WHO] = missing
                        status = REFILL_DOWN
                        break
            elif waits and not curonly and downrand and wi[i, DPOS] == wi[i, DEND]:
                ist[WHO] = i
                status = REFILL_DOWN
                break
            events += 1
            hn = _pop(ht, hk, hs, hn)
            st = pf[slot, PSTART]
            sent = pf[slot, PSENT]
            pfree[pfn] = slot
            pfn += 1
            if reason == APPLIED:
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
                o_dropped[rows] = reason
            elif reason == APPLIED:
                if upd <= ntr:
                    trsum[upd - 1] += tau
                if upd > warm:
                    b = (upd - warm - 1) * nb // span
                    hist[tau] += 1
                    bsum[b] += tau
                    bcnt[b] += 1
                    wsum[i] += tau
                    wcnt[i] += 1
            rows += 1
            if reason != APPLIED:
                if waits and not curonly:  # k-async: a dropped worker must not wait forever
                    if downrand:
                        dp = wi[i, DPOS]
                        d = DB[dp]
                        wi[i, DPOS] = dp + 1
                    else:
                        d = downfix
                    hn = _push(ht, hk, hs, hn, now + d, kreach | (np.int64(i) << rbits) | ver, 0)
                continue
            batch[bc] = i
            bc += 1
            if bc == K:
                ver += 1
                if mode == 0:
                    o_times[ver - 1] = now
                if ver == warm:
                    fst[T_WARM] = now
                fst[T_END] = now
                for j in range(K if tocontrib else n):
                    k = batch[j] if tocontrib else j
                    if downrand:
                        dp = wi[k, DPOS]
                        d = DB[dp]
                        wi[k, DPOS] = dp + 1
                    else:
                        d = downfix
                    hn = _push(ht, hk, hs, hn, now + d, kreach | (np.int64(k) << rbits) | ver, 0)
                bc = 0

        else:  # REACH: version r reaches worker i
            reached = max(wi[i, REACHED], r)
            busy = wi[i, BUSY] != 0
            starts = (not busy and waits) or (busy and cancels and wi[i, USED] < reached)
            if starts and wi[i, CPOS] == wi[i, CEND]:
                ist[WHO] = i
                status = REFILL_COMPUTE
                break
            events += 1
            wi[i, REACHED] = reached
            if starts:
                if busy:  # abandon the round on the older version
                    wf[i, CANCEL] += now - wf[i, START]
                c = wi[i, CPOS]
                x = C[c]
                wi[i, CPOS] = c + 1
                rn = wi[i, RND] + 1
                wi[i, RND] = rn
                wf[i, START] = now
                wf[i, X] = x
                wi[i, USED] = reached
                wi[i, BUSY] = 1
                _sift(ht, hk, hs, hn, now + x, kfin | (np.int64(i) << rbits) | rn, 0)
            else:
                hn = _pop(ht, hk, hs, hn)

    ist[V] = ver
    ist[BC] = bc
    ist[HN] = hn
    ist[PFN] = pfn
    ist[EVENTS] = events
    ist[ROWS] = rows
    ist[MAXTAU] = maxtau
    ist[GRAD] = grad
    ist[DROPPED] = dropped
    return status
