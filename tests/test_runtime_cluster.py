"""``stalegrad run --address``: joining an existing Ray cluster (a head node started on loopback here), and a run
over two Ray nodes (two raylets and object stores on this machine: ``ray.cluster_utils.Cluster``)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A Ray head node on 127.0.0.1 with 2 CPUs and no dashboard, stopped at the end."""
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        ray_bin = Path(shutil.which("ray") or "ray")
    port = free_port()
    # the head and its client share a token (Ray authenticates cluster connections with one)
    env = dict(
        os.environ,
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_worker_niceness="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(16),
    )
    start = [
        str(ray_bin),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    subprocess.run(start, check=True, capture_output=True, env=env, timeout=120)
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, env=env, timeout=120, check=False)


def test_run_joins_an_existing_cluster(head, tmp_path):
    address, env = head
    args = [
        "run",
        "--n",
        "2",
        "--K",
        "1",
        "--updates",
        "60",
        "--compute",
        "expon(scale=1)",
        "--tc",
        "0.5",
        "--time-unit",
        "0.01",
        "--seed",
        "3",
        "--address",
        address,
        "--json",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", "from stalegrad.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["updates"] == 60 and obj["gradients"] >= 60


def test_a_run_over_two_nodes_spreads_its_workers_and_sets_their_clocks(check_trace, big_quadratic):
    """Two Ray nodes (each its own raylet and object store): the workers spread over both; those on the second
    node measure their clock offset (one machine: the true offset is 0, so the estimate is within half the round
    trip of 0); a model above ``INLINE_BYTES`` crosses between object stores; the trace is sound and the staleness
    is the exact prediction from the measured times."""
    import numpy as np
    import ray
    from ray.cluster_utils import Cluster

    from stalegrad.distributions import shifted_exponential
    from stalegrad.experiments import compare
    from stalegrad.runtime import run
    from stalegrad.spec import System

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        system = System(n=4, K=2, tc=1, compute=shifted_exponential(alpha=1, rate=2 / 3))
        result = run(system, big_quadratic(20_000), 200, time_unit=0.02, seed=9, lr=0.1, batch=4,
                     address=cluster.address)  # fmt: skip
    finally:
        ray.shutdown()
        cluster.shutdown()
    check_trace(result, 200, 2)
    clocks, master = result.meta["clocks"], result.meta["master_node"]
    away = [c for c in clocks.values() if c["node"] != master]
    assert 1 <= len(away) <= 3, f"workers on both nodes: {clocks}"
    for c in clocks.values():
        if c["node"] == master:
            assert c["offset"] == 0.0 and c["rtt"] == 0.0
        else:
            assert 0 < c["rtt"] < 0.05 and abs(c["offset"]) <= c["rtt"] / 2, c
    comp = compare(result)
    assert abs(comp.rel_diff) < 0.05
    assert np.isfinite(result.errors[:, 2]).all() and result.errors[-1, 2] < 0.05 * result.errors[0, 2]
