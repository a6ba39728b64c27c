"""The system file: System.to_dict's keys plus the evidence; read by System.from_dict and by --system FILE, with
options given beside it overriding the file's values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats

from stalegrad.errors import SpecError
from stalegrad.fit import Records, fit_cluster, read_system_file, write_system_file
from stalegrad.fit.system_file import FORMAT, VERSION, option_values
from stalegrad.spec import System

LAWS = [scipy.stats.gamma(a=3.0, loc=1.0, scale=0.25), scipy.stats.weibull_min(c=3.0, loc=1.0, scale=3.0)]


@pytest.fixture(scope="module")
def fitted():
    """Two classes of three workers, 300 rounds each, with an uplink of 0.25 s."""
    rng = np.random.default_rng(11)
    workers = np.repeat([f"w{k}" for k in range(6)], 300)
    times = np.concatenate([LAWS[k % 2].rvs(size=300, random_state=rng) for k in range(6)])
    return fit_cluster(Records.from_arrays(workers, times, uplink=np.full(times.size, 0.25)), gof_samples=0, seed=3)


@pytest.fixture(scope="module")
def system_file(fitted, tmp_path_factory):
    return write_system_file(tmp_path_factory.mktemp("fit") / "cluster.json", fitted)


def test_the_file_is_system_to_dict_plus_evidence(fitted, system_file):
    doc = json.loads(system_file.read_text())
    assert doc["format"] == FORMAT and doc["version"] == VERSION
    assert {k: doc[k] for k in fitted.system.to_dict()} == json.loads(json.dumps(fitted.system.to_dict()))
    assert doc["compute"][0].startswith("3*gamma(a=") and doc["compute"][1].startswith("3*weibull_min(c=")
    assert [c["workers"] for c in doc["classes"]] == [["w0", "w2", "w4"], ["w1", "w3", "w5"]]
    assert [w["worker"] for w in doc["workers"]] == ["w0", "w2", "w4", "w1", "w3", "w5"]
    assert doc["provenance"]["records"] == 1800 and doc["provenance"]["inputs"][0]["records"] == 1800
    assert doc["delays"]["uplink"]["mean"] == pytest.approx(0.25) and doc["uplink"] == pytest.approx(0.25)
    assert all(k in doc["classes"][0] for k in ("law", "mean", "p95", "aic", "bic", "candidates"))


def test_system_from_dict_reads_it_and_ignores_the_rest(fitted, system_file):
    doc = json.loads(system_file.read_text())
    assert System.from_dict(doc).to_dict() == fitted.system.to_dict()
    system, same = read_system_file(system_file)
    assert system.to_dict() == fitted.system.to_dict() and same == doc


def test_a_plain_to_dict_json_is_a_system_file(tmp_path):
    s = System(n=3, K=2, tc=1, compute=scipy.stats.expon(scale=2.0))
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(s.to_dict()))
    assert read_system_file(path)[0].to_dict() == s.to_dict()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "is not a JSON system file"),
        ('{"format": "other"}', "--system format must be 'stalegrad-system'"),
        ('{"format": "stalegrad-system", "version": 99}', "version must be at most 3"),
        ('{"n": 2}', "system description must have n, K, compute"),
        ("[1, 2]", "--system must be an existing system file"),
    ],
)
def test_bad_system_files_are_refused(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SpecError, match=match):
        read_system_file(path)


def test_option_values_take_the_file_except_what_is_given(system_file):
    options = dict.fromkeys(["n", "K", "tc", "uplink", "downlink", "compute", "protocol", "staleness_bound"])
    values = option_values(system_file, options, set())
    assert values["n"] == "6" and values["K"] == "6" and values["uplink"] == "0.25" and len(values["compute"]) == 2
    values = option_values(system_file, options, {"K", "tc"})
    assert "K" not in values and "uplink" not in values and "downlink" not in values
    with pytest.raises(SpecError, match="--n must be 6, the workers of"):
        option_values(system_file, dict(options, n="8"), {"n"})


def test_predict_with_system_equals_predict_with_the_same_options(run_cli, system_file, fitted):
    code, out, err = run_cli(["predict", "--system", str(system_file), "--json"])
    assert code == 0, err
    compute = []
    for text in fitted.system.to_dict()["compute"]:
        compute += ["--compute", text]
    code2, out2, err2 = run_cli(
        ["predict", "--n", "6", "--K", "6", "--uplink", "0.25", "--downlink", "0.25", *compute, "--json"]
    )
    assert code2 == 0, err2
    assert json.loads(out) == json.loads(out2)


def test_options_beside_system_override_it(run_cli, system_file):
    code, out, err = run_cli(["predict", "--system", str(system_file), "--K", "4", "--tc", "1", "--json"])
    assert code == 0, err
    row = json.loads(out)
    assert row["K"] == 4 and row["n"] == 6 and row["tc"] == pytest.approx(1.0)
    assert row["system"]["uplink"] == pytest.approx(0.5)


def test_simulate_takes_system(run_cli, system_file):
    code, out, err = run_cli(
        ["simulate", "--system", str(system_file), "--K", "3", "--updates", "3000", "--seed", "1", "--json"]
    )
    assert code == 0, err
    row = json.loads(out)
    assert row["n"] == 6 and row["K"] == 3 and row["system"]["compute"][0].startswith("3*gamma(")
    assert abs(row["staleness_mean"] - row["staleness_exact"]) < 5 * row["staleness_ci95"] + 0.02


def test_a_missing_system_file_is_a_usage_error(run_cli, tmp_path):
    code, _, err = run_cli(["predict", "--system", str(tmp_path / "none.json")])
    assert code == 2 and err.startswith("Error: --system must be an existing system file")


def test_a_rejected_law_is_replaced_by_the_empirical_one_which_reads_back(tmp_path, run_cli):
    """Two-mode compute times (a worker that sometimes does twice the work): every family is rejected and the
    class gets the empirical law, written inline, which --system reads back."""
    rng = np.random.default_rng(12)
    times = np.where(rng.random(2000) < 0.5, 1.0, 2.0) * LAWS[0].rvs(size=2000, random_state=rng)
    records = Records.from_arrays(np.repeat(["a", "b"], 1000), times)
    fitted = fit_cluster(records, gof_samples=19, level=0.05, seed=4)
    (klass,) = fitted.classes
    assert klass.fit.rejected and klass.fit.fallback and klass.fit.law.family == "empirical"
    assert any("every family is rejected" in line for line in fitted.warnings())
    path = write_system_file(tmp_path / "empirical.json", fitted)
    assert json.loads(path.read_text())["compute"][0].startswith("2*empirical(values=[")
    system, _ = read_system_file(path)
    assert system.means[0] == pytest.approx(times.mean(), rel=0.01)
    code, out, err = run_cli(["predict", "--system", str(path), "--json"])
    assert code == 0, err
    assert "lattice" in json.loads(out)["caveat"]  # resampled measurements: the theory says it may be off
