"""Traces in files: CSV or Parquet with the system and seed in their metadata, checked row by row when read.

:func:`write_trace` writes a Trace (CSV: a first line ``# stalegrad-metadata: {json}``, then a header; Parquet: the
same JSON in the schema's metadata). :func:`read_trace` reads it back -- or any file with the Trace columns and a
system in its metadata, such as ``stalegrad run --out``'s ``trace.csv`` -- and checks it with
:meth:`~stalegrad.trace.Trace.validate` before anything is allocated from its numbers. Every problem is one
:class:`~stalegrad.errors.SpecError` line naming the file, the row and the column. Rows are numbered as the file
numbers them: in a CSV, the line (the metadata line and the header count, so ``row 3`` is the first data row after
them); in a Parquet file, from 1.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .artefacts import dumps, metadata, write_csv, write_text
from .errors import SpecError, StalegradError, invalid

__all__ = ["read_trace", "write_trace"]

_META = "# stalegrad-metadata: "
#: the work accounting of ``trace.meta`` kept in a file (:func:`stalegrad.sim.events.work_meta`)
WORK_KEYS = ("compute_time", "cancelled_time", "dropped_time", "wasted_compute")
_EXACT = 2.0**53  # integers beyond this are not exact in a float64 column


def write_trace(trace: Any, path: str | Path, **extra: Any) -> Path:
    """Save a Trace as CSV (``.csv``) or Parquet (``.parquet``, needs pyarrow), with its system and seed."""
    from .trace import COLUMNS

    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise invalid("trace file", str(path), "a name ending in .csv or .parquet")
    work = {k: float(trace.meta[k]) for k in WORK_KEYS if k in trace.meta}
    meta = metadata(trace.seed, {"trace": trace.system}, engine=trace.meta.get("engine"), work=work, **extra)
    cols = trace.columns
    if path.suffix == ".parquet":
        pa, pq = pyarrow_modules()
        table = pa.table({k: cols[k] for k in COLUMNS})
        table = table.replace_schema_metadata({b"stalegrad": dumps(meta).encode()})
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        return write_text(path, buf.getvalue().to_pybytes())
    names = list(COLUMNS)
    return write_csv(path, names, zip(*(cols[k].tolist() for k in names), strict=True), meta)


def read_trace(path: str | Path) -> Any:
    """Load a Trace written by :func:`write_trace` (or any CSV/Parquet with the Trace columns and a system in its
    metadata) and check it (:meth:`~stalegrad.trace.Trace.validate`): one :class:`SpecError` line naming the row
    and the column of the first problem."""
    from .trace import COLUMNS, Trace

    path = Path(path)
    if not path.is_file():
        raise invalid("trace file", str(path), "an existing .csv or .parquet file")
    source = f"trace file '{path}'"
    if path.suffix == ".parquet":
        meta, raw, first = _read_parquet(path, source)
    else:
        meta, raw, first = _read_csv(path, source)

    def row(i: int) -> str:
        return f"row {i + first}"

    missing = [k for k in COLUMNS if k not in raw and k != "dropped"]
    if missing:
        raise SpecError(f"{source} lacks the columns {', '.join(missing)}")
    cols = {k: _column(raw[k], k, np.dtype(dt).kind in "iu", source, row) for k, dt in COLUMNS.items() if k in raw}
    system = _system(meta, source)
    seed = meta.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise SpecError(f"{source} metadata: seed must be an integer >= 0 or null, got {seed!r}")
    upd = cols["update"]
    applied = upd >= 1
    U = int(applied.sum()) // system.K
    update_times = np.zeros(0)
    if U and int(upd.max()) <= U:  # else validate() names the row that breaks the update sequence
        update_times = np.full(U, -np.inf)  # update u happened when its last gradient arrived
        np.maximum.at(update_times, upd[applied] - 1, cols["arrive"][applied])
    info: dict[str, Any] = {"engine": "file", "path": str(path)}
    work = meta.get("work")
    if isinstance(work, dict):  # what the run's compute time went to (wasted_compute), when the file says
        info.update({k: float(v) for k, v in work.items() if k in WORK_KEYS and isinstance(v, (int, float))})
    Trace(cols, update_times, system, seed, info).validate(source=source, row=row)
    typed = {k: v.astype(COLUMNS[k], copy=False) for k, v in cols.items()}  # in range: no value changes
    return Trace(typed, update_times, system, seed, info)


# ---------------------------------------------------------------------------------------------------- reading


def _read_csv(path: Path, source: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The metadata, the columns as read (numbers if every field is one, else text) and the file row of the first
    data row."""
    try:
        data = path.read_bytes().rstrip()
    except OSError as exc:
        raise SpecError(f"{source} cannot be read ({exc})") from None
    if not data:
        raise SpecError(f"{source} is empty")
    meta: dict[str, Any] = {}
    line, pos = _line(data, 0, source, 1)
    at = 0
    if line.startswith("#"):
        meta = _json(line.removeprefix(_META), f"{source} row 1: its metadata")
        at = 1
        line, pos = _line(data, pos, source, 2)
    if not line.strip():
        raise SpecError(f"{source} has no header row (row {at + 1})")
    header = [h.strip() for h in next(csv.reader([line]))]
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise SpecError(f"{source} row {at + 1}: the header names {twice[0]!r} twice")
    first = at + 2  # the file row of the first data row
    body = data[pos:]
    if not body:
        raise SpecError(f"{source} has no rows (only a header)")
    try:  # the fast path: every field a number (blank lines, which loadtxt skips, go the slow way)
        table = np.loadtxt(io.BytesIO(body), delimiter=",", dtype=np.float64, comments=None, ndmin=2, encoding="utf-8")
        if table.shape == (body.count(b"\n") + 1, len(header)):
            columns = np.ascontiguousarray(table.T)  # one copy: each column contiguous
            return meta, {h: columns[j] for j, h in enumerate(header)}, first
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source} is not UTF-8 text ({exc})") from None
    return meta, _parse_rows(text.splitlines(), header, first, source), first


def _line(data: bytes, pos: int, source: str, row: int) -> tuple[str, int]:
    """The line of ``data`` from ``pos`` (without its line end) and where the next one starts."""
    end = data.find(b"\n", pos)
    end = len(data) if end == -1 else end
    try:
        return data[pos:end].decode().rstrip("\r"), end + 1
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source} row {row} is not UTF-8 text ({exc})") from None


def _parse_rows(body: list[str], header: list[str], first: int, source: str) -> dict[str, Any]:
    """The slow path: every row checked for its number of fields; the columns as lists of fields."""
    rows = list(csv.reader(body))
    for k, fields in enumerate(rows):
        if len(fields) != len(header):
            have = "is blank" if not fields or fields == [""] else f"has {len(fields)} fields"
            raise SpecError(f"{source} row {first + k} {have}; the header has {len(header)}")
    return {h: [r[j] for r in rows] for j, h in enumerate(header)}


def _read_parquet(path: Path, source: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    _, pq = pyarrow_modules()
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own classes for every kind of bad file
        raise SpecError(f"{source} is not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    raw = (table.schema.metadata or {}).get(b"stalegrad", b"{}")
    meta = _json(raw, f"{source}: its metadata")
    if table.num_rows == 0:
        raise SpecError(f"{source} has no rows")
    data = {k: table.column(k).to_numpy(zero_copy_only=False) for k in table.column_names}
    return meta, data, 1


def _json(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        meta = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpecError(f"{what} is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise SpecError(f"{what} must be a JSON object, got {type(meta).__name__}")
    return meta


def _column(raw: Any, name: str, integer: bool, source: str, row: Callable[[int], str]) -> np.ndarray:
    """A column as float64 (times) or int64 (counts), or a SpecError naming the first field that is not one."""
    arr = np.asarray(raw, dtype=object) if isinstance(raw, list) else np.asarray(raw)
    if arr.dtype.kind in "iub":
        values = arr
    else:
        try:
            values = arr.astype(np.float64)
        except (TypeError, ValueError):
            for i, v in enumerate(arr.tolist()):
                try:
                    float(v)
                except (TypeError, ValueError):
                    raise SpecError(f"{source} {row(i)}, column {name}: {v!r} is not a number") from None
            raise  # pragma: no cover - one field above fails
    if not integer:
        return np.asarray(values, dtype=np.float64)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    exact = (np.floor(values) == values) & (np.abs(values) < _EXACT)  # NaN, infinities, fractions fail
    if not exact.all():
        i = int(np.argmin(exact))
        raise SpecError(f"{source} {row(i)}, column {name}: must be an integer, got {values[i]}")
    return values.astype(np.int64)


def _system(meta: dict[str, Any], source: str) -> Any:
    """The system the metadata records (``systems.trace``, else the first one), checked before it is built."""
    from .spec import System

    systems = meta.get("systems") or {}
    if not isinstance(systems, dict):
        raise SpecError(f"{source} metadata: systems must be a JSON object, got {systems!r}")
    described = systems.get("trace") or next(iter(systems.values()), None)
    if described is None:
        raise SpecError(f"{source} records no system in its metadata")
    if not isinstance(described, dict):
        raise SpecError(f"{source} metadata: the system must be a JSON object, got {described!r}")
    try:
        return System.from_dict(described)
    except (StalegradError, ValueError) as exc:
        raise SpecError(f"{source} metadata: its system is invalid: {exc}") from None


def pyarrow_modules() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a test dependency
        raise StalegradError(
            "Parquet needs pyarrow: pip install 'stalegrad[parquet]' (or pip install pyarrow)"
        ) from None
    return pa, pq
