"""``stalegrad train``: error-vs-time files with metadata, several configurations in one plot, one-line errors."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image


def test_train_writes_curves_for_every_configuration(tmp_path, run_cli):
    args = ["train", "--n", "10", "--K", "10,1", "--b", "1,10", "--compute", "expon(scale=2)", "--updates", "300"]
    code, out, err = run_cli([*args, "--seed", "3", "--out", str(tmp_path), "--json"])
    assert code == 0, err
    obj = json.loads(out)
    labels = [r["label"] for r in obj["rows"]]
    assert labels == [f"n=10 K={K} b={b} tc=0 constant" for K in (10, 1) for b in (1, 10)]
    assert obj["target"] == pytest.approx(0.01 * obj["rows"][0]["initial_error"])
    lines = (tmp_path / "train.csv").read_text().splitlines()
    meta = json.loads(lines[0].removeprefix("# stalegrad-metadata: "))
    assert meta["seed"] == 3 and meta["systems"]["n=10 K=1 b=10 tc=0 constant"]["compute"] == [
        "10*expon(loc=0.0, scale=20.0)"  # compute time scaled by b
    ]
    rows = list(csv.DictReader(lines[1:]))
    assert {r["label"] for r in rows} == set(labels) and rows[0]["update"] == "0" and rows[0]["replication"] == "0"
    assert json.loads(Image.open(tmp_path / "train.png").text["Description"])["seed"] == 3
    code2, out2, _ = run_cli([*args, "--seed", "3", "--json"])
    assert code2 == 0 and json.loads(out2)["rows"] == obj["rows"]  # same seed, same curves


def test_train_table_and_policies(run_cli):
    args = ["train", "--problem", "logreg", "--n", "4", "--K", "1", "--b", "8", "--updates", "200", "--seed", "1"]
    code, out, err = run_cli([*args, "--step", "0.5", "--policy", "constant,staleness-aware,delay-adaptive"])
    assert code == 0, err
    assert "time to target" in out and out.count("n=4 K=1 b=8") == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--problem", "svm"],
            "--problem must be one of linreg, logreg, mlp-digits, cnn-digits or module:attribute, got 'svm'",
        ),
        (["--policy", "adam"], "policy must be one of constant, staleness-aware, delay-adaptive"),
        (["--b", "0"], "--b must be integers >= 1"),
        (["--b", "x"], "--b must be an integer"),
    ],
)
def test_train_usage_errors_are_one_line(args, message, run_cli):
    code, out, err = run_cli(["train", "--n", "2", "--K", "1", "--updates", "10", *args])
    assert code == 2 and out == ""
    assert err.strip().startswith("Error:") and message in err and len(err.strip().splitlines()) == 1


def test_train_along_other_protocols(run_cli):
    args = ["train", "--n", "6", "--K", "3", "--b", "2", "--compute", "expon(scale=2)", "--updates", "300"]
    code, out, err = run_cli([*args, "--protocol", "k-sync,k-batch-async", "--seed", "1", "--json"])
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [r["label"].split()[0] for r in rows] == ["k-sync", "k-batch-async"]
    assert rows[0]["staleness_mean"] == 0.0 and rows[1]["staleness_mean"] > 1.0


def test_identical_configurations_give_identical_rows(run_cli):
    """Common random numbers: a configuration's result does not depend on its position in the sweep."""
    args = ["train", "--n", "4", "--K", "2", "--updates", "200", "--seed", "3", "--json"]
    code, out, err = run_cli([*args, "--policy", "constant,constant"])
    assert code == 0, err
    first, second = json.loads(out)["rows"]
    assert {k: v for k, v in first.items()} == second
    code, out, err = run_cli([*args, "--policy", "staleness-aware,constant"])
    assert code == 0, err
    assert json.loads(out)["rows"][1] == first  # moved to second place: the same numbers


def test_seeds_give_medians_with_intervals_and_a_band(tmp_path, run_cli):
    args = ["train", "--n", "4", "--K", "1,2", "--updates", "300", "--seed", "1", "--seeds", "7", "--json"]
    code, out, err = run_cli([*args, "--out", str(tmp_path)])
    assert code == 0, err
    obj = json.loads(out)
    for row in obj["rows"]:
        lo, hi = row["final_error_ci95"]
        assert row["seeds"] == 7 and lo <= row["final_error"] <= hi and lo < hi
        assert row["horizon"] == obj["horizon"]
    meta = json.loads(Image.open(tmp_path / "train.png").text["Description"])
    assert meta["horizon"] == obj["horizon"]
    replications = {line.split(",")[1] for line in (tmp_path / "train.csv").read_text().splitlines()[2:]}
    assert replications == {str(r) for r in range(7)}


def test_a_common_horizon_cuts_every_configuration(run_cli):
    args = ["train", "--n", "4", "--K", "1,4", "--updates", "300", "--seed", "1", "--json"]
    code, out, err = run_cli([*args, "--horizon", "20"])
    assert code == 0, err
    for row in json.loads(out)["rows"]:
        assert row["horizon"] == 20 and (row["time_to_target"] is None or row["time_to_target"] <= 20)


def test_diverged_training_is_flagged(run_cli):
    code, out, err = run_cli(["train", "--n", "4", "--K", "1", "--updates", "200", "--seed", "1", "--json",
                              "--step", "1e10"])  # fmt: skip
    assert code == 0, err
    row = json.loads(out)["rows"][0]
    assert row["diverged"] is True and row["diverged_at_update"] >= 1 and "diverged" in err
    code, out, err = run_cli(["train", "--n", "4", "--K", "1", "--updates", "200", "--seed", "1", "--step", "1e10"])
    assert code == 0 and "diverged" in out and "warning:" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "-1"], "--target must be a finite error > 0, got -1.0"),
        (["--target", "0"], "--target must be a finite error > 0"),
        (["--target", "nan"], "--target must be a finite error > 0"),
        (["--horizon", "0"], "--horizon must be a finite number of seconds > 0"),
        (["--problem", "logreg", "--dim", "5"], "--dim must be left out: it applies to --problem linreg, not logreg"),
        (["--l2", "0.1"], "--l2 must be left out: it applies to --problem logreg, not linreg"),
        (["--out", "/nonexistent/a/b"], "--out must be a folder whose parent exists"),
    ],
)
def test_train_refuses_inputs_it_would_ignore_or_misuse(args, message, run_cli):
    code, out, err = run_cli(["train", "--n", "2", "--K", "1", "--updates", "10", *args])
    assert code == 2 and out == "", err
    assert err.strip().startswith("Error:") and message in err and len(err.strip().splitlines()) == 1
