"""Written results: every file records the seed, the package version and the resolved system, and is written to
a temporary name, flushed and renamed into place (never a half-written file). Traces in files (:func:`read_trace`,
:func:`write_trace`) are in :mod:`stalegrad.trace_io`."""

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
    "write_csv",
    "write_figure",
    "write_json",
    "write_text",
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
