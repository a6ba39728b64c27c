"""Written results: every file records the seed, the package version and the resolved system, and is written to
a temporary name, flushed and renamed into place (never a half-written file)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import invalid

__all__ = [
    "clean_json",
    "dumps",
    "metadata",
    "read_trace",
    "write_csv",
    "write_figure",
    "write_json",
    "write_text",
    "write_trace",
]


def metadata(seed: int | None, systems: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """What is needed to regenerate an artefact: package and library versions, the seed, the systems."""
    import numpy
    import scipy

    from . import __version__

    meta: dict[str, Any] = {
        "stalegrad": __version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "seed": seed,
    }
    if systems:
        meta["systems"] = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in systems.items()}
    meta.update(extra)
    return clean_json(meta)


def clean_json(obj: Any) -> Any:
    """Replace non-finite floats by ``None`` (JSON has no NaN or infinity) and numpy scalars by Python ones."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj: Any) -> str:
    """JSON text with ``allow_nan=False`` (non-finite values must have been replaced by ``None`` first)."""
    return json.dumps(clean_json(obj), indent=2, allow_nan=False)


def write_text(path: str | Path, text: str | bytes) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename over ``path``.

    The file gets the permissions of any new file (``0666`` less the user's umask). The folder is created if
    its parent exists; missing parent folders are an error, never created silently.
    """
    path = Path(path)
    if not path.parent.is_dir():
        if not path.parent.parent.is_dir():
            raise invalid("output folder", str(path.parent), "a folder whose parent exists (create it first)")
        path.parent.mkdir(exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, dumps(obj) + "\n")


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]], meta: dict[str, Any]) -> Path:
    """CSV with a first comment line ``# stalegrad-metadata: {json}`` (pandas: ``read_csv(comment='#')``)."""
    buf = io.StringIO()
    buf.write("# stalegrad-metadata: " + json.dumps(clean_json(meta), allow_nan=False) + "\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if isinstance(v, float) and not math.isfinite(v) else v for v in row])
    return write_text(path, buf.getvalue())


def write_figure(fig: Any, path: str | Path, meta: dict[str, Any]) -> Path:
    """Save a matplotlib figure as PNG with the metadata in a text chunk, and a JSON of it beside."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight", metadata={"Description": dumps(meta)})
    path = write_text(path, buf.getvalue())
    write_json(Path(path).with_suffix(".json"), meta)
    return path


def write_trace(trace: Any, path: str | Path, **extra: Any) -> Path:
    """Save a Trace as CSV (``.csv``) or Parquet (``.parquet``, needs pyarrow), with its system and seed."""
    from .trace import COLUMNS

    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        from .errors import invalid

        raise invalid("trace file", str(path), "a name ending in .csv or .parquet")
    meta = metadata(trace.seed, {"trace": trace.system}, engine=trace.meta.get("engine"), **extra)
    cols = trace.columns
    if path.suffix == ".parquet":
        pa, pq = _pyarrow()
        table = pa.table({k: cols[k] for k in COLUMNS})
        table = table.replace_schema_metadata({b"stalegrad": dumps(meta).encode()})
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        return write_text(path, buf.getvalue().to_pybytes())
    names = list(COLUMNS)
    return write_csv(path, names, zip(*(cols[k].tolist() for k in names), strict=True), meta)


def read_trace(path: str | Path) -> Any:
    """Load a Trace written by :func:`write_trace` (or any CSV/Parquet with the Trace columns and a system in its
    metadata, such as ``stalegrad run --out``'s ``trace.csv``)."""
    import numpy as np

    from .errors import SpecError, invalid
    from .spec import System
    from .trace import COLUMNS, Trace

    path = Path(path)
    if not path.is_file():
        raise invalid("trace file", str(path), "an existing .csv or .parquet file")
    try:
        if path.suffix == ".parquet":
            _, pq = _pyarrow()
            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(b"stalegrad", b"{}")
            meta = json.loads(raw)
            data = {k: table.column(k).to_numpy() for k in table.column_names}
        else:
            lines = path.read_text().splitlines()
            meta = json.loads(lines[0].removeprefix("# stalegrad-metadata: ")) if lines[0].startswith("#") else {}
            rows = list(csv.reader(lines[1 if lines[0].startswith("#") else 0 :]))
            header, body = rows[0], rows[1:]
            data = {h: np.array([r[j] for r in body], dtype=float) for j, h in enumerate(header)}
        cols = {k: np.asarray(data[k]).astype(dt) for k, dt in COLUMNS.items() if k in data}
        missing = [k for k in COLUMNS if k not in cols and k != "dropped"]
    except (ValueError, KeyError, IndexError, json.JSONDecodeError) as exc:
        raise SpecError(f"trace file {str(path)!r} cannot be read: {exc}") from None
    if missing:
        raise SpecError(f"trace file {str(path)!r} lacks the columns {', '.join(missing)}")
    systems = meta.get("systems") or {}
    described = systems.get("trace") or next(iter(systems.values()), None)
    if described is None:
        raise SpecError(f"trace file {str(path)!r} records no system in its metadata")
    system = System.from_dict(described)
    upd = cols["update"]
    applied = upd >= 1
    U = int(upd.max()) if applied.any() else 0
    update_times = np.full(U, -np.inf)  # update u happened when its last gradient arrived
    np.maximum.at(update_times, upd[applied] - 1, cols["arrive"][applied])
    return Trace(cols, update_times, system, meta.get("seed"), {"engine": "file", "path": str(path)})


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a test dependency
        from .errors import StalegradError

        raise StalegradError(
            "Parquet needs pyarrow: pip install 'stalegrad[parquet]' (or pip install pyarrow)"
        ) from None
    return pa, pq
