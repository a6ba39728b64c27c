"""Benchmark of the torch problems (run by ``make bench``; skipped when torch is not installed).

For each built-in model (``mlp-digits``, d = 8970; ``cnn-digits``, d = 138,698), one thread:

* a gradient through :class:`stalegrad.train.TorchProblem` (``w`` copied into the model, the minibatch drawn, the
  gradient copied out as float64) for b = 1, 10 and 100, against the baseline measured in the same run: the same
  model's step in plain torch (draw and index a minibatch, ``zero_grad``, loss, ``backward``), with no copy in or
  out. The ratio is the wrapper's overhead; target: at most 1.5x at b = 10. A MISS is reported, not an error;
* the full training loss (1437 samples, no gradient);
* the replay along a simulated trace (n = 10, K = 10, b = 1, 200 updates): gradients per second, recording 20
  points.

Times are CPU times (one thread), the best of 3 runs of a loop of calls (2 replays).
``--quick`` uses fewer calls; ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_model, versions

TARGET = 1.5


def per_call(reps: int, calls: int, fn: Any) -> float:
    """CPU seconds per call (one thread: CPU time is the work, whatever else runs on the machine): the best of
    ``reps`` loops of ``calls`` calls."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, time.process_time() - t0)
    return best / calls


def measure(problem: Any, calls: int, updates: int) -> dict[str, Any]:
    """One model: gradient and bare-torch times per b, the full loss, and the replay's gradients per second."""
    import torch

    from stalegrad import System, simulate
    from stalegrad.train import replay

    w = problem.init()
    rng = np.random.default_rng(0)
    model, loss_fn = problem.model, problem.loss_fn
    row: dict[str, Any] = {"dim": problem.dim, "gradient_seconds": {}, "bare_torch_seconds": {}, "overhead": {}}
    for b in (1, 10, 100):

        def bare(b: int = b) -> None:
            idx = torch.from_numpy(rng.integers(0, problem.samples, size=b))
            model.zero_grad()
            loss_fn(model(problem.X[idx]), problem.y[idx]).backward()

        ours = per_call(3, calls, lambda b=b: problem.gradient(w, b, rng))
        base = per_call(3, calls, bare)
        row["gradient_seconds"][b], row["bare_torch_seconds"][b] = ours, base
        row["overhead"][b] = ours / base
    row["loss_seconds"] = per_call(3, 1, lambda: problem.loss(w))
    trace = simulate(System(n=10, K=10, compute=scipy.stats.expon(scale=2.0)), updates, seed=1)
    row["replay_gradients_per_second"] = len(trace) / per_call(
        2, 1, lambda: replay(trace, problem, b=1, step=0.1, seed=1, record=20)
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("torch problems: skipped (torch is not installed: pip install 'stalegrad[torch]')")
        return
    from stalegrad.train import cnn_digits, mlp_digits

    torch.set_num_threads(1)
    out: dict[str, Any] = {"cpu": cpu_model(), "versions": versions("torch", "numpy"), "threads": 1, "models": {}}
    print(f"torch problems, 1 thread ({out['cpu']}; torch {out['versions']['torch']})")
    for make in (mlp_digits, cnn_digits):
        problem = make()
        calls = (5 if args.quick else 50) * (10 if problem.dim < 50_000 else 1)
        row = measure(problem, calls, 20 if args.quick else 200)
        out["models"][problem.name] = row
        verdict = "OK" if row["overhead"][10] <= TARGET else "MISS"
        print(f"  {problem.name} (d = {problem.dim}):")
        for b in (1, 10, 100):
            print(
                f"    b = {b:3d}: gradient {row['gradient_seconds'][b] * 1e3:7.3f} ms, bare torch "
                f"{row['bare_torch_seconds'][b] * 1e3:7.3f} ms, overhead {row['overhead'][b]:.2f}x"
            )
        print(f"    overhead at b = 10: {row['overhead'][10]:.2f}x (target <= {TARGET:g}x) {verdict}")
        print(
            f"    full training loss {row['loss_seconds'] * 1e3:.1f} ms; replay (n=10, K=10, b=1): "
            f"{row['replay_gradients_per_second']:.0f} gradients/s"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
