"""Faults injected into real runs of ``stalegrad run``, each from outside, as they happen to a user: a worker's or
the master's process killed (SIGKILL), two quick Ctrl-Cs, the driver killed. Each run is its own process with its
own local Ray instance (this module runs after ``tests/test_runtime.py`` has shut its shared one down).

After each: the clean outcome (the exit status, the one line said, output that parses), the count identity (every
gradient that reached the master is a row of the trace or a drop counted by reason), at-most-once (no
``(worker, round)`` applied twice), and no process of the run's Ray instance left -- found by the mark every one of
them carries (:mod:`stalegrad.runtime.instance`), so that no other Ray process on the machine is looked at.

The deadlines (300 s) are for a hang only: on this machine each step takes seconds, with both cores busy.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from stalegrad.runtime.checkpoint import load_checkpoint
from stalegrad.runtime.instance import MARK, _psutil, marked

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from stalegrad.cli import main; main()", "run"]
PAPER = "shifted_exponential(alpha=1, rate=0.6667)"
CONFIG = ["--n", "3", "--K", "2", "--tc", "1", "--compute", PAPER, "--time-unit", "0.01", "--seed", "7"]
HANG = 300.0


def own(pid):
    """The live processes of the Ray instance the run with driver ``pid`` started."""
    return [proc for proc, mark in marked() if mark.split(":")[0] == str(pid)]


def start(tmp_path, *args):
    """``stalegrad run`` with checkpoints every 25 updates into ``tmp_path``, once its first checkpoint is written."""
    proc = subprocess.Popen(
        [*CLI, *CONFIG, "--out", str(tmp_path), "--checkpoint-every", "25", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + HANG
    while not (tmp_path / "checkpoint.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run ended or never checkpointed: {proc.communicate()}")
        time.sleep(0.05)
    return proc


def actor(proc, name):
    """The process of actor ``name`` (``ray::Master``, ``ray::Worker``) of the run ``proc``."""
    found = [p for p in own(proc.pid) if p.name().startswith(name)]
    assert found, f"no {name} among {[p.name() for p in own(proc.pid)]}"
    return found[0]


def finish(proc):
    try:
        out, err = proc.communicate(timeout=HANG)
    finally:
        proc.kill()
    return out, err


def check_counts(obj, columns):
    """The count identity and at-most-once, on a run's JSON and its trace's columns (the whole run's)."""
    assert obj["gradients"] == len(columns["worker"])
    assert obj["gradients"] + sum(obj["dropped"].values()) == obj["gradients_received"], obj
    assert obj["dropped"]["duplicate"] == 0 and obj["dropped"]["bad_version"] == 0
    keys = columns["worker"].astype(np.int64) * 10**9 + columns["round"]
    assert np.unique(keys).size == keys.size, "a (worker, round) was applied twice"


def resume(tmp_path, updates):
    """Resume the run checkpointed in ``tmp_path`` to ``updates``; its JSON, after checking it."""
    done = subprocess.run([*CLI, "--resume", str(tmp_path), "--updates", str(updates), "--json"],
                          capture_output=True, text=True, check=False, timeout=HANG)  # fmt: skip
    assert done.returncode == 0, done.stderr
    obj = json.loads(done.stdout)
    final = load_checkpoint(tmp_path)
    assert obj["updates"] == updates and final.version == updates
    check_counts(obj, final.columns)
    assert np.array_equal(np.unique(final.columns["update"]), np.arange(1, updates + 1))
    return obj


def test_a_killed_worker_leaves_json_that_parses_and_a_comparison_that_names_it(tmp_path):
    proc = start(tmp_path, "--updates", "300", "--json")
    actor(proc, "ray::Worker").kill()
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert own(proc.pid) == [], "a process of the run's Ray instance outlived it"
    obj = json.loads(out)  # nothing but the result on stdout
    assert "A worker died" not in err and "Traceback" not in err and "Token authentication" not in err, err
    [[worker, seen]] = obj["lost"]
    assert obj["restarted"] == [] and obj["updates"] == 300 and obj["lost_workers"] == [worker]
    assert f"lost worker {worker} at update {seen} (not restarted): compared on updates 1.." in obj["caveat"]
    assert obj["compared"][0] == 1 and obj["compared"][1] <= seen
    from stalegrad.trace_io import read_trace

    trace = read_trace(tmp_path / "trace.csv")
    check_counts(obj, trace.columns)
    assert not np.any(trace["worker"][trace["update"] > seen + 10] == worker), "the dead worker's gradients stop"


def test_a_killed_master_is_one_line_with_the_checkpoint_and_the_command_that_resumes_it(tmp_path):
    proc = start(tmp_path, "--updates", "100000", "--json")
    actor(proc, "ray::Master").kill()
    out, err = finish(proc)
    assert proc.returncode == 1 and out == ""
    assert own(proc.pid) == [], "a process of the run's Ray instance outlived it"
    [line] = err.strip().splitlines()  # one line: no Ray traceback, no notice of Ray's
    v = load_checkpoint(tmp_path).version
    expected = (
        rf"Error: the master actor died \(the run was at update (\d+) of 100000\); checkpoint at update {v} in "
        rf"'{re.escape(str(tmp_path))}' \(continue with: stalegrad run --resume {re.escape(str(tmp_path))}\)"
    )
    match = re.fullmatch(expected, line)
    assert match and int(match[1]) >= v, line
    obj = resume(tmp_path, v + 20)
    assert obj["resumed_from"] == v


@pytest.mark.parametrize("gap", [0.05, 0.3, 0.6])
def test_two_ctrl_cs_exit_130_with_the_checkpoint_and_leave_no_process(tmp_path, gap):
    """SIGINT, then another ``gap`` seconds later (while the final checkpoint is written or Ray shut down): exit 130,
    the checkpoint of the state at the interrupt named, the second noted, nothing of the run's Ray left."""
    proc = start(tmp_path, "--updates", "100000")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _, err = finish(proc)
    assert proc.returncode == 130, err
    assert own(proc.pid) == [], "a process of the run's Ray instance outlived it"
    assert "Traceback" not in err, err
    ckpt = load_checkpoint(tmp_path)  # loads: updates 1..v, K rows each, rounds and watermarks agree
    v, counts = ckpt.version, ckpt.counts
    # the count identity of the state the run stopped at, and at-most-once
    assert len(ckpt.columns["worker"]) + sum(counts["dropped"].values()) == counts["received"], counts
    keys = ckpt.columns["worker"].astype(np.int64) * 10**9 + ckpt.columns["round"]
    assert np.unique(keys).size == keys.size, "a (worker, round) was applied twice"
    line = (
        f"Error: interrupted; checkpoint at update {v} in '{tmp_path}' (continue with: stalegrad run --resume "
        f"{tmp_path})"
    )
    assert err.strip().splitlines()[-1] == line, err
    if gap == 0.3:
        # well within the final checkpoint and Ray's shutdown (seconds), and after Python took the first Ctrl-C (it
        # checks for signals at least every poll, 0.1 s; two that come within one blocking call are taken as one)
        assert "Ctrl-C again: noted; the final checkpoint is written and Ray stopped first" in err, err
        # once: the interrupted run goes on, every gradient accounted for
        resume(tmp_path, v + 20)


def test_a_killed_drivers_processes_are_stopped_by_the_next_run_and_no_other(tmp_path):
    """SIGKILL of the driver: Ray's agents outlive it (re-parented to init). The next run -- here the resume --
    stops them first; a process marked by a run whose driver still runs (this test process) and an unmarked one
    are left alone."""
    psutil = _psutil()
    me = psutil.Process(os.getpid())
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    alive_owner = subprocess.Popen(sleep, env={**os.environ, MARK: f"{me.pid}:{me.create_time():.3f}:decoy"})
    unmarked = subprocess.Popen(sleep, env={k: v for k, v in os.environ.items() if k != MARK})
    dead_owner = subprocess.Popen(sleep, env={**os.environ, MARK: "1:0.000:gone"})  # pid 1 did not start at 0
    try:
        proc = start(tmp_path, "--updates", "100000")
        driver = proc.pid
        proc.kill()
        proc.communicate(timeout=HANG)
        time.sleep(1.0)
        left = own(driver)
        print(f"\nleft by the killed driver: {sorted(p.name() for p in left)}")
        v = load_checkpoint(tmp_path).version
        resume(tmp_path, v + 20)
        assert not [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert own(driver) == []
        assert alive_owner.poll() is None and unmarked.poll() is None, "a process not the killed run's was stopped"
        assert dead_owner.wait(timeout=10) is not None, "a process marked by a run that is gone is stopped too"
    finally:
        for p in (alive_owner, unmarked, dead_owner):
            p.kill()
            p.wait()
