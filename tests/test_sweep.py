"""``stalegrad sweep``: one row per point in the shared vocabulary, common random numbers, parallel processes giving
the same rows, and a stopped sweep going on where it stopped."""

from __future__ import annotations

import json

import pytest
import scipy.stats

from stalegrad import System
from stalegrad.artefacts import dumps
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


# ----------------------------------------------------------------------------------------- optimal-time protocols

HET = ["--n", "4", "--K", "1", "--compute", "2*expon(scale=1)", "--compute", "2*expon(scale=8)", "--tc", "0.5"]


def test_cli_sweep_over_workers_thresholds_and_cutoffs(run_cli, tmp_path):
    """--workers (fastest:1,2 and all), ringmaster's --delay-threshold list and mindflayer's repeated --cutoff:
    the product of them, each row with the shared keys (active_workers, delay_threshold) and its cutoffs, and each
    row the one of its system built directly (the sweep made the right system; common random numbers)."""
    out = tmp_path / "s"
    args = ["sweep", *HET, "--workers", "fastest:1,2", "--workers", "all", "--protocol", "ringmaster,mindflayer",
            "--delay-threshold", "1,4", "--cutoff", "1", "--cutoff", "0.5,0.5,3,3", "--seeds", "1", "--seed", "2",
            "--updates", "150", "--jobs", "1", "--out", str(out), "--plot", str(tmp_path / "s.png"),
            "--json"]  # fmt: skip
    code, stdout, err = run_cli(args)
    assert code == 0, err
    obj = json.loads(stdout)
    rows = obj["rows"]
    assert len(rows) == 3 * 2 + 3 * 2  # workers x (ringmaster's R, mindflayer's cutoffs)
    assert {"protocol", "active_workers", "delay_threshold", "cutoffs"} <= set(obj["varied"])
    fast = {1: [0], 2: [0, 1], 4: None}
    seen = set()
    for r in rows:
        assert set(SHARED_KEYS) <= set(r)
        size = 4 if r["active_workers"] is None else len(r["active_workers"])
        assert r["active_workers"] == fast[size]
        if r["protocol"] == "ringmaster":
            assert r["delay_threshold"] in (1, 4) and r["cutoffs"] is None
            extra = {"delay_threshold": r["delay_threshold"]}
        else:
            assert r["delay_threshold"] is None and r["cutoffs"] in ([1.0] * 4, [0.5, 0.5, 3.0, 3.0])
            extra = {"cutoffs": r["cutoffs"]}
        seen.add((r["protocol"], size, r["delay_threshold"], str(r["cutoffs"])))
        system = System(n=4, K=1, tc=0.5, compute=[scipy.stats.expon(scale=m) for m in (1, 1, 8, 8)],
                        protocol=r["protocol"], workers=r["active_workers"], **extra)  # fmt: skip
        point = sweep_points([system], [1], ["constant"], [0.05], seeds=1)[0]
        alone = json.loads(dumps(run_point_row(point, updates=150, root=2, target=None)))  # NaN as null
        for k in SHARED_KEYS:  # (the exact rate is an integral: its last bits differ between processes)
            assert alone[k] == (pytest.approx(r[k], rel=1e-12) if isinstance(r[k], float) else r[k]), k
    assert len(seen) == len(rows)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_mindflayer_cutoffs_grow_with_b_as_the_work():
    """A round of minibatch b takes b times a draw, and its cutoff b times the given one (as train's
    --scale-compute): the point at b = 2 has the timeline of the system with both doubled at b = 1."""
    from stalegrad.distributions import scaled

    laws = [scipy.stats.lognorm(s=1.0, scale=m) for m in (1.0, 3.0)]
    given = System(n=2, K=2, tc=0.2, compute=laws, protocol="mindflayer", cutoffs=[1.5, 4.0])
    doubled = System(n=2, K=2, tc=0.2, compute=[scaled(m, 2) for m in laws], protocol="mindflayer",
                     cutoffs=[3.0, 8.0])  # fmt: skip
    a = run_point_row(sweep_points([given], [2], ["constant"], [0.05], 1)[0], updates=300, root=5, target=None)
    b = run_point_row(sweep_points([doubled], [1], ["constant"], [0.05], 1)[0], updates=300, root=5, target=None)
    assert a["cutoffs"] == [1.5, 4.0] and b["cutoffs"] == [3.0, 8.0]
    for key in ("update_rate", "wasted_compute", "staleness_mean", "update_rate_exact"):
        assert a[key] == pytest.approx(b[key], rel=1e-12), key


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--protocol", "ringmaster", "--delay-threshold", "0,2"], "--delay-threshold"),
        (["--delay-threshold", "2"], "--delay-threshold"),
        (["--protocol", "mindflayer", "--cutoff", "1,2,3"], "cutoffs"),
        (["--cutoff", "1"], "--cutoff"),
        (["--workers", "fastest:9"], "workers"),
        (["--workers", "fastest:1,x"], "--workers"),
    ],
)
def test_cli_sweep_rejects_bad_protocol_options_with_one_line(run_cli, tmp_path, args, match):
    code, _, err = run_cli(["sweep", *HET, "--out", str(tmp_path / "s"), *args])
    assert code == 2 and err.startswith("Error:") and match in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()
