"""Every bad input is one ``Error:`` line naming the parameter, exit status 2, before any work starts.

The commands run in this process (``main(argv)``), so that hundreds of inputs cost seconds; a traceback would
escape as an exception other than ``SystemExit`` and fail the test.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalegrad.cli import main


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def assert_one_error_line(code, out, err, *needles):
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


SYSTEM = ["--n", "4", "--K", "2"]


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        # values that used to end in a traceback
        (["predict", *SYSTEM, "--n", "1000000000"], ["n must be an integer from 1 to 1,000,000"]),
        (["predict", *SYSTEM, "--compute", "expon(scale=nan)"], ["--compute model", "scale must be a finite number"]),
        (["predict", *SYSTEM, "--compute", "expon(scale=inf)"], ["scale must be a finite number"]),
        (["predict", *SYSTEM, "--compute", "gamma(a=-1)"], ["--compute model", "outside the law's domain"]),
        (["predict", *SYSTEM, "--downlink", "nonsense("], ["--downlink must be a model like"]),
        (["predict", *SYSTEM, "--uplink", "nan"], ["--uplink must be a finite number of seconds"]),
        (["predict", *SYSTEM, "--uplink", "-1"], ["--uplink must be a finite number of seconds"]),
        (
            ["simulate", *SYSTEM, "--updates", "20", "--uplink", "1e308"],
            ["tc and the mean compute times must be within"],
        ),
        (["predict", *SYSTEM, "--uplink", "1e8", "--json"], []),  # valid but extreme: answered, the pmf refused
        (["predict", *SYSTEM, "--tc", "nan"], ["--tc must be a finite number of seconds >= 0"]),
        (["predict", *SYSTEM, "--tc", "1:0"], ["--tc must be a number, a range"]),
        # a sweep that would give identical rows
        (["predict", *SYSTEM, "--tc", "0:2", "--uplink", "0.3", "--downlink", "0.2"], ["--tc must be left out"]),
        # sizes that cannot finish
        (["simulate", *SYSTEM, "--updates", "100000000000000"], ["--updates", "above the limit", "--yes"]),
        (["simulate", "--n", "4", "--K", "1000000000"], ["K = 1000000000", "days", "--yes"]),
        (["compare", *SYSTEM, "--updates", "10000000000"], ["above the limit"]),
        (["train", *SYSTEM, "--updates", "2000000000"], ["estimated", "above the limit", "--yes"]),
        # output locations checked before the work
        (["simulate", *SYSTEM, "--updates", "100", "--trace-out", "/nonexistent-dir/x.csv"], ["--trace-out"]),
        (["simulate", *SYSTEM, "--updates", "100", "--trace-out", "x.txt"], ["--trace-out", ".csv or .parquet"]),
        (["simulate", *SYSTEM, "--updates", "100", "--plot", "/nonexistent-dir/x.png"], ["--plot"]),
        (["compare", *SYSTEM, "--updates", "100", "--plot", "x.pdf"], ["--plot must be a file name ending in .png"]),
        (["reproduce", "fig1", "--out", "/nonexistent-dir/a/b"], ["--out must be a folder whose parent exists"]),
        (["train", *SYSTEM, "--updates", "10", "--out", "/nonexistent-dir/a"], ["--out must be a folder"]),
        # silently accepted before
        (["train", *SYSTEM, "--target", "-1"], ["--target must be a finite error > 0"]),
        (["train", *SYSTEM, "--target", "nan"], ["--target must be a finite error > 0"]),
        (["train", *SYSTEM, "--problem", "logreg", "--dim", "5"], ["--dim must be left out"]),
        (["train", *SYSTEM, "--dc", "nan"], ["--dc must be a finite number"]),
        (["simulate", *SYSTEM, "--updates", "10", "--batches", "20"], ["--batches must be at most the 9 updates"]),
        (["simulate", *SYSTEM, "--updates", "10", "--warmup", "9"], ["--warmup must be less than"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, needles, capsys):
    code, out, err = run(argv, capsys)
    if not needles:  # a value that is valid but extreme: answered, never a traceback
        assert code == 0 and "tc must be at most 10000 x the shortest mean compute time" in out, (code, err)
        return
    assert_one_error_line(code, out, err, *needles)
    assert not os.path.exists("/nonexistent-dir"), "no parent folder may be created"


def test_a_two_column_empirical_file_asks_which_column(tmp_path, capsys):
    path = tmp_path / "times.csv"
    path.write_text("worker,seconds\n0,1.5\n1,2.5\n0,1.7\n")
    code, out, err = run(["predict", *SYSTEM, "--compute", f"empirical(path={path})"], capsys)
    assert_one_error_line(code, out, err, "has 2 columns", "column=")
    code, out, err = run(["predict", *SYSTEM, "--compute", f"empirical(path={path}, column=seconds)", "--json"], capsys)
    assert code == 0 and '"compute"' in out and "column='seconds'" in out


def test_a_short_simulation_needs_no_batches_option(capsys):
    code, _out, err = run(["simulate", *SYSTEM, "--updates", "10", "--seed", "1"], capsys)
    assert code == 0, err


def test_messages_show_numbers_not_numpy_reprs():
    import numpy as np

    from stalegrad.errors import invalid

    assert str(invalid("x", np.float64(0.0), "> 0")) == "x must be > 0, got 0.0"


def test_written_files_follow_the_umask(tmp_path):
    from stalegrad.artefacts import write_text

    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


_junk = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e308", "1e-300", "1:0", "1,,2", "2*", "expon(", "3*x()"]),
    st.integers(-5, 30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    option=st.sampled_from(["--compute", "--uplink", "--downlink", "--n", "--K", "--tc", "--updates"]),
    value=_junk,
)
def test_junk_in_any_option_never_gives_a_traceback(option, value, capsys):
    """Whatever lands in one option, the command answers (0, or one Error line and 2), never with a traceback."""
    argv = ["simulate", "--n", "3", "--K", "2", "--updates", "20", "--seed", "1", "--json"]
    if option in ("--n", "--K", "--updates"):
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    if value.startswith("-") and value[1:2].isalpha():
        return  # an option name, not a value: click's own error path, covered above
    code, _out, err = run(argv, capsys)
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("Error: "), (argv, err)
