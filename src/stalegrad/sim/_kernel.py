"""The hot loop of the fast simulator, compiled with numba (imported lazily by :mod:`stalegrad.sim.fast`).

The gradients are processed in chunks of up to :data:`CHUNK`, each in two passes:

1. *Merge.* Take the worker whose pending gradient arrives first (ties: lowest worker index), record it, and move
   it to its next round; repeat. This pass is bound by one chain of dependent operations (the winner decides what
   is read next), so it does nothing else.
2. *Versions and statistics.* For each recorded gradient, find the version its round used and write the trace row
   or accumulate the summary. No step here waits for the previous one (except through memory), so the processor
   overlaps many gradients.

Tricks that keep the merge chain short:

* The next arrival is found with a loser tree over the workers (Knuth, TAOCP vol. 3, 5.4.1). Replaying a
  leaf-to-root path is ``log2(n)`` branch-free comparisons.
* Keys are compared as integers: arrival times are finite floats ``>= 0`` (never ``-0.0``: a sum starting from
  ``+0.0`` stays ``+0.0``), and for those the int64 bit patterns order the same way as the floats. The tie rule then
  costs nothing: on a leaf-to-root path the stored loser always comes from the sibling subtree, so it has the lower
  worker index exactly when the path arrives from the right (``odd``), and "``lk < ck``, or ``lk == ck`` and
  ``odd``" is the single integer comparison ``lk - odd < ck``, whose left side is ready before ``ck`` is.
* Send times are prepared per worker as a row of running sums (:func:`fill_row`, the same sequential sums as
  ``numpy.cumsum``), and the arrival key of each worker's round after its pending one is kept ready, so the
  winner's next key is one load away.
* Indices are unsigned: numba then emits no code for negative (from-the-end) indexing.

The version a round used is the number of versions that reached the worker strictly before the round started:
a per-worker pointer into the reach times (update time + downlink, computed once per update, the same floats as
the event engine's) that only moves forward, advanced by counting (branch-free, several at a time, see
:func:`_version`) the reach times below the round's start; the buffer is padded with +inf. The reach times of a
chunk are written before its second pass: every later one is ``>=`` the gradient's arrival + downlink, which is
not below the round's start, so the counts are the same as if they were not there yet. The summary sums
staleness in integers (exact below 2**53, so equal to summing floats one by one).
"""

from __future__ import annotations

import numpy as np
from numba import njit

DONE, REFILL, GROW_HIST, GROW_T = 0, 1, 2, 3

# indices into the integer state vector
P, NUPD, TBASE, WHO, MAXTAU, WIN, KEY, VMIN, NEED, WIDE = range(10)
NSTATE = 10

#: update times beyond the newest are kept at +inf in this many slots (the version search reads them)
PAD = 64
#: gradients per chunk (the per-chunk buffers, 24 bytes a gradient, stay in the L1 cache)
CHUNK = 1024
#: bit pattern of +inf: the key of the padding leaves of the tree
INF_BITS = 0x7FF0000000000000

_1 = np.uint64(1)


@njit(cache=True, nogil=True)
def fill_row(S: np.ndarray, off: int, start: float, sent: float, x: np.ndarray) -> None:
    """Write a worker's block at ``S[off:]``: ``start``, ``sent`` (its pending round), then the send times.

    ``S[off + 2 + k] = sent + x[0] + ... + x[k]``, summed left to right like ``numpy.cumsum``.
    """
    S[off] = start
    S[off + 1] = sent
    acc = sent
    for k in range(x.shape[0]):
        acc += x[k]
        S[off + 2 + k] = acc


@njit(cache=True, nogil=True)
def build_tree(keys: np.ndarray, lkey: np.ndarray, lidx: np.ndarray) -> int:
    """Fill the loser tree (``m = len(lkey)`` a power of two >= n; node 1 is the root) and return the winner.

    ``keys`` are the int64 bit patterns of the arrival times. Leaves ``m..2m-1`` hold workers ``0..m-1``; workers
    ``>= n`` are padding that arrives at +inf.
    """
    n = keys.shape[0]
    m = lkey.shape[0]
    wkey = np.full(2 * m, INF_BITS, dtype=np.int64)
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
def _replay(w, key, m, lkey, lidx, depth):
    """Worker ``w`` (the last winner) re-enters with ``key``; return the new winner and its key.

    ``depth = log2(m)`` levels: a constant where :func:`_merge` dispatches on it, so the loop is unrolled
    (``depth = 0``: any tree, climbing until the root).
    """
    ck = key
    ci = w
    child = w + m
    for _ in range(depth if depth > 0 else 64):
        if depth == 0 and child <= _1:
            break
        node = child >> _1
        lk = lkey[node]
        li = lidx[node]
        # lk < ck, or a tie and the stored loser is from the left subtree (lower worker index)
        swap = lk - np.int64(child & _1) < ck
        lkey[node] = ck if swap else lk
        lidx[node] = ci if swap else li
        ck = lk if swap else ck
        ci = li if swap else ci
        child = node
    return ci, ck


@njit(cache=True, nogil=True, inline="always")
def _merge_body(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax, depth):
    """:func:`_merge` for trees of ``depth`` levels (0: any)."""
    m = np.uint64(lkey.shape[0])
    nxtk = nxtf.view(np.int64)  # the same numbers as bit patterns (the keys of the tree)
    abk = abf.view(np.int64)
    cnt = 0
    who = -1
    while cnt < cmax:
        w = i
        abk[cnt] = ck
        i, ck = _replay(w, nxtk[w], m, lkey, lidx, depth)
        c = cur[w]
        wb[cnt] = w
        cb[cnt] = c
        cnt += 1
        c += _1
        cur[w] = c
        if c == lim[w]:  # the round after is in the next block
            who = np.int64(w)
            break
        nxtf[w] = S[c + _1] + up
    return cnt, i, ck, who


@njit(cache=True, nogil=True)
def _merge(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax):
    """Pass 1: merge up to ``cmax`` gradients (stops early when a worker's block runs out: ``who``).

    The dependency chain is: winner -> its next key (one load) -> replay -> next winner. The rest of the loop is
    off the chain: record the gradient, move the winner to its next round and prepare the key of the one after.
    Trees of up to 1024 leaves get a copy of the loop with the replay unrolled (no loop counter, fewer
    instructions), the rest a generic one.
    """
    depth = 0
    while (1 << depth) < lkey.shape[0]:
        depth += 1
    if depth == 1:
        return _merge_body(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax, 1)
    if depth == 2:
        return _merge_body(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax, 2)
    if depth == 3:
        return _merge_body(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax, 3)
    if depth == 4:
        return _merge_body(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax, 4)
    if depth == 5:
        return _merge_body(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax, 5)
    if depth == 6:
        return _merge_body(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax, 6)
    if depth == 7:
        return _merge_body(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax, 7)
    if depth == 8:
        return _merge_body(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax, 8)
    if depth == 9:
        return _merge_body(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax, 9)
    if depth == 10:
        return _merge_body(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax, 10)
    return _merge_body(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax, 0)


@njit(cache=True, nogil=True, inline="always")
def _version(T, v, tbase, thr, wide):
    """Move the version pointer ``v`` forward past every reach time below ``thr``.

    Counting is branch-free: first (if ``wide``) whole blocks of 8, by comparing the last time of each of the next
    8 blocks, then single times, 8 (if ``wide``) or 4 at a time; a loop repeats only when all it compared were below.
    Counting 4 costs half the instructions of 8 and suits pointers that move a few updates per round; pointers that
    move many (a slow worker, or many workers per update) save most from the blocks.
    """
    if wide:
        while True:
            base = np.uint64(v + 8 - tbase)  # the last time of the next block
            c = 0
            for k in range(8):
                c += T[base + np.uint64(8 * k)] < thr
            v += 8 * c
            if c < 8:
                break
    width = 8 if wide else 4
    while True:
        base = np.uint64(v + 1 - tbase)
        c = 0
        for k in range(width):
            c += T[base + np.uint64(k)] < thr
        v += c
        if c < width:
            return v


@njit(cache=True, nogil=True, inline="always")
def _steady_body(S, T, vptr, wb, cb, tbase, down, K, j, je, u, r, hist, wsum, wcnt, post, wide):
    """:func:`_steady` for constant ``post`` and ``wide``. Loops by update, so ``u`` needs no division."""
    maxtau = 0
    acc = 0
    while j < je:
        stop = min(je, j + K - r)
        um1 = u - 1
        for jj in range(np.uint64(j), np.uint64(stop)):
            w = wb[jj]
            v = _version(T, vptr[w], tbase, S[cb[jj] - _1], wide)
            vptr[w] = v
            tau = um1 - v
            if post:
                hist[np.uint64(tau)] += 1
                wsum[w] += tau
                wcnt[w] += 1
                acc += tau
            maxtau = max(maxtau, tau)
        j = stop
        u += 1
        r = 0
    return acc, maxtau


@njit(cache=True, nogil=True)
def _steady(S, T, vptr, wb, cb, tbase, down, K, j, je, u, r, hist, wsum, wcnt, post, wide):
    """Pass 2 for chunk gradients ``j..je-1`` (the first is ``r`` gradients into update ``u``), all in the
    warm-up (``post`` false: versions and the largest staleness only) or all in one batch after it (also the
    histogram and per-worker sums). Returns the staleness sum and the largest staleness."""
    if post:
        if wide:
            return _steady_body(S, T, vptr, wb, cb, tbase, down, K, j, je, u, r, hist, wsum, wcnt, True, True)
        return _steady_body(S, T, vptr, wb, cb, tbase, down, K, j, je, u, r, hist, wsum, wcnt, True, False)
    if wide:
        return _steady_body(S, T, vptr, wb, cb, tbase, down, K, j, je, u, r, hist, wsum, wcnt, False, True)
    return _steady_body(S, T, vptr, wb, cb, tbase, down, K, j, je, u, r, hist, wsum, wcnt, False, False)


@njit(cache=True, nogil=True)
def advance(
    S: np.ndarray,  # send-time rows of all workers, flattened (see fill_row)
    cur: np.ndarray,  # index in S of each worker's pending round (its send time; its start is one before)
    lim: np.ndarray,  # index in S of the last round of each worker's block
    rb: np.ndarray,  # round number of the round at index c of S is rb[worker] + c
    nxtf: np.ndarray,  # arrival time of each worker's round after its pending one
    vptr: np.ndarray,  # version used by each worker's latest round so far
    T: np.ndarray,  # T[k - tbase] = time version k reaches the workers (update time + downlink); +inf after
    lkey: np.ndarray,  # loser tree: key (int64 bits) of the loser stored at each node
    lidx: np.ndarray,  # loser tree: worker (uint64) of the loser stored at each node
    ist: np.ndarray,  # integer state: see P, NUPD, ... above
    fst: np.ndarray,  # float state: time of update `warm`, time of the last update
    wb: np.ndarray,  # chunk buffer (uint64): worker of each gradient
    cb: np.ndarray,  # chunk buffer (uint64): index in S of its round
    abf: np.ndarray,  # chunk buffer (float64): its arrival time
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
    wsum: np.ndarray,  # int64 here (exact, converted by the caller)
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
    span = U - warm
    wide = ist[WIDE] != 0
    if ist[WHO] >= 0:  # a worker got a new block: compute its round after the pending one
        w = ist[WHO]
        nxtf[w] = S[cur[w] + _1] + up
        ist[WHO] = -1
    i = np.uint64(ist[WIN])
    ck = ist[KEY]
    status = DONE
    while p < total:
        cmax = min(wb.shape[0], total - p)
        need = (p + cmax) // K - nupd  # updates this chunk may complete
        if nupd + need - tbase + PAD >= cap:
            ist[NEED] = need
            status = GROW_T
            break
        if mode == 1:  # the histogram must hold every staleness of the chunk: tau <= u - 1 - vptr[worker]
            ulast = (p + cmax - 1) // K + 1
            if ulast > warm and ulast - 1 - ist[VMIN] >= nh:
                ist[VMIN] = vptr.min()  # the pointers only move forward: an old minimum is a lower bound
                if ulast - 1 - ist[VMIN] >= nh:
                    ist[NEED] = ulast - ist[VMIN]
                    status = GROW_HIST
                    break

        # pass 1: the merge
        cnt, i, ck, who = _merge(S, cur, lim, nxtf, lkey, lidx, wb, cb, abf, up, i, ck, cmax)

        # the update times of the chunk
        p0 = p
        p += cnt
        g = (nupd + 1) * K - 1  # the gradient that completes the next update
        while g < p:
            nupd += 1
            a = abf[g - p0]
            T[nupd - tbase] = a + down
            if nupd == warm:
                fst[0] = a
            fst[1] = a
            g += K

        # pass 2: versions and statistics, in runs of gradients that are treated alike
        g = p0
        while g < p:
            u = g // K + 1
            if mode == 0 or u <= ntr:  # trace rows, or the first updates: every case, one update at a time
                ge = min(p, u * K)
                b = (u - warm - 1) * nb // span if u > warm else 0
                for j in range(g - p0, ge - p0):
                    w = wb[j]
                    c = cb[j]
                    s = S[c - _1]
                    v = _version(T, vptr[w], tbase, s, True)
                    vptr[w] = v
                    tau = u - 1 - v
                    maxtau = max(maxtau, tau)
                    if mode == 0:
                        q = p0 + j  # the gradient's index in the run
                        o_worker[q] = w
                        o_round[q] = rb[w] + np.int64(c)
                        o_start[q] = s
                        o_sent[q] = S[c]
                        o_arrive[q] = abf[j]
                        o_version[q] = v
                        o_update[q] = u
                        o_tau[q] = tau
                    else:
                        if u <= ntr:
                            trsum[u - 1] += tau
                        if u > warm:
                            hist[tau] += 1
                            bsum[b] += tau
                            bcnt[b] += 1
                            wsum[w] += tau
                            wcnt[w] += 1
            else:  # the warm-up (versions and the maximum only), or the steady state up to the end of the batch
                post = u > warm
                b = (u - warm - 1) * nb // span if post else 0
                bnext = warm + ((b + 1) * span + nb - 1) // nb + 1 if post else warm + 1  # first update of batch b + 1
                ge = min(p, (bnext - 1) * K)
                j0, j1, r = g - p0, ge - p0, g - (u - 1) * K
                acc, mt = _steady(S, T, vptr, wb, cb, tbase, down, K, j0, j1, u, r, hist, wsum, wcnt, post, wide)
                maxtau = max(maxtau, mt)
                if post:
                    bsum[b] += acc  # an integer below 2**53: the same float as adding one by one
                    bcnt[b] += ge - g
            g = ge
        if who >= 0 and p < total:
            ist[WHO] = who
            status = REFILL
            break
    ist[WIN] = np.int64(i)
    ist[KEY] = ck
    ist[P] = p
    ist[NUPD] = nupd
    ist[MAXTAU] = maxtau
    return status
