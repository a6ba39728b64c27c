"""PyTorch profiler traces as records: the ``ProfilerStep#N`` events of a Chrome-trace JSON, one file per rank.

``torch.profiler.profile(...).export_chrome_trace("rank0.json")`` (or ``tensorboard_trace_handler``, which writes
``*.pt.trace.json``, optionally gzipped) writes a JSON object whose ``traceEvents`` hold one complete event
(``"ph": "X"``) named ``ProfilerStep#N`` per training step the profiler recorded: its start ``ts`` and length
``dur`` in microseconds. One event is one record: round ``N``, duration ``dur / 1e6`` seconds. A step's time is
everything between two ``prof.step()`` calls, so it holds the compute of one round (and, in data-parallel
training, the gradient all-reduce as well).

The worker is the trace's rank: ``distributedInfo.rank`` (the profiler writes it when ``torch.distributed`` is
initialised), else a number after ``rank`` in the file's name (``rank1.json``, ``trainer_rank_1.pt.trace.json``),
else the file's position among the profiler traces given.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError

__all__ = ["SUFFIXES", "is_profiler_trace", "read_profiler_trace"]

#: File names a profiler trace may end in.
SUFFIXES = (".json", ".json.gz")
_STEP = re.compile(r"^ProfilerStep#(\d+)$")
_RANK = re.compile(r"rank[_\-.]?(\d+)", re.IGNORECASE)


def has_suffix(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def _load(path: Path) -> Any:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt") as fh:
                return json.load(fh)
        with path.open() as fh:
            return json.load(fh)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{path} cannot be read as a PyTorch profiler trace (Chrome-trace JSON): {exc}") from None


def is_profiler_trace(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("traceEvents"), list)


def _rank(doc: dict[str, Any], path: Path, position: int) -> tuple[str, str]:
    """The rank, and where it came from."""
    info = doc.get("distributedInfo")
    if isinstance(info, dict) and isinstance(info.get("rank"), int) and not isinstance(info.get("rank"), bool):
        return str(info["rank"]), "distributedInfo.rank"
    match = _RANK.search(path.name)
    if match:
        return str(int(match.group(1))), "the file name"
    return str(position), "the file's position among the profiler traces"


def read_profiler_trace(path: Path, position: int) -> tuple[dict[str, np.ndarray], str, str]:
    """The steps of one profiler trace as record columns, its worker label and where the label came from.

    ``position``: this file's place among the profiler traces read together (the rank when nothing else says).
    """
    doc = _load(path)
    if not is_profiler_trace(doc):
        raise SpecError(
            f"{path} is not a PyTorch profiler trace: no 'traceEvents' list (export_chrome_trace writes it)"
        )
    steps: dict[int, tuple[float, float]] = {}
    for event in doc["traceEvents"]:
        if not isinstance(event, dict) or event.get("ph") != "X":
            continue
        match = _STEP.match(str(event.get("name", "")))
        if match is None or str(event.get("cat", "")).startswith("gpu"):
            continue  # the GPU copy of a step annotation repeats the CPU one
        try:
            start, length = float(event["ts"]), float(event["dur"])
        except (KeyError, TypeError, ValueError):
            raise SpecError(f"{path}: event {event.get('name')!r} has no numeric ts and dur") from None
        steps.setdefault(int(match.group(1)), (start, length))
    if not steps:
        raise SpecError(
            f"{path} holds no ProfilerStep#N events: call prof.step() once per training step inside "
            "torch.profiler.profile(...)"
        )
    worker, origin = _rank(doc, path, position)
    rounds = np.array(sorted(steps), dtype=np.int64)
    dur = np.array([steps[r][1] for r in rounds]) / 1e6
    n = rounds.size
    cols: dict[str, np.ndarray] = {
        "worker": np.full(n, worker, dtype=object),
        "duration": dur,
        "censored": np.zeros(n, dtype=bool),
        "uplink": np.full(n, np.nan),
        "downlink": np.full(n, np.nan),
        "batch": np.full(n, np.nan),
        "order": rounds,
    }
    return cols, worker, origin
