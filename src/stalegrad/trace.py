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
from .spec import System
from .trace_columns import APPLIED, COLUMNS, DROP_REASONS, LATE, STALE

__all__ = ["APPLIED", "COLUMNS", "DROP_REASONS", "LATE", "STALE", "Summary", "Trace"]


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
            raise SpecError(f"a Trace needs the columns {list(COLUMNS)} of equal length, got {lengths}")

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
        from .trace_checks import check_trace

        check_trace(self, source, row or (lambda i: f"row {i + 1}"))
        return self

    def head(self, updates: int) -> Trace:
        """The rows of the first ``updates`` updates (for the K-batch-async protocol, the first ``updates*K``)."""
        keep = (self.columns["update"] >= 1) & (self.columns["update"] <= updates)
        last = int(np.flatnonzero(keep)[-1]) + 1 if keep.any() else 0
        return Trace(
            {k: v[:last] for k, v in self.columns.items()}, self.update_times[:updates], self.system, self.seed
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
    wasted_compute: float = 0.0  # compute time never applied (cancelled, abandoned, dropped) / all compute time

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
            wasted_compute=float(trace.meta.get("wasted_compute", 0.0)),
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
