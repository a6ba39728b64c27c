"""The System value: defaults, heterogeneity, and one-line errors that name the parameter."""

from __future__ import annotations

import pytest
import scipy.stats

from stalegrad.distributions import deterministic
from stalegrad.errors import SpecError
from stalegrad.spec import System


def test_defaults_split_tc_evenly(paper_model):
    s = System(n=4, K=2, tc=1.5, compute=paper_model)
    assert (s.uplink, s.downlink, s.tc) == (0.75, 0.75, 1.5)
    assert s.deterministic_delays and s.identical
    assert s.means == (2.5,) * 4


def test_heterogeneous_workers_and_k_above_n():
    fast, slow = scipy.stats.expon(scale=1), scipy.stats.expon(scale=3)
    s = System(n=4, K=7, compute=[fast, fast, slow, slow], uplink=0.2, downlink=0.3)
    assert s.tc == pytest.approx(0.5)
    assert not s.identical
    assert [c for c, _ in s.groups()] == [2, 2]
    assert s.to_dict()["compute"] == ["2*expon(loc=0.0, scale=1.0)", "2*expon(loc=0.0, scale=3.0)"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, r"n must be an integer >= 1, got 0"),
        ({"n": 2.5}, r"n must be an integer >= 1, got 2.5"),
        ({"K": 0}, r"K must be an integer >= 1, got 0"),
        ({"tc": -1}, r"tc must be a finite number of seconds >= 0, got -1"),
        ({"tc": float("nan")}, r"tc must be"),
        ({"uplink": -0.1}, r"uplink must be a finite number of seconds >= 0"),
        ({"compute": "expon"}, r"compute must be a distribution"),
        ({"compute": [deterministic(1)] * 3}, r"compute must be one model or exactly n=4 models, got '3 models'"),
        ({"compute": scipy.stats.norm()}, r"compute\[0\] mean must be finite and > 0"),
        ({"compute": scipy.stats.norm(loc=5)}, r"compute\[0\] support must be times >= 0"),
        ({"compute": deterministic(0)}, r"compute\[0\] mean must be finite and > 0"),
        ({"protocol": "k-bogus"}, r"protocol must be one of k-batch-async, k-async, .*, got 'k-bogus'"),
        ({"protocol": "k-sync", "K": 5}, r"K must be at most n = 4 for k-sync"),
        ({"protocol": "sync", "K": 2}, r"K must be n = 4 for the sync protocol"),
        ({"protocol": "k-sync", "staleness_bound": 2}, r"staleness_bound must be None for k-sync"),
        ({"staleness_bound": -1}, r"staleness_bound must be an integer >= 0, got -1"),
    ],
)
def test_bad_input_is_one_clear_message(kwargs, match):
    args = {"n": 4, "K": 2, "compute": deterministic(1.0)} | kwargs
    with pytest.raises(SpecError, match=match):
        System(**args)


def test_system_is_immutable_and_replace_makes_a_copy(paper_model):
    s = System(n=4, K=2, compute=paper_model)
    with pytest.raises(AttributeError):
        s.n = 5  # type: ignore[misc]
    t = s.replace(n=8)
    assert (t.n, s.n, t.K) == (8, 4, 2)
