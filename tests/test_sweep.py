"""``stalegrad sweep``: one row per point in the shared vocabulary, common random numbers, parallel processes giving
the same rows, and a stopped sweep going on where it stopped."""

from __future__ import annotations

import json

import pytest
import scipy.stats

from stalegrad import System
from stalegrad.experiments.sweep import read_done, run_point_row, run_sweep, sweep_points
from stalegrad.experiments.vocabulary import SHARED_KEYS
from stalegrad.train import LinearRegression

SYSTEMS = [System(n=n, K=K, tc=1, compute=scipy.stats.expon(scale=1.0)) for n in (2, 4) for K in (1, 2)]


def test_every_point_has_a_row_and_a_point_does_not_depend_on_the_others(tmp_path):
    problem = LinearRegression()
    points = sweep_points(SYSTEMS, [1], ["constant"], [0.05], seeds=2)
    rows, ran = run_sweep(points, tmp_path, updates=200, root=7, problem=problem)
    assert ran == len(points) == len(rows) == 8
    for row, point in zip(rows, points, strict=True):
        assert set(SHARED_KEYS) <= set(row)
        assert (row["n"], row["K"], row["replication"]) == (point.system.n, point.system.K, point.replication)
        assert row["time_to_target"] is None or row["time_to_target"] > 0
    alone = run_point_row(points[5], updates=200, root=7, target=None, problem=problem)
    assert alone == rows[5]  # common random numbers: the same row outside the sweep


def test_a_stopped_sweep_goes_on_and_processes_give_the_same_rows(tmp_path):
    problem = LinearRegression()
    points = sweep_points(SYSTEMS[:2], [1, 4], ["constant"], [0.05], seeds=2)
    first, _ = run_sweep(points, tmp_path / "a", updates=150, root=3, problem=problem)
    files = sorted((tmp_path / "a" / "points").glob("*.json"))
    assert len(files) == len(points)
    files[0].unlink()
    files[1].write_text("{cut")  # a file cut by a crash is run again
    again, ran = run_sweep(points, tmp_path / "a", updates=150, root=3, problem=problem)
    assert ran == 2 and again == first
    parallel, ran = run_sweep(points, tmp_path / "b", updates=150, root=3, problem=problem, jobs=2)
    assert ran == len(points) and parallel == first


def test_cli_sweep_json_parquet_and_plot(run_cli, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "s"
    args = ["sweep", "--n", "2,4", "--K", "1", "--tc", "1", "--problem", "linreg", "--step", "0.02,0.05",
            "--seeds", "2", "--seed", "1", "--updates", "300", "--jobs", "1", "--out", str(out),
            "--plot", str(tmp_path / "s.png")]  # fmt: skip
    code, stdout, err = run_cli([*args, "--json"])
    assert code == 0, err
    obj = json.loads(stdout)
    assert obj["points"] == 8 and obj["ran"] == 8 and obj["varied"] == ["n", "step"]
    table = pq.read_table(out / "sweep.parquet")
    assert table.num_rows == 8 and set(SHARED_KEYS) <= set(table.column_names)
    assert b"stalegrad" in table.schema.metadata
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    code, stdout, err = run_cli([*args, "--json"])
    assert code == 0 and json.loads(stdout)["ran"] == 0  # everything done: nothing run again


def test_ctrl_c_keeps_the_points_done(tmp_path, monkeypatch):
    """An interrupt after two points: exit 130, one line with the count and how to go on; the next call runs only
    the rest."""
    from click.testing import CliRunner

    import stalegrad.experiments.sweep as sweep
    from stalegrad.cli import cli

    real, calls = sweep.run_point_row, []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(sweep, "run_point_row", interrupted)
    out = tmp_path / "s"
    args = ["sweep", "--n", "2", "--K", "1,2", "--tc", "1", "--seeds", "2", "--seed", "4", "--updates", "100",
            "--jobs", "1", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(cli, args, standalone_mode=False)
    assert res.exit_code == 130 or getattr(res.exception, "code", None) == 130
    assert len(read_done(out)) == 2
    monkeypatch.setattr(sweep, "run_point_row", real)
    res = CliRunner().invoke(cli, [*args, "--json"], standalone_mode=False)
    assert res.exception is None and json.loads(res.output)["ran"] == 2


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--target", "0.1"], "--target"),
        (["--step", "0"], "--step"),
        (["--policy", "fast"], "--policy"),
        (["--b", "0"], "--b"),
        (["--plot", "x.jpg"], "--plot"),
        (["--address", "nowhere"], "--address"),
        (["--address", "auto", "--jobs", "2"], "--jobs"),
    ],
)
def test_cli_sweep_rejects_bad_input_with_one_line(run_cli, tmp_path, args, match):
    code, _, err = run_cli(["sweep", "--n", "2", "--K", "1", "--out", str(tmp_path / "s"), *args])
    assert code == 2 and err.startswith("Error:") and match in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_sweep_on_a_two_node_ray_cluster_gives_the_local_rows(tmp_path, monkeypatch):
    """The points as Ray tasks on two Ray nodes (``ray.cluster_utils.Cluster``: two raylets on this machine, the
    test's own, in its own temporary folder, stopped by the test and only it) give the rows of the local run."""
    pytest.importorskip("ray")
    import shutil
    import tempfile
    from pathlib import Path

    import ray
    from ray.cluster_utils import Cluster

    problem = LinearRegression()
    points = sweep_points(SYSTEMS[:2], [1], ["constant"], [0.05, 0.02], seeds=2)
    local, _ = run_sweep(points, tmp_path / "local", updates=150, root=11, problem=problem)
    root = Path(tempfile.mkdtemp(prefix="sg-ray-"))
    monkeypatch.setenv("RAY_TMPDIR", str(root))
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        remote, ran = run_sweep(points, tmp_path / "ray", updates=150, root=11, problem=problem,
                                address=cluster.address)  # fmt: skip
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    assert ran == len(points) and remote == local
