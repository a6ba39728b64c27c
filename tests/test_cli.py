"""The command line: results on stdout, one-line errors with exit status 2, JSON without NaN, fast --help."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import click
import pytest

from stalegrad.cli import cli, main


def test_predict_json_has_the_papers_and_the_exact_numbers(run_cli):
    code, out, err = run_cli(
        [
            "predict",
            "--n",
            "16",
            "--K",
            "10",
            "--tc",
            "1",
            "--compute",
            "shifted_exponential(alpha=1, rate=0.6667)",
            "--json",
        ]
    )
    assert code == 0, err
    obj = json.loads(out)
    assert obj["update_rate_exact"] == pytest.approx(16 / (10 * (1 + 1 / 0.6667)))
    assert obj["update_rate"] is None and obj["staleness_mean"] is None  # predict measures nothing
    assert obj["staleness_paper"] == pytest.approx(1.6 * (1 + 2.49992500375) / 2.49992500375)
    assert obj["staleness_exact"] == pytest.approx(obj["staleness_paper"] - 1 / (10 * 2.49992500375))


def test_predict_sweep_prints_one_row_per_value(run_cli):
    code, out, _ = run_cli(["predict", "--n", "10:20", "--K", "10", "--tc", "1", "--json"])
    assert code == 0
    rows = json.loads(out)["rows"]
    assert [r["n"] for r in rows] == list(range(10, 21))
    code, out, _ = run_cli(["predict", "--n", "10:20:5", "--K", "10", "--tc", "1"])
    assert code == 0 and "E[tau] exact" in out and out.count("expon(loc=1.0") == 3


def test_simulate_json_has_estimate_and_theory_side_by_side(run_cli):
    code, out, err = run_cli(
        ["simulate", "--n", "16", "--K", "10", "--tc", "1", "--updates", "20000", "--seed", "1", "--json"]
    )
    assert code == 0, err
    obj = json.loads(out)
    for key in (
        "staleness_mean",
        "staleness_ci95",
        "update_rate",
        "gradients",
        "seconds",
        "staleness_exact",
        "staleness_paper",
        "update_rate_exact",
        "warmup_updates",
    ):
        assert key in obj
    assert obj["gradients"] == 200_000 and obj["seed"] == 1
    assert abs(obj["staleness_mean"] - obj["staleness_exact"]) < 4 * obj["staleness_ci95"]
    _, out2, _ = run_cli(
        ["simulate", "--n", "16", "--K", "10", "--tc", "1", "--updates", "20000", "--seed", "1", "--json"]
    )
    same = json.loads(out2)
    assert same["staleness_mean"] == obj["staleness_mean"] and same["staleness_ci95"] == obj["staleness_ci95"]


def test_heterogeneous_workers_with_counts(run_cli):
    code, out, err = run_cli(
        [
            "simulate",
            "--n",
            "6",
            "--K",
            "3",
            "--compute",
            "3*expon(scale=1)",
            "--compute",
            "3*expon(scale=3)",
            "--updates",
            "5000",
            "--seed",
            "2",
            "--json",
        ]
    )
    assert code == 0, err
    assert json.loads(out)["system"]["compute"] == ["3*expon(loc=0.0, scale=1.0)", "3*expon(loc=0.0, scale=3.0)"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "--n", "0", "--K", "1"], "n must be an integer >= 1, got 0"),
        (["predict", "--n", "4", "--K", "x"], "--K must be an integer"),
        (["predict", "--n", "4", "--K", "2", "--compute", "foo(a=1)"], "--compute model name must be"),
        (["predict", "--n", "4", "--K", "2", "--compute", "3*expon()"], "--compute counts must add up to --n = 4"),
        (["predict", "--n", "4", "--K", "2", "--tc", "-1"], "--tc must be a finite number"),
        (["simulate", "--n", "4", "--K", "2", "--updates", "0"], "'--updates'"),
        (["simulate", "--n", "4", "--K", "2", "--bogus"], "No such option"),
        (["simulate", "--n", "4"], "Missing option '--K'"),
        (["reproduce", "fig9"], "'fig9' is not one of"),
    ],
)
def test_user_mistakes_are_one_error_line_and_exit_2(args, message, run_cli):
    code, out, err = run_cli(args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], err
    assert "Traceback" not in err


def test_help_does_not_import_the_heavy_libraries():
    probe = (
        "import sys\nfrom stalegrad.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "heavy = [m for m in ('numpy', 'scipy', 'matplotlib', 'numba', 'ray') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "Usage: stalegrad" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="


def test_main_in_process_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "stalegrad, version" in capsys.readouterr().out
    assert cli.name == "cli"


def test_simulate_plot_writes_a_png_with_its_numbers(tmp_path, run_cli):
    png = tmp_path / "hist.png"
    code, out, err = run_cli(
        [
            "simulate",
            "--n",
            "8",
            "--K",
            "4",
            "--tc",
            "1",
            "--updates",
            "5000",
            "--seed",
            "3",
            "--plot",
            str(png),
            "--json",
        ]
    )
    assert code == 0, err
    obj = json.loads(out)
    assert sum(obj["staleness_histogram"]) == obj["gradients_in_estimate"]
    meta = json.loads(png.with_suffix(".json").read_text())
    assert meta["seed"] == 3 and meta["rows"][0]["staleness_mean"] == obj["staleness_mean"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_protocols_in_predict_and_simulate(run_cli):
    code, out, err = run_cli(
        [
            "predict",
            "--n",
            "6",
            "--K",
            "3",
            "--tc",
            "1",
            "--compute",
            "expon(scale=2)",
            "--protocol",
            "k-batch-async,k-sync,k-batch-sync",
            "--json",
        ]
    )
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [r["protocol"] for r in rows] == ["k-batch-async", "k-sync", "k-batch-sync"]
    assert rows[1]["staleness_exact"] == 0.0 and rows[2]["update_rate_exact"] == pytest.approx(1 / (3 / 3 + 1))
    code, out, err = run_cli(
        [
            "simulate",
            "--n",
            "6",
            "--K",
            "3",
            "--tc",
            "1",
            "--protocol",
            "k-sync",
            "--updates",
            "3000",
            "--seed",
            "1",
            "--json",
        ]
    )
    assert code == 0, err
    obj = json.loads(out)
    assert obj["staleness_mean"] == 0.0 and obj["dropped_fraction"] > 0 and obj["wasted_compute"] > 0


def test_compare_runs_every_protocol_and_plots(tmp_path, run_cli):
    png = tmp_path / "cmp.png"
    code, out, err = run_cli(
        [
            "compare",
            "--n",
            "6",
            "--K",
            "3",
            "--tc",
            "1",
            "--updates",
            "3000",
            "--seed",
            "2",
            "--plot",
            str(png),
            "--json",
        ]
    )
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [r["protocol"] for r in rows] == ["k-batch-async", "k-async", "k-sync", "k-batch-sync", "sync"]
    assert rows[-1]["K"] == 6
    assert png.exists() and json.loads(png.with_suffix(".json").read_text())["seed"] == 2
    code, _, err = run_cli(["compare", "--n", "4:6", "--K", "2"])
    assert code == 2 and "--n, --K and --tc must be single values for compare" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "--n", "4", "--K", "2", "--protocol", "k-fast"], "--protocol must be one of"),
        (["predict", "--n", "4", "--K", "5", "--protocol", "k-sync"], "K must be at most n = 4 for k-sync"),
        (
            ["simulate", "--n", "4", "--K", "2", "--downlink", "3*expon()"],
            "--downlink counts must add up to --n = 4, got 3",
        ),
        (["simulate", "--n", "4", "--K", "2", "--uplink", "nosuch()"], "--uplink model name must be"),
    ],
)
def test_protocol_mistakes(args, message, run_cli):
    code, out, err = run_cli(args)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1, err


def test_simulate_saves_a_trace_that_train_replays(tmp_path, run_cli):
    path = tmp_path / "trace.parquet"
    code, out, err = run_cli(
        [
            "simulate",
            "--n",
            "6",
            "--K",
            "3",
            "--tc",
            "1",
            "--updates",
            "800",
            "--seed",
            "5",
            "--trace-out",
            str(path),
            "--json",
        ]
    )
    assert code == 0, err
    code, out2, err = run_cli(["train", "--trace", str(path), "--b", "4", "--seed", "1", "--json"])
    assert code == 0, err
    row = json.loads(out2)["rows"][0]
    assert row["label"] == "trace.parquet b=4 constant" and row["updates"] == 800
    assert row["staleness_mean"] == pytest.approx(json.loads(out)["staleness_mean"], rel=0.2)
    assert row["final_error"] < row["initial_error"] / 10
    code, _, err = run_cli(["simulate", "--n", "4:6", "--K", "2", "--trace-out", str(path)])
    assert code == 2 and "--trace-out saves one system's Trace" in err


def test_tables_fit_the_terminal_and_never_cut_a_cell(run_cli):
    args = ["compare", "--n", "8", "--K", "4", "--updates", "200", "--seed", "1"]
    code, out, err = run_cli(args, env={"COLUMNS": "70"})
    assert code == 0, err
    table = [line for line in out.splitlines() if not line.startswith("note:")]
    assert "…" not in out and max(len(line.rstrip()) for line in table) <= 70
    code, wide, _ = run_cli(args)  # a pipe: each row on one line, whole
    assert "k-batch-async" in wide and "k-batch-sync" in wide and "…" not in wide


def _help_examples(command: click.Command) -> list[str]:
    """The example command lines of a command's help (its ``\\b`` block), continuation lines joined."""
    lines, out = (command.help or "").splitlines(), []
    for line in (x.strip() for x in lines):
        if out and out[-1].endswith("\\"):
            out[-1] = out[-1][:-1] + " " + line
        elif line.startswith("stalegrad "):
            out.append(line)
    return out


def test_every_help_example_is_valid_shell_and_parses():
    ctx = click.Context(cli)
    examples = 0
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        for line in _help_examples(command):
            assert not line.endswith("\\"), line
            check = subprocess.run(["bash", "-n", "-c", line], capture_output=True, text=True)
            assert check.returncode == 0, f"{line}: {check.stderr}"
            words = shlex.split(line, comments=True)
            target = cli.get_command(ctx, words[1])  # (a command's help may show the next step, another command)
            assert words[0] == "stalegrad" and target is not None, line
            target.make_context(words[1], words[2:])  # options known, values well formed
            examples += 1
    assert examples >= 10
