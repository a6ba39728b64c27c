"""Benchmark of trace validation (``Trace.validate``) and of reading a trace file (``read_trace``).

* ``validate`` on a trace of 1e7 rows (the fast simulator: n = 16, K = 10, 1e6 updates), best of 3, against a
  baseline measured in the same run: copying every column once (one pass over the trace's memory). Also with
  rounds out of order (gradients that overtook each other: the same slots, scattered) and with rounds that have
  many gaps (rounds cancelled by the synchronous protocols: the sort path).
* ``read_trace`` of a CSV of 1e6 rows against ``numpy.loadtxt`` of the same file (its parser), best of 2.

Targets (ratios in one run, so a busy machine does not change them much): validating 1e7 rows in order within 5x
the copy; reading (parsing, checking, building the Trace) within 2x loadtxt's parse alone. A MISS is reported, not
an error; the seconds are printed too. ``--quick`` uses 1e6 and 1e5 rows (its ratios are not meaningful);
``--json PATH`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, cpu_model
from stalegrad.sim import simulate
from stalegrad.spec import System
from stalegrad.trace import Trace
from stalegrad.trace_io import read_trace, write_trace

FULL = {"updates": 1_000_000, "file_updates": 100_000}
QUICK = {"updates": 100_000, "file_updates": 10_000}
TARGET_RATIO, TARGET_READ = 5.0, 2.0


def overtaken(trace: Trace) -> Trace:
    """Every other pair of consecutive rows of worker 0 swaps its rounds and start times (as when a gradient
    overtakes the one before it on a random uplink): still a valid trace, rounds no longer in row order."""
    cols = {k: v.copy() for k, v in trace.columns.items()}
    mine = np.flatnonzero(cols["worker"] == 0)
    a, b = mine[0:-1:4], mine[1::4][: mine[0:-1:4].size]
    for k in ("round", "start", "sent"):
        cols[k][a], cols[k][b] = trace.columns[k][b], trace.columns[k][a]
    return Trace(cols, trace.update_times, trace.system)


def gapped(trace: Trace) -> Trace:
    """Round numbers times 40 (rounds cancelled in between): the slots would outnumber the rows, so it sorts."""
    cols = dict(trace.columns)
    cols["round"] = trace.columns["round"] * 40
    return Trace(cols, trace.update_times, trace.system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    system = System(n=16, K=10, tc=1.0, compute=scipy.stats.expon(scale=1.0))
    trace = simulate(system, sizes["updates"], seed=1)
    rows = len(trace)
    out: dict[str, Any] = {"cpu": cpu_model(), "rows": rows}
    copy, _ = best_of(3, lambda: {k: v.copy() for k, v in trace.columns.items()})
    out["copy_s"] = copy
    for name, t in (("in order", trace), ("overtaken", overtaken(trace)), ("gapped", gapped(trace))):
        seconds, _ = best_of(3, t.validate)
        out[f"validate_{name}_s"] = seconds
        print(f"validate {rows:.0e} rows ({name}): {seconds:.3f} s = {seconds / copy:.1f}x copying the columns")
    ratio = out["validate_in order_s"] / copy
    print(f"target validate (in order) <= {TARGET_RATIO:g}x copy: {'ok' if ratio <= TARGET_RATIO else 'MISS'}")
    small = simulate(system, sizes["file_updates"], seed=2)
    with tempfile.TemporaryDirectory() as folder:
        path = write_trace(small, Path(folder) / "t.csv")
        base, _ = best_of(2, lambda: np.loadtxt(path, delimiter=",", skiprows=2, ndmin=2))
        read, back = best_of(2, lambda: read_trace(path))
        assert back.equals(small)
    out |= {"file_rows": len(small), "loadtxt_s": base, "read_trace_s": read}
    print(f"read_trace {len(small):.0e} rows: {read:.3f} s = {read / base:.2f}x numpy.loadtxt ({base:.3f} s)")
    print(f"target read <= {TARGET_READ:g}x loadtxt: {'ok' if read / base <= TARGET_READ else 'MISS'}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
