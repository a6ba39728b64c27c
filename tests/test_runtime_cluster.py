"""Ray clusters: a run over two Ray nodes (two raylets and object stores on this machine:
``ray.cluster_utils.Cluster``); ``stalegrad run --address`` joining a head node started with ``ray start``; and
such a head node never capturing a local run.

Each cluster here is the test's own and is stopped by the test, and only it: its processes are the test's
children (the head node: one process group, signalled as a whole), its temporary folder is its own (``RAY_TMPDIR``,
``--temp-dir``), so its address file (``ray_current_cluster``) is never the machine's ``/tmp/ray/...``, through which
a plain ``ray.init()`` elsewhere would join it. (``ray stop`` would stop every Ray instance on the machine.) The two
clusters are never up together: the head node's fixture is set up after the two-node test.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def own_temp_root() -> Path:
    """A temporary folder for one cluster; short, as Ray's socket paths under it must fit in 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="sg-ray-"))


def test_a_run_over_two_nodes_spreads_its_workers_and_sets_their_clocks(
    check_trace, big_quadratic, sgd_along, monkeypatch
):
    """Two Ray nodes (each its own raylet and object store): the workers spread over both; those on the second
    node measure their clock offset (one machine: the true offset is 0, so the estimate is within half the round
    trip of 0); a model above ``INLINE_BYTES`` crosses between object stores; the trace is sound, and SGD along it
    with the workers' own streams gives the run's errors and ``w``: every gradient, on either node, was computed on
    the version its row names.

    (Not compared with the prediction from the measured times: crossing object stores adds a delay of its own to
    the versions fetched on the second node -- milliseconds, tens on a loaded machine, so up to a time unit -- and
    the measured system has one mean delay for every worker. The prediction is checked on one node, in
    ``tests/test_runtime.py``.)"""
    import numpy as np
    import ray
    from ray.cluster_utils import Cluster

    from stalegrad.distributions import shifted_exponential
    from stalegrad.runtime import run
    from stalegrad.spec import System

    root = own_temp_root()
    monkeypatch.setenv("RAY_TMPDIR", str(root))  # the cluster's files, its address file included, in its own folder
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        system = System(n=4, K=2, tc=1, compute=shifted_exponential(alpha=1, rate=2 / 3))
        problem = big_quadratic(20_000)
        result = run(system, problem, 120, time_unit=0.01, seed=9, lr=0.1, batch=4, address=cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    check_trace(result, 120, 2)
    clocks, master = result.meta["clocks"], result.meta["master_node"]
    away = [c for c in clocks.values() if c["node"] != master]
    assert 1 <= len(away) <= 3, f"workers on both nodes: {clocks}"
    for c in clocks.values():
        if c["node"] == master:
            assert c["offset"] == 0.0 and c["rtt"] == 0.0
        else:  # a round trip under a second (measured: a millisecond or two) bounds the error to half a second
            assert 0 < c["rtt"] < 1.0 and abs(c["offset"]) <= c["rtt"] / 2, c
    errors, w = sgd_along(result, problem, 0.1, 4, 9)
    np.testing.assert_allclose(errors, result.errors[:, 2], rtol=1e-9)
    np.testing.assert_allclose(w, result.w, rtol=1e-9, atol=1e-12)
    assert result.errors[-1, 2] < 0.05 * result.errors[0, 2]


def _stop(proc: subprocess.Popen) -> None:
    """Stop a ``ray start --block`` and every process it started (its process group): politely (it then stops its
    processes and exits), then, whatever is left after 30 s, not."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def head():
    """A Ray head node on 127.0.0.1 with 2 CPUs and no dashboard, in a temporary folder and a process group of its
    own; yields its address, the environment that reaches it and its folder's root (``RAY_TMPDIR``)."""
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        ray_bin = Path(shutil.which("ray") or "ray")
    root = own_temp_root()
    temp = root / "ray"  # where a plain ray.init() with RAY_TMPDIR=root looks for a cluster to join
    # the head and its client share a token (Ray authenticates cluster connections with one)
    env = dict(
        os.environ,
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_worker_niceness="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(16),
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # on SIGTERM, stop at once (nothing to drain)
    )
    env.pop("RAY_ADDRESS", None)
    proc = address = None
    for _ in range(5):  # a port free when asked may be taken before Ray binds it: then try others
        ports = [free_port() for _ in range(2)]  # the cluster's, and its dashboard agent's (Ray's default: 52365)
        start = [
            str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={ports[0]}",
            f"--dashboard-agent-listen-port={ports[1]}", "--num-cpus=2", "--include-dashboard=false",
            "--disable-usage-stats", f"--temp-dir={temp}",
        ]  # fmt: skip
        log = open(root / "ray-start.log", "ab")  # noqa: SIM115 - the child writes to it until it is stopped
        proc = subprocess.Popen(start, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 300  # a hang only: it takes seconds
        marker = temp / "ray_current_cluster"  # written by `ray start` once the head is up
        while proc.poll() is None and not marker.is_file():
            assert time.monotonic() < deadline, "ray start --head never came up"
            time.sleep(0.1)
        if proc.poll() is None:
            address = marker.read_text().strip()
            break
        _stop(proc)
    if address is None:
        tail = (root / "ray-start.log").read_text(errors="replace")[-2000:]
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"ray start --head failed 5 times: {tail}")
    try:
        yield address, env, root
    finally:
        _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def test_run_joins_an_existing_cluster(head):
    address, env, _ = head
    args = ["run", "--n", "2", "--K", "1", "--updates", "60", "--compute", "expon(scale=1)", "--tc", "0.5",
            "--time-unit", "0.01", "--seed", "3", "--address", address, "--json"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", "from stalegrad.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["updates"] == 60 and obj["gradients"] >= 60


def test_a_stray_head_node_never_captures_a_local_run(head):
    """Where a head node's address file is found (here: ``RAY_TMPDIR`` names its folder, as ``/tmp/ray`` does for a
    head started with the defaults), a plain ``ray.init(num_cpus=...)`` tries to join it and fails; the runtime's
    local instance is started explicitly local and has its own CPU (1, where the head has 2)."""
    _, env, root = head
    code = (
        "import ray\n"
        "from stalegrad.runtime import start_local\n"
        "try:\n"
        "    ray.init(num_cpus=1, include_dashboard=False)\n"
        "except ValueError as exc:\n"
        "    print('a plain init joins:', exc)\n"
        "else:\n"
        "    raise SystemExit('a plain ray.init() started an instance: the head node is not in its way')\n"
        "print('local', start_local(num_cpus=1)['started'], ray.cluster_resources().get('CPU'))\n"
        "ray.shutdown()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "RAY_TMPDIR": str(root)},
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("a plain init joins: When connecting to an existing cluster"), proc.stdout
    assert lines[-1] == "local True 1.0", proc.stdout
