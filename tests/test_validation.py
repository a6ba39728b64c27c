"""Bad traces and bad models are refused where they enter, with one line naming the row and column (or the
parameter): never a traceback, a huge allocation, or a silently wrong result."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from stalegrad.distributions import Deterministic, validate_model
from stalegrad.errors import SpecError
from stalegrad.sim import simulate
from stalegrad.spec import MAX_WORKERS, System
from stalegrad.trace import Trace
from stalegrad.trace_io import read_trace, write_trace

EXPON = scipy.stats.expon(scale=1.0)


# ------------------------------------------------------------------------------------- what every engine makes


@pytest.mark.parametrize("protocol", ["k-batch-async", "k-async", "k-sync", "k-batch-sync", "sync"])
@pytest.mark.parametrize("uplink", [0.3, scipy.stats.expon(scale=0.5)], ids=["fixed", "random"])
def test_every_engines_trace_is_valid(protocol, uplink):
    """No false alarm: the event engine's traces (dropped rows, cancelled rounds, overtaking gradients) and the fast
    simulator's, read back from a file too."""
    K = 6 if protocol == "sync" else 3
    bound = 1 if protocol in ("k-batch-async", "k-async") else None
    system = System(
        n=6,
        K=K,
        compute=[EXPON] * 3 + [scipy.stats.gamma(a=2)] * 3,
        uplink=uplink,
        downlink=0.2,
        protocol=protocol,
        staleness_bound=bound,
    )
    trace = simulate(system, 400, seed=5)
    assert trace.validate() is trace
    if protocol != "sync":
        assert (trace["update"] == -1).any(), "the case with dropped rows is covered"
    unbounded = simulate(system.replace(staleness_bound=None), 400, seed=5, engine="auto")
    unbounded.validate()
    unbounded.head(100).validate()


def test_a_run_of_many_cancelled_rounds_is_checked_by_sorting():
    """k-sync with n >> K: every update cancels most rounds, so round numbers have gaps (the sort path)."""
    trace = simulate(System(n=40, K=1, compute=EXPON, tc=0.1, protocol="k-sync"), 300, seed=2)
    worker_rounds = np.zeros(40, dtype=np.int64)
    np.maximum.at(worker_rounds, trace["worker"], trace["round"])
    assert worker_rounds.sum() > 4 * len(trace) + 4096, "the slots would outnumber the rows: the sort path"
    trace.validate()
    bad = edit(trace, "start", trace["start"])  # a later round of one worker made to start earlier
    w = int(trace["worker"][-1])
    mine = np.flatnonzero(trace["worker"] == w)
    bad["start"][mine[-1]] = bad["start"][mine[0]] - 1.0
    with pytest.raises(SpecError, match=rf"row {mine[-1] + 1}, column start: round \d+ of worker {w} starts at"):
        rebuilt(trace, bad).validate()


# ----------------------------------------------------------------------------------------- Trace.validate()


@pytest.fixture(scope="module")
def trace():
    """n = 4, K = 2, random uplink: the event engine, rows in arrival order."""
    system = System(n=4, K=2, compute=EXPON, uplink=scipy.stats.expon(scale=0.3), downlink=0.1)
    return simulate(system, 50, seed=3)


def edit(trace, column, values):
    cols = {k: v.copy() for k, v in trace.columns.items()}
    cols[column] = np.array(values, dtype=cols[column].dtype)
    return cols


def rebuilt(trace, cols, update_times=None):
    times = trace.update_times if update_times is None else update_times
    return Trace(cols, times, trace.system, trace.seed)


def row_where(trace, column, value):
    return int(np.flatnonzero(trace[column] == value)[0])


def test_the_issues_bad_traces_are_named_by_row_and_column(trace):
    # a version newer than the update that applies it (replay would read a version not yet made)
    cols = edit(trace, "version", trace["version"])
    i = row_where(trace, "update", 5)
    cols["version"][i] = 5
    with pytest.raises(SpecError, match=rf"^trace row {i + 1}, column version: version 5 is not older than update 5"):
        rebuilt(trace, cols).validate()
    # a missing update (its update time was -inf)
    keep = trace["update"] != 7
    cols = {k: v[keep] for k, v in trace.columns.items()}
    i = int(np.flatnonzero(cols["update"] == 8)[0])
    with pytest.raises(SpecError, match=rf"row {i + 1}, column update: update 7 is missing"):
        rebuilt(trace, cols).validate()
    # a duplicated row (an update with K + 1 gradients)
    i = row_where(trace, "update", 9)
    cols = {k: np.insert(v, i + 1, v[i]) for k, v in trace.columns.items()}
    with pytest.raises(SpecError, match=rf"row {i + 2}, column round: round \d+ of worker \d is also in row {i + 1}"):
        rebuilt(trace, cols).validate()
    # worker 99 with n = 4
    with pytest.raises(SpecError, match=r"row 3, column worker: must be a worker from 0 to n-1 = 3, got 99"):
        rebuilt(trace, edit(trace, "worker", np.r_[trace["worker"][:2], 99, trace["worker"][3:]])).validate()
    # start = inf
    cols = edit(trace, "start", trace["start"])
    cols["start"][4] = math.inf
    with pytest.raises(SpecError, match=r"row 5, column start: must be a finite time, got inf"):
        rebuilt(trace, cols).validate()


@pytest.mark.parametrize(
    ("column", "row", "value", "match"),
    [
        ("round", 2, 0, r"row 3, column round: must be a round number >= 1, got 0"),
        ("update", 2, 0, r"row 3, column update: must be -1 \(dropped\) or an update number >= 1, got 0"),
        ("update", 2, -1, r"row 3, column dropped: must give the reason of a dropped row"),
        ("dropped", 2, 1, r"row 3, column dropped: must be 0 \(applied\) in a row applied by update \d+, got 1"),
        ("version", 2, -1, r"row 3, column version: must be a version >= 0, got -1"),
        ("staleness", 2, 7, r"row 3, column staleness: must be \(update - 1\) - version = \d+, got 7"),
        ("arrive", 0, math.nan, r"row 1, column arrive: must be a finite time, got nan"),
        ("sent", 0, -math.inf, r"row 1, column sent: must be a finite time, got -inf"),
    ],
)
def test_each_column_is_checked(trace, column, row, value, match):
    cols = edit(trace, column, trace[column])
    cols[column][row] = value
    with pytest.raises(SpecError, match=match):
        rebuilt(trace, cols).validate()


def test_rows_out_of_the_masters_order_and_update_times_are_checked(trace):
    i = row_where(trace, "update", 4)
    order = np.arange(len(trace))
    order[[i - 1, i]] = order[[i, i - 1]]  # the first row of update 4 swapped with the last of update 3
    cols = {k: v[order] for k, v in trace.columns.items()}
    with pytest.raises(
        SpecError, match=rf"row {i}, column update: update 3 has 1 of its K = 2 gradients, then update 4"
    ):
        rebuilt(trace, cols).validate()
    with pytest.raises(
        SpecError, match=r"^trace: update_times must hold 50 times \(the rows make 50 updates\), got 49$"
    ):
        rebuilt(trace, trace.columns, trace.update_times[:-1]).validate()
    times = trace.update_times.copy()
    times[3] = -math.inf
    with pytest.raises(SpecError, match=r"update_times must be finite, got -inf for update 4"):
        rebuilt(trace, trace.columns, times).validate()
    with pytest.raises(SpecError, match=r"column round: must be a 1-d array of integers, got shape \(\d+,\), dtype"):
        rebuilt(trace, edit(trace, "round", trace["round"]) | {"round": trace["round"] * 1.0}).validate()


def test_protocol_rules_are_checked():
    system = System(n=4, K=2, compute=EXPON, tc=0.2, protocol="k-async", staleness_bound=1)
    t = simulate(system, 100, seed=1)
    dropped = np.flatnonzero(t["update"] == -1)
    assert dropped.size
    cols = {k: v.copy() for k, v in t.columns.items()}
    cols["dropped"][dropped[0]] = 2  # "superseded" in an asynchronous protocol
    with pytest.raises(SpecError, match=rf"row {dropped[0] + 1}, column dropped: a row dropped as superseded"):
        Trace(cols, t.update_times, system).validate()
    cols = {k: v.copy() for k, v in t.columns.items()}
    cols["staleness"][dropped[0]] += 1
    with pytest.raises(SpecError, match=rf"row {dropped[0] + 1}, column staleness: must be the versions made when"):
        Trace(cols, t.update_times, system).validate()
    # one update with two gradients of the same worker, in a protocol of K distinct workers
    a, b = np.flatnonzero(t["update"] == 10)
    cols = {k: v.copy() for k, v in t.columns.items()}
    other = int(t["worker"][a])
    cols["worker"][b] = other
    cols["round"][b] = 10_000  # not a duplicate (worker, round): only the rule is broken
    cols["start"][b] = 10_000.0
    with pytest.raises(SpecError, match=rf"row {b + 1}, column worker: update 10 takes two gradients of worker"):
        Trace(cols, t.update_times, system).validate()


def test_validation_names_rows_as_the_caller_says(trace):
    cols = edit(trace, "round", trace["round"])
    cols["round"][0] = 0
    with pytest.raises(SpecError, match=r"^my trace at line 11, column round:"):
        rebuilt(trace, cols).validate(source="my trace at", row=lambda i: f"line {i + 11}")


# ------------------------------------------------------------------------------------------------- trace files


@pytest.fixture(scope="module")
def good_csv(tmp_path_factory, trace):
    return write_trace(trace, tmp_path_factory.mktemp("traces") / "good.csv")


def lines_of(path):
    return path.read_text().splitlines()


def write_lines(tmp_path, lines, name="bad.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def set_field(lines, line, column, value):
    header = lines[1].split(",")
    fields = lines[line - 1].split(",")
    fields[header.index(column)] = value
    out = list(lines)
    out[line - 1] = ",".join(fields)
    return out


@pytest.mark.parametrize(
    ("line", "column", "value", "match"),
    [
        (6, "version", "40", r"row 6, column version: version 40 is not older than update \d+"),
        (8, "worker", "99", r"row 8, column worker: must be a worker from 0 to n-1 = 3, got 99"),
        (5, "round", "nan", r"row 5, column round: must be an integer, got nan"),
        (5, "round", "2.5", r"row 5, column round: must be an integer, got 2.5"),
        (7, "start", "inf", r"row 7, column start: must be a finite time, got inf"),
        (6, "sent", "abc", r"row 6, column sent: 'abc' is not a number"),
        (6, "sent", "", r"row 6, column sent: '' is not a number"),
        (
            9,
            "update",
            "100000000000",
            r"row 9, column update: update 4 is missing: the row after update 3's is in update 100000000000",
        ),
        (9, "update", "1e30", r"row 9, column update: must be an integer, got 1e\+30"),
        (3, "worker", "1e11", r"row 3, column worker: must be a worker from 0 to n-1 = 3, got 100000000000"),
    ],
)
def test_a_bad_field_in_a_file_is_named_by_its_row_and_column(tmp_path, good_csv, line, column, value, match):
    """Rows are numbered as the file numbers its lines (the metadata line and the header count)."""
    path = write_lines(tmp_path, set_field(lines_of(good_csv), line, column, value))
    with pytest.raises(SpecError, match=rf"^trace file '{path}' {match}"):
        read_trace(path)


def test_a_missing_or_duplicated_row_in_a_file(tmp_path, good_csv, trace):
    lines = lines_of(good_csv)
    first = row_where(trace, "update", 5) + 3  # its line in the file
    gone = lines[: first - 1] + lines[first + 1 :]  # update 5's two rows removed
    with pytest.raises(SpecError, match=rf"row {first}, column update: update 5 is missing"):
        read_trace(write_lines(tmp_path, gone))
    twice = [*lines[:first], lines[first - 1], *lines[first:]]
    with pytest.raises(
        SpecError, match=rf"row {first + 1}, column round: round \d+ of worker \d is also in row {first}"
    ):
        read_trace(write_lines(tmp_path, twice))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda lines: [], r"is empty$"),
        (lambda lines: ["", "  "], r"is empty$"),
        (lambda lines: lines[:1], r"has no header row \(row 2\)"),
        (lambda lines: lines[:2], r"has no rows \(only a header\)"),
        (lambda lines: [*lines[:5], ",".join(lines[5].split(",")[:7]), *lines[6:]], r"row 6 has 7 fields; the header"),
        (lambda lines: [*lines[:5], "", *lines[5:]], r"row 6 is blank; the header has 9"),
        (lambda lines: [*lines[:5], lines[5] + ",1", *lines[6:]], r"row 6 has 10 fields; the header has 9"),
        (lambda lines: ["# stalegrad-metadata: {x", *lines[1:]], r"row 1: its metadata is not JSON"),
        (lambda lines: lines[1:], r"records no system in its metadata"),
        (lambda lines: [lines[0], lines[1].replace("worker", "round"), *lines[2:]], r"row 2: the header names 'round'"),
        (lambda lines: [lines[0], lines[1].replace("sent", "x"), *lines[2:]], r"lacks the columns sent"),
    ],
)
def test_a_file_that_is_not_a_trace_is_one_line(tmp_path, good_csv, make, match):
    path = write_lines(tmp_path, make(lines_of(good_csv)))
    with pytest.raises(SpecError, match=rf"^trace file '{path}' ?:? ?{match}") as info:
        read_trace(path)
    assert "\n" not in str(info.value)


def test_a_system_in_the_metadata_cannot_make_it_allocate(tmp_path, good_csv):
    lines = lines_of(good_csv)
    huge = lines[0].replace('"n": 4', '"n": 100000000000')
    with pytest.raises(
        SpecError,
        match=rf"metadata: its system is invalid: n must be an integer from 1 to {MAX_WORKERS:,} in a system descr",
    ):
        read_trace(write_lines(tmp_path, [huge, *lines[1:]]))
    counts = lines[0].replace('"4*expon', '"100000000000*expon')
    with pytest.raises(SpecError, match=r"metadata: its system is invalid: compute must be models for exactly n = 4"):
        read_trace(write_lines(tmp_path, [counts, *lines[1:]]))
    seed = lines[0].replace('"seed": 3', '"seed": "x"')
    with pytest.raises(SpecError, match=r"metadata: seed must be an integer >= 0 or null, got 'x'"):
        read_trace(write_lines(tmp_path, [seed, *lines[1:]]))


def test_a_good_file_with_blank_lines_at_its_end_and_extra_columns_reads(tmp_path, good_csv, trace):
    lines = lines_of(good_csv)
    extra = [lines[0], lines[1] + ",note", *(line + ",hello" for line in lines[2:])]
    assert read_trace(write_lines(tmp_path, [*extra, "", ""])).equals(trace)
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(good_csv.read_bytes().replace(b"\n", b"\r\n"))
    assert read_trace(crlf).equals(trace)


def test_parquet_rows_are_numbered_from_1(tmp_path, trace):
    pytest.importorskip("pyarrow")
    path = write_trace(rebuilt(trace, edit(trace, "worker", np.r_[trace["worker"][:4], 9, trace["worker"][5:]])),
                       tmp_path / "bad.parquet")  # fmt: skip
    with pytest.raises(SpecError, match=rf"^trace file '{path}' row 5, column worker: must be a worker from 0 to"):
        read_trace(path)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(SpecError, match=r"junk.parquet' is not a readable Parquet file"):
        read_trace(tmp_path / "junk.parquet")


def test_cli_train_along_a_bad_trace_is_one_error_line_and_exit_2(tmp_path, good_csv, run_cli):
    bad = write_lines(tmp_path, set_field(lines_of(good_csv), 8, "worker", "99"))
    code, out, err = run_cli(["train", "--trace", str(bad)])
    assert code == 2 and out == ""
    assert err == f"Error: trace file '{bad}' row 8, column worker: must be a worker from 0 to n-1 = 3, got 99\n"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    code, _, err = run_cli(["train", "--trace", str(empty)])
    assert code == 2 and err == f"Error: trace file '{empty}' is empty\n"


# ------------------------------------------------------------------------------------------------------ models


class Drawn:
    """A scipy-like model whose draws are ``values`` cycled (its declared mean and support look fine)."""

    def __init__(self, values, mean=0.5, support=(0.0, math.inf)):
        self.values, self._mean, self._support = np.asarray(values, dtype=float), mean, support

    def rvs(self, size=1, random_state=None):
        return np.resize(self.values, size)

    def mean(self):
        return self._mean

    def cdf(self, x):
        return np.asarray(x) >= 0

    def support(self):
        return self._support


@pytest.mark.parametrize("direction", ["uplink", "downlink"])
@pytest.mark.parametrize(
    ("values", "shown"), [([0.5, math.nan], "nan"), ([0.5, -0.25], "-0.25")], ids=["nan", "negative"]
)
def test_a_delay_model_that_draws_a_bad_time_fails_when_drawn(direction, values, shown):
    system = System(n=3, K=2, compute=EXPON, **{direction: Drawn(values)})
    with pytest.raises(SpecError, match=rf"^{direction} drew {shown}: times must be finite and >= 0$"):
        simulate(system, 50, seed=1)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (Drawn([1.0], support=(math.nan, math.inf)), r"uplink support must be an interval .* got \(nan, inf\)"),
        (Drawn([1.0], support=(0.0, math.nan)), r"uplink support must be an interval .* got \(0.0, nan\)"),
        (Drawn([1.0], support=(2.0, 1.0)), r"uplink support must be an interval .* got \(2.0, 1.0\)"),
        (Drawn([1.0], support=(-1.0, 1.0)), r"uplink support must be times >= 0"),
        (
            Drawn([1.0], support=None),
            r"uplink support must be a pair of numbers \(low, high\), but .support\(\) failed: 'NoneType'",
        ),
        (Drawn([1.0], mean=math.nan), r"uplink mean must be finite and >= 0, got nan"),
        (Drawn([1.0], mean="x"), r"uplink mean must be a number, but .mean\(\) failed: could not convert"),
        (scipy.stats.norm(), r"uplink support must be times >= 0"),
    ],
)
def test_a_model_with_a_nan_mean_or_support_is_refused(model, match):
    with pytest.raises(SpecError, match=match):
        validate_model(model, "uplink", allow_zero_mean=True)
    with pytest.raises(SpecError, match=match):
        System(n=2, K=1, compute=EXPON, uplink=model)


@pytest.mark.parametrize("delay", [math.nan, -1.0, math.inf, "0.5", True])
def test_a_fixed_delay_must_be_a_finite_time(delay):
    with pytest.raises(SpecError, match=r"^downlink must be "):
        System(n=2, K=1, compute=EXPON, downlink=delay)
    assert System(n=2, K=1, compute=EXPON, downlink=Deterministic(0.0)).downlink == 0.0


def test_predict_names_a_value_that_is_not_a_system():
    from stalegrad import predict

    with pytest.raises(SpecError, match=r"^system must be a stalegrad.System, got 'str'$"):
        predict("x")


def test_a_file_that_is_not_utf8_text_is_one_line(tmp_path, good_csv):
    data = good_csv.read_bytes()
    body = tmp_path / "body.csv"
    body.write_bytes(data.replace(b"\n0,", b"\n\xff,", 1))
    with pytest.raises(SpecError, match=rf"^trace file '{body}' is not UTF-8 text"):
        read_trace(body)
    head = tmp_path / "head.csv"
    head.write_bytes(b"\xff" + data)
    with pytest.raises(SpecError, match=rf"^trace file '{head}' row 1 is not UTF-8 text"):
        read_trace(head)
