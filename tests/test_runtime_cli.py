"""``stalegrad run``: the command line of a real run. Each run is its own process with its own local Ray instance
(as a user's is); this module runs after ``tests/test_runtime.py`` has shut its shared instance down, so that two
instances never share the machine's two cores. Its usage errors are checked in this process (they fail before Ray
starts).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from stalegrad.experiments.vocabulary import SHARED_KEYS
from stalegrad.trace import COLUMNS

CLI = [sys.executable, "-c", "from stalegrad.cli import main; main()", "run"]
PAPER = "shifted_exponential(alpha=1, rate=0.6667)"


@pytest.mark.slow
def test_cli_run_prints_json_and_writes_the_trace(tmp_path):
    args = ["--problem", "logreg", "--n", "2", "--K", "1", "--updates", "40", "--tc", "1", "--compute", PAPER,
            "--time-unit", "0.01", "--seed", "1", "--out", str(tmp_path), "--plot", str(tmp_path / "fig.png"),
            "--json"]  # fmt: skip
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["updates"] == 40 and obj["gradients"] == 40 and obj["dropped"]["duplicate"] == 0
    assert set(SHARED_KEYS) <= set(obj) and {"staleness_exact_configured", "ray_latency_ms", "step", "b"} <= set(obj)
    assert obj["protocol"] == "k-batch-async" and obj["n"] == 2 and obj["K"] == 1 and obj["tc"] == 1.0
    assert obj["staleness_mean"] is not None and obj["update_rate"] > 0 and obj["update_rate_exact"] > 0
    lines = (tmp_path / "trace.csv").read_text().splitlines()
    assert lines[0].startswith("# stalegrad-metadata:") and lines[1] == ",".join(COLUMNS) and len(lines) == 42
    from stalegrad.trace_io import read_trace

    trace = read_trace(tmp_path / "trace.csv")  # the library's format: it loads back, with its system and seed
    assert trace.updates == 40 and trace.seed == 1 and trace.system.n == 2
    assert json.loads((tmp_path / "run.json").read_text())["run"]["seed"] == 1
    assert len((tmp_path / "errors.csv").read_text().splitlines()) == 1 + 1 + 41  # metadata, header, w_0..w_40
    assert obj["problem"] == "logreg" and obj["error_last"] < obj["error_first"]
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure = json.loads((tmp_path / "fig.json").read_text())  # the figure's numbers, beside it
    assert figure["run"]["staleness_mean"] == obj["staleness_mean"] and "measured" in figure["systems"]
    assert abs(sum(figure["staleness_pmf_configured"]) - 1) < 1e-6  # the configured system's predicted law


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--n", "2", "--K", "1", "--tc", "1"], "--tc are injected times: they need --time-unit"),
        (["--n", "2:4", "--K", "1"], "single values for a run"),
        (["--n", "2", "--K", "1", "--time-unit", "-1"], "--time-unit must be a number of seconds > 0"),
        (["--n", "2", "--K", "1", "--step", "0"], "--step must be a finite number > 0"),
        (["--n", "2", "--K", "1", "--b", "0"], "--b"),
        (["--n", "2", "--K", "1", "--problem", "mnist"], "--problem"),
        (["--n", "2", "--K", "1", "--out", ".", "--plot", "./run.png"], "--plot must be a file whose name and .json"),
        (["--n", "2", "--K", "1", "--protocol", "k-sync,sync"], "--protocol must be one of k-batch-async"),
        (["--n", "2", "--K", "1", "--lr", "0.1"], "No such option '--lr': it is now --step"),
        (["--n", "2", "--K", "1", "--batch", "4"], "No such option '--batch': it is now --b"),
        (["--n", "2", "--K", "1", "--address", " "], "--address must be 'auto' or HOST:PORT"),
        (["--n", "2", "--K", "1", "--out", "/proc/nope/x"], "--out must be a folder whose parent exists"),
        (["--n", "2", "--K", "1", "--plot", "run.jpg"], "--plot must be a file name ending in .png"),
        (["--n", "2", "--K", "1", "--plot", "/nope/run.png"], "--plot must be a file in an existing folder"),
    ],
)
def test_cli_run_rejects_bad_arguments_with_one_line(cli_here, args, match):
    code, _, err = cli_here(["run", *args])
    assert code == 2
    assert err.startswith("Error:") and match in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_ctrl_c_writes_a_final_checkpoint_that_resumes(tmp_path):
    """SIGINT to ``stalegrad run``: exit 130, one line naming the checkpoint of the state at the interrupt (not the
    periodic one before it), and ``--resume`` (every other option from the checkpoint) goes on from exactly there.
    The deadlines (300 s) are for a hang only: on this machine each step takes seconds, with both cores busy."""
    from stalegrad.runtime.checkpoint import load_checkpoint
    from stalegrad.trace_io import read_trace

    config = ["--n", "2", "--K", "2", "--tc", "1", "--compute", PAPER, "--time-unit", "0.01", "--seed", "5",
              "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(
        [*CLI, *config, "--updates", "100000", "--checkpoint-every", "25"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "checkpoint.json").exists():  # the run is going: its first checkpoint is written
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended or never checkpointed"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    ckpt = load_checkpoint(tmp_path)
    v = ckpt.version
    assert proc.returncode == 130
    line = f"Error: interrupted; checkpoint at update {v} in '{tmp_path}' (continue with: stalegrad run --resume"
    assert err.strip().splitlines()[-1].startswith(line), err
    assert v >= 25 and ckpt.manifest["parts"][-1] == f"part-{v:08d}.npz"
    assert all(int(p[5:13]) % 25 == 0 for p in ckpt.manifest["parts"][:-1]), "periodic parts at multiples of 25"
    assert not (tmp_path / "trace.csv").exists(), "an interrupted run writes no half result"

    done = subprocess.run([*CLI, "--resume", str(tmp_path), "--updates", str(v + 30), "--json"],
                          capture_output=True, text=True, check=False, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    obj = json.loads(done.stdout)
    assert obj["resumed_from"] == v and obj["updates"] == v + 30 and obj["gradients"] == 2 * (v + 30)
    assert obj["seed"] == 5 and obj["n"] == 2 and obj["K"] == 2 and obj["dropped"]["duplicate"] == 0
    final = load_checkpoint(tmp_path)
    assert np.array_equal(np.unique(final.columns["update"]), np.arange(1, v + 31))
    keys = final.columns["worker"].astype(np.int64) * 10**9 + final.columns["round"]
    assert np.unique(keys).size == keys.size, "a (worker, round) was applied twice"
    assert obj["dropped"] == final.counts["dropped"] and obj["dropped"]["interrupted"] <= 1 + 2
    trace = read_trace(tmp_path / "trace.csv")  # the whole run's, both sessions'
    assert trace.updates == v + 30 and len(trace) == 2 * (v + 30)
    assert all(np.array_equal(trace[k], final.columns[k]) for k in ("worker", "round", "version", "update"))
