"""The real runtime on Ray: the master's protocol (no Ray), the checks of a run's arguments (no Ray), then real runs
on one local Ray instance with 2 CPUs, shared by the whole module (the command line's runs, each in its own
process, are in ``tests/test_runtime_cli.py``).

The Ray tests are marked ``slow`` (``make test`` runs them). None depends on the machine's speed: a loaded machine
delays the actors (late wake-ups, slow calls), which lengthens the *measured* times, and every comparison is with
the prediction from the measured times; what is checked on the times themselves is an invariant (a round lasts at
least its injected compute time, a gradient is taken no earlier than its injected uplink delay), plus bounds many
times wider than the jitter measured on this 2-core machine with both cores kept busy by other processes. A run
that must go on until something has happened (a restarted worker's first gradients) is driven until it has, with
a deadline that only a hang reaches.

Tolerances: the measured mean staleness is compared with the exact prediction from the measured times in units of
its own standard error (batch means over the steady state: ``compare(...).z``); ``|z| < 4`` fails with probability
about 4e-4 from sampling alone (Student's t, 31 degrees of freedom), while a protocol error (a version used too
early or too late, a gradient lost or applied twice) moves the mean by 1/K or more: 20 standard errors and more with
500 updates (standard error 0.5% to 0.9% of the mean, measured).
"""

from __future__ import annotations

import ipaddress
import time

import numpy as np
import pytest

from stalegrad.distributions import shifted_exponential
from stalegrad.errors import SpecError
from stalegrad.runtime.protocol import MasterCore
from stalegrad.runtime.rounds import AppliedRounds
from stalegrad.sim.blocks import ComputeStreams
from stalegrad.spec import System
from stalegrad.streams import COMPUTE, MINIBATCH, Draws, worker_seeds
from stalegrad.trace import COLUMNS
from stalegrad.train import LinearRegression

PAPER = shifted_exponential(alpha=1, rate=0.6667)


# ------------------------------------------------------------------------------------------ the protocol, no Ray


def test_applied_rounds_take_every_round_once_in_any_order():
    r = AppliedRounds(2)
    order = [3, 1, 2, 2, 5, 1, 4, 5, 6]
    taken = [r.take(0, k) for k in order]
    assert taken == [True, True, True, False, True, False, True, False, True]
    assert r.watermark(0) == 6 and r.next_round(0) == 7
    assert r.take(1, 2) and r.watermark(1) == 0 and r.next_round(1) == 3


def test_master_core_applies_an_update_after_every_K_gradients():
    core = MasterCore(n=2, K=2, w0=np.zeros(1), lr=0.5, updates=2)
    assert not core.receive(0, 1, 0.0, 1.0, 1.5, 0, np.array([1.0]))
    assert core.receive(1, 1, 0.0, 2.0, 2.5, 0, np.array([3.0]))  # update 1 from w_0: tau = 0
    assert core.version == 1 and core.w.tolist() == [-1.0]  # w_1 = 0 - 0.5 * (1 + 3) / 2
    assert not core.receive(0, 2, 1.0, 3.0, 3.5, 0, np.array([2.0]))  # computed on w_0, applied in update 2
    assert core.receive(1, 2, 2.0, 4.0, 4.5, 1, np.array([0.0]))
    assert core.done and core.w.tolist() == [-1.5]
    cols = core.columns()
    assert list(cols) == list(COLUMNS) and all(cols[k].dtype == COLUMNS[k] for k in COLUMNS)
    assert cols["update"].tolist() == [1, 1, 2, 2]
    assert cols["staleness"].tolist() == [0, 0, 1, 0]
    assert core.update_times == [2.5, 4.5] and core.staleness_sum == 1


def test_master_core_counts_every_gradient_it_does_not_apply():
    core = MasterCore(n=2, K=2, w0=np.zeros(1), lr=1.0, updates=1)
    g = np.ones(1)
    core.receive(0, 1, 0, 1, 1, 0, g)
    core.receive(0, 1, 0, 1, 1, 0, g)  # the same (worker, round) again: a retried call
    core.receive(1, 1, 0, 1, 1, 7, g)  # a version the master never made
    assert core.dropped == {"duplicate": 1, "after_end": 0, "bad_version": 1, "interrupted": 0}
    assert core.version == 0 and core.leftover() == 1
    core.receive(1, 2, 0, 1, 1, 0, g)
    core.receive(1, 3, 0, 1, 1, 0, g)  # after the last update
    assert core.version == 1 and core.dropped["after_end"] == 1 and core.w.tolist() == [-1.0]


@pytest.mark.parametrize("rows", [20_000, pytest.param(300_000, marks=pytest.mark.slow)])
def test_master_core_keeps_its_rows_in_bounded_memory(rows):
    """52 bytes a row in numpy columns (at most twice that while half of a doubled capacity is unused), plus 32 bytes
    an update time: under 130 bytes a gradient with K = 2 (Python lists of the same numbers took 217). 20,000 rows in
    the fast tests (capacity 32,768: 101 bytes a row measured), 300,000 in the slow ones."""
    import tracemalloc

    grad = np.zeros(1)
    warm = MasterCore(4, 2, np.zeros(1), 0.1, 10**9)  # an update first: what it imports and compiles is not a row
    for i in range(2):
        warm.receive(i, 1, 0.0, 0.5, 0.7, 0, grad)
    core = MasterCore(4, 2, np.zeros(1), 0.1, 10**9)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(rows):
            core.receive(i % 4, i // 4 + 1, 1.0 * i, i + 0.5, i + 0.7, max(0, core.version - 2), grad)
        per_row = (tracemalloc.get_traced_memory()[0] - before) / rows
    finally:
        tracemalloc.stop()
    assert core.applied == rows and core.version == rows // 2
    assert per_row < 130, per_row
    cols = core.columns()
    assert np.array_equal(cols["sent"], np.arange(rows) + 0.5) and np.array_equal(
        cols["update"], np.arange(rows) // 2 + 1
    )


def test_worker_compute_times_are_the_simulators_stream():
    system = System(n=3, K=2, tc=1, compute=PAPER)
    sim = ComputeStreams(system, seed=5, gradients=300)
    for i in range(3):
        times = Draws(PAPER, worker_seeds(5, 3, i)[COMPUTE], "compute")
        mine = np.array([times.next() for _ in range(100)])
        np.testing.assert_array_equal(mine, sim.draw(i)[:100])
    restarted = Draws(PAPER, worker_seeds(5, 3, 0, incarnation=1)[COMPUTE], "compute")
    assert restarted.next() != Draws(PAPER, worker_seeds(5, 3, 0)[COMPUTE], "compute").next()


# ------------------------------------------------------------------------------------- the plan of a run, no Ray


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"updates": 0}, "updates must be an integer >= 1"),
        ({"time_unit": -0.1}, "time_unit must be a number of seconds > 0"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"batch": 0}, "batch must be an integer >= 1"),
        ({"problem": object()}, "problem must be a stalegrad.train.Problem"),
        ({"kill": {9: 1}}, "kill must be"),
        ({"clock_skew": {0: float("nan")}}, "clock_skew must be"),
        ({"address": " "}, "address must be 'auto' or HOST:PORT"),
        ({"poll": 0}, "poll must be a number of seconds > 0"),
        ({"error_every": -1}, "error_every must be an integer >= 0"),
        ({"system": System(n=2, K=1, compute=PAPER, protocol="mindflayer", cutoffs=3.0)}, "time_unit must be"),
    ],
)
def test_bad_arguments_fail_before_ray_starts(kwargs, match):
    from stalegrad.runtime import run

    args = {"system": System(n=2, K=1, compute=PAPER), "problem": LinearRegression(), "updates": 10}
    args.update(kwargs)
    with pytest.raises(SpecError, match=match):
        run(**args)


def test_a_plan_names_the_parameters_as_its_caller_does(tmp_path):
    """The checks live in the plan once; the command line has them name its options (``--out DIR``)."""
    from stalegrad.runtime.plan import RunPlan

    names = {"checkpoint_every": "--checkpoint-every", "checkpoint_dir": "--out DIR", "lr": "--lr"}
    system, problem = System(n=2, K=1, compute=PAPER), LinearRegression()
    with pytest.raises(SpecError, match=r"^--checkpoint-every must be 0 unless --out DIR is given, got 5$"):
        RunPlan.build(system, problem, 10, checkpoint_every=5, names=names)
    with pytest.raises(SpecError, match=r"^--lr must be a finite number > 0, got -1$"):
        RunPlan.build(system, problem, 10, lr=-1, names=names)
    plan = RunPlan.build(system, problem, 10, seed=3, kill={1: 4}, clock_skew={0: 2.5}, checkpoint_dir=tmp_path)
    assert (plan.seed, plan.kill, plan.clock_skew, plan.checkpoint_every, plan.checkpoint_dir) == (
        3, (None, 4), (2.5, 0.0), 0, None
    )  # fmt: skip
    assert plan.incarnations == (0, 0) and plan.state is None and plan.base == 0.0 and plan.unit == 1.0


# ------------------------------------------------------------------------------------------------- real runs


def drive(plan, until, timeout=300.0):
    """Carry ``plan`` out in the module's Ray instance until it is done or ``until(driver)`` holds, then stop it
    (its result then holds the updates made so far). ``timeout`` (seconds) is reached only by a hang."""
    from stalegrad.runtime.driver import Driver

    driver = Driver(plan)
    driver.start()
    try:
        deadline = time.monotonic() + timeout
        while not (driver.poll() or until(driver)):
            assert time.monotonic() < deadline, f"not there after {timeout} s: {driver.status}, lost {driver.lost}"
        return driver.stop()
    finally:
        driver.close()


def check_matches_prediction(comp):
    """Measured staleness within 4 of its standard errors of the exact prediction from the measured times; update
    rate within 5% of the rate of the measured times (the two differ only by the warm-up left out)."""
    assert abs(comp.staleness_z) < 4, (
        f"measured {comp.staleness_mean:.4f} +- {comp.staleness_ci95:.4f}, predicted {comp.staleness_exact:.4f}"
    )
    assert abs(comp.update_rate / comp.update_rate_exact - 1) < 0.05


def check_injected_times(result, model, seed):
    """Every round lasted at least the compute time injected for it (its worker's own stream, round by round) --
    the worker sleeps until then -- and, in the median, not much more; every gradient was taken no earlier than its
    injected uplink delay (``arrive - sent`` is on one clock, the master's, whatever the worker's clock)."""
    t = result.trace
    n = t.system.n
    excess = []
    for i in range(n):
        mine = t["worker"] == i
        draws = Draws(model, worker_seeds(seed, n, i)[COMPUTE], "compute")
        injected = np.array([draws.next() for _ in range(int(t["round"][mine].max()))])
        excess.append((t["sent"] - t["start"])[mine] - injected[t["round"][mine] - 1])
    excess = np.concatenate(excess)
    # 0.01 unit (100 us at 10 ms a unit): the wall clock may run slower than the monotonic one the worker sleeps on
    assert excess.min() > -0.01, "a round shorter than its injected compute time"
    # Ray's call, the gradient and a late wake-up; measured with both cores busy: median 0.04, 90th percentile 0.2
    assert np.median(excess) < 0.25, np.median(excess)
    up = t["arrive"] - t["sent"]
    uplink = float(t.system.uplink)  # fixed delays here
    assert up.min() >= uplink - 1e-3, "a gradient taken before its uplink delay had passed"
    for i in range(n):  # the injected delay plus Ray's latency (measured with both cores busy: at most 0.04 units)
        assert np.median(up[t["worker"] == i]) < uplink + 0.5


@pytest.fixture(scope="module")
def paper_run(local_ray):
    """The paper's compute times, n = 4, K = 2, Tc = 1: 500 updates at 10 ms a time unit (about 6 s), with worker
    0's clock 5 s ahead and worker 2's 3 s behind (as on other machines; each measures its offset). Shared by the
    tests below: each checks another property of the same run."""
    from stalegrad.runtime import run

    system = System(n=4, K=2, tc=1, compute=PAPER)
    return run(system, LinearRegression(), 500, time_unit=0.01, seed=1, lr=0.05, batch=16, clock_skew={0: 5.0, 2: -3.0})


@pytest.mark.slow
def test_local_instance_listens_on_loopback_only(local_ray):
    """Every socket of every process of the instance (the processes that carry its mark: GCS, raylet, agents,
    actors) is bound to a loopback address -- checked on the sockets the kernel holds, not on a setting."""
    from stalegrad.runtime.instance import _psutil, marked

    psutil = _psutil()
    pids = {proc.pid for proc, _ in marked(local_ray["own"].value)}
    assert len(pids) >= 3, "the instance's processes: at least the GCS, the raylet and an agent"
    sockets = [c for c in psutil.net_connections(kind="inet") if c.pid in pids and c.laddr]
    listening = [c for c in sockets if c.status == psutil.CONN_LISTEN]
    assert len(listening) >= 3, listening

    def loopback(ip):  # 127.0.0.0/8, ::1, or the IPv4 loopback mapped into IPv6 (::ffff:127.0.0.1)
        address = ipaddress.ip_address(ip)
        mapped = getattr(address, "ipv4_mapped", None)
        return (mapped or address).is_loopback

    bound = {c.laddr.ip for c in sockets}
    assert all(loopback(ip) for ip in bound), f"bound beyond loopback: {sorted(bound)}"
    assert local_ray["address"] == "127.0.0.1"


@pytest.mark.slow
def test_measured_staleness_matches_the_prediction_from_measured_times(paper_run, check_trace):
    from stalegrad.experiments import compare

    check_trace(paper_run, 500, 2)
    comp = compare(paper_run)
    print(
        f"\nn=4 K=2: measured {comp.staleness_mean:.4f} +- {comp.staleness_ci95:.4f}, exact from measured times "
        f"{comp.staleness_exact:.4f} ({100 * comp.staleness_rel_diff:+.2f}%, z={comp.staleness_z:+.2f}), "
        f"configured {comp.staleness_exact_configured:.4f}; "
        f"uplink +{comp.uplink_extra:.4f}, downlink +{comp.downlink_extra:.4f} units; latency {paper_run.latency}"
    )
    check_matches_prediction(comp)
    check_injected_times(paper_run, PAPER, seed=1)
    # the model trains: the error falls by orders of magnitude (linear regression, step 0.05)
    assert paper_run.errors[0, 0] == 0 and paper_run.errors[-1, 0] == 500
    assert paper_run.errors[-1, 2] < 1e-2 * paper_run.errors[0, 2]


@pytest.mark.slow
def test_more_workers_and_larger_batches_match_the_prediction_too(local_ray, check_trace):
    from stalegrad.experiments import compare
    from stalegrad.runtime import run

    result = run(System(n=8, K=4, tc=1, compute=PAPER), LinearRegression(), 500, time_unit=0.01, seed=1)
    check_trace(result, 500, 4)
    comp = compare(result)
    print(
        f"\nn=8 K=4: measured {comp.staleness_mean:.4f} +- {comp.staleness_ci95:.4f}, "
        f"predicted {comp.staleness_exact:.4f} (z={comp.staleness_z:+.2f})"
    )
    check_matches_prediction(comp)
    check_injected_times(result, PAPER, seed=1)


@pytest.mark.slow
def test_workers_with_wrong_clocks_are_put_on_the_masters_clock(paper_run):
    """Worker 0's clock 5 s ahead, worker 2's 3 s behind: each estimates its offset (Cristian's method) within
    half the round trip it measured, and the run is as with one clock -- uncorrected, worker 2's gradients would
    be recorded 300 time units late on the master's clock (the bound of ``check_injected_times``: half a unit),
    and worker 0's held 5 s for their uplink delay (500 units of staleness: the comparison above)."""
    clocks = paper_run.meta["clocks"]
    for worker, skew in ((0, 5.0), (2, -3.0)):
        c = clocks[str(worker)]
        # a round trip under a second (1 ms measured; a loaded machine may take longer) bounds the error to 0.5 s
        assert 0 < c["rtt"] < 1.0 and abs(c["offset"] + skew) <= c["rtt"] / 2, c  # Cristian's bound
    for worker in (1, 3):
        c = clocks[str(worker)]
        assert (c["offset"], c["rtt"], c["node"]) == (0.0, 0.0, paper_run.meta["master_node"]), (
            "same node: not estimated"
        )


@pytest.mark.slow
@pytest.mark.parametrize("restart", [False, True])
def test_a_worker_that_dies_is_detected_and_the_run_goes_on(local_ray, restart, check_trace):
    """Worker 1 is killed at update 40. The run is driven until what is checked has happened -- 40 updates after
    its death was seen; with a restart, 20 rounds of the new incarnation taken -- however long a new actor takes to
    start on a loaded machine (then stopped: the result holds the updates made so far)."""
    from stalegrad.runtime.plan import RunPlan

    system = System(n=4, K=2, tc=1, compute=PAPER)
    plan = RunPlan.build(
        system, LinearRegression(), 100_000, time_unit=0.01, seed=2, restart_workers=restart, kill={1: 40}
    )
    base = []

    def until(driver):
        if not driver.lost:
            return False
        if not restart:
            return driver.status["version"] >= driver.lost[0][1] + 40
        if driver.restarted and not base:
            base.append(driver.status["rounds"][1])  # the rounds taken from worker 1 when it was restarted
        return bool(base) and driver.status["rounds"][1] >= base[0] + 20

    result = drive(plan, until)
    t = result.trace
    check_trace(result, t.updates, 2)  # among others: no (worker, round) twice, a worker's rounds in time order
    assert [w for w, _ in result.lost] == [1] and result.lost[0][1] >= 40
    seen = result.lost[0][1]
    late = t["update"] > seen + 20
    if restart:
        assert result.restarted == result.lost, "restarted when its death was seen"
        # the old incarnation computed on versions up to the one its death was seen at; the new one's rows follow
        assert np.sum((t["worker"] == 1) & (t["version"] > seen)) >= 10, "the restarted worker's gradients applied"
    else:
        assert result.restarted == ()
        assert not np.any(t["worker"][late] == 1), "a dead worker's gradients stop"
        assert set(np.unique(t["worker"][late])) == {0, 2, 3}
    from stalegrad.experiments import compare

    comp = compare(result)  # the prediction is for 4 workers: compared on a stretch when all 4 ran
    assert comp.lost_workers == (1,) and f"lost worker 1 at update {seen}" in comp.caveat
    first, last = comp.compared
    assert (last <= seen) if not restart else (last <= seen or first > seen), comp.compared


# ---------------------------------------------------------------------------------------------- checkpoint, resume


class Stop(Exception):
    """Raised by a progress callback: the driver's loop ends there, as on Ctrl-C."""


def stop_at(updates):
    def progress(status):
        if status["updates"] >= updates:  # this session's updates
            raise Stop

    return progress


@pytest.mark.slow
def test_a_stopped_run_resumes_with_no_gap_and_no_duplicate(local_ray, tmp_path, check_trace):
    """Three sessions of one run, checkpointing every 40 updates: stopped at 130 updates or more (of 300); resumed
    and stopped again 30 updates later; resumed to 340 (more than the first sessions' 300)."""
    from stalegrad.runtime import run
    from stalegrad.runtime.checkpoint import load_checkpoint

    system, problem = System(n=4, K=2, tc=1, compute=PAPER), LinearRegression()
    every = 40

    with pytest.raises(Stop) as stopped:
        run(system, problem, 300, time_unit=0.01, seed=3, checkpoint_dir=tmp_path, checkpoint_every=every,
            progress=stop_at(130))  # fmt: skip
    first = load_checkpoint(tmp_path)
    v1 = first.version
    # stopped: every gradient received is a row of the checkpoint or a drop it counts
    assert len(first.columns["worker"]) + sum(first.counts["dropped"].values()) == first.counts["received"]
    assert 130 <= v1 < 300, "a final checkpoint of the state at the stop, not the periodic one before it"
    assert f"checkpoint at update {v1} in '{tmp_path}'" in stopped.value.__notes__[0]
    parts = first.manifest["parts"]
    assert parts[-1] == f"part-{v1:08d}.npz" and all(int(p[5:13]) % every == 0 for p in parts[:-1])
    interrupted = first.counts["dropped"]["interrupted"]
    assert 0 <= interrupted <= 1 + 4, "at most a partial batch (K - 1) and one gradient in flight per worker"

    with pytest.raises(Stop):
        run(system, problem, 300, time_unit=0.01, resume=tmp_path, progress=stop_at(30))  # the seed: the checkpoint's
    second = load_checkpoint(tmp_path)
    v2 = second.version
    assert v1 + 30 <= v2 < 300 and second.incarnations == [1, 1, 1, 1]
    assert second.manifest["parts"][: len(parts)] == parts, "a resumed run's parts follow the first session's"
    interrupted = second.counts["dropped"]["interrupted"]
    assert interrupted >= first.counts["dropped"]["interrupted"]

    result = run(system, problem, 340, time_unit=0.01, resume=tmp_path)
    check_trace(result, 340, 2)  # updates 1..340, K rows each, no (worker, round) twice
    t = result.trace
    assert result.meta["resumed_from"] == v2 and t.seed == 3
    # the earlier sessions' rows, untouched, then the new ones
    for before in (first, second):
        v = before.version
        assert all(np.array_equal(t[k][: v * 2], before.columns[k]) for k in COLUMNS)
        assert np.array_equal(t.update_times[:v], before.update_times)
    new = t["update"] > v2
    assert np.array_equal(np.flatnonzero(new), np.arange(v2 * 2, 340 * 2))
    # versions go on from the checkpoint's: no resumed gradient was computed on a version before it
    assert t["version"][new].min() == v2 and t["start"][new].min() >= second.time
    old = ~new
    for w in range(4):  # every worker's rounds go on above the rounds taken before
        assert t["round"][new & (t["worker"] == w)].min() > t["round"][old & (t["worker"] == w)].max()
    assert np.array_equal(result.errors[:, 0], np.arange(341)), "one error per version, none twice"
    assert result.dropped["interrupted"] == interrupted, "the whole run's counts, the stopped sessions' included"
    after = load_checkpoint(tmp_path)
    assert after.version == 340 and after.incarnations == [2, 2, 2, 2]
    assert after.counts["dropped"] == result.dropped and after.counts["received"] == result.received
    assert all(np.array_equal(after.columns[k], t[k]) for k in COLUMNS)


@pytest.mark.slow
def test_ctrl_c_between_a_snapshot_and_its_write_loses_no_row(local_ray, tmp_path, monkeypatch):
    """Ctrl-C after the master handed a snapshot out and before the driver wrote it: the final checkpoint covers
    that snapshot's rows too (the master counts from the last checkpoint *written*).

    What is written when depends on the machine's speed: the driver writes at most one checkpoint per poll, at the
    newest multiple of ``checkpoint_every`` reached (multiples in between are skipped). So the invariants are
    checked, not the versions: the periodic checkpoints are at multiples of 10, the one that never made it to disk
    is newer than the first, and the final checkpoint (at the last update made) holds updates 1..v, K rows each,
    in two parts: the first checkpoint's and one for everything after it, the unwritten snapshot's rows included."""
    from stalegrad.runtime import RunInterrupted, run
    from stalegrad.runtime import checkpoint as ck

    real, calls = ck.write_checkpoint, []

    def flaky(*args, **kwargs):
        calls.append(kwargs["version"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C came right here
        return real(*args, **kwargs)

    monkeypatch.setattr(ck, "write_checkpoint", flaky)
    system = System(n=2, K=2, tc=1, compute=PAPER)
    with pytest.raises(RunInterrupted, match=r"interrupted; checkpoint at update (\d+) in") as stopped:
        run(system, LinearRegression(), 2000, time_unit=0.005, seed=4, checkpoint_dir=tmp_path, checkpoint_every=10)
    final = ck.load_checkpoint(tmp_path)  # loads: every row of updates 1..v is there, K per update, none twice
    v = final.version
    assert len(calls) == 3 and calls[0] % 10 == 0 and calls[1] % 10 == 0 and calls[0] < calls[1] <= v
    assert calls[2] == v and f"update {v} in" in str(stopped.value)
    counts = final.counts  # the count identity of the state the run stopped at
    assert len(final.columns["worker"]) + sum(counts["dropped"].values()) == counts["received"], counts
    assert final.manifest["parts"] == [f"part-{calls[0]:08d}.npz", f"part-{v:08d}.npz"]
    assert np.array_equal(np.unique(final.columns["update"]), np.arange(1, v + 1))
    assert np.array_equal(np.bincount(final.columns["update"])[1:], np.full(v, 2))


# ------------------------------------------------------------------------------------------- real run vs replay


@pytest.mark.slow
def test_the_real_runs_error_falls_as_sgd_replayed_along_its_own_trace(paper_run):
    """The real run against ``stalegrad.train.replay`` along the run's own Trace (same problem, step and b).

    The replay applies the same gradients (same versions, same updates) with its own minibatches, so the real run is
    one more draw from the distribution of the replays: we compare distributions, not bits. Two statistics of a
    curve: the mean log error over updates 1..100 (the descent) and over 201..300 (the noise floor). Over 40 replay
    seeds they have a mean ``m`` and a standard deviation ``s``; the real run's must lie within
    ``4 s sqrt(1 + 1/40)`` of ``m`` (a prediction interval: for a new draw the ratio follows Student's t with 39
    degrees of freedom, beyond 4 with probability 2.7e-4; for either statistic, about once in 1800 runs).
    The same test rejects SGD with twice the step along the same trace (a master that forgot to average its K
    gradients), so it can fail.

    And bit for bit: SGD along the Trace with each worker's own minibatch stream (drawn in round order) gives the
    real run's errors and final ``w`` exactly.
    """
    from stalegrad.train import replay

    result, problem, lr, b, seeds = paper_run, LinearRegression(), 0.05, 16, 40
    updates = result.trace.updates
    assert np.array_equal(result.errors[:, 0], np.arange(updates + 1))
    phases = {"descent": slice(1, 101), "floor": slice(201, 301)}

    def stats(errors):
        return {name: float(np.mean(np.log(errors[span]))) for name, span in phases.items()}

    def curves(step):
        out = [replay(result.trace, problem, b=b, step=step, seed=s, record=updates) for s in range(seeds)]
        assert all(np.array_equal(r.updates, np.arange(updates + 1)) for r in out)  # every update, matched times
        return [stats(r.errors) for r in out]

    def outside(real, reps):
        """The statistics of ``real`` outside the replays' prediction band, as z-scores."""
        bad = {}
        for name in phases:
            x = np.array([r[name] for r in reps])
            z = (real[name] - x.mean()) / (x.std(ddof=1) * np.sqrt(1 + 1 / seeds))
            if abs(z) > 4:
                bad[name] = round(float(z), 2)
        return bad

    reps = curves(lr)
    real = stats(result.errors[:, 2])
    print(f"\nreal {real}; replays { ({k: np.mean([r[k] for r in reps]) for k in phases}) }")
    assert outside(real, reps) == {}
    assert result.errors[0, 2] == problem.error(problem.init())
    assert outside(stats(replay(result.trace, problem, b=b, step=2 * lr, seed=99, record=updates).errors), reps)

    errors, w = sgd_with_the_workers_streams(result.trace, problem, lr, b, seed=1)
    np.testing.assert_allclose(errors, result.errors[:, 2], rtol=1e-9)
    np.testing.assert_allclose(w, result.w, rtol=1e-9, atol=1e-12)


def sgd_with_the_workers_streams(trace, problem, lr, b, seed):
    """SGD along ``trace`` with the minibatches the real workers drew (one per round, each worker's own stream)."""
    n, K = trace.system.n, trace.system.K
    idx = {}
    for i in range(n):
        rng = np.random.default_rng(worker_seeds(seed, n, i)[MINIBATCH])
        rows = np.flatnonzero(trace["worker"] == i)
        rows = rows[np.argsort(trace["round"][rows])]
        assert np.array_equal(trace["round"][rows], np.arange(1, rows.size + 1)), "no round skipped"
        for j in rows:
            idx[j] = rng.integers(0, problem.X.shape[0], size=b)
    ws = [problem.init()]
    for u in range(1, trace.updates + 1):
        batch = np.zeros_like(ws[0])
        for j in np.flatnonzero(trace["update"] == u):  # in the order the master took them
            X, y = problem.X[idx[j]], problem.y[idx[j]]
            batch += X.T @ (X @ ws[trace["version"][j]] - y) / b
        ws.append(ws[-1] - (lr / K) * batch)
    return np.array([problem.error(w) for w in ws]), ws[-1]


@pytest.mark.slow
def test_a_large_model_travels_by_reference_and_trains_exactly(local_ray, check_trace, big_quadratic, sgd_along):
    """``w`` of 160 kB (above ``INLINE_BYTES``): each version is put in the object store once and workers fetch it
    by reference; each gradient travels by reference too (the master reads it zero-copy and holds it until its
    batch is complete). SGD along the run's Trace with the workers' own streams gives the run's errors and ``w``: every
    gradient was computed on the version its row names."""
    from stalegrad.runtime import run
    from stalegrad.runtime.datapath import INLINE_BYTES

    dim, lr, b, updates, seed = 20_000, 0.1, 4, 120, 8
    assert dim * 8 > INLINE_BYTES
    problem = big_quadratic(dim)
    result = run(System(n=4, K=2, tc=1, compute=PAPER), problem, updates, time_unit=0.01, seed=seed, lr=lr, batch=b)
    check_trace(result, updates, 2)
    assert result.trace["staleness"].max() >= 1, "workers computed on older versions than the newest"
    errors, w = sgd_along(result, problem, lr, b, seed)
    np.testing.assert_allclose(errors, result.errors[:, 2], rtol=1e-9)
    np.testing.assert_allclose(w, result.w, rtol=1e-9, atol=1e-12)
    assert result.errors[-1, 2] < 0.05 * result.errors[0, 2]


@pytest.mark.slow
def test_an_mlp_trains_on_ray_and_its_trace_replays_it_bit_for_bit(local_ray, check_trace, sgd_along):
    """A PyTorch MLP on the 8x8 digits (d = 8970), n = 4, K = 2, the paper's compute times, 600 updates: the run
    reaches 80% test accuracy (measured over seeds 4, 5, 6: 0.96, 0.97, 0.88; a run's timing changes its Trace, and
    the last iterate of constant-step SGD is noisy: at 300 updates 0.74-0.95 were seen), and SGD along its own
    Trace with the workers' own minibatch streams gives the run's errors and final ``w`` (every gradient computed
    on the version its row names, in torch)."""
    pytest.importorskip("torch")
    from stalegrad.runtime import run
    from stalegrad.train.torch_problems import mlp_digits

    problem, lr, b, updates, seed = mlp_digits(), 0.1, 16, 600, 4
    result = run(System(n=4, K=2, tc=1, compute=PAPER), problem, updates, time_unit=0.005, seed=seed, lr=lr, batch=b)
    check_trace(result, updates, 2)
    accuracy = problem.metrics(result.w)["test_accuracy"]
    print(f"\nMLP on Ray: error {result.errors[0, 2]:.4f} -> {result.errors[-1, 2]:.4f}, test accuracy {accuracy:.4f}")
    assert accuracy >= 0.80
    errors, w = sgd_along(result, problem, lr, b, seed)
    np.testing.assert_allclose(errors, result.errors[:, 2], rtol=1e-9)
    np.testing.assert_allclose(w, result.w, rtol=1e-9, atol=1e-12)
