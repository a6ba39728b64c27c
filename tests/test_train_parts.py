"""Step-size policies, problems and compute time scaled with the minibatch: formulas and errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from stalegrad.distributions import Deterministic, Scaled, deterministic, empirical, scaled
from stalegrad.errors import SpecError
from stalegrad.spec import System
from stalegrad.theory import is_lattice, predict, renewal_function
from stalegrad.train import (
    FunctionProblem,
    LinearRegression,
    LogisticRegression,
    constant,
    delay_adaptive,
    delay_compensation,
    get_policy,
    staleness_aware,
)


def test_policies_follow_their_formulas():
    tau = np.array([0, 1, 2, 10, 40])
    np.testing.assert_allclose(constant(0.2, tau, 10), 0.2)
    np.testing.assert_allclose(staleness_aware(0.2, tau, 10), [0.2, 0.2, 0.1, 0.02, 0.005])
    np.testing.assert_allclose(delay_adaptive(0.2, tau, 10), [0.2, 0.2, 0.2, 0.2, 0.05])
    assert get_policy("delay-adaptive") is delay_adaptive
    with pytest.raises(SpecError, match="policy must be one of"):
        get_policy("adam")


def test_delay_compensation_formula_and_errors():
    g, now, stale = np.array([1.0, -2.0]), np.array([3.0, 1.0]), np.array([1.0, 2.0])
    np.testing.assert_allclose(delay_compensation(0.5)(g, now, stale), g + 0.5 * g * g * (now - stale))
    np.testing.assert_array_equal(delay_compensation(0.0)(g, now, stale), g)
    with pytest.raises(SpecError, match="lam must be a finite number >= 0, got -1"):
        delay_compensation(-1)


def test_full_batch_gradient_draws_nothing():
    p = LinearRegression(dim=3, samples=50)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    w = np.ones(3)
    np.testing.assert_allclose(p.gradient(w, 50, rng), p.X.T @ (p.X @ w - p.y) / 50)
    assert rng.bit_generator.state == state
    with pytest.raises(SpecError, match="b must be an integer >= 1"):
        p.gradient(w, 0, rng)


def test_logistic_regression_on_bundled_data():
    p = LogisticRegression()
    assert (p.samples, p.dim) == (569, 31)
    assert np.linalg.norm(p.full_gradient(p.w_opt)) < 1e-7 and p.accuracy(p.w_opt) > 0.95
    assert p.error(p.w_opt) == pytest.approx(0.0, abs=1e-12) and p.error(p.init()) > 0.5
    # the minibatch gradient is unbiased: its mean over draws is the full gradient, within 5 standard errors
    rng = np.random.default_rng(1)
    w = 0.1 * np.ones(p.dim)
    draws = np.array([p.gradient(w, 1, rng) for _ in range(4000)])
    se = draws.std(axis=0) / np.sqrt(draws.shape[0])
    assert np.all(np.abs(draws.mean(axis=0) - p.full_gradient(w)) < 5 * se + 1e-12)
    with pytest.raises(SpecError, match="l2 must be a finite number > 0"):
        LogisticRegression(l2=0.0)


def test_function_problem_checks_its_inputs():
    with pytest.raises(SpecError, match="init must be a finite 1-d array"):
        FunctionProblem(lambda w, b, rng: w, lambda w: 0.0, init=[[1.0]])
    with pytest.raises(SpecError, match="gradient must be a function"):
        FunctionProblem(None, lambda w: 0.0, init=[1.0])  # type: ignore[arg-type]


def test_scaled_models_keep_their_family_and_theory():
    base = scipy.stats.gamma(a=2, scale=1.5)
    s = scaled(base, 4)
    assert s.dist.name == "gamma" and float(s.mean()) == pytest.approx(12.0)
    assert renewal_function(s, 10.0) == pytest.approx(renewal_function(base, 2.5), rel=1e-6)
    assert isinstance(scaled(deterministic(2), 3), Deterministic) and scaled(deterministic(2), 3).value == 6
    assert scaled(empirical(values=[1.0, 3.0]), 2).values.tolist() == [2.0, 6.0]
    assert scaled(base, 1) is base
    with pytest.raises(SpecError, match="factor must be a finite number > 0, got 0"):
        scaled(base, 0)


def test_scaled_wrapper_for_other_models():
    pois = scipy.stats.poisson(3, loc=1)  # integer-valued: scipy cannot rescale it in place
    s = scaled(pois, 2.5)
    assert isinstance(s, Scaled) and is_lattice(s)
    assert float(s.mean()) == pytest.approx(10.0) and s.support()[0] == pytest.approx(2.5)
    assert float(s.cdf(5.0)) == pytest.approx(float(pois.cdf(2.0)))
    assert renewal_function(s, 10.0) == pytest.approx(renewal_function(pois, 4.0))
    x = s.rvs(size=1000, random_state=0)
    assert np.allclose(x / 2.5, np.round(x / 2.5))


def test_section4_cases_with_compute_scaled_by_b():
    per_sample = scipy.stats.expon(scale=2.0)
    one = predict(System(n=10, K=10, compute=scaled(per_sample, 1)))
    two = predict(System(n=10, K=1, compute=scaled(per_sample, 10)))
    assert one.update_rate_exact == pytest.approx(two.update_rate_exact) == pytest.approx(0.5)
    assert one.staleness_exact == pytest.approx(1.0) and two.staleness_exact == pytest.approx(10.0)
