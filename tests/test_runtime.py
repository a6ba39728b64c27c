"""The real runtime on Ray: the master's protocol (no Ray), then real runs on a local Ray instance with 2 CPUs.

The Ray tests are marked ``slow`` (``make test`` runs them). Tolerances: with 500 updates the measured mean
staleness of these systems has a standard error of about 0.8% (n=4, K=2) and 0.5% (n=8, K=4) of the mean
(simulated replications of the same systems), so the issue's 5% band is 6 to 10 standard errors wide: sampling
alone does not fail it; a protocol error (a version used too early or too late, a gradient lost or applied twice)
moves the mean by 1/K or more and does.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from stalegrad.distributions import shifted_exponential
from stalegrad.errors import SpecError
from stalegrad.runtime.master import AppliedRounds, MasterCore
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


def test_master_core_keeps_its_rows_in_bounded_memory():
    """52 bytes a row in numpy columns (at most twice that while half of a doubled capacity is unused), plus 32 bytes
    an update time: under 130 bytes a gradient with K = 2 (Python lists of the same numbers took 217)."""
    import tracemalloc

    core = MasterCore(4, 2, np.zeros(1), 0.1, 10**9)
    grad = np.zeros(1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rows = 300_000
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


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"updates": 0}, "updates must be an integer >= 1"),
        ({"time_unit": -0.1}, "time_unit must be a number of seconds > 0"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"batch": 0}, "batch must be an integer >= 1"),
        ({"problem": object()}, "problem must be a stalegrad.train.Problem"),
        ({"kill": {9: 1}}, "kill must be"),
    ],
)
def test_bad_arguments_fail_before_ray_starts(kwargs, match):
    from stalegrad.runtime import run

    args = {"system": System(n=2, K=1, compute=PAPER), "problem": LinearRegression(), "updates": 10}
    args.update(kwargs)
    with pytest.raises(SpecError, match=match):
        run(**args)


# ------------------------------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    from stalegrad.runtime import start_local

    info = start_local(num_cpus=2)
    yield info
    ray.shutdown()


@pytest.mark.slow
def test_local_instance_listens_on_loopback_only(local_ray):
    assert local_ray["address"] == "127.0.0.1"


@pytest.mark.slow
@pytest.mark.parametrize(("n", "K"), [(4, 2), (8, 4)])
def test_measured_staleness_matches_the_prediction_from_measured_times(local_ray, n, K, check_trace):
    from stalegrad.experiments import compare
    from stalegrad.runtime import run

    system = System(n=n, K=K, tc=1, compute=PAPER)
    updates = 500
    result = run(system, LinearRegression(), updates, time_unit=0.02, seed=1, lr=0.05, batch=16)
    check_trace(result, updates, K)
    comp = compare(result)
    print(
        f"\nn={n} K={K}: measured {comp.measured:.4f} +- {comp.ci95:.4f}, exact from measured times "
        f"{comp.predicted:.4f} ({100 * comp.rel_diff:+.2f}%, z={comp.z:+.2f}), configured {comp.configured:.4f}; "
        f"uplink +{comp.uplink_extra:.4f}, downlink +{comp.downlink_extra:.4f} units; latency {result.latency}"
    )
    assert abs(comp.rel_diff) < 0.05
    # the injected times are what the measured ones are made of: means within a few percent
    assert np.allclose(comp.compute_means, PAPER.mean(), rtol=0.15)
    assert abs(comp.update_rate / comp.update_rate_predicted - 1) < 0.05
    # the model trains: the error falls by orders of magnitude (linear regression, step 0.05)
    assert result.errors[0, 0] == 0 and result.errors[-1, 0] == updates
    assert result.errors[-1, 2] < 1e-2 * result.errors[0, 2]


@pytest.mark.slow
@pytest.mark.parametrize("restart", [False, True])
def test_a_worker_that_dies_is_detected_and_the_run_goes_on(local_ray, restart, check_trace):
    from stalegrad.runtime import run

    system = System(n=4, K=2, tc=1, compute=PAPER)
    updates = 400  # 5 s: a new actor takes about a second to start here
    result = run(system, LinearRegression(), updates, time_unit=0.01, seed=2, restart_workers=restart, kill={1: 40})
    check_trace(result, updates, 2)
    assert [w for w, _ in result.lost] == [1] and result.lost[0][1] >= 40
    t = result.trace
    late = t["update"] > result.lost[0][1] + 20
    if restart:
        assert [w for w, _ in result.restarted] == [1]
        assert np.any(t["worker"][late] == 1), "the restarted worker sends gradients again"
        mine = t["round"][t["worker"] == 1]
        assert np.all(np.diff(np.sort(mine)) >= 1)  # rounds go on above the last one taken: none twice"
    else:
        assert result.restarted == ()
        assert not np.any(t["worker"][late] == 1), "a dead worker's gradients stop"
        assert set(np.unique(t["worker"][late])) == {0, 2, 3}


@pytest.mark.slow
def test_workers_with_wrong_clocks_are_put_on_the_masters_clock(local_ray, check_trace):
    """Worker 0's clock 5 s ahead, worker 2's 3 s behind (as on other machines): each measures its offset and the
    run is as with one clock -- without the correction worker 0's gradients would be sent 5 s after they arrive
    and held 5 s for their uplink delay."""
    from stalegrad.experiments import compare
    from stalegrad.runtime import run

    system = System(n=4, K=2, tc=1, compute=PAPER)
    updates = 300
    result = run(system, LinearRegression(), updates, time_unit=0.02, seed=6, clock_skew={0: 5.0, 2: -3.0})
    check_trace(result, updates, 2)  # among others: start <= sent <= arrive on every row
    clocks = result.meta["clocks"]
    for worker, skew in ((0, 5.0), (2, -3.0)):
        c = clocks[str(worker)]
        assert 0 < c["rtt"] < 0.05 and abs(c["offset"] + skew) <= c["rtt"] / 2, c  # Cristian's bound
    for worker in (1, 3):
        c = clocks[str(worker)]
        assert (c["offset"], c["rtt"], c["node"]) == (0.0, 0.0, result.meta["master_node"]), "same node: not estimated"
    t = result.trace
    up = t["arrive"] - t["sent"]  # the injected uplink (tc / 2 = 0.5 units) plus Ray's latency, for every worker
    for worker in range(4):
        assert 0.5 <= np.median(up[t["worker"] == worker]) < 0.6
    comp = compare(result)
    assert abs(comp.rel_diff) < 0.05 and abs(comp.update_rate / comp.update_rate_predicted - 1) < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["linreg", "logreg"])
def test_cli_run_prints_json_and_writes_the_trace(local_ray, tmp_path, problem):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from stalegrad.cli import main; main()",
            "run",
            "--problem",
            problem,
            "--n",
            "2",
            "--K",
            "1",
            "--updates",
            "40",
            "--tc",
            "1",
            "--compute",
            "shifted_exponential(alpha=1, rate=0.6667)",
            "--time-unit",
            "0.01",
            "--seed",
            "1",
            "--out",
            str(tmp_path),
            "--plot",
            str(tmp_path / "fig.png"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["updates"] == 40 and obj["gradients"] == 40 and obj["dropped"]["duplicate"] == 0
    assert {"measured", "predicted", "configured", "ray_latency_ms"} <= set(obj)
    lines = (tmp_path / "trace.csv").read_text().splitlines()
    assert lines[0].startswith("# stalegrad-metadata:") and lines[1] == ",".join(COLUMNS) and len(lines) == 42
    assert json.loads((tmp_path / "run.json").read_text())["run"]["seed"] == 1
    assert obj["problem"] == problem and obj["error_last"] < obj["error_first"]
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure = json.loads((tmp_path / "fig.json").read_text())  # the figure's numbers, beside it
    assert figure["run"]["measured"] == obj["measured"] and "measured" in figure["systems"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--n", "2", "--K", "1", "--tc", "1"], "--tc are injected times: they need --time-unit"),
        (["--n", "2:4", "--K", "1"], "single values for a run"),
        (["--n", "2", "--K", "1", "--time-unit", "-1"], "--time-unit must be a number of seconds > 0"),
        (["--n", "2", "--K", "1", "--lr", "0"], "--lr must be a finite number > 0"),
        (["--n", "2", "--K", "1", "--problem", "mnist"], "--problem"),
        (["--n", "2", "--K", "1", "--out", "d", "--plot", "d/run.png"], "--plot must be a file whose name and .json"),
    ],
)
def test_cli_run_rejects_bad_arguments_with_one_line(args, match):
    proc = subprocess.run(
        [sys.executable, "-c", "from stalegrad.cli import main; main()", "run", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error:") and match in proc.stderr and proc.stderr.count("\n") == 1


# ---------------------------------------------------------------------------------------------- checkpoint, resume


class Stop(Exception):
    """Raised by a progress callback: the driver's loop ends there, as on Ctrl-C."""


@pytest.mark.slow
def test_a_stopped_run_resumes_with_no_gap_and_no_duplicate(local_ray, tmp_path, check_trace):
    from stalegrad.runtime import run
    from stalegrad.runtime.checkpoint import load_checkpoint

    system = System(n=4, K=2, tc=1, compute=PAPER)
    updates, every = 200, 40

    def stop(status):
        if status["updates"] >= 130:
            raise Stop

    with pytest.raises(Stop) as stopped:
        run(system, LinearRegression(), updates, time_unit=0.01, seed=3, checkpoint_dir=tmp_path,
            checkpoint_every=every, progress=stop)  # fmt: skip
    before = load_checkpoint(tmp_path)
    v = before.version
    assert 130 <= v < updates, "a final checkpoint of the state at the stop, not the periodic one before it"
    assert f"checkpoint at update {v} in '{tmp_path}'" in stopped.value.__notes__[0]
    last = sorted({f"part-{v // every * every:08d}.npz", f"part-{v:08d}.npz"})  # one part if v is a multiple
    assert before.manifest["parts"][-len(last) :] == last
    interrupted = before.counts["dropped"]["interrupted"]
    assert 0 <= interrupted <= 1 + 4, "at most a partial batch (K - 1) and one gradient in flight per worker"
    result = run(system, LinearRegression(), updates, time_unit=0.01, resume=tmp_path)
    check_trace(result, updates, 2)  # updates 1..200, K rows each, no (worker, round) twice
    t = result.trace
    assert result.meta["resumed_from"] == v and t.seed == 3
    # the old trace, untouched, then the new rows
    old = slice(0, v * 2)
    assert all(np.array_equal(t[k][old], before.columns[k]) for k in COLUMNS)
    assert np.array_equal(t.update_times[:v], before.update_times)
    new = t["update"] > v
    assert np.array_equal(np.flatnonzero(new), np.arange(v * 2, updates * 2))
    # versions go on from the checkpoint's: no resumed gradient was computed on a version before it
    assert t["version"][new].min() == v and t["start"][new].min() >= before.time
    for w in range(4):  # every worker's rounds go on above the rounds taken before
        assert t["round"][new & (t["worker"] == w)].min() > t["round"][old][before.columns["worker"] == w].max()
    assert np.array_equal(result.errors[:, 0], np.arange(updates + 1)), "one error per version, none twice"
    assert result.dropped["interrupted"] == interrupted, "the whole run's counts, the stopped session's included"
    after = load_checkpoint(tmp_path)
    assert after.version == updates and after.incarnations == [1, 1, 1, 1]
    assert after.counts["dropped"] == result.dropped
    assert all(np.array_equal(after.columns[k], t[k]) for k in COLUMNS)

    # the command line goes on from there (its arguments from the checkpoint), to 240 updates
    proc = subprocess.run(
        [sys.executable, "-c", "from stalegrad.cli import main; main()", "run", "--resume", str(tmp_path),
         "--updates", "240", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["updates"] == 240 and obj["gradients"] == 480 and obj["resumed_from"] == updates
    assert obj["seed"] == 3 and obj["n"] == 4 and obj["dropped"]["duplicate"] == 0
    final = load_checkpoint(tmp_path)
    assert final.version == 240 and np.array_equal(np.unique(final.columns["update"]), np.arange(1, 241))
    lines = (tmp_path / "trace.csv").read_text().splitlines()
    assert len(lines) == 2 + 480


@pytest.mark.slow
def test_ctrl_c_between_a_snapshot_and_its_write_loses_no_row(local_ray, tmp_path, monkeypatch):
    """Ctrl-C after the master handed a snapshot out and before the driver wrote it: the final checkpoint covers
    that snapshot's rows too (the master counts from the last checkpoint *written*)."""
    from stalegrad.runtime import RunInterrupted, run
    from stalegrad.runtime import checkpoint as ck

    real, calls = ck.write_checkpoint, []

    def flaky(*args, **kwargs):
        calls.append(kwargs["version"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C came right here
        return real(*args, **kwargs)

    monkeypatch.setattr(ck, "write_checkpoint", flaky)
    system = System(n=4, K=2, tc=1, compute=PAPER)
    with pytest.raises(RunInterrupted, match=r"interrupted; checkpoint at update (\d+) in") as stopped:
        run(system, LinearRegression(), 2000, time_unit=0.005, seed=4, checkpoint_dir=tmp_path, checkpoint_every=10)
    v = ck.load_checkpoint(tmp_path).version  # loads: every row of updates 1..v is there, K per update
    assert calls[0] == 10 and calls[1] >= 20 and v >= calls[1] and calls[-1] == v
    assert f"update {v} in" in str(stopped.value)


@pytest.mark.slow
def test_ctrl_c_writes_a_final_checkpoint_that_resumes(tmp_path):
    """SIGINT to ``stalegrad run``: exit 130, one line naming the checkpoint of the state at the interrupt (not the
    periodic one before it), and ``--resume`` goes on from exactly there."""
    import signal
    import time

    from stalegrad.runtime.checkpoint import load_checkpoint

    argv = [sys.executable, "-c", "from stalegrad.cli import main; main()", "run"]
    config = ["--n", "4", "--K", "2", "--tc", "1", "--compute", "shifted_exponential(alpha=1, rate=0.6667)",
              "--time-unit", "0.01", "--seed", "5", "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(
        [*argv, *config, "--updates", "100000", "--checkpoint-every", "25"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (tmp_path / "checkpoint.json").exists():  # the run is going: its first checkpoint is written
            assert proc.poll() is None and time.time() < deadline, "the run ended or never checkpointed"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    ckpt = load_checkpoint(tmp_path)
    v = ckpt.version
    assert proc.returncode == 130
    line = f"Error: interrupted; checkpoint at update {v} in '{tmp_path}' (continue with: stalegrad run --resume"
    assert err.strip().splitlines()[-1].startswith(line), err
    assert v >= 25 and f"part-{v:08d}.npz" in ckpt.manifest["parts"]
    assert not (tmp_path / "trace.csv").exists(), "an interrupted run writes no half result"

    done = subprocess.run([*argv, "--resume", str(tmp_path), "--updates", str(v + 30), "--json"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    obj = json.loads(done.stdout)
    assert obj["resumed_from"] == v and obj["updates"] == v + 30 and obj["gradients"] == 2 * (v + 30)
    final = load_checkpoint(tmp_path)
    assert np.array_equal(np.unique(final.columns["update"]), np.arange(1, v + 31))
    keys = final.columns["worker"].astype(np.int64) * 10**9 + final.columns["round"]
    assert np.unique(keys).size == keys.size, "a (worker, round) was applied twice"
    assert obj["dropped"] == final.counts["dropped"] and obj["dropped"]["interrupted"] <= 1 + 4


# ------------------------------------------------------------------------------------------- real run vs replay


@pytest.mark.slow
def test_the_real_runs_error_falls_as_sgd_replayed_along_its_own_trace(local_ray, check_trace):
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
    from stalegrad.runtime import run
    from stalegrad.train import replay

    problem, lr, b, updates, seeds = LinearRegression(), 0.05, 16, 300, 40
    result = run(System(n=4, K=2, tc=1, compute=PAPER), problem, updates, time_unit=0.01, seed=4, lr=lr, batch=b)
    check_trace(result, updates, 2)
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

    errors, w = sgd_with_the_workers_streams(result.trace, problem, lr, b, seed=4)
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
def test_a_large_model_travels_by_reference_and_trains_exactly(local_ray, check_trace, big_quadratic):
    """``w`` of 160 kB (above ``INLINE_BYTES``): each version is put in the object store once and workers fetch it
    by reference. SGD along the run's Trace with the workers' own streams gives the run's errors and ``w``: every
    gradient was computed on the version its row names."""
    from stalegrad.runtime import run
    from stalegrad.runtime.master import INLINE_BYTES

    dim, lr, b, updates, seed = 20_000, 0.1, 4, 120, 8
    assert dim * 8 > INLINE_BYTES
    problem = big_quadratic(dim)
    result = run(System(n=4, K=2, tc=1, compute=PAPER), problem, updates, time_unit=0.01, seed=seed, lr=lr, batch=b)
    check_trace(result, updates, 2)
    t = result.trace
    assert t["staleness"].max() >= 1, "workers computed on older versions than the newest"
    rngs = [np.random.default_rng(worker_seeds(seed, 4, i)[MINIBATCH]) for i in range(4)]
    last = [0] * 4
    ws = [problem.init()]
    for u in range(1, updates + 1):
        batch = np.zeros(dim)
        for j in np.flatnonzero(t["update"] == u):  # in the order the master took them
            i = int(t["worker"][j])
            assert t["round"][j] == last[i] + 1, "each worker's rounds applied in order, none skipped"
            last[i] += 1
            batch += problem.gradient(ws[t["version"][j]], b, rngs[i])
        ws.append(ws[-1] - (lr / 2) * batch)
    np.testing.assert_allclose([problem.error(w) for w in ws], result.errors[:, 2], rtol=1e-9)
    np.testing.assert_allclose(ws[-1], result.w, rtol=1e-9, atol=1e-12)
    assert result.errors[-1, 2] < 0.05 * result.errors[0, 2]
