"""Benchmark of the command line's start-up (run by ``make bench``).

Each command is started as a fresh process, as a user starts it, and timed from the outside (wall clock, best of
``--reps``), beside a bare ``python -c "import numpy"`` started the same way (the floor: an interpreter and numpy):

* ``stalegrad predict`` for the paper's system (n = 16, K = 10, Tc = 1, the paper's compute times);
* an input error (``stalegrad predict --n 0 --K 1``: one ``Error:`` line, exit 2);
* ``stalegrad simulate`` of the same system, 10,000 updates;
* ``stalegrad --help``.

Targets (issue "a tool people can script and trust"): predict and an input error within 0.5 s, simulate within
1.5 s, on an idle machine of this kind. A MISS is reported, not an error; the ratios to the numpy floor say how
much of the time is the project's own. ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_model

PY = sys.executable
CLI = [PY, "-c", "from stalegrad.cli import main; main()"]
CASES = {
    "import numpy (floor)": ([PY, "-c", "import numpy"], None, 0),
    "stalegrad --help": ([*CLI, "--help"], None, 0),
    "stalegrad predict (paper's system)": ([*CLI, "predict", "--n", "16", "--K", "10", "--tc", "1"], 0.5, 0),
    "stalegrad predict --n 0 (input error)": ([*CLI, "predict", "--n", "0", "--K", "1"], 0.5, 2),
    "stalegrad simulate --updates 10000": (
        [*CLI, "simulate", "--n", "16", "--K", "10", "--tc", "1", "--updates", "10000", "--seed", "1"],
        1.5,
        0,
    ),
}


def wall(argv: list[str], code: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=env, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != code:
        raise SystemExit(f"{argv} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {}
    for name, (argv, _, code) in CASES.items():
        wall(argv, code)  # warm the file cache (and numba's)
        results[name] = min(wall(argv, code) for _ in range(args.reps))
    floor = results["import numpy (floor)"]
    print(f"start-up, best of {args.reps} fresh processes ({cpu_model()}, {os.cpu_count()} cores)")
    print(f"{'command':<40} {'seconds':>8} {'x numpy':>8}  target")
    for name, (_, target, _) in CASES.items():
        verdict = "" if target is None else f"<= {target} s: {'PASS' if results[name] <= target else 'MISS'}"
        print(f"{name:<40} {results[name]:8.3f} {results[name] / floor:8.2f}  {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"seconds": results, "floor": floor}, indent=2))


if __name__ == "__main__":
    main()
