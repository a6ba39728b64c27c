"""Checks of the i.i.d. assumption: a drifting worker and a worker slow in bursts are warned about, one line each;
i.i.d. workers are not."""

from __future__ import annotations

import numpy as np
import scipy.stats

from stalegrad.fit import Records, fit_cluster
from stalegrad.fit.checks import MIN_ROUNDS, check_series, check_workers
from stalegrad.fit.laws import Sample

LAW = scipy.stats.gamma(a=3.0, loc=1.0, scale=0.25)


def bursty(rounds, rng, switch=0.05, factor=2.0):
    """A worker that is ``factor`` times slower in stretches (a two-state Markov chain, mean stretch 1/switch)."""
    state = np.cumsum(rng.random(rounds) < switch) % 2
    return LAW.rvs(size=rounds, random_state=rng) * np.where(state == 1, factor, 1.0)


def test_a_drifting_worker_is_warned_about_in_a_cluster():
    """12 workers, 200 rounds; worker w5's times grow 1% a round. Only it is warned about, in one line, and the
    system is still fitted."""
    rng = np.random.default_rng(1)
    times = {f"w{k}": LAW.rvs(size=200, random_state=rng) for k in range(12)}
    times["w5"] = times["w5"] * 1.01 ** np.arange(200)
    workers = np.repeat(list(times), 200)
    records = Records.from_arrays(workers, np.concatenate(list(times.values())))
    fitted = fit_cluster(records, gof_samples=0, seed=0)
    assert [(f.worker, f.kind) for f in fitted.findings] == [("w5", "drift")]
    (line,) = fitted.warnings()
    assert line.startswith("worker w5 drifts") and "\n" not in line
    assert "+1" in line and "% a round" in line  # the measured growth, about +1% a round
    assert fitted.system.n == 12


def test_iid_workers_raise_few_warnings():
    """200 i.i.d. series of 1000 rounds at level 0.05: each test rejects with probability 0.05, so the two tests
    together warn for at most about 10% of the series; 40 of 200 would be 5 standard errors above that."""
    rng = np.random.default_rng(2)
    warned = sum(bool(check_series(str(k), Sample.of(LAW.rvs(size=1000, random_state=rng)), 0.05)) for k in range(200))
    assert warned < 40


def test_bursts_are_warned_about_and_not_taken_for_drift():
    rng = np.random.default_rng(3)
    kinds = [[f.kind for f in check_series("b", Sample.of(bursty(1000, rng)), 0.01 / 12)] for _ in range(10)]
    assert all("bursts" in k for k in kinds)
    assert sum("drift" in k for k in kinds) <= 1


def test_each_worker_is_tested_at_the_level_over_the_workers():
    """A worker whose Kendall p-value is between level/n and level is not warned about in a cluster of n."""
    rng = np.random.default_rng(4)
    for _ in range(50):
        x = LAW.rvs(size=300, random_state=rng) * (1 + 0.0007 * np.arange(300))
        if check_series("x", Sample.of(x), 0.05) and not check_series("x", Sample.of(x), 0.05 / 20):
            break
    else:
        raise AssertionError("no series with a p-value between 0.0025 and 0.05 in 50 tries")
    others = {str(k): Sample.of(LAW.rvs(size=300, random_state=rng)) for k in range(19)}
    assert not [f for f in check_workers({"x": Sample.of(x), **others}, 0.05) if f.worker == "x"]


def test_short_series_are_not_tested():
    x = np.arange(1.0, MIN_ROUNDS)  # a perfect trend, but too short
    assert check_series("s", Sample.of(x), 0.5) == []
