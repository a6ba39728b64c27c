"""The exact limit is confirmed by the simulator (within its 95% CI, or 0.3% relative, whichever is larger),
and the paper's Theorem 2 is not, where the two differ (DESIGN.md: the simulator is the referee).

Each case is one fixed-seed run of 3e5 updates (or more); the CI comes from 32 batch means after a 10% warm-up.
"""

from __future__ import annotations

import pytest
import scipy.stats

from stalegrad.analysis import steady_state
from stalegrad.distributions import deterministic, shifted_exponential
from stalegrad.sim import simulate_summary
from stalegrad.spec import System
from stalegrad.theory import predict

REL = 0.003  # the floor: 0.3% relative
PAPER = shifted_exponential(alpha=1, rate=2 / 3)


def estimate(system: System, updates: int = 300_000, seed: int = 1):
    return steady_state(simulate_summary(system, updates, seed=seed))


@pytest.mark.parametrize("n", range(10, 21))
def test_fig1_grid_exact_within_ci_and_paper_outside(n):
    system = System(n=n, K=10, tc=1, compute=PAPER)
    est, p = estimate(system, seed=100 + n), predict(system)
    assert est.covers(p.staleness_exact, rel=REL), (est.mean, est.ci95, p.staleness_exact)
    assert not est.covers(p.staleness_paper), (est.mean, est.ci95, p.staleness_paper)
    assert est.update_rate == pytest.approx(p.update_rate_exact, rel=0.01)


CASES = {
    "paper distribution, Tc = 2": System(n=12, K=6, tc=2, compute=PAPER),
    "gamma a=2": System(n=8, K=4, tc=1.5, compute=scipy.stats.gamma(a=2, scale=1)),
    "lognormal": System(n=10, K=5, tc=3, compute=scipy.stats.lognorm(s=0.8, scale=1.5)),
    "heterogeneous (stragglers 3x slower)": System(
        n=6, K=3, tc=1, compute=[scipy.stats.expon(loc=0.5, scale=0.5)] * 4 + [scipy.stats.gamma(a=3, scale=1)] * 2
    ),
    "K > n": System(n=4, K=10, tc=0.7, compute=scipy.stats.gamma(a=2, scale=1)),
    "asymmetric delays": System(n=8, K=3, uplink=0.1, downlink=1.9, compute=scipy.stats.weibull_min(c=1.5)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_exact_limit_within_ci(name):
    system = CASES[name]
    est, p = estimate(system), predict(system)
    assert est.covers(p.staleness_exact, rel=REL), (est.mean, est.ci95, p.staleness_exact, p.staleness_paper)
    assert est.update_rate == pytest.approx(p.update_rate_exact, rel=0.01)


def test_per_worker_staleness_of_heterogeneous_workers():
    system = CASES["heterogeneous (stragglers 3x slower)"]
    est, p = estimate(system, updates=600_000), predict(system)
    for measured, exact in zip(est.worker_means, p.staleness_exact_per_worker, strict=True):
        assert abs(measured - exact) <= 0.01 * exact, (est.worker_means, p.staleness_exact_per_worker)


def test_where_the_paper_is_wrong_the_gap_is_resolved():
    # gamma(a=2) with Tc = 1.5: m(Tc) differs from Tc/mu, so the paper's value is off by more than the CI
    system = CASES["gamma a=2"]
    est, p = estimate(system), predict(system)
    assert abs(p.staleness_gap) > 5 * est.ci95
    assert not est.covers(p.staleness_paper, rel=REL)


def test_lattice_compute_times_are_flagged_and_the_simulator_is_the_referee():
    # Equal deterministic compute times keep the workers in lockstep: all arrivals of a round are simultaneous,
    # the renewal argument (non-lattice times) does not apply, and the limit depends on the tie order.
    # Hand count for n=5, K=2, X=1, Tc=1: round j of worker i starts at j-1, sees the updates of the arrival
    # batches before j-1.5, i.e. floor(5(j-3)/2); its gradient is number 5(j-1)+i, so tau = (10 + i)/2 on average.
    system = System(n=5, K=2, tc=1, compute=deterministic(1.0))
    p = predict(system)
    assert p.caveat is not None and "lattice" in p.caveat
    est = estimate(system, updates=20_000)
    assert est.worker_means == pytest.approx([5.0, 5.5, 6.0, 6.5, 7.0], abs=1e-3)
    assert predict(CASES["lognormal"]).caveat is None
