"""The benchmark's SimPy baseline models the same system as the fast simulator, and the benchmark script runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stalegrad.distributions import shifted_exponential
from stalegrad.sim import simulate
from stalegrad.spec import System

pytest.importorskip("simpy")

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from simpy_model import simulate_simpy  # noqa: E402


def batch_means(tau: np.ndarray, batches: int = 20, warmup: float = 0.1) -> tuple[float, float]:
    """Mean of ``tau`` after a warm-up, and its standard error from ``batches`` batch means."""
    x = tau[int(len(tau) * warmup) :]
    x = x[: len(x) // batches * batches].reshape(batches, -1).mean(axis=1)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(batches))


@pytest.mark.parametrize("tc", [1.0, 0.0])
def test_simpy_model_reproduces_the_fast_trace_row_for_row(tc: float) -> None:
    # Same seed, same per-worker streams, continuous compute times (no ties): the two models must agree exactly.
    system = System(n=16, K=10, tc=tc, compute=shifted_exponential(alpha=1, rate=2 / 3))
    ref = simulate(system, 2000, seed=3)
    got = simulate_simpy(system, 20000, seed=3)
    for col in ("worker", "round", "version", "update", "staleness"):
        np.testing.assert_array_equal(got[col], ref[col], err_msg=col)


@pytest.mark.parametrize(
    ("n", "K", "tc", "gradients"),
    [(16, 10, 1.0, 100_000), (4, 6, 2.0, 60_000)],
)
def test_simpy_mean_staleness_agrees_statistically(n: int, K: int, tc: float, gradients: int) -> None:
    # Independent seeds: the difference of the means must lie within 4 combined standard errors (batch means).
    system = System(n=n, K=K, tc=tc, compute=shifted_exponential(alpha=1, rate=2 / 3))
    m_simpy, se_simpy = batch_means(simulate_simpy(system, gradients, seed=2)["staleness"])
    m_fast, se_fast = batch_means(simulate(system, 10 * gradients // K, seed=1)["staleness"])
    se = np.hypot(se_simpy, se_fast)
    assert 0 < se < 0.05
    assert abs(m_simpy - m_fast) < 4 * se, (m_simpy, m_fast, se)


def test_bench_quick_runs_and_prints_the_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_sim.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    speed = [s for s in lines if re.match(r"ratio speedup vs SimPy.*x\s+\(target >= 300x\)\s+(PASS|MISS)$", s)]
    draw = [s for s in lines if re.match(r"ratio time / draw time.*x\s+\(target <= 3x\)\s+(PASS|MISS)$", s)]
    assert len(speed) == 2 and len(draw) == 2, proc.stdout
    data = json.loads(out.read_text())
    assert data["quick"] is True
    assert set(data["ratios"]) == set(data["pass"])
    assert all(v > 0 for v in data["seconds"].values())
