"""The streamed loop of the synchronous family with fixed delays, compiled with numba (imported lazily by
:mod:`stalegrad.sim.epochs`).

Under a protocol that cancels, takes only gradients computed on the current version and sends each version to
every worker (k-sync, sync, k-batch-sync, rennala, mindflayer), with one fixed delay each way, every worker starts
a round on version ``v`` at the same instant ``s_v`` (the time version ``v`` reaches them all; 0 for version 0), and
nothing it did before matters any more. So the run is a sequence of *epochs*, one per update, each simple:

* from ``s_v`` each worker runs its rounds in turn (one, if it waits after sending; under mindflayer a round longer
  than the worker's cutoff is abandoned at the cutoff), and the update comes with the ``K``-th gradient to arrive, in
  the reference's order of events ``(time, kind, worker)``: a binary heap over the workers' next events (an arrival,
  or an abandon, which comes first at one instant) gives them in that order;
* at ``t_{v+1}`` the new version leaves, reaching every worker at ``s_{v+1} = t_{v+1} + downlink``: each worker's
  rounds that end by then end (a gradient that finishes by then is sent, and dropped on arrival: it is late); the
  round in progress at ``s_{v+1}`` is cancelled there.

The sums are the reference's, in its order: each worker's compute and cancelled time round after round, and the
compute time of the dropped gradients in the order they arrive (an epoch's late arrivals, sorted by
``(time, worker, round)``, come after the previous epoch's and before the next epoch's, as the compute times are
positive). The loop keeps the Summary's statistics only (mode 1 of :mod:`._events_kernel`): every applied gradient
has staleness 0.

An epoch is all or nothing: when a worker's compute times run out in the middle of one (or the buffer of late
arrivals is full), the loop returns a status with nothing changed, the caller appends the next chunk to what the
worker has left (or grows the buffer), and the epoch runs again from its start, drawing the same numbers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# statuses returned to the caller (DONE, PAUSE and GROW_HIST as in _events_kernel)
DONE, PAUSE, REFILL_COMPUTE, REFILL_UP, REFILL_DOWN, GROW_ROWS = range(6)
GROW_HIST = 10
REFILL_KEEP, GROW_LATE = 20, 21  # a worker's compute times ran out (keep its rest); the late arrivals' buffer is full

# integer state (ist)
V, EVENTS, ROWS, WHO, NEED, MAXTAU, GRAD, DROPPED, LIMIT, STARTED = range(10)
NIST = 10
# float state (fst): time of update `warm`, of the last update, when the current version reaches the workers,
# compute time of the gradients dropped
T_WARM, T_END, S, DROPT = range(4)
NFST = 4
# parameters (par)
N, KK, U, WAITS, CUTS, WARM, NB, SPAN = range(8)
NPAR = 8
UPFIX, DOWNFIX = range(2)  # float parameters (fpar)
# per-worker integer state (wi): its compute times C[CPOS:CEND]; UPOS..DEND unused (no random delays here)
CPOS, CEND, UPOS, UEND, DPOS, DEND = range(6)
NWI = 6
# per-worker float state (wf): compute time of its rounds finished, of its rounds cancelled or abandoned; cutoff
COMPUTE, CANCEL, CUT = range(3)
NWF = 3
INF_BITS = 0x7FF0000000000000  # +inf as int64 bits
#: with one round each (a worker that waits), up to this many workers are ranked all against all; more in a tree
RANKS_MAX = 64


@njit(cache=True, nogil=True, inline="always")
def _replay(hti, hw, m, i, t, h):
    """Worker ``i``'s next event is now ``(t, h)``: carry it up the winner tree (node ``j`` holds the first event
    below it, ``hti[j], hw[j]``; leaf ``m + i``) against each sibling, without branches (conditional moves): by
    time, then kind and worker (``h``). Times are compared as their int64 bits (they are ``>= 0``: the bits order
    as the floats do, and integers select without a branch)."""
    one = np.uint64(1)
    j = np.uint64(m + i)  # (unsigned: no code for negative indices)
    hti[j] = t
    hw[j] = h
    while j > one:
        ts = hti[j ^ one]
        hs = hw[j ^ one]
        first = (t < ts) | ((t == ts) & (h < hs))
        t = t if first else ts
        h = h if first else hs
        j >>= one
        hti[j] = t
        hw[j] = h


@njit(cache=True, nogil=True, inline="always")
def _event(i, st, x, up, cuts, cut, n):
    """The heap entry of worker ``i``'s round that started at ``st`` and takes ``x``: its abandon at the cutoff
    (kind 0) or its gradient's arrival (kind 1)."""
    if cuts and x > cut:
        return st + cut, np.int64(i)
    return (st + x) + up, np.int64(n + i)


@njit(cache=True, nogil=True, _nrt=False)
def advance_epochs(
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
    tpos: np.ndarray,
    tst: np.ndarray,
    tx: np.ndarray,
    tcomp: np.ndarray,
    tcanc: np.ndarray,
    tapp: np.ndarray,
    la: np.ndarray,
    lk: np.ndarray,
    lx: np.ndarray,
    hist: np.ndarray,
    bsum: np.ndarray,
    bcnt: np.ndarray,
    wsum: np.ndarray,
    wcnt: np.ndarray,
    trsum: np.ndarray,
) -> int:
    """Run epochs until ``par[U]`` updates (DONE), or the progress limit (PAUSE), or a request (see the module
    docstring). The state between epochs: ``ist``, ``fst``, each worker's position in ``C`` and its sums in ``wf``;
    the other arrays are scratch."""
    n = par[N]
    K = par[KK]
    updates = par[U]
    waits = par[WAITS] != 0
    cuts = par[CUTS] != 0
    warm = par[WARM]
    nb = par[NB]
    span = par[SPAN]
    up = fpar[UPFIX]
    down = fpar[DOWNFIX]
    lcap = la.shape[0]
    ranks = waits and not cuts and n <= RANKS_MAX
    m = ht.shape[0] // 2  # leaves of the winner tree: m >= n, a power of two (padded with events never first)
    if hist.shape[0] < 1:
        ist[NEED] = 1
        return GROW_HIST
    while ist[V] < updates:
        if ist[EVENTS] >= ist[LIMIT]:
            return PAUSE
        v = ist[V]
        s = fst[S]
        last = v + 1 == updates
        # every worker starts a round at s
        for i in range(n):
            u = np.uint64(i)  # (indices unsigned: no code for negative ones)
            p = wi[u, CPOS]
            if p == wi[u, CEND]:
                ist[WHO] = i
                return REFILL_KEEP
            x = C[np.uint64(p)]
            tpos[u] = p + 1
            tst[u] = s
            tx[u] = x
            tcomp[u] = wf[u, COMPUTE]
            tcanc[u] = wf[u, CANCEL]
            tapp[u] = 0
            ht[m + i], hw[m + i] = _event(i, s, x, up, cuts, wf[u, CUT], n)
        rounds = n
        got = 0
        t = 0.0
        if ranks:  # one round each: the K first by rank, without branches
            for i in range(n):
                u = np.uint64(i)  # (indices unsigned: no code for negative ones)
                a = ht[m + i]
                r = 0
                for j in range(n):
                    b = ht[m + j]
                    r += (b < a) | ((b == a) & (j < i))
                tapp[u] = r
            for i in range(n):
                u = np.uint64(i)  # (indices unsigned: no code for negative ones)
                if tapp[u] < K:
                    tcomp[u] += tx[u]
                    tst[u] = np.inf
                if tapp[u] == K - 1:
                    t = ht[m + i]
            for i in range(n):
                u = np.uint64(i)  # (indices unsigned: no code for negative ones)
                tapp[u] = tapp[u] < K
        if not ranks:  # the winner tree over the workers' next events
            for j in range(m - 1, 0, -1):
                ta = hti[2 * j]
                tb = hti[2 * j + 1]
                ha = hw[2 * j]
                hb = hw[2 * j + 1]
                first = (ta < tb) | ((ta == tb) & (ha < hb))
                hti[j] = ta if first else tb
                hw[j] = ha if first else hb
        # the K first gradients to arrive
        while not ranks:
            h = hw[1]
            arrival = h >= n
            i = h - n if arrival else h
            u = np.uint64(i)
            st = tst[u]
            x = tx[u]
            if arrival:
                tcomp[u] += x
                tapp[u] += 1
                got += 1
                if got == K:
                    t = ht[1]
                    if waits:  # it waits for the next version
                        tst[u] = np.inf
                    else:  # its next round (started when it sent), walked below
                        p = tpos[u]
                        if p == wi[u, CEND]:
                            ist[WHO] = i
                            return REFILL_KEEP
                        tpos[u] = p + 1
                        tst[u] = st + x
                        tx[u] = C[np.uint64(p)]
                        rounds += 1
                    break
                nst = st + x
            else:  # abandoned at its cutoff
                tcanc[u] += ht[1] - st
                nst = ht[1]
            if waits and arrival:  # it waits for the next version
                tst[u] = np.inf
                _replay(hti, hw, m, i, INF_BITS, 2 * n + i)
            else:
                p = tpos[u]
                if p == wi[u, CEND]:
                    ist[WHO] = i
                    return REFILL_KEEP
                x = C[np.uint64(p)]
                tpos[u] = p + 1
                tst[u] = nst
                tx[u] = x
                rounds += 1
                ht[0], he = _event(i, nst, x, up, cuts, wf[u, CUT], n)  # (node 0: unused, a place to convert)
                _replay(hti, hw, m, i, hti[0], he)
        # the rounds that end by the end of the epoch: s_{v+1} (the new version reaches the workers), or t for the
        # last update (the run stops with the arrival that makes it: nothing after it counts, nothing is cancelled)
        end = t if last else t + down
        nl = 0
        for i in range(n):
            u = np.uint64(i)  # (indices unsigned: no code for negative ones)
            st = tst[u]
            if st == np.inf:
                continue
            x = tx[u]
            r = 0
            while True:
                if cuts and x > wf[u, CUT]:
                    e = st + wf[u, CUT]
                    if e > end:
                        if not last:
                            tcanc[u] += end - st
                        break
                    tcanc[u] += e - st
                    nst = e
                else:
                    f = st + x
                    if f > end:
                        if not last:
                            tcanc[u] += end - st
                        break
                    tcomp[u] += x
                    if not last:  # sent, and late on arrival
                        if nl == lcap:
                            ist[NEED] = 2 * lcap
                            return GROW_LATE
                        la[nl] = f + up
                        lk[nl] = i * (np.int64(1) << 32) + r
                        lx[nl] = f - st
                        nl += 1
                        r += 1
                    if waits:
                        break
                    nst = f
                p = tpos[u]
                if p == wi[u, CEND]:
                    ist[WHO] = i
                    return REFILL_KEEP
                x = C[np.uint64(p)]
                tpos[u] = p + 1
                st = nst
                rounds += 1

        # the epoch is taken: commit it
        for j in range(1, nl):  # late arrivals in the reference's order (insertion sort: they are few)
            a, k, y = la[j], lk[j], lx[j]
            e = j
            while e > 0 and (la[e - 1] > a or (la[e - 1] == a and lk[e - 1] > k)):
                la[e], lk[e], lx[e] = la[e - 1], lk[e - 1], lx[e - 1]
                e -= 1
            la[e], lk[e], lx[e] = a, k, y
        d = fst[DROPT]
        for j in range(nl):
            d += lx[j]
        fst[DROPT] = d
        ist[DROPPED] += nl
        upd = v + 1
        if upd > warm:
            bidx = (v - warm) * nb // span if v >= warm else 0
            hist[0] += K
            bcnt[bidx] += K
        # (staleness 0: the sums of staleness, trsum, bsum and wsum, do not change)
        for i in range(n):
            u = np.uint64(i)  # (indices unsigned: no code for negative ones)
            wi[u, CPOS] = tpos[u]
            wf[u, COMPUTE] = tcomp[u]
            wf[u, CANCEL] = tcanc[u]
            if upd > warm:
                wcnt[u] += tapp[u]
        ist[GRAD] += K
        ist[EVENTS] += rounds + K + nl
        if upd == warm:
            fst[T_WARM] = t
        fst[T_END] = t
        fst[S] = t + down
        ist[V] = upd
    return DONE
