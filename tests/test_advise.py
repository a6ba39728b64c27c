"""``stalegrad advise``: the fixed-time theory's worker count, a problem's noise scale, the search's common random
numbers and rules, the command line's answer and its bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from stalegrad import System
from stalegrad.advise import Candidate, advise, noise_scale, step_grid, theory_workers
from stalegrad.advise.candidates import evaluate
from stalegrad.errors import SpecError
from stalegrad.experiments.vocabulary import SHARED_KEYS
from stalegrad.train import LinearRegression, LogisticRegression

# ----------------------------------------------------------------------------------------- theory


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.01, 100.0), min_size=1, max_size=12),
    st.floats(0.0, 1e4),
)
def test_theory_workers_minimises_the_time_over_every_prefix(means, S):
    """m* is the m whose t(m) = (m + S) / sum_{i<=m} 1/mu_(i) is least, over the workers sorted by mean (checked
    against a direct loop over the sorted means)."""
    choice = theory_workers(means, S)
    mu = sorted(means)
    direct = [(m + S) / sum(1 / x for x in mu[:m]) for m in range(1, len(mu) + 1)]
    assert np.allclose(choice.times, direct, rtol=1e-12)
    assert direct[choice.m - 1] <= min(direct) * (1 + 1e-9)
    assert sorted(choice.order) == list(range(len(means)))
    assert [means[i] for i in choice.order] == mu


def test_theory_workers_drops_slow_workers_only_when_the_noise_is_small():
    means = [1.0] * 4 + [50.0] * 4
    assert theory_workers(means, 0.0).m == 1  # no noise: one fast worker, no synchronisation
    assert theory_workers(means, 10.0).m == 4  # the slow ones add 1 each to the numerator, little to the rate
    assert theory_workers(means, 1e6).m == 8  # pure noise: every gradient counts


@pytest.mark.parametrize(
    ("means", "S", "match"),
    [([], 1.0, "means"), ([1.0, -1.0], 1.0, "means"), ([1.0], -1.0, "noise_ratio"), ([1.0], math.nan, "noise_ratio")],
)
def test_theory_workers_rejects_bad_input(means, S, match):
    with pytest.raises(SpecError, match=match):
        theory_workers(means, S)


def test_noise_scale_of_linear_regression_matches_sampled_gradients():
    """sigma^2 is the variance of one sample's gradient at w*: the mean squared norm of 40000 one-sample gradients
    (the full gradient at w* is zero) agrees within 4 standard errors; L is the Hessian's largest eigenvalue."""
    p = LinearRegression()
    scale = noise_scale(p)
    rng = np.random.default_rng(3)
    sq = np.array([np.sum(p.gradient(p.w_opt, 1, rng) ** 2) for _ in range(40_000)])
    assert abs(sq.mean() - scale.sigma2) < 4 * sq.std() / math.sqrt(sq.size)
    assert math.isclose(scale.L, np.linalg.eigvalsh(p.X.T @ p.X / p.samples)[-1], rel_tol=1e-12)
    assert math.isclose(scale.noise_ratio(0.1, 4), scale.sigma2 / 4 / (2 * scale.L * 0.1))
    assert step_grid(p, 3) == pytest.approx((2 / scale.L, 1 / scale.L, 0.5 / scale.L))


def test_noise_scale_of_logistic_regression_uses_its_curvature():
    """The logistic Hessian at w*: the L from the scale equals the largest eigenvalue of a finite-difference
    Hessian of the full gradient."""
    p = LogisticRegression()
    scale = noise_scale(p)
    h = 1e-5
    H = np.array([(p.full_gradient(p.w_opt + h * e) - p.full_gradient(p.w_opt - h * e)) / (2 * h)
                  for e in np.eye(p.dim)])  # fmt: skip
    assert math.isclose(scale.L, np.linalg.eigvalsh((H + H.T) / 2)[-1], rel_tol=1e-5)
    assert noise_scale(object()) is None


# ----------------------------------------------------------------------------------------- search

CLUSTER = System(n=4, K=1, compute=[scipy.stats.expon(scale=m) for m in (1.0, 1.0, 30.0, 30.0)])


def test_a_candidates_replays_do_not_depend_on_the_others():
    """Common random numbers: a candidate scored alone gives the times it gets beside others."""
    p = LinearRegression()
    a = Candidate((0, 1), 1, 1, 0.1)
    b = Candidate((0, 1, 2, 3), 2, 1, 0.2)
    kw = {"replications": range(3), "horizon": 40.0, "target": 0.05, "root": 11}
    alone = evaluate(CLUSTER, p, [a], **kw)[a]
    together = evaluate(CLUSTER, p, [b, a], **kw)[a]
    assert alone.times == together.times and alone.errors == together.errors


def test_advise_ranks_by_time_to_target_and_is_reproducible():
    p = LinearRegression()
    kw = {"Ks": (1, 2), "steps": (0.2, 0.1, 0.05), "seeds": 3, "seed": 5}
    first = advise(CLUSTER, p, 0.05 * p.error(p.init()), **kw)
    again = advise(CLUSTER, p, 0.05 * p.error(p.init()), **kw)
    rows = first.rows()
    assert [r["time_to_target"] for r in rows] == [r["time_to_target"] for r in again.rows()]
    checked = [r for r in rows if r["validated"]]
    assert rows[: len(checked)] == checked and 2 <= len(checked) <= 5  # the finalists and the naive choice first
    ratios = [r["log_ratio_naive"] for r in checked[1:]]
    assert ratios == sorted(ratios)  # after the recommendation, by the paired log ratio
    times = [math.inf if r["time_to_target"] is None else r["time_to_target"] for r in rows[len(checked) :]]
    assert times == sorted(times)  # the halving's other survivors, by their median
    for r in rows:
        assert set(SHARED_KEYS) <= set(r) and r["seeds"] == (18 if r["validated"] else 3)
        lo, hi = r["time_to_target_ci95"]
        if r["time_to_target"] is not None:  # an upper end None: a replication did not reach the target
            assert lo <= r["time_to_target"] and (hi is None or r["time_to_target"] <= hi)
    d = first.to_dict("linreg")
    assert d["recommended"]["workers"] == rows[0]["workers"] and d["recommended"]["K"] == rows[0]["K"]
    assert d["theory_workers"] in range(1, 5) and d["noise_ratio"] > 0
    assert d["naive"]["n"] == 4 and d["naive"]["K"] == 1
    # the naive choice is validated with the finalists; the recommendation beats it convincingly, or is it
    assert d["naive"]["validated"] and d["naive"]["log_ratio_naive"] == 0.0
    assert d["naive_recommended"] or d["recommended"]["log_ratio_naive_ci95"][1] < 0
    assert "stalegrad train --n" in d["recommended"]["commands"]["train"]


def test_rennala_is_a_candidate_with_its_wasted_compute():
    """With --protocols k-batch-async,rennala each configuration is tried under both; rennala's rows count the
    compute its cancellations waste (the trace's own accounting), k-batch-async's none; a rennala recommendation
    has a run command line with the protocol (the runtime makes every protocol)."""
    p = LinearRegression()
    advice = advise(CLUSTER, p, 0.05 * p.error(p.init()), Ks=(2,), steps=(0.05,), seeds=2, seed=5,
                    protocols=("k-batch-async", "rennala"), workers=(2, 4))  # fmt: skip
    rows = advice.rows()
    assert advice.result.screened == 2 * 2  # sizes x protocols
    by = {(r["protocol"], r["n"]): r for r in rows}
    assert by[("rennala", 4)]["wasted_compute"] > 0.1  # the slow pair's rounds are mostly cancelled
    assert all(r["wasted_compute"] == 0.0 for r in rows if r["protocol"] == "k-batch-async")
    d = advice.to_dict("linreg")
    commands = d["recommended"]["commands"]
    assert commands["run"] is not None
    assert int(_run_options(commands["run"])["n"]) == len(d["recommended"]["workers"])
    if d["recommended"]["protocol"] == "rennala":
        assert "--protocol rennala" in commands["train"]
        assert _run_options(commands["run"])["protocol"] == "rennala"


def _run_options(line):
    """The options ``stalegrad run`` parses from a command line (click's parser: no Ray is started)."""
    import shlex

    from stalegrad.cli.run import run_command

    args = shlex.split(line)
    assert args[:2] == ["stalegrad", "run"]
    return run_command.make_context("run", args[2:]).params


def test_the_policies_are_candidates_too():
    """With several policies, each configuration is tried with each; the row names its policy and the train
    command line carries it when it is not the default."""
    p = LinearRegression()
    advice = advise(CLUSTER, p, 0.05 * p.error(p.init()), Ks=(1,), steps=(0.1, 0.05), seeds=2, seed=5,
                    policies=("constant", "delay-adaptive"), workers=(2, 4))  # fmt: skip
    assert advice.result.screened == 2 * 1 * 2 * 2  # sizes x K x steps x policies
    rows = advice.rows()
    assert {r["policy"] for r in rows} <= {"constant", "delay-adaptive"}
    rec = advice.to_dict("linreg")["recommended"]
    assert ("--policy delay-adaptive" in rec["commands"]["train"]) == (rec["policy"] == "delay-adaptive")


def test_the_slow_workers_are_dropped_when_they_only_add_staleness():
    """Two fast workers and six 30x slower ones, little noise: the advisor uses the two fast ones, because on the
    fresh replications they beat every worker at K = 1 with its best step convincingly."""
    p = LinearRegression(noise=0.05)
    cluster = System(n=8, K=1, compute=[scipy.stats.expon(scale=1.0)] * 2 + [scipy.stats.expon(scale=30.0)] * 6)
    advice = advise(cluster, p, 0.01 * p.error(p.init()), Ks=(1, 2), seeds=4, seed=2)
    d = advice.to_dict("linreg")
    assert len(d["recommended"]["workers"]) < 8 and set(d["recommended"]["workers"]) <= {0, 1}
    assert not d["naive_recommended"] and d["recommended"]["log_ratio_naive_ci95"][1] < 0
    assert d["gain_over_naive"] > 1.0


# ----------------------------------------------------------------------------------------- command line

HET = ["--n", "4", "--compute", "2*expon(scale=1)", "--compute", "2*expon(scale=30)"]


def test_cli_advise_json_has_the_recommendation_and_the_shared_keys(run_cli, tmp_path):
    args = ["--K", "1,2", "--steps", "0.1,0.05", "--target", "0.5", "--seeds", "2", "--seed", "1"]
    code, out, err = run_cli(
        ["advise", *HET, "--problem", "linreg", *args, "--plot", str(tmp_path / "a.png"), "--json"]
    )
    assert code == 0, err
    obj = json.loads(out)
    assert {"recommended", "theory_workers", "naive", "rows", "configurations_screened", "replays"} <= set(obj)
    assert {"protocol", "workers", "K", "b", "step", "policy", "time_to_target"} <= set(obj["recommended"])
    for row in obj["rows"]:
        assert set(SHARED_KEYS) <= set(row)
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_advise_text_names_the_recommended_workers(run_cli):
    args = ["advise", *HET, "--problem", "linreg", "--K", "1,2", "--steps", "0.1,0.05", "--target", "0.5",
            "--seeds", "2", "--seed", "1"]  # fmt: skip
    code, out, err = run_cli([*args, "--json"])
    assert code == 0, err
    workers = json.loads(out)["recommended"]["workers"]
    code, out, err = run_cli(args)
    assert code == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("recommended:")]
    if len(workers) == 4:
        assert "on all 4 workers," in line and "fastest" not in line
    else:
        assert f"on the {len(workers)} fastest workers {workers}," in line


def test_cli_advise_theory_only(run_cli):
    code, out, err = run_cli(["advise", *HET, "--noise-ratio", "2", "--json"])
    assert code == 0, err
    obj = json.loads(out)
    assert obj["theory_workers"] == theory_workers([1, 1, 30, 30], 2.0).m == 2
    assert obj["theory_worker_order"] == [0, 1]
    code, out, _ = run_cli(["advise", *HET, "--noise-ratio", "2"])
    assert code == 0 and "<- m*" in out


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ([*HET], "--problem or --noise-ratio"),
        ([*HET, "--problem", "linreg", "--target", "-1"], "--target"),
        ([*HET, "--problem", "linreg", "--target", "nan"], "--target"),
        ([*HET, "--noise-ratio", "-2"], "--noise-ratio"),
        ([*HET, "--problem", "linreg", "--workers", "0,9"], "--workers"),
        ([*HET, "--problem", "linreg", "--steps", "0,1"], "--steps"),
        ([*HET, "--problem", "linreg", "--K", "0"], "--K"),
        ([*HET, "--problem", "linreg", "--policy", "constant,fast"], "--policy"),
        ([*HET, "--problem", "linreg", "--protocols", "ringmaster,sync"], "--protocols"),
        ([*HET, "--problem", "linreg", "--plot", "a.jpg"], "--plot"),
        (["--compute", "expon(scale=1)", "--problem", "linreg"], "--n"),
        ([*HET, "--problem", "linreg", "--protocol", "k-sync"], "--protocol"),
        (
            [*HET, "--problem", "linreg", "--target", "1e-12", "--max-updates", "100", "--steps", "0.1", "--seed", "1"],
            "not reached",
        ),
    ],
)
def test_cli_advise_rejects_bad_input_with_one_line(run_cli, args, match):
    code, _, err = run_cli(["advise", *args])
    assert code == 2 and err.startswith("Error:") and match in err and err.count("\n") == 1, err


# ----------------------------------------------------------------------------------------- validation


def _fake_evaluate(faster: dict):
    """An ``evaluate`` whose time to target is drawn, not replayed: ``base * common_r * own``, with ``common_r``
    shared by every candidate on replication ``r`` (common random numbers) and ``own`` each candidate's luck
    (lognormal, sigma 0.3); ``base`` is 100 for the naive configuration (every worker, K = 1), else 110 or
    ``faster[(m, K)]``."""
    import zlib

    from stalegrad.advise.candidates import Scored

    def draw(c, r):
        common = np.random.default_rng([r, 7]).lognormal(0.0, 0.2)
        own = np.random.default_rng([zlib.crc32(repr((c.config, c.step, c.policy)).encode()), r]).lognormal(0.0, 0.3)
        base = 100.0 if (len(c.workers), c.K) == (4, 1) else faster.get((len(c.workers), c.K), 110.0)
        return base * common * own

    def evaluate(cluster, problem, candidates, *, replications, horizon, target, root, scored=None, batch_laws=None):
        scored = {} if scored is None else scored
        for c in candidates:
            s = scored.setdefault(c, Scored(c))
            for r in replications:
                if len(s.times) <= r - replications.start:  # a fresh dict may start at a later replication
                    s.times.append(draw(c, r))
                    for name, value in (("errors", target), ("staleness", 1.0), ("staleness_p95", 1.0),
                                        ("rates", 1.0), ("diverged", False), ("wasted", 0.0)):  # fmt: skip
                        getattr(s, name).append(value)
        return scored

    return evaluate, draw


@pytest.mark.parametrize("faster", [{}, {(2, 2): 60.0}])
def test_validation_undoes_the_winners_curse(monkeypatch, faster):
    """A constructed search (times drawn, not replayed): every configuration is 10% slower than the naive choice,
    so the halving's winner among dozens is only lucky -- ahead of the naive choice on the halving's replications
    -- and on the fresh replications the naive choice is recommended, its prediction their median. With one
    configuration truly 40% faster, that one is recommended."""
    import importlib

    search_module = importlib.import_module("stalegrad.advise.search")  # the package exports a function search
    evaluate_, draw = _fake_evaluate(faster)
    monkeypatch.setattr(search_module, "evaluate", evaluate_)
    p = LinearRegression()
    advice = advise(CLUSTER, p, 0.05 * p.error(p.init()), steps=(0.2, 0.1, 0.05), seeds=8, seed=3)
    result = advice.result
    assert result.validation == range(8, 56)  # replications the halving never used
    rec = advice.recommended
    assert rec.times == [draw(rec.candidate, r) for r in result.validation]  # the prediction: fresh replications
    if not faster:
        lucky, naive_halving = (
            result.halving[0],
            next(s for s in result.halving if s.candidate == result.naive.candidate),
        )
        assert (len(lucky.candidate.workers), lucky.candidate.K) != (4, 1)
        assert lucky.time_to_target < naive_halving.time_to_target  # the halving's winner was ahead...
        assert advice.to_dict("linreg")["naive_recommended"]  # ...and is not on fresh replications
        assert result.paired[lucky.candidate].mean > 0
    else:
        assert (len(rec.candidate.workers), rec.candidate.K) == (2, 2)
        assert result.paired[rec.candidate].convincing


def test_the_prediction_comes_from_replications_the_halving_did_not_see():
    """Replayed for real: the recommendation's times are its replays on replications seeds..seeds+validation-1
    (scored alone), not on the halving's 0..seeds-1; the naive choice's are on the same fresh replications."""
    p = LinearRegression()
    target = 0.05 * p.error(p.init())
    advice = advise(CLUSTER, p, target, Ks=(1, 2), steps=(0.2, 0.1, 0.05), seeds=3, validation=5, seed=5)
    result = advice.result
    assert result.validation == range(3, 8)
    rec = advice.recommended.candidate
    kw = {"horizon": result.horizon, "target": target, "root": result.root}
    both = list(dict.fromkeys([rec, result.naive.candidate]))
    fresh = evaluate(CLUSTER, p, both, replications=result.validation, **kw)
    assert advice.recommended.times == fresh[rec].times and result.naive.times == fresh[result.naive.candidate].times
    seen = evaluate(CLUSTER, p, [rec], replications=range(3), **kw)[rec].times
    assert seen != advice.recommended.times[:3]


def test_the_naive_choice_wins_unless_beaten_convincingly():
    """The rule on its own: a finalist faster on average but not on every replication (interval across 0) loses
    to the naive choice; a finalist faster on each replication wins; a time not reached counts as the horizon."""
    from stalegrad.advise.validation import choose, paired_log_ratio

    naive = [10.0, 10.0, 10.0, 10.0]
    order, paired = choose({"naive": naive, "noisy": [5.0, 14.0, 6.0, 12.0], "steady": [9.0, 9.5, 9.2, 9.4]},
                           "naive", 100.0)  # fmt: skip
    assert order == ["steady", "noisy", "naive"] and paired["steady"].convincing
    order, _ = choose({"naive": naive, "noisy": [5.0, 14.0, 6.0, 12.0]}, "naive", 100.0)
    assert order == ["naive", "noisy"] and paired["noisy"].mean < 0 and not paired["noisy"].convincing
    censored = paired_log_ratio([math.inf, 8.0], [15.0, math.inf], horizon=20.0)
    assert censored.mean == pytest.approx((math.log(20 / 15) + math.log(8 / 20)) / 2)


@pytest.mark.parametrize(("kwargs", "match"), [({"validation": 1}, "validation"), ({"finalists": 0}, "finalists")])
def test_validation_options_are_checked(kwargs, match):
    p = LinearRegression()
    with pytest.raises(SpecError, match=match):
        advise(CLUSTER, p, 0.05, **kwargs)
