"""``stalegrad fit``: records in, a table, a system file and a figure out; bad input is one Error: line, exit 2."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import scipy.stats

LAWS = [scipy.stats.gamma(a=3.0, loc=1.0, scale=0.25), scipy.stats.lognorm(s=0.6, loc=0.5, scale=2.0)]


@pytest.fixture(scope="module")
def ksync_log(tmp_path_factory):
    """k-sync logs of 6 workers (two classes of three), K = 3, 300 rounds: every round starts together; the first
    3 finish and the others are cut off (censored) at the third finishing time. A drifting seventh worker is
    logged on its own (it does not take part in the rounds)."""
    rng = np.random.default_rng(21)
    x = np.column_stack([LAWS[k % 2].rvs(size=300, random_state=rng) for k in range(6)])
    t = np.sort(x, axis=1)[:, 2:3]
    cut = x > t
    obs = np.where(cut, t, x)
    drift = LAWS[0].rvs(size=300, random_state=rng) * 1.01 ** np.arange(300)
    path = tmp_path_factory.mktemp("logs") / "steps.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["host", "iteration", "seconds", "cancelled"])
        for j in range(300):
            w.writerows([f"gpu{k}", j, obs[j, k], int(cut[j, k])] for k in range(6))
            w.writerow(["gpu6", j, drift[j], 0])
    return path


def test_fit_prints_the_classes_and_writes_the_system_and_the_figure(run_cli, ksync_log, tmp_path):
    out, plot = tmp_path / "cluster.json", tmp_path / "fit.png"
    args = ["fit", str(ksync_log), "--columns", "worker=host,round=iteration,duration=seconds,censored=cancelled"]
    more = ["--level", "0.05", "--gof-samples", "19", "--seed", "1", "--K", "3"]
    code, stdout, err = run_cli([*args, "--out", str(out), "--plot", str(plot), *more])
    assert code == 0, err
    assert "class 0: gpu0, gpu2, gpu4" in stdout and "class 1: gpu1, gpu3, gpu5" in stdout
    assert "warning: worker gpu6 drifts" in stdout
    assert "note: no delays in the records" in stdout
    doc = json.loads(out.read_text())
    assert doc["n"] == 7 and doc["K"] == 3
    assert sum(c["censored"] for c in doc["classes"]) == 900 and doc["provenance"]["censored"] == 900
    assert all(c["goodness_of_fit"]["samples"] == 19 for c in doc["classes"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.with_suffix(".json").is_file()
    code, stdout, err = run_cli(["predict", "--system", str(out), "--json"])
    assert code == 0, err and json.loads(stdout)["n"] == 7


def test_fit_json_is_the_system_file(run_cli, ksync_log, tmp_path):
    out = tmp_path / "c.json"
    args = ["fit", str(ksync_log), "--columns", "worker=host,round=iteration,duration=seconds,censored=cancelled"]
    code, stdout, err = run_cli([*args, "--gof-samples", "0", "--json", "--out", str(out), "--seed", "2"])
    assert code == 0, err
    printed = json.loads(stdout)
    assert printed == json.loads(out.read_text())
    assert printed["notes"][0].startswith("K is not in the records: K = n = 7")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--level", "0.5"], "--level must be a significance level between 0.001 and 0.25"),
        (["--columns", "who=host"], "--columns field must be one of worker"),
        (["--out", "cluster.txt"], "--out must be a file name ending in .json"),
        (["--plot", "fit.jpg"], "--plot must be a file name ending in .png"),
        (["--gof-samples", "10"], "--gof-samples must be 0 or an integer >= 99"),
    ],
)
def test_bad_options_are_one_error_line(run_cli, ksync_log, args, match):
    code, stdout, err = run_cli(["fit", str(ksync_log), *args])
    assert code == 2 and stdout == ""
    assert err.startswith("Error: ") and match in err and err.count("\n") == 1


def test_a_missing_log_is_one_error_line(run_cli, tmp_path):
    code, _, err = run_cli(["fit", str(tmp_path / "none.csv")])
    assert code == 2 and err.startswith("Error: LOGS must be existing files")
