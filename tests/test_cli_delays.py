"""Per-worker delays on the command line: --uplink/--downlink repeated with counts (like --compute), and in a
system file (--system); bad input is one Error line with exit status 2."""

from __future__ import annotations

import json

import pytest

from stalegrad import System
from stalegrad.distributions import shifted_exponential

BASE = ["--n", "4", "--K", "2"]


def test_counted_delays_make_per_worker_delays(cli_here):
    code, out, err = cli_here(["predict", *BASE, "--uplink", "2*0.1", "--uplink", "2*1.5", "--downlink", "0.3",
                               "--json"])  # fmt: skip
    assert code == 0, err
    row = json.loads(out)
    assert row["system"]["uplink"] == ["2*0.1", "2*1.5"] and row["system"]["downlink"] == 0.3
    assert row["tc"] == pytest.approx(0.3 + (0.1 + 1.5) / 2)
    system = System.from_dict(row["system"])
    assert system.tcs == pytest.approx((0.4, 0.4, 1.8, 1.8))


def test_one_delay_is_as_before(cli_here):
    code, out, _ = cli_here(["predict", *BASE, "--uplink", "0.2", "--downlink", "expon(scale=0.3)", "--json"])
    row = json.loads(out)
    assert code == 0 and row["system"]["uplink"] == 0.2 and row["system"]["downlink"] == "expon(loc=0.0, scale=0.3)"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--uplink", "2*0.1", "--uplink", "1*0.2"], "--uplink counts must add up to --n = 4, got 3"),
        (["--downlink", "3*0.1"], "--downlink counts must add up to --n = 4, got 3"),
        (["--uplink", "2*x", "--uplink", "2*0.1"], "--uplink model name must be"),
        (["--uplink", "2*-1", "--uplink", "2*0.1"], "--uplink must be a finite number of seconds >= 0"),
        (["--uplink", "0*0.1", "--uplink", "4*0.1"], "--uplink must be a count >= 1 before '*'"),
        (["--uplink", "-1"], "--uplink must be a finite number of seconds >= 0"),
        (["--tc", "1", "--uplink", "4*0.1", "--downlink", "0.2"], "--tc must be left out when both --uplink"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "simulate"])
def test_bad_delays_are_one_error_line(cli_here, command, args, match):
    code, _, err = cli_here([command, *BASE, *args])
    assert code == 2 and err.startswith("Error:") and match in err and err.count("\n") == 1, err


def test_a_system_file_carries_per_worker_delays(tmp_path, cli_here):
    system = System(n=4, K=2, compute=shifted_exponential(alpha=1, rate=2 / 3), uplink=[0.1, 0.1, 0.5, 0.9],
                    downlink=0.2)  # fmt: skip
    path = tmp_path / "s.json"
    path.write_text(json.dumps(system.to_dict()))
    code, out, err = cli_here(["predict", "--system", path, "--json"])
    assert code == 0, err
    assert json.loads(out)["system"]["uplink"] == ["2*0.1", "1*0.5", "1*0.9"]
    code, out, _ = cli_here(["predict", "--system", path, "--uplink", "0.3", "--json"])  # given beside: replaces
    assert code == 0 and json.loads(out)["system"]["uplink"] == 0.3
    code, out, _ = cli_here(["predict", "--system", path, "--latency", "0.05", "--json"])
    assert code == 0 and json.loads(out)["system"]["uplink"] == 0.05
    code, _, err = cli_here(["predict", "--system", path, "--n", "5"])
    assert code == 2 and "--n must be 4, the workers of" in err and "give --uplink for them" in err


def test_a_real_run_refuses_per_worker_delays():
    from stalegrad.errors import SpecError
    from stalegrad.runtime.plan import RunPlan
    from stalegrad.train.problems import LinearRegression

    system = System(n=2, K=1, compute=shifted_exponential(alpha=1, rate=2 / 3), uplink=[0.1, 0.2])
    with pytest.raises(SpecError, match=r"uplink must be one delay per direction for every worker in a real run"):
        RunPlan.build(system, LinearRegression(dim=2, samples=10), 10, time_unit=0.01)
