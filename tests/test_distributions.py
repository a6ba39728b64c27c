"""Compute-time models: the text form, the models scipy lacks, and their errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from stalegrad.distributions import Deterministic, Empirical, shifted_exponential
from stalegrad.errors import SpecError
from stalegrad.syntax import describe, parse_model
from stalegrad.theory import renewal_function


@pytest.mark.parametrize(
    ("text", "count", "mean"),
    [
        ("expon(loc=1, scale=1.5)", 1, 2.5),
        ("gamma(a=2, scale=1)", 1, 2.0),
        ("shifted_exponential(alpha=1, rate=0.5)", 1, 3.0),
        ("shifted_exponential(alpha=1, rate=2/3)", 1, 2.5),
        ("deterministic(value=2)", 1, 2.0),
        ("3*expon(scale=3)", 3, 3.0),
        (" 12 * lognorm(s=0.5, scale=2) ", 12, 2 * math.exp(0.125)),
        ("expon", 1, 1.0),
    ],
)
def test_parse_model_reads_the_cli_spelling(text, count, mean):
    c, model = parse_model(text)
    assert c == count
    assert float(model.mean()) == pytest.approx(mean)


def test_describe_reads_back_to_the_same_model():
    for text in ["expon(loc=1, scale=1.5)", "gamma(a=2, scale=1)", "deterministic(value=2)"]:
        _, model = parse_model(text)
        _, again = parse_model(describe(model))
        assert describe(again) == describe(model)
        assert float(again.mean()) == float(model.mean())


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("nosuch(a=1)", "compute model name must be"),
        ("0*expon()", "compute count must be an integer >= 1"),
        ("gamma(a=-1)", "gamma"),
        ("expon(scale=1", "compute must be a model like"),
        ("deterministic(value=-1)", "value must be a finite number >= 0"),
        ("shifted_exponential(alpha=1, rate=0)", "rate must be a finite number > 0"),
        ("expon(bogus=1)", "expon"),
    ],
)
def test_parse_model_rejects_bad_text_with_a_named_parameter(text, match):
    with pytest.raises(SpecError, match=match):
        parse_model(text)


def test_shifted_exponential_is_the_papers_model():
    model = shifted_exponential(alpha=1, rate=2 / 3)
    x = model.rvs(size=200_000, random_state=np.random.default_rng(0))
    assert x.min() >= 1.0
    se = x.std() / math.sqrt(x.size)
    assert abs(x.mean() - 2.5) < 4 * se


def test_deterministic_behaves_like_a_frozen_distribution():
    d = Deterministic(2.0)
    assert d.rvs(size=4, random_state=np.random.default_rng(1)).tolist() == [2.0] * 4
    assert d.mean() == 2.0 and d.var() == 0.0 and d.support() == (2.0, 2.0)
    assert d.cdf([1.9, 2.0, 2.1]).tolist() == [0.0, 1.0, 1.0]
    assert renewal_function(d, 5.9) == 2.0 and renewal_function(d, 6.0) == 3.0


def test_empirical_reads_a_file_and_resamples(tmp_path):
    path = tmp_path / "times.csv"
    path.write_text("# measured\nseconds\n1.0\n2.0\n4.0\n")
    _, model = parse_model(f"empirical(path={path})")
    assert isinstance(model, Empirical)
    assert model.mean() == pytest.approx(7 / 3)
    draws = model.rvs(size=3000, random_state=np.random.default_rng(2))
    assert set(np.unique(draws)) == {1.0, 2.0, 4.0}
    assert model.cdf(2.0) == pytest.approx(2 / 3)


def test_empirical_errors_name_the_file(tmp_path):
    with pytest.raises(SpecError, match="empirical path must be an existing file"):
        parse_model(f"empirical(path={tmp_path / 'missing.csv'})")
    bad = tmp_path / "bad.csv"
    bad.write_text("1.0\n-2.0\n")
    with pytest.raises(SpecError, match=r"bad\.csv"):
        Empirical.from_file(bad)


def test_empirical_renewal_function_is_exact_for_small_samples():
    # times {1, 3}: m(t) = P(X <= t) + P(X1 + X2 <= t) + ...; at t = 2: P(X=1) + P(X1=X2=1) = 1/2 + 1/4
    model = Empirical([1.0, 3.0])
    assert renewal_function(model, 2.0) == pytest.approx(0.75)
    assert renewal_function(model, 0.5) == 0.0


def test_scipy_models_pass_through_unchanged():
    _, model = parse_model("weibull_min(c=1.5, scale=2)")
    assert describe(model) == describe(scipy.stats.weibull_min(c=1.5, scale=2))
