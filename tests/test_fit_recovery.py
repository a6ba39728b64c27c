"""Known systems in, the same systems out: synthetic logs of three classes of workers (gamma, lognormal and Weibull
compute times, each with a shift), fitted back.

Measured over 100 seeds (``pytest -m slow -s tests/test_fit_recovery.py`` prints them), level 0.01, 4 workers a
class: at 1000 rounds the class's family is the true one in 99-100% of class fits; class means and p95s are
within 5% in every fit of a correctly grouped class, and the mean staleness within 0.3%. At 200 rounds about 4% of
the p95s miss by more than 5% (the largest miss about 10%).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import scipy.stats

from stalegrad.fit import Records, fit_cluster, read_records
from stalegrad.fit.choice import fit_sample
from stalegrad.fit.laws import Sample
from stalegrad.spec import System
from stalegrad.theory import staleness_exact

LAWS = {
    "gamma": scipy.stats.gamma(a=3.0, loc=1.0, scale=0.25),
    "lognorm": scipy.stats.lognorm(s=0.6, loc=0.5, scale=2.0),
    "weibull_min": scipy.stats.weibull_min(c=3.0, loc=1.0, scale=3.0),
}
FAMILIES = list(LAWS)
PER_CLASS = 4
K, UPLINK = 4, 0.5


def true_system():
    compute = [LAWS[FAMILIES[k % 3]] for k in range(3 * PER_CLASS)]
    return System(n=3 * PER_CLASS, K=K, uplink=UPLINK, downlink=UPLINK, compute=compute)


def logs(rounds, rng):
    """Worker w{k} has the law of class k % 3; every round's gradient takes UPLINK seconds to arrive."""
    workers = np.repeat([f"w{k}" for k in range(3 * PER_CLASS)], rounds)
    times = np.concatenate([LAWS[FAMILIES[k % 3]].rvs(size=rounds, random_state=rng) for k in range(3 * PER_CLASS)])
    return workers, times


def write_log(path, workers, times):
    """A CSV with start/end and sent/arrive columns, as a user's training loop would log it."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "step", "begin", "finish", "sent", "arrive"])
        clock: dict[str, float] = {}
        for step, (worker, x) in enumerate(zip(workers, times.tolist(), strict=True)):
            t0 = clock.get(worker, 0.0)
            w.writerow([worker, step, repr(t0), repr(t0 + x), repr(t0 + x), repr(t0 + x + UPLINK)])
            clock[worker] = t0 + x
    return path


def errors(fitted):
    """Per fitted class: its workers' true family, the chosen family, relative errors of mean and p95."""
    out = []
    for c in fitted.classes:
        truth = {FAMILIES[int(w[1:]) % 3] for w in c.workers}
        family = truth.pop() if len(truth) == 1 else None
        law = LAWS.get(family)
        mean_err = abs(c.fit.law.mean() / law.mean() - 1) if law else np.inf
        p95_err = abs(c.fit.law.quantile(0.95) / law.ppf(0.95) - 1) if law else np.inf
        out.append((family, c.fit.law.family, mean_err, p95_err))
    return out


def grouped_right(fitted):
    want = sorted([f"w{k}" for k in range(3 * PER_CLASS) if k % 3 == c] for c in range(3))
    return sorted(list(c.workers) for c in fitted.classes) == want


@pytest.mark.parametrize("rounds", [200, 1000])
def test_fitted_system_recovers_the_true_one(tmp_path, rounds):
    """From a CSV log: the classes are found, each class's mean and p95 within 5%, the uplink is the logged one,
    and the mean staleness the theory predicts for the fitted system within 2% of the true system's."""
    path = write_log(tmp_path / "log.csv", *logs(rounds, np.random.default_rng(rounds)))
    columns = {"worker": "rank", "round": "step", "start": "begin", "end": "finish"}
    fitted = fit_cluster(read_records([path], columns), gof_samples=0, K=K, seed=1)
    assert grouped_right(fitted)
    for _family, _chosen, mean_err, p95_err in errors(fitted):
        assert mean_err < 0.05 and p95_err < 0.05
    assert fitted.system.uplink == pytest.approx(UPLINK) and fitted.system.tc == pytest.approx(2 * UPLINK)
    assert abs(staleness_exact(fitted.system) / staleness_exact(true_system()) - 1) < 0.02
    assert not fitted.findings


@pytest.mark.slow
def test_aic_chooses_the_true_family_in_100_trials():
    """100 clusters at 1000 rounds (the cheap path: no goodness-of-fit bootstrap; grouping and fitting are the
    real code): for each family, the classes of its workers get it in at least 90% of the trials."""
    true_staleness = staleness_exact(true_system())
    hits = dict.fromkeys(FAMILIES, 0)
    seen = dict.fromkeys(FAMILIES, 0)
    grouped, within, classes, worst_staleness = 0, 0, 0, 0.0
    for trial in range(100):
        workers, times = logs(1000, np.random.default_rng(10_000 + trial))
        fitted = fit_cluster(Records.from_arrays(workers, times), gof_samples=0, K=K, seed=trial)
        grouped += grouped_right(fitted)
        for family, chosen, mean_err, p95_err in errors(fitted):
            assert family is not None, "a class mixes workers of two laws"
            seen[family] += 1
            hits[family] += chosen == family
            classes += 1
            within += mean_err < 0.05 and p95_err < 0.05
        s = fitted.system.replace(uplink=UPLINK, downlink=UPLINK)
        worst_staleness = max(worst_staleness, abs(staleness_exact(s) / true_staleness - 1))
    rates = {f: hits[f] / seen[f] for f in FAMILIES}
    print(
        f"\nfamily chosen: {rates}; grouped right {grouped}/100; mean and p95 within 5%: {within}/{classes}; "
        f"largest staleness error {worst_staleness:.4f}"
    )
    assert all(rate >= 0.9 for rate in rates.values())
    assert grouped >= 90  # level 0.01: each of ~3 tests on a true class cuts it with probability 0.01
    assert within >= 0.95 * classes
    assert worst_staleness < 0.02


def ksync(law, n, k, rounds, rng):
    """k-sync logs: each round all n workers start together; the first k finish and the rest are cut off at the
    k-th finishing time (right-censored)."""
    x = law.rvs(size=(rounds, n), random_state=rng)
    t = np.sort(x, axis=1)[:, k - 1 : k]
    cut = x > t
    return Sample.of(np.where(cut, t, x).T.ravel(), cut.T.ravel())


@pytest.mark.parametrize(
    ("family", "law"),
    [*LAWS.items(), ("shifted_expon", scipy.stats.expon(loc=1.0, scale=1.5))],
    ids=[*LAWS, "shifted_expon"],
)
def test_censored_fit_recovers_mean_and_p95_where_dropping_misses(family, law):
    """8 workers, K = 4, 500 rounds: half the records are cut off. Fitted with them as censored, the mean and
    the p95 are within 5% (measured over 5 seeds: within 3.5% for every family; 2.1% at 1000 rounds); fitted on
    the finished times alone, the p95 misses by more than 20% (measured 25-55%), and the mean by 17-38%."""
    sample = ksync(law, 8, 4, 500, np.random.default_rng(7))
    assert sample.n_censored == sample.n // 2
    fit = fit_sample(sample, gof_samples=0)
    assert fit.law.family == family
    assert abs(fit.law.mean() / law.mean() - 1) < 0.05
    assert abs(fit.law.quantile(0.95) / law.ppf(0.95) - 1) < 0.05
    dropped = fit_sample(Sample.of(sample.finished), gof_samples=0)
    assert dropped.law.quantile(0.95) / law.ppf(0.95) - 1 < -0.20
    assert dropped.law.mean() / law.mean() - 1 < -0.15


@pytest.mark.slow
def test_aic_on_single_workers_of_1000_rounds():
    """The strictest case, one worker's 1000 rounds (a class of one), 100 samples per family, printed (measured:
    gamma 0.93, lognorm 0.98, weibull_min 1.0, shifted_expon 0.94). Gamma lies between Weibull and lognormal and
    is the hardest to tell apart; the shifted exponential is nested in gamma and Weibull (shape 1), so AIC may
    prefer one of them when the extra parameter gains more than 1 in log-likelihood -- the same law, with a shape
    near 1. Thresholds for these two are looser than the measured rates by about 4 standard errors."""
    laws = {**LAWS, "shifted_expon": scipy.stats.expon(loc=1.0, scale=1.5)}
    rates = {}
    for family, law in laws.items():
        rng = np.random.default_rng(20_000)
        chosen = [fit_sample(Sample.of(law.rvs(size=1000, random_state=rng)), gof_samples=0).law for _ in range(100)]
        rates[family] = sum(c.family == family for c in chosen) / 100
        if family == "shifted_expon":  # what wins instead is the same law: a shape within 0.15 of 1
            for c in chosen:
                shape = c.model.kwds.get("a", c.model.kwds.get("c", 1.0))
                assert c.family in ("shifted_expon", "gamma", "weibull_min") and abs(shape - 1) < 0.15
    print(f"\nfamily chosen, one worker of 1000 rounds: {rates}")
    assert rates["lognorm"] >= 0.9 and rates["weibull_min"] >= 0.9
    assert rates["gamma"] >= 0.8 and rates["shifted_expon"] >= 0.8
