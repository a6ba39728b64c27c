"""The data every engine produces: a :class:`Trace` (one row per gradient) or, for long runs, a :class:`Summary`.

A Trace is columnar. Row ``r`` is one gradient that reached the master: the worker that computed it, its round
(1-based), when the round started, when the gradient was sent and when it arrived at the master, the version it
was computed on, the update that applied it (1-based; ``-1`` if it was dropped), its staleness
``tau = (update - 1) - version`` (for a dropped gradient: the staleness it had when it arrived) and why it was
dropped (:data:`APPLIED` if it was not). Rows are in the order the master took the gradients.
``update_times[u - 1]`` is the time of update ``u``.

:meth:`Trace.validate` checks what every engine's Trace satisfies (and what a Trace read from a file must): every
update ``1..U`` applied by exactly ``K`` rows, in the order the master took them; versions made before the update
that applies them; workers ``0..n-1``; finite times; each worker's rounds distinct and started in order.

A Summary is what a long simulation keeps instead of the rows: a staleness histogram, batch sums for confidence
intervals, per-worker sums and the transient (sum of staleness per update index), after a warm-up of ``warmup``
updates. :meth:`Summary.from_trace` computes the same numbers from a Trace, so every estimate has one source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SpecError
from .spec import ASYNC_PROTOCOLS, System

__all__ = ["APPLIED", "COLUMNS", "DROP_REASONS", "LATE", "STALE", "Summary", "Trace"]

#: ``dropped`` codes: applied, dropped for staleness above the bound, dropped because its version was superseded
#: (synchronous protocols take only gradients of the current version).
APPLIED, STALE, LATE = 0, 1, 2
DROP_REASONS = {APPLIED: "applied", STALE: "staleness above the bound", LATE: "computed on a superseded version"}

#: Trace columns and their dtypes.
COLUMNS = {
    "worker": np.int32,
    "round": np.int64,
    "start": np.float64,
    "sent": np.float64,
    "arrive": np.float64,
    "version": np.int64,
    "update": np.int64,
    "staleness": np.int64,
    "dropped": np.int8,
}


@dataclass(frozen=True, eq=False)
class Trace:
    """One row per gradient taken by the master, plus the update times."""

    columns: dict[str, np.ndarray]
    update_times: np.ndarray
    system: System
    seed: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "dropped" not in self.columns and "worker" in self.columns:  # engines that never drop may omit it
            self.columns["dropped"] = np.zeros(len(self.columns["worker"]), dtype=np.int8)
        lengths = {k: len(v) for k, v in self.columns.items()}
        if set(lengths) != set(COLUMNS) or len(set(lengths.values())) > 1:
            raise ValueError(f"a Trace needs the columns {list(COLUMNS)} of equal length, got {lengths}")

    def __len__(self) -> int:
        return len(self.columns["worker"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    @property
    def updates(self) -> int:
        """Number of updates applied."""
        return len(self.update_times)

    def dropped_counts(self) -> dict[str, int]:
        """Dropped gradients by reason (reasons with none are left out)."""
        counts = np.bincount(self.columns["dropped"], minlength=len(DROP_REASONS))
        return {DROP_REASONS[k]: int(c) for k, c in enumerate(counts) if k != APPLIED and c}

    def equals(self, other: Trace) -> bool:
        """Exact equality of every column and every update time (bit for bit)."""
        return all(np.array_equal(self.columns[k], other.columns[k]) for k in COLUMNS) and np.array_equal(
            self.update_times, other.update_times
        )

    def validate(self, *, source: str = "trace", row: Callable[[int], str] | None = None) -> Trace:
        """Check every invariant of a Trace; return it, or raise a :class:`SpecError` naming the first bad row and
        its column (one line). ``row(i)`` names the 0-based row ``i`` (default ``"row {i + 1}"``); ``source``
        names the trace (e.g. a file). Vectorised, O(rows) for the usual traces: nothing is allocated beyond a few
        columns' size.
        """
        _Check(self, source, row or (lambda i: f"row {i + 1}")).run()
        return self

    def head(self, updates: int) -> Trace:
        """The rows of the first ``updates`` updates (for the K-batch-async protocol, the first ``updates*K``)."""
        keep = (self.columns["update"] >= 1) & (self.columns["update"] <= updates)
        last = int(np.flatnonzero(keep)[-1]) + 1 if keep.any() else 0
        return Trace(
            {k: v[:last] for k, v in self.columns.items()}, self.update_times[:updates], self.system, self.seed
        )


#: protocols whose K gradients in an update come from K distinct workers
_DISTINCT = ("k-async", "k-sync", "sync")


def _first(ok: np.ndarray) -> int | None:
    """The index of the first False in ``ok`` (``None`` if there is none)."""
    if ok.size == 0 or ok.all():
        return None
    return int(np.argmin(ok))


class _Check:
    """:meth:`Trace.validate`: the checks, in the order their messages are most useful."""

    def __init__(self, trace: Trace, source: str, row: Callable[[int], str]) -> None:
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
        self.require((w >= 0) & (w < n), "worker", lambda i: f"must be a worker from 0 to n-1 = {n - 1}, got {w[i]}")
        self.require(c["round"] >= 1, "round", lambda i: f"must be a round number >= 1, got {c['round'][i]}")
        for k in ("start", "sent", "arrive"):
            self.require(np.isfinite(c[k]), k, lambda i, k=k: f"must be a finite time, got {c[k][i]}")
        applied = upd >= 1
        self.require(
            applied | (upd == -1), "update", lambda i: f"must be -1 (dropped) or an update number >= 1, got {upd[i]}"
        )
        self.require(ver >= 0, "version", lambda i: f"must be a version >= 0, got {ver[i]}")
        reasons = ", ".join(f"{k} ({v})" for k, v in DROP_REASONS.items() if k != APPLIED)
        self.require(
            (drop == APPLIED) | ~applied,
            "dropped",
            lambda i: f"must be {APPLIED} (applied) in a row applied by update {upd[i]}, got {drop[i]}",
        )
        self.require(
            (drop == STALE) | (drop == LATE) | applied,
            "dropped",
            lambda i: f"must give the reason of a dropped row (update -1): {reasons}; got {drop[i]}",
        )
        rows = np.flatnonzero(applied) if not applied.all() else None
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
        u, e, have = int(upd[j]), int(expected[j]), j % K
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
        bound = system.staleness_bound
        if bound is not None:
            self.require(s <= bound, "staleness", lambda i: f"{tau[i]} is above the bound {bound}, yet applied", rows)
        if system.protocol not in ASYNC_PROTOCOLS:
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
            (d != LATE) | ((s >= 1) & (system.protocol not in ASYNC_PROTOCOLS)),
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
            at = np.flatnonzero(filled)[k : k + 2]
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


@dataclass(eq=False)
class Summary:
    """Streamed statistics of one run (see module docstring). Counts exclude the first ``warmup`` updates,
    except ``transient_sum``, which covers updates ``1..len(transient_sum)``."""

    system: System
    seed: int | None
    updates: int
    warmup: int
    gradients: int  # all gradients applied, warm-up included
    hist: np.ndarray  # hist[tau] = number of post-warm-up gradients with staleness tau
    batch_sum: np.ndarray
    batch_count: np.ndarray
    worker_sum: np.ndarray
    worker_count: np.ndarray
    transient_sum: np.ndarray  # transient_sum[u-1] = total staleness of the gradients applied in update u
    t_warmup: float  # time of update ``warmup`` (0 if warmup == 0)
    t_end: float  # time of the last update
    max_staleness: int  # over all gradients, warm-up included
    dropped: int = 0  # gradients that reached the master and were dropped
    wasted_fraction: float = 0.0  # compute time of cancelled rounds / all compute time

    @classmethod
    def from_trace(cls, trace: Trace, warmup: int, batches: int, transient: int = 0) -> Summary:
        """The same statistics the streaming simulator keeps, computed from a Trace."""
        U = trace.updates
        upd = trace["update"]
        tau = trace["staleness"]
        applied = upd >= 1
        post = applied & (upd > warmup)
        tp, up = tau[post], upd[post]
        b = (up - warmup - 1) * batches // max(U - warmup, 1)
        n = trace.system.n
        w = trace["worker"][post]
        transient = min(transient, U)
        tr_rows = applied & (upd <= transient)
        return cls(
            system=trace.system,
            seed=trace.seed,
            updates=U,
            warmup=warmup,
            gradients=int(applied.sum()),
            hist=np.bincount(tp, minlength=1).astype(np.int64),
            batch_sum=np.bincount(b, weights=tp, minlength=batches)[:batches].astype(np.float64),
            batch_count=np.bincount(b, minlength=batches)[:batches].astype(np.int64),
            worker_sum=np.bincount(w, weights=tp, minlength=n).astype(np.float64),
            worker_count=np.bincount(w, minlength=n).astype(np.int64),
            transient_sum=np.bincount(upd[tr_rows] - 1, weights=tau[tr_rows], minlength=transient).astype(np.float64),
            t_warmup=float(trace.update_times[warmup - 1]) if warmup > 0 else 0.0,
            t_end=float(trace.update_times[-1]) if U else 0.0,
            max_staleness=int(tau[applied].max()) if applied.any() else 0,
            dropped=int((upd < 1).sum()),
            wasted_fraction=float(trace.meta.get("wasted_fraction", 0.0)),
        )

    def same_numbers(self, other: Summary) -> bool:
        """Exact equality of every statistic (histograms compared without trailing zeros)."""
        h1, h2 = np.trim_zeros(self.hist, "b"), np.trim_zeros(other.hist, "b")
        arrays = ("batch_sum", "batch_count", "worker_sum", "worker_count", "transient_sum")
        return (
            self.dropped == other.dropped
            and np.array_equal(h1, h2)
            and all(np.array_equal(getattr(self, a), getattr(other, a)) for a in arrays)
            and (self.updates, self.warmup, self.gradients, self.t_warmup, self.t_end, self.max_staleness)
            == (other.updates, other.warmup, other.gradients, other.t_warmup, other.t_end, other.max_staleness)
        )
