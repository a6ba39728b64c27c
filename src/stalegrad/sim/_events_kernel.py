"""The event engine's loops, compiled with numba (imported lazily by :mod:`stalegrad.sim.compiled`).

The same events, handlers and tie rules as :mod:`stalegrad.sim.events`, on arrays. An event's key packs
``(kind, worker, round)`` into one int64 (``kind << 61 | worker << rbits | round``; for a version reaching a
worker the round is the version), so ``(time, key)`` orders events exactly as the reference's
``(time, kind, worker, round, sequence)`` tuples: no two events ever share ``(kind, worker, round)`` (a worker's
rounds are numbered once; a worker is sent each version at most once), so the sequence number never decides.
Times are ``>= 0``, so their int64 bit patterns order as the floats do; the trees compare those.

:func:`advance` runs every protocol. Mindflayer's cutoffs: a round whose compute time exceeds its worker's cutoff
ends there, and its finish event abandons it and starts the next round. Ringmaster's stops: each update is also
sent to every worker whose round in progress has delay ``>= R`` (once a round), which abandons it when the version
reaches it. Where its events wait:

* each worker's round in progress (at most one finish that counts): a tournament (winner) tree over the workers
  holds each worker's first event. A change to one worker costs one leaf-to-root pass of ``log2(n)`` comparisons
  and conditional moves;
* gradients in flight: with a fixed uplink delay they arrive in the order they were sent, so they wait in one
  queue (a ring); with a random one, in a small heap per worker, under the tree;
* versions travelling: with a fixed downlink delay > 0, the versions sent at one time (to every worker, to an
  update's contributors, to a dropped worker) are one *send*: a ring of sends, each a run of (worker, version) pairs
  in key order, delivered in one pass when it comes first (sends that reach at the same time are merged); otherwise
  a small heap per worker, under the tree;
* a finish abandoned by a cancelled round is taken out of its worker (the reference leaves it in the heap and
  ignores it when it comes): its time waits in a buffer, only to be counted among the events the reference takes
  (those up to the last update).

The next event is the first of the tree's root, the first send and the first gradient in flight.

:func:`advance_batch_async` runs the protocols whose workers never wait and never cancel (k-batch-async). Such a
worker's rounds follow each other whatever the master does, so its finishes are taken ahead, in round order, as
long as they come no later than its first gradient in flight (a finish at the same time as an arrival comes first
in the reference too), and only arrivals go through a loser tree (as in :mod:`stalegrad.sim._kernel`). The one
thing a finish reads from the rest of the system, the newest version that reached the worker strictly before the
next round starts, is found when the master takes one of the worker's gradients: every version that can reach a
worker before a round that started by then has been sent by then. The versions travelling to a worker wait in a
queue of increasing reach times and versions (a version overtaken on the way, reaching no earlier than a newer
one, is never the newest to have reached the worker; it is only counted); a worker's rounds in flight wait in a ring
indexed by round number (start, send time, version, and the worker's compute time before the round, so that the
compute time of the rounds the reference finished is exact when the run stops with finishes taken ahead).

Both loops never run out of anything in the middle of an event: before they take the next event they check what it
will need (a compute time, a delay, room for a row, in a queue or the histogram) and, if something is missing,
return a status code with nothing changed; the caller supplies it and calls again. So the draws are taken from each
stream in exactly the reference's order. They are compiled without numba's reference counting (``_nrt=False``:
they allocate nothing; the inlined helpers would otherwise cost atomic increments per event), and with LLVM's
conversion of conditional moves into branches off (:data:`KEEP_CMOV`). One module holds both loops and their
helpers: numba's cache does not see changes in the modules a cached function calls.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# statuses returned to the caller
DONE, PAUSE, REFILL_COMPUTE, REFILL_UP, REFILL_DOWN, GROW_ROWS, GROW_ARRIVE, GROW_REACH, GROW_DEAD, GROW_POOL = range(
    10
)
GROW_HIST, GROW_BCAST, GROW_QUEUE = 10, 11, 12

# kinds of event, in the order they are taken at one instant (as in events.py)
FINISH, ARRIVE, REACH = 0, 1, 2
KIND_SHIFT = 61

# integer state (ist)
V, BC, DN, PFN, EVENTS, ROWS, WHO, NEED, MAXTAU, GRAD, DROPPED, LIMIT, STARTED, EMPTY, PEND, PENDEND, NR = range(17)
WIN, DMIN, RFULL = 25, 26, 27  # (k-batch-async) the worker whose first arrival comes first; the fewest downlink
# delays any worker has left; a worker's queue of versions is full
BH, BN, BP, PT = range(17, 21)  # sends: head and length of their ring; next (worker, version) pair, end of pairs
QH, QN = range(21, 23)  # gradients in flight with a fixed uplink delay: head and length of their queue
BT, BK = range(23, 25)  # the first send's next event: time (int64 bits) and key
SLB = 28  # (ringmaster) at most the version of any round in progress not stopped yet: no stop to send while
# the update is fewer than R versions ahead of it (so most updates look at no worker)
NIST = 29
# float state (fst): time of update `warm`, of the last update, of the last event taken; compute time of the
# gradients dropped (sent - start, summed in arrival order)
T_WARM, T_END, NOW, DROPT = range(4)
NFST = 4
# parameters (par)
N, KK, U, WAITS, CANCELS, CURONLY, TOCONTRIB, BOUND, RBITS, MODE, WARM, NB, SPAN, UPRAND, DOWNRAND, BCAST = range(16)
CUTS = 16  # (mindflayer) a round whose compute time exceeds its worker's cutoff (wf column CUT) is abandoned there
STOPS, RR = 17, 18  # (ringmaster) each update is sent to the rounds whose delay has reached RR, which stop there
NPAR = 19
# float parameters (fpar)
UPFIX, DOWNFIX = range(2)
# per-worker integer state (wi columns); AN, RN: sizes of its heaps of gradients in flight and versions travelling;
# VNEXT, RH: (k-batch-async kernel) the next round whose version is still to be found, the head of its versions
REACHED, RND, USED, BUSY, CPOS, CEND, UPOS, UEND, DPOS, DEND, AN, RN, VNEXT, RH = range(14)
ABANDON = 14  # its round in progress ends at its cutoff (the finish event abandons it)
STOPPED = 15  # (ringmaster) the round a stop was sent for
NWI = 16
# per-worker float state (wf columns); FT: time its round in progress finishes (+inf when it waits)
START, X, COMPUTE, CANCEL, FT = range(5)
CUT = 5  # its cutoff (mindflayer; +inf otherwise)
NWF = 6
# pool columns (pf: start, sent)
PSTART, PSENT = range(2)

APPLIED, STALE, LATE = 0, 1, 2  # as stalegrad.trace

#: LLVM's x86 backend turns conditional moves in loops back into branches when it guesses that pays; in the
#: tournament tree the comparisons are coin flips, so the kernels are compiled with that conversion off
#: (:func:`stalegrad.sim.compiled.warm` sets this LLVM option while it compiles them, and restores it).
KEEP_CMOV = "--x86-cmov-converter=false"
INF = np.inf
INF_BITS = 0x7FF0000000000000  # +inf as int64 bits


@njit(cache=True, nogil=True, inline="always")
def _less(t1, k1, t2, k2):
    return (t1 < t2) | ((t1 == t2) & (k1 < k2))


@njit(cache=True, nogil=True, inline="always")
def _hpush(ht, hk, hs, base, hn, t, k, s):
    """Add ``(t, k, s)`` to the heap ``base .. base + hn - 1`` of the flat arrays."""
    j = hn
    while j > 0:
        p = (j - 1) >> 1
        if _less(t, k, ht[base + p], hk[base + p]):
            ht[base + j] = ht[base + p]
            hk[base + j] = hk[base + p]
            hs[base + j] = hs[base + p]
            j = p
        else:
            break
    ht[base + j] = t
    hk[base + j] = k
    hs[base + j] = s


@njit(cache=True, nogil=True, inline="always")
def _hpop(ht, hk, hs, base, hn):
    """Remove the first entry of the heap of ``hn`` entries (the hole goes down along the smaller children, then
    the last entry climbs back into it, as in :mod:`heapq`)."""
    hn -= 1
    if hn == 0:
        return
    t = ht[base + hn]
    k = hk[base + hn]
    s = hs[base + hn]
    j = 0
    c = 1
    while c < hn:
        if c + 1 < hn and _less(ht[base + c + 1], hk[base + c + 1], ht[base + c], hk[base + c]):
            c += 1
        ht[base + j] = ht[base + c]
        hk[base + j] = hk[base + c]
        hs[base + j] = hs[base + c]
        j = c
        c = 2 * j + 1
    while j > 0:
        p = (j - 1) >> 1
        if _less(t, k, ht[base + p], hk[base + p]):
            ht[base + j] = ht[base + p]
            hk[base + j] = hk[base + p]
            hs[base + j] = hs[base + p]
            j = p
        else:
            break
    ht[base + j] = t
    hk[base + j] = k
    hs[base + j] = s


@njit(cache=True, nogil=True, inline="always")
def _first(i, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own):
    """Worker ``i``'s first event: ``(time, key)``, the time as int64 bits (+inf if it has none). Times are ``>= 0``,
    so their bit patterns order as the floats do. With ``own`` false the worker's gradients and versions wait in the
    shared queues, and its first event is its finish."""
    t = fti[i]
    k = kfin | (np.int64(i) << rbits) | wi[i, RND]
    if not own:
        return t, k
    b = i * acap
    ta = ahti[b]
    ka = ahk[b]
    sw = (wi[i, AN] > 0) & ((ta < t) | ((ta == t) & (ka < k)))
    t = ta if sw else t
    k = ka if sw else k
    b = i * rcap
    tr = rhti[b]
    kr = rhk[b]
    sw = (wi[i, RN] > 0) & ((tr < t) | ((tr == t) & (kr < k)))
    t = tr if sw else t
    k = kr if sw else k
    return t, k


@njit(cache=True, nogil=True, inline="always")
def _ends(w, now, x, cuts, ft, wi, wf):
    """The round worker ``w`` starts now with compute time ``x`` ends: at ``now + x``, or abandoned at its cutoff."""
    if cuts and x > wf[w, CUT]:
        ft[w] = now + wf[w, CUT]
        wi[w, ABANDON] = 1
    else:
        ft[w] = now + x
        wi[w, ABANDON] = 0


@njit(cache=True, nogil=True, inline="always")
def _send(w, ver, now, downrand, downfix, wi, DB, rht, rhk, rhs, rcap, kreach, rbits):
    """Version ``ver`` sent to worker ``w`` now, into its heap of versions travelling (its downlink delay drawn)."""
    if downrand:
        dp = wi[w, DPOS]
        d = DB[dp]
        wi[w, DPOS] = dp + 1
    else:
        d = downfix
    rn = wi[w, RN]
    _hpush(rht, rhk, rhs, w * rcap, rn, now + d, kreach | (np.int64(w) << rbits) | ver, 0)
    wi[w, RN] = rn + 1


@njit(cache=True, nogil=True, inline="always")
def _stop(w, ver, R, wi):
    """(ringmaster) True when update ``ver`` must be sent to worker ``w`` to stop its round (delay >= R, once)."""
    return wi[w, BUSY] != 0 and ver - wi[w, USED] >= R and wi[w, STOPPED] != wi[w, RND]


@njit(cache=True, nogil=True, inline="always")
def _replay(wt, wk, m, i, t, k):
    """Set leaf ``i`` of the winner tree to ``(t, k)`` (times as int64 bit patterns) and replay its path to the
    root: ``log2(m)`` matches, each a comparison and two conditional moves (see :data:`KEEP_CMOV`)."""
    j = m + i
    wt[j] = t
    wk[j] = k
    while j > 1:
        s = j ^ 1
        ts = wt[s]
        ks = wk[s]
        sw = (ts < t) | ((ts == t) & (ks < k))
        t = ts if sw else t
        k = ks if sw else k
        j >>= 1
        wt[j] = t
        wk[j] = k


@njit(cache=True, nogil=True, inline="always")
def _loser_replay(lkey, lidx, m, w, key):
    """Worker ``w``, the winner of the loser tree, comes back with ``key`` (its next time as int64 bits): replay its
    path and return the new winner. On the winner's path the loser stored at a node always comes from the sibling
    subtree, so it has the lower worker index exactly when the path arrives from the right: "``lk < key``, or a tie
    and we come from the right" is the single comparison ``lk - odd < key`` (as in :mod:`stalegrad.sim._kernel`)."""
    ck = key
    ci = w
    child = w + m
    while child > 1:
        node = child >> 1
        lk = lkey[node]
        li = lidx[node]
        swap = lk - (child & 1) < ck
        lkey[node] = ck if swap else lk
        lidx[node] = ci if swap else li
        ck = lk if swap else ck
        ci = li if swap else ci
        child = node
    return ci


@njit(cache=True, nogil=True, inline="always")
def _rebuild(wt, wk, m):
    """Recompute every match of the winner tree from its leaves."""
    for j in range(m - 1, 0, -1):
        tl, kl, tr, kr = wt[2 * j], wk[2 * j], wt[2 * j + 1], wk[2 * j + 1]
        sw = (tr < tl) | ((tr == tl) & (kr < kl))
        wt[j] = tr if sw else tl
        wk[j] = kr if sw else kl


@njit(cache=True, nogil=True, _nrt=False)  # no reference counting: see the module docstring
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
    aht: np.ndarray,  # per-worker heaps of gradients in flight (worker i: i * acap ...): arrival time
    ahk: np.ndarray,  # ... key
    ahs: np.ndarray,  # ... pool slot
    rht: np.ndarray,  # per-worker heaps of versions travelling to the worker: reach time
    rhk: np.ndarray,  # ... key
    rhs: np.ndarray,  # ... (unused)
    dht: np.ndarray,  # finish times of cancelled rounds not yet counted (unordered)
    dhk: np.ndarray,  # (unused)
    wt: np.ndarray,  # winner tree over the workers' first events: times as int64 bits (root at 1, leaves m + i)
    wk: np.ndarray,  # ... keys
    wtf: np.ndarray,  # wt seen as floats
    ft: np.ndarray,  # time each worker's round in progress finishes (+inf when it waits)
    fti: np.ndarray,  # ft seen as int64 bits
    ahti: np.ndarray,  # aht seen as int64 bits
    rhti: np.ndarray,  # rht seen as int64 bits
    bct: np.ndarray,  # sends (versions sent at one time with a fixed delay, to some or all workers): reach times
    bcti: np.ndarray,  # ... seen as int64 bits
    bcv: np.ndarray,  # ... and (first pair, number of pairs) in bp
    bp: np.ndarray,  # (worker, version) pairs of the sends, a ring by absolute index, each send's in key order
    pf: np.ndarray,  # pool: (start, sent) of each gradient in flight; with a fixed uplink, a ring in arrival order
    pv: np.ndarray,  # pool: version of each gradient in flight
    pfree: np.ndarray,  # free slots (a stack of ist[PFN])
    qti: np.ndarray,  # with a fixed uplink: the ring's arrival times as int64 bits
    qk: np.ndarray,  # ... and keys
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
    bcast = par[BCAST] != 0
    cuts = par[CUTS] != 0
    stops = par[STOPS] != 0
    R = par[RR]
    upfix = fpar[UPFIX]
    downfix = fpar[DOWNFIX]
    rmask = (np.int64(1) << rbits) - 1
    wmask = (np.int64(1) << (KIND_SHIFT - rbits)) - 1
    kfin = np.int64(FINISH) << KIND_SHIFT
    karr = np.int64(ARRIVE) << KIND_SHIFT
    kreach = np.int64(REACH) << KIND_SHIFT
    m = wt.shape[0] // 2
    acap = aht.shape[0] // n
    rcap = rht.shape[0] // n
    dcap = dht.shape[0]
    bmask = bct.shape[0] - 1
    pcap = bp.shape[0]
    pmask = pcap - 1
    fifo = not uprand  # arrivals come in the order of the finishes: one queue (ring) for all of them
    own = not (fifo and bcast)  # some of a worker's events wait in its own heaps
    qmask = pv.shape[0] - 1
    qtf = qti.view(np.float64)
    ntr = trsum.shape[0]
    rcount = o_worker.shape[0]

    ver = ist[V]
    bc = ist[BC]
    dn = ist[DN]
    pfn = ist[PFN]
    events = ist[EVENTS]
    rows = ist[ROWS]
    maxtau = ist[MAXTAU]
    grad = ist[GRAD]
    dropped = ist[DROPPED]
    limit = ist[LIMIT]
    slb = ist[SLB]
    now = fst[NOW]
    status = DONE
    bidx = (ver - warm) * nb // span if ver >= warm else 0  # the batch of update ver + 1 (once per update)

    if ist[STARTED] == 0:  # every worker starts its first round at time 0, on version 0
        for j in range(2 * m):
            wt[j] = INF_BITS
            wk[j] = np.iinfo(np.int64).max
        for i in range(n):
            c = wi[i, CPOS]
            x = C[c]
            wi[i, CPOS] = c + 1
            wi[i, RND] = 1
            wf[i, START] = 0.0
            wf[i, X] = x
            _ends(i, 0.0, x, cuts, ft, wi, wf)
            wi[i, USED] = 0
            wi[i, BUSY] = 1
            _replay(wt, wk, m, i, fti[i], kfin | (np.int64(i) << rbits) | 1)
        ist[STARTED] = 1

    while ver < updates:
        tb = wt[1]
        key = wk[1]
        fromb = False
        if ist[BN] > 0:  # the first send's next (worker, version)
            tbb = ist[BT]
            kb = ist[BK]
            fromb = (tbb < tb) | ((tbb == tb) & (kb < key))
            tb = tbb if fromb else tb
            key = kb if fromb else key
        fromq = False
        if fifo and ist[QN] > 0:  # the first gradient in flight
            h = ist[QH]
            tq = qti[h]
            kq = qk[h]
            fromq = (tq < tb) | ((tq == tb) & (kq < key))
            tb = tq if fromq else tb
            key = kq if fromq else key
        if tb == INF_BITS:
            ist[EMPTY] = 1
            break
        t = qtf[ist[QH]] if fromq else (bct[ist[BH]] if fromb else wtf[1])
        fromb = fromb and not fromq
        if events >= limit:
            status = PAUSE
            break
        kind = key >> KIND_SHIFT
        i = (key >> rbits) & wmask
        r = key & rmask

        if fromb:  # a send's versions reach its workers at t, in key order (worker, then version)
            h = ist[BH]
            pend = bcv[h, 0] + bcv[h, 1]
            if dn + pend - ist[BP] > dcap:
                keep = 0
                for j in range(dn):
                    if dht[j] <= t:
                        events += 1
                    else:
                        dht[keep] = dht[j]
                        keep += 1
                dn = keep
                if dn + pend - ist[BP] > dcap:
                    ist[NEED] = dn + pend - ist[BP]
                    status = GROW_DEAD
                    break
            now = t
            p0 = ist[BP]
            pp = p0
            refill = -1
            while pp < pend:
                q = pp & pmask
                w = bp[q, 0]
                reached = max(wi[w, REACHED], bp[q, 1])
                busy = wi[w, BUSY] != 0
                starts = (not busy and waits) or (
                    busy and ((cancels and wi[w, USED] < reached) or (stops and reached - wi[w, USED] >= R))
                )
                if starts and wi[w, CPOS] == wi[w, CEND]:
                    refill = w
                    break
                events += 1
                wi[w, REACHED] = reached
                pp += 1
                if starts:
                    if busy:  # abandon the round on the older version; its finish is counted when it comes
                        wf[w, CANCEL] += now - wf[w, START]
                        dht[dn] = ft[w]
                        dn += 1
                    c = wi[w, CPOS]
                    x = C[c]
                    wi[w, CPOS] = c + 1
                    wi[w, RND] += 1
                    wf[w, START] = now
                    wf[w, X] = x
                    _ends(w, now, x, cuts, ft, wi, wf)
                    wi[w, USED] = reached
                    slb = min(slb, reached)
                    wi[w, BUSY] = 1
                    if ft[w] == now:  # a finish at this instant comes before the next pair
                        break
            ist[BP] = pp
            if pp == pend:
                ist[BH] = (h + 1) & bmask
                ist[BN] -= 1
            if ist[BN] > 0:
                q = pp & pmask
                ist[BT] = bcti[ist[BH]]
                ist[BK] = kreach | (bp[q, 0] << rbits) | bp[q, 1]
            # the workers of pairs p0 .. pp - 1 changed: replay them, or rebuild the tree when they are many
            if (pp - p0) * 4 < n:
                for j in range(p0, pp):
                    w = bp[j & pmask, 0]
                    t, k = _first(w, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own)
                    _replay(wt, wk, m, w, t, k)
            elif pp > p0:
                for j in range(p0, pp):
                    w = bp[j & pmask, 0]
                    t, k = _first(w, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own)
                    wt[m + w] = t
                    wk[m + w] = k
                _rebuild(wt, wk, m)
            if refill >= 0:
                ist[WHO] = refill
                status = REFILL_COMPUTE
                break

        elif kind == FINISH and cuts and wi[i, ABANDON] != 0:  # worker i abandons round r at its cutoff
            if wi[i, CPOS] == wi[i, CEND]:
                ist[WHO] = i
                status = REFILL_COMPUTE
                break
            events += 1
            now = t
            wf[i, CANCEL] += now - wf[i, START]
            c = wi[i, CPOS]  # and starts over, on the versions that reached it strictly before now
            x = C[c]
            wi[i, CPOS] = c + 1
            wi[i, RND] += 1
            wf[i, START] = now
            wf[i, X] = x
            _ends(i, now, x, cuts, ft, wi, wf)
            wi[i, USED] = wi[i, REACHED]
            slb = min(slb, wi[i, REACHED])
            t, k = _first(i, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own)
            _replay(wt, wk, m, i, t, k)

        elif kind == FINISH:  # worker i finishes round r and sends the gradient
            if uprand and wi[i, UPOS] == wi[i, UEND]:
                ist[WHO] = i
                status = REFILL_UP
                break
            if not waits and wi[i, CPOS] == wi[i, CEND]:
                ist[WHO] = i
                status = REFILL_COMPUTE
                break
            if fifo and ist[QN] == qmask + 1:
                status = GROW_QUEUE
                break
            if not fifo and pfn == 0:
                status = GROW_POOL
                break
            if not fifo and wi[i, AN] == acap:
                status = GROW_ARRIVE
                break
            events += 1
            now = t
            st = wf[i, START]
            x = wf[i, X]
            sent = st + x
            wf[i, COMPUTE] += x
            if fifo:  # at the tail, unless a finish at the same time came first from a later worker (a round
                # that started and ended at one instant): then in its place
                h = ist[QH]
                e = (h + ist[QN]) & qmask
                ist[QN] += 1
                ta = sent + upfix
                ka = karr | (np.int64(i) << rbits) | r
                while e != h:
                    p = (e - 1) & qmask
                    if qtf[p] < ta or (qtf[p] == ta and qk[p] < ka):
                        break
                    qti[e] = qti[p]
                    qk[e] = qk[p]
                    pf[e, PSTART] = pf[p, PSTART]
                    pf[e, PSENT] = pf[p, PSENT]
                    pv[e] = pv[p]
                    e = p
                qtf[e] = ta
                qk[e] = ka
                pf[e, PSTART] = st
                pf[e, PSENT] = sent
                pv[e] = wi[i, USED]
            else:
                u = wi[i, UPOS]
                d = UB[u]
                wi[i, UPOS] = u + 1
                pfn -= 1
                slot = pfree[pfn]
                pf[slot, PSTART] = st
                pf[slot, PSENT] = sent
                pv[slot] = wi[i, USED]
                an = wi[i, AN]
                _hpush(aht, ahk, ahs, i * acap, an, sent + d, karr | (np.int64(i) << rbits) | r, slot)
                wi[i, AN] = an + 1
            wi[i, BUSY] = 0
            ft[i] = INF
            if not waits:  # the next round, on the versions that reached the worker strictly before now
                reached = wi[i, REACHED]
                c = wi[i, CPOS]
                x = C[c]
                wi[i, CPOS] = c + 1
                wi[i, RND] += 1
                wf[i, START] = now
                wf[i, X] = x
                _ends(i, now, x, cuts, ft, wi, wf)
                wi[i, USED] = reached
                slb = min(slb, reached)
                wi[i, BUSY] = 1
            t, k = _first(i, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own)
            _replay(wt, wk, m, i, t, k)

        elif kind == ARRIVE:  # a gradient of worker i, round r, reaches the master
            slot = ist[QH] if fifo else ahs[i * acap]
            v = pv[slot]
            tau = ver - v
            if curonly and v < ver:
                reason = LATE
            elif bound >= 0 and tau > bound:
                reason = STALE
            else:
                reason = APPLIED
            if mode == 0 and rows >= rcount:
                status = GROW_ROWS
                break
            if reason == APPLIED:
                if mode == 1 and ver + 1 > warm and tau >= hist.shape[0]:
                    ist[NEED] = tau + 1
                    status = GROW_HIST
                    break
                if bc + 1 == K and bcast:  # the update: room for one more send of n (at most) pairs
                    if ist[BN] == bmask + 1 or ist[PT] - ist[BP] + n > pcap:
                        status = GROW_BCAST
                        break
                elif bc + 1 == K:  # the update: every recipient needs a downlink delay and room for the version
                    missing = -1
                    for j in range(K if tocontrib else n):
                        k = (batch[j] if j < bc else i) if tocontrib else j
                        if wi[k, RN] == rcap:
                            status = GROW_REACH
                            break
                        if downrand and wi[k, DPOS] == wi[k, DEND]:
                            missing = k
                            break
                    if stops and status != GROW_REACH and missing < 0 and ver + 1 - slb >= R:  # rounds it stops
                        for k in range(n):
                            if _stop(k, ver + 1, R, wi):
                                if wi[k, RN] == rcap:
                                    status = GROW_REACH
                                    break
                                if downrand and wi[k, DPOS] == wi[k, DEND]:
                                    missing = k
                                    break
                    if status == GROW_REACH:
                        break
                    if missing >= 0:
                        ist[WHO] = missing
                        status = REFILL_DOWN
                        break
            elif waits and not curonly and bcast:
                if ist[BN] == bmask + 1 or ist[PT] - ist[BP] + 1 > pcap:
                    status = GROW_BCAST
                    break
            elif waits and not curonly:
                if wi[i, RN] == rcap:
                    status = GROW_REACH
                    break
                if downrand and wi[i, DPOS] == wi[i, DEND]:
                    ist[WHO] = i
                    status = REFILL_DOWN
                    break
            events += 1
            now = t
            st = pf[slot, PSTART]
            sent = pf[slot, PSENT]
            if fifo:
                ist[QH] = (slot + 1) & qmask
                ist[QN] -= 1
            else:
                _hpop(aht, ahk, ahs, i * acap, wi[i, AN])
                wi[i, AN] -= 1
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
                fst[DROPT] += sent - st
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
                    hist[tau] += 1
                    bsum[bidx] += tau
                    bcnt[bidx] += 1
                    wsum[i] += tau
                    wcnt[i] += 1
            rows += 1
            nsend = 0  # pairs to send, with a fixed delay
            if reason != APPLIED:
                if waits and not curonly and bcast:  # k-async: a dropped worker must not wait forever
                    bp[ist[PT] & pmask, 0] = i
                    bp[ist[PT] & pmask, 1] = ver
                    nsend = 1
                elif waits and not curonly:
                    _send(i, ver, now, downrand, downfix, wi, DB, rht, rhk, rhs, rcap, kreach, rbits)
                    t, k = _first(i, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own)
                    _replay(wt, wk, m, i, t, k)
                if not fifo:  # its gradients in flight changed
                    t, k = _first(i, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own)
                    _replay(wt, wk, m, i, t, k)
                if nsend == 0:
                    continue
            else:
                batch[bc] = i
                bc += 1
                if bc < K:
                    if not fifo:
                        t, k = _first(i, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own)
                        _replay(wt, wk, m, i, t, k)
                    continue
                ver += 1
                bc = 0
                bidx = (ver - warm) * nb // span if ver >= warm else 0
                if mode == 0:
                    o_times[ver - 1] = now
                if ver == warm:
                    fst[T_WARM] = now
                fst[T_END] = now
                if bcast:
                    if not fifo:
                        t, k = _first(i, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own)
                        _replay(wt, wk, m, i, t, k)
                    pt = ist[PT]
                    if tocontrib:  # the contributors, by worker (insertion sort: K is small)
                        for j in range(K):
                            w = batch[j]
                            e = j
                            while e > 0 and bp[(pt + e - 1) & pmask, 0] > w:
                                bp[(pt + e) & pmask, 0] = bp[(pt + e - 1) & pmask, 0]
                                e -= 1
                            bp[(pt + e) & pmask, 0] = w
                        nsend = K
                        if stops and ver - slb >= R:  # and the rounds it stops (not contributors: they wait)
                            low = np.iinfo(np.int64).max
                            for w in range(n):
                                if not _stop(w, ver, R, wi):
                                    if wi[w, BUSY] != 0 and wi[w, STOPPED] != wi[w, RND]:
                                        low = min(low, wi[w, USED])
                                    continue
                                wi[w, STOPPED] = wi[w, RND]
                                e = nsend
                                while e > 0 and bp[(pt + e - 1) & pmask, 0] > w:
                                    bp[(pt + e) & pmask, 0] = bp[(pt + e - 1) & pmask, 0]
                                    e -= 1
                                bp[(pt + e) & pmask, 0] = w
                                nsend += 1
                            slb = low
                    else:
                        for w in range(n):
                            bp[(pt + w) & pmask, 0] = w
                        nsend = n
                    for j in range(nsend):
                        bp[(pt + j) & pmask, 1] = ver
            if nsend > 0:  # a send of the pairs written at PT: a new one, or merged with the last if it has its time
                pt = ist[PT]
                tr = now + downfix
                bn = ist[BN]
                last = (ist[BH] + bn - 1) & bmask
                if bn > 0 and bct[last] == tr:  # not begun (its reach time is after now: the delay is > 0)
                    e0 = bcv[last, 0]
                    for j in range(pt, pt + nsend):  # insertion by key: (worker, version)
                        w = bp[j & pmask, 0]
                        v2 = bp[j & pmask, 1]
                        e = j
                        while e > e0:
                            wp = bp[(e - 1) & pmask, 0]
                            vp = bp[(e - 1) & pmask, 1]
                            if wp < w or (wp == w and vp < v2):
                                break
                            bp[e & pmask, 0] = wp
                            bp[e & pmask, 1] = vp
                            e -= 1
                        bp[e & pmask, 0] = w
                        bp[e & pmask, 1] = v2
                    bcv[last, 1] += nsend
                else:
                    e = (ist[BH] + bn) & bmask
                    bct[e] = tr
                    bcv[e, 0] = pt
                    bcv[e, 1] = nsend
                    ist[BN] = bn + 1
                    if bn == 0:
                        ist[BP] = pt
                ist[PT] = pt + nsend
                q = ist[BP] & pmask  # the first send's next event (a merge may have changed it)
                ist[BT] = bcti[ist[BH]]
                ist[BK] = kreach | (bp[q, 0] << rbits) | bp[q, 1]
                continue
            for j in range(K if tocontrib else n):  # the update, sent with random delays
                k = batch[j] if tocontrib else j
                _send(k, ver, now, downrand, downfix, wi, DB, rht, rhk, rhs, rcap, kreach, rbits)
            if stops and ver - slb >= R:  # the rounds the update stops, in worker order (as the reference sends them)
                low = np.iinfo(np.int64).max
                for k in range(n):
                    if not _stop(k, ver, R, wi):
                        if wi[k, BUSY] != 0 and wi[k, STOPPED] != wi[k, RND]:
                            low = min(low, wi[k, USED])
                        continue
                    wi[k, STOPPED] = wi[k, RND]
                    _send(k, ver, now, downrand, downfix, wi, DB, rht, rhk, rhs, rcap, kreach, rbits)
                    t, kk = _first(k, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own)
                    _replay(wt, wk, m, k, t, kk)
                slb = low
            if tocontrib:
                for j in range(K):  # (worker i is the last of them)
                    k = batch[j]
                    t, kk = _first(k, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own)
                    _replay(wt, wk, m, k, t, kk)
            else:  # every leaf may have changed: rebuild the tree
                for k in range(n):
                    t, kk = _first(k, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own)
                    wt[m + k] = t
                    wk[m + k] = kk
                _rebuild(wt, wk, m)

        else:  # REACH: version r reaches worker i
            reached = max(wi[i, REACHED], r)
            busy = wi[i, BUSY] != 0
            starts = (not busy and waits) or (
                busy and ((cancels and wi[i, USED] < reached) or (stops and reached - wi[i, USED] >= R))
            )
            if starts and wi[i, CPOS] == wi[i, CEND]:
                ist[WHO] = i
                status = REFILL_COMPUTE
                break
            if starts and busy and dn == dcap:
                keep = 0
                for j in range(dn):
                    if dht[j] <= t:
                        events += 1
                    else:
                        dht[keep] = dht[j]
                        keep += 1
                dn = keep
                if dn == dcap:
                    ist[NEED] = dn + 1
                    status = GROW_DEAD
                    break
            events += 1
            now = t
            _hpop(rht, rhk, rhs, i * rcap, wi[i, RN])
            wi[i, RN] -= 1
            wi[i, REACHED] = reached
            if starts:
                if busy:  # abandon the round on the older version; its finish is counted when the reference takes it
                    wf[i, CANCEL] += now - wf[i, START]
                    dht[dn] = ft[i]
                    dn += 1
                c = wi[i, CPOS]
                x = C[c]
                wi[i, CPOS] = c + 1
                wi[i, RND] += 1
                wf[i, START] = now
                wf[i, X] = x
                _ends(i, now, x, cuts, ft, wi, wf)
                wi[i, USED] = reached
                slb = min(slb, reached)
                wi[i, BUSY] = 1
            t, k = _first(i, wi, fti, ahti, ahk, rhti, rhk, acap, rcap, kfin, rbits, own)
            _replay(wt, wk, m, i, t, k)

    ist[V] = ver
    ist[BC] = bc
    ist[DN] = dn
    ist[PFN] = pfn
    ist[EVENTS] = events
    ist[ROWS] = rows
    ist[MAXTAU] = maxtau
    ist[GRAD] = grad
    ist[DROPPED] = dropped
    ist[SLB] = slb
    fst[NOW] = now
    return status


# ------------------------------------------------------------------------ workers that never wait or cancel

# ring columns of advance_batch_async: floats (rf) and ints (ri)
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
    wt: np.ndarray,  # scratch (2m) to build the tree
    wk: np.ndarray,  # scratch (2m)
    lkey: np.ndarray,  # loser tree over the workers' first arrivals (node j < m): the loser's time as int64 bits
    lidx: np.ndarray,  # ... and its worker
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
    karr = np.int64(ARRIVE) << KIND_SHIFT
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
    bidx = (ver - warm) * nb // span if ver >= warm else 0  # the batch of update ver + 1 (once per update)

    m = lkey.shape[0]
    if ist[STARTED] == 0:  # every worker starts its first round at time 0, on version 0; all need their finishes
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
            if ist[PENDEND] == i + 1 and ist[STARTED] == 2:  # the winner's new first arrival: replay its path
                ist[WIN] = _loser_replay(lkey, lidx, m, i, ahti[b])
            ist[PEND] += 1
        if status != DONE:
            break
        if ist[STARTED] == 1:  # every worker has its first arrival: build the tree
            for j in range(2 * m):
                wt[j] = INF_BITS
                wk[j] = j - m
            for j in range(n):
                wt[m + j] = ahti[j * acap]
            for j in range(m - 1, 0, -1):
                lk, li, rk, ri_ = wt[2 * j], wk[2 * j], wt[2 * j + 1], wk[2 * j + 1]
                right = rk < lk  # ties: the left child has the lower worker index
                wt[j] = rk if right else lk
                wk[j] = ri_ if right else li
                lkey[j] = lk if right else rk
                lidx[j] = li if right else ri_
            ist[WIN] = wk[1]
            ist[STARTED] = 2
        if events >= limit:
            status = PAUSE
            break

        i = ist[WIN]
        b = i * acap
        t = aht[b]
        r = ahk[b] & rmask
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
                if ist[RFULL] != 0:  # a queue filled up at the last update
                    status = GROW_REACH
                    break
                if downrand and ist[DMIN] == 0:  # some worker has no downlink delay left
                    for k in range(n):
                        if wi[k, DPOS] == wi[k, DEND]:
                            ist[WHO] = k
                            status = REFILL_DOWN
                            break
                    if status != DONE:
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
            fst[DROPT] += sent - st
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
                hist[tau] += 1
                bsum[bidx] += tau
                bcnt[bidx] += 1
                wsum[i] += tau
                wcnt[i] += 1
        rows += 1
        if applied:
            bc += 1
            if bc == K:
                ver += 1
                bc = 0
                bidx = (ver - warm) * nb // span if ver >= warm else 0
                if mode == 0:
                    o_times[ver - 1] = now
                if ver == warm:
                    fst[T_WARM] = now
                fst[T_END] = now
                rb = 0
                full = False
                for k in range(n):
                    if downrand:
                        dp = wi[k, DPOS]
                        d = DB[dp]
                        wi[k, DPOS] = dp + 1
                    else:
                        d = downfix
                    tr = now + d
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
                    rn += 1
                    wi[k, RN] = rn
                    full |= rn == rcap
                    rb += rcap
                nr += n
                ist[DMIN] -= 1
                ist[RFULL] = full
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
