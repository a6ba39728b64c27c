"""Tables of records read from files: a CSV (``#`` lines skipped), Parquet or JSON-lines file's columns and values,
and the numbers, flags, times and delays in them checked (:mod:`.records` maps the columns to its fields)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError, invalid

__all__ = ["check_delays", "check_positive", "flags", "floats", "read_table"]

_TRUE = {"1", "true", "t", "yes", "y", "1.0"}
_FALSE = {"0", "false", "f", "no", "n", "0.0", "", "none", "null"}


def read_table(path: Path) -> tuple[list[str], dict[str, list[Any]]]:
    """The column names and the values of a CSV (``#`` lines skipped), Parquet or JSON-lines file."""
    try:
        if path.suffix == ".parquet":
            from ..trace_io import pyarrow_modules

            _, pq = pyarrow_modules()
            t = pq.read_table(path)
            return list(t.column_names), {k: t.column(k).to_pylist() for k in t.column_names}
        if path.suffix == ".csv":
            with path.open(newline="") as fh:
                rows = list(csv.reader(line for line in fh if not line.startswith("#")))
            if not rows:
                raise SpecError(f"{path} holds no header and no records")
            header = [h.strip() for h in rows[0]]
            body = [r for r in rows[1:] if any(c.strip() for c in r)]
            return header, {h: [r[j] if j < len(r) else "" for r in body] for j, h in enumerate(header)}
        objs = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise SpecError(f"{path} line {number} must be a JSON object, got {line[:60]!r}")
                objs.append(obj)
        header = list(dict.fromkeys(k for o in objs for k in o))
        return header, {h: [o.get(h) for o in objs] for h in header}
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"{path} cannot be read as a table: {exc}") from None


def floats(values: Iterable[Any], name: str, path: Path) -> np.ndarray:
    out = []
    for row, v in enumerate(values, start=1):
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            raise invalid(f"{name} ({path}, record {row})", v, "a number") from None
    return np.asarray(out, dtype=float)


def flags(values: Iterable[Any], path: Path) -> np.ndarray:
    out = []
    for row, v in enumerate(values, start=1):
        if isinstance(v, (bool, np.bool_)):
            out.append(bool(v))
            continue
        text = str(v).strip().lower() if v is not None else ""
        if text in _TRUE:
            out.append(True)
        elif text in _FALSE:
            out.append(False)
        else:
            raise invalid(f"censored ({path}, record {row})", v, "a flag: 1/0, true/false or yes/no")
    return np.asarray(out, dtype=bool)


def check_delays(delay: np.ndarray, name: str, path: Path) -> None:
    """Delays are NaN (not measured) or finite and >= 0."""
    bad = np.flatnonzero(~(np.isnan(delay) | (np.isfinite(delay) & (delay >= 0))))
    if bad.size:
        raise invalid(f"{name} ({path}, record {bad[0] + 1})", float(delay[bad[0]]), "a finite delay >= 0 seconds")


def check_positive(duration: np.ndarray, name: str, path: Path) -> None:
    bad = np.flatnonzero(~(np.isfinite(duration) & (duration > 0)))
    if bad.size:
        raise invalid(f"{name} ({path}, record {bad[0] + 1})", float(duration[bad[0]]), "a finite time > 0 seconds")
