"""Closed-form theory: the renewal function against known closed forms and Monte Carlo, and the paper's numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from stalegrad.distributions import Empirical, deterministic, shifted_exponential
from stalegrad.spec import System
from stalegrad.theory import predict, renewal_function, staleness_exact, staleness_paper, update_rate


def erlang2_renewal(rate: float, t: float) -> float:
    """m(t) for Gamma(shape 2, rate): rate t / 2 - 1/4 + exp(-2 rate t) / 4 (a textbook closed form)."""
    return rate * t / 2 - 0.25 + math.exp(-2 * rate * t) / 4


@pytest.mark.parametrize("t", [0.05, 0.5, 1.0, 3.0, 10.0])
def test_numeric_renewal_matches_erlang2_to_1e_4(t):
    rate = 1.3
    exact = erlang2_renewal(rate, t)
    assert renewal_function(scipy.stats.gamma(a=2, scale=1 / rate), t) == pytest.approx(exact, rel=1e-4)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9, 1.0])
def test_numeric_renewal_matches_uniform_closed_form(t):
    # for U(0, 1) and t <= 1, m(t) = e^t - 1
    assert renewal_function(scipy.stats.uniform(), t) == pytest.approx(math.exp(t) - 1, rel=1e-4)


@pytest.mark.parametrize(("alpha", "rate", "t"), [(1.0, 2 / 3, 1.0), (1.0, 2 / 3, 2.0), (0.3, 1 / 1.1, 7.0)])
def test_shifted_exponential_closed_form_against_numeric(alpha, rate, t):
    closed = renewal_function(shifted_exponential(alpha, rate), t)
    numeric = renewal_function(scipy.stats.gamma(a=1, loc=alpha, scale=1 / rate), t)  # same law, lattice path
    assert closed == pytest.approx(numeric, rel=1e-4, abs=1e-12)


def test_simple_closed_forms():
    assert renewal_function(shifted_exponential(1, 2 / 3), 1.0) == 0.0  # m(Tc) = 0 when Tc <= alpha
    assert renewal_function(scipy.stats.expon(scale=2), 3.0) == pytest.approx(1.5)
    assert renewal_function(deterministic(2.0), 4.0) == 2.0
    assert renewal_function(deterministic(2.0), 3.9) == 1.0
    assert renewal_function(scipy.stats.expon(scale=2), -1.0) == 0.0


def monte_carlo_renewal(model, t, rng, n=200_000, kmax=60):
    """Mean and standard error of N(t) = #{k: S_k <= t}."""
    x = model.rvs(size=(n, kmax), random_state=rng)
    counts = (np.cumsum(x, axis=1) <= t).sum(axis=1)
    assert (counts < kmax).all()
    return counts.mean(), counts.std() / math.sqrt(n)


@pytest.mark.parametrize(
    ("model", "t"),
    [
        (scipy.stats.gamma(a=0.5), 1.0),  # density singular at 0
        (scipy.stats.lognorm(s=0.5, scale=2), 1.0),
        (scipy.stats.lognorm(s=1.0, scale=1), 3.0),
        (scipy.stats.weibull_min(c=0.7), 2.0),
        (scipy.stats.poisson(3), 5.0),  # integer-valued, with an atom at 0
        (Empirical([0.5, 1.0, 1.0, 2.5]), 2.2),
    ],
)
def test_renewal_function_agrees_with_monte_carlo(model, t):
    mean, se = monte_carlo_renewal(model, t, np.random.default_rng(11))
    assert abs(renewal_function(model, t) - mean) < 4 * se


def test_papers_example_numbers(paper_model):
    # Figure 1 point n = 10: paper (n/K)(Tc + mu)/mu = 1.4; exact = 1.4 - Tc/(K mu) = 1.36 since m(1) = 0
    s = System(n=10, K=10, tc=1, compute=paper_model)
    assert staleness_paper(s) == pytest.approx(1.4)
    assert staleness_exact(s) == pytest.approx(1.36)
    assert update_rate(s) == pytest.approx(10 / (10 * 2.5))


def test_section4_cases_have_equal_rates_and_staleness_1_and_10():
    case1 = System(n=10, K=10, tc=0, compute=scipy.stats.expon(scale=2))
    case2 = System(n=10, K=1, tc=0, compute=scipy.stats.expon(scale=20))
    assert update_rate(case1) == pytest.approx(update_rate(case2)) == pytest.approx(0.5)
    assert staleness_exact(case1) == pytest.approx(1.0)
    assert staleness_exact(case2) == pytest.approx(10.0)


def test_exact_equals_paper_for_exponential_compute_times():
    s = System(n=7, K=3, tc=2.0, compute=scipy.stats.expon(scale=1.7))
    assert staleness_exact(s) == pytest.approx(staleness_paper(s))


def test_heterogeneous_exact_is_rate_weighted_per_worker():
    fast, slow = scipy.stats.expon(scale=1), scipy.stats.expon(scale=3)
    s = System(n=3, K=2, tc=1, compute=[fast, fast, slow])
    p = predict(s)
    inv = np.array([1, 1, 1 / 3])
    assert p.staleness_exact == pytest.approx(np.dot(inv, p.staleness_exact_per_worker) / inv.sum())
    # worker 0: (1 + m(1) + (1 + 1)(1 + 1/3)) / 2 with m(1) = 1 for Exp(mean 1)
    assert p.staleness_exact_per_worker[0] == pytest.approx((1 + 1 + 2 * (4 / 3)) / 2)
    assert p.update_rate_exact == pytest.approx((2 + 1 / 3) / 2)
