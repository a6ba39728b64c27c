"""The hot loop of the fast simulator, compiled with numba (imported lazily by :mod:`stalegrad.sim.fast`).

One pass in arrival order: take the worker whose pending gradient arrives first (ties: lowest worker index),
find the version its round used, record the gradient, apply an update after every K gradients, and move that
worker to its next round.

The loop is bound by one chain of dependent operations (the winner decides what is read next), so it is kept
short:

* The next arrival is found with a loser tree over the workers (Knuth, TAOCP vol. 3, 5.4.1). Replaying a
  leaf-to-root path is ``log2(n)`` branch-free comparisons; ties go to the lower worker index because, on that
  path, the stored loser always comes from the sibling subtree, whose side is known.
* Each worker's round after its pending one is computed one step ahead (send time = start + compute time, the
  same sequential sums as ``numpy.cumsum``), so the winner's next key is one load away.
* The version a round used is a per-worker pointer into the update times that only moves forward, advanced by
  counting, eight at a time, the update times below the threshold (the buffer is padded with +inf).
"""

from __future__ import annotations

import numpy as np
from numba import njit

DONE, REFILL, GROW_HIST, GROW_T = 0, 1, 2, 3

# indices into the integer state vector
P, NUPD, TBASE, WHO, MAXTAU, WIN = 0, 1, 2, 3, 4, 5

#: update times beyond the newest are kept at +inf in this many slots (the version search reads them)
PAD = 8



@njit(cache=True, nogil=True)
def build_tree(keys: np.ndarray, lkey: np.ndarray, lidx: np.ndarray) -> int:
    """Fill the loser tree (``m = len(lkey)`` a power of two >= n; node 1 is the root) and return the winner.

    Leaves ``m..2m-1`` hold workers ``0..m-1``; workers ``>= n`` are padding that arrives at +inf.
    """
    n = keys.shape[0]
    m = lkey.shape[0]
    wkey = np.full(2 * m, np.inf)
    widx = np.arange(2 * m) - m
    wkey[m : m + n] = keys
    for node in range(m - 1, 0, -1):
        lk, li = wkey[2 * node], widx[2 * node]
        rk, ri = wkey[2 * node + 1], widx[2 * node + 1]
        right = rk < lk  # ties: the left child has the lower worker index
        wkey[node] = rk if right else lk
        widx[node] = ri if right else li
        lkey[node] = lk if right else rk
        lidx[node] = li if right else ri
    return widx[1]


@njit(cache=True, nogil=True, inline="always")
def _replay(i: int, key: float, m: int, lkey: np.ndarray, lidx: np.ndarray) -> int:
    """Worker ``i`` (the last winner) re-enters with ``key``; return the new winner."""
    ck = key
    ci = i
    child = i + m
    while child > 1:
        node = child >> 1
        lk = lkey[node]
        li = lidx[node]
        # the stored loser comes from the sibling subtree: it wins ties when that subtree is the left one
        swap = (lk < ck) | ((lk == ck) & ((child & 1) == 1))
        lkey[node] = ck if swap else lk
        lidx[node] = ci if swap else li
        ck = lk if swap else ck
        ci = li if swap else ci
        child = node
    return ci


@njit(cache=True, nogil=True)
def advance(  # noqa: PLR0913 -- a numba kernel takes its state as arrays
    X: np.ndarray,  # (n, width) compute times; row i holds worker i's current block
    xlen: np.ndarray,  # block length per worker
    pos: np.ndarray,  # index in X[i] of the compute time of the round after the pending one
    cur_start: np.ndarray,  # pending round of each worker: start time
    cur_sent: np.ndarray,  # pending round: send time
    cur_arr: np.ndarray,  # pending round: arrival time
    nxt_sent: np.ndarray,  # the round after: send time
    nxt_arr: np.ndarray,  # the round after: arrival time
    rnd: np.ndarray,  # pending round number (1-based)
    vptr: np.ndarray,  # version used by each worker's latest round so far
    T: np.ndarray,  # T[k - tbase] = time of update k; +inf after the newest
    lkey: np.ndarray,  # loser tree: key of the loser stored at each node
    lidx: np.ndarray,  # loser tree: worker of the loser stored at each node
    ist: np.ndarray,  # integer state: P, NUPD, TBASE, WHO (worker to re-enter the tree), MAXTAU, WIN
    fst: np.ndarray,  # float state: time of update `warm`, time of the last update
    up: float,
    down: float,
    K: int,
    total: int,
    mode: int,  # 0: write trace rows; 1: accumulate the summary
    o_worker: np.ndarray,
    o_round: np.ndarray,
    o_start: np.ndarray,
    o_sent: np.ndarray,
    o_arrive: np.ndarray,
    o_version: np.ndarray,
    o_update: np.ndarray,
    o_tau: np.ndarray,
    hist: np.ndarray,
    bsum: np.ndarray,
    bcnt: np.ndarray,
    wsum: np.ndarray,
    wcnt: np.ndarray,
    trsum: np.ndarray,
    nb: int,
    warm: int,
    U: int,
) -> int:
    p = ist[P]
    nupd = ist[NUPD]
    tbase = ist[TBASE]
    maxtau = ist[MAXTAU]
    cap = T.shape[0]
    nh = hist.shape[0]
    ntr = trsum.shape[0]
    m = lkey.shape[0]
    span = U - warm
    # update index and batch index kept incrementally (no integer division per gradient)
    u = p // K + 1
    inbatch = p - (u - 1) * K
    b = (u - warm - 1) * nb // span if u > warm else 0
    bnext = warm + ((b + 1) * span + nb - 1) // nb + 1  # first update of batch b + 1
    i = ist[WIN]
    if ist[WHO] >= 0:  # a worker got a new block: compute its round after the pending one
        w = ist[WHO]
        nxt_sent[w] = cur_sent[w] + X[w, 0]
        nxt_arr[w] = nxt_sent[w] + up
        pos[w] = 0
        ist[WHO] = -1
    status = DONE
    while p < total:
        a = cur_arr[i]
        s = cur_start[i]
        thr = s - down
        v = vptr[i]
        while True:
            c = 0
            base = v + 1 - tbase
            for k in range(PAD):
                c += T[base + k] < thr
            v += c
            if c < PAD:
                break
        vptr[i] = v
        tau = u - 1 - v
        completes = inbatch + 1 == K
        if mode == 1:
            if u > warm and tau >= nh:
                status = GROW_HIST
                break
            if completes and nupd + 1 - tbase + PAD >= cap:
                status = GROW_T
                break
        sent = cur_sent[i]
        if mode == 0:
            o_worker[p] = i
            o_round[p] = rnd[i]
            o_start[p] = s
            o_sent[p] = sent
            o_arrive[p] = a
            o_version[p] = v
            o_update[p] = u
            o_tau[p] = tau
        else:
            if u <= ntr:
                trsum[u - 1] += tau
            if u > warm:
                hist[tau] += 1
                bsum[b] += tau
                bcnt[b] += 1
                wsum[i] += tau
                wcnt[i] += 1
        maxtau = max(maxtau, tau)
        p += 1
        if completes:
            nupd += 1
            T[nupd - tbase] = a
            fst[1] = a
            if nupd == warm:
                fst[0] = a
            u += 1
            inbatch = 0
            if u >= bnext and u <= U:
                b = (u - warm - 1) * nb // span
                bnext = warm + ((b + 1) * span + nb - 1) // nb + 1
        else:
            inbatch += 1
        if p >= total:
            break
        # worker i moves to its next round (already computed) and computes the one after
        w = i
        ne = nxt_sent[w]
        na = nxt_arr[w]
        i = _replay(w, na, m, lkey, lidx)
        cur_start[w] = sent
        cur_sent[w] = ne
        cur_arr[w] = na
        rnd[w] += 1
        q = pos[w] + 1
        pos[w] = q
        if q == xlen[w]:
            ist[WHO] = w
            status = REFILL
            break
        e2 = ne + X[w, q]
        nxt_sent[w] = e2
        nxt_arr[w] = e2 + up
    ist[WIN] = i
    ist[P] = p
    ist[NUPD] = nupd
    ist[MAXTAU] = maxtau
    return status
