"""Measured compute times in: tables of per-gradient records (CSV, Parquet, JSON lines), stalegrad's Traces and
PyTorch profiler traces.

A record is one round of one worker: who computed it, how long it took (a ``duration``, or ``start`` and ``end``
times), whether it was cancelled or cut off (``censored``: its time is then a lower bound), and optionally when
its gradient was sent and arrived (the uplink delay), when the version it used was published by the master and
received by the worker (the downlink delay), its round number and its batch size. A column mapping
(``{"worker": "rank", "duration": "step_time"}``, on the command line ``--columns worker=rank,duration=step_time``)
names the table's columns; fields not mapped are looked up under their own name.

stalegrad's own Traces (``stalegrad run --out``, ``stalegrad simulate --trace-out``) are recognised by their
metadata and read with :func:`stalegrad.trace_io.read_trace`: the compute time of a row is ``sent - start`` and
its uplink delay ``arrive - sent``. PyTorch profiler traces (Chrome-trace JSON, ``.json`` or ``.json.gz``) give one
record per ``ProfilerStep#N`` event (:mod:`.profiler`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError, invalid
from . import profiler
from .laws import Sample
from .tables import check_delays, check_positive, flags, floats, read_table

__all__ = ["FIELDS", "Records", "Source", "parse_columns", "read_records"]

#: The fields a record can have, and what they mean.
FIELDS = {
    "worker": "who computed the round (any text or number; default: the file's name)",
    "duration": "compute time, seconds",
    "start": "when the round started, seconds",
    "end": "when it finished or was cut off, seconds (duration = end - start)",
    "censored": "1/true/yes when the work was cancelled or cut off: its time is a lower bound",
    "round": "the worker's round number (orders its records; default: start, then the row order)",
    "sent": "when the gradient was sent, seconds",
    "arrive": "when it reached the master, seconds (uplink delay = arrive - sent)",
    "published": "when the master sent the version the round used, seconds",
    "received": "when that version reached the worker, seconds (downlink delay = received - published)",
    "batch": "batch size (records at several sizes: compute time fitted as an affine function of it)",
}
TABLE_SUFFIXES = (".csv", ".parquet", ".jsonl", ".ndjson")
#: Every kind of file read: tables, and PyTorch profiler traces (Chrome-trace JSON).
SUFFIXES = (*TABLE_SUFFIXES, *profiler.SUFFIXES)
#: Protocols that cancel work: their Traces hold only the rounds that finished.
CANCELLING = ("k-sync", "k-batch-sync", "sync")
_SOURCE = 2**32  # order of a record: its file's index * _SOURCE + its rank in the file


def parse_columns(text: str | None) -> dict[str, str]:
    """``"worker=rank,duration=step_time"`` into ``{"worker": "rank", "duration": "step_time"}``.

    >>> parse_columns("worker=rank, start=t0,end=t1")
    {'worker': 'rank', 'start': 't0', 'end': 't1'}
    """
    if text is None or not text.strip():
        return {}
    mapping: dict[str, str] = {}
    for item in text.split(","):
        name, eq, column = (part.strip() for part in item.partition("="))
        if not eq or not name or not column:
            raise invalid("--columns", text, "FIELD=COLUMN pairs separated by commas, like worker=rank,duration=t")
        if name not in FIELDS:
            raise invalid("--columns field", name, f"one of {', '.join(FIELDS)}")
        mapping[name] = column
    return mapping


@dataclass(frozen=True)
class Source:
    """One input file: what it was, how many records it gave, which columns were used."""

    path: str
    kind: str  # "trace", "table", "profiler" or "arrays"
    records: int
    columns: dict[str, str]
    system: dict[str, Any] | None = None  # a Trace's system
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "kind": self.kind, "records": self.records, "columns": self.columns}
        if self.system is not None:
            d["system"] = self.system
        return d


@dataclass(frozen=True, eq=False)
class Records:
    """Every record of every input, as columns (``uplink``, ``downlink`` and ``batch`` are NaN where unknown)."""

    worker: np.ndarray  # labels, str
    duration: np.ndarray
    censored: np.ndarray
    uplink: np.ndarray
    downlink: np.ndarray
    batch: np.ndarray
    order: np.ndarray  # int64 sort key of the record in its worker's series (input file, then round/start/row)
    sources: tuple[Source, ...] = field(default=())

    @classmethod
    def from_arrays(
        cls,
        worker: Any,
        duration: Any,
        censored: Any = None,
        uplink: Any = None,
        *,
        downlink: Any = None,
        batch: Any = None,
        source: str = "arrays",
    ) -> Records:
        """Records from arrays (one entry per round, each worker's rounds in the order they were measured).

        >>> r = Records.from_arrays(["a", "b", "a"], [1.0, 2.0, 1.5], censored=[0, 0, 1])
        >>> r.workers(), r.sample("a").times.tolist(), r.sample("a").n_censored
        (['a', 'b'], [1.0, 1.5], 1)
        """
        d = np.asarray(duration, dtype=float).ravel()
        n = d.size
        w = np.array([_label(v) for v in np.asarray(worker).ravel()], dtype=object)
        c = np.zeros(n, dtype=bool) if censored is None else np.asarray(censored, dtype=bool).ravel()
        u, dn, b = (
            np.full(n, np.nan) if a is None else np.asarray(a, dtype=float).ravel() for a in (uplink, downlink, batch)
        )
        if not (w.size == c.size == u.size == dn.size == b.size == n):
            raise SpecError(
                f"worker, duration, censored, uplink, downlink and batch must have one entry per record, got "
                f"{w.size}, {n}, {c.size}, {u.size}, {dn.size}, {b.size}"
            )
        check_positive(d, "duration", Path(source))
        for name, delay in (("uplink", u), ("downlink", dn)):
            check_delays(delay, name, Path(source))
        mapping = {"worker": "worker", "duration": "duration"}
        return cls(w, d, c, u, dn, b, np.arange(n, dtype=np.int64), (Source(source, "arrays", n, mapping),))

    def __len__(self) -> int:
        return int(self.duration.size)

    def workers(self) -> list[str]:
        """Worker labels in natural order (numbers inside them compared as numbers)."""
        return sorted(set(self.worker.tolist()), key=_natural)

    def sample(self, worker: str) -> Sample:
        """The worker's times, in the order they were measured."""
        mine = np.flatnonzero(self.worker == worker)
        mine = mine[np.argsort(self.order[mine], kind="stable")]
        return Sample(self.duration[mine], self.censored[mine])

    def samples(self) -> dict[str, Sample]:
        return {w: self.sample(w) for w in self.workers()}

    def uplink_delays(self) -> np.ndarray:
        """The measured uplink delays (``arrive - sent``), every worker pooled."""
        return self.uplink[np.isfinite(self.uplink)]

    def delays(self, direction: str) -> dict[str, np.ndarray]:
        """Each worker's measured delays in ``direction`` ("uplink" or "downlink"), in the order measured; workers
        without any are left out."""
        column = {"uplink": self.uplink, "downlink": self.downlink}[direction]
        out = {}
        for w in self.workers():
            mine = np.flatnonzero((self.worker == w) & np.isfinite(column))
            if mine.size:
                out[w] = column[mine[np.argsort(self.order[mine], kind="stable")]]
        return out

    def where(self, mask: np.ndarray) -> Records:
        """The records where ``mask`` is true (the same sources)."""
        cols = ("worker", "duration", "censored", "uplink", "downlink", "batch", "order")
        return Records(**{c: getattr(self, c)[mask] for c in cols}, sources=self.sources)

    def batch_sizes(self) -> np.ndarray:
        """The distinct batch sizes recorded (empty when none is)."""
        return np.unique(self.batch[np.isfinite(self.batch)])

    @property
    def notes(self) -> list[str]:
        return [note for s in self.sources for note in s.notes]


def _natural(label: str) -> list[tuple[int, Any]]:
    """Sort key with numbers compared as numbers: node2 before node10."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", label) if part]


def _label(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode()
    return str(value).strip()


def read_records(paths: Sequence[str | Path], columns: dict[str, str] | None = None) -> Records:
    """Read every file (Traces are recognised; other tables use the column mapping) into one :class:`Records`."""
    if not paths:
        raise SpecError("LOGS must name at least one file of records")
    parts = []
    ranks: dict[str, str] = {}  # profiler traces: rank -> file
    for k, path in enumerate(paths):
        p = Path(path)
        if p.is_file() and profiler.has_suffix(p):
            parts.append(_from_profiler(p, k, len(ranks), ranks))
        else:
            parts.append(_read_one(p, columns or {}, k))
    cols = {name: np.concatenate([p[name] for p, _ in parts]) for name in parts[0][0]}
    return Records(**cols, sources=tuple(s for _, s in parts))


def _read_one(path: Path, columns: dict[str, str], index: int) -> tuple[dict[str, np.ndarray], Source]:
    if not path.is_file():
        raise invalid("LOGS", str(path), "existing files of records (.csv, .parquet, .jsonl, profiler .json)")
    if path.suffix not in TABLE_SUFFIXES:
        raise invalid("LOGS", str(path), f"files ending in {', '.join(SUFFIXES)}")
    if _is_trace(path):
        return _from_trace(path, index)
    header, table = read_table(path)
    return _from_table(path, header, table, columns, index)


def _from_profiler(
    path: Path, index: int, position: int, ranks: dict[str, str]
) -> tuple[dict[str, np.ndarray], Source]:
    cols, worker, origin = profiler.read_profiler_trace(path, position)
    notes = [f"{path}: a PyTorch profiler trace, rank {worker} (from {origin}), {cols['duration'].size} steps"]
    if worker in ranks:
        notes.append(f"{path} and {ranks[worker]} are both rank {worker}: their steps are one worker's")
    ranks.setdefault(worker, str(path))
    cols["order"] = index * _SOURCE + cols["order"]
    mapping = {"worker": origin, "round": "ProfilerStep#N", "duration": "dur"}
    return cols, Source(str(path), "profiler", int(cols["duration"].size), mapping, None, tuple(notes))


def _is_trace(path: Path) -> bool:
    if path.suffix == ".csv":
        with path.open() as fh:
            return fh.readline().startswith("# stalegrad-metadata:")
    if path.suffix == ".parquet":
        from ..trace_io import pyarrow_modules

        _, pq = pyarrow_modules()
        return b"stalegrad" in (pq.read_schema(path).metadata or {})
    return False


def _from_trace(path: Path, index: int) -> tuple[dict[str, np.ndarray], Source]:
    from ..trace_io import read_trace

    trace = read_trace(path)
    n = len(trace)
    duration = trace["sent"] - trace["start"]
    check_positive(duration, "sent - start", path)
    order = index * _SOURCE + np.lexsort((trace["round"], trace["start"])).argsort()
    notes = []
    if trace.system.protocol in CANCELLING:
        notes.append(
            f"{path}: a {trace.system.protocol} Trace holds only the rounds that finished (cancelled work is not "
            "recorded), so its times are biased fast"
        )
    down, where = _trace_downlink(path, trace)
    if where:
        shown = f"{down:.6g}" if isinstance(down, float) else "per worker"
        notes.append(f"{path}: downlink delay {shown}, {where}")
    cols = {
        "worker": np.array([str(w) for w in trace["worker"]], dtype=object),
        "duration": duration.astype(float),
        "censored": np.zeros(n, dtype=bool),
        "uplink": (trace["arrive"] - trace["sent"]).astype(float),
        "downlink": np.full(n, down) if isinstance(down, float) else np.asarray(down)[trace["worker"]],
        "batch": np.full(n, np.nan),
        "order": order,
    }
    mapping = {
        "worker": "worker",
        "round": "round",
        "start": "start",
        "end": "sent",
        "sent": "sent",
        "arrive": "arrive",
    }
    return cols, Source(str(path), "trace", n, mapping, trace.system.to_dict(), tuple(notes))


def _trace_downlink(path: Path, trace: Any) -> tuple[float | tuple[float, ...], str | None]:
    """A Trace's rows do not hold the downlink delay: the mean a real run measured (``run.json`` beside its
    ``trace.csv``, written by ``run --out``), else the fixed downlink of the system the Trace records (a
    simulation's; per worker when its workers' fixed downlinks differ), else unknown (NaN)."""
    beside = path.parent / "run.json"
    if beside.is_file():
        try:
            value = json.loads(beside.read_text())["run"]["downlink"]
        except (OSError, ValueError, KeyError, TypeError):
            value = None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
            return float(value), f"the run's measured mean ({beside})"
    if isinstance(trace.system.downlink, float):
        return trace.system.downlink, "the fixed downlink of the system the Trace records"
    if isinstance(trace.system.downlink, tuple) and all(isinstance(d, float) for d in trace.system.downlink):
        return trace.system.downlink, "the fixed downlinks of the system the Trace records"
    return math.nan, None


def _from_table(
    path: Path, header: list[str], table: dict[str, list[Any]], columns: dict[str, str], index: int
) -> tuple[dict[str, np.ndarray], Source]:
    def column(name: str) -> str | None:
        if name in columns:
            if columns[name] not in table:
                raise SpecError(
                    f"--columns {name}={columns[name]}: {path} has no column {columns[name]!r} "
                    f"(its columns: {', '.join(header)})"
                )
            return columns[name]
        return name if name in table else None

    used = {name: c for name in FIELDS if (c := column(name)) is not None}
    n = len(next(iter(table.values()), []))
    if "duration" in used:
        duration = floats(table[used["duration"]], "duration", path)
    elif "start" in used and "end" in used:
        duration = floats(table[used["end"]], "end", path) - floats(table[used["start"]], "start", path)
    else:
        raise SpecError(
            f"{path}: no compute time; map duration=COLUMN, or start=COLUMN,end=COLUMN, with --columns "
            f"(its columns: {', '.join(header)})"
        )
    check_positive(duration, "duration" if "duration" in used else "end - start", path)
    notes = []
    if "worker" in used:
        worker = np.array([_label(v) for v in table[used["worker"]]], dtype=object)
    else:
        worker = np.full(n, path.stem, dtype=object)
        notes.append(f"{path}: no worker column, so its records are one worker, {path.stem!r}")
    censored = flags(table[used["censored"]], path) if "censored" in used else np.zeros(n, dtype=bool)
    delays = {}
    for direction, (begin, end) in {"uplink": ("sent", "arrive"), "downlink": ("published", "received")}.items():
        delays[direction] = np.full(n, np.nan)
        if begin in used and end in used:
            delays[direction] = floats(table[used[end]], end, path) - floats(table[used[begin]], begin, path)
            check_delays(delays[direction], f"{end} - {begin}", path)
    batch = np.full(n, np.nan)
    if "batch" in used:
        batch = floats(table[used["batch"]], "batch", path)
        bad = np.flatnonzero(~((batch >= 1) & (batch == np.round(batch))))
        if bad.size:
            raise invalid(f"batch ({path}, record {bad[0] + 1})", table[used["batch"]][bad[0]], "an integer >= 1")
    key = np.arange(n, dtype=np.int64)
    for name in ("start", "round"):  # the later sort key wins; the row order breaks ties
        if name in used:
            key = np.lexsort((key, floats(table[used[name]], name, path))).argsort()
    cols = {
        "worker": worker,
        "duration": duration,
        "censored": censored,
        "uplink": delays["uplink"],
        "downlink": delays["downlink"],
        "batch": batch,
        "order": index * _SOURCE + key,
    }
    return cols, Source(str(path), "table", n, used, None, tuple(notes))
