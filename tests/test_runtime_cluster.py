"""``stalegrad run --address``: joining an existing Ray cluster (a head node started on loopback here)."""

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
