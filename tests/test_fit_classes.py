"""Grouping workers that share a law (k-sample Anderson–Darling, cut from a tree at the level)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from stalegrad.errors import SpecError
from stalegrad.fit.classes import group_workers, same_law_pvalue
from stalegrad.fit.laws import Sample

LAWS = [
    scipy.stats.gamma(a=3.0, loc=1.0, scale=0.25),
    scipy.stats.lognorm(s=0.6, loc=0.5, scale=2.0),
    scipy.stats.weibull_min(c=3.0, loc=1.0, scale=3.0),
]


def cluster(rounds, per_class, seed):
    rng = np.random.default_rng(seed)
    return {f"w{k}": Sample.of(LAWS[k % 3].rvs(size=rounds, random_state=rng)) for k in range(3 * per_class)}


@pytest.mark.parametrize("rounds", [200, 1000])
def test_three_classes_of_four_workers_are_found(rounds):
    """Workers interleaved (w0, w3, w6, w9 share a law). Measured over 200 seeds at level 0.01: correct 188/200
    at 1000 rounds and 192/200 at 200 (every failure a class cut in two: each of the ~3 tests on a true class
    rejects with probability 0.01)."""
    groups = group_workers(cluster(rounds, 4, seed=rounds), 0.01)
    assert sorted(groups) == sorted([[f"w{k}" for k in range(12) if k % 3 == c] for c in range(3)])


def test_identical_workers_are_one_class_and_one_worker_is_its_own():
    rng = np.random.default_rng(5)
    samples = {str(k): Sample.of(LAWS[1].rvs(size=300, random_state=rng)) for k in range(16)}
    assert group_workers(samples, 0.01) == [[str(k) for k in range(16)]]
    assert group_workers({"a": samples["0"]}, 0.01) == [["a"]]


def test_classes_come_fastest_first():
    samples = cluster(300, 2, seed=6)
    groups = group_workers(samples, 0.01)
    medians = [np.median(np.concatenate([samples[w].times for w in g])) for g in groups]
    assert medians == sorted(medians)


def test_same_law_pvalue_is_scipys_interpolated_range():
    rng = np.random.default_rng(7)
    same = [Sample.of(LAWS[0].rvs(size=500, random_state=rng)) for _ in range(3)]
    other = Sample.of(LAWS[2].rvs(size=500, random_state=rng))
    assert 0.001 <= same_law_pvalue(same) <= 0.25
    assert same_law_pvalue([*same, other]) == 0.001
    assert same_law_pvalue(same[:1]) == 1.0


@pytest.mark.parametrize("level", [0.0, 0.0005, 0.3, 1.0])
def test_levels_outside_the_tests_range_are_refused(level):
    with pytest.raises(SpecError, match=r"level must be a significance level between 0\.001 and 0\.25"):
        group_workers(cluster(50, 1, seed=0), level)
