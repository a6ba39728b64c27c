"""The invariants of a :class:`~stalegrad.trace.Trace` (:meth:`Trace.validate <stalegrad.trace.Trace.validate>`).

What every engine's Trace satisfies, and so what a Trace read from a file or a checkpoint must:

* ``worker`` in ``0..n-1``; ``round >= 1``; ``start``, ``sent``, ``arrive`` finite; ``version >= 0``;
* ``update`` is ``-1`` (dropped, with its reason in ``dropped``) or ``1..U``; the applied rows, in the order the
  master took them, are update 1 ``K`` times, update 2 ``K`` times, ... (no update missing, none with ``K + 1``);
* an applied row's version is older than its update and its staleness is ``(update - 1) - version`` (0 in the
  synchronous protocols; at most the staleness bound); a dropped row's version existed when the master took it and
  its staleness is the versions made then minus its version;
* in k-async, k-sync and sync, the ``K`` gradients of an update come from ``K`` distinct workers;
* each worker's rounds are distinct and a later round does not start earlier;
* ``update_times`` holds ``U`` finite times.

The checks are vectorised and O(rows) for the usual traces (a sort only when rounds have many gaps); the first
failure is one :class:`~stalegrad.errors.SpecError` line naming the row and the column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import SpecError
from .spec import STALE_PROTOCOLS
from .trace_columns import APPLIED, COLUMNS, DROP_REASONS, LATE, STALE

__all__ = ["check_trace"]


def check_trace(trace: Any, source: str, row: Callable[[int], str]) -> None:
    """Raise a :class:`SpecError` at the first broken invariant (``row(i)`` names the 0-based row ``i``)."""
    _Check(trace, source, row).run()


#: protocols whose K gradients in an update come from K distinct workers
_DISTINCT = ("k-async", "k-sync", "sync")


def _first(ok: np.ndarray) -> int | None:
    """The index of the first False in ``ok`` (``None`` if there is none)."""
    if ok.size == 0 or ok.all():
        return None
    return int(np.argmin(ok))


class _Check:
    """:meth:`Trace.validate`: the checks, in the order their messages are most useful."""

    def __init__(self, trace: Any, source: str, row: Callable[[int], str]) -> None:
        self.t, self.source, self.row = trace, source, row
        self.c = trace.columns

    def fail(self, i: int | None, column: str, what: str) -> SpecError:
        at = f" {self.row(i)}," if i is not None else ""
        return SpecError(f"{self.source}{at} column {column}: {what}")

    def require(self, ok: np.ndarray, column: str, what: Callable[[int], str], where: np.ndarray | None = None) -> None:
        """``ok`` must hold everywhere; ``where`` maps its index to a row (``ok`` is over a subset of rows)."""
        j = _first(ok)
        if j is not None:
            i = int(where[j]) if where is not None else j
            raise self.fail(i, column, what(i))

    def run(self) -> None:
        t, c = self.t, self.c
        n, K = t.system.n, t.system.K
        for k, dt in COLUMNS.items():
            a = c[k]
            want = "integers" if np.dtype(dt).kind in "iu" else "numbers"
            if (
                not isinstance(a, np.ndarray)
                or a.ndim != 1
                or a.dtype.kind not in ("iu" if want == "integers" else "iuf")
            ):
                got = f"shape {a.shape}, dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
                raise self.fail(None, k, f"must be a 1-d array of {want}, got {got}")
        w, upd, ver, drop = c["worker"], c["update"], c["version"], c["dropped"]
        below = w.view(w.dtype.str.replace("i", "u")) < n  # negatives are huge unsigned: one pass
        self.require(below, "worker", lambda i: f"must be a worker from 0 to n-1 = {n - 1}, got {w[i]}")
        self.require(c["round"] >= 1, "round", lambda i: f"must be a round number >= 1, got {c['round'][i]}")
        for k in ("start", "sent", "arrive"):
            i = _first(np.isfinite(c[k]))
            if i is not None:
                raise self.fail(i, k, f"must be a finite time, got {c[k][i]}")
        applied = upd >= 1
        self.require(
            applied | (upd == -1), "update", lambda i: f"must be -1 (dropped) or an update number >= 1, got {upd[i]}"
        )
        self.require(ver >= 0, "version", lambda i: f"must be a version >= 0, got {ver[i]}")
        rows = np.flatnonzero(applied) if not applied.all() else None
        self.require(
            drop == APPLIED if rows is None else (drop == APPLIED) | ~applied,
            "dropped",
            lambda i: f"must be {APPLIED} (applied) in a row applied by update {upd[i]}, got {drop[i]}",
        )
        if rows is not None:
            reasons = ", ".join(f"{k} ({v})" for k, v in DROP_REASONS.items() if k != APPLIED)
            self.require(
                (drop == STALE) | (drop == LATE) | applied,
                "dropped",
                lambda i: f"must give the reason of a dropped row (update -1): {reasons}; got {drop[i]}",
            )
        self.updates(upd if rows is None else upd[rows], rows, K)
        U = t.updates
        times = np.asarray(t.update_times)
        if times.shape != (U,):
            raise SpecError(
                f"{self.source}: update_times must hold {U} times (one per update), got shape {times.shape}"
            )
        u = _first(np.isfinite(times))
        if u is not None:
            raise SpecError(f"{self.source}: update_times must be finite, got {times[u]} for update {u + 1}")
        self.versions(applied, rows, K)
        if t.system.protocol in _DISTINCT and U:
            self.distinct(w if rows is None else w[rows], rows, K)
        self.rounds()

    def updates(self, upd: np.ndarray, rows: np.ndarray | None, K: int) -> None:
        """The applied rows, in order, are update 1 K times, then update 2 K times, ..."""
        A = upd.size
        if A % K == 0 and (upd.reshape(-1, K) == np.arange(1, A // K + 1)[:, None]).all():  # the usual case
            j = None
        else:
            expected = np.arange(A, dtype=np.int64) // K + 1
            j = _first(upd == expected)
        if j is None:
            if A % K:
                i = int(rows[-1]) if rows is not None else A - 1
                raise self.fail(i, "update", f"update {upd[-1]} has {A % K} of its K = {K} gradients (the last)")
            if self.t.updates != A // K:
                raise SpecError(
                    f"{self.source}: update_times must hold {A // K} times (the rows make {A // K} updates), "
                    f"got {self.t.updates}"
                )
            return
        i = int(rows[j]) if rows is not None else j
        u, e, have = int(upd[j]), j // K + 1, j % K
        if u < e and u == e - 1 and have == 0:
            self.twice_in(u)
            what = f"update {u} has more than K = {K} gradients"
        elif u < e:
            what = f"update {u} comes after update {int(upd[j - 1])}: rows must be in the order the master took them"
        elif have:
            what = f"update {e} has {have} of its K = {K} gradients, then update {u} starts"
        else:
            what = (
                f"update {e} is missing: the row after update {e - 1}'s is in update {u} (every update takes K = {K})"
            )
        raise self.fail(i, "update", what)

    def twice_in(self, u: int) -> None:
        """Raise if a gradient (worker, round) is in update ``u`` twice."""
        c = self.c
        seen: dict[tuple[int, int], int] = {}
        for i in np.flatnonzero(c["update"] == u).tolist():
            key = (int(c["worker"][i]), int(c["round"][i]))
            if key in seen:
                raise self._twice(i, seen[key])
            seen[key] = i

    def versions(self, applied: np.ndarray, rows: np.ndarray | None, K: int) -> None:
        """Versions made before the update that applies them; staleness ``(update - 1) - version``; a dropped row's
        version made before the master took it, and its staleness then."""
        c, system = self.c, self.t.system
        upd, ver, tau, drop = c["update"], c["version"], c["staleness"], c["dropped"]
        sub = (lambda a: a) if rows is None else (lambda a: a[rows])
        u, v, s = sub(upd), sub(ver), sub(tau)
        self.require(
            v < u, "version", lambda i: f"version {ver[i]} is not older than update {upd[i]}, which applies it", rows
        )
        self.require(
            s == u - 1 - v,
            "staleness",
            lambda i: f"must be (update - 1) - version = {upd[i] - 1 - ver[i]}, got {tau[i]}",
            rows,
        )
        bound = system.drop_bound
        if bound is not None:
            self.require(s <= bound, "staleness", lambda i: f"{tau[i]} is above the bound {bound}, yet applied", rows)
        if system.protocol not in STALE_PROTOCOLS:
            self.require(
                s == 0, "staleness", lambda i: f"must be 0 in an applied row of {system.protocol}, got {tau[i]}", rows
            )
        if rows is None:
            return
        # a dropped row: the master had made (applied rows before it) // K versions when it took it
        gone = np.flatnonzero(~applied)
        made = (np.cumsum(applied)[gone] - applied[gone]) // K
        v, s, d = ver[gone], tau[gone], drop[gone]
        self.require(
            v <= made, "version", lambda i: f"version {ver[i]} was not made yet when this dropped row arrived", gone
        )
        self.require(
            s == made - v,
            "staleness",
            lambda i: (
                f"must be the versions made when it arrived minus its version, "
                f"{int(applied[:i].sum()) // K - ver[i]}, got {tau[i]}"
            ),
            gone,
        )
        if bound is None:
            self.require(
                d != STALE, "dropped", lambda i: "a row dropped for staleness, but the system has no bound", gone
            )
        else:
            self.require(
                (d != STALE) | (s > bound),
                "dropped",
                lambda i: f"a row dropped for staleness {tau[i]}, not above the bound {bound}",
                gone,
            )
        self.require(
            (d != LATE) | ((s >= 1) & (system.protocol not in STALE_PROTOCOLS)),
            "dropped",
            lambda i: f"a row dropped as superseded (staleness {tau[i]}) in a {system.protocol} trace",
            gone,
        )

    def distinct(self, w: np.ndarray, rows: np.ndarray | None, K: int) -> None:
        """The K gradients of an update come from K distinct workers (k-async, k-sync, sync)."""
        by = np.sort(w.reshape(-1, K), axis=1)
        ok = (by[:, 1:] != by[:, :-1]).all(axis=1)
        u = _first(ok)
        if u is not None:
            j = u * K + K - 1
            i = int(rows[j]) if rows is not None else j
            worker = int(by[u][np.flatnonzero(by[u, 1:] == by[u, :-1])[0]])
            raise self.fail(
                i,
                "worker",
                f"update {u + 1} takes two gradients of worker {worker}: {self.t.system.protocol} "
                "takes K from distinct workers",
            )

    def rounds(self) -> None:
        """Each worker's rounds are distinct, and a later round starts no earlier.

        Worker ``i``'s round ``r`` has a slot ``offset[i] + r - 1`` in an array of ``sum_i max round_i`` slots;
        the rows are scattered into it (each worker's rows land in increasing slots, so this is about one pass over
        memory) and the slots read back in order. When rounds have many gaps (rounds cancelled by the synchronous
        protocols) the slots would outnumber the rows by far: the rows are sorted by worker and round instead.
        """
        c, n = self.c, self.t.system.n
        w, r, start = c["worker"], c["round"], c["start"]
        if w.size < 2:
            return
        top = np.zeros(n, dtype=np.int64)
        np.maximum.at(top, w, r)
        span = int(top.sum()) if float(top.sum(dtype=np.float64)) < 2.0**62 else -1
        if 0 <= span <= 4 * w.size + 4096:
            offset = np.cumsum(top) - top - 1
            slot = offset[w] + r
            count = np.bincount(slot, minlength=span)
            k = _first(count <= 1)
            if k is not None:
                first, i = np.flatnonzero(slot == k)[:2].tolist()
                raise self._twice(i, first)
            if span == w.size:  # every slot filled (no round missing)
                filled, seq = None, np.empty(span)
                seq[slot] = start
            else:
                filled = count > 0
                starts = np.full(span, np.nan)
                starts[slot] = start
                seq = starts[filled]
            later = seq[1:] >= seq[:-1]
            ends = np.cumsum(np.bincount(w, minlength=n))[:-1] - 1
            later[ends[(ends >= 0) & (ends < later.size)]] = True  # from one worker to the next: no order
            k = _first(later)
            if k is None:
                return
            at = np.flatnonzero(filled)[k : k + 2] if filled is not None else np.arange(k, k + 2)
            before, i = (int(np.flatnonzero(slot == s)[0]) for s in at)
            raise self._early(i, before)
        order = np.lexsort((r, w))
        ws, rs = w[order], r[order]
        same = ws[1:] == ws[:-1]
        k = _first(~(same & (rs[1:] == rs[:-1])))
        if k is not None:
            raise self._twice(int(order[k + 1]), int(order[k]))
        st = start[order]
        k = _first(~(same & (st[1:] < st[:-1])))
        if k is not None:
            raise self._early(int(order[k + 1]), int(order[k]))

    def _twice(self, i: int, first: int) -> SpecError:
        c = self.c
        return self.fail(
            i, "round", f"round {c['round'][i]} of worker {c['worker'][i]} is also in {self.row(first)} (twice?)"
        )

    def _early(self, i: int, before: int) -> SpecError:
        c = self.c
        r, start = c["round"], c["start"]
        return self.fail(
            i,
            "start",
            f"round {r[i]} of worker {c['worker'][i]} starts at {start[i]}, before its round {r[before]} "
            f"({self.row(before)}) at {start[before]}",
        )
