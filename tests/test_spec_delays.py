"""Per-worker delays: ``System(uplink=[...], downlink=[...])``, one delay per worker (each seconds or a law).

The single-value case is unchanged (a list of one repeated delay *is* that delay); the theory takes each worker's
own round trip ``Tc_i = U_i + D_i`` in the exact limit, and the simulation is its referee.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats

from stalegrad import System
from stalegrad.analysis import steady_state
from stalegrad.distributions import Deterministic, shifted_exponential
from stalegrad.errors import SpecError
from stalegrad.sim import simulate
from stalegrad.theory import predict

PAPER = shifted_exponential(alpha=1, rate=2 / 3)
GAMMA_FAST, GAMMA_SLOW = scipy.stats.gamma(a=2, scale=0.5), scipy.stats.gamma(a=2, scale=1.0)


def test_one_delay_for_every_worker_is_as_before():
    one = System(n=4, K=2, tc=1, compute=PAPER)
    listed = System(n=4, K=2, compute=PAPER, uplink=[0.5] * 4, downlink=np.full(4, 0.5))
    assert one.uplink == listed.uplink == 0.5 and not listed.per_worker_delays
    assert one.to_dict() == listed.to_dict() and repr(one) == repr(listed)
    assert one.to_dict()["uplink"] == 0.5 and one.tcs == (1.0,) * 4
    law = scipy.stats.expon(scale=0.5)
    assert System(n=3, K=1, compute=PAPER, uplink=[law] * 3).uplink is law


def test_per_worker_delays_are_kept_per_worker():
    law = scipy.stats.expon(scale=0.2)
    s = System(n=4, K=2, compute=PAPER, uplink=[0.1, 0.1, 0.3, law], downlink=0.5)
    assert s.per_worker_delays and s.uplink == (0.1, 0.1, 0.3, law) and s.downlink == 0.5
    assert [s.uplink_of(i) for i in range(4)] == [0.1, 0.1, 0.3, law] and s.downlink_of(3) == 0.5
    assert s.tcs == pytest.approx((0.6, 0.6, 0.8, 0.7)) and s.tc == pytest.approx(np.mean(s.tcs))
    assert not s.deterministic_delays
    assert System(n=2, K=1, compute=PAPER, uplink=[0.1, 0.2], downlink=[Deterministic(0.3), 0.0]).deterministic_delays
    d = s.to_dict()
    assert d["uplink"] == ["2*0.1", "1*0.3", "1*expon(loc=0.0, scale=0.2)"] and d["downlink"] == 0.5
    assert "uplink=['2*0.1', '1*0.3', '1*expon(loc=0.0, scale=0.2)']" in repr(s)


def test_system_description_round_trip():
    s = System(n=5, K=2, compute=[GAMMA_FAST] * 2 + [GAMMA_SLOW] * 3, uplink=[0.1, 0.2, 0.2, 0.0, 1.5],
               downlink=[scipy.stats.expon(scale=0.1)] * 2 + [0.25] * 3)  # fmt: skip
    d = json.loads(json.dumps(s.to_dict()))
    again = System.from_dict(d)
    assert again.to_dict() == d and again.tcs == pytest.approx(s.tcs)
    plain = dict(d, uplink=[0.1, 0.2, 0.2, 0.0, 1.5], downlink=["2*expon(scale=0.1)", "3*0.25"])
    assert System.from_dict(plain).to_dict() == d


def test_worker_subsets_and_replace_keep_each_workers_delays():
    s = System(n=4, K=2, compute=[GAMMA_FAST, GAMMA_SLOW] * 2, uplink=[0.1, 0.2, 0.3, 0.4], workers="fastest:2")
    assert s.active == (0, 2) and s.tc == pytest.approx((0.1 + 0.3) / 2)
    small = s.active_system()
    assert small.uplink == (0.1, 0.3) and small.tc == s.tc
    assert s.replace(K=1).uplink == s.uplink
    assert s.replace(uplink=0.2).uplink == 0.2
    with pytest.raises(SpecError, match=r"n must be 4 \(per-worker uplink delays: give uplink= for the new n\)"):
        System(n=4, K=2, compute=PAPER, uplink=[0.1, 0.2, 0.3, 0.4]).replace(n=5)


@pytest.mark.parametrize(
    ("uplink", "match"),
    [
        ([0.1, 0.2], r"uplink must be one delay or exactly n=3 delays \(one per worker\), got '2 delays'"),
        ([0.1, -1.0, 0.2], r"uplink\[1\] must be a finite number of seconds >= 0 or a distribution, got -1.0"),
        ([0.1, float("nan"), 0.2], r"uplink\[1\] must be a finite number"),
        ([0.1, "0.2", 0.2], r"uplink\[1\] must be a number of seconds or a distribution \(not text"),
        ("0.5", r"uplink must be a number of seconds or a distribution \(not text"),
    ],
)
def test_bad_per_worker_delays_are_one_error(uplink, match):
    with pytest.raises(SpecError, match=match):
        System(n=3, K=1, compute=PAPER, uplink=uplink)


@pytest.mark.parametrize(
    ("downlink", "match"),
    [
        (["2*0.1"], r"downlink must be delays for exactly n = 3 workers"),
        (["3*x(1)"], r"downlink\[0\] model name must be"),
        ([True, 0.1, 0.1], r"downlink\[0\] must be a number of seconds or a model in text form, got True"),
        ("2*0.1", r"downlink must be one delay without a count, or a list of them per worker"),
    ],
)
def test_bad_delays_in_a_system_description(downlink, match):
    d = System(n=3, K=1, compute=PAPER).to_dict()
    with pytest.raises(SpecError, match=match):
        System.from_dict(dict(d, downlink=downlink))


SYSTEMS = {
    # fast workers with slow links and slow workers with fast ones; uplinks and downlinks split differently
    "gamma, fixed": System(n=6, K=3, compute=[GAMMA_FAST] * 3 + [GAMMA_SLOW] * 3,
                           uplink=[0.1, 2.0, 0.5, 0.1, 3.0, 0.0], downlink=[1.5, 0.2, 0.5, 0.0, 0.3, 2.0]),
    # the paper's law: Tc_i <= alpha for some workers (renewal function 0), beyond it for others
    "paper, fixed": System(n=5, K=2, compute=PAPER, uplink=[0.0, 0.25, 0.5, 1.0, 2.0],
                           downlink=[0.0, 0.25, 0.5, 1.0, 2.5]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_exact_limit_with_each_workers_round_trip_matches_simulation(name):
    """The exact limit with per-worker round trips, per worker and overall, against 30000 simulated updates
    (seed 1): each within 4 standard errors of the batch means (the CI is 1.96-2.04 of them)."""
    system = SYSTEMS[name]
    trace = simulate(system, 30_000, seed=1)
    est = steady_state(trace)
    p = predict(system)
    assert abs(est.mean - p.staleness_exact) <= 2 * est.ci95, (est.mean, est.ci95, p.staleness_exact)
    # per worker: the worker's own batch means
    warm = trace.updates // 10
    keep = trace["update"] > warm
    pooled = predict(System(n=system.n, K=system.K, compute=list(system.compute), tc=system.tc))
    worst_pooled = 0.0
    for i in range(system.n):
        mine = trace["staleness"][keep & (trace["worker"] == i)].astype(float)
        means = np.array([b.mean() for b in np.array_split(mine, 32)])
        se = means.std(ddof=1) / np.sqrt(means.size)
        assert abs(means.mean() - p.staleness_exact_per_worker[i]) <= 4 * se, (i, means.mean(), se)
        worst_pooled = max(worst_pooled, abs(means.mean() - pooled.staleness_exact_per_worker[i]) / se)
    # the workers' own round trips matter: the mean round trip for all misses some worker by many standard errors
    assert worst_pooled > 20


def test_paper_formula_takes_each_workers_round_trip():
    """For exponential times the exact limit is the paper's formula with each worker's round trip."""
    expo = scipy.stats.expon(scale=2.0)
    s = System(n=3, K=1, compute=expo, uplink=[0.0, 1.0, 2.0], downlink=[1.0, 1.0, 1.0])
    p = predict(s)
    assert p.staleness_exact == pytest.approx(p.staleness_paper)
    # worker i: 1 + Tc_i / mu + (Tc_i + mu) (n - 1) / mu, over K = 1
    want = [1 + tc / 2 + (tc + 2) * 2 / 2 for tc in (1.0, 2.0, 3.0)]
    assert p.staleness_exact_per_worker == pytest.approx(want)


def test_what_the_theory_cannot_take_says_so():
    from stalegrad.theory.pmf import staleness_distribution
    from stalegrad.theory.rates import protocol_update_rate

    s = System(n=3, K=2, compute=GAMMA_FAST, uplink=[0.1, 0.2, 0.3], protocol="k-sync")
    assert protocol_update_rate(s) is None and "per-worker delays" in (predict(s).caveat or "")
    random = System(n=3, K=2, compute=GAMMA_FAST, uplink=[0.1, scipy.stats.expon(scale=0.2), 0.3])
    with pytest.raises(SpecError, match="uplink and downlink must be fixed times for the staleness distribution"):
        staleness_distribution(random)
    assert np.isnan(predict(System(n=3, K=2, compute=GAMMA_FAST, uplink=[0.1, 0.2, 0.3], protocol="k-async"))
                    .staleness_exact_per_worker[0])  # fmt: skip


def test_engines_refuse_or_route_per_worker_delays():
    s = SYSTEMS["gamma, fixed"]
    with pytest.raises(SpecError, match="delays must be one for every worker for the fast simulator"):
        simulate(s, 10, seed=0, engine="numba")
    assert simulate(s, 10, seed=0).meta["engine"] in ("events", "compiled")


def test_a_list_of_one_delay_gives_the_same_trace():
    one = System(n=4, K=2, compute=GAMMA_FAST, uplink=scipy.stats.expon(scale=0.3), downlink=0.2)
    listed = System(n=4, K=2, compute=GAMMA_FAST, uplink=[one.uplink] * 4, downlink=[0.2] * 4)
    a, b = simulate(one, 500, seed=3, engine="events"), simulate(listed, 500, seed=3, engine="events")
    for key in ("worker", "start", "sent", "arrive", "version", "staleness"):
        assert np.array_equal(a[key], b[key])


def test_staleness_distribution_with_each_workers_round_trip_matches_simulation():
    """The stationary staleness pmf with per-worker round trips: its mean is the exact limit (per class too), and
    each probability of at least 0.01 lies within 4 standard errors of the simulated frequency (batch means of
    30000 updates, seed 2)."""
    from stalegrad.theory.pmf import staleness_distribution

    system = System(n=4, K=2, compute=[GAMMA_FAST, GAMMA_FAST, GAMMA_SLOW, GAMMA_SLOW],
                    uplink=[0.1, 1.0, 0.1, 2.0], downlink=[0.2, 1.5, 0.2, 0.5])  # fmt: skip
    d = staleness_distribution(system)
    p = predict(system)
    assert d.mean() == pytest.approx(p.staleness_exact, rel=1e-6)
    for c in d.per_class:
        assert c.mean == pytest.approx(p.staleness_exact_per_worker[c.workers[0]], rel=1e-6)
    assert [c.workers for c in d.per_class] == [(0,), (1,), (2,), (3,)]
    trace = simulate(system, 30_000, seed=2)
    tau = trace["staleness"][trace["update"] > trace.updates // 10]
    for k in np.flatnonzero(d.pmf >= 0.01):
        means = np.array([b.mean() for b in np.array_split((tau == k).astype(float), 32)])
        se = means.std(ddof=1) / np.sqrt(means.size)
        assert abs(means.mean() - d.pmf[k]) <= 4 * se, (k, means.mean(), d.pmf[k], se)
