"""Estimates: batch-means CI, quantiles, transient; a Trace and its streamed Summary give the same estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stalegrad.analysis import quantile, steady_state, transient
from stalegrad.sim import simulate, simulate_summary


def test_quantile_of_a_histogram():
    hist = np.array([5, 0, 3, 2])  # values 0 (x5), 2 (x3), 3 (x2)
    assert [quantile(hist, q) for q in (0.1, 0.5, 0.51, 0.8, 0.81, 1.0)] == [0, 0, 2, 2, 3, 3]
    assert quantile(np.zeros(3, dtype=int), 0.5) == 0


def test_trace_and_streamed_summary_give_the_same_estimate(fig1_system):
    trace = simulate(fig1_system, 20_000, seed=9)
    a = steady_state(trace, warmup=2000, batches=20)
    b = steady_state(simulate_summary(fig1_system, 20_000, seed=9, warmup=2000, batches=20))
    assert a == b
    post = trace["update"] > 2000
    assert a.mean == pytest.approx(trace["staleness"][post].mean())
    assert a.p95 == int(np.quantile(trace["staleness"][post], 0.95, method="inverted_cdf"))


def test_confidence_interval_covers_at_the_nominal_rate(fig1_system):
    # 40 independent runs: the 95% CI should miss the exact limit about 2 times; 8 or more misses has
    # probability < 1e-3 under Binomial(40, 0.05).
    from stalegrad.theory import staleness_exact

    exact = staleness_exact(fig1_system)
    misses = sum(not steady_state(simulate_summary(fig1_system, 20_000, seed=s)).covers(exact) for s in range(40))
    assert misses < 8


def test_transient_of_replications(fig1_system):
    runs = [simulate(fig1_system, 30, seed=s) for s in range(50)]
    tr = transient(runs, 30)
    assert tr.replications == 50 and tr.mean.shape == (30,)
    assert tr.mean[0] == 0.0 and tr.ci95[0] == 0.0
    summaries = [simulate_summary(fig1_system, 30, seed=s, transient=30, warmup=0, batches=2) for s in range(50)]
    again = transient(summaries, 30)
    assert np.allclose(again.mean, tr.mean) and np.allclose(again.ci95, tr.ci95)
    assert math.isinf(transient(runs[:1], 30).ci95[0])
