"""The streamed loop of k-batch-async with any delays, compiled with numba (imported lazily by
:mod:`stalegrad.sim.chunks`).

Under k-batch-async (no staleness bound) a worker never waits and nothing is cancelled, so its rounds follow each
other whatever the master does: round ``j`` is sent at ``f_j = f_{j-1} + x_j`` and arrives at ``f_j + u_j``
(``u_j`` its uplink delay). With a random uplink a worker's gradients may arrive out of round order, so each worker
keeps a *row*: its rounds drawn so far, sorted by (arrival, round) (an insertion from the back: rounds come nearly
in order). An entry whose arrival is no later than the last send time drawn is *final*: every round not drawn yet
arrives no earlier, and at a tie the earlier round comes first. The gradients are then taken in chunks, in two
passes, as in the fast path (:mod:`._kernel`):

1. *Merge.* A loser tree over the workers' first final entries gives the arrivals in the reference's order (time,
   then worker, then round); the chunk stops early when a worker has no final entry after its pending one (its row
   then draws more rounds).
2. *Versions and statistics.* Every update of the chunk is the arrival of its ``K``-th gradient. Update ``v``
   reaches worker ``w`` at ``R(v, w) = t_v + d(v, w)`` (its downlink delay, drawn from ``w``'s stream in update
   order, as the reference does; one column for a fixed delay), and a round that starts at ``s`` uses the newest
   version that reached its worker strictly before: the largest ``v`` with ``R(v, w) < s``. With ``M(v, w)``, the
   smallest ``R(v', w)`` over ``v' >= v`` (non-decreasing in ``v``), that is the number of ``v >= 1`` with
   ``M(v, w) < s``: a per-worker pointer that moves forward by counting (four at a time, branch-free) or back (a
   worker's starts are not in arrival order when its uplink is random). A new update lowers the ``M`` before it in
   its column while they are above its reach time. The versions not yet known do not matter: they come after the
   chunk's last arrival, so they reach no worker before any round of the chunk starts.

The loop returns a status with nothing half done when it needs something (a compute time, a delay, room in a row,
for the update times or in the histogram): the caller supplies it and calls again, so the draws are taken from each
stream in the reference's order. It keeps the Summary's statistics only (mode 1 of :mod:`._events_kernel`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# statuses returned to the caller (DONE, PAUSE, REFILL_* and GROW_HIST as in _events_kernel)
DONE, PAUSE, REFILL_COMPUTE, REFILL_UP, REFILL_DOWN, GROW_ROWS = range(6)  # (REFILL_DOWN, GROW_ROWS: never)
GROW_HIST = 10
GROW_ROW, GROW_T = 23, 24  # a worker's row is full; the update times need room (NEED more updates)
REFILL_DOWNS = 26  # the downlink delays of every worker are used up (they are used in step: one each an update)

# integer state (ist); P: gradients taken; HELD: gradients of a merged chunk whose statistics wait (room in the
# histogram); GEN: the worker whose row must draw more rounds (-1: none); STARTED: 0 until every row is ready
V, P, EVENTS, LIMIT, WHO, NEED, MAXTAU, GRAD, DROPPED, TBASE, WIN, KEY, STARTED, GEN, HELD = range(15)
DP, DE = 15, 16  # the downlink delays: DB[d * n + w] is worker w's d-th of the chunk; the next d, the chunk's end
NIST = 17
# float state (fst): time of update `warm`, of the last update, the last arrival; compute time of the dropped (none)
T_WARM, T_END, NOW, DROPT = range(4)
NFST = 4
# parameters (par); G: rounds a row draws at a time
N, KK, U, WARM, NB, SPAN, UPRAND, DOWNRAND, G = range(9)
NPAR = 9
UPFIX, DOWNFIX = range(2)  # float parameters (fpar)
# per-worker integer state (wi): where its draws are (C, UB; DPOS, DEND unused)
CPOS, CEND, UPOS, UEND, DPOS, DEND = range(6)
NWI = 6
# per-worker float state (wf): compute time of its rounds drawn, cancelled (none), send time of its last round drawn
COMPUTE, CANCEL, LAST = range(3)
NWF = 3

#: update times beyond the newest are kept at +inf in this many rows (the forward count reads them)
PAD = 8
#: gradients per chunk, at most
CHUNK = 1024
INF_BITS = 0x7FF0000000000000  # +inf as int64 bits


@njit(cache=True, nogil=True, inline="always")
def _replay(w, key, m, lkey, lidx, depth):
    """Worker ``w`` (the last winner) re-enters the loser tree with ``key``; the new winner and its key (as in
    :mod:`._kernel`: a tie goes to the lower worker, which is the stored loser exactly when the path comes from the
    right; ``depth`` a constant where the caller dispatches on it, 0 for any tree)."""
    ck = key
    ci = w
    child = w + m
    for _ in range(depth if depth > 0 else 64):
        if depth == 0 and child <= 1:
            break
        node = child >> 1
        nu = np.uint64(node)
        lk = lkey[nu]
        li = lidx[nu]
        swap = lk - (child & 1) < ck
        lkey[nu] = ck if swap else lk
        lidx[nu] = ci if swap else li
        ck = lk if swap else ck
        ci = li if swap else ci
        child = node
    return ci, ck


@njit(cache=True, nogil=True, inline="always")
def _merge_body(rk, hd, lm, nxk, lkey, lidx, wb, cb, abk, i, ck, cmax, depth):
    m = lkey.shape[0]
    cnt = 0
    who = -1
    while cnt < cmax:  # (indices unsigned: no code for negative ones)
        w = i
        wu = np.uint64(w)
        abk[np.uint64(cnt)] = ck
        i, ck = _replay(w, nxk[wu], m, lkey, lidx, depth)
        c = hd[wu]
        wb[np.uint64(cnt)] = w
        cb[np.uint64(cnt)] = c
        cnt += 1
        c += 1
        hd[wu] = c
        if c == lm[wu]:  # its entry after the new pending one is not final yet
            who = w
            break
        nxk[wu] = rk[np.uint64(c + 1)]
    return cnt, i, ck, who


@njit(cache=True, nogil=True)
def _merge(rk, hd, lm, nxk, lkey, lidx, wb, cb, abk, i, ck, cmax):
    """Pass 1: up to ``cmax`` arrivals (fewer when a worker's row runs out of final entries: ``who``). Trees of up to
    256 leaves get a copy of the loop with the replay unrolled."""
    depth = 0
    while (1 << depth) < lkey.shape[0]:
        depth += 1
    if depth == 1:
        return _merge_body(rk, hd, lm, nxk, lkey, lidx, wb, cb, abk, i, ck, cmax, 1)
    if depth == 2:
        return _merge_body(rk, hd, lm, nxk, lkey, lidx, wb, cb, abk, i, ck, cmax, 2)
    if depth == 3:
        return _merge_body(rk, hd, lm, nxk, lkey, lidx, wb, cb, abk, i, ck, cmax, 3)
    if depth == 4:
        return _merge_body(rk, hd, lm, nxk, lkey, lidx, wb, cb, abk, i, ck, cmax, 4)
    if depth == 5:
        return _merge_body(rk, hd, lm, nxk, lkey, lidx, wb, cb, abk, i, ck, cmax, 5)
    if depth == 6:
        return _merge_body(rk, hd, lm, nxk, lkey, lidx, wb, cb, abk, i, ck, cmax, 6)
    if depth == 7:
        return _merge_body(rk, hd, lm, nxk, lkey, lidx, wb, cb, abk, i, ck, cmax, 7)
    if depth == 8:
        return _merge_body(rk, hd, lm, nxk, lkey, lidx, wb, cb, abk, i, ck, cmax, 8)
    return _merge_body(rk, hd, lm, nxk, lkey, lidx, wb, cb, abk, i, ck, cmax, 0)


@njit(cache=True, nogil=True)
def _draw(w, par, fpar, wi, wf, C, UB, ra, rk, rs, hd, lm, tl, rcap):
    """Draw worker ``w``'s next rounds into its row (``par[G]`` of them, and until an entry after its pending one is
    final); a status when a draw or room is missing (the rounds drawn so far stay: each is whole)."""
    uprand = par[UPRAND] != 0
    base = w * rcap
    made = 0
    while made < par[G] or lm[w] < hd[w] + 1:
        if tl[w] == base + rcap:  # the row is full: move its entries to its start, or ask for a longer row
            h = hd[w]
            if h > base:
                for j in range(tl[w] - h):
                    ra[base + j] = ra[h + j]
                    rs[base + j] = rs[h + j]
                lm[w] -= h - base
                tl[w] -= h - base
                hd[w] = base
            if tl[w] == base + rcap:
                return DONE if lm[w] >= hd[w] + 1 else GROW_ROW
        c = wi[w, CPOS]
        if c == wi[w, CEND]:
            return DONE if lm[w] >= hd[w] + 1 else REFILL_COMPUTE
        if uprand and wi[w, UPOS] == wi[w, UEND]:
            return DONE if lm[w] >= hd[w] + 1 else REFILL_UP
        x = C[c]
        wi[w, CPOS] = c + 1
        s = wf[w, LAST]
        f = s + x
        if uprand:
            q = wi[w, UPOS]
            d = UB[q]
            wi[w, UPOS] = q + 1
        else:
            d = fpar[UPFIX]
        wf[w, LAST] = f
        wf[w, COMPUTE] += x
        # insert (arrival, start) from the back; an equal arrival stays behind (its round is earlier)
        j = tl[w]
        ra[j] = f + d
        rs[j] = s
        key = rk[j]
        while j > hd[w] and rk[np.uint64(j - 1)] > key:
            ra[np.uint64(j)] = ra[np.uint64(j - 1)]
            rs[np.uint64(j)] = rs[np.uint64(j - 1)]
            j -= 1
        if j < tl[w]:
            ra[j] = f + d
            rs[j] = s
        tl[w] += 1
        made += 1
        while lm[w] + 1 < tl[w] and ra[lm[w] + 1] <= f:  # the entries arriving by f are final
            lm[w] += 1
    return DONE


@njit(cache=True, nogil=True)
def _drop(M, ncol, tbase, nupd, rs, hd, tl, wf, vp):
    """Drop the versions no round still to come can use: each worker's rounds start no earlier than the earliest
    start in its row (or its last send time), so they use no version older than those reaching it by then. Move
    the rest to the front of ``M``; the new base."""
    rows = nupd - tbase + 1
    low = nupd
    for w in range(hd.shape[0]):
        first = wf[w, LAST]
        for j in range(hd[w], tl[w]):
            first = min(first, rs[j])
        col = w if ncol > 1 else 0
        lo, hi = 0, rows  # the rows below ``first`` (a column is non-decreasing): a binary search
        while lo < hi:
            mid = (lo + hi) >> 1
            if M[mid * ncol + col] < first:
                lo = mid + 1
            else:
                hi = mid
        v = tbase - 1 + lo
        vp[w] = max(vp[w], v)
        low = min(low, v)
    new = max(tbase, low)
    shift = (new - tbase) * ncol
    if shift > 0:
        live = (rows - (new - tbase)) * ncol
        for e in range(live):
            M[e] = M[e + shift]
        for e in range(live, rows * ncol):
            M[e] = np.inf
    return new


@njit(cache=True, nogil=True, inline="always")
def _versions_body(M, rs, wb, cb, vp, tb, p, cnt, K, tbase, ncol, dr):
    """:func:`_versions` for a constant ``ncol`` (1, or ``dr = 1``: a column per worker)."""
    cm = 0
    j = 0
    while j < cnt:
        um1 = (p + j) // K  # the update these gradients go into, minus one
        je = min(cnt, (um1 + 1) * K - p)
        for jj in range(np.uint64(j), np.uint64(je)):
            w = wb[jj]
            s = rs[np.uint64(cb[jj])]
            col = w * dr
            v = vp[np.uint64(w)]
            while True:  # forward, counting four reach times at a time (branch-free)
                e = np.uint64((v + 1 - tbase) * ncol + col)
                c = 0
                for k in range(4):
                    c += M[e + np.uint64(k * ncol)] < s
                v += c
                if c < 4:
                    break
            while v > 0 and M[np.uint64((v - tbase) * ncol + col)] >= s:  # back (a start before the last one)
                v -= 1
            vp[np.uint64(w)] = v
            tau = um1 - v
            tb[jj] = tau
            cm = max(cm, tau)
        j = je
    return cm


@njit(cache=True, nogil=True)
def _versions(M, rs, wb, cb, vp, tb, p, cnt, K, tbase, ncol):
    """Pass 2a: the version and staleness of the chunk's gradients (``tb``); the largest staleness."""
    if ncol == 1:
        return _versions_body(M, rs, wb, cb, vp, tb, p, cnt, K, tbase, 1, 0)
    return _versions_body(M, rs, wb, cb, vp, tb, p, cnt, K, tbase, ncol, 1)


@njit(cache=True, nogil=True)
def _statistics(wb, tb, p, cnt, K, warm, nb, span, hist, bsum, bcnt, wsum, wcnt, trsum):
    """Pass 2b: the Summary's statistics, an update at a time. Staleness is summed in integers (exact below 2**53,
    so the same floats as adding one by one, in the event loop's order)."""
    ntr = trsum.shape[0]
    j = 0
    while j < cnt:
        u = (p + j) // K + 1
        je = min(cnt, u * K - p)
        post = u > warm
        b = (u - warm - 1) * nb // span if post else 0
        acc = 0
        for jj in range(np.uint64(j), np.uint64(je)):
            tau = tb[jj]
            if u <= ntr:
                trsum[u - 1] += tau
            if post:
                w = np.uint64(wb[jj])
                hist[np.uint64(tau)] += 1
                acc += tau
                wsum[w] += tau
                wcnt[w] += 1
        if post:
            bsum[b] += acc
            bcnt[b] += je - j
        j = je


@njit(cache=True, nogil=True, _nrt=False)
def advance_chunks(
    par: np.ndarray,
    fpar: np.ndarray,
    ist: np.ndarray,
    fst: np.ndarray,
    wi: np.ndarray,
    wf: np.ndarray,
    C: np.ndarray,
    UB: np.ndarray,
    DB: np.ndarray,  # downlink delays, the workers' side by side (a row an update: they are used in step)
    ra: np.ndarray,  # rows (worker w: ra[w * rcap ...]): arrival time of each round drawn, sorted
    rk: np.ndarray,  # ... the same as int64 bits (the keys)
    rs: np.ndarray,  # ... its start
    hd: np.ndarray,  # index in the rows of each worker's pending entry (its key is in the tree)
    lm: np.ndarray,  # ... of its last final entry
    tl: np.ndarray,  # ... one past its last entry
    nxk: np.ndarray,  # key of the entry after its pending one
    vp: np.ndarray,  # version found for its last gradient (where its next search starts)
    M: np.ndarray,  # M[(v - tbase) * ncol + col]: smallest reach time of versions >= v at the column's worker
    lkey: np.ndarray,  # loser tree: key of the loser stored at each node
    lidx: np.ndarray,  # ... its worker
    wt: np.ndarray,  # scratch (2m) to build the tree
    wk: np.ndarray,  # scratch (2m)
    wb: np.ndarray,  # chunk: worker of each gradient
    cb: np.ndarray,  # chunk: index of its entry in the rows
    abf: np.ndarray,  # chunk: its arrival time
    tb: np.ndarray,  # chunk: its staleness
    hist: np.ndarray,
    bsum: np.ndarray,
    bcnt: np.ndarray,
    wsum: np.ndarray,
    wcnt: np.ndarray,
    trsum: np.ndarray,
) -> int:
    """Take gradients until ``par[U]`` updates (DONE), the progress limit (PAUSE) or a request. State between calls:
    ``ist``, ``fst``, ``wi``, ``wf``, the rows, ``vp``, ``M``, the tree and the chunk (while ``HELD``)."""
    n = par[N]
    K = par[KK]
    total = par[U] * K
    warm = par[WARM]
    nb = par[NB]
    span = par[SPAN]
    downrand = par[DOWNRAND] != 0
    down = fpar[DOWNFIX]
    rcap = ra.shape[0] // n
    ncol = n if downrand else 1
    abk = abf.view(np.int64)
    m = lkey.shape[0]

    if ist[STARTED] == 0:  # every worker's first rounds (its first starts at 0, on version 0)
        for w in range(ist[GEN], n):
            status = _draw(w, par, fpar, wi, wf, C, UB, ra, rk, rs, hd, lm, tl, rcap)
            if status != DONE:
                ist[GEN] = w
                ist[WHO] = w
                return status
        for j in range(2 * m):
            wt[j] = INF_BITS
            wk[j] = j - m
        for w in range(n):
            wt[m + w] = rk[hd[w]]
            nxk[w] = rk[hd[w] + 1]
        for j in range(m - 1, 0, -1):
            lk, li, rkk, ri = wt[2 * j], wk[2 * j], wt[2 * j + 1], wk[2 * j + 1]
            right = rkk < lk  # ties: the left child has the lower worker index
            wt[j] = rkk if right else lk
            wk[j] = ri if right else li
            lkey[j] = lk if right else rkk
            lidx[j] = li if right else ri
        ist[WIN] = wk[1]
        ist[KEY] = wt[1]
        ist[GEN] = -1
        ist[STARTED] = 1

    p = ist[P]
    nupd = ist[V]
    tbase = ist[TBASE]
    maxtau = ist[MAXTAU]
    status = DONE
    while True:
        cnt = ist[HELD]
        if cnt == 0:
            if ist[GEN] >= 0:  # the worker whose row ran out of final entries draws more rounds
                w = ist[GEN]
                status = _draw(w, par, fpar, wi, wf, C, UB, ra, rk, rs, hd, lm, tl, rcap)
                if status != DONE:
                    ist[WHO] = w
                    break
                nxk[w] = rk[hd[w] + 1]
                ist[GEN] = -1
            if p >= total:
                break
            if p >= ist[LIMIT]:
                status = PAUSE
                break
            cmax = min(wb.shape[0], total - p)
            if downrand:  # each update of the chunk needs a downlink delay of every worker
                dmin = ist[DE] - ist[DP]
                if dmin == 0:
                    status = REFILL_DOWNS
                    break
                cmax = min(cmax, (nupd + dmin + 1) * K - 1 - p)
            need = (p + cmax) // K - nupd  # updates this chunk may complete
            if (nupd + need - tbase + 1 + PAD) * ncol > M.shape[0]:
                tbase = _drop(M, ncol, tbase, nupd, rs, hd, tl, wf, vp)
                ist[TBASE] = tbase
            if (nupd + need - tbase + 1 + PAD) * ncol > M.shape[0]:  # still no room: a longer M
                ist[NEED] = need
                status = GROW_T
                break

            # pass 1: the merge
            cnt, i, ck, who = _merge(rk, hd, lm, nxk, lkey, lidx, wb, cb, abk, ist[WIN], ist[KEY], cmax)
            ist[WIN] = i
            ist[KEY] = ck
            ist[GEN] = who

            # the chunk's updates: their reach times, and the smallest reach time from each version on
            g = (nupd + 1) * K - 1  # the gradient that completes the next update
            while g < p + cnt:
                nupd += 1
                t = abf[g - p]
                row = (nupd - tbase) * ncol
                d0 = ist[DP] * n
                if downrand:
                    ist[DP] += 1
                for col in range(ncol):
                    if downrand:
                        r = t + DB[d0 + col]
                        M[row + col] = r
                        e = row + col - ncol
                        while e >= 0 and M[e] > r:
                            M[e] = r
                            e -= ncol
                    else:
                        M[row + col] = t + down
                if nupd == warm:
                    fst[T_WARM] = t
                fst[T_END] = t
                g += K

            # pass 2a: versions and staleness
            cm = _versions(M, rs, wb, cb, vp, tb, p, cnt, K, tbase, ncol)
            maxtau = max(maxtau, cm)
            if cm >= hist.shape[0]:
                ist[HELD] = cnt
                ist[NEED] = cm + 1
                status = GROW_HIST
                break

        # pass 2b: the statistics
        _statistics(wb, tb, p, cnt, K, warm, nb, span, hist, bsum, bcnt, wsum, wcnt, trsum)
        fst[NOW] = abf[cnt - 1]
        p += cnt
        ist[HELD] = 0

    ist[P] = p
    ist[EVENTS] = p
    ist[GRAD] = p
    ist[V] = nupd
    ist[MAXTAU] = maxtau
    return status
