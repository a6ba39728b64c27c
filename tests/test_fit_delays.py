"""Delays: communication time from model size (--model-bytes, --bandwidth, --latency) on every command that takes
delays, and --fit-delays (per-worker delays fitted like compute times; the System takes each class's law)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats

from stalegrad import System
from stalegrad.cli.link_options import link_delay
from stalegrad.errors import SpecError
from stalegrad.fit import Records, fit_cluster, write_system_file

COMPUTE = scipy.stats.gamma(a=3.0, loc=1.0, scale=0.25)


def test_link_delay_is_latency_plus_bytes_over_bandwidth():
    assert link_delay("4e8", "1.25e9", "0.001") == pytest.approx(0.321)
    assert link_delay("4e8", "1.25e9", None) == pytest.approx(0.32)
    assert link_delay(None, None, "0.002") == 0.002
    assert link_delay(None, None, None) is None


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--model-bytes", "1e6"], "--model-bytes must be given with --bandwidth (both, or neither), got '1e6'"),
        (["--bandwidth", "1e6"], "--bandwidth must be given with --model-bytes"),
        (["--model-bytes", "-1", "--bandwidth", "1e6"], "--model-bytes must be a finite number >= 0, got '-1'"),
        (["--model-bytes", "1", "--bandwidth", "0"], "--bandwidth must be a finite number > 0, got '0'"),
        (["--latency", "nan"], "--latency must be a finite number >= 0, got 'nan'"),
        (["--latency", "x"], "--latency must be a finite number >= 0, got 'x'"),
        (["--latency", "0.1", "--uplink", "0.5"], "--uplink must be left out when --latency is given"),
        (
            ["--model-bytes", "1", "--bandwidth", "2", "--downlink", "0.5"],
            "--downlink must be left out when --model-bytes",
        ),
        (["--model-bytes", "1", "--bandwidth", "2", "--tc", "1"], "--tc must be left out when --model-bytes"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "simulate", "compare", "train"])
def test_bad_link_options_are_one_error_line(cli_here, command, args, match):
    code, _, err = cli_here([command, "--n", "4", "--K", "2", *args])
    assert code == 2 and err.startswith("Error:") and match in err and err.count("\n") == 1


def test_predict_takes_the_delay_per_direction(cli_here):
    code, stdout, err = cli_here(
        ["predict", "--n", "4", "--K", "2", "--model-bytes", "4e6", "--bandwidth", "1e8", "--latency", "0.01", "--json"]
    )
    assert code == 0, err
    row = json.loads(stdout)
    assert row["tc"] == pytest.approx(2 * (0.01 + 0.04))
    assert row["system"]["uplink"] == row["system"]["downlink"] == pytest.approx(0.05)


def _records(rng, uplink_scales, downlink=True, rounds=400):
    workers = np.repeat([f"w{k}" for k in range(len(uplink_scales))], rounds)
    times = COMPUTE.rvs(size=workers.size, random_state=rng)
    up = np.concatenate([0.01 + rng.exponential(s, rounds) for s in uplink_scales])
    down = 0.02 + rng.gamma(2.0, 0.01, workers.size) if downlink else None
    return Records.from_arrays(workers, times, uplink=up, downlink=down)


def test_delays_are_fixed_at_their_mean_by_default():
    records = _records(np.random.default_rng(1), [0.05] * 4)
    cluster = fit_cluster(records, gof_samples=0, seed=1)
    assert cluster.system.uplink == pytest.approx(np.mean(records.uplink))
    assert cluster.system.downlink == pytest.approx(np.mean(records.downlink))
    assert cluster.uplink.how == "mean, every worker pooled" and not cluster.delay_warnings


def test_fit_delays_fits_one_law_per_direction_for_alike_workers():
    """Four workers with the same uplink law (0.01 + Exp(0.05)) and downlink (0.02 + Gamma(2, 0.01)), 400 rounds
    each: one class per direction, the fitted means within 5% and the shifts found."""
    cluster = fit_cluster(_records(np.random.default_rng(2), [0.05] * 4), gof_samples=0, seed=1, fit_delays=True)
    up, down = cluster.system.uplink, cluster.system.downlink
    assert not isinstance(up, float) and not isinstance(down, float)
    assert float(up.mean()) == pytest.approx(0.06, rel=0.05) and float(down.mean()) == pytest.approx(0.04, rel=0.05)
    assert float(up.support()[0]) == pytest.approx(0.01, abs=1e-3)
    assert len(cluster.uplink.classes) == 1 and not cluster.delay_warnings
    assert cluster.system.tc == pytest.approx(0.1, rel=0.05)


def test_fit_delays_gives_each_class_of_workers_its_own_law(tmp_path):
    """Two workers with uplinks 5 times slower than the others': two classes, each fitted, and the System takes
    each worker's class law (per-worker delays); the downlink, not in the records, is taken equal per worker."""
    records = _records(np.random.default_rng(3), [0.02, 0.02, 0.1, 0.1], downlink=False)
    cluster = fit_cluster(records, gof_samples=0, seed=1, fit_delays=True)
    assert sorted(w for w, _ in cluster.uplink.classes) == [("w0", "w1"), ("w2", "w3")]
    assert not [w for w in cluster.warnings() if "delays" in w]
    system = cluster.system
    assert system.per_worker_delays and isinstance(system.uplink, tuple)
    order = cluster.worker_order()
    for i, w in enumerate(order):
        mine = records.delays("uplink")[w]
        assert float(system.uplink_of(i).mean()) == pytest.approx(mine.mean(), rel=0.1)
        assert system.downlink_of(i) is system.uplink_of(i)
    path = tmp_path / "c.json"
    write_system_file(path, cluster)
    doc = json.loads(path.read_text())
    delays = doc["delays"]
    assert [c["workers"] for c in delays["uplink"]["classes"]] == [["w0", "w1"], ["w2", "w3"]]
    assert delays["uplink"]["pooled"]["records"] == 1600
    assert delays["downlink"]["how"] == "taken equal to the uplink (not in the records)"
    assert isinstance(doc["uplink"], list) and len(doc["uplink"]) == 2
    again = System.from_dict(doc)
    assert again.to_dict()["uplink"] == doc["uplink"] and again.tcs == pytest.approx(system.tcs)


def test_delays_differing_between_workers_are_fixed_at_each_class_mean():
    """By default (no --fit-delays) each class of workers takes its pooled mean: two fixed uplinks, one downlink."""
    records = _records(np.random.default_rng(3), [0.02, 0.02, 0.1, 0.1])
    cluster = fit_cluster(records, gof_samples=0, seed=1)
    up = cluster.system.uplink
    assert isinstance(up, tuple) and all(isinstance(d, float) for d in up)
    by_worker = dict(zip(cluster.worker_order(), up, strict=True))
    for members in (("w0", "w1"), ("w2", "w3")):
        pooled = np.concatenate([records.delays("uplink")[w] for w in members])
        assert [by_worker[w] for w in members] == [pytest.approx(pooled.mean())] * 2
    assert cluster.system.downlink == pytest.approx(np.mean(records.downlink))
    assert cluster.uplink.how == "mean per class of workers (2 classes)"
    assert any("uplink delays differ between workers (2 classes)" in note for note in cluster.notes)


def test_fixed_delays_per_worker_are_taken_as_they_are():
    """Each worker's delay is one value (a simulation's fixed delays): the workers take theirs, fitted or not."""
    rng = np.random.default_rng(5)
    workers = np.repeat(["a", "b", "c"], 50)
    times = COMPUTE.rvs(size=workers.size, random_state=rng)
    up = np.repeat([0.1, 0.1, 0.4], 50)
    for fit in (False, True):
        cluster = fit_cluster(Records.from_arrays(workers, times, uplink=up), gof_samples=0, fit_delays=fit)
        by_worker = dict(zip(cluster.worker_order(), cluster.system.uplink, strict=True))
        assert by_worker == {"a": pytest.approx(0.1), "b": pytest.approx(0.1), "c": pytest.approx(0.4)}


def test_fixed_or_zero_delays_are_not_fitted():
    rng = np.random.default_rng(4)
    times = COMPUTE.rvs(size=40, random_state=rng)
    fixed = fit_cluster(Records.from_arrays(["a"] * 40, times, uplink=np.full(40, 0.3)), gof_samples=0, fit_delays=True)
    assert fixed.system.uplink == 0.3 and fixed.uplink.how.startswith("fixed")
    zeros = np.where(np.arange(40) % 2 == 0, 0.0, 0.2)
    some = fit_cluster(Records.from_arrays(["a"] * 40, times, uplink=zeros), gof_samples=0, fit_delays=True)
    assert some.system.uplink == pytest.approx(0.1) and "some delays are 0" in some.uplink.how


def test_given_delays_replace_the_records():
    records = _records(np.random.default_rng(5), [0.05] * 2)
    cluster = fit_cluster(records, gof_samples=0, seed=1, delay=0.25)
    assert cluster.system.uplink == cluster.system.downlink == 0.25
    assert any("not used" in n for n in cluster.notes)
    with pytest.raises(SpecError, match=r"uplink \(arrays, record 1\) must be a finite delay >= 0 seconds, got -1.0"):
        Records.from_arrays(["a"], [1.0], uplink=[-1.0])


def test_fit_command_link_options_and_fit_delays(tmp_path, cli_here):
    path = tmp_path / "steps.csv"
    rng = np.random.default_rng(6)
    lines = ["rank,t,sent,arrive,published,received"]
    for k in range(2):
        clock = 0.0
        for _ in range(60):
            x = float(COMPUTE.rvs(random_state=rng))
            lines.append(f"{k},{x},{clock},{clock + 0.01 + rng.exponential(0.05)},{clock},{clock + 0.03}")
            clock += x
    path.write_text("\n".join(lines) + "\n")
    base = ["fit", path, "--columns", "worker=rank,duration=t", "--gof-samples", "0", "--json"]
    code, stdout, err = cli_here([*base, "--model-bytes", "1e6", "--bandwidth", "1e7"])
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["uplink"] == doc["downlink"] == pytest.approx(0.1) and doc["version"] >= 2
    code, stdout, err = cli_here([*base, "--fit-delays"])
    doc = json.loads(stdout)
    assert code == 0 and isinstance(doc["uplink"], str) and doc["downlink"] == pytest.approx(0.03)
    assert doc["delays"]["downlink"]["how"].startswith("fixed")
    code, _, err = cli_here([*base, "--fit-delays", "--latency", "0.1"])
    assert code == 2 and "--fit-delays must be left out when --latency is given" in err
    code, _, err = cli_here([*base, "--bandwidth", "1e7"])
    assert code == 2 and "--bandwidth must be given with --model-bytes" in err


def test_link_options_override_a_system_files_delays(tmp_path, cli_here):
    cluster = fit_cluster(_records(np.random.default_rng(7), [0.05] * 2), gof_samples=0, seed=1)
    path = tmp_path / "c.json"
    write_system_file(path, cluster)
    code, stdout, err = cli_here(["predict", "--system", path, "--latency", "0.2", "--json"])
    assert code == 0, err
    assert json.loads(stdout)["tc"] == pytest.approx(0.4)
    code, _, err = cli_here(["predict", "--system", path, "--latency", "0.2", "--uplink", "1"])
    assert code == 2 and "--uplink must be left out when --latency is given" in err


def test_fit_of_a_trace_with_per_worker_delays_predicts_its_staleness(tmp_path):
    """Synthetic logs from a known system (three classes of compute times, each with its own random uplink and
    fixed downlink; 12 workers, about 1000 rounds each, simulated and written as a Trace): the fitted system's
    exact mean staleness is within 2% of the true system's, with the delays fixed at the class means and with
    them fitted; the delays found per worker are within 5% of the true means."""
    from stalegrad.fit import read_records
    from stalegrad.sim import simulate
    from stalegrad.theory import staleness_exact
    from stalegrad.trace_io import write_trace

    laws = [
        scipy.stats.gamma(a=3.0, loc=1.0, scale=0.25),
        scipy.stats.lognorm(s=0.6, loc=0.5, scale=2.0),
        scipy.stats.weibull_min(c=3.0, loc=1.0, scale=3.0),
    ]
    ups = [scipy.stats.expon(loc=0.05, scale=0.1), scipy.stats.gamma(a=4.0, loc=0.5, scale=0.25), 0.2]
    downs = [1.0, 0.1, 2.0]
    n = 12
    true = System(n=n, K=4, compute=[laws[k % 3] for k in range(n)], uplink=[ups[k % 3] for k in range(n)],
                  downlink=[downs[k % 3] for k in range(n)])  # fmt: skip
    path = tmp_path / "trace.csv"
    write_trace(simulate(true, 3000, seed=7, engine="events"), path)
    records = read_records([path])
    want = staleness_exact(true)
    one_round_trip = System(n=n, K=4, compute=list(true.compute), tc=true.tc)
    assert abs(staleness_exact(one_round_trip) / want - 1) > 0.03  # the pooled delays would miss (by 3.9%)
    for fit in (False, True):
        fitted = fit_cluster(records, gof_samples=0, seed=1, fit_delays=fit)
        s = fitted.system
        assert s.K == 4 and s.per_worker_delays
        assert abs(staleness_exact(s) / want - 1) < 0.02, (fit, staleness_exact(s), want)
        for i, w in enumerate(fitted.worker_order()):
            k = int(w) % 3
            true_up = ups[k] if isinstance(ups[k], float) else float(ups[k].mean())
            got_up = s.uplink_of(i) if isinstance(s.uplink_of(i), float) else float(s.uplink_of(i).mean())
            assert got_up == pytest.approx(true_up, rel=0.05) and s.downlink_of(i) == pytest.approx(downs[k])
