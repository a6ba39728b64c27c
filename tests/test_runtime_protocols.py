"""Every protocol in the real runtime: the master's decisions on plain values (no Ray), the command line's checks,
then real runs on one local Ray instance (2 CPUs, marked ``slow`` as every Ray test): each protocol completes with
a consistent Trace, and its measured staleness, update rate and wasted compute match the prediction.

Tolerances of the comparison with the prediction: 5% of the predicted value (the issue's), widened to 4 standard
errors of a run of the same length where sampling alone moves the measured value more than that -- the standard
error is measured, not guessed: the spread of the event engine over 8 seeds at the run's length. The run is also
compared, with the same tolerance, with the event engine on its own seed: the same compute times round by round,
so the sampling luck of the run's 250 updates is shared (measured: within 1% for most values, 4% at most).
A protocol error moves a value by far more: a gradient of a superseded version applied (staleness > 0 under a
synchronous protocol), a worker that never waits (k-async's staleness 1 becomes n/K), no round ever abandoned
(wasted compute 0).
"""

from __future__ import annotations

import numpy as np
import pytest

from stalegrad.distributions import shifted_exponential
from stalegrad.runtime.checkpoint import load_checkpoint
from stalegrad.runtime.protocol import RULES, MasterCore
from stalegrad.spec import System
from stalegrad.trace import APPLIED, LATE, STALE
from stalegrad.train import LinearRegression

PAPER = shifted_exponential(alpha=1, rate=0.6667)

#: One system per protocol (n = 4, Tc = 1, the paper's compute times), as the tests below run them.
CASES = {
    "k-batch-async": {"K": 2},
    "k-async": {"K": 2},
    "k-async-bounded": {"K": 1, "protocol": "k-async", "staleness_bound": 1},
    "sync": {"K": 4},
    "k-sync": {"K": 2},
    "k-batch-sync": {"K": 2},
    "rennala": {"K": 2, "workers": "fastest:3"},
    "ringmaster": {"K": 1, "delay_threshold": 2},
    "mindflayer": {"K": 2, "cutoffs": 2.0},
}


def system_of(case):
    kwargs = {"protocol": case, **CASES[case]}
    return System(n=4, tc=1, compute=PAPER, **kwargs)


# ------------------------------------------------------------------------------------------ the rules, no Ray


def test_the_runtime_reads_the_event_engines_rules():
    from stalegrad.sim.events import RULES as ENGINE
    from stalegrad.spec import PROTOCOLS

    assert RULES is ENGINE and set(RULES) == set(PROTOCOLS)


def grad(x):
    return np.array([float(x)])


def test_k_sync_drops_a_gradient_of_a_superseded_version_and_sends_to_every_worker():
    core = MasterCore(3, 2, np.zeros(1), 1.0, 10, protocol="k-sync")
    assert not core.receive(0, 1, 0, 1, 1, 0, grad(1)) and core.outbox == []
    assert core.receive(1, 1, 0, 2, 2, 0, grad(1))
    assert core.outbox == [0, 1, 2]  # every active worker: the third is cancelled when it reaches it
    core.outbox.clear()
    assert not core.receive(2, 1, 0, 3, 3, 0, grad(5))  # computed on w_0, the master is at w_1: late
    assert core.outbox == [] and core.w.tolist() == [-1.0]
    core.receive(0, 2, 2, 4, 4, 1, grad(0))
    core.receive(2, 2, 3, 5, 5, 1, grad(0))
    cols = core.columns()
    assert cols["dropped"].tolist() == [APPLIED, APPLIED, LATE, APPLIED, APPLIED]
    assert cols["update"].tolist() == [1, 1, -1, 2, 2]
    assert cols["staleness"].tolist() == [0, 0, 1, 0, 0]  # a dropped row: its staleness when it arrived
    assert core.applied == 4 and core.leftover() == 0


def test_k_async_sends_the_new_version_to_its_contributors_only():
    core = MasterCore(4, 2, np.zeros(1), 1.0, 10, protocol="k-async")
    core.receive(3, 1, 0, 1, 1, 0, grad(1))
    core.receive(1, 1, 0, 2, 2, 0, grad(1))
    assert core.outbox == [3, 1]


def test_a_bound_drops_stale_gradients_and_a_waiting_worker_gets_the_current_version():
    core = MasterCore(2, 1, np.zeros(1), 1.0, 10, protocol="k-async", staleness_bound=0)
    assert core.receive(0, 1, 0, 1, 1, 0, grad(1))
    core.outbox.clear()
    assert not core.receive(1, 1, 0, 2, 2, 0, grad(1))  # staleness 1 > 0
    assert core.outbox == [1]  # k-async: it waits for a version, so it is sent the current one
    assert core.columns()["dropped"].tolist() == [APPLIED] and core.leftover() == 1, "not before the next update"
    assert core.receive(0, 2, 1, 3, 3, 1, grad(1))
    cols = core.columns()
    assert cols["dropped"].tolist() == [APPLIED, STALE, APPLIED] and cols["staleness"].tolist() == [0, 1, 0]


def test_ringmaster_stops_every_round_whose_delay_reaches_R_once():
    core = MasterCore(3, 1, np.zeros(1), 1.0, 10, protocol="ringmaster", delay_threshold=2)
    core.began(2, 1, 0)  # worker 2 computes round 1 on w_0
    core.began(0, 1, 0)
    core.finished(0, 1)
    assert core.receive(0, 1, 0, 1, 1, 0, grad(1)) and core.outbox == [0]  # delay 1 < 2: no stop
    core.outbox.clear()
    core.began(0, 2, 1)
    core.finished(0, 2)
    assert core.receive(0, 2, 1, 2, 2, 1, grad(1)) and core.outbox == [0, 2]  # worker 2's round: delay 2, stopped
    core.outbox.clear()
    core.began(0, 3, 2)
    core.finished(0, 3)
    assert core.receive(0, 3, 2, 3, 3, 2, grad(1)) and core.outbox == [0], "a round is stopped once"
    core.outbox.clear()
    assert not core.receive(2, 1, 0, 4, 4, 0, grad(1))  # delay 3 >= R: dropped
    assert core.outbox == [2]


def test_an_idle_worker_is_sent_no_version():
    core = MasterCore(4, 1, np.zeros(1), 1.0, 10, protocol="rennala", active=[0, 2])
    core.receive(0, 1, 0, 1, 1, 0, grad(1))
    assert core.outbox == [0, 2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "k-sync,sync"], "--protocol must be one of k-batch-async, k-async, k-sync, k-batch-sync, "
         "sync, rennala, ringmaster, mindflayer for a run (one protocol), got 'k-sync,sync'"),
        (["--protocol", "mindflayer", "--cutoff", "2"], "--time-unit must be a number of seconds > 0 for mindflayer"),
        (["--delay-threshold", "2"], "--delay-threshold must be given with --protocol ringmaster only"),
    ],
)  # fmt: skip
def test_a_protocol_a_run_cannot_make_is_one_line(cli_here, args, message):
    code, out, err = cli_here(["run", "--n", "4", "--K", "2", *args])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"Error: {message}")


# ------------------------------------------------------------------------------------------------- real runs


def check_consistent(result, system, updates):
    """Every update made of K applied rows; dropped rows only where the protocol drops, with their reason; no
    (worker, round) twice; the count identity; idle workers never compute; each worker's rounds in time order."""
    t = result.trace.validate()
    applied = t["update"] >= 1
    assert t.updates == updates and applied.sum() == updates * system.K
    assert np.all(np.bincount(t["update"][applied], minlength=updates + 1)[1:] == system.K)
    keys = t["worker"].astype(np.int64) * 10**9 + t["round"]
    assert np.unique(keys).size == keys.size, "a (worker, round) taken twice"
    assert result.dropped["duplicate"] == 0 and result.dropped["bad_version"] == 0
    assert len(t) + sum(result.dropped.values()) == result.received, (len(t), result.dropped, result.received)
    rules = RULES[system.protocol]
    if rules.current_only:
        assert np.all(t["staleness"][applied] == 0), "a superseded version applied"
        assert set(np.unique(t["dropped"])) <= {APPLIED, LATE}
    else:
        bound = system.delay_threshold - 1 if system.delay_threshold else system.staleness_bound
        if bound is None:
            assert np.all(t["dropped"] == APPLIED)
        else:
            assert np.all(t["staleness"][applied] <= bound) and np.all(t["staleness"][~applied] > bound)
    if system.workers is not None:
        assert set(np.unique(t["worker"])) <= set(system.workers)
    waste = t.meta["wasted_compute"]
    wastes = system.protocol not in ("k-batch-async", "k-async", "sync") or system.staleness_bound is not None
    assert 0 <= waste < 1 and (waste > 0) == wastes, waste  # sync: every worker in every update, none cancelled


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_each_protocol_runs_with_a_consistent_trace(local_ray, case):
    from stalegrad.runtime import run

    system = system_of(case)
    result = run(system, LinearRegression(), 60, time_unit=0.005, seed=2)
    check_consistent(result, system, 60)
    assert result.errors[-1, 2] < result.errors[0, 2]


#: The comparison's run: updates, seconds per time unit. Ray's latency (a call, a thread's wake-up: about a
#: millisecond each on this loaded 2-core machine, a few per round) lengthens every round by a few milliseconds
#: that the prediction knows only on the uplink (its measured mean): 40 ms a unit keeps that under about 2%.
UPDATES, UNIT = 250, 0.04


def engine_runs(system, updates, seeds):
    """The event engine's staleness mean, update rate and wasted compute in runs of ``updates`` updates (the same
    warm-up as the comparison), one row per seed."""
    from stalegrad.analysis import steady_state
    from stalegrad.sim.events import simulate_events

    rows = []
    for s in seeds:
        est = steady_state(simulate_events(system, updates, seed=s))
        rows.append((est.mean, est.update_rate, est.wasted_compute))
    return np.array(rows)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c != "k-batch-async"])  # that one: tests/test_runtime.py
def test_each_protocol_matches_its_prediction(local_ray, case):
    from stalegrad.experiments import compare
    from stalegrad.runtime import run

    system = system_of(case)
    result = run(system, LinearRegression(), UPDATES, time_unit=UNIT, seed=1)
    check_consistent(result, system, UPDATES)
    comp = compare(result)
    sd = np.std(engine_runs(system, UPDATES, range(100, 108)), axis=0, ddof=1)
    # the engine on the run's own seed: the same compute times, round by round (common random numbers)
    paired = engine_runs(system, UPDATES, [1])[0]
    pairs = {
        "staleness": (comp.staleness_mean, comp.staleness_exact, sd[0], paired[0]),
        "update rate": (comp.update_rate, comp.update_rate_exact, sd[1], paired[1]),
        "wasted compute": (comp.wasted_compute, comp.wasted_compute_predicted, sd[2], paired[2]),
    }
    print(
        f"\n{case}: "
        + "; ".join(f"{k} {m:.4f} vs {p:.4f} (sd {s:.4f}; seed 1 {e:.4f})" for k, (m, p, s, e) in pairs.items())
    )
    for name, (measured, predicted, spread, same_seed) in pairs.items():
        tolerance = max(0.05 * abs(predicted), 4 * spread, 1e-9)
        assert abs(measured - predicted) <= tolerance, (name, measured, predicted)
        assert abs(measured - same_seed) <= tolerance, (name, measured, same_seed)


@pytest.mark.slow
def test_the_command_line_runs_a_protocol_and_says_what_it_wasted(run_cli):
    """``run --protocol rennala --workers fastest:3 --json``: one row with the run's wasted compute beside the
    engine's, the count identity, and only the active workers in the Trace it writes."""
    import json

    code, out, err = run_cli(
        ["run", "--n", "4", "--K", "2", "--tc", "1", "--protocol", "rennala", "--workers", "fastest:3",
         "--time-unit", "0.005", "--updates", "60", "--seed", "2", "--json"]
    )  # fmt: skip
    assert code == 0, err
    row = json.loads(out)
    assert row["protocol"] == "rennala" and row["active_workers"] == [0, 1, 2] and row["updates"] == 60
    assert 0 < row["wasted_compute"] < 1 and 0 < row["wasted_compute_predicted"] < 1
    assert row["staleness_mean"] == 0 and row["staleness_exact"] == 0
    assert row["gradients"] + sum(row["dropped"].values()) == row["gradients_received"]
    assert "rennala: predicted" in row["caveat"]


@pytest.mark.slow
def test_a_stopped_protocol_run_resumes_with_no_gap_and_no_duplicate(local_ray, tmp_path):
    """k-sync, checkpointing every 10 updates, stopped at 20 or more, resumed to 60: the Trace is consistent over
    both sessions (its dropped rows included) and the count identity holds for the whole run; the compute time
    (and the wasted compute) covers both sessions: the checkpoint records the first's."""
    from stalegrad.runtime import run

    class Stop(Exception):
        pass

    def stop_at(status):
        if status["updates"] >= 20:
            raise Stop

    system = system_of("k-sync")
    with pytest.raises(Stop):
        run(system, LinearRegression(), 60, time_unit=0.005, seed=5, checkpoint_dir=tmp_path, checkpoint_every=10,
            progress=stop_at)  # fmt: skip
    first = load_checkpoint(tmp_path).counts["work"]
    assert first["compute"] > 0 and first["cancelled"] > 0, first
    result = run(system, LinearRegression(), 60, time_unit=0.005, resume=tmp_path)
    check_consistent(result, system, 60)
    assert 20 <= result.meta["resumed_from"] < 60
    t = result.trace
    # every row is a round finished (applied or dropped), in either session: at least their time was computed
    assert result.meta["compute_time"] >= float(np.sum(t["sent"] - t["start"])) * (1 - 1e-9)
    assert result.meta["compute_time"] > first["compute"] and result.meta["cancelled_time"] >= first["cancelled"]
    assert load_checkpoint(tmp_path).counts["work"] == {
        "compute": pytest.approx(result.meta["compute_time"]),
        "cancelled": pytest.approx(result.meta["cancelled_time"]),
    }, "the final counts: the whole run's, as reported"


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_each_protocol_runs_on_the_shared_memory_path(local_ray, case, big_quadratic):
    """A 160 kB ``w``: the versions each protocol sends (in replies, and told to waiting or abandoning workers) are
    rows of the master's version ring, the gradients come in slots; the Trace is as consistent as on the object
    store's path, and no worker died (a ring row reused under a worker's feet raises in it)."""
    from stalegrad.runtime import run

    system = system_of(case)
    result = run(system, big_quadratic(20_000), 60, time_unit=0.005, seed=2, lr=0.1, batch=4)
    check_consistent(result, system, 60)
    assert result.lost == ()
    assert result.trace.meta["datapath"]["shared_memory"] == sorted(system.active)
