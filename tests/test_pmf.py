"""The stationary staleness distribution (stalegrad.theory.pmf): closed forms against the numerical method, the
means against the exact limit, and the whole pmf against the simulator (the referee).

Against the simulator, each system is simulated ``R`` times with independent seeds (a tenth of each run is
warm-up). The sampling noise of the pooled histogram is estimated from the spread of the replicates: bin ``k`` has
standard error ``se_k = sd_k / sqrt(R)`` and an exact pmf would be at total variation ``0.5 sqrt(2/pi) sum_k
se_k`` from it on average. The test asks for a total-variation distance within 3 times that noise, and for
equal p50, p95 and p99 (unless the predicted CDF is within 4 standard errors of the level there: then the
simulation cannot tell the two neighbours apart, and either is accepted).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import scipy.stats

from stalegrad.distributions import Empirical, deterministic
from stalegrad.errors import SpecError, StalegradError
from stalegrad.sim import simulate, simulate_summary
from stalegrad.spec import System
from stalegrad.theory import (
    staleness_distribution,
    staleness_exact,
    staleness_exact_per_worker,
)
from stalegrad.theory.counts import count_laws

PAPER = scipy.stats.expon(loc=1, scale=1.5)  # the paper's alpha = 1, lambda = 2/3

SYSTEMS = {
    "gamma": System(n=8, K=4, tc=1.5, compute=scipy.stats.gamma(a=2, scale=1)),
    "lognormal": System(n=10, K=5, tc=3, compute=scipy.stats.lognorm(s=0.8, scale=1.5)),
    "Weibull, asymmetric delays": System(n=8, K=3, uplink=0.1, downlink=1.9, compute=scipy.stats.weibull_min(c=1.5)),
    "uniform": System(n=6, K=2, tc=0.5, compute=scipy.stats.uniform(loc=1, scale=2)),
    "shifted exponential, Tc above the shift": System(n=12, K=6, tc=2, compute=PAPER),
    "shifted exponential, Tc below the shift": System(n=16, K=10, tc=0.5, compute=PAPER),
    "heterogeneous classes": System(
        n=6, K=3, tc=1, compute=[scipy.stats.expon(loc=0.5, scale=0.5)] * 4 + [scipy.stats.gamma(a=3, scale=1)] * 2
    ),
    "K > n": System(n=4, K=10, tc=0.7, compute=scipy.stats.gamma(a=2, scale=1)),
    "exponential (closed form)": System(n=5, K=2, tc=0.3, compute=scipy.stats.expon(scale=1)),
}


def tv(a, b) -> float:
    size = max(len(a), len(b))
    return 0.5 * float(np.abs(np.pad(a, (0, size - len(a))) - np.pad(b, (0, size - len(b)))).sum())


def replicate_pmfs(hists) -> np.ndarray:
    """Rows: the normalised histograms of independent replicates, padded to one length."""
    size = max(len(h) for h in hists)
    H = np.array([np.pad(np.asarray(h, float), (0, size - len(h))) for h in hists])
    return H / H.sum(axis=1, keepdims=True)


def compare(pred: np.ndarray, P: np.ndarray) -> dict:
    """Total variation of the prediction from the pooled replicates, the noise level, and the quantiles."""
    R = P.shape[0]
    size = max(P.shape[1], pred.size)
    P = np.pad(P, ((0, 0), (0, size - P.shape[1])))
    pred = np.pad(pred, (0, size - pred.size))
    pooled = P.mean(axis=0)
    se = P.std(axis=0, ddof=1) / math.sqrt(R)
    cdf_se = np.cumsum(P, axis=1).std(axis=0, ddof=1) / math.sqrt(R)
    out = {"tv": tv(pred, pooled), "noise": 0.5 * math.sqrt(2 / math.pi) * float(se.sum()), "quantiles": []}
    pred_cdf, sim_cdf = np.cumsum(pred), np.cumsum(pooled)
    for q in (0.5, 0.95, 0.99):
        a, b = int(np.argmax(pred_cdf >= q)), int(np.argmax(sim_cdf >= q))
        lo = min(a, b)
        undecidable = abs(pred_cdf[lo] - q) < 4 * cdf_se[lo] + 1e-12
        out["quantiles"].append((q, a, b, a == b or (abs(a - b) == 1 and undecidable)))
    return out


def check_against_simulation(system, pred, hists):
    P = replicate_pmfs(hists)
    c = compare(pred, P)
    assert c["tv"] <= 3 * c["noise"], (c, P.shape)
    assert all(ok for *_, ok in c["quantiles"]), c["quantiles"]
    return c


# ------------------------------------------------------------------------------------------------ closed forms


EXPONENTIAL = {
    "identical, Tc > 0": System(n=8, K=4, tc=1, compute=scipy.stats.expon(scale=2)),
    "identical, Tc = 0": System(n=5, K=2, tc=0, compute=scipy.stats.expon(scale=1)),
    "two rates": System(n=6, K=3, tc=0.7, compute=[scipy.stats.expon(scale=1)] * 3 + [scipy.stats.expon(scale=3)] * 3),
    "K > n": System(n=3, K=7, tc=2.0, compute=scipy.stats.expon(scale=0.5)),
    "one worker": System(n=1, K=2, tc=1.0, compute=scipy.stats.expon(scale=1)),
}


@pytest.mark.parametrize("name", list(EXPONENTIAL))
def test_closed_form_matches_the_numerical_method_to_1e_8(name):
    system = EXPONENTIAL[name]
    closed = staleness_distribution(system)
    numeric = staleness_distribution(system, method="numerical")
    assert (closed.method, numeric.method) == ("closed form", "numerical")
    distance = tv(closed.pmf, numeric.pmf)
    assert distance < 1e-8
    assert distance <= numeric.error_estimate + numeric.truncation  # the reported estimate is not optimistic
    for a, b in zip(closed.per_class, numeric.per_class, strict=True):
        assert a.workers == b.workers and tv(a.pmf, b.pmf) < 1e-8


@pytest.mark.parametrize(("n", "K"), [(4, 2), (10, 1), (10, 5), (3, 8)])
def test_identical_exponential_workers_at_tc_0_are_zero_modified_geometric(n, K):
    # independent closed form: A' = 1 + Geometric_0(1/n), so P(tau = 0) = 1 - (1 - q^K) / (K p) and
    # P(tau = k) = (1 - q^K)^2 q^(K(k-1)) / (K p) for k >= 1, with p = 1/n, q = 1 - p
    p, q = 1 / n, 1 - 1 / n
    k = np.arange(1, 400)
    expected = np.concatenate([[1 - (1 - q**K) / (K * p)], (1 - q**K) ** 2 * q ** (K * (k - 1)) / (K * p)])
    system = System(n=n, K=K, tc=0, compute=scipy.stats.expon(scale=1.7))
    for method in ("closed form", "numerical"):
        d = staleness_distribution(system, method=method)
        assert tv(d.pmf, expected) < 1e-8, method
    if K == 1:  # the paper's K = 1 case: (1/n)(1 - 1/n)^(k-1)
        d = staleness_distribution(system)
        assert d.pmf[1:6] == pytest.approx(p * q ** np.arange(5), rel=1e-9)


def test_exponential_tail_is_geometric_with_ratio_q_to_the_K():
    system = System(n=5, K=3, tc=0.4, compute=scipy.stats.expon(scale=1))
    pmf = staleness_distribution(system).pmf
    q = 1 - 1 / 5
    assert pmf[25:30] / pmf[24:29] == pytest.approx([q**3] * 5, rel=1e-6)


def test_count_laws_match_erlang_closed_forms():
    # Erlang-2 (rate 1.3): S_j ~ Gamma(2j), so P(N^o(t) >= j) = P(Poisson(rate t) >= 2j); a stationary worker is
    # in either phase with probability 1/2, so P(N^eq(t) >= m) = (P(Poisson >= 2m - 1) + P(Poisson >= 2m)) / 2
    rate, t = 1.3, 3.0
    m = np.arange(0, 15)
    pois_sf = lambda j: scipy.stats.poisson.sf(j - 1, rate * t)  # noqa: E731  P(Poisson >= j)
    ordinary = pois_sf(2 * m) - pois_sf(2 * m + 2)
    at_least = np.where(m == 0, 1.0, 0.5 * (pois_sf(2 * m - 1) + pois_sf(2 * m)))
    equilibrium = at_least - np.append(at_least[1:], 0.5 * (pois_sf(2 * 15 - 1) + pois_sf(2 * 15)))
    law = scipy.stats.gamma(a=2, scale=1 / rate)
    for h, tolerance in ((0.01, 2e-4), (0.005, 5e-5)):  # O(h^2)
        laws = count_laws(law, 2 / rate, h, round(t / h) + 2)
        j = round(t / h)
        eq = laws.equilibrium(np.array([j]), 0.0)[0]
        assert tv(laws.ordinary[:, j], ordinary) < tolerance
        assert tv(eq, equilibrium) < tolerance
        assert eq @ np.arange(eq.size) == pytest.approx(rate * t / 2)  # E N^eq(t) = t / mu on any grid


# ------------------------------------------------------------------------------------------------ means


@pytest.mark.parametrize("name", [*SYSTEMS, "Figure 1, n = 16"])
def test_mean_of_the_pmf_is_the_exact_limit(name):
    system = SYSTEMS.get(name) or System(n=16, K=10, tc=1, compute=PAPER)
    d = staleness_distribution(system)
    assert d.mean() == pytest.approx(staleness_exact(system), abs=1e-6)
    per_worker = staleness_exact_per_worker(system)
    for c in d.per_class:
        assert c.mean == pytest.approx(float(np.dot(np.arange(c.pmf.size), c.pmf)))
        for w in c.workers:
            assert c.mean == pytest.approx(per_worker[w], abs=1e-6)
    assert sum(c.share for c in d.per_class) == pytest.approx(1.0)
    assert d.truncation <= 1e-9 and d.error_estimate < 1e-6


# ------------------------------------------------------------------------------------------------ the referee


def simulated_hists(system, gradients, replicates=8, seed=1000):
    updates = gradients // system.K
    return [simulate_summary(system, updates, seed=seed + r).hist for r in range(replicates)]


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_pmf_matches_the_simulator(name):
    system = SYSTEMS[name]
    check_against_simulation(system, staleness_distribution(system).pmf, simulated_hists(system, 400_000))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SYSTEMS))
def test_pmf_matches_a_large_simulation(name):
    # 8 x 1e7 gradients: a noise level of about 1e-4 in total variation
    system = SYSTEMS[name]
    c = check_against_simulation(
        system, staleness_distribution(system).pmf, simulated_hists(system, 10_000_000, seed=5000)
    )
    assert c["noise"] < 3e-4


def test_per_class_pmfs_match_the_simulator():
    system = SYSTEMS["heterogeneous classes"]
    d = staleness_distribution(system)
    per_class: list[list[np.ndarray]] = [[] for _ in d.per_class]
    for r in range(8):
        trace = simulate(system, 100_000, seed=300 + r)
        keep = trace["update"] > 10_000
        worker, tau = trace["worker"][keep], trace["staleness"][keep]
        for c, cls in enumerate(d.per_class):
            per_class[c].append(np.bincount(tau[np.isin(worker, cls.workers)]))
    assert [c.workers for c in d.per_class] == [(0, 1, 2, 3), (4, 5)]
    for cls, hists in zip(d.per_class, per_class, strict=True):
        check_against_simulation(system, cls.pmf, hists)


def test_a_wrong_distribution_fails_the_same_check():
    # the power of the check: exponential times with the same means (the paper's assumption) give the right mean
    # for Tc above the shift only approximately, and the wrong shape; the check rejects them
    system = SYSTEMS["shifted exponential, Tc below the shift"]
    wrong = staleness_distribution(system.replace(compute=scipy.stats.expon(scale=float(PAPER.mean())))).pmf
    c = compare(wrong, replicate_pmfs(simulated_hists(system, 400_000)))
    assert c["tv"] > 10 * c["noise"]


def test_a_staleness_bound_drops_at_most_what_the_pmf_predicts():
    # with the bound in place the dropped gradients do not count towards K: the updates slow down and fewer are
    # dropped, so P(tau > S) of the unbounded system is an upper estimate, close when the fraction is small
    system = System(n=8, K=4, tc=1, compute=PAPER)
    d = staleness_distribution(system)
    S = d.smallest_bound(0.02)
    predicted = d.dropped_by_bound(S)
    trace = simulate(system.replace(staleness_bound=S), 30_000, seed=11)
    dropped = (trace["dropped"] != 0)[len(trace) // 10 :]
    se = math.sqrt(predicted * (1 - predicted) / dropped.size) * 3  # gradients are correlated: a generous se
    assert dropped.mean() <= predicted + 3 * se
    assert dropped.mean() >= 0.7 * predicted


# ------------------------------------------------------------------------------------------------ the API


def test_quantiles_tails_and_bounds_agree():
    d = staleness_distribution(System(n=16, K=10, tc=1, compute=PAPER))
    cdf = np.cumsum(d.pmf)
    for q in (0.01, 0.5, 0.9, 0.95, 0.99, 0.999):
        s = d.quantile(q)
        assert cdf[s] >= q and (s == 0 or cdf[s - 1] < q)
    for S in range(8):
        assert d.dropped_by_bound(S) == pytest.approx(d.tail(S)) == pytest.approx(1 - cdf[S], abs=1e-12)
    for p in (0.1, 0.01, 0.001):
        S = d.smallest_bound(p)
        assert d.dropped_by_bound(S) <= p < d.dropped_by_bound(S - 1) if S > 0 else d.dropped_by_bound(S) <= p
    assert d.tail(-1) == 1.0 and d.cdf(-1) == 0.0


def test_to_dict_is_json_ready():
    d = staleness_distribution(SYSTEMS["heterogeneous classes"])
    out = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert out["staleness_pmf"] == pytest.approx(d.pmf.tolist())
    assert (out["staleness_p50"], out["staleness_p95"], out["staleness_p99"]) == tuple(
        d.quantile(q) for q in (0.5, 0.95, 0.99)
    )
    assert out["staleness_mean"] == pytest.approx(d.mean())
    assert out["method"] == "numerical" and len(out["per_class"]) == 2


def test_classes_are_the_distinct_models_not_the_workers():
    fast, slow = scipy.stats.gamma(a=2, scale=0.5), scipy.stats.gamma(a=2, scale=1.5)
    system = System(n=40, K=8, tc=1, compute=[fast, slow] * 20)  # not consecutive: still two classes
    d = staleness_distribution(system)
    assert [c.workers for c in d.per_class] == [tuple(range(0, 40, 2)), tuple(range(1, 40, 2))]
    assert d.per_class[0].share == pytest.approx(0.75)
    assert d.mean() == pytest.approx(staleness_exact(system), abs=1e-6)


def test_heavy_tails_report_their_truncation():
    system = System(n=8, K=4, tc=1, compute=scipy.stats.lognorm(s=1.5, scale=1.0))
    d = staleness_distribution(system)
    assert 1e-10 < d.truncation < 1e-3  # the tail that did not fit the grid, reported
    assert d.pmf.sum() == pytest.approx(1 - d.truncation, abs=10 * d.error_estimate + 1e-9)
    assert d.quantile(0.99) < d.pmf.size
    with pytest.raises(StalegradError, match="beyond the computed support"):
        d.quantile(1.0)
    assert d.to_dict()["staleness_p99"] == d.quantile(0.99)


@pytest.mark.parametrize(
    ("system", "match"),
    [
        (System(n=4, K=2, tc=1, compute=deterministic(1.0)), r"compute\[0\] must be a non-lattice law"),
        (System(n=4, K=2, tc=1, compute=Empirical([1.0, 2.0, 3.5])), "non-lattice"),
        (System(n=4, K=2, tc=1, compute=scipy.stats.poisson(3)), "non-lattice"),
        (
            System(n=4, K=2, uplink=scipy.stats.expon(scale=0.5), downlink=0.5, compute=PAPER),
            "uplink and downlink must be fixed times",
        ),
        (System(n=4, K=2, tc=1, compute=PAPER, protocol="k-sync"), "protocol must be k-batch-async"),
        (System(n=4, K=2, tc=1, compute=PAPER, staleness_bound=3), "staleness_bound must be None"),
    ],
)
def test_refusals_name_the_reason(system, match):
    with pytest.raises(SpecError, match=match):
        staleness_distribution(system)


def test_bad_arguments():
    system = SYSTEMS["gamma"]
    with pytest.raises(SpecError, match=re.escape("tol must be a number from 1e-14 to 1e-2, got 0.5")):
        staleness_distribution(system, tol=0.5)
    with pytest.raises(SpecError, match="method must be one of"):
        staleness_distribution(system, method="exact")
    with pytest.raises(SpecError, match="method must be 'numerical' or 'auto'"):
        staleness_distribution(system, method="closed form")
    with pytest.raises(SpecError, match="steps_per_scale must be an integer from 4 to 1024"):
        staleness_distribution(system, steps_per_scale=2)
    with pytest.raises(SpecError, match=re.escape("system must be a stalegrad.System")):
        staleness_distribution("n=4")
    d = staleness_distribution(system)
    with pytest.raises(SpecError, match=re.escape("q must be a probability from 0 to 1, got 1.5")):
        d.quantile(1.5)
    with pytest.raises(SpecError, match="S must be an integer >= 0, got -1"):
        d.dropped_by_bound(-1)
    with pytest.raises(SpecError, match="p must be a fraction from 0 to 1"):
        d.smallest_bound(1.0)


# ----------------------------------------------------------------------------------------------- command line


def test_predict_prints_and_writes_the_distribution(run_cli):
    import json

    from stalegrad.distributions import shifted_exponential
    from stalegrad.spec import System
    from stalegrad.theory import staleness_distribution

    args = ["predict", "--n", "16", "--K", "10", "--tc", "1", "--quantile", "0.999", "--tail", "8"]
    code, out, err = run_cli([*args, "--drop-at-most", "0.01", "--json"])
    assert code == 0, err
    row = json.loads(out)
    law = staleness_distribution(System(n=16, K=10, tc=1, compute=shifted_exponential(1, 2 / 3)))
    assert row["staleness_pmf"] == law.pmf.tolist() and row["staleness_mean"] is None
    assert (row["staleness_p50"], row["staleness_p95"], row["staleness_p99"]) == tuple(
        law.quantile(q) for q in (0.5, 0.95, 0.99)
    )
    assert row["staleness_quantiles"] == {"0.999": law.quantile(0.999)}
    assert row["staleness_tail"] == {"8": law.tail(8)} and row["smallest_bound"] == law.smallest_bound(0.01)
    code, out, err = run_cli([*args[:7], "--staleness-bound", "3", "--json"])
    row = json.loads(out)
    assert code == 0 and row["dropped_fraction_bound"] == law.dropped_by_bound(3) and row["staleness_pmf"] is None


def test_predict_says_why_a_distribution_is_not_predicted(run_cli):
    import json

    code, out, err = run_cli(["predict", "--n", "4", "--K", "2", "--compute", "deterministic(value=1)", "--json"])
    row = json.loads(out)
    assert code == 0 and row["staleness_pmf"] is None and "non-lattice" in row["staleness_pmf_refusal"]
    code, _, err = run_cli(["predict", "--n", "4", "--K", "2", "--quantile", "1.5"])
    assert code == 2 and "--quantile must be a level strictly between 0 and 1" in err
