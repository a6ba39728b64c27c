"""The optimal-time protocols (rennala, ringmaster, mindflayer) and worker subsets: their rules in the engines,
their theory, the wasted compute, and the bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from stalegrad.distributions import deterministic, shifted_exponential
from stalegrad.errors import SpecError
from stalegrad.sim import simulate
from stalegrad.sim.compiled import simulate_compiled
from stalegrad.sim.events import simulate_events
from stalegrad.spec import System
from stalegrad.theory import predict
from stalegrad.theory.optimal import collect_time, mean_collect_time, rennala_bound, ringmaster_regime
from stalegrad.trace import APPLIED, STALE

PAPER = shifted_exponential(alpha=1, rate=2 / 3)
#: fixed compute times with exact binary sums (update times are then exact multiples)
TAUS = [1.0, 1.5, 2.5, 4.0, 32.0]


# ------------------------------------------------------------------------------------------- the system's options


def test_fastest_workers_are_chosen_by_mean_with_ties_by_index():
    means = [3.0, 1.0, 2.0, 1.0, 5.0]
    s = System(n=5, K=2, compute=[deterministic(m) for m in means], workers="fastest:3")
    assert s.workers == (1, 2, 3) and s.active == (1, 2, 3)
    assert System(n=5, K=2, compute=[deterministic(m) for m in means], workers="fastest:1").workers == (1,)
    assert System(n=5, K=2, compute=PAPER, workers="4, 0").workers == (0, 4)
    assert System(n=5, K=2, compute=PAPER, workers=[0, 1, 2, 3, 4]).workers is None  # all of them: no subset
    assert System(n=5, K=2, compute=PAPER, workers="all").workers is None


def test_the_system_file_keeps_the_new_options():
    for s in (
        System(n=5, K=2, compute=PAPER, workers="fastest:2", protocol="rennala"),
        System(n=3, K=1, compute=PAPER, protocol="ringmaster", delay_threshold=3, workers="0,2"),
        System(n=3, K=2, tc=1, compute=PAPER, protocol="mindflayer", cutoffs=[2.0, 3.0, 4.0]),
    ):
        d = s.to_dict()
        assert System.from_dict(d).to_dict() == d
        assert s.replace(K=s.K).to_dict() == d


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": "fastest:9"}, r"workers must be 'all', 'fastest:M' .* got 'fastest:9'"),
        ({"workers": "0,0"}, r"workers must be .*distinct.* got \[0, 0\]"),
        ({"workers": "1,x"}, r"workers must be .* got '1,x'"),
        ({"workers": [7]}, r"workers must be .* got \[7\]"),
        ({"protocol": "ringmaster"}, r"delay_threshold must be an integer R >= 1 for ringmaster"),
        ({"protocol": "ringmaster", "K": 2, "delay_threshold": 2}, r"K must be 1 for ringmaster .*, got 2"),
        ({"protocol": "ringmaster", "delay_threshold": 0}, r"delay_threshold must be an integer >= 1, got 0"),
        ({"delay_threshold": 2}, r"delay_threshold must be None for k-batch-async"),
        ({"protocol": "mindflayer"}, r"cutoffs must be seconds > 0 for mindflayer"),
        ({"protocol": "mindflayer", "cutoffs": -1.0}, r"cutoffs must be a finite number of seconds > 0"),
        ({"protocol": "mindflayer", "cutoffs": [1.0, 2.0]}, r"cutoffs must be .* n = 4 of them"),
        ({"protocol": "mindflayer", "cutoffs": 0.5}, r"cutoffs must be times that some active worker can finish"),
        ({"cutoffs": 2.0}, r"cutoffs must be None for k-batch-async"),
        ({"protocol": "k-sync", "K": 3, "workers": "0,1"}, r"K must be at most the number of active workers = 2"),
        ({"protocol": "sync", "K": 4, "workers": "0,1"}, r"K must be the number of active workers = 2"),
    ],
)
def test_bad_options_are_one_line(options, message):
    kwargs = {"n": 4, "K": 1, "compute": PAPER, **options}
    with pytest.raises(SpecError, match=message):
        System(**kwargs)


# ------------------------------------------------------------------------------------------------ idle workers


@pytest.mark.parametrize("engine", ["events", "compiled"])
def test_idle_workers_compute_nothing_and_the_others_draw_their_own_numbers(engine):
    full = System(n=5, K=2, tc=0.5, compute=PAPER)
    part = full.replace(workers="1,3")
    a, b = simulate(full, 3000, seed=4), simulate(part, 1000, seed=4, engine=engine)
    assert set(np.unique(b["worker"]).tolist()) == {1, 3}
    for w in (1, 3):  # k-batch-async never cancels: a worker's rows are its compute stream, in order
        mine_a, mine_b = a["worker"] == w, b["worker"] == w
        xa, xb = (t["sent"][m] - t["start"][m] for t, m in ((a, mine_a), (b, mine_b)))
        assert xb.size > 100 and np.allclose(xb, xa[: xb.size], rtol=1e-12, atol=1e-9)


def test_auto_picks_the_compiled_engine_for_subsets_and_the_new_protocols():
    base = System(n=4, K=2, tc=1, compute=PAPER)
    assert simulate(base, 50, seed=0).meta["engine"] == "fast"
    for system in (
        base.replace(workers="fastest:3"),
        base.replace(protocol="rennala"),
        base.replace(protocol="ringmaster", K=1, delay_threshold=2),
        base.replace(protocol="mindflayer", cutoffs=2.0),
    ):
        trace = simulate(system, 50, seed=0)
        assert trace.meta["engine"] == "compiled", system
        assert trace.equals(simulate(system, 50, seed=0, engine="events"))


@pytest.mark.parametrize("protocol", ["rennala", "ringmaster", "mindflayer", "k-async", "k-sync"])
def test_long_runs_with_subsets_and_random_delays_agree_in_both_engines(protocol):
    opts = {
        "ringmaster": {"K": 1, "delay_threshold": 3},
        "mindflayer": {"K": 3, "cutoffs": [2.0, 2.5, 3.0, 9.0, 2.0, 4.0]},
    }
    d = scipy.stats.expon(scale=0.4)
    system = System(n=6, compute=PAPER, uplink=d, downlink=0.3, protocol=protocol, workers="0,2,3,5",
                    **opts.get(protocol, {"K": 3}))  # fmt: skip
    reference, compiled = simulate_events(system, 3000, seed=9), simulate_compiled(system, 3000, seed=9)
    assert compiled.equals(reference)
    keys = ("events", "compute_time", "cancelled_time", "dropped_time", "wasted_compute")
    assert {k: compiled.meta[k] for k in keys} == {k: reference.meta[k] for k in keys}


# ------------------------------------------------------------------------------------------------------ rennala


def test_rennala_is_k_batch_sync_under_another_name():
    s = System(n=5, K=3, tc=0.5, compute=PAPER, protocol="rennala", workers="fastest:4")
    a, b = simulate(s, 500, seed=2), simulate(s.replace(protocol="k-batch-sync"), 500, seed=2)
    assert all(np.array_equal(a[c], b[c]) for c in ("worker", "round", "start", "arrive", "update", "dropped"))


@pytest.mark.parametrize("S", [1, 2, 3, 7, 20, 41])
@pytest.mark.parametrize("tc", [0.0, 0.5])
def test_rennala_on_fixed_times_updates_every_collect_time_exactly(S, tc):
    system = System(n=5, K=S, tc=tc, compute=[deterministic(t) for t in TAUS], protocol="rennala")
    trace = simulate(system, 300, seed=1)
    period = collect_time(TAUS, S) + tc
    gaps = np.diff(trace.update_times)
    assert np.all(gaps == period), (S, set(gaps.tolist()), period)
    assert predict(system).update_rate_exact == 1.0 / period
    bound, m = rennala_bound(TAUS, S)  # Tyurin & Richtarik's time per update bounds the exact one
    assert collect_time(TAUS, S) <= bound and S / sum(1 / t for t in TAUS) <= collect_time(TAUS, S)
    assert 1 <= m <= 5


def test_collect_time_and_the_bound_by_hand():
    # taus 1, 2, 4: finishes at 1, 2, 2, 3, 4, 4, 4 (sorted): the 4th at 3... and the 5th, 6th, 7th at 4
    assert [collect_time([1.0, 2.0, 4.0], S) for S in range(1, 8)] == [1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    # m = 1: (S + 1) / 1; m = 2: (S + 2) / 1.5; m = 3: (S + 3) / 1.75
    assert rennala_bound([4.0, 1.0, 2.0], 10) == pytest.approx((min(11.0, 12 / 1.5, 13 / 1.75), 3))


@pytest.mark.parametrize(
    "model", [scipy.stats.gamma(a=2, scale=0.5), PAPER, scipy.stats.lognorm(s=0.8), scipy.stats.expon(scale=1.5)]
)
def test_rennala_and_mindflayer_rates_on_random_times_match_the_engine(model):
    # update periods are i.i.d. (every worker restarts at each update): a 4-standard-error test on their mean
    for k, (protocol, extra) in enumerate((("rennala", {}), ("mindflayer", {"cutoffs": 1.6}))):
        system = System(n=6, K=4, tc=0.5, compute=model, protocol=protocol, **extra)
        trace = simulate(system, 20000, seed=100 + k)
        gaps = np.diff(trace.update_times)
        predicted = 1.0 / predict(system).update_rate_exact
        assert abs(gaps.mean() - predicted) < 4 * gaps.std() / np.sqrt(gaps.size), (protocol, gaps.mean(), predicted)


def test_the_mean_collect_time_of_exponential_workers_is_s_over_the_total_rate():
    workers = [scipy.stats.expon(scale=1.0)] * 3 + [scipy.stats.expon(scale=4.0)] * 2
    assert mean_collect_time(workers, 5) == pytest.approx(5 / 3.5, rel=1e-9)


# ------------------------------------------------------------------------------------------------- mindflayer


def test_mindflayer_abandons_rounds_at_the_cutoff_and_counts_them_wasted():
    compute = [scipy.stats.uniform(loc=0.5, scale=2.0)] * 3 + [deterministic(3.0)]
    cutoffs = [1.5, 2.0, 9.0, 2.5]  # worker 3 never finishes within its cutoff
    system = System(n=4, K=2, tc=0.2, compute=compute, protocol="mindflayer", cutoffs=cutoffs)
    trace = simulate(system, 3000, seed=3)
    assert 3 not in set(trace["worker"].tolist())
    x = trace["sent"] - trace["start"]
    for w in range(3):
        assert x[trace["worker"] == w].max() <= cutoffs[w]
    assert trace.meta["cancelled_time"] > 0 and 0 < trace.meta["wasted_compute"] < 1
    # with cutoffs no round can reach it is rennala
    loose = system.replace(compute=[*compute[:3], deterministic(1.0)], cutoffs=[9.0] * 4)
    a, b = simulate(loose, 500, seed=3), simulate(loose.replace(protocol="rennala", cutoffs=None), 500, seed=3)
    assert all(np.array_equal(a[c], b[c]) for c in ("worker", "round", "start", "arrive", "update"))


def test_mindflayer_on_fixed_times_is_rennala_on_the_workers_within_their_cutoff():
    system = System(n=5, K=4, compute=[deterministic(t) for t in TAUS], protocol="mindflayer", cutoffs=[1, 1, 3, 3, 3])
    trace = simulate(system, 300, seed=1)
    within = [1.0, 2.5]  # 1.5 > 1 and 4.0, 32.0 > 3
    assert np.all(np.diff(trace.update_times) == collect_time(within, 4))
    assert predict(system).update_rate_exact == 1.0 / collect_time(within, 4)


# ------------------------------------------------------------------------------------------------- ringmaster


@pytest.mark.parametrize("tc", [0.0, 1.0])
def test_ringmaster_applies_no_gradient_of_delay_r_or_more(tc):
    R = 3
    system = System(n=8, K=1, tc=tc, compute=PAPER, protocol="ringmaster", delay_threshold=R)
    trace = simulate(system, 5000, seed=6)
    applied = trace["dropped"] == APPLIED
    assert trace["staleness"][applied].max() <= R - 1
    assert np.all(trace["staleness"][~applied] >= R) and np.all(trace["dropped"][~applied] == STALE)
    assert trace.meta["cancelled_time"] > 0  # rounds were stopped
    if tc == 0:  # stops are instant: no round that reached delay R ever arrives
        assert applied.all()


def test_ringmaster_stops_rounds_where_a_staleness_bound_only_drops_them():
    common = {"n": 8, "K": 1, "compute": PAPER}
    ring = simulate(System(**common, protocol="ringmaster", delay_threshold=3), 5000, seed=7)
    bound = simulate(System(**common, protocol="k-async", staleness_bound=2), 5000, seed=7)
    assert ring.meta["dropped_time"] == 0 and ring.meta["cancelled_time"] > 0
    assert bound.meta["dropped_time"] > 0 and bound.meta["cancelled_time"] == 0
    rate = [t.updates / t.update_times[-1] for t in (ring, bound)]
    assert rate[0] > rate[1]  # a stopped round restarts at once instead of finishing for nothing


def test_ringmaster_in_its_no_stop_regime_has_the_asgd_rate_and_staleness():
    taus = [1.0, 1.25, 1.5, 2.0]
    R = 8
    assert ringmaster_regime(taus, R) and not ringmaster_regime(taus, 4)
    system = System(n=4, K=1, compute=[deterministic(t) for t in taus], protocol="ringmaster", delay_threshold=R)
    trace = simulate(system, 20000, seed=1)
    assert trace.meta["wasted_compute"] == 0 and (trace["dropped"] == APPLIED).all()
    p = predict(system)
    assert p.update_rate_exact == sum(1 / t for t in taus)
    assert trace.updates / trace.update_times[-1] == pytest.approx(p.update_rate_exact, rel=1e-3)
    assert p.staleness_exact == pytest.approx(3.0)  # M - 1
    assert trace["staleness"][2000:].mean() == pytest.approx(3.0, abs=0.01)


# ---------------------------------------------------------------------------------------------- wasted compute


def test_wasted_compute_counts_dropped_gradients_and_cancelled_rounds():
    system = System(n=6, K=2, tc=1.0, compute=PAPER, staleness_bound=1)
    trace = simulate(system, 2000, seed=5)
    dropped = trace["dropped"] != APPLIED
    x = (trace["sent"] - trace["start"])[dropped]
    assert trace.meta["dropped_time"] == np.add.accumulate(x)[-1]
    m = trace.meta
    assert m["wasted_compute"] == (m["cancelled_time"] + m["dropped_time"]) / (m["compute_time"] + m["cancelled_time"])
    assert simulate(system.replace(staleness_bound=None), 200, seed=5).meta.get("wasted_compute", 0.0) == 0.0


# ------------------------------------------------------------------------------------------------ command line

HETERO = ["--n", "6", "--K", "2", "--compute", "3*expon(scale=1)", "--compute", "3*expon(scale=8)"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", *HETERO, "--workers", "fastest:7"], "workers must be"),
        (["simulate", *HETERO, "--workers", "0,9"], "workers must be"),
        (["simulate", *HETERO, "--protocol", "ringmaster", "--K", "1"], "delay_threshold must be"),
        (["simulate", *HETERO, "--protocol", "ringmaster", "--delay-threshold", "2"], "K must be 1 for ringmaster"),
        (["simulate", *HETERO, "--delay-threshold", "2"], "--delay-threshold must be given with --protocol ringmaster"),
        (["simulate", *HETERO, "--protocol", "mindflayer"], "cutoffs must be"),
        (["simulate", *HETERO, "--protocol", "mindflayer", "--cutoff", "1,2"], "cutoffs must be"),
        (["simulate", *HETERO, "--protocol", "mindflayer", "--cutoff", "x"], "cutoffs must be"),
        (["simulate", *HETERO, "--cutoff", "2"], "--cutoff must be given with --protocol mindflayer"),
        (["compare", *HETERO, "--cutoff", "2"], "--cutoff must be given with --protocol mindflayer"),
        (["compare", *HETERO, "--protocol", "rennala,ringmaster"], "delay_threshold must be"),
        (["compare", *HETERO, "--protocol", "rennala,nope"], "--protocol must be one of"),
    ],
)
def test_bad_protocol_options_are_one_error_line(argv, message, cli_here):
    code, out, err = cli_here([*argv, "--updates", "100"])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error: ") and message in err, err


def test_simulate_and_compare_rows_carry_the_new_keys(run_cli):
    import json

    code, out, err = run_cli(["simulate", *HETERO, "--protocol", "rennala", "--workers", "fastest:3",
                              "--updates", "2000", "--seed", "1", "--json"])  # fmt: skip
    assert code == 0, err
    row = json.loads(out)
    assert row["protocol"] == "rennala" and row["active_workers"] == [0, 1, 2] and row["system"]["active_workers"]
    assert row["update_rate_exact"] == pytest.approx(1.5, rel=1e-9)  # 2 / (3 * 1 / 1) : exponential, K/(sum rates)
    assert 0 < row["wasted_compute"] < 1 and row["staleness_mean"] == 0
    code, out, err = run_cli(["compare", *HETERO, "--protocol", "k-batch-async,rennala,ringmaster,mindflayer",
                              "--delay-threshold", "3", "--cutoff", "2.5", "--workers", "fastest:4",
                              "--updates", "2000", "--seed", "1", "--json"])  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [r["protocol"] for r in rows] == ["k-batch-async", "rennala", "ringmaster", "mindflayer"]
    assert [r["K"] for r in rows] == [2, 2, 1, 2] and [r["delay_threshold"] for r in rows] == [None, None, 3, None]
    assert all(r["active_workers"] == [0, 1, 2, 3] and r["wasted_compute"] is not None for r in rows)
    assert rows[3]["system"]["cutoffs"] == [2.5] * 6


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_trace_files_keep_the_new_protocols_subsets_and_wasted_compute(suffix, tmp_path):
    from stalegrad.trace_io import read_trace, write_trace

    for system in (
        System(n=6, K=1, tc=1, compute=PAPER, protocol="ringmaster", delay_threshold=2, workers="0,2,4"),
        System(n=6, K=2, tc=1, compute=PAPER, protocol="mindflayer", cutoffs=2.5, workers="fastest:3"),
        System(n=6, K=2, tc=1, compute=PAPER, protocol="rennala", workers="1,5"),
    ):
        trace = simulate(system, 1500, seed=3)
        back = read_trace(write_trace(trace, tmp_path / f"t{suffix}"))
        assert back.equals(trace) and back.system.to_dict() == system.to_dict()
        assert back.meta["wasted_compute"] == trace.meta["wasted_compute"] > 0
